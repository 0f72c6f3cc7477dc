// Loads the configuration (docs/configuration.md) from YAML into immutable Config
// values. Every key is declared here; anything else is an error carrying
// file:line:col and, when close, a hint.
#include "conf/config.hpp"

#include <fmt/format.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <boost/url/ipv4_address.hpp>
#include <boost/url/ipv6_address.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <map>
#include <sstream>
#include <unordered_map>
#include <unordered_set>
#include <utility>

namespace tokengate::conf {

namespace {

namespace fs = std::filesystem;

std::string format_error(const std::string& file, Mark mark, const std::string& message) {
  if (mark.line == 0) return fmt::format("{}: {}", file, message);
  return fmt::format("{}:{}:{}: {}", file, mark.line, mark.column, message);
}

Mark to_mark(const YAML::Mark& m) {
  if (m.is_null() || m.line < 0) return {};
  return {m.line + 1, m.column + 1};
}

// Levenshtein distance: small keys, so the O(n*m) table is fine.
std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// "; did you mean 'x'?" when one candidate is close enough to be a likely typo.
template <typename Names>
std::string did_you_mean(std::string_view wrong, const Names& candidates) {
  // Each distance costs |wrong| x |name|: past a few hundred names (or with a
  // key of pages of text) a hint is both unlikely to help and slow to find.
  constexpr std::size_t kMaxCandidates = 512;
  constexpr std::size_t kMaxLength = 256;
  if (std::size(candidates) > kMaxCandidates || wrong.size() > kMaxLength) return {};
  std::string_view best;
  std::size_t best_distance = std::numeric_limits<std::size_t>::max();
  for (const auto& c : candidates) {
    std::string_view name = c;
    if (name.size() > kMaxLength) continue;
    std::size_t d = edit_distance(wrong, name);
    if (d < best_distance) {
      best_distance = d;
      best = name;
    }
  }
  // Two edits (a transposition) or a third of the word; but never when every
  // character had to change, which would suggest "ca" for "id".
  std::size_t threshold = std::max<std::size_t>(2, wrong.size() / 3);
  if (best.empty() || best_distance > threshold || best_distance >= wrong.size()) return {};
  return fmt::format("; did you mean '{}'?", best);
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// RFC 9110 tchar: the characters of a header field name or a method.
bool is_tchar(char c) { return is_digit(c) || is_alpha(c) || std::strchr("!#$%&'*+-.^_`|~", c) != nullptr; }

bool all_digits(std::string_view s) { return !s.empty() && std::all_of(s.begin(), s.end(), is_digit); }

// RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens.
bool is_hostname(std::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  std::size_t start = 0;
  while (true) {
    std::size_t dot = host.find('.', start);
    std::string_view label = host.substr(start, dot == std::string_view::npos ? host.npos : dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') return false;
    for (char c : label) {
      if (!is_digit(c) && !is_alpha(c) && c != '-') return false;
    }
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

// Names of roles, groups, licenses, permissions and upstreams end up in
// comma-separated identity headers and CLI arguments, so keep them plain.
bool is_valid_name(std::string_view name) {
  if (name.empty() || name.size() > 128) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return is_digit(c) || is_alpha(c) || c == '.' || c == '_' || c == '-' || c == ':';
  });
}

// Parses a port of 1..5 digits; nullopt when not a number in 0..65535.
std::optional<std::uint16_t> parse_port(std::string_view text) {
  if (!all_digits(text) || text.size() > 5) return std::nullopt;
  unsigned value = 0;
  std::from_chars(text.data(), text.data() + text.size(), value);
  if (value > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(value);
}

// "host:port", "[v6]:port". Returns an error message, empty on success.
std::string parse_endpoint(std::string_view text, bool allow_port_zero, Endpoint& out) {
  std::string_view host;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    std::size_t close = text.find(']');
    if (close == std::string_view::npos) return "missing ']' after the IPv6 address";
    host = text.substr(1, close - 1);
    if (!boost::urls::parse_ipv6_address(host)) return fmt::format("'{}' is not an IPv6 address", host);
    std::string_view rest = text.substr(close + 1);
    if (rest.empty() || rest.front() != ':') return "expected ':PORT' after ']'";
    port = rest.substr(1);
  } else {
    std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return "expected HOST:PORT";
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return "IPv6 addresses must be bracketed, e.g. [::1]:8080";
    if (host.empty()) return "missing host";
    bool numeric = std::all_of(host.begin(), host.end(), [](char c) { return is_digit(c) || c == '.'; });
    if (numeric) {
      if (!boost::urls::parse_ipv4_address(host)) return fmt::format("'{}' is not an IPv4 address", host);
    } else if (!is_hostname(host)) {
      return fmt::format("'{}' is not a valid host name", host);
    }
  }
  auto number = parse_port(port);
  if (!number) return fmt::format("invalid port '{}' (expected 0..65535)", port);
  if (*number == 0 && !allow_port_zero) return "port 0 is not allowed here";
  out.host = std::string(host);
  out.port = *number;
  return {};
}

// One key/value pair of a YAML mapping, with its dotted path for messages.
struct Field {
  std::string key;
  YAML::Node key_node;
  YAML::Node value;
  std::string path;
};

std::string node_kind(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null:
      return "nothing";
    case YAML::NodeType::Scalar:
      return fmt::format("'{}'", n.Scalar());
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    default:
      return "an undefined value";
  }
}

std::string child_path(const std::string& parent, std::string_view key) {
  return parent.empty() ? std::string(key) : fmt::format("{}.{}", parent, key);
}

// The events of one YAML document, read without building it. yaml-cpp builds an
// alias as one more reference to the anchored node, so nested aliases make a
// small tree that is enormous to walk ("billion laughs"), and the loader copies
// every scalar it reads. This counts the nodes and scalar bytes a walk visits
// with every alias expanded and gives up past kMaxConfigNodes or
// kMaxConfigExpandedBytes; it also refuses an alias inside the node it names,
// whose walk never ends. Linear in the size of the text.
class DocumentBudget final : public YAML::EventHandler {
 public:
  explicit DocumentBudget(const std::string& label) : label_(label) {}

  YAML::Mark start() const { return start_; }

  void OnDocumentStart(const YAML::Mark& mark) override { start_ = mark; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override { leaf(mark, anchor, {1, 0}); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                const std::string& value) override {
    leaf(mark, anchor, {1, value.size()});
  }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    const auto it = sizes_.find(anchor);
    // yaml-cpp itself rejects an undefined anchor, so a miss is one still open.
    if (it == sizes_.end()) {
      throw ConfigError(label_, to_mark(mark), "an alias cannot refer to a node that contains it");
    }
    add(mark, it->second);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    open(mark, anchor);
  }
  void OnSequenceEnd() override { close(); }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    open(mark, anchor);
  }
  void OnMapEnd() override { close(); }

 private:
  struct Size {
    std::size_t nodes = 0;
    std::size_t bytes = 0;  // of scalars
    void operator+=(const Size& other) {
      nodes += other.nodes;
      bytes += other.bytes;
    }
  };
  struct Open {
    YAML::anchor_t anchor;
    Size size;  // this collection and everything in it so far
  };

  // `total_` never passes the limits (the throw comes first) and every size is
  // part of it, so the sums cannot overflow.
  // A node (or an alias's expansion) inside the innermost open collection.
  void add(const YAML::Mark& mark, const Size& size) {
    if (!open_.empty()) open_.back().size += size;
    count(mark, size);
  }
  void count(const YAML::Mark& mark, const Size& size) {
    total_ += size;
    if (total_.nodes > kMaxConfigNodes) {
      throw ConfigError(
          label_, to_mark(mark),
          fmt::format("the document expands to more than {} nodes (through aliases?)", kMaxConfigNodes));
    }
    if (total_.bytes > kMaxConfigExpandedBytes) {
      throw ConfigError(label_, to_mark(mark),
                        fmt::format("the document expands to more than {} bytes of text (through aliases?)",
                                    kMaxConfigExpandedBytes));
    }
  }
  void leaf(const YAML::Mark& mark, YAML::anchor_t anchor, const Size& size) {
    add(mark, size);
    if (anchor != YAML::NullAnchor) sizes_[anchor] = size;
  }
  // A collection joins its parent's size when it closes, complete.
  void open(const YAML::Mark& mark, YAML::anchor_t anchor) {
    count(mark, {1, 0});
    open_.push_back({anchor, {1, 0}});
  }
  void close() {
    const Open done = open_.back();
    open_.pop_back();
    if (done.anchor != YAML::NullAnchor) sizes_[done.anchor] = done.size;
    if (!open_.empty()) open_.back().size += done.size;
  }

  const std::string& label_;
  YAML::Mark start_;
  Size total_;
  std::vector<Open> open_;
  std::unordered_map<YAML::anchor_t, Size> sizes_;
};

// Sees where a document starts and nothing else.
class DocumentStart final : public YAML::EventHandler {
 public:
  YAML::Mark mark;
  void OnDocumentStart(const YAML::Mark& m) override { mark = m; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
  }
  void OnMapEnd() override {}
};

// The one document of TEXT, or a null node for an empty file. Never
// YAML::LoadAll: after a token that starts no node (a lone ',') yaml-cpp 0.7
// reports an empty document without consuming the token, so LoadAll collects
// empty documents forever. Here the parser runs a bounded number of times: the
// first document within DocumentBudget, then up to two more starts, only to
// tell a second document from such a stuck token.
YAML::Node read_single_document(const std::string& text, const std::string& label) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  DocumentBudget first(label);
  if (!parser.HandleNextDocument(first)) return YAML::Node();
  DocumentStart second;
  if (parser.HandleNextDocument(second)) {
    DocumentStart third;
    const bool stuck = parser.HandleNextDocument(third) && third.mark.pos == second.mark.pos;
    const auto pos = static_cast<std::size_t>(std::max(second.mark.pos, 0));
    if (stuck && pos < text.size()) {
      const auto c = static_cast<unsigned char>(text[pos]);
      throw ConfigError(label, to_mark(second.mark),
                        c > 0x20 && c < 0x7F
                            ? fmt::format("syntax error: unexpected '{}'", static_cast<char>(c))
                            : std::string("syntax error: unexpected character"));
    }
    throw ConfigError(label, to_mark(second.mark), "only one YAML document is allowed");
  }
  // Built only now that the document is known to be small enough to walk.
  return YAML::Load(text);
}

// The names one section defines: in file order for hints, hashed for lookups
// (a config may reference thousands of names).
struct DefinedNames {
  std::vector<std::string> in_order;
  std::unordered_set<std::string> set;

