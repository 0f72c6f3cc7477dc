#include "cluster/pg_connection.hpp"

#include <fmt/format.h>
#include <libpq-fe.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fstream>

namespace tokengate::cluster {

namespace asio = boost::asio;
using namespace boost::asio::experimental::awaitable_operators;
using Clock = std::chrono::steady_clock;

namespace {

// libpq's messages end in a newline and may span lines; the logs want one line.
std::string one_line(const char* message) {
  std::string out = message ? message : "";
  for (auto& c : out) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out.empty() ? "unknown error" : out;
}

std::string read_password(const std::filesystem::path& file) {
  std::ifstream in(file);
  std::string line;
  if (!in || !std::getline(in, line)) {
    throw PgError(fmt::format("cannot read store.postgres.password_file {}", file.string()), "", true);
  }
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

}  // namespace

PgConnection::PgConnection(asio::any_io_executor executor) : executor_(executor), timer_(executor) {}

PgConnection::~PgConnection() { close(); }

bool PgConnection::connected() const noexcept { return conn_ && PQstatus(conn_) == CONNECTION_OK; }

void PgConnection::close() noexcept {
  if (socket_) {
    // libpq owns the descriptor: Asio lets go of it instead of closing it.
    boost::system::error_code ec;
    socket_->cancel(ec);
    socket_->release();
    socket_.reset();
  }
  socket_fd_ = -1;
  timer_.cancel();
  if (conn_) PQfinish(conn_);
  conn_ = nullptr;
}

// Only an idle wait is cut short: cancelling the timer under a statement would
// read as the statement's deadline passing.
void PgConnection::interrupt() noexcept {
  if (waiting_input_) timer_.cancel();
}

void PgConnection::fail(std::string what, bool broken) {
  if (broken) close();
  throw PgError(std::move(what), "", broken);
}

// The socket can change while connecting (another address of the host is tried).
void PgConnection::attach_socket() {
  const int fd = PQsocket(conn_);
  if (fd == socket_fd_ && socket_) return;
  if (socket_) {
    socket_->release();
    socket_.reset();
  }
  socket_fd_ = fd;
  if (fd < 0) return;
  socket_.emplace(executor_, fd);
}

asio::awaitable<PgConnection::Ready> PgConnection::wait(bool want_read, bool want_write,
                                                        Clock::time_point until) {
  attach_socket();
  if (!socket_) fail("the connection to PostgreSQL has no socket");
  timer_.expires_at(until);
  using W = asio::posix::descriptor_base::wait_type;
  auto tok = asio::as_tuple(asio::use_awaitable);
  if (want_read && want_write) {
    auto r = co_await (socket_->async_wait(W::wait_read, tok) || socket_->async_wait(W::wait_write, tok) ||
                       timer_.async_wait(tok));
    // An error on the socket wait (cancelled by close()) ends the wait like the deadline.
    if (r.index() == 0) co_return std::get<0>(std::get<0>(r)) ? Ready::Timeout : Ready::Read;
    if (r.index() == 1) co_return std::get<0>(std::get<1>(r)) ? Ready::Timeout : Ready::Write;
    co_return Ready::Timeout;
  }
  auto r =
      co_await (socket_->async_wait(want_read ? W::wait_read : W::wait_write, tok) || timer_.async_wait(tok));
  if (r.index() == 0) {
    auto [ec] = std::get<0>(r);
    if (ec) co_return Ready::Timeout;
    co_return want_read ? Ready::Read : Ready::Write;
  }
  co_return Ready::Timeout;
}

asio::awaitable<void> PgConnection::connect(const ConnectOptions& options) {
  close();
  std::optional<std::string> password;
  if (options.password_file) password = read_password(*options.password_file);
  // Our defaults come first and the URI after them (expand_dbname), so what the
  // operator wrote in the URI wins. Keepalives and tcp_user_timeout make a dead
  // peer or a cut network surface within about 10 s on an idle connection; a hung
  // server (accepting TCP but not answering) is caught by the statement deadlines.
  std::vector<const char*> keys = {
      "connect_timeout",  "keepalives",       "keepalives_idle",  "keepalives_interval",
      "keepalives_count", "tcp_user_timeout", "application_name", "dbname"};
  const std::string connect_seconds = std::to_string(std::max<long long>(
      1, std::chrono::duration_cast<std::chrono::seconds>(options.connect_timeout).count()));
  std::vector<const char*> values = {connect_seconds.c_str(), "1", "5", "2", "2", "10000", "tokengate",
                                     options.url.c_str()};
  if (password) {
    keys.push_back("password");
    values.push_back(password->c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  conn_ = PQconnectStartParams(keys.data(), values.data(), /*expand_dbname=*/1);
  if (!conn_) throw PgError("out of memory connecting to PostgreSQL", "", true);
  if (PQstatus(conn_) == CONNECTION_BAD) fail(one_line(PQerrorMessage(conn_)));
  const auto until = Clock::now() + options.connect_timeout;
  PostgresPollingStatusType poll = PGRES_POLLING_WRITING;
  while (poll != PGRES_POLLING_OK) {
    if (poll == PGRES_POLLING_FAILED) fail(one_line(PQerrorMessage(conn_)));
    Ready r = co_await wait(poll == PGRES_POLLING_READING, poll == PGRES_POLLING_WRITING, until);
    if (r == Ready::Timeout) {
      fail(fmt::format("connecting to PostgreSQL timed out after {} ms", options.connect_timeout.count()));
    }
    poll = PQconnectPoll(conn_);
  }
  attach_socket();
  if (PQsetnonblocking(conn_, 1) != 0) fail(one_line(PQerrorMessage(conn_)));
}

void PgConnection::consume() {
  if (!PQconsumeInput(conn_)) fail(one_line(PQerrorMessage(conn_)));
  while (PGnotify* n = PQnotifies(conn_)) {
    notifications_.emplace_back(n->extra ? n->extra : "");
    PQfreemem(n);
  }
}

asio::awaitable<std::vector<Row>> PgConnection::query(std::string sql, std::vector<Param> params,
                                                      std::chrono::milliseconds timeout) {
  if (!connected()) fail("not connected to PostgreSQL");
  const auto until = Clock::now() + timeout;
  std::vector<const char*> values;
  for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
  if (!PQsendQueryParams(conn_, sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(), nullptr,
                         nullptr, 0)) {
    fail(one_line(PQerrorMessage(conn_)));
  }
  for (;;) {
    const int f = PQflush(conn_);
    if (f == 0) break;
    if (f < 0) fail(one_line(PQerrorMessage(conn_)));
    // Read as well while the send buffer is full: the server may be waiting for us.
    Ready r = co_await wait(true, true, until);
    if (r == Ready::Timeout) fail("PostgreSQL did not answer in time");
    if (r == Ready::Read) consume();
  }
  std::vector<Row> rows;
  std::string error, sqlstate;
  bool error_seen = false;
  for (;;) {
    while (PQisBusy(conn_)) {
      Ready r = co_await wait(true, false, until);
      if (r == Ready::Timeout) fail("PostgreSQL did not answer in time");
      consume();
    }
    PGresult* res = PQgetResult(conn_);
    if (!res) break;
    const auto status = PQresultStatus(res);
    if (status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK) {
      rows.clear();
      const int n = PQntuples(res), m = PQnfields(res);
      for (int i = 0; i < n; ++i) {
        Row row;
        for (int j = 0; j < m; ++j) {
          if (PQgetisnull(res, i, j)) {
            row.emplace_back(std::nullopt);
          } else {
            row.emplace_back(
                std::string(PQgetvalue(res, i, j), static_cast<std::size_t>(PQgetlength(res, i, j))));
          }
        }
        rows.push_back(std::move(row));
      }
    } else if (!error_seen) {
      error_seen = true;
      const char* state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
      sqlstate = state ? state : "";
      const char* primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
      error = one_line(primary ? primary : PQresultErrorMessage(res));
    }
    PQclear(res);
  }
  while (PGnotify* n = PQnotifies(conn_)) {
    notifications_.emplace_back(n->extra ? n->extra : "");
    PQfreemem(n);
  }
  if (error_seen) {
    const bool broken = !connected();
    if (broken) close();
    throw PgError(std::move(error), std::move(sqlstate), broken);
  }
  co_return rows;
}

asio::awaitable<bool> PgConnection::wait_input(Clock::time_point until) {
  if (!connected()) fail("not connected to PostgreSQL");
  waiting_input_ = true;
  Ready r = co_await wait(true, false, until);
  waiting_input_ = false;
  if (r == Ready::Timeout) co_return false;
  consume();
  if (PQstatus(conn_) != CONNECTION_OK) fail("the connection to PostgreSQL was lost");
  co_return true;
}

std::vector<std::string> PgConnection::take_notifications() {
  std::vector<std::string> out;
  out.swap(notifications_);
  return out;
}

}  // namespace tokengate::cluster
