// The body decoder of the data plane (gateway/http/body_decoder.hpp), which sees
// every request and response body byte. The first input byte picks the limits and
// how the rest is split into reads; the rest is the bytes after a message head.
// Properties:
// - the outcome (error, data, bytes used) is the same however the input is split:
//   a peer choosing its write boundaries cannot change what the gateway decides;
// - data views lie inside the input and never exceed the body limit;
// - extensions and trailers never take more than their budget: the bytes used are
//   at most data + size lines + budget + the fixed CRLFs, so nothing grows without
//   bound;
// - what the gateway forwards (the data re-chunked) decodes to the same data.
#include <cstdint>
#include <string>
#include <string_view>

#include "check.hpp"
#include "gateway/http/body_decoder.hpp"

namespace {

using tokengate::gateway::http1::BodyDecoder;
using tokengate::gateway::http1::BodyError;

struct Outcome {
  std::string data;
  BodyError error = BodyError::None;
  bool done = false;
  std::size_t consumed = 0;
};

Outcome run(BodyDecoder decoder, std::string_view wire, std::size_t piece, std::string_view input) {
  Outcome out;
  std::size_t offset = 0;
  while (offset < wire.size() && !decoder.done()) {
    std::string_view chunk = wire.substr(offset, piece);
    const std::size_t chunk_start = offset;
    while (!chunk.empty() && !decoder.done()) {
      const auto step = decoder.next(chunk);
      FUZZ_CHECK(step.consumed <= chunk.size(), input);
      if (step.error != BodyError::None) {
        out.error = step.error;
        out.consumed = offset + step.consumed;
        return out;
      }
      if (!step.data.empty()) {
        FUZZ_CHECK(step.data.data() >= chunk.data() &&
                       step.data.data() + step.data.size() <= chunk.data() + step.consumed,
                   input);
      }
      out.data.append(step.data);
      chunk.remove_prefix(step.consumed);
      offset += step.consumed;
      if (step.consumed == 0) break;
    }
    FUZZ_CHECK(offset > chunk_start || decoder.done(), input);
  }
  out.done = decoder.done();
  out.consumed = offset;
  FUZZ_CHECK(decoder.body_bytes() == out.data.size(), input);
  return out;
}

std::string rechunk(std::string_view data) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  while (!data.empty()) {
    const std::size_t n = data.size() < 7 ? data.size() : 7;
    out += kHex[n];
    out += "\r\n";
    out.append(data.substr(0, n));
    out += "\r\n";
    data.remove_prefix(n);
  }
  out += "0\r\n\r\n";
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view input(reinterpret_cast<const char*>(bytes), size);
  const unsigned control = bytes[0];
  const std::string_view wire = input.substr(1);
  const std::size_t meta_limit = (control & 0x0f) * 8;  // 0..120
  const std::uint64_t body_limit = (control >> 4) == 15 ? UINT64_MAX : (control >> 4) * 64;

  const auto whole = run(BodyDecoder::chunked(meta_limit, body_limit), wire, wire.size() + 1, input);
  for (std::size_t piece : {std::size_t{1}, std::size_t{2}, std::size_t{5}}) {
    const auto split = run(BodyDecoder::chunked(meta_limit, body_limit), wire, piece, input);
    FUZZ_CHECK(split.error == whole.error, input);
    FUZZ_CHECK(split.done == whole.done, input);
    FUZZ_CHECK(split.data == whole.data, input);
    FUZZ_CHECK(split.consumed == whole.consumed, input);
  }
  FUZZ_CHECK(whole.data.size() <= body_limit, input);
  if (whole.done) {
    FUZZ_CHECK(whole.error == BodyError::None, input);
    // Framing beyond data and budget: per chunk at most 16 size digits + CRLF + CRLF
    // after the data; plus the last chunk's line and the final CRLF.
    const std::size_t chunks_max = whole.data.size() + 1;
    FUZZ_CHECK(whole.consumed <= whole.data.size() + meta_limit + 20 * chunks_max + 4, input);
    const auto again = run(BodyDecoder::chunked(0), rechunk(whole.data), 3, input);
    FUZZ_CHECK(again.done && again.data == whole.data, input);
  }

  // Content-Length framing of the same bytes: exactly min(length, available).
  const std::uint64_t length = control * 3;
  const auto fixed = run(BodyDecoder::with_length(length), wire, 4, input);
  FUZZ_CHECK(fixed.error == BodyError::None, input);
  FUZZ_CHECK(fixed.data == wire.substr(0, length), input);
  FUZZ_CHECK(fixed.done == (wire.size() >= length), input);
  return 0;
}