  void add(const std::string& name) {
    in_order.push_back(name);
    set.insert(name);
  }
  bool contains(const std::string& name) const { return set.count(name) != 0; }
};

class Loader {
 public:
  Loader(std::string label, fs::path base_dir, Config& config)
      : label_(std::move(label)), base_dir_(std::move(base_dir)), config_(config) {}

  void load(const YAML::Node& root) {
    if (root.IsNull()) fail(Mark{}, "the configuration is empty");
    if (!root.IsMap())
      fail(root, fmt::format("expected a mapping at the top level, got {}", node_kind(root)));
    auto top = fields(root, "",
                      {"listen", "tls", "workers", "admin", "forward_auth", "store", "tokens", "limits",
                       "identity", "paths", "upstreams", "roles", "groups", "licenses", "routes"});
    std::map<std::string, const Field*> by_key;
    for (const auto& f : top) by_key[f.key] = &f;
    auto get = [&](const char* key) -> const Field* {
      auto it = by_key.find(key);
      return it == by_key.end() ? nullptr : it->second;
    };
    // Definitions first, references after, so the file order of sections is free.
    if (auto f = get("listen")) config_.listen = endpoint(*f);
    if (auto f = get("tls")) load_tls(*f);
    if (auto f = get("workers")) config_.workers = static_cast<unsigned>(integer(*f, 0, 4096));
    if (auto f = get("admin")) load_admin(*f);
    if (auto f = get("forward_auth")) load_forward_auth(*f);
    // The defaults are relative too: they live next to the config file.
    config_.store.path = resolve(config_.store.path);
    config_.store.key_file = resolve(config_.store.key_file);
    if (auto f = get("store")) load_store(*f);
    if (auto f = get("tokens")) load_tokens(*f);
    if (auto f = get("limits")) load_limits(*f);
    if (auto f = get("identity")) load_identity(*f);
    if (auto f = get("paths")) load_paths(*f);
    if (auto f = get("upstreams")) load_upstreams(*f);
    if (auto f = get("roles")) load_roles(*f);
    if (auto f = get("licenses")) load_licenses(*f);
    if (auto f = get("groups")) load_groups(*f);
    if (auto f = get("routes")) load_routes(*f);
  }

