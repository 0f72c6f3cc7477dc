// The JSON error responses of SPEC.md §3: {"error": "...", "message": "..."}.
#pragma once

#include <string>
#include <string_view>

namespace tokengate::gateway {

// The body `{"error": error, "message": message}` serialized with Boost.JSON.
std::string error_body(std::string_view error, std::string_view message);

// Short machine-readable code for a status: 400 "bad_request", 404 "not_found", ...
std::string_view error_code_for(int status) noexcept;

inline constexpr std::string_view kBearerChallenge = "Bearer realm=\"tokengate\"";
inline constexpr std::string_view kInvalidTokenChallenge =
    "Bearer realm=\"tokengate\", error=\"invalid_token\"";
inline constexpr std::string_view kInsufficientScopeChallenge =
    "Bearer realm=\"tokengate\", error=\"insufficient_scope\"";

}  // namespace tokengate::gateway
