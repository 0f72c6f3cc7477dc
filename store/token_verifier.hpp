// Hot-path token verification with no disk access and no lock shared by all
// threads: the process keeps every credential in memory (TokenDirectory), and each
// worker thread reads its own Replica. A write to the store publishes the change
// before the write call returns, so the next verify on any replica sees it: no
// cache can keep a deleted, rotated-out or downgraded token alive.
//
// Memory is what limits how many tokens a sidecar holds, so the directory keeps
// only what a request needs (ActiveToken: about 150 bytes; descriptions and
// timestamps stay in the store), grant sets are shared by every token that has
// the same ones, and all threads share one immutable table of the tokens (the
// base, 16 bytes a slot) plus a small overlay of the changes made since it was
// built. A replica holds the base by pointer and copies only the overlay; after
// enough changes the writer builds a new base, off the lock, and swaps it in.
#pragma once

#include <atomic>
#include <boost/unordered/unordered_flat_map.hpp>
#include <boost/unordered/unordered_flat_set.hpp>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "conf/rate_limit.hpp"
#include "store/token_store.hpp"

namespace tokengate::store {

// The names a token is granted and its own rate limit. Tokens typically share a
// few such sets, so the directory keeps one object per distinct set and the
// gateway derives effective rights once per set, not once per token.
struct TokenProfile {
  std::vector<std::string> roles, groups, permissions, licenses;  // each sorted, unique
  std::optional<conf::RateLimit> rate_limit;                      // none = the configured default
  friend bool operator==(const TokenProfile&, const TokenProfile&) = default;
};

// What the data plane keeps of a token.
struct ActiveToken {
  ActiveToken(StoredToken&& stored, std::shared_ptr<const TokenProfile> profile);

  std::string id;
  std::string name;
  std::shared_ptr<const TokenProfile> profile;
  std::optional<TimePoint> expires_at;
  Sha256 current{};
  // The previous secret during a rotation grace (rare, hence out of line).
  struct Grace {
    Sha256 digest{};
    std::optional<TimePoint> until;
  };
  std::unique_ptr<const Grace> previous;
  // When a worker last queued this token's last-used time (nanoseconds since the
  // epoch): one report a minute for all workers together, whichever wins the CAS.
  mutable std::atomic<std::int64_t> last_reported_ns{0};
};

// check_secret for the in-memory form: the same rule (token_store.hpp).
VerifyFailure check_secret(const ActiveToken& token, std::string_view secret, const ServerKey& key,
                           TimePoint now) noexcept;

struct ActiveVerifyResult {
  VerifyFailure failure = VerifyFailure::Malformed;
  std::shared_ptr<const ActiveToken> token;  // set only when failure == None
  explicit operator bool() const noexcept { return failure == VerifyFailure::None; }
};

class TokenDirectory {
 public:
  // Loads every token from `store` and subscribes to its changes. `store` must
  // outlive the directory. The store must call its listener from one thread at a
  // time (every TokenStore does: under its write lock).
  explicit TokenDirectory(TokenStore& store);
  ~TokenDirectory();

  struct IdHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view id) const noexcept;
    std::size_t operator()(const std::shared_ptr<const ActiveToken>& t) const noexcept {
      return (*this)(t->id);
    }
  };
  struct IdEqual {
    using is_transparent = void;
    static std::string_view of(std::string_view id) noexcept { return id; }
    static std::string_view of(const std::shared_ptr<const ActiveToken>& t) noexcept { return t->id; }
    template <class A, class B>
    bool operator()(const A& a, const B& b) const noexcept {
      return of(a) == of(b);
    }
  };
  // The base: a set of the tokens themselves, found by id, so a slot is one
  // pointer and no key string. Immutable once published.
  using Table = boost::unordered_flat_set<std::shared_ptr<const ActiveToken>, IdHash, IdEqual>;
  // Changes since the base was built: id -> the token now, null when deleted.
  using Overlay = boost::unordered_flat_map<std::string, std::shared_ptr<const ActiveToken>, IdHash, IdEqual>;

  // One per worker thread; not thread-safe itself, never shared between threads.
  class Replica {
   public:
    // now: injected by the caller (tests move it). Costs one atomic load when
    // nothing changed since the last call; takes the directory mutex only after a write.
    ActiveVerifyResult verify(std::string_view token, TimePoint now);

   private:
    friend class TokenDirectory;
    explicit Replica(TokenDirectory& directory);
    void sync();
    void copy_all();  // with directory_.mutex_ held
    TokenDirectory& directory_;
    std::uint64_t applied_version_ = 0;
    // The replica's view (so a lookup takes no lock): the shared base and its own
    // copy of the overlay. A changed token is a new object, so a request that
    // still holds the old one keeps a consistent view.
    std::shared_ptr<const Table> base_;
    Overlay overlay_;
  };

  std::unique_ptr<Replica> make_replica();

  std::size_t size() const;
  std::size_t profile_count() const;  // distinct grant sets held (tests, metrics)
  std::uint64_t rebuilds() const;     // how many times a new base replaced the old one (tests)

 private:
  void on_change(std::string_view id, const StoredToken* now);
  // Under mutex_: the token's in-memory form, its profile shared with every
  // other token that has the same one.
  std::shared_ptr<const ActiveToken> activate(StoredToken stored);
  // The writer, once the overlay is large: a new base with the overlay applied.
  void rebuild_base();
  static const std::shared_ptr<const ActiveToken>* find(const Table& base, const Overlay& overlay,
                                                        std::string_view id);

  struct ProfileHash {
    using is_transparent = void;
    std::size_t operator()(const TokenProfile& p) const noexcept;
    std::size_t operator()(const std::shared_ptr<const TokenProfile>& p) const noexcept {
      return (*this)(*p);
    }
  };
  struct ProfileEqual {
    using is_transparent = void;
    static const TokenProfile& of(const TokenProfile& p) noexcept { return p; }
    static const TokenProfile& of(const std::shared_ptr<const TokenProfile>& p) noexcept { return *p; }
    template <class A, class B>
    bool operator()(const A& a, const B& b) const noexcept {
      return of(a) == of(b);
    }
  };

  TokenStore& store_;
  // Serialises writers (on_change) so a base can be rebuilt without mutex_: only a
  // writer changes base_ and overlay_, and it reads them without racing itself.
  mutable std::mutex writer_mutex_;
  mutable std::mutex mutex_;  // guards what replicas read below; never taken when nothing changed
  std::shared_ptr<const Table> base_;
  std::shared_ptr<const Table> retired_;  // the previous base, freed by the writer rather than a worker
  Overlay overlay_;
  std::size_t size_ = 0;
  std::uint64_t rebuilds_ = 0;
  boost::unordered_flat_set<std::shared_ptr<const TokenProfile>, ProfileHash, ProfileEqual> profiles_;
  std::size_t profiles_after_sweep_ = 0;
  std::vector<std::pair<std::uint64_t, std::string>> changes_;  // (version, id), ascending
  // Changes up to and including this version were dropped from changes_ to bound its
  // size; a replica that has not applied them takes a full copy instead.
  std::uint64_t trimmed_version_ = 0;
  std::atomic<std::uint64_t> version_{0};
};

}  // namespace tokengate::store
