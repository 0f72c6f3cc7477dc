// The in-memory directory and its replicas: every write is seen by the next verify.
#include "store/token_verifier.hpp"

#include <doctest/doctest.h>

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
    CHECK(v2.token->record.roles == std::vector<std::string>{"admin"});
    CHECK(v1.token->record.roles == std::vector<std::string>{"reader"});  // in-flight copy unchanged
    CHECK(v1.token.get() != v2.token.get());
    auto v3 = r2->verify(created.token.reveal(), clock.now());
    REQUIRE(v3);
    CHECK(v3.token.get() != v2.token.get());  // each replica owns its copy
    CHECK(v3.token->record.roles == std::vector<std::string>{"admin"});
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
  auto current = replica->verify(keep.token.reveal(), clock.now());
  REQUIRE(current);
  StoredToken state = *current.token;
  REQUIRE(state.record.id == keep.record.id);
  // The delete comes first so that only a full copy can tell `behind` about it once
  // the change log has been trimmed; `replica` follows along, `behind` does not.
  store.captured(drop.record.id, nullptr);
  for (int i = 0; i < 20000; ++i) {
    state.record.description = std::to_string(i);
    store.captured(state.record.id, &state);
    if (i % 1000 == 0)
      CHECK(replica->verify(keep.token.reveal(), clock.now()).token->record.description ==
            state.record.description);
  }
  for (auto* r : {replica.get(), behind.get()}) {
    auto v = r->verify(keep.token.reveal(), clock.now());
    REQUIRE(v);
    CHECK(v.token->record.description == "19999");
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
