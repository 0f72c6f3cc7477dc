// Shared helpers for the store tests: temporary directories and a clock tests move.
#pragma once

#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>

#include "store/token_store.hpp"

namespace tokengate::store::test {

class TempDir {
 public:
  TempDir() {
    std::string templ = (std::filesystem::temp_directory_path() / "tokengate-store-XXXXXX").string();
    if (!mkdtemp(templ.data())) throw std::runtime_error("mkdtemp failed");
    path_ = templ;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// A clock starting at a fixed time that only moves when the test says so.
class ManualClock {
 public:
  explicit ManualClock(TimePoint start = TimePoint{std::chrono::seconds{1'800'000'000}})
      : now_(std::make_shared<std::atomic<long long>>(start.time_since_epoch().count())) {}
  Clock clock() const {
    auto now = now_;
    return [now] { return TimePoint{std::chrono::seconds{now->load()}}; };
  }
  TimePoint now() const { return TimePoint{std::chrono::seconds{now_->load()}}; }
  void advance(std::chrono::seconds d) { now_->fetch_add(d.count()); }

 private:
  std::shared_ptr<std::atomic<long long>> now_;
};

inline TokenStore::Options store_options(const TempDir& dir, const ManualClock& clock) {
  TokenStore::Options o;
  o.path = dir.path() / "var" / "tokens";
  o.key_file = dir.path() / "var" / "tokengate.key";
  o.clock = clock.clock();
  return o;
}

}  // namespace tokengate::store::test
