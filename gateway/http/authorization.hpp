// The Authorization field as the gateway reads it, for the proxy and the admin
// API alike: only "Bearer <token>" counts (the scheme in any case, RFC 9110
// §11.1); anything else is another scheme, never a token.
#pragma once

#include <string_view>

namespace tokengate::gateway {

enum class AuthKind { None, WrongScheme, Bearer };
struct Authorization {
  AuthKind kind = AuthKind::None;
  std::string_view token;  // Bearer only; may be empty (then the token is malformed)
};
// `present` false = no Authorization header. Scheme compared case-insensitively.
Authorization parse_authorization(bool present, std::string_view value) noexcept;

}  // namespace tokengate::gateway
