// Keep-alive connections to one upstream, owned by one worker thread (no locks).
// Connections are reused across client connections; a broken idle one is detected
// by the caller (write/read error before any response byte) and replaced.
// https upstreams use TLS verified against the system store or the upstream's `ca`.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "conf/config.hpp"
#include "gateway/proxy/deadline.hpp"

namespace tokengate::gateway {

using TlsStream = boost::beast::ssl_stream<boost::asio::ip::tcp::socket>;

struct UpstreamConn {
  // Exactly one of plain / tls is set, by UpstreamPool::connect.
  std::unique_ptr<boost::asio::ip::tcp::socket> plain;
  std::unique_ptr<TlsStream> tls;
  boost::beast::flat_buffer buffer;                    // bytes read from the upstream not yet parsed
  std::chrono::steady_clock::time_point idle_since{};  // set when parked in the pool

  boost::asio::ip::tcp::socket& socket() noexcept {
    return tls ? boost::beast::get_lowest_layer(*tls) : *plain;
  }
};

template <class Stream>
Stream& stream_of(UpstreamConn& conn) noexcept;
template <>
inline boost::asio::ip::tcp::socket& stream_of<boost::asio::ip::tcp::socket>(UpstreamConn& conn) noexcept {
  return *conn.plain;
}
template <>
inline TlsStream& stream_of<TlsStream>(UpstreamConn& conn) noexcept {
  return *conn.tls;
}

class UpstreamPool {
 public:
  explicit UpstreamPool(const conf::Upstream& upstream);

  const std::string& name() const noexcept { return name_; }
  bool https() const noexcept { return https_; }
  // "host:port" for the Host header sent upstream.
  const std::string& host_header() const noexcept { return host_header_; }
  const std::string& base_path() const noexcept { return base_path_; }

  // An idle connection, or nullptr. The caller owns it until give_back.
  std::unique_ptr<UpstreamConn> take();
  void give_back(std::unique_ptr<UpstreamConn> conn);
  void clear() { idle_.clear(); }
  // Closes the idle connections parked no later than `dead` was: when the upstream
  // closed one idle connection (a restart, its keep-alive timeout), the ones that
  // have waited at least as long are most likely closed too.
  void drop_idle_since(const UpstreamConn& dead);

  // Resolves (once, then cached), connects with TCP_NODELAY and, for https, does
  // the verified TLS handshake, within `timeout` enforced through `deadline` (the
  // session's upstream one, which it leaves disarmed and watching nothing). Never
  // throws.
  boost::asio::awaitable<boost::system::error_code> connect(UpstreamConn& conn, Deadline& deadline,
                                                            conf::Duration timeout);

 private:
  boost::system::error_code make_tls_context();

  static constexpr std::size_t kMaxIdle = 256;
  std::string name_;
  bool https_ = false;
  std::string host_;
  std::uint16_t port_ = 0;
  std::string host_header_;
  std::string base_path_;
  std::optional<std::filesystem::path> ca_;
  std::unique_ptr<boost::asio::ssl::context> tls_context_;  // created on first use
  std::vector<boost::asio::ip::tcp::endpoint> endpoints_;   // empty until resolved
  std::vector<std::unique_ptr<UpstreamConn>> idle_;
};

// True if a pooled connection still looks usable: the peer has not closed it and
// sent nothing unsolicited (a non-blocking MSG_PEEK on the TCP socket).
bool idle_connection_alive(UpstreamConn& conn) noexcept;

}  // namespace tokengate::gateway
