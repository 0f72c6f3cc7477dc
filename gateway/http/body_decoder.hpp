// Message body framing of HTTP/1.1 (RFC 9112 §6, §7): a byte-at-a-time decoder
// for chunked bodies, plus Content-Length and read-until-close bodies, with no I/O
// and no allocation. The proxy runs every body it relays through it, in both
// directions, so:
// - memory stays bounded whatever the peer sends: chunk extensions and trailer
//   fields are checked and counted as they stream past, never buffered (they are
//   not forwarded: the gateway re-frames bodies itself), and their total is capped
//   like a message head (docs/http.md, "Bodies");
// - a bad byte is an error value, never an exception, wherever it arrives;
// - bytes that arrived with a head can be checked before any of them is forwarded:
//   the decoder is a small value, so a copy can run ahead over what is buffered.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tokengate::gateway::http1 {

enum class BodyError {
  None,
  BadChunkSize,       // not 1..16 hex digits, or followed by anything but ';' or CRLF
  BadChunkExtension,  // not `;name[=token|"quoted"]` (RFC 9112 §7.1.1), e.g. an unclosed quote
  BadChunkEnd,        // the chunk's data is not followed by CRLF
  BadTrailer,         // a malformed trailer field line (no colon, space before it, CTL, obs-fold)
  FramingTrailer,     // Content-Length, Transfer-Encoding or Host (any '_' spelling) as a trailer
  MetadataTooLarge,   // chunk extensions and trailers together over the limit
  BodyTooLarge,       // a chunk size that takes the body over its limit
  Truncated,          // the stream ended before the body did
};
std::string_view to_string(BodyError error) noexcept;

class BodyDecoder {
 public:
  // A body of exactly `length` bytes.
  static BodyDecoder with_length(std::uint64_t length) noexcept;
  // A chunked body whose extensions and trailer section may take at most
  // `max_metadata_bytes` together, and whose data at most `max_body_bytes` (checked
  // at each chunk size, before its data arrives).
  static BodyDecoder chunked(std::size_t max_metadata_bytes,
                             std::uint64_t max_body_bytes = UINT64_MAX) noexcept;
  // A response body that ends when the upstream closes the connection.
  static BodyDecoder until_close() noexcept;

  struct Step {
    std::size_t consumed = 0;  // bytes of the input used (framing and data)
    std::string_view data;     // body bytes found, a view into the input; may be empty
    BodyError error = BodyError::None;
  };
  // Decodes from the front of `input` up to the end of the first run of body bytes
  // (returned in `data`), the end of the body, the end of the input, or an error.
  // Call again with the rest of the input while data or framing keeps coming.
  Step next(std::string_view input) noexcept;

  // The peer closed the stream: None when that ends the body (until_close, or
  // already done), Truncated otherwise.
  BodyError end_of_stream() noexcept;

  bool done() const noexcept { return state_ == State::Done; }
  bool is_chunked() const noexcept { return chunked_; }
  // Body bytes decoded so far.
  std::uint64_t body_bytes() const noexcept { return body_bytes_; }

 private:
  enum class State : std::uint8_t {
    Size,       // hex digits of a chunk size
    SizeSpace,  // whitespace after the size: only ';' may follow
    ExtStart,   // after ';': whitespace, then a name
    ExtName,
    ExtAfterName,   // whitespace after a name: '=', ';' or CR
    ExtValueStart,  // after '=': whitespace, then a token or a quoted string
    ExtToken,
    ExtQuoted,
    ExtQuotedPair,  // after a backslash in a quoted string
    ExtAfterValue,  // whitespace, then ';' or CR
    SizeLf,         // CR seen at the end of the size line
    Data,           // `remaining_` body bytes to go
    DataCr,         // CRLF after a chunk's data
    DataLf,
    TrailerStart,  // at the start of a trailer line (or the final CRLF)
    TrailerName,
    TrailerValue,
    TrailerLf,  // CR seen at the end of a trailer line
    FinalLf,    // CR seen at the start of a line: the end of the trailer section
    UntilClose,
    Done,
  };
  BodyDecoder() = default;
  // Counts one byte of extension or trailer; false when over the limit.
  bool count_metadata() noexcept { return ++metadata_bytes_ <= max_metadata_bytes_; }
  Step fail(std::size_t consumed, BodyError error) noexcept;
  bool can_end_extension() const noexcept;
  BodyError framing_byte(unsigned char c) noexcept;
  BodyError size_line_byte(unsigned char c) noexcept;
  BodyError trailer_byte(unsigned char c) noexcept;
  bool extension_byte(unsigned char c) noexcept;

  State state_ = State::Done;
  bool chunked_ = false;
  std::uint8_t size_digits_ = 0;
  std::uint64_t remaining_ = 0;  // of the current chunk or the whole Content-Length body
  std::uint64_t body_bytes_ = 0;
  std::uint64_t max_body_bytes_ = UINT64_MAX;
  std::size_t metadata_bytes_ = 0;
  std::size_t max_metadata_bytes_ = 0;
  // The trailer field name so far, folded to lower case with '_' as '-', while it
  // could still be one of the forbidden names (longest: "transfer-encoding").
  char name_[17] = {};
  std::uint8_t name_len_ = 0;
  bool name_overflow_ = false;
};

}  // namespace tokengate::gateway::http1
