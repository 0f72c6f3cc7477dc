// Helper for the kill -9 test: creates tokens forever and reports each plaintext on
// stdout only after create() has returned (i.e. after the synced write).
#include <unistd.h>

#include <cstdio>
#include <string>

#include "store/token_store.hpp"

int main(int argc, char** argv) {
  if (argc != 3) return 2;
  tokengate::store::TokenStore::Options options;
  options.path = argv[1];
  options.key_file = argv[2];
  auto store = tokengate::store::TokenStore::open(options);
  for (int i = 0;; ++i) {
    tokengate::store::NewToken request;
    request.name = "crash-" + std::to_string(i);
    auto issued = store->create(request);
    std::string line = issued.token.reveal() + "\n";
    // write(2), not stdio: nothing may sit in a user-space buffer when the kill lands.
    if (::write(1, line.data(), line.size()) != static_cast<ssize_t>(line.size())) return 1;
  }
}
