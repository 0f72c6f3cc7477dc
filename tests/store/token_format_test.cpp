// Token wire format: round trip, checksum strength, and a table of malformed inputs.
#include "store/token_format.hpp"

#include <doctest/doctest.h>
#include <zlib.h>

#include <array>
#include <random>
#include <set>
#include <string>

using namespace tokengate::store;

namespace {
constexpr std::string_view kAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

std::string valid_token() { return format_token(random_base62(kIdLength), random_base62(kSecretLength)); }

// Independent reference for the checksum: plain arithmetic on zlib's crc32.
std::string reference_checksum(const std::string& text) {
  unsigned long crc = crc32(0L, reinterpret_cast<const Bytef*>(text.data()), static_cast<uInt>(text.size()));
  std::string out;
  while (crc > 0) {
    out.insert(out.begin(), kAlphabet[crc % 62]);
    crc /= 62;
  }
  while (out.size() < 6) out.insert(out.begin(), '0');
  return out;
}
}  // namespace

TEST_CASE("token format round trip") {
  for (int i = 0; i < 200; ++i) {
    const std::string id = random_base62(kIdLength);
    const std::string secret = random_base62(kSecretLength);
    const std::string token = format_token(id, secret);
    CHECK(token.size() == kTokenLength);
    CHECK(token.substr(0, 3) == "tg_");
    CHECK(token[15] == '_');
    CHECK(token.substr(48) == reference_checksum(token.substr(0, 48)));
    auto parsed = parse_token(token);
    REQUIRE(parsed);
    CHECK(parsed->id == id);
    CHECK(parsed->secret == secret);
    CHECK(is_valid_id(parsed->id));
  }
}

TEST_CASE("checksum of known values") {
  // crc32("") = 0 -> all zeros; crc32("a") = 0xe8b7be43 = 3904355907.
  CHECK(token_checksum("") == "000000");
  unsigned long v = 3904355907UL;
  std::string expected;
  for (int i = 0; i < 6; ++i) {
    expected.insert(expected.begin(), kAlphabet[v % 62]);
    v /= 62;
  }
  CHECK(token_checksum("a") == expected);
  CHECK(token_checksum("tg_000000000000_00000000000000000000000000000000") ==
        reference_checksum("tg_000000000000_00000000000000000000000000000000"));
}

TEST_CASE("random_base62 uses the whole alphabet and only it") {
  const std::string s = random_base62(20000);
  CHECK(s.size() == 20000);
  std::set<char> seen(s.begin(), s.end());
  CHECK(seen.size() == 62);
  for (char c : s) CHECK(kAlphabet.find(c) != std::string_view::npos);
  // Without modulo bias every digit is close to 20000/62 ~ 323; with a `% 62` on bytes
  // the first 8 digits would get ~25% more. Allow generous noise.
  std::array<int, 256> counts{};
  for (char c : s) ++counts[static_cast<unsigned char>(c)];
  for (char c : kAlphabet) {
    CHECK(counts[static_cast<unsigned char>(c)] > 220);
    CHECK(counts[static_cast<unsigned char>(c)] < 430);
  }
  CHECK(random_base62(0).empty());
  CHECK(random_base62(32) != random_base62(32));
}

TEST_CASE("the checksum catches every single-character change") {
  for (int round = 0; round < 3; ++round) {
    const std::string token = valid_token();
    REQUIRE(parse_token(token));
    int variants = 0;
    for (std::size_t pos = 0; pos < token.size(); ++pos) {
      for (int c = 0; c < 256; ++c) {
        if (static_cast<char>(c) == token[pos]) continue;
        std::string changed = token;
        changed[pos] = static_cast<char>(c);
        ++variants;
        if (parse_token(changed)) FAIL("accepted a token changed at position " << pos << " to " << c);
      }
    }
    CHECK(variants == 54 * 255);
  }
}

TEST_CASE("malformed tokens are rejected") {
  const std::string good = valid_token();
  SUBCASE("every length 0..60 other than the right one") {
    for (std::size_t n = 0; n <= 60; ++n) {
      if (n == kTokenLength) continue;
      std::string s = n <= good.size() ? good.substr(0, n) : good + std::string(n - good.size(), 'a');
      CHECK_FALSE(parse_token(s));
    }
  }
  SUBCASE("table") {
    auto with_checksum = [](std::string body) { return body + token_checksum(body); };
    const std::string id = good.substr(3, 12), secret = good.substr(16, 32);
    const std::vector<std::string> bad = {
        "",
        "tg_",
        "TG_" + good.substr(3),
        with_checksum("TG_" + id + "_" + secret),
        with_checksum("tk_" + id + "_" + secret),
        with_checksum("tg-" + id + "_" + secret),
        with_checksum("tg_" + id + "-" + secret),
        with_checksum("tg_" + id.substr(0, 11) + "!_" + secret),
        with_checksum("tg_" + id + "_" + secret.substr(0, 31) + "+"),
        with_checksum("tg_" + id + "_" + secret.substr(0, 31) + "_"),
        with_checksum("tg_" + id.substr(0, 11) + "\xc3_" + secret),
        with_checksum("tg_" + id + "_" + secret.substr(0, 10) + std::string(1, '\0') + secret.substr(11)),
        good.substr(0, 53) + std::string(1, '\0'),
        good + std::string(1, '\0'),
        good + " ",
        " " + good,
        good + "\n",
        "Bearer " + good,
        good.substr(0, 48) + "zzzzzz",
        good.substr(0, 48) + "!!!!!!",
        good.substr(0, 48) + "-" + good.substr(49),
        with_checksum("tg_" + id + "_" + secret).substr(0, 53),
        "tg_" + id + "_" + secret,  // no checksum at all
        "tg_" + std::string(12, '0') + "_" + std::string(38, '0'),
    };
    for (const auto& s : bad) {
      INFO("input: " << s);
      CHECK_FALSE(parse_token(s));
    }
  }
  SUBCASE("random byte strings") {
    std::mt19937_64 rng(12345);
    for (int i = 0; i < 20000; ++i) {
      std::size_t n = rng() % 70;
      std::string s(n, '\0');
      for (auto& c : s) c = static_cast<char>(rng());
      if (i % 2 == 0 && n >= 3) s.replace(0, 3, "tg_");
      CHECK_FALSE(parse_token(s));
    }
  }
  SUBCASE("never reads past the view") {
    // The view ends before the valid token does: the tail must not be looked at.
    const std::string buffer = good;
    for (std::size_t n = 0; n < buffer.size(); ++n)
      CHECK_FALSE(parse_token(std::string_view(buffer.data(), n)));
    CHECK(parse_token(std::string_view(buffer.data(), buffer.size())));
  }
}

TEST_CASE("is_valid_id") {
  CHECK(is_valid_id("0123456789Az"));
  CHECK_FALSE(is_valid_id("0123456789A"));
  CHECK_FALSE(is_valid_id("0123456789Az0"));
  CHECK_FALSE(is_valid_id("0123456789A_"));
  CHECK_FALSE(is_valid_id(""));
}
