// Tests of conf/: the example config, defaults, durations, endpoints, and one
// failing case per malformed fragment checking the message, line and column.
#include "conf/config.hpp"

#include <doctest/doctest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using namespace tokengate::conf;
using namespace std::chrono_literals;

namespace {

// A fake absolute path: parse_config never touches the file system.
const fs::path kFake = "/cfg/dir/tokengate.yaml";

std::shared_ptr<const Config> parse(const std::string& yaml) { return parse_config(yaml, kFake); }

// The one-line error a document gets, or "accepted".
std::string message_of(const std::string& yaml) {
  try {
    parse(yaml);
  } catch (const ConfigError& e) {
    return e.message();
  }
  return std::string("accepted");
}

// Unique scratch directory, removed at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "tg-conf-XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path write(const std::string& name, const std::string& text) const {
    fs::path p = path / name;
    std::ofstream(p) << text;
    return p;
  }
};

// Lines 1..7 of the route and reference fragments: one of each definition.
const std::string kBase =
    "upstreams:\n"
    "  app: { url: http://127.0.0.1:9000 }\n"
    "roles:\n"
    "  reader: { permissions: [a.read] }\n"
    "groups:\n"
    "  ops: { roles: [reader] }\n"
    "licenses: [pro]\n";

struct BadCase {
  const char* name;
  std::string yaml;
  int line;
  int column;
  std::string message;  // the whole message after "FILE:LINE:COL: "
};

// Runs `load` in a child process that SIGALRM ends after `seconds`, so a loader
// that loops (or allocates without end) fails the test instead of hanging it.
// Returns the ConfigError text the child got, "accepted", or "killed by signal N"
// (SIGALRM: over time; SIGKILL/SIGSEGV: over the memory limit).
std::string outcome_in_child(const std::function<void()>& load, unsigned seconds = 10) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(fds[0]);
    ::alarm(seconds);
#if !defined(__SANITIZE_ADDRESS__)
    // Bounded memory too, should the loader grow instead of looping (the
    // sanitizer's shadow memory needs far more address space than this).
    const rlimit limit{std::size_t{2} << 30, std::size_t{2} << 30};
    ::setrlimit(RLIMIT_AS, &limit);
#endif
    std::string result = "accepted";
    try {
      load();
    } catch (const ConfigError& e) {
      result = e.what();
    } catch (const std::exception& e) {
      result = std::string("other exception: ") + e.what();
    }
    const ssize_t n = ::write(fds[1], result.data(), result.size());
    ::_exit(n == static_cast<ssize_t>(result.size()) ? 0 : 3);
  }
  ::close(fds[1]);
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) out.append(buf, static_cast<std::size_t>(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return out;
}

std::string parse_outcome(const std::string& yaml, unsigned seconds = 10) {
  return outcome_in_child([&] { parse(yaml); }, seconds);
}

// The error text for `yaml` at LINE:COL.
std::string error_at(int line, int column, const std::string& message) {
  return kFake.string() + ":" + std::to_string(line) + ":" + std::to_string(column) + ": " + message;
}

}  // namespace

TEST_CASE("the shipped example config loads with the expected values") {
  fs::path file = fs::path(TOKENGATE_SOURCE_DIR) / "conf" / "example.yaml";
  auto c = load_config(file);
  fs::path dir = fs::absolute(file).lexically_normal().parent_path();
  CHECK(c->file == fs::absolute(file).lexically_normal());
  CHECK(c->listen.to_string() == "127.0.0.1:8080");
  CHECK_FALSE(c->tls.has_value());
  CHECK(c->workers == 0);
  REQUIRE(c->admin.listen.has_value());
  CHECK(c->admin.listen->to_string() == "127.0.0.1:9901");
  CHECK(c->admin.socket == dir / "var/admin.sock");
  CHECK(c->store.path == dir / "var/tokens");
  CHECK(c->store.key_file == dir / "var/tokengate.key");
  CHECK(c->tokens.max_lifetime == 365 * 24h);
  CHECK(c->limits.header_timeout == 10s);
  CHECK(c->identity.header_prefix == "X-Auth-");
  CHECK_FALSE(c->identity.forward_authorization);

  REQUIRE(c->upstreams.size() == 1);
  const Upstream* demo = c->find_upstream("demo");
  REQUIRE(demo != nullptr);
  CHECK(demo->url == "http://127.0.0.1:9000");
  CHECK(demo->host == "127.0.0.1");
  CHECK(demo->port == 9000);
  CHECK_FALSE(demo->https);
  CHECK(demo->base_path.empty());

  REQUIRE(c->roles.size() == 2);
  CHECK(c->find_role("orders-admin")->permissions == std::vector<std::string>{"orders.read", "orders.write"});
  REQUIRE(c->find_group("ops") != nullptr);
  CHECK(c->find_group("ops")->roles == std::vector<std::string>{"orders-admin"});
  CHECK(c->find_group("ops")->permissions == std::vector<std::string>{"billing.read"});
  CHECK(c->licenses == std::vector<std::string>{"pro", "enterprise"});

  REQUIRE(c->routes.size() == 5);
  CHECK(c->routes[0].path == "/healthz");
  CHECK(c->routes[0].is_public);
  CHECK_FALSE(c->routes[0].require.has_value());
  CHECK(c->routes[1].methods == std::vector<std::string>{"GET", "HEAD"});
  REQUIRE(c->routes[1].require.has_value());
  CHECK(c->routes[1].require->all_of.permissions == std::vector<std::string>{"orders.read"});
  REQUIRE(c->routes[2].require.has_value());
  CHECK(c->routes[2].require->all_of.licenses == std::vector<std::string>{"pro"});
  REQUIRE(c->routes[3].require.has_value());
  REQUIRE(c->routes[3].require->any_of.size() == 2);
  CHECK(c->routes[3].require->any_of[0].roles == std::vector<std::string>{"orders-admin"});
  CHECK(c->routes[3].require->any_of[1].groups == std::vector<std::string>{"ops"});
  CHECK(c->routes[4].path == "/api/**");
  CHECK(c->routes[4].methods.empty());
  CHECK_FALSE(c->routes[4].is_public);
  CHECK_FALSE(c->routes[4].require.has_value());
  for (const auto& r : c->routes) CHECK(r.upstream == "demo");
  CHECK(c->routes[0].mark.line > 0);
  CHECK(c->routes[1].mark.line > c->routes[0].mark.line);
}

