// The request plan: everything the proxy decides between "a request head has
// arrived" and "these bytes go upstream" or "this is the answer", with no I/O. It
// parses the head, runs the framing checks of docs/http.md (including the body
// bytes that came with the head), asks the token lookup about the credential,
// takes the one policy decision (Engine::decide_request, which `tokengate explain`
// uses too), counts an allowed request against the rate limits that apply
// (Engine::rate_limits) and writes the upstream request head. The session only moves bytes.
#pragma once

#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <memory_resource>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "gateway/http/authorization.hpp"
#include "gateway/http/body_decoder.hpp"
#include "gateway/http/framing.hpp"
#include "policy/engine.hpp"
#include "store/token_verifier.hpp"

namespace tokengate::gateway {

// What the data plane knows about callers and request ids: the worker's token
// replica and rights cache in the gateway, a fake in tests.
class PlanEnvironment {
 public:
  struct Caller {
    policy::Credential credential = policy::Credential::Invalid;
    // When Valid; used before the plan returns (it points into a cache).
    const policy::Rights* rights = nullptr;
    std::shared_ptr<const store::ActiveToken> token;  // pins the token for the access log
    std::string_view failure;                     // when Invalid: why (access log only, never the response)
    const conf::RateLimit* rate_limit = nullptr;  // when Valid: the token's own limit, if it has one
  };
  // For a valid token, also replaces `identity_fields` with its identity header
  // fields as sent upstream ("X-Auth-Subject: ...\r\n" through Licenses), written
  // into the caller's buffer so that nothing is allocated per request.
  virtual Caller check_bearer(std::string_view token, std::string& identity_fields) = 0;

  // Counts one request against every limit in `limits` (README.md, "Rate
  // limits"); refused when one has no room, and then nothing is counted.
  struct Admission {
    bool allowed = true;
    bool by_route = false;                   // refused by the route's limit (else the token's)
    const conf::RateLimit* limit = nullptr;  // the limit that refused
    std::uint64_t retry_after_ns = 0;        // until the request would fit
  };
  virtual Admission admit(const policy::RateLimits& limits, int route, const Caller& caller,
                          std::string_view client_address) = 0;
  virtual void make_request_id(std::string& out) = 0;
  // Cluster mode: false while the node has no copy of the token set or its copy
  // is older than store.postgres.max_staleness; protected routes then answer 503.
  virtual bool store_serving() const { return true; }

 protected:
  ~PlanEnvironment() = default;
};

// Where a route's requests go, derived from the config once per generation.
struct RouteTarget {
  int upstream = -1;  // index into Config::upstreams, -1 when unknown
  std::string_view name;
  std::string_view host_header;  // "host:port" sent upstream
  std::string_view base_path;
};

struct PlanContext {
  const policy::Engine& engine;
  std::span<const RouteTarget> routes;  // by route index
  std::string_view client_address;
  bool https = false;  // the client connection
  // A forward-auth check (forward_auth/): the request to decide on is the one the
  // check describes, and nothing goes upstream. Allowed: outcome() is Allowed or
  // PublicRoute, forward() false, identity_fields() what the ingress copies.
  bool check = false;
};

class RequestPlanner {
 public:
  // The head's fields are allocated from `arena`, which the owner rewinds after
  // release() (the session shares it with the response parser).
  explicit RequestPlanner(std::pmr::memory_resource& arena) noexcept : arena_(&arena) {}
  RequestPlanner(const RequestPlanner&) = delete;
  RequestPlanner& operator=(const RequestPlanner&) = delete;

  // Plans the request whose head is the first `head_end` bytes of `buffered` (the
  // rest is whatever came with it). Afterwards the accessors describe it until
  // the next plan() or release().
  void plan(std::string_view buffered, std::size_t head_end, const PlanContext& context,
            PlanEnvironment& environment);
  // Frees what a request held (header fields): an idle connection keeps nothing.
  void release();