 private:
  [[noreturn]] void fail(Mark mark, std::string message) const {
    throw ConfigError(label_, mark, std::move(message));
  }
  [[noreturn]] void fail(const YAML::Node& at, std::string message) const {
    fail(to_mark(at.Mark()), std::move(message));
  }
  // Values that are absent (`key:` with nothing) point at the key: yaml-cpp marks
  // such a null at the next token, which may be lines further down.
  static Mark where(const Field& f) {
    if (f.value.IsNull()) return to_mark(f.key_node.Mark());
    return to_mark(f.value.Mark());
  }
  [[noreturn]] void fail(const Field& f, std::string message) const {
    fail(where(f), fmt::format("{}: {}", f.path, message));
  }

  // The pairs of MAP, rejecting non-string keys, duplicate keys (yaml-cpp keeps
  // both in iteration but lookups see only one) and, unless ALLOWED is empty
  // (maps keyed by user names), keys not in ALLOWED.
  std::vector<Field> fields(const YAML::Node& map, const std::string& path,
                            std::initializer_list<std::string_view> allowed) const {
    std::vector<Field> out;
    std::map<std::string, Mark> seen;
    for (const auto& pair : map) {
      YAML::Node key = pair.first;
      if (!key.IsScalar()) {
        fail(key, fmt::format("{}: keys must be strings", path.empty() ? "top level" : path));
      }
      const std::string& name = key.Scalar();
      Mark mark = to_mark(key.Mark());
      if (auto [pos, inserted] = seen.emplace(name, mark); !inserted) {
        fail(mark, fmt::format("duplicate key '{}' in {} (first defined at line {})", name,
                               path.empty() ? "the top level" : path, pos->second.line));
      }
      if (allowed.size() != 0 && std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
        fail(mark, fmt::format("unknown key '{}' in {}{}", name, path.empty() ? "the top level" : path,
                               did_you_mean(name, allowed)));
      }
      out.push_back(Field{name, key, pair.second, child_path(path, name)});
    }
    return out;
  }

  void expect_map(const Field& f) const {
    if (!f.value.IsMap()) fail(f, fmt::format("expected a mapping, got {}", node_kind(f.value)));
  }
  void expect_sequence(const Field& f) const {
    if (!f.value.IsSequence()) fail(f, fmt::format("expected a list, got {}", node_kind(f.value)));
  }

  std::string string(const Field& f) const {
    if (!f.value.IsScalar()) fail(f, fmt::format("expected a string, got {}", node_kind(f.value)));
    return f.value.Scalar();
  }

