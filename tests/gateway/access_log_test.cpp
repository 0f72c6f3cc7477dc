// Unit tests of the access log's JSON (the lines are built by hand on the hot
// path, so they are checked against a JSON parser here).
#include "gateway/obs/access_log.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <boost/json/parse.hpp>
#include <chrono>
#include <string>

using tokengate::gateway::append_json_string;

TEST_CASE("append_json_string escapes what JSON requires and round-trips") {
  const std::string cases[] = {
      "",
      "/plain/path",
      "quote \" and backslash \\",
      std::string("controls \n\r\t\b\f \x01 \x1f and NUL ") + '\0' + " end",
      "utf-8 caf\xc3\xa9",
      "\"\\\"\\",
  };
  for (const auto& text : cases) {
    std::string out = "x";
    append_json_string(out, text);
    REQUIRE(out.substr(0, 1) == "x");
    const auto parsed = boost::json::parse(out.substr(1));
    CHECK(parsed.as_string() == text);
  }
  std::string out;
  append_json_string(out, "a\"b\\c\nd\x01");
  CHECK(out == R"("a\"b\\c\nd\u0001")");
}

TEST_CASE("append_access_json writes one parseable line with SPEC §6's fields") {
  using tokengate::gateway::AccessRecord;
  using tokengate::gateway::append_access_json;
  AccessRecord r;
  r.request_id = "rid-1";
  r.client = "127.0.0.1";
  r.method = "GET";
  r.path = "/api/\"x\"";
  r.route = 3;
  r.token_id = "AbCdEfGhIjKl";
  r.allowed = true;
  r.outcome = tokengate::policy::Outcome::Allowed;
  r.upstream = "orders";
  r.status = 200;
  r.bytes_in = 12;
  r.bytes_out = 18446744073709551615ull;
  r.duration = std::chrono::nanoseconds(1'234'567);  // 1.2346 ms: rounded to the microsecond

  std::string out;
  append_access_json(out, r, "2026-11-28T04:00:00.123Z");
  REQUIRE(out.back() == '\n');
  REQUIRE(std::count(out.begin(), out.end(), '\n') == 1);
  const auto line = boost::json::parse(out).as_object();
  CHECK(line.at("time").as_string() == "2026-11-28T04:00:00.123Z");
  CHECK(line.at("request_id").as_string() == "rid-1");
  CHECK(line.at("path").as_string() == "/api/\"x\"");
  CHECK(line.at("route").as_int64() == 3);
  CHECK(line.at("token_id").as_string() == "AbCdEfGhIjKl");
  CHECK(line.at("status").as_int64() == 200);
  CHECK(line.at("bytes_in").as_int64() == 12);
  CHECK(line.at("bytes_out").as_uint64() == 18446744073709551615ull);
  CHECK(!line.contains("detail"));
  CHECK(out.find("\"duration_ms\":1.235}") != std::string::npos);

  // Denied before routing: nulls where there is nothing to say.
  AccessRecord denied;
  denied.status = 404;
  denied.outcome = tokengate::policy::Outcome::NoRoute;
  denied.detail = "why";
  denied.duration = std::chrono::nanoseconds(400);
  out.clear();
  append_access_json(out, denied, "t");
  const auto d = boost::json::parse(out).as_object();
  CHECK(d.at("route").is_null());
  CHECK(d.at("token_id").is_null());
  CHECK(d.at("upstream").is_null());
  CHECK(d.at("decision").as_string() == "deny");
  CHECK(d.at("detail").as_string() == "why");
  CHECK(out.find("\"duration_ms\":0.000}") != std::string::npos);
  denied.duration = std::chrono::nanoseconds(12'345'678'901);
  out.clear();
  append_access_json(out, denied, "t");
  CHECK(out.find("\"duration_ms\":12345.679}") != std::string::npos);
}
