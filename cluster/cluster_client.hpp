// The command line in cluster mode with no gateway running: token commands and
// `store migrate` / `store import` talk to PostgreSQL directly. Each call runs its
// coroutine on a private io_context until it ends (blocking is fine here: this is a
// command, not the gateway). The local copy is not touched: the gateways pick the
// change up from PostgreSQL.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "conf/config.hpp"
#include "store/token_store.hpp"

namespace tokengate::cluster {

// A TokenStore whose writes commit in PostgreSQL (config.store.postgres must be
// set). Throws store::StoreUnavailable when PostgreSQL cannot be reached, and
// store::StoreError for what the operator must fix (schema, key).
std::unique_ptr<store::TokenStore> open_cluster_client(const conf::Config& config);

// `tokengate store migrate`: one line describing what was done.
std::string run_migrate(const conf::Config& config);

// `tokengate store import --from DIR`: copies the single-node store at DIR (same
// key file as the config) into PostgreSQL. One line describing what was done.
std::string run_import(const conf::Config& config, const std::filesystem::path& from);

}  // namespace tokengate::cluster
