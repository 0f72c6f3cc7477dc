#include "cluster/cluster_client.hpp"

#include <fmt/format.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <system_error>

#include "cluster/pg_tokens.hpp"

namespace tokengate::cluster {

namespace asio = boost::asio;

namespace {

ConnectOptions connect_options(const conf::PostgresConfig& pg) {
  ConnectOptions o;
  o.url = pg.url;
  o.password_file = pg.password_file;
  return o;
}

// A PostgreSQL failure as the user sees it: unreachable / timed out is
// "unavailable" (exit 1, admin 503); an error the server answered is reported as is.
[[noreturn]] void rethrow_pg(const PgError& e) {
  if (e.broken || e.sqlstate.empty())
    throw store::StoreUnavailable(fmt::format("PostgreSQL is unavailable: {}", e.what()));
  throw store::StoreError(fmt::format("PostgreSQL: {}", e.what()));
}

// One connection, opened on first use; every call runs to its end on `context_`.
class Session {
 public:
  explicit Session(const conf::PostgresConfig& pg)
      : options_(connect_options(pg)), conn_(context_.get_executor()) {}

  template <typename F>
  auto run(F body) -> decltype(body(std::declval<PgConnection&>()).await_resume()) {
    using T = decltype(body(std::declval<PgConnection&>()).await_resume());
    auto op = [this, &body]() -> asio::awaitable<T> {
      if (!conn_.connected()) co_await conn_.connect(options_);
      co_return co_await body(conn_);
    };
    auto future = asio::co_spawn(context_, op(), asio::use_future);
    context_.restart();
    context_.run();
    try {
      return future.get();
    } catch (const PgError& e) {
      rethrow_pg(e);
    }
  }

 private:
  ConnectOptions options_;
  asio::io_context context_;
  PgConnection conn_;
};

class ClusterClientStore final : public store::TokenStore {
 public:
  ClusterClientStore(const conf::Config& config)
      // The key must exist already: a node with a fresh random key could only be refused.
      : key_(store::ServerKey::load(config.store.key_file, false)), session_(*config.store.postgres) {
    session_.run([this](PgConnection& c) { return open_cluster(c, key_, /*create_if_empty=*/false); });
  }

  store::IssuedToken create(const store::NewToken& request) override {
    auto r = session_.run([&](PgConnection& c) { return create_token(c, request, key_, now()); });
    return std::move(*r.issued);
  }
  std::optional<store::TokenRecord> update(std::string_view id, const store::TokenPatch& patch) override {
    if (!store::is_valid_id(id)) return std::nullopt;
    auto r = session_.run([&](PgConnection& c) { return update_token(c, std::string(id), patch, now()); });
    return r.record;
  }
  std::optional<store::IssuedToken> rotate(std::string_view id, std::chrono::seconds grace) override {
    if (!store::is_valid_id(id)) return std::nullopt;
    auto r =
        session_.run([&](PgConnection& c) { return rotate_token(c, std::string(id), grace, key_, now()); });
    return std::move(r.issued);
  }
  bool remove(std::string_view id) override {
    if (!store::is_valid_id(id)) return false;
    auto r = session_.run([&](PgConnection& c) { return remove_token(c, std::string(id)); });
    return r.revision != 0;
  }
  std::optional<store::TokenRecord> get(std::string_view id) const override {
    return session_.run([&](PgConnection& c) { return get_token(c, std::string(id)); });
  }
  std::vector<store::TokenRecord> list() const override {
    return session_.run([](PgConnection& c) { return list_tokens(c); });
  }
  std::vector<store::StoredToken> load_all() const override {
    return session_.run([](PgConnection& c) -> asio::awaitable<std::vector<store::StoredToken>> {
      co_return (co_await load_snapshot(c)).tokens;
    });
  }
  store::VerifyResult verify(std::string_view token) const override {
    auto parsed = store::parse_token(token);
    if (!parsed) return {store::VerifyFailure::Malformed, nullptr};
    auto rows = session_.run([&](PgConnection& c) -> asio::awaitable<std::vector<store::StoredToken>> {
      co_return (co_await load_snapshot(c)).tokens;
    });
    for (auto& t : rows) {
      if (t.record.id != parsed->id) continue;
      auto f = store::check_secret(t, parsed->secret, key_, now());
      if (f != store::VerifyFailure::None) return {f, nullptr};
      return {f, std::make_shared<const store::StoredToken>(std::move(t))};
    }
    return {store::VerifyFailure::Unknown, nullptr};
  }
  void record_last_used(const std::vector<std::pair<std::string, store::TimePoint>>& uses) override {
    session_.run([&](PgConnection& c) { return cluster::record_last_used(c, uses); });
  }
  // Nothing in this process follows the change stream.
  void set_change_listener(ChangeListener) override {}
  const store::ServerKey& key() const noexcept override { return key_; }
  store::TimePoint now() const override { return store::system_now(); }

 private:
  store::ServerKey key_;
  mutable Session session_;
};

}  // namespace

std::unique_ptr<store::TokenStore> open_cluster_client(const conf::Config& config) {
  return std::make_unique<ClusterClientStore>(config);
}

std::string run_migrate(const conf::Config& config) {
  if (!config.store.postgres)
    throw store::StoreError("the config sets no store.postgres: there is nothing to migrate");
  Session session(*config.store.postgres);
  const int found = session.run([](PgConnection& c) { return migrate(c); });
  if (found == kSchemaVersion) return fmt::format("schema is up to date (version {})", kSchemaVersion);
  if (found == 0) return fmt::format("created the schema (version {})", kSchemaVersion);
  return fmt::format("upgraded the schema from version {} to {}", found, kSchemaVersion);
}

std::string run_import(const conf::Config& config, const std::filesystem::path& from) {
  if (!config.store.postgres)
    throw store::StoreError("the config sets no store.postgres: nowhere to import to");
  std::error_code ec;
  if (!std::filesystem::is_directory(from, ec))
    throw store::StoreError(fmt::format("{} is not a directory", from.string()));
  // Opening the source with the config's key file checks that it is the key the
  // tokens were made with (the store refuses another one): their secrets keep working.
  auto source = store::TokenStore::open({.path = from, .key_file = config.store.key_file});
  auto tokens = source->load_all();
  Session session(*config.store.postgres);
  const auto& key = source->key();
  session.run([&](PgConnection& c) { return open_cluster(c, key, /*create_if_empty=*/false); });
  auto [copied, skipped] = session.run([&](PgConnection& c) { return import_tokens(c, tokens); });
  return fmt::format("imported {} token(s) from {}; {} already present, left unchanged", copied,
                     from.string(), skipped);
}

}  // namespace tokengate::cluster
