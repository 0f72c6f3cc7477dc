// The one interface every `tokengate token ...` command goes through. Today the
// only implementation opens the store directly; an admin-socket client (for when
// the gateway is running) implements the same calls, so output stays identical.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "conf/config.hpp"
#include "store/token_store.hpp"

namespace tokengate::cli {

// Errors: store::ValidationError (a rule was broken, e.g. unknown role),
// store::StoreError (store cannot be opened or written). Both carry one line.
class TokenBackend {
 public:
  virtual ~TokenBackend() = default;

  virtual store::IssuedToken create(const store::NewToken& request) = 0;
  virtual std::optional<store::TokenRecord> update(std::string_view id, const store::TokenPatch& patch) = 0;
  virtual std::optional<store::IssuedToken> rotate(std::string_view id, std::chrono::seconds grace) = 0;
  virtual bool remove(std::string_view id) = 0;
  virtual std::optional<store::TokenRecord> get(std::string_view id) = 0;
  virtual std::vector<store::TokenRecord> list() = 0;
};

// Opens config.store (path, key_file) in this process. Commands that only read or
// change existing tokens do not create a store that does not exist yet.
std::unique_ptr<TokenBackend> make_direct_backend(std::shared_ptr<const conf::Config> config);

}  // namespace tokengate::cli
