// Canonical path (policy/canonical_path.hpp) under every paths.allow combination.
// Input: the first byte picks the method (its value mod 4: '0' GET, '1' OPTIONS,
// '2' CONNECT, '3' POST), the rest is the request-target. Beyond
// "no crash", every accepted path must be a fixed point, free of dot segments and
// empty segments, made of allowed bytes and canonical escapes only, free of the
// alias spellings the options refuse; and allowing more must never change the
// path of a target that was already accepted.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "check.hpp"
#include "policy/canonical_path.hpp"

namespace {

using tokengate::policy::CanonicalOptions;
using tokengate::policy::CanonicalTarget;
using tokengate::policy::PathError;

bool is_upper_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); }
int hex(char c) { return c <= '9' ? c - '0' : c - 'A' + 10; }
bool is_unreserved(int c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_' || c == '~';
}

void check_path(std::string_view input, std::string_view path, const CanonicalOptions& options) {
  FUZZ_CHECK(!path.empty() && path.front() == '/', input);
  FUZZ_CHECK(path.find("//") == std::string_view::npos, input);
  // Segment by segment: no "." or "..", no empty inner segment, no refused trailing dot.
  std::size_t start = 1;
  while (start <= path.size()) {
    std::size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    const std::string_view seg = path.substr(start, end - start);
    FUZZ_CHECK(seg != "." && seg != "..", input);
    FUZZ_CHECK(!seg.empty() || end == path.size(), input);
    if (!options.allow_trailing_dot) FUZZ_CHECK(seg.empty() || seg.back() != '.', input);
    start = end + 1;
  }
  for (std::size_t i = 0; i < path.size(); ++i) {
    const auto c = static_cast<unsigned char>(path[i]);
    // Printable ASCII; a raw space cannot come from a request line (the HTTP parser
    // splits on it), so canonicalisation leaves it to the parser.
    FUZZ_CHECK(c >= 0x20 && c < 0x7F, input);
    FUZZ_CHECK(c != '#' && c != '?' && c != '\\', input);
    if (c == ';') FUZZ_CHECK(options.allow_semicolon, input);
    if (c != '%') continue;
    FUZZ_CHECK(i + 2 < path.size(), input);
    FUZZ_CHECK(is_upper_hex(path[i + 1]) && is_upper_hex(path[i + 2]), input);
    const int value = hex(path[i + 1]) * 16 + hex(path[i + 2]);
    FUZZ_CHECK(!is_unreserved(value), input);
    FUZZ_CHECK(value != 0 && value != '/' && value != '\\', input);
    if (value == '%') FUZZ_CHECK(options.allow_encoded_percent, input);
    i += 2;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  static constexpr std::array<std::string_view, 4> kMethods = {"GET", "OPTIONS", "CONNECT", "POST"};
  const std::string_view method = kMethods[data[0] % kMethods.size()];
  const std::string_view target(reinterpret_cast<const char*>(data + 1), size - 1);
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  std::string path, again, widest;
  const CanonicalOptions all{true, true, true};
  const CanonicalTarget with_all = tokengate::policy::canonicalize_target(method, target, widest, all);
  for (int bits = 0; bits < 8; ++bits) {
    const CanonicalOptions options{(bits & 1) != 0, (bits & 2) != 0, (bits & 4) != 0};
    const CanonicalTarget result = tokengate::policy::canonicalize_target(method, target, path, options);
    if (result.error != PathError::None) {
      FUZZ_CHECK(path.empty() && result.query.empty() && !result.has_query, input);
      continue;
    }
    // Allowing more changes nothing for a target that was already acceptable.
    FUZZ_CHECK(with_all.error == PathError::None && widest == path, input);
    if (result.asterisk) {
      FUZZ_CHECK(method == "OPTIONS" && target == "*" && path == "*", input);
      continue;
    }
    FUZZ_CHECK(path.size() <= target.size() + 1, input);
    const auto q = target.find('?');
    FUZZ_CHECK(result.has_query == (q != std::string_view::npos), input);
    if (result.has_query) FUZZ_CHECK(result.query == target.substr(q + 1), input);
    check_path(input, path, options);
    // Idempotent: the canonical path is its own canonical form, under the same options.
    const CanonicalTarget second = tokengate::policy::canonicalize_target("GET", path, again, options);
    FUZZ_CHECK(second.error == PathError::None && again == path && !second.has_query, input);
  }
  return 0;
}
