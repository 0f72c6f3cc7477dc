// Unit tests of the gateway's pure header logic: framing checks, obs-fold scan,
// Authorization parsing, request ids, forwarded fields.
#include "gateway/http/framing.hpp"

#include <doctest/doctest.h>

#include <boost/beast/http/fields.hpp>
#include <string>
#include <utility>
#include <vector>

#include "gateway/http/authorization.hpp"
#include "gateway/http/error_response.hpp"

namespace http = boost::beast::http;
using namespace tokengate::gateway;

namespace {

Fields make_fields(const std::vector<std::pair<std::string, std::string>>& list) {
  Fields f;
  for (const auto& [name, value] : list) f.insert(name, value);
  return f;
}

// The names of the field lines append_forwarded_fields writes.
std::vector<std::string> forwarded_names(const Fields& f, const StripOptions& options) {
  std::string head;
  append_forwarded_fields(head, f, options);
  std::vector<std::string> out;
  std::string_view rest = head;
  while (!rest.empty()) {
    const auto eol = rest.find("\r\n");
    REQUIRE(eol != std::string_view::npos);
    const auto line = rest.substr(0, eol);
    out.emplace_back(line.substr(0, line.find(':')));
    rest.remove_prefix(eol + 2);
  }
  return out;
}

}  // namespace

TEST_CASE("validate_request_framing") {
  struct Case {
    const char* what;
    std::vector<std::pair<std::string, std::string>> fields;
    FramingError expected;
  };
  const std::vector<Case> cases = {
      {"plain GET", {{"Host", "a"}}, FramingError::None},
      {"content-length", {{"Host", "a"}, {"Content-Length", "5"}}, FramingError::None},
      {"chunked", {{"Host", "a"}, {"Transfer-Encoding", "chunked"}}, FramingError::None},
      {"chunked any case", {{"Host", "a"}, {"Transfer-Encoding", "ChUnKeD"}}, FramingError::None},
      {"CL and TE",
       {{"Host", "a"}, {"Content-Length", "5"}, {"Transfer-Encoding", "chunked"}},
       FramingError::ContentLengthWithTransferEncoding},
      {"TE gzip", {{"Host", "a"}, {"Transfer-Encoding", "gzip"}}, FramingError::BadTransferEncoding},
      {"TE list", {{"Host", "a"}, {"Transfer-Encoding", "gzip, chunked"}}, FramingError::BadTransferEncoding},
      {"TE twice",
       {{"Host", "a"}, {"Transfer-Encoding", "chunked"}, {"Transfer-Encoding", "chunked"}},
       FramingError::BadTransferEncoding},
      {"CL list", {{"Host", "a"}, {"Content-Length", "5, 5"}}, FramingError::BadContentLength},
      {"CL twice",
       {{"Host", "a"}, {"Content-Length", "5"}, {"Content-Length", "5"}},
       FramingError::BadContentLength},
      {"CL sign", {{"Host", "a"}, {"Content-Length", "+5"}}, FramingError::BadContentLength},
      {"CL empty", {{"Host", "a"}, {"Content-Length", ""}}, FramingError::BadContentLength},
      {"no host", {{"Accept", "*/*"}}, FramingError::MissingHost},
      {"two hosts", {{"Host", "a"}, {"Host", "b"}}, FramingError::RepeatedHost},
      {"two authorizations",
       {{"Host", "a"}, {"Authorization", "Bearer x"}, {"Authorization", "Bearer y"}},
       FramingError::RepeatedAuthorization},
      {"NUL in value", {{"Host", "a"}, {"X-A", std::string("a\0b", 3)}}, FramingError::BadHeaderValue},
      {"Transfer_Encoding",
       {{"Host", "a"}, {"Transfer_Encoding", "chunked"}},
       FramingError::UnderscoreFramingField},
      {"Transfer_Encoding next to Content-Length",
       {{"Host", "a"}, {"Content-Length", "5"}, {"transfer_encoding", "chunked"}},
       FramingError::UnderscoreFramingField},
      {"Content_Length next to chunked",
       {{"Host", "a"}, {"Transfer-Encoding", "chunked"}, {"Content_Length", "5"}},
       FramingError::UnderscoreFramingField},
      {"Content_Length alone",
       {{"Host", "a"}, {"CONTENT_LENGTH", "5"}},
       FramingError::UnderscoreFramingField},
      {"host list", {{"Host", "a, b"}}, FramingError::BadHost},
      {"host list no space", {{"Host", "a,b"}}, FramingError::BadHost},
      {"host with space", {{"Host", "a b"}}, FramingError::BadHost},
      {"host with userinfo", {{"Host", "user@a"}}, FramingError::BadHost},
      {"host with path", {{"Host", "a/b"}}, FramingError::BadHost},
      {"host bad port", {{"Host", "a:80x"}}, FramingError::BadHost},
      {"host two colons", {{"Host", "a:80:81"}}, FramingError::BadHost},
      {"host port too long", {{"Host", "a:123456"}}, FramingError::BadHost},
      {"host unclosed literal", {{"Host", "[::1"}}, FramingError::BadHost},
      {"host name and port", {{"Host", "api.example.com:8443"}}, FramingError::None},
      {"host IPv6 literal", {{"Host", "[::1]:8080"}}, FramingError::None},
      {"host IPv4", {{"Host", "127.0.0.1"}}, FramingError::None},
      {"host empty", {{"Host", ""}}, FramingError::None},
  };
  for (const auto& c : cases) {
    CAPTURE(c.what);
    Fields f;
    for (const auto& [name, value] : c.fields) f.insert(name, value);
    CHECK(validate_request_framing(f, 11) == c.expected);
  }
}

