// SocketBackend: token commands through a running gateway's admin unix socket
// (README.md, "Command line": while `serve` holds the store, token commands go
// through its admin.socket). Same calls and
// same records as the direct backend, so the commands print the same output.
#include <fmt/format.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <filesystem>

#include "gateway/cli/token_backend.hpp"
#include "store/token_manager.hpp"

namespace tokengate::cli {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using local = asio::local::stream_protocol;

constexpr auto kTimeout = std::chrono::seconds(60);

std::vector<std::string> names_from(const json::object& o, std::string_view key) {
  std::vector<std::string> out;
  if (auto* v = o.if_contains(key); v && v->is_array()) {
    for (const auto& item : v->as_array()) {
      if (item.is_string()) out.emplace_back(item.as_string());
    }
  }
  return out;
}

std::optional<store::TimePoint> time_from(const json::object& o, std::string_view key) {
  if (auto* v = o.if_contains(key); v && v->is_string()) return store::parse_rfc3339(v->as_string());
  return std::nullopt;
}

std::string string_from(const json::object& o, std::string_view key) {
  if (auto* v = o.if_contains(key); v && v->is_string()) return std::string(v->as_string());
  return {};
}

store::TokenRecord record_from(const json::value& v) {
  if (!v.is_object())
    throw store::StoreError("the gateway's admin socket answered something that is not a token");
  const auto& o = v.as_object();
  store::TokenRecord r;
  r.id = string_from(o, "id");
  r.name = string_from(o, "name");
  r.description = string_from(o, "description");
  r.roles = names_from(o, "roles");
  r.groups = names_from(o, "groups");
  r.permissions = names_from(o, "permissions");
  r.licenses = names_from(o, "licenses");
  r.created_at = time_from(o, "created_at").value_or(store::TimePoint{});
  r.updated_at = time_from(o, "updated_at").value_or(store::TimePoint{});
  r.expires_at = time_from(o, "expires_at");
  r.last_used_at = time_from(o, "last_used_at");
  r.rotated_at = time_from(o, "rotated_at");
  r.created_by = string_from(o, "created_by");
  if (auto* v = o.if_contains("rate_limit")) {
    std::string error;
    if (!store::rate_limit_from_json(*v, r.rate_limit, error)) {
      throw store::StoreError("the gateway's admin socket answered a malformed rate_limit");
    }
  }
  return r;
}

store::IssuedToken issued_from(const json::value& v) {
  auto record = record_from(v);
  std::string token = string_from(v.as_object(), "token");
  if (token.empty()) throw store::StoreError("the gateway's admin socket answered without a token");
  return {store::SecretToken(std::move(token)), std::move(record)};
}

json::array names_json(const std::vector<std::string>& names) {
  json::array a;
  for (const auto& n : names) a.emplace_back(n);
  return a;
}

json::value time_json(const std::optional<store::TimePoint>& t) {
  if (!t) return nullptr;
  return json::value(store::format_rfc3339(*t));
}

struct Reply {
  int status = 0;
  json::value body;
};

class SocketBackend final : public TokenBackend {
 public:
  explicit SocketBackend(std::filesystem::path path) : path_(std::move(path)) {}

  store::IssuedToken create(const store::NewToken& request) override {
    json::object body{{"name", request.name},
                      {"description", request.description},
                      {"roles", names_json(request.roles)},
                      {"groups", names_json(request.groups)},
                      {"permissions", names_json(request.permissions)},
                      {"licenses", names_json(request.licenses)},
                      {"expires_at", time_json(request.expires_at)},
                      {"rate_limit", store::rate_limit_json(request.rate_limit)}};
    auto reply = call(http::verb::post, "/v1/tokens", json::serialize(body));
    expect(reply, 201);
    return issued_from(reply.body);
  }

  std::optional<store::TokenRecord> update(std::string_view id, const store::TokenPatch& patch) override {
    json::object body;
    if (patch.name) body["name"] = *patch.name;
    if (patch.description) body["description"] = *patch.description;
    if (patch.roles) body["roles"] = names_json(*patch.roles);
    if (patch.groups) body["groups"] = names_json(*patch.groups);
    if (patch.permissions) body["permissions"] = names_json(*patch.permissions);
    if (patch.licenses) body["licenses"] = names_json(*patch.licenses);
    if (patch.expires_at) body["expires_at"] = time_json(*patch.expires_at);
    if (patch.rate_limit) body["rate_limit"] = store::rate_limit_json(*patch.rate_limit);
    auto reply = call(http::verb::patch, token_path(id), json::serialize(body));
    if (reply.status == 404) return std::nullopt;
    expect(reply, 200);
    return record_from(reply.body);
  }

