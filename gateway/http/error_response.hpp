// The JSON error responses of the data plane and the admin API: {"error": "...", "message": "..."}.
#pragma once

#include <string>
#include <string_view>

#include "policy/outcome.hpp"

namespace tokengate::gateway {

// The body `{"error": error, "message": message}` serialized with Boost.JSON.
std::string error_body(std::string_view error, std::string_view message);

// Short machine-readable code for a status: 400 "bad_request", 404 "not_found", ...
std::string_view error_code_for(int status) noexcept;

// The challenges live with the outcome table; the admin API answers with them too.
using policy::kBearerChallenge;
using policy::kInsufficientScopeChallenge;
using policy::kInvalidTokenChallenge;

}  // namespace tokengate::gateway