TEST_CASE("defaults of SPEC.md section 2 apply when keys are absent") {
  auto c = parse("workers: 3\n");
  CHECK(c->file == kFake);
  CHECK(c->listen.host == "127.0.0.1");
  CHECK(c->listen.port == 8080);
  CHECK(c->workers == 3);
  CHECK_FALSE(c->tls.has_value());
  CHECK_FALSE(c->admin.listen.has_value());
  CHECK_FALSE(c->admin.socket.has_value());
  CHECK(c->store.path == "/cfg/dir/var/tokens");
  CHECK(c->store.key_file == "/cfg/dir/var/tokengate.key");
  CHECK(c->tokens.max_lifetime == 0ms);
  CHECK(c->limits.max_header_bytes == 16384);
  CHECK(c->limits.max_body_bytes == 10485760);
  CHECK(c->limits.header_timeout == 10s);
  CHECK(c->limits.idle_timeout == 60s);
  CHECK(c->limits.upstream_connect_timeout == 5s);
  CHECK(c->limits.upstream_timeout == 30s);
  CHECK(c->limits.max_connections == 10000);
  CHECK(c->identity.header_prefix == "X-Auth-");
  CHECK_FALSE(c->identity.forward_authorization);
  CHECK(c->upstreams.empty());
  CHECK(c->roles.empty());
  CHECK(c->groups.empty());
  CHECK(c->licenses.empty());
  CHECK(c->routes.empty());
  CHECK(c->find_upstream("x") == nullptr);
  CHECK(c->find_role("x") == nullptr);
  CHECK(c->find_group("x") == nullptr);
  CHECK_FALSE(c->has_license("x"));
}

TEST_CASE("explicit values override every default") {
  auto c = parse(
      "listen: 0.0.0.0:0\n"
      "tls: { cert: c.pem, key: k.pem }\n"
      "tokens: { max_lifetime: 30d }\n"
      "limits:\n"
      "  max_header_bytes: 8192\n"
      "  max_body_bytes: 1\n"
      "  header_timeout: 500ms\n"
      "  idle_timeout: 5m\n"
      "  upstream_connect_timeout: 1s\n"
      "  upstream_timeout: 2h\n"
      "  max_connections: 7\n"
      "identity: { header_prefix: X-User-, forward_authorization: true }\n"
      "upstreams:\n"
      "  secure: { url: 'https://[::1]/base/', ca: ../ca.pem }\n"
      "  named: { url: 'http://svc.internal:81/v1' }\n");
  CHECK(c->listen.to_string() == "0.0.0.0:0");
  REQUIRE(c->tls.has_value());
  CHECK(c->tls->cert == "/cfg/dir/c.pem");
  CHECK(c->tls->key == "/cfg/dir/k.pem");
  CHECK(c->tokens.max_lifetime == 30 * 24h);
  CHECK(c->limits.max_header_bytes == 8192);
  CHECK(c->limits.max_body_bytes == 1);
  CHECK(c->limits.header_timeout == 500ms);
  CHECK(c->limits.idle_timeout == 5min);
  CHECK(c->limits.upstream_connect_timeout == 1s);
  CHECK(c->limits.upstream_timeout == 2h);
  CHECK(c->limits.max_connections == 7);
  CHECK(c->identity.header_prefix == "X-User-");
  CHECK(c->identity.forward_authorization);
  const Upstream* s = c->find_upstream("secure");
  REQUIRE(s != nullptr);
  CHECK(s->https);
  CHECK(s->host == "::1");
  CHECK(s->port == 443);
  CHECK(s->base_path == "/base");
  CHECK(s->ca == fs::path("/cfg/ca.pem"));
  const Upstream* n = c->find_upstream("named");
  REQUIRE(n != nullptr);
  CHECK_FALSE(n->https);
  CHECK(n->host == "svc.internal");
  CHECK(n->port == 81);
  CHECK(n->base_path == "/v1");
  CHECK_FALSE(n->ca.has_value());
  CHECK(c->upstreams[0].name == "secure");  // file order
  CHECK(c->upstreams[0].mark.line == 14);
  CHECK(c->upstreams[0].mark.column == 3);
}

