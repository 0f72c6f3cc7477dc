// Hot-path token verification with no disk access and no lock shared by all
// threads: the process keeps every credential in memory (TokenDirectory), and each
// worker thread reads its own Replica. A write to the store publishes the change
// before the write call returns, so the next verify on any replica sees it: no
// cache can keep a deleted, rotated-out or downgraded token alive.
#pragma once

#include <atomic>
#include <boost/unordered/unordered_flat_map.hpp>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "store/token_store.hpp"

namespace tokengate::store {

class TokenDirectory {
 public:
  // Loads every token from `store` and subscribes to its changes. `store` must
  // outlive the directory.
  explicit TokenDirectory(TokenStore& store);
  ~TokenDirectory();

  // One per worker thread; not thread-safe itself, never shared between threads.
  class Replica {
   public:
    // now: injected by the caller (tests move it). Costs one atomic load when
    // nothing changed since the last call; takes the directory mutex only after a write.
    VerifyResult verify(std::string_view token, TimePoint now);

   private:
    friend class TokenDirectory;
    explicit Replica(TokenDirectory& directory);
    void sync();
    void copy_all();  // with directory_.mutex_ held
    TokenDirectory& directory_;
    std::uint64_t applied_version_ = 0;
    // Each replica owns its copies so shared_ptr reference counts never bounce
    // between threads. A changed token is a new object (new pointer). An open-
    // addressing table with the id stored in the slot (12 chars: no heap string):
    // a lookup among 100,000 tokens touches the slot, not a list node as well.
    struct IdHash {
      using is_transparent = void;
      std::size_t operator()(std::string_view id) const noexcept { return std::hash<std::string_view>{}(id); }
    };
    struct IdEqual {
      using is_transparent = void;
      bool operator()(std::string_view a, std::string_view b) const noexcept { return a == b; }
    };
    boost::unordered_flat_map<std::string, std::shared_ptr<const StoredToken>, IdHash, IdEqual> tokens_;
  };

  std::unique_ptr<Replica> make_replica();

  std::size_t size() const;

 private:
  void on_change(std::string_view id, const StoredToken* now);

  TokenStore& store_;
  mutable std::mutex mutex_;  // guards tokens_ and changes_; never taken when nothing changed
  std::unordered_map<std::string, std::shared_ptr<const StoredToken>> tokens_;
  std::vector<std::pair<std::uint64_t, std::string>> changes_;  // (version, id), ascending
  // Changes up to and including this version were dropped from changes_ to bound its
  // size; a replica that has not applied them takes a full copy instead.
  std::uint64_t trimmed_version_ = 0;
  std::atomic<std::uint64_t> version_{0};
};

}  // namespace tokengate::store
