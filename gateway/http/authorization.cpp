// Authorization parsing (see authorization.hpp).
#include "gateway/http/authorization.hpp"

#include "gateway/http/framing.hpp"

namespace tokengate::gateway {

namespace {

bool is_ows(char c) noexcept { return c == ' ' || c == '\t'; }

std::string_view trim_ows(std::string_view s) noexcept {
  while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
  return s;
}

}  // namespace

Authorization parse_authorization(bool present, std::string_view value) noexcept {
  if (!present) return {};
  value = trim_ows(value);
  const auto space = value.find_first_of(" \t");
  const std::string_view scheme = value.substr(0, space);
  if (!iequals_ascii(scheme, "bearer")) return {AuthKind::WrongScheme, {}};
  if (space == std::string_view::npos) return {AuthKind::Bearer, {}};
  return {AuthKind::Bearer, trim_ows(value.substr(space))};
}

}  // namespace tokengate::gateway
