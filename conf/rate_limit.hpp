// A rate limit as the config, token records and the command line write it:
// `COUNT/UNIT` (unit s, m, h or d) plus a burst, README.md "Rate limits". Pure
// values and their one parser; the gateway's limiter (gateway/ratelimit/) turns
// them into an emission interval and a tolerance.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tokengate::conf {

struct RateLimit {
  std::uint64_t count = 0;     // requests per window, >= 1
  std::uint64_t window_s = 1;  // 1, 60, 3600 or 86400 (the unit)
  std::uint64_t burst = 0;     // requests that may arrive back to back, >= 1

  // Nanoseconds between two requests at the sustained rate (window / count,
  // rounded down: at most 1 ns per request more generous than the exact rate).
  std::uint64_t interval_ns() const noexcept { return window_s * 1'000'000'000ULL / count; }
  // How far ahead of the clock the budget may run: burst intervals.
  std::uint64_t tolerance_ns() const noexcept { return burst * interval_ns(); }

  std::string rate_text() const;  // "100/s"
  std::string to_string() const;  // "100/s burst 200"
  friend bool operator==(const RateLimit&, const RateLimit&) = default;
};

// The largest COUNT and burst accepted, and the longest span a full burst may
// cover. They keep the limiter's nanosecond arithmetic far from overflow: the
// interval is at least 1 ns, and burst × interval stays below 2^62 ns.
inline constexpr std::uint64_t kMaxRateCount = 1'000'000'000;
inline constexpr std::uint64_t kMaxBurst = 1'000'000'000;

// "100/s" -> count 100, window 1 s, burst = count. nullopt with `error` set (one
// phrase, e.g. "unknown unit 'x' (expected s, m, h or d)") when malformed or out
// of range.
std::optional<RateLimit> parse_rate(std::string_view text, std::string& error);

// Checks the ranges of a rate limit built from parts (burst given separately);
// empty when valid, else why not.
std::string check_rate_limit(const RateLimit& limit);

// The command line's `RATE[:BURST]`: "100/s", "6000/m:500".
std::optional<RateLimit> parse_rate_limit_arg(std::string_view text, std::string& error);

// True when `wanted` grants more than `held`: a higher sustained rate or a larger
// burst. nullopt stands for "no limit" (larger than any limit).
bool exceeds(const std::optional<RateLimit>& wanted, const std::optional<RateLimit>& held) noexcept;

}  // namespace tokengate::conf
