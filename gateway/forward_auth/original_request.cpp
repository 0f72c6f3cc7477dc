#include "gateway/forward_auth/original_request.hpp"

#include <algorithm>
#include <array>

namespace tokengate::gateway::forward_auth {

namespace {

struct FieldValue {
  std::string_view value;
  unsigned count = 0;
};

FieldValue field(const Fields& fields, std::string_view name) noexcept {
  FieldValue out;
  out.count = static_cast<unsigned>(fields.count(name));
  if (out.count != 0) out.value = fields.find(name)->value();
  return out;
}

// RFC 9110 token characters: what a method may be made of.
bool is_token(std::string_view s) noexcept {
  if (s.empty()) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= '0' && u <= '9') return true;
    if ((u | 0x20) >= 'a' && (u | 0x20) <= 'z') return true;
    return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
  });
}

// What RFC 3986 allows in a request-target: visible ASCII except the characters it
// never allows unencoded (space, controls, '"', '<', '>', '\\', '^', '`', '{', '|', '}').
bool is_request_target_text(std::string_view s) noexcept {
  return std::all_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u > 0x20 && u < 0x7F && std::string_view("\"<>\\^`{|}").find(c) == std::string_view::npos;
  });
}

// "scheme://authority/path?query" -> "/path?query". ingress-nginx builds it from
// $scheme://$http_host$request_uri, so the path always starts with '/'.
std::string_view target_of_url(std::string_view url) noexcept {
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos || scheme_end == 0) return {};
  const auto path = url.find_first_of("/?#", scheme_end + 3);
  if (path == std::string_view::npos || url[path] != '/') return {};
  return url.substr(path);
}

}  // namespace

std::string_view to_string(OriginalSource source) noexcept {
  switch (source) {
    case OriginalSource::OriginalUri:
      return "x-original-uri";
    case OriginalSource::OriginalUrl:
      return "x-original-url";
    case OriginalSource::ForwardedUri:
      return "x-forwarded-uri";
    case OriginalSource::CheckTarget:
      return "check-target";
  }
  return "check-target";
}

OriginalRequest original_request(const Fields& fields, std::string_view check_method,
                                 std::string_view check_target, std::string_view path_prefix) noexcept {
  OriginalRequest out;
  const FieldValue original_method = field(fields, "X-Original-Method");
  const FieldValue original_uri = field(fields, "X-Original-URI");
  const FieldValue original_url = field(fields, "X-Original-URL");
  const FieldValue forwarded_method = field(fields, "X-Forwarded-Method");
  const FieldValue forwarded_uri = field(fields, "X-Forwarded-Uri");
  const std::array<std::pair<const FieldValue*, std::string_view>, 5> all = {{
      {&original_method, "X-Original-Method is repeated"},
      {&original_uri, "X-Original-URI is repeated"},
      {&original_url, "X-Original-URL is repeated"},
      {&forwarded_method, "X-Forwarded-Method is repeated"},
      {&forwarded_uri, "X-Forwarded-Uri is repeated"},
  }};
  for (const auto& [value, error] : all) {
    if (value->count > 1) {
      out.error = error;
      return out;
    }
  }

  // An ingress describes the request in one way only. Fields of another way, or a
  // second description, come from the client: Caddy, Traefik and ingress-nginx
  // pass the client's own fields on to the check, so "the first one found" would
  // let a client name the path that gets authorized.
  const bool original = original_method.count + original_uri.count + original_url.count != 0;
  const bool forwarded = forwarded_method.count + forwarded_uri.count != 0;
  const bool under_prefix = !path_prefix.empty() && check_target.starts_with(path_prefix) &&
                            check_target.size() > path_prefix.size() &&
                            check_target[path_prefix.size()] == '/';
  if (original && forwarded) {
    out.error = "both X-Original-* and X-Forwarded-* fields describe a request";
    return out;
  }
  if (under_prefix && (original || forwarded)) {
    // Under path_prefix the check itself is the request (Envoy); such fields can
    // only be the client's.
    out.error = "X-Original-* or X-Forwarded-* fields on a check under forward_auth.path_prefix";
    return out;
  }

  const FieldValue* method = nullptr;
  if (original) {
    method = &original_method;
    const std::string_view from_url = original_url.count != 0 ? target_of_url(original_url.value) : "";
    if (original_url.count != 0 && from_url.empty()) {
      out.error = "X-Original-URL is not an absolute URL with a path";
      return out;
    }
    if (original_uri.count != 0 && original_url.count != 0 && from_url != original_uri.value) {
      out.error = "X-Original-URI and X-Original-URL name different targets";
      return out;
    }
    if (original_uri.count == 0 && original_url.count == 0) {
      out.error = "X-Original-Method without X-Original-URI or X-Original-URL";
      return out;
    }
    out.source = original_uri.count != 0 ? OriginalSource::OriginalUri : OriginalSource::OriginalUrl;
    out.target = original_uri.count != 0 ? original_uri.value : from_url;
  } else if (forwarded) {
    if (forwarded_uri.count == 0) {
      out.error = "X-Forwarded-Method without X-Forwarded-Uri";
      return out;
    }
    method = &forwarded_method;
    out.source = OriginalSource::ForwardedUri;
    out.target = forwarded_uri.value;
  } else {
    out.source = OriginalSource::CheckTarget;
    out.method = check_method;
    out.target = check_target;
    if (!path_prefix.empty()) {
      // The prefix must be a whole number of segments: "/auth" never matches "/authz".
      if (!under_prefix) {
        out.error = "the check's path does not start with forward_auth.path_prefix";
        return out;
      }
      out.target = check_target.substr(path_prefix.size());
    }
    return out;
  }
  // Without the method field the ingress sent the check with the original method.
  out.method = method->count != 0 ? method->value : check_method;
  if (!is_token(out.method)) {
    out.error = "the original method is not a valid method";
    return out;
  }
  if (out.target.empty()) {
    out.error = "the original target is empty";
  } else if (!is_request_target_text(out.target)) {
    // A field value may hold what a request line cannot (a space, "<", "{", ...):
    // no ingress sends such a target, and the canonical-path rules never see them.
    out.error = "the original target has characters a request-target cannot have";
  }
  return out;
}

}  // namespace tokengate::gateway::forward_auth
