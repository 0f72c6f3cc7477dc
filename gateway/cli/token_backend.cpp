// DirectBackend: token commands against the RocksDB store opened in this process,
// with TokenManager enforcing the config's rules (known names, max_lifetime).
#include "gateway/cli/token_backend.hpp"

#include <fmt/format.h>

#include <filesystem>
#include <system_error>

#include "cluster/cluster_client.hpp"
#include "store/token_manager.hpp"

namespace tokengate::cli {
namespace {

class DirectBackend final : public TokenBackend {
 public:
  DirectBackend(std::shared_ptr<const conf::Config> config, std::string locked_hint)
      : config_(std::move(config)), locked_hint_(std::move(locked_hint)) {}

  store::IssuedToken create(const store::NewToken& request) override {
    return manager(/*create_store=*/true)->create(request);
  }

  std::optional<store::TokenRecord> update(std::string_view id, const store::TokenPatch& patch) override {
    auto* m = manager(false);
    if (!m) return std::nullopt;
    return m->update(id, patch);
  }

  std::optional<store::IssuedToken> rotate(std::string_view id, std::chrono::seconds grace) override {
    auto* m = manager(false);
    if (!m) return std::nullopt;
    return m->rotate(id, grace);
  }

  bool remove(std::string_view id) override {
    auto* m = manager(false);
    return m && m->remove(id);
  }

  std::optional<store::TokenRecord> get(std::string_view id) override {
    auto* m = manager(false);
    if (!m) return std::nullopt;
    return m->get(id);
  }

  std::vector<store::TokenRecord> list() override {
    auto* m = manager(false);
    if (!m) return {};
    return m->list();
  }

 private:
  // nullptr when the store does not exist and may not be created: a read of a
  // typo'd config must not leave a new empty store (and key file) behind.
  store::TokenManager* manager(bool create_store) {
    if (manager_) return manager_.get();
    if (config_->store.postgres) {
      // Cluster mode: PostgreSQL is the token set; this node's local copy is the
      // gateway's (it follows the change from PostgreSQL when it runs).
      store_ = cluster::open_cluster_client(*config_);
      manager_ = std::make_unique<store::TokenManager>(*store_, config_);
      return manager_.get();
    }
    std::error_code ec;
    if (!create_store && !std::filesystem::exists(config_->store.path, ec)) return nullptr;
    try {
      store_ = store::TokenStore::open({.path = config_->store.path, .key_file = config_->store.key_file});
    } catch (const store::StoreError& e) {
      if (locked_hint_.empty() || std::string_view(e.what()).find("is locked") == std::string_view::npos)
        throw;
      throw store::StoreError(fmt::format("store {} is locked by a running gateway and {}",
                                          config_->store.path.string(), locked_hint_));
    }
    manager_ = std::make_unique<store::TokenManager>(*store_, config_);
    return manager_.get();
  }

  std::shared_ptr<const conf::Config> config_;
  std::string locked_hint_;
  std::unique_ptr<store::TokenStore> store_;
  std::unique_ptr<store::TokenManager> manager_;  // refers to *store_: declared after it
};

}  // namespace

std::unique_ptr<TokenBackend> make_direct_backend(std::shared_ptr<const conf::Config> config,
                                                  std::string locked_hint) {
  return std::make_unique<DirectBackend>(std::move(config), std::move(locked_hint));
}

std::unique_ptr<TokenBackend> make_backend(std::shared_ptr<const conf::Config> config) {
  std::string hint;
  if (config->admin.socket) {
    const auto& socket = *config->admin.socket;
    const auto why_not = probe_admin_socket(socket);
    if (!why_not) return make_socket_backend(socket);
    hint = fmt::format(
        "its admin socket {} does not answer ({}): check that the gateway is healthy and that you may open "
        "the "
        "socket (mode 0600: run as the gateway's user), or stop the gateway",
        socket.string(), *why_not);
  } else {
    hint =
        "the config sets no admin.socket: add `admin: {socket: PATH}` and restart the gateway so token "
        "commands "
        "go through it, or stop the gateway";
  }
  return make_direct_backend(std::move(config), std::move(hint));
}

}  // namespace tokengate::cli
