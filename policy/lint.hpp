// `tokengate check`: route and name lint beyond what loading the config checks.
#pragma once

#include <string>
#include <vector>

#include "conf/config.hpp"

namespace tokengate::policy {

enum class Severity { Error, Warning };

struct Finding {
  Severity severity;
  conf::Mark mark;
  std::string message;  // e.g. "route 4 (/api/orders/x) can never match: route 2 (/api/**) covers it"
};

// Errors: invalid patterns, routes shadowed by an earlier route. Warnings:
// permissions a route requires that no role or group grants.
std::vector<Finding> lint(const conf::Config& config);

}  // namespace tokengate::policy
