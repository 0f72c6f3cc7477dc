// Canonical path table (docs/configuration.md, "Canonical path"): every attack
// input with its canonical form or rejection, and which route of a public/protected
// sample config then matches.
#include "policy/canonical_path.hpp"

#include <doctest/doctest.h>

#include <cctype>
#include <iterator>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "policy/engine.hpp"
#include "test_config.hpp"

using namespace std::string_view_literals;
using tokengate::policy::canonicalize_target;
using tokengate::policy::Engine;
using tokengate::policy::PathError;
namespace t = tokengate::policy::test;

namespace {

constexpr int kPublic = 0;     // /public/**, public
constexpr int kAdmin = 1;      // /admin/**, protected
constexpr int kNone = -1;      // canonical, but no route matches (404)
constexpr int kRejected = -2;  // rejected before routing (400)

struct Case {
  const char* name;
  std::string_view method;
  std::string_view target;
  PathError error;
  std::string_view path;   // expected canonical path when accepted
  std::string_view query;  // expected query when accepted
  int route;               // kPublic, kAdmin, kNone or kRejected
};

const Case kCases[] = {
    // Traversal, raw and encoded.
    {"dotdot out of public", "GET", "/public/../admin", PathError::None, "/admin", "", kAdmin},
    {"encoded dotdot lower", "GET", "/public/%2e%2e/admin", PathError::None, "/admin", "", kAdmin},
    {"encoded dotdot mixed case", "GET", "/public/%2E%2e/admin", PathError::None, "/admin", "", kAdmin},
    {"dotdot with encoded slash", "GET", "/public/..%2fadmin", PathError::EncodedSeparator, "", "",
     kRejected},
    {"encoded dot and dotdot", "GET", "/public/.%2E/admin", PathError::None, "/admin", "", kAdmin},
    {"deep traversal", "GET", "/public/x/../../admin/y", PathError::None, "/admin/y", "", kAdmin},
    {"traversal into public", "GET", "/admin/%2e%2e/public/x", PathError::None, "/public/x", "", kPublic},
    {"dotdot to root", "GET", "/admin/..", PathError::None, "/", "", kNone},
    {"above root", "GET", "/a/../../b", PathError::AboveRoot, "", "", kRejected},
    {"above root at once", "GET", "/..", PathError::AboveRoot, "", "", kRejected},
    {"encoded above root", "GET", "/%2e%2e/admin", PathError::AboveRoot, "", "", kRejected},
    {"three dots end in a dot", "GET", "/public/...", PathError::TrailingDot, "", "", kRejected},
    // Slashes and dot segments.
    {"double slash", "GET", "//admin", PathError::None, "/admin", "", kAdmin},
    {"many slashes", "GET", "/admin///x//", PathError::None, "/admin/x/", "", kAdmin},
    {"dot segment", "GET", "/admin/./x", PathError::None, "/admin/x", "", kAdmin},
    {"trailing dot", "GET", "/admin/.", PathError::None, "/admin/", "", kAdmin},
    {"trailing slash kept", "GET", "/admin/", PathError::None, "/admin/", "", kAdmin},
    {"dotdot keeps slash", "GET", "/a/b/..", PathError::None, "/a/", "", kNone},
    {"root", "GET", "/", PathError::None, "/", "", kNone},
    {"root dot", "GET", "/.", PathError::None, "/", "", kNone},
    // Separators smuggled in.
    {"encoded slash", "GET", "/admin%2Fx", PathError::EncodedSeparator, "", "", kRejected},
    {"encoded slash lower", "GET", "/admin%2fx", PathError::EncodedSeparator, "", "", kRejected},
    {"encoded backslash", "GET", "/admin%5cx", PathError::EncodedSeparator, "", "", kRejected},
    {"encoded backslash upper", "GET", "/admin%5Cx", PathError::EncodedSeparator, "", "", kRejected},
    {"raw backslash", "GET", "/admin\\x", PathError::Backslash, "", "", kRejected},
    {"backslash traversal", "GET", "/public\\..\\admin", PathError::Backslash, "", "", kRejected},
    {"fragment", "GET", "/admin#x", PathError::Fragment, "", "", kRejected},
    {"fragment in query", "GET", "/public/a?x#y", PathError::Fragment, "", "", kRejected},
    // Aliases refused by default (see the alias table below for paths.allow).
    {"semicolon", "GET", "/admin;x", PathError::SemicolonInPath, "", "", kRejected},
    {"semicolon in segment", "GET", "/admin/x;y=1", PathError::SemicolonInPath, "", "", kRejected},
    {"semicolon after public", "GET", "/public;/../admin", PathError::SemicolonInPath, "", "", kRejected},
    {"dotdot semicolon", "GET", "/public/..;/admin/y", PathError::SemicolonInPath, "", "", kRejected},
    {"semicolon in query", "GET", "/admin/x?a;b", PathError::None, "/admin/x", "a;b", kAdmin},
    {"encoded semicolon stays encoded", "GET", "/admin/x%3by", PathError::None, "/admin/x%3By", "", kAdmin},
    {"trailing dot segment", "GET", "/admin./x", PathError::TrailingDot, "", "", kRejected},
    {"encoded trailing dot", "GET", "/admin%2E/x", PathError::TrailingDot, "", "", kRejected},
    {"two trailing dots", "GET", "/admin../x", PathError::TrailingDot, "", "", kRejected},
    {"trailing dot last segment", "GET", "/admin/x.", PathError::TrailingDot, "", "", kRejected},
    {"inner dot", "GET", "/admin/x.json", PathError::None, "/admin/x.json", "", kAdmin},
    {"leading dot", "GET", "/admin/.well-known", PathError::None, "/admin/.well-known", "", kAdmin},
    // Escapes.
    {"nul", "GET", "/%00", PathError::NulByte, "", "", kRejected},
    {"bad hex", "GET", "/%zz", PathError::BadEscape, "", "", kRejected},
    {"short escape", "GET", "/%4", PathError::BadEscape, "", "", kRejected},
    {"trailing percent", "GET", "/admin/%", PathError::BadEscape, "", "", kRejected},
    {"half hex", "GET", "/admin/%4g", PathError::BadEscape, "", "", kRejected},
    {"unreserved letter decoded", "GET", "/%41", PathError::None, "/A", "", kNone},
    {"encoded admin", "GET", "/%61%64%6d%69%6e/x", PathError::None, "/admin/x", "", kAdmin},
    {"tilde decoded", "GET", "/public/%7e", PathError::None, "/public/~", "", kPublic},
    {"reserved kept, hex uppercased", "GET", "/public/%3a", PathError::None, "/public/%3A", "", kPublic},
    {"encoded percent", "GET", "/public/%25", PathError::EncodedPercent, "", "", kRejected},
    {"double-encoded letter", "GET", "/%2561dmin", PathError::EncodedPercent, "", "", kRejected},
    {"double-encoded dots", "GET", "/public/%252e%252e/admin", PathError::EncodedPercent, "", "", kRejected},
    {"encoded percent in query", "GET", "/public/a?x=%25", PathError::None, "/public/a", "x=%25", kPublic},
    {"decoded dash, then encoded slash", "GET", "/public/a%2db%2Fc", PathError::EncodedSeparator, "", "",
     kRejected},
    {"high escape kept", "GET", "/public/%c3%a9", PathError::None, "/public/%C3%A9", "", kPublic},
    // Raw bytes.
    {"byte 0x80", "GET", "/admin/\x80", PathError::NonAscii, "", "", kRejected},
    {"byte 0xff", "GET", "/public/\xff", PathError::NonAscii, "", "", kRejected},
    {"utf-8", "GET", "/public/\xc3\xa9", PathError::NonAscii, "", "", kRejected},
    {"control char", "GET", "/admin/\x01", PathError::ControlChar, "", "", kRejected},
    {"tab", "GET", "/admin\tx", PathError::ControlChar, "", "", kRejected},
    {"del", "GET", "/admin/\x7f", PathError::ControlChar, "", "", kRejected},
    {"raw nul", "GET", "/admin\0x"sv, PathError::ControlChar, "", "", kRejected},
    {"control in query", "GET", "/public/a?x=\x01", PathError::ControlChar, "", "", kRejected},
    {"byte in query", "GET", "/public/a?x=\xff", PathError::NonAscii, "", "", kRejected},
    // Request-target forms.
    {"absolute form", "GET", "http://h/admin", PathError::NotOriginForm, "", "", kRejected},
    {"absolute form https", "GET", "https://h/public/x", PathError::NotOriginForm, "", "", kRejected},
    {"authority form", "CONNECT", "h:443", PathError::NotOriginForm, "", "", kRejected},
    {"connect origin form", "CONNECT", "/admin", PathError::NotOriginForm, "", "", kRejected},
    {"relative", "GET", "admin", PathError::NotOriginForm, "", "", kRejected},
    {"empty", "GET", "", PathError::NotOriginForm, "", "", kRejected},
    {"asterisk with GET", "GET", "*", PathError::NotOriginForm, "", "", kRejected},
    {"query only", "GET", "?x=1", PathError::NotOriginForm, "", "", kRejected},
    // Query split off untouched.
    {"query untouched", "GET", "/a/../b?x=/../%2F", PathError::None, "/b", "x=/../%2F", kNone},
    {"query with backslash", "GET", "/public/a?p=\\x&q=%zz", PathError::None, "/public/a", "p=\\x&q=%zz",
     kPublic},
    {"query does not route", "GET", "/public?/admin", PathError::None, "/public", "/admin", kPublic},
    {"second question mark", "GET", "/admin/x?a?b", PathError::None, "/admin/x", "a?b", kAdmin},
    {"case matters", "GET", "/PUBLIC/x", PathError::None, "/PUBLIC/x", "", kNone},
};

std::shared_ptr<const Engine> sample_engine() {
  return Engine::compile(t::make_config({{"/public/**", {}, true}, {"/admin/**"}}));
}

}  // namespace

