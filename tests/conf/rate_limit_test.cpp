// Tests of conf/rate_limit and the config keys that use it: the COUNT/UNIT
// parser, the CLI's RATE[:BURST], "exceeds", and file:line:col errors for
// `tokens.default_rate_limit` and a route's `rate_limit`.
#include "conf/rate_limit.hpp"

#include <doctest/doctest.h>

#include <string>

#include "conf/config.hpp"

using namespace tokengate::conf;

namespace {

const std::filesystem::path kFake = "/cfg/dir/tokengate.yaml";

// Lines 1..2: one upstream; routes start at line 3.
const std::string kBase = "upstreams:\n  app: { url: http://127.0.0.1:9000 }\n";

std::string error_of(const std::string& yaml) {
  try {
    parse_config(yaml, kFake);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "accepted";
}

std::string at(int line, int column, const std::string& message) {
  return kFake.string() + ":" + std::to_string(line) + ":" + std::to_string(column) + ": " + message;
}

}  // namespace

TEST_CASE("rates: every unit, burst defaults to the count") {
  std::string error;
  const auto s = parse_rate("100/s", error);
  REQUIRE(s);
  CHECK(s->count == 100);
  CHECK(s->window_s == 1);
  CHECK(s->burst == 100);
  CHECK(s->interval_ns() == 10'000'000);
  CHECK(s->tolerance_ns() == 1'000'000'000);
  CHECK(s->rate_text() == "100/s");
  CHECK(parse_rate("6000/m", error)->window_s == 60);
  CHECK(parse_rate("5/h", error)->window_s == 3600);
  CHECK(parse_rate("1/d", error)->interval_ns() == 86'400'000'000'000ULL);
  CHECK(parse_rate("1000000000/s", error)->interval_ns() == 1);
}

TEST_CASE("rates: malformed and out of range") {
  std::string error;
  CHECK_FALSE(parse_rate("0/s", error));
  CHECK(error == "invalid rate '0/s': the rate must be greater than zero");
  CHECK_FALSE(parse_rate("-5/s", error));
  CHECK(error == "invalid rate '-5/s': the count must not be negative");
  CHECK_FALSE(parse_rate("5/w", error));
  CHECK(error == "invalid rate '5/w': unknown unit 'w' (expected s, m, h or d)");
  CHECK_FALSE(parse_rate("100", error));
  CHECK(error == "invalid rate '100' (expected COUNT/UNIT, e.g. 100/s, 6000/m)");
  CHECK_FALSE(parse_rate("1.5/s", error));
  CHECK_FALSE(parse_rate(" 5/s", error));
  CHECK_FALSE(parse_rate("5/S", error));
  CHECK_FALSE(parse_rate("/s", error));
  CHECK_FALSE(parse_rate("99999999999999999999999/s", error));
  CHECK_FALSE(parse_rate("1000000001/s", error));
  CHECK(error == "invalid rate '1000000001/s': the rate's count must be at most 1000000000");
}

TEST_CASE("the command line's RATE[:BURST]") {
  std::string error;
  auto l = parse_rate_limit_arg("6000/m:500", error);
  REQUIRE(l);
  CHECK(l->count == 6000);
  CHECK(l->window_s == 60);
  CHECK(l->burst == 500);
  CHECK(parse_rate_limit_arg("10/s", error)->burst == 10);
  CHECK_FALSE(parse_rate_limit_arg("10/s:0", error));
  CHECK(error == "invalid rate limit '10/s:0': burst must be at least 1");
  CHECK_FALSE(parse_rate_limit_arg("10/s:", error));
  CHECK_FALSE(parse_rate_limit_arg("10/s:-1", error));
  CHECK_FALSE(parse_rate_limit_arg("10/s:x", error));
  // A full burst spanning more than 2^62 ns is refused (the limiter's arithmetic).
  CHECK_FALSE(parse_rate_limit_arg("1/d:1000000", error));
  CHECK(error.find("spans more than a century") != std::string::npos);
  CHECK(parse_rate_limit_arg("1/d:1000", error));
}

TEST_CASE("exceeds: a higher rate or a larger burst; no limit is the largest") {
  std::string error;
  const auto l100 = parse_rate_limit_arg("100/s:200", error);
  CHECK_FALSE(exceeds(l100, l100));
  CHECK(exceeds(parse_rate_limit_arg("101/s:200", error), l100));
  CHECK(exceeds(parse_rate_limit_arg("100/s:201", error), l100));
  CHECK_FALSE(exceeds(parse_rate_limit_arg("6000/m:200", error), l100));  // the same rate
  CHECK(exceeds(parse_rate_limit_arg("6001/m:200", error), l100));
  CHECK_FALSE(exceeds(parse_rate_limit_arg("99/s:10", error), l100));
  CHECK(exceeds(std::nullopt, l100));
  CHECK_FALSE(exceeds(l100, std::nullopt));
  CHECK_FALSE(exceeds(std::nullopt, std::nullopt));
}

TEST_CASE("config: default and route rate limits load") {
  const auto c =
      parse_config("tokens:\n  default_rate_limit: { rate: 100/s, burst: 200 }\n" + kBase +
                       "routes:\n  - path: /search/**\n    upstream: app\n    rate_limit: { rate: 10/m }\n"
                       "  - path: /x\n    upstream: app\n",
                   kFake);
  REQUIRE(c->tokens.default_rate_limit);
  CHECK(*c->tokens.default_rate_limit == RateLimit{100, 1, 200});
  REQUIRE(c->routes[0].rate_limit);
  CHECK(*c->routes[0].rate_limit == RateLimit{10, 60, 10});
  CHECK_FALSE(c->routes[1].rate_limit);
  CHECK_FALSE(parse_config(kBase, kFake)->tokens.default_rate_limit);
}

TEST_CASE("config: nonsense rate limits are errors at file:line:col") {
  const std::string route = kBase + "routes:\n  - path: /x\n    upstream: app\n    rate_limit: ";
  CHECK(error_of(route + "{ rate: 0/s }\n") ==
        at(6, 25, "routes[0].rate_limit.rate: invalid rate '0/s': the rate must be greater than zero"));
  CHECK(error_of(route + "{ rate: -3/s }\n") ==
        at(6, 25, "routes[0].rate_limit.rate: invalid rate '-3/s': the count must not be negative"));
  CHECK(error_of(route + "{ rate: 3/w }\n") ==
        at(6, 25, "routes[0].rate_limit.rate: invalid rate '3/w': unknown unit 'w' (expected s, m, h or d)"));
  CHECK(error_of(route + "{ rate: 3/s, burst: 0 }\n") ==
        at(6, 37, "routes[0].rate_limit.burst: expected an integer in 1..1000000000, got '0'"));
  CHECK(error_of(route + "{ rate: 3/s, burst: -2 }\n") ==
        at(6, 37, "routes[0].rate_limit.burst: must not be negative"));
  CHECK(error_of(route + "{ burst: 2 }\n") == at(6, 5, "routes[0].rate_limit: missing required key 'rate'"));
  CHECK(error_of(route + "{ rate: 3/s, brust: 2 }\n") ==
        at(6, 30, "unknown key 'brust' in routes[0].rate_limit; did you mean 'burst'?"));
  CHECK(error_of(route + "10/s\n") == at(6, 17, "routes[0].rate_limit: expected a mapping, got '10/s'"));
  CHECK(error_of("tokens:\n  default_rate_limit: { rate: 1/d, burst: 1000000 }\n") ==
        at(2, 43, "tokens.default_rate_limit.burst: a burst of 1000000 at 1/d spans more than a century"));
  CHECK(error_of("tokens:\n  default_rate_limt: { rate: 1/s }\n") ==
        at(2, 3, "unknown key 'default_rate_limt' in tokens; did you mean 'default_rate_limit'?"));
}
