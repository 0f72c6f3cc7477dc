// The one interface every `tokengate token ...` command goes through: the direct
// backend opens the store in this process; the socket backend talks to a running
// gateway's admin.socket. Both give the same records, so output stays identical.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
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
// `locked_hint` is added to the error when the store is locked by a running gateway.
std::unique_ptr<TokenBackend> make_direct_backend(std::shared_ptr<const conf::Config> config,
                                                  std::string locked_hint = {});

// Talks HTTP to the admin API on the unix socket at `socket` (trusted: no token).
std::unique_ptr<TokenBackend> make_socket_backend(const std::filesystem::path& socket);

// nullopt if something accepts connections at `socket`, else why not.
std::optional<std::string> probe_admin_socket(const std::filesystem::path& socket);

// The socket backend when config.admin.socket answers (a gateway runs), else the
// direct backend, whose "store is locked" error then says what to do.
std::unique_ptr<TokenBackend> make_backend(std::shared_ptr<const conf::Config> config);

}  // namespace tokengate::cli
