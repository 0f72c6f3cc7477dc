// The RocksDB store: lifecycle, expiry and grace with an injected clock, reopen,
// refusal of bad key files and foreign or locked directories, and kill -9 durability.
#include "store/token_store.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <rocksdb/db.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "test_util.hpp"

using namespace tokengate::store;
using namespace tokengate::store::test;
using namespace std::chrono_literals;

namespace {

NewToken sample(std::string name = "ci deploy") {
  NewToken t;
  t.name = std::move(name);
  t.description = "used by CI";
  t.roles = {"orders-reader", "orders-admin", "orders-reader"};
  t.groups = {"ops"};
  t.permissions = {"b.read", "a.read"};
  t.licenses = {"pro"};
  return t;
}

std::string open_error(const TokenStore::Options& o) {
  try {
    TokenStore::open(o);
  } catch (const StoreError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("store: create, get, verify") {
  TempDir dir;
  ManualClock clock;
  auto store = TokenStore::open(store_options(dir, clock));
  auto issued = store->create(sample());
  const std::string& token = issued.token.reveal();
  REQUIRE(parse_token(token));
  CHECK(parse_token(token)->id == issued.record.id);
  CHECK(issued.record.roles == std::vector<std::string>{"orders-admin", "orders-reader"});
  CHECK(issued.record.permissions == std::vector<std::string>{"a.read", "b.read"});
  CHECK(issued.record.created_at == clock.now());
  CHECK(issued.record.created_by == "cli");

  auto v = store->verify(token);
  CHECK(v.failure == VerifyFailure::None);
  REQUIRE(v.token);
  CHECK(v.token->record.name == "ci deploy");

  auto got = store->get(issued.record.id);
  REQUIRE(got);
  CHECK(got->description == "used by CI");
  CHECK_FALSE(store->get("000000000000"));
  CHECK_FALSE(store->get("not-an-id"));

  // A token for an unknown id, and a wrong secret for a known one.
  CHECK(store->verify(format_token("000000000000", random_base62(32))).failure == VerifyFailure::Unknown);
  CHECK(store->verify(format_token(issued.record.id, random_base62(32))).failure == VerifyFailure::Mismatch);
  CHECK(store->verify("tg_garbage").failure == VerifyFailure::Malformed);

  // The plaintext secret is nowhere in the store's files.
  const std::string secret(parse_token(token)->secret);
  store.reset();
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir.path())) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    std::string content((std::istreambuf_iterator<char>(in)), {});
    CHECK_MESSAGE(content.find(secret) == std::string::npos, entry.path());
  }
}

TEST_CASE("store: update keeps the secret, rotate replaces it") {
  TempDir dir;
  ManualClock clock;
  auto store = TokenStore::open(store_options(dir, clock));
  auto issued = store->create(sample());
  const std::string id = issued.record.id;
  const std::string old_token = issued.token.reveal();

  clock.advance(10s);
  TokenPatch patch;
  patch.name = "renamed";
  patch.roles = std::vector<std::string>{"x", "a", "x"};
  auto updated = store->update(id, patch);
  REQUIRE(updated);
  CHECK(updated->name == "renamed");
  CHECK(updated->roles == std::vector<std::string>{"a", "x"});
  CHECK(updated->groups == std::vector<std::string>{"ops"});  // untouched
  CHECK(updated->updated_at == clock.now());
  CHECK(updated->created_at == clock.now() - 10s);
  CHECK(store->verify(old_token));
  CHECK_FALSE(store->update("000000000000", patch));

  SUBCASE("rotate without grace kills the old secret at once") {
    auto rotated = store->rotate(id, 0s);
    REQUIRE(rotated);
    CHECK(rotated->record.id == id);
    CHECK(rotated->record.rotated_at == clock.now());
    CHECK(rotated->record.name == "renamed");
    CHECK(rotated->token.reveal() != old_token);
    CHECK(store->verify(rotated->token.reveal()));
    CHECK(store->verify(old_token).failure == VerifyFailure::Mismatch);
  }
  SUBCASE("rotate with grace keeps both until the grace ends") {
    auto rotated = store->rotate(id, 600s);
    REQUIRE(rotated);
    const std::string new_token = rotated->token.reveal();
    CHECK(store->verify(new_token));
    CHECK(store->verify(old_token));
    clock.advance(599s);
    CHECK(store->verify(old_token));
    clock.advance(1s);
    CHECK(store->verify(old_token).failure == VerifyFailure::RotatedOut);
    CHECK(store->verify(new_token));
    // A second rotation without grace drops the remembered previous secret too.
    auto again = store->rotate(id, 0s);
    REQUIRE(again);
    CHECK(store->verify(new_token).failure == VerifyFailure::Mismatch);
    CHECK(store->verify(old_token).failure == VerifyFailure::Mismatch);
  }
  CHECK_FALSE(store->rotate("000000000000", 0s));
}

