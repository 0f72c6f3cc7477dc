// One I/O thread of the gateway: its own io_context, acceptor (SO_REUSEPORT),
// token replica, per-token rights cache, upstream pools and access log. Nothing
// here is shared between workers except EngineHolder, which is read with one
// atomic load per request, and the rate-limit budgets (one atomic per budget).
#pragma once

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/unordered/unordered_flat_map.hpp>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "gateway/obs/access_log.hpp"
#include "gateway/obs/metrics.hpp"
#include "gateway/proxy/deadline.hpp"
#include "gateway/proxy/request_plan.hpp"
#include "gateway/proxy/tls.hpp"
#include "gateway/proxy/upstream_pool.hpp"
#include "gateway/ratelimit/tables.hpp"
#include "policy/engine.hpp"
#include "store/token_verifier.hpp"

namespace tokengate::gateway {

// The one swap point of the policy engine (hot reload publishes here). Readers
// compare the version with one atomic load and take the mutex only after a swap.
class EngineHolder {
 public:
  explicit EngineHolder(std::shared_ptr<const policy::Engine> engine) : engine_(std::move(engine)) {}
  void publish(std::shared_ptr<const policy::Engine> engine) {
    std::lock_guard lock(mutex_);
    engine_ = std::move(engine);
    version_.fetch_add(1, std::memory_order_release);
  }
  std::uint64_t version() const noexcept { return version_.load(std::memory_order_acquire); }
  std::pair<std::shared_ptr<const policy::Engine>, std::uint64_t> load() const {
    std::lock_guard lock(mutex_);
    return {engine_, version_.load(std::memory_order_relaxed)};
  }

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<const policy::Engine> engine_;
  std::atomic<std::uint64_t> version_{1};
};

// Process-wide state the workers read.
struct SharedState {
  SharedState(std::shared_ptr<const policy::Engine> engine, store::TokenDirectory& dir)
      : engines(std::move(engine)), directory(dir) {}
  EngineHolder engines;
  store::TokenDirectory& directory;
  std::atomic<bool> stopping{false};  // set by SIGTERM/SIGINT; /readyz answers 503 from then on
  // Cluster mode's sync state (cluster/cluster_node.hpp), written by the control
  // thread when it changes, read with one relaxed load per protected request.
  std::atomic<bool> store_serving{true};
  // Client connections open on all workers, against limits.max_connections: one
  // count for the gateway (an atomic add per connection, never per request), so the
  // limit is exact however the kernel spreads connections, and follows a reload.
  std::atomic<std::size_t> open_connections{0};
  // The same for the forward_auth listener, counted apart: a flood of idle
  // connections on the public listener must not refuse an ingress's checks.
  std::atomic<std::size_t> open_checks{0};
  bool tls_listener = false;
  TlsHolder listener_tls;  // the public listener's context when tls_listener
  // The node's rate-limit budgets, one per key for all workers (README.md, "Rate limits").
  ratelimit::BudgetTable budgets;
  ratelimit::AddressTable address_budgets;
};

// A worker's view of one engine generation: the engine plus what the hot path
// derives from it once (route -> upstream pool, identity header names). The pools
// are the worker's, shared with the snapshots that use them: a reload that keeps
// an upstream as it was keeps its idle connections and TLS context.
struct EngineSnapshot {
  std::shared_ptr<const policy::Engine> engine;
  std::uint64_t version = 0;
  std::vector<std::shared_ptr<UpstreamPool>> pools;  // in Config::upstreams order
  std::vector<RouteTarget> routes;                   // by route index: its upstream, for the request plan
  std::string h_subject, h_name, h_roles, h_groups, h_permissions, h_licenses;
  std::string empty_identity_fields;  // every identity field with an empty value
};

// Effective rights of one grant set (store::TokenProfile, shared by every token
// that has the same names) under one engine generation, and the identity fields
// they render to. Pins the profile so its address is never reused as a key.
struct ProfileEntry {
  std::shared_ptr<const store::TokenProfile> profile;
  std::uint64_t engine_version = 0;
  policy::Rights rights;
  // "X-Auth-Roles: ...\r\n" through Licenses, as sent upstream after the token's
  // own Subject and Name.
  std::string grant_fields;
};

// A token's rate-limit budgets (the node's, from SharedState::budgets), taken on
// first use under one engine generation: a request then costs one atomic, no
// lock. Pins the token so its address is never reused as a key.
struct TokenBudgets {
  std::shared_ptr<const store::ActiveToken> token;
  std::uint64_t engine_version = 0;
  std::shared_ptr<ratelimit::Budget> token_budget;
  std::vector<std::shared_ptr<ratelimit::Budget>> route_budgets;  // by route index
};

// Which listener a connection came in on: the public proxy, or forward_auth
// (every request a check for another proxy, nothing forwarded).
enum class Listener { Proxy, ForwardAuth };

class Worker final : public PlanEnvironment {
 public:
  Worker(SharedState& shared, MetricsShard& metrics, LogWriter::Outbox& log);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  boost::asio::io_context& context() noexcept { return *context_; }
  boost::asio::ip::tcp::acceptor& acceptor() noexcept { return *acceptor_; }
  // Bound by the server when forward_auth is configured; start() accepts on it
  // only if it is open.
  boost::asio::ip::tcp::acceptor& forward_auth_acceptor() noexcept { return *forward_auth_acceptor_; }
  SharedState& shared() noexcept { return shared_; }
  AccessLog& log() noexcept { return log_; }
  MetricsShard& metrics() noexcept { return metrics_; }
  store::TokenDirectory::Replica& replica() noexcept { return *replica_; }

