// Tests of gateway/ratelimit: the GCRA arithmetic on an injected clock (burst,
// refill, exact boundaries, extreme rates, a clock going backwards), the shared
// atomic budget under threads, the token budget table's sweep and the client
// address table's fixed bound.
#include <doctest/doctest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "gateway/ratelimit/gcra.hpp"
#include "gateway/ratelimit/tables.hpp"

using namespace tokengate::gateway::ratelimit;
using tokengate::conf::RateLimit;

namespace {

constexpr std::uint64_t kSecond = 1'000'000'000;
constexpr std::uint64_t kT0 = 1'000 * kSecond;  // an arbitrary "now" well above zero

GcraParams params(std::uint64_t count, std::uint64_t window_s, std::uint64_t burst) {
  return GcraParams::of(RateLimit{count, window_s, burst});
}

// How many of `n` requests at `now` pass.
int admit(std::uint64_t& tat, std::uint64_t now, const GcraParams& p, int n) {
  int passed = 0;
  for (int i = 0; i < n; ++i) passed += gcra_step(tat, now, p).allowed ? 1 : 0;
  return passed;
}

}  // namespace

TEST_CASE("gcra: exactly burst requests pass back to back, the next waits one interval") {
  const auto p = params(10, 1, 5);  // 10/s, burst 5: interval 100 ms
  std::uint64_t tat = 0;
  for (int i = 0; i < 5; ++i) {
    const auto r = gcra_step(tat, kT0, p);
    CHECK(r.allowed);
    CHECK(r.remaining == static_cast<std::uint64_t>(4 - i));
  }
  const auto denied = gcra_step(tat, kT0, p);
  CHECK_FALSE(denied.allowed);
  CHECK(denied.retry_after_ns == 100'000'000);
  // A refusal changes nothing.
  CHECK(gcra_step(tat, kT0, p).retry_after_ns == 100'000'000);
  // One nanosecond early: still refused, 1 ns to wait; at the boundary: allowed.
  const auto early = gcra_step(tat, kT0 + 100'000'000 - 1, p);
  CHECK_FALSE(early.allowed);
  CHECK(early.retry_after_ns == 1);
  CHECK(gcra_step(tat, kT0 + 100'000'000, p).allowed);
  CHECK_FALSE(gcra_step(tat, kT0 + 100'000'000, p).allowed);
}

TEST_CASE("gcra: refill at the sustained rate, never above the burst") {
  const auto p = params(10, 1, 5);
  std::uint64_t tat = 0;
  CHECK(admit(tat, kT0, p, 100) == 5);
  // 350 ms later: 3 intervals have passed, 3 requests fit.
  CHECK(admit(tat, kT0 + 350'000'000, p, 100) == 3);
  // A long idle time refills to the burst, not beyond.
  CHECK(admit(tat, kT0 + 3600 * kSecond, p, 100) == 5);
  // Sustained: one request per interval always passes.
  std::uint64_t t = kT0 + 7200 * kSecond;
  CHECK(admit(tat, t, p, 5) == 5);
  for (int i = 1; i <= 1000; ++i)
    CHECK(admit(tat, t + static_cast<std::uint64_t>(i) * 100'000'000, p, 2) == 1);
}

TEST_CASE("gcra: burst 1 is a strict spacing") {
  const auto p = params(1, 60, 1);  // 1/m
  std::uint64_t tat = 0;
  CHECK(admit(tat, kT0, p, 3) == 1);
  const auto r = gcra_step(tat, kT0 + kSecond, p);
  CHECK(r.retry_after_ns == 59 * kSecond);
  CHECK(admit(tat, kT0 + 60 * kSecond, p, 3) == 1);
}

