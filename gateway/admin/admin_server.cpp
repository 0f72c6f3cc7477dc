// Beast sessions for the admin API: one coroutine per connection reads a request
// (size and time limited), asks AdminApi, writes the answer, keeps the connection
// alive as the client asks. The same template serves TCP and the unix socket.
#include "gateway/admin/admin_server.hpp"

#include <fmt/format.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <tuple>

#include "gateway/http/error_response.hpp"
#include "gateway/obs/access_log.hpp"
#include "gateway/obs/contain.hpp"

namespace tokengate::gateway {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using local = asio::local::stream_protocol;
using boost::system::error_code;

namespace {

constexpr std::size_t kHeaderLimit = 16 * 1024;
constexpr std::uint64_t kBodyLimit = 1024 * 1024;  // token requests are tiny
constexpr auto kReadTimeout = std::chrono::seconds(30);
constexpr auto kWriteTimeout = std::chrono::seconds(30);
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

template <class Stream>
asio::awaitable<void> write_response(Stream& stream, AdminResponse r, unsigned version, bool keep_alive,
                                     bool head, error_code& ec) {
  http::response<http::string_body> res{static_cast<http::status>(r.status), version};
  if (!r.content_type.empty()) res.set(http::field::content_type, r.content_type);
  for (auto& [name, value] : r.headers) res.insert(name, value);
  res.keep_alive(keep_alive);
  if (r.status == 204 || r.status == 304) {
    // no body, no Content-Length
  } else if (head) {
    res.content_length(r.body.size());
  } else {
    res.body() = std::move(r.body);
    res.prepare_payload();
  }
  stream.expires_after(kWriteTimeout);
  http::response_serializer<http::string_body> sr{res};
  if (head) sr.split(true);
  std::size_t n = 0;
  if (head) {
    std::tie(ec, n) = co_await http::async_write_header(stream, sr, use_tuple);
  } else {
    std::tie(ec, n) = co_await http::async_write(stream, sr, use_tuple);
  }
}

template <class Stream>
asio::awaitable<void> session(Stream stream, AdminApi& api, bool trusted, std::string client) {
  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(kHeaderLimit);
    parser.body_limit(kBodyLimit);
    stream.expires_after(kReadTimeout);
    auto [ec, n] = co_await http::async_read(stream, buffer, parser, use_tuple);
    if (ec) {
      // A clean close or a timeout ends the session; oversized or malformed input
      // gets one error answer first.
      int status = 0;
      if (ec == http::error::body_limit) {
        status = 413;
      } else if (ec == http::error::header_limit) {
        status = 431;
      } else if (ec.category() == http::make_error_code(http::error::bad_target).category() &&
                 ec != http::error::end_of_stream && ec != http::error::partial_message) {
        status = 400;
      }
      if (status != 0) {
        AdminResponse r;
        r.status = status;
        r.body =
            error_body(error_code_for(status), status == 400 ? "malformed request" : "request too large");
        r.headers.emplace_back("Cache-Control", "no-store");
        error_code wec;
        co_await write_response(stream, std::move(r), 11, false, false, wec);
      }
      break;
    }
    auto& req = parser.get();
    AdminRequest request;
    request.method = std::string(req.method_string());
    request.target = std::string(req.target());
    std::size_t auth_count = 0;
    for (const auto& field : req) {
      if (field.name() == http::field::authorization) {
        ++auth_count;
        request.authorization = std::string(field.value());
      } else if (beast::iequals(field.name_string(), "Idempotency-Key")) {
        request.idempotency_key = std::string(field.value());
      }
    }
    request.repeated_authorization = auth_count > 1;
    request.body = std::move(req.body());
    request.trusted = trusted;
    request.client = client;
    AdminResponse response = api.handle(request);
    const bool keep_alive = req.keep_alive();
    error_code wec;
    co_await write_response(stream, std::move(response), req.version(), keep_alive, request.method == "HEAD",
                            wec);
    if (wec || !keep_alive) break;
  }
  error_code ignored;
  stream.socket().shutdown(asio::socket_base::shutdown_both, ignored);
}

std::string peer_of(const tcp::socket& socket) {
  error_code ec;
  const auto ep = socket.remote_endpoint(ec);
  if (ec) return "unknown";
  return ep.address().is_v6() ? fmt::format("[{}]:{}", ep.address().to_string(), ep.port())
                              : fmt::format("{}:{}", ep.address().to_string(), ep.port());
}

}  // namespace

struct AdminServer::Impl {
  explicit Impl(AdminApi& a) : api(a), tcp_acceptor(context), unix_acceptor(context) {}

  // Out of file descriptors: wait a little instead of spinning on accept.
  asio::awaitable<void> pause_after_accept_error() {
    asio::steady_timer timer(context, std::chrono::milliseconds(50));
    co_await timer.async_wait(use_tuple);
  }

  asio::awaitable<void> accept_tcp() {
    for (;;) {
      auto [ec, socket] = co_await tcp_acceptor.async_accept(use_tuple);
      if (ec == asio::error::operation_aborted || !tcp_acceptor.is_open()) co_return;
      if (ec) {
        co_await pause_after_accept_error();
        continue;
      }
      std::string client = peer_of(socket);
      asio::co_spawn(context, session(beast::tcp_stream(std::move(socket)), api, false, std::move(client)),
                     ContainExceptions{"admin connection"});
    }
  }

