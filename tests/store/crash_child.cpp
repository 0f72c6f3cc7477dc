// Helper for the durability tests, run as a real child process:
//   crash_child DB KEY        creates tokens forever (the parent kill -9s it)
//   crash_child DB KEY full   the same under a small RLIMIT_FSIZE, until a write fails
// Each plaintext is reported on stdout only after create() returned (the synced write).
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "store/token_store.hpp"

namespace {
bool report(const std::string& line) {
  // write(2), not stdio: nothing may sit in a user-space buffer when the kill lands.
  return ::write(1, line.data(), line.size()) == static_cast<ssize_t>(line.size());
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 && argc != 4) return 2;
  const bool full = argc == 4 && std::strcmp(argv[3], "full") == 0;
  tokengate::store::TokenStore::Options options;
  options.path = argv[1];
  options.key_file = argv[2];
  auto store = tokengate::store::TokenStore::open(options);
  if (full) {
    // A "disk" that fills up: writes past 256 KiB per file fail with EFBIG.
    ::signal(SIGXFSZ, SIG_IGN);
    rlimit limit{256 * 1024, 256 * 1024};
    if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) return 3;
  }
  for (int i = 0;; ++i) {
    tokengate::store::NewToken request;
    request.name = "crash-" + std::to_string(i);
    if (full) request.description = std::string(8000, 'd');
    try {
      auto issued = store->create(request);
      if (!report(issued.token.reveal() + "\n")) return 1;
    } catch (const tokengate::store::StoreError& e) {
      std::string what = e.what();
      if (what.find('\n') != std::string::npos) return 4;
      report("ERROR " + what + "\n");
      // Later writes must fail too or succeed whole; never leave a half record.
      for (int j = 0; j < 3; ++j) {
        try {
          request.name = "after-" + std::to_string(j);
          report(store->create(request).token.reveal() + "\n");
        } catch (const tokengate::store::StoreError&) {
        }
      }
      return 0;
    }
  }
}