  std::optional<store::IssuedToken> rotate(std::string_view id, std::chrono::seconds grace) override {
    json::object body{{"grace_seconds", grace.count()}};
    auto reply = call(http::verb::post, token_path(id) + "/rotate", json::serialize(body));
    if (reply.status == 404) return std::nullopt;
    expect(reply, 200);
    return issued_from(reply.body);
  }

  bool remove(std::string_view id) override {
    auto reply = call(http::verb::delete_, token_path(id), "");
    if (reply.status == 404) return false;
    expect(reply, 204);
    return true;
  }

  std::optional<store::TokenRecord> get(std::string_view id) override {
    auto reply = call(http::verb::get, token_path(id), "");
    if (reply.status == 404) return std::nullopt;
    expect(reply, 200);
    return record_from(reply.body);
  }

  std::vector<store::TokenRecord> list() override {
    auto reply = call(http::verb::get, "/v1/tokens", "");
    expect(reply, 200);
    if (!reply.body.is_array())
      throw store::StoreError("the gateway's admin socket answered a list that is not an array");
    std::vector<store::TokenRecord> out;
    for (const auto& v : reply.body.as_array()) out.push_back(record_from(v));
    return out;
  }

 private:
  // Ids that are not 12 base62 chars cannot exist; sending them as they are
  // could change the path, so they are replaced by one that never matches.
  static std::string token_path(std::string_view id) {
    if (!store::is_valid_id(id)) return "/v1/tokens/-";
    return fmt::format("/v1/tokens/{}", id);
  }

  // 4xx answers carry the same one-line message the direct backend would throw.
  static void expect(const Reply& reply, int status) {
    if (reply.status == status) return;
    std::string message;
    if (reply.body.is_object()) message = string_from(reply.body.as_object(), "message");
    if (message.empty()) message = fmt::format("the gateway's admin socket answered status {}", reply.status);
    if (reply.status >= 400 && reply.status < 500) throw store::ValidationError(message);
    throw store::StoreError(message);
  }

  Reply call(http::verb method, const std::string& target, std::string body) {
    asio::io_context context;
    beast::basic_stream<local> stream(context);
    beast::error_code ec;
    stream.expires_after(kTimeout);
    stream.socket().connect(local::endpoint(path_.string()), ec);
    if (ec) {
      throw store::StoreError(
          fmt::format("cannot reach the gateway's admin socket {}: {}", path_.string(), ec.message()));
    }
    http::request<http::string_body> req{method, target, 11};
    req.set(http::field::host, "localhost");
    req.set(http::field::user_agent, "tokengate-cli");
    if (!body.empty()) {
      req.set(http::field::content_type, "application/json");
      req.body() = std::move(body);
    }
    req.keep_alive(false);
    req.prepare_payload();
    http::write(stream, req, ec);
    beast::flat_buffer buffer;
    http::response<http::string_body> res;
    if (!ec) http::read(stream, buffer, res, ec);
    if (ec) {
      throw store::StoreError(
          fmt::format("the gateway's admin socket {} failed: {}", path_.string(), ec.message()));
    }
    Reply reply;
    reply.status = static_cast<int>(res.result_int());
    if (!res.body().empty()) {
      reply.body = json::parse(res.body(), ec);
      if (ec) throw store::StoreError("the gateway's admin socket answered malformed JSON");
    }
    return reply;
  }

  std::filesystem::path path_;
};

}  // namespace

std::unique_ptr<TokenBackend> make_socket_backend(const std::filesystem::path& socket) {
  return std::make_unique<SocketBackend>(socket);
}

std::optional<std::string> probe_admin_socket(const std::filesystem::path& socket) {
  asio::io_context context;
  local::socket s(context);
  beast::error_code ec;
  s.connect(local::endpoint(socket.string()), ec);
  if (!ec) return std::nullopt;
  return ec.message();
}

}  // namespace tokengate::cli
