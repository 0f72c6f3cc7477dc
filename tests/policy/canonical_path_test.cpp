// Canonical path table (SPEC.md §2): every attack input with its canonical form or
// rejection, and which route of a public/protected sample config then matches.
#include "policy/canonical_path.hpp"

#include <doctest/doctest.h>

#include <cctype>
#include <iterator>
#include <random>
#include <string>
#include <string_view>

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
    {"three dots are a name", "GET", "/public/...", PathError::None, "/public/...", "", kPublic},
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
    {"semicolon is ordinary", "GET", "/admin;x", PathError::None, "/admin;x", "", kNone},
    {"semicolon in segment", "GET", "/admin/x;y=1", PathError::None, "/admin/x;y=1", "", kAdmin},
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
    {"percent kept", "GET", "/public/%25", PathError::None, "/public/%25", "", kPublic},
    {"decoded once", "GET", "/public/%252e%252e", PathError::None, "/public/%252e%252e", "", kPublic},
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
}

TEST_CASE("canonicalize_target: properties over generated targets") {
  // Targets built from the pieces attacks are made of; a fixed seed keeps runs
  // reproducible. Every accepted result must be a fixed point with no dot
  // segments, no empty inner segments and only canonical escapes.
  const char* pieces[] = {"/",   "/",   "/",   ".",   "..",  "%2e", "%2E", "a",   "b",
                          "%41", "%61", "%3a", "%3A", "%25", ";",   "~",   "%7E", "-",
                          "%2d", "%",   "%2",  "%2f", "%5C", "\\",  "?",   "x=1"};
  std::mt19937 rng(20261127);
  std::uniform_int_distribution<std::size_t> pick(0, std::size(pieces) - 1);
  std::uniform_int_distribution<int> length(1, 12);
  std::string target, path, again;
  int accepted = 0;
  int rejected = 0;
  for (int n = 0; n < 20000; ++n) {
    target = "/";
    for (int k = length(rng); k > 0; --k) target += pieces[pick(rng)];
    const auto result = canonicalize_target("GET", target, path);
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
    const auto second = canonicalize_target("GET", path, again);
    CHECK(second.error == PathError::None);
    CHECK(again == path);
  }
  CHECK(accepted > 1000);
  CHECK(rejected > 1000);
}
