// Worker thread state: accept loop, engine snapshot refresh, rights cache.
#include "gateway/proxy/worker.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <filesystem>
#include <tuple>

#include "gateway/http/framing.hpp"
#include "gateway/obs/contain.hpp"

namespace tokengate::gateway {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

Worker::Worker(SharedState& shared, MetricsShard& metrics, LogWriter::Outbox& log)
    : shared_(shared),
      context_(std::make_unique<asio::io_context>(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO)),
      acceptor_(std::in_place, *context_),
      forward_auth_acceptor_(std::in_place, *context_),
      replica_(shared.directory.make_replica()),
      log_(*context_, log),
      metrics_(metrics),
      rng_(std::random_device{}()) {}

Worker::~Worker() {
  // Every socket (the acceptor, idle upstream connections in the pools) goes
  // before the io_context whose services they use.
  acceptor_.reset();
  forward_auth_acceptor_.reset();
  snapshot_.reset();
  pools_.clear();
  context_.reset();
}

void Worker::start() {
  start_accepting(Listener::Proxy);
  if (forward_auth_acceptor_->is_open()) start_accepting(Listener::ForwardAuth);
}

void Worker::start_accepting(Listener listener) {
  asio::co_spawn(*context_, accept_loop(listener), [this, listener](std::exception_ptr error) {
    if (!error) return;
    report_escaped_exception("accept loop", error);
    auto& acceptor = listener == Listener::Proxy ? *acceptor_ : *forward_auth_acceptor_;
    if (acceptor.is_open()) start_accepting(listener);  // keep accepting
  });
}

void Worker::stop() {
  boost::system::error_code ignored;
  acceptor_->close(ignored);
  forward_auth_acceptor_->close(ignored);
  for (auto* c : connections_) {
    if (c->idle) c->client.socket->close(ignored);
  }
  if (snapshot_) {
    for (auto& pool : snapshot_->pools) pool->clear();
  }
  log_.flush();
}

void Worker::add(ConnectionHandle* c) {
  connections_.insert(c);
  if (!sweeping_) {
    sweeping_ = true;
    asio::co_spawn(*context_, sweep_deadlines(), ContainExceptions{"deadline sweep"});
  }
}

std::string upstream_identity(const conf::Upstream& upstream) {
  // The name and URL say where connections go; the CA file's size and time say
  // whether the TLS context built from it is still the right one.
  std::string identity = upstream.name + '\n' + upstream.url;
  if (upstream.ca) {
    std::error_code ec;
    const auto size = std::filesystem::file_size(*upstream.ca, ec);
    const auto time = std::filesystem::last_write_time(*upstream.ca, ec);
    identity += '\n' + upstream.ca->string() + '\n' + std::to_string(ec ? 0 : size) + '\n' +
                std::to_string(ec ? 0 : time.time_since_epoch().count());
  }
  return identity;
}

asio::awaitable<void> Worker::sweep_deadlines() {
  // However this coroutine ends (an exception, the context's destruction), the
  // next connection starts a new sweep.
  struct Ended {
    bool& sweeping;
    ~Ended() { sweeping = false; }
  } ended{sweeping_};
  asio::steady_timer timer(*context_);
  while (!connections_.empty()) {
    timer.expires_after(sweep_tick_);
    auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec) break;
    const auto now = Deadline::clock::now();
    for (auto* c : connections_) {
      c->client.enforce(now);
      c->upstream.enforce(now);
    }
  }
}

asio::awaitable<void> Worker::accept_loop(Listener listener) {
  constexpr auto token = asio::as_tuple(asio::use_awaitable);
  tcp::acceptor& acceptor = listener == Listener::Proxy ? *acceptor_ : *forward_auth_acceptor_;
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(token);
    if (ec) {
      if (!acceptor.is_open() || ec == asio::error::operation_aborted) co_return;
      // Out of descriptors and the like: back off instead of spinning.
      asio::steady_timer timer(*context_, std::chrono::milliseconds(50));
      co_await timer.async_wait(token);
      continue;
    }
    boost::system::error_code ignored;
    if (shared_.stopping.load(std::memory_order_relaxed)) {
      socket.close(ignored);
      continue;
    }
    const std::size_t limit = snapshot()->engine->config().limits.max_connections;
    auto& count = listener == Listener::Proxy ? shared_.open_connections : shared_.open_checks;
    const std::size_t open = count.fetch_add(1, std::memory_order_relaxed);
    ConnectionSlot slot(count);  // owns the count just added
    if (open >= limit) {
      socket.close(ignored);  // the slot's destructor gives the count back
      const auto now = std::chrono::steady_clock::now();
      if (now - full_warned_ >= std::chrono::seconds(10)) {
        full_warned_ = now;
        log_line(LogLevel::Warn,
                 fmt::format("max_connections ({}) reached: new connections are closed", limit));
      }
      continue;
    }
    socket.set_option(tcp::no_delay(true), ignored);
    std::shared_ptr<ssl::context> tls;
    if (shared_.tls_listener && listener == Listener::Proxy) {
      if (listener_tls_version_ != shared_.listener_tls.version()) {
        std::tie(listener_tls_, listener_tls_version_) = shared_.listener_tls.load();
      }
      tls = listener_tls_;
    }
    asio::co_spawn(*context_,
                   run_session(*this, std::move(socket), std::move(tls), listener, std::move(slot)),
                   ContainExceptions{"connection"});
  }
}

