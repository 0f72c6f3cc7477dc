// Framing checks, hop-by-hop stripping and the upstream head (see framing.hpp).
#include "gateway/http/framing.hpp"

#include <algorithm>
#include <boost/container/small_vector.hpp>
#include <charconv>
#include <cstring>

namespace tokengate::gateway {

namespace http = boost::beast::http;

namespace {

char lower_ascii(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool is_ows(char c) noexcept { return c == ' ' || c == '\t'; }

std::string_view trim_ows(std::string_view s) noexcept {
  while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
  return s;
}

bool has_forbidden_byte(std::string_view value) noexcept {
  for (char c : value) {
    if (c == '\r' || c == '\n' || c == '\0') return true;
  }
  return false;
}

}  // namespace

std::string_view to_string(FramingError error) noexcept {
  switch (error) {
    case FramingError::None:
      return "none";
    case FramingError::ContentLengthWithTransferEncoding:
      return "content-length with transfer-encoding";
    case FramingError::BadTransferEncoding:
      return "unsupported transfer-encoding";
    case FramingError::BadContentLength:
      return "invalid content-length";
    case FramingError::BadHeaderValue:
      return "invalid header value";
    case FramingError::MissingHost:
      return "missing host";
    case FramingError::RepeatedHost:
      return "repeated host";
    case FramingError::RepeatedAuthorization:
      return "repeated authorization";
    case FramingError::ObsFold:
      return "obs-fold";
    case FramingError::BadHost:
      return "invalid host";
    case FramingError::TransferEncodingOnHttp10:
      return "transfer-encoding on HTTP/1.0";
    case FramingError::UnderscoreFramingField:
      return "framing field spelled with underscore";
  }
  return "invalid framing";
}

bool iequals_ascii(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower_ascii(a[i]) != lower_ascii(b[i])) return false;
  }
  return true;
}

bool istarts_with_ascii(std::string_view text, std::string_view prefix) noexcept {
  return text.size() >= prefix.size() && iequals_ascii(text.substr(0, prefix.size()), prefix);
}

namespace {

// CGI-style upstreams (PHP, Django, WSGI) read `X_Auth_Subject` and `X-Auth-Subject`
// (or `X_Forwarded_For` and `X-Forwarded-For`) as the same variable, so where the
// gateway owns a name, '_' counts as '-'.
char fold_cgi(char c) noexcept {
  if (c == '_') return '-';
  return lower_ascii(c);
}

bool has_identity_prefix(std::string_view name, std::string_view prefix) noexcept {
  if (prefix.empty() || name.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    if (fold_cgi(name[i]) != fold_cgi(prefix[i])) return false;
  }
  return true;
}

bool same_cgi_name(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() && has_identity_prefix(a, b);
}

// The hop-by-hop names Beast does not know as such: their '_' spellings, Proxy-*
// and Proxy itself (httpoxy: CGI-style apps read it as HTTP_PROXY).
bool is_hop_by_hop_spelling(std::string_view name) noexcept {
  return has_identity_prefix(name, "proxy-") || iequals_ascii(name, "proxy") ||
         same_cgi_name(name, "keep-alive") || same_cgi_name(name, "transfer-encoding");
}

bool is_host_byte(char c) noexcept {
  // RFC 3986 unreserved, pct-encoded's '%', and sub-delims except ',' (a list).
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c != '\0' && std::strchr("-._~%!$&'()*+;=", c) != nullptr);
}

}  // namespace

bool is_valid_host(std::string_view value) noexcept {
  std::size_t i = 0;
  if (!value.empty() && value.front() == '[') {
    // IP-literal: hex digits, ':' and '.' (IPv6, IPv4-mapped) up to ']'.
    const auto close = value.find(']');
    if (close == std::string_view::npos || close < 3) return false;
    for (char c : value.substr(1, close - 1)) {
      if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' ||
            c == '.')) {
        return false;
      }
    }
    i = close + 1;
  } else {
    while (i < value.size() && is_host_byte(value[i])) ++i;
  }
  if (i == value.size()) return true;
  if (value[i] != ':') return false;
  const std::string_view port = value.substr(i + 1);
  if (port.size() > 5) return false;
  for (char c : port) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

