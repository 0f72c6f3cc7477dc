// The admin REST API (docs/admin-api.md) as a pure router: one request in, one response
// out, no sockets. admin_server.cpp feeds it from the TCP listener and the unix
// socket; tests drive it directly.
#pragma once

#include <atomic>
#include <boost/json/object.hpp>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "policy/engine.hpp"
#include "store/token_store.hpp"

namespace tokengate::gateway {

// Permissions that open the admin API (docs/admin-api.md, "Callers and permissions").
inline constexpr std::string_view kAdminPermission = "tokengate.admin";
inline constexpr std::string_view kTokensReadPermission = "tokengate.tokens.read";
inline constexpr std::string_view kTokensWritePermission = "tokengate.tokens.write";

// Client-supplied text as it may appear in an error message: well-formed UTF-8
// (each byte of an invalid sequence becomes U+FFFD), control characters as '?',
// and at most `max_chars` characters, cut between characters, never inside one.
std::string printable_utf8(std::string_view text, std::size_t max_chars);

struct AdminRequest {
  std::string method;                        // "GET", "POST", ...
  std::string target;                        // origin-form: "/v1/tokens?q=ci"
  std::optional<std::string> authorization;  // the Authorization header, if exactly one
  bool repeated_authorization = false;       // more than one Authorization header
  std::string body;
  std::optional<std::string> idempotency_key;  // Idempotency-Key header of a create
  bool trusted = false;                        // came through the admin unix socket: no bearer token needed
  std::string client;                          // "127.0.0.1:5555" or "unix", for the audit line
};

struct AdminResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers (Allow, WWW-Authenticate)
  bool api = true;                                           // JSON API answer: gets Cache-Control: no-store
};

// One admin route: what the OpenAPI document and the dispatcher share, so a route
// cannot exist in one and not the other (tests check both ways).
struct AdminRoute {
  std::string_view method;
  std::string_view path;  // OpenAPI template, e.g. "/v1/tokens/{id}"
};
const std::vector<AdminRoute>& admin_routes();

// The OpenAPI 3 document served at GET /v1/openapi.json.
const std::string& openapi_document();

// Hooks that other parts of the gateway fill; an empty one answers 404.
struct AdminHooks {
  std::function<AdminResponse()> metrics;  // GET /metrics (Prometheus text)
  // Sink of audit lines (one JSON object per line, newline included); default stderr.
  std::function<void(std::string_view)> audit;
};

// Cluster mode: the store's part of /readyz.
struct StoreStatus {
  bool ready = true;
  boost::json::object store;  // {"mode","source","revision","last_sync"}
};

class AdminApi {
 public:
  using EngineSource = std::function<std::shared_ptr<const policy::Engine>()>;

  // `engine` gives the current config generation (hot reload swaps it); writes go
  // through `store`, whose change listener updates the proxy's TokenDirectory.
  AdminApi(store::TokenStore& store, EngineSource engine, AdminHooks hooks = {});

  // Never throws: bad input is 4xx, a store failure 503.
  AdminResponse handle(const AdminRequest& request);

  void set_ready(bool ready) noexcept { ready_.store(ready); }
  // Cluster mode, before the admin listener starts. Unset (single node): /readyz follows set_ready alone.
  void set_store_status(std::function<StoreStatus()> source) { store_status_ = std::move(source); }

 private:
  struct Caller;
  AdminResponse dispatch(const AdminRequest& request, std::string_view path, std::string_view query);
  AdminResponse tokens_list(std::string_view query);
  AdminResponse tokens_create(const AdminRequest& request, const Caller& caller);
  AdminResponse tokens_get(std::string_view id);
  AdminResponse tokens_patch(const AdminRequest& request, const Caller& caller, std::string_view id);
  AdminResponse tokens_rotate(const AdminRequest& request, const Caller& caller, std::string_view id);
  AdminResponse tokens_delete(const AdminRequest& request, const Caller& caller, std::string_view id);
  AdminResponse config_view();
  void audit(const AdminRequest& request, const Caller& caller, std::string_view action,
             std::string_view token_id, int status);

  store::TokenStore& store_;
  EngineSource engine_;
  AdminHooks hooks_;
  std::atomic<bool> ready_{false};
  std::function<StoreStatus()> store_status_;

  // Creates already answered, by (caller, Idempotency-Key): a retried create gets 409
  // naming the token instead of a second token (the secret cannot be shown again).
  std::mutex idempotency_mutex_;
  std::unordered_map<std::string, std::string> idempotent_creates_;  // key -> token id
  std::deque<std::string> idempotency_order_;                        // oldest first, bounded
};

}  // namespace tokengate::gateway
