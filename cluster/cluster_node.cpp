#include "cluster/cluster_node.hpp"

#include <fmt/format.h>
#include <malloc.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <deque>
#include <future>
#include <mutex>
#include <thread>

#include "cluster/change_plan.hpp"
#include "cluster/pg_connection.hpp"
#include "cluster/pg_tokens.hpp"
#include "store/token_codec.hpp"

namespace tokengate::cluster {

namespace asio = boost::asio;
using SteadyClock = std::chrono::steady_clock;

namespace {

// The catch-up query runs this often even when notifications arrive. NOTIFY is
// the fast path (a change shows within milliseconds); the poll is the safety net
// for a notification that never came (one is lost when the listening connection
// drops between commit and delivery), and with 500 ms a change still shows within
// the one second SPEC §7 promises. It also probes a hung server: the query has
// kPollTimeout to answer. Its cost is one primary-key range scan returning
// nothing, twice a second per node.
constexpr auto kPollInterval = std::chrono::milliseconds(500);
constexpr auto kPollTimeout = std::chrono::seconds(2);
// Changes read and applied per page (one RocksDB batch, one fsync each); small
// enough (a few hundred KiB) to arrive well within kPollTimeout on a slow link.
constexpr int kPageSize = 500;
// Reconnect backoff: doubles from the first to the last.
constexpr auto kBackoffFirst = std::chrono::milliseconds(250);
constexpr auto kBackoffMax = std::chrono::seconds(5);
// How long the admin thread waits for a write the control thread runs; the
// statements have their own 5 s deadline, so this is a backstop.
constexpr auto kWriteWait = std::chrono::seconds(12);
// Change-log entries older than this are pruned (hourly); a node away longer
// reloads the whole set when it comes back.
constexpr auto kKeepChanges = std::chrono::hours(24 * 7);
constexpr auto kPruneEvery = std::chrono::hours(1);

struct Job {
  std::function<asio::awaitable<void>(PgConnection&)> run;
  std::function<void(std::exception_ptr)> fail;
};

std::exception_ptr as_store_error(const PgError& e) {
  if (e.broken || e.sqlstate.empty())
    return std::make_exception_ptr(
        store::StoreUnavailable(fmt::format("PostgreSQL is unavailable: {}", e.what())));
  return std::make_exception_ptr(store::StoreError(fmt::format("PostgreSQL: {}", e.what())));
}

}  // namespace

struct ClusterNode::Impl {
  Impl(const conf::Config& config, Log log_fn)
      : pg(*config.store.postgres),
        log(std::move(log_fn)),
        conn(context.get_executor()),
        backoff_timer(context) {
    connect.url = pg.url;
    connect.password_file = pg.password_file;
  }

  conf::PostgresConfig pg;
  Log log;
  ConnectOptions connect;
  std::unique_ptr<store::LocalCopy> local;

  asio::io_context context;
  PgConnection conn;
  asio::steady_timer backoff_timer;
  std::thread thread;

  // Control thread only.
  std::deque<Job> jobs;
  std::vector<std::pair<std::string, store::TimePoint>> pending_uses;
  std::string cluster_id;
  std::uint64_t applied = 0;
  bool stopping = false;
  bool draining = false;   // stopping once the last last-used batch is out
  std::string last_error;  // logged once per distinct failure
  SteadyClock::time_point next_prune{};
  std::function<void(bool)> serving_callback;
  bool serving_reported = false;
  bool serving_known = false;

  // Any thread.
  std::atomic<bool> connected{false};
  std::atomic<bool> has_copy{false};
  std::atomic<bool> serving{false};
  std::atomic<bool> accepting{true};
  std::atomic<std::uint64_t> revision{0};
  std::atomic<long long> last_sync{-1};  // seconds since the epoch, -1 = never
  std::atomic<std::uint64_t> changes_applied{0};
  std::atomic<std::uint64_t> full_reloads{0};
  std::atomic<std::uint64_t> write_errors{0};

  void info(std::string_view line) { log(false, line); }
  void warn(std::string_view line) { log(true, line); }

  void mark_synced() {
    last_sync.store(
        std::chrono::duration_cast<std::chrono::seconds>(store::system_now().time_since_epoch()).count());
    has_copy.store(true);
    connected.store(true);
    update_serving();
  }

  // serving = has a copy of this cluster and, with max_staleness, a recent sync.
  void update_serving() {
    bool now_serving = has_copy.load();
    if (now_serving && pg.max_staleness.count() > 0) {
      const long long last = last_sync.load();
      const auto age = store::system_now() - store::TimePoint{std::chrono::seconds{last}};
      now_serving = last >= 0 && age <= pg.max_staleness;
    }
    serving.store(now_serving);
    if (!serving_known || now_serving != serving_reported) {
      serving_known = true;
      serving_reported = now_serving;
      if (serving_callback) serving_callback(now_serving);
    }
  }

