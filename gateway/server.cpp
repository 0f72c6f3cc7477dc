// `tokengate serve`: start-up (config, store, engine, listeners), one thread per
// worker, signal handling (SIGTERM/SIGINT drain, SIGHUP reload) and the
// write-behind of last-used times.
#include "gateway/server.hpp"

#include <fmt/format.h>
#include <sys/socket.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <csignal>
#include <memory>
#include <thread>
#include <vector>

#include "conf/config.hpp"
#include "gateway/access_log.hpp"
#include "gateway/admin_server.hpp"
#include "gateway/worker.hpp"
#include "policy/engine.hpp"
#include "store/token_store.hpp"
#include "store/token_verifier.hpp"

namespace tokengate::gateway {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {

constexpr auto kDrainLimit = std::chrono::seconds(30);
constexpr auto kLastUsedInterval = std::chrono::seconds(30);

using ReusePort = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

void fail_line(std::string_view message) { write_stderr(fmt::format("tokengate: {}\n", message)); }

// The listen address as an endpoint; names ("localhost") through the resolver.
std::optional<tcp::endpoint> listen_endpoint(const conf::Endpoint& listen, std::string& error) {
  error_code ec;
  const auto address = asio::ip::make_address(listen.host, ec);
  if (!ec) return tcp::endpoint(address, listen.port);
  asio::io_context ctx;
  tcp::resolver resolver(ctx);
  const auto results = resolver.resolve(listen.host, std::to_string(listen.port), ec);
  if (ec || results.empty()) {
    error = fmt::format("cannot resolve listen address {}: {}", listen.to_string(), ec.message());
    return std::nullopt;
  }
  return results.begin()->endpoint();
}

bool bind_acceptor(tcp::acceptor& acceptor, const tcp::endpoint& endpoint, error_code& ec) {
  acceptor.open(endpoint.protocol(), ec);
  if (ec) return false;
  acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (ec) return false;
  acceptor.set_option(ReusePort(true), ec);
  if (ec) return false;
  acceptor.bind(endpoint, ec);
  if (ec) return false;
  acceptor.listen(asio::socket_base::max_listen_connections, ec);
  return !ec;
}

}  // namespace

int serve(const ServeOptions& options) {
  std::shared_ptr<const conf::Config> config;
  std::unique_ptr<store::TokenStore> token_store;
  std::shared_ptr<const policy::Engine> engine;
  try {
    config = conf::load_config(options.config);
  } catch (const conf::ConfigError& e) {
    fail_line(e.what());
    return 1;
  }
  try {
    token_store = store::TokenStore::open({config->store.path, config->store.key_file, store::system_now});
  } catch (const std::exception& e) {
    fail_line(e.what());
    return 1;
  }
  try {
    engine = policy::Engine::compile(config);
  } catch (const std::exception& e) {
    fail_line(e.what());
    return 1;
  }
  if (config->tls) {
    fail_line("tls on the public listener is not supported by this build");
    return 1;
  }

  std::unique_ptr<store::TokenDirectory> directory;
  try {
    directory = std::make_unique<store::TokenDirectory>(*token_store);
  } catch (const std::exception& e) {
    fail_line(e.what());
    return 1;
  }
  SharedState shared(engine, *directory);

  unsigned n = config->workers != 0 ? config->workers : std::thread::hardware_concurrency();
  if (n == 0) n = 1;
  const std::size_t per_worker = (config->limits.max_connections + n - 1) / n;

  // Signals are caught from here on, so a SIGTERM right after the ready line drains
  // instead of killing the process.
  asio::io_context main_context;
  asio::signal_set signals(main_context, SIGINT, SIGTERM, SIGHUP);

  std::string error;
  auto endpoint = listen_endpoint(config->listen, error);
  if (!endpoint) {
    fail_line(error);
    return 1;
  }
  std::vector<std::unique_ptr<Worker>> workers;
  for (unsigned i = 0; i < n; ++i) {
    workers.push_back(std::make_unique<Worker>(shared, std::max<std::size_t>(per_worker, 1)));
    error_code ec;
    if (!bind_acceptor(workers.back()->acceptor(), *endpoint, ec)) {
      fail_line(fmt::format("cannot listen on {}: {}", config->listen.to_string(), ec.message()));
      return 1;
    }
    // Port 0: the first acceptor picks the port, the others share it (SO_REUSEPORT).
    if (i == 0) endpoint->port(workers.back()->acceptor().local_endpoint(ec).port());
  }
  // Admin API (admin_server.cpp): its own thread; writes go through token_store,
  // whose change listener is the directory the workers read.
  AdminApi admin_api(*token_store, [&shared] { return shared.engines.load().first; });
  AdminServer admin_server(admin_api);
  if (!admin_server.listen(config->admin, error)) {
    fail_line(error);
    return 1;
  }
  conf::Endpoint actual = config->listen;
  actual.port = endpoint->port();
  write_stderr(fmt::format("listening on {}\n", actual.to_string()));
  if (auto port = admin_server.tcp_port()) {
    conf::Endpoint admin_actual = *config->admin.listen;
    admin_actual.port = *port;
    write_stderr(fmt::format("listening on {} (admin)\n", admin_actual.to_string()));
  }
  if (admin_server.has_socket()) write_stderr(fmt::format("admin socket {}\n", config->admin.socket->string()));

  admin_server.start();
  admin_api.set_ready(true);

  std::size_t running = workers.size();
  std::vector<std::thread> threads;
  for (auto& w : workers) {
    threads.emplace_back([&main_context, &running, worker = w.get()] {
      worker->start();
      worker->context().run();
      worker->log().flush();
      asio::post(main_context, [&main_context, &running] {
        if (--running == 0) main_context.stop();
      });
    });
  }

  auto flush_last_used = [&] {
    std::vector<std::pair<std::string, store::TimePoint>> uses;
    for (auto& w : workers) {
      auto part = w->take_uses();
      uses.insert(uses.end(), part.begin(), part.end());
    }
    if (uses.empty()) return;
    try {
      token_store->record_last_used(uses);
    } catch (const std::exception& e) {
      fail_line(fmt::format("recording last-used times failed: {}", e.what()));
    }
  };

  asio::steady_timer last_used_timer(main_context);
  std::function<void()> arm_last_used = [&] {
    last_used_timer.expires_after(kLastUsedInterval);
    last_used_timer.async_wait([&](error_code ec) {
      if (ec) return;
      flush_last_used();
      arm_last_used();
    });
  };
  arm_last_used();

  asio::steady_timer drain_timer(main_context);
  std::function<void()> wait_signal = [&] {
    signals.async_wait([&](error_code ec, int signo) {
      if (ec) return;
      if (signo == SIGHUP) {
        try {
          auto next = conf::load_config(options.config);
          shared.engines.publish(policy::Engine::compile(next));
          write_stderr("config reloaded\n");
        } catch (const std::exception& e) {
          fail_line(fmt::format("config reload failed, keeping the old config: {}", e.what()));
        }
        wait_signal();
        return;
      }
      if (shared.stopping.exchange(true)) {
        // A second SIGTERM/SIGINT while draining: the operator does not want to wait.
        write_stderr("shutting down now: in-flight requests abandoned\n");
        for (auto& w : workers) w->context().stop();
        return;
      }
      admin_api.set_ready(false);
      write_stderr("shutting down: draining in-flight requests\n");
      for (auto& w : workers) asio::post(w->context(), [worker = w.get()] { worker->stop(); });
      drain_timer.expires_after(kDrainLimit);
      drain_timer.async_wait([&](error_code tec) {
        if (tec) return;
        for (auto& w : workers) w->context().stop();
      });
      wait_signal();
    });
  };
  wait_signal();

  main_context.run();
  for (auto& t : threads) t.join();
  signals.cancel();
  flush_last_used();
  admin_server.stop();
  workers.clear();
  directory.reset();
  token_store.reset();
  return 0;
}

}  // namespace tokengate::gateway
