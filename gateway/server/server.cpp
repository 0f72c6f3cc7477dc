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
#include <optional>
#include <thread>
#include <vector>

#include "cluster/cluster_node.hpp"
#include "conf/config.hpp"
#include "gateway/admin/admin_server.hpp"
#include "gateway/obs/access_log.hpp"
#include "gateway/obs/contain.hpp"
#include "gateway/obs/metrics.hpp"
#include "gateway/proxy/tls.hpp"
#include "gateway/proxy/worker.hpp"
#include "gateway/server/last_used.hpp"
#include "gateway/server/reload.hpp"
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

// One startup error line, the same shape as the command line's user errors.
void fail_line(std::string_view message) { write_stderr(fmt::format("error: {}\n", message)); }

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

// The cluster metrics (README.md, "Running several gateways"), appended to /metrics.
std::string cluster_metrics(const cluster::NodeStatus& s) {
  const long long last_sync =
      s.last_sync ? std::chrono::duration_cast<std::chrono::seconds>(s.last_sync->time_since_epoch()).count()
                  : 0;
  return fmt::format(
      "# HELP tokengate_store_source_up 1 while PostgreSQL is connected and this node follows its changes.\n"
      "# TYPE tokengate_store_source_up gauge\ntokengate_store_source_up {}\n"
      "# HELP tokengate_store_revision Last PostgreSQL revision applied to the local copy.\n"
      "# TYPE tokengate_store_revision gauge\ntokengate_store_revision {}\n"
      "# HELP tokengate_store_last_sync_timestamp_seconds When the local copy was last known current (0: "
      "never).\n"
      "# TYPE tokengate_store_last_sync_timestamp_seconds gauge\ntokengate_store_last_sync_timestamp_seconds "
      "{}\n"
      "# HELP tokengate_store_changes_applied_total Changes applied from the PostgreSQL change log.\n"
      "# TYPE tokengate_store_changes_applied_total counter\ntokengate_store_changes_applied_total {}\n"
      "# HELP tokengate_store_full_reloads_total Full reloads of the token set from PostgreSQL.\n"
      "# TYPE tokengate_store_full_reloads_total counter\ntokengate_store_full_reloads_total {}\n"
      "# HELP tokengate_store_write_errors_total Token writes that failed to commit in PostgreSQL.\n"
      "# TYPE tokengate_store_write_errors_total counter\ntokengate_store_write_errors_total {}\n",
      s.connected ? 1 : 0, s.revision, last_sync, s.changes_applied, s.full_reloads, s.write_errors);
}

std::vector<std::string> route_names(const conf::Config& config) {
  std::vector<std::string> names;
  names.reserve(config.routes.size());
  for (const auto& r : config.routes) names.push_back(r.path);
  return names;
}

// The running gateway: start() builds everything in the order it depends on
// (config, engine, store, workers, listeners, admin) and prints the ready lines;
// run() serves until a signal drains it; the members go in reverse order.
class Server {
 public:
  explicit Server(const ServeOptions& options) : options_(options) {}
  // false after printing the one startup error line.
  bool start();
  // Blocks until drained; the process exit code.
  int run();

 private:
  bool load();
  bool open_listeners();
  void start_admin();
  void start_workers();
  void arm_last_used();
  void arm_rate_limit_sweep();
  void wait_signal();
  void drain();
  void shutdown();

  const ServeOptions& options_;
  std::shared_ptr<const conf::Config> config_;
  std::shared_ptr<const policy::Engine> engine_;
  std::shared_ptr<ssl::context> listener_tls_;
  std::unique_ptr<store::TokenStore> token_store_;
  cluster::ClusterNode* cluster_ = nullptr;  // cluster mode: token_store_ is this node
  std::unique_ptr<store::TokenDirectory> directory_;
  std::optional<SharedState> shared_;
  std::optional<Metrics> metrics_;
  asio::io_context main_context_;
  asio::signal_set signals_{main_context_, SIGINT, SIGTERM, SIGHUP};
  std::optional<ConfigReloader> reloader_;
  std::optional<LogWriter> log_writer_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::optional<AdminApi> admin_api_;
  std::optional<AdminServer> admin_server_;
  std::vector<std::thread> threads_;
  std::size_t running_ = 0;
  std::string ready_line_;  // "listening on ..." of the public and forward_auth listeners
  std::optional<LastUsedWriter> last_used_;
  asio::steady_timer last_used_timer_{main_context_};
  asio::steady_timer drain_timer_{main_context_};
  asio::steady_timer sweep_timer_{main_context_};
};

bool Server::start() {
  LogFormat format = LogFormat::Json;
  LogLevel level = LogLevel::Info;
  if (!parse_log_format(options_.log_format, format)) {
    fail_line(fmt::format("unknown --log-format '{}' (json or text)", options_.log_format));
    return false;
  }
  if (!parse_log_level(options_.log_level, level)) {
    fail_line(fmt::format("unknown --log-level '{}' (debug, info, warn or error)", options_.log_level));
    return false;
  }
  set_log_options(format, level);
  if (!load() || !open_listeners()) return false;
  start_admin();
  return admin_server_.has_value();
}

