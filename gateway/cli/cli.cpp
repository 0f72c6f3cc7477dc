// The command line (README.md, "Command line"), parsed with CLI11. This file only declares the
// options and maps errors to exit codes; the commands live in commands.hpp.
#include "gateway/cli/cli.hpp"

#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "conf/config.hpp"
#include "gateway/cli/commands.hpp"
#include "gateway/cli/output.hpp"
#include "gateway/server/server.hpp"
#include "store/token_manager.hpp"
#include "store/token_store.hpp"

#ifndef TOKENGATE_VERSION
#define TOKENGATE_VERSION "0.0.0"
#endif

namespace tokengate::cli {
namespace {

constexpr int kOk = 0;
constexpr int kUserError = 1;
constexpr int kUsage = 2;

CLI::Option* add_config(CLI::App* command, std::string& config) {
  return command->add_option("--config", config, "configuration file (YAML)")->required()->type_name("FILE");
}

// A repeatable option taking one value per occurrence (CLI11 vectors are greedy by
// default and would swallow positionals); commas also separate values.
CLI::Option* add_list(CLI::App* command, const std::string& name, std::vector<std::string>& values,
                      const std::string& help, const std::string& type) {
  return command->add_option(name, values, help)->allow_extra_args(false)->delimiter(',')->type_name(type);
}

// Opens the token backend lazily: usage errors must not touch the config or store.
std::unique_ptr<TokenBackend> backend_for(const std::string& config_file) {
  return make_backend(conf::load_config(config_file));
}

int dispatch(int argc, char** argv) {
  CLI::App app{"tokengate: reverse-proxy authentication gateway with built-in API token management",
               "tokengate"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "tokengate " TOKENGATE_VERSION);

  // serve
  gateway::ServeOptions serve_options;
  std::string serve_config;
  auto* serve = app.add_subcommand("serve", "run the gateway in the foreground (logs to stderr)");
  add_config(serve, serve_config);
  serve->add_option("--log-format", serve_options.log_format, "access and event log format")
      ->check(CLI::IsMember({"json", "text"}))
      ->capture_default_str();
  serve->add_option("--log-level", serve_options.log_level, "minimum level of event logs")
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}))
      ->capture_default_str();

  // check
  CheckOptions check_options;
  auto* check = app.add_subcommand("check", "validate the config and lint the routes; exit 0 ok, 1 errors");
  add_config(check, check_options.config);

  // explain
  ExplainOptions explain_options;
  std::string token_id;
  auto* explain = app.add_subcommand("explain", "show how the gateway would decide one request");
  add_config(explain, explain_options.config);
  auto* token_id_option =
      explain->add_option("--token-id", token_id, "evaluate as this stored token")->type_name("ID");
  std::vector<CLI::Option*> grant_options{
      add_list(explain, "--roles", explain_options.roles, "evaluate as a token with these roles", "a,b"),
      add_list(explain, "--groups", explain_options.groups, "evaluate as a token with these groups", "g"),
      add_list(explain, "--permissions", explain_options.permissions,
               "evaluate as a token with these permissions", "p"),
      add_list(explain, "--licenses", explain_options.licenses, "evaluate as a token with these licenses",
               "l"),
  };
  for (auto* option : grant_options) token_id_option->excludes(option);
  explain->add_flag("--json", explain_options.json, "print one JSON object");
  explain->add_option("METHOD", explain_options.method, "request method, e.g. GET")->required();
  explain->add_option("PATH", explain_options.path, "request target, e.g. /api/orders/1?x=y")->required();

  // token ...
  auto* token = app.add_subcommand("token", "manage API tokens");
  token->require_subcommand(1);

  std::string token_config;
  TokenCreateOptions create_options;
  std::string expires;
  auto* create = token->add_subcommand("create", "create a token; prints the plaintext once");
  add_config(create, token_config);
  create->add_option("--name", create_options.name, "name (1..128 chars)")->required();
  create->add_option("--description", create_options.description, "free text");
  add_list(create, "--role", create_options.roles, "grant a role (repeatable)", "R");
  add_list(create, "--group", create_options.groups, "grant a group (repeatable)", "G");
  add_list(create, "--permission", create_options.permissions, "grant a permission (repeatable)", "P");
  add_list(create, "--license", create_options.licenses, "grant a license (repeatable)", "L");
  auto* create_expires =
      create->add_option("--expires", expires, "RFC 3339 time, YYYY-MM-DD or duration (30d)")
          ->type_name("WHEN");
  std::string rate_limit;
  auto* create_rate_limit =
      create
          ->add_option("--rate-limit", rate_limit,
                       "own rate limit, e.g. 100/s or 6000/m:500 (default: the config's)")
          ->type_name("RATE[:BURST]");
  create->add_flag("--json", create_options.json, "print one JSON object");

  bool list_json = false;
  auto* list = token->add_subcommand("list", "list tokens");
  add_config(list, token_config);
  list->add_flag("--json", list_json, "print a JSON array");

  std::string show_id;
  bool show_json = false;
  auto* show = token->add_subcommand("show", "show one token");
  add_config(show, token_config);
  show->add_option("ID", show_id, "token id")->required();
  show->add_flag("--json", show_json, "print one JSON object");

  TokenUpdateOptions update_options;
  std::string new_name, new_description;
  auto* update = token->add_subcommand("update", "change a token's name, description, grants or expiry");
  add_config(update, token_config);
  update->add_option("ID", update_options.id, "token id")->required();
  auto* update_name = update->add_option("--name", new_name, "new name");
  auto* update_description = update->add_option("--description", new_description, "new description");
  struct SetOptions {
    const char* kind;
    const char* type;
    std::vector<std::string>* add;
    std::vector<std::string>* remove;
  };
  for (const auto& set :
       {SetOptions{"role", "R", &update_options.add_roles, &update_options.remove_roles},
        SetOptions{"group", "G", &update_options.add_groups, &update_options.remove_groups},
        SetOptions{"permission", "P", &update_options.add_permissions, &update_options.remove_permissions},
        SetOptions{"license", "L", &update_options.add_licenses, &update_options.remove_licenses}}) {
    const std::string kind = set.kind;
    add_list(update, "--add-" + kind, *set.add, "grant a " + kind + " (repeatable)", set.type);
    add_list(update, "--remove-" + kind, *set.remove, "revoke a " + kind + " (repeatable)", set.type);
  }
  auto* update_expires =
      update->add_option("--expires", expires, "RFC 3339 time, YYYY-MM-DD, duration (30d) or never")
          ->type_name("WHEN");
  auto* update_rate_limit =
      update->add_option("--rate-limit", rate_limit, "own rate limit (100/s, 6000/m:500) or default")
          ->type_name("RATE[:BURST]");
  update->add_flag("--json", update_options.json, "print one JSON object");

  std::string rotate_id, grace;
  bool rotate_json = false;
  auto* rotate = token->add_subcommand("rotate", "issue a new secret for a token; prints the plaintext once");
  add_config(rotate, token_config);
  rotate->add_option("ID", rotate_id, "token id")->required();
  auto* rotate_grace =
      rotate->add_option("--grace", grace, "keep the old secret working this long (e.g. 10m)")
          ->type_name("DURATION");
  rotate->add_flag("--json", rotate_json, "print one JSON object");

  std::string delete_id;
  auto* remove = token->add_subcommand("delete", "delete a token; it fails from the next request on");
  add_config(remove, token_config);
  remove->add_option("ID", delete_id, "token id")->required();

  // store ... (cluster mode)
  auto* store_cmd = app.add_subcommand("store", "manage the PostgreSQL token store of cluster mode");
  store_cmd->require_subcommand(1);
  std::string store_config, import_from;
  auto* migrate = store_cmd->add_subcommand("migrate", "create or upgrade the PostgreSQL schema");
  add_config(migrate, store_config);
  auto* import = store_cmd->add_subcommand("import", "copy a single-node store into PostgreSQL");
  add_config(import, store_config);
  import->add_option("--from", import_from, "the single-node store directory")->required()->type_name("DIR");

  auto* version = app.add_subcommand("version", "print the version");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // Help and --version are "errors" with exit code 0 in CLI11.
    return app.exit(e) == 0 ? kOk : kUsage;
  }

  if (version->parsed()) {
    fmt::print("tokengate {}\n", TOKENGATE_VERSION);
    return kOk;
  }
  if (serve->parsed()) {
    serve_options.config = serve_config;
    return gateway::serve(serve_options);
  }
  if (check->parsed()) return run_check(check_options);
  if (migrate->parsed()) return store_migrate(store_config);
  if (import->parsed()) return store_import(store_config, import_from);
  if (explain->parsed()) {
    if (!token_id_option->empty()) explain_options.token_id = token_id;
    for (auto* option : grant_options) explain_options.grants_given |= !option->empty();
    return run_explain(explain_options);
  }
  if (create->parsed()) {
    if (!create_expires->empty()) create_options.expires = expires;
    if (!create_rate_limit->empty()) create_options.rate_limit = rate_limit;
    return token_create(*backend_for(token_config), create_options);
  }
  if (list->parsed()) return token_list(*backend_for(token_config), list_json);
  if (show->parsed()) return token_show(*backend_for(token_config), show_id, show_json);
  if (update->parsed()) {
    if (!update_name->empty()) update_options.name = new_name;
    if (!update_description->empty()) update_options.description = new_description;
    if (!update_expires->empty()) update_options.expires = expires;
    if (!update_rate_limit->empty()) update_options.rate_limit = rate_limit;
    return token_update(*backend_for(token_config), update_options);
  }
  if (rotate->parsed()) {
    std::optional<std::string> grace_text;
    if (!rotate_grace->empty()) grace_text = grace;
    return token_rotate(*backend_for(token_config), rotate_id, grace_text, rotate_json);
  }
  if (remove->parsed()) return token_delete(*backend_for(token_config), delete_id);
  return kUsage;  // unreachable: require_subcommand(1) on app and token
}

}  // namespace

int run(int argc, char** argv) {
  // Every user error ends as one "error: ..." line and exit code 1, never a trace.
  try {
    return dispatch(argc, argv);
  } catch (const conf::ConfigError& e) {
    print_error(e.what());
  } catch (const store::ValidationError& e) {
    print_error(e.what());
  } catch (const store::StoreError& e) {
    print_error(e.what());
  } catch (const std::exception& e) {
    print_error(e.what());
  }
  return kUserError;
}

}  // namespace tokengate::cli
