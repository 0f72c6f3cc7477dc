// tokengate-demo-upstream: an HTTP/1.1 echo server for the README demo and the
// integration tests. Every request is answered with what it looked like on arrival.
//
//   tokengate-demo-upstream --listen 127.0.0.1:9000
//
// Any target: 200 {"method","target","headers":[[name,value],...],"body_bytes","body_sha256"}
// Special targets used by the tests:
//   /__slow?ms=N           answer after N ms
//   /__download?bytes=N    stream N bytes (byte i is i % 256), chunked; &cl=1 for Content-Length
//   /__status/N            answer status N (no body for 1xx/204/304)
//   /__close               send a head promising more body than is sent, then close
//   /__ws                  WebSocket upgrade; echoes every message
//   /__log                 {"connections": N, "requests": [{"method","target","complete"},...]} of
//                          everything received so far (except /__log itself), so a test
//                          can prove that the gateway forwarded nothing.
// One thread per connection with blocking I/O: simple, and plenty for tests and demos.
#include <openssl/evp.h>

#include <array>
#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/json.hpp>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace json = boost::json;
using tcp = asio::ip::tcp;

namespace {

// Incremental SHA-256 of a request body (OpenSSL EVP), so a 100 MiB upload is
// checked without being held; the tests compare it with Python's hashlib.
class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new(), &EVP_MD_CTX_free) {
    EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr);
  }

  void update(const void* data, std::size_t size) { EVP_DigestUpdate(ctx_.get(), data, size); }

  std::string hex_digest() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    EVP_DigestFinal_ex(ctx_.get(), digest, &length);
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    for (unsigned int i = 0; i < length; ++i) {
      out += kHex[digest[i] >> 4];
      out += kHex[digest[i] & 0xf];
    }
    return out;
  }

 private:
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx_;
};

// What the tests query at /__log. A request is logged when its head arrives and
// marked complete once its whole body has been read, so a test can tell "nothing
// reached the upstream" from "a head arrived but the body was aborted".
class RequestLog {
 public:
  void connection() { connections_.fetch_add(1); }
  std::size_t request(std::string_view method, std::string_view target) {
    std::lock_guard lock(mutex_);
    requests_.push_back({std::string(method), std::string(target), false});
    return requests_.size() - 1;
  }
  void complete(std::size_t index) {
    std::lock_guard lock(mutex_);
    requests_[index].complete = true;
  }
  json::object snapshot() const {
    json::array requests;
    {
      std::lock_guard lock(mutex_);
      for (const auto& r : requests_) {
        requests.push_back({{"method", r.method}, {"target", r.target}, {"complete", r.complete}});
      }
    }
    return {{"connections", connections_.load()}, {"requests", std::move(requests)}};
  }

 private:
  struct Entry {
    std::string method;
    std::string target;
    bool complete;
  };
  std::atomic<std::uint64_t> connections_{0};
  mutable std::mutex mutex_;
  std::vector<Entry> requests_;
};

RequestLog g_log;

