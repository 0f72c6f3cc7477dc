// Per-worker upstream keep-alive pool; see upstream_pool.hpp.
#include "gateway/proxy/upstream_pool.hpp"

#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>

namespace tokengate::gateway {

namespace asio = boost::asio;
namespace beast = boost::beast;
using boost::system::error_code;
using tcp = asio::ip::tcp;

UpstreamPool::UpstreamPool(const conf::Upstream& upstream)
    : name_(upstream.name),
      https_(upstream.https),
      host_(upstream.host),
      port_(upstream.port),
      base_path_(upstream.base_path),
      ca_(upstream.ca) {
  const bool ipv6 = host_.find(':') != std::string::npos;
  host_header_ = ipv6 ? "[" + host_ + "]" : host_;
  host_header_ += ':';
  host_header_ += std::to_string(port_);
  error_code ec;
  const auto address = asio::ip::make_address(host_, ec);
  if (!ec) endpoints_.emplace_back(address, port_);
}

std::unique_ptr<UpstreamConn> UpstreamPool::take() {
  if (idle_.empty()) return nullptr;
  auto conn = std::move(idle_.back());
  idle_.pop_back();
  return conn;
}

void UpstreamPool::give_back(std::unique_ptr<UpstreamConn> conn) {
  if (idle_.size() >= kMaxIdle) return;  // closes it
  conn->idle_since = std::chrono::steady_clock::now();
  idle_.push_back(std::move(conn));
}

void UpstreamPool::drop_idle_since(const UpstreamConn& dead) {
  // idle_ is ordered by idle_since (pushed at the back, taken from the back).
  const auto first_kept = std::find_if(idle_.begin(), idle_.end(),
                                       [&](const auto& conn) { return conn->idle_since > dead.idle_since; });
  idle_.erase(idle_.begin(), first_kept);
}

error_code UpstreamPool::make_tls_context() {
  if (tls_context_) return {};
  try {
    auto ctx = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
    error_code ec;
    ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                         asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                         asio::ssl::context::no_tlsv1_1,
                     ec);
    if (ec) return ec;
    if (ca_) {
      ctx->load_verify_file(ca_->string(), ec);
    } else {
      ctx->set_default_verify_paths(ec);
    }
    if (ec) return ec;
    ctx->set_verify_mode(asio::ssl::verify_peer, ec);
    if (ec) return ec;
    tls_context_ = std::move(ctx);
    return {};
  } catch (const boost::system::system_error& e) {
    return e.code();
  }
}

asio::awaitable<error_code> UpstreamPool::connect(UpstreamConn& conn, Deadline& deadline,
                                                  conf::Duration timeout) {
  constexpr auto token = asio::as_tuple(asio::use_awaitable);
  const auto executor = co_await asio::this_coro::executor;
  if (endpoints_.empty()) {
    tcp::resolver resolver(executor);
    auto [ec, results] = co_await resolver.async_resolve(host_, std::to_string(port_), token);
    if (ec) co_return ec;
    if (endpoints_.empty()) {
      for (const auto& r : results) endpoints_.push_back(r.endpoint());
    }
    if (endpoints_.empty()) co_return asio::error::host_not_found;
  }
  if (https_) {
    if (const auto ec = make_tls_context()) co_return ec;
    conn.tls = std::make_unique<TlsStream>(executor, *tls_context_);
  } else {
    conn.plain = std::make_unique<tcp::socket>(executor);
  }
  tcp::socket& socket = conn.socket();
  const DeadlineScope scope(deadline);
  deadline.socket = &socket;
  deadline.arm(timeout);
  {
    auto [ec, endpoint] = co_await asio::async_connect(socket, endpoints_, token);
    if (ec) co_return deadline.why(ec);
  }
  error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  if (conn.tls) {
    // SNI and RFC 6125 host name check against the name in the upstream URL.
    if (!SSL_set_tlsext_host_name(conn.tls->native_handle(), host_.c_str())) {
      co_return error_code(static_cast<int>(::ERR_get_error()), asio::error::get_ssl_category());
    }
    // OpenSSL's own check (not a verify callback) so a mismatch is recorded as
    // X509_V_ERR_HOSTNAME_MISMATCH and the log can say why the handshake failed.
    SSL* ssl = conn.tls->native_handle();
    error_code ip_ec;
    asio::ip::make_address(host_, ip_ec);
    const int set = ip_ec ? SSL_set1_host(ssl, host_.c_str())
                          : X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host_.c_str());
    if (set != 1) co_return error_code(static_cast<int>(::ERR_get_error()), asio::error::get_ssl_category());
    auto [ec] = co_await conn.tls->async_handshake(asio::ssl::stream_base::client, token);
    co_return deadline.why(ec);
  }
  co_return error_code{};
}

bool idle_connection_alive(UpstreamConn& conn) noexcept {
  if (conn.buffer.size() != 0) return false;
  char byte;
  const auto n = ::recv(conn.socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK;
  return false;  // 0 = closed by the peer; > 0 = unsolicited bytes (TLS: e.g. a close_notify)
}

}  // namespace tokengate::gateway