  // Plain (unquoted) YAML scalars only: "true" in quotes is a string, not a bool.
  bool boolean(const Field& f) const {
    static constexpr std::string_view kTrue[] = {"true", "True", "TRUE"};
    static constexpr std::string_view kFalse[] = {"false", "False", "FALSE"};
    if (f.value.IsScalar() && f.value.Tag() != "!") {
      const std::string& s = f.value.Scalar();
      if (std::find(std::begin(kTrue), std::end(kTrue), s) != std::end(kTrue)) return true;
      if (std::find(std::begin(kFalse), std::end(kFalse), s) != std::end(kFalse)) return false;
    }
    fail(f, fmt::format("expected true or false, got {}", node_kind(f.value)));
  }

  std::uint64_t integer(const Field& f, std::uint64_t min, std::uint64_t max) const {
    std::uint64_t value = 0;
    bool ok = f.value.IsScalar() && f.value.Tag() != "!" && all_digits(f.value.Scalar());
    if (ok) {
      const std::string& s = f.value.Scalar();
      auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
      ok = ec == std::errc() && end == s.data() + s.size();
    }
    if (!ok || value < min || value > max) {
      fail(f, fmt::format("expected an integer in {}..{}, got {}", min, max, node_kind(f.value)));
    }
    return value;
  }

  Duration duration(const Field& f) const {
    std::optional<Duration> d;
    if (f.value.IsScalar()) d = parse_duration(f.value.Scalar());
    if (!d)
      fail(f, fmt::format("invalid duration {} (expected e.g. 500ms, 10s, 5m, 2h, 30d or 0)",
                          node_kind(f.value)));
    return *d;
  }

  // `{rate: COUNT/UNIT, burst: N}`; burst defaults to COUNT. Errors point at the
  // offending value.
  RateLimit rate_limit(const Field& f) const {
    expect_map(f);
    std::optional<RateLimit> limit;
    std::optional<Field> burst_field;
    for (const auto& k : fields(f.value, f.path, {"rate", "burst"})) {
      if (k.key == "rate") {
        std::string error;
        if (!k.value.IsScalar() || !(limit = parse_rate(k.value.Scalar(), error))) {
          fail(k, k.value.IsScalar()
                      ? error
                      : fmt::format("expected a rate such as 100/s, got {}", node_kind(k.value)));
        }
      } else {
        burst_field = k;
      }
    }
    if (!limit) fail(to_mark(f.key_node.Mark()), fmt::format("{}: missing required key 'rate'", f.path));
    if (burst_field) {
      const Field& b = *burst_field;
      if (b.value.IsScalar() && b.value.Tag() != "!" && b.value.Scalar().starts_with('-'))
        fail(b, "must not be negative");
      limit->burst = integer(b, 1, kMaxBurst);
      if (auto why = check_rate_limit(*limit); !why.empty()) fail(b, why);
    }
    return *limit;
  }

  Duration positive_duration(const Field& f) const {
    Duration d = duration(f);
    if (d.count() == 0) fail(f, "must be greater than zero");
    return d;
  }

  Endpoint endpoint(const Field& f) const {
    std::string text = string(f);
    Endpoint ep;
    if (std::string err = parse_endpoint(text, true, ep); !err.empty()) {
      fail(f, fmt::format("invalid address '{}': {}", text, err));
    }
    return ep;
  }

  fs::path resolve(const fs::path& p) const {
    if (p.is_absolute()) return p.lexically_normal();
    return (base_dir_ / p).lexically_normal();
  }

  fs::path path(const Field& f) const {
    std::string text = string(f);
    if (text.empty()) fail(f, "expected a path, got an empty string");
    return resolve(text);
  }

  // A list of names, each valid and listed once.
  std::vector<std::string> names(const Field& f) const {
    expect_sequence(f);
    std::vector<std::string> out;
    std::unordered_set<std::string> seen;  // lists can be long: no quadratic duplicate check
    for (const auto& item : f.value) {
      if (!item.IsScalar()) fail(item, fmt::format("{}: expected a name, got {}", f.path, node_kind(item)));
      const std::string& name = item.Scalar();
      if (!is_valid_name(name)) {
        fail(item, fmt::format("{}: invalid name '{}' (use 1..128 letters, digits, '.', '_', '-', ':')",
                               f.path, name));
      }
      if (!seen.insert(name).second) fail(item, fmt::format("{}: duplicate '{}'", f.path, name));
      out.push_back(name);
    }
    return out;
  }

  // The name of a map entry that defines something (a role, a group, an upstream).
  std::string defined_name(const Field& f, std::string_view what) const {
    if (!is_valid_name(f.key)) {
      fail(f.key_node,
           fmt::format("invalid {} name '{}' (use 1..128 letters, digits, '.', '_', '-', ':')", what, f.key));
    }
    return f.key;
  }

  // Checks that every name in LIST (read from F) is one of DEFINED.
  void check_references(const Field& f, const std::vector<std::string>& list, std::string_view what,
                        const DefinedNames& defined) const {
    std::size_t i = 0;
    for (const auto& item : f.value) {
      const std::string& name = list[i++];
      if (!defined.contains(name)) {
        fail(item,
             fmt::format("{}: unknown {} '{}'{}", f.path, what, name, did_you_mean(name, defined.in_order)));
      }
    }
  }