TEST_CASE("durations") {
  SUBCASE("well-formed") {
    struct Row {
      const char* text;
      Duration value;
    };
    const Row rows[] = {{"0", 0ms}, {"0s", 0ms},       {"500ms", 500ms},   {"10s", 10s}, {"5m", 5min},
                        {"2h", 2h}, {"30d", 30 * 24h}, {"1500ms", 1500ms}, {"007s", 7s}, {"365d", 365 * 24h}};
    for (const auto& row : rows) {
      CAPTURE(row.text);
      auto d = parse_duration(row.text);
      REQUIRE(d.has_value());
      CHECK(*d == row.value);
    }
  }
  SUBCASE("malformed") {
    const char* rows[] = {"",
                          "10",
                          "1.5s",
                          "-1s",
                          "+1s",
                          "10 s",
                          " 5s",
                          "5s ",
                          "s",
                          "ms",
                          "5M",
                          "5S",
                          "5sec",
                          "5us",
                          "1h30m",
                          "0x5s",
                          "00",
                          "999999999999999999d",
                          "9223372036854775807ms0"};
    for (const char* text : rows) {
      CAPTURE(text);
      CHECK_FALSE(parse_duration(text).has_value());
    }
  }
  SUBCASE("formatting uses the largest exact unit") {
    struct Row {
      Duration value;
      const char* text;
    };
    const Row rows[] = {{0ms, "0"},     {500ms, "500ms"}, {1500ms, "1500ms"}, {10s, "10s"}, {90s, "90s"},
                        {10min, "10m"}, {2h, "2h"},       {36h, "36h"},       {48h, "2d"},  {1ms, "1ms"}};
    for (const auto& row : rows) {
      CAPTURE(row.text);
      CHECK(format_duration(row.value) == row.text);
      CHECK(parse_duration(format_duration(row.value)) == row.value);
    }
  }
}

TEST_CASE("listen endpoints") {
  SUBCASE("well-formed") {
    struct Row {
      const char* text;
      const char* host;
      std::uint16_t port;
      const char* printed;
    };
    const Row rows[] = {
        {"127.0.0.1:8080", "127.0.0.1", 8080, "127.0.0.1:8080"},
        {"0.0.0.0:0", "0.0.0.0", 0, "0.0.0.0:0"},
        {"'[::1]:8080'", "::1", 8080, "[::1]:8080"},
        {"'[::]:443'", "::", 443, "[::]:443"},
        {"localhost:65535", "localhost", 65535, "localhost:65535"},
        {"gw-1.example.com:80", "gw-1.example.com", 80, "gw-1.example.com:80"},
    };
    for (const auto& row : rows) {
      CAPTURE(row.text);
      auto c = parse(std::string("admin: { listen: ") + row.text + " }\n");
      REQUIRE(c->admin.listen.has_value());
      CHECK(c->admin.listen->host == row.host);
      CHECK(c->admin.listen->port == row.port);
      CHECK(c->admin.listen->to_string() == row.printed);
    }
  }
  SUBCASE("malformed") {
    struct Row {
      const char* text;
      const char* reason;
    };
    const Row rows[] = {
        {"127.0.0.1:70000", "invalid port '70000' (expected 0..65535)"},
        {"'127.0.0.1:'", "invalid port '' (expected 0..65535)"},
        {"127.0.0.1:http", "invalid port 'http' (expected 0..65535)"},
        {"localhost", "expected HOST:PORT"},
        {"':8080'", "missing host"},
        {"'::1:8080'", "IPv6 addresses must be bracketed, e.g. [::1]:8080"},
        {"'[::1:8080'", "missing ']' after the IPv6 address"},
        {"'[::1]8080'", "expected ':PORT' after ']'"},
        {"'[1.2.3]:80'", "'1.2.3' is not an IPv6 address"},
        {"300.1.1.1:80", "'300.1.1.1' is not an IPv4 address"},
        {"bad_host:80", "'bad_host' is not a valid host name"},
        {"-bad.example:80", "'-bad.example' is not a valid host name"},
    };
    for (const auto& row : rows) {
      CAPTURE(row.text);
      std::string value = row.text;
      if (value.front() == '\'') value = value.substr(1, value.size() - 2);
      try {
        parse(std::string("listen: ") + row.text + "\n");
        FAIL("accepted");
      } catch (const ConfigError& e) {
        CHECK(e.message() == "listen: invalid address '" + value + "': " + row.reason);
        CHECK(e.mark().line == 1);
        CHECK(e.mark().column == 9);
      }
    }
  }
}

