// Token wire format (store/token_format.hpp). Any input: parse_token either fails
// or returns views that format back to exactly the input. Input bytes are also
// mapped onto an id and a secret: the formatted token must parse back to them,
// and every one-character substitution or adjacent swap of it must be refused
// (CRC-32 catches every error burst of up to 32 bits).
#include <cstdint>
#include <string>
#include <string_view>

#include "check.hpp"
#include "store/token_format.hpp"

namespace {

namespace store = tokengate::store;

constexpr std::string_view kBase62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

bool is_base62(char c) { return kBase62.find(c) != std::string_view::npos; }

void check_parsed(std::string_view text, std::string_view input) {
  const auto parsed = store::parse_token(text);
  if (!parsed) return;
  FUZZ_CHECK(text.size() == store::kTokenLength, input);
  FUZZ_CHECK(store::is_valid_id(parsed->id), input);
  FUZZ_CHECK(parsed->secret.size() == store::kSecretLength, input);
  for (const char c : parsed->secret) FUZZ_CHECK(is_base62(c), input);
  // The views point into the input, at their fixed places.
  FUZZ_CHECK(parsed->id.data() == text.data() + 3, input);
  FUZZ_CHECK(store::format_token(parsed->id, parsed->secret) == text, input);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  check_parsed(input, input);

  // A valid token built from the input bytes (cycled when short).
  if (size == 0) return 0;
  std::string id, secret;
  for (std::size_t i = 0; i < store::kIdLength; ++i) id += kBase62[data[i % size] % kBase62.size()];
  for (std::size_t i = 0; i < store::kSecretLength; ++i) {
    secret += kBase62[data[(store::kIdLength + i) % size] % kBase62.size()];
  }
  const std::string token = store::format_token(id, secret);
  const auto parsed = store::parse_token(token);
  FUZZ_CHECK(parsed && parsed->id == id && parsed->secret == secret, input);
  FUZZ_CHECK(
      token.substr(token.size() - store::kChecksumLength) ==
          store::token_checksum(std::string_view(token).substr(0, token.size() - store::kChecksumLength)),
      input);

  // One substitution, at a place and with a character chosen by the input.
  const std::size_t at = (size > 1 ? data[1] : data[0]) % token.size();
  const char replacement = static_cast<char>(size > 2 ? data[2] : data[0] ^ 0x5A);
  if (replacement != token[at]) {
    std::string changed = token;
    changed[at] = replacement;
    FUZZ_CHECK(!store::parse_token(changed), input);
  }
  // One swap of neighbours that differ.
  if (at + 1 < token.size() && token[at] != token[at + 1]) {
    std::string swapped = token;
    std::swap(swapped[at], swapped[at + 1]);
    FUZZ_CHECK(!store::parse_token(swapped), input);
  }
  return 0;
}
