// Time source for expiry and grace decisions, injectable so tests can move time.
#pragma once

#include <chrono>
#include <functional>

namespace tokengate::store {

using TimePoint = std::chrono::sys_seconds;  // token times have one-second resolution
using Clock = std::function<TimePoint()>;

inline TimePoint system_now() {
  return std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now());
}

}  // namespace tokengate::store