std::optional<std::uint64_t> query_number(std::string_view target, std::string_view key) {
  auto q = target.find('?');
  if (q == std::string_view::npos) return std::nullopt;
  std::string_view query = target.substr(q + 1);
  while (!query.empty()) {
    auto amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    if (pair.size() > key.size() && pair.substr(0, key.size()) == key && pair[key.size()] == '=') {
      std::string_view value = pair.substr(key.size() + 1);
      std::uint64_t n = 0;
      auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec == std::errc() && ptr == value.data() + value.size()) return n;
      return std::nullopt;
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

std::string_view path_of(std::string_view target) { return target.substr(0, target.find('?')); }

using Parser = http::request_parser<http::buffer_body>;

// Writes a complete response with a string body; HEAD gets the head only (with the
// Content-Length the body would have had). Returns false when the connection is done.
bool send(tcp::socket& socket, const http::request_header<>& req, http::status status, std::string body,
          bool keep_alive) {
  http::response<http::string_body> res{status, 11};
  res.set(http::field::server, "tokengate-demo-upstream");
  res.keep_alive(keep_alive);
  beast::error_code ec;
  unsigned code = static_cast<unsigned>(status);
  bool bodiless_status = code / 100 == 1 || code == 204 || code == 304;
  if (bodiless_status) {
    if (code == 304) res.set(http::field::etag, "\"demo\"");
  } else {
    res.set(http::field::content_type, "application/json");
    res.body() = std::move(body);
    res.prepare_payload();
  }
  if (req.method() == http::verb::head || bodiless_status) {
    http::response_serializer<http::string_body> sr{res};
    http::write_header(socket, sr, ec);
  } else {
    http::write(socket, res, ec);
  }
  return !ec && keep_alive;
}

// Streams `total` bytes of the i % 256 pattern without holding them in memory.
bool send_download(tcp::socket& socket, const http::request_header<>& req, std::uint64_t total, bool chunked,
                   bool keep_alive) {
  http::response<http::buffer_body> res{http::status::ok, 11};
  res.set(http::field::server, "tokengate-demo-upstream");
  res.set(http::field::content_type, "application/octet-stream");
  res.keep_alive(keep_alive);
  if (chunked) {
    res.chunked(true);
  } else {
    res.content_length(total);
  }
  res.body().data = nullptr;
  res.body().more = true;
  http::response_serializer<http::buffer_body> sr{res};
  beast::error_code ec;
  http::write_header(socket, sr, ec);
  if (ec) return false;
  if (req.method() == http::verb::head) return keep_alive;
  std::array<unsigned char, 65536> block;
  for (std::size_t i = 0; i < block.size(); ++i) block[i] = static_cast<unsigned char>(i);
  std::uint64_t sent = 0;
  while (sent < total) {
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(block.size(), total - sent));
    res.body().data = block.data();
    res.body().size = n;
    res.body().more = true;
    http::write(socket, sr, ec);
    if (ec == http::error::need_buffer) ec = {};
    if (ec) return false;
    sent += n;
  }
  res.body().data = nullptr;
  res.body().size = 0;
  res.body().more = false;
  http::write(socket, sr, ec);
  return !ec && keep_alive;
}

void run_websocket(tcp::socket& socket, Parser& parser) {
  websocket::stream<tcp::socket&> ws{socket};
  beast::error_code ec;
  // The request head was already read; hand it (and any bytes read past it) over.
  http::request<http::empty_body> upgrade{parser.get().base()};
  ws.accept(upgrade, ec);
  if (ec) return;
  for (;;) {
    beast::flat_buffer message;
    ws.read(message, ec);
    if (ec) return;
    ws.text(ws.got_text());
    ws.write(message.data(), ec);
    if (ec) return;
  }
}

void session(tcp::socket socket) {
  g_log.connection();
  beast::flat_buffer buffer;
  beast::error_code ec;
  for (;;) {
    Parser parser;
    parser.header_limit(1 << 20);
    parser.body_limit(boost::none);
    http::read_header(socket, buffer, parser, ec);
    if (ec) return;
    const auto& req = parser.get();
    std::string_view target = req.target();
    std::string_view path = path_of(target);
    std::optional<std::size_t> log_index;
    if (path != "/__log") log_index = g_log.request(req.method_string(), target);

    if (path == "/__ws" && websocket::is_upgrade(req)) {
      // websocket::stream reads from its own buffer; bytes already buffered past the
      // head would be lost, but a client does not send frames before the 101.
      run_websocket(socket, parser);
      return;
    }

    if (req[http::field::expect] == "100-continue" && !parser.is_done()) {
      http::response<http::empty_body> cont{http::status::continue_, 11};
      http::write(socket, cont, ec);
      if (ec) return;
    }

    // Read (and hash) the body in blocks; it is never held whole.
    Sha256 sha;
    std::uint64_t body_bytes = 0;
    std::array<char, 65536> block;
    while (!parser.is_done()) {
      parser.get().body().data = block.data();
      parser.get().body().size = block.size();
      http::read(socket, buffer, parser, ec);
      if (ec == http::error::need_buffer) ec = {};
      if (ec) return;
      std::size_t n = block.size() - parser.get().body().size;
      sha.update(block.data(), n);
      body_bytes += n;
    }
    if (log_index) g_log.complete(*log_index);

    bool keep_alive = req.keep_alive();
    json::array headers;
    for (const auto& field : req) headers.push_back(json::array{field.name_string(), field.value()});
    json::object echo{{"method", req.method_string()},
                      {"target", target},
                      {"headers", std::move(headers)},
                      {"body_bytes", body_bytes},
                      {"body_sha256", sha.hex_digest()}};

    if (path == "/__log") {
      if (!send(socket, req, http::status::ok, json::serialize(g_log.snapshot()), keep_alive)) return;
    } else if (path == "/__slow") {
      std::this_thread::sleep_for(std::chrono::milliseconds(query_number(target, "ms").value_or(1000)));
      if (!send(socket, req, http::status::ok, json::serialize(echo), keep_alive)) return;
    } else if (path == "/__download") {
      bool chunked = query_number(target, "cl").value_or(0) == 0;
      if (!send_download(socket, req, query_number(target, "bytes").value_or(0), chunked, keep_alive)) return;
    } else if (path.starts_with("/__status/")) {
      unsigned code = 0;
      std::string_view digits = path.substr(std::strlen("/__status/"));
      auto [ptr, perr] = std::from_chars(digits.data(), digits.data() + digits.size(), code);
      if (perr != std::errc() || ptr != digits.data() + digits.size() || code < 200 || code > 599) code = 400;
      if (!send(socket, req, static_cast<http::status>(code), json::serialize(echo), keep_alive)) return;
    } else if (path == "/__close") {
      std::string head =
          "HTTP/1.1 200 OK\r\nServer: tokengate-demo-upstream\r\nContent-Type: text/plain\r\n"
          "Content-Length: 1000\r\n\r\nonly-this";
      asio::write(socket, asio::buffer(head), ec);
      socket.shutdown(tcp::socket::shutdown_both, ec);
      return;
    } else {
      if (!send(socket, req, http::status::ok, json::serialize(echo), keep_alive)) return;
    }
  }
}

// "127.0.0.1:9000", "[::1]:0", "localhost:9000".
std::optional<tcp::endpoint> parse_listen(std::string_view text) {
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  std::string host{text.substr(0, colon)};
  std::string_view port_text = text.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host == "localhost") host = "127.0.0.1";
  unsigned port = 0;
  auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || ptr != port_text.data() + port_text.size() || port > 65535) return std::nullopt;
  beast::error_code aec;
  auto address = asio::ip::make_address(host, aec);
  if (aec) return std::nullopt;
  return tcp::endpoint{address, static_cast<std::uint16_t>(port)};
}

}  // namespace