FramingError validate_request_framing(const Fields& fields, unsigned version) noexcept {
  int hosts = 0, lengths = 0, encodings = 0, authorizations = 0;
  for (const auto& f : fields) {
    const std::string_view value = f.value();
    if (has_forbidden_byte(value)) return FramingError::BadHeaderValue;
    switch (f.name()) {
      case http::field::host:
        ++hosts;
        if (!is_valid_host(value)) return FramingError::BadHost;
        break;
      case http::field::authorization:
        ++authorizations;
        break;
      case http::field::content_length: {
        ++lengths;
        const auto v = trim_ows(value);
        if (v.empty() || v.size() > 19) return FramingError::BadContentLength;
        for (char c : v) {
          if (c < '0' || c > '9') return FramingError::BadContentLength;
        }
        break;
      }
      case http::field::transfer_encoding:
        ++encodings;
        if (!iequals_ascii(trim_ows(value), "chunked")) return FramingError::BadTransferEncoding;
        break;
      case http::field::unknown:
        // Beast knows the '-' spellings only; an upstream that folds '_' would
        // frame the body by a field the gateway never saw as framing.
        if (same_cgi_name(f.name_string(), "content-length") ||
            same_cgi_name(f.name_string(), "transfer-encoding")) {
          return FramingError::UnderscoreFramingField;
        }
        break;
      default:
        break;
    }
  }
  if (encodings > 0 && version < 11) return FramingError::TransferEncodingOnHttp10;
  if (lengths > 0 && encodings > 0) return FramingError::ContentLengthWithTransferEncoding;
  if (lengths > 1) return FramingError::BadContentLength;
  if (encodings > 1) return FramingError::BadTransferEncoding;
  if (hosts == 0) return FramingError::MissingHost;
  if (hosts > 1) return FramingError::RepeatedHost;
  if (authorizations > 1) return FramingError::RepeatedAuthorization;
  return FramingError::None;
}

std::size_t find_head_end(std::string_view data, std::size_t from) noexcept {
  const std::size_t start = from >= 3 ? from - 3 : 0;
  if (data.size() < start + 4) return std::string_view::npos;
  const auto pos = data.find("\r\n\r\n", start);
  return pos == std::string_view::npos ? pos : pos + 4;
}

bool head_has_obs_fold_or_nul(std::string_view head) noexcept {
  if (std::memchr(head.data(), '\0', head.size()) != nullptr) return true;
  // A line feed followed by SP/HT starts a continuation line; the final "\r\n\r\n"
  // is followed by nothing inside `head`.
  for (std::size_t i = head.find('\n'); i != std::string_view::npos && i + 1 < head.size();
       i = head.find('\n', i + 1)) {
    if (is_ows(head[i + 1])) return true;
  }
  return false;
}