TEST_CASE("gcra: very large and very small rates") {
  // 10^9/s: 1 ns apart.
  const auto fast = params(1'000'000'000, 1, 1'000'000'000);
  std::uint64_t tat = 0;
  CHECK(admit(tat, kT0, fast, 1000) == 1000);
  std::uint64_t tat2 = 0;
  const auto fast1 = params(1'000'000'000, 1, 1);
  CHECK(admit(tat2, kT0, fast1, 10) == 1);
  CHECK(admit(tat2, kT0 + 1, fast1, 10) == 1);
  // 1/d with the largest accepted burst: no overflow, the day-long spacing holds.
  const auto slow = params(1, 86400, 1000);
  std::uint64_t tat3 = 0;
  CHECK(admit(tat3, kT0, slow, 2000) == 1000);
  const auto r = gcra_step(tat3, kT0, slow);
  CHECK_FALSE(r.allowed);
  CHECK(r.retry_after_ns == 86400 * kSecond);
  CHECK(admit(tat3, kT0 + 86400 * kSecond - 1, slow, 2) == 0);
  CHECK(admit(tat3, kT0 + 86400 * kSecond, slow, 2) == 1);
}

TEST_CASE("gcra: a clock that goes backwards never admits more") {
  const auto p = params(10, 1, 3);
  std::uint64_t tat = 0;
  CHECK(admit(tat, kT0, p, 3) == 3);
  // Earlier than the requests already counted: still refused, and told to wait longer.
  const auto back = gcra_step(tat, kT0 - 5 * kSecond, p);
  CHECK_FALSE(back.allowed);
  CHECK(back.retry_after_ns == 5 * kSecond + 100'000'000);
  // Forward again: the budget continues from where it was.
  CHECK(admit(tat, kT0 + 100'000'000, p, 5) == 1);
  // A clock at zero (before any request) works as well.
  std::uint64_t fresh = 0;
  CHECK(admit(fresh, 0, p, 5) == 3);
}

TEST_CASE("budget: the atomic budget admits exactly the burst across threads") {
  const auto p = params(1, 3600, 1000);  // nothing refills during the test
  Budget budget;
  std::atomic<int> allowed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) {
        if (budget.take(kT0, p).verdict == Budget::Verdict::Allowed) allowed.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(allowed.load() == 1000);
}

TEST_CASE("budget: refund gives one interval back; retire only when idle") {
  const auto p = params(10, 1, 2);
  Budget budget;
  CHECK(budget.take(kT0, p).verdict == Budget::Verdict::Allowed);
  CHECK(budget.take(kT0, p).verdict == Budget::Verdict::Allowed);
  CHECK(budget.take(kT0, p).verdict == Budget::Verdict::Limited);
  budget.refund(p);
  CHECK(budget.take(kT0, p).verdict == Budget::Verdict::Allowed);
  CHECK_FALSE(budget.retire_if_idle(kT0));  // two intervals ahead: busy
  CHECK(budget.retire_if_idle(kT0 + 200'000'000));
  CHECK(budget.take(kT0 + kSecond, p).verdict == Budget::Verdict::Retired);
  Budget fresh;
  fresh.refund(p);  // never below zero
  CHECK(fresh.tat() == 0);
}

TEST_CASE("budget table: one budget per key; the sweep drops idle ones only") {
  BudgetTable table;
  const auto p = params(10, 1, 2);
  auto a = table.acquire("token-a");
  auto a2 = table.acquire("token-a");
  CHECK(a == a2);
  auto b = table.acquire("token-b");
  CHECK(a != b);
  CHECK(table.size() == 2);
  CHECK(a->take(kT0, p).verdict == Budget::Verdict::Allowed);  // a runs ahead until kT0 + 100 ms
  CHECK(table.sweep(kT0) == 1);                                // b was idle
  CHECK(table.sweep(kT0 + 100'000'000) == 0);
  // A holder of a swept budget learns it is retired and takes the new one.
  CHECK(a->take(kT0 + kSecond, p).verdict == Budget::Verdict::Retired);
  auto a3 = table.acquire("token-a");
  CHECK(a3 != a);
  CHECK(a3->take(kT0 + kSecond, p).verdict == Budget::Verdict::Allowed);
}

TEST_CASE("address table: 200,000 distinct addresses keep the size at its capacity") {
  AddressTable table(4096);
  CHECK(table.capacity() == 4096);
  const auto p = params(1, 1, 1);
  for (std::uint32_t i = 0; i < 200'000; ++i) {
    const std::string address = "10." + std::to_string((i >> 16) & 0xFF) + "." +
                                std::to_string((i >> 8) & 0xFF) + "." + std::to_string(i & 0xFF);
    CHECK_MESSAGE(table.take(address, 0, p, kT0).allowed, address);
    if (i % 10'000 == 0) CHECK(table.size() <= table.capacity());
  }
  CHECK(table.size() <= table.capacity());
  CHECK(table.size() > table.capacity() / 2);  // the slots are actually used
}

TEST_CASE("address table: per address and route; the least recently used goes first") {
  AddressTable table(64);  // one slot per shard
  const auto p = params(1, 60, 2);
  CHECK(table.take("192.0.2.1", 0, p, kT0).allowed);
  CHECK(table.take("192.0.2.1", 0, p, kT0).allowed);
  CHECK_FALSE(table.take("192.0.2.1", 0, p, kT0).allowed);
  CHECK(table.take("::ffff:192.0.2.1", 0, p, kT0).retry_after_ns > 0);  // the same address, IPv4-mapped
  CHECK(table.take("192.0.2.1", 1, p, kT0).allowed);                    // another route
  CHECK(table.take("192.0.2.2", 0, p, kT0).allowed);                    // another address
  CHECK(table.take("2001:db8::1", 0, p, kT0).allowed);
  // A bigger table keeps recently used budgets while others come and go.
  AddressTable big(64 * 4);
  CHECK(big.take("192.0.2.9", 0, p, kT0).allowed);
  CHECK(big.take("192.0.2.9", 0, p, kT0).allowed);
  for (int i = 0; i < 50; ++i) {
    big.take("198.51.100." + std::to_string(i), 0, p, kT0);
    CHECK_FALSE(big.take("192.0.2.9", 0, p, kT0).allowed);  // touched each time: never evicted
  }
}
