// Keep-alive connections to one upstream, owned by one worker thread (no locks).
// Connections are reused across client connections; a broken idle one is detected
// by the caller (write/read error before any response byte) and replaced.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <memory>
#include <string>
#include <vector>

#include "conf/config.hpp"
#include "gateway/tls.hpp"

namespace tokengate::gateway {

struct UpstreamConn {
  explicit UpstreamConn(const boost::asio::any_io_executor& executor) : stream(executor) {}
  MaybeTlsStream stream;
  boost::beast::flat_buffer buffer;  // bytes read from the upstream not yet parsed
};

class UpstreamPool {
 public:
  // tls: the client context for an https upstream (made by the control thread).
  UpstreamPool(const conf::Upstream& upstream, std::shared_ptr<ssl::context> tls);

  const std::string& name() const noexcept { return name_; }
  bool https() const noexcept { return https_; }
  // "host:port" for the Host header sent upstream.
  const std::string& host_header() const noexcept { return host_header_; }
  const std::string& base_path() const noexcept { return base_path_; }
  const std::string& host() const noexcept { return host_; }

  // An idle connection, or nullptr. The caller owns it until give_back.
  std::unique_ptr<UpstreamConn> take();
  void give_back(std::unique_ptr<UpstreamConn> conn);
  void clear() { idle_.clear(); }

  // Resolves (once, then cached) and connects with TCP_NODELAY within `timeout`;
  // for https also the TLS handshake with certificate and hostname verification
  // (tls_verify_error(conn.stream) then says why it failed).
  boost::asio::awaitable<boost::system::error_code> connect(UpstreamConn& conn, conf::Duration timeout);

 private:
  static constexpr std::size_t kMaxIdle = 256;
  std::string name_;
  bool https_ = false;
  std::string host_;
  std::uint16_t port_ = 0;
  std::string host_header_;
  std::string base_path_;
  std::shared_ptr<ssl::context> tls_;  // https only; null if the CA could not be loaded
  std::vector<boost::asio::ip::tcp::endpoint> endpoints_;  // empty until resolved
  std::vector<std::unique_ptr<UpstreamConn>> idle_;
};

// True if a pooled connection still looks usable: the peer has not closed it and
// sent nothing unsolicited (a non-blocking MSG_PEEK).
bool idle_connection_alive(UpstreamConn& conn) noexcept;

}  // namespace tokengate::gateway
