// The request plan, table by table: raw request bytes in, the outcome, whether the
// connection closes, and the upstream head out. Then the same requests through
// `tokengate explain --json`, which must decide exactly what the proxy decides.
#include "gateway/proxy/request_plan.hpp"

#include <doctest/doctest.h>
#include <unistd.h>

#include <boost/json/parse.hpp>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "conf/config.hpp"
#include "gateway/cli/commands.hpp"

namespace gw = tokengate::gateway;
using tokengate::policy::Credential;
using tokengate::policy::Outcome;

namespace {

constexpr std::string_view kConfig = R"(listen: 127.0.0.1:0
store: { path: var/tokens, key_file: var/key }
limits: { max_header_bytes: 1024, max_body_bytes: 100 }
upstreams:
  echo: { url: "http://backend.test:9000/base" }
roles:
  reader: { permissions: [orders.read] }
  admin: { permissions: [orders.read, orders.write] }
routes:
  - { path: /healthz, upstream: echo, public: true }
  - { path: /api/orders/**, methods: [GET, HEAD], upstream: echo, require: { permissions: [orders.read] } }
  - { path: /api/orders/*/refund, methods: [POST], upstream: echo, require: { permissions: [orders.write] } }
  - { path: /static/**, methods: [GET, HEAD], upstream: echo, public: true }
  - { path: /api/**, upstream: echo }
)";

// Tokens: "tg_reader" holds role reader, "tg_admin" role admin; anything else is invalid.
class FakeEnvironment final : public gw::PlanEnvironment {
 public:
  explicit FakeEnvironment(const tokengate::policy::Engine& engine)
      : reader_(engine.effective_rights({{"reader"}, {}, {}, {}})),
        admin_(engine.effective_rights({{"admin"}, {}, {}, {}})) {}
  Caller check_bearer(std::string_view token) override {
    Caller caller;
    const tokengate::policy::Rights* rights = token == "tg_reader"  ? &reader_
                                              : token == "tg_admin" ? &admin_
                                                                    : nullptr;
    if (!rights) {
      caller.failure = "unknown";
      return caller;
    }
    caller.credential = Credential::Valid;
    caller.rights = rights;
    caller.identity_fields =
        token == "tg_reader" ? "X-Auth-Subject: reader\r\n" : "X-Auth-Subject: admin\r\n";
    return caller;
  }
  void make_request_id(std::string& out) override { out = "generated-id"; }

 private:
  tokengate::policy::Rights reader_, admin_;
};

struct Fixture {
  std::shared_ptr<const tokengate::policy::Engine> engine =
      tokengate::policy::Engine::compile(tokengate::conf::parse_config(kConfig, "/plan-test/tokengate.yaml"));
  std::vector<gw::RouteTarget> routes = std::vector<gw::RouteTarget>(
      engine->config().routes.size(), gw::RouteTarget{0, "echo", "backend.test:9000", "/base"});
  FakeEnvironment environment{*engine};
  std::pmr::monotonic_buffer_resource arena;
  gw::RequestPlanner planner{arena};

  const gw::RequestPlanner& plan(std::string_view bytes) {
    const std::size_t head_end = gw::find_head_end(bytes);
    REQUIRE(head_end != std::string_view::npos);
    planner.plan(bytes, head_end, gw::PlanContext{*engine, routes, "10.0.0.7", false}, environment);
    return planner;
  }
};

std::string request(std::string_view method, std::string_view target, std::string_view token = {},
                    std::string_view extra = {}) {
  std::string r = std::string(method) + " " + std::string(target) + " HTTP/1.1\r\nHost: gw.test\r\n";
  if (!token.empty()) r += "Authorization: Bearer " + std::string(token) + "\r\n";
  r += extra;
  r += "\r\n";
  return r;
}

}  // namespace

TEST_CASE("request plan: outcome, close and forwarding for each kind of request") {
  struct Case {
    const char* what;
    std::string bytes;
    Outcome outcome;
    bool close;
  };
  const std::vector<Case> cases = {
      {"public route, no token", request("GET", "/healthz"), Outcome::PublicRoute, false},
      {"public route, invalid token is as absent", request("GET", "/healthz", "tg_nope"),
       Outcome::PublicRoute, false},
      {"valid token with the permission", request("GET", "/api/orders/42", "tg_reader"), Outcome::Allowed,
       false},
      {"valid token lacking a permission", request("POST", "/api/orders/42/refund", "tg_reader"),
       Outcome::InsufficientScope, false},
      {"no token on a protected route", request("GET", "/api/orders/1"), Outcome::MissingToken, false},
      {"another scheme", request("GET", "/api/x", {}, "Authorization: Basic dTpw\r\n"), Outcome::WrongScheme,
       false},
      {"invalid token", request("GET", "/api/x", "tg_nope"), Outcome::InvalidToken, false},
      {"no route", request("GET", "/other", "tg_admin"), Outcome::NoRoute, false},
      {"a method no earlier route takes falls to /api/**",
       request("DELETE", "/api/orders/1/refund", "tg_admin"), Outcome::Allowed, false},
      {"method not allowed", request("DELETE", "/static/app.js"), Outcome::MethodNotAllowed, false},
      {"path above the root", request("GET", "/../etc", "tg_admin"), Outcome::BadRequest, false},
      {"encoded slash", request("GET", "/api/a%2Fb", "tg_admin"), Outcome::BadRequest, false},
      {"semicolon alias", request("GET", "/api/admin;x/y", "tg_admin"), Outcome::BadRequest, false},
      {"refusal with a body closes", request("GET", "/api/orders/1", {}, "Content-Length: 3\r\n") + "abc",
       Outcome::MissingToken, true},
      {"two content lengths",
       request("POST", "/api/x", "tg_admin", "Content-Length: 1\r\nContent-Length: 1\r\n"),
       Outcome::BadFraming, true},
      {"CL and TE",
       request("POST", "/api/x", "tg_admin", "Content-Length: 1\r\nTransfer-Encoding: chunked\r\n"),
       Outcome::BadFraming, true},
      {"TE on HTTP/1.0", "POST /api/x HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
       Outcome::BadFraming, true},
      {"Host list", "GET /api/x HTTP/1.1\r\nHost: a, b\r\n\r\n", Outcome::BadFraming, true},
      {"bad chunk with the head",
       request("POST", "/api/x", "tg_admin", "Transfer-Encoding: chunked\r\n") + "5\r\nhello\r\nzz\r\n",
       Outcome::BadFraming, true},
      {"trailer over the limit with the head",
       request("POST", "/api/x", "tg_admin", "Transfer-Encoding: chunked\r\n") +
           "0\r\nX: " + std::string(2000, 'b') + "\r\n\r\n",
       Outcome::HeaderTooLarge, true},
      {"chunk over max_body_bytes",
       request("POST", "/api/x", "tg_admin", "Transfer-Encoding: chunked\r\n") + "FFF\r\n",
       Outcome::BodyTooLarge, true},
      {"Content-Length over max_body_bytes", request("POST", "/api/x", "tg_admin", "Content-Length: 101\r\n"),
       Outcome::BodyTooLarge, true},
      {"head over max_header_bytes",
       request("GET", "/api/x", "tg_admin", "X-Big: " + std::string(1100, 'a') + "\r\n"),
       Outcome::HeaderTooLarge, true},
      {"obs-fold", request("GET", "/api/x", "tg_admin", "X-A: a\r\n b\r\n"), Outcome::BadFraming, true},
  };
  Fixture f;
  for (const auto& c : cases) {
    CAPTURE(c.what);
    const auto& plan = f.plan(c.bytes);
    CHECK(to_string(plan.outcome()) == to_string(c.outcome));
    CHECK(plan.forward() == (c.outcome == Outcome::Allowed || c.outcome == Outcome::PublicRoute));
    if (!plan.forward()) CHECK(plan.close_after_reply() == c.close);
    if (!plan.forward()) CHECK(plan.upstream_head().empty());
  }
}

TEST_CASE("request plan: 405 names the allowed methods; 403 names what is missing") {
  Fixture f;
  const auto& denied = f.plan(request("PUT", "/api/orders/1/refund", "tg_admin"));
  CHECK(denied.outcome() == Outcome::Allowed);  // /api/** catches it: first match wins
  const auto& not_allowed = f.plan(request("DELETE", "/static/app.js"));
  CHECK(not_allowed.outcome() == Outcome::MethodNotAllowed);
  CHECK(not_allowed.allow() == "GET, HEAD");
  const auto& scope = f.plan(request("POST", "/api/orders/1/refund", "tg_reader"));
  CHECK(scope.message().find("orders.write") != std::string_view::npos);
}

TEST_CASE("request plan: the upstream head is the gateway's, never the client's") {
  Fixture f;
  const auto& plan =
      f.plan(request("POST", "/api/orders/../x/./y?q=1", "tg_admin",
                     "X-Auth-Subject: spoofed\r\nX_Auth_Roles: admin\r\nX-Request-Id: abc\r\n"
                     "Proxy: http://evil\r\nConnection: X-Forwarded-For\r\nContent-Length: 2\r\n") +
             "ok");
  REQUIRE(plan.forward());
  CHECK(plan.upstream_head() ==
        "POST /base/api/x/y?q=1 HTTP/1.1\r\n"
        "Host: backend.test:9000\r\n"
        "X-Auth-Subject: admin\r\n"
        "X-Forwarded-For: 10.0.0.7\r\n"
        "X-Forwarded-Proto: http\r\n"
        "X-Forwarded-Host: gw.test\r\n"
        "X-Request-Id: abc\r\n"
        "Content-Length: 2\r\n"
        "\r\n");
  CHECK(plan.has_body());
  CHECK_FALSE(plan.retryable());
  CHECK(plan.request_id() == "abc");

  const auto& generated = f.plan(request("GET", "/healthz", {}, "X-Request-Id: bad id\r\n"));
  CHECK(generated.request_id() == "generated-id");
  CHECK(generated.retryable());
  CHECK(generated.upstream_head().find("X-Auth-") == std::string::npos);
}

TEST_CASE("request plan: keep-alive, HEAD, 100-continue and WebSocket facts") {
  Fixture f;
  CHECK(f.plan("GET /healthz HTTP/1.0\r\nHost: a\r\n\r\n").keep_alive() == false);
  CHECK(f.plan("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n").keep_alive() == true);
  CHECK(f.plan("HEAD /healthz HTTP/1.1\r\nHost: a\r\n\r\n").is_head());
  const auto& cont =
      f.plan(request("POST", "/api/x", "tg_admin", "Expect: 100-continue\r\nContent-Length: 5\r\n"));
  CHECK(cont.expect_continue());
  const auto& ws =
      f.plan(request("GET", "/api/ws", "tg_admin", "Upgrade: websocket\r\nConnection: Upgrade\r\n"));
  CHECK(ws.websocket());
  CHECK(ws.upstream_head().find("Connection: Upgrade\r\n") != std::string::npos);
  CHECK(ws.upstream_head().find("Upgrade: websocket\r\n") != std::string::npos);
}

TEST_CASE("the proxy's plan and `tokengate explain` take the same decision") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("tokengate-plan-test-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path config = dir / "tokengate.yaml";
  std::ofstream(config) << kConfig;

  struct Case {
    std::string method, target;
    std::string token;  // "", "tg_reader", "tg_admin", "tg_nope"
  };
  std::vector<Case> cases;
  for (const std::string method : {"GET", "HEAD", "POST", "DELETE"}) {
    for (const std::string target :
         {"/healthz", "/static/a", "/api/orders/1", "/api/orders/1/refund", "/api/x", "/nope",
          "/api/%2e%2e/healthz", "/../x", "/api/a%2fb", "/api/x;y", "/api/%2561"}) {
      for (const std::string token : {"", "tg_reader", "tg_admin", "tg_nope"})
        cases.push_back({method, target, token});
    }
  }
  Fixture f;
  for (const auto& c : cases) {
    CAPTURE(c.method);
    CAPTURE(c.target);
    CAPTURE(c.token);
    const auto& plan = f.plan(request(c.method, c.target, c.token));
    const std::string proxy_reason(to_string(plan.outcome()));
    const int proxy_status = tokengate::policy::status_for(plan.outcome());

    tokengate::cli::ExplainOptions options;
    options.config = config.string();
    options.json = true;
    options.method = c.method;
    options.path = c.target;
    if (c.token == "tg_reader" || c.token == "tg_admin") {
      options.grants_given = true;
      options.roles = {c.token == "tg_reader" ? "reader" : "admin"};
    }
    std::ostringstream captured;
    auto* old = std::cout.rdbuf(captured.rdbuf());
    tokengate::cli::run_explain(options);
    std::cout.rdbuf(old);
    const auto explained = boost::json::parse(captured.str()).as_object();
    // An invalid token is something explain cannot be given: it is anonymous there,
    // and the proxy's answer differs exactly where a credential was required.
    if (c.token == "tg_nope" && (proxy_reason == "invalid_token")) {
      CHECK(explained.at("reason").as_string() == "missing_token");
      continue;
    }
    CHECK(explained.at("reason").as_string() == proxy_reason);
    CHECK(explained.at("status").as_int64() == proxy_status);
    CHECK(explained.at("decision").as_string() == (plan.forward() ? "allow" : "deny"));
  }
  fs::remove_all(dir);
}
