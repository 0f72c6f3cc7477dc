// The admin API router with arbitrary JSON bodies on its write endpoints: POST
// /v1/tokens, PATCH /v1/tokens/{id} and POST /v1/tokens/{id}/rotate, as a trusted
// (unix socket), an admin and a write-only caller, against a real store in a
// temporary directory. Input: byte 0 picks the endpoint, byte 1 the caller, the
// rest is the body. Every answer must be a documented status (never a 500 "bug"
// nor a 503 store error), valid UTF-8 JSON, with the error shape on errors; a
// create must return a token that parses and opens its record. Created tokens
// are deleted again, so the store does not grow over a run.
#include <stdlib.h>
#include <unistd.h>

#include <array>
#include <boost/json.hpp>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "check.hpp"
#include "conf/config.hpp"
#include "gateway/admin/admin_api.hpp"
#include "policy/engine.hpp"
#include "store/token_format.hpp"
#include "store/token_store.hpp"

namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace tokengate;

constexpr std::string_view kConfig = R"(listen: 127.0.0.1:0
upstreams:
  app: { url: "http://127.0.0.1:9" }
roles:
  reader: { permissions: [orders.read] }
  writer: { permissions: [orders.read, orders.write] }
groups:
  ops: { roles: [writer], permissions: [billing.read] }
licenses: [pro, enterprise]
routes:
  - path: /api/**
    upstream: app
)";

struct World {
  fs::path dir;
  std::shared_ptr<const policy::Engine> engine;
  std::unique_ptr<store::TokenStore> store;
  std::unique_ptr<gateway::AdminApi> api;
  std::string admin_token;
  std::string writer_token;
  std::string target_id;  // the token PATCH and rotate work on

  World() {
    // Every write is synced: on tmpfs that costs nothing.
    const fs::path base = fs::is_directory("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
    std::string templ = (base / "tokengate-fuzz-admin-XXXXXX").string();
    if (::mkdtemp(templ.data()) == nullptr) std::abort();
    dir = templ;
    auto config = conf::parse_config(kConfig, dir / "tokengate.yaml");
    engine = policy::Engine::compile(config);
    store = store::TokenStore::open({dir / "tokens", dir / "key", store::system_now});
    api = std::make_unique<gateway::AdminApi>(
        *store, [this] { return engine; }, gateway::AdminHooks{{}, [](std::string_view) {}});
    api->set_ready(true);
    admin_token = create(R"({"name":"admin","permissions":["tokengate.admin"]})").first;
    writer_token =
        create(R"({"name":"writer","roles":["reader"],"permissions":["tokengate.tokens.write"]})").first;
    target_id = create(R"({"name":"target","roles":["reader"]})").second;
  }
  ~World() {
    api.reset();
    store.reset();
    std::error_code ec;
    fs::remove_all(dir, ec);
  }

  gateway::AdminResponse call(std::string method, std::string target, std::string body, int caller) {
    gateway::AdminRequest r;
    r.method = std::move(method);
    r.target = std::move(target);
    r.body = std::move(body);
    r.client = "fuzz";
    if (caller == 0) {
      r.trusted = true;
    } else {
      r.authorization = "Bearer " + (caller == 1 ? admin_token : writer_token);
    }
    return api->handle(r);
  }
  std::pair<std::string, std::string> create(const std::string& body) {
    const auto r = call("POST", "/v1/tokens", body, 0);
    if (r.status != 201) {
      std::fprintf(stderr, "fuzz_admin_api: set-up create failed: %d %s\n", r.status, r.body.c_str());
      std::abort();
    }
    const auto o = json::parse(r.body).as_object();
    return {std::string(o.at("token").as_string()), std::string(o.at("id").as_string())};
  }
};

World* world = nullptr;

bool documented(int status) {
  for (const int s : {200, 201, 204, 400, 401, 403, 404, 409, 422}) {
    if (status == s) return true;
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  world = new World();
  std::atexit([] { delete world; });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::string body(input.substr(2));
  const int endpoint = data[0] % 3;
  const int caller = data[1] % 3;
  static constexpr std::array<std::string_view, 3> kMethods = {"POST", "PATCH", "POST"};
  const std::string target = endpoint == 0   ? std::string("/v1/tokens")
                             : endpoint == 1 ? "/v1/tokens/" + world->target_id
                                             : "/v1/tokens/" + world->target_id + "/rotate";
  const auto r = world->call(std::string(kMethods[endpoint]), target, body, caller);

  FUZZ_CHECK(documented(r.status), input);
  boost::system::error_code ec;
  const json::value v = json::parse(r.body, ec);  // refuses invalid UTF-8 too
  FUZZ_CHECK(!ec && v.is_object(), input);
  const auto& o = v.as_object();
  if (r.status >= 400) {
    FUZZ_CHECK(o.contains("error") && o.contains("message"), input);
    FUZZ_CHECK(o.at("error").is_string() && o.at("message").is_string(), input);
    return 0;
  }
  if (endpoint == 1) return 0;
  // Create and rotate hand out a plaintext that parses and names the record.
  FUZZ_CHECK(o.contains("token") && o.at("token").is_string() && o.contains("id"), input);
  const std::string token(o.at("token").as_string());
  const auto parsed = store::parse_token(token);
  FUZZ_CHECK(parsed.has_value() && parsed->id == o.at("id").as_string(), input);
  if (endpoint == 0) {
    const auto removed = world->call("DELETE", "/v1/tokens/" + std::string(parsed->id), "", 0);
    FUZZ_CHECK(removed.status == 204, input);
  }
  return 0;
}
