// The RocksDB token store: column families by name, point-lookup tuning, every write
// one synced WriteBatch, keyed hashes only (the plaintext never reaches the disk).
#include "store/token_store.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/json/monotonic_resource.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>
#include <unordered_map>

#include "store/local_copy.hpp"
#include "store/token_codec.hpp"

namespace tokengate::store {

std::string_view to_string(VerifyFailure failure) noexcept {
  switch (failure) {
    case VerifyFailure::None:
      return "ok";
    case VerifyFailure::Malformed:
      return "malformed";
    case VerifyFailure::Unknown:
      return "unknown";
    case VerifyFailure::Mismatch:
      return "mismatch";
    case VerifyFailure::Expired:
      return "expired";
    case VerifyFailure::RotatedOut:
      return "rotated_out";
  }
  return "unknown";
}

// The secret is checked before expiry: a caller who does not hold a secret of the
// token learns nothing about the token's state (the gateway answers every failure
// with the same 401 anyway; the order only matters for the access-log reason).
VerifyFailure check_secret(const StoredToken& token, std::string_view secret, const ServerKey& key,
                           TimePoint now) noexcept {
  const Credential& c = token.credential;
  return check_digest(key.hmac(secret), c.current, c.previous ? &*c.previous : nullptr, c.previous_until,
                      token.record.expires_at, now);
}

VerifyFailure check_digest(const Sha256& digest, const Sha256& current, const Sha256* previous,
                           const std::optional<TimePoint>& previous_until,
                           const std::optional<TimePoint>& expires_at, TimePoint now) noexcept {
  const bool expired = expires_at && *expires_at <= now;
  if (digest_equal(digest, current)) return expired ? VerifyFailure::Expired : VerifyFailure::None;
  if (previous && digest_equal(digest, *previous)) {
    if (!previous_until || now >= *previous_until) return VerifyFailure::RotatedOut;
    return expired ? VerifyFailure::Expired : VerifyFailure::None;
  }
  return VerifyFailure::Mismatch;
}

namespace {

namespace json = boost::json;

constexpr int kFormatVersion = 1;
constexpr std::string_view kMetaFormatVersion = "format_version";
constexpr std::string_view kMetaKeyCheck = "key_check";
// Cluster mode: which PostgreSQL database this copy mirrors and up to which revision.
constexpr std::string_view kMetaClusterId = "cluster_id";
constexpr std::string_view kMetaRevision = "cluster_revision";
constexpr std::string_view kKeyCheckMessage = "tokengate key check";
constexpr int kIdAttempts = 16;
constexpr std::string_view kMarkerFile = "TOKENGATE_STORE";

// Column families, addressed by this enum and looked up by name after open, never by
// the position RocksDB happens to return them in.
enum class Cf : std::size_t { Default, Tokens, Meta, LastUsed, Count };
constexpr std::array<std::string_view, static_cast<std::size_t>(Cf::Count)> kCfNames = {
    "default", "tokens", "meta", "last_used"};  // "default" = rocksdb::kDefaultColumnFamilyName

rocksdb::Slice slice(std::string_view s) { return rocksdb::Slice(s.data(), s.size()); }

std::string to_hex(const Sha256& d) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(d.size() * 2);
  for (unsigned char b : d) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 15]);
  }
  return out;
}

std::optional<Sha256> from_hex(std::string_view s) {
  Sha256 out{};
  if (s.size() != out.size() * 2) return std::nullopt;
  for (std::size_t i = 0; i < out.size(); ++i) {
    unsigned v = 0;
    auto [p, ec] = std::from_chars(s.data() + 2 * i, s.data() + 2 * i + 2, v, 16);
    if (ec != std::errc{} || p != s.data() + 2 * i + 2) return std::nullopt;
    out[i] = static_cast<unsigned char>(v);
  }
  return out;
}

std::string encode_time(TimePoint t) { return std::to_string(t.time_since_epoch().count()); }

