// End-to-end session tests of tokengate::gateway::serve over loopback sockets, in
// process: a temp store and config, a tiny upstream that drops every connection
// after one response (the way an upstream's keep-alive timeout does), and Beast
// clients. stderr is captured through a pipe to read `listening on HOST:PORT`.
#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "gateway/server/server.hpp"
#include "store/token_store.hpp"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

// Records what reached the upstream; answers 200 with the target as body and then
// closes the connection without announcing it.
class OneShotUpstream {
 public:
  OneShotUpstream() : acceptor_(context_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    thread_ = std::thread([this] { run(); });
  }
  ~OneShotUpstream() {
    // Unblock accept() with one connection of our own; the loop then sees the flag.
    stopping_ = true;
    boost::system::error_code ignored;
    tcp::socket s(context_);
    s.connect(endpoint_, ignored);
    thread_.join();
  }
  std::uint16_t port() const { return endpoint_.port(); }
  std::vector<http::request<http::string_body>> requests() {
    std::lock_guard lock(mutex_);
    return requests_;
  }
  int connections() {
    std::lock_guard lock(mutex_);
    return connections_;
  }

 private:
  void run() {
    for (;;) {
      boost::system::error_code ec;
      tcp::socket socket(context_);
      acceptor_.accept(socket, ec);
      if (ec || stopping_) return;
      beast::flat_buffer buffer;
      http::request<http::string_body> req;
      http::read(socket, buffer, req, ec);
      if (ec) continue;
      {
        std::lock_guard lock(mutex_);
        ++connections_;
        requests_.push_back(req);
      }
      http::response<http::string_body> res{http::status::ok, 11};
      res.body() = std::string(req.target());
      res.prepare_payload();
      http::write(socket, res, ec);
      socket.shutdown(tcp::socket::shutdown_both, ec);
    }
  }

  asio::io_context context_;
  tcp::acceptor acceptor_;
  tcp::endpoint endpoint_{acceptor_.local_endpoint()};
  std::atomic<bool> stopping_{false};
  std::thread thread_;
  std::mutex mutex_;
  std::vector<http::request<http::string_body>> requests_;
  int connections_ = 0;
};

// Redirects fd 2 into a pipe for the lifetime of the object and collects lines.
class StderrCapture {
 public:
  StderrCapture() {
    REQUIRE(::pipe(fds_) == 0);
    saved_ = ::dup(2);
    ::dup2(fds_[1], 2);
    ::close(fds_[1]);
    reader_ = std::thread([this] {
      char buf[4096];
      for (;;) {
        const auto n = ::read(fds_[0], buf, sizeof buf);
        if (n <= 0) return;
        std::lock_guard lock(mutex_);
        text_.append(buf, static_cast<std::size_t>(n));
        changed_.notify_all();
      }
    });
  }
  ~StderrCapture() {
    ::dup2(saved_, 2);  // closes the pipe's last write end: the reader sees EOF
    ::close(saved_);
    reader_.join();
    ::close(fds_[0]);
  }
  // The port from "listening on HOST:PORT", waiting for the line (bounded).
  int wait_port() {
    static const std::regex re("listening on [^\\s]+:(\\d+)");
    std::unique_lock lock(mutex_);
    std::smatch m;
    changed_.wait_for(lock, std::chrono::seconds(20), [&] { return std::regex_search(text_, m, re); });
    return m.empty() ? 0 : std::stoi(m[1].str());
  }
  std::string text() {
    std::lock_guard lock(mutex_);
    return text_;
  }

 private:
  int fds_[2] = {-1, -1};
  int saved_ = -1;
  std::thread reader_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::string text_;
};

std::filesystem::path make_temp_dir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "tokengate-gw-XXXXXX").string();
  REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
  return tmpl;
}

http::response<http::string_body> send(tcp::socket& socket, beast::flat_buffer& buffer,
                                       http::request<http::string_body> req) {
  req.prepare_payload();
  http::write(socket, req);
  http::response<http::string_body> res;
  http::read(socket, buffer, res);
  return res;
}

}  // namespace

