// Which request a forward-auth check is about: the ingress conventions, their
// order, and the checks that refuse a check nobody can name the request of.
#include "gateway/forward_auth/original_request.hpp"

#include <doctest/doctest.h>

#include <initializer_list>
#include <memory_resource>
#include <string_view>
#include <utility>

namespace gw = tokengate::gateway;
using gw::forward_auth::original_request;
using gw::forward_auth::OriginalSource;

namespace {

struct Check {
  std::pmr::monotonic_buffer_resource arena;
  gw::Fields fields{&arena};
  explicit Check(std::initializer_list<std::pair<std::string_view, std::string_view>> list) {
    for (const auto& [name, value] : list) fields.insert(name, value);
  }
};

}  // namespace

TEST_CASE("original request: nginx, ingress-nginx, Traefik/Caddy, then the check itself") {
  {
    Check c{{"X-Original-URI", "/a?b=1"}, {"X-Original-Method", "POST"}, {"X-Forwarded-For", "10.0.0.1"}};
    const auto r = original_request(c.fields, "GET", "/check", "");
    CHECK(r.error.empty());
    CHECK(r.source == OriginalSource::OriginalUri);
    CHECK(r.method == "POST");
    CHECK(r.target == "/a?b=1");
  }
  {
    // nginx's auth_request subrequest keeps the original method when none is set.
    Check c{{"x-original-uri", "/a"}};
    const auto r = original_request(c.fields, "DELETE", "/check", "");
    CHECK(r.method == "DELETE");
    CHECK(r.target == "/a");
  }
  {
    Check c{{"X-Original-URL", "https://shop.example:8443/api/x?y=%2F"}, {"X-Original-Method", "PUT"}};
    const auto r = original_request(c.fields, "GET", "/check", "");
    CHECK(r.error.empty());
    CHECK(r.source == OriginalSource::OriginalUrl);
    CHECK(r.method == "PUT");
    CHECK(r.target == "/api/x?y=%2F");
  }
  {
    // X-Original-URI and -URL together when they agree.
    Check c{{"X-Original-URL", "http://h/uri?q"}, {"X-Original-URI", "/uri?q"}};
    CHECK(original_request(c.fields, "GET", "/", "").target == "/uri?q");
  }
  {
    Check c{{"X-Forwarded-Uri", "/t/x"}, {"X-Forwarded-Method", "PATCH"}};
    const auto r = original_request(c.fields, "GET", "/check", "");
    CHECK(r.source == OriginalSource::ForwardedUri);
    CHECK(r.method == "PATCH");
    CHECK(r.target == "/t/x");
  }
  {
    // Envoy's ext_authz: the check is the original request, behind path_prefix.
    Check c{{"X-Request-Id", "abc"}};
    const auto r = original_request(c.fields, "DELETE", "/auth/api/x?q", "/auth");
    CHECK(r.error.empty());
    CHECK(r.source == OriginalSource::CheckTarget);
    CHECK(r.method == "DELETE");
    CHECK(r.target == "/api/x?q");
    CHECK(original_request(c.fields, "GET", "/api/x", "").target == "/api/x");
    // With path_prefix set, a check outside it is asked the nginx way.
    Check n{{"X-Original-URI", "/a"}};
    CHECK(original_request(n.fields, "GET", "/_check", "/auth").target == "/a");
  }
}

TEST_CASE("original request: checks that name no request are refused") {
  const struct {
    const char* what;
    std::initializer_list<std::pair<std::string_view, std::string_view>> fields;
    std::string_view target;
  } cases[] = {
      {"repeated X-Original-URI", {{"X-Original-URI", "/a"}, {"X-Original-URI", "/b"}}, "/"},
      {"repeated X-Forwarded-Uri", {{"X-Forwarded-Uri", "/a"}, {"x-forwarded-uri", "/b"}}, "/"},
      {"repeated method",
       {{"X-Forwarded-Uri", "/a"}, {"X-Forwarded-Method", "GET"}, {"X-Forwarded-Method", "PUT"}},
       "/"},
      {"URL without scheme", {{"X-Original-URL", "/relative"}}, "/"},
      {"URL without path", {{"X-Original-URL", "http://host"}}, "/"},
      {"URL with query but no path", {{"X-Original-URL", "http://host?x=/y"}}, "/"},
      {"empty URI", {{"X-Original-URI", ""}}, "/"},
      {"method with a space", {{"X-Original-URI", "/a"}, {"X-Original-Method", "GET /b"}}, "/"},
      {"empty method", {{"X-Forwarded-Uri", "/a"}, {"X-Forwarded-Method", ""}}, "/"},
      {"outside path_prefix", {}, "/other/x"},
      // A client's own fields next to the ingress's (Caddy and Traefik pass them on).
      {"X-Original-URI next to X-Forwarded-Uri",
       {{"X-Forwarded-Uri", "/admin/x"}, {"X-Original-URI", "/public/x"}},
       "/"},
      {"X-Original-Method next to X-Forwarded-Uri",
       {{"X-Forwarded-Uri", "/a"}, {"X-Original-Method", "GET"}},
       "/"},
      {"X-Original-URL next to X-Forwarded-*",
       {{"X-Forwarded-Method", "GET"}, {"X-Original-URL", "http://h/a"}},
       "/"},
      {"URI and URL disagree",
       {{"X-Original-URL", "http://h/admin/x"}, {"X-Original-URI", "/public/x"}},
       "/"},
      {"method without target", {{"X-Original-Method", "GET"}}, "/"},
      {"forwarded method without target", {{"X-Forwarded-Method", "GET"}}, "/"},
      // Under path_prefix the check is the request (Envoy): any such field is the client's.
      {"X-Original-URI under path_prefix", {{"X-Original-URI", "/public/x"}}, "/auth/admin/x"},
      {"X-Forwarded-Uri under path_prefix", {{"X-Forwarded-Uri", "/public/x"}}, "/auth/admin/x"},
      // Field values can hold what no request line can.
      {"space in the target", {{"X-Original-URI", "/public/ /admin"}}, "/"},
      {"comma list", {{"X-Forwarded-Uri", "/public/x, /admin/x"}}, "/"},
      {"control character", {{"X-Original-URI", "/public/\x7f"}}, "/"},
      {"brace", {{"X-Original-URI", "/public/{x}"}}, "/"},
      {"prefix not a whole segment", {}, "/authz/x"},
      {"prefix alone", {}, "/auth"},
      {"prefix with query only", {}, "/auth?x"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.what);
    Check check(c.fields);
    CHECK_FALSE(original_request(check.fields, "GET", c.target, "/auth").error.empty());
  }
}