  asio::awaitable<void> accept_unix() {
    for (;;) {
      auto [ec, socket] = co_await unix_acceptor.async_accept(use_tuple);
      if (ec == asio::error::operation_aborted || !unix_acceptor.is_open()) co_return;
      if (ec) {
        co_await pause_after_accept_error();
        continue;
      }
      asio::co_spawn(context, session(beast::basic_stream<local>(std::move(socket)), api, true, "unix"),
                     ContainExceptions{"admin connection"});
    }
  }

  AdminApi& api;
  asio::io_context context{1};
  tcp::acceptor tcp_acceptor;
  local::acceptor unix_acceptor;
  std::optional<std::filesystem::path> socket_path;
  std::thread thread;
};

AdminServer::AdminServer(AdminApi& api) : impl_(std::make_unique<Impl>(api)) {}

AdminServer::~AdminServer() { stop(); }

bool AdminServer::listen(const conf::AdminConfig& admin, std::string& error) {
  error_code ec;
  if (admin.listen) {
    tcp::endpoint endpoint;
    const auto address = asio::ip::make_address(admin.listen->host, ec);
    if (!ec) {
      endpoint = tcp::endpoint(address, admin.listen->port);
    } else {
      tcp::resolver resolver(impl_->context);
      const auto results = resolver.resolve(admin.listen->host, std::to_string(admin.listen->port), ec);
      if (ec || results.empty()) {
        error = fmt::format("cannot resolve admin.listen {}: {}", admin.listen->to_string(), ec.message());
        return false;
      }
      endpoint = results.begin()->endpoint();
    }
    auto& a = impl_->tcp_acceptor;
    a.open(endpoint.protocol(), ec);
    if (!ec) a.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) a.bind(endpoint, ec);
    if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      error = fmt::format("cannot listen on admin.listen {}: {}", admin.listen->to_string(), ec.message());
      a.close(ec);
      return false;
    }
  }
  if (admin.socket) {
    const auto& path = *admin.socket;
    std::error_code fec;
    const auto status = std::filesystem::symlink_status(path, fec);
    if (std::filesystem::exists(status)) {
      if (!std::filesystem::is_socket(status)) {
        error =
            fmt::format("admin.socket {} exists and is not a socket; refusing to replace it", path.string());
        impl_->tcp_acceptor.close(ec);
        return false;
      }
      // A socket file left by a gateway that died: nobody answers on it.
      local::socket probe(impl_->context);
      probe.connect(local::endpoint(path.string()), ec);
      if (!ec) {
        error = fmt::format("admin.socket {} is in use by another process", path.string());
        impl_->tcp_acceptor.close(ec);
        return false;
      }
      std::filesystem::remove(path, fec);
    }
    if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path(), fec);
    auto& a = impl_->unix_acceptor;
    a.open(local(), ec);
    // The socket is the trust boundary: created 0600 (umask), never readable by others
    // even for a moment.
    const mode_t old_mask = ::umask(0177);
    if (!ec) a.bind(local::endpoint(path.string()), ec);
    ::umask(old_mask);
    if (!ec && ::chmod(path.c_str(), 0600) != 0) ec = error_code(errno, boost::system::system_category());
    if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      error = fmt::format("cannot listen on admin.socket {}: {}", path.string(), ec.message());
      error_code ignored;
      a.close(ignored);
      impl_->tcp_acceptor.close(ignored);
      return false;
    }
    impl_->socket_path = path;
  }
  return true;
}

std::optional<std::uint16_t> AdminServer::tcp_port() const {
  if (!impl_->tcp_acceptor.is_open()) return std::nullopt;
  error_code ec;
  const auto ep = impl_->tcp_acceptor.local_endpoint(ec);
  if (ec) return std::nullopt;
  return ep.port();
}

bool AdminServer::has_socket() const { return impl_->unix_acceptor.is_open(); }

void AdminServer::start() {
  if (impl_->tcp_acceptor.is_open()) {
    asio::co_spawn(impl_->context, impl_->accept_tcp(), ContainExceptions{"admin accept loop"});
  }
  if (impl_->unix_acceptor.is_open()) {
    asio::co_spawn(impl_->context, impl_->accept_unix(), ContainExceptions{"admin socket accept loop"});
  }
  impl_->thread = std::thread([this] { run_contained(impl_->context, "admin listener"); });
}

void AdminServer::stop() {
  if (!impl_) return;
  asio::post(impl_->context, [this] {
    error_code ec;
    impl_->tcp_acceptor.close(ec);
    impl_->unix_acceptor.close(ec);
  });
  impl_->context.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
  error_code ec;
  impl_->tcp_acceptor.close(ec);
  impl_->unix_acceptor.close(ec);
  if (impl_->socket_path) {
    std::error_code fec;
    std::filesystem::remove(*impl_->socket_path, fec);
    impl_->socket_path.reset();
  }
}

}  // namespace tokengate::gateway
