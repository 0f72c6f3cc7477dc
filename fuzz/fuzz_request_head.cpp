// A request as it arrives on a client connection, through the proxy's own request
// plan (gateway/proxy/request_plan.hpp): head scan, Beast's head parser, framing
// checks, the body bytes that came with the head, the credential, the policy
// decision and the upstream head. Properties:
// - a refusal has a 4xx outcome, and one for framing always closes;
// - an accepted request's upstream head parses back (Beast) as exactly one head
//   with the canonical path, one Host, and exactly the gateway's framing, passes
//   the gateway's own framing checks again, and carries no hop-by-hop field, no
//   identity field but the gateway's, and no framing field the client wrote.
// The same bytes as a forward-auth check: the answer is 200, 401 or 403, nothing
// goes upstream, a check with a body is never allowed, and an allowed check's
// original target (found again independently) was exactly the canonical path.
#include <boost/beast/http.hpp>
#include <cstdint>
#include <memory_resource>
#include <optional>
#include <string>
#include <string_view>

#include "check.hpp"
#include "conf/config.hpp"
#include "gateway/forward_auth/original_request.hpp"
#include "gateway/http/framing.hpp"
#include "gateway/proxy/request_plan.hpp"
#include "policy/engine.hpp"

namespace {

namespace http = boost::beast::http;
namespace gw = tokengate::gateway;
using tokengate::policy::Outcome;

constexpr std::string_view kConfig = R"(listen: 127.0.0.1:0
store: { path: /nonexistent/tokens, key_file: /nonexistent/key }
limits: { max_header_bytes: 16384, max_body_bytes: 1048576 }
forward_auth: { listen: 127.0.0.1:0, path_prefix: /ext }
upstreams:
  echo: { url: "http://upstream.test:9000/base" }
roles:
  reader: { permissions: [read] }
  admin: { permissions: [everything] }
routes:
  - { path: /public/**, upstream: echo, public: true }
  - { path: /api/admin/**, upstream: echo, require: { roles: [admin] } }
  - { path: /api/**, upstream: echo }
  - { path: /ws, methods: [GET], upstream: echo }
)";

// "tg_valid" is a valid token with role reader; every other bearer is invalid.
class FakeEnvironment final : public gw::PlanEnvironment {
 public:
  explicit FakeEnvironment(const tokengate::policy::Engine& engine)
      : rights_(engine.effective_rights({{"reader"}, {}, {}, {}})) {}
  Caller check_bearer(std::string_view token, std::string& identity_fields) override {
    Caller caller;
    if (token != "tg_valid") {
      caller.failure = "unknown";
      return caller;
    }
    caller.credential = tokengate::policy::Credential::Valid;
    caller.rights = &rights_;
    identity_fields = "X-Auth-Subject: abc\r\n";
    return caller;
  }
  void make_request_id(std::string& out) override { out = "generated"; }
  Admission admit(const tokengate::policy::RateLimits&, int, const Caller&, std::string_view) override {
    return {};  // no budgets here: rate limits are the gateway's (tests/gateway/ratelimit_test.cpp)
  }

 private:
  tokengate::policy::Rights rights_;
};

bool starts_with_folded(std::string_view name, std::string_view prefix) {
  if (name.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    char c = name[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c == '_') c = '-';
    if (c != prefix[i]) return false;
  }
  return true;
}

const tokengate::policy::Engine& engine() {
  static const auto compiled =
      tokengate::policy::Engine::compile(tokengate::conf::parse_config(kConfig, "/fuzz/tokengate.yaml"));
  return *compiled;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  const std::string_view data(reinterpret_cast<const char*>(bytes), size);
  const std::size_t head_end = gw::find_head_end(data);
  if (head_end == std::string_view::npos) return 0;

  static const auto routes = [] {
    std::vector<gw::RouteTarget> out;
    for (std::size_t i = 0; i < engine().config().routes.size(); ++i) {
      out.push_back(gw::RouteTarget{0, "echo", "upstream.test:9000", "/base"});
    }
    return out;
  }();
  FakeEnvironment environment(engine());
  std::pmr::monotonic_buffer_resource arena;
  gw::RequestPlanner planner(arena);

  planner.plan(data, head_end, gw::PlanContext{engine(), routes, "127.0.0.1", false, true}, environment);
  const int check_status = tokengate::policy::forward_auth_status(planner.outcome());
  FUZZ_CHECK(check_status == 200 || check_status == 401 || check_status == 403, data);
  FUZZ_CHECK(!planner.forward() && planner.upstream_head().empty(), data);
  if (check_status == 200) {
    FUZZ_CHECK(!planner.has_body(), data);
    FUZZ_CHECK(planner.identity_fields().empty() || planner.identity_fields() == "X-Auth-Subject: abc\r\n",
               data);
    http::request_parser<http::empty_body, std::pmr::polymorphic_allocator<char>> again{
        http::request_header<gw::Fields>{gw::Fields(&arena)}};
    again.eager(false);
    boost::system::error_code ec;
    again.put(boost::asio::buffer(data.data(), head_end), ec);
    FUZZ_CHECK(again.is_header_done(), data);
    const auto& req = again.get();
    const auto original = gw::forward_auth::original_request(req, req.method_string(), req.target(), "/ext");
    FUZZ_CHECK(original.error.empty(), data);
    const std::string_view original_path = original.target.substr(0, original.target.find('?'));
    FUZZ_CHECK(original_path == planner.path(), data);
    FUZZ_CHECK(original.method == planner.method(), data);
  }
  planner.release();

  planner.plan(data, head_end, gw::PlanContext{engine(), routes, "127.0.0.1", false}, environment);

  const auto& info = tokengate::policy::info(planner.outcome());
  if (!planner.forward()) {
    FUZZ_CHECK(info.status >= 400 && info.status < 500, data);
    if (planner.outcome() == Outcome::BadFraming || planner.outcome() == Outcome::HeaderTooLarge) {
      FUZZ_CHECK(planner.close_after_reply(), data);
    }
    FUZZ_CHECK(planner.upstream_head().empty(), data);
    return 0;
  }
  FUZZ_CHECK(planner.outcome() == Outcome::Allowed || planner.outcome() == Outcome::PublicRoute, data);
  FUZZ_CHECK(planner.head_bytes() == head_end, data);
  const std::string& up = planner.upstream_head();

  // The upstream head is one well-formed head, nothing after it.
  FUZZ_CHECK(gw::find_head_end(up) == up.size(), up);
  FUZZ_CHECK(!gw::head_has_obs_fold_or_nul(up), up);
  http::request_parser<http::empty_body> back;
  back.eager(false);
  boost::system::error_code back_ec;
  const std::size_t back_used = back.put(boost::asio::buffer(up), back_ec);
  FUZZ_CHECK(!back_ec || back_ec == http::error::need_more, up);
  FUZZ_CHECK(back.is_header_done() && back_used == up.size(), up);
  const auto& fwd = back.get();
  FUZZ_CHECK(gw::validate_request_framing(fwd, 11) == gw::FramingError::None, up);
  FUZZ_CHECK(fwd.count(http::field::host) == 1 && fwd[http::field::host] == "upstream.test:9000", up);
  FUZZ_CHECK(back.chunked() == planner.body().is_chunked(), up);
  FUZZ_CHECK(fwd.method_string() == planner.method(), up);
  const std::string_view target = fwd.target();
  if (target != "*") {
    FUZZ_CHECK(target.substr(0, 5) == "/base", up);
    FUZZ_CHECK(target.substr(5, planner.path().size()) == planner.path(), up);
  }
  int subjects = 0;
  for (const auto& f : fwd) {
    const std::string_view name = f.name_string();
    if (starts_with_folded(name, "x-auth-")) {
      ++subjects;
      FUZZ_CHECK(name == "X-Auth-Subject" && f.value() == "abc", up);
    }
    const bool hop_by_hop =
        starts_with_folded(name, "proxy-") || (name.size() == 5 && starts_with_folded(name, "proxy")) ||
        (name.size() == 10 && starts_with_folded(name, "keep-alive")) || f.name() == http::field::te ||
        f.name() == http::field::trailer || (f.name() == http::field::upgrade && !planner.websocket()) ||
        (f.name() == http::field::connection && !planner.websocket());
    FUZZ_CHECK(!hop_by_hop, up);
    // Framing fields only as the gateway writes them.
    if ((name.size() == 14 && starts_with_folded(name, "content-length")) ||
        (name.size() == 17 && starts_with_folded(name, "transfer-encoding"))) {
      FUZZ_CHECK(name == "Content-Length" || name == "Transfer-Encoding", up);
    }
  }
  FUZZ_CHECK(subjects <= 1, up);
  return 0;
}
