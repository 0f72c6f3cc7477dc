// The admin API router without sockets: OpenAPI coverage of every route, JSON
// error paths, and the privilege rules for write-only callers.
#include "gateway/admin/admin_api.hpp"

#include <doctest/doctest.h>
#include <stdlib.h>

#include <algorithm>
#include <boost/json.hpp>
#include <filesystem>

#include "conf/config.hpp"
#include "policy/engine.hpp"

using namespace tokengate;
using gateway::AdminApi;
using gateway::AdminRequest;
using gateway::AdminResponse;
namespace json = boost::json;

namespace {

constexpr std::string_view kConfig = R"(listen: 127.0.0.1:0
tokens:
  max_lifetime: 30d
upstreams:
  orders: { url: "http://127.0.0.1:9" }
roles:
  reader: { permissions: [orders.read] }
  writer: { permissions: [orders.read, orders.write] }
  token-writer: { permissions: [tokengate.tokens.write] }
groups:
  ops: { roles: [writer], permissions: [billing.read] }
licenses: [pro, enterprise]
routes:
  - path: /api/**
    upstream: orders
)";

struct Fixture {
  Fixture() {
    std::string templ = (std::filesystem::temp_directory_path() / "tokengate-admin-XXXXXX").string();
    REQUIRE(mkdtemp(templ.data()) != nullptr);
    dir = templ;
    config = conf::parse_config(kConfig, dir / "tokengate.yaml");
    engine = policy::Engine::compile(config);
    token_store = store::TokenStore::open({dir / "tokens", dir / "key", store::system_now});
    api = std::make_unique<AdminApi>(
        *token_store, [this] { return engine; },
        gateway::AdminHooks{{}, [this](std::string_view l) { audit += l; }});
    api->set_ready(true);
  }
  ~Fixture() {
    api.reset();
    token_store.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }

  AdminResponse call(std::string method, std::string target, std::string body = {},
                     std::optional<std::string> bearer = std::nullopt, bool trusted = false) {
    AdminRequest r;
    r.method = std::move(method);
    r.target = std::move(target);
    r.body = std::move(body);
    if (bearer) r.authorization = "Bearer " + *bearer;
    r.trusted = trusted;
    r.client = "test";
    return api->handle(r);
  }
  AdminResponse trusted(std::string method, std::string target, std::string body = {}) {
    return call(std::move(method), std::move(target), std::move(body), std::nullopt, true);
  }
  // Creates a token through the trusted path and returns {token, id}.
  std::pair<std::string, std::string> make(const std::string& body) {
    auto r = trusted("POST", "/v1/tokens", body);
    REQUIRE_MESSAGE(r.status == 201, r.body);
    auto o = json::parse(r.body).as_object();
    return {std::string(o["token"].as_string()), std::string(o["id"].as_string())};
  }

  std::filesystem::path dir;
  std::shared_ptr<const conf::Config> config;
  std::shared_ptr<const policy::Engine> engine;
  std::unique_ptr<store::TokenStore> token_store;
  std::unique_ptr<AdminApi> api;
  std::string audit;
};

std::string header(const AdminResponse& r, std::string_view name) {
  for (const auto& [n, v] : r.headers) {
    if (n == name) return v;
  }
  return {};
}

std::string message(const AdminResponse& r) {
  return std::string(json::parse(r.body).at("message").as_string());
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

TEST_CASE("openapi: every route of the server is in the document and the other way round") {
  const json::value doc = json::parse(gateway::openapi_document());
  const auto& paths = doc.at("paths").as_object();
  std::size_t operations = 0;
  for (const auto& route : gateway::admin_routes()) {
    INFO(route.method, " ", route.path);
    REQUIRE(paths.contains(route.path));
    CHECK(paths.at(route.path).as_object().contains(lower(route.method)));
  }
  for (const auto& [path, item] : paths) {
    for (const auto& [method, op] : item.as_object()) {
      if (method == "parameters") continue;
      ++operations;
      bool found = false;
      for (const auto& route : gateway::admin_routes()) {
        found |= route.path == path && lower(route.method) == method;
      }
      INFO(method, " ", path);
      CHECK(found);
    }
  }
  CHECK(operations == gateway::admin_routes().size());
}

TEST_CASE("router: every listed route is dispatched (never 404/405 by routing)") {
  Fixture f;
  const std::string soon = store::format_rfc3339(store::system_now() + std::chrono::hours(1));
  auto [token, id] = f.make(R"({"name":"x","permissions":["a"],"expires_at":")" + soon + "\"}");
  (void)token;
  auto routes = gateway::admin_routes();
  // DELETE last: the routes after it need the token to exist.
  std::stable_partition(routes.begin(), routes.end(), [](const auto& r) { return r.method != "DELETE"; });
  for (const auto& route : routes) {
    if (route.path == "/metrics" || route.path == "/ui/") continue;  // filled by other parts
    std::string target(route.path);
    if (auto pos = target.find("{id}"); pos != std::string::npos) target.replace(pos, 4, id);
    std::string body = route.method == "PATCH" ? R"({"description":"d"})"
                       : route.method == "POST" && target == "/v1/tokens"
                           ? R"({"name":"y","expires_at":"2999-01-01T00:00:00Z"})"
                           : "";
    auto r = f.trusted(std::string(route.method), target, body);
    INFO(route.method, " ", target, " -> ", r.status, " ", r.body);
    CHECK(r.status != 404);
    CHECK(r.status != 405);
    CHECK(r.status < 500);
  }
}

TEST_CASE("router: security headers on every response, no-store on API answers") {
  Fixture f;
  for (auto target : {"/healthz", "/v1/tokens", "/nope", "/ui/", "/v1/openapi.json"}) {
    auto r = f.call("GET", target);
    INFO(target);
    CHECK(header(r, "X-Frame-Options") == "DENY");
    CHECK(header(r, "Content-Security-Policy").find("frame-ancestors 'none'") != std::string::npos);
    // The embedded console's static assets (api = false) may be cached; API answers may not.
    if (std::string_view(target) != "/ui/") CHECK(header(r, "Cache-Control") == "no-store");
  }
}

TEST_CASE("router: bad input is 4xx with the SPEC error shape and writes nothing") {
  Fixture f;
  struct Case {
    std::string method, target, body;
    int status;
    std::string needle;
  };
  const std::vector<Case> cases = {
      {"POST", "/v1/tokens", "{", 400, "not valid JSON"},
      {"POST", "/v1/tokens", "[]", 400, "JSON object"},
      {"POST", "/v1/tokens", "", 400, "not valid JSON"},
      {"POST", "/v1/tokens", R"({"name":"a","expires_at":null,"bogus":1})", 400, "unknown field 'bogus'"},
      {"POST", "/v1/tokens", R"({"name":5})", 400, "'name' must be a string"},
      {"POST", "/v1/tokens", R"({"name":"a","roles":"reader"})", 400, "array of strings"},
      {"POST", "/v1/tokens", R"({"name":"a","roles":[1]})", 400, "array of strings"},
      {"POST", "/v1/tokens", R"({"description":"no name"})", 400, "'name' is required"},
      {"POST", "/v1/tokens", R"({"name":"a","expires_at":"tomorrow"})", 400, "RFC 3339"},
      {"POST", "/v1/tokens", R"({"name":"a","id":"abc"})", 400, "cannot be changed"},
      {"POST", "/v1/tokens", R"({"name":"a","roles":["nope"],"expires_at":"2999-01-01T00:00:00Z"})", 422,
       "unknown role 'nope'"},
      {"POST", "/v1/tokens", R"({"name":"a","expires_at":"2999-01-01T00:00:00Z"})", 422, "max_lifetime"},
      {"POST", "/v1/tokens", R"({"name":"a"})", 422, "max_lifetime"},
      {"POST", "/v1/tokens", R"({"name":""})", 422, "must not be empty"},
      {"GET", "/v1/tokens/AAAAAAAAAAAA", "", 404, "no token"},
      {"GET", "/v1/tokens/../etc", "", 404, ""},
      {"PATCH", "/v1/tokens/AAAAAAAAAAAA", R"({"name":"b"})", 404, "no token"},
      {"DELETE", "/v1/tokens/AAAAAAAAAAAA", "", 404, "no token"},
      {"POST", "/v1/tokens/AAAAAAAAAAAA/rotate", "", 404, "no token"},
      {"GET", "/v1/tokens?x=1", "", 400, "unknown query parameter"},
      {"PUT", "/v1/tokens", "", 405, "not allowed"},
      {"GET", "/v2/tokens", "", 404, "no admin endpoint"},
  };
  for (const auto& c : cases) {
    auto r = f.trusted(c.method, c.target, c.body);
    INFO(c.method, " ", c.target, " ", c.body, " -> ", r.status, " ", r.body);
    CHECK(r.status == c.status);
    auto body = json::parse(r.body).as_object();
    CHECK(body.contains("error"));
    CHECK(message(r).find(c.needle) != std::string::npos);
  }
  CHECK(f.token_store->list().empty());
}

TEST_CASE("auth: no token 401, read-only POST 403, write-only escalation rules") {
  Fixture f;
  const std::string exp_soon = store::format_rfc3339(store::system_now() + std::chrono::hours(24));
  const std::string exp_later = store::format_rfc3339(store::system_now() + std::chrono::hours(48));
  auto [reader, reader_id] =
      f.make(R"({"name":"r","permissions":["tokengate.tokens.read"],"expires_at":")" + exp_soon + "\"}");
  auto [writer, writer_id] =
      f.make(R"({"name":"w","roles":["reader"],"permissions":["tokengate.tokens.write"],"expires_at":")" +
             exp_soon + "\"}");
  auto [admin, admin_id] =
      f.make(R"({"name":"a","permissions":["tokengate.admin"],"expires_at":")" + exp_later + "\"}");
  auto [nobody, nobody_id] = f.make(R"({"name":"n","expires_at":")" + exp_soon + "\"}");
  (void)reader_id;
  (void)nobody_id;

  SUBCASE("401 without or with a bad token") {
    auto r = f.call("GET", "/v1/tokens");
    CHECK(r.status == 401);
    CHECK(header(r, "WWW-Authenticate") == "Bearer realm=\"tokengate\"");
    r = f.call("GET", "/v1/tokens", "", std::string("tg_nonsense"));
    CHECK(r.status == 401);
    CHECK(header(r, "WWW-Authenticate").find("invalid_token") != std::string::npos);
  }
  SUBCASE("a token without admin permissions is 403 even for GET") {
    CHECK(f.call("GET", "/v1/tokens", "", nobody).status == 403);
  }
  SUBCASE("reader reads, cannot write") {
    CHECK(f.call("GET", "/v1/tokens", "", reader).status == 200);
    CHECK(f.call("GET", "/v1/config", "", reader).status == 200);
    auto r = f.call("POST", "/v1/tokens", R"({"name":"z","expires_at":")" + exp_soon + "\"}", reader);
    CHECK(r.status == 403);
    CHECK(message(r).find("tokengate.tokens.write") != std::string::npos);
  }
  SUBCASE("writer grants only what it holds, never beyond its expiry, records itself as creator") {
    auto r = f.call("POST", "/v1/tokens",
                    R"({"name":"z","roles":["writer"],"expires_at":")" + exp_soon + "\"}", writer);
    CHECK(r.status == 403);
    CHECK(message(r).find("role 'writer'") != std::string::npos);
    r = f.call("POST", "/v1/tokens",
               R"({"name":"z","permissions":["tokengate.admin"],"expires_at":")" + exp_soon + "\"}", writer);
    CHECK(r.status == 403);
    CHECK(message(r).find("permission 'tokengate.admin'") != std::string::npos);
    r = f.call("POST", "/v1/tokens", R"({"name":"z","licenses":["pro"],"expires_at":")" + exp_soon + "\"}",
               writer);
    CHECK(r.status == 403);
    CHECK(message(r).find("license 'pro'") != std::string::npos);
    r = f.call("POST", "/v1/tokens", R"({"name":"z","groups":["ops"],"expires_at":")" + exp_soon + "\"}",
               writer);
    CHECK(r.status == 403);
    r = f.call("POST", "/v1/tokens", R"({"name":"z","roles":["reader"],"expires_at":")" + exp_later + "\"}",
               writer);
    CHECK(r.status == 403);
    CHECK(message(r).find("no later than") != std::string::npos);
    r = f.call("POST", "/v1/tokens", R"({"name":"z","roles":["reader"],"expires_at":")" + exp_soon + "\"}",
               writer);
    REQUIRE(r.status == 201);
    auto created = json::parse(r.body).as_object();
    CHECK(created["created_by"].as_string() == writer_id);
    const std::string new_id(created["id"].as_string());
    // extending the expiry of a token beyond its own, or its own
    r = f.call("PATCH", "/v1/tokens/" + new_id, R"({"expires_at":")" + exp_later + "\"}", writer);
    CHECK(r.status == 403);
    r = f.call("PATCH", "/v1/tokens/" + writer_id, R"({"expires_at":")" + exp_later + "\"}", writer);
    CHECK(r.status == 403);
    r = f.call("PATCH", "/v1/tokens/" + new_id, R"({"roles":["reader","writer"]})", writer);
    CHECK(r.status == 403);
    CHECK(message(r).find("role 'writer'") != std::string::npos);
    CHECK(f.call("PATCH", "/v1/tokens/" + new_id, R"({"name":"renamed"})", writer).status == 200);
    // admin tokens are out of reach
    for (auto [m, t] :
         {std::pair{"PATCH", "/v1/tokens/" + admin_id}, std::pair{"DELETE", "/v1/tokens/" + admin_id},
          std::pair{"POST", "/v1/tokens/" + admin_id + "/rotate"}}) {
      r = f.call(m, t, m == std::string("PATCH") ? R"({"name":"pwn"})" : "", writer);
      INFO(m, " ", t, " ", r.body);
      CHECK(r.status == 403);
      CHECK(message(r).find("tokengate.admin") != std::string::npos);
    }
    CHECK(f.token_store->get(admin_id)->name == "a");
    CHECK(f.call("DELETE", "/v1/tokens/" + new_id, "", writer).status == 204);
  }
  SUBCASE("admin does everything") {
    auto r = f.call("POST", "/v1/tokens",
                    R"({"name":"z","groups":["ops"],"licenses":["pro"],"expires_at":")" + exp_later + "\"}",
                    admin);
    CHECK(r.status == 201);
    CHECK(f.call("PATCH", "/v1/tokens/" + writer_id, R"({"roles":["writer"]})", admin).status == 200);
  }
  SUBCASE("audit lines name actor, action and id, never a secret") {
    auto r = f.call("POST", "/v1/tokens/" + nobody_id + "/rotate", R"({"grace_seconds":60})", admin);
    REQUIRE(r.status == 200);
    const std::string fresh(json::parse(r.body).at("token").as_string());
    CHECK(f.audit.find(R"("audit":"token.rotate")") != std::string::npos);
    CHECK(f.audit.find(admin_id) != std::string::npos);
    CHECK(f.audit.find(nobody_id) != std::string::npos);
    CHECK(f.audit.find(fresh.substr(16)) == std::string::npos);
    for (const auto& t : {reader, writer, admin, nobody})
      CHECK(f.audit.find(t.substr(16)) == std::string::npos);
  }
}

TEST_CASE("rotate: grace_seconds types and range") {
  Fixture f;
  auto [token, id] = f.make(R"({"name":"x","expires_at":")" +
                            store::format_rfc3339(store::system_now() + std::chrono::hours(1)) + "\"}");
  (void)token;
  CHECK(f.trusted("POST", "/v1/tokens/" + id + "/rotate", R"({"grace_seconds":"10"})").status == 400);
  CHECK(f.trusted("POST", "/v1/tokens/" + id + "/rotate", R"({"grace_seconds":1.5})").status == 400);
  CHECK(f.trusted("POST", "/v1/tokens/" + id + "/rotate", R"({"grace_seconds":-1})").status == 422);
  CHECK(
      f.trusted("POST", "/v1/tokens/" + id + "/rotate", R"({"grace_seconds":18446744073709551615})").status ==
      422);
  CHECK(f.trusted("POST", "/v1/tokens/" + id + "/rotate", R"({"grace":1})").status == 400);
  CHECK(f.token_store->get(id)->rotated_at == std::nullopt);
  CHECK(f.trusted("POST", "/v1/tokens/" + id + "/rotate", "").status == 200);
}

TEST_CASE("readyz follows set_ready; list filters by name or id") {
  Fixture f;
  CHECK(f.call("GET", "/readyz").status == 200);
  f.api->set_ready(false);
  CHECK(f.call("GET", "/readyz").status == 503);
  CHECK(f.call("GET", "/healthz").status == 200);
  const std::string exp = store::format_rfc3339(store::system_now() + std::chrono::hours(1));
  auto [t1, id1] = f.make(R"({"name":"CI deploy","expires_at":")" + exp + "\"}");
  auto [t2, id2] = f.make(R"({"name":"backup","expires_at":")" + exp + "\"}");
  (void)t1;
  (void)t2;
  auto names = [&](const std::string& target) {
    std::vector<std::string> out;
    const json::value listed = json::parse(f.trusted("GET", target).body);
    for (const auto& v : listed.as_array()) out.emplace_back(v.at("name").as_string());
    return out;
  };
  CHECK(names("/v1/tokens").size() == 2);
  CHECK(names("/v1/tokens?q=deploy") == std::vector<std::string>{"CI deploy"});
  CHECK(names("/v1/tokens?q=ci%20dep") == std::vector<std::string>{"CI deploy"});
  CHECK(names("/v1/tokens?q=" + id2) == std::vector<std::string>{"backup"});
  CHECK(names("/v1/tokens?q=zzz").empty());
}

TEST_CASE("create: a retried Idempotency-Key is 409 naming the first token, per caller") {
  Fixture f;
  const std::string body = R"({"name":"x","expires_at":")" +
                           store::format_rfc3339(store::system_now() + std::chrono::hours(1)) + "\"}";
  AdminRequest r;
  r.method = "POST";
  r.target = "/v1/tokens";
  r.body = body;
  r.trusted = true;
  r.idempotency_key = "deploy-42";
  auto first = f.api->handle(r);
  REQUIRE(first.status == 201);
  const std::string id(json::parse(first.body).at("id").as_string());
  auto again = f.api->handle(r);
  CHECK(again.status == 409);
  CHECK(message(again).find(id) != std::string::npos);
  CHECK(f.token_store->list().size() == 1);
  r.idempotency_key = "deploy-43";
  CHECK(f.api->handle(r).status == 201);
  r.idempotency_key = "";
  CHECK(f.api->handle(r).status == 400);
  r.idempotency_key = std::string(129, 'k');
  CHECK(f.api->handle(r).status == 400);
  CHECK(f.token_store->list().size() == 2);
}

namespace {

// Independent of the code under test: RFC 3629 well-formedness, byte by byte.
bool valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    std::size_t n = 0;
    unsigned cp = 0;
    if (b < 0x80) {
      n = 1;
      cp = b;
    } else if ((b & 0xE0) == 0xC0) {
      n = 2;
      cp = b & 0x1F;
    } else if ((b & 0xF0) == 0xE0) {
      n = 3;
      cp = b & 0x0F;
    } else if ((b & 0xF8) == 0xF0) {
      n = 4;
      cp = b & 0x07;
    } else {
      return false;
    }
    if (i + n > s.size()) return false;
    for (std::size_t k = 1; k < n; ++k) {
      const auto c = static_cast<unsigned char>(s[i + k]);
      if ((c & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (c & 0x3F);
    }
    const unsigned min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n;
  }
  return true;
}

std::size_t utf8_chars(std::string_view s) {
  std::size_t n = 0;
  for (const char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

// An error body must be JSON (Boost.JSON refuses invalid UTF-8 while parsing)
// whose message is well-formed UTF-8; returns the message.
std::string checked_message(const AdminResponse& r) {
  INFO(r.status, " ", r.body);
  REQUIRE(r.status >= 400);
  CHECK(valid_utf8(r.body));
  boost::system::error_code ec;
  const json::value v = json::parse(r.body, ec);
  REQUIRE_FALSE(ec);
  const std::string m(v.at("message").as_string());
  CHECK(valid_utf8(m));
  return m;
}

const std::string kE = "\xC3\xA9";  // é, two bytes

}  // namespace

TEST_CASE("printable_utf8: whole characters, replacements, controls") {
  using gateway::printable_utf8;
  CHECK(printable_utf8("plain", 64) == "plain");
  CHECK(printable_utf8("abc", 2) == "ab");
  CHECK(printable_utf8(std::string(63, 'a') + kE + "b", 64) ==
        std::string(63, 'a') + kE);  // not cut inside é
  CHECK(printable_utf8(kE + kE + kE, 2) == kE + kE);
  CHECK(printable_utf8("\xE2\x82\xAC\xF0\x9F\x98\x80", 8) ==
        "\xE2\x82\xAC\xF0\x9F\x98\x80");  // € and an emoji
  const std::string fffd = "\xEF\xBF\xBD";
  CHECK(printable_utf8("a\xFF"
                       "b",
                       64) == "a" + fffd + "b");
  CHECK(printable_utf8("\xC3", 64) == fffd);                                   // truncated sequence
  CHECK(printable_utf8("\xC0\x80", 64) == fffd + fffd);                        // overlong NUL
  CHECK(printable_utf8("\xE0\x80\xAF", 64) == fffd + fffd + fffd);             // overlong '/'
  CHECK(printable_utf8("\xED\xA0\x80", 64) == fffd + fffd + fffd);             // surrogate
  CHECK(printable_utf8("\xF4\x90\x80\x80", 64) == fffd + fffd + fffd + fffd);  // past U+10FFFF
  CHECK(printable_utf8("\xC3\xA9\xA9", 64) == kE + fffd);                      // stray continuation
  CHECK(printable_utf8("a\nb\x7F"
                       "c\x01",
                       64) == "a?b?c?");
  CHECK(printable_utf8("\xC2\x85"
                       "x\xC2\xA0",
                       64) == "?x\xC2\xA0");                // C1 control NEL; NBSP is text
  CHECK(printable_utf8("\xFF\xFF\xFF", 2) == fffd + fffd);  // the limit counts replacements
  for (int b = 0; b < 256; ++b) {
    const std::string one(1, static_cast<char>(b));
    CHECK(valid_utf8(printable_utf8(one + kE + one, 3)));
  }
}

TEST_CASE("admin API error bodies are valid UTF-8 JSON whatever the input") {
  Fixture f;
  const std::string soon = store::format_rfc3339(store::system_now() + std::chrono::hours(24));

  SUBCASE("an unknown field cut after 64 characters, not inside one") {
    // 63 ASCII bytes then é: a 64-byte cut ends inside it.
    const auto m =
        checked_message(f.trusted("POST", "/v1/tokens", R"({")" + std::string(63, 'k') + kE + R"(":1})"));
    CHECK(m == "unknown field '" + std::string(63, 'k') + kE + "'");
    const std::string long_key = [&] {
      std::string k;
      for (int i = 0; i < 100; ++i) k += kE;
      return k;
    }();
    const auto m2 = checked_message(f.trusted("POST", "/v1/tokens", "{\"" + long_key + "\":1}"));
    CHECK(utf8_chars(m2) == std::string_view("unknown field ''").size() + 64);
  }
  SUBCASE("a percent-decoded query key: cut and invalid bytes") {
    auto m = checked_message(f.trusted("GET", "/v1/tokens?" + std::string(63, 'q') + "%C3%A9%C3%A9=1"));
    CHECK(m == "unknown query parameter '" + std::string(63, 'q') + kE + "'");
    m = checked_message(f.trusted("GET", "/v1/tokens?%FF%FE%C0%AF%ED%A0%80=1"));
    CHECK(m.find("\xEF\xBF\xBD") != std::string::npos);
    m = checked_message(f.trusted("GET", "/v1/tokens?a%00%0Ab%1B=1"));
    CHECK(m == "unknown query parameter 'a??b?'");
  }
  SUBCASE("a name the caller does not hold, cut after 128 characters") {
    auto [writer, writer_id] =
        f.make(R"({"name":"w","roles":["reader"],"permissions":["tokengate.tokens.write"],"expires_at":")" +
               soon + "\"}");
    (void)writer_id;
    const std::string name = std::string(127, 'p') + kE + "x";
    const auto m = checked_message(
        f.call("POST", "/v1/tokens",
               R"({"name":"z","permissions":[")" + name + R"("],"expires_at":")" + soon + "\"}", writer));
    CHECK(m ==
          "the caller does not hold permission '" + std::string(127, 'p') + kE + "' and cannot grant it");
  }
  SUBCASE("every error of a batch of hostile requests") {
    const std::vector<std::pair<std::string, std::string>> requests = {
        {"/v1/tokens", "{\"\xC3\xA9\":1}"},
        {"/v1/tokens", "{\"name\":\"" + std::string(200, 'n') + kE + "\",\"expires_at\":\"" + soon + "\"}"},
        {"/v1/tokens", "{\"name\":\"a\",\"roles\":[\"" + std::string(300, 'r') + kE +
                           "\"],\"expires_at\":\"" + soon + "\"}"},
        {"/v1/tokens",
         "{\"name\":\"a\",\"permissions\":[\"a b" + kE + "\"],\"expires_at\":\"" + soon + "\"}"},
        {"/v1/tokens", "\xFF\xFE"},
        {"/v1/tokens", "{\"name\":\"\xC3\"}"},
    };
    for (const auto& [target, body] : requests) {
      CAPTURE(body);
      checked_message(f.trusted("POST", target, body));
    }
    checked_message(f.trusted("GET", "/v1/tokens/%C3%A9%C3"));
    checked_message(f.trusted("GET", "/v1/" + std::string(199, 'x') + "%C3%A9"));
  }
}
