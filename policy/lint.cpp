// `tokengate check` route lint: invalid patterns, routes shadowed by an earlier
// route, and required permissions nothing grants. Unknown names of upstreams,
// roles, groups and licenses are already errors of the config loader.
//
// Routes are named by their index in Config::routes (0-based, the same index
// `explain` and Decision::route use) with their pattern and line.
#include "policy/lint.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <optional>
#include <set>

#include "policy/engine.hpp"
#include "policy/route_pattern.hpp"

namespace tokengate::policy {
namespace {

std::string describe(const conf::Config& config, std::size_t index) {
  const auto& route = config.routes[index];
  return fmt::format("route {} ({}, line {})", index, route.path, route.mark.line);
}

// Every method `inner` accepts is accepted by `outer` (empty = all methods).
bool methods_covered(const std::vector<std::string>& inner, const std::vector<std::string>& outer) {
  if (outer.empty()) return true;
  if (inner.empty()) return false;
  return std::all_of(inner.begin(), inner.end(), [&](const std::string& m) {
    return std::find(outer.begin(), outer.end(), m) != outer.end();
  });
}

}  // namespace

std::vector<Finding> lint(const conf::Config& config) {
  std::vector<Finding> findings;
  const auto& routes = config.routes;

  std::vector<std::optional<RoutePattern>> patterns;
  patterns.reserve(routes.size());
  for (std::size_t i = 0; i < routes.size(); ++i) {
    std::string error;
    patterns.push_back(RoutePattern::parse(routes[i].path, &error));
    if (!patterns.back()) {
      findings.push_back({Severity::Error, routes[i].mark,
                          fmt::format("{}: invalid pattern: {}", describe(config, i), error)});
    }
  }

  // A route is dead when, for every method it takes, some earlier route whose
  // pattern covers its pattern takes that method too (one route, or several that
  // split the methods between them). We name the earliest covering route per method.
  for (std::size_t i = 0; i < routes.size(); ++i) {
    if (!patterns[i]) continue;
    std::vector<std::size_t> covering;  // earlier routes whose pattern covers route i
    for (std::size_t j = 0; j < i; ++j)
      if (patterns[j] && patterns[i]->subsumed_by(*patterns[j])) covering.push_back(j);
    if (covering.empty()) continue;

    std::vector<std::size_t> culprits;
    auto first_taking = [&](const std::vector<std::string>& inner) -> std::optional<std::size_t> {
      for (const std::size_t j : covering)
        if (methods_covered(inner, routes[j].methods)) return j;
      return std::nullopt;
    };
    bool dead = true;
    if (const auto j = first_taking(routes[i].methods)) {
      culprits.push_back(*j);  // one route covers all of its methods
    } else if (routes[i].methods.empty()) {
      dead = false;  // all methods: only an all-methods route could cover it
    } else {
      for (const auto& method : routes[i].methods) {
        const auto j = first_taking({method});
        if (!j) {
          dead = false;
          break;
        }
        if (std::find(culprits.begin(), culprits.end(), *j) == culprits.end()) culprits.push_back(*j);
      }
      std::sort(culprits.begin(), culprits.end());
    }
    if (!dead) continue;
    std::string by;
    for (std::size_t k = 0; k < culprits.size(); ++k) {
      if (k > 0) by += k + 1 == culprits.size() ? " and " : ", ";
      by += describe(config, culprits[k]);
    }
    findings.push_back({Severity::Error, routes[i].mark,
                        fmt::format("{} can never match: {} {} every request it would", describe(config, i),
                                    by, culprits.size() == 1 ? "matches" : "match")});
  }

  std::set<std::string, std::less<>> methods;
  for (const auto& route : routes) methods.insert(route.methods.begin(), route.methods.end());
  if (methods.size() > kMaxRouteMethods) {
    findings.push_back({Severity::Error, routes.front().mark,
                        fmt::format("routes name {} distinct methods; at most {} are supported",
                                    methods.size(), kMaxRouteMethods)});
  }

  std::set<std::string, std::less<>> granted;
  for (const auto& role : config.roles) granted.insert(role.permissions.begin(), role.permissions.end());
  for (const auto& group : config.groups) granted.insert(group.permissions.begin(), group.permissions.end());
  for (std::size_t i = 0; i < routes.size(); ++i) {
    if (!routes[i].require) continue;
    std::vector<std::string> required = routes[i].require->all_of.permissions;
    for (const auto& block : routes[i].require->any_of)
      required.insert(required.end(), block.permissions.begin(), block.permissions.end());
    std::vector<std::string> reported;
    for (const auto& permission : required) {
      if (granted.count(permission) != 0) continue;
      if (std::find(reported.begin(), reported.end(), permission) != reported.end()) continue;
      reported.push_back(permission);
      findings.push_back({Severity::Warning, routes[i].mark,
                          fmt::format("{} requires permission {}, which no role or group grants",
                                      describe(config, i), permission)});
    }
  }
  return findings;
}

}  // namespace tokengate::policy
