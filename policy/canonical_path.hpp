// Request-target canonicalisation (docs/configuration.md, "Canonical path"). The gateway
// authorizes and forwards exactly the path this returns. Pure; no allocation
// beyond growing the caller's output buffer.
#pragma once

#include <string>
#include <string_view>

namespace tokengate::policy {

enum class PathError {
  None,
  NotOriginForm,     // absolute-form, authority-form, empty, "*" with a method other than OPTIONS
  Fragment,          // '#'
  BadEscape,         // '%' not followed by two hex digits
  NulByte,           // %00
  ControlChar,       // raw bytes < 0x20 or 0x7F
  NonAscii,          // raw bytes >= 0x80
  Backslash,         // raw '\'
  EncodedSeparator,  // %2F or %5C, any case
  AboveRoot,         // '..' climbing above '/'
  // Spellings that some backends read as a different path than RFC 3986 does;
  // refused unless CanonicalOptions allows them.
  SemicolonInPath,  // raw ';' in the path (servlet path parameters)
  EncodedPercent,   // %25, any case (a second decoding would change the path)
  TrailingDot,      // a segment other than "." and ".." ending in '.' (dropped by Windows servers)
};
std::string_view to_string(PathError error) noexcept;  // "fragment", "encoded separator", ...

// Which of the refusable spellings a deployment accepts (config `paths.allow`).
// Plain flags: canonicalisation runs per request and must not allocate.
struct CanonicalOptions {
  bool allow_semicolon = false;
  bool allow_encoded_percent = false;
  bool allow_trailing_dot = false;
};

struct CanonicalTarget {
  PathError error = PathError::None;
  bool asterisk = false;   // OPTIONS *
  std::string_view query;  // after '?', without it; a view into the input target
  bool has_query = false;  // a '?' was present (even if the query is empty)
};

// Canonicalises `target` (the request-target of the request line) into `path`
// (cleared first; reuse the buffer across requests to avoid allocation).
// A trailing slash is kept ("/api/" stays "/api/", "/a/b/.." is "/a/"); for
// "OPTIONS *" path is "*". On error `path` is left empty. The default options
// refuse every alias spelling.
CanonicalTarget canonicalize_target(std::string_view method, std::string_view target, std::string& path,
                                    CanonicalOptions options = {});

}  // namespace tokengate::policy
