// Last-used write-behind; see last_used.hpp.
#include "gateway/server/last_used.hpp"

#include <fmt/format.h>

#include <cstdlib>

#include "gateway/obs/access_log.hpp"
#include "gateway/obs/metrics.hpp"

namespace tokengate::gateway {

std::chrono::milliseconds last_used_flush_interval() {
  if (const char* env = std::getenv("TOKENGATE_LAST_USED_FLUSH_MS")) {
    char* end = nullptr;
    const long ms = std::strtol(env, &end, 10);
    if (end != env && *end == '\0' && ms > 0) return std::chrono::milliseconds(ms);
  }
  return std::chrono::seconds(30);
}

void LastUsedWriter::add(const std::vector<std::pair<std::string, store::TimePoint>>& uses) {
  for (const auto& [id, when] : uses) {
    auto [it, inserted] = pending_.try_emplace(id, when);
    if (!inserted && it->second < when) it->second = when;
  }
}

void LastUsedWriter::flush(store::TimePoint now, bool final) {
  std::vector<std::pair<std::string, store::TimePoint>> batch;
  for (const auto& [id, when] : pending_) {
    const auto w = written_.find(id);
    if (final || w == written_.end() || now - w->second >= kPerTokenInterval) batch.emplace_back(id, when);
  }
  if (batch.empty()) return;
  try {
    store_.record_last_used(batch);
  } catch (const std::exception& e) {
    log_line(LogLevel::Error, fmt::format("recording last-used times failed: {}", e.what()));
    return;
  }
  for (const auto& [id, when] : batch) {
    pending_.erase(id);
    written_[id] = now;
  }
  // Forget tokens idle for longer than the interval: their next write is due anyway.
  if (written_.size() > 4 * batch.size() + 1024) {
    std::erase_if(written_, [&](const auto& kv) { return now - kv.second >= kPerTokenInterval; });
  }
  if (metrics_) metrics_->last_used_written(batch.size());
}

}  // namespace tokengate::gateway