std::optional<TimePoint> decode_time(std::string_view s) {
  long long v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size()) return std::nullopt;
  return TimePoint{std::chrono::seconds{v}};
}

// Throws std::exception on any malformed field; the caller turns that into StoreError.
struct Bad : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string str(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (!v || !v->is_string()) throw Bad(fmt::format("field '{}' is missing", key));
  return std::string(v->get_string());
}

std::optional<TimePoint> opt_time(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (!v || v->is_null()) return std::nullopt;
  if (!v->is_string()) throw Bad(fmt::format("field '{}' is not a time", key));
  auto t = parse_rfc3339(v->get_string());
  if (!t) throw Bad(fmt::format("field '{}' is not a time", key));
  return t;
}

TimePoint req_time(const json::object& o, std::string_view key) {
  auto t = opt_time(o, key);
  if (!t) throw Bad(fmt::format("field '{}' is missing", key));
  return *t;
}

std::vector<std::string> str_list(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (!v || !v->is_array()) throw Bad(fmt::format("field '{}' is not a list", key));
  std::vector<std::string> out;
  for (const auto& e : v->get_array()) {
    if (!e.is_string()) throw Bad(fmt::format("field '{}' holds a non-string", key));
    out.emplace_back(e.get_string());
  }
  return out;
}

}  // namespace

std::string encode_token(const StoredToken& t) {
  json::object record = to_json(t.record);
  record.erase("last_used_at");  // kept in its own column family, written behind
  json::object o;
  o["v"] = kFormatVersion;
  o["record"] = std::move(record);
  o["current"] = to_hex(t.credential.current);
  o["previous"] = t.credential.previous ? json::value(to_hex(*t.credential.previous)) : json::value(nullptr);
  o["previous_until"] = t.credential.previous_until
                            ? json::value(format_rfc3339(*t.credential.previous_until))
                            : json::value(nullptr);
  return json::serialize(o);
}

StoredToken decode_token(std::string_view id, std::string_view text) {
  std::error_code ec;
  // A record is a few hundred bytes: its DOM fits this buffer, so decoding a
  // million of them at start-up does not call malloc for every JSON node.
  unsigned char buffer[4096];
  json::monotonic_resource arena(buffer, sizeof buffer);
  json::value v = json::parse(json::string_view(text.data(), text.size()), ec, &arena);
  if (ec || !v.is_object()) throw Bad("not JSON");
  const json::object& o = v.get_object();
  const json::value* rv = o.if_contains("record");
  if (!rv || !rv->is_object()) throw Bad("no record");
  const json::object& r = rv->get_object();
  StoredToken t;
  t.record.id = str(r, "id");
  if (t.record.id != id) throw Bad("id does not match its key");
  t.record.name = str(r, "name");
  t.record.description = str(r, "description");
  t.record.roles = str_list(r, "roles");
  t.record.groups = str_list(r, "groups");
  t.record.permissions = str_list(r, "permissions");
  t.record.licenses = str_list(r, "licenses");
  t.record.created_at = req_time(r, "created_at");
  t.record.updated_at = req_time(r, "updated_at");
  t.record.expires_at = opt_time(r, "expires_at");
  t.record.rotated_at = opt_time(r, "rotated_at");
  t.record.created_by = str(r, "created_by");
  // Records written before rate limits existed have no such field: the default.
  if (const json::value* rl = r.if_contains("rate_limit")) {
    std::string error;
    if (!rate_limit_from_json(*rl, t.record.rate_limit, error)) throw Bad(error);
  }
  auto current = from_hex(str(o, "current"));
  if (!current) throw Bad("bad credential");
  t.credential.current = *current;
  if (const json::value* p = o.if_contains("previous"); p && !p->is_null()) {
    if (!p->is_string()) throw Bad("bad previous credential");
    t.credential.previous = from_hex(p->get_string());
    if (!t.credential.previous) throw Bad("bad previous credential");
  }
  t.credential.previous_until = opt_time(o, "previous_until");
  return t;
}

