// Per-worker upstream keep-alive pool; see upstream_pool.hpp.
#include "gateway/upstream_pool.hpp"

#include <sys/socket.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cerrno>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

namespace tokengate::gateway {

namespace asio = boost::asio;
using boost::system::error_code;
using tcp = asio::ip::tcp;

UpstreamPool::UpstreamPool(const conf::Upstream& upstream, std::shared_ptr<ssl::context> tls)
    : name_(upstream.name),
      https_(upstream.https),
      host_(upstream.host),
      port_(upstream.port),
      base_path_(upstream.base_path),
      tls_(std::move(tls)) {
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
  idle_.push_back(std::move(conn));
}

asio::awaitable<error_code> UpstreamPool::connect(UpstreamConn& conn, conf::Duration timeout) {
  constexpr auto token = asio::as_tuple(asio::use_awaitable);
  if (endpoints_.empty()) {
    tcp::resolver resolver(co_await asio::this_coro::executor);
    auto [ec, results] = co_await resolver.async_resolve(host_, std::to_string(port_), token);
    if (ec) co_return ec;
    if (endpoints_.empty()) {
      for (const auto& r : results) endpoints_.push_back(r.endpoint());
    }
    if (endpoints_.empty()) co_return asio::error::host_not_found;
  }
  conn.stream.tcp().expires_after(timeout);
  auto [ec, endpoint] = co_await conn.stream.tcp().async_connect(endpoints_, token);
  if (ec) co_return ec;
  error_code ignored;
  conn.stream.socket().set_option(tcp::no_delay(true), ignored);
  if (!https_) co_return error_code{};
  if (!tls_) co_return error_code(asio::error::no_protocol_option);
  conn.stream.start_tls(tls_);
  SSL* ssl = conn.stream.tls()->native_handle();
  error_code ip_ec;
  asio::ip::make_address(host_, ip_ec);
  if (ip_ec) {
    // A name: SNI plus hostname check against the certificate's DNS names.
    SSL_set_tlsext_host_name(ssl, host_.c_str());
    SSL_set1_host(ssl, host_.c_str());
  } else {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host_.c_str());
  }
  auto [hec] = co_await conn.stream.tls()->async_handshake(ssl::stream_base::client, token);
  co_return hec;
}

bool idle_connection_alive(UpstreamConn& conn) noexcept {
  if (conn.buffer.size() != 0) return false;
  char byte;
  if (conn.stream.tls()) {
    // Buffered TLS records (session tickets) are normal; unread application data is not.
    if (SSL_pending(conn.stream.tls()->native_handle()) > 0) return false;
  }
  const auto n = ::recv(conn.stream.socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK;
  return false;  // 0 = closed by the peer; > 0 = unsolicited bytes, not a clean state
}

}  // namespace tokengate::gateway