TEST_CASE("Transfer-Encoding on an HTTP/1.0 request is refused (RFC 9112 6.1)") {
  const auto f = make_fields({{"Host", "a"}, {"Transfer-Encoding", "chunked"}});
  CHECK(validate_request_framing(f, 10) == FramingError::TransferEncodingOnHttp10);
  CHECK(validate_request_framing(f, 11) == FramingError::None);
  CHECK(validate_request_framing(make_fields({{"Host", "a"}, {"Content-Length", "1"}}), 10) ==
        FramingError::None);
}

TEST_CASE("find_head_end resumes across short reads") {
  const std::string head = "GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY";
  CHECK(find_head_end(head) == head.size() - 4);
  // Search resumed after the first two bytes of the terminator were seen.
  const std::string partial = "GET / HTTP/1.1\r\nHost: a\r\n\r";
  CHECK(find_head_end(partial) == std::string_view::npos);
  const std::string complete = partial + "\nX";
  CHECK(find_head_end(complete, partial.size()) == complete.size() - 1);
  CHECK(find_head_end("", 0) == std::string_view::npos);
}

TEST_CASE("head_has_obs_fold_or_nul") {
  CHECK_FALSE(head_has_obs_fold_or_nul("GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n\r\n"));
  CHECK(head_has_obs_fold_or_nul("GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n"));
  CHECK(head_has_obs_fold_or_nul("GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n\tc\r\n\r\n"));
  CHECK(head_has_obs_fold_or_nul(std::string_view("GET / HTTP/1.1\r\nHost: a\0\r\n\r\n", 29)));
}

TEST_CASE("parse_authorization") {
  CHECK(parse_authorization(false, "").kind == AuthKind::None);
  auto a = parse_authorization(true, "Bearer tg_abc");
  CHECK(a.kind == AuthKind::Bearer);
  CHECK(a.token == "tg_abc");
  a = parse_authorization(true, "bEaReR   tg_abc  ");
  CHECK(a.kind == AuthKind::Bearer);
  CHECK(a.token == "tg_abc");
  a = parse_authorization(true, "Bearer");
  CHECK(a.kind == AuthKind::Bearer);
  CHECK(a.token.empty());
  CHECK(parse_authorization(true, "Basic dXNlcjpwdw==").kind == AuthKind::WrongScheme);
  CHECK(parse_authorization(true, "").kind == AuthKind::WrongScheme);
  CHECK(parse_authorization(true, "Bearertg_abc").kind == AuthKind::WrongScheme);
}

TEST_CASE("is_valid_request_id") {
  CHECK(is_valid_request_id("a"));
  CHECK(is_valid_request_id("req-1.2_3"));
  CHECK(is_valid_request_id(std::string(128, 'x')));
  CHECK_FALSE(is_valid_request_id(std::string(129, 'x')));
  CHECK_FALSE(is_valid_request_id(""));
  CHECK_FALSE(is_valid_request_id("a b"));
  CHECK_FALSE(is_valid_request_id("a/b"));
  CHECK_FALSE(is_valid_request_id("é"));
}

