// The compiled, immutable policy of one config generation: route table, roles and
// groups, requirements. Built once by Engine::compile; hot reload swaps the
// shared_ptr; each request holds one snapshot. Pure: no I/O, no locks.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "conf/config.hpp"
#include "policy/canonical_path.hpp"
#include "policy/outcome.hpp"
#include "policy/rights.hpp"

namespace tokengate::policy {

enum class Verdict { Allow, Deny };

struct Decision {
  Verdict verdict = Verdict::Deny;
  Outcome outcome = Outcome::NoRoute;
  int route = -1;       // index into Config::routes, -1 if none
  std::string missing;  // for 403: which requirement failed, e.g. "permission orders.write"
};

// Route lookup result. `allow` lists the methods (comma-space separated, e.g.
// "GET, HEAD") of routes whose path matched when no route matched the method.
struct RouteMatch {
  int route = -1;             // -1: no route for this method
  bool path_matched = false;  // some route's path matched (then -1 means 405)
  std::string_view allow;     // valid while the Engine lives
};

// Distinct method names the routes of one config may use (they are interned to
// bits of a 64-bit mask). compile() throws conf::ConfigError beyond it; lint reports it.
inline constexpr std::size_t kMaxRouteMethods = 64;

// What the request carries, as far as the route decision cares.
enum class Credential { None, WrongScheme, Invalid, Valid };

// The rate limits one allowed request must fit (README.md, "Rate limits"): all
// that apply, never just one. Pointers into the config or the token record.
struct RateLimits {
  const conf::RateLimit* token = nullptr;  // with a valid token: its own, else tokens.default_rate_limit
  bool token_own = false;                  // `token` is the token's own limit
  const conf::RateLimit* route = nullptr;  // the route's `rate_limit`
  bool per_address = false;                // `route` counts per client address (public, no valid token)
  std::string_view route_path;             // the route's pattern (with its index, what names its budgets)
  bool any() const noexcept { return token != nullptr || route != nullptr; }
};

class Engine {
 public:
  static std::shared_ptr<const Engine> compile(std::shared_ptr<const conf::Config> config);

  const conf::Config& config() const noexcept { return *config_; }
  const std::shared_ptr<const conf::Config>& config_ptr() const noexcept { return config_; }

  // What canonicalize_target must accept under this config (`paths.allow`).
  CanonicalOptions canonical_options() const noexcept { return canonical_options_; }

  // First route (file order) whose pattern and method match the canonical path.
  // Does not allocate.
  RouteMatch match(std::string_view method, std::string_view canonical_path) const noexcept;

  // roles = token.roles ∪ roles of its groups; permissions = token.permissions ∪
  // permissions of each effective role ∪ permissions of each group. Unknown names
  // (config changed since the token was made) grant nothing beyond themselves.
  Rights effective_rights(const Grants& grants) const;

  // rights must be non-null iff credential == Valid.
  Decision decide(const RouteMatch& match, Credential credential, const Rights* rights) const;

  // The whole policy decision for one request, the one the proxy, forward-auth
  // and `tokengate explain` all use: canonical path (into `canonical_path`, a
  // reused buffer; "*" for OPTIONS *), route, then the credential's rights against
  // the route. A refused path is Outcome::BadRequest with target.error set.
  struct RequestDecision {
    CanonicalTarget target;
    RouteMatch match;
    Decision decision;
  };
  RequestDecision decide_request(std::string_view method, std::string_view target,
                                 std::string& canonical_path, Credential credential,
                                 const Rights* rights) const;

  // The outcome of a forward-auth check about that request (docs/forward-auth.md):
  // the decision, unless `target` as sent is not already canonical. The ingress
  // serves the raw target, so authorizing its canonical form would decide about a
  // path other than the one served (for "/public/../admin": "/admin").
  static Outcome check_outcome(const RequestDecision& decided, std::string_view target,
                               std::string_view canonical_path) noexcept;

  // Which limits apply to an allowed request on `route` (Decision::route): the
  // token's (own, else the default) when the credential is valid, and the
  // route's, per token or, without a valid token on a public route, per client
  // address. The proxy enforces them; `tokengate explain` shows them.
  RateLimits rate_limits(int route, bool valid_token, const conf::RateLimit* token_own) const noexcept;

  ~Engine();

 private:
  struct Impl;
  explicit Engine(std::shared_ptr<const conf::Config> config);
  std::shared_ptr<const conf::Config> config_;
  CanonicalOptions canonical_options_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tokengate::policy
