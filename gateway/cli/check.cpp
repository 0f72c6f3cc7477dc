// `tokengate check`: load the config, lint the routes, print compiler-style
// findings (FILE:LINE:COL: error|warning: ...) so editors and CI can jump to them.
#include <fmt/core.h>

#include <algorithm>

#include "conf/config.hpp"
#include "gateway/cli/commands.hpp"
#include "policy/lint.hpp"

namespace tokengate::cli {
namespace {

std::string location(const std::string& file, conf::Mark mark) {
  if (mark.line <= 0) return file;
  if (mark.column <= 0) return fmt::format("{}:{}", file, mark.line);
  return fmt::format("{}:{}:{}", file, mark.line, mark.column);
}

std::string plural(std::size_t n, std::string_view word) {
  return fmt::format("{} {}{}", n, word, n == 1 ? "" : "s");
}

}  // namespace

int run_check(const CheckOptions& options) {
  std::shared_ptr<const conf::Config> config;
  try {
    config = conf::load_config(options.config);
  } catch (const conf::ConfigError& e) {
    // Same shape as the lint findings below rather than the generic "error: ..." line.
    fmt::print(stderr, "{}: error: {}\n", location(e.file(), e.mark()), e.message());
    return 1;
  }

  auto findings = policy::lint(*config);
  std::stable_sort(findings.begin(), findings.end(), [](const policy::Finding& a, const policy::Finding& b) {
    return std::pair(a.mark.line, a.mark.column) < std::pair(b.mark.line, b.mark.column);
  });
  std::size_t errors = 0;
  std::size_t warnings = 0;
  for (const auto& finding : findings) {
    const bool is_error = finding.severity == policy::Severity::Error;
    (is_error ? errors : warnings)++;
    fmt::print(stderr, "{}: {}: {}\n", location(options.config, finding.mark), is_error ? "error" : "warning",
               finding.message);
  }
  if (errors > 0) {
    fmt::print(stderr, "{}: {}, {}\n", options.config, plural(errors, "error"), plural(warnings, "warning"));
    return 1;
  }
  fmt::print("ok: {}, {}, {}, {}, {}{}\n", plural(config->routes.size(), "route"),
             plural(config->roles.size(), "role"), plural(config->groups.size(), "group"),
             plural(config->licenses.size(), "license"), plural(config->upstreams.size(), "upstream"),
             warnings > 0 ? fmt::format(" ({})", plural(warnings, "warning")) : std::string());
  return 0;
}

}  // namespace tokengate::cli