TEST_CASE("store: delete and expiry") {
  TempDir dir;
  ManualClock clock;
  auto store = TokenStore::open(store_options(dir, clock));
  auto a = store->create(sample("a"));
  NewToken expiring = sample("b");
  expiring.expires_at = clock.now() + 3600s;
  auto b = store->create(expiring);

  CHECK(store->remove(a.record.id));
  CHECK_FALSE(store->remove(a.record.id));
  CHECK(store->verify(a.token.reveal()).failure == VerifyFailure::Unknown);
  CHECK_FALSE(store->get(a.record.id));

  CHECK(store->verify(b.token.reveal()));
  clock.advance(3599s);
  CHECK(store->verify(b.token.reveal()));
  clock.advance(1s);
  CHECK(store->verify(b.token.reveal()).failure == VerifyFailure::Expired);
  // A wrong secret is a mismatch, whatever the expiry.
  CHECK(store->verify(format_token(b.record.id, random_base62(32))).failure == VerifyFailure::Mismatch);

  // Removing expiry (patch to "never") revives it.
  TokenPatch never;
  never.expires_at = std::optional<TimePoint>{};
  store->update(b.record.id, never);
  CHECK(store->verify(b.token.reveal()));
}

TEST_CASE("store: list order, last used, reopen keeps everything") {
  TempDir dir;
  ManualClock clock;
  auto options = store_options(dir, clock);
  std::vector<std::string> tokens, ids;
  {
    auto store = TokenStore::open(options);
    for (int i = 0; i < 5; ++i) {
      auto issued = store->create(sample("t" + std::to_string(i)));
      tokens.push_back(issued.token.reveal());
      ids.push_back(issued.record.id);
      clock.advance(1s);
    }
    store->record_last_used({{ids[1], clock.now()}, {"000000000000", clock.now()}});
    store->record_last_used({{ids[1], clock.now() - 100s}});  // older: ignored
    auto rotated = store->rotate(ids[2], 60s);
    REQUIRE(rotated);
    tokens.push_back(tokens[2]);  // old secret, in grace
    tokens[2] = rotated->token.reveal();
    CHECK(store->remove(ids[4]));
  }
  auto store = TokenStore::open(options);
  auto list = store->list();
  REQUIRE(list.size() == 4);
  for (std::size_t i = 0; i < 4; ++i) {
    CHECK(list[i].id == ids[i]);
    CHECK(list[i].name == "t" + std::to_string(i));
  }
  REQUIRE(list[1].last_used_at);
  CHECK(*list[1].last_used_at == clock.now());
  CHECK_FALSE(list[0].last_used_at);
  for (int i = 0; i < 4; ++i) CHECK(store->verify(tokens[i]));
  CHECK(store->verify(tokens[5]));  // previous secret still in grace after reopen
  CHECK(store->verify(tokens[4]).failure == VerifyFailure::Unknown);
  CHECK(store->load_all().size() == 4);
}

