// The HMAC server key (store.key_file): 32 random bytes, created 0600 if absent.
#pragma once

#include <openssl/sha.h>

#include <array>
#include <filesystem>
#include <string>
#include <string_view>

namespace tokengate::store {

using Sha256 = std::array<unsigned char, 32>;

class ServerKey {
 public:
  // Loads the key file, or creates it (mode 0600, parent directories as needed)
  // when `create_if_missing`. Throws StoreError: unreadable, wrong size, mode wider
  // than 0600, missing when it may not be created.
  static ServerKey load(const std::filesystem::path& file, bool create_if_missing);

  Sha256 hmac(std::string_view message) const;  // HMAC-SHA256(key, message)

 private:
  explicit ServerKey(const std::array<unsigned char, 32>& bytes);
  std::array<unsigned char, 32> bytes_;
  // HMAC as RFC 2104 on OpenSSL's SHA-256: the digest states after absorbing the
  // key XOR ipad / opad, copied by value per call. OpenSSL 3's HMAC() and EVP_MAC
  // paths fetch and key on every call (about 2 µs a verify), and copying an EVP
  // digest context allocates twice; a SHA256_CTX is a plain struct. Never mutated.
  SHA256_CTX inner_{}, outer_{};
};

// Constant-time equality (CRYPTO_memcmp).
bool digest_equal(const Sha256& a, const Sha256& b) noexcept;

}  // namespace tokengate::store