StoredToken make_token(const NewToken& request, std::string id, const Sha256& digest, TimePoint now) {
  StoredToken t;
  t.record.id = std::move(id);
  t.record.name = request.name;
  t.record.description = request.description;
  t.record.roles = request.roles;
  t.record.groups = request.groups;
  t.record.permissions = request.permissions;
  t.record.licenses = request.licenses;
  normalize_names(t.record.roles);
  normalize_names(t.record.groups);
  normalize_names(t.record.permissions);
  normalize_names(t.record.licenses);
  t.record.created_at = now;
  t.record.updated_at = now;
  t.record.expires_at = request.expires_at;
  t.record.created_by = request.created_by;
  t.record.rate_limit = request.rate_limit;
  t.credential.current = digest;
  return t;
}

void apply_patch(TokenRecord& r, const TokenPatch& patch, TimePoint now) {
  if (patch.name) r.name = *patch.name;
  if (patch.description) r.description = *patch.description;
  if (patch.roles) r.roles = *patch.roles;
  if (patch.groups) r.groups = *patch.groups;
  if (patch.permissions) r.permissions = *patch.permissions;
  if (patch.licenses) r.licenses = *patch.licenses;
  if (patch.expires_at) r.expires_at = *patch.expires_at;
  if (patch.rate_limit) r.rate_limit = *patch.rate_limit;
  normalize_names(r.roles);
  normalize_names(r.groups);
  normalize_names(r.permissions);
  normalize_names(r.licenses);
  r.updated_at = now;
}

void rotate_credential(StoredToken& t, const Sha256& digest, std::chrono::seconds grace, TimePoint now) {
  Credential& c = t.credential;
  if (grace > std::chrono::seconds::zero()) {
    c.previous = c.current;
    c.previous_until = now + grace;
  } else {
    c.previous.reset();
    c.previous_until.reset();
  }
  c.current = digest;
  t.record.rotated_at = now;
}

namespace {

class RocksTokenStore final : public LocalCopy {
 public:
  RocksTokenStore(const Options& options) : options_(options) {}

  ~RocksTokenStore() override {
    if (!db_) return;
    for (auto*& h : handles_) {
      if (h) db_->DestroyColumnFamilyHandle(h);
      h = nullptr;
    }
    db_->Close().PermitUncheckedError();
  }

  void open();

  IssuedToken create(const NewToken& request) override {
    std::lock_guard lock(write_mutex_);
    std::string id;
    for (int attempt = 0;; ++attempt) {
      id = random_base62(kIdLength);
      if (!read_raw(Cf::Tokens, id)) break;
      if (attempt + 1 >= kIdAttempts) throw StoreError("could not find an unused token id");
    }
    std::string secret = random_base62(kSecretLength);
    StoredToken t = make_token(request, std::move(id), key_->hmac(secret), now());
    write_token(t);
    IssuedToken issued{SecretToken(format_token(t.record.id, secret)), t.record};
    notify(t.record.id, &t);
    return issued;
  }

  std::optional<TokenRecord> update(std::string_view id, const TokenPatch& patch) override {
    std::lock_guard lock(write_mutex_);
    auto t = load(id);
    if (!t) return std::nullopt;
    apply_patch(t->record, patch, now());
    write_token(*t);
    notify(t->record.id, &*t);
    return t->record;
  }

  std::optional<IssuedToken> rotate(std::string_view id, std::chrono::seconds grace) override {
    std::lock_guard lock(write_mutex_);
    auto t = load(id);
    if (!t) return std::nullopt;
    std::string secret = random_base62(kSecretLength);
    rotate_credential(*t, key_->hmac(secret), grace, now());
    write_token(*t);
    IssuedToken issued{SecretToken(format_token(t->record.id, secret)), t->record};
    notify(t->record.id, &*t);
    return issued;
  }

