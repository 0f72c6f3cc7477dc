// Route pattern parsing, matching and subsumption (docs/configuration.md, "Patterns").
#include "policy/route_pattern.hpp"

#include <doctest/doctest.h>

#include <string>
#include <string_view>

using tokengate::policy::RoutePattern;

namespace {

RoutePattern must_parse(std::string_view text) {
  std::string error;
  auto p = RoutePattern::parse(text, &error);
  INFO(text, ": ", error);
  REQUIRE(p.has_value());
  return *p;
}

}  // namespace

TEST_CASE("RoutePattern: matching") {
  struct Case {
    const char* pattern;
    const char* path;
    bool match;
  };
  const Case cases[] = {
      {"/api/**", "/api", true},
      {"/api/**", "/api/", true},
      {"/api/**", "/api/x", true},
      {"/api/**", "/api/x/y", true},
      {"/api/**", "/apix", false},
      {"/api/**", "/ap", false},
      {"/api/**", "/", false},
      {"/api/**", "/API/x", false},
      {"/**", "/", true},
      {"/**", "/anything/at/all", true},
      {"/", "/", true},
      {"/", "/x", false},
      {"/healthz", "/healthz", true},
      {"/healthz", "/healthz/", false},
      {"/healthz", "/Healthz", false},
      {"/healthz", "/healthz/x", false},
      {"/api/*", "/api/x", true},
      {"/api/*", "/api/", false},  // '*' never matches an empty segment
      {"/api/*", "/api", false},
      {"/api/*", "/api/x/y", false},
      {"/api/orders/*/refund", "/api/orders/42/refund", true},
      {"/api/orders/*/refund", "/api/orders//refund", false},
      {"/api/orders/*/refund", "/api/orders/42/refund/", false},
      {"/api/*/**", "/api/x", true},
      {"/api/*/**", "/api/x/y/z", true},
      {"/api/*/**", "/api", false},
      {"/api/*/**", "/api/", false},
      {"/a;b/%3A", "/a;b/%3A", true},
      {"/api/**", "api/x", false},
      {"/api/**", "", false},
  };
  for (const auto& c : cases) {
    SUBCASE((std::string(c.pattern) + " ~ " + c.path).c_str()) {
      CHECK(must_parse(c.pattern).matches(c.path) == c.match);
    }
  }
}

TEST_CASE("RoutePattern: parse errors") {
  struct Case {
    const char* pattern;
    const char* message;  // substring of the error
  };
  const Case cases[] = {
      {"", "must start with '/'"},
      {"api/x", "must start with '/'"},
      {"*", "must start with '/'"},
      {"/api//x", "empty segment"},
      {"/api/", "empty segment"},
      {"/api/**/x", "'**' is only allowed as the last segment"},
      {"/**/**", "'**' is only allowed as the last segment"},
      {"/api/x*", "'*' must be a whole segment"},
      {"/api/***", "'*' must be a whole segment"},
      {"/api/../x", "dot segment"},
      {"/api/.", "dot segment"},
      {"/api/%41", "write 'A'"},
      {"/api/%3a", "upper-case hex"},
      {"/api/%2F", "always rejected"},
      {"/api/%00", "always rejected"},
      {"/api/%zz", "malformed percent escape"},
      {"/api/%4", "malformed percent escape"},
      {"/api\\x", "backslash"},
      {"/api?x", "'?'"},
      {"/api#x", "'#'"},
      {"/api/\x01", "control character"},
      {"/caf\xc3\xa9", "non-ASCII"},
  };
  for (const auto& c : cases) {
    SUBCASE(c.pattern) {
      std::string error;
      CHECK_FALSE(RoutePattern::parse(c.pattern, &error).has_value());
      CHECK_MESSAGE(error.find(c.message) != std::string::npos, error);
    }
  }
  CHECK_FALSE(RoutePattern::parse("bad", nullptr).has_value());  // error output is optional
  CHECK(must_parse("/api/**").text() == "/api/**");
}

TEST_CASE("RoutePattern: subsumption") {
  struct Case {
    const char* inner;
    const char* outer;
    bool subsumed;
  };
  const Case cases[] = {
      {"/api/x", "/api/x", true},
      {"/api/x", "/api/*", true},
      {"/api/x", "/api/**", true},
      {"/api/x/y", "/api/**", true},
      {"/api/**", "/api/**", true},
      {"/api/*/**", "/api/**", true},
      {"/api/x/**", "/api/*/**", true},
      {"/api", "/api/**", true},
      {"/api/**", "/**", true},
      {"/", "/**", true},
      {"/", "/", true},
      {"/api/*", "/api/*", true},
      {"/api/*", "/*/*", true},
      {"/api/orders/*/refund", "/api/orders/**", true},
      {"/api/*", "/api/x", false},
      {"/api/**", "/api/*", false},
      {"/api/**", "/api/*/**", false},  // /api and /api/ are not matched by the outer
      {"/api/**", "/api/x/**", false},
      {"/**", "/api/**", false},
      {"/", "/*", false},
      {"/", "/api/**", false},
      {"/api", "/api/*", false},
      {"/api/x", "/api/x/*", false},
      {"/api/x/y", "/api/*", false},
      {"/apix/y", "/api/**", false},
      {"/Api/x", "/api/**", false},
  };
  for (const auto& c : cases) {
    SUBCASE((std::string(c.inner) + " <= " + c.outer).c_str()) {
      CHECK(must_parse(c.inner).subsumed_by(must_parse(c.outer)) == c.subsumed);
    }
  }
}

TEST_CASE("RoutePattern: subsumption agrees with matching on sample paths") {
  // If inner is subsumed by outer, no sample path may match inner but not outer.
  const char* patterns[] = {"/",         "/**",      "/api",     "/api/**", "/api/*", "/api/x", "/api/*/**",
                            "/api/x/**", "/api/*/y", "/api/x/y", "/*",      "/*/*",   "/b/**"};
  const char* paths[] = {"/",      "/api",     "/api/", "/api/x", "/api/x/",    "/api/x/y", "/api/z/y",
                         "/api/z", "/api/x/z", "/b",    "/b/c",   "/api/x/y/z", "/apix"};
  for (const char* inner : patterns) {
    for (const char* outer : patterns) {
      const auto a = must_parse(inner);
      const auto b = must_parse(outer);
      if (!a.subsumed_by(b)) continue;
      for (const char* path : paths) {
        INFO(inner, " <= ", outer, " on ", path);
        CHECK((!a.matches(path) || b.matches(path)));
      }
    }
  }
}
