// The token set in PostgreSQL: the versioned schema, `store migrate`, the writes
// (one transaction each, committed synchronously, ordered by a revision) and the
// reads a node needs to build and follow its local copy. Coroutines over one
// PgConnection; they throw PgError (connection/SQL) or store::StoreError (what a
// user must fix: unknown schema, another key).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cluster/change_plan.hpp"
#include "cluster/pg_connection.hpp"
#include "store/server_key.hpp"
#include "store/token_store.hpp"

namespace tokengate::cluster {

constexpr int kSchemaVersion = 1;
constexpr const char* kChannel = "tokengate_changes";  // LISTEN/NOTIFY channel, payload = revision

// HMAC-SHA256(key, "tokengate key fingerprint") in hex: identifies the key without
// revealing it (nothing about the key or a token follows from it).
std::string key_fingerprint(const store::ServerKey& key);

// Creates or upgrades the schema; safe from several processes at once (one
// transaction under pg_advisory_xact_lock). Returns the version found (0: none).
boost::asio::awaitable<int> migrate(PgConnection& conn);

// Checks the schema (creating it in an empty database when `create_if_empty`),
// records the key fingerprint if none is there yet and refuses another key.
// Returns the cluster id.
boost::asio::awaitable<std::string> open_cluster(PgConnection& conn, const store::ServerKey& key,
                                                 bool create_if_empty);

// Up to `limit` changes after `after`, with the head revision, in one snapshot.
boost::asio::awaitable<ChangeBatch> changes_since(PgConnection& conn, std::uint64_t after, int limit,
                                                  std::chrono::milliseconds timeout);

// The whole set and the revision it is at, in one snapshot.
struct Snapshot {
  std::uint64_t revision = 0;
  std::vector<store::StoredToken> tokens;
};
boost::asio::awaitable<Snapshot> load_snapshot(PgConnection& conn);

// Writes: read the row, compute the next state with the same rules as the RocksDB
// store (store/token_codec.hpp), write it if nobody changed it meanwhile (else
// read again). `revision` is the commit's revision; the plaintext only exists once
// the commit has returned.
struct WriteResult {
  std::uint64_t revision = 0;  // 0: nothing written (no such token)
  std::optional<store::IssuedToken> issued;
  std::optional<store::TokenRecord> record;
};
boost::asio::awaitable<WriteResult> create_token(PgConnection& conn, const store::NewToken& request,
                                                 const store::ServerKey& key, store::TimePoint now);
boost::asio::awaitable<WriteResult> update_token(PgConnection& conn, std::string id, store::TokenPatch patch,
                                                 store::TimePoint now);
boost::asio::awaitable<WriteResult> rotate_token(PgConnection& conn, std::string id,
                                                 std::chrono::seconds grace, const store::ServerKey& key,
                                                 store::TimePoint now);
boost::asio::awaitable<WriteResult> remove_token(PgConnection& conn, std::string id);

// Reads straight from PostgreSQL (the command line without a running gateway).
boost::asio::awaitable<std::optional<store::TokenRecord>> get_token(PgConnection& conn, std::string id);
boost::asio::awaitable<std::vector<store::TokenRecord>> list_tokens(PgConnection& conn);

// Last-used times; the later of the stored and the given time wins.
boost::asio::awaitable<void> record_last_used(PgConnection& conn,
                                              std::vector<std::pair<std::string, store::TimePoint>> uses);

// Copies every token of a local store (same key) into PostgreSQL, ids and digests
// kept; an id already there is left alone. Returns (copied, skipped).
boost::asio::awaitable<std::pair<std::size_t, std::size_t>> import_tokens(
    PgConnection& conn, std::vector<store::StoredToken> tokens);

// Drops change-log entries older than `keep` (a node further behind reloads fully).
boost::asio::awaitable<void> prune_changes(PgConnection& conn, std::chrono::hours keep);

}  // namespace tokengate::cluster
