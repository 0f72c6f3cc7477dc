// HTTP/1.1 body framing (see body_decoder.hpp).
#include "gateway/http/body_decoder.hpp"

#include <algorithm>
#include <cstring>

namespace tokengate::gateway::http1 {

namespace {

constexpr std::uint8_t kMaxSizeDigits = 16;  // 64 bits of hex; longer spellings are refused

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// RFC 9110 §5.6.2 tchar.
bool is_tchar(unsigned char c) noexcept {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != 0;
}

// Visible characters, space, tab and obs-text: what a field value or a chunk
// extension may hold (quoted strings included). CR, LF, NUL, other controls and DEL
// may not.
bool is_value_byte(unsigned char c) noexcept { return c == '\t' || (c >= 0x20 && c != 0x7f); }

bool is_framing_name(std::string_view folded) noexcept {
  return folded == "content-length" || folded == "transfer-encoding" || folded == "host";
}

}  // namespace

std::string_view to_string(BodyError error) noexcept {
  switch (error) {
    case BodyError::None:
      return "none";
    case BodyError::BadChunkSize:
      return "invalid chunk size";
    case BodyError::BadChunkExtension:
      return "invalid chunk extension";
    case BodyError::BadChunkEnd:
      return "chunk data not followed by CRLF";
    case BodyError::BadTrailer:
      return "invalid trailer field";
    case BodyError::FramingTrailer:
      return "framing field in trailers";
    case BodyError::MetadataTooLarge:
      return "chunk extensions and trailers too large";
    case BodyError::BodyTooLarge:
      return "body too large";
    case BodyError::Truncated:
      return "body truncated";
  }
  return "invalid body";
}

BodyDecoder BodyDecoder::with_length(std::uint64_t length) noexcept {
  BodyDecoder d;
  d.remaining_ = length;
  d.state_ = length == 0 ? State::Done : State::Data;
  return d;
}

BodyDecoder BodyDecoder::chunked(std::size_t max_metadata_bytes, std::uint64_t max_body_bytes) noexcept {
  BodyDecoder d;
  d.chunked_ = true;
  d.max_metadata_bytes_ = max_metadata_bytes;
  d.max_body_bytes_ = max_body_bytes;
  d.state_ = State::Size;
  return d;
}

BodyDecoder BodyDecoder::until_close() noexcept {
  BodyDecoder d;
  d.state_ = State::UntilClose;
  return d;
}

BodyDecoder::Step BodyDecoder::fail(std::size_t consumed, BodyError error) noexcept {
  // Stays failed: a caller that ignored the error cannot decode past it.
  state_ = State::Done;
  remaining_ = 0;
  return Step{consumed, {}, error};
}

bool BodyDecoder::can_end_extension() const noexcept {
  return state_ == State::ExtName || state_ == State::ExtAfterName || state_ == State::ExtToken ||
         state_ == State::ExtAfterValue;
}

// One step of the chunk-ext grammar of RFC 9112 §7.1.1:
//   *( BWS ";" BWS ext-name [ BWS "=" BWS ( token / quoted-string ) ] )
// (CR, which ends the line, is handled by the caller.)
bool BodyDecoder::extension_byte(unsigned char c) noexcept {
  const bool ws = c == ' ' || c == '\t';
  switch (state_) {
    case State::SizeSpace:
      if (c == ';') state_ = State::ExtStart;
      return ws || c == ';';
    case State::ExtStart:
      if (ws) return true;
      state_ = State::ExtName;
      return is_tchar(c);
    case State::ExtName:
    case State::ExtAfterName:
      if (state_ == State::ExtName && is_tchar(c)) return true;
      if (ws) {
        state_ = State::ExtAfterName;
      } else if (c == '=') {
        state_ = State::ExtValueStart;
      } else if (c == ';') {
        state_ = State::ExtStart;
      } else {
        return false;
      }
      return true;
    case State::ExtValueStart:
      if (ws) return true;
      if (c == '"') {
        state_ = State::ExtQuoted;
        return true;
      }
      state_ = State::ExtToken;
      return is_tchar(c);
    case State::ExtToken:
    case State::ExtAfterValue:
      if (state_ == State::ExtToken && is_tchar(c)) return true;
      if (ws) {
        state_ = State::ExtAfterValue;
      } else if (c == ';') {
        state_ = State::ExtStart;
      } else {
        return false;
      }
      return true;
    case State::ExtQuoted:
      if (c == '"') {
        state_ = State::ExtAfterValue;
      } else if (c == '\\') {
        state_ = State::ExtQuotedPair;
      }
      return is_value_byte(c);
    case State::ExtQuotedPair:
      state_ = State::ExtQuoted;
      return is_value_byte(c);
    default:
      return false;
  }
}

BodyError BodyDecoder::end_of_stream() noexcept {
  if (state_ == State::UntilClose) state_ = State::Done;
  return state_ == State::Done ? BodyError::None : BodyError::Truncated;
}

BodyDecoder::Step BodyDecoder::next(std::string_view input) noexcept {
  std::size_t i = 0;
  while (i < input.size()) {
    if (state_ == State::Done) return Step{i, {}, BodyError::None};
    if (state_ == State::Data || state_ == State::UntilClose) {
      const std::size_t available = input.size() - i;
      const std::size_t take = state_ == State::UntilClose
                                   ? available
                                   : static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, available));
      body_bytes_ += take;
      if (state_ == State::Data) {
        remaining_ -= take;
        if (remaining_ == 0) state_ = chunked_ ? State::DataCr : State::Done;
      }
      return Step{i + take, input.substr(i, take), BodyError::None};
    }
    if (const BodyError error = framing_byte(static_cast<unsigned char>(input[i]));
        error != BodyError::None) {
      return fail(i, error);
    }
    ++i;
  }
  return Step{i, {}, BodyError::None};
}

