// The compiled policy of one config generation: the route index (a segment trie),
// method interning and precomputed Allow strings, requirements, roles and groups.
//
// Route lookup. Patterns are inserted into a trie keyed by their literal segments,
// with one '*' child per node and, per node, the routes that end there exactly or
// with a trailing '**'. A lookup walks the path's segments once, following the
// literal child (hash lookup) and the '*' child, so its cost depends on the path's
// depth and on how many patterns overlap it, not on the number of routes. Every
// route whose pattern matches is visited; the lowest route index whose methods
// match wins, which is exactly "first route in file order". Subtrees whose lowest
// route index cannot beat the best found so far are skipped.
//
// Allow without allocating. Methods named in the config are interned to bits
// (sorted by name, at most 64). A 405's Allow is the union of the method masks of
// the routes whose path matched, so it is always an OR of some route masks. At
// compile time we build the OR-closure of the distinct route masks and one Allow
// string per element, kept sorted by mask; a lookup is a binary search. The
// closure is capped (kMaxAllowStrings); beyond the cap, which needs a config with
// more than ~16 unrelated method sets, only single route masks keep exact strings
// and a 405 over several routes lists every configured method.
#include "policy/engine.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cassert>
#include <cstdint>
#include <functional>
#include <unordered_map>
#include <utility>

#include "policy/path_segments.hpp"
#include "policy/route_pattern.hpp"

namespace tokengate::policy {
namespace {

constexpr std::size_t kMaxAllowStrings = std::size_t{1} << 16;

// FNV-1a: path segments are short, and for them this is several times cheaper than
// std::hash's murmur, which dominated a lookup in route_bench. Route literals come
// from the operator's config, not from clients, so flooding a bucket is not a threat
// (a request segment only probes; it is never inserted).
struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    std::uint64_t h = 14695981039346656037ULL;
    for (const char c : s) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
    return static_cast<std::size_t>(h);
  }
};
template <class V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

struct Block {  // one all-of block, names in the order written (for the `missing` text)
  std::vector<std::string> permissions, roles, groups, licenses;
  bool empty() const { return permissions.empty() && roles.empty() && groups.empty() && licenses.empty(); }
};

struct CompiledRoute {
  RoutePattern pattern;
  std::uint64_t methods = 0;
  bool all_methods = true;
  bool is_public = false;
  bool has_require = false;
  Block all_of;
  std::vector<Block> any_of;
};

struct Node {
  StringMap<int> literal;  // child node per literal segment
  int star = -1;           // child node for '*'
  std::vector<int> exact;  // routes whose pattern ends at this node, ascending
  std::vector<int> rest;   // routes whose pattern is this node's prefix + "**", ascending
  int min_route = -1;      // lowest route index in this subtree (for pruning)
};

bool holds(const std::vector<std::string>& sorted, const std::string& name) {
  return std::binary_search(sorted.begin(), sorted.end(), name);
}

// The first name of `block` that `rights` lacks, as "permission x", or "".
std::string first_missing(const Block& block, const Rights& rights) {
  for (const auto& n : block.permissions)
    if (!holds(rights.permissions, n)) return "permission " + n;
  for (const auto& n : block.roles)
    if (!holds(rights.roles, n)) return "role " + n;
  for (const auto& n : block.groups)
    if (!holds(rights.groups, n)) return "group " + n;
  for (const auto& n : block.licenses)
    if (!holds(rights.licenses, n)) return "license " + n;
  return {};
}

bool block_holds(const Block& block, const Rights& rights) {
  auto all = [](const std::vector<std::string>& need, const std::vector<std::string>& have) {
    return std::all_of(need.begin(), need.end(), [&](const std::string& n) { return holds(have, n); });
  };
  return all(block.permissions, rights.permissions) && all(block.roles, rights.roles) &&
         all(block.groups, rights.groups) && all(block.licenses, rights.licenses);
}

Block compile_block(const conf::RequirementBlock& b) {
  return Block{b.permissions, b.roles, b.groups, b.licenses};
}

void sort_unique(std::vector<std::string>& v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
}

}  // namespace

