// Containment of unexpected exceptions. The data plane reports errors as values,
// but a bug (or a library that throws where it should not) must end at most the
// one connection it happened on, never the process: every coroutine is spawned
// with ContainExceptions as its completion, and every io_context runs through
// run_contained, which catches what a handler outside any coroutine throws (an
// exception escaping a composed operation's intermediate handler reaches run(),
// not the coroutine that started the operation). Each one is logged and counted
// (tokengate_internal_errors_total).
#pragma once

#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <exception>
#include <string_view>

namespace tokengate::gateway {

// Logs "`where` failed: what()" at error level and counts it. Never throws.
void report_escaped_exception(std::string_view where, std::exception_ptr error) noexcept;

// Internal errors contained since start (all threads).
std::uint64_t internal_errors() noexcept;

// Completion handler for asio::co_spawn. `where` must outlive the coroutine (a
// literal).
struct ContainExceptions {
  std::string_view where;
  void operator()(std::exception_ptr error) const noexcept {
    if (error) report_escaped_exception(where, error);
  }
};

// context.run() until it returns normally, resuming after each handler that threw.
void run_contained(boost::asio::io_context& context, std::string_view where) noexcept;

}  // namespace tokengate::gateway
