// The in-memory directory and its replicas: every write is seen by the next verify.
#include "store/token_verifier.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <thread>

#include "test_util.hpp"

using namespace tokengate::store;
using namespace tokengate::store::test;
using namespace std::chrono_literals;

namespace {

NewToken named(std::string name) {
  NewToken t;
  t.name = std::move(name);
  t.roles = {"reader"};
  return t;
}

// Counts reads that reach the store, to show the hot path never does.
class CountingStore final : public TokenStore {
 public:
  explicit CountingStore(std::unique_ptr<TokenStore> inner) : inner_(std::move(inner)) {}
  IssuedToken create(const NewToken& r) override { return inner_->create(r); }
  std::optional<TokenRecord> update(std::string_view id, const TokenPatch& p) override {
    return inner_->update(id, p);
  }
  std::optional<IssuedToken> rotate(std::string_view id, std::chrono::seconds g) override {
    return inner_->rotate(id, g);
  }
  bool remove(std::string_view id) override { return inner_->remove(id); }
  std::optional<TokenRecord> get(std::string_view id) const override {
    ++reads;
    return inner_->get(id);
  }
  std::vector<TokenRecord> list() const override {
    ++reads;
    return inner_->list();
  }
  std::vector<StoredToken> load_all() const override {
    ++reads;
    return inner_->load_all();
  }
  VerifyResult verify(std::string_view t) const override {
    ++reads;
    return inner_->verify(t);
  }
  void record_last_used(const std::vector<std::pair<std::string, TimePoint>>& u) override {
    inner_->record_last_used(u);
  }
  void set_change_listener(ChangeListener l) override {
    if (capture) {
      captured = std::move(l);  // the test plays the store's writes itself
    } else {
      inner_->set_change_listener(std::move(l));
    }
  }
  const ServerKey& key() const noexcept override { return inner_->key(); }
  TimePoint now() const override { return inner_->now(); }

  mutable int reads = 0;
  bool capture = false;
  ChangeListener captured;

 private:
  std::unique_ptr<TokenStore> inner_;
};

}  // namespace

TEST_CASE("directory: replicas see every write at once") {
  TempDir dir;
  ManualClock clock;
  CountingStore store(TokenStore::open(store_options(dir, clock)));
  auto before = store.create(named("before"));  // loaded by the directory's constructor
  TokenDirectory directory(store);
  CHECK(directory.size() == 1);
  auto r1 = directory.make_replica();
  auto r2 = directory.make_replica();
  const int reads_after_load = store.reads;

  CHECK(r1->verify(before.token.reveal(), clock.now()));
  auto created = store.create(named("after"));
  CHECK(r1->verify(created.token.reveal(), clock.now()));
  CHECK(r2->verify(created.token.reveal(), clock.now()));

  SUBCASE("update is visible, old objects are not reused") {
    auto v1 = r1->verify(created.token.reveal(), clock.now());
    TokenPatch patch;
    patch.roles = std::vector<std::string>{"admin"};
    store.update(created.record.id, patch);
    auto v2 = r1->verify(created.token.reveal(), clock.now());
    REQUIRE(v2);
    CHECK(v2.token->profile->roles == std::vector<std::string>{"admin"});
    CHECK(v1.token->profile->roles == std::vector<std::string>{"reader"});  // in-flight object unchanged
    CHECK(v1.token.get() != v2.token.get());
    auto v3 = r2->verify(created.token.reveal(), clock.now());
    REQUIRE(v3);
    CHECK(v3.token.get() == v2.token.get());  // the replicas share the directory's objects
    // `before` has role reader as `created` had: one profile object for both.
    auto b = r1->verify(before.token.reveal(), clock.now());
    REQUIRE(b);
    CHECK(b.token->profile.get() == v1.token->profile.get());
  }
  SUBCASE("delete") {
    store.remove(created.record.id);
    CHECK(r1->verify(created.token.reveal(), clock.now()).failure == VerifyFailure::Unknown);
    CHECK(r2->verify(created.token.reveal(), clock.now()).failure == VerifyFailure::Unknown);
    CHECK(directory.size() == 1);
  }
  SUBCASE("rotate without and with grace") {
    auto rotated = store.rotate(created.record.id, 0s);
    REQUIRE(rotated);
    CHECK(r1->verify(created.token.reveal(), clock.now()).failure == VerifyFailure::Mismatch);
    CHECK(r1->verify(rotated->token.reveal(), clock.now()));
    auto graced = store.rotate(before.record.id, 30s);
    REQUIRE(graced);
    CHECK(r2->verify(before.token.reveal(), clock.now()));
    CHECK(r2->verify(graced->token.reveal(), clock.now()));
    CHECK(r2->verify(before.token.reveal(), clock.now() + 30s).failure == VerifyFailure::RotatedOut);
  }
  SUBCASE("expiry follows the caller's clock") {
    TokenPatch patch;
    patch.expires_at = std::optional<TimePoint>(clock.now() + 60s);
    store.update(created.record.id, patch);
    CHECK(r1->verify(created.token.reveal(), clock.now() + 59s));
    CHECK(r1->verify(created.token.reveal(), clock.now() + 60s).failure == VerifyFailure::Expired);
  }
  SUBCASE("malformed tokens are rejected before any lookup") {
    std::string bad = created.token.reveal();
    bad[20] = bad[20] == 'a' ? 'b' : 'a';
    CHECK(r1->verify(bad, clock.now()).failure == VerifyFailure::Malformed);
    CHECK(r1->verify("", clock.now()).failure == VerifyFailure::Malformed);
    CHECK(r1->verify(format_token("000000000000", random_base62(32)), clock.now()).failure ==
          VerifyFailure::Unknown);
  }
  CHECK(store.reads == reads_after_load);  // no verify touched the store
}

