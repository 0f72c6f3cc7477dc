// Route path patterns: literal segments, '*' (exactly one non-empty segment) and a
// trailing '**' (zero or more segments).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tokengate::policy {

class RoutePattern {
 public:
  // nullopt + error message for an invalid pattern (not starting with '/', '**'
  // not last, '*' mixed into a segment, empty segment, ...).
  static std::optional<RoutePattern> parse(std::string_view text, std::string* error);

  bool matches(std::string_view canonical_path) const noexcept;  // no allocation
  // True if every path this pattern matches is also matched by `other`.
  bool subsumed_by(const RoutePattern& other) const noexcept;

  const std::string& text() const noexcept { return text_; }

  // The parsed form, for the engine's route index and for lint.
  enum class Kind { Literal, Star, DoubleStar };
  struct Segment {
    Kind kind;
    std::string literal;  // only for Literal
  };
  const std::vector<Segment>& segments() const noexcept { return segments_; }

 private:
  std::string text_;
  std::vector<Segment> segments_;
};

}  // namespace tokengate::policy
