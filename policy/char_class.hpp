// Character classes shared by path canonicalisation and route pattern parsing, so
// both agree on what a canonical path segment may contain. Internal to policy/.
#pragma once

namespace tokengate::policy::detail {

constexpr bool is_unreserved(unsigned char c) noexcept {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_' || c == '~';
}

// -1 if not a hex digit.
constexpr int hex_value(unsigned char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

constexpr char kUpperHex[] = "0123456789ABCDEF";

constexpr bool is_control(unsigned char c) noexcept { return c < 0x20 || c == 0x7F; }

}  // namespace tokengate::policy::detail