  void load_tls(const Field& section) {
    expect_map(section);
    TlsConfig tls;
    bool has_cert = false;
    bool has_key = false;
    for (const auto& f : fields(section.value, section.path, {"cert", "key"})) {
      if (f.key == "cert") {
        tls.cert = path(f);
        has_cert = true;
      } else {
        tls.key = path(f);
        has_key = true;
      }
    }
    if (!has_cert) fail(section, "missing required key 'cert'");
    if (!has_key) fail(section, "missing required key 'key'");
    config_.tls = std::move(tls);
  }

  void load_admin(const Field& section) {
    expect_map(section);
    for (const auto& f : fields(section.value, section.path, {"listen", "socket"})) {
      if (f.key == "listen") {
        config_.admin.listen = endpoint(f);
      } else {
        config_.admin.socket = path(f);
      }
    }
  }

  void load_forward_auth(const Field& section) {
    expect_map(section);
    ForwardAuthConfig fa;
    bool has_listen = false;
    for (const auto& f : fields(section.value, section.path, {"listen", "path_prefix"})) {
      if (f.key == "listen") {
        fa.listen = endpoint(f);
        has_listen = true;
      } else {
        fa.path_prefix = string(f);
        // A prefix is matched against the raw target, so it must be a plain path
        // that a canonical target can start with.
        if (!fa.path_prefix.empty() && (fa.path_prefix.front() != '/' || fa.path_prefix.back() == '/' ||
                                        fa.path_prefix.find_first_of("?#%\\ ") != std::string::npos)) {
          fail(f, fmt::format("expected a path such as /auth (starting with '/', no trailing '/', "
                              "no '?', '#', '%' or spaces), got '{}'",
                              fa.path_prefix));
        }
      }
    }
    if (!has_listen) fail(to_mark(section.key_node.Mark()), "forward_auth: 'listen' is required");
    config_.forward_auth = std::move(fa);
  }

  void load_store(const Field& section) {
    expect_map(section);
    for (const auto& f : fields(section.value, section.path, {"path", "key_file", "postgres"})) {
      if (f.key == "path") {
        config_.store.path = path(f);
      } else if (f.key == "key_file") {
        config_.store.key_file = path(f);
      } else {
        load_postgres(f);
      }
    }
  }

  void load_postgres(const Field& section) {
    expect_map(section);
    PostgresConfig pg;
    bool has_url = false;
    for (const auto& f : fields(section.value, section.path, {"url", "password_file", "max_staleness"})) {
      if (f.key == "url") {
        pg.url = string(f);
        // Only the URI form: it is what the documentation shows, and a key=value
        // string would be one more syntax to check for a password (never logged).
        if (!pg.url.starts_with("postgresql://") && !pg.url.starts_with("postgres://"))
          fail(f, "expected a libpq URI starting with postgresql://");
        has_url = true;
      } else if (f.key == "password_file") {
        pg.password_file = path(f);
      } else {
        pg.max_staleness = duration(f);
      }
    }
    if (!has_url) fail(section, "missing required key 'url'");
    config_.store.postgres = std::move(pg);
  }

  void load_tokens(const Field& section) {
    expect_map(section);
    for (const auto& f : fields(section.value, section.path, {"max_lifetime", "default_rate_limit"})) {
      if (f.key == "max_lifetime") {
        config_.tokens.max_lifetime = duration(f);
      } else {
        config_.tokens.default_rate_limit = rate_limit(f);
      }
    }
  }

  void load_limits(const Field& section) {
    expect_map(section);
    constexpr std::uint64_t kMax = std::numeric_limits<std::uint32_t>::max();
    auto& l = config_.limits;
    for (const auto& f : fields(section.value, section.path,
                                {"max_header_bytes", "max_body_bytes", "header_timeout", "idle_timeout",
                                 "upstream_connect_timeout", "upstream_timeout", "max_connections"})) {
      if (f.key == "max_header_bytes") {
        l.max_header_bytes = integer(f, 1, kMax);
      } else if (f.key == "max_body_bytes") {
        l.max_body_bytes = integer(f, 1, std::numeric_limits<std::int64_t>::max());
      } else if (f.key == "header_timeout") {
        l.header_timeout = positive_duration(f);
      } else if (f.key == "idle_timeout") {
        l.idle_timeout = positive_duration(f);
      } else if (f.key == "upstream_connect_timeout") {
        l.upstream_connect_timeout = positive_duration(f);
      } else if (f.key == "upstream_timeout") {
        l.upstream_timeout = positive_duration(f);
      } else {
        l.max_connections = integer(f, 1, kMax);
      }
    }
  }

  void load_identity(const Field& section) {
    expect_map(section);
    for (const auto& f : fields(section.value, section.path, {"header_prefix", "forward_authorization"})) {
      if (f.key == "header_prefix") {
        std::string prefix = string(f);
        if (prefix.empty() || !std::all_of(prefix.begin(), prefix.end(), is_tchar)) {
          fail(f, fmt::format("'{}' is not a valid header name prefix (letters, digits and !#$%&'*+-.^_`|~)",
                              prefix));
        }
        config_.identity.header_prefix = prefix;
      } else {
        config_.identity.forward_authorization = boolean(f);
      }
    }
  }

