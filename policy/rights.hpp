// Effective rights of a token (docs/configuration.md, "Roles and groups"): sorted,
// unique name sets.
#pragma once

#include <string>
#include <vector>

namespace tokengate::policy {

struct Grants {  // what a token record holds
  std::vector<std::string> roles, groups, permissions, licenses;
};

struct Rights {                                                   // what it effectively has under one config
  std::vector<std::string> roles, groups, permissions, licenses;  // each sorted, unique
};

}  // namespace tokengate::policy