TEST_CASE("store: key file rules") {
  TempDir dir;
  ManualClock clock;
  auto options = store_options(dir, clock);
  { TokenStore::open(options); }
  struct stat st {};
  REQUIRE(::stat(options.key_file.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(st.st_size == 32);
  REQUIRE(::stat(options.key_file.parent_path().c_str(), &st) == 0);
  CHECK((st.st_mode & 077) == 0);

  SUBCASE("mode 0644 refused") {
    ::chmod(options.key_file.c_str(), 0644);
    const std::string e = open_error(options);
    CHECK(e.find("0644") != std::string::npos);
    CHECK(e.find("chmod 600") != std::string::npos);
  }
  SUBCASE("wrong size refused") {
    std::ofstream(options.key_file, std::ios::app) << "x";
    CHECK(open_error(options).find("33 bytes") != std::string::npos);
    CHECK_THROWS_AS(ServerKey::load(options.key_file, false), StoreError);
  }
  SUBCASE("missing key file next to an existing store refused") {
    std::filesystem::remove(options.key_file);
    const std::string e = open_error(options);
    CHECK(e.find("missing") != std::string::npos);
    CHECK(e.find("every token would stop working") != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(options.key_file));  // not silently re-created
  }
  SUBCASE("a different key refused") {
    std::filesystem::remove(options.key_file);
    ServerKey::load(options.key_file, true);
    CHECK(open_error(options).find("is not the key") != std::string::npos);
  }
  SUBCASE("ServerKey alone") {
    CHECK_THROWS_AS(ServerKey::load(dir.path() / "nope.key", false), StoreError);
    auto k1 = ServerKey::load(dir.path() / "a" / "b" / "k", true);
    auto k2 = ServerKey::load(dir.path() / "a" / "b" / "k", false);
    CHECK(digest_equal(k1.hmac("m"), k2.hmac("m")));
    CHECK_FALSE(digest_equal(k1.hmac("m"), k1.hmac("n")));
    // Same digest as OpenSSL's one-shot HMAC() with the bytes of the file.
    std::ifstream in(dir.path() / "a" / "b" / "k", std::ios::binary);
    std::string raw((std::istreambuf_iterator<char>(in)), {});
    REQUIRE(raw.size() == 32);
    for (std::string msg : {std::string(), std::string("m"), std::string(200, 'x'), random_base62(32)}) {
      Sha256 expected{};
      unsigned int len = 0;
      HMAC(EVP_sha256(), raw.data(), 32, reinterpret_cast<const unsigned char*>(msg.data()), msg.size(),
           expected.data(), &len);
      CHECK(len == 32);
      CHECK(digest_equal(k1.hmac(msg), expected));
    }
  }
}

TEST_CASE("store: foreign directories are refused") {
  TempDir dir;
  ManualClock clock;
  auto options = store_options(dir, clock);
  SUBCASE("random files") {
    std::filesystem::create_directories(options.path);
    std::ofstream(options.path / "notes.txt") << "hello";
    CHECK(open_error(options).find("is not a tokengate store") != std::string::npos);
  }
  SUBCASE("a plain file") {
    std::filesystem::create_directories(options.path.parent_path());
    std::ofstream(options.path) << "hello";
    CHECK(open_error(options).find("is not a tokengate store") != std::string::npos);
  }
  SUBCASE("another RocksDB database") {
    std::filesystem::create_directories(options.path);
    rocksdb::Options o;
    o.create_if_missing = true;
    rocksdb::DB* db = nullptr;
    REQUIRE(rocksdb::DB::Open(o, options.path.string(), &db).ok());
    REQUIRE(db->Put(rocksdb::WriteOptions(), "k", "v").ok());
    delete db;
    CHECK(open_error(options).find("is not a tokengate store") != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(options.key_file));
  }
}

TEST_CASE("store: corruption is reported, not papered over") {
  TempDir dir;
  ManualClock clock;
  auto options = store_options(dir, clock);
  { TokenStore::open(options)->create(sample()); }
  SUBCASE("CURRENT") {
    std::ofstream(options.path / "CURRENT") << "garbage\n";
    CHECK(open_error(options).find("is corrupt") != std::string::npos);
  }
  SUBCASE("a damaged WAL record before the tail loses nothing silently") {
    bool damaged = false;
    for (const auto& e : std::filesystem::directory_iterator(options.path)) {
      if (e.path().extension() != ".log" || std::filesystem::file_size(e.path()) < 64) continue;
      std::fstream f(e.path(), std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(20);
      f << "ZZZZZZZZ";
      damaged = true;
    }
    REQUIRE(damaged);
    const std::string e = open_error(options);
    CHECK(e.find("is corrupt") != std::string::npos);
    CHECK(e.find('\n') == std::string::npos);
  }
  SUBCASE("the marker alone makes an empty directory a new store") {
    std::filesystem::remove_all(options.path);
    std::filesystem::create_directories(options.path);
    std::ofstream(options.path / "TOKENGATE_STORE") << "x";
    std::filesystem::remove(options.key_file);
    CHECK(open_error(options).empty());
  }
}

TEST_CASE("store: opening a store twice is refused") {
  TempDir dir;
  ManualClock clock;
  auto options = store_options(dir, clock);
  auto store = TokenStore::open(options);
  const std::string e = open_error(options);
  CHECK(e.find("is locked by another process (is `tokengate serve` running?)") != std::string::npos);
  CHECK(e.find('\n') == std::string::npos);
  store.reset();
  CHECK(open_error(options).empty());
}

TEST_CASE("store: every plaintext handed out survives kill -9") {
  TempDir dir;
  ManualClock clock;
  auto options = store_options(dir, clock);
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::dup2(fds[1], 1);
    ::close(fds[0]);
    ::close(fds[1]);
    ::execl(TOKENGATE_STORE_CRASH_CHILD, TOKENGATE_STORE_CRASH_CHILD, options.path.c_str(),
            options.key_file.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(fds[1]);
  std::string received;
  std::size_t lines = 0;
  char buf[4096];
  // Read until the child has reported 25 tokens; it keeps creating more meanwhile.
  while (lines < 25) {
    ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    REQUIRE(n > 0);
    received.append(buf, static_cast<std::size_t>(n));
    lines = static_cast<std::size_t>(std::count(received.begin(), received.end(), '\n'));
  }
  // While the child runs, the store is locked against this process too.
  CHECK(open_error(options).find("is locked by another process") != std::string::npos);
  REQUIRE(::kill(pid, SIGKILL) == 0);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);
  for (;;) {  // whatever the child wrote before it died
    ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    received.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);

  std::vector<std::string> tokens;
  std::size_t start = 0;
  for (std::size_t nl; (nl = received.find('\n', start)) != std::string::npos; start = nl + 1) {
    tokens.push_back(received.substr(start, nl - start));
  }
  REQUIRE(tokens.size() >= 25);
  auto store = TokenStore::open(options);
  for (const auto& t : tokens) {
    auto v = store->verify(t);
    CHECK_MESSAGE(v.failure == VerifyFailure::None, to_string(v.failure));
  }
  CHECK(store->list().size() >= tokens.size());
  MESSAGE("tokens reported by the killed child: " << tokens.size());
}

TEST_CASE("store: a full disk fails the write with StoreError and leaves no partial record") {
  TempDir dir;
  ManualClock clock;
  auto options = store_options(dir, clock);
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::dup2(fds[1], 1);
    ::close(fds[0]);
    ::close(fds[1]);
    ::execl(TOKENGATE_STORE_CRASH_CHILD, TOKENGATE_STORE_CRASH_CHILD, options.path.c_str(),
            options.key_file.c_str(), "full", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(fds[1]);
  std::string received;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    received.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);

  std::vector<std::string> tokens;
  std::string error;
  std::size_t start = 0;
  for (std::size_t nl; (nl = received.find('\n', start)) != std::string::npos; start = nl + 1) {
    std::string line = received.substr(start, nl - start);
    if (line.rfind("ERROR ", 0) == 0) {
      error = line.substr(6);
    } else {
      tokens.push_back(line);
    }
  }
  REQUIRE_FALSE(error.empty());
  CHECK(error.find("cannot write to store") != std::string::npos);
  REQUIRE(tokens.size() >= 5);
  auto store = TokenStore::open(options);
  for (const auto& t : tokens) CHECK(store->verify(t));
  // Every record on disk is one the child was told about: none half-written, none
  // that failed but landed anyway.
  CHECK(store->list().size() == tokens.size());
  MESSAGE("tokens written before the disk was full: " << tokens.size() << "; error: " << error);
}

TEST_CASE("store: a token's rate limit is stored, updated, cleared and kept across a reopen") {
  TempDir dir;
  ManualClock clock;
  auto options = store_options(dir, clock);
  std::string with, without;
  {
    auto store = TokenStore::open(options);
    auto request = sample("limited");
    request.rate_limit = tokengate::conf::RateLimit{100, 1, 200};
    with = store->create(request).record.id;
    without = store->create(sample("default")).record.id;
    CHECK(store->get(with)->rate_limit == tokengate::conf::RateLimit{100, 1, 200});
    CHECK_FALSE(store->get(without)->rate_limit);
    TokenPatch patch;
    patch.rate_limit.emplace(tokengate::conf::RateLimit{5, 60, 1});
    CHECK(store->update(without, patch)->rate_limit == tokengate::conf::RateLimit{5, 60, 1});
    TokenPatch other;  // a patch without the field keeps it
    other.name = "renamed";
    CHECK(store->update(with, other)->rate_limit == tokengate::conf::RateLimit{100, 1, 200});
  }
  auto store = TokenStore::open(options);
  CHECK(store->get(with)->rate_limit == tokengate::conf::RateLimit{100, 1, 200});
  CHECK(store->get(without)->rate_limit == tokengate::conf::RateLimit{5, 60, 1});
  TokenPatch clear;
  clear.rate_limit.emplace(std::nullopt);
  CHECK_FALSE(store->update(with, clear)->rate_limit);
  CHECK_FALSE(store->get(with)->rate_limit);
}
