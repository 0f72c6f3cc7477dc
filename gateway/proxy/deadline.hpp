// The I/O deadline of one socket. Arming it stores a time; the worker's sweep
// (Worker::sweep_deadlines) closes the socket once that time has passed, which
// fails the pending operation, and `expired` then says it was a timeout.
//
// Why not beast::tcp_stream's timeouts: they start and cancel a timer wait around
// every read and write (a heap insert, a heap removal and one more handler run per
// operation), about 9 % of the gateway's throughput with one worker (bench,
// measured with and without). Here an operation costs one clock read.
//
// Arm before an operation and disarm after it, as with tcp_stream (its timer only
// runs while an operation is pending): a deadline left armed would also run while
// the session waits on the other socket.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/system/error_code.hpp>
#include <chrono>

namespace tokengate::gateway {

struct Deadline {
  using clock = std::chrono::steady_clock;

  clock::time_point at = clock::time_point::max();  // max: disarmed
  boost::asio::ip::tcp::socket* socket = nullptr;   // closed when `at` passes
  bool expired = false;

  void arm(std::chrono::milliseconds timeout) noexcept {
    expired = false;
    // Saturated so an absurd configured timeout cannot overflow the clock.
    constexpr auto kForever = std::chrono::hours(24 * 365 * 100);
    at = timeout >= kForever ? clock::time_point::max() : clock::now() + timeout;
  }
  void disarm() noexcept { at = clock::time_point::max(); }

  // `ec` as the operation reported it, or beast::error::timeout if the deadline
  // closed the socket under it.
  boost::system::error_code why(const boost::system::error_code& ec) const noexcept {
    return expired ? boost::system::error_code(boost::beast::error::timeout) : ec;
  }

  // Called by the sweep.
  void enforce(clock::time_point now) noexcept {
    if (at > now || socket == nullptr) return;
    expired = true;
    at = clock::time_point::max();
    boost::system::error_code ignored;
    socket->close(ignored);
  }
};

// Disarms a deadline and forgets its socket when the scope ends, however it ends
// (a co_return on any path, the coroutine frame destroyed at shutdown): the sweep
// must never act on a socket that went back to a pool or was destroyed.
class DeadlineScope {
 public:
  explicit DeadlineScope(Deadline& deadline) noexcept : deadline_(deadline) {}
  DeadlineScope(const DeadlineScope&) = delete;
  DeadlineScope& operator=(const DeadlineScope&) = delete;
  ~DeadlineScope() {
    deadline_.disarm();
    deadline_.socket = nullptr;
  }

 private:
  Deadline& deadline_;
};

}  // namespace tokengate::gateway