TEST_CASE("one failing case per malformed fragment") {
  const BadCase cases[] = {
      // Unknown keys, at every level, with and without a hint.
      {"unknown top-level key", kBase + "lisen: 127.0.0.1:1\n", 8, 1,
       "unknown key 'lisen' in the top level; did you mean 'listen'?"},
      {"unknown limits key", kBase + "limits:\n  header_timout: 5s\n", 9, 3,
       "unknown key 'header_timout' in limits; did you mean 'header_timeout'?"},
      {"unknown key without a close match", "zzzzzzz: 1\n", 1, 1, "unknown key 'zzzzzzz' in the top level"},
      {"unknown route key", kBase + "routes:\n  - path: /x\n    upstream: app\n    method: [GET]\n", 11, 5,
       "unknown key 'method' in routes[0]; did you mean 'methods'?"},
      {"unknown upstream key", "upstreams:\n  a: { url: 'http://h', cafile: x }\n", 2, 25,
       "unknown key 'cafile' in upstreams.a"},
      {"nested any_of",
       kBase +
           "routes:\n  - path: /x\n    upstream: app\n    require:\n      any_of:\n        - any_of: []\n",
       13, 11, "unknown key 'any_of' in routes[0].require.any_of[0]"},
      // Wrong types.
      {"list where a mapping is expected", "limits: [1, 2]\n", 1, 9,
       "limits: expected a mapping, got a list"},
      {"mapping where a list is expected", "routes: { a: 1 }\n", 1, 9,
       "routes: expected a list, got a mapping"},
      {"roles as a list", "roles: [a]\n", 1, 8, "roles: expected a mapping, got a list"},
      {"upstream entry as a list", "upstreams:\n  x: [a]\n", 2, 6,
       "upstreams.x: expected a mapping, got a list"},
      {"section with no value", "tls:\nworkers: 1\n", 1, 1, "tls: expected a mapping, got nothing"},
      {"top level is a list", "- a\n", 1, 1, "expected a mapping at the top level, got a list"},
      {"non-bool public", kBase + "routes:\n  - path: /x\n    upstream: app\n    public: yes\n", 11, 13,
       "routes[0].public: expected true or false, got 'yes'"},
      {"quoted bool", kBase + "routes:\n  - path: /x\n    upstream: app\n    public: \"true\"\n", 11, 13,
       "routes[0].public: expected true or false, got 'true'"},
      {"non-bool forward_authorization", "identity:\n  forward_authorization: 1\n", 2, 26,
       "identity.forward_authorization: expected true or false, got '1'"},
      {"non-integer workers", "workers: two\n", 1, 10, "workers: expected an integer in 0..4096, got 'two'"},
      {"negative workers", "workers: -1\n", 1, 10, "workers: expected an integer in 0..4096, got '-1'"},
      {"hex limit", "limits:\n  max_header_bytes: 0x10\n", 2, 21,
       "limits.max_header_bytes: expected an integer in 1..4294967295, got '0x10'"},
      {"list of names holds a mapping", "licenses: [{a: 1}]\n", 1, 12,
       "licenses: expected a name, got a mapping"},
      // Durations and limits.
      {"duration with a space", "limits:\n  idle_timeout: 10 s\n", 2, 17,
       "limits.idle_timeout: invalid duration '10 s' (expected e.g. 500ms, 10s, 5m, 2h, 30d or 0)"},
      {"duration in years", "tokens:\n  max_lifetime: 1y\n", 2, 17,
       "tokens.max_lifetime: invalid duration '1y' (expected e.g. 500ms, 10s, 5m, 2h, 30d or 0)"},
      {"zero timeout", "limits:\n  upstream_timeout: 0\n", 2, 21,
       "limits.upstream_timeout: must be greater than zero"},
      {"zero max_connections", "limits:\n  max_connections: 0\n", 2, 20,
       "limits.max_connections: expected an integer in 1..4294967295, got '0'"},
      {"zero max_body_bytes", "limits:\n  max_body_bytes: 0\n", 2, 19,
       "limits.max_body_bytes: expected an integer in 1..9223372036854775807, got '0'"},
      // Addresses.
      {"admin listen port out of range", "admin:\n  listen: 'localhost:99999'\n", 2, 11,
       "admin.listen: invalid address 'localhost:99999': invalid port '99999' (expected 0..65535)"},
      // Upstream URLs.
      {"ftp upstream", "upstreams:\n  x:\n    url: ftp://h\n", 3, 10,
       "upstreams.x.url: invalid upstream URL 'ftp://h': the scheme must be http:// or https://"},
      {"not a URL", "upstreams:\n  x: { url: orders }\n", 2, 13,
       "upstreams.x.url: invalid upstream URL 'orders': not an absolute URL"},
      {"upstream with a query", "upstreams:\n  x: { url: 'http://h/?a=1' }\n", 2, 13,
       "upstreams.x.url: invalid upstream URL 'http://h/?a=1': a query string is not allowed"},
      {"upstream with a fragment", "upstreams:\n  x: { url: 'http://h/#top' }\n", 2, 13,
       "upstreams.x.url: invalid upstream URL 'http://h/#top': a fragment is not allowed"},
      {"upstream with userinfo", "upstreams:\n  x: { url: 'http://u:p@h/' }\n", 2, 13,
       "upstreams.x.url: invalid upstream URL 'http://u:p@h/': user info ('user@') is not allowed"},
      {"upstream without host", "upstreams:\n  x: { url: 'http:///x' }\n", 2, 13,
       "upstreams.x.url: invalid upstream URL 'http:///x': missing host"},
      {"upstream without authority", "upstreams:\n  x: { url: 'http:x' }\n", 2, 13,
       "upstreams.x.url: invalid upstream URL 'http:x': missing host"},
      {"upstream port 0", "upstreams:\n  x: { url: 'http://h:0' }\n", 2, 13,
       "upstreams.x.url: invalid upstream URL 'http://h:0': invalid port '0' (expected 1..65535)"},
      {"upstream bad host", "upstreams:\n  x: { url: 'http://a_b/' }\n", 2, 13,
       "upstreams.x.url: invalid upstream URL 'http://a_b/': 'a_b' is not a valid host name"},
      {"ca for an http upstream", "upstreams:\n  x:\n    url: http://h\n    ca: ca.pem\n", 4, 9,
       "upstreams.x.ca: 'ca' is only meaningful for https:// upstreams"},
      // Missing required keys.
      {"upstream without url", "upstreams:\n  x: { ca: ca.pem }\n", 2, 6,
       "upstreams.x: missing required key 'url'"},
      {"route without path", kBase + "routes:\n  - upstream: app\n", 9, 5,
       "routes[0]: missing required key 'path'"},
      {"route without upstream", kBase + "routes:\n  - path: /x\n", 9, 5,
       "routes[0]: missing required key 'upstream'"},
      {"tls without key", "tls:\n  cert: c.pem\n", 2, 3, "tls: missing required key 'key'"},
      {"empty path", "store:\n  path: ''\n", 2, 9, "store.path: expected a path, got an empty string"},
      // References to undefined names.
      {"group with an undefined role", "roles:\n  r1: {}\ngroups:\n  g: { roles: [r2] }\n", 4, 16,
       "groups.g.roles: unknown role 'r2'; did you mean 'r1'?"},
      {"route with an undefined upstream", kBase + "routes:\n  - path: /x\n    upstream: ap\n", 10, 15,
       "routes[0].upstream: unknown upstream 'ap'; did you mean 'app'?"},
      {"route requiring an undefined role",
       kBase + "routes:\n  - path: /x\n    upstream: app\n    require: { roles: [writer] }\n", 11, 24,
       "routes[0].require.roles: unknown role 'writer'"},
      {"route requiring an undefined group",
       kBase +
           "routes:\n  - path: /x\n    upstream: app\n    require:\n      any_of:\n        - groups: [opz]\n",
       13, 20, "routes[0].require.any_of[0].groups: unknown group 'opz'; did you mean 'ops'?"},
      {"route requiring an undefined license",
       kBase + "routes:\n  - path: /x\n    upstream: app\n    require: { licenses: [free] }\n", 11, 27,
       "routes[0].require.licenses: unknown license 'free'"},
      // Duplicates.
      {"duplicate role", "roles:\n  a: {}\n  a: {}\n", 3, 3,
       "duplicate key 'a' in roles (first defined at line 2)"},
      {"duplicate group", kBase + "groups:\n  g: {}\n", 8, 1,
       "duplicate key 'groups' in the top level (first defined at line 5)"},
      {"duplicate group name", "groups:\n  g: {}\n  h: {}\n  g: { permissions: [x] }\n", 4, 3,
       "duplicate key 'g' in groups (first defined at line 2)"},
      {"duplicate upstream", "upstreams:\n  u: { url: 'http://a' }\n  u: { url: 'http://b' }\n", 3, 3,
       "duplicate key 'u' in upstreams (first defined at line 2)"},
      {"duplicate license", "licenses: [pro, enterprise, pro]\n", 1, 29, "licenses: duplicate 'pro'"},
      {"duplicate permission", "roles:\n  r: { permissions: [a, a] }\n", 2, 25,
       "roles.r.permissions: duplicate 'a'"},
      // Routes.
      {"public route with require",
       kBase +
           "routes:\n  - path: /x\n    upstream: app\n    public: true\n    require: { permissions: [a] }\n",
       12, 5, "routes[0]: a public route cannot have 'require'"},
      {"path without a leading slash", kBase + "routes:\n  - path: x\n    upstream: app\n", 9, 11,
       "routes[0].path: 'x' must start with '/'"},
      {"lower-case method", kBase + "routes:\n  - path: /x\n    upstream: app\n    methods: [get]\n", 11, 15,
       "routes[0].methods: invalid method 'get' (expected an upper-case HTTP method such as GET)"},
      {"method with a space", kBase + "routes:\n  - path: /x\n    upstream: app\n    methods: ['GE T']\n", 11,
       15, "routes[0].methods: invalid method 'GE T' (expected an upper-case HTTP method such as GET)"},
      {"duplicate method", kBase + "routes:\n  - path: /x\n    upstream: app\n    methods: [GET, GET]\n", 11,
       20, "routes[0].methods: duplicate method 'GET'"},
      {"empty methods", kBase + "routes:\n  - path: /x\n    upstream: app\n    methods: []\n", 11, 14,
       "routes[0].methods: empty list (omit 'methods' to allow every method)"},
      {"empty require", kBase + "routes:\n  - path: /x\n    upstream: app\n    require: {}\n", 11, 14,
       "routes[0].require: empty requirement (omit 'require' to allow any valid token)"},
      {"empty any_of block",
       kBase + "routes:\n  - path: /x\n    upstream: app\n    require: { any_of: [{}] }\n", 11, 25,
       "routes[0].require.any_of[0]: empty requirement (omit 'require' to allow any valid token)"},
      {"second route reported with its index",
       kBase + "routes:\n  - path: /a\n    upstream: app\n  - path: /b\n    upstream: nope\n", 12, 15,
       "routes[1].upstream: unknown upstream 'nope'"},
      // Names and identity.
      {"role name with a space", "roles:\n  'bad name': {}\n", 2, 3,
       "invalid role name 'bad name' (use 1..128 letters, digits, '.', '_', '-', ':')"},
      {"permission with a comma", "roles:\n  r: { permissions: ['a,b'] }\n", 2, 22,
       "roles.r.permissions: invalid name 'a,b' (use 1..128 letters, digits, '.', '_', '-', ':')"},
      {"header prefix with a space", "identity:\n  header_prefix: 'X Auth'\n", 2, 18,
       "identity.header_prefix: 'X Auth' is not a valid header name prefix (letters, digits and "
       "!#$%&'*+-.^_`|~)"},
      {"empty header prefix", "identity:\n  header_prefix: ''\n", 2, 18,
       "identity.header_prefix: '' is not a valid header name prefix (letters, digits and !#$%&'*+-.^_`|~)"},
      // paths.allow.
      {"unknown path alias with a hint", "paths:\n  allow: [semicolon, trailing_dots]\n", 2, 22,
       "paths.allow: unknown value 'trailing_dots' (expected semicolon, encoded_percent or trailing_dot); "
       "did you mean 'trailing_dot'?"},
      {"unknown path alias", "paths: { allow: [backslash] }\n", 1, 18,
       "paths.allow: unknown value 'backslash' (expected semicolon, encoded_percent or trailing_dot)"},
      {"duplicate path alias", "paths:\n  allow:\n    - semicolon\n    - semicolon\n", 4, 7,
       "paths.allow: duplicate 'semicolon'"},
      {"path alias as a mapping", "paths: { allow: [{semicolon: true}] }\n", 1, 18,
       "paths.allow: expected a name, got a mapping"},
      {"paths.allow not a list", "paths: { allow: semicolon }\n", 1, 17,
       "paths.allow: expected a list, got 'semicolon'"},
      {"unknown paths key", "paths: { alow: [semicolon] }\n", 1, 10,
       "unknown key 'alow' in paths; did you mean 'allow'?"},
      {"paths as a list", "paths: [semicolon]\n", 1, 8, "paths: expected a mapping, got a list"},
      // YAML itself.
      {"YAML syntax error", "a: [1,\nb: }\n", 2, 4, "illegal flow end"},
      {"second YAML document", "workers: 1\n---\nworkers: 2\n", 2, 1, "only one YAML document is allowed"},
      {"document after an end marker", "workers: 1\n...\nworkers: 2\n", 3, 1,
       "only one YAML document is allowed"},
      {"empty second document", "workers: 1\n---\n", 2, 1, "only one YAML document is allowed"},
      {"alias inside its own anchor", "routes: &r [*r]\n", 1, 13,
       "an alias cannot refer to a node that contains it"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.name);
    try {
      parse(c.yaml);
      FAIL("accepted: ", c.name);
    } catch (const ConfigError& e) {
      CHECK(e.message() == c.message);
      CHECK(e.mark().line == c.line);
      CHECK(e.mark().column == c.column);
      CHECK(e.file() == kFake.string());
      CHECK(std::string(e.what()) == kFake.string() + ":" + std::to_string(c.line) + ":" +
                                         std::to_string(c.column) + ": " + c.message);
    }
  }
}

