// `tokengate token create|list|show|update|rotate|delete`: turns options into
// TokenBackend calls and prints the results. Plaintext tokens go to stdout alone
// on the first line; everything meant for people goes to stderr.
#include <fmt/core.h>

#include <algorithm>
#include <boost/json/array.hpp>
#include <iostream>
#include <set>

#include "conf/config.hpp"
#include "gateway/cli/commands.hpp"
#include "gateway/cli/output.hpp"
#include "store/token_manager.hpp"

namespace tokengate::cli {
namespace {

store::TimePoint parse_expires(const std::string& text) {
  auto when = store::parse_when(text, store::system_now());
  if (!when) {
    throw UserError(fmt::format(
        "invalid --expires '{}': expected an RFC 3339 time, a date YYYY-MM-DD, a duration like 30d or never",
        text));
  }
  return *when;
}

// `--rate-limit RATE[:BURST]`; "default" (nullopt) = the configured default.
std::optional<conf::RateLimit> parse_rate_limit_option(const std::string& text) {
  if (text == "default") return std::nullopt;
  std::string error;
  auto limit = conf::parse_rate_limit_arg(text, error);
  if (!limit)
    throw UserError(fmt::format(
        "--rate-limit: {} (expected RATE[:BURST] such as 100/s or 6000/m:500, or default)", error));
  return limit;
}

std::string no_token(const std::string& id) { return fmt::format("no token with id '{}'", id); }

// The details printed to stderr after create and rotate, indented under the
// headline that names the id; `extra` adds lines such as the rotation grace.
void print_issued(const store::IssuedToken& issued, bool json, std::string_view verb, const Fields& extra) {
  if (json) {
    print_json(record_json(issued.record, &issued.token.reveal()));
    return;
  }
  // First and only line on stdout, so `T=$(tokengate token create ...)` captures it.
  std::cout << issued.token.reveal() << '\n' << std::flush;
  Fields details;
  for (auto& field : record_fields(issued.record, store::system_now())) {
    const auto& key = field.first;
    if (key == "name" || key == "roles" || key == "groups" || key == "permissions" || key == "licenses" ||
        key == "expires_at" || key == "rate_limit") {
      details.push_back(std::move(field));
    }
  }
  details.insert(details.end(), extra.begin(), extra.end());
  std::string text = fmt::format("{} token {}\n", verb, issued.record.id);
  const std::string rendered = render_fields(details);
  for (std::string_view rest = rendered; !rest.empty();) {
    const auto end = rest.find('\n');
    text += fmt::format("  {}\n", rest.substr(0, end));
    rest.remove_prefix(end == std::string_view::npos ? rest.size() : end + 1);
  }
  text += "warning: this is the only time the token is shown; it cannot be retrieved again\n";
  fmt::print(stderr, "{}", text);
}

std::string table_set(const std::vector<std::string>& names) {
  return names.empty() ? "-" : join(names, ",");
}

// (current ∪ add) \ remove, sorted; nullopt when neither list was given so the
// patch leaves the set alone.
std::optional<std::vector<std::string>> edit_set(const std::vector<std::string>& current,
                                                 const std::vector<std::string>& add,
                                                 const std::vector<std::string>& remove) {
  if (add.empty() && remove.empty()) return std::nullopt;
  std::set<std::string> names(current.begin(), current.end());
  names.insert(add.begin(), add.end());
  for (const auto& name : remove) names.erase(name);
  return std::vector<std::string>(names.begin(), names.end());
}

}  // namespace

int token_create(TokenBackend& backend, const TokenCreateOptions& options) {
  store::NewToken request;
  request.name = options.name;
  request.description = options.description;
  request.roles = options.roles;
  request.groups = options.groups;
  request.permissions = options.permissions;
  request.licenses = options.licenses;
  if (options.expires && *options.expires != "never") request.expires_at = parse_expires(*options.expires);
  if (options.rate_limit) request.rate_limit = parse_rate_limit_option(*options.rate_limit);
  request.created_by = "cli";
  const store::IssuedToken issued = backend.create(request);
  print_issued(issued, options.json, "created", {});
  return 0;
}

int token_list(TokenBackend& backend, bool json) {
  const auto records = backend.list();
  if (json) {
    boost::json::array out;
    for (const auto& record : records) out.push_back(record_json(record));
    print_json(out);
    return 0;
  }
  const auto now = store::system_now();
  std::vector<std::vector<std::string>> rows;
  for (const auto& r : records) {
    std::string expires = format_time(r.expires_at, "-");
    if (r.expired_at(now)) expires += " (expired)";
    rows.push_back({r.id, r.name, table_set(r.roles), table_set(r.groups), table_set(r.permissions),
                    table_set(r.licenses), expires, format_time(r.last_used_at, "-"),
                    rate_limit_text(r.rate_limit)});
  }
  std::cout << render_table({"ID", "NAME", "ROLES", "GROUPS", "PERMISSIONS", "LICENSES", "EXPIRES",
                             "LAST USED", "RATE LIMIT"},
                            rows)
            << std::flush;
  return 0;
}

int token_show(TokenBackend& backend, const std::string& id, bool json) {
  const auto record = backend.get(id);
  if (!record) throw UserError(no_token(id));
  if (json) {
    print_json(record_json(*record));
  } else {
    std::cout << render_fields(record_fields(*record, store::system_now())) << std::flush;
  }
  return 0;
}

int token_update(TokenBackend& backend, const TokenUpdateOptions& o) {
  const bool any_change = o.name || o.description || o.expires || o.rate_limit || !o.add_roles.empty() ||
                          !o.remove_roles.empty() || !o.add_groups.empty() || !o.remove_groups.empty() ||
                          !o.add_permissions.empty() || !o.remove_permissions.empty() ||
                          !o.add_licenses.empty() || !o.remove_licenses.empty();
  if (!any_change) {
    throw UserError(
        "nothing to update: give --name, --description, --expires, --rate-limit or --add-*/--remove-* "
        "options");
  }
  // Parse before touching the store so a typo changes nothing.
  std::optional<std::optional<store::TimePoint>> expires;
  if (o.expires) {
    if (*o.expires == "never") {
      expires.emplace(std::nullopt);
    } else {
      expires.emplace(parse_expires(*o.expires));
    }
  }
  std::optional<std::optional<conf::RateLimit>> rate_limit;
  if (o.rate_limit) rate_limit.emplace(parse_rate_limit_option(*o.rate_limit));
  const auto current = backend.get(o.id);
  if (!current) throw UserError(no_token(o.id));

  store::TokenPatch patch;
  patch.name = o.name;
  patch.description = o.description;
  patch.roles = edit_set(current->roles, o.add_roles, o.remove_roles);
  patch.groups = edit_set(current->groups, o.add_groups, o.remove_groups);
  patch.permissions = edit_set(current->permissions, o.add_permissions, o.remove_permissions);
  patch.licenses = edit_set(current->licenses, o.add_licenses, o.remove_licenses);
  patch.expires_at = expires;
  patch.rate_limit = rate_limit;

  const auto updated = backend.update(o.id, patch);
  if (!updated) throw UserError(no_token(o.id));  // deleted in between
  if (o.json) {
    print_json(record_json(*updated));
  } else {
    std::cout << render_fields(record_fields(*updated, store::system_now())) << std::flush;
    fmt::print(stderr, "updated token {}\n", updated->id);
  }
  return 0;
}

int token_rotate(TokenBackend& backend, const std::string& id, const std::optional<std::string>& grace_text,
                 bool json) {
  std::chrono::seconds grace{0};
  if (grace_text) {
    const auto d = conf::parse_duration(*grace_text);
    if (!d) throw UserError(fmt::format("invalid --grace '{}': expected a duration like 10m", *grace_text));
    // Round up: a grace of 500ms should not silently become no grace at all.
    grace = std::chrono::ceil<std::chrono::seconds>(*d);
  }
  const auto issued = backend.rotate(id, grace);
  if (!issued) throw UserError(no_token(id));
  std::string previous;
  if (grace.count() == 0) {
    previous = "revoked now";
  } else {
    const auto rotated = issued->record.rotated_at.value_or(store::system_now());
    previous = fmt::format("valid until {} (grace {})", store::format_rfc3339(rotated + grace),
                           conf::format_duration(grace));
  }
  print_issued(*issued, json, "rotated", {{"old secret", previous}});
  return 0;
}

int token_delete(TokenBackend& backend, const std::string& id) {
  const auto record = backend.get(id);
  if (!record || !backend.remove(id)) throw UserError(no_token(id));
  fmt::print(stderr, "deleted token {} ({})\n", record->id, record->name);
  return 0;
}

}  // namespace tokengate::cli
