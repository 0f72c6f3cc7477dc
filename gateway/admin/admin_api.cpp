// The admin API router: authentication by bearer token (or the trusted unix
// socket), the privilege rules for write-only callers, JSON in and out, audit
// lines for every write. Validation of names and expiry is TokenManager's.
#include "gateway/admin/admin_api.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/parse_query.hpp>
#include <cctype>
#include <limits>

#include "gateway/admin/ui_assets.hpp"
#include "gateway/http/authorization.hpp"
#include "gateway/http/error_response.hpp"
#include "gateway/obs/access_log.hpp"
#include "store/token_manager.hpp"

namespace tokengate::gateway {
namespace json = boost::json;

namespace {

constexpr std::size_t kIdempotencyKeys = 4096;  // remembered creates (oldest dropped)
constexpr std::size_t kMaxIdempotencyKeyLength = 128;

// A grace longer than ten years is a typo, and keeps the time arithmetic in range.
constexpr std::int64_t kMaxGraceSeconds = 10LL * 366 * 24 * 3600;

// The admin surface is never framed and loads nothing from elsewhere.
constexpr std::string_view kContentSecurityPolicy =
    "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'";

// A request error with its status; thrown inside the router only and turned into
// the JSON error shape at the top of handle().
struct HttpError {
  int status;
  std::string message;
  std::vector<std::pair<std::string, std::string>> headers = {};
};

AdminResponse json_response(int status, const json::value& body) {
  AdminResponse r;
  r.status = status;
  r.body = json::serialize(body);
  return r;
}

// Messages are built from fixed text plus printable_utf8 fragments; the second
// pass is a guarantee for text from elsewhere (store errors), not a cut.
AdminResponse error_response(int status, std::string_view message) {
  AdminResponse r;
  r.status = status;
  r.body = error_body(error_code_for(status), printable_utf8(message, message.size()));
  return r;
}

bool contains(const std::vector<std::string>& names, std::string_view name) {
  return std::binary_search(names.begin(), names.end(), name) ||
         std::find(names.begin(), names.end(), name) != names.end();
}

std::string lower(std::string_view text) {
  std::string out(text);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// ------------------------------------------------------------------ JSON input

json::object parse_object(std::string_view body, bool empty_ok) {
  if (body.empty() && empty_ok) return {};
  boost::system::error_code ec;
  json::parse_options options;
  options.max_depth = 16;
  json::value v = json::parse(body, ec, {}, options);
  if (ec) throw HttpError{400, fmt::format("request body is not valid JSON: {}", ec.message())};
  if (!v.is_object()) throw HttpError{400, "request body must be a JSON object"};
  return std::move(v.as_object());
}

void check_fields(const json::object& o, std::initializer_list<std::string_view> allowed,
                  std::initializer_list<std::string_view> read_only = {}) {
  for (const auto& kv : o) {
    const std::string_view key = kv.key();
    if (std::find(allowed.begin(), allowed.end(), key) != allowed.end()) continue;
    if (std::find(read_only.begin(), read_only.end(), key) != read_only.end()) {
      throw HttpError{400, fmt::format("field '{}' cannot be changed", key)};
    }
    throw HttpError{400, fmt::format("unknown field '{}'", printable_utf8(key, 64))};
  }
}

std::string get_string(const json::value& v, std::string_view field) {
  if (!v.is_string()) throw HttpError{400, fmt::format("field '{}' must be a string", field)};
  return std::string(v.as_string());
}

std::vector<std::string> get_names(const json::value& v, std::string_view field) {
  if (!v.is_array()) throw HttpError{400, fmt::format("field '{}' must be an array of strings", field)};
  std::vector<std::string> out;
  for (const auto& item : v.as_array()) {
    if (!item.is_string()) throw HttpError{400, fmt::format("field '{}' must be an array of strings", field)};
    out.emplace_back(item.as_string());
  }
  return out;
}

std::optional<store::TimePoint> get_expiry(const json::value& v) {
  if (v.is_null()) return std::nullopt;
  if (!v.is_string()) throw HttpError{400, "field 'expires_at' must be an RFC 3339 time or null"};
  auto t = store::parse_rfc3339(v.as_string());
  if (!t) throw HttpError{400, "field 'expires_at' must be an RFC 3339 time or null"};
  return t;
}

json::object issued_json(const store::IssuedToken& issued) {
  json::object o;
  o["token"] = issued.token.reveal();
  for (auto& kv : store::to_json(issued.record)) o[kv.key()] = kv.value();
  return o;
}

json::array names_json(const std::vector<std::string>& names) {
  json::array a;
  for (const auto& n : names) a.emplace_back(n);
  return a;
}

json::object block_json(const conf::RequirementBlock& b) {
  json::object o;
  if (!b.permissions.empty()) o["permissions"] = names_json(b.permissions);
  if (!b.roles.empty()) o["roles"] = names_json(b.roles);
  if (!b.groups.empty()) o["groups"] = names_json(b.groups);
  if (!b.licenses.empty()) o["licenses"] = names_json(b.licenses);
  return o;
}

}  // namespace

// ------------------------------------------------------------------ routes

const std::vector<AdminRoute>& admin_routes() {
  static const std::vector<AdminRoute> routes = {
      {"GET", "/healthz"},           {"GET", "/readyz"},
      {"GET", "/metrics"},           {"GET", "/ui/"},
      {"GET", "/v1/openapi.json"},   {"GET", "/v1/config"},
      {"GET", "/v1/tokens"},         {"POST", "/v1/tokens"},
      {"GET", "/v1/tokens/{id}"},    {"PATCH", "/v1/tokens/{id}"},
      {"DELETE", "/v1/tokens/{id}"}, {"POST", "/v1/tokens/{id}/rotate"},
  };
  return routes;
}

// The caller of one request: who (for created_by and the audit line) and what it
// may do. Trusted (unix socket) callers and tokengate.admin holders may do all.
struct AdminApi::Caller {
  std::string id = "cli";
  bool all = false;  // admin or trusted
  bool read = false;
  bool write = false;
  policy::Rights rights;
  std::optional<store::TimePoint> expires_at;
  // The caller's own rate limit as it applies (own, else the default; none = unlimited).
  std::optional<conf::RateLimit> rate_limit;
};

namespace {

// Length of the well-formed UTF-8 sequence at the start of `s` (RFC 3629: no
// overlong forms, surrogates or code points past U+10FFFF), 0 if there is none.
std::size_t utf8_sequence(std::string_view s) noexcept {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  const auto in = [&](std::size_t i, unsigned lo, unsigned hi) {
    return i < s.size() && byte(i) >= lo && byte(i) <= hi;
  };
  const unsigned b = byte(0);
  if (b < 0x80) return 1;
  if (b >= 0xC2 && b <= 0xDF) return in(1, 0x80, 0xBF) ? 2 : 0;
  if (b >= 0xE0 && b <= 0xEF) {
    // The second byte's range excludes overlongs (E0) and surrogates (ED).
    const unsigned lo = b == 0xE0 ? 0xA0 : 0x80;
    const unsigned hi = b == 0xED ? 0x9F : 0xBF;
    return in(1, lo, hi) && in(2, 0x80, 0xBF) ? 3 : 0;
  }
  if (b >= 0xF0 && b <= 0xF4) {
    const unsigned lo = b == 0xF0 ? 0x90 : 0x80;
    const unsigned hi = b == 0xF4 ? 0x8F : 0xBF;
    return in(1, lo, hi) && in(2, 0x80, 0xBF) && in(3, 0x80, 0xBF) ? 4 : 0;
  }
  return 0;
}

}  // namespace

std::string printable_utf8(std::string_view text, std::size_t max_chars) {
  std::string out;
  out.reserve(std::min(text.size(), max_chars * 3));
  std::size_t chars = 0;
  for (std::size_t i = 0; i < text.size() && chars < max_chars; ++chars) {
    const std::size_t n = utf8_sequence(text.substr(i));
    const auto b = static_cast<unsigned char>(text[i]);
    if (n == 0) {
      out += "\xEF\xBF\xBD";  // U+FFFD REPLACEMENT CHARACTER
      i += 1;
    } else if (b < 0x20 || b == 0x7F || (b == 0xC2 && static_cast<unsigned char>(text[i + 1]) < 0xA0)) {
      out += '?';  // C0 and C1 controls, DEL: nothing a log viewer or terminal should act on
      i += n;
    } else {
      out.append(text.substr(i, n));
      i += n;
    }
  }
  return out;
}

AdminApi::AdminApi(store::TokenStore& store, EngineSource engine, AdminHooks hooks)
    : store_(store), engine_(std::move(engine)), hooks_(std::move(hooks)) {
  if (!hooks_.audit) hooks_.audit = [](std::string_view line) { write_stderr(line); };
}

AdminResponse AdminApi::handle(const AdminRequest& request) {
  AdminResponse response;
  try {
    auto parsed = boost::urls::parse_origin_form(request.target);
    if (!parsed) {
      response = error_response(400, "request target is not a valid origin-form URL");
    } else {
      response = dispatch(request, parsed->encoded_path(), parsed->encoded_query());
    }
  } catch (const HttpError& e) {
    response = error_response(e.status, e.message);
    response.headers = e.headers;
  } catch (const store::ValidationError& e) {
    response = error_response(422, e.what());
  } catch (const store::StoreUnavailable& e) {
    // Cluster mode: PostgreSQL is away, so writes cannot commit (README.md, "Running several gateways").
    response.status = 503;
    response.body =
        error_body("store_unavailable", printable_utf8(e.what(), std::string_view(e.what()).size()));
  } catch (const store::StoreError& e) {
    response = error_response(503, e.what());
  } catch (const std::exception& e) {
    write_stderr(fmt::format("tokengate: admin api bug: {}\n", e.what()));
    response = error_response(500, "internal error");
  }
  response.headers.emplace_back("X-Frame-Options", "DENY");
  response.headers.emplace_back("Content-Security-Policy", std::string(kContentSecurityPolicy));
  response.headers.emplace_back("X-Content-Type-Options", "nosniff");
  response.headers.emplace_back("Referrer-Policy", "no-referrer");
  if (response.api) response.headers.emplace_back("Cache-Control", "no-store");
  return response;
}

AdminResponse AdminApi::dispatch(const AdminRequest& request, std::string_view path, std::string_view query) {
  const std::string& method = request.method;

  // Unauthenticated operational endpoints.
  auto only = [&](std::string_view allowed) {
    if (method != allowed && !(allowed == "GET" && method == "HEAD")) {
      throw HttpError{
          405, fmt::format("method {} not allowed on {}", method, path), {{"Allow", "GET, HEAD"}}};
    }
  };
  if (path == "/healthz") {
    only("GET");
    return json_response(200, json::object{{"status", "ok"}});
  }
  if (path == "/readyz") {
    only("GET");
    if (store_status_) {
      // Cluster mode: the store's sync state decides as well (README.md, "Running several gateways").
      auto status = store_status_();
      const bool ready = ready_.load() && status.ready;
      return json_response(ready ? 200 : 503, json::object{{"status", ready ? "ready" : "not_ready"},
                                                           {"store", std::move(status.store)}});
    }
    // One node on its own RocksDB store: the same shape, with nothing to sync
    // (no revisions, no last sync); the store is open while the gateway runs.
    const bool ready = ready_.load();
    return json_response(ready ? 200 : 503, json::object{{"status", ready ? "ready" : "not_ready"},
                                                         {"store", json::object{{"mode", "local"},
                                                                                {"source", "connected"},
                                                                                {"revision", nullptr},
                                                                                {"last_sync", nullptr}}}});
  }
  if (path == "/metrics") {
    only("GET");
    if (!hooks_.metrics) throw HttpError{404, "metrics are not available in this build"};
    return hooks_.metrics();
  }
  if (path == "/ui" || path.starts_with("/ui/")) {
    only("GET");
    if (path == "/ui") throw HttpError{404, "the web console is at /ui/"};
    if (const UiAsset* asset = find_ui_asset(path.substr(4))) {
      AdminResponse r;
      r.content_type = std::string(asset->content_type);
      r.body = std::string(asset->body);
      r.api = false;
      return r;
    }
    throw HttpError{404, "no such page"};
  }
  if (path == "/v1/openapi.json") {
    only("GET");
    AdminResponse r;
    r.body = openapi_document();
    return r;
  }

  // Everything below needs a caller.
  const bool known = path == "/v1/config" || path == "/v1/tokens" || path.starts_with("/v1/tokens/");
  if (!known) throw HttpError{404, fmt::format("no admin endpoint {}", printable_utf8(path, 200))};

  Caller caller;
  if (request.trusted) {
    caller.all = caller.read = caller.write = true;
  } else {
    if (request.repeated_authorization) throw HttpError{400, "more than one Authorization header"};
    // The data plane's parser: one reading of Authorization for the whole gateway.
    const Authorization auth = parse_authorization(
        request.authorization.has_value(),
        request.authorization ? std::string_view(*request.authorization) : std::string_view{});
    if (auth.kind != AuthKind::Bearer) {
      throw HttpError{401,
                      "a bearer token holding tokengate.admin or tokengate.tokens.* is required",
                      {{"WWW-Authenticate", std::string(kBearerChallenge)}}};
    }
    const std::string_view token = auth.token;
    const auto verified = store_.verify(token);
    if (!verified) {
      throw HttpError{401, "invalid token", {{"WWW-Authenticate", std::string(kInvalidTokenChallenge)}}};
    }
    const auto& record = verified.token->record;
    caller.id = record.id;
    caller.expires_at = record.expires_at;
    caller.rate_limit = record.rate_limit ? record.rate_limit : engine_()->config().tokens.default_rate_limit;
    caller.rights =
        engine_()->effective_rights({record.roles, record.groups, record.permissions, record.licenses});
    caller.all = contains(caller.rights.permissions, kAdminPermission);
    caller.write = caller.all || contains(caller.rights.permissions, kTokensWritePermission);
    // A writer reads too: it has to see what it changes.
    caller.read = caller.write || contains(caller.rights.permissions, kTokensReadPermission);
    if (!caller.read) {
      throw HttpError{
          403,
          "the token holds none of tokengate.admin, tokengate.tokens.read, tokengate.tokens.write",
          {{"WWW-Authenticate", std::string(kInsufficientScopeChallenge)}}};
    }
  }
  auto need_write = [&] {
    if (!caller.write) {
      throw HttpError{403,
                      "this needs permission tokengate.tokens.write or tokengate.admin",
                      {{"WWW-Authenticate", std::string(kInsufficientScopeChallenge)}}};
    }
  };

  if (path == "/v1/config") {
    only("GET");
    return config_view();
  }
  if (path == "/v1/tokens") {
    if (method == "GET" || method == "HEAD") return tokens_list(query);
    if (method == "POST") {
      need_write();
      return tokens_create(request, caller);
    }
    throw HttpError{
        405, fmt::format("method {} not allowed on /v1/tokens", method), {{"Allow", "GET, HEAD, POST"}}};
  }
  // /v1/tokens/{id}[/rotate]
  std::string_view rest = path.substr(std::string_view("/v1/tokens/").size());
  const auto slash = rest.find('/');
  const std::string_view id = rest.substr(0, slash);
  const std::string_view tail = slash == std::string_view::npos ? "" : rest.substr(slash);
  if (id.empty()) throw HttpError{404, "no token id in the path"};
  if (tail == "/rotate") {
    if (method != "POST") {
      throw HttpError{405, fmt::format("method {} not allowed on a rotate", method), {{"Allow", "POST"}}};
    }
    need_write();
    return tokens_rotate(request, caller, id);
  }
  if (!tail.empty()) throw HttpError{404, fmt::format("no admin endpoint {}", printable_utf8(path, 200))};
  if (method == "GET" || method == "HEAD") return tokens_get(id);
  if (method == "PATCH") {
    need_write();
    return tokens_patch(request, caller, id);
  }
  if (method == "DELETE") {
    need_write();
    return tokens_delete(request, caller, id);
  }
  throw HttpError{
      405, fmt::format("method {} not allowed on a token", method), {{"Allow", "GET, HEAD, PATCH, DELETE"}}};
}

namespace {

std::string no_token(std::string_view id) {
  if (!store::is_valid_id(id)) return "no token with that id (ids are 12 base62 characters)";
  return fmt::format("no token with id '{}'", id);
}

// A write-only caller may grant only what it holds itself.
void check_grants(const policy::Rights& caller, const std::vector<std::string>& roles,
                  const std::vector<std::string>& groups, const std::vector<std::string>& permissions,
                  const std::vector<std::string>& licenses, std::string_view verb) {
  auto check = [&](std::string_view kind, const std::vector<std::string>& wanted,
                   const std::vector<std::string>& held) {
    for (const auto& name : wanted) {
      if (!contains(held, name)) {
        throw HttpError{403, fmt::format("the caller does not hold {} '{}' and cannot {} it", kind,
                                         printable_utf8(name, 128), verb)};
      }
    }
  };
  check("role", roles, caller.roles);
  check("group", groups, caller.groups);
  check("permission", permissions, caller.permissions);
  check("license", licenses, caller.licenses);
}

// A write-only caller cannot make or keep a token alive beyond its own expiry.
void check_expiry_bound(const std::optional<store::TimePoint>& caller,
                        const std::optional<store::TimePoint>& wanted, std::string_view what) {
  if (!caller) return;
  if (!wanted || *wanted > *caller) {
    throw HttpError{403, fmt::format("{} must expire no later than the caller's own token ({})", what,
                                     store::format_rfc3339(*caller))};
  }
}

std::optional<conf::RateLimit> get_rate_limit(const json::value& v) {
  std::optional<conf::RateLimit> limit;
  std::string error;
  if (!store::rate_limit_from_json(v, limit, error)) throw HttpError{400, error};
  return limit;
}

// A write-only caller cannot give a token a larger budget than its own: a higher
// rate or a larger burst, comparing the limits that apply (null = the default).
void check_rate_limit_bound(const std::optional<conf::RateLimit>& caller,
                            const std::optional<conf::RateLimit>& own, const conf::Config& config,
                            std::string_view what) {
  const auto effective = own ? own : config.tokens.default_rate_limit;
  if (!conf::exceeds(effective, caller)) return;
  throw HttpError{403, fmt::format("{} would get a larger rate limit ({}) than the caller's own ({})", what,
                                   effective ? effective->to_string() : "no limit", caller->to_string())};
}

std::vector<std::string> added(const std::vector<std::string>& now, const std::vector<std::string>& before) {
  std::vector<std::string> out;
  for (const auto& n : now) {
    if (std::find(before.begin(), before.end(), n) == before.end()) out.push_back(n);
  }
  return out;
}

}  // namespace

AdminResponse AdminApi::tokens_list(std::string_view query) {
  std::string q;
  auto params = boost::urls::parse_query(query);
  if (!params) throw HttpError{400, "malformed query string"};
  for (const auto& p : *params) {
    const std::string key = p.key.decode();
    if (key == "q") {
      q = lower(p.has_value ? p.value.decode() : std::string());
    } else {
      // Percent-decoded: any bytes at all.
      throw HttpError{400, fmt::format("unknown query parameter '{}'", printable_utf8(key, 64))};
    }
  }
  json::array out;
  for (const auto& record : store_.list()) {
    if (!q.empty() && lower(record.name).find(q) == std::string::npos &&
        lower(record.id).find(q) == std::string::npos) {
      continue;
    }
    out.push_back(store::to_json(record));
  }
  return json_response(200, out);
}

AdminResponse AdminApi::tokens_get(std::string_view id) {
  auto record = store::is_valid_id(id) ? store_.get(id) : std::nullopt;
  if (!record) throw HttpError{404, no_token(id)};
  return json_response(200, store::to_json(*record));
}

AdminResponse AdminApi::tokens_create(const AdminRequest& request, const Caller& caller) {
  int status = 400;
  std::string token_id;
  try {
    const json::object body = parse_object(request.body, false);
    check_fields(
        body,
        {"name", "description", "roles", "groups", "permissions", "licenses", "expires_at", "rate_limit"},
        {"id", "created_at", "updated_at", "last_used_at", "rotated_at", "created_by", "token"});
    store::NewToken n;
    if (!body.contains("name")) throw HttpError{400, "field 'name' is required"};
    n.name = get_string(body.at("name"), "name");
    if (auto* v = body.if_contains("description")) n.description = get_string(*v, "description");
    if (auto* v = body.if_contains("roles")) n.roles = get_names(*v, "roles");
    if (auto* v = body.if_contains("groups")) n.groups = get_names(*v, "groups");
    if (auto* v = body.if_contains("permissions")) n.permissions = get_names(*v, "permissions");
    if (auto* v = body.if_contains("licenses")) n.licenses = get_names(*v, "licenses");
    if (auto* v = body.if_contains("expires_at")) n.expires_at = get_expiry(*v);
    if (auto* v = body.if_contains("rate_limit")) n.rate_limit = get_rate_limit(*v);
    n.created_by = caller.id;
    if (!caller.all) {
      check_grants(caller.rights, n.roles, n.groups, n.permissions, n.licenses, "grant");
      check_expiry_bound(caller.expires_at, n.expires_at, "a token created by this caller");
      check_rate_limit_bound(caller.rate_limit, n.rate_limit, engine_()->config(),
                             "a token created by this caller");
    }
    std::string idempotency;
    if (request.idempotency_key) {
      const auto& key = *request.idempotency_key;
      if (key.empty() || key.size() > kMaxIdempotencyKeyLength ||
          std::any_of(key.begin(), key.end(), [](char c) { return c <= 0x20 || c == 0x7f; })) {
        throw HttpError{400, "Idempotency-Key must be 1..128 visible characters"};
      }
      idempotency = caller.id + '\n' + key;
      std::lock_guard lock(idempotency_mutex_);
      if (auto it = idempotent_creates_.find(idempotency); it != idempotent_creates_.end()) {
        token_id = it->second;
        throw HttpError{409,
                        fmt::format("this Idempotency-Key already created token {}; its secret was shown "
                                    "once and cannot be shown again",
                                    it->second)};
      }
    }
    store::TokenManager manager(store_, engine_()->config_ptr());
    const auto issued = manager.create(std::move(n));
    token_id = issued.record.id;
    if (!idempotency.empty()) {
      std::lock_guard lock(idempotency_mutex_);
      idempotent_creates_[idempotency] = token_id;
      idempotency_order_.push_back(std::move(idempotency));
      if (idempotency_order_.size() > kIdempotencyKeys) {
        idempotent_creates_.erase(idempotency_order_.front());
        idempotency_order_.pop_front();
      }
    }
    status = 201;
    audit(request, caller, "token.create", token_id, status);
    return json_response(201, issued_json(issued));
  } catch (const HttpError& e) {
    audit(request, caller, "token.create", token_id, e.status);
    throw;
  } catch (const store::ValidationError&) {
    audit(request, caller, "token.create", token_id, 422);
    throw;
  } catch (const store::StoreError&) {
    audit(request, caller, "token.create", token_id, 503);
    throw;
  }
}

namespace {

// The rules for a write-only caller touching an existing token: never an admin
// token, never one holding rights the caller lacks (rotating it would hand the
// caller its secret), never one that outlives the caller.
void check_touch(const policy::Engine& engine, const store::TokenRecord& target, const policy::Rights& caller,
                 const std::optional<store::TimePoint>& caller_expiry) {
  const auto rights =
      engine.effective_rights({target.roles, target.groups, target.permissions, target.licenses});
  if (contains(rights.permissions, kAdminPermission)) {
    throw HttpError{403,
                    fmt::format("token {} holds tokengate.admin; only an admin can change it", target.id)};
  }
  check_grants(caller, target.roles, target.groups, target.permissions, target.licenses,
               "manage a token holding");
  check_expiry_bound(caller_expiry, target.expires_at, fmt::format("token {}", target.id));
}

}  // namespace

AdminResponse AdminApi::tokens_patch(const AdminRequest& request, const Caller& caller, std::string_view id) {
  const std::string token_id(id.substr(0, 12));
  try {
    const json::object body = parse_object(request.body, false);
    check_fields(
        body,
        {"name", "description", "roles", "groups", "permissions", "licenses", "expires_at", "rate_limit"},
        {"id", "created_at", "updated_at", "last_used_at", "rotated_at", "created_by", "token"});
    store::TokenPatch patch;
    if (auto* v = body.if_contains("name")) patch.name = get_string(*v, "name");
    if (auto* v = body.if_contains("description")) patch.description = get_string(*v, "description");
    if (auto* v = body.if_contains("roles")) patch.roles = get_names(*v, "roles");
    if (auto* v = body.if_contains("groups")) patch.groups = get_names(*v, "groups");
    if (auto* v = body.if_contains("permissions")) patch.permissions = get_names(*v, "permissions");
    if (auto* v = body.if_contains("licenses")) patch.licenses = get_names(*v, "licenses");
    if (auto* v = body.if_contains("expires_at")) patch.expires_at.emplace(get_expiry(*v));
    if (auto* v = body.if_contains("rate_limit")) patch.rate_limit.emplace(get_rate_limit(*v));
    if (body.empty()) throw HttpError{400, "nothing to update: give at least one field"};

    auto current = store::is_valid_id(id) ? store_.get(id) : std::nullopt;
    if (!current) throw HttpError{404, no_token(id)};
    const auto engine = engine_();
    if (!caller.all) {
      check_touch(*engine, *current, caller.rights, caller.expires_at);
      static const std::vector<std::string> kNone;
      check_grants(caller.rights, patch.roles ? added(*patch.roles, current->roles) : kNone,
                   patch.groups ? added(*patch.groups, current->groups) : kNone,
                   patch.permissions ? added(*patch.permissions, current->permissions) : kNone,
                   patch.licenses ? added(*patch.licenses, current->licenses) : kNone, "grant");
      if (patch.expires_at) check_expiry_bound(caller.expires_at, *patch.expires_at, "the token");
      if (patch.rate_limit)
        check_rate_limit_bound(caller.rate_limit, *patch.rate_limit, engine->config(), "the token");
    }
    store::TokenManager manager(store_, engine->config_ptr());
    const auto updated = manager.update(id, std::move(patch));
    if (!updated) throw HttpError{404, no_token(id)};  // deleted in between
    audit(request, caller, "token.update", token_id, 200);
    return json_response(200, store::to_json(*updated));
  } catch (const HttpError& e) {
    audit(request, caller, "token.update", token_id, e.status);
    throw;
  } catch (const store::ValidationError&) {
    audit(request, caller, "token.update", token_id, 422);
    throw;
  } catch (const store::StoreError&) {
    audit(request, caller, "token.update", token_id, 503);
    throw;
  }
}

AdminResponse AdminApi::tokens_rotate(const AdminRequest& request, const Caller& caller,
                                      std::string_view id) {
  const std::string token_id(id.substr(0, 12));
  try {
    const json::object body = parse_object(request.body, true);
    check_fields(body, {"grace_seconds"});
    std::int64_t grace = 0;
    if (auto* v = body.if_contains("grace_seconds")) {
      if (v->is_int64()) {
        grace = v->as_int64();
      } else if (v->is_uint64()) {
        grace = std::numeric_limits<std::int64_t>::max();
      } else {
        throw HttpError{400, "field 'grace_seconds' must be an integer number of seconds"};
      }
      if (grace < 0) throw HttpError{422, "field 'grace_seconds' must not be negative"};
      if (grace > kMaxGraceSeconds) {
        throw HttpError{
            422, fmt::format("field 'grace_seconds' must be at most {} (ten years)", kMaxGraceSeconds)};
      }
    }
    auto current = store::is_valid_id(id) ? store_.get(id) : std::nullopt;
    if (!current) throw HttpError{404, no_token(id)};
    if (!caller.all) check_touch(*engine_(), *current, caller.rights, caller.expires_at);
    store::TokenManager manager(store_, engine_()->config_ptr());
    const auto issued = manager.rotate(id, std::chrono::seconds(grace));
    if (!issued) throw HttpError{404, no_token(id)};
    audit(request, caller, "token.rotate", token_id, 200);
    return json_response(200, issued_json(*issued));
  } catch (const HttpError& e) {
    audit(request, caller, "token.rotate", token_id, e.status);
    throw;
  } catch (const store::ValidationError&) {
    audit(request, caller, "token.rotate", token_id, 422);
    throw;
  } catch (const store::StoreError&) {
    audit(request, caller, "token.rotate", token_id, 503);
    throw;
  }
}

AdminResponse AdminApi::tokens_delete(const AdminRequest& request, const Caller& caller,
                                      std::string_view id) {
  const std::string token_id(id.substr(0, 12));
  try {
    if (!request.body.empty()) throw HttpError{400, "DELETE takes no request body"};
    auto current = store::is_valid_id(id) ? store_.get(id) : std::nullopt;
    if (!current) throw HttpError{404, no_token(id)};
    if (!caller.all) check_touch(*engine_(), *current, caller.rights, caller.expires_at);
    if (!store_.remove(id)) throw HttpError{404, no_token(id)};
    audit(request, caller, "token.delete", token_id, 204);
    AdminResponse r;
    r.status = 204;
    r.content_type.clear();
    return r;
  } catch (const HttpError& e) {
    audit(request, caller, "token.delete", token_id, e.status);
    throw;
  } catch (const store::StoreError&) {
    audit(request, caller, "token.delete", token_id, 503);
    throw;
  }
}

AdminResponse AdminApi::config_view() {
  const auto engine = engine_();
  const conf::Config& c = engine->config();
  json::array roles, groups, routes;
  for (const auto& r : c.roles)
    roles.push_back(json::object{{"name", r.name}, {"permissions", names_json(r.permissions)}});
  for (const auto& g : c.groups) {
    groups.push_back(json::object{
        {"name", g.name}, {"roles", names_json(g.roles)}, {"permissions", names_json(g.permissions)}});
  }
  for (std::size_t i = 0; i < c.routes.size(); ++i) {
    const auto& r = c.routes[i];
    json::object o{{"index", i},
                   {"path", r.path},
                   {"methods", names_json(r.methods)},
                   {"upstream", r.upstream},
                   {"public", r.is_public}};
    if (r.require) {
      json::object req = block_json(r.require->all_of);
      if (!r.require->any_of.empty()) {
        json::array any;
        for (const auto& b : r.require->any_of) any.push_back(block_json(b));
        req["any_of"] = std::move(any);
      }
      o["require"] = std::move(req);
    } else {
      o["require"] = nullptr;
    }
    routes.push_back(std::move(o));
  }
  json::object out{
      {"roles", std::move(roles)},
      {"groups", std::move(groups)},
      {"licenses", names_json(c.licenses)},
      {"routes", std::move(routes)},
      {"tokens",
       json::object{{"max_lifetime", conf::format_duration(c.tokens.max_lifetime)},
                    {"max_lifetime_seconds",
                     std::chrono::duration_cast<std::chrono::seconds>(c.tokens.max_lifetime).count()}}}};
  return json_response(200, out);
}

void AdminApi::audit(const AdminRequest& request, const Caller& caller, std::string_view action,
                     std::string_view token_id, int status) {
  json::object o;
  o["time"] = store::format_rfc3339(store::system_now());
  o["audit"] = action;
  o["actor"] = caller.id;
  o["via"] = request.trusted ? "socket" : "http";
  o["client"] = request.client;
  if (store::is_valid_id(token_id)) {
    o["token_id"] = token_id;
  } else {
    o["token_id"] = nullptr;
  }
  o["status"] = status;
  o["outcome"] = status < 300 ? "ok" : "refused";
  hooks_.audit(json::serialize(o) + "\n");
}

}  // namespace tokengate::gateway