  // The outcome and, unless forward(), the reply: status, error code and challenge
  // come from the outcome table (policy/outcome.hpp).
  policy::Outcome outcome() const noexcept { return outcome_; }
  bool forward() const noexcept { return forward_; }
  std::string_view message() const noexcept { return message_; }  // the reply's message
  std::string_view allow() const noexcept { return allow_; }      // Allow of a 405
  // Header lines of a 429 ("Retry-After: 1\r\nRateLimit-Policy: ...\r\n..."), else empty.
  std::string_view reply_fields() const noexcept { return reply_fields_; }
  bool close_after_reply() const noexcept { return close_; }
  std::string_view detail() const noexcept { return detail_; }  // access log only

  // What is known of the request (as far as it got).
  std::size_t head_bytes() const noexcept { return head_bytes_; }  // consumed from `buffered`
  std::string_view method() const noexcept { return method_; }
  std::string_view path() const noexcept { return path_; }  // canonical
  std::string_view request_id() const noexcept { return request_id_; }
  int route() const noexcept { return route_; }
  const RouteTarget* target() const noexcept { return target_; }
  const std::shared_ptr<const store::ActiveToken>& token() const noexcept { return token_; }
  unsigned version() const noexcept { return version_; }
  bool keep_alive() const noexcept { return keep_alive_; }
  bool is_head() const noexcept { return is_head_; }
  bool has_body() const noexcept { return has_body_; }
  bool expect_continue() const noexcept { return expect_continue_; }
  bool websocket() const noexcept { return websocket_; }
  bool retryable() const noexcept { return retryable_; }  // idempotent and bodiless
  // The request body's framing, positioned at its first byte.
  const http1::BodyDecoder& body() const noexcept { return body_; }
  // The head to send upstream (forward() only).
  const std::string& upstream_head() const noexcept { return upstream_head_; }
  // An allowed check's identity header fields ("X-Auth-Subject: ...\r\n" ...),
  // empty without a valid token.
  const std::string& identity_fields() const noexcept { return identity_; }

 private:
  void reset();
  bool parse_head(std::string_view head, const conf::Limits& limits);
  bool check_framing(std::string_view rest, const conf::Limits& limits);
  void decide(const PlanContext& context, PlanEnvironment& environment);
  // The method and target to decide on: the request's own, or for a check the
  // original request it describes (false after refusing the check).
  bool subject_request(const PlanContext& context, std::string_view& method, std::string_view& target);
  void write_upstream_head(const PlanContext& context, std::string_view identity_fields,
                           const policy::CanonicalTarget& target);
  void refuse(policy::Outcome outcome, bool close, std::string_view message = {});
  void rate_limited(const PlanEnvironment::Admission& admission, bool close);

  policy::Outcome outcome_ = policy::Outcome::BadFraming;
  bool forward_ = false;
  bool close_ = true;
  std::string_view message_;
  std::string_view allow_;
  std::string_view detail_;
  std::size_t head_bytes_ = 0;
  std::string method_;
  std::string path_;
  std::string request_id_;
  std::string message_buffer_;
  std::string reply_fields_;
  std::string upstream_head_;
  std::string identity_;
  std::string caller_identity_;  // the token's identity fields, whatever the decision
  int route_ = -1;
  const RouteTarget* target_ = nullptr;
  std::shared_ptr<const store::ActiveToken> token_;
  unsigned version_ = 11;
  bool keep_alive_ = false;
  bool is_head_ = false;
  bool has_body_ = false;
  bool expect_continue_ = false;
  bool websocket_ = false;
  bool retryable_ = false;
  http1::BodyDecoder body_ = http1::BodyDecoder::with_length(0);
  std::pmr::memory_resource* arena_;
  std::optional<boost::beast::http::request_parser<boost::beast::http::empty_body,
                                                   std::pmr::polymorphic_allocator<char>>>
      parser_;
};

}  // namespace tokengate::gateway
