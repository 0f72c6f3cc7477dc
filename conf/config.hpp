// The validated, immutable configuration (docs/configuration.md). Loading is strict: every
// key is declared, every error names file:line:col. No I/O beyond reading the file.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "conf/rate_limit.hpp"

namespace tokengate::conf {

using Duration = std::chrono::milliseconds;

// Where a value came from in the YAML file (1-based; 0 = not from the file).
struct Mark {
  int line = 0;
  int column = 0;
};

// The one error type of configuration loading. what() is the full one-line
// message "FILE:LINE:COL: message" so main can print it as is.
class ConfigError : public std::runtime_error {
 public:
  ConfigError(std::string file, Mark mark, std::string message);  // message cut after 512 bytes
  const std::string& file() const noexcept { return file_; }
  Mark mark() const noexcept { return mark_; }
  const std::string& message() const noexcept { return message_; }

 private:
  ConfigError(std::string file, Mark mark, std::string message, int);  // message as given
  std::string file_;
  Mark mark_;
  std::string message_;
};

struct Endpoint {
  std::string host;  // as written: "127.0.0.1", "0.0.0.0", "::1" (brackets removed), "localhost"
  std::uint16_t port = 0;
  std::string to_string() const;  // "127.0.0.1:8080", "[::1]:8080"
};

struct TlsConfig {
  std::filesystem::path cert;  // absolute (resolved against the config file's directory)
  std::filesystem::path key;
};

struct AdminConfig {
  std::optional<Endpoint> listen;
  std::optional<std::filesystem::path> socket;  // absolute
};

// `forward_auth`: a listener on which every request is an authorization check for
// another proxy (docs/forward-auth.md), answered without any upstream.
struct ForwardAuthConfig {
  Endpoint listen;
  // Removed from the front of the check's own path when the original request is
  // taken from it (Envoy's ext_authz puts its path_prefix there).
  std::string path_prefix;
};

// Cluster mode (README.md, "Running several gateways"): PostgreSQL is the source of
// truth and `path` becomes this node's local copy.
struct PostgresConfig {
  std::string url;                                     // a libpq URI; may hold sslmode and other parameters
  std::optional<std::filesystem::path> password_file;  // absolute; else libpq's PGPASSWORD / ~/.pgpass
  Duration max_staleness{0};                           // 0 = serve the local copy however old it is
};

struct StoreConfig {
  std::filesystem::path path = "var/tokens";             // absolute after loading
  std::filesystem::path key_file = "var/tokengate.key";  // absolute after loading
  std::optional<PostgresConfig> postgres;                // set: cluster mode
};

struct TokensConfig {
  Duration max_lifetime{0};  // 0 = unlimited
  // For every token without its own `rate_limit`; none = such tokens are unlimited.
  std::optional<RateLimit> default_rate_limit;
};

struct Limits {
  std::size_t max_header_bytes = 16384;
  std::uint64_t max_body_bytes = 10485760;
  Duration header_timeout = std::chrono::seconds(10);
  Duration idle_timeout = std::chrono::seconds(60);
  Duration upstream_connect_timeout = std::chrono::seconds(5);
  Duration upstream_timeout = std::chrono::seconds(30);
  std::size_t max_connections = 10000;
};

struct IdentityConfig {
  std::string header_prefix = "X-Auth-";
  bool forward_authorization = false;
};

// `paths.allow`: request-target spellings that are refused by default because some
// backends resolve them to another path than the one authorized; a deployment whose
// backends need one of them turns it back on.
struct PathsConfig {
  bool allow_semicolon = false;        // "semicolon"
  bool allow_encoded_percent = false;  // "encoded_percent"
  bool allow_trailing_dot = false;     // "trailing_dot"
};

struct Upstream {
  std::string name;
  std::string url;     // as written
  bool https = false;  // scheme
  std::string host;
  std::uint16_t port = 0;                   // explicit or the scheme default
  std::string base_path;                    // path part of the URL without trailing '/', usually ""
  std::optional<std::filesystem::path> ca;  // absolute
  Mark mark;
};

struct Role {
  std::string name;
  std::vector<std::string> permissions;
  Mark mark;
};

struct Group {
  std::string name;
  std::vector<std::string> roles;
  std::vector<std::string> permissions;
  Mark mark;
};

// One all-of block: every listed name must be held.
struct RequirementBlock {
  std::vector<std::string> permissions;
  std::vector<std::string> roles;
  std::vector<std::string> groups;
  std::vector<std::string> licenses;
  Mark mark;
};

// `require:` of a route: the top-level block AND (if non-empty) at least one of any_of.
struct Requirement {
  RequirementBlock all_of;
  std::vector<RequirementBlock> any_of;
  Mark mark;
};

struct Route {
  std::string path;                  // pattern as written
  std::vector<std::string> methods;  // upper-case as written; empty = all methods
  std::string upstream;              // name of an entry in Config::upstreams
  bool is_public = false;
  std::optional<Requirement> require;
  // Per token on this route; on a public route, per client address for requests
  // without a valid token.
  std::optional<RateLimit> rate_limit;
  Mark mark;  // position of the route's "path" key (the line `explain` prints)
};

struct Config {
  std::filesystem::path file;  // absolute path of the loaded file
  Endpoint listen{"127.0.0.1", 8080};
  std::optional<TlsConfig> tls;
  unsigned workers = 0;  // 0 = one per core
  AdminConfig admin;
  std::optional<ForwardAuthConfig> forward_auth;
  StoreConfig store;
  TokensConfig tokens;
  Limits limits;
  IdentityConfig identity;
  PathsConfig paths;
  std::vector<Upstream> upstreams;  // file order
  std::vector<Role> roles;          // file order
  std::vector<Group> groups;        // file order
  std::vector<std::string> licenses;
  std::vector<Route> routes;  // file order

  const Upstream* find_upstream(std::string_view name) const noexcept;
  const Role* find_role(std::string_view name) const noexcept;
  const Group* find_group(std::string_view name) const noexcept;
  bool has_license(std::string_view name) const noexcept;
};

// What one configuration may cost to load, whatever its content: the file size,
// and the number of YAML nodes and of scalar bytes a walk of the document visits
// once every alias is expanded (aliases share nodes, so a small file can describe
// an enormous tree). Far above any real configuration.
inline constexpr std::size_t kMaxConfigBytes = std::size_t{1} << 20;
inline constexpr std::size_t kMaxConfigNodes = 1'000'000;
inline constexpr std::size_t kMaxConfigExpandedBytes = std::size_t{32} << 20;

// Reads and validates FILE. Throws ConfigError (file:line:col: message) on any
// error, including an unreadable file. Relative paths in the file are resolved
// against the file's directory.
std::shared_ptr<const Config> load_config(const std::filesystem::path& file);

// Same, from text; `file` is used for messages and for resolving relative paths.
// The text must hold exactly one YAML document.
std::shared_ptr<const Config> parse_config(std::string_view yaml, const std::filesystem::path& file);

// "500ms", "10s", "5m", "2h", "30d" (a bare "0" is zero). nullopt if malformed.
std::optional<Duration> parse_duration(std::string_view text);

// Inverse of parse_duration with the largest exact unit: "10m", "1500ms", "0".
std::string format_duration(Duration d);

}  // namespace tokengate::conf
