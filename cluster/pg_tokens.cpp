#include "cluster/pg_tokens.hpp"

#include <fmt/format.h>

#include <charconv>
#include <unordered_set>

#include "store/token_codec.hpp"
#include "store/token_format.hpp"

namespace tokengate::cluster {

namespace asio = boost::asio;
using store::StoredToken;
using store::StoreError;

namespace {

// pg_advisory_xact_lock key for migrations: "tokengat" as a big-endian int64.
constexpr const char* kMigrateLock = "8390880576440238452";
// Optimistic writes retry when another node changed the token between our read
// and our write; more than a few in a row means something else is wrong.
constexpr int kWriteAttempts = 5;

// SQLSTATEs raised by tokengate_write (class "TG": ours, not PostgreSQL's).
constexpr std::string_view kConflict = "TG409";

// Version 1. The revision counter is one row; tokengate_write increments it first
// thing, so the row lock it takes serialises writers until they commit: revision
// order is commit order and the numbers are dense (a rollback returns its number).
// A sequence would not do: nextval() is handed out at insert time, so revision 8
// can commit before 7 and a reader at 8 would never look back for 7. xid8 snapshot
// bounds would avoid the serialisation, but token writes are rare (people and
// scripts, not requests) and a single counter makes "skipped a change" checkable
// by counting (cluster/change_plan.hpp).
const std::vector<std::string>& schema_v1() {
  static const std::vector<std::string> statements = {
      "CREATE TABLE tokengate_meta (key text PRIMARY KEY, value text NOT NULL)",
      "CREATE TABLE tokengate_revision (one boolean PRIMARY KEY DEFAULT true CHECK (one), n bigint NOT NULL)",
      "INSERT INTO tokengate_revision (n) VALUES (0)",
      // data: the stored token as store/token_codec.hpp writes it (record and HMAC
      // digests, never a secret); revision: the change that wrote it.
      "CREATE TABLE tokengate_tokens (id text PRIMARY KEY, data jsonb NOT NULL, revision bigint NOT NULL, "
      "last_used_at timestamptz)",
      // One row per committed write; data NULL = deleted (a tombstone), so deletes
      // reach nodes that were away. Pruned after a while (prune_changes).
      "CREATE TABLE tokengate_changes (revision bigint PRIMARY KEY, id text NOT NULL, data jsonb, "
      "changed_at timestamptz NOT NULL DEFAULT now())",
      // p_expect: 0 = the id must not exist (create), else the revision the caller
      // read (optimistic concurrency: TG409 when the row moved on).
      R"(CREATE FUNCTION tokengate_write(p_id text, p_data jsonb, p_expect bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  rev bigint;
  cur bigint;
BEGIN
  UPDATE tokengate_revision SET n = n + 1 RETURNING n INTO rev;
  SELECT revision INTO cur FROM tokengate_tokens WHERE id = p_id;
  IF cur IS DISTINCT FROM NULLIF(p_expect, 0) THEN
    RAISE EXCEPTION 'token % changed concurrently', p_id USING ERRCODE = 'TG409';
  END IF;
  IF p_data IS NULL THEN
    DELETE FROM tokengate_tokens WHERE id = p_id;
  ELSE
    INSERT INTO tokengate_tokens (id, data, revision) VALUES (p_id, p_data, rev)
      ON CONFLICT (id) DO UPDATE SET data = EXCLUDED.data, revision = EXCLUDED.revision;
  END IF;
  INSERT INTO tokengate_changes (revision, id, data) VALUES (rev, p_id, p_data);
  PERFORM pg_notify('tokengate_changes', rev::text);
  RETURN rev;
END $$)",
      "INSERT INTO tokengate_meta (key, value) VALUES ('schema_version', '1'), "
      "('cluster_id', gen_random_uuid()::text)",
  };
  return statements;
}

std::uint64_t to_u64(const std::optional<std::string>& text) {
  std::uint64_t v = 0;
  if (!text) return 0;
  auto [p, ec] = std::from_chars(text->data(), text->data() + text->size(), v);
  if (ec != std::errc{} || p != text->data() + text->size())
    throw StoreError(fmt::format("PostgreSQL returned '{}' where a revision was expected", *text));
  return v;
}

StoredToken decode_row(const std::string& id, const std::optional<std::string>& data,
                       const std::optional<std::string>& last_used_epoch) {
  if (!data) throw StoreError(fmt::format("PostgreSQL holds no data for token {}", id));
  StoredToken t;
  try {
    t = store::decode_token(id, *data);
  } catch (const std::exception& e) {
    throw StoreError(fmt::format("PostgreSQL holds a malformed token {}: {}", id, e.what()));
  }
  if (last_used_epoch) {
    t.record.last_used_at =
        store::TimePoint{std::chrono::seconds{static_cast<long long>(to_u64(last_used_epoch))}};
  }
  return t;
}

asio::awaitable<void> run_in_transaction(PgConnection& conn, const std::vector<std::string>& statements) {
  for (const auto& s : statements) co_await conn.query(s);
}

asio::awaitable<int> schema_version(PgConnection& conn) {
  auto rows = co_await conn.query("SELECT to_regclass('tokengate_meta') IS NOT NULL");
  if (rows.empty() || rows[0][0] != "t") co_return 0;
  rows = co_await conn.query("SELECT value FROM tokengate_meta WHERE key = 'schema_version'");
  if (rows.empty()) co_return 0;
  co_return static_cast<int>(to_u64(rows[0][0]));
}

// Runs `body` in a transaction opened by `begin`: COMMIT after it, ROLLBACK when it
// throws (co_await is not allowed in a handler, hence the exception_ptr).
template <typename F>
auto in_transaction(PgConnection& conn, F body, const char* begin = "BEGIN")
    -> asio::awaitable<decltype(body().await_resume())> {
  co_await conn.query(begin);
  std::exception_ptr error;
  try {
    auto result = co_await body();
    co_await conn.query("COMMIT");
    co_return result;
  } catch (...) {
    error = std::current_exception();
  }
  if (conn.connected()) {
    try {
      co_await conn.query("ROLLBACK");
    } catch (const PgError&) {
    }
  }
  std::rethrow_exception(error);
}

asio::awaitable<int> migrate_locked(PgConnection& conn) {
  co_await conn.query(fmt::format("SELECT pg_advisory_xact_lock({})", kMigrateLock));
  const int found = co_await schema_version(conn);
  if (found > kSchemaVersion) {
    throw StoreError(
        fmt::format("the PostgreSQL schema is version {}, newer than this tokengate knows ({}): "
                    "upgrade tokengate",
                    found, kSchemaVersion));
  }
  if (found == 0) co_await run_in_transaction(conn, schema_v1());
  co_return found;
}

std::optional<std::string> opt(std::string s) { return std::optional<std::string>(std::move(s)); }

asio::awaitable<std::optional<std::pair<StoredToken, std::uint64_t>>> read_row(PgConnection& conn,
                                                                               const std::string& id) {
  // Parameters in a named vector: GCC 12 miscompiles a braced list inside co_await.
  std::vector<Param> params{opt(id)};
  auto rows = co_await conn.query(
      "SELECT data::text, revision, extract(epoch from last_used_at)::bigint FROM tokengate_tokens WHERE id "
      "= $1",
      std::move(params));
  if (rows.empty()) co_return std::nullopt;
  co_return std::make_pair(decode_row(id, rows[0][0], rows[0][2]), to_u64(rows[0][1]));
}

// One synchronously committed transaction (the function call is the statement).
asio::awaitable<std::uint64_t> write_row(PgConnection& conn, const std::string& id, const StoredToken* now,
                                         std::uint64_t expect) {
  std::vector<Param> params{opt(id), now ? opt(store::encode_token(*now)) : std::nullopt,
                            opt(std::to_string(expect))};
  auto rows = co_await conn.query("SELECT tokengate_write($1, $2::jsonb, $3)", std::move(params));
  if (rows.empty()) throw StoreError("tokengate_write returned nothing");
  co_return to_u64(rows[0][0]);
}

bool is_conflict(const PgError& e) { return e.sqlstate == kConflict; }

// Read, change, write; again when another writer got there first.
template <typename Change>
asio::awaitable<WriteResult> modify(PgConnection& conn, const std::string& id, Change change) {
  for (int attempt = 0;; ++attempt) {
    auto row = co_await read_row(conn, id);
    if (!row) co_return WriteResult{};
    WriteResult result;
    std::optional<StoredToken> next = change(row->first, result);
    try {
      result.revision = co_await write_row(conn, id, next ? &*next : nullptr, row->second);
      co_return result;
    } catch (const PgError& e) {
      if (!is_conflict(e) || attempt + 1 >= kWriteAttempts) throw;
    }
  }
}

}  // namespace