int main(int argc, char** argv) {
  std::string listen = "127.0.0.1:9000";
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--listen" && i + 1 < argc) {
      listen = argv[++i];
    } else if (arg.starts_with("--listen=")) {
      listen = std::string(arg.substr(std::strlen("--listen=")));
    } else {
      std::cerr << "usage: tokengate-demo-upstream [--listen HOST:PORT]\n";
      return 2;
    }
  }
  auto endpoint = parse_listen(listen);
  if (!endpoint) {
    std::cerr << "tokengate-demo-upstream: invalid --listen '" << listen << "' (want HOST:PORT)\n";
    return 2;
  }
  asio::io_context io;
  tcp::acceptor acceptor{io};
  beast::error_code ec;
  acceptor.open(endpoint->protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(*endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    std::cerr << "tokengate-demo-upstream: cannot listen on " << listen << ": " << ec.message() << "\n";
    return 1;
  }
  auto bound = acceptor.local_endpoint();
  std::string host = bound.address().to_string();
  if (bound.address().is_v6()) host = "[" + host + "]";
  std::cerr << "listening on " << host << ":" << bound.port() << std::endl;
  for (;;) {
    tcp::socket socket{io};
    acceptor.accept(socket, ec);
    if (ec) {
      // EMFILE and friends: back off instead of spinning.
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      continue;
    }
    socket.set_option(tcp::no_delay(true), ec);
    std::thread{session, std::move(socket)}.detach();
  }
}
