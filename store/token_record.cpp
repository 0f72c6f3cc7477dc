// Token records: RFC 3339 times and the public JSON form (never a secret).
#include "store/token_record.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <boost/json/array.hpp>
#include <boost/json/value.hpp>

namespace tokengate::store {
namespace {

// Reads exactly `n` digits at `pos`; nullopt otherwise.
std::optional<int> digits(std::string_view s, std::size_t pos, std::size_t n) {
  if (pos + n > s.size()) return std::nullopt;
  int v = 0;
  for (std::size_t i = 0; i < n; ++i) {
    char c = s[pos + i];
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  return v;
}

boost::json::value time_or_null(const std::optional<TimePoint>& t) {
  if (!t) return nullptr;
  return boost::json::value(format_rfc3339(*t));
}

boost::json::array names(const std::vector<std::string>& list) {
  boost::json::array out;
  out.reserve(list.size());
  for (const auto& n : list) out.emplace_back(n);
  return out;
}

}  // namespace

std::string format_rfc3339(TimePoint t) {
  using namespace std::chrono;
  const auto day = floor<days>(t);
  const year_month_day ymd{day};
  const hh_mm_ss hms{t - day};
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", static_cast<int>(ymd.year()),
                     static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                     hms.hours().count(), hms.minutes().count(), hms.seconds().count());
}

std::optional<TimePoint> parse_rfc3339(std::string_view s) {
  using namespace std::chrono;
  // YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)
  if (s.size() < 20) return std::nullopt;
  auto y = digits(s, 0, 4), mo = digits(s, 5, 2), d = digits(s, 8, 2);
  auto h = digits(s, 11, 2), mi = digits(s, 14, 2), sec = digits(s, 17, 2);
  if (!y || !mo || !d || !h || !mi || !sec) return std::nullopt;
  if (s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') || s[13] != ':' || s[16] != ':') {
    return std::nullopt;
  }
  const year_month_day ymd{year{*y}, month{static_cast<unsigned>(*mo)}, day{static_cast<unsigned>(*d)}};
  if (!ymd.ok() || *h > 23 || *mi > 59 || *sec > 60) return std::nullopt;
  std::size_t pos = 19;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    const std::size_t start = pos;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') ++pos;
    if (pos == start) return std::nullopt;
  }
  if (pos >= s.size()) return std::nullopt;
  int offset_minutes = 0;
  if (s[pos] == 'Z' || s[pos] == 'z') {
    ++pos;
  } else if (s[pos] == '+' || s[pos] == '-') {
    auto oh = digits(s, pos + 1, 2), om = digits(s, pos + 4, 2);
    if (!oh || !om || pos + 3 >= s.size() || s[pos + 3] != ':' || *oh > 23 || *om > 59) return std::nullopt;
    offset_minutes = (*oh * 60 + *om) * (s[pos] == '-' ? -1 : 1);
    pos += 6;
  } else {
    return std::nullopt;
  }
  if (pos != s.size()) return std::nullopt;
  const auto local = sys_days{ymd} + hours{*h} + minutes{*mi} + seconds{*sec};
  return TimePoint{local - minutes{offset_minutes}};
}

boost::json::object to_json(const TokenRecord& r) {
  boost::json::object o;
  o["id"] = r.id;
  o["name"] = r.name;
  o["description"] = r.description;
  o["roles"] = names(r.roles);
  o["groups"] = names(r.groups);
  o["permissions"] = names(r.permissions);
  o["licenses"] = names(r.licenses);
  o["created_at"] = format_rfc3339(r.created_at);
  o["updated_at"] = format_rfc3339(r.updated_at);
  o["expires_at"] = time_or_null(r.expires_at);
  o["last_used_at"] = time_or_null(r.last_used_at);
  o["rotated_at"] = time_or_null(r.rotated_at);
  o["created_by"] = r.created_by;
  o["rate_limit"] = rate_limit_json(r.rate_limit);
  return o;
}

boost::json::value rate_limit_json(const std::optional<conf::RateLimit>& limit) {
  if (!limit) return nullptr;
  boost::json::object o;
  o["rate"] = limit->rate_text();
  o["burst"] = limit->burst;
  return o;
}

bool rate_limit_from_json(const boost::json::value& value, std::optional<conf::RateLimit>& out,
                          std::string& error) {
  if (value.is_null()) {
    out.reset();
    return true;
  }
  constexpr std::string_view kShape = R"(must be {"rate": "COUNT/UNIT", "burst": N} or null)";
  if (!value.is_object()) {
    error = fmt::format("field 'rate_limit' {}", kShape);
    return false;
  }
  const auto& o = value.get_object();
  for (const auto& kv : o) {
    if (kv.key() != "rate" && kv.key() != "burst") {
      error = fmt::format("field 'rate_limit' {}", kShape);
      return false;
    }
  }
  const auto* rate = o.if_contains("rate");
  if (!rate || !rate->is_string()) {
    error = fmt::format("field 'rate_limit' {}", kShape);
    return false;
  }
  auto limit = conf::parse_rate(std::string_view(rate->get_string()), error);
  if (!limit) {
    error = "field 'rate_limit': " + error;
    return false;
  }
  if (const auto* burst = o.if_contains("burst")) {
    if (burst->is_int64() && burst->get_int64() >= 0) {
      limit->burst = static_cast<std::uint64_t>(burst->get_int64());
    } else if (burst->is_uint64()) {
      limit->burst = burst->get_uint64();
    } else {
      error = "field 'rate_limit': burst must be a whole number of requests, at least 1";
      return false;
    }
    if (auto why = conf::check_rate_limit(*limit); !why.empty()) {
      error = "field 'rate_limit': " + why;
      return false;
    }
  }
  out = limit;
  return true;
}

void normalize_names(std::vector<std::string>& names) {
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
}

}  // namespace tokengate::store