std::shared_ptr<EngineSnapshot> Worker::snapshot() {
  if (snapshot_ && snapshot_->version == shared_.engines.version()) return snapshot_;
  auto [engine, version] = shared_.engines.load();
  auto snap = std::make_shared<EngineSnapshot>();
  const auto& config = engine->config();
  snap->pools.reserve(config.upstreams.size());
  std::unordered_map<std::string, std::shared_ptr<UpstreamPool>> kept;
  for (const auto& u : config.upstreams) {
    std::string identity = upstream_identity(u);
    auto it = pools_.find(identity);
    auto pool = it != pools_.end() ? it->second : std::make_shared<UpstreamPool>(u);
    snap->pools.push_back(pool);
    kept.emplace(std::move(identity), std::move(pool));
  }
  pools_ = std::move(kept);
  snap->routes.reserve(config.routes.size());
  for (const auto& r : config.routes) {
    RouteTarget target;
    for (std::size_t i = 0; i < config.upstreams.size(); ++i) {
      if (config.upstreams[i].name != r.upstream) continue;
      const UpstreamPool& pool = *snap->pools[i];
      target = RouteTarget{static_cast<int>(i), pool.name(), pool.host_header(), pool.base_path()};
    }
    snap->routes.push_back(target);
  }
  const auto& prefix = config.identity.header_prefix;
  snap->h_subject = prefix + "Subject";
  snap->h_name = prefix + "Name";
  snap->h_roles = prefix + "Roles";
  snap->h_groups = prefix + "Groups";
  snap->h_permissions = prefix + "Permissions";
  snap->h_licenses = prefix + "Licenses";
  for (const auto* name : {&snap->h_subject, &snap->h_name, &snap->h_roles, &snap->h_groups,
                           &snap->h_permissions, &snap->h_licenses}) {
    append_field(snap->empty_identity_fields, *name, "");
  }
  const auto& limits = config.limits;
  const auto shortest = std::min(
      {limits.header_timeout, limits.idle_timeout, limits.upstream_connect_timeout, limits.upstream_timeout});
  sweep_tick_ = std::clamp<conf::Duration>(shortest / 20, std::chrono::milliseconds(10),
                                           std::chrono::milliseconds(100));
  snap->engine = std::move(engine);
  snap->version = version;
  snapshot_ = std::move(snap);
  return snapshot_;
}

namespace {

// How many grant sets (and, with rate limits, tokens) a worker caches at most.
constexpr std::size_t kMaxCached = 100000;

}  // namespace

const ProfileEntry& Worker::profile_entry(const std::shared_ptr<const store::TokenProfile>& profile,
                                          const EngineSnapshot& snapshot) {
  if (profiles_.size() >= kMaxCached && !profiles_.contains(profile.get())) profiles_.clear();
  ProfileEntry& e = profiles_[profile.get()];
  const bool hit = e.profile == profile && e.engine_version == snapshot.version;
  metrics_.count_cache(hit);
  if (!hit) {
    const auto& p = *profile;
    e.profile = profile;
    e.engine_version = snapshot.version;
    e.rights =
        snapshot.engine->effective_rights(policy::Grants{p.roles, p.groups, p.permissions, p.licenses});
    e.grant_fields.clear();
    append_field(e.grant_fields, snapshot.h_roles, join_names(e.rights.roles));
    append_field(e.grant_fields, snapshot.h_groups, join_names(e.rights.groups));
    append_field(e.grant_fields, snapshot.h_permissions, join_names(e.rights.permissions));
    append_field(e.grant_fields, snapshot.h_licenses, join_names(e.rights.licenses));
  }
  return e;
}