std::string key_fingerprint(const store::ServerKey& key) {
  static constexpr char kHex[] = "0123456789abcdef";
  const store::Sha256 d = key.hmac("tokengate key fingerprint");
  std::string out;
  for (unsigned char b : d) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 15]);
  }
  return out;
}

asio::awaitable<int> migrate(PgConnection& conn) {
  co_return co_await in_transaction(conn, [&] { return migrate_locked(conn); });
}

asio::awaitable<std::string> open_cluster(PgConnection& conn, const store::ServerKey& key,
                                          bool create_if_empty) {
  // Every write is committed synchronously whatever the database's default: a
  // plaintext handed out must survive a crash of PostgreSQL.
  co_await conn.query("SET synchronous_commit TO on");
  const int version = co_await schema_version(conn);
  if (version == 0 && create_if_empty) {
    co_await migrate(conn);
  } else if (version != kSchemaVersion) {
    throw StoreError(
        version == 0 ? std::string("PostgreSQL has no tokengate schema: run `tokengate store migrate`")
                     : fmt::format("the PostgreSQL schema is version {}; this tokengate uses version {}: run "
                                   "`tokengate store migrate` (or upgrade tokengate)",
                                   version, kSchemaVersion));
  }
  const std::string fingerprint = key_fingerprint(key);
  std::vector<Param> params{fingerprint};
  co_await conn.query(
      "INSERT INTO tokengate_meta (key, value) VALUES ('key_fingerprint', $1) ON CONFLICT (key) DO NOTHING",
      std::move(params));
  auto rows = co_await conn.query(
      "SELECT (SELECT value FROM tokengate_meta WHERE key = 'key_fingerprint'), "
      "(SELECT value FROM tokengate_meta WHERE key = 'cluster_id')");
  if (rows.empty() || !rows[0][0] || !rows[0][1])
    throw StoreError("PostgreSQL's tokengate_meta is incomplete");
  if (*rows[0][0] != fingerprint) {
    throw StoreError(
        "store.key_file is not the key of this cluster (its fingerprint differs from the one in PostgreSQL): "
        "every node needs the same key file");
  }
  co_return *rows[0][1];
}

