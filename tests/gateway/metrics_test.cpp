// Unit tests of the metrics registry: shard sums, label mapping, histogram shape,
// Prometheus text syntax, and concurrent writers on separate shards.
#include "gateway/obs/metrics.hpp"

#include <doctest/doctest.h>

#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace tokengate::gateway;
using namespace std::chrono_literals;

using tokengate::policy::Outcome;

namespace {

// Minimal Prometheus text parser: every non-comment line is `name{labels} value`;
// returns "name{labels}" -> value and fails the test on any other line.
std::map<std::string, double> parse(const std::string& text) {
  static const std::regex sample(
      R"re(([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\.)*"(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\.)*")*)?\})? (-?[0-9.eE+-]+|\+Inf|NaN))re");
  static const std::regex comment(R"re(# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .*)re");
  std::map<std::string, double> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::smatch m;
    if (std::regex_match(line, comment)) continue;
    REQUIRE_MESSAGE(std::regex_match(line, m, sample), line);
    const std::string key = m[1].str() + (m[2].matched ? m[2].str() : "");
    CHECK_MESSAGE(out.count(key) == 0, "duplicate sample " << key);
    out[key] = std::stod(m[7].str());
  }
  return out;
}

}  // namespace

TEST_CASE("requests are summed over shards and labelled by route name, status class and reason") {
  Metrics m(2);
  m.set_route_names({"/api/**", "/public"});
  m.shard(0).count_request(0, 200, true, Outcome::Allowed, 2ms);
  m.shard(1).count_request(0, 204, true, Outcome::Allowed, 2ms);
  m.shard(1).count_request(0, 403, false, Outcome::InsufficientScope, 1ms);
  m.shard(0).count_request(-1, 404, false, Outcome::NoRoute, 1ms);
  m.shard(0).count_request(7, 502, false, Outcome::UpstreamBadResponse, 1ms);
  const auto s = parse(m.render_prometheus());
  CHECK(
      s.at(
          R"(tokengate_requests_total{route="/api/**",status="2xx",decision="allow",reason="allowed",mode="proxy"})") ==
      2);
  CHECK(
      s.at(
          R"(tokengate_requests_total{route="/api/**",status="4xx",decision="deny",reason="insufficient_scope",mode="proxy"})") ==
      1);
  CHECK(
      s.at(
          R"(tokengate_requests_total{route="none",status="4xx",decision="deny",reason="no_route",mode="proxy"})") ==
      1);
  CHECK(
      s.at(
          R"(tokengate_requests_total{route="#7",status="5xx",decision="deny",reason="upstream_bad_response",mode="proxy"})") ==
      1);
  CHECK(
      s.count(
          R"(tokengate_requests_total{route="/public",status="2xx",decision="allow",reason="allowed",mode="proxy"})") ==
      0);
}

TEST_CASE("latency histogram is cumulative with matching count and sum") {
  Metrics m(1);
  m.shard(0).count_request(0, 200, true, Outcome::Allowed, 300us);  // <= 0.0005
  m.shard(0).count_request(0, 200, true, Outcome::Allowed, 30ms);   // <= 0.05
  m.shard(0).count_request(0, 200, true, Outcome::Allowed, 20s);    // +Inf only
  const auto s = parse(m.render_prometheus());
  CHECK(s.at(R"(tokengate_request_duration_seconds_bucket{le="0.0005"})") == 1);
  CHECK(s.at(R"(tokengate_request_duration_seconds_bucket{le="0.025"})") == 1);
  CHECK(s.at(R"(tokengate_request_duration_seconds_bucket{le="0.05"})") == 2);
  CHECK(s.at(R"(tokengate_request_duration_seconds_bucket{le="10"})") == 2);
  CHECK(s.at(R"(tokengate_request_duration_seconds_bucket{le="+Inf"})") == 3);
  CHECK(s.at("tokengate_request_duration_seconds_count") == 3);
  CHECK(s.at("tokengate_request_duration_seconds_sum") == doctest::Approx(20.0303));
}

TEST_CASE("other families: upstream errors, verifications, cache, reloads, connections, expiring tokens") {
  Metrics m(2);
  m.shard(0).count_upstream_error(UpstreamErrorKind::ConnectFailed);
  m.shard(1).count_upstream_error(UpstreamErrorKind::TlsVerify);
  m.shard(1).count_upstream_error(UpstreamErrorKind::TlsVerify);
  m.shard(0).count_verification(0);
  m.shard(0).count_verification(2);
  m.shard(0).count_verification(99);  // out of range: ignored, not a crash
  m.shard(1).count_cache(true);
  m.shard(1).count_cache(false);
  m.shard(0).connection_opened();
  m.shard(1).connection_opened();
  m.shard(1).connection_closed();
  m.reload_ok(std::chrono::system_clock::time_point(std::chrono::seconds(1700000000)));
  m.reload_failed();
  m.last_used_written(3);
  m.set_expiring_soon_source([] { return std::uint64_t{4}; });
  const auto s = parse(m.render_prometheus());
  CHECK(s.at(R"(tokengate_upstream_errors_total{kind="connect_failed"})") == 1);
  CHECK(s.at(R"(tokengate_upstream_errors_total{kind="tls_verify"})") == 2);
  CHECK(s.at(R"(tokengate_upstream_errors_total{kind="timeout"})") == 0);
  CHECK(s.at(R"(tokengate_token_verifications_total{result="valid"})") == 1);
  CHECK(s.at(R"(tokengate_token_verifications_total{result="unknown"})") == 1);
  CHECK(s.at("tokengate_token_cache_hits_total") == 1);
  CHECK(s.at("tokengate_token_cache_misses_total") == 1);
  CHECK(s.at(R"(tokengate_config_reloads_total{result="ok"})") == 1);
  CHECK(s.at(R"(tokengate_config_reloads_total{result="failed"})") == 1);
  CHECK(s.at("tokengate_config_last_reload_success_timestamp_seconds") == 1700000000);
  CHECK(s.at("tokengate_open_connections") == 1);
  CHECK(s.at("tokengate_last_used_writes_total") == 3);
  CHECK(s.at("tokengate_tokens_expiring_soon") == 4);

  m.set_expiring_soon_source([]() -> std::uint64_t { throw std::runtime_error("store closed"); });
  CHECK(parse(m.render_prometheus()).count("tokengate_tokens_expiring_soon") == 0);
}

TEST_CASE("route names are escaped in labels") {
  Metrics m(1);
  m.set_route_names({"/a\"b\\c"});
  m.shard(0).count_request(0, 200, true, Outcome::Allowed, 1ms);
  const auto text = m.render_prometheus();
  CHECK(text.find(R"(route="/a\"b\\c")") != std::string::npos);
  parse(text);
}

TEST_CASE("a full label table still counts every request") {
  Metrics m(1);
  for (int route = 0; route < 3000; ++route)
    m.shard(0).count_request(route, 200, true, Outcome::Allowed, 1ms);
  const auto s = parse(m.render_prometheus());
  double labelled = 0;
  for (const auto& [k, v] : s) {
    if (k.rfind("tokengate_requests_total{", 0) == 0) labelled += v;
  }
  CHECK(labelled + s.at("tokengate_requests_unlabelled_total") == 3000);
  CHECK(s.at("tokengate_request_duration_seconds_count") == 3000);
}

TEST_CASE("concurrent writers on their own shards and a concurrent scraper lose nothing") {
  constexpr int kThreads = 4;
  constexpr int kEach = 50000;
  Metrics m(kThreads);
  std::atomic<bool> done{false};
  std::thread scraper([&] {
    while (!done.load()) parse(m.render_prometheus());
  });
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&m, t] {
      for (int i = 0; i < kEach; ++i)
        m.shard(static_cast<std::size_t>(t)).count_request(i % 5, 200, true, Outcome::Allowed, 1ms);
    });
  }
  for (auto& w : writers) w.join();
  done = true;
  scraper.join();
  const auto s = parse(m.render_prometheus());
  CHECK(s.at("tokengate_request_duration_seconds_count") == kThreads * kEach);
  CHECK(
      s.at(
          R"(tokengate_requests_total{route="#0",status="2xx",decision="allow",reason="allowed",mode="proxy"})") ==
      kThreads * kEach / 5);
}