  bool remove(std::string_view id) override {
    std::lock_guard lock(write_mutex_);
    if (!read_raw(Cf::Tokens, id)) return false;
    rocksdb::WriteBatch batch;
    check(batch.Delete(handle(Cf::Tokens), slice(id)));
    check(batch.Delete(handle(Cf::LastUsed), slice(id)));
    commit(batch, true);
    notify(id, nullptr);
    return true;
  }

  SyncState sync_state() const override {
    SyncState state;
    if (auto c = read_raw(Cf::Meta, kMetaClusterId)) state.cluster_id = *c;
    if (auto r = read_raw(Cf::Meta, kMetaRevision)) {
      auto [p, ec] = std::from_chars(r->data(), r->data() + r->size(), state.revision);
      if (ec != std::errc{} || p != r->data() + r->size())
        throw StoreError(fmt::format("store {} is corrupt: bad cluster revision", options_.path.string()));
    }
    return state;
  }

  // The changes and the revision they bring the copy to in one synced batch: after
  // a crash the copy is at a revision it fully holds.
  void apply_changes(const std::vector<Change>& changes, std::uint64_t revision) override {
    std::lock_guard lock(write_mutex_);
    rocksdb::WriteBatch batch;
    for (const auto& c : changes) {
      if (c.token) {
        check(batch.Put(handle(Cf::Tokens), slice(c.id), encode_token(*c.token)));
      } else {
        check(batch.Delete(handle(Cf::Tokens), slice(c.id)));
        check(batch.Delete(handle(Cf::LastUsed), slice(c.id)));
      }
    }
    check(batch.Put(handle(Cf::Meta), slice(kMetaRevision), std::to_string(revision)));
    commit(batch, true);
    for (const auto& c : changes) notify(c.id, c.token ? &*c.token : nullptr);
  }

