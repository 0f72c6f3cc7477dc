// Token operations as users ask for them: every rule about names, grants and expiry
// is checked here, once, before the store is called.
#include "store/token_manager.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>

namespace tokengate::store {
namespace {

constexpr std::size_t kMaxNameLength = 128;

// RFC 3339 has four-digit years; anything later is a typo, not an expiry.
constexpr TimePoint kLatest{std::chrono::sys_days{std::chrono::year{9999} / 12 / 31} +
                            std::chrono::hours{24} - std::chrono::seconds{1}};

// User input echoed in a one-line message: control bytes are shown escaped.
std::string printable(std::string_view text) {
  std::string out;
  for (unsigned char c : text) {
    if (c < 0x20 || c == 0x7f) {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

// Number of code points if `text` is well-formed UTF-8 (no overlongs, surrogates or
// values past U+10FFFF); nullopt otherwise. Names end up in JSON and in headers.
std::optional<std::size_t> utf8_length(std::string_view text) {
  std::size_t count = 0;
  for (std::size_t i = 0; i < text.size(); ++count) {
    const auto c = static_cast<unsigned char>(text[i]);
    std::size_t n = 0;
    char32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xc2 && c <= 0xdf) {
      n = 1, cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      n = 2, cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3, cp = c & 0x07;
    } else {
      return std::nullopt;
    }
    if (i + n >= text.size()) return std::nullopt;  // truncated sequence
    for (std::size_t k = 1; k <= n; ++k) {
      const auto cc = static_cast<unsigned char>(text[i + k]);
      if ((cc & 0xc0) != 0x80) return std::nullopt;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff)) {
      return std::nullopt;
    }
    i += n + 1;
  }
  return count;
}

std::string join(const std::vector<std::string>& names) {
  if (names.empty()) return "none";
  return fmt::format("{}", fmt::join(names, ", "));
}

template <typename Items, typename Known, typename NameOf>
void check_known(std::string_view kind, std::string_view plural, const std::vector<std::string>& wanted,
                 const Items& items, Known known, NameOf name_of) {
  for (const auto& w : wanted) {
    if (known(w)) continue;
    std::vector<std::string> names;
    for (const auto& item : items) names.push_back(name_of(item));
    throw ValidationError(
        fmt::format("unknown {} '{}' (configured {}: {})", kind, printable(w), plural, join(names)));
  }
}

void check_name(const std::string& name) {
  if (name.empty()) throw ValidationError("token name must not be empty");
  const auto length = utf8_length(name);
  if (!length) throw ValidationError("token name must be valid UTF-8");
  if (*length > kMaxNameLength) {
    throw ValidationError(
        fmt::format("token name is {} characters long; at most {} are allowed", *length, kMaxNameLength));
  }
  for (unsigned char c : name) {
    if (c < 0x20 || c == 0x7f) throw ValidationError("token name must not contain control characters");
  }
}

void check_description(const std::string& description) {
  if (!utf8_length(description)) throw ValidationError("token description must be valid UTF-8");
  for (unsigned char c : description) {
    if ((c < 0x20 && c != '\t') || c == 0x7f) {
      throw ValidationError("token description must not contain control characters");
    }
  }
}

void check_permissions(const std::vector<std::string>& permissions) {
  for (const auto& p : permissions) {
    if (p.empty()) throw ValidationError("a permission must not be empty");
    for (unsigned char c : p) {
      if (c <= 0x20 || c == 0x7f || c == ',') {
        throw ValidationError(fmt::format(
            "permission '{}' must not contain whitespace, commas or control characters", printable(p)));
      }
    }
  }
}

}  // namespace

TokenManager::TokenManager(TokenStore& store, std::shared_ptr<const conf::Config> config)
    : store_(store), config_(std::move(config)) {}

void TokenManager::set_config(std::shared_ptr<const conf::Config> config) { config_ = std::move(config); }

void TokenManager::validate_grants(const NewToken& request) const {
  const conf::Config& c = *config_;
  check_known(
      "role", "roles", request.roles, c.roles,
      [&](const std::string& n) { return c.find_role(n) != nullptr; },
      [](const conf::Role& r) { return r.name; });
  check_known(
      "group", "groups", request.groups, c.groups,
      [&](const std::string& n) { return c.find_group(n) != nullptr; },
      [](const conf::Group& g) { return g.name; });
  check_known(
      "license", "licenses", request.licenses, c.licenses,
      [&](const std::string& n) { return c.has_license(n); }, [](const std::string& l) { return l; });
  check_permissions(request.permissions);
}

namespace {

void check_expiry(const std::optional<TimePoint>& expires_at, const conf::Config& config, TimePoint now) {
  const auto max = std::chrono::duration_cast<std::chrono::seconds>(config.tokens.max_lifetime);
  if (!expires_at) {
    if (max > std::chrono::seconds::zero()) {
      throw ValidationError(fmt::format("tokens.max_lifetime is {}: a token must have an expiry within it",
                                        conf::format_duration(config.tokens.max_lifetime)));
    }
    return;
  }
  if (*expires_at <= now) {
    throw ValidationError(fmt::format("expiry {} is not in the future", format_rfc3339(*expires_at)));
  }
  if (max > std::chrono::seconds::zero() && *expires_at > now + max) {
    throw ValidationError(fmt::format(
        "expiry {} is beyond tokens.max_lifetime ({}, i.e. at most {})", format_rfc3339(*expires_at),
        conf::format_duration(config.tokens.max_lifetime), format_rfc3339(now + max)));
  }
}

}  // namespace

IssuedToken TokenManager::create(NewToken request) {
  check_name(request.name);
  check_description(request.description);
  normalize_names(request.roles);
  normalize_names(request.groups);
  normalize_names(request.permissions);
  normalize_names(request.licenses);
  validate_grants(request);
  check_expiry(request.expires_at, *config_, store_.now());
  return store_.create(request);
}

std::optional<TokenRecord> TokenManager::update(std::string_view id, TokenPatch patch) {
  if (patch.name) check_name(*patch.name);
  if (patch.description) check_description(*patch.description);
  NewToken grants;
  if (patch.roles) normalize_names(*patch.roles), grants.roles = *patch.roles;
  if (patch.groups) normalize_names(*patch.groups), grants.groups = *patch.groups;
  if (patch.permissions) normalize_names(*patch.permissions), grants.permissions = *patch.permissions;
  if (patch.licenses) normalize_names(*patch.licenses), grants.licenses = *patch.licenses;
  validate_grants(grants);
  if (patch.expires_at) check_expiry(*patch.expires_at, *config_, store_.now());
  return store_.update(id, patch);
}

std::optional<IssuedToken> TokenManager::rotate(std::string_view id, std::chrono::seconds grace) {
  if (grace < std::chrono::seconds::zero()) throw ValidationError("rotation grace must not be negative");
  return store_.rotate(id, grace);
}

bool TokenManager::remove(std::string_view id) { return store_.remove(id); }

std::optional<TokenRecord> TokenManager::get(std::string_view id) const { return store_.get(id); }

std::vector<TokenRecord> TokenManager::list() const { return store_.list(); }

std::optional<TimePoint> parse_when(std::string_view text, TimePoint now) {
  using namespace std::chrono;
  if (auto t = parse_rfc3339(text)) return t;  // the parser only reads four-digit years
  if (text.size() == 10 && text[4] == '-' && text[7] == '-') {
    int y = 0;
    unsigned m = 0, d = 0;
    auto ok = [&](std::size_t pos, std::size_t len, auto& out) {
      for (std::size_t i = pos; i < pos + len; ++i) {
        if (text[i] < '0' || text[i] > '9') return false;
      }
      return std::from_chars(text.data() + pos, text.data() + pos + len, out).ec == std::errc{};
    };
    if (!ok(0, 4, y) || !ok(5, 2, m) || !ok(8, 2, d)) return std::nullopt;
    const year_month_day ymd{year{y}, month{m}, day{d}};
    if (!ymd.ok()) return std::nullopt;
    return TimePoint{sys_days{ymd} + days{1}};  // valid through the end of that day, UTC
  }
  if (auto d = conf::parse_duration(text)) {
    const auto offset = floor<seconds>(*d);
    if (offset > kLatest - now) return std::nullopt;
    return now + offset;
  }
  return std::nullopt;
}

}  // namespace tokengate::store
