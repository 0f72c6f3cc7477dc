// Route path patterns (docs/configuration.md, "Patterns"): parsing, matching against canonical
// paths, and the subsumption test behind the shadowed-route lint.
#include "policy/route_pattern.hpp"

#include <fmt/format.h>

#include "policy/char_class.hpp"
#include "policy/path_segments.hpp"

namespace tokengate::policy {
namespace {

// Why a literal segment could never equal a segment of a canonical path, or "".
std::string literal_problem(std::string_view seg) {
  if (seg == "." || seg == "..")
    return fmt::format("dot segment '{}' never appears in a canonical path", seg);
  for (std::size_t i = 0; i < seg.size(); ++i) {
    const auto c = static_cast<unsigned char>(seg[i]);
    if (detail::is_control(c)) return "control character";
    if (c >= 0x80) return "non-ASCII byte (percent-encode it in upper case)";
    if (c == '\\') return "backslash";
    if (c == '#' || c == '?') return fmt::format("'{}' cannot appear in a path", static_cast<char>(c));
    if (c == '*') return "'*' must be a whole segment";
    if (c != '%') continue;
    if (i + 2 >= seg.size()) return "malformed percent escape";
    const int hi = detail::hex_value(static_cast<unsigned char>(seg[i + 1]));
    const int lo = detail::hex_value(static_cast<unsigned char>(seg[i + 2]));
    if (hi < 0 || lo < 0) return "malformed percent escape";
    const auto value = static_cast<unsigned char>(hi * 16 + lo);
    const auto escape = seg.substr(i, 3);
    if (value == 0 || value == '/' || value == '\\')
      return fmt::format("percent escape {} is always rejected in request paths", escape);
    if (detail::is_unreserved(value))
      return fmt::format("percent escape {} is decoded in canonical paths: write '{}'", escape,
                         static_cast<char>(value));
    if (escape[1] != detail::kUpperHex[hi] || escape[2] != detail::kUpperHex[lo])
      return fmt::format("percent escape {} must use upper-case hex", escape);
    i += 2;
  }
  return {};
}

// Does pattern segment `a` match only segments that `b` also matches?
bool segment_subsumed(const RoutePattern::Segment& a, const RoutePattern::Segment& b) noexcept {
  using Kind = RoutePattern::Kind;
  if (b.kind == Kind::Star) return a.kind == Kind::Literal || a.kind == Kind::Star;  // literals are non-empty
  if (b.kind == Kind::Literal) return a.kind == Kind::Literal && a.literal == b.literal;
  return false;  // '**' is handled by the caller
}

}  // namespace

std::optional<RoutePattern> RoutePattern::parse(std::string_view text, std::string* error) {
  auto fail = [&](std::string message) -> std::optional<RoutePattern> {
    if (error) *error = std::move(message);
    return std::nullopt;
  };
  if (text.empty() || text.front() != '/') return fail("a pattern must start with '/'");
  RoutePattern pattern;
  pattern.text_ = std::string(text);
  if (text.size() == 1) return pattern;  // "/": the root only

  std::string_view rest = text.substr(1);
  while (true) {
    const auto slash = rest.find('/');
    const std::string_view seg = rest.substr(0, slash);
    const bool last = slash == std::string_view::npos;
    if (seg.empty()) return fail("empty segment (repeated or trailing '/'; '/x/**' matches '/x/')");
    if (seg == "**") {
      if (!last) return fail("'**' is only allowed as the last segment");
      pattern.segments_.push_back({Kind::DoubleStar, {}});
    } else if (seg == "*") {
      pattern.segments_.push_back({Kind::Star, {}});
    } else {
      if (auto problem = literal_problem(seg); !problem.empty())
        return fail(fmt::format("segment '{}': {}", seg, problem));
      pattern.segments_.push_back({Kind::Literal, std::string(seg)});
    }
    if (last) break;
    rest = rest.substr(slash + 1);
  }
  return pattern;
}

bool RoutePattern::matches(std::string_view canonical_path) const noexcept {
  if (canonical_path.empty() || canonical_path.front() != '/') return false;
  detail::SegmentCursor cursor(canonical_path);
  for (const auto& seg : segments_) {
    if (seg.kind == Kind::DoubleStar) return true;  // zero or more of whatever remains
    if (cursor.done()) return false;
    const auto actual = cursor.next();
    if (seg.kind == Kind::Star ? actual.empty() : actual != seg.literal) return false;
  }
  return cursor.done();
}

bool RoutePattern::subsumed_by(const RoutePattern& other) const noexcept {
  const auto& a = segments_;
  const auto& b = other.segments_;
  const bool b_rest = !b.empty() && b.back().kind == Kind::DoubleStar;
  const std::size_t b_fixed = b_rest ? b.size() - 1 : b.size();
  const bool a_rest = !a.empty() && a.back().kind == Kind::DoubleStar;
  const std::size_t a_fixed = a_rest ? a.size() - 1 : a.size();
  if (b_rest) {
    // `other` matches every path whose first b_fixed segments match; this pattern
    // must fix at least that many segments (a '**' here could stop short).
    if (a_fixed < b_fixed) return false;
  } else {
    // `other` matches paths of exactly b_fixed segments; so must this one.
    if (a_rest || a_fixed != b_fixed) return false;
  }
  for (std::size_t i = 0; i < b_fixed; ++i)
    if (!segment_subsumed(a[i], b[i])) return false;
  return true;
}

}  // namespace tokengate::policy