// One byte of chunk framing: a size line, the CRLF after a chunk's data, or the
// trailer section.
BodyError BodyDecoder::framing_byte(unsigned char c) noexcept {
  switch (state_) {
    case State::DataCr:
      if (c != '\r') return BodyError::BadChunkEnd;
      state_ = State::DataLf;
      return BodyError::None;
    case State::DataLf:
      if (c != '\n') return BodyError::BadChunkEnd;
      state_ = State::Size;
      return BodyError::None;
    case State::TrailerStart:
    case State::TrailerName:
    case State::TrailerValue:
    case State::TrailerLf:
    case State::FinalLf:
      return trailer_byte(c);
    default:
      return size_line_byte(c);
  }
}

BodyError BodyDecoder::size_line_byte(unsigned char c) noexcept {
  if (state_ == State::Size) {
    const int v = hex_value(static_cast<char>(c));
    if (v >= 0) {
      if (++size_digits_ > kMaxSizeDigits) return BodyError::BadChunkSize;
      remaining_ = (remaining_ << 4) | static_cast<std::uint64_t>(v);
      return BodyError::None;
    }
    if (size_digits_ == 0) return BodyError::BadChunkSize;
    if (c == '\r') {
      state_ = State::SizeLf;
    } else if (c == ';') {
      if (!count_metadata()) return BodyError::MetadataTooLarge;
      state_ = State::ExtStart;
    } else if (c == ' ' || c == '\t') {
      state_ = State::SizeSpace;
    } else {
      return BodyError::BadChunkSize;
    }
    return BodyError::None;
  }
  if (state_ == State::SizeLf) {
    if (c != '\n') return BodyError::BadChunkSize;
    if (remaining_ > max_body_bytes_ - body_bytes_) return BodyError::BodyTooLarge;
    size_digits_ = 0;
    state_ = remaining_ == 0 ? State::TrailerStart : State::Data;
    return BodyError::None;
  }
  // Whitespace after the size, or an extension.
  if (state_ != State::SizeSpace && c == '\r' && can_end_extension()) {
    state_ = State::SizeLf;
    return BodyError::None;
  }
  if (!count_metadata()) return BodyError::MetadataTooLarge;
  if (!extension_byte(c))
    return state_ == State::SizeSpace ? BodyError::BadChunkSize : BodyError::BadChunkExtension;
  return BodyError::None;
}

BodyError BodyDecoder::trailer_byte(unsigned char c) noexcept {
  switch (state_) {
    case State::TrailerStart:
      if (c == '\r') {
        state_ = State::FinalLf;
        return BodyError::None;
      }
      // A line starting with whitespace would be an obs-fold: not a tchar below.
      name_len_ = 0;
      name_overflow_ = false;
      state_ = State::TrailerName;
      [[fallthrough]];
    case State::TrailerName:
      if (!count_metadata()) return BodyError::MetadataTooLarge;
      if (c == ':') {
        if (name_len_ == 0) return BodyError::BadTrailer;
        if (!name_overflow_ && is_framing_name(std::string_view(name_, name_len_)))
          return BodyError::FramingTrailer;
        state_ = State::TrailerValue;
        return BodyError::None;
      }
      if (!is_tchar(c)) return BodyError::BadTrailer;
      if (name_len_ < sizeof name_) {
        const char lower = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : static_cast<char>(c);
        name_[name_len_++] = lower == '_' ? '-' : lower;
      } else {
        name_overflow_ = true;
      }
      return BodyError::None;
    case State::TrailerValue:
      if (!count_metadata()) return BodyError::MetadataTooLarge;
      if (c == '\r') {
        state_ = State::TrailerLf;
      } else if (!is_value_byte(c)) {
        return BodyError::BadTrailer;
      }
      return BodyError::None;
    case State::TrailerLf:
      if (c != '\n') return BodyError::BadTrailer;
      if (!count_metadata()) return BodyError::MetadataTooLarge;
      state_ = State::TrailerStart;
      return BodyError::None;
    default:  // FinalLf
      if (c != '\n') return BodyError::BadTrailer;
      state_ = State::Done;
      return BodyError::None;
  }
}

}  // namespace tokengate::gateway::http1