TEST_CASE("canonicalize_target: attack table") {
  const auto engine = sample_engine();
  std::string path;
  for (const auto& c : kCases) {
    SUBCASE(c.name) {
      CAPTURE(c.target);
      const auto result = canonicalize_target(c.method, c.target, path);
      CHECK(result.error == c.error);
      CHECK_FALSE(result.asterisk);
      if (c.error != PathError::None) {
        CHECK(path.empty());
        CHECK(c.route == kRejected);
        continue;
      }
      CHECK(path == c.path);
      CHECK(result.query == c.query);
      CHECK(result.has_query == (c.target.find('?') != std::string_view::npos));
      const auto match = engine->match(c.method, path);
      CHECK(match.route == c.route);
    }
  }
}

namespace {

using tokengate::policy::CanonicalOptions;

enum Alias { kSemicolon, kEncodedPercent, kTrailingDot };

bool allows(const CanonicalOptions& o, Alias alias) {
  switch (alias) {
    case kSemicolon:
      return o.allow_semicolon;
    case kEncodedPercent:
      return o.allow_encoded_percent;
    case kTrailingDot:
      return o.allow_trailing_dot;
  }
  return false;
}

// All eight paths.allow combinations.
std::vector<CanonicalOptions> every_options() {
  std::vector<CanonicalOptions> out;
  for (int bits = 0; bits < 8; ++bits) out.push_back({(bits & 1) != 0, (bits & 2) != 0, (bits & 4) != 0});
  return out;
}

struct AliasCase {
  std::string_view target;
  Alias alias;            // the one allow entry that makes it acceptable
  std::string_view path;  // canonical path once allowed
  std::string_view query;
};

const AliasCase kAliasCases[] = {
    {"/api/admin;/x", kSemicolon, "/api/admin;/x", ""},
    {"/api/x/..;/admin/y", kSemicolon, "/api/x/..;/admin/y", ""},
    {"/api/x;jsessionid=1?a=b", kSemicolon, "/api/x;jsessionid=1", "a=b"},
    {"/api/;/x", kSemicolon, "/api/;/x", ""},
    {"/api/%2561dmin", kEncodedPercent, "/api/%2561dmin", ""},
    {"/api/100%25", kEncodedPercent, "/api/100%25", ""},
    {"/api/%252e%252e/admin", kEncodedPercent, "/api/%252e%252e/admin", ""},
    {"/api/admin./x", kTrailingDot, "/api/admin./x", ""},
    {"/api/admin%2e/x", kTrailingDot, "/api/admin./x", ""},
    {"/api/admin.../x", kTrailingDot, "/api/admin.../x", ""},
    {"/api/x.", kTrailingDot, "/api/x.", ""},
    {"/api/a./../admin", kTrailingDot, "/api/admin", ""},
};

PathError error_of(Alias alias) {
  switch (alias) {
    case kSemicolon:
      return PathError::SemicolonInPath;
    case kEncodedPercent:
      return PathError::EncodedPercent;
    case kTrailingDot:
      return PathError::TrailingDot;
  }
  return PathError::None;
}

}  // namespace

