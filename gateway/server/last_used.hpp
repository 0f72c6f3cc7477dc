// Write-behind of last-used times (README.md, "Last used"): workers hand over (id, time) pairs
// at most once a minute per token each; this writer merges them and writes each
// token at most once a minute, batched, on the control thread, never on a request.
#pragma once

#include <chrono>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "store/token_store.hpp"

namespace tokengate::gateway {

class Metrics;

// How often the control thread flushes; TOKENGATE_LAST_USED_FLUSH_MS overrides it
// (for tests; documented in the README). The per-token minute is not configurable.
std::chrono::milliseconds last_used_flush_interval();

class LastUsedWriter {
 public:
  static constexpr auto kPerTokenInterval = std::chrono::minutes(1);

  LastUsedWriter(store::TokenStore& store, Metrics* metrics) : store_(store), metrics_(metrics) {}

  // Merges uses gathered from the workers (keeps the latest time per token).
  void add(const std::vector<std::pair<std::string, store::TimePoint>>& uses);
  // Writes the pending tokens not written within the last minute (all of them when
  // `final`, at shutdown). Store errors are logged; the times stay pending.
  void flush(store::TimePoint now, bool final = false);

  std::size_t pending() const noexcept { return pending_.size(); }

 private:
  store::TokenStore& store_;
  Metrics* metrics_;
  std::unordered_map<std::string, store::TimePoint> pending_;
  std::unordered_map<std::string, store::TimePoint> written_;  // id -> when we last wrote it
};

}  // namespace tokengate::gateway
