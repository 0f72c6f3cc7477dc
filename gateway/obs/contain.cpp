// Exception containment (see contain.hpp).
#include "gateway/obs/contain.hpp"

#include <atomic>
#include <string>

#include "gateway/obs/access_log.hpp"

namespace tokengate::gateway {

namespace {
std::atomic<std::uint64_t> g_internal_errors{0};
}

void report_escaped_exception(std::string_view where, std::exception_ptr error) noexcept {
  g_internal_errors.fetch_add(1, std::memory_order_relaxed);
  try {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    std::string line(where);
    line += " failed: ";
    line += what;
    log_line(LogLevel::Error, line);
  } catch (...) {
    // Out of memory while reporting: the count above still records it.
  }
}

std::uint64_t internal_errors() noexcept { return g_internal_errors.load(std::memory_order_relaxed); }

void run_contained(boost::asio::io_context& context, std::string_view where) noexcept {
  for (;;) {
    try {
      context.run();
      return;
    } catch (...) {
      report_escaped_exception(where, std::current_exception());
    }
  }
}

}  // namespace tokengate::gateway
