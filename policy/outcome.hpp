// Every way a request can end, in one table: the name the access log and the
// metrics use, the HTTP status, the error code of the JSON body, the
// WWW-Authenticate challenge and the default message. The proxy, `tokengate
// explain` and the metrics all read it from here (docs/http.md).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tokengate::policy {

enum class Outcome : std::uint8_t {
  // Decided by the route policy (Engine::decide, decide_request).
  Allowed,            // a valid token meets the route's requirement
  PublicRoute,        // public route
  BadRequest,         // the target failed canonicalisation
  MissingToken,       // protected route, no Authorization
  WrongScheme,        // Authorization is not Bearer
  InvalidToken,       // malformed, unknown, mismatch, expired or rotated out (one answer for all)
  InsufficientScope,  // a valid token lacking a requirement
  NoRoute,
  MethodNotAllowed,  // with Allow
  StoreError,        // fail closed
  RateLimited,       // over the token's or the route's rate limit (Engine::rate_limits)
  StoreUnavailable,  // cluster mode: no local copy yet, or older than max_staleness
  // Decided by the data plane around the policy.
  BadFraming,      // ambiguous or malformed framing (docs/http.md)
  HeaderTooLarge,  // head, or chunk extensions + trailers, over max_header_bytes
  HeaderTimeout,
  BodyTooLarge,
  ClientAborted,  // the client went away mid-request (logged as nginx's 499)
  NoUpstream,
  UpstreamConnectFailed,
  UpstreamTlsFailed,
  UpstreamTimeout,
  UpstreamFailed,       // the upstream connection failed before a response
  UpstreamAborted,      // the upstream's response stopped part-way
  UpstreamBadResponse,  // a response the gateway will not relay
  // Decided by forward authentication (a check for another proxy) only.
  NonCanonicalTarget,  // the original target is not already canonical
  BadCheckRequest,     // the check does not say which request (or carries a body)
  Count,
};

inline constexpr std::string_view kBearerChallenge = "Bearer realm=\"tokengate\"";
inline constexpr std::string_view kInvalidTokenChallenge =
    "Bearer realm=\"tokengate\", error=\"invalid_token\"";
inline constexpr std::string_view kInsufficientScopeChallenge =
    "Bearer realm=\"tokengate\", error=\"insufficient_scope\"";

struct OutcomeInfo {
  std::string_view name;       // access log `reason`, metrics `reason` label
  int status;                  // sent to the client (499: logged only, nothing is sent)
  std::string_view error;      // the JSON body's "error"
  std::string_view challenge;  // WWW-Authenticate, or empty
  std::string_view message;    // the JSON body's "message" unless the caller has a better one
};

inline constexpr std::array<OutcomeInfo, static_cast<std::size_t>(Outcome::Count)> kOutcomes = {{
    {"allowed", 200, "", "", ""},
    {"public_route", 200, "", "", ""},
    {"bad_request", 400, "bad_request", "", "invalid request target"},
    {"missing_token", 401, "unauthorized", kBearerChallenge, "a bearer token is required"},
    {"wrong_scheme", 401, "unauthorized", kBearerChallenge, "a bearer token is required"},
    {"invalid_token", 401, "invalid_token", kInvalidTokenChallenge, "the bearer token is invalid"},
    {"insufficient_scope", 403, "insufficient_scope", kInsufficientScopeChallenge,
     "the token lacks a requirement of this route"},
    {"no_route", 404, "not_found", "", "no route matches this path"},
    {"method_not_allowed", 405, "method_not_allowed", "", "the method is not allowed on this path"},
    {"store_error", 503, "service_unavailable", "", "the token store is unavailable"},
    {"rate_limited", 429, "rate_limited", "", "too many requests: a rate limit is exceeded"},
    {"store_unavailable", 503, "store_unavailable", "", "the token store is not in sync; try again later"},
    {"bad_framing", 400, "bad_request", "", "the request framing is invalid"},
    {"header_too_large", 431, "request_header_fields_too_large", "", "the request head is too large"},
    {"header_timeout", 408, "request_timeout", "", "the request head did not arrive in time"},
    {"body_too_large", 413, "payload_too_large", "", "the request body is too large"},
    {"client_aborted", 499, "", "", ""},
    {"no_upstream", 502, "bad_gateway", "", "the route has no upstream"},
    {"upstream_connect_failed", 502, "bad_gateway", "", "the upstream is unreachable"},
    {"upstream_tls_failed", 502, "bad_gateway", "", "the upstream is unreachable"},
    {"upstream_timeout", 504, "gateway_timeout", "", "the upstream did not answer in time"},
    {"upstream_failed", 502, "bad_gateway", "", "the upstream connection failed"},
    {"upstream_aborted", 502, "bad_gateway", "", "the upstream connection failed"},
    {"upstream_bad_response", 502, "bad_gateway", "", "the upstream's response is invalid"},
    {"non_canonical_target", 403, "forbidden", "", "the original request's target is not in canonical form"},
    {"bad_check_request", 400, "bad_request", "",
     "the check request does not describe a request to authorize"},
}};

constexpr const OutcomeInfo& info(Outcome outcome) noexcept {
  return kOutcomes[static_cast<std::size_t>(outcome)];
}
constexpr std::string_view to_string(Outcome outcome) noexcept { return info(outcome).name; }
constexpr int status_for(Outcome outcome) noexcept { return info(outcome).status; }

// The status of a forward-auth check with this outcome. An ingress understands
// only 200 (allow), 401 (ask for credentials) and 403 (deny): nginx's
// auth_request turns anything else into a 500 for the client.
constexpr int forward_auth_status(Outcome outcome) noexcept {
  const int status = status_for(outcome);
  if (status == 200 || status == 401) return status;
  return 403;
}
// The JSON error code of such a denial: the outcome's own for a 401 or
// insufficient_scope, else "forbidden" (a "not_found" under a 403 would only
// confuse; the outcome itself is in X-Tokengate-Reason).
constexpr std::string_view forward_auth_error(Outcome outcome) noexcept {
  if (forward_auth_status(outcome) == 401 || outcome == Outcome::InsufficientScope)
    return info(outcome).error;
  return "forbidden";
}

}  // namespace tokengate::policy