  void replace_all(const std::vector<StoredToken>& tokens, const SyncState& state) override {
    std::lock_guard lock(write_mutex_);
    std::unordered_map<std::string, const StoredToken*> next;
    for (const auto& t : tokens) next.emplace(t.record.id, &t);
    std::vector<std::string> gone;
    rocksdb::WriteBatch batch;
    {
      std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), handle(Cf::Tokens)));
      for (it->SeekToFirst(); it->Valid(); it->Next()) {
        if (!next.count(it->key().ToString())) gone.push_back(it->key().ToString());
      }
      check_read(it->status());
    }
    for (const auto& id : gone) {
      check(batch.Delete(handle(Cf::Tokens), slice(id)));
      check(batch.Delete(handle(Cf::LastUsed), slice(id)));
    }
    for (const auto& t : tokens) {
      check(batch.Put(handle(Cf::Tokens), slice(t.record.id), encode_token(t)));
      if (t.record.last_used_at)
        check(batch.Put(handle(Cf::LastUsed), slice(t.record.id), encode_time(*t.record.last_used_at)));
    }
    check(batch.Put(handle(Cf::Meta), slice(kMetaClusterId), state.cluster_id));
    check(batch.Put(handle(Cf::Meta), slice(kMetaRevision), std::to_string(state.revision)));
    commit(batch, true);
    for (const auto& id : gone) notify(id, nullptr);
    for (const auto& t : tokens) notify(t.record.id, &t);
  }

  std::optional<TokenRecord> get(std::string_view id) const override {
    auto t = load(id);
    if (!t) return std::nullopt;
    return std::move(t->record);
  }

  std::vector<TokenRecord> list() const override {
    std::vector<TokenRecord> out;
    for (auto& t : load_all()) out.push_back(std::move(t.record));
    return out;
  }

  std::vector<StoredToken> load_all() const override {
    std::unordered_map<std::string, TimePoint> used;
    {
      std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), handle(Cf::LastUsed)));
      for (it->SeekToFirst(); it->Valid(); it->Next()) {
        if (auto t = decode_time(it->value().ToStringView())) used.emplace(it->key().ToString(), *t);
      }
      check_read(it->status());
    }
    std::vector<StoredToken> out;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), handle(Cf::Tokens)));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      StoredToken t = decode(it->key().ToStringView(), it->value().ToStringView());
      if (auto u = used.find(t.record.id); u != used.end()) t.record.last_used_at = u->second;
      out.push_back(std::move(t));
    }
    check_read(it->status());
    std::sort(out.begin(), out.end(), [](const StoredToken& a, const StoredToken& b) {
      return std::tie(a.record.created_at, a.record.id) < std::tie(b.record.created_at, b.record.id);
    });
    return out;
  }

  std::size_t count_estimate() const override {
    std::uint64_t keys = 0;
    if (!db_->GetIntProperty(handle(Cf::Tokens), "rocksdb.estimate-num-keys", &keys)) return 0;
    return static_cast<std::size_t>(std::min<std::uint64_t>(keys, 100'000'000));
  }

  // Two threads read and decode the two halves of the id space (ids are uniform
  // base62, so "V" splits them about evenly) while the caller's thread takes their
  // batches: decoding the JSON is most of the CPU of a start-up, which has the
  // machine to itself. Batches are bounded, so memory stays a few thousand tokens.
  void scan(const std::function<void(StoredToken&&)>& visit) const override {
    struct Queue {
      std::mutex mutex;
      std::condition_variable changed;
      std::deque<std::vector<StoredToken>> batches;
      int producing = 2;
      bool stop = false;  // the caller gave up (its visit threw) or a producer failed
      std::exception_ptr error;
    } q;
    constexpr std::size_t kBatch = 1024, kMaxBatches = 8;
    auto produce = [this, &q](std::optional<std::string> lower, std::optional<std::string> upper) {
      try {
        rocksdb::ReadOptions options;
        options.fill_cache = false;  // one pass over everything: keep the block cache for point reads
        rocksdb::Slice upper_bound;
        if (upper) {
          upper_bound = *upper;
          options.iterate_upper_bound = &upper_bound;
        }
        std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(options, handle(Cf::Tokens)));
        std::vector<StoredToken> batch;
        auto hand_over = [&] {
          std::unique_lock lock(q.mutex);
          q.changed.wait(lock, [&] { return q.batches.size() < kMaxBatches || q.stop; });
          if (q.stop) return false;
          q.batches.push_back(std::exchange(batch, {}));
          q.changed.notify_all();
          return true;
        };
        if (lower) {
          it->Seek(*lower);
        } else {
          it->SeekToFirst();
        }
        for (; it->Valid(); it->Next()) {
          batch.push_back(decode(it->key().ToStringView(), it->value().ToStringView()));
          if (batch.size() == kBatch && !hand_over()) break;
        }
        check_read(it->status());
        if (!batch.empty()) hand_over();
      } catch (...) {
        std::lock_guard lock(q.mutex);
        if (!q.error) q.error = std::current_exception();
        q.stop = true;
      }
      std::lock_guard lock(q.mutex);
      --q.producing;
      q.changed.notify_all();
    };
    std::jthread low(produce, std::nullopt, std::string("V"));
    std::jthread high(produce, std::string("V"), std::nullopt);
    for (;;) {
      std::vector<StoredToken> batch;
      {
        std::unique_lock lock(q.mutex);
        q.changed.wait(lock, [&] { return !q.batches.empty() || q.producing == 0 || q.error; });
        if (q.error || q.batches.empty()) break;
        batch = std::move(q.batches.front());
        q.batches.pop_front();
        q.changed.notify_all();
      }
      try {
        for (auto& t : batch) visit(std::move(t));
      } catch (...) {
        std::lock_guard lock(q.mutex);
        q.stop = true;
        q.changed.notify_all();
        throw;  // the producers stop at their next batch; the jthreads join them
      }
    }
    low.join();
    high.join();
    if (q.error) std::rethrow_exception(q.error);
  }

  VerifyResult verify(std::string_view token) const override {
    auto parsed = parse_token(token);
    if (!parsed) return {VerifyFailure::Malformed, nullptr};
    auto t = load(parsed->id);
    if (!t) return {VerifyFailure::Unknown, nullptr};
    VerifyFailure f = check_secret(*t, parsed->secret, *key_, now());
    if (f != VerifyFailure::None) return {f, nullptr};
    return {f, std::make_shared<const StoredToken>(std::move(*t))};
  }

  void record_last_used(const std::vector<std::pair<std::string, TimePoint>>& uses) override {
    std::lock_guard lock(write_mutex_);
    rocksdb::WriteBatch batch;
    for (const auto& [id, when] : uses) {
      // Under the write mutex, so a token deleted meanwhile does not get a stray entry.
      if (!read_raw(Cf::Tokens, id)) continue;
      if (auto old = read_raw(Cf::LastUsed, id)) {
        if (auto t = decode_time(*old); t && *t >= when) continue;
      }
      check(batch.Put(handle(Cf::LastUsed), slice(id), encode_time(when)));
    }
    if (batch.Count() > 0) commit(batch, false);
  }

  void set_change_listener(ChangeListener listener) override {
    std::lock_guard lock(write_mutex_);
    listener_ = std::move(listener);
  }

  const ServerKey& key() const noexcept override { return *key_; }
  TimePoint now() const override { return options_.clock(); }

 private:
  rocksdb::ColumnFamilyHandle* handle(Cf cf) const { return handles_[static_cast<std::size_t>(cf)]; }

  void check(const rocksdb::Status& s) const {
    if (!s.ok()) throw StoreError(fmt::format("store {}: {}", options_.path.string(), s.ToString()));
  }
  void check_read(const rocksdb::Status& s) const {
    if (!s.ok())
      throw StoreError(fmt::format("cannot read store {}: {}", options_.path.string(), s.ToString()));
  }

  std::optional<std::string> read_raw(Cf cf, std::string_view key) const {
    std::string value;
    rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), handle(cf), slice(key), &value);
    if (s.IsNotFound()) return std::nullopt;
    check_read(s);
    return value;
  }

  StoredToken decode(std::string_view id, std::string_view value) const {
    try {
      return decode_token(id, value);
    } catch (const std::exception& e) {
      throw StoreError(fmt::format("store {} is corrupt: token {}: {}", options_.path.string(),
                                   std::string(id), e.what()));
    }
  }

  std::optional<StoredToken> load(std::string_view id) const {
    if (!is_valid_id(id)) return std::nullopt;
    auto raw = read_raw(Cf::Tokens, id);
    if (!raw) return std::nullopt;
    StoredToken t = decode(id, *raw);
    if (auto used = read_raw(Cf::LastUsed, id)) t.record.last_used_at = decode_time(*used);
    return t;
  }

  void commit(rocksdb::WriteBatch& batch, bool sync) {
    rocksdb::WriteOptions wo;
    wo.sync = sync;
    rocksdb::Status s = db_->Write(wo, &batch);
    if (!s.ok()) {
      throw StoreError(fmt::format("cannot write to store {}: {}", options_.path.string(), s.ToString()));
    }
  }

  void write_token(const StoredToken& t) {
    rocksdb::WriteBatch batch;
    check(batch.Put(handle(Cf::Tokens), slice(t.record.id), encode_token(t)));
    commit(batch, true);
  }

  // Called with write_mutex_ held so listeners see changes in commit order.
  void notify(std::string_view id, const StoredToken* t) {
    if (listener_) listener_(id, t);
  }

  [[noreturn]] void fail_open(const rocksdb::Status& s) const;
  void write_marker(const std::filesystem::path& marker) const;

  Options options_;
  std::unique_ptr<rocksdb::DB> db_;
  std::array<rocksdb::ColumnFamilyHandle*, static_cast<std::size_t>(Cf::Count)> handles_{};
  std::optional<ServerKey> key_;
  std::mutex write_mutex_;  // serializes read-modify-write and listener calls
  ChangeListener listener_;
};