bool is_valid_request_id(std::string_view id) noexcept {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

Fields::const_iterator find_field(const Fields& fields, http::field name) noexcept {
  return std::find_if(fields.begin(), fields.end(),
                      [name](const auto& field) { return field.name() == name; });
}

Fields::const_iterator find_field(const Fields& fields, std::string_view name) noexcept {
  return std::find_if(fields.begin(), fields.end(),
                      [name](const auto& field) { return iequals_ascii(field.name_string(), name); });
}

std::string_view field_value(const Fields& fields, http::field name) noexcept {
  const auto it = find_field(fields, name);
  return it == fields.end() ? std::string_view{} : std::string_view(it->value());
}

void append_field(std::string& out, std::string_view name, std::string_view value) {
  out.append(name);
  out.append(": ");
  out.append(value);
  out.append("\r\n");
}

void append_decimal(std::string& out, std::uint64_t value) {
  char digits[24];
  out.append(digits, std::to_chars(digits, digits + sizeof digits, value).ptr);
}

namespace {

// The values of every Connection field (RFC 9110 §7.6.1), in one pass over the list
// comparing the parsed name's enum: Beast's count() and find() by name compare
// strings case-insensitively byte by byte down its set (about 700 instructions
// per call, twice per proxied request). Usually none or one.
using ConnectionLists = boost::container::small_vector<std::string_view, 4>;

ConnectionLists connection_lists(const Fields& fields) {
  ConnectionLists lists;
  for (const auto& field : fields) {
    if (field.name() == http::field::connection) lists.push_back(field.value());
  }
  return lists;
}

// True if one of the Connection lists names `name`.
bool named_in_connection(const ConnectionLists& lists, std::string_view name) noexcept {
  for (std::string_view list : lists) {
    while (!list.empty()) {
      const auto comma = list.find(',');
      if (iequals_ascii(trim_ows(list.substr(0, comma)), name)) return true;
      list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
    }
  }
  return false;
}

}  // namespace

void append_forwarded_fields(std::string& out, const Fields& fields, const StripOptions& options) {
  const ConnectionLists connection = connection_lists(fields);
  for (const auto& field : fields) {
    bool drop = false;
    switch (field.name()) {
      case http::field::connection:
      case http::field::keep_alive:
      case http::field::te:
      case http::field::trailer:
      case http::field::transfer_encoding:
        drop = true;
        break;
      case http::field::upgrade:
        drop = !options.keep_upgrade;
        break;
      default: {
        const std::string_view name = field.name_string();
        drop = (field.name() == http::field::authorization && !options.keep_authorization) ||
               is_hop_by_hop_spelling(name) || has_identity_prefix(name, options.identity_prefix) ||
               std::any_of(options.own.begin(), options.own.end(),
                           [&](std::string_view own) { return same_cgi_name(name, own); }) ||
               // A header named in Connection is hop-by-hop, Authorization included.
               named_in_connection(connection, name);
        break;
      }
    }
    if (!drop) append_field(out, field.name_string(), field.value());
  }
}

void append_upstream_head(std::string& out, const Fields& fields, const UpstreamRequest& r) {
  out.append(r.method);
  out += ' ';
  if (r.asterisk) {
    out += '*';
  } else {
    out.append(r.base_path);
    out.append(r.path);
    if (r.has_query) {
      out += '?';
      out.append(r.query);
    }
  }
  out.append(" HTTP/1.1\r\n");
  append_field(out, "Host", r.upstream_host);
  append_forwarded_fields(out, fields,
                          StripOptions{r.identity_prefix,
                                       r.websocket,
                                       r.forward_authorization,
                                       {"Host", "Expect", "Content-Length", "X-Forwarded-For",
                                        "X-Forwarded-Proto", "X-Forwarded-Host", "X-Request-Id"}});
  out.append(r.identity_fields);
  append_field(out, "X-Forwarded-For", r.client_address);
  append_field(out, "X-Forwarded-Proto", r.https ? "https" : "http");
  append_field(out, "X-Forwarded-Host", field_value(fields, http::field::host));
  append_field(out, "X-Request-Id", r.request_id);
  if (r.websocket) append_field(out, "Connection", "Upgrade");
  if (r.chunked) {
    append_field(out, "Transfer-Encoding", "chunked");
  } else if (r.content_length) {
    // 0 too: some upstreams want a length on every POST.
    out.append("Content-Length: ");
    append_decimal(out, *r.content_length);
    out.append("\r\n");
  }
  out.append("\r\n");
}

std::string join_names(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) {
    if (!out.empty()) out += ',';
    out += n;
  }
  return out;
}

void append_sanitized_field(std::string& out, std::string_view name, std::string_view value) {
  out.append(name);
  out.append(": ");
  const std::size_t start = out.size();
  out.append(value);
  for (std::size_t i = start; i < out.size(); ++i) {
    if (out[i] == '\r' || out[i] == '\n' || out[i] == '\0') out[i] = ' ';
  }
  out.append("\r\n");
}

}  // namespace tokengate::gateway
