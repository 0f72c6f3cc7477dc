// The subcommands of README.md, "Command line", as plain functions of parsed options, so the
// parser (cli.cpp) stays a thin layer. Each returns the exit code; user errors
// are thrown (ConfigError, StoreError, ValidationError, UserError) and turned into
// one `error: ` line by cli::run.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "gateway/cli/token_backend.hpp"

namespace tokengate::cli {

// A user error found by the CLI itself (bad --expires, unknown id, ...).
class UserError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct CheckOptions {
  std::string config;
};
int run_check(const CheckOptions& options);

struct ExplainOptions {
  std::string config;
  std::optional<std::string> token_id;
  // Hypothetical grants: when given (even empty), "a valid token holding these".
  bool grants_given = false;
  std::vector<std::string> roles, groups, permissions, licenses;
  bool json = false;
  std::string method;
  std::string path;
};
int run_explain(const ExplainOptions& options);

struct TokenCreateOptions {
  std::string name;
  std::string description;
  std::vector<std::string> roles, groups, permissions, licenses;
  std::optional<std::string> expires;
  std::optional<std::string> rate_limit;  // RATE[:BURST]
  bool json = false;
};

struct TokenUpdateOptions {
  std::string id;
  std::optional<std::string> name;
  std::optional<std::string> description;
  std::vector<std::string> add_roles, remove_roles, add_groups, remove_groups;
  std::vector<std::string> add_permissions, remove_permissions, add_licenses, remove_licenses;
  std::optional<std::string> expires;     // WHEN or "never"
  std::optional<std::string> rate_limit;  // RATE[:BURST] or "default"
  bool json = false;
};

// Cluster mode (store.postgres): create or upgrade the schema; copy a single-node store in.
int store_migrate(const std::string& config_file);
int store_import(const std::string& config_file, const std::string& from);

int token_create(TokenBackend& backend, const TokenCreateOptions& options);
int token_list(TokenBackend& backend, bool json);
int token_show(TokenBackend& backend, const std::string& id, bool json);
int token_update(TokenBackend& backend, const TokenUpdateOptions& options);
int token_rotate(TokenBackend& backend, const std::string& id, const std::optional<std::string>& grace,
                 bool json);
int token_delete(TokenBackend& backend, const std::string& id);

}  // namespace tokengate::cli
