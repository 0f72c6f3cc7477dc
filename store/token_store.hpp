// The durable token store: RocksDB with column families, synced writes, keyed
// hashes only. Owns the server key. Thread-safe (RocksDB is; writes serialize).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "store/clock.hpp"
#include "store/server_key.hpp"
#include "store/token_format.hpp"
#include "store/token_record.hpp"

namespace tokengate::store {

// Startup and I/O failures of the store: corrupt or foreign directory, locked by
// another process, key file problems, disk full. what() is one line for the user.
class StoreError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Cluster mode: PostgreSQL, the source of truth, cannot be reached or did not
// answer in time, so a write cannot be committed (admin API: 503 store_unavailable).
class StoreUnavailable : public StoreError {
 public:
  using StoreError::StoreError;
};

// What the store keeps to check a secret: HMAC-SHA256(server_key, secret) of the
// current secret, and during a rotation grace the previous one with its end.
struct Credential {
  Sha256 current{};
  std::optional<Sha256> previous;
  std::optional<TimePoint> previous_until;
};

struct StoredToken {
  TokenRecord record;
  Credential credential;
};

enum class VerifyFailure {
  None,        // verified
  Malformed,   // not the token format or bad checksum (store untouched)
  Unknown,     // no such id
  Mismatch,    // id exists, secret is not the current one nor a previous one in grace
  Expired,     // expires_at passed
  RotatedOut,  // the previous secret after its grace ended
};
std::string_view to_string(VerifyFailure failure) noexcept;  // "malformed", "unknown", ...

struct VerifyResult {
  VerifyFailure failure = VerifyFailure::Malformed;
  std::shared_ptr<const StoredToken> token;  // set only when failure == None
  explicit operator bool() const noexcept { return failure == VerifyFailure::None; }
};

// The single rule for "does this secret open this token at `now`", shared by the
// store and the in-memory verifier so they can never disagree.
VerifyFailure check_secret(const StoredToken& token, std::string_view secret, const ServerKey& key,
                           TimePoint now) noexcept;
// That rule over the parts every form of a token keeps; `digest` is the keyed hash
// of the presented secret, `previous` null when there is none.
VerifyFailure check_digest(const Sha256& digest, const Sha256& current, const Sha256* previous,
                           const std::optional<TimePoint>& previous_until,
                           const std::optional<TimePoint>& expires_at, TimePoint now) noexcept;

struct NewToken {
  std::string name;
  std::string description;
  std::vector<std::string> roles, groups, permissions, licenses;
  std::optional<TimePoint> expires_at;
  std::string created_by = "cli";
  std::optional<conf::RateLimit> rate_limit;  // none = the configured default
};

// Only the fields that are set change. expires_at: nullopt = keep, a nullopt inside = never.
struct TokenPatch {
  std::optional<std::string> name;
  std::optional<std::string> description;
  std::optional<std::vector<std::string>> roles, groups, permissions, licenses;
  std::optional<std::optional<TimePoint>> expires_at;
  std::optional<std::optional<conf::RateLimit>> rate_limit;  // a nullopt inside = back to the default
};

// The result of create and rotate: the plaintext, handed out exactly once.
struct IssuedToken {
  SecretToken token;
  TokenRecord record;
};

class TokenStore {
 public:
  struct Options {
    std::filesystem::path path;      // RocksDB directory, created if absent
    std::filesystem::path key_file;  // created 0600 if absent and the store is new
    Clock clock = system_now;
  };

  // Throws StoreError with a one-line message. Refuses: a locked store, a corrupt
  // or foreign directory, a key file that is missing next to an existing store or
  // is not the key the store was created with.
  static std::unique_ptr<TokenStore> open(const Options& options);
  virtual ~TokenStore() = default;

  // Writes are durable (WAL synced) before they return; they throw StoreError on
  // I/O failure and then leave nothing half-written.
  virtual IssuedToken create(const NewToken& request) = 0;
  virtual std::optional<TokenRecord> update(std::string_view id, const TokenPatch& patch) = 0;
  // grace zero: the old secret stops working at once.
  virtual std::optional<IssuedToken> rotate(std::string_view id, std::chrono::seconds grace) = 0;
  virtual bool remove(std::string_view id) = 0;

  virtual std::optional<TokenRecord> get(std::string_view id) const = 0;
  virtual std::vector<TokenRecord> list() const = 0;  // ordered by created_at, then id
  virtual std::vector<StoredToken> load_all() const = 0;
  // Every token once, in no particular order, record.last_used_at not filled: what
  // the in-memory directory loads, one token at a time instead of all at once.
  virtual void scan(const std::function<void(StoredToken&&)>& visit) const {
    for (auto& t : load_all()) visit(std::move(t));
  }
  // About how many tokens there are (for sizing a table before a scan); may be off.
  virtual std::size_t count_estimate() const { return 0; }

  // Reads the store; the gateway's hot path uses TokenDirectory instead.
  virtual VerifyResult verify(std::string_view token) const = 0;

  // Write-behind of last-used times (not synced: losing one is harmless).
  virtual void record_last_used(const std::vector<std::pair<std::string, TimePoint>>& uses) = 0;

  // Called after every durable write, on the writing thread, with the new state of
  // the token (nullptr when deleted). One listener; the TokenDirectory installs it.
  using ChangeListener = std::function<void(std::string_view id, const StoredToken* now)>;
  virtual void set_change_listener(ChangeListener listener) = 0;

  virtual const ServerKey& key() const noexcept = 0;
  virtual TimePoint now() const = 0;
};

}  // namespace tokengate::store