TEST_CASE("directory: a replica far behind catches up with a full copy") {
  TempDir dir;
  ManualClock clock;
  CountingStore store(TokenStore::open(store_options(dir, clock)));
  auto keep = store.create(named("keep"));
  auto drop = store.create(named("drop"));
  // Thousands of synced writes would take seconds; the directory only sees the
  // listener calls, so the test makes those directly.
  store.capture = true;
  TokenDirectory directory(store);
  REQUIRE(store.captured);
  auto replica = directory.make_replica();
  auto behind = directory.make_replica();
  CHECK(replica->verify(drop.token.reveal(), clock.now()));
  CHECK(behind->verify(drop.token.reveal(), clock.now()));
  StoredToken state;
  for (auto& t : store.load_all()) {
    if (t.record.id == keep.record.id) state = t;
  }
  REQUIRE(state.record.id == keep.record.id);
  // The delete comes first so that only a full copy can tell `behind` about it once
  // the change log has been trimmed; `replica` follows along, `behind` does not.
  store.captured(drop.record.id, nullptr);
  for (int i = 0; i < 20000; ++i) {
    state.record.name = std::to_string(i);
    store.captured(state.record.id, &state);
    if (i % 1000 == 0)
      CHECK(replica->verify(keep.token.reveal(), clock.now()).token->name == state.record.name);
  }
  for (auto* r : {replica.get(), behind.get()}) {
    auto v = r->verify(keep.token.reveal(), clock.now());
    REQUIRE(v);
    CHECK(v.token->name == "19999");
    CHECK(r->verify(drop.token.reveal(), clock.now()).failure == VerifyFailure::Unknown);
  }
  CHECK(directory.size() == 1);
}

TEST_CASE("directory: concurrent verifies and writes") {
  TempDir dir;
  ManualClock clock;
  auto store = TokenStore::open(store_options(dir, clock));
  auto stable = store->create(named("stable"));
  TokenDirectory directory(*store);
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&, replica = std::shared_ptr(directory.make_replica())] {
      while (!stop.load()) {
        if (!replica->verify(stable.token.reveal(), clock.now())) ++failures;
      }
    });
  }
  for (int i = 0; i < 50; ++i) {
    auto t = store->create(named("churn"));
    store->remove(t.record.id);
  }
  stop = true;
  for (auto& t : readers) t.join();
  CHECK(failures.load() == 0);
  CHECK(directory.size() == 1);
}