struct Engine::Impl {
  std::vector<CompiledRoute> routes;
  std::vector<std::pair<std::string, int>> method_bits;              // sorted by name
  std::vector<std::pair<std::uint64_t, std::string>> allow_strings;  // sorted by mask
  std::string allow_all;                                             // fallback: every configured method
  std::vector<Node> nodes;                                           // nodes[0] is the root
  StringMap<std::vector<std::string>> role_permissions;
  struct GroupGrants {
    std::vector<std::string> roles, permissions;
  };
  StringMap<GroupGrants> groups;

  // Lookup state of one match() call; lives on the caller's stack.
  struct Walk {
    std::uint64_t method_bit;  // 0: a method no route names (only all-method routes take it)
    int best = -1;
    bool path_matched = false;
    std::uint64_t mask = 0;  // methods of path-matched routes that did not take the method
  };

  void consider(const std::vector<int>& candidates, Walk& w) const noexcept {
    for (const int r : candidates) {
      if (w.best >= 0 && r >= w.best) return;  // ascending: nothing better follows
      const auto& route = routes[static_cast<std::size_t>(r)];
      w.path_matched = true;
      if (route.all_methods || (route.methods & w.method_bit) != 0) {
        w.best = r;
        return;
      }
      w.mask |= route.methods;
    }
  }

  void walk(int node_index, detail::SegmentCursor cursor, Walk& w) const noexcept {
    const Node& node = nodes[static_cast<std::size_t>(node_index)];
    if (node.min_route < 0 || (w.best >= 0 && node.min_route >= w.best)) return;
    consider(node.rest, w);
    if (cursor.done()) {
      consider(node.exact, w);
      return;
    }
    const std::string_view seg = cursor.next();
    if (auto it = node.literal.find(seg); it != node.literal.end()) walk(it->second, cursor, w);
    if (node.star >= 0 && !seg.empty()) walk(node.star, cursor, w);
  }

  int add_node() {
    nodes.emplace_back();
    return static_cast<int>(nodes.size() - 1);
  }

  void insert(int route_index) {
    int node = 0;
    for (const auto& seg : routes[static_cast<std::size_t>(route_index)].pattern.segments()) {
      auto& n = nodes[static_cast<std::size_t>(node)];
      if (n.min_route < 0) n.min_route = route_index;
      switch (seg.kind) {
        case RoutePattern::Kind::DoubleStar:
          n.rest.push_back(route_index);
          return;
        case RoutePattern::Kind::Star:
          if (n.star < 0) {
            const int child = add_node();  // may reallocate `nodes`: re-index below
            nodes[static_cast<std::size_t>(node)].star = child;
          }
          node = nodes[static_cast<std::size_t>(node)].star;
          break;
        case RoutePattern::Kind::Literal: {
          auto it = n.literal.find(seg.literal);
          if (it == n.literal.end()) {
            const int child = add_node();
            it = nodes[static_cast<std::size_t>(node)].literal.emplace(seg.literal, child).first;
          }
          node = it->second;
          break;
        }
      }
    }
    auto& n = nodes[static_cast<std::size_t>(node)];
    if (n.min_route < 0) n.min_route = route_index;
    n.exact.push_back(route_index);
  }

  std::string allow_text(std::uint64_t mask) const {
    std::string text;
    for (const auto& [name, bit] : method_bits) {
      if ((mask >> bit) & 1U) {
        if (!text.empty()) text += ", ";
        text += name;
      }
    }
    return text;
  }

  void build_allow_strings() {
    std::vector<std::uint64_t> distinct;
    for (const auto& r : routes)
      if (!r.all_methods) distinct.push_back(r.methods);
    std::sort(distinct.begin(), distinct.end());
    distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());

    std::vector<std::uint64_t> closure;
    for (const auto m : distinct) {
      const std::size_t n = closure.size();
      closure.push_back(m);
      for (std::size_t i = 0; i < n && closure.size() <= kMaxAllowStrings; ++i)
        closure.push_back(closure[i] | m);
      std::sort(closure.begin(), closure.end());
      closure.erase(std::unique(closure.begin(), closure.end()), closure.end());
      if (closure.size() > kMaxAllowStrings) {
        closure = distinct;  // exact strings for single masks only; unions get allow_all
        break;
      }
    }
    for (const auto m : closure) allow_strings.emplace_back(m, allow_text(m));
    allow_all = allow_text(~std::uint64_t{0});
  }

  std::string_view allow_for(std::uint64_t mask) const noexcept {
    auto it = std::lower_bound(allow_strings.begin(), allow_strings.end(), mask,
                               [](const auto& entry, std::uint64_t m) { return entry.first < m; });
    if (it != allow_strings.end() && it->first == mask) return it->second;
    return allow_all;
  }
};

