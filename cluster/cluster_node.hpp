// `serve` in cluster mode (README.md, "Running several gateways"): the node's
// TokenStore. Reads come from the local copy (RocksDB), which the TokenDirectory
// mirrors in memory for the workers. Every change, this node's own writes
// included, reaches the copy one way: the change log in PostgreSQL, read after a
// NOTIFY, after a write, or by the periodic catch-up, applied in revision order.
//
// All PostgreSQL I/O runs on one control thread (an io_context of its own, libpq
// non-blocking). Workers never touch it; the admin thread hands a write to it and
// waits for the result, which stalls only the admin listener.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "conf/config.hpp"
#include "store/local_copy.hpp"
#include "store/token_store.hpp"

namespace tokengate::cluster {

// What /readyz and the metrics show; read from any thread.
struct NodeStatus {
  bool connected = false;      // the control connection is up and in sync
  bool has_copy = false;       // the local copy holds this cluster's data (synced at least once)
  bool serving = false;        // has_copy and not older than store.postgres.max_staleness
  std::uint64_t revision = 0;  // last revision applied to the local copy
  std::optional<store::TimePoint> last_sync;  // last time the copy was known current
  std::uint64_t changes_applied = 0;
  std::uint64_t full_reloads = 0;
  std::uint64_t write_errors = 0;
};

class ClusterNode final : public store::TokenStore {
 public:
  using Log = std::function<void(bool warning, std::string_view line)>;

  // Opens the local copy and syncs it with PostgreSQL before returning (before any
  // worker starts). Throws store::StoreError (one line) for what must stop the
  // node: a key that is not the cluster's, a schema it does not know. PostgreSQL
  // unreachable is not fatal: the node serves its copy (logged as a warning) or,
  // without one, stays not ready.
  static std::unique_ptr<ClusterNode> open(const conf::Config& config, Log log);
  ~ClusterNode() override;

  // The control thread: LISTEN, catch-up, writes, reconnects. stop() joins it.
  void start();
  void stop();

  NodeStatus status() const;
  // Called on the control thread whenever `serving` changes (and once at start).
  void on_serving_changed(std::function<void(bool)> callback);

  // TokenStore. Writes throw store::StoreUnavailable when PostgreSQL is away.
  store::IssuedToken create(const store::NewToken& request) override;
  std::optional<store::TokenRecord> update(std::string_view id, const store::TokenPatch& patch) override;
  std::optional<store::IssuedToken> rotate(std::string_view id, std::chrono::seconds grace) override;
  bool remove(std::string_view id) override;
  std::optional<store::TokenRecord> get(std::string_view id) const override;
  std::vector<store::TokenRecord> list() const override;
  std::vector<store::StoredToken> load_all() const override;
  void scan(const std::function<void(store::StoredToken&&)>& visit) const override;
  std::size_t count_estimate() const override;
  store::VerifyResult verify(std::string_view token) const override;
  void record_last_used(const std::vector<std::pair<std::string, store::TimePoint>>& uses) override;
  void set_change_listener(ChangeListener listener) override;
  const store::ServerKey& key() const noexcept override;
  store::TimePoint now() const override;

  struct Impl;

 private:
  explicit ClusterNode(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tokengate::cluster
