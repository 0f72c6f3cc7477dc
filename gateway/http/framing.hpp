// Pure request/response header logic of the proxy (docs/http.md): framing checks
// against request smuggling, hop-by-hop stripping, the upstream head and
// request ids. No I/O, so it is unit-tested table by table.
#pragma once

#include <boost/beast/http/fields.hpp>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory_resource>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tokengate::gateway {

// Header fields of proxied messages. The proxy allocates them from a per-connection
// arena reset for each request (proxy/session.cpp); elsewhere the default
// polymorphic allocator is plain new/delete.
using Fields = boost::beast::http::basic_fields<std::pmr::polymorphic_allocator<char>>;

enum class FramingError {
  None,
  ContentLengthWithTransferEncoding,
  BadTransferEncoding,  // anything but exactly one "chunked"
  BadContentLength,     // repeated, list-valued or not a plain number
  BadHeaderValue,       // CR, LF or NUL in a value
  MissingHost,
  RepeatedHost,
  RepeatedAuthorization,
  ObsFold,
  BadHost,                   // not one host[:port] (RFC 9112 §3.2), e.g. "a, b"
  TransferEncodingOnHttp10,  // RFC 9112 §6.1: an HTTP/1.0 peer cannot frame chunks
  UnderscoreFramingField,    // "Content_Length", "Transfer_Encoding": folded by some upstreams
};
std::string_view to_string(FramingError error) noexcept;

// Checks the parsed request head. Beast's parser is lenient (it accepts
// "Transfer-Encoding: gzip, chunked" next to nothing, joins obs-folds, accepts
// "Content-Length: 5, 5"), so the gateway decides on its own. `version` is the
// request line's, 10 or 11.
FramingError validate_request_framing(const Fields& fields, unsigned version) noexcept;

// True for a Host value that is one uri-host with an optional port (empty too:
// RFC 9112 §3.2 allows it when the target has no authority).
bool is_valid_host(std::string_view value) noexcept;

// Position just past the "\r\n\r\n" that ends a message head in `data`, or npos.
// `from` lets the caller resume a search after a short read.
std::size_t find_head_end(std::string_view data, std::size_t from = 0) noexcept;

// True if the head (request line + fields, ending in "\r\n\r\n") contains an
// obs-fold (a field line starting with SP or HT) or a NUL byte. Beast silently
// joins folded lines, so this runs on the raw bytes before the parser.
bool head_has_obs_fold_or_nul(std::string_view head) noexcept;

// 1..128 chars of [A-Za-z0-9._-].
bool is_valid_request_id(std::string_view id) noexcept;

bool iequals_ascii(std::string_view a, std::string_view b) noexcept;

// The first field with this name (in list order, the one Beast's find() returns) or
// end(), by a scan of the list: Beast's find() and operator[] look a name up in its
// set with case-insensitive string compares, a few hundred instructions per call,
// where a head holds a handful of fields. The enum overload compares the parsed name.
Fields::const_iterator find_field(const Fields& fields, boost::beast::http::field name) noexcept;
Fields::const_iterator find_field(const Fields& fields, std::string_view name) noexcept;
// Its value, or empty when there is no such field (as Beast's operator[]).
std::string_view field_value(const Fields& fields, boost::beast::http::field name) noexcept;
bool istarts_with_ascii(std::string_view text, std::string_view prefix) noexcept;

struct StripOptions {
  std::string_view identity_prefix;  // empty = none (responses)
  bool keep_upgrade = false;         // a WebSocket upgrade is being proxied
  bool keep_authorization = false;
  // Fields the caller writes itself (Host, X-Request-Id, framing...): the incoming
  // ones, in any case and with '_' for '-', are left out so each appears once,
  // with the gateway's value.
  std::initializer_list<std::string_view> own = {};
};
// Appends "Name: value\r\n" for every field of `fields` that may be forwarded,
// leaving out hop-by-hop fields (Connection and the fields it names, Keep-Alive, TE,
// Trailer, Transfer-Encoding, Upgrade unless kept, Proxy-* and Proxy itself, each
// also spelled with '_' for '-'), fields starting with the
// identity prefix, Authorization unless kept, and the caller's own fields. The caller
// appends its own fields afterwards, so a name listed in Connection can never remove
// them. Writes into a reused buffer: nothing is allocated once it has grown.
void append_forwarded_fields(std::string& out, const Fields& fields, const StripOptions& options);
// What the gateway decided about a request, for writing its upstream head.
struct UpstreamRequest {
  std::string_view method{};
  std::string_view base_path{};  // the upstream URL's path prefix
  std::string_view path{};       // canonical
  bool asterisk = false;         // OPTIONS *
  bool has_query = false;
  std::string_view query{};  // as received
  std::string_view upstream_host{};
  std::string_view identity_prefix{};
  bool forward_authorization = false;
  bool websocket = false;
  std::string_view identity_fields{};  // rendered "X-Auth-...: ...\r\n" lines, empty when anonymous
  std::string_view client_address{};
  bool https = false;  // the client connection
  std::string_view request_id{};
  bool chunked = false;  // the request body is chunked (re-framed by the gateway)
  std::optional<std::uint64_t> content_length{};
};
// Appends the complete request head sent upstream: request line, Host, the
// client's fields that may be forwarded (append_forwarded_fields), then the
// gateway's own fields last, so nothing the client names in Connection can remove
// them, and framing from what the gateway parsed, never from the client's fields.
void append_upstream_head(std::string& out, const Fields& fields, const UpstreamRequest& request);

// Appends "name: value\r\n".
void append_field(std::string& out, std::string_view name, std::string_view value);
// Appends `value` in decimal (no allocation beyond the string's growth).
void append_decimal(std::string& out, std::uint64_t value);

// "a,b,c" of sorted names (the caller's vectors are already sorted and unique).
std::string join_names(const std::vector<std::string>& names);

// Appends "name: value\r\n" with CR, LF and NUL in the value replaced by spaces:
// token names come from the store and must never be able to inject a header line.
void append_sanitized_field(std::string& out, std::string_view name, std::string_view value);

}  // namespace tokengate::gateway