TEST_CASE("canonicalize_target: aliases are refused unless allowed") {
  const auto engine = Engine::compile(t::make_config({{"/api/**"}}));
  std::string path;
  for (const auto& c : kAliasCases) {
    for (const auto& options : every_options()) {
      CAPTURE(c.target);
      CAPTURE(options.allow_semicolon);
      CAPTURE(options.allow_encoded_percent);
      CAPTURE(options.allow_trailing_dot);
      const auto result = canonicalize_target("GET", c.target, path, options);
      if (!allows(options, c.alias)) {
        CHECK(result.error == error_of(c.alias));
        CHECK(path.empty());
        continue;
      }
      REQUIRE(result.error == PathError::None);
      CHECK(path == c.path);
      CHECK(result.query == c.query);
      CHECK(engine->match("GET", path).route == 0);
    }
  }
  // Allowing aliases relaxes nothing else.
  const CanonicalOptions all{true, true, true};
  CHECK(canonicalize_target("GET", "/api/%2F", path, all).error == PathError::EncodedSeparator);
  CHECK(canonicalize_target("GET", "/api/%252F/..;/../../../..", path, all).error == PathError::AboveRoot);
  CHECK(canonicalize_target("GET", "/api/%", path, all).error == PathError::BadEscape);
}

TEST_CASE("canonicalize_target: the engine's options follow paths.allow") {
  auto config = t::make_config({{"/api/**"}});
  CHECK_FALSE(Engine::compile(config)->canonical_options().allow_semicolon);
  config->paths.allow_semicolon = true;
  config->paths.allow_trailing_dot = true;
  const auto options = Engine::compile(config)->canonical_options();
  CHECK(options.allow_semicolon);
  CHECK_FALSE(options.allow_encoded_percent);
  CHECK(options.allow_trailing_dot);
}