asio::awaitable<ChangeBatch> changes_since(PgConnection& conn, std::uint64_t after, int limit,
                                           std::chrono::milliseconds timeout) {
  // One statement, so the head and the page come from the same snapshot.
  std::vector<Param> params{opt(std::to_string(after)), opt(std::to_string(limit))};
  auto rows = co_await conn.query(
      "SELECT r.n, c.revision, c.id, c.data::text FROM tokengate_revision r LEFT JOIN LATERAL "
      "(SELECT revision, id, data FROM tokengate_changes WHERE revision > $1 ORDER BY revision LIMIT $2) c "
      "ON true ORDER BY c.revision",
      std::move(params), timeout);
  ChangeBatch batch;
  if (rows.empty()) throw StoreError("PostgreSQL's tokengate_revision is empty");
  batch.head = to_u64(rows[0][0]);
  for (auto& row : rows) {
    if (!row[1]) continue;  // no change after `after`: the one row of the LEFT JOIN
    batch.changes.push_back(Change{to_u64(row[1]), row[2].value_or(""), std::move(row[3])});
  }
  co_return batch;
}

static asio::awaitable<Snapshot> read_snapshot(PgConnection& conn) {
  Snapshot snap;
  auto head = co_await conn.query("SELECT n FROM tokengate_revision");
  if (head.empty()) throw StoreError("PostgreSQL's tokengate_revision is empty");
  snap.revision = to_u64(head[0][0]);
  auto rows = co_await conn.query(
      "SELECT id, data::text, extract(epoch from last_used_at)::bigint FROM tokengate_tokens", {},
      std::chrono::seconds(30));
  snap.tokens.reserve(rows.size());
  for (auto& row : rows) snap.tokens.push_back(decode_row(row[0].value_or(""), row[1], row[2]));
  co_return snap;
}

