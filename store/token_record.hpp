// A token record as docs/admin-api.md, "Token records", describes it, and its JSON
// form (never secrets).
#pragma once

#include <boost/json/object.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

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

  bool expired_at(TimePoint now) const noexcept { return expires_at && *expires_at <= now; }
};

// "2026-11-27T22:39:02Z"
std::string format_rfc3339(TimePoint t);
// RFC 3339 with Z or a numeric offset, fractional seconds truncated. nullopt if malformed.
std::optional<TimePoint> parse_rfc3339(std::string_view text);

// The public JSON form used by `--json`, the admin API and the store itself:
// {"id","name","description","roles","groups","permissions","licenses",
//  "created_at","updated_at","expires_at","last_used_at","rotated_at","created_by"}
// (times as RFC 3339 strings or null).
boost::json::object to_json(const TokenRecord& record);

// Sorts and de-duplicates a name list in place.
void normalize_names(std::vector<std::string>& names);

}  // namespace tokengate::store
