// TLS on the public listener (OpenSSL through Asio): the server context (TLS 1.2+,
// ALPN http/1.1, reloadable) and a client stream that is either plain TCP or TLS
// over TCP so one session code path serves both. (https upstreams: upstream_pool.)
#pragma once

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include "conf/config.hpp"

namespace tokengate::gateway {

namespace ssl = boost::asio::ssl;

// Throws std::runtime_error naming the file when the certificate or key cannot be
// loaded or do not match.
std::shared_ptr<ssl::context> make_server_tls_context(const conf::TlsConfig& tls);

// The listener's current server context; swapped by a reload (new connections get
// the new certificate, established ones keep theirs).
class TlsHolder {
 public:
  void publish(std::shared_ptr<ssl::context> context) {
    std::lock_guard lock(mutex_);
    context_ = std::move(context);
    version_.fetch_add(1, std::memory_order_release);
  }
  std::uint64_t version() const noexcept { return version_.load(std::memory_order_acquire); }
  std::pair<std::shared_ptr<ssl::context>, std::uint64_t> load() const {
    std::lock_guard lock(mutex_);
    return {context_, version_.load(std::memory_order_relaxed)};
  }

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<ssl::context> context_;
  std::atomic<std::uint64_t> version_{0};
};

// Plain TCP or TLS over TCP. Both branches of each async operation have the same
// completion signature, so the initiating functions have one return type whatever
// the token. Timeouts: gateway/proxy/deadline.hpp, on socket().
class MaybeTlsStream {
 public:
  using executor_type = boost::asio::any_io_executor;
  using TlsStream = boost::beast::ssl_stream<boost::asio::ip::tcp::socket>;

  explicit MaybeTlsStream(boost::asio::ip::tcp::socket socket) : plain_(std::in_place, std::move(socket)) {}
  MaybeTlsStream(boost::asio::ip::tcp::socket socket, std::shared_ptr<ssl::context> context)
      : context_(std::move(context)), tls_(std::in_place, std::move(socket), *context_) {}

  executor_type get_executor() noexcept { return socket().get_executor(); }
  boost::asio::ip::tcp::socket& socket() noexcept {
    return tls_ ? boost::beast::get_lowest_layer(*tls_) : *plain_;
  }
  TlsStream* tls() noexcept { return tls_ ? &*tls_ : nullptr; }

  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    if (tls_) return tls_->async_read_some(buffers, std::forward<Token>(token));
    return plain_->async_read_some(buffers, std::forward<Token>(token));
  }
  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    if (tls_) return tls_->async_write_some(buffers, std::forward<Token>(token));
    return plain_->async_write_some(buffers, std::forward<Token>(token));
  }

 private:
  std::shared_ptr<ssl::context> context_;  // outlives the SSL object made from it
  std::optional<boost::asio::ip::tcp::socket> plain_;
  std::optional<TlsStream> tls_;
};

// OpenSSL's reason for a failed certificate verification on `ssl` (e.g.
// "hostname mismatch", "unable to get local issuer certificate"), or "".
std::string tls_verify_error(SSL* ssl);

}  // namespace tokengate::gateway
