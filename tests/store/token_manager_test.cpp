// TokenManager: the rules for names, grants and expiry, with messages naming the value.
#include "store/token_manager.hpp"

#include <doctest/doctest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "test_util.hpp"

using namespace tokengate::store;
using namespace tokengate::store::test;
using namespace std::chrono_literals;

namespace {

std::shared_ptr<const tokengate::conf::Config> make_config(std::chrono::milliseconds max_lifetime = 0ms) {
  auto c = std::make_shared<tokengate::conf::Config>();
  c->roles.push_back({"orders-reader", {"orders.read"}, {}});
  c->roles.push_back({"orders-admin", {"orders.read", "orders.write"}, {}});
  c->groups.push_back({"ops", {"orders-admin"}, {"billing.read"}, {}});
  c->licenses = {"pro", "enterprise"};
  c->tokens.max_lifetime = max_lifetime;
  return c;
}

NewToken request() {
  NewToken r;
  r.name = "deploy";
  r.roles = {"orders-reader"};
  r.groups = {"ops"};
  r.licenses = {"pro"};
  r.permissions = {"x.y"};
  return r;
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const ValidationError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("manager: valid requests reach the store") {
  TempDir dir;
  ManualClock clock;
  auto store = TokenStore::open(store_options(dir, clock));
  TokenManager manager(*store, make_config());
  auto issued = manager.create(request());
  CHECK(store->verify(issued.token.reveal()));
  CHECK(manager.get(issued.record.id));
  CHECK(manager.list().size() == 1);
  TokenPatch p;
  p.roles = std::vector<std::string>{"orders-admin", "orders-reader", "orders-admin"};
  auto updated = manager.update(issued.record.id, p);
  REQUIRE(updated);
  CHECK(updated->roles == std::vector<std::string>{"orders-admin", "orders-reader"});
  CHECK(manager.rotate(issued.record.id, 0s));
  CHECK(manager.remove(issued.record.id));
  CHECK(manager.list().empty());
}

TEST_CASE("manager: validation errors name the offending value") {
  TempDir dir;
  ManualClock clock;
  auto store = TokenStore::open(store_options(dir, clock));
  TokenManager manager(*store, make_config());

  auto with = [](auto change) {
    NewToken r = request();
    change(r);
    return r;
  };
  CHECK(error_of([&] { manager.create(with([](NewToken& r) { r.roles = {"orders-reeder"}; })); }) ==
        "unknown role 'orders-reeder' (configured roles: orders-reader, orders-admin)");
  CHECK(error_of([&] { manager.create(with([](NewToken& r) { r.groups = {"dev"}; })); }) ==
        "unknown group 'dev' (configured groups: ops)");
  CHECK(error_of([&] { manager.create(with([](NewToken& r) { r.licenses = {"gold"}; })); }) ==
        "unknown license 'gold' (configured licenses: pro, enterprise)");
  CHECK(error_of([&] { manager.create(with([](NewToken& r) { r.name = ""; })); }).find("empty") !=
        std::string::npos);
  CHECK(error_of([&] {
          manager.create(with([](NewToken& r) { r.name = std::string(129, 'n'); }));
        }).find("129") != std::string::npos);
  CHECK(error_of([&] { manager.create(with([](NewToken& r) { r.name = std::string(128, 'n'); })); }).empty());
  CHECK(error_of([&] { manager.create(with([](NewToken& r) { r.name = "a\nb"; })); }).find("control") !=
        std::string::npos);
  // Length counts characters, not bytes: 128 two-byte characters are fine, 129 are not.
  std::string accented;
  for (int i = 0; i < 128; ++i) accented += "\xc3\xa9";
  CHECK(error_of([&] { manager.create(with([&](NewToken& r) { r.name = accented; })); }).empty());
  CHECK(error_of([&] { manager.create(with([&](NewToken& r) { r.name = accented + "e"; })); }).find("129") !=
        std::string::npos);
  for (const char* bad : {"\xc3", "a\xff", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82"}) {
    INFO(bad);
    CHECK(error_of([&] { manager.create(with([&](NewToken& r) { r.name = bad; })); }).find("UTF-8") !=
          std::string::npos);
  }
  CHECK(error_of([&] {
          manager.create(with([](NewToken& r) { r.name = "\xe2\x82\xac \xf0\x9f\x94\x91"; }));
        }).empty());
  // User input echoed in a message never breaks it over lines.
  CHECK(error_of([&] {
          manager.create(with([](NewToken& r) { r.roles = {"evil\nrole"}; }));
        }).find("'evil\\x0arole'") != std::string::npos);
  CHECK(error_of([&] { manager.create(with([](NewToken& r) { r.permissions = {"a b"}; })); }).find("'a b'") !=
        std::string::npos);
  CHECK(error_of([&] { manager.create(with([](NewToken& r) { r.permissions = {"a,b"}; })); }).find("'a,b'") !=
        std::string::npos);
  CHECK_FALSE(error_of([&] { manager.create(with([](NewToken& r) { r.permissions = {""}; })); }).empty());
  CHECK(error_of([&] {
          manager.create(with([&](NewToken& r) { r.expires_at = clock.now(); }));
        }).find("not in the future") != std::string::npos);

  auto id = manager.create(request()).record.id;
  TokenPatch p;
  p.licenses = std::vector<std::string>{"pro", "platinum"};
  CHECK(error_of([&] { manager.update(id, p); }) ==
        "unknown license 'platinum' (configured licenses: pro, enterprise)");
  CHECK(manager.get(id)->licenses == std::vector<std::string>{"pro"});  // nothing written
  CHECK(manager.list().size() == 4);  // the 128-char names and the euro/key name succeeded above
}

TEST_CASE("manager: tokens.max_lifetime") {
  TempDir dir;
  ManualClock clock;
  auto store = TokenStore::open(store_options(dir, clock));
  TokenManager manager(*store, make_config(std::chrono::hours(24 * 30)));
  NewToken r = request();
  CHECK(error_of([&] { manager.create(r); }).find("tokens.max_lifetime is 30d") != std::string::npos);
  r.expires_at = clock.now() + std::chrono::hours(24 * 30) + 1s;
  CHECK(error_of([&] { manager.create(r); }).find("beyond tokens.max_lifetime") != std::string::npos);
  r.expires_at = clock.now() + std::chrono::hours(24 * 30);
  auto issued = manager.create(r);
  TokenPatch never;
  never.expires_at = std::optional<TimePoint>{};
  CHECK_FALSE(error_of([&] { manager.update(issued.record.id, never); }).empty());
  manager.set_config(make_config());
  CHECK(error_of([&] { manager.update(issued.record.id, never); }).empty());
  CHECK_FALSE(manager.get(issued.record.id)->expires_at);
}

TEST_CASE("parse_when and RFC 3339") {
  const TimePoint now = *parse_rfc3339("2026-11-27T22:39:02Z");
  CHECK(format_rfc3339(now) == "2026-11-27T22:39:02Z");
  CHECK(parse_when("2027-01-01T00:00:00Z", now) == parse_rfc3339("2027-01-01T00:00:00Z"));
  CHECK(format_rfc3339(*parse_when("2027-01-01T02:00:00.999+02:00", now)) == "2027-01-01T00:00:00Z");
  CHECK(format_rfc3339(*parse_when("2026-12-31", now)) == "2027-01-01T00:00:00Z");
  CHECK(format_rfc3339(*parse_when("2028-02-29", now)) == "2028-03-01T00:00:00Z");
  CHECK(format_rfc3339(*parse_when("30d", now)) == "2026-12-27T22:39:02Z");
  CHECK(format_rfc3339(*parse_when("12h", now)) == "2026-11-28T10:39:02Z");
  CHECK(format_rfc3339(*parse_when("10m", now)) == "2026-11-27T22:49:02Z");
  for (const char* bad : {"", "tomorrow", "2026-13-01", "2027-02-29", "30", "30x", "-5d",
                          "2026-11-27T25:00:00Z", "2026-11-27T22:39:02", "2026-11-27 22:39:02Z",
                          "2026-11-27T22:39:02Zjunk", "999999999999999999d", "3000000d"}) {
    INFO(bad);
    CHECK_FALSE(parse_when(bad, now));
  }
  TokenRecord r;
  r.id = "0123456789ab";
  r.name = "n";
  r.created_at = now;
  r.updated_at = now;
  auto j = to_json(r);
  CHECK(j.at("created_at").as_string() == "2026-11-27T22:39:02Z");
  CHECK(j.at("expires_at").is_null());
  CHECK(j.at("last_used_at").is_null());
  CHECK(j.at("rate_limit").is_null());
  CHECK(j.size() == 14);
  r.rate_limit = tokengate::conf::RateLimit{6000, 60, 500};
  CHECK(boost::json::serialize(to_json(r).at("rate_limit")) == R"({"rate":"6000/m","burst":500})");
}

TEST_CASE("rate_limit JSON: read back, burst defaults to the count, malformed values refused") {
  std::optional<tokengate::conf::RateLimit> limit;
  std::string error;
  CHECK(rate_limit_from_json(boost::json::parse(R"({"rate":"6000/m","burst":500})"), limit, error));
  CHECK(limit == tokengate::conf::RateLimit{6000, 60, 500});
  CHECK(rate_limit_from_json(boost::json::parse(R"({"rate":"10/s"})"), limit, error));
  CHECK(limit == tokengate::conf::RateLimit{10, 1, 10});
  CHECK(rate_limit_from_json(boost::json::parse("null"), limit, error));
  CHECK_FALSE(limit);
  for (const char* bad : {R"("10/s")", R"({"rate":"0/s"})", R"({"rate":"10/s","burst":0})",
                          R"({"rate":"10/s","burst":-1})", R"({"rate":"10/s","burst":1.5})", R"({"burst":3})",
                          R"({"rate":"10/s","brust":3})", R"({"rate":"10/w"})"}) {
    CAPTURE(bad);
    error.clear();
    CHECK_FALSE(rate_limit_from_json(boost::json::parse(bad), limit, error));
    CHECK(error.starts_with("field 'rate_limit'"));
  }
}