  void load_paths(const Field& section) {
    expect_map(section);
    for (const auto& f : fields(section.value, section.path, {"allow"})) {
      expect_sequence(f);
      static constexpr std::string_view kKinds[] = {"semicolon", "encoded_percent", "trailing_dot"};
      std::vector<std::string> seen;
      for (const auto& item : f.value) {
        if (!item.IsScalar()) fail(item, fmt::format("{}: expected a name, got {}", f.path, node_kind(item)));
        const std::string& kind = item.Scalar();
        if (std::find(seen.begin(), seen.end(), kind) != seen.end()) {
          fail(item, fmt::format("{}: duplicate '{}'", f.path, kind));
        }
        seen.push_back(kind);
        auto& allow = config_.paths;
        if (kind == "semicolon") {
          allow.allow_semicolon = true;
        } else if (kind == "encoded_percent") {
          allow.allow_encoded_percent = true;
        } else if (kind == "trailing_dot") {
          allow.allow_trailing_dot = true;
        } else {
          fail(item,
               fmt::format("{}: unknown value '{}' (expected semicolon, encoded_percent or trailing_dot){}",
                           f.path, kind, did_you_mean(kind, kKinds)));
        }
      }
    }
  }

  void load_upstreams(const Field& section) {
    expect_map(section);
    for (const auto& entry : fields(section.value, section.path, {})) {
      Upstream up;
      up.name = defined_name(entry, "upstream");
      up.mark = to_mark(entry.key_node.Mark());
      expect_map(entry);
      std::optional<Field> ca_field;
      bool has_url = false;
      for (const auto& f : fields(entry.value, entry.path, {"url", "ca"})) {
        if (f.key == "url") {
          parse_upstream_url(f, up);
          has_url = true;
        } else {
          up.ca = path(f);
          ca_field = f;
        }
      }
      if (!has_url) fail(entry, "missing required key 'url'");
      if (ca_field && !up.https) fail(*ca_field, "'ca' is only meaningful for https:// upstreams");
      upstream_names_.add(up.name);
      config_.upstreams.push_back(std::move(up));
    }
  }

  void parse_upstream_url(const Field& f, Upstream& up) const {
    up.url = string(f);
    auto bad = [&](std::string_view why) {
      fail(f, fmt::format("invalid upstream URL '{}': {}", up.url, why));
    };
    // parse_uri, not parse_absolute_uri: the latter rejects a fragment by grammar,
    // and a specific message is more useful than "not an absolute URL".
    auto parsed = boost::urls::parse_uri(up.url);
    if (!parsed) bad("not an absolute URL");
    const boost::urls::url_view& u = *parsed;
    if (u.scheme_id() == boost::urls::scheme::http) {
      up.https = false;
    } else if (u.scheme_id() == boost::urls::scheme::https) {
      up.https = true;
    } else {
      bad("the scheme must be http:// or https://");
    }
    if (!u.has_authority()) bad("missing host");
    if (u.has_userinfo()) bad("user info ('user@') is not allowed");
    switch (u.host_type()) {
      case boost::urls::host_type::ipv4:
        up.host = std::string(u.encoded_host());
        break;
      case boost::urls::host_type::ipv6:
        up.host = u.host_ipv6_address().to_string();
        break;
      case boost::urls::host_type::name:
        up.host = std::string(u.encoded_host());
        if (up.host.empty()) bad("missing host");
        if (!is_hostname(up.host)) bad(fmt::format("'{}' is not a valid host name", up.host));
        break;
      default:
        bad("missing host");
    }
    if (u.has_port()) {
      auto port = parse_port(u.port());
      if (!port || *port == 0)
        bad(fmt::format("invalid port '{}' (expected 1..65535)", std::string_view(u.port())));
      up.port = *port;
    } else {
      up.port = up.https ? 443 : 80;
    }
    if (u.has_query()) bad("a query string is not allowed");
    if (u.has_fragment()) bad("a fragment is not allowed");
    std::string base(u.encoded_path());
    while (!base.empty() && base.back() == '/') base.pop_back();
    up.base_path = std::move(base);
  }

  void load_roles(const Field& section) {
    expect_map(section);
    for (const auto& entry : fields(section.value, section.path, {})) {
      Role role;
      role.name = defined_name(entry, "role");
      role.mark = to_mark(entry.key_node.Mark());
      expect_map(entry);
      for (const auto& f : fields(entry.value, entry.path, {"permissions"})) role.permissions = names(f);
      role_names_.add(role.name);
      config_.roles.push_back(std::move(role));
    }
  }

  void load_licenses(const Field& section) {
    config_.licenses = names(section);
    for (const auto& license : config_.licenses) license_names_.add(license);
  }

  void load_groups(const Field& section) {
    expect_map(section);
    for (const auto& entry : fields(section.value, section.path, {})) {
      Group group;
      group.name = defined_name(entry, "group");
      group.mark = to_mark(entry.key_node.Mark());
      expect_map(entry);
      for (const auto& f : fields(entry.value, entry.path, {"roles", "permissions"})) {
        if (f.key == "roles") {
          group.roles = names(f);
          check_references(f, group.roles, "role", role_names_);
        } else {
          group.permissions = names(f);
        }
      }
      group_names_.add(group.name);
      config_.groups.push_back(std::move(group));
    }
  }

