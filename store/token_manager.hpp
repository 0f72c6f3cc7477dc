// Token operations as users ask for them (CLI, admin API): validates names against
// the config's roles, groups and licenses, name length, expiry and
// tokens.max_lifetime, then calls the store. One place for these rules.
#pragma once

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "conf/config.hpp"
#include "store/token_store.hpp"

namespace tokengate::store {

// A request that breaks a rule; what() is one line naming the offending value,
// e.g. "unknown role 'orders-reeder' (configured roles: orders-reader, orders-admin)".
class ValidationError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class TokenManager {
 public:
  TokenManager(TokenStore& store, std::shared_ptr<const conf::Config> config);

  void set_config(std::shared_ptr<const conf::Config> config);  // after a reload

  IssuedToken create(NewToken request);                                      // throws ValidationError
  std::optional<TokenRecord> update(std::string_view id, TokenPatch patch);  // throws ValidationError
  std::optional<IssuedToken> rotate(std::string_view id, std::chrono::seconds grace);
  bool remove(std::string_view id);
  std::optional<TokenRecord> get(std::string_view id) const;
  std::vector<TokenRecord> list() const;

  TokenStore& store() noexcept { return store_; }

 private:
  void validate_grants(const NewToken& request) const;

  TokenStore& store_;
  std::shared_ptr<const conf::Config> config_;
};

// Parses WHEN (README.md, "Command line"): RFC 3339, a date YYYY-MM-DD (valid through the end of
// that day, UTC, i.e. the next midnight), or a duration from `now` ("30d").
std::optional<TimePoint> parse_when(std::string_view text, TimePoint now);

}  // namespace tokengate::store
