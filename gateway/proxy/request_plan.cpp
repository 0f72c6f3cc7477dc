// The request plan (see request_plan.hpp). Each step either refuses the request
// (an outcome, whether the connection closes, maybe a message) or hands on to
// the next: parse, framing, credential and policy decision, upstream head.
#include "gateway/proxy/request_plan.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <boost/beast/http/error.hpp>
#include <stdexcept>

#include "gateway/forward_auth/original_request.hpp"

namespace tokengate::gateway {

namespace http = boost::beast::http;
using http1::BodyDecoder;
using http1::BodyError;
using policy::Outcome;

namespace {

bool is_idempotent(http::verb v) noexcept {
  switch (v) {
    case http::verb::get:
    case http::verb::head:
    case http::verb::options:
    case http::verb::put:
    case http::verb::delete_:
      return true;
    default:
      return false;
  }
}

}  // namespace

void RequestPlanner::reset() {
  outcome_ = Outcome::BadFraming;
  forward_ = false;
  close_ = true;
  message_ = allow_ = detail_ = {};
  reply_fields_.clear();
  head_bytes_ = 0;
  method_.clear();
  path_.clear();
  request_id_.clear();
  upstream_head_.clear();
  identity_.clear();
  route_ = -1;
  target_ = nullptr;
  token_.reset();
  version_ = 11;
  keep_alive_ = is_head_ = has_body_ = expect_continue_ = websocket_ = retryable_ = false;
  body_ = BodyDecoder::with_length(0);
}

void RequestPlanner::release() {
  parser_.reset();
  token_.reset();
}

void RequestPlanner::refuse(Outcome outcome, bool close, std::string_view message) {
  outcome_ = outcome;
  forward_ = false;
  close_ = close;
  message_ = message.empty() ? policy::info(outcome).message : message;
}

void RequestPlanner::plan(std::string_view buffered, std::size_t head_end, const PlanContext& context,
                          PlanEnvironment& environment) {
  reset();
  const conf::Limits& limits = context.engine.config().limits;
  if (!parse_head(buffered.substr(0, head_end), limits)) return;
  auto& req = parser_->get();
  if (auto it = find_field(req, "X-Request-Id"); it != req.end() && is_valid_request_id(it->value())) {
    request_id_ = it->value();
  } else {
    environment.make_request_id(request_id_);
  }
  if (!check_framing(buffered.substr(head_bytes_), limits)) return;
  if (context.check && has_body_) {
    // A check is answered from its head; reading a body nobody looks at would only
    // hold the connection. The ingress is misconfigured (nginx: proxy_pass_request_body).
    detail_ = "the check request has a body";
    refuse(Outcome::BadCheckRequest, true, "a check request must not have a body");
    return;
  }
  decide(context, environment);
}

// The head into parser_: size, obs-fold and NUL (on the raw bytes: Beast's parser
// would join folded lines), then Beast's parser.
bool RequestPlanner::parse_head(std::string_view head, const conf::Limits& limits) {
  if (head.size() > limits.max_header_bytes + 4) {
    refuse(Outcome::HeaderTooLarge, true);
    return false;
  }
  if (head_has_obs_fold_or_nul(head)) {
    detail_ = "obs-fold or NUL";
    refuse(Outcome::BadFraming, true, "obsolete line folding is not accepted");
    return false;
  }
  parser_.emplace(http::request_header<Fields>{Fields(arena_)});
  parser_->header_limit(
      static_cast<std::uint32_t>(std::max<std::size_t>(head.size(), limits.max_header_bytes)));
  parser_->body_limit(limits.max_body_bytes);
  boost::system::error_code ec;
  try {
    head_bytes_ = parser_->put(boost::asio::buffer(head.data(), head.size()), ec);
  } catch (const std::length_error&) {
    // Beast's field list refuses a name or value over 64 KiB by throwing.
    ec = http::error::header_limit;
  }
  if (ec == http::error::header_limit) {
    refuse(Outcome::HeaderTooLarge, true);
    return false;
  }
  if (ec == http::error::body_limit) {
    refuse(Outcome::BodyTooLarge, true);
    return false;
  }
  if ((ec && ec != http::error::need_more) || !parser_->is_header_done()) {
    message_buffer_ = fmt::format("malformed request: {}", ec.message());
    refuse(Outcome::BadFraming, true, message_buffer_);
    return false;
  }
  const auto& req = parser_->get();
  method_ = req.method_string();
  version_ = req.version();
  is_head_ = req.method() == http::verb::head;
  return true;
}

// The framing checks of the head, then of the body bytes that came with it: a
// request refused for its body never reaches the upstream at all.
bool RequestPlanner::check_framing(std::string_view rest, const conf::Limits& limits) {
  const auto& req = parser_->get();
  if (const auto error = validate_request_framing(req, version_); error != FramingError::None) {
    detail_ = to_string(error);
    message_buffer_ = fmt::format("ambiguous request: {}", to_string(error));
    refuse(Outcome::BadFraming, true, message_buffer_);
    return false;
  }
  keep_alive_ = parser_->keep_alive();
  body_ = parser_->chunked() ? BodyDecoder::chunked(limits.max_header_bytes, limits.max_body_bytes)
                             : BodyDecoder::with_length(parser_->content_length().value_or(0));
  has_body_ = !body_.done();
  retryable_ = !has_body_ && is_idempotent(req.method());
  BodyDecoder ahead = body_;
  while (has_body_ && !rest.empty() && !ahead.done()) {
    const auto step = ahead.next(rest);
    if (step.error != BodyError::None) {
      detail_ = http1::to_string(step.error);
      if (step.error == BodyError::BodyTooLarge) {
        refuse(Outcome::BodyTooLarge, true);
      } else if (step.error == BodyError::MetadataTooLarge) {
        refuse(Outcome::HeaderTooLarge, true, "the chunk extensions or trailers are too large");
      } else {
        message_buffer_ = fmt::format("malformed request body: {}", http1::to_string(step.error));
        refuse(Outcome::BadFraming, true, message_buffer_);
      }
      return false;
    }
    rest.remove_prefix(step.consumed);
  }
  return true;
}

// Credential, then the one policy decision, then where the request goes.
void RequestPlanner::decide(const PlanContext& context, PlanEnvironment& environment) {
  const auto& req = parser_->get();
  const auto auth_it = find_field(req, http::field::authorization);
  const bool auth_present = auth_it != req.end();
  const Authorization auth = parse_authorization(
      auth_present, auth_present ? std::string_view(auth_it->value()) : std::string_view{});
  PlanEnvironment::Caller caller;
  caller.credential = auth.kind == AuthKind::None          ? policy::Credential::None
                      : auth.kind == AuthKind::WrongScheme ? policy::Credential::WrongScheme
                                                           : policy::Credential::Invalid;
  if (auth.kind == AuthKind::Bearer) {
    caller = environment.check_bearer(auth.token, caller_identity_);
    if (caller.credential == policy::Credential::Valid) {
      token_ = caller.token;
    } else {
      detail_ = caller.failure;
    }
  }
  std::string_view method;
  std::string_view target;
  if (!subject_request(context, method, target)) return;
  const auto evaluated =
      context.engine.decide_request(method, target, path_, caller.credential, caller.rights);
  const policy::Decision& decision = evaluated.decision;
  route_ = decision.route;
  // Only a bodiless request keeps its connection after a refusal: the body's
  // bytes would otherwise be read as the next request.
  const bool close = has_body_;
  if (context.check &&
      policy::Engine::check_outcome(evaluated, target, path_) == Outcome::NonCanonicalTarget) {
    detail_ = evaluated.target.error != policy::PathError::None ? policy::to_string(evaluated.target.error)
                                                                : std::string_view("not canonical");
    path_ = target.substr(0, target.find('?'));  // the access log shows what the ingress asked about
    route_ = -1;
    refuse(Outcome::NonCanonicalTarget, close);
    return;
  }
  if (evaluated.target.error != policy::PathError::None) {
    detail_ = policy::to_string(evaluated.target.error);
    message_buffer_ = fmt::format("invalid request target: {}", policy::to_string(evaluated.target.error));
    refuse(Outcome::BadRequest, close, message_buffer_);
    return;
  }
  // A protected route cannot be decided without a token set to check against
  // (public routes, unknown paths and wrong methods are answered as usual).
  if (route_ >= 0 && decision.outcome != Outcome::PublicRoute &&
      decision.outcome != Outcome::MethodNotAllowed && !environment.store_serving()) {
    refuse(Outcome::StoreUnavailable, close);
    return;
  }
  if (decision.verdict == policy::Verdict::Deny) {
    if (decision.outcome == Outcome::MethodNotAllowed) allow_ = evaluated.match.allow;
    if (decision.outcome == Outcome::InsufficientScope && !decision.missing.empty()) {
      message_buffer_ = fmt::format("the token lacks {}", decision.missing);
      refuse(decision.outcome, close, message_buffer_);
    } else {
      refuse(decision.outcome, close);
    }
    return;
  }
  // Rate limits after the decision: only a request that is forwarded (or, for a
  // check, that the ingress is told to forward) counts.
  const bool valid = caller.credential == policy::Credential::Valid;
  auto limits = context.engine.rate_limits(route_, valid, valid ? caller.rate_limit : nullptr);
  if (context.check && limits.per_address) {
    // A check's peer is the ingress, not the client: one address for everyone.
    limits.route = nullptr;
    limits.per_address = false;
  }
  if (limits.any()) {
    const auto admission = environment.admit(limits, route_, caller, context.client_address);
    if (!admission.allowed) {
      rate_limited(admission, close);
      return;
    }
  }
  if (context.check) {
    outcome_ = decision.outcome;
    close_ = false;
    if (caller.credential == policy::Credential::Valid) identity_ = caller_identity_;
    return;
  }
  if (static_cast<std::size_t>(route_) >= context.routes.size() || context.routes[route_].upstream < 0) {
    refuse(Outcome::NoUpstream, close);
    return;
  }
  target_ = &context.routes[route_];
  outcome_ = decision.outcome;
  forward_ = true;
  close_ = false;
  write_upstream_head(context, caller.credential == policy::Credential::Valid ? caller_identity_ : "",
                      evaluated.target);
}

bool RequestPlanner::subject_request(const PlanContext& context, std::string_view& method,
                                     std::string_view& target) {
  const auto& req = parser_->get();
  if (!context.check) {
    method = method_;
    target = req.target();
    return true;
  }
  const auto& forward_auth = context.engine.config().forward_auth;
  const auto original = forward_auth::original_request(req, method_, req.target(),
                                                       forward_auth ? forward_auth->path_prefix : "");
  if (!original.error.empty()) {
    detail_ = original.error;
    refuse(Outcome::BadCheckRequest, false);
    return false;
  }
  method_ = original.method;  // the access log shows the request that was decided on
  method = method_;
  target = original.target;
  return true;
}

// 429 with the draft IETF RateLimit fields (draft-ietf-httpapi-ratelimit-headers):
// the policy that refused ("token" or "route"), its quota per window, nothing
// remaining, and the whole seconds (rounded up) until a request fits again, the
// same number as Retry-After.
void RequestPlanner::rate_limited(const PlanEnvironment::Admission& admission, bool close) {
  constexpr std::uint64_t kSecond = 1'000'000'000;
  const std::uint64_t wait = std::max<std::uint64_t>(1, (admission.retry_after_ns + kSecond - 1) / kSecond);
  const std::string_view policy = admission.by_route ? "route" : "token";
  const conf::RateLimit& limit = *admission.limit;
  detail_ = admission.by_route ? "route_limit" : "token_limit";
  auto out = std::back_inserter(reply_fields_);
  fmt::format_to(out,
                 "Retry-After: {}\r\nRateLimit-Policy: \"{}\";q={};w={}\r\nRateLimit: \"{}\";r=0;t={}\r\n",
                 wait, policy, limit.count, limit.window_s, policy, wait);
  message_buffer_.clear();
  fmt::format_to(std::back_inserter(message_buffer_), "the {} rate limit ({}) is exceeded; retry in {} s",
                 policy, limit.to_string(), wait);
  refuse(Outcome::RateLimited, close, message_buffer_);
}

void RequestPlanner::write_upstream_head(const PlanContext& context, std::string_view identity_fields,
                                         const policy::CanonicalTarget& target) {
  const auto& req = parser_->get();
  websocket_ = parser_->upgrade() && iequals_ascii(field_value(req, http::field::upgrade), "websocket");
  expect_continue_ = has_body_ && iequals_ascii(field_value(req, http::field::expect), "100-continue");
  const auto length = parser_->content_length();
  append_upstream_head(
      upstream_head_, req,
      UpstreamRequest{.method = method_,
                      .base_path = target_->base_path,
                      .path = path_,
                      .asterisk = target.asterisk,
                      .has_query = target.has_query,
                      .query = target.query,
                      .upstream_host = target_->host_header,
                      .identity_prefix = context.engine.config().identity.header_prefix,
                      .forward_authorization = context.engine.config().identity.forward_authorization,
                      .websocket = websocket_,
                      .identity_fields = identity_fields,
                      .client_address = context.client_address,
                      .https = context.https,
                      .request_id = request_id_,
                      .chunked = body_.is_chunked(),
                      .content_length = length ? std::optional<std::uint64_t>(*length) : std::nullopt});
}

}  // namespace tokengate::gateway