TEST_CASE("append_forwarded_fields") {
  SUBCASE("writes name: value lines in order") {
    auto f = make_fields({{"Host", "a"}, {"Accept", "*/*"}, {"X-Empty", ""}});
    std::string out = "GET / HTTP/1.1\r\n";
    append_forwarded_fields(out, f, StripOptions{"X-Auth-"});
    CHECK(out == "GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nX-Empty: \r\n");
  }
  SUBCASE("hop-by-hop and Connection-named fields go, others stay") {
    auto f = make_fields({{"Host", "a"},
                          {"Connection", "keep-alive, X-Secret , x-other"},
                          {"Keep-Alive", "timeout=5"},
                          {"TE", "trailers"},
                          {"Trailer", "X-T"},
                          {"Transfer-Encoding", "chunked"},
                          {"Upgrade", "h2c"},
                          {"Proxy-Authorization", "Basic x"},
                          {"Proxy-Foo", "1"},
                          {"X-Secret", "s"},
                          {"X-Other", "o"},
                          {"Accept", "*/*"}});
    CHECK(forwarded_names(f, StripOptions{"X-Auth-"}) == std::vector<std::string>{"Host", "Accept"});
  }
  SUBCASE("Proxy (httpoxy) and the '_' spellings of hop-by-hop fields go") {
    auto f = make_fields({{"Host", "a"},
                          {"Proxy", "http://evil"},
                          {"proxy", "http://evil"},
                          {"Proxy_Authorization", "Basic x"},
                          {"Proxy_Connection", "keep-alive"},
                          {"Keep_Alive", "1"},
                          {"Transfer_Encoding", "chunked"},
                          {"Proxyish", "kept"},
                          {"X-Proxy", "kept"}});
    CHECK(forwarded_names(f, StripOptions{"X-Auth-"}) ==
          std::vector<std::string>{"Host", "Proxyish", "X-Proxy"});
  }
  SUBCASE("every Connection field counts, with any number of names") {
    Fields f;
    f.insert("Host", "a");
    std::string list;
    for (int i = 0; i < 100; ++i) list += "X-N" + std::to_string(i) + ",";
    f.insert("Connection", list);
    f.insert("Connection", "X-Late");
    for (int i = 0; i < 100; ++i) f.insert("X-N" + std::to_string(i), "v");
    f.insert("X-Late", "v");
    f.insert("Accept", "*/*");
    CHECK(forwarded_names(f, StripOptions{"X-Auth-"}) == std::vector<std::string>{"Host", "Accept"});
  }
  SUBCASE("a Connection field after other fields counts too") {
    auto f = make_fields({{"Host", "a"},
                          {"Connection", "keep-alive"},
                          {"Accept", "*/*"},
                          {"connection", "X-Secret"},
                          {"X-Secret", "s"}});
    CHECK(forwarded_names(f, StripOptions{"X-Auth-"}) == std::vector<std::string>{"Host", "Accept"});
  }
  SUBCASE("identity prefix is case-insensitive") {
    auto f =
        make_fields({{"Host", "a"}, {"x-auth-subject", "evil"}, {"X-AUTH-ROLES", "admin"}, {"X-Authz", "k"}});
    CHECK(forwarded_names(f, StripOptions{"X-Auth-"}) == std::vector<std::string>{"Host", "X-Authz"});
  }
  SUBCASE("identity prefix with '_' for '-' is stripped too (CGI upstreams read both alike)") {
    auto f = make_fields({{"Host", "a"},
                          {"X_Auth_Subject", "evil"},
                          {"x-auth_roles", "admin"},
                          {"X_Authz", "k"},
                          {"XAuth-X", "k"}});
    CHECK(forwarded_names(f, StripOptions{"X-Auth-"}) ==
          std::vector<std::string>{"Host", "X_Authz", "XAuth-X"});
  }
  SUBCASE("custom prefix") {
    auto f = make_fields({{"Host", "a"}, {"X-Auth-Subject", "kept"}, {"gw-user", "evil"}});
    CHECK(forwarded_names(f, StripOptions{"Gw-"}) == std::vector<std::string>{"Host", "X-Auth-Subject"});
  }
  SUBCASE("authorization kept only when forwarding") {
    auto f = make_fields({{"Host", "a"}, {"Authorization", "Bearer t"}});
    CHECK(forwarded_names(f, StripOptions{"X-Auth-", false, true}) ==
          std::vector<std::string>{"Host", "Authorization"});
    CHECK(forwarded_names(f, StripOptions{"X-Auth-", false, false}) == std::vector<std::string>{"Host"});
  }
  SUBCASE("a Connection list naming Authorization removes it even when forwarding") {
    auto f = make_fields({{"Host", "a"}, {"Connection", "authorization"}, {"Authorization", "Bearer t"}});
    CHECK(forwarded_names(f, StripOptions{"X-Auth-", false, true}) == std::vector<std::string>{"Host"});
  }
  SUBCASE("websocket keeps Upgrade even when Connection names it") {
    auto f = make_fields({{"Host", "a"}, {"Connection", "Upgrade"}, {"Upgrade", "websocket"}});
    CHECK(forwarded_names(f, StripOptions{"X-Auth-", true, false}) ==
          std::vector<std::string>{"Host", "Upgrade"});
  }
  SUBCASE("the caller's own fields are left out, whatever their case") {
    auto f = make_fields({{"Host", "a"},
                          {"x-forwarded-for", "1.2.3.4"},
                          {"X-Request-Id", "r"},
                          {"Content-Length", "5"},
                          {"Accept", "*/*"}});
    CHECK(forwarded_names(
              f,
              StripOptions{
                  "X-Auth-", false, false, {"Host", "X-Forwarded-For", "X-Request-Id", "Content-Length"}}) ==
          std::vector<std::string>{"Accept"});
  }
  SUBCASE("the caller's own fields spelled with '_' are left out too (CGI upstreams read both alike)") {
    auto f = make_fields({{"Host", "a"},
                          {"X_Forwarded_For", "6.6.6.6"},
                          {"x_request_id", "r"},
                          {"Content_Length", "5"},
                          {"X_Forwarded_Fo", "kept"}});
    CHECK(forwarded_names(
              f,
              StripOptions{
                  "X-Auth-", false, false, {"Host", "X-Forwarded-For", "X-Request-Id", "Content-Length"}}) ==
          std::vector<std::string>{"X_Forwarded_Fo"});
  }
}