asio::awaitable<Snapshot> load_snapshot(PgConnection& conn) {
  // One snapshot for the revision and the rows, so they belong together.
  co_return co_await in_transaction(
      conn, [&] { return read_snapshot(conn); }, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
}

asio::awaitable<WriteResult> create_token(PgConnection& conn, const store::NewToken& request,
                                          const store::ServerKey& key, store::TimePoint now) {
  for (int attempt = 0;; ++attempt) {
    std::string secret = store::random_base62(store::kSecretLength);
    StoredToken t = store::make_token(request, store::random_base62(store::kIdLength), key.hmac(secret), now);
    try {
      WriteResult result;
      result.revision = co_await write_row(conn, t.record.id, &t, 0);
      // Only now, after the commit, does the plaintext exist outside this frame.
      result.issued.emplace(
          store::IssuedToken{store::SecretToken(store::format_token(t.record.id, secret)), t.record});
      result.record = t.record;
      co_return result;
    } catch (const PgError& e) {
      // An id collision (about 1 in 2^71): draw another one.
      if (!is_conflict(e) || attempt + 1 >= kWriteAttempts) throw;
    }
  }
}

asio::awaitable<WriteResult> update_token(PgConnection& conn, std::string id, store::TokenPatch patch,
                                          store::TimePoint now) {
  co_return co_await modify(conn, id, [&](const StoredToken& current, WriteResult& result) {
    StoredToken next = current;
    store::apply_patch(next.record, patch, now);
    result.record = next.record;
    return std::optional<StoredToken>(std::move(next));
  });
}

asio::awaitable<WriteResult> rotate_token(PgConnection& conn, std::string id, std::chrono::seconds grace,
                                          const store::ServerKey& key, store::TimePoint now) {
  std::string secret;
  auto result = co_await modify(conn, id, [&](const StoredToken& current, WriteResult& r) {
    secret = store::random_base62(store::kSecretLength);
    StoredToken next = current;
    store::rotate_credential(next, key.hmac(secret), grace, now);
    r.record = next.record;
    return std::optional<StoredToken>(std::move(next));
  });
  if (result.revision != 0) {
    result.issued.emplace(
        store::IssuedToken{store::SecretToken(store::format_token(id, secret)), *result.record});
  }
  co_return result;
}

asio::awaitable<WriteResult> remove_token(PgConnection& conn, std::string id) {
  co_return co_await modify(conn, id,
                            [](const StoredToken&, WriteResult&) { return std::optional<StoredToken>(); });
}

asio::awaitable<std::optional<store::TokenRecord>> get_token(PgConnection& conn, std::string id) {
  if (!store::is_valid_id(id)) co_return std::nullopt;
  auto row = co_await read_row(conn, id);
  if (!row) co_return std::nullopt;
  co_return std::move(row->first.record);
}

asio::awaitable<std::vector<store::TokenRecord>> list_tokens(PgConnection& conn) {
  auto rows = co_await conn.query(
      "SELECT id, data::text, extract(epoch from last_used_at)::bigint FROM tokengate_tokens", {},
      std::chrono::seconds(30));
  std::vector<store::TokenRecord> out;
  for (auto& row : rows) out.push_back(decode_row(row[0].value_or(""), row[1], row[2]).record);
  std::sort(out.begin(), out.end(), [](const store::TokenRecord& a, const store::TokenRecord& b) {
    return std::tie(a.created_at, a.id) < std::tie(b.created_at, b.id);
  });
  co_return out;
}

asio::awaitable<void> record_last_used(PgConnection& conn,
                                       std::vector<std::pair<std::string, store::TimePoint>> uses) {
  if (uses.empty()) co_return;
  // Arrays as PostgreSQL text literals; ids are base62 and times integers, so no quoting is needed.
  std::string ids = "{", times = "{";
  for (const auto& [id, when] : uses) {
    if (!store::is_valid_id(id)) continue;
    if (ids.size() > 1) {
      ids += ',';
      times += ',';
    }
    ids += id;
    times +=
        std::to_string(std::chrono::duration_cast<std::chrono::seconds>(when.time_since_epoch()).count());
  }
  ids += '}';
  times += '}';
  std::vector<Param> params{opt(ids), opt(times)};
  co_await conn.query(
      "UPDATE tokengate_tokens t SET last_used_at = GREATEST(t.last_used_at, to_timestamp(u.at)) "
      "FROM unnest($1::text[], $2::bigint[]) AS u(id, at) WHERE t.id = u.id",
      std::move(params));
}

asio::awaitable<std::pair<std::size_t, std::size_t>> import_tokens(PgConnection& conn,
                                                                   std::vector<StoredToken> tokens) {
  std::size_t copied = 0, skipped = 0;
  for (const auto& t : tokens) {
    StoredToken copy = t;
    copy.record.last_used_at.reset();  // kept in its own column
    try {
      co_await write_row(conn, copy.record.id, &copy, 0);
      ++copied;
    } catch (const PgError& e) {
      if (!is_conflict(e)) throw;
      ++skipped;
      continue;
    }
    if (t.record.last_used_at) {
      std::vector<std::pair<std::string, store::TimePoint>> used{{t.record.id, *t.record.last_used_at}};
      co_await record_last_used(conn, std::move(used));
    }
  }
  co_return std::make_pair(copied, skipped);
}

asio::awaitable<void> prune_changes(PgConnection& conn, std::chrono::hours keep) {
  std::vector<Param> params{opt(std::to_string(keep.count()))};
  co_await conn.query(
      "DELETE FROM tokengate_changes WHERE changed_at < now() - make_interval(hours => $1::int)",
      std::move(params), std::chrono::seconds(30));
}

}  // namespace tokengate::cluster