TEST_CASE("paths.allow turns each alias spelling back on") {
  auto none = parse("workers: 1\n");
  CHECK_FALSE(none->paths.allow_semicolon);
  CHECK_FALSE(none->paths.allow_encoded_percent);
  CHECK_FALSE(none->paths.allow_trailing_dot);

  auto empty = parse("paths: { allow: [] }\n");
  CHECK_FALSE(empty->paths.allow_semicolon);
  CHECK_FALSE(empty->paths.allow_encoded_percent);
  CHECK_FALSE(empty->paths.allow_trailing_dot);

  auto one = parse("paths:\n  allow: [encoded_percent]\n");
  CHECK_FALSE(one->paths.allow_semicolon);
  CHECK(one->paths.allow_encoded_percent);
  CHECK_FALSE(one->paths.allow_trailing_dot);

  auto all = parse("paths:\n  allow:\n    - trailing_dot\n    - semicolon\n    - encoded_percent\n");
  CHECK(all->paths.allow_semicolon);
  CHECK(all->paths.allow_encoded_percent);
  CHECK(all->paths.allow_trailing_dot);

  auto no_allow = parse("paths: {}\n");
  CHECK_FALSE(no_allow->paths.allow_semicolon);
}

TEST_CASE("a stray token is a syntax error, not an endless stream of empty documents") {
  // yaml-cpp 0.7 reads a lone ',' as an empty document without consuming it;
  // YAML::LoadAll looped on it forever, allocating.
  CHECK(parse_outcome(",") == error_at(1, 1, "syntax error: unexpected ','"));
  CHECK(parse_outcome(",\n,\n") == error_at(1, 1, "syntax error: unexpected ','"));
  CHECK(parse_outcome("workers: 1\n,\n") == error_at(2, 1, "end of map not found"));
  CHECK(parse_outcome("- a\n,\n") == error_at(2, 1, "syntax error: unexpected ','"));
  CHECK(parse_outcome("workers: 1\n--- ,\n") == error_at(2, 1, "only one YAML document is allowed"));
}

