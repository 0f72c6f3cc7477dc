// A request as it arrives on a client connection, through the same steps and
// functions as the proxy session before anything is forwarded: head end, the raw
// obs-fold/NUL scan, Beast's head parser, the framing checks, the canonical path,
// the body framing check of the bytes that came with the head, and the upstream
// head the gateway would write. Properties of an accepted request:
// - the upstream head parses back (Beast) as exactly one request head with the
//   canonical path, one Host, and exactly the gateway's framing;
// - it passes the gateway's own framing checks again (the output is unambiguous);
// - no field the gateway owns or strips (identity prefix, hop-by-hop, '_' spellings
//   of framing fields) comes from the client.
#include <boost/beast/http.hpp>
#include <cstdint>
#include <memory_resource>
#include <optional>
#include <string>
#include <string_view>

#include "check.hpp"
#include "gateway/framing.hpp"
#include "gateway/http/body_decoder.hpp"
#include "policy/canonical_path.hpp"

namespace {

namespace http = boost::beast::http;
namespace gw = tokengate::gateway;
using gw::http1::BodyDecoder;
using gw::http1::BodyError;

constexpr std::size_t kMaxHeaderBytes = 16384;
constexpr std::uint64_t kMaxBodyBytes = 1 << 20;

template <class Parser>
std::size_t put_head(Parser& parser, boost::asio::const_buffer bytes, boost::system::error_code& ec) {
  try {
    return parser.put(bytes, ec);
  } catch (const std::length_error&) {
    ec = http::error::header_limit;
    return 0;
  }
}

bool starts_with_folded(std::string_view name, std::string_view prefix) {
  if (name.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    char c = name[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c == '_') c = '-';
    if (c != prefix[i]) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  const std::string_view data(reinterpret_cast<const char*>(bytes), size);
  const std::size_t head_end = gw::find_head_end(data);
  if (head_end == std::string_view::npos || head_end > kMaxHeaderBytes + 4) return 0;
  const std::string_view head = data.substr(0, head_end);
  if (gw::head_has_obs_fold_or_nul(head)) return 0;

  std::pmr::monotonic_buffer_resource arena;
  http::request_parser<http::empty_body, std::pmr::polymorphic_allocator<char>> parser(
      http::request_header<gw::Fields>{gw::Fields(&arena)});
  parser.header_limit(static_cast<std::uint32_t>(kMaxHeaderBytes + 4));
  parser.body_limit(kMaxBodyBytes);
  boost::system::error_code ec;
  const std::size_t used = put_head(parser, boost::asio::buffer(head.data(), head.size()), ec);
  if ((ec && ec != http::error::need_more) || !parser.is_header_done()) return 0;
  FUZZ_CHECK(used == head.size(), data);
  const auto& req = parser.get();
  if (gw::validate_request_framing(req, req.version()) != gw::FramingError::None) return 0;

  BodyDecoder body = parser.chunked() ? BodyDecoder::chunked(kMaxHeaderBytes, kMaxBodyBytes)
                                      : BodyDecoder::with_length(parser.content_length().value_or(0));
  std::string_view rest = data.substr(head_end);
  BodyDecoder ahead = body;
  while (!rest.empty() && !ahead.done()) {
    const auto step = ahead.next(rest);
    if (step.error != BodyError::None) return 0;
    rest.remove_prefix(step.consumed);
  }

  std::string path;
  const std::string method(req.method_string());
  const auto ct = tokengate::policy::canonicalize_target(method, req.target(), path);
  if (ct.error != tokengate::policy::PathError::None) return 0;

  std::string up;
  const auto length = parser.content_length();
  gw::append_upstream_head(up, req,
                           gw::UpstreamRequest{.method = method,
                                               .base_path = "",
                                               .path = path,
                                               .asterisk = ct.asterisk,
                                               .has_query = ct.has_query,
                                               .query = ct.query,
                                               .upstream_host = "upstream.test:9000",
                                               .identity_prefix = "X-Auth-",
                                               .identity_fields = "X-Auth-Subject: abc\r\n",
                                               .client_address = "127.0.0.1",
                                               .request_id = "rid",
                                               .chunked = body.is_chunked(),
                                               .content_length = length ? std::optional<std::uint64_t>(*length)
                                                                        : std::nullopt});

  // The upstream head is one well-formed head, nothing after it.
  FUZZ_CHECK(gw::find_head_end(up) == up.size(), up);
  FUZZ_CHECK(!gw::head_has_obs_fold_or_nul(up), up);
  http::request_parser<http::empty_body> back;
  back.eager(false);
  boost::system::error_code back_ec;
  const std::size_t back_used = back.put(boost::asio::buffer(up), back_ec);
  FUZZ_CHECK(!back_ec || back_ec == http::error::need_more, up);
  FUZZ_CHECK(back.is_header_done() && back_used == up.size(), up);
  const auto& fwd = back.get();
  FUZZ_CHECK(gw::validate_request_framing(fwd, 11) == gw::FramingError::None, up);
  FUZZ_CHECK(fwd.count(http::field::host) == 1 && fwd[http::field::host] == "upstream.test:9000", up);
  FUZZ_CHECK(back.chunked() == body.is_chunked(), up);
  if (!body.is_chunked()) {
    FUZZ_CHECK(back.content_length().has_value() == length.has_value(), up);
    if (length) FUZZ_CHECK(*back.content_length() == *length, up);
  }
  if (!ct.asterisk) {
    std::string expected_target = path;
    if (ct.has_query) expected_target += "?" + std::string(ct.query);
    FUZZ_CHECK(fwd.target() == expected_target, up);
  }
  int subjects = 0;
  for (const auto& f : fwd) {
    const std::string_view name = f.name_string();
    if (starts_with_folded(name, "x-auth-")) {
      ++subjects;
      FUZZ_CHECK(name == "X-Auth-Subject" && f.value() == "abc", up);
    }
    const bool hop_by_hop = starts_with_folded(name, "proxy-") || (name.size() == 5 && starts_with_folded(name, "proxy")) ||
                            (name.size() == 10 && starts_with_folded(name, "keep-alive")) ||
                            f.name() == http::field::connection || f.name() == http::field::te ||
                            f.name() == http::field::trailer || f.name() == http::field::upgrade;
    FUZZ_CHECK(!hop_by_hop, up);
    // Framing fields only as the gateway writes them.
    if ((name.size() == 14 && starts_with_folded(name, "content-length")) ||
        (name.size() == 17 && starts_with_folded(name, "transfer-encoding"))) {
      FUZZ_CHECK(name == "Content-Length" || name == "Transfer-Encoding", up);
    }
  }
  FUZZ_CHECK(subjects == 1, up);
  return 0;
}