TEST_CASE("canonicalize_target: OPTIONS *") {
  std::string path = "stale";
  const auto result = canonicalize_target("OPTIONS", "*", path);
  CHECK(result.error == PathError::None);
  CHECK(result.asterisk);
  CHECK_FALSE(result.has_query);
  // No pattern matches "*": the gateway answers it itself or 404s.
  CHECK(sample_engine()->match("OPTIONS", path).route == -1);
  CHECK_FALSE(sample_engine()->match("OPTIONS", path).path_matched);
}

TEST_CASE("canonicalize_target: empty query and buffer reuse") {
  std::string path;
  path.reserve(256);
  const auto capacity = path.capacity();
  auto result = canonicalize_target("GET", "/a?", path);
  CHECK(result.error == PathError::None);
  CHECK(result.has_query);
  CHECK(result.query.empty());
  CHECK(path == "/a");
  result = canonicalize_target("GET", "/x/%2e%2e/y/./z//", path);
  CHECK(path == "/y/z/");
  CHECK(path.capacity() == capacity);  // reused, not reallocated
  // A failure after partial output leaves the buffer empty.
  result = canonicalize_target("GET", "/a/b/c/%zz", path);
  CHECK(result.error == PathError::BadEscape);
  CHECK(path.empty());
}

TEST_CASE("canonicalize_target: error names") {
  CHECK(tokengate::policy::to_string(PathError::Fragment) == "fragment");
  CHECK(tokengate::policy::to_string(PathError::EncodedSeparator) == "encoded separator");
  CHECK(tokengate::policy::to_string(PathError::AboveRoot) == "above root");
  CHECK(tokengate::policy::to_string(PathError::NotOriginForm) == "not origin form");
  CHECK(tokengate::policy::to_string(PathError::SemicolonInPath) == "semicolon_in_path");
  CHECK(tokengate::policy::to_string(PathError::EncodedPercent) == "encoded_percent");
  CHECK(tokengate::policy::to_string(PathError::TrailingDot) == "trailing_dot");
}

