// The configuration path end to end: YAML text -> loader -> policy engine -> lint
// -> route matching. Any input must end in a Config or a ConfigError, quickly and
// within memory (libFuzzer's -timeout and -rss_limit_mb catch the rest). For a
// loaded config, the engine's route index is checked against the plain rule it
// implements: the first route in file order whose pattern and method match.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "check.hpp"
#include "conf/config.hpp"
#include "policy/canonical_path.hpp"
#include "policy/engine.hpp"
#include "policy/lint.hpp"
#include "policy/route_pattern.hpp"

namespace {

namespace conf = tokengate::conf;
namespace policy = tokengate::policy;

// A concrete path each pattern matches: '*' as "x", a trailing '**' as nothing
// and as one more segment.
std::vector<std::string> sample_paths(const policy::RoutePattern& pattern) {
  std::string base;
  bool double_star = false;
  for (const auto& seg : pattern.segments()) {
    switch (seg.kind) {
      case policy::RoutePattern::Kind::Literal:
        base += "/" + seg.literal;
        break;
      case policy::RoutePattern::Kind::Star:
        base += "/x";
        break;
      case policy::RoutePattern::Kind::DoubleStar:
        double_star = true;
        break;
    }
  }
  std::vector<std::string> out{base.empty() ? "/" : base};
  if (double_star) out.push_back(base + "/y/z");
  return out;
}

// The rule itself, route by route.
int first_match(const conf::Config& config, const std::vector<policy::RoutePattern>& patterns,
                std::string_view method, std::string_view path) {
  for (std::size_t i = 0; i < patterns.size(); ++i) {
    const auto& methods = config.routes[i].methods;
    bool method_ok = methods.empty();
    for (const auto& m : methods) method_ok |= m == method;
    if (method_ok && patterns[i].matches(path)) return static_cast<int>(i);
  }
  return -1;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::shared_ptr<const conf::Config> config;
  try {
    config = conf::parse_config(text, "/fuzz/conf/tokengate.yaml");
  } catch (const conf::ConfigError& e) {
    FUZZ_CHECK(e.file() == "/fuzz/conf/tokengate.yaml", text);
    FUZZ_CHECK(!e.message().empty(), text);
    return 0;
  }
  FUZZ_CHECK(config != nullptr, text);

  (void)policy::lint(*config);
  std::shared_ptr<const policy::Engine> engine;
  try {
    engine = policy::Engine::compile(config);
  } catch (const conf::ConfigError&) {
    return 0;  // e.g. more distinct methods than the engine supports, or an invalid pattern
  }

  std::vector<policy::RoutePattern> patterns;
  for (const auto& route : config->routes) {
    std::string error;
    auto pattern = policy::RoutePattern::parse(route.path, &error);
    FUZZ_CHECK(pattern.has_value(), text);  // compile() accepted every pattern
    patterns.push_back(std::move(*pattern));
  }
  std::vector<std::string> methods = {"GET", "POST", "DELETE"};
  for (const auto& route : config->routes) {
    if (!route.methods.empty()) methods.push_back(route.methods.front());
    if (methods.size() > 8) break;
  }
  std::string canonical;
  // Paths every route matches, and a few no route should.
  std::vector<std::string> paths = {"/", "/nothing/here", "/api"};
  for (std::size_t i = 0; i < patterns.size() && paths.size() < 64; ++i) {
    for (auto& p : sample_paths(patterns[i])) paths.push_back(std::move(p));
  }
  for (const auto& raw : paths) {
    const auto target = policy::canonicalize_target("GET", raw, canonical, engine->canonical_options());
    if (target.error != policy::PathError::None || target.asterisk) continue;
    for (const auto& method : methods) {
      const auto match = engine->match(method, canonical);
      FUZZ_CHECK(match.route == first_match(*config, patterns, method, canonical), text);
      if (match.route >= 0) {
        FUZZ_CHECK(static_cast<std::size_t>(match.route) < config->routes.size(), text);
        FUZZ_CHECK(match.path_matched, text);
        const auto decision = engine->decide(match, policy::Credential::None, nullptr);
        FUZZ_CHECK(decision.route == match.route || decision.route == -1, text);
      } else if (match.path_matched) {
        FUZZ_CHECK(!match.allow.empty(), text);
      }
    }
  }
  return 0;
}
