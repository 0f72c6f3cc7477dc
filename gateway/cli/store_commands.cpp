// `tokengate store migrate` and `tokengate store import` (README.md, "Running
// several gateways"): both need store.postgres in the config.
#include <fmt/core.h>

#include "cluster/cluster_client.hpp"
#include "conf/config.hpp"
#include "gateway/cli/commands.hpp"

namespace tokengate::cli {

int store_migrate(const std::string& config_file) {
  auto config = conf::load_config(config_file);
  fmt::print("{}\n", cluster::run_migrate(*config));
  return 0;
}

int store_import(const std::string& config_file, const std::string& from) {
  auto config = conf::load_config(config_file);
  fmt::print("{}\n", cluster::run_import(*config, from));
  return 0;
}

}  // namespace tokengate::cli