  RequirementBlock load_block(const Field& f, const YAML::Node& map, const std::string& block_path,
                              bool allow_any_of, std::vector<RequirementBlock>* any_of) const {
    RequirementBlock block;
    block.mark = to_mark(map.Mark());
    std::initializer_list<std::string_view> keys_with_any = {"permissions", "roles", "groups", "licenses",
                                                             "any_of"};
    std::initializer_list<std::string_view> keys = {"permissions", "roles", "groups", "licenses"};
    bool empty = true;
    for (const auto& k : fields(map, block_path, allow_any_of ? keys_with_any : keys)) {
      if (k.key == "permissions") {
        block.permissions = names(k);
        empty = empty && block.permissions.empty();
      } else if (k.key == "roles") {
        block.roles = names(k);
        check_references(k, block.roles, "role", role_names_);
        empty = empty && block.roles.empty();
      } else if (k.key == "groups") {
        block.groups = names(k);
        check_references(k, block.groups, "group", group_names_);
        empty = empty && block.groups.empty();
      } else if (k.key == "licenses") {
        block.licenses = names(k);
        check_references(k, block.licenses, "license", license_names_);
        empty = empty && block.licenses.empty();
      } else {
        expect_sequence(k);
        if (k.value.size() == 0) fail(k, "must list at least one block (omit it otherwise)");
        std::size_t i = 0;
        for (const auto& item : k.value) {
          std::string item_path = fmt::format("{}[{}]", k.path, i++);
          if (!item.IsMap())
            fail(item, fmt::format("{}: expected a mapping, got {}", item_path, node_kind(item)));
          any_of->push_back(load_block(k, item, item_path, false, nullptr));
        }
        empty = false;
      }
    }
    // An empty block always holds: in any_of it would make the whole list moot,
    // as `require` it is a roundabout "any valid token". Both are likely mistakes.
    if (empty) {
      fail(allow_any_of ? where(f) : to_mark(map.Mark()),
           fmt::format("{}: empty requirement (omit 'require' to allow any valid token)", block_path));
    }
    return block;
  }

  void load_routes(const Field& section) {
    expect_sequence(section);
    std::size_t index = 0;
    for (const auto& node : section.value) {
      std::string route_path = fmt::format("{}[{}]", section.path, index++);
      if (!node.IsMap())
        fail(node, fmt::format("{}: expected a mapping, got {}", route_path, node_kind(node)));
      Route route;
      bool has_path = false;
      bool has_upstream = false;
      std::optional<Field> require_field;
      std::optional<Field> public_field;
      for (const auto& f :
           fields(node, route_path, {"path", "methods", "upstream", "public", "require", "rate_limit"})) {
        if (f.key == "path") {
          route.path = string(f);
          if (route.path.empty() || route.path.front() != '/')
            fail(f, fmt::format("'{}' must start with '/'", route.path));
          route.mark = to_mark(f.key_node.Mark());
          has_path = true;
        } else if (f.key == "methods") {
          route.methods = methods(f);
        } else if (f.key == "upstream") {
          route.upstream = string(f);
          if (!upstream_names_.contains(route.upstream)) {
            fail(f, fmt::format("unknown upstream '{}'{}", route.upstream,
                                did_you_mean(route.upstream, upstream_names_.in_order)));
          }
          has_upstream = true;
        } else if (f.key == "public") {
          route.is_public = boolean(f);
          public_field = f;
        } else if (f.key == "rate_limit") {
          route.rate_limit = rate_limit(f);
        } else {
          require_field = f;
        }
      }
      if (!has_path) fail(node, fmt::format("{}: missing required key 'path'", route_path));
      if (!has_upstream) fail(node, fmt::format("{}: missing required key 'upstream'", route_path));
      if (require_field) {
        const Field& f = *require_field;
        if (route.is_public)
          fail(to_mark(f.key_node.Mark()),
               fmt::format("{}: a public route cannot have 'require'", route_path));
        expect_map(f);
        Requirement req;
        req.mark = to_mark(f.key_node.Mark());
        req.all_of = load_block(f, f.value, f.path, true, &req.any_of);
        route.require = std::move(req);
      }
      config_.routes.push_back(std::move(route));
    }
  }

  std::vector<std::string> methods(const Field& f) const {
    expect_sequence(f);
    if (f.value.size() == 0) fail(f, "empty list (omit 'methods' to allow every method)");
    std::vector<std::string> out;
    std::unordered_set<std::string> seen;
    for (const auto& item : f.value) {
      std::string m = item.IsScalar() ? item.Scalar() : std::string();
      bool ok = !m.empty() && std::all_of(m.begin(), m.end(),
                                          [](char c) { return is_tchar(c) && !(c >= 'a' && c <= 'z'); });
      if (!ok) {
        fail(item, fmt::format("{}: invalid method {} (expected an upper-case HTTP method such as GET)",
                               f.path, node_kind(item)));
      }
      if (!seen.insert(m).second) fail(item, fmt::format("{}: duplicate method '{}'", f.path, m));
      out.push_back(std::move(m));
    }
    return out;
  }

  std::string label_;
  fs::path base_dir_;
  Config& config_;
  // Filled as their sections load (load() orders definitions before references).
  DefinedNames upstream_names_;
  DefinedNames role_names_;
  DefinedNames group_names_;
  DefinedNames license_names_;
};

}  // namespace