TEST_CASE("append_upstream_head: the gateway's own fields and framing, never the client's") {
  auto f = make_fields({{"Host", "client.test"},
                        {"Connection", "X-Forwarded-For, X-Auth-Subject, Content-Length"},
                        {"X-Forwarded-For", "1.2.3.4"},
                        {"X_Forwarded_For", "1.2.3.4"},
                        {"X-Auth-Subject", "spoofed"},
                        {"Content-Length", "5"},
                        {"X-Request-Id", "client-id"},
                        {"Accept", "*/*"}});
  std::string head;
  append_upstream_head(head, f,
                       UpstreamRequest{.method = "POST",
                                       .base_path = "/base",
                                       .path = "/api/x",
                                       .has_query = true,
                                       .query = "a=1",
                                       .upstream_host = "127.0.0.1:9000",
                                       .identity_prefix = "X-Auth-",
                                       .identity_fields = "X-Auth-Subject: abc\r\n",
                                       .client_address = "10.0.0.1",
                                       .request_id = "rid",
                                       .content_length = 5});
  CHECK(head ==
        "POST /base/api/x?a=1 HTTP/1.1\r\n"
        "Host: 127.0.0.1:9000\r\n"
        "Accept: */*\r\n"
        "X-Auth-Subject: abc\r\n"
        "X-Forwarded-For: 10.0.0.1\r\n"
        "X-Forwarded-Proto: http\r\n"
        "X-Forwarded-Host: client.test\r\n"
        "X-Request-Id: rid\r\n"
        "Content-Length: 5\r\n"
        "\r\n");
  std::string chunked;
  append_upstream_head(chunked, make_fields({{"Host", "h"}, {"Transfer-Encoding", "chunked"}}),
                       UpstreamRequest{.method = "PUT", .path = "/", .chunked = true, .content_length = 7});
  CHECK(chunked.find("Transfer-Encoding: chunked\r\n") != std::string::npos);
  CHECK(chunked.find("Content-Length") == std::string::npos);
}

TEST_CASE("join_names and append_sanitized_field") {
  CHECK(join_names({}).empty());
  CHECK(join_names({"a"}) == "a");
  CHECK(join_names({"a", "b", "c"}) == "a,b,c");
  std::string field;
  append_sanitized_field(field, "X-Auth-Name", std::string_view("a\r\nX-Evil: 1\0b", 14));
  CHECK(field == "X-Auth-Name: a  X-Evil: 1 b\r\n");
}

TEST_CASE("error bodies are the SPEC's JSON shape") {
  CHECK(error_body("invalid_token", "the bearer token is invalid") ==
        R"({"error":"invalid_token","message":"the bearer token is invalid"})");
  CHECK(error_body("x", "quote \" here") == R"({"error":"x","message":"quote \" here"})");
  CHECK(error_code_for(404) == "not_found");
  CHECK(error_code_for(504) == "gateway_timeout");
}
