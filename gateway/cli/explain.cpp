// `tokengate explain`: runs one request through the same policy code the gateway
// uses (canonicalize_target, Engine::match/decide) and shows every step.
#include <fmt/core.h>

#include <algorithm>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <cctype>
#include <iostream>

#include "conf/config.hpp"
#include "gateway/cli/commands.hpp"
#include "gateway/cli/output.hpp"
#include "policy/canonical_path.hpp"
#include "policy/engine.hpp"
#include "store/token_record.hpp"

namespace tokengate::cli {
namespace {

std::string names(const std::vector<std::string>& items) { return items.empty() ? "-" : join(items, ", "); }

std::string block_text(const conf::RequirementBlock& block) {
  std::vector<std::string> parts;
  auto add = [&](std::string_view kind, const std::vector<std::string>& items) {
    if (!items.empty()) parts.push_back(fmt::format("{} [{}]", kind, join(items, ", ")));
  };
  add("permissions", block.permissions);
  add("roles", block.roles);
  add("groups", block.groups);
  add("licenses", block.licenses);
  return join(parts, " and ");
}

std::string requirement_text(const conf::Route& route) {
  if (route.is_public) return "none (public route)";
  if (!route.require) return "any valid token";
  std::vector<std::string> parts;
  if (auto all = block_text(route.require->all_of); !all.empty()) parts.push_back(all);
  if (!route.require->any_of.empty()) {
    std::vector<std::string> alternatives;
    for (const auto& block : route.require->any_of) alternatives.push_back("(" + block_text(block) + ")");
    parts.push_back("any of " + join(alternatives, " or "));
  }
  return parts.empty() ? "any valid token" : join(parts, " and ");
}

boost::json::array json_names(const std::vector<std::string>& items) {
  boost::json::array out;
  for (const auto& item : items) out.emplace_back(item);
  return out;
}

std::vector<std::string> without_empty(std::vector<std::string> items) {
  std::erase(items, std::string());
  return items;
}

void warn_unknown(const conf::Config& config, const policy::Grants& grants) {
  for (const auto& r : grants.roles)
    if (!config.find_role(r)) fmt::print(stderr, "warning: role '{}' is not in the config\n", r);
  for (const auto& g : grants.groups)
    if (!config.find_group(g)) fmt::print(stderr, "warning: group '{}' is not in the config\n", g);
  for (const auto& l : grants.licenses)
    if (!config.has_license(l)) fmt::print(stderr, "warning: license '{}' is not in the config\n", l);
}

// The limits an allowed request must fit (Engine::rate_limits, as the proxy asks).
struct LimitsShown {
  std::string text;  // "token 100/s burst 200 (default); route 10/s burst 20 (per token)" or "none"
  boost::json::value json;
};

LimitsShown show_limits(const policy::RateLimits& limits) {
  LimitsShown shown;
  boost::json::object o;
  std::vector<std::string> parts;
  if (limits.token) {
    const char* source = limits.token_own ? "token" : "default";
    parts.push_back(fmt::format("token {} ({})", limits.token->to_string(),
                                limits.token_own ? "the token's own" : "tokens.default_rate_limit"));
    o["token"] = {{"rate", limits.token->rate_text()}, {"burst", limits.token->burst}, {"source", source}};
  } else {
    o["token"] = nullptr;
  }
  if (limits.route) {
    const char* per = limits.per_address ? "client_address" : "token";
    parts.push_back(fmt::format("route {} (per {})", limits.route->to_string(),
                                limits.per_address ? "client address" : "token"));
    o["route"] = {{"rate", limits.route->rate_text()}, {"burst", limits.route->burst}, {"per", per}};
  } else {
    o["route"] = nullptr;
  }
  shown.text = parts.empty() ? "none" : join(parts, "; ");
  shown.json = std::move(o);
  return shown;
}

}  // namespace

int run_explain(const ExplainOptions& options) {
  const auto config = conf::load_config(options.config);
  const auto engine = policy::Engine::compile(config);

  // Who is asking: nobody, a stored token, or hypothetical grants.
  policy::Credential credential = policy::Credential::None;
  policy::Rights rights;
  std::optional<conf::RateLimit> own_limit;  // the stored token's own rate limit
  std::string who = "none (anonymous request)";
  if (options.token_id) {
    auto backend = make_backend(config);  // through the admin socket while a gateway runs
    const auto record = backend->get(*options.token_id);
    if (!record) throw UserError(fmt::format("no token with id '{}'", *options.token_id));
    rights = engine->effective_rights({record->roles, record->groups, record->permissions, record->licenses});
    own_limit = record->rate_limit;
    const bool expired = record->expired_at(store::system_now());
    credential = expired ? policy::Credential::Invalid : policy::Credential::Valid;
    who = fmt::format("token {} ({}){}", record->id, record->name,
                      expired ? fmt::format(", expired {}", store::format_rfc3339(*record->expires_at)) : "");
  } else if (options.grants_given) {
    policy::Grants grants{without_empty(options.roles), without_empty(options.groups),
                          without_empty(options.permissions), without_empty(options.licenses)};
    warn_unknown(*config, grants);
    rights = engine->effective_rights(grants);
    credential = policy::Credential::Valid;
    who = "a valid token with the given grants";
  }

  if (std::any_of(options.method.begin(), options.method.end(),
                  [](unsigned char c) { return std::islower(c); })) {
    fmt::print(stderr, "warning: methods are case-sensitive: '{}' is not an upper-case method\n",
               options.method);
  }

  std::string canonical;
  const auto evaluated = engine->decide_request(options.method, options.path, canonical, credential,
                                                credential == policy::Credential::Valid ? &rights : nullptr);
  const policy::CanonicalTarget& target = evaluated.target;
  const policy::RouteMatch& match = evaluated.match;
  const policy::Decision& decision = evaluated.decision;
  std::string detail;
  switch (decision.outcome) {
    case policy::Outcome::BadRequest:
      detail = fmt::format("path rejected: {}", policy::to_string(target.error));
      break;
    case policy::Outcome::Allowed:
      detail = "the token meets the route's requirement";
      break;
    case policy::Outcome::PublicRoute:
      detail = "public route: no token needed";
      break;
    case policy::Outcome::MissingToken:
      detail = "protected route and no token given";
      break;
    case policy::Outcome::WrongScheme:
      detail = "Authorization is not a Bearer token";
      break;
    case policy::Outcome::InvalidToken:
      detail = "the token is not valid (expired)";
      break;
    case policy::Outcome::InsufficientScope:
      detail = decision.missing.empty() ? "the token lacks the requirement" : "missing " + decision.missing;
      break;
    case policy::Outcome::NoRoute:
      detail = "no route matches the path";
      break;
    case policy::Outcome::MethodNotAllowed:
      detail = fmt::format("the path matches, but not for {}; allowed: {}", options.method, match.allow);
      break;
    default:
      break;
  }
  const int status = policy::status_for(decision.outcome);
  const bool allowed = decision.verdict == policy::Verdict::Allow;
  // The same request asked about by an ingress on the forward_auth listener.
  const policy::Outcome check = policy::Engine::check_outcome(evaluated, options.path, canonical);
  const int check_status = policy::forward_auth_status(check);
  const conf::Route* route =
      decision.route >= 0 && static_cast<std::size_t>(decision.route) < config->routes.size()
          ? &config->routes[static_cast<std::size_t>(decision.route)]
          : nullptr;
  const auto limits =
      show_limits(allowed ? engine->rate_limits(decision.route, credential == policy::Credential::Valid,
                                                own_limit ? &*own_limit : nullptr)
                          : policy::RateLimits{});

  if (options.json) {
    boost::json::object out;
    if (target.error == policy::PathError::None) {
      out["canonical_path"] = canonical;
    } else {
      out["canonical_path"] = nullptr;
    }
    if (route) {
      out["route"] = {{"index", decision.route}, {"path", route->path}, {"line", route->mark.line}};
    } else {
      out["route"] = nullptr;
    }
    out["rights"] = {{"roles", json_names(rights.roles)},
                     {"groups", json_names(rights.groups)},
                     {"permissions", json_names(rights.permissions)},
                     {"licenses", json_names(rights.licenses)}};
    out["decision"] = allowed ? "allow" : "deny";
    out["status"] = status;
    out["reason"] = policy::to_string(decision.outcome);
    out["forward_auth"] = {{"status", check_status}, {"reason", policy::to_string(check)}};
    out["rate_limits"] = limits.json;  // {"token": ... or null, "route": ... or null}; both null when denied
    print_json(out);
    return 0;
  }

  Fields fields;
  fields.emplace_back("request", fmt::format("{} {}", options.method, options.path));
  fields.emplace_back("canonical path", target.error == policy::PathError::None ? canonical : "(rejected)");
  if (route) {
    fields.emplace_back("route",
                        fmt::format("#{} {} (line {})", decision.route, route->path, route->mark.line));
    fields.emplace_back("methods", route->methods.empty() ? "any" : join(route->methods, ", "));
    fields.emplace_back("upstream", route->upstream);
    fields.emplace_back("requirement", requirement_text(*route));
  } else {
    fields.emplace_back("route", "none");
  }
  fields.emplace_back("credential", who);
  fields.emplace_back("roles", names(rights.roles));
  fields.emplace_back("groups", names(rights.groups));
  fields.emplace_back("permissions", names(rights.permissions));
  fields.emplace_back("licenses", names(rights.licenses));
  fields.emplace_back("rate limits", allowed ? limits.text : "none (the request is refused before them)");
  fields.emplace_back("decision", allowed ? "allow" : "deny");
  fields.emplace_back("status", std::to_string(status));
  fields.emplace_back("reason", detail.empty()
                                    ? std::string(policy::to_string(decision.outcome))
                                    : fmt::format("{} ({})", policy::to_string(decision.outcome), detail));
  fields.emplace_back("forward auth", fmt::format("{} {}", check_status, policy::to_string(check)));
  std::cout << render_fields(fields) << std::flush;
  return 0;
}

}  // namespace tokengate::cli