Engine::Engine(std::shared_ptr<const conf::Config> config)
    : config_(std::move(config)),
      canonical_options_{config_->paths.allow_semicolon, config_->paths.allow_encoded_percent,
                         config_->paths.allow_trailing_dot},
      impl_(std::make_unique<Impl>()) {}

Engine::~Engine() = default;

RateLimits Engine::rate_limits(int route, bool valid_token, const conf::RateLimit* token_own) const noexcept {
  RateLimits limits;
  if (valid_token) {
    limits.token_own = token_own != nullptr;
    limits.token =
        token_own ? token_own
                  : (config_->tokens.default_rate_limit ? &*config_->tokens.default_rate_limit : nullptr);
  }
  if (route < 0 || static_cast<std::size_t>(route) >= config_->routes.size()) return limits;
  const conf::Route& r = config_->routes[static_cast<std::size_t>(route)];
  if (!r.rate_limit || (!valid_token && !r.is_public)) return limits;
  limits.route = &*r.rate_limit;
  limits.route_path = r.path;
  limits.per_address = !valid_token;
  return limits;
}

std::shared_ptr<const Engine> Engine::compile(std::shared_ptr<const conf::Config> config) {
  assert(config);
  std::shared_ptr<Engine> engine(new Engine(std::move(config)));
  const conf::Config& cfg = *engine->config_;
  Impl& impl = *engine->impl_;

  // Methods, interned in name order so Allow strings come out sorted.
  std::vector<std::string> names;
  for (const auto& route : cfg.routes) names.insert(names.end(), route.methods.begin(), route.methods.end());
  sort_unique(names);
  if (names.size() > kMaxRouteMethods) {
    throw conf::ConfigError(cfg.file.string(), cfg.routes.empty() ? conf::Mark{} : cfg.routes.front().mark,
                            fmt::format("routes name {} distinct methods; at most {} are supported",
                                        names.size(), kMaxRouteMethods));
  }
  for (std::size_t i = 0; i < names.size(); ++i) impl.method_bits.emplace_back(names[i], static_cast<int>(i));

  impl.routes.reserve(cfg.routes.size());
  for (std::size_t i = 0; i < cfg.routes.size(); ++i) {
    const auto& route = cfg.routes[i];
    std::string error;
    auto pattern = RoutePattern::parse(route.path, &error);
    if (!pattern) {
      throw conf::ConfigError(cfg.file.string(), route.mark,
                              fmt::format("route {} ({}): invalid pattern: {}", i, route.path, error));
    }
    CompiledRoute compiled;
    compiled.pattern = std::move(*pattern);
    compiled.all_methods = route.methods.empty();
    for (const auto& m : route.methods) {
      auto it =
          std::lower_bound(impl.method_bits.begin(), impl.method_bits.end(), m,
                           [](const auto& entry, const std::string& name) { return entry.first < name; });
      compiled.methods |= std::uint64_t{1} << it->second;
    }
    compiled.is_public = route.is_public;
    if (route.require) {
      compiled.has_require = true;
      compiled.all_of = compile_block(route.require->all_of);
      for (const auto& block : route.require->any_of) compiled.any_of.push_back(compile_block(block));
    }
    impl.routes.push_back(std::move(compiled));
  }

  impl.add_node();
  for (std::size_t i = 0; i < impl.routes.size(); ++i) impl.insert(static_cast<int>(i));
  impl.build_allow_strings();

  for (const auto& role : cfg.roles) {
    auto& perms = impl.role_permissions[role.name];
    perms.insert(perms.end(), role.permissions.begin(), role.permissions.end());
  }
  for (const auto& group : cfg.groups) {
    auto& g = impl.groups[group.name];
    g.roles.insert(g.roles.end(), group.roles.begin(), group.roles.end());
    g.permissions.insert(g.permissions.end(), group.permissions.begin(), group.permissions.end());
  }
  return engine;
}

