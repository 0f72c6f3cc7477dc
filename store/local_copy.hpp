// Cluster mode (cluster/, README.md "Running several gateways"): the RocksDB store
// as a node's local copy of the token set in PostgreSQL. Besides the TokenStore
// operations it records which database it mirrors and the last revision applied,
// and it takes changes that are already committed in PostgreSQL.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "store/token_store.hpp"

namespace tokengate::store {

struct SyncState {
  std::string cluster_id;  // empty: this copy never synced
  std::uint64_t revision = 0;
};

class LocalCopy : public TokenStore {
 public:
  virtual SyncState sync_state() const = 0;
  // Applies committed changes in order (token nullopt: deleted) and records
  // `revision`, in one synced batch (one fsync for a page of the change log);
  // then calls the change listener for each.
  struct Change {
    std::string id;
    std::optional<StoredToken> token;
  };
  virtual void apply_changes(const std::vector<Change>& changes, std::uint64_t revision) = 0;
  // Makes the copy exactly `tokens` at `state` (a full reload) in one synced
  // batch; the listener hears of every token removed or written.
  virtual void replace_all(const std::vector<StoredToken>& tokens, const SyncState& state) = 0;
};

// The RocksDB store of TokenStore::open, as a local copy.
std::unique_ptr<LocalCopy> open_local_copy(const TokenStore::Options& options);

}  // namespace tokengate::store