  // A first sync is routine (info); a copy that fell behind the log or belongs
  // elsewhere is worth a warning.
  asio::awaitable<void> full_reload(std::string_view reason, bool warning = true) {
    log(warning, fmt::format("reloading every token from PostgreSQL: {}", reason));
    {
      Snapshot snap = co_await load_snapshot(conn);
      local->replace_all(snap.tokens, store::SyncState{cluster_id, snap.revision});
      applied = snap.revision;
    }
    // The snapshot held every record whole (descriptions, timestamps), far more
    // than the directory keeps, and glibc keeps freed heap for reuse: give it back.
    malloc_trim(0);
    revision.store(applied);
    full_reloads.fetch_add(1);
    mark_synced();
  }

  // The one path by which changes reach the local copy and the directory.
  asio::awaitable<void> catch_up() {
    for (;;) {
      ChangeBatch batch = co_await changes_since(conn, applied, kPageSize, kPollTimeout);
      CatchUpPlan plan = plan_catch_up(applied, batch);
      if (plan.step == CatchUpPlan::Step::UpToDate) {
        mark_synced();
        co_return;
      }
      if (plan.step == CatchUpPlan::Step::FullReload) {
        co_await full_reload(plan.reason);
        co_return;
      }
      std::vector<store::LocalCopy::Change> changes;
      changes.reserve(batch.changes.size());
      for (auto& c : batch.changes) {
        store::LocalCopy::Change change{c.id, std::nullopt};
        if (c.data) {
          try {
            change.token = store::decode_token(c.id, *c.data);
          } catch (const std::exception& e) {
            throw store::StoreError(fmt::format("PostgreSQL change {} holds a malformed token {}: {}",
                                                c.revision, c.id, e.what()));
          }
        }
        changes.push_back(std::move(change));
      }
      const std::uint64_t last = batch.changes.back().revision;
      local->apply_changes(changes, last);
      applied = last;
      revision.store(applied);
      changes_applied.fetch_add(changes.size());
      if (last >= batch.head) {
        mark_synced();
        co_return;
      }
    }
  }

  // Connect, check the cluster (schema, key), LISTEN before reading so no change
  // committed after the read goes unnoticed, then bring the copy up to date.
  asio::awaitable<void> connect_and_sync() {
    co_await conn.connect(connect);
    const std::string id = co_await open_cluster(conn, local->key(), /*create_if_empty=*/true);
    co_await conn.query(fmt::format("LISTEN {}", kChannel));
    const store::SyncState state = local->sync_state();
    cluster_id = id;
    if (state.cluster_id != id) {
      has_copy.store(false);
      if (!state.cluster_id.empty()) {
        co_await full_reload(
            fmt::format("the local copy belongs to another cluster ({}, this one is {}); discarding it",
                        state.cluster_id, id));
      } else {
        co_await full_reload("the local copy has never been synced with this cluster", /*warning=*/false);
      }
      co_return;
    }
    co_await catch_up();
  }

  void fail_jobs(const std::string& why) {
    while (!jobs.empty()) {
      Job job = std::move(jobs.front());
      jobs.pop_front();
      write_errors.fetch_add(1);
      job.fail(std::make_exception_ptr(
          store::StoreUnavailable(fmt::format("PostgreSQL is unavailable: {}", why))));
    }
  }

  void lost(const std::string& why) {
    conn.close();
    connected.store(false);
    if (why != last_error) {
      warn(fmt::format("PostgreSQL is unavailable: {}; serving the local copy at revision {}, retrying", why,
                       applied));
      last_error = why;
    }
    fail_jobs(why);
    update_serving();
  }