TEST_CASE("serve: stale pooled upstream connections are retried, identity cannot be spoofed") {
  const auto dir = make_temp_dir();
  OneShotUpstream upstream;

  const auto config_path = dir / "tokengate.yaml";
  {
    std::ofstream out(config_path);
    out << "listen: 127.0.0.1:0\n"
           "workers: 1\n"
           "store:\n  path: "
        << (dir / "tokens").string() << "\n  key_file: " << (dir / "key").string()
        << "\n"
           "upstreams:\n  up:\n    url: http://127.0.0.1:"
        << upstream.port()
        << "\n"
           "roles:\n  reader: { permissions: [orders.read] }\n"
           "routes:\n"
           "  - path: /api/**\n    upstream: up\n    require: { permissions: [orders.read] }\n";
  }
  std::string token, token_id;
  {
    auto store =
        tokengate::store::TokenStore::open({dir / "tokens", dir / "key", tokengate::store::system_now});
    tokengate::store::NewToken request;
    request.name = "tester";
    request.roles = {"reader"};
    auto issued = store->create(request);
    token = issued.token.reveal();
    token_id = issued.record.id;
  }

  int exit_code = -1;
  {
    StderrCapture capture;
    std::thread server([&] { exit_code = tokengate::gateway::serve({config_path}); });
    const int port = capture.wait_port();
    REQUIRE_MESSAGE(port > 0, capture.text());

    asio::io_context ctx;
    tcp::socket socket(ctx);
    socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<std::uint16_t>(port)));
    beast::flat_buffer buffer;

    // Two GETs on one client connection: the second finds the pooled upstream
    // connection closed and must be retried on a fresh one, invisibly.
    for (const char* target : {"/api/one", "/api/two"}) {
      http::request<http::string_body> req{http::verb::get, target, 11};
      req.set(http::field::host, "gw.test");
      req.set(http::field::authorization, "Bearer " + token);
      const auto res = send(socket, buffer, req);
      CHECK(res.result_int() == 200);
      CHECK(res.body() == target);
    }

    // A client naming the gateway's own headers in Connection and sending spoofed
    // identity headers: the upstream sees only what the gateway set.
    http::request<http::string_body> req{http::verb::get, "/api/three?x=1", 11};
    req.set(http::field::host, "gw.test");
    req.set(http::field::authorization, "bearer " + token);
    req.set(http::field::connection, "X-Auth-Subject, X-Forwarded-For, X-Request-Id");
    req.set("x-auth-roles", "admin");
    req.set("X-Forwarded-For", "10.0.0.1");
    req.set("X-Request-Id", "client-id-1");
    const auto res = send(socket, buffer, req);
    CHECK(res.result_int() == 200);
    CHECK(res["X-Request-Id"] == "client-id-1");
    CHECK(res.body() == "/api/three?x=1");

    // Denied requests never reach the upstream and carry the challenge of the status
    // table in README.md, "Data plane".
    http::request<http::string_body> denied{http::verb::get, "/api/four", 11};
    denied.set(http::field::host, "gw.test");
    const auto res401 = send(socket, buffer, denied);
    CHECK(res401.result_int() == 401);
    CHECK(res401[http::field::www_authenticate] == "Bearer realm=\"tokengate\"");

    std::raise(SIGTERM);
    server.join();
  }
  CHECK(exit_code == 0);

  const auto seen = upstream.requests();
  REQUIRE(seen.size() == 3);
  CHECK(upstream.connections() == 3);
  const auto& third = seen[2];
  CHECK(third.target() == "/api/three?x=1");
  CHECK(third["X-Auth-Subject"] == token_id);
  CHECK(third["X-Auth-Roles"] == "reader");
  CHECK(third["X-Auth-Permissions"] == "orders.read");
  CHECK(third["X-Auth-Groups"] == "");
  CHECK(third.count("X-Auth-Groups") == 1);
  CHECK(third["X-Forwarded-For"] == "127.0.0.1");
  CHECK(third["X-Request-Id"] == "client-id-1");
  CHECK(third.count(http::field::authorization) == 0);
  CHECK(third.count(http::field::connection) == 0);
  CHECK(third[http::field::host] == "127.0.0.1:" + std::to_string(upstream.port()));
  std::filesystem::remove_all(dir);
}

TEST_CASE("serve: a head arriving byte by byte, pipelined requests, a client leaving mid-head") {
  const auto dir = make_temp_dir();
  OneShotUpstream upstream;
  const auto config_path = dir / "tokengate.yaml";
  {
    std::ofstream out(config_path);
    out << "listen: 127.0.0.1:0\nworkers: 1\nstore:\n  path: " << (dir / "tokens").string()
        << "\n  key_file: " << (dir / "key").string()
        << "\nupstreams:\n  up:\n    url: http://127.0.0.1:" << upstream.port()
        << "\nroutes:\n  - path: /pub/**\n    upstream: up\n    public: true\n";
  }
  int exit_code = -1;
  {
    StderrCapture capture;
    std::thread server([&] { exit_code = tokengate::gateway::serve({config_path}); });
    const int port = capture.wait_port();
    REQUIRE_MESSAGE(port > 0, capture.text());
    const tcp::endpoint gateway(asio::ip::make_address("127.0.0.1"), static_cast<std::uint16_t>(port));
    asio::io_context ctx;

    // One byte per write (TCP_NODELAY): every read boundary inside the head.
    {
      tcp::socket socket(ctx);
      socket.connect(gateway);
      socket.set_option(tcp::no_delay(true));
      const std::string head =
          "GET /pub/slow HTTP/1.1\r\nHost: gw.test\r\nX-Long: " + std::string(100, 'v') + "\r\n\r\n";
      for (char c : head) asio::write(socket, asio::buffer(&c, 1));
      beast::flat_buffer buffer;
      http::response<http::string_body> res;
      http::read(socket, buffer, res);
      CHECK(res.result_int() == 200);
      CHECK(res.body() == "/pub/slow");
    }
    // Three requests in one write: three answers, in order, on the same connection.
    {
      tcp::socket socket(ctx);
      socket.connect(gateway);
      std::string pipelined;
      for (const char* target : {"/pub/1", "/pub/2", "/pub/3"}) {
        pipelined += std::string("GET ") + target + " HTTP/1.1\r\nHost: gw.test\r\n\r\n";
      }
      asio::write(socket, asio::buffer(pipelined));
      beast::flat_buffer buffer;
      for (const char* target : {"/pub/1", "/pub/2", "/pub/3"}) {
        http::response<http::string_body> res;
        http::read(socket, buffer, res);
        CHECK(res.result_int() == 200);
        CHECK(res.body() == target);
      }
    }
    // Half a head, then the client is gone; the gateway serves the next one.
    {
      tcp::socket socket(ctx);
      socket.connect(gateway);
      asio::write(socket, asio::buffer(std::string("GET /pub/half HTTP/1.1\r\nHo")));
      socket.close();
      tcp::socket next(ctx);
      next.connect(gateway);
      beast::flat_buffer buffer;
      http::request<http::string_body> req{http::verb::get, "/pub/after", 11};
      req.set(http::field::host, "gw.test");
      const auto res = send(next, buffer, req);
      CHECK(res.result_int() == 200);
    }
    std::raise(SIGTERM);
    server.join();
  }
  CHECK(exit_code == 0);
  for (const auto& req : upstream.requests()) CHECK(req.target() != "/pub/half");
  std::filesystem::remove_all(dir);
}