TEST_CASE("canonicalize_target: properties over generated targets") {
  // Targets built from the pieces attacks are made of; a fixed seed keeps runs
  // reproducible. Every accepted result must be a fixed point (under the same
  // options) with no dot segments, no empty inner segments, only canonical
  // escapes, and none of the alias spellings the options refuse.
  const char* pieces[] = {"/",   "/",   "/",   ".",   "..",  "%2e", "%2E", "a",   "b",
                          "%41", "%61", "%3a", "%3A", "%25", ";",   "~",   "%7E", "-",
                          "%2d", "%",   "%2",  "%2f", "%5C", "\\",  "?",   "x=1"};
  std::mt19937 rng(20261127);
  std::uniform_int_distribution<std::size_t> pick(0, std::size(pieces) - 1);
  std::uniform_int_distribution<int> length(1, 12);
  std::string target, path, again;
  for (const auto& options : every_options()) {
    CAPTURE(options.allow_semicolon);
    CAPTURE(options.allow_encoded_percent);
    CAPTURE(options.allow_trailing_dot);
    int accepted = 0;
    int rejected = 0;
    for (int n = 0; n < 5000; ++n) {
      target = "/";
      for (int k = length(rng); k > 0; --k) target += pieces[pick(rng)];
      const auto result = canonicalize_target("GET", target, path, options);
      if (result.error != PathError::None) {
        ++rejected;
        continue;
      }
      ++accepted;
      INFO(target, " -> ", path);
      REQUIRE(!path.empty());
      CHECK(path.front() == '/');
      CHECK(path.find("//") == std::string::npos);
      const std::string slashed = path + (path.back() == '/' ? "" : "/");
      CHECK(slashed.find("/./") == std::string::npos);
      CHECK(slashed.find("/../") == std::string::npos);
      CHECK(path.find('?') == std::string::npos);
      if (!options.allow_semicolon) CHECK(path.find(';') == std::string::npos);
      if (!options.allow_encoded_percent) CHECK(path.find("%25") == std::string::npos);
      if (!options.allow_trailing_dot) CHECK(slashed.find("./") == std::string::npos);
      for (std::size_t i = 0; i < path.size(); ++i) {
        if (path[i] != '%') continue;
        REQUIRE(i + 2 < path.size());
        // Upper-case hex of a byte that must stay encoded (never unreserved, NUL, '/' or '\\').
        const std::string hex = path.substr(i + 1, 2);
        const int value = std::stoi(hex, nullptr, 16);
        CHECK(hex == std::string{"0123456789ABCDEF"[value / 16], "0123456789ABCDEF"[value % 16]});
        const bool unreserved =
            std::isalnum(value) || value == '-' || value == '.' || value == '_' || value == '~';
        CHECK_FALSE(unreserved);
        CHECK(value != 0);
        CHECK(value != '/');
        CHECK(value != '\\');
      }
      const auto second = canonicalize_target("GET", path, again, options);
      CHECK(second.error == PathError::None);
      CHECK(again == path);
    }
    CHECK(accepted > 200);
    CHECK(rejected > 200);
  }
}
