// `tokengate serve`: start-up (config, store, engine, TLS, listeners), one thread
// per worker, signal handling (SIGTERM/SIGINT drain, SIGHUP and file-change reload),
// metrics and the write-behind of last-used times.
#include "gateway/server/server.hpp"

#include <fmt/format.h>
#include <sys/socket.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "conf/config.hpp"
#include "gateway/obs/access_log.hpp"
#include "gateway/obs/contain.hpp"
#include "gateway/admin/admin_server.hpp"
#include "gateway/server/last_used.hpp"
#include "gateway/obs/metrics.hpp"
#include "gateway/server/reload.hpp"
#include "gateway/proxy/tls.hpp"
#include "gateway/proxy/worker.hpp"
#include "policy/engine.hpp"
#include "store/token_store.hpp"
#include "store/token_verifier.hpp"

namespace tokengate::gateway {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {

constexpr auto kDrainLimit = std::chrono::seconds(30);
constexpr auto kExpiringSoon = std::chrono::hours(24 * 7);

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

std::vector<std::string> route_names(const conf::Config& config) {
  std::vector<std::string> names;
  names.reserve(config.routes.size());
  for (const auto& r : config.routes) names.push_back(r.path);
  return names;
}

}  // namespace

int serve(const ServeOptions& options) {
  LogFormat format = LogFormat::Json;
  LogLevel level = LogLevel::Info;
  if (!parse_log_format(options.log_format, format)) {
    fail_line(fmt::format("unknown --log-format '{}' (json or text)", options.log_format));
    return 1;
  }
  if (!parse_log_level(options.log_level, level)) {
    fail_line(fmt::format("unknown --log-level '{}' (debug, info, warn or error)", options.log_level));
    return 1;
  }
  set_log_options(format, level);

  std::shared_ptr<const conf::Config> config;
  std::unique_ptr<store::TokenStore> token_store;
  std::shared_ptr<const policy::Engine> engine;
  std::shared_ptr<ssl::context> listener_tls;
  try {
    config = conf::load_config(options.config);
  } catch (const conf::ConfigError& e) {
    fail_line(e.what());
    return 1;
  }
  try {
    engine = policy::Engine::compile(config);
    if (config->tls) listener_tls = make_server_tls_context(*config->tls);
  } catch (const std::exception& e) {
    fail_line(e.what());
    return 1;
  }
  try {
    token_store = store::TokenStore::open({config->store.path, config->store.key_file, store::system_now});
  } catch (const std::exception& e) {
    fail_line(e.what());
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
  if (listener_tls) {
    shared.tls_listener = true;
    shared.listener_tls.publish(listener_tls);
  }

  unsigned n = config->workers != 0 ? config->workers : std::thread::hardware_concurrency();
  if (n == 0) n = 1;

  Metrics metrics(n);
  metrics.set_route_names(route_names(*config));
  metrics.reload_ok(std::chrono::system_clock::now());  // the initial load counts as the last success
  metrics.set_expiring_soon_source([&token_store] {
    const auto now = store::system_now();
    std::uint64_t count = 0;
    for (const auto& r : token_store->list()) {
      if (r.expires_at && *r.expires_at > now && *r.expires_at - now <= kExpiringSoon) ++count;
    }
    return count;
  });

  // Signals are caught from here on, so a SIGTERM right after the ready line drains
  // instead of killing the process.
  asio::io_context main_context;
  asio::signal_set signals(main_context, SIGINT, SIGTERM, SIGHUP);

  ConfigReloader reloader(
      main_context, options.config, config,
      [&](const std::shared_ptr<const conf::Config>& next, const std::shared_ptr<const policy::Engine>& next_engine) {
        // What can fail first, so a failure applies nothing.
        std::shared_ptr<ssl::context> next_listener_tls;
        if (next->tls) next_listener_tls = make_server_tls_context(*next->tls);
        if (next_listener_tls) shared.listener_tls.publish(std::move(next_listener_tls));
        shared.engines.publish(next_engine);
        metrics.set_route_names(route_names(*next));
      },
      &metrics);
  reloader.watch();  // before the ready line, so no change after it is missed

  std::string error;
  auto endpoint = listen_endpoint(config->listen, error);
  if (!endpoint) {
    fail_line(error);
    return 1;
  }
  LogWriter log_writer(n);
  std::vector<std::unique_ptr<Worker>> workers;
  for (unsigned i = 0; i < n; ++i) {
    workers.push_back(std::make_unique<Worker>(shared, metrics.shard(i), log_writer.outbox(i)));
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
  AdminHooks admin_hooks;
  admin_hooks.metrics = [&metrics] {
    AdminResponse response;
    response.status = 200;
    response.content_type = "text/plain; version=0.0.4";
    response.body = metrics.render_prometheus();
    return response;
  };
  AdminApi admin_api(*token_store, [&shared] { return shared.engines.load().first; }, std::move(admin_hooks));
  AdminServer admin_server(admin_api);
  if (!admin_server.listen(config->admin, error)) {
    fail_line(error);
    return 1;
  }
  conf::Endpoint actual = config->listen;
  actual.port = endpoint->port();
  write_stderr(fmt::format("listening on {}{}\n", actual.to_string(), listener_tls ? " (tls)" : ""));
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
      run_contained(worker->context(), "worker");
      worker->log().flush();
      asio::post(main_context, [&main_context, &running] {
        if (--running == 0) main_context.stop();
      });
    });
  }

  LastUsedWriter last_used(*token_store, &metrics);
  auto gather_last_used = [&] {
    for (auto& w : workers) last_used.add(w->take_uses());
  };
  const auto flush_interval = last_used_flush_interval();
  asio::steady_timer last_used_timer(main_context);
  std::function<void()> arm_last_used = [&] {
    last_used_timer.expires_after(flush_interval);
    last_used_timer.async_wait([&](error_code ec) {
      if (ec) return;
      gather_last_used();
      last_used.flush(store::system_now());
      arm_last_used();
    });
  };
  arm_last_used();


  asio::steady_timer drain_timer(main_context);
  std::function<void()> wait_signal = [&] {
    signals.async_wait([&](error_code ec, int signo) {
      if (ec) return;
      if (signo == SIGHUP) {
        reloader.reload("SIGHUP");
        wait_signal();
        return;
      }
      if (shared.stopping.exchange(true)) {
        // A second SIGTERM/SIGINT while draining: the operator does not want to wait.
        log_line(LogLevel::Warn, "shutting down now: in-flight requests abandoned");
        for (auto& w : workers) w->context().stop();
        return;
      }
      admin_api.set_ready(false);
      log_line(LogLevel::Info, "shutting down: draining in-flight requests");
      reloader.stop();
      for (auto& w : workers) asio::post(w->context(), [worker = w.get()] { worker->stop(); });
      drain_timer.expires_after(kDrainLimit);
      drain_timer.async_wait([&](error_code tec) {
        if (tec) return;
        log_line(LogLevel::Warn, "drain time limit reached: closing the remaining connections");
        for (auto& w : workers) w->context().stop();
      });
      wait_signal();
    });
  };
  wait_signal();

  main_context.run();
  for (auto& t : threads) t.join();
  log_writer.stop();  // every access line out before the last operational lines
  signals.cancel();
  reloader.stop();
  admin_server.stop();
  gather_last_used();
  last_used.flush(store::system_now(), true);
  metrics.set_expiring_soon_source(nullptr);
  workers.clear();
  directory.reset();
  token_store.reset();  // closes RocksDB (flushes and releases the lock)
  log_line(LogLevel::Info, "stopped");
  return 0;
}

}  // namespace tokengate::gateway
