// An upstream's response as the proxy reads it: Beast's head parser (fields over
// 64 KiB are a parse error, not an exception), the refusal of a response framed
// both ways, then the body decoder the relay picks (none for HEAD/204/304,
// chunked, Content-Length, or until the close). Properties: no crash; the body the
// client would get never holds more than the upstream sent; a chunked body that
// ends leaves the rest of the bytes unread (they would make the pooled connection
// unusable, never answer the next request); extensions and trailers stay within
// their budget.
#include <boost/beast/http.hpp>
#include <cstdint>
#include <memory_resource>
#include <string>
#include <string_view>

#include "check.hpp"
#include "gateway/http/body_decoder.hpp"
#include "gateway/http/framing.hpp"

namespace {

namespace http = boost::beast::http;
namespace gw = tokengate::gateway;
using gw::http1::BodyDecoder;
using gw::http1::BodyError;

constexpr std::size_t kMaxMetadata = 16384;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  if (size == 0) return 0;
  const bool head_request = (bytes[0] & 1) != 0;
  std::string_view rest(reinterpret_cast<const char*>(bytes) + 1, size - 1);
  const std::string_view input(reinterpret_cast<const char*>(bytes), size);

  std::pmr::monotonic_buffer_resource arena;
  http::response_parser<http::empty_body, std::pmr::polymorphic_allocator<char>> parser(
      http::response_header<gw::Fields>{gw::Fields(&arena)});
  parser.body_limit(boost::none);
  parser.header_limit(64 * 1024);
  if (head_request) parser.skip(true);
  boost::system::error_code ec;
  std::size_t used = 0;
  try {
    used = parser.put(boost::asio::buffer(rest.data(), rest.size()), ec);
  } catch (const std::length_error&) {
    return 0;  // the proxy's put_head maps this to header_limit
  }
  if (!parser.is_header_done()) return 0;
  rest.remove_prefix(used);
  const auto& res = parser.get();
  if (res.find(http::field::transfer_encoding) != res.end() &&
      res.find(http::field::content_length) != res.end()) {
    return 0;  // a 502, and the connection is closed
  }
  const int status = static_cast<int>(res.result_int());
  const bool header_only = head_request || status == 204 || status == 304 || status < 200;
  const auto length = parser.content_length();
  BodyDecoder body = header_only        ? BodyDecoder::with_length(0)
                     : parser.chunked() ? BodyDecoder::chunked(kMaxMetadata)
                     : length           ? BodyDecoder::with_length(*length)
                                        : BodyDecoder::until_close();
  std::size_t relayed = 0;
  std::string_view wire = rest;
  while (!wire.empty() && !body.done()) {
    const auto step = body.next(wire);
    if (step.error != BodyError::None) return 0;  // a 502 or a closed client connection
    relayed += step.data.size();
    wire.remove_prefix(step.consumed);
    if (step.consumed == 0) break;
  }
  FUZZ_CHECK(relayed <= rest.size(), input);
  if (body.done() && body.is_chunked()) FUZZ_CHECK(rest.size() - wire.size() >= relayed + 5, input);
  if (!body.done()) FUZZ_CHECK(wire.empty(), input);
  if (body.end_of_stream() == BodyError::None) FUZZ_CHECK(body.done(), input);
  return 0;
}
