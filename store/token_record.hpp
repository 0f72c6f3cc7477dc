// A token record as docs/admin-api.md, "Token records", describes it, and its JSON
// form (never secrets).
#pragma once

#include <boost/json/object.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "conf/rate_limit.hpp"
#include "store/clock.hpp"

namespace tokengate::store {

struct TokenRecord {
  std::string id;
  std::string name;
  std::string description;
  std::vector<std::string> roles;  // each set sorted, unique
  std::vector<std::string> groups;
  std::vector<std::string> permissions;
  std::vector<std::string> licenses;
  TimePoint created_at{};
  TimePoint updated_at{};
  std::optional<TimePoint> expires_at;
  std::optional<TimePoint> last_used_at;
  std::optional<TimePoint> rotated_at;
  std::string created_by;  // token id of the creator, or "cli"
  // The token's own rate limit; none = tokens.default_rate_limit (README.md, "Rate limits").
  std::optional<conf::RateLimit> rate_limit;

  bool expired_at(TimePoint now) const noexcept { return expires_at && *expires_at <= now; }
};

// "2026-11-27T22:39:02Z"
std::string format_rfc3339(TimePoint t);
// RFC 3339 with Z or a numeric offset, fractional seconds truncated. nullopt if malformed.
std::optional<TimePoint> parse_rfc3339(std::string_view text);

// The public JSON form used by `--json`, the admin API and the store itself:
// {"id","name","description","roles","groups","permissions","licenses",
//  "created_at","updated_at","expires_at","last_used_at","rotated_at","created_by","rate_limit"}
// (times as RFC 3339 strings or null; rate_limit as {"rate": "100/s", "burst": 200} or null).
boost::json::object to_json(const TokenRecord& record);

// A rate limit's JSON form, {"rate": "100/s", "burst": 200}, or null.
boost::json::value rate_limit_json(const std::optional<conf::RateLimit>& limit);
// Reads that form (burst optional: it defaults to the count; null = none). On a
// malformed value returns false with `error` set to one phrase.
bool rate_limit_from_json(const boost::json::value& value, std::optional<conf::RateLimit>& out,
                          std::string& error);

// Sorts and de-duplicates a name list in place.
void normalize_names(std::vector<std::string>& names);

}  // namespace tokengate::store