  // Spawns the accept loop; then context().run() on the worker's thread.
  void start();
  // Stop accepting, close idle connections; in-flight requests finish. Must run on
  // the worker's own thread (post it).
  void stop();

  // The current engine generation (refreshed when the holder's version moved).
  std::shared_ptr<EngineSnapshot> snapshot();

  // The grant set's rights and identity fields under `snapshot`, cached; the
  // reference is valid until the next call.
  const ProfileEntry& profile_entry(const std::shared_ptr<const store::TokenProfile>& profile,
                                    const EngineSnapshot& snapshot);

  // Last-used times gathered for the store's write-behind (thread-safe).
  std::vector<std::pair<std::string, store::TimePoint>> take_uses();

  void make_request_id(std::string& out) override;  // 32 random hex digits
  // The token replica's verdict and, for a valid token, its cached rights and
  // identity fields under the current snapshot (counted in the metrics).
  Caller check_bearer(std::string_view token, std::string& identity_fields) override;
  Admission admit(const policy::RateLimits& limits, int route, const Caller& caller,
                  std::string_view client_address) override;
  bool store_serving() const override { return shared_.store_serving.load(std::memory_order_relaxed); }

  // Connections register so stop() can close the idle ones and the sweep can
  // enforce their deadlines: the client socket's, and the upstream socket's while
  // the connection uses one.
  struct ConnectionHandle {
    bool idle = false;
    Deadline client;  // its socket is the client connection's
    Deadline upstream;
  };
  void add(ConnectionHandle* c);
  void remove(ConnectionHandle* c) { connections_.erase(c); }

 private:
  void start_accepting(Listener listener);
  boost::asio::awaitable<void> accept_loop(Listener listener);
  // Runs while connections exist: every tick, closes the sockets whose deadline
  // has passed. The tick is a twentieth of the shortest configured timeout, within
  // 10 to 100 ms: a timeout of 200 ms or more fires at most 5 % late, a shorter
  // one at most 10 ms late.
  boost::asio::awaitable<void> sweep_deadlines();

  SharedState& shared_;
  // Owned through pointers so ~Worker can tear the context down (destroying the
  // suspended sessions) while the members those sessions touch still exist.
  std::unique_ptr<boost::asio::io_context> context_;
  std::optional<boost::asio::ip::tcp::acceptor> acceptor_;
  std::optional<boost::asio::ip::tcp::acceptor> forward_auth_acceptor_;
  std::unique_ptr<store::TokenDirectory::Replica> replica_;
  std::shared_ptr<EngineSnapshot> snapshot_;
  // Upstream pools of the current config, by upstream_identity(); a pool whose
  // upstream a reload changed or removed lives on only in older snapshots.
  std::unordered_map<std::string, std::shared_ptr<UpstreamPool>> pools_;
  std::shared_ptr<ssl::context> listener_tls_;
  std::uint64_t listener_tls_version_ = 0;
  // Both caches are bounded by clearing them whole (kMaxCached): cheap to refill,
  // and a spread over more grant sets than that is not what tokens look like.
  boost::unordered_flat_map<const store::TokenProfile*, ProfileEntry> profiles_;
  boost::unordered_flat_map<const store::ActiveToken*, TokenBudgets> budgets_;  // only with rate limits
  AccessLog log_;
  MetricsShard& metrics_;
  std::chrono::steady_clock::time_point full_warned_{};  // last "max_connections reached" warning
  std::unordered_set<ConnectionHandle*> connections_;
  bool sweeping_ = false;
  conf::Duration sweep_tick_ = std::chrono::milliseconds(100);  // set with each snapshot
  std::mt19937_64 rng_;
  std::mutex uses_mutex_;  // per worker, taken about once a minute per token in use
  std::vector<std::pair<std::string, store::TimePoint>> uses_;
};

// What makes two configs' upstreams the same pool: name, URL and CA file.
std::string upstream_identity(const conf::Upstream& upstream);

// One counted client connection (SharedState::open_connections), released when
// this is destroyed: with the session's coroutine frame, whether or not it ran.
class ConnectionSlot {
 public:
  explicit ConnectionSlot(std::atomic<std::size_t>& count) noexcept : count_(&count) {}
  ConnectionSlot(ConnectionSlot&& other) noexcept : count_(std::exchange(other.count_, nullptr)) {}
  ConnectionSlot& operator=(ConnectionSlot&&) = delete;
  ~ConnectionSlot() {
    if (count_) count_->fetch_sub(1, std::memory_order_relaxed);
  }

 private:
  std::atomic<std::size_t>* count_;
};

// The per-connection coroutine (proxy/session.cpp). Exceptions are contained by
// the caller (obs/contain.hpp).
// tls: the listener's server context, or null for plain HTTP.
boost::asio::awaitable<void> run_session(Worker& worker, boost::asio::ip::tcp::socket socket,
                                         std::shared_ptr<ssl::context> tls, Listener listener,
                                         ConnectionSlot slot);

}  // namespace tokengate::gateway