TEST_CASE("a configuration over 1 MiB is refused, read or given as text") {
  const std::string body = "workers: 1\n";
  std::string padded = body + "#" + std::string(kMaxConfigBytes - body.size() - 2, 'x') + "\n";
  REQUIRE(padded.size() == kMaxConfigBytes);
  CHECK(parse(padded)->workers == 1);  // exactly at the limit
  padded.insert(padded.size() - 1, "x");
  CHECK(parse_outcome(padded) == kFake.string() + ": the configuration is larger than 1048576 bytes");

  TempDir dir;
  const fs::path big = dir.write("big.yaml", padded);
  try {
    load_config(big);
    FAIL("accepted");
  } catch (const ConfigError& e) {
    CHECK(std::string(e.what()) == big.string() + ": the configuration is larger than 1048576 bytes");
  }
  // A device that never ends is read only up to the limit.
  CHECK(outcome_in_child([] { load_config("/dev/zero"); }) ==
        "/dev/zero: the configuration is larger than 1048576 bytes");
}

TEST_CASE("aliases cannot make the document expensive to walk") {
  SUBCASE("billion laughs: nested aliases") {
    std::string yaml = "licenses: &a [x, x, x, x, x, x, x, x, x, x]\n";
    std::string previous = "a";
    for (char c = 'b'; c <= 'i'; ++c) {
      yaml += std::string("x") + c + ": &" + c + " [";
      for (int i = 0; i < 10; ++i) yaml += (i ? ", *" : "*") + previous;
      yaml += "]\n";
      previous = std::string(1, c);
    }
    const std::string outcome = parse_outcome(yaml);
    INFO(outcome);
    CHECK(outcome.find("the document expands to more than 1000000 nodes (through aliases?)") !=
          std::string::npos);
    CHECK(outcome.rfind(kFake.string() + ":6:", 0) == 0);  // at the alias that crosses the limit
  }
  SUBCASE("one route repeated by alias, each with a long permission list") {
    // Walked for real by the loader: 20000 routes of 1000 permissions each.
    std::string yaml = kBase + "routes:\n  - &r {path: /a, upstream: app, require: {permissions: [";
    for (int i = 0; i < 1000; ++i) yaml += (i ? ", p" : "p") + std::to_string(i);
    yaml += "]}}\n";
    for (int i = 0; i < 20000; ++i) yaml += "  - *r\n";
    const std::string outcome = parse_outcome(yaml);
    INFO(outcome);
    CHECK(outcome.find(": the document expands to more than 1000000 nodes (through aliases?)") !=
          std::string::npos);
  }
  SUBCASE("one long scalar repeated by alias") {
    std::string yaml =
        kBase + "routes:\n  - &r {upstream: app, path: /" + std::string(64 * 1024, 'a') + "}\n";
    for (int i = 0; i < 600; ++i) yaml += "  - *r\n";
    const std::string outcome = parse_outcome(yaml);
    INFO(outcome);
    CHECK(outcome.find(": the document expands to more than 33554432 bytes of text (through aliases?)") !=
          std::string::npos);
  }
  SUBCASE("aliases within the limits still load") {
    const auto c = parse(kBase +
                         "routes:\n  - &r {path: /a, upstream: app, require: {permissions: &p [a, b]}}\n"
                         "  - *r\n  - {path: /b, upstream: app, require: {permissions: *p}}\n");
    REQUIRE(c->routes.size() == 3);
    CHECK(c->routes[1].path == "/a");
    CHECK(c->routes[2].require->all_of.permissions == std::vector<std::string>{"a", "b"});
  }
}

