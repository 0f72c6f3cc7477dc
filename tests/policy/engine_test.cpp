// Engine: route lookup semantics (first match, methods, 404/405 + Allow), the index
// against a brute-force scan, effective rights, and decisions for each requirement shape.
#include "policy/engine.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "policy/route_pattern.hpp"
#include "test_config.hpp"

using namespace tokengate::policy;
namespace t = tokengate::policy::test;

TEST_CASE("Engine::match: route semantics") {
  const auto engine = Engine::compile(t::make_config({
      {"/healthz", {}, true},               // 0
      {"/api/orders/**", {"GET", "HEAD"}},  // 1
      {"/api/orders/*/refund", {"POST"}},   // 2
      {"/api/**", {"GET"}},                 // 3
      {"/api/orders/special", {"GET"}},     // 4: shadowed by 1
      {"/files/*", {"GET", "PUT"}},         // 5
      {"/files/**", {"DELETE"}},            // 6
      {"/Case/x", {}},                      // 7
  }));
  struct Case {
    const char* name;
    const char* method;
    const char* path;
    int route;
    bool path_matched;
    const char* allow;
  };
  const Case cases[] = {
      {"exact literal", "GET", "/healthz", 0, true, ""},
      {"all methods", "DELETE", "/healthz", 0, true, ""},
      {"method outside config", "BREW", "/healthz", 0, true, ""},
      {"literal is not a prefix", "GET", "/healthz/x", -1, false, ""},
      {"first match wins over more specific", "GET", "/api/orders/special", 1, true, ""},
      {"double star zero segments", "GET", "/api/orders", 1, true, ""},
      {"double star trailing slash", "GET", "/api/orders/", 1, true, ""},
      {"double star deep", "HEAD", "/api/orders/1/items/2", 1, true, ""},
      {"later route by method", "POST", "/api/orders/42/refund", 2, true, ""},
      {"star never empty", "POST", "/api/orders//refund", -1, true, "GET, HEAD"},
      {"fallthrough to api", "GET", "/api/other", 3, true, ""},
      {"HEAD not implied by GET", "HEAD", "/api/other", -1, true, "GET"},
      {"405 unions every path-matched route", "PUT", "/api/orders/42/refund", -1, true, "GET, HEAD, POST"},
      {"405 with unknown method", "BREW", "/api/orders", -1, true, "GET, HEAD"},
      {"star and double star both", "PUT", "/files/a", 5, true, ""},
      {"double star after star sibling", "DELETE", "/files/a", 6, true, ""},
      {"405 across star and double star", "POST", "/files/a", -1, true, "DELETE, GET, PUT"},
      {"405 only double star deeper", "GET", "/files/a/b", -1, true, "DELETE"},
      {"star needs a segment", "GET", "/files/", -1, true, "DELETE"},
      {"case sensitive", "GET", "/case/x", -1, false, ""},
      {"case sensitive exact", "GET", "/Case/x", 7, true, ""},
      {"404", "GET", "/nothing", -1, false, ""},
      {"404 root", "GET", "/", -1, false, ""},
      {"not canonical", "GET", "healthz", -1, false, ""},
  };
  for (const auto& c : cases) {
    SUBCASE(c.name) {
      const auto m = engine->match(c.method, c.path);
      CHECK(m.route == c.route);
      CHECK(m.path_matched == c.path_matched);
      CHECK(m.allow == c.allow);
      const auto d = engine->decide(m, Credential::None, nullptr);
      if (c.route < 0) {
        CHECK(d.verdict == Verdict::Deny);
        CHECK(status_for(d.outcome) == (c.path_matched ? 405 : 404));
      }
    }
  }
}

