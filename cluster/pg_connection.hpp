// One PostgreSQL connection driven by Asio: libpq in non-blocking mode, its socket
// (PQsocket) watched through a posix::stream_descriptor, every wait bounded by a
// deadline. The same code serves the gateway's control thread and the command line
// (which runs a private io_context until the operation ends), so there is one
// implementation of every query, not a blocking and a non-blocking one.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

struct pg_conn;

namespace tokengate::cluster {

// A failed connection or statement. `sqlstate` is the server's error code when it
// answered ("" when the connection failed or timed out: then `broken` is set and
// the connection must be reopened).
class PgError : public std::runtime_error {
 public:
  PgError(std::string message, std::string sqlstate, bool broken)
      : std::runtime_error(std::move(message)), sqlstate(std::move(sqlstate)), broken(broken) {}
  std::string sqlstate;
  bool broken;
};

using Row = std::vector<std::optional<std::string>>;  // text format; nullopt = NULL
using Param = std::optional<std::string>;

struct ConnectOptions {
  std::string url;                                     // libpq URI (sslmode etc. pass through)
  std::optional<std::filesystem::path> password_file;  // first line is the password
  std::chrono::milliseconds connect_timeout{5000};
};

class PgConnection {
 public:
  explicit PgConnection(boost::asio::any_io_executor executor);
  ~PgConnection();
  PgConnection(const PgConnection&) = delete;
  PgConnection& operator=(const PgConnection&) = delete;

  // Throws PgError. A dead or hung server is noticed: the connect has its own
  // deadline (libpq's connect_timeout only works in blocking mode) and TCP
  // keepalives plus tcp_user_timeout are set for the connection's life.
  boost::asio::awaitable<void> connect(const ConnectOptions& options);

  // One statement with text parameters; the rows of its (last) result. Throws
  // PgError; on a timeout the connection is closed (`broken`).
  boost::asio::awaitable<std::vector<Row>> query(std::string sql, std::vector<Param> params = {},
                                                 std::chrono::milliseconds timeout = std::chrono::seconds(5));

  // Waits until the server sends something (a notification) or `until`; false on
  // timeout. Throws PgError when the connection is lost.
  boost::asio::awaitable<bool> wait_input(std::chrono::steady_clock::time_point until);

  // Payloads of the notifications received so far.
  std::vector<std::string> take_notifications();

  bool connected() const noexcept;
  void close() noexcept;
  // Wakes a pending wait_input (used to hand the connection to a queued job).
  void interrupt() noexcept;

 private:
  enum class Ready { Read, Write, Timeout };
  boost::asio::awaitable<Ready> wait(bool want_read, bool want_write,
                                     std::chrono::steady_clock::time_point until);
  void attach_socket();
  [[noreturn]] void fail(std::string what, bool broken = true);
  void consume();

  boost::asio::any_io_executor executor_;
  pg_conn* conn_ = nullptr;
  std::optional<boost::asio::posix::stream_descriptor> socket_;
  int socket_fd_ = -1;
  boost::asio::steady_timer timer_;
  std::vector<std::string> notifications_;
  bool waiting_input_ = false;  // in wait_input: interrupt() may end the wait
};

}  // namespace tokengate::cluster