  asio::awaitable<void> run() {
    auto backoff = std::chrono::milliseconds(kBackoffFirst);
    auto next_poll = SteadyClock::now();
    while (!stopping) {
      if (!conn.connected()) {
        if (draining) break;  // the connection went while draining: nothing more to send
        std::string failure;
        try {
          co_await connect_and_sync();
          if (!last_error.empty()) info(fmt::format("PostgreSQL is back; in sync at revision {}", applied));
          last_error.clear();
          backoff = kBackoffFirst;
          next_poll = SteadyClock::now() + kPollInterval;
        } catch (const std::exception& e) {
          failure = e.what();
        }
        if (!failure.empty()) {
          if (stopping) break;
          lost(failure);
          // co_await is not allowed in a handler, hence the wait out here.
          backoff_timer.expires_after(backoff);
          co_await backoff_timer.async_wait(asio::as_tuple(asio::use_awaitable));
          backoff = std::min<std::chrono::milliseconds>(backoff * 2, kBackoffMax);
        }
        continue;
      }
      try {
        if (!jobs.empty()) {
          Job job = std::move(jobs.front());
          jobs.pop_front();
          co_await job.run(conn);
          continue;
        }
        if (!pending_uses.empty()) {
          auto uses = std::exchange(pending_uses, {});
          co_await cluster::record_last_used(conn, std::move(uses));
          continue;
        }
        if (draining) {
          stopping = true;  // the shutdown's last-used batch is in PostgreSQL
          break;
        }
        if (SteadyClock::now() >= next_prune) {
          next_prune = SteadyClock::now() + kPruneEvery;
          co_await prune_changes(conn, kKeepChanges);
          continue;
        }
        // Notifications read from the socket while a statement ran are already
        // off the socket: waiting for it to become readable would miss them until
        // the next poll.
        if (!conn.take_notifications().empty()) {
          co_await catch_up();
          continue;
        }
        if (SteadyClock::now() >= next_poll) {
          next_poll = SteadyClock::now() + kPollInterval;
          co_await catch_up();
          continue;
        }
        update_serving();  // max_staleness ticks on even when nothing happens
        if (co_await conn.wait_input(next_poll)) {
          if (!conn.take_notifications().empty()) co_await catch_up();
        }
      } catch (const std::exception& e) {
        if (stopping || draining) break;
        lost(e.what());
      }
    }
    fail_jobs("the gateway is shutting down");
    conn.close();
  }

