// The token wire format (docs/admin-api.md, "Token records"): strict parsing,
// checksum and CSPRNG secrets.
#include "store/token_format.hpp"

#include <openssl/rand.h>
#include <zlib.h>

#include <array>
#include <cstdint>
#include <stdexcept>

namespace tokengate::store {
namespace {

constexpr std::string_view kAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

constexpr bool is_base62(char c) noexcept {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

constexpr bool all_base62(std::string_view s) noexcept {
  for (char c : s) {
    if (!is_base62(c)) return false;
  }
  return true;
}

// CRC-32 as base62, most significant digit first, '0'-padded; 62^6 > 2^32 so six fit.
std::array<char, kChecksumLength> checksum_digits(std::string_view text) noexcept {
  // zlib takes a uInt length; a token prefix is 48 bytes, callers never pass more than that
  // except token_checksum, which loops in chunks for arbitrary input.
  uLong crc = crc32(0L, Z_NULL, 0);
  while (!text.empty()) {
    const auto n = static_cast<uInt>(std::min<std::size_t>(text.size(), 1u << 30));
    crc = crc32(crc, reinterpret_cast<const Bytef*>(text.data()), n);
    text.remove_prefix(n);
  }
  std::uint64_t value = crc;
  std::array<char, kChecksumLength> out{};
  for (std::size_t i = kChecksumLength; i-- > 0;) {
    out[i] = kAlphabet[value % 62];
    value /= 62;
  }
  return out;
}

}  // namespace

std::optional<ParsedToken> parse_token(std::string_view text) noexcept {
  if (text.size() != kTokenLength) return std::nullopt;
  if (text.substr(0, kTokenPrefix.size()) != kTokenPrefix) return std::nullopt;
  constexpr std::size_t kIdAt = 3;
  constexpr std::size_t kSepAt = kIdAt + kIdLength;
  constexpr std::size_t kSecretAt = kSepAt + 1;
  constexpr std::size_t kChecksumAt = kSecretAt + kSecretLength;
  if (text[kSepAt] != '_') return std::nullopt;
  const std::string_view id = text.substr(kIdAt, kIdLength);
  const std::string_view secret = text.substr(kSecretAt, kSecretLength);
  const std::string_view checksum = text.substr(kChecksumAt, kChecksumLength);
  if (!all_base62(id) || !all_base62(secret) || !all_base62(checksum)) return std::nullopt;
  const auto expected = checksum_digits(text.substr(0, kChecksumAt));
  if (checksum != std::string_view(expected.data(), expected.size())) return std::nullopt;
  return ParsedToken{id, secret};
}

bool is_valid_id(std::string_view id) noexcept { return id.size() == kIdLength && all_base62(id); }

std::string format_token(std::string_view id, std::string_view secret) {
  std::string out;
  out.reserve(kTokenLength);
  out.append(kTokenPrefix).append(id).append("_").append(secret);
  out.append(token_checksum(out));
  return out;
}

std::string token_checksum(std::string_view text) {
  const auto digits = checksum_digits(text);
  return std::string(digits.data(), digits.size());
}

std::string random_base62(std::size_t length) {
  std::string out;
  out.reserve(length);
  std::array<unsigned char, 64> buf{};
  while (out.size() < length) {
    if (RAND_bytes(buf.data(), static_cast<int>(buf.size())) != 1) {
      throw std::runtime_error("OpenSSL RAND_bytes failed: no secure random bytes available");
    }
    for (unsigned char b : buf) {
      // 248 = 4 * 62: bytes at or above it are rejected so every digit is equally likely.
      if (b >= 248) continue;
      out.push_back(kAlphabet[b % 62]);
      if (out.size() == length) break;
    }
  }
  return out;
}

}  // namespace tokengate::store
