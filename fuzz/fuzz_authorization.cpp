// The Authorization header parser of the data plane, compared against a plain
// reference of the rule: the scheme is the first word (after optional
// whitespace), "Bearer" in any case; the token is the rest without surrounding
// spaces and tabs, as a view into the header value. A Bearer token is then given
// to the token parser, as a request would.
#include <cstdint>
#include <string_view>

#include "check.hpp"
#include "gateway/http/authorization.hpp"
#include "store/token_format.hpp"

namespace {

namespace gw = tokengate::gateway;

bool is_ows(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
  return s;
}

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool is_bearer_word(std::string_view word) {
  constexpr std::string_view kBearer = "bearer";
  if (word.size() != kBearer.size()) return false;
  for (std::size_t i = 0; i < word.size(); ++i) {
    if (lower(word[i]) != kBearer[i]) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view value(reinterpret_cast<const char*>(data), size);

  const gw::Authorization absent = gw::parse_authorization(false, value);
  FUZZ_CHECK(absent.kind == gw::AuthKind::None && absent.token.empty(), value);

  const gw::Authorization auth = gw::parse_authorization(true, value);
  const std::string_view trimmed = trim(value);
  std::size_t word_end = 0;
  while (word_end < trimmed.size() && !is_ows(trimmed[word_end])) ++word_end;
  const bool bearer = is_bearer_word(trimmed.substr(0, word_end));
  if (!bearer) {
    FUZZ_CHECK(auth.kind == gw::AuthKind::WrongScheme && auth.token.empty(), value);
    return 0;
  }
  FUZZ_CHECK(auth.kind == gw::AuthKind::Bearer, value);
  FUZZ_CHECK(auth.token == trim(trimmed.substr(word_end)), value);
  if (!auth.token.empty()) {
    FUZZ_CHECK(
        auth.token.data() >= value.data() && auth.token.data() + auth.token.size() <= value.data() + size,
        value);
    FUZZ_CHECK(!is_ows(auth.token.front()) && !is_ows(auth.token.back()), value);
  }
  if (const auto token = tokengate::store::parse_token(auth.token)) {
    FUZZ_CHECK(tokengate::store::format_token(token->id, token->secret) == auth.token, value);
  }
  return 0;
}