TEST_CASE("long lists load in linear time") {
  // Duplicate and reference checks used to compare every pair.
  std::string yaml = "roles:\n";
  for (int i = 0; i < 20000; ++i) yaml += "  r" + std::to_string(i) + ": {}\n";
  yaml += "groups:\n  g:\n    roles: [";
  for (int i = 0; i < 20000; ++i) yaml += (i ? ", r" : "r") + std::to_string(i);
  yaml += "]\n    permissions: [";
  for (int i = 0; i < 20000; ++i) yaml += (i ? ", p" : "p") + std::to_string(i);
  yaml += "]\n";
  CHECK(parse_outcome(yaml, 20) == "accepted");
}

TEST_CASE("a message quoting a huge value is cut, between characters") {
  const std::string value = "x" + std::string(300, 'y') + "\xC3\xA9" + std::string(1 << 19, 'z');
  try {
    parse("workers: " + value + "\n");
    FAIL("accepted");
  } catch (const ConfigError& e) {
    const std::string m = e.message();
    CHECK(m.size() <= 515);
    CHECK(m.rfind("workers: expected an integer in 0..4096, got 'xyyy", 0) == 0);
    CHECK(m.find("\xC3\xA9") != std::string::npos);  // the 'é' before the cut is whole
    CHECK(m.substr(m.size() - 3) == "...");
    CHECK(std::string(e.what()) == kFake.string() + ":1:10: " + m);
  }
}

TEST_CASE("an empty document is an error without a position") {
  try {
    parse("");
    FAIL("accepted");
  } catch (const ConfigError& e) {
    CHECK(std::string(e.what()) == kFake.string() + ": the configuration is empty");
    CHECK(e.mark().line == 0);
  }
}

