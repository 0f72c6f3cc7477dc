// `tokengate serve`: runs the gateway until SIGTERM/SIGINT.
#pragma once

#include <filesystem>
#include <string>

namespace tokengate::gateway {

struct ServeOptions {
  std::filesystem::path config;
  std::string log_format = "json";  // "json" | "text"
  std::string log_level = "info";   // "debug" | "info" | "warn" | "error"
};

// Blocks until stopped. Startup failures (config, store, TLS, bind) are printed
// as one line on stderr and give exit code 1. Returns the process exit code.
int serve(const ServeOptions& options);

}  // namespace tokengate::gateway
