// lint(): shadowed routes, invalid patterns, non-shadowed cases, unused permissions.
#include "policy/lint.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "test_config.hpp"

using namespace tokengate::policy;
namespace t = tokengate::policy::test;

namespace {

std::vector<std::string> messages(const std::vector<Finding>& findings, Severity severity) {
  std::vector<std::string> out;
  for (const auto& f : findings)
    if (f.severity == severity) out.push_back(f.message);
  return out;
}

}  // namespace

TEST_CASE("lint: shadowed routes") {
  struct Case {
    const char* name;
    std::vector<t::RouteSpec> routes;
    std::vector<std::string> errors;
  };
  const std::vector<Case> cases = {
      {"double star covers literal",
       {{"/api/**"}, {"/api/orders/x"}},
       {"route 1 (/api/orders/x, line 20) can never match: route 0 (/api/**, line 10) matches every request "
        "it "
        "would"}},
      {"star covers literal",
       {{"/api/*", {"GET"}}, {"/api/x", {"GET"}}},
       {"route 1 (/api/x, line 20) can never match: route 0 (/api/*, line 10) matches every request it "
        "would"}},
      {"double star covers its own root",
       {{"/api/**"}, {"/api"}},
       {"route 1 (/api, line 20) can never match: route 0 (/api/**, line 10) matches every request it "
        "would"}},
      {"method subset",
       {{"/a/**", {"GET", "HEAD", "POST"}}, {"/a/*/b", {"HEAD", "GET"}}},
       {"route 1 (/a/*/b, line 20) can never match: route 0 (/a/**, line 10) matches every request it "
        "would"}},
      {"all methods cover any",
       {{"/a/**"}, {"/a/x", {"DELETE"}}},
       {"route 1 (/a/x, line 20) can never match: route 0 (/a/**, line 10) matches every request it would"}},
      {"duplicate route",
       {{"/x", {"GET"}}, {"/x", {"GET"}}},
       {"route 1 (/x, line 20) can never match: route 0 (/x, line 10) matches every request it would"}},
      {"first covering route is named, each shadowed route once",
       {{"/b"}, {"/a/**", {"GET"}}, {"/**", {"GET"}}, {"/a/x", {"GET"}}, {"/c", {"GET"}}},
       {"route 3 (/a/x, line 40) can never match: route 1 (/a/**, line 20) matches every request it would",
        "route 4 (/c, line 50) can never match: route 2 (/**, line 30) matches every request it would"}},
      {"methods split over two earlier routes",
       {{"/a/**", {"GET"}}, {"/a/*", {"POST", "PUT"}}, {"/a/x", {"PUT", "GET"}}},
       {"route 2 (/a/x, line 30) can never match: route 0 (/a/**, line 10) and route 1 (/a/*, line 20) match "
        "every request it would"}},
      // Not shadowed.
      {"methods split, one left over",
       {{"/a/**", {"GET"}}, {"/a/*", {"POST"}}, {"/a/x", {"GET", "POST", "PUT"}}},
       {}},
      {"all methods need an all-methods route", {{"/a/**", {"GET"}}, {"/a/*", {"POST"}}, {"/a/x"}}, {}},
      {"later route is broader", {{"/api/x"}, {"/api/**"}}, {}},
      {"method not covered", {{"/api/**", {"GET", "HEAD"}}, {"/api/x", {"GET", "POST"}}}, {}},
      {"all methods not covered by a method list", {{"/api/**", {"GET"}}, {"/api/x"}}, {}},
      {"star does not cover double star", {{"/api/*"}, {"/api/**"}}, {}},
      {"literal does not cover star", {{"/api/x"}, {"/api/*"}}, {}},
      {"double star below does not cover its root", {{"/api/*/**"}, {"/api/**"}}, {}},
      {"different prefixes", {{"/a/**"}, {"/ab/**"}, {"/b/**"}}, {}},
      {"case differs", {{"/API/**"}, {"/api/x"}}, {}},
      {"spec example",
       {{"/healthz", {}, true},
        {"/api/orders/**", {"GET", "HEAD"}},
        {"/api/orders/*/refund", {"POST"}},
        {"/api/admin/**"},
        {"/api/**"}},
       {}},
  };
  for (const auto& c : cases) {
    SUBCASE(c.name) {
      const auto findings = lint(*t::make_config(c.routes));
      CHECK(messages(findings, Severity::Error) == c.errors);
      for (const auto& f : findings)
        if (f.severity == Severity::Error) CHECK(f.mark.line >= 20);  // the shadowed route's line
    }
  }
}

TEST_CASE("lint: invalid patterns") {
  const auto findings = lint(*t::make_config({{"/ok/**"}, {"/bad/**/x"}, {"no-slash"}, {"/ok/x"}}));
  const auto errors = messages(findings, Severity::Error);
  REQUIRE(errors.size() == 3);
  CHECK(errors[0] ==
        "route 1 (/bad/**/x, line 20): invalid pattern: '**' is only allowed as the last segment");
  CHECK(errors[1] == "route 2 (no-slash, line 30): invalid pattern: a pattern must start with '/'");
  CHECK(errors[2].find("route 3 (/ok/x, line 40) can never match: route 0") == 0);
  CHECK(findings[0].mark.line == 20);
  CHECK(findings[0].mark.column == 5);
}

TEST_CASE("lint: permissions nothing grants") {
  auto config = t::make_config({
      {"/a/**", {}, false, t::require(t::block({"orders.read", "orders.typo", "orders.typo"}))},
      {"/b/**", {}, false, t::require({}, {t::block({"billing.read"}), t::block({"ghost.perm"}, {"r"})})},
      {"/c/**", {}, false, t::require(t::block({}, {"r"}))},
      {"/d/**", {}, true},
  });
  config->roles = {{"r", {"orders.read"}, {}}};
  config->groups = {{"g", {"r"}, {"billing.read"}, {}}};
  const auto findings = lint(*config);
  CHECK(messages(findings, Severity::Error).empty());
  CHECK(messages(findings, Severity::Warning) ==
        std::vector<std::string>{
            "route 0 (/a/**, line 10) requires permission orders.typo, which no role or group grants",
            "route 1 (/b/**, line 20) requires permission ghost.perm, which no role or group grants"});
}

TEST_CASE("lint: a clean config has no findings") {
  auto config = t::make_config({{"/healthz", {}, true}, {"/api/**", {}, false, t::require(t::block({"p"}))}});
  config->roles = {{"r", {"p"}, {}}};
  CHECK(lint(*config).empty());
}

TEST_CASE("lint: more distinct methods than the engine supports") {
  std::vector<t::RouteSpec> specs;
  for (std::size_t i = 0; i <= 64; ++i)
    specs.push_back({"/r" + std::to_string(i), {"M" + std::to_string(i)}});
  CHECK(messages(lint(*t::make_config(specs)), Severity::Error) ==
        std::vector<std::string>{"routes name 65 distinct methods; at most 64 are supported"});
  specs.pop_back();
  CHECK(lint(*t::make_config(specs)).empty());
}