TEST_CASE("did-you-mean hints only for close keys") {
  CHECK(message_of("upstream: {}\n") == "unknown key 'upstream' in the top level; did you mean 'upstreams'?");
  CHECK(message_of("admin: { sockt: x }\n") == "unknown key 'sockt' in admin; did you mean 'socket'?");
  CHECK(message_of("identity: { forward_auth: true }\n") == "unknown key 'forward_auth' in identity");
  CHECK(message_of("colour: red\n") == "unknown key 'colour' in the top level");
  CHECK(message_of("tsl: {}\n") == "unknown key 'tsl' in the top level; did you mean 'tls'?");
  CHECK(message_of("upstreams: { u: { url: 'http://h', id: 1 } }\n") == "unknown key 'id' in upstreams.u");
  CHECK(message_of("roles: { orders-reader: {} }\ngroups: { g: { roles: [order-reader] } }\n") ==
        "groups.g.roles: unknown role 'order-reader'; did you mean 'orders-reader'?");
}

TEST_CASE("store.postgres: cluster mode settings, strict") {
  CHECK_FALSE(parse("workers: 1\n")->store.postgres.has_value());
  auto c = parse_config(
      "store:\n  postgres:\n    url: postgresql://tg@db:5432/tg?sslmode=verify-full\n"
      "    password_file: secrets/pg\n    max_staleness: 5m\n",
      "/srv/tg/main.yaml");
  REQUIRE(c->store.postgres.has_value());
  CHECK(c->store.postgres->url == "postgresql://tg@db:5432/tg?sslmode=verify-full");
  CHECK(c->store.postgres->password_file == fs::path("/srv/tg/secrets/pg"));
  CHECK(c->store.postgres->max_staleness == std::chrono::minutes(5));
  auto d = parse("store: { postgres: { url: 'postgres://h/db' } }\n");
  CHECK_FALSE(d->store.postgres->password_file.has_value());
  CHECK(d->store.postgres->max_staleness == Duration{0});

  CHECK(message_of("store:\n  postgres: { password_file: p }\n") ==
        "store.postgres: missing required key 'url'");
  CHECK(message_of("store:\n  postgres: { url: 'host=db dbname=tg' }\n") ==
        "store.postgres.url: expected a libpq URI starting with postgresql://");
  CHECK(message_of("store:\n  postgres: { url: 'postgres://h/db', max_staleness: soon }\n") ==
        "store.postgres.max_staleness: invalid duration 'soon' (expected e.g. 500ms, 10s, 5m, 2h, 30d or 0)");
  CHECK(message_of("store:\n  postgres: { url: 'postgres://h/db', pasword_file: p }\n") ==
        "unknown key 'pasword_file' in store.postgres; did you mean 'password_file'?");
  CHECK(message_of("store:\n  postgres: postgres://h/db\n") ==
        "store.postgres: expected a mapping, got 'postgres://h/db'");
}

TEST_CASE("relative paths resolve against the config file's directory") {
  const std::string yaml =
      "tls: { cert: certs/c.pem, key: /etc/tg/k.pem }\n"
      "admin: { socket: run/admin.sock }\n"
      "store: { path: ../data/./db, key_file: key }\n"
      "upstreams: { s: { url: 'https://h', ca: ca/root.pem } }\n";
  auto c = parse_config(yaml, "/srv/tg/conf/main.yaml");
  CHECK(c->file == "/srv/tg/conf/main.yaml");
  CHECK(c->tls->cert == "/srv/tg/conf/certs/c.pem");
  CHECK(c->tls->key == "/etc/tg/k.pem");
  CHECK(c->admin.socket == fs::path("/srv/tg/conf/run/admin.sock"));
  CHECK(c->store.path == "/srv/tg/data/db");
  CHECK(c->store.key_file == "/srv/tg/conf/key");
  CHECK(c->upstreams[0].ca == fs::path("/srv/tg/conf/ca/root.pem"));

  SUBCASE("a relative config file name becomes absolute") {
    auto r = parse_config("workers: 1\n", "sub/tg.yaml");
    CHECK(r->file == (fs::current_path() / "sub/tg.yaml").lexically_normal());
    CHECK(r->store.path == (fs::current_path() / "sub/var/tokens").lexically_normal());
  }
}

TEST_CASE("load_config reads a real file") {
  TempDir dir;
  fs::path file = dir.write("tg.yaml", "listen: 127.0.0.1:0\nstore: { path: db }\n");
  auto c = load_config(file);
  CHECK(c->file == file);
  CHECK(c->listen.port == 0);
  CHECK(c->store.path == dir.path / "db");

  SUBCASE("errors name the file as given") {
    fs::path bad = dir.write("bad.yaml", "listen: 127.0.0.1:0\nworkers: many\n");
    try {
      load_config(bad);
      FAIL("accepted");
    } catch (const ConfigError& e) {
      CHECK(std::string(e.what()) ==
            bad.string() + ":2:10: workers: expected an integer in 0..4096, got 'many'");
    }
  }
}

TEST_CASE("a missing or unreadable file is a ConfigError naming the file and the reason") {
  TempDir dir;
  fs::path missing = dir.path / "nope.yaml";
  try {
    load_config(missing);
    FAIL("accepted");
  } catch (const ConfigError& e) {
    CHECK(std::string(e.what()) ==
          missing.string() + ": cannot read configuration: No such file or directory");
    CHECK(e.mark().line == 0);
    CHECK(e.mark().column == 0);
  }
  try {
    load_config(dir.path);
    FAIL("accepted");
  } catch (const ConfigError& e) {
    CHECK(std::string(e.what()) == dir.path.string() + ": cannot read configuration: is a directory");
  }
}
