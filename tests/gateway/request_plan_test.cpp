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
forward_auth: { listen: 127.0.0.1:0, path_prefix: /auth }
tokens: { default_rate_limit: { rate: 100/s, burst: 200 } }
upstreams:
  echo: { url: "http://backend.test:9000/base" }
roles:
  reader: { permissions: [orders.read] }
  admin: { permissions: [orders.read, orders.write] }
routes:
  - { path: /healthz, upstream: echo, public: true }
  - { path: /api/orders/**, methods: [GET, HEAD], upstream: echo, require: { permissions: [orders.read] } }
  - { path: /api/orders/*/refund, methods: [POST], upstream: echo, require: { permissions: [orders.write] } }
  - { path: /static/**, methods: [GET, HEAD], upstream: echo, public: true, rate_limit: { rate: 5/m } }
  - { path: /api/**, upstream: echo }
)";

// Tokens: "tg_reader" holds role reader, "tg_admin" role admin; anything else is invalid.
class FakeEnvironment final : public gw::PlanEnvironment {
 public:
  explicit FakeEnvironment(const tokengate::policy::Engine& engine)
      : reader_(engine.effective_rights({{"reader"}, {}, {}, {}})),
        admin_(engine.effective_rights({{"admin"}, {}, {}, {}})) {}
  Caller check_bearer(std::string_view token, std::string& identity_fields) override {
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
    identity_fields = token == "tg_reader" ? "X-Auth-Subject: reader\r\n" : "X-Auth-Subject: admin\r\n";
    return caller;
  }
  void make_request_id(std::string& out) override { out = "generated-id"; }
  // Records what the planner asks and answers `next` (allowed unless a test says otherwise).
  Admission admit(const tokengate::policy::RateLimits& limits, int route, const Caller&,
                  std::string_view client_address) override {
    ++admits;
    last_limits = limits;
    last_route = route;
    last_client = client_address;
    return next;
  }
  Admission next;
  int admits = 0;
  tokengate::policy::RateLimits last_limits;
  int last_route = -1;
  std::string last_client;

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

  // check: as a forward-auth check (the forward_auth listener) instead of a proxied request.
  const gw::RequestPlanner& plan(std::string_view bytes, bool check = false) {
    const std::size_t head_end = gw::find_head_end(bytes);
    REQUIRE(head_end != std::string_view::npos);
    planner.plan(bytes, head_end, gw::PlanContext{*engine, routes, "10.0.0.7", false, check}, environment);
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

    // The same request asked about by an ingress, as nginx and as Envoy ask: the
    // same decision, or non_canonical_target where the proxy would have decided
    // on a path other than the one the ingress serves.
    const bool canonical =
        explained.at("canonical_path").is_string() && explained.at("canonical_path").as_string() == c.target;
    const std::string nginx_extra =
        "X-Original-Method: " + c.method + "\r\nX-Original-URI: " + c.target + "\r\n";
    for (const std::string& check_bytes : {request("GET", "/auth-check", c.token, nginx_extra),
                                           request(c.method, "/auth" + c.target, c.token)}) {
      CAPTURE(check_bytes);
      const auto& check = f.plan(check_bytes, true);
      CHECK_FALSE(check.forward());
      CHECK(to_string(check.outcome()) == (canonical ? proxy_reason : std::string("non_canonical_target")));
      CHECK(to_string(check.outcome()) == explained.at("forward_auth").at("reason").as_string());
      CHECK(tokengate::policy::forward_auth_status(check.outcome()) ==
            explained.at("forward_auth").at("status").as_int64());
    }
  }
  fs::remove_all(dir);
}

TEST_CASE("forward-auth check: answers, identity and refusals") {
  Fixture f;
  const auto& allowed = f.plan(
      request("GET", "/", "tg_reader", "X-Original-URI: /api/orders/1?x=%2F\r\nX-Original-Method: GET\r\n"),
      true);
  CHECK(allowed.outcome() == Outcome::Allowed);
  CHECK_FALSE(allowed.forward());
  CHECK_FALSE(allowed.close_after_reply());
  CHECK(allowed.identity_fields() == "X-Auth-Subject: reader\r\n");
  CHECK(allowed.path() == "/api/orders/1");
  CHECK(allowed.upstream_head().empty());

  // The original method decides, not the check's (nginx sends its subrequest as GET).
  const auto& post = f.plan(
      request("GET", "/", "tg_reader", "X-Original-URI: /api/orders/1/refund\r\nX-Original-Method: POST\r\n"),
      true);
  CHECK(post.outcome() == Outcome::InsufficientScope);
  CHECK(post.method() == "POST");

  // Anonymous on a public route: allowed, and no identity for the ingress to copy.
  const auto& anonymous = f.plan(request("GET", "/", {}, "X-Forwarded-Uri: /healthz\r\n"), true);
  CHECK(anonymous.outcome() == Outcome::PublicRoute);
  CHECK(anonymous.identity_fields().empty());
  const auto& invalid_public = f.plan(request("GET", "/", "tg_nope", "X-Forwarded-Uri: /healthz\r\n"), true);
  CHECK(invalid_public.outcome() == Outcome::PublicRoute);
  CHECK(invalid_public.identity_fields().empty());

  // Path tricks an ingress forwards raw.
  for (const char* trick : {"/healthz/../api/orders/1", "//api/orders/1", "/healthz/..%2fapi/orders/1",
                            "/api/orders/%31", "/api/orders/./1", "/api/orders/1#x", "/api/orders/1%00"}) {
    CAPTURE(trick);
    const auto& denied =
        f.plan(request("GET", "/", "tg_reader", std::string("X-Original-URI: ") + trick + "\r\n"), true);
    CHECK(denied.outcome() == Outcome::NonCanonicalTarget);
    CHECK(tokengate::policy::forward_auth_status(denied.outcome()) == 403);
  }

  // A check with a body is refused and its connection closed, the body unread.
  const auto& body = f.plan(
      request("POST", "/", "tg_admin", "X-Original-URI: /api/x\r\nContent-Length: 3\r\n") + "abc", true);
  CHECK(body.outcome() == Outcome::BadCheckRequest);
  CHECK(body.close_after_reply());
  // An empty body is no body.
  CHECK(f.plan(request("POST", "/", "tg_admin", "X-Original-URI: /api/x\r\nContent-Length: 0\r\n"), true)
            .outcome() == Outcome::Allowed);

  // Envoy's path_prefix must be a whole segment of the check's path.
  CHECK(f.plan(request("GET", "/authz/api/x", "tg_admin"), true).outcome() == Outcome::BadCheckRequest);
  CHECK(f.plan(request("GET", "/auth", "tg_admin"), true).outcome() == Outcome::BadCheckRequest);
  CHECK(f.plan(request("GET", "/auth/api/x", "tg_admin"), true).outcome() == Outcome::Allowed);

  // Framing is checked on checks exactly as on proxied requests.
  CHECK(f.plan("GET / HTTP/1.1\r\nHost: a, b\r\nX-Original-URI: /healthz\r\n\r\n", true).outcome() ==
        Outcome::BadFraming);
}

TEST_CASE("forward-auth check: every outcome is answered with 200, 401 or 403") {
  using tokengate::policy::forward_auth_status;
  for (std::size_t i = 0; i < static_cast<std::size_t>(Outcome::Count); ++i) {
    const auto outcome = static_cast<Outcome>(i);
    CAPTURE(to_string(outcome));
    const int status = forward_auth_status(outcome);
    CHECK((status == 200 || status == 401 || status == 403));
    CHECK((status == 200) == (outcome == Outcome::Allowed || outcome == Outcome::PublicRoute));
    CHECK((status == 401) ==
          (tokengate::policy::info(outcome).challenge == tokengate::policy::kBearerChallenge ||
           tokengate::policy::info(outcome).challenge == tokengate::policy::kInvalidTokenChallenge));
  }
}

TEST_CASE("request plan: rate limits are asked after authorization, and a refusal is a 429 never forwarded") {
  Fixture f;
  // Refused or unauthenticated requests never reach the limiter.
  f.plan(request("GET", "/api/orders/1"));
  f.plan(request("POST", "/api/orders/42/refund", "tg_reader"));
  f.plan(request("GET", "/nowhere", "tg_reader"));
  CHECK(f.environment.admits == 0);
  // A valid token: its limit (the default here) and no route limit.
  CHECK(f.plan(request("GET", "/api/orders/1", "tg_reader")).forward());
  CHECK(f.environment.admits == 1);
  REQUIRE(f.environment.last_limits.token != nullptr);
  CHECK(f.environment.last_limits.token->count == 100);
  CHECK_FALSE(f.environment.last_limits.token_own);
  CHECK(f.environment.last_limits.route == nullptr);
  // A public route with a limit and no token: per client address.
  CHECK(f.plan(request("GET", "/static/app.js")).forward());
  CHECK(f.environment.last_limits.per_address);
  CHECK(f.environment.last_limits.token == nullptr);
  CHECK(f.environment.last_client == "10.0.0.7");
  CHECK(f.environment.last_route == 3);
  // With a valid token on that route: the token's and the route's, per token.
  f.plan(request("GET", "/static/app.js", "tg_admin"));
  CHECK_FALSE(f.environment.last_limits.per_address);
  CHECK(f.environment.last_limits.token != nullptr);
  CHECK(f.environment.last_limits.route != nullptr);
  // A public route without a limit, no token: nothing to ask.
  const int before = f.environment.admits;
  f.plan(request("GET", "/healthz"));
  CHECK(f.environment.admits == before);

  const tokengate::conf::RateLimit route_limit{5, 60, 5};
  f.environment.next = {false, true, &route_limit, 12'000'000'001};
  const auto& p = f.plan(request("GET", "/static/app.js"));
  CHECK_FALSE(p.forward());
  CHECK(p.outcome() == Outcome::RateLimited);
  CHECK(tokengate::policy::status_for(p.outcome()) == 429);
  CHECK(p.upstream_head().empty());
  CHECK_FALSE(p.close_after_reply());
  CHECK(p.reply_fields() ==
        "Retry-After: 13\r\nRateLimit-Policy: \"route\";q=5;w=60\r\nRateLimit: \"route\";r=0;t=13\r\n");
  CHECK(p.message() == "the route rate limit (5/m burst 5) is exceeded; retry in 13 s");
  CHECK(p.detail() == "route_limit");

  const tokengate::conf::RateLimit token_limit{100, 1, 200};
  f.environment.next = {false, false, &token_limit, 1};  // 1 ns still says 1 s: never 0
  const auto& q = f.plan(request("GET", "/api/orders/1", "tg_reader", "Content-Length: 2\r\n"));
  CHECK(q.outcome() == Outcome::RateLimited);
  CHECK(q.close_after_reply());  // its body would be read as the next request
  CHECK(q.reply_fields() ==
        "Retry-After: 1\r\nRateLimit-Policy: \"token\";q=100;w=1\r\nRateLimit: \"token\";r=0;t=1\r\n");
  // The next request starts clean.
  f.environment.next = {};
  CHECK(f.plan(request("GET", "/api/orders/1", "tg_reader")).reply_fields().empty());

  // A forward-auth check counts like a proxied request (the ingress forwards what
  // it allows) and is refused with the 403 a check answers, reason rate_limited...
  const int admits = f.environment.admits;
  f.environment.next = {false, false, &token_limit, 1};
  const auto& check = f.plan(request("GET", "/", "tg_reader", "X-Original-URI: /api/orders/1\r\n"), true);
  CHECK(f.environment.admits == admits + 1);
  CHECK(check.outcome() == Outcome::RateLimited);
  CHECK(tokengate::policy::forward_auth_status(check.outcome()) == 403);
  // ...but never per client address: a check's peer is the ingress, not the client.
  f.environment.next = {};
  CHECK(f.plan(request("GET", "/", {}, "X-Forwarded-Uri: /static/app.js\r\n"), true).outcome() ==
        Outcome::PublicRoute);
  CHECK(f.environment.admits == admits + 1);
}