TEST_CASE("directory: grant sets are shared, and the ones no token uses are dropped") {
  TempDir dir;
  ManualClock clock;
  CountingStore store(TokenStore::open(store_options(dir, clock)));
  auto a = store.create(named("a"));
  auto b = store.create(named("b"));
  store.capture = true;
  TokenDirectory directory(store);
  auto replica = directory.make_replica();
  CHECK(directory.profile_count() == 1);  // a and b are both readers
  StoredToken state;
  for (auto& t : store.load_all()) {
    if (t.record.id == a.record.id) state = t;
  }
  REQUIRE(state.record.id == a.record.id);
  // 5,000 grant sets in turn, each used by `a` for one write only.
  for (int i = 0; i < 5000; ++i) {
    state.record.roles = {"role" + std::to_string(i)};
    store.captured(state.record.id, &state);
    auto v = replica->verify(a.token.reveal(), clock.now());
    REQUIRE(v);
    CHECK(v.token->profile->roles == state.record.roles);
  }
  // In use: reader (b) and the last one (a); the sweep keeps at most twice that plus 64.
  CHECK(directory.profile_count() <= 2 * 2 + 64 + 1);
  // A rate limit is part of the set: same names, another limit, another profile.
  state.record.roles = {"reader"};
  state.record.rate_limit = tokengate::conf::RateLimit{10, 1, 10};
  store.captured(state.record.id, &state);
  auto va = replica->verify(a.token.reveal(), clock.now());
  auto vb = replica->verify(b.token.reveal(), clock.now());
  REQUIRE(va);
  REQUIRE(vb);
  CHECK(va.token->profile.get() != vb.token->profile.get());
  CHECK(va.token->profile->rate_limit == state.record.rate_limit);
  CHECK(!vb.token->profile->rate_limit);
}

TEST_CASE("directory: a new base is built once the overlay is large, and no change is lost") {
  TempDir dir;
  ManualClock clock;
  CountingStore store(TokenStore::open(store_options(dir, clock)));
  auto keep = store.create(named("keep"));
  store.capture = true;
  TokenDirectory directory(store);
  auto follower = directory.make_replica();  // syncs after every write
  auto behind = directory.make_replica();    // syncs only at the end
  // 3,000 distinct tokens, more than the overlay holds before a rebuild.
  std::vector<std::pair<std::string, std::string>> made;  // (id, plaintext)
  for (int i = 0; i < 3000; ++i) {
    StoredToken t;
    t.record.id = fmt::format("x{:011d}", i);
    t.record.name = "n" + std::to_string(i);
    t.record.roles = {"reader"};
    const std::string secret = random_base62(kSecretLength);
    t.credential.current = store.key().hmac(secret);
    store.captured(t.record.id, &t);
    made.emplace_back(t.record.id, format_token(t.record.id, secret));
    REQUIRE(follower->verify(made.back().second, clock.now()));
  }
  CHECK(directory.rebuilds() >= 2);
  CHECK(directory.size() == 3001);
  // Every other one deleted: the deletions land in a new overlay over the rebuilt base.
  for (std::size_t i = 0; i < made.size(); i += 2) store.captured(made[i].first, nullptr);
  CHECK(directory.size() == 1501);
  for (auto* r : {follower.get(), behind.get()}) {
    for (std::size_t i = 0; i < made.size(); ++i) {
      const auto v = r->verify(made[i].second, clock.now());
      CHECK(v.failure == (i % 2 == 0 ? VerifyFailure::Unknown : VerifyFailure::None));
    }
    CHECK(r->verify(keep.token.reveal(), clock.now()));
  }
  // A request that held a token across the rebuilds still has it whole.
  auto held = follower->verify(made[1].second, clock.now());
  REQUIRE(held);
  const auto rebuilds = directory.rebuilds();
  for (int i = 0; i < 2000; ++i) {
    StoredToken t;
    t.record.id = fmt::format("y{:011d}", i);
    t.credential.current = store.key().hmac(random_base62(kSecretLength));
    store.captured(t.record.id, &t);
    follower->verify(made[1].second, clock.now());
  }
  CHECK(directory.rebuilds() > rebuilds);
  store.captured(made[1].first, nullptr);
  CHECK(held.token->id == made[1].first);
  CHECK(held.token->name == "n1");
  CHECK(follower->verify(made[1].second, clock.now()).failure == VerifyFailure::Unknown);
}
