// The generic cell rate algorithm (GCRA) of the rate limits (README.md, "Rate
// limits"): a budget is one number, the theoretical arrival time (TAT) of the
// next request at the sustained rate. A request at `now` fits when, once it is
// counted, the TAT runs at most `tolerance` (burst × interval) ahead of `now`.
// Exact, no timer, no refill step: the clock is an argument, so tests inject it.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>

#include "conf/rate_limit.hpp"

namespace tokengate::gateway::ratelimit {

struct GcraParams {
  std::uint64_t interval_ns = 1;   // between two requests at the sustained rate, >= 1
  std::uint64_t tolerance_ns = 1;  // burst × interval

  static GcraParams of(const conf::RateLimit& limit) noexcept {
    return {limit.interval_ns(), limit.tolerance_ns()};
  }
  friend bool operator==(const GcraParams&, const GcraParams&) = default;
};

struct GcraResult {
  bool allowed = false;
  // Denied: nanoseconds until the same request would fit (> 0).
  std::uint64_t retry_after_ns = 0;
  // Allowed: how many more requests would fit right now.
  std::uint64_t remaining = 0;
};

// One step on a plain TAT (the caller owns the synchronisation). A clock that
// went backwards (now below an earlier now) only makes the check stricter: the
// TAT never moves back, and the distance to it only grows.
inline GcraResult gcra_step(std::uint64_t& tat, std::uint64_t now, const GcraParams& p) noexcept {
  const std::uint64_t start = std::max(tat, now);
  const std::uint64_t next = start + p.interval_ns;
  const std::uint64_t ahead = next - now;
  if (ahead > p.tolerance_ns) return {false, ahead - p.tolerance_ns, 0};
  tat = next;
  return {true, 0, (p.tolerance_ns - ahead) / p.interval_ns};
}

// A budget shared by every worker of the node: the TAT in one atomic word,
// advanced with a compare-and-swap loop (no lock; a refusal writes nothing, so
// a flood of refused requests does not bounce the cache line).
class alignas(64) Budget {  // a cache line of its own: workers write it
 public:
  // A sweep retired this budget (its table dropped it while idle): whoever holds
  // it takes a fresh one from the table instead.
  static constexpr std::uint64_t kRetired = std::numeric_limits<std::uint64_t>::max();

  enum class Verdict { Allowed, Limited, Retired };
  struct Result {
    Verdict verdict = Verdict::Retired;
    GcraResult gcra;
  };

  Result take(std::uint64_t now, const GcraParams& p) noexcept {
    std::uint64_t current = tat_.load(std::memory_order_relaxed);
    for (;;) {
      if (current == kRetired) return {Verdict::Retired, {}};
      std::uint64_t next = current;
      const GcraResult r = gcra_step(next, now, p);
      if (!r.allowed) return {Verdict::Limited, r};
      if (tat_.compare_exchange_weak(current, next, std::memory_order_relaxed)) return {Verdict::Allowed, r};
    }
  }

  // Gives back one interval (a request that another limit refused after this one
  // counted it). Never below zero, never on a retired budget.
  void refund(const GcraParams& p) noexcept {
    std::uint64_t current = tat_.load(std::memory_order_relaxed);
    while (current != kRetired) {
      const std::uint64_t next = current > p.interval_ns ? current - p.interval_ns : 0;
      if (tat_.compare_exchange_weak(current, next, std::memory_order_relaxed)) return;
    }
  }

  // Idle = the TAT is not ahead of `now`: the budget is full, the same as a new
  // one, so dropping it changes nothing. Retires it then (true); a request that
  // raced ahead keeps it alive (false).
  bool retire_if_idle(std::uint64_t now) noexcept {
    std::uint64_t current = tat_.load(std::memory_order_relaxed);
    if (current == kRetired) return true;
    if (current > now) return false;
    return tat_.compare_exchange_strong(current, kRetired, std::memory_order_relaxed);
  }

  std::uint64_t tat() const noexcept { return tat_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> tat_{0};
};

}  // namespace tokengate::gateway::ratelimit