void RocksTokenStore::fail_open(const rocksdb::Status& s) const {
  const std::string path = options_.path.string();
  const std::string msg = s.ToString();
  if (s.IsIOError() && (msg.find("lock hold by current process") != std::string::npos ||
                        msg.find("Resource temporarily unavailable") != std::string::npos ||
                        msg.find("/LOCK") != std::string::npos)) {
    throw StoreError(
        fmt::format("store {} is locked by another process (is `tokengate serve` running?)", path));
  }
  if (s.IsCorruption()) throw StoreError(fmt::format("store {} is corrupt: {}", path, msg));
  throw StoreError(fmt::format("cannot open store {}: {}", path, msg));
}

void RocksTokenStore::write_marker(const std::filesystem::path& marker) const {
  const int fd = ::open(marker.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  static constexpr std::string_view kText = "tokengate token store (RocksDB); do not edit\n";
  bool ok = fd >= 0 && ::write(fd, kText.data(), kText.size()) == static_cast<ssize_t>(kText.size()) &&
            ::fsync(fd) == 0;
  const int err = errno;
  if (fd >= 0) ::close(fd);
  if (!ok) {
    throw StoreError(fmt::format("cannot create {} in store {}: {}", marker.filename().string(),
                                 options_.path.string(), std::strerror(err)));
  }
  if (const int dir = ::open(options_.path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
}

void RocksTokenStore::open() {
  namespace fs = std::filesystem;
  const fs::path& path = options_.path;
  const std::string path_str = path.string();
  std::error_code ec;
  // The marker file is written before RocksDB creates anything, so a directory with
  // it is ours even if creation was interrupted, and one without it never is.
  const fs::path marker = path / kMarkerFile;
  bool has_marker = false;
  if (fs::exists(path, ec)) {
    if (!fs::is_directory(path, ec)) throw StoreError(fmt::format("{} is not a tokengate store", path_str));
    has_marker = fs::exists(marker, ec);
    if (!has_marker && !fs::is_empty(path, ec)) {
      const bool rocksdb = fs::exists(path / "CURRENT", ec);
      throw StoreError(fmt::format("{} is not a tokengate store ({})", path_str,
                                   rocksdb ? "a RocksDB database without tokengate's marker" : "not empty"));
    }
  } else {
    // 0700 like the key file's directory: the hashes are not for other users either.
    fs::path partial;
    for (const auto& part : path) {
      partial /= part;
      if (::mkdir(partial.c_str(), 0700) != 0 && errno != EEXIST) {
        throw StoreError(
            fmt::format("cannot create store directory {}: {}", partial.string(), std::strerror(errno)));
      }
    }
  }
  if (!has_marker) write_marker(marker);
  const bool existing = fs::exists(path / "CURRENT", ec);

  rocksdb::Options db_options;
  db_options.create_if_missing = !existing;
  db_options.create_missing_column_families = true;
  db_options.paranoid_checks = true;
  db_options.keep_log_file_num = 3;
  db_options.max_open_files = 256;
  // A torn last record is what a crash mid-append leaves and is dropped (it was never
  // acknowledged); damage anywhere else in the WAL must stop the open instead of
  // silently losing every acknowledged write after it (kPointInTimeRecovery would).
  db_options.wal_recovery_mode = rocksdb::WALRecoveryMode::kTolerateCorruptedTailRecords;

  std::vector<std::string> names;
  if (existing) {
    rocksdb::Status s = rocksdb::DB::ListColumnFamilies(db_options, path_str, &names);
    if (!s.ok()) fail_open(s);
  }
  for (auto n : kCfNames) {
    if (std::find(names.begin(), names.end(), n) == names.end()) names.emplace_back(n);
  }

  // Point lookups by token id: the RocksDB OptimizeForPointLookup settings, but with one
  // block cache shared by all column families instead of one per call, and without its
  // memtable bloom filter: that is 2 % of write_buffer_size (64 MiB), 1.3 MiB zeroed per
  // memtable, 5.2 MiB resident at idle for the four column families (a quarter of the
  // gateway's idle RSS), to speed up reads the data plane never makes (it verifies
  // tokens from memory; RocksDB is read at start, by the admin API and the CLI).
  auto cache = rocksdb::NewLRUCache(16 << 20);
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = cache;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  table.whole_key_filtering = true;
  table.data_block_index_type = rocksdb::BlockBasedTableOptions::kDataBlockBinaryAndHash;
  table.data_block_hash_table_util_ratio = 0.75;
  rocksdb::ColumnFamilyOptions cf_options;
  cf_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  // Writes are token changes and last-used batches, a few hundred bytes each: 8 MiB
  // memtables instead of 64 MiB. With 64 MiB, a gateway in front of 100,000 busy
  // tokens grew by about 65 MiB of last-used entries between flushes.
  cf_options.write_buffer_size = 8 << 20;

  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const auto& n : names) descriptors.emplace_back(n, cf_options);
  std::vector<rocksdb::ColumnFamilyHandle*> opened;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(rocksdb::DBOptions(db_options), path_str, descriptors, &opened, &raw);
  if (!s.ok()) fail_open(s);
  db_.reset(raw);
  for (auto* h : opened) {
    auto it = std::find(kCfNames.begin(), kCfNames.end(), h->GetName());
    if (it == kCfNames.end()) {
      db_->DestroyColumnFamilyHandle(h);  // a family we do not use; it stays on disk
    } else {
      handles_[static_cast<std::size_t>(it - kCfNames.begin())] = h;
    }
  }

  auto version = read_raw(Cf::Meta, kMetaFormatVersion);
  bool initialized = version.has_value();
  if (!initialized && existing) {
    // A store whose creation was interrupted has no meta yet and is finished now;
    // one that holds tokens without meta has lost data.
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), handle(Cf::Tokens)));
    it->SeekToFirst();
    if (it->Valid())
      throw StoreError(fmt::format("store {} is corrupt: it holds tokens but no format version", path_str));
  }
  if (initialized && *version != std::to_string(kFormatVersion)) {
    throw StoreError(fmt::format("store {} has format version {}; this tokengate reads version {}", path_str,
                                 *version, kFormatVersion));
  }

  if (initialized && !fs::exists(options_.key_file, ec)) {
    throw StoreError(fmt::format(
        "key file {} is missing but store {} exists: every token would stop working; restore the key file",
        options_.key_file.string(), path_str));
  }
  key_.emplace(ServerKey::load(options_.key_file, !initialized));
  const Sha256 check_value = key_->hmac(kKeyCheckMessage);
  if (initialized) {
    auto stored = read_raw(Cf::Meta, kMetaKeyCheck);
    if (!stored || stored->size() != check_value.size() || !digest_equal(check_value, [&] {
          Sha256 d{};
          std::copy(stored->begin(), stored->end(), d.begin());
          return d;
        }())) {
      throw StoreError(
          fmt::format("key file {} is not the key store {} was created with; every token would fail",
                      options_.key_file.string(), path_str));
    }
  } else {
    rocksdb::WriteBatch batch;
    check(batch.Put(handle(Cf::Meta), slice(kMetaFormatVersion), std::to_string(kFormatVersion)));
    check(batch.Put(handle(Cf::Meta), slice(kMetaKeyCheck),
                    rocksdb::Slice(reinterpret_cast<const char*>(check_value.data()), check_value.size())));
    commit(batch, true);
  }
}

}  // namespace

std::unique_ptr<TokenStore> TokenStore::open(const Options& options) {
  auto store = std::make_unique<RocksTokenStore>(options);
  store->open();
  return store;
}

std::unique_ptr<LocalCopy> open_local_copy(const TokenStore::Options& options) {
  auto store = std::make_unique<RocksTokenStore>(options);
  store->open();
  return store;
}

}  // namespace tokengate::store
