// The HMAC server key: a 32-byte file, created 0600 with O_EXCL and fsync, refused
// when its mode lets group or others read it.
// SHA256_Init/Update/Final are deprecated in OpenSSL 3 in favour of EVP, whose
// contexts live on the heap; see ServerKey::inner_ for why the hot path wants them.
#define OPENSSL_SUPPRESS_DEPRECATED
#include "store/server_key.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "store/token_store.hpp"

namespace tokengate::store {
namespace {

constexpr std::size_t kKeySize = 32;

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_;
};

[[noreturn]] void fail(const std::filesystem::path& file, std::string_view what, int err) {
  throw StoreError(fmt::format("key file {}: {}: {}", file.string(), what, std::strerror(err)));
}

// Creates missing parent directories with mode 0700: the key's directory should not be
// listable by others either.
void create_parents(const std::filesystem::path& file) {
  std::filesystem::path dir = file.parent_path();
  if (dir.empty()) return;
  std::filesystem::path partial;
  for (const auto& part : dir) {
    partial /= part;
    if (::mkdir(partial.c_str(), 0700) != 0 && errno != EEXIST) {
      throw StoreError(fmt::format("cannot create directory {} for key file {}: {}", partial.string(),
                                   file.string(), std::strerror(errno)));
    }
  }
}

void fsync_dir(const std::filesystem::path& dir) {
  Fd fd(::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() >= 0) ::fsync(fd.get());
}

// Returns false when the file appeared in the meantime (another process created it).
bool create_key_file(const std::filesystem::path& file) {
  create_parents(file);
  std::array<unsigned char, kKeySize> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
    throw StoreError(fmt::format("key file {}: OpenSSL could not generate random bytes", file.string()));
  }
  Fd fd(::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (fd.get() < 0) {
    if (errno == EEXIST) return false;
    fail(file, "cannot create", errno);
  }
  std::size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = n < 0 ? errno : EIO;
      ::unlink(file.c_str());
      fail(file, "cannot write", err);
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd.get()) != 0) {
    int err = errno;
    ::unlink(file.c_str());
    fail(file, "cannot sync", err);
  }
  OPENSSL_cleanse(bytes.data(), bytes.size());
  fsync_dir(file.parent_path());
  return true;
}

}  // namespace

ServerKey ServerKey::load(const std::filesystem::path& file, bool create_if_missing) {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) {
    if (errno != ENOENT) fail(file, "cannot stat", errno);
    if (!create_if_missing) {
      throw StoreError(fmt::format("key file {} does not exist", file.string()));
    }
    create_key_file(file);
  }
  Fd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) fail(file, "cannot open", errno);
  if (::fstat(fd.get(), &st) != 0) fail(file, "cannot stat", errno);
  if (!S_ISREG(st.st_mode)) {
    throw StoreError(fmt::format("key file {} is not a regular file", file.string()));
  }
  if ((st.st_mode & 077) != 0) {
    throw StoreError(
        fmt::format("key file {} has mode {:04o}; it must not be readable by group or others "
                    "(chmod 600 {})",
                    file.string(), st.st_mode & 07777, file.string()));
  }
  if (st.st_size != static_cast<off_t>(kKeySize)) {
    throw StoreError(fmt::format("key file {} has {} bytes; a tokengate key is exactly {} bytes",
                                 file.string(), static_cast<long long>(st.st_size), kKeySize));
  }
  std::array<unsigned char, kKeySize> bytes{};
  std::size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::read(fd.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail(file, "cannot read", errno);
    if (n == 0) {
      throw StoreError(fmt::format("key file {} is shorter than {} bytes", file.string(), kKeySize));
    }
    done += static_cast<std::size_t>(n);
  }
  ServerKey key(bytes);
  OPENSSL_cleanse(bytes.data(), bytes.size());
  return key;
}

namespace {

SHA256_CTX padded_state(const std::array<unsigned char, 32>& key, unsigned char pad) {
  std::array<unsigned char, 64> block{};  // SHA-256 block size; the key is shorter, so zero-padded
  for (std::size_t i = 0; i < block.size(); ++i)
    block[i] = static_cast<unsigned char>((i < key.size() ? key[i] : 0) ^ pad);
  SHA256_CTX ctx;
  const bool ok = SHA256_Init(&ctx) == 1 && SHA256_Update(&ctx, block.data(), block.size()) == 1;
  OPENSSL_cleanse(block.data(), block.size());
  if (!ok) throw StoreError("OpenSSL could not initialise SHA-256 for HMAC");
  return ctx;
}

}  // namespace

ServerKey::ServerKey(const std::array<unsigned char, 32>& bytes)
    : bytes_(bytes), inner_(padded_state(bytes, 0x36)), outer_(padded_state(bytes, 0x5c)) {}

Sha256 ServerKey::hmac(std::string_view message) const {
  Sha256 inner{}, out{};
  SHA256_CTX work = inner_;
  SHA256_Update(&work, message.data(), message.size());
  SHA256_Final(inner.data(), &work);
  work = outer_;
  SHA256_Update(&work, inner.data(), inner.size());
  SHA256_Final(out.data(), &work);
  OPENSSL_cleanse(&work, sizeof work);
  OPENSSL_cleanse(inner.data(), inner.size());
  return out;
}

bool digest_equal(const Sha256& a, const Sha256& b) noexcept {
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace tokengate::store