namespace {

// Messages quote values from the file, which can be a megabyte long: keep the
// one log line readable. Cut between UTF-8 characters.
std::string bounded_message(std::string message) {
  constexpr std::size_t kMaxMessage = 512;
  if (message.size() <= kMaxMessage) return message;
  std::size_t cut = kMaxMessage;
  while (cut > 0 && (static_cast<unsigned char>(message[cut]) & 0xC0) == 0x80) --cut;
  message.resize(cut);
  message += "...";
  return message;
}

}  // namespace

ConfigError::ConfigError(std::string file, Mark mark, std::string message)
    : ConfigError(std::move(file), mark, bounded_message(std::move(message)), 0) {}

ConfigError::ConfigError(std::string file, Mark mark, std::string message, int)
    : std::runtime_error(format_error(file, mark, message)),
      file_(std::move(file)),
      mark_(mark),
      message_(std::move(message)) {}

std::string Endpoint::to_string() const {
  if (host.find(':') != std::string::npos) return fmt::format("[{}]:{}", host, port);
  return fmt::format("{}:{}", host, port);
}

const Upstream* Config::find_upstream(std::string_view name) const noexcept {
  for (const auto& u : upstreams) {
    if (u.name == name) return &u;
  }
  return nullptr;
}

const Role* Config::find_role(std::string_view name) const noexcept {
  for (const auto& r : roles) {
    if (r.name == name) return &r;
  }
  return nullptr;
}

const Group* Config::find_group(std::string_view name) const noexcept {
  for (const auto& g : groups) {
    if (g.name == name) return &g;
  }
  return nullptr;
}

bool Config::has_license(std::string_view name) const noexcept {
  return std::find(licenses.begin(), licenses.end(), name) != licenses.end();
}

std::shared_ptr<const Config> parse_config(std::string_view yaml, const std::filesystem::path& file) {
  const std::string label = file.string();
  auto config = std::make_shared<Config>();
  std::error_code ec;
  fs::path absolute = fs::absolute(file, ec);
  if (ec) throw ConfigError(label, {}, fmt::format("cannot resolve path: {}", ec.message()));
  config->file = absolute.lexically_normal();
  if (yaml.size() > kMaxConfigBytes) {
    throw ConfigError(label, {}, fmt::format("the configuration is larger than {} bytes", kMaxConfigBytes));
  }
  YAML::Node root;
  try {
    root = read_single_document(std::string(yaml), label);
  } catch (const YAML::Exception& e) {
    throw ConfigError(label, to_mark(e.mark), e.msg);
  }
  Loader loader(label, config->file.parent_path(), *config);
  try {
    loader.load(root);
  } catch (const YAML::Exception& e) {
    // Should not happen (we never convert with as<>), but keep the one error type.
    throw ConfigError(label, to_mark(e.mark), e.msg);
  }
  return config;
}

std::shared_ptr<const Config> load_config(const std::filesystem::path& file) {
  const std::string label = file.string();
  std::error_code ec;
  if (fs::is_directory(file, ec)) throw ConfigError(label, {}, "cannot read configuration: is a directory");
  std::ifstream in(file, std::ios::binary);
  if (!in) throw ConfigError(label, {}, fmt::format("cannot read configuration: {}", std::strerror(errno)));
  // One byte past the limit is enough to refuse the file: never read all of a
  // huge file (or a device that never ends) into memory.
  std::string text(kMaxConfigBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (in.bad())
    throw ConfigError(label, {}, fmt::format("cannot read configuration: {}", std::strerror(errno)));
  text.resize(static_cast<std::size_t>(in.gcount()));
  return parse_config(text, file);
}

std::optional<Duration> parse_duration(std::string_view text) {
  if (text == "0") return Duration{0};
  std::size_t digits = 0;
  while (digits < text.size() && is_digit(text[digits])) ++digits;
  if (digits == 0 || digits > 18) return std::nullopt;
  std::int64_t value = 0;
  std::from_chars(text.data(), text.data() + digits, value);
  std::string_view unit = text.substr(digits);
  std::int64_t scale = 0;
  if (unit == "ms") {
    scale = 1;
  } else if (unit == "s") {
    scale = 1000;
  } else if (unit == "m") {
    scale = 60 * 1000;
  } else if (unit == "h") {
    scale = 60 * 60 * 1000;
  } else if (unit == "d") {
    scale = 24 * 60 * 60 * 1000;
  } else {
    return std::nullopt;
  }
  if (value > std::numeric_limits<std::int64_t>::max() / scale) return std::nullopt;
  return Duration{value * scale};
}

std::string format_duration(Duration d) {
  std::int64_t ms = d.count();
  if (ms == 0) return "0";
  if (ms < 0 && ms != std::numeric_limits<std::int64_t>::min()) return "-" + format_duration(Duration{-ms});
  static constexpr std::pair<std::int64_t, const char*> kUnits[] = {
      {24 * 60 * 60 * 1000, "d"}, {60 * 60 * 1000, "h"}, {60 * 1000, "m"}, {1000, "s"}, {1, "ms"}};
  for (const auto& [scale, suffix] : kUnits) {
    if (ms % scale == 0) return fmt::format("{}{}", ms / scale, suffix);
  }
  return fmt::format("{}ms", ms);
}

}  // namespace tokengate::conf
