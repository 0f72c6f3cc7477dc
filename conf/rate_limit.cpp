// Rate limit values (see rate_limit.hpp): the one parser of `COUNT/UNIT`.
#include "conf/rate_limit.hpp"

#include <fmt/format.h>

#include <charconv>

namespace tokengate::conf {
namespace {

bool all_digits(std::string_view s) noexcept {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

char unit_letter(std::uint64_t window_s) noexcept {
  switch (window_s) {
    case 60:
      return 'm';
    case 3600:
      return 'h';
    case 86400:
      return 'd';
    default:
      return 's';
  }
}

// A count or burst: decimal digits only (no sign, no spaces), nullopt beyond 2^64.
std::optional<std::uint64_t> number(std::string_view text) {
  if (!all_digits(text)) return std::nullopt;
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

}  // namespace

std::string RateLimit::rate_text() const { return fmt::format("{}/{}", count, unit_letter(window_s)); }

std::string RateLimit::to_string() const { return fmt::format("{} burst {}", rate_text(), burst); }

std::string check_rate_limit(const RateLimit& limit) {
  if (limit.count == 0) return "the rate must be greater than zero";
  if (limit.count > kMaxRateCount) return fmt::format("the rate's count must be at most {}", kMaxRateCount);
  if (limit.window_s != 1 && limit.window_s != 60 && limit.window_s != 3600 && limit.window_s != 86400) {
    return "the rate's unit must be s, m, h or d";
  }
  if (limit.burst == 0) return "burst must be at least 1";
  if (limit.burst > kMaxBurst) return fmt::format("burst must be at most {}", kMaxBurst);
  // Both at most 10^9 and the interval at most 8.64 * 10^13 ns: the product is
  // checked in 128 bits.
  const unsigned __int128 span = static_cast<unsigned __int128>(limit.burst) * limit.interval_ns();
  if (span >= (static_cast<unsigned __int128>(1) << 62)) {
    return fmt::format("a burst of {} at {} spans more than a century", limit.burst, limit.rate_text());
  }
  return {};
}

std::optional<RateLimit> parse_rate(std::string_view text, std::string& error) {
  const auto slash = text.find('/');
  if (slash == std::string_view::npos) {
    error = fmt::format("invalid rate '{}' (expected COUNT/UNIT, e.g. 100/s, 6000/m)", text);
    return std::nullopt;
  }
  const std::string_view count_text = text.substr(0, slash);
  const std::string_view unit = text.substr(slash + 1);
  if (!count_text.empty() && count_text.front() == '-') {
    error = fmt::format("invalid rate '{}': the count must not be negative", text);
    return std::nullopt;
  }
  const auto count = number(count_text);
  if (!count) {
    error = fmt::format("invalid rate '{}': the count must be a whole number (e.g. 100/s)", text);
    return std::nullopt;
  }
  RateLimit limit;
  limit.count = *count;
  if (unit == "s") {
    limit.window_s = 1;
  } else if (unit == "m") {
    limit.window_s = 60;
  } else if (unit == "h") {
    limit.window_s = 3600;
  } else if (unit == "d") {
    limit.window_s = 86400;
  } else {
    error = fmt::format("invalid rate '{}': unknown unit '{}' (expected s, m, h or d)", text, unit);
    return std::nullopt;
  }
  limit.burst = limit.count;
  if (auto why = check_rate_limit(limit); !why.empty()) {
    error = fmt::format("invalid rate '{}': {}", text, why);
    return std::nullopt;
  }
  return limit;
}

std::optional<RateLimit> parse_rate_limit_arg(std::string_view text, std::string& error) {
  const auto colon = text.find(':');
  auto limit = parse_rate(text.substr(0, colon), error);
  if (!limit || colon == std::string_view::npos) return limit;
  const std::string_view burst_text = text.substr(colon + 1);
  const auto burst = number(burst_text);
  if (!burst) {
    error = fmt::format("invalid burst '{}' (expected a whole number of requests, at least 1)", burst_text);
    return std::nullopt;
  }
  limit->burst = *burst;
  if (auto why = check_rate_limit(*limit); !why.empty()) {
    error = fmt::format("invalid rate limit '{}': {}", text, why);
    return std::nullopt;
  }
  return limit;
}

bool exceeds(const std::optional<RateLimit>& wanted, const std::optional<RateLimit>& held) noexcept {
  if (!held) return false;  // nothing is more than "no limit"
  if (!wanted) return true;
  // wanted.count / wanted.window > held.count / held.window, without division.
  const auto lhs = static_cast<unsigned __int128>(wanted->count) * held->window_s;
  const auto rhs = static_cast<unsigned __int128>(held->count) * wanted->window_s;
  return lhs > rhs || wanted->burst > held->burst;
}

}  // namespace tokengate::conf
