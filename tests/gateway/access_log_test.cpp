// Unit tests of the access log's JSON string escaping (the lines are built by hand
// on the hot path, so escaping is checked against a JSON parser here).
#include "gateway/access_log.hpp"

#include <doctest/doctest.h>

#include <boost/json/parse.hpp>
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