TEST_CASE("Engine::match: the index agrees with a file-order scan") {
  // Overlapping literals, stars and double stars at several depths.
  std::vector<t::RouteSpec> specs = {
      {"/a/b/c", {"GET"}},  {"/a/*/c", {"POST"}}, {"/a/**", {"PUT"}},    {"/*/b/**", {"GET"}},
      {"/a/b", {"DELETE"}}, {"/**", {"OPTIONS"}}, {"/a/b/*", {"PATCH"}}, {"/x/*", {}},
      {"/a/*/*", {"GET"}},  {"/", {"HEAD"}},      {"/*", {"HEAD"}},      {"/a/b/c/**", {"DELETE"}},
      {"/x/**", {"GET"}},   {"/y/z", {}},         {"/*/*/c", {"PATCH"}},
  };
  const auto config = t::make_config(specs);
  const auto engine = Engine::compile(config);
  std::vector<RoutePattern> patterns;
  for (const auto& s : specs) patterns.push_back(*RoutePattern::parse(s.path, nullptr));

  const char* methods[] = {"GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "HEAD", "BREW"};
  const char* paths[] = {"/",        "/a",    "/a/",    "/a/b",   "/a/b/",    "/a/b/c", "/a/q/c",
                         "/a/b/c/d", "/q/b",  "/q/b/c", "/x",     "/x/",      "/x/1",   "/x/1/2",
                         "/y/z",     "/y/z/", "/q/r/c", "/a/b/d", "/a/q/q/q", "/zz"};
  int checked = 0;
  for (const char* path : paths) {
    for (const char* method : methods) {
      int expected = -1;
      bool path_matched = false;
      std::vector<std::string> allowed;  // union of methods of path-matched routes
      for (std::size_t i = 0; i < specs.size(); ++i) {
        if (!patterns[i].matches(path)) continue;
        path_matched = true;
        const auto& ms = specs[i].methods;
        if (ms.empty() || std::find(ms.begin(), ms.end(), method) != ms.end()) {
          expected = static_cast<int>(i);
          break;
        }
        allowed.insert(allowed.end(), ms.begin(), ms.end());
      }
      std::sort(allowed.begin(), allowed.end());
      allowed.erase(std::unique(allowed.begin(), allowed.end()), allowed.end());
      std::string expected_allow;
      for (const auto& a : allowed) expected_allow += (expected_allow.empty() ? "" : ", ") + a;
      if (expected >= 0) expected_allow.clear();

      const auto m = engine->match(method, path);
      INFO(method, " ", path);
      CHECK(m.route == expected);
      CHECK(m.path_matched == path_matched);
      CHECK(m.allow == expected_allow);
      ++checked;
    }
  }
  CHECK(checked == 160);
}

TEST_CASE("Engine::effective_rights") {
  auto config = t::make_config({});
  config->roles = {{"orders-reader", {"orders.read"}, {}},
                   {"orders-admin", {"orders.read", "orders.write"}, {}},
                   {"billing", {"billing.read"}, {}}};
  config->groups = {{"ops", {"orders-admin"}, {"billing.read", "ops.page"}, {}}, {"empty", {}, {}, {}}};
  const auto engine = Engine::compile(config);

  SUBCASE("token grants only") {
    const auto r = engine->effective_rights({{}, {}, {"z.perm", "a.perm", "z.perm"}, {"pro"}});
    CHECK(r.permissions == std::vector<std::string>{"a.perm", "z.perm"});
    CHECK(r.roles.empty());
    CHECK(r.licenses == std::vector<std::string>{"pro"});
  }
  SUBCASE("roles add their permissions") {
    const auto r = engine->effective_rights({{"orders-reader", "billing"}, {}, {}, {}});
    CHECK(r.roles == std::vector<std::string>{"billing", "orders-reader"});
    CHECK(r.permissions == std::vector<std::string>{"billing.read", "orders.read"});
  }
  SUBCASE("groups add roles, the roles' permissions and their own") {
    const auto r =
        engine->effective_rights({{"orders-reader"}, {"ops", "empty"}, {"x"}, {"enterprise", "pro"}});
    CHECK(r.roles == std::vector<std::string>{"orders-admin", "orders-reader"});
    CHECK(r.groups == std::vector<std::string>{"empty", "ops"});
    CHECK(r.permissions ==
          std::vector<std::string>{"billing.read", "ops.page", "orders.read", "orders.write", "x"});
    CHECK(r.licenses == std::vector<std::string>{"enterprise", "pro"});
  }
  SUBCASE("unknown names grant nothing beyond themselves") {
    const auto r = engine->effective_rights({{"gone-role"}, {"gone-group"}, {}, {}});
    CHECK(r.roles == std::vector<std::string>{"gone-role"});
    CHECK(r.groups == std::vector<std::string>{"gone-group"});
    CHECK(r.permissions.empty());
  }
}

TEST_CASE("Engine::decide: requirement shapes, reasons and statuses") {
  auto config = t::make_config({
      {"/public/**", {}, true},                                                        // 0
      {"/any/**"},                                                                     // 1: no require
      {"/perm/**", {}, false, t::require(t::block({"orders.read", "orders.write"}))},  // 2
      {"/all/**", {}, false, t::require(t::block({"orders.read"}, {"orders-admin"}, {"ops"}, {"pro"}))},  // 3
      {"/anyof/**",
       {},
       false,
       t::require({}, {t::block({}, {"orders-admin"}), t::block({}, {}, {"ops"})})},  // 4
      {"/both/**",
       {},
       false,
       t::require(t::block({}, {}, {}, {"pro"}),
                  {t::block({"orders.write"}), t::block({"billing.read"})})},  // 5
      {"/empty/**", {}, false, t::require({})},  // 6: require: {} = any valid token
  });
  config->roles = {{"orders-reader", {"orders.read"}, {}},
                   {"orders-admin", {"orders.read", "orders.write"}, {}}};
  config->groups = {{"ops", {"orders-admin"}, {"billing.read"}, {}}};
  const auto engine = Engine::compile(config);

  const Rights nobody = engine->effective_rights({});
  const Rights reader = engine->effective_rights({{"orders-reader"}, {}, {}, {}});
  const Rights admin = engine->effective_rights({{"orders-admin"}, {}, {}, {}});
  const Rights admin_pro = engine->effective_rights({{"orders-admin"}, {}, {}, {"pro"}});
  const Rights ops = engine->effective_rights({{}, {"ops"}, {}, {}});
  const Rights ops_pro = engine->effective_rights({{}, {"ops"}, {}, {"pro"}});
  const Rights billing_pro = engine->effective_rights({{}, {}, {"billing.read"}, {"pro"}});

  struct Case {
    const char* name;
    const char* path;
    Credential credential;
    const Rights* rights;
    Outcome outcome;
    const char* missing;
  };
  const Case cases[] = {
      {"public, no token", "/public/x", Credential::None, nullptr, Outcome::PublicRoute, ""},
      {"public, invalid token treated as absent", "/public/x", Credential::Invalid, nullptr,
       Outcome::PublicRoute, ""},
      {"public, wrong scheme", "/public/x", Credential::WrongScheme, nullptr, Outcome::PublicRoute, ""},
      {"public, valid token", "/public/x", Credential::Valid, &nobody, Outcome::PublicRoute, ""},
      {"no require, no token", "/any/x", Credential::None, nullptr, Outcome::MissingToken, ""},
      {"no require, basic auth", "/any/x", Credential::WrongScheme, nullptr, Outcome::WrongScheme, ""},
      {"no require, invalid", "/any/x", Credential::Invalid, nullptr, Outcome::InvalidToken, ""},
      {"no require, any valid token", "/any/x", Credential::Valid, &nobody, Outcome::Allowed, ""},
      {"permissions, none held", "/perm/x", Credential::Valid, &nobody, Outcome::InsufficientScope,
       "permission orders.read"},
      {"permissions, first held, second missing", "/perm/x", Credential::Valid, &reader,
       Outcome::InsufficientScope, "permission orders.write"},
      {"permissions, all held via role", "/perm/x", Credential::Valid, &admin, Outcome::Allowed, ""},
      {"permissions, no token", "/perm/x", Credential::None, nullptr, Outcome::MissingToken, ""},
      {"all keys, missing group", "/all/x", Credential::Valid, &admin_pro, Outcome::InsufficientScope,
       "group ops"},
      {"all keys, missing license", "/all/x", Credential::Valid, &ops, Outcome::InsufficientScope,
       "license pro"},
      {"all keys, missing role", "/all/x", Credential::Valid, &billing_pro, Outcome::InsufficientScope,
       "permission orders.read"},
      {"all keys held", "/all/x", Credential::Valid, &ops_pro, Outcome::Allowed, ""},
      {"any_of, none", "/anyof/x", Credential::Valid, &reader, Outcome::InsufficientScope,
       "any_of: none of 2 alternatives held"},
      {"any_of, first", "/anyof/x", Credential::Valid, &admin, Outcome::Allowed, ""},
      {"any_of, second", "/anyof/x", Credential::Valid, &ops, Outcome::Allowed, ""},
      {"both, all-of fails first", "/both/x", Credential::Valid, &admin, Outcome::InsufficientScope,
       "license pro"},
      {"both, nothing held", "/both/x", Credential::Valid, &nobody, Outcome::InsufficientScope,
       "license pro"},
      {"both, any_of via second", "/both/x", Credential::Valid, &billing_pro, Outcome::Allowed, ""},
      {"both, any_of via first", "/both/x", Credential::Valid, &admin_pro, Outcome::Allowed, ""},
      {"empty require", "/empty/x", Credential::Valid, &nobody, Outcome::Allowed, ""},
      {"empty require, no token", "/empty/x", Credential::None, nullptr, Outcome::MissingToken, ""},
  };
  for (const auto& c : cases) {
    SUBCASE(c.name) {
      const auto m = engine->match("GET", c.path);
      REQUIRE(m.route >= 0);
      const auto d = engine->decide(m, c.credential, c.rights);
      CHECK(d.route == m.route);
      CHECK(d.outcome == c.outcome);
      CHECK(d.missing == c.missing);
      const bool allowed = c.outcome == Outcome::Allowed || c.outcome == Outcome::PublicRoute;
      CHECK((d.verdict == Verdict::Allow) == allowed);
    }
  }

  SUBCASE("any_of fails after all-of holds") {
    const Rights pro_only = engine->effective_rights({{}, {}, {}, {"pro"}});
    const auto d = engine->decide(engine->match("GET", "/both/x"), Credential::Valid, &pro_only);
    CHECK(d.outcome == Outcome::InsufficientScope);
    CHECK(d.missing == "any_of: none of 2 alternatives held");
  }
  SUBCASE("no route and no method") {
    CHECK(engine->decide(engine->match("GET", "/nope"), Credential::Valid, &admin).outcome ==
          Outcome::NoRoute);
  }
}

TEST_CASE("Engine: 405 decision and Allow") {
  const auto engine = Engine::compile(t::make_config({{"/r", {"GET", "HEAD"}}, {"/r", {"POST"}}}));
  const auto m = engine->match("DELETE", "/r");
  CHECK(m.allow == "GET, HEAD, POST");
  const auto d = engine->decide(m, Credential::Valid, nullptr);
  CHECK(d.verdict == Verdict::Deny);
  CHECK(d.outcome == Outcome::MethodNotAllowed);
  CHECK(d.route == -1);
  CHECK(engine->match("HEAD", "/r").route == 0);
  CHECK(engine->match("POST", "/r").route == 1);
}

TEST_CASE("Engine: Allow when the method sets are too many to precompute every union") {
  // 17 single-method routes on one path: 2^17 - 1 unions, over the cap.
  std::vector<t::RouteSpec> specs;
  std::string all;
  for (int i = 0; i < 17; ++i) {
    const std::string method = "M" + std::string(i < 10 ? "0" : "") + std::to_string(i);
    specs.push_back({"/x", {method}});
    all += (all.empty() ? "" : ", ") + method;
  }
  specs.push_back({"/y", {"M03"}});
  specs.push_back({"/z", {"M01", "M02"}});
  specs.push_back({"/v", {"M04"}});
  specs.push_back({"/v", {"M05"}});
  const auto engine = Engine::compile(t::make_config(specs));
  CHECK(engine->match("M16", "/x").route == 16);
  CHECK(engine->match("BREW", "/x").allow == all);  // the union of all 17: exact
  CHECK(engine->match("BREW", "/y").allow == "M03");
  CHECK(engine->match("M03", "/z").allow == "M01, M02");
  // A union that is no single route's set falls back to every configured method
  // (documented degradation), which still lists the right ones.
  CHECK(engine->match("BREW", "/v").allow == all);
}

TEST_CASE("Engine: reason names and statuses") {
  struct Case {
    Outcome outcome;
    const char* name;
    int status;
  };
  const Case cases[] = {
      {Outcome::Allowed, "allowed", 200},
      {Outcome::PublicRoute, "public_route", 200},
      {Outcome::BadRequest, "bad_request", 400},
      {Outcome::MissingToken, "missing_token", 401},
      {Outcome::WrongScheme, "wrong_scheme", 401},
      {Outcome::InvalidToken, "invalid_token", 401},
      {Outcome::InsufficientScope, "insufficient_scope", 403},
      {Outcome::NoRoute, "no_route", 404},
      {Outcome::MethodNotAllowed, "method_not_allowed", 405},
      {Outcome::StoreError, "store_error", 503},
      {Outcome::StoreUnavailable, "store_unavailable", 503},
  };
  for (const auto& c : cases) {
    SUBCASE(c.name) {
      CHECK(to_string(c.outcome) == c.name);
      CHECK(status_for(c.outcome) == c.status);
    }
  }
}

TEST_CASE("Engine::compile: invalid pattern is a config error naming the route") {
  const auto config = t::make_config({{"/ok"}, {"/bad/**/x"}});
  try {
    Engine::compile(config);
    FAIL("compile accepted an invalid pattern");
  } catch (const tokengate::conf::ConfigError& e) {
    CHECK(e.mark().line == 20);
    CHECK(e.message().find("route 1 (/bad/**/x)") != std::string::npos);
  }
}

TEST_CASE("Engine::compile: more distinct methods than the mask holds is a config error") {
  std::vector<t::RouteSpec> specs;
  for (std::size_t i = 0; i <= kMaxRouteMethods; ++i)
    specs.push_back({"/r" + std::to_string(i), {"M" + std::to_string(i)}});
  CHECK_THROWS_AS(Engine::compile(t::make_config(specs)), tokengate::conf::ConfigError);
  specs.pop_back();
  const auto engine = Engine::compile(t::make_config(specs));  // exactly the maximum is fine
  CHECK(engine->match("M63", "/r63").route == 63);
  CHECK(engine->match("M0", "/r63").allow == "M63");
}
