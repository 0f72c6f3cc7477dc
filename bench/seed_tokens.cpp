// seed_tokens: creates many tokens in a store for the benchmark's large-store
// scenario, through the same TokenManager the CLI uses (same validation, same
// synced writes), in one process instead of one CLI process per token.
//
//   seed_tokens --config FILE --count N [--prefix NAME]
//
// Prints one plaintext per line on stdout (the benchmark's token lists), progress
// on stderr. The gateway must not be running (it locks the store).
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>

#include "conf/config.hpp"
#include "store/token_manager.hpp"
#include "store/token_store.hpp"

using namespace tokengate;

int main(int argc, char** argv) {
  std::string config_file;
  std::string prefix = "bench";
  long count = -1;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--config" && i + 1 < argc) {
      config_file = argv[++i];
    } else if (arg == "--count" && i + 1 < argc) {
      char* end = nullptr;
      count = std::strtol(argv[++i], &end, 10);
      if (*end != '\0') count = -1;
    } else if (arg == "--prefix" && i + 1 < argc) {
      prefix = argv[++i];
    } else {
      count = -1;
      break;
    }
  }
  if (config_file.empty() || count < 0) {
    std::fputs("usage: seed_tokens --config FILE --count N [--prefix NAME]\n", stderr);
    return 2;
  }
  try {
    const auto config = conf::load_config(config_file);
    const auto store =
        store::TokenStore::open({.path = config->store.path, .key_file = config->store.key_file});
    store::TokenManager manager(*store, config);
    const auto start = std::chrono::steady_clock::now();
    std::string out;
    for (long i = 0; i < count; ++i) {
      store::NewToken request;
      request.name = fmt::format("{}-{}", prefix, i);
      request.created_by = "seed_tokens";
      const auto issued = manager.create(std::move(request));
      out.append(issued.token.reveal());
      out += '\n';
      if (out.size() > (1 << 16)) {
        std::fwrite(out.data(), 1, out.size(), stdout);
        out.clear();
      }
      if ((i + 1) % 10000 == 0) std::fprintf(stderr, "seed_tokens: %ld tokens\n", i + 1);
    }
    std::fwrite(out.data(), 1, out.size(), stdout);
    std::fflush(stdout);
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
    std::fprintf(stderr, "seed_tokens: created %ld tokens in %.1f s\n", count, took.count());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