PlanEnvironment::Caller Worker::check_bearer(std::string_view token, std::string& identity_fields) {
  const auto now = store::system_now();
  auto verified = replica_->verify(token, now);
  metrics_.count_verification(static_cast<int>(verified.failure));
  Caller caller;
  if (!verified) {
    caller.credential = policy::Credential::Invalid;
    caller.failure = store::to_string(verified.failure);
    return caller;
  }
  const store::ActiveToken& t = *verified.token;
  const ProfileEntry& entry = profile_entry(t.profile, *snapshot_);
  identity_fields.clear();
  append_field(identity_fields, snapshot_->h_subject, t.id);
  append_sanitized_field(identity_fields, snapshot_->h_name, t.name);
  identity_fields.append(entry.grant_fields);
  // Last-used times: one report a minute per token, from whichever worker wins.
  const std::int64_t now_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
  std::int64_t reported = t.last_reported_ns.load(std::memory_order_relaxed);
  if (now_ns - reported >= std::chrono::nanoseconds(std::chrono::minutes(1)).count() &&
      t.last_reported_ns.compare_exchange_strong(reported, now_ns, std::memory_order_relaxed)) {
    std::lock_guard lock(uses_mutex_);
    uses_.emplace_back(t.id, now);
  }
  caller.credential = policy::Credential::Valid;
  caller.rights = &entry.rights;
  caller.rate_limit = t.profile->rate_limit ? &*t.profile->rate_limit : nullptr;
  caller.token = std::move(verified.token);
  return caller;
}

namespace {

using ratelimit::Budget;
using ratelimit::GcraParams;

// One request against a budget held in `slot`, taking it from the node's table
// (by `key()`) when the slot is empty or the table's sweep retired it.
template <class Key>
Budget::Result take_budget(ratelimit::BudgetTable& table, std::shared_ptr<Budget>& slot, Key key,
                           const GcraParams& params, std::uint64_t now) {
  for (;;) {
    if (!slot) slot = table.acquire(key());
    const auto result = slot->take(now, params);
    if (result.verdict != Budget::Verdict::Retired) return result;
    slot.reset();
  }
}

std::string limit_key(const GcraParams& p) { return fmt::format("{}:{}", p.interval_ns, p.tolerance_ns); }

}  // namespace

PlanEnvironment::Admission Worker::admit(const policy::RateLimits& limits, int route, const Caller& caller,
                                         std::string_view client_address) {
  const std::uint64_t now = ratelimit::steady_now_ns();
  Admission refused;
  refused.allowed = false;
  if (limits.per_address) {  // a public route and no valid token: the client address's budget
    const auto r = shared_.address_budgets.take(client_address, static_cast<std::uint32_t>(route),
                                                GcraParams::of(*limits.route), now);
    if (r.allowed) return {};
    refused.by_route = true;
    refused.limit = limits.route;
    refused.retry_after_ns = r.retry_after_ns;
    return refused;
  }
  if (!caller.token) return {};  // only a valid caller has token budgets
  // The budget pointers this worker keeps for the token: found again by the
  // next request without the node's table and its lock.
  if (budgets_.size() >= kMaxCached && !budgets_.contains(caller.token.get())) budgets_.clear();
  TokenBudgets& entry = budgets_[caller.token.get()];
  if (entry.token != caller.token || entry.engine_version != snapshot_->version) {
    // The limits may differ now: the budgets are looked up again (by a key that
    // names the limit, so a changed limit starts with a full budget).
    entry = TokenBudgets{caller.token, snapshot_->version, nullptr, {}};
  }
  const std::string& id = caller.token->id;
  Budget* counted = nullptr;
  GcraParams token_params;
  if (limits.token) {
    token_params = GcraParams::of(*limits.token);
    const auto r = take_budget(
        shared_.budgets, entry.token_budget,
        [&] { return fmt::format("t:{}:{}", id, limit_key(token_params)); }, token_params, now);
    if (r.verdict == Budget::Verdict::Limited) {
      refused.limit = limits.token;
      refused.retry_after_ns = r.gcra.retry_after_ns;
      return refused;
    }
    counted = entry.token_budget.get();
  }
  if (limits.route) {
    const auto index = static_cast<std::size_t>(route);
    if (entry.route_budgets.size() <= index) entry.route_budgets.resize(index + 1);
    const auto params = GcraParams::of(*limits.route);
    const auto r = take_budget(
        shared_.budgets, entry.route_budgets[index],
        [&] { return fmt::format("r:{}:{}:{}:{}", id, index, limits.route_path, limit_key(params)); }, params,
        now);
    if (r.verdict == Budget::Verdict::Limited) {
      // Not forwarded, so not counted against the token either.
      if (counted) counted->refund(token_params);
      refused.by_route = true;
      refused.limit = limits.route;
      refused.retry_after_ns = r.gcra.retry_after_ns;
      return refused;
    }
  }
  return {};
}

std::vector<std::pair<std::string, store::TimePoint>> Worker::take_uses() {
  std::lock_guard lock(uses_mutex_);
  return std::exchange(uses_, {});
}

void Worker::make_request_id(std::string& out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.resize(32);  // the session's reused string: no allocation after the first
  std::uint64_t a = rng_(), b = rng_();
  for (int i = 0; i < 16; ++i) {
    out[i] = kHex[(a >> (i * 4)) & 0xF];
    out[16 + i] = kHex[(b >> (i * 4)) & 0xF];
  }
}

}  // namespace tokengate::gateway
