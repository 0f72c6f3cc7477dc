// The RocksDB store as a node's local copy (store/local_copy.hpp): changes and the
// revision are one synced batch and survive a reopen; a full reload leaves exactly
// the given set and tells the listener about every token it removed or wrote.
#include "store/local_copy.hpp"

#include <doctest/doctest.h>

#include <map>
#include <string>
#include <vector>

#include "store/token_codec.hpp"
#include "store/token_format.hpp"
#include "test_util.hpp"

using namespace tokengate::store;
using namespace tokengate::store::test;

namespace {

StoredToken token(const std::string& name, const ServerKey& key) {
  NewToken r;
  r.name = name;
  r.roles = {"b", "a", "b"};
  return make_token(r, random_base62(kIdLength), key.hmac("secret-" + name), system_now());
}

}  // namespace

TEST_CASE("local copy: applied changes and their revision survive a reopen") {
  TempDir dir;
  const TokenStore::Options o{dir.path() / "copy", dir.path() / "key"};
  std::string id_a, id_b;
  {
    auto copy = open_local_copy(o);
    CHECK(copy->sync_state().cluster_id.empty());
    CHECK(copy->sync_state().revision == 0);
    std::map<std::string, bool> heard;  // id -> present
    copy->set_change_listener(
        [&](std::string_view id, const StoredToken* now) { heard[std::string(id)] = now; });
    auto a = token("a", copy->key()), b = token("b", copy->key());
    id_a = a.record.id;
    id_b = b.record.id;
    copy->replace_all({a}, SyncState{"cluster-1", 4});
    copy->apply_changes({{id_b, b}, {id_a, std::nullopt}}, 6);
    CHECK(heard == std::map<std::string, bool>{{id_a, false}, {id_b, true}});
    CHECK(copy->sync_state().revision == 6);
  }
  auto copy = open_local_copy(o);
  CHECK(copy->sync_state().cluster_id == "cluster-1");
  CHECK(copy->sync_state().revision == 6);
  CHECK_FALSE(copy->get(id_a).has_value());
  REQUIRE(copy->get(id_b).has_value());
  CHECK(copy->get(id_b)->roles == std::vector<std::string>{"a", "b"});
  // The token verifies with its digest as written (token_codec round trip).
  auto all = copy->load_all();
  REQUIRE(all.size() == 1);
  CHECK(all[0].credential.current == copy->key().hmac("secret-b"));
}

TEST_CASE("local copy: a full reload removes what the set no longer holds") {
  TempDir dir;
  auto copy = open_local_copy({dir.path() / "copy", dir.path() / "key"});
  auto a = token("a", copy->key()), b = token("b", copy->key()), c = token("c", copy->key());
  copy->replace_all({a, b}, SyncState{"x", 2});
  std::vector<std::pair<std::string, bool>> heard;
  copy->set_change_listener([&](std::string_view id, const StoredToken* now) {
    heard.emplace_back(std::string(id), now != nullptr);
  });
  copy->replace_all({b, c}, SyncState{"y", 9});
  CHECK(copy->list().size() == 2);
  CHECK_FALSE(copy->get(a.record.id).has_value());
  CHECK(copy->sync_state().cluster_id == "y");
  CHECK(copy->sync_state().revision == 9);
  CHECK(heard.front() == std::make_pair(a.record.id, false));
  CHECK(heard.size() == 3);
}

TEST_CASE("token codec: encode and decode are inverse; the id must match") {
  TempDir dir;
  auto copy = open_local_copy({dir.path() / "copy", dir.path() / "key"});
  auto t = token("x", copy->key());
  rotate_credential(t, copy->key().hmac("new"), std::chrono::seconds(60), system_now());
  const StoredToken back = decode_token(t.record.id, encode_token(t));
  CHECK(back.record.name == "x");
  CHECK(back.credential.current == t.credential.current);
  CHECK(back.credential.previous == t.credential.previous);
  CHECK(back.credential.previous_until == t.credential.previous_until);
  CHECK_THROWS(decode_token("AAAAAAAAAAAA", encode_token(t)));
}
