// Splits a canonical path into the segments route patterns match against, without
// allocating. Internal to policy/.
#pragma once

#include <string_view>

namespace tokengate::policy::detail {

// "/" has no segments (so only a zero-segment pattern or a leading "**" matches
// it); otherwise the text after the leading '/' split on '/', so "/api/" is
// ["api", ""]: the trailing empty segment is matched only by "**".
class SegmentCursor {
 public:
  explicit SegmentCursor(std::string_view path) noexcept
      : path_(path), pos_(path.size() <= 1 ? std::string_view::npos : 1) {}
  bool done() const noexcept { return pos_ == std::string_view::npos; }
  std::string_view next() noexcept {
    const auto slash = path_.find('/', pos_);
    std::string_view seg;
    if (slash == std::string_view::npos) {
      seg = path_.substr(pos_);
      pos_ = std::string_view::npos;
    } else {
      seg = path_.substr(pos_, slash - pos_);
      pos_ = slash + 1;
    }
    return seg;
  }

 private:
  std::string_view path_;
  std::size_t pos_;
};

}  // namespace tokengate::policy::detail