  // Runs `body` (a write) on the control thread, then the catch-up that applies it
  // here; blocks the calling (admin) thread until then.
  template <typename T, typename F>
  T submit(F body) {
    if (!accepting.load()) throw store::StoreUnavailable("the gateway is shutting down");
    if (!connected.load()) {
      write_errors.fetch_add(1);
      throw store::StoreUnavailable("PostgreSQL is unavailable: writes need it; try again later");
    }
    auto promise = std::make_shared<std::promise<T>>();
    auto future = promise->get_future();
    asio::post(context, [this, promise, body = std::move(body)]() mutable {
      if (stopping) {
        promise->set_exception(
            std::make_exception_ptr(store::StoreUnavailable("the gateway is shutting down")));
        return;
      }
      jobs.push_back(Job{[this, promise, body](PgConnection& c) -> asio::awaitable<void> {
                           std::exception_ptr error;
                           std::optional<T> result;
                           try {
                             result.emplace(co_await body(c));
                           } catch (const PgError& e) {
                             error = as_store_error(e);
                           } catch (...) {
                             error = std::current_exception();
                           }
                           if (error) {
                             write_errors.fetch_add(1);
                             promise->set_exception(error);
                             co_return;
                           }
                           // Committed: the caller gets the result whatever happens next. The
                           // copy follows now if it can, else after the reconnect.
                           try {
                             co_await catch_up();
                           } catch (const std::exception& e) {
                             lost(e.what());
                           }
                           promise->set_value(std::move(*result));
                         },
                         [promise](std::exception_ptr e) { promise->set_exception(e); }});
      conn.interrupt();
    });
    if (future.wait_for(kWriteWait) != std::future_status::ready) {
      write_errors.fetch_add(1);
      throw store::StoreUnavailable("PostgreSQL did not answer in time");
    }
    return future.get();
  }
};

std::unique_ptr<ClusterNode> ClusterNode::open(const conf::Config& config, Log log) {
  auto impl = std::make_unique<Impl>(config, std::move(log));
  impl->local = store::open_local_copy({config.store.path, config.store.key_file, store::system_now});
  const store::SyncState state = impl->local->sync_state();
  impl->applied = state.revision;
  impl->revision.store(state.revision);
  impl->has_copy.store(!state.cluster_id.empty());
  // The first sync before any worker starts, on this (the main) thread.
  Impl* p = impl.get();
  auto future = asio::co_spawn(p->context, p->connect_and_sync(), asio::use_future);
  p->context.run();
  p->context.restart();
  try {
    future.get();
    p->info(fmt::format("cluster mode: in sync with PostgreSQL at revision {}", p->applied));
  } catch (const PgError& e) {
    p->conn.close();
    p->last_error = e.what();
    if (p->has_copy.load()) {
      p->warn(fmt::format(
          "PostgreSQL is unavailable ({}): serving the local copy at revision {} until it is back", e.what(),
          p->applied));
    } else {
      p->warn(
          fmt::format("PostgreSQL is unavailable ({}) and this node has no local copy yet: not ready until "
                      "the first sync",
                      e.what()));
    }
  }
  p->update_serving();
  return std::unique_ptr<ClusterNode>(new ClusterNode(std::move(impl)));
}

ClusterNode::ClusterNode(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ClusterNode::~ClusterNode() { stop(); }

void ClusterNode::start() {
  Impl* p = impl_.get();
  asio::co_spawn(p->context, p->run(), asio::detached);
  p->thread = std::thread([p] { p->context.run(); });
}

void ClusterNode::stop() {
  Impl* p = impl_.get();
  p->accepting.store(false);
  if (!p->thread.joinable()) return;
  asio::post(p->context, [p] {
    if (p->conn.connected() && !p->pending_uses.empty()) {
      // The server's final last-used flush (posted before this) goes out first;
      // a hung server bounds it by the statement deadline.
      p->draining = true;
      p->conn.interrupt();
      return;
    }
    p->stopping = true;
    p->conn.close();  // wakes the loop wherever it waits
    p->backoff_timer.cancel();
  });
  p->thread.join();
}

NodeStatus ClusterNode::status() const {
  const Impl& p = *impl_;
  NodeStatus s;
  s.connected = p.connected.load();
  s.has_copy = p.has_copy.load();
  s.serving = p.serving.load();
  s.revision = p.revision.load();
  if (const long long t = p.last_sync.load(); t >= 0) s.last_sync = store::TimePoint{std::chrono::seconds{t}};
  s.changes_applied = p.changes_applied.load();
  s.full_reloads = p.full_reloads.load();
  s.write_errors = p.write_errors.load();
  return s;
}

void ClusterNode::on_serving_changed(std::function<void(bool)> callback) {
  // Before start(): the control thread is not running yet.
  impl_->serving_callback = std::move(callback);
  impl_->serving_callback(impl_->serving.load());
}

store::IssuedToken ClusterNode::create(const store::NewToken& request) {
  Impl* p = impl_.get();
  auto r = p->submit<WriteResult>([p, request](PgConnection& c) {
    return create_token(c, request, p->local->key(), store::system_now());
  });
  return std::move(*r.issued);
}

std::optional<store::TokenRecord> ClusterNode::update(std::string_view id, const store::TokenPatch& patch) {
  if (!store::is_valid_id(id)) return std::nullopt;
  auto r = impl_->submit<WriteResult>([id = std::string(id), patch](PgConnection& c) {
    return update_token(c, id, patch, store::system_now());
  });
  return r.record;
}

std::optional<store::IssuedToken> ClusterNode::rotate(std::string_view id, std::chrono::seconds grace) {
  if (!store::is_valid_id(id)) return std::nullopt;
  Impl* p = impl_.get();
  auto r = p->submit<WriteResult>([p, id = std::string(id), grace](PgConnection& c) {
    return rotate_token(c, id, grace, p->local->key(), store::system_now());
  });
  return std::move(r.issued);
}

bool ClusterNode::remove(std::string_view id) {
  if (!store::is_valid_id(id)) return false;
  auto r =
      impl_->submit<WriteResult>([id = std::string(id)](PgConnection& c) { return remove_token(c, id); });
  return r.revision != 0;
}

std::optional<store::TokenRecord> ClusterNode::get(std::string_view id) const {
  return impl_->local->get(id);
}
std::vector<store::TokenRecord> ClusterNode::list() const { return impl_->local->list(); }
std::vector<store::StoredToken> ClusterNode::load_all() const { return impl_->local->load_all(); }
std::size_t ClusterNode::count_estimate() const { return impl_->local->count_estimate(); }
void ClusterNode::scan(const std::function<void(store::StoredToken&&)>& visit) const {
  impl_->local->scan(visit);
}
store::VerifyResult ClusterNode::verify(std::string_view token) const { return impl_->local->verify(token); }

void ClusterNode::record_last_used(const std::vector<std::pair<std::string, store::TimePoint>>& uses) {
  impl_->local->record_last_used(uses);
  if (uses.empty() || !impl_->thread.joinable()) return;
  Impl* p = impl_.get();
  // Batched to PostgreSQL by the control thread; lost if it is away (harmless).
  asio::post(p->context, [p, uses] {
    if (!p->connected.load()) return;
    p->pending_uses.insert(p->pending_uses.end(), uses.begin(), uses.end());
    p->conn.interrupt();
  });
}

void ClusterNode::set_change_listener(ChangeListener listener) {
  impl_->local->set_change_listener(std::move(listener));
}
const store::ServerKey& ClusterNode::key() const noexcept { return impl_->local->key(); }
store::TimePoint ClusterNode::now() const { return store::system_now(); }

}  // namespace tokengate::cluster