RouteMatch Engine::match(std::string_view method, std::string_view canonical_path) const noexcept {
  const Impl& impl = *impl_;
  Impl::Walk w{0};
  for (const auto& [name, bit] : impl.method_bits) {
    if (name == method) {
      w.method_bit = std::uint64_t{1} << bit;
      break;
    }
  }
  RouteMatch result;
  if (canonical_path.empty() || canonical_path.front() != '/' || impl.nodes.empty()) return result;
  impl.walk(0, detail::SegmentCursor(canonical_path), w);
  result.route = w.best;
  result.path_matched = w.path_matched;
  if (w.best < 0 && w.path_matched) result.allow = impl.allow_for(w.mask);
  return result;
}

Rights Engine::effective_rights(const Grants& grants) const {
  const Impl& impl = *impl_;
  Rights rights;
  rights.roles = grants.roles;
  rights.groups = grants.groups;
  rights.permissions = grants.permissions;
  rights.licenses = grants.licenses;
  for (const auto& g : grants.groups) {
    if (auto it = impl.groups.find(g); it != impl.groups.end()) {
      rights.roles.insert(rights.roles.end(), it->second.roles.begin(), it->second.roles.end());
      rights.permissions.insert(rights.permissions.end(), it->second.permissions.begin(),
                                it->second.permissions.end());
    }
  }
  sort_unique(rights.roles);
  for (const auto& r : rights.roles) {
    if (auto it = impl.role_permissions.find(r); it != impl.role_permissions.end())
      rights.permissions.insert(rights.permissions.end(), it->second.begin(), it->second.end());
  }
  sort_unique(rights.groups);
  sort_unique(rights.permissions);
  sort_unique(rights.licenses);
  return rights;
}

Decision Engine::decide(const RouteMatch& match, Credential credential, const Rights* rights) const {
  Decision d;
  d.route = match.route;
  auto deny = [&](Outcome outcome) {
    d.verdict = Verdict::Deny;
    d.outcome = outcome;
    return d;
  };
  if (match.route < 0 || static_cast<std::size_t>(match.route) >= impl_->routes.size())
    return deny(match.path_matched ? Outcome::MethodNotAllowed : Outcome::NoRoute);
  const CompiledRoute& route = impl_->routes[static_cast<std::size_t>(match.route)];
  if (route.is_public) {
    d.verdict = Verdict::Allow;
    d.outcome = Outcome::PublicRoute;
    return d;
  }
  switch (credential) {
    case Credential::None:
      return deny(Outcome::MissingToken);
    case Credential::WrongScheme:
      return deny(Outcome::WrongScheme);
    case Credential::Invalid:
      return deny(Outcome::InvalidToken);
    case Credential::Valid:
      break;
  }
  assert(rights != nullptr);
  if (rights == nullptr) return deny(Outcome::InvalidToken);  // fail closed on a caller bug
  if (route.has_require) {
    if (auto missing = first_missing(route.all_of, *rights); !missing.empty()) {
      d.missing = std::move(missing);
      return deny(Outcome::InsufficientScope);
    }
    if (!route.any_of.empty() && std::none_of(route.any_of.begin(), route.any_of.end(),
                                              [&](const Block& b) { return block_holds(b, *rights); })) {
      d.missing = fmt::format("any_of: none of {} alternatives held", route.any_of.size());
      return deny(Outcome::InsufficientScope);
    }
  }
  d.verdict = Verdict::Allow;
  d.outcome = Outcome::Allowed;
  return d;
}

Engine::RequestDecision Engine::decide_request(std::string_view method, std::string_view target,
                                               std::string& canonical_path, Credential credential,
                                               const Rights* rights) const {
  RequestDecision r;
  r.target = canonicalize_target(method, target, canonical_path, canonical_options_);
  if (r.target.error != PathError::None) {
    r.decision.verdict = Verdict::Deny;
    r.decision.outcome = Outcome::BadRequest;
    return r;
  }
  r.match = match(method, canonical_path);
  r.decision = decide(r.match, credential, credential == Credential::Valid ? rights : nullptr);
  return r;
}

Outcome Engine::check_outcome(const RequestDecision& decided, std::string_view target,
                              std::string_view canonical_path) noexcept {
  if (decided.target.error != PathError::None) return Outcome::NonCanonicalTarget;
  if (!decided.target.asterisk && target.substr(0, target.find('?')) != canonical_path) {
    return Outcome::NonCanonicalTarget;
  }
  return decided.decision.outcome;
}

}  // namespace tokengate::policy
