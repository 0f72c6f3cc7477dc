// Request-target canonicalisation (docs/configuration.md, "Canonical path"). One pass over the
// path, decoding and resolving dot segments directly in the caller's buffer.
//
// Decisions the rules there leave open:
// - A trailing slash is kept: "/api/" stays "/api/" (and "/a/b/.." is "/a/", as in
//   RFC 3986 §5.2.4). Routes see "/api/" as the segments ["api", ""].
// - "OPTIONS *" yields asterisk=true and the path "*", which no route pattern matches.
// - CONNECT is refused whatever its target (NotOriginForm).
// - The query is split off at the first '?' and kept as a view of the input; it is
//   not decoded or checked for escapes, but '#', control characters and bytes
//   >= 0x80 are refused anywhere in the target.
// - Only a raw ';' is an alias: "%3B" stays encoded, and servlet containers split
//   path parameters off before decoding, so to them it is part of the name.
#include "policy/canonical_path.hpp"

#include "policy/char_class.hpp"

namespace tokengate::policy {

std::string_view to_string(PathError error) noexcept {
  switch (error) {
    case PathError::None:
      return "none";
    case PathError::NotOriginForm:
      return "not origin form";
    case PathError::Fragment:
      return "fragment";
    case PathError::BadEscape:
      return "bad escape";
    case PathError::NulByte:
      return "nul byte";
    case PathError::ControlChar:
      return "control char";
    case PathError::NonAscii:
      return "non-ascii byte";
    case PathError::Backslash:
      return "backslash";
    case PathError::EncodedSeparator:
      return "encoded separator";
    case PathError::AboveRoot:
      return "above root";
    case PathError::SemicolonInPath:
      return "semicolon_in_path";
    case PathError::EncodedPercent:
      return "encoded_percent";
    case PathError::TrailingDot:
      return "trailing_dot";
  }
  return "unknown";
}

CanonicalTarget canonicalize_target(std::string_view method, std::string_view target, std::string& path,
                                    CanonicalOptions options) {
  CanonicalTarget result;
  path.clear();
  auto fail = [&](PathError error) {
    path.clear();
    result.error = error;
    result.query = {};
    result.has_query = false;
    return result;
  };

  // Errors that apply to the whole target, query included.
  for (const char ch : target) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '#') return fail(PathError::Fragment);
    if (detail::is_control(c)) return fail(PathError::ControlChar);
    if (c >= 0x80) return fail(PathError::NonAscii);
  }
  if (method == "CONNECT") return fail(PathError::NotOriginForm);
  if (target == "*") {
    if (method != "OPTIONS") return fail(PathError::NotOriginForm);
    result.asterisk = true;
    path.push_back('*');  // (not `path = "*"`: GCC 12 raises a false -Wrestrict on it)
    return result;
  }
  if (target.empty() || target.front() != '/') return fail(PathError::NotOriginForm);

  std::string_view raw = target;
  if (const auto q = target.find('?'); q != std::string_view::npos) {
    raw = target.substr(0, q);
    result.query = target.substr(q + 1);
    result.has_query = true;
  }

  // Invariant during the loop: `path` is "/" followed by resolved segments, each
  // followed by '/'. Escapes never lengthen the text, so this one reserve suffices.
  path.reserve(raw.size() + 1);
  path.push_back('/');
  bool last_was_plain = false;  // the final input segment was a real name: drop the trailing '/'
  std::size_t i = 1;
  while (i <= raw.size()) {
    const std::size_t seg_start = path.size();
    // Decode one input segment onto the end of `path`.
    for (; i < raw.size() && raw[i] != '/'; ++i) {
      const auto c = static_cast<unsigned char>(raw[i]);
      if (c == '\\') return fail(PathError::Backslash);
      if (c == ';' && !options.allow_semicolon) return fail(PathError::SemicolonInPath);
      if (c != '%') {
        path.push_back(static_cast<char>(c));
        continue;
      }
      if (i + 2 >= raw.size()) return fail(PathError::BadEscape);
      const int hi = detail::hex_value(static_cast<unsigned char>(raw[i + 1]));
      const int lo = detail::hex_value(static_cast<unsigned char>(raw[i + 2]));
      if (hi < 0 || lo < 0) return fail(PathError::BadEscape);
      const auto value = static_cast<unsigned char>(hi * 16 + lo);
      if (value == 0) return fail(PathError::NulByte);
      if (value == '/' || value == '\\') return fail(PathError::EncodedSeparator);
      if (value == '%' && !options.allow_encoded_percent) return fail(PathError::EncodedPercent);
      if (detail::is_unreserved(value)) {
        path.push_back(static_cast<char>(value));
      } else {
        path.push_back('%');
        path.push_back(detail::kUpperHex[hi]);
        path.push_back(detail::kUpperHex[lo]);
      }
      i += 2;
    }
    ++i;  // past the '/' (or past the end)

    const std::string_view seg = std::string_view(path).substr(seg_start);
    if (seg.empty() || seg == ".") {
      path.resize(seg_start);  // merged '//' or a '.' segment
      last_was_plain = false;
    } else if (seg == "..") {
      path.resize(seg_start);
      if (seg_start == 1) return fail(PathError::AboveRoot);
      // Drop the previous segment: "/a/b/" -> "/a/".
      path.resize(path.rfind('/', seg_start - 2) + 1);
      last_was_plain = false;
    } else {
      // Checked on the decoded segment, so "%2E" counts as the dot it stands for.
      if (seg.back() == '.' && !options.allow_trailing_dot) return fail(PathError::TrailingDot);
      path.push_back('/');
      last_was_plain = true;
    }
  }
  if (last_was_plain) path.pop_back();
  return result;
}

}  // namespace tokengate::policy
