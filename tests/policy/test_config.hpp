// Builds conf::Config values by hand for the policy tests (no YAML loader needed).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "conf/config.hpp"

namespace tokengate::policy::test {

struct RouteSpec {
  std::string path;
  std::vector<std::string> methods = {};
  bool is_public = false;
  std::optional<conf::Requirement> require = std::nullopt;
};

inline conf::RequirementBlock block(std::vector<std::string> permissions, std::vector<std::string> roles = {},
                                    std::vector<std::string> groups = {},
                                    std::vector<std::string> licenses = {}) {
  conf::RequirementBlock b;
  b.permissions = std::move(permissions);
  b.roles = std::move(roles);
  b.groups = std::move(groups);
  b.licenses = std::move(licenses);
  return b;
}

inline conf::Requirement require(conf::RequirementBlock all_of,
                                 std::vector<conf::RequirementBlock> any_of = {}) {
  conf::Requirement r;
  r.all_of = std::move(all_of);
  r.any_of = std::move(any_of);
  return r;
}

// Routes get lines 10, 20, 30, ... so messages can be checked.
inline std::shared_ptr<conf::Config> make_config(const std::vector<RouteSpec>& routes) {
  auto config = std::make_shared<conf::Config>();
  config->file = "/etc/tokengate/test.yaml";
  int line = 10;
  for (const auto& spec : routes) {
    conf::Route r;
    r.path = spec.path;
    r.methods = spec.methods;
    r.upstream = "app";
    r.is_public = spec.is_public;
    r.require = spec.require;
    r.mark = {line, 5};
    line += 10;
    config->routes.push_back(std::move(r));
  }
  return config;
}

}  // namespace tokengate::policy::test