// Config, engine, listener TLS, store and token directory, metrics and the
// reloader; any failure is one line.
bool Server::load() {
  try {
    config_ = conf::load_config(options_.config);
    engine_ = policy::Engine::compile(config_);
    if (config_->tls) listener_tls_ = make_server_tls_context(*config_->tls);
    if (config_->store.postgres) {
      // Cluster mode: syncs the local copy with PostgreSQL before anything serves.
      auto node = cluster::ClusterNode::open(*config_, [](bool warning, std::string_view line) {
        log_line(warning ? LogLevel::Warn : LogLevel::Info, line);
      });
      cluster_ = node.get();
      token_store_ = std::move(node);
    } else {
      token_store_ =
          store::TokenStore::open({config_->store.path, config_->store.key_file, store::system_now});
    }
    directory_ = std::make_unique<store::TokenDirectory>(*token_store_);
  } catch (const std::exception& e) {
    fail_line(e.what());
    return false;
  }
  shared_.emplace(engine_, *directory_);
  if (cluster_) cluster_->on_serving_changed([this](bool serving) { shared_->store_serving.store(serving); });
  if (listener_tls_) {
    shared_->tls_listener = true;
    shared_->listener_tls.publish(listener_tls_);
  }
  unsigned n = config_->workers != 0 ? config_->workers : std::thread::hardware_concurrency();
  if (n == 0) n = 1;
  metrics_.emplace(n);
  metrics_->set_route_names(route_names(*config_));
  metrics_->reload_ok(std::chrono::system_clock::now());  // the initial load counts as the last success
  metrics_->set_expiring_soon_source([this] {
    const auto now = store::system_now();
    std::uint64_t count = 0;
    for (const auto& r : token_store_->list()) {
      if (r.expires_at && *r.expires_at > now && *r.expires_at - now <= kExpiringSoon) ++count;
    }
    return count;
  });
  reloader_.emplace(
      main_context_, options_.config, config_,
      [this](const std::shared_ptr<const conf::Config>& next,
             const std::shared_ptr<const policy::Engine>& engine) {
        // What can fail first, so a failure applies nothing.
        std::shared_ptr<ssl::context> next_listener_tls;
        if (next->tls) next_listener_tls = make_server_tls_context(*next->tls);
        if (next_listener_tls) shared_->listener_tls.publish(std::move(next_listener_tls));
        shared_->engines.publish(engine);
        metrics_->set_route_names(route_names(*next));
      },
      &*metrics_);
  reloader_->watch();  // before the ready line, so no change after it is missed
  log_writer_.emplace(metrics_->shards());
  return true;
}

// One acceptor per worker on the same port (SO_REUSEPORT).
bool Server::open_listeners() {
  std::string error;
  auto endpoint = listen_endpoint(config_->listen, error);
  if (!endpoint) {
    fail_line(error);
    return false;
  }
  for (std::size_t i = 0; i < metrics_->shards(); ++i) {
    workers_.push_back(std::make_unique<Worker>(*shared_, metrics_->shard(i), log_writer_->outbox(i)));
    error_code ec;
    if (!bind_acceptor(workers_.back()->acceptor(), *endpoint, ec)) {
      fail_line(fmt::format("cannot listen on {}: {}", config_->listen.to_string(), ec.message()));
      return false;
    }
    // Port 0: the first acceptor picks the port, the others share it.
    if (i == 0) endpoint->port(workers_.back()->acceptor().local_endpoint(ec).port());
  }
  conf::Endpoint actual = config_->listen;
  actual.port = endpoint->port();
  ready_line_ = fmt::format("listening on {}{}\n", actual.to_string(), listener_tls_ ? " (tls)" : "");
  if (config_->forward_auth) {
    // The check listener: the same workers (token replica, rights cache, engine
    // generation) on a port of its own.
    auto check_endpoint = listen_endpoint(config_->forward_auth->listen, error);
    if (!check_endpoint) {
      fail_line(error);
      return false;
    }
    for (std::size_t i = 0; i < workers_.size(); ++i) {
      error_code ec;
      auto& acceptor = workers_[i]->forward_auth_acceptor();
      if (!bind_acceptor(acceptor, *check_endpoint, ec)) {
        fail_line(fmt::format("cannot listen on {} (forward_auth): {}",
                              config_->forward_auth->listen.to_string(), ec.message()));
        return false;
      }
      if (i == 0) check_endpoint->port(acceptor.local_endpoint(ec).port());
    }
    conf::Endpoint check_actual = config_->forward_auth->listen;
    check_actual.port = check_endpoint->port();
    ready_line_ += fmt::format("listening on {} (forward_auth)\n", check_actual.to_string());
  }
  return true;
}

