// Forward authentication: which request an ingress asks about. nginx, Traefik,
// Caddy and Envoy each describe the original request in their own way; this
// picks it out of a check request's fields (docs/forward-auth.md has the table).
// Pure: no I/O, no allocation; the views point into the fields or the target.
#pragma once

#include <string_view>

#include "gateway/http/framing.hpp"

namespace tokengate::gateway::forward_auth {

// Where the original request was read from, in the order they are tried.
enum class OriginalSource {
  OriginalUri,   // X-Original-URI (+ X-Original-Method): nginx auth_request
  OriginalUrl,   // X-Original-URL (+ X-Original-Method): ingress-nginx
  ForwardedUri,  // X-Forwarded-Uri (+ X-Forwarded-Method): Traefik, Caddy
  CheckTarget,   // the check's own method and target less path_prefix: Envoy ext_authz
};
std::string_view to_string(OriginalSource source) noexcept;

struct OriginalRequest {
  std::string_view method;
  std::string_view target;  // origin-form as the ingress sent it, not yet canonical
  OriginalSource source = OriginalSource::CheckTarget;
  // Non-empty when the check cannot be answered for a request: which field is
  // wrong. The check is then denied; this goes to the access log.
  std::string_view error;
};

// The one source above that the check carries. The check names no request (error
// set) when it carries fields of two sources (X-Original-* and X-Forwarded-*;
// X-Original-URI and -URL that disagree), a repeated field, a method field
// without its target field, or such fields while its own path is under
// `path_prefix`: an ingress sends one description, so a second one is the
// client's, and picking one would let the client name the path authorized.
// `path_prefix` is "" or "/x" (checked by the config loader).
OriginalRequest original_request(const Fields& fields, std::string_view check_method,
                                 std::string_view check_target, std::string_view path_prefix) noexcept;

}  // namespace tokengate::gateway::forward_auth
