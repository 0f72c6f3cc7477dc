// Process metrics for /metrics (Prometheus text format). The hot path writes only
// to its own worker's shard (single writer, relaxed atomics, no lock, no allocation);
// render_prometheus() sums the shards when scraped.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "policy/outcome.hpp"

namespace tokengate::gateway {

// Kinds of upstream failure counted by tokengate_upstream_errors_total.
enum class UpstreamErrorKind { ConnectFailed, Timeout, Failed, Aborted, BadResponse, TlsVerify, Count };
std::string_view to_string(UpstreamErrorKind kind) noexcept;

// Results of token verification counted by tokengate_token_verifications_total:
// "valid" then store::VerifyFailure names (malformed, unknown, mismatch, expired, rotated_out).
inline constexpr std::size_t kVerifyResults = 6;

// Latency histogram upper bounds in seconds (+Inf implied).
inline constexpr std::array<double, 14> kLatencyBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                           0.1,    0.25,  0.5,    1,     2.5,  5,     10};

// One worker's counters. Only that worker's thread writes (so an increment is a
// relaxed load + store, no locked instruction); any thread may read.
class MetricsShard {
 public:
  // route: index into the config's routes or -1; status: the HTTP status sent;
  // forward_auth: a check on the forward_auth listener (label mode="forward_auth").
  void count_request(int route, int status, bool allowed, policy::Outcome outcome,
                     std::chrono::nanoseconds duration, bool forward_auth = false) noexcept;
  void count_upstream_error(UpstreamErrorKind kind) noexcept {
    bump(upstream_errors_[static_cast<int>(kind)]);
  }
  // result: 0 = valid, else static_cast<int>(store::VerifyFailure).
  void count_verification(int result) noexcept;
  void count_cache(bool hit) noexcept { bump(hit ? cache_hits_ : cache_misses_); }
  void connection_opened() noexcept { bump(open_connections_); }
  void connection_closed() noexcept {
    open_connections_.store(open_connections_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
  }

 private:
  friend class Metrics;
  static void bump(std::atomic<std::uint64_t>& a, std::uint64_t n = 1) noexcept {
    a.store(a.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  // Open addressing on (route, status class, reason); keys are published with
  // release after their count so a reader never sees a key without its slot.
  static constexpr std::size_t kSlots = 1024;
  struct Slot {
    std::atomic<std::uint32_t> key{0};  // 0 = empty
    std::atomic<std::uint64_t> count{0};
  };
  std::array<Slot, kSlots> requests_{};
  std::atomic<std::uint64_t> requests_dropped_{0};  // table full: counted, not labelled
  std::array<std::atomic<std::uint64_t>, kLatencyBuckets.size() + 1> latency_buckets_{};
  std::atomic<std::uint64_t> latency_sum_ns_{0};
  std::array<std::atomic<std::uint64_t>, static_cast<int>(UpstreamErrorKind::Count)> upstream_errors_{};
  std::array<std::atomic<std::uint64_t>, kVerifyResults> verifications_{};
  std::atomic<std::uint64_t> cache_hits_{0};
  std::atomic<std::uint64_t> cache_misses_{0};
  std::atomic<std::uint64_t> open_connections_{0};
};

class Metrics {
 public:
  explicit Metrics(std::size_t workers);

  MetricsShard& shard(std::size_t worker) noexcept { return *shards_[worker]; }
  std::size_t shards() const noexcept { return shards_.size(); }

  // Rare events from the control thread.
  void reload_ok(std::chrono::system_clock::time_point when) noexcept;
  void reload_failed() noexcept { reloads_failed_.fetch_add(1, std::memory_order_relaxed); }
  void last_used_written(std::uint64_t n) noexcept {
    last_used_writes_.fetch_add(n, std::memory_order_relaxed);
  }
  std::uint64_t last_used_writes() const noexcept {
    return last_used_writes_.load(std::memory_order_relaxed);
  }

  // Names for route labels (the current config's route paths); called on reload.
  void set_route_names(std::vector<std::string> names);
  // Evaluated on each scrape (e.g. counts tokens expiring within 7 days); may throw,
  // then the gauge is left out.
  void set_expiring_soon_source(std::function<std::uint64_t()> source);

  std::string render_prometheus() const;

 private:
  // Cache-line sized and aligned so workers never write the same line.
  struct alignas(64) PaddedShard : MetricsShard {};
  std::vector<std::unique_ptr<PaddedShard>> shards_;
  std::atomic<std::uint64_t> reloads_ok_{0};
  std::atomic<std::uint64_t> reloads_failed_{0};
  std::atomic<std::int64_t> last_reload_ms_{0};
  std::atomic<std::uint64_t> last_used_writes_{0};
  mutable std::mutex names_mutex_;  // scrape and reload only, never the data plane
  std::vector<std::string> route_names_;
  std::function<std::uint64_t()> expiring_soon_;
};

}  // namespace tokengate::gateway
