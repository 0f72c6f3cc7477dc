// The token wire format (docs/admin-api.md, "Token records"): tg_<id>_<secret><checksum>,
// 54 chars.
// Parsing is strict and never touches the store.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace tokengate::store {

inline constexpr std::string_view kTokenPrefix = "tg_";
inline constexpr std::size_t kIdLength = 12;
inline constexpr std::size_t kSecretLength = 32;
inline constexpr std::size_t kChecksumLength = 6;
inline constexpr std::size_t kTokenLength = 3 + kIdLength + 1 + kSecretLength + kChecksumLength;  // 54

// The plaintext of a token. Deliberately has no operator<< and no fmt formatter:
// it cannot end up in a log line by accident. Read it with reveal() where it is
// handed to the caller exactly once.
class SecretToken {
 public:
  explicit SecretToken(std::string plaintext) : plaintext_(std::move(plaintext)) {}
  const std::string& reveal() const noexcept { return plaintext_; }

 private:
  std::string plaintext_;
};

// Views into the parsed input; valid only while the input lives.
struct ParsedToken {
  std::string_view id;      // 12 base62 chars
  std::string_view secret;  // 32 base62 chars
};

// nullopt unless `text` is exactly a well-formed token with a correct checksum.
std::optional<ParsedToken> parse_token(std::string_view text) noexcept;

bool is_valid_id(std::string_view id) noexcept;  // 12 base62 chars

// Builds tg_<id>_<secret><checksum>.
std::string format_token(std::string_view id, std::string_view secret);

// CRC-32 (zlib) of `text` in base62, 6 chars, left-padded with '0'.
std::string token_checksum(std::string_view text);

// `length` base62 chars from OpenSSL's CSPRNG, without modulo bias.
std::string random_base62(std::size_t length);

}  // namespace tokengate::store