// The admin API on its own thread (admin/admin_server.hpp); its writes go through
// the token store, whose change listener is the directory the workers read. Then
// the ready lines.
void Server::start_admin() {
  AdminHooks hooks;
  hooks.metrics = [this] {
    AdminResponse response;
    response.status = 200;
    response.content_type = "text/plain; version=0.0.4";
    response.body = metrics_->render_prometheus();
    if (cluster_) response.body += cluster_metrics(cluster_->status());
    return response;
  };
  admin_api_.emplace(
      *token_store_, [this] { return shared_->engines.load().first; }, std::move(hooks));
  if (cluster_) {
    admin_api_->set_store_status([this] {
      const auto s = cluster_->status();
      StoreStatus status;
      status.ready = s.serving;
      status.store = boost::json::object{
          {"mode", "cluster"},
          {"source", s.connected ? "connected" : "disconnected"},
          {"revision", s.revision},
          {"last_sync",
           s.last_sync ? boost::json::value(store::format_rfc3339(*s.last_sync)) : boost::json::value()}};
      return status;
    });
  }
  admin_server_.emplace(*admin_api_);
  std::string error;
  if (!admin_server_->listen(config_->admin, error)) {
    fail_line(error);
    admin_server_.reset();
    return;
  }
  write_stderr(ready_line_);
  if (auto port = admin_server_->tcp_port()) {
    conf::Endpoint admin_actual = *config_->admin.listen;
    admin_actual.port = *port;
    write_stderr(fmt::format("listening on {} (admin)\n", admin_actual.to_string()));
  }
  if (admin_server_->has_socket())
    write_stderr(fmt::format("admin socket {}\n", config_->admin.socket->string()));
  admin_server_->start();
  admin_api_->set_ready(true);
}

int Server::run() {
  if (cluster_) cluster_->start();
  start_workers();
  last_used_.emplace(*token_store_, &*metrics_);
  arm_last_used();
  arm_rate_limit_sweep();
  wait_signal();
  main_context_.run();
  shutdown();
  return 0;
}

void Server::start_workers() {
  running_ = workers_.size();
  for (auto& w : workers_) {
    threads_.emplace_back([this, worker = w.get()] {
      worker->start();
      run_contained(worker->context(), "worker");
      worker->log().flush();
      asio::post(main_context_, [this] {
        if (--running_ == 0) main_context_.stop();
      });
    });
  }
}

void Server::arm_last_used() {
  last_used_timer_.expires_after(last_used_flush_interval());
  last_used_timer_.async_wait([this](error_code ec) {
    if (ec) return;
    for (auto& w : workers_) last_used_->add(w->take_uses());
    last_used_->flush(store::system_now());
    arm_last_used();
  });
}

// Idle rate-limit budgets (full again, so the same as new ones) are dropped every
// 10 s: budgets of deleted tokens, of tokens not seen lately, of old limits.
void Server::arm_rate_limit_sweep() {
  sweep_timer_.expires_after(std::chrono::seconds(10));
  sweep_timer_.async_wait([this](error_code ec) {
    if (ec) return;
    shared_->budgets.sweep(ratelimit::steady_now_ns());
    arm_rate_limit_sweep();
  });
}

void Server::wait_signal() {
  signals_.async_wait([this](error_code ec, int signo) {
    if (ec) return;
    if (signo == SIGHUP) {
      reloader_->reload("SIGHUP");
    } else {
      drain();
    }
    wait_signal();
  });
}

// SIGTERM/SIGINT: stop accepting and let in-flight requests finish, up to the
// drain limit; a second signal does not wait.
void Server::drain() {
  if (shared_->stopping.exchange(true)) {
    log_line(LogLevel::Warn, "shutting down now: in-flight requests abandoned");
    for (auto& w : workers_) w->context().stop();
    return;
  }
  admin_api_->set_ready(false);
  log_line(LogLevel::Info, "shutting down: draining in-flight requests");
  reloader_->stop();
  for (auto& w : workers_) asio::post(w->context(), [worker = w.get()] { worker->stop(); });
  drain_timer_.expires_after(kDrainLimit);
  drain_timer_.async_wait([this](error_code ec) {
    if (ec) return;
    log_line(LogLevel::Warn, "drain time limit reached: closing the remaining connections");
    for (auto& w : workers_) w->context().stop();
  });
}

// After the workers ended: every access line out, last-used times written, the
// store closed cleanly.
void Server::shutdown() {
  for (auto& t : threads_) t.join();
  log_writer_->stop();  // every access line out before the last operational lines
  signals_.cancel();
  sweep_timer_.cancel();
  reloader_->stop();
  admin_server_->stop();
  for (auto& w : workers_) last_used_->add(w->take_uses());
  last_used_->flush(store::system_now(), true);
  metrics_->set_expiring_soon_source(nullptr);
  if (cluster_) cluster_->stop();
  workers_.clear();
  directory_.reset();
  token_store_.reset();  // closes RocksDB (flushes and releases the lock)
  log_line(LogLevel::Info, "stopped");
}

}  // namespace

int serve(const ServeOptions& options) {
  Server server(options);
  if (!server.start()) return 1;
  return server.run();
}

}  // namespace tokengate::gateway
