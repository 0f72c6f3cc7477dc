// The per-connection proxy coroutine: the I/O of the data plane (docs/http.md).
// It reads a request head, lets the request plan (request_plan.hpp) decide, and
// either sends the plan's answer or streams the request to a pooled upstream
// connection and the response back; then the next request of a keep-alive
// connection. Requests on one connection are handled strictly in order. All I/O
// goes through as_tuple error codes. Timeouts: every read and write is bracketed
// by arm()/disarm() of the client's or the upstream's Deadline (deadline.hpp),
// which the worker's sweep enforces.
#include <fmt/format.h>

#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <chrono>
#include <cstring>
#include <memory_resource>
#include <optional>
#include <string>

#include "gateway/http/body_decoder.hpp"
#include "gateway/http/error_response.hpp"
#include "gateway/http/framing.hpp"
#include "gateway/obs/access_log.hpp"
#include "gateway/proxy/request_plan.hpp"
#include "gateway/proxy/tls.hpp"
#include "gateway/proxy/worker.hpp"
#include "policy/canonical_path.hpp"
#include "policy/engine.hpp"

namespace tokengate::gateway {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using http1::BodyDecoder;
using http1::BodyError;
using policy::Outcome;

namespace {

constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kBodyChunk = 64 * 1024;  // bounded relay buffer per connection
constexpr std::uint32_t kMaxUpstreamHeader = 64 * 1024;
constexpr int kMaxInterimResponses = 16;  // 1xx heads before the final one (each takes arena space)
constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";

// How a request ended. Reply: the session sends reply_ (an error response) next;
// the error exits of handle_request and forward return it instead of sending
// themselves, which keeps their coroutine frames small enough for Asio's
// recycling allocator (each co_await site takes frame space).
// Proceed (internal): go on with the request's next step (route_request chose
// forwarding_; send_request_body sent the whole body).
// Retry (internal): a pooled upstream connection was found closed before any
// response byte; the request goes out once more on a new one.
enum class Next { KeepAlive, Close, Reply, Proceed, Retry };

// A pooled connection the upstream closed while idle shows up as one of these
// before any response byte arrives.
bool is_stale_connection_error(const error_code& ec) noexcept {
  return ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset ||
         ec == asio::error::broken_pipe || ec == asio::error::connection_aborted ||
         ec == asio::ssl::error::stream_truncated;
}

// Beast's field list throws std::length_error for a name or value over 64 KiB;
// as a parse result that is a head over the size limit.
template <class Parser>
std::size_t put_head(Parser& parser, asio::const_buffer bytes, error_code& ec) {
  try {
    return parser.put(bytes, ec);
  } catch (const std::length_error&) {
    ec = http::error::header_limit;
    return 0;
  }
}

// Moves the body bytes buffered in `in` through `body` into `out` (at most `room`
// bytes), consuming the framing as it goes. Returns the bytes written to `out`.
std::size_t decode_buffered(BodyDecoder& body, beast::flat_buffer& in, char* out, std::size_t room,
                            BodyError& error) noexcept {
  std::size_t got = 0;
  error = BodyError::None;
  while (got < room && in.size() > 0 && !body.done()) {
    const std::string_view bytes(static_cast<const char*>(in.data().data()), std::min(in.size(), room - got));
    const auto step = body.next(bytes);
    if (step.error != BodyError::None) {
      error = step.error;
      return got;
    }
    if (!step.data.empty()) {  // an empty view may be null, which memcpy must not get
      std::memcpy(out + got, step.data.data(), step.data.size());
      got += step.data.size();
    }
    in.consume(step.consumed);
  }
  return got;
}

void append_content_length(std::string& out, std::uint64_t length) {
  out.append("Content-Length: ");
  append_decimal(out, length);
  out.append("\r\n");
}

// One piece of a message body as it goes on the wire, after an optional head: as
// is, or as a chunk ("SIZE\r\n" piece "\r\n") followed by the last-chunk
// "0\r\n\r\n" after the final piece. Views only: keep the frame and the piece
// alive until the write completes.
class BodyFrame {
 public:
  BodyFrame(bool chunked, std::string_view piece, bool last) noexcept : piece_(piece) {
    if (!chunked) return;
    if (!piece.empty()) {
      auto end = std::to_chars(size_line_, size_line_ + sizeof size_line_ - 2, piece.size(), 16).ptr;
      *end++ = '\r';
      *end++ = '\n';
      size_len_ = static_cast<std::size_t>(end - size_line_);
      after_ = last ? std::string_view("\r\n0\r\n\r\n") : std::string_view("\r\n");
    } else if (last) {
      after_ = "0\r\n\r\n";
    }
  }
  BodyFrame(const BodyFrame&) = delete;
  BodyFrame& operator=(const BodyFrame&) = delete;

  std::array<asio::const_buffer, 4> buffers(std::string_view head) const noexcept {
    return {asio::buffer(head), asio::buffer(size_line_, size_len_), asio::buffer(piece_),
            asio::buffer(after_)};
  }

 private:
  char size_line_[20];
  std::size_t size_len_ = 0;
  std::string_view piece_;
  std::string_view after_;
};

tcp::socket& socket_of(tcp::socket& s) noexcept { return s; }
tcp::socket& socket_of(TlsStream& s) noexcept { return beast::get_lowest_layer(s); }
tcp::socket& socket_of(MaybeTlsStream& s) noexcept { return s.socket(); }

template <class From, class To>
asio::awaitable<void> pipe(From& from, To& to, std::uint64_t& count) {
  char buf[16 * 1024];
  for (;;) {
    auto [ec, n] = co_await from.async_read_some(asio::buffer(buf), kNoThrow);
    if (n > 0) {
      auto [wec, wn] = co_await asio::async_write(to, asio::buffer(buf, n), kNoThrow);
      if (wec) ec = wec;
      count += wn;
    }
    if (ec) {
      error_code ignored;
      if (ec == asio::error::eof) {
        socket_of(to).shutdown(tcp::socket::shutdown_send, ignored);
      } else {
        socket_of(from).close(ignored);
        socket_of(to).close(ignored);
      }
      co_return;
    }
  }
}

class Session {
 public:
  Session(Worker& worker, tcp::socket socket, std::shared_ptr<ssl::context> tls, Listener listener)
      : w_(worker),
        check_(listener == Listener::ForwardAuth),
        stream_(tls ? MaybeTlsStream(std::move(socket), std::move(tls)) : MaybeTlsStream(std::move(socket))) {
    error_code ec;
    const auto ep = stream_.socket().remote_endpoint(ec);
    if (!ec) client_ = ep.address().to_string();
    handle_.client.socket = &stream_.socket();
    // Last: nothing after it may throw, or ~Session would not unregister it.
    w_.metrics().connection_opened();
    w_.add(&handle_);
  }
  ~Session() {
    w_.remove(&handle_);
    w_.metrics().connection_closed();
  }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  asio::awaitable<void> run() {
    if (auto* tls = stream_.tls()) {
      // The handshake is part of the request head's time budget.
      handle_.client.arm(w_.snapshot()->engine->config().limits.header_timeout);
      handle_.idle = true;  // a stalled handshake is closed by a shutdown like an idle connection
      auto [ec] = co_await tls->async_handshake(ssl::stream_base::server, kNoThrow);
      handle_.client.disarm();
      handle_.idle = false;
      if (ec) {
        if (log_enabled(LogLevel::Debug))
          log_line(LogLevel::Debug, fmt::format("tls handshake from {} failed: {}", client_, ec.message()));
        co_return;
      }
    }
    for (;;) {
      rec_ = AccessRecord{};
      rec_.client = client_;
      rec_.forward_auth = check_;
      request_id_.clear();
      client_keep_alive_ = false;
      client_version_ = 11;
      is_head_ = false;
      Next next = co_await handle_request();
      if (next == Next::Reply) next = co_await send_reply();
      if (rec_.status != 0) {
        rec_.request_id = request_id_;
        rec_.duration = std::chrono::steady_clock::now() - rec_.start;
        w_.log().write(rec_);
        w_.metrics().count_request(rec_.route, rec_.status, rec_.allowed, rec_.outcome, rec_.duration,
                                   check_);
      }
      release_request_memory();  // an idle keep-alive connection holds no header fields
      if (next == Next::Close || w_.shared().stopping.load(std::memory_order_relaxed)) break;
    }
    error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.socket().close(ignored);
  }

 private:
  asio::awaitable<Next> handle_request();
  // The request plan for the head in buffer_ (request_plan.hpp): Proceed to
  // forward it, or Reply.
  Next plan_request(std::size_t head_end);
  // The request to a pooled or new upstream connection and the response back.
  template <class Stream>
  asio::awaitable<Next> forward(UpstreamPool& pool);
  // An idle pooled connection that received nothing since its last response.
  std::unique_ptr<UpstreamConn> take_idle(UpstreamPool& pool);
  // One attempt: connection, request, final response head (into res_parser_).
  // Retry: a pooled connection turned out closed before anything came back.
  template <class Stream>
  asio::awaitable<Next> exchange(UpstreamPool& pool, std::unique_ptr<UpstreamConn>& conn, bool first);
  template <class Stream>
  asio::awaitable<Next> read_final_head(UpstreamPool& pool, UpstreamConn& conn, bool may_retry);
  struct ResponseFraming {
    BodyDecoder body = BodyDecoder::with_length(0);
    bool header_only = false;  // HEAD, 204, 304
    bool chunked_out = false;  // re-chunked for the client
    bool keep_alive = false;   // with the client
  };
  ResponseFraming write_response_head();
  template <class Stream>
  asio::awaitable<Next> relay_response_body(UpstreamConn& conn, ResponseFraming& framing, bool head_sent);
  template <class Stream>
  asio::awaitable<error_code> read_upstream(UpstreamConn& conn);
  template <class Stream>
  asio::awaitable<Next> send_request_body(Stream& up, bool expect_continue, bool head_sent);
  template <class Stream>
  asio::awaitable<Next> relay_response(UpstreamPool& pool, std::unique_ptr<UpstreamConn>& conn);
  template <class Stream>
  asio::awaitable<Next> tunnel(UpstreamConn& up);
  // The upstream's response head into res_parser_ (the body is decoded by a
  // BodyDecoder from the same buffer).
  template <class Stream>
  asio::awaitable<error_code> read_response_head(Stream& up, beast::flat_buffer& buffer);
  // The response head in down_head_: status line, X-Request-Id, then the caller's
  // fields; finish_head adds Connection as the client needs it and the blank line.
  void begin_head(int status, std::string_view reason);
  void finish_head(bool keep_alive);
  // An error response for send_reply to send: status, error code and challenge
  // from the outcome table; `message` replaces the table's when given. The views
  // must outlive handle_request: literals, members, the planner's or the engine's.
  Next reply(Outcome outcome, bool close, std::string_view message = {}, std::string_view allow = {},
             std::string_view fields = {}) noexcept {
    rec_.outcome = outcome;
    reply_ = Reply{outcome, message.empty() ? policy::info(outcome).message : message, close, allow, fields};
    return Next::Reply;
  }
  asio::awaitable<Next> send_reply();
  // 400 (431 when the limit on extensions and trailers was hit, 413 over the body
  // limit) for a request body
  // whose framing is broken; the connection is closed.
  Next bad_request_body(BodyError error);
  Next upstream_failure(const error_code& ec, bool connect, bool close);
  // 502 for a response the gateway will not relay (counted as bad_response).
  Next bad_upstream_response(std::string_view message, bool close) {
    w_.metrics().count_upstream_error(UpstreamErrorKind::BadResponse);
    return reply(Outcome::UpstreamBadResponse, close, message);
  }
  asio::awaitable<void> linger_close();

  void release_request_memory() {
    res_parser_.reset();
    planner_.release();
    arena_.release();
  }

  char* body_buffer() {
    // Not value-initialised: zeroing 64 KiB made all of it resident on every
    // connection's first response, where a small body touches one page.
    if (!body_buf_) body_buf_ = std::make_unique_for_overwrite<char[]>(kBodyChunk);
    return body_buf_.get();
  }

  Worker& w_;
  const bool check_;  // a forward-auth listener's connection: every request is a check
  MaybeTlsStream stream_;
  beast::flat_buffer buffer_;
  Worker::ConnectionHandle handle_;
  std::string client_;
  std::string request_id_;
  std::string tls_failure_;  // why the upstream's certificate was refused, if it was
  std::string message_;      // error message under construction
  std::string down_head_;    // the response head sent to the client
  std::unique_ptr<char[]> body_buf_;
  // Both heads' fields live in arena_, which is rewound for each request: no
  // allocation per header line once a connection's first requests have run.
  alignas(std::max_align_t) std::byte arena_buffer_[4096];
  std::pmr::monotonic_buffer_resource arena_{arena_buffer_, sizeof arena_buffer_};
  RequestPlanner planner_{arena_};
  // The response head only: bodies go through a BodyDecoder.
  std::optional<http::response_parser<http::empty_body, std::pmr::polymorphic_allocator<char>>> res_parser_;
  BodyDecoder body_ = BodyDecoder::with_length(0);  // the request body still to relay
  std::shared_ptr<EngineSnapshot> snap_;
  AccessRecord rec_;
  struct Reply {
    Outcome outcome = Outcome::BadFraming;
    std::string_view message;
    bool close = false;
    std::string_view allow;
    std::string_view fields;  // complete header lines (a 429's Retry-After and RateLimit fields)
  } reply_;
  bool first_ = true;
  bool client_keep_alive_ = false;
  unsigned client_version_ = 11;
  bool is_head_ = false;
};

asio::awaitable<Next> Session::handle_request() {
  snap_ = w_.snapshot();
  const conf::Limits& limits = snap_->engine->config().limits;

  // 1. The request head. Our own loop (not async_read_header) so the raw bytes can
  // be checked for obs-fold before Beast's parser silently joins folded lines.
  bool got_any = buffer_.size() > 0;
  handle_.idle = !got_any;
  // Until the first byte: header_timeout on a new connection, idle_timeout between
  // requests. From the first byte: header_timeout for the rest of the head.
  bool rearm_at_first_byte = !got_any;
  handle_.client.arm(got_any || first_ ? limits.header_timeout : limits.idle_timeout);
  first_ = false;
  std::size_t scanned = 0;
  std::size_t head_end = std::string_view::npos;
  std::string_view data;
  for (;;) {
    data = std::string_view(static_cast<const char*>(buffer_.data().data()), buffer_.size());
    head_end = find_head_end(data, scanned);
    if (head_end != std::string_view::npos) break;
    scanned = data.size();
    if (data.size() > limits.max_header_bytes) {
      handle_.idle = false;
      rec_.start = std::chrono::steady_clock::now();
      co_return reply(Outcome::HeaderTooLarge, true);
    }
    if (handle_.idle && w_.shared().stopping.load(std::memory_order_relaxed)) co_return Next::Close;
    if (got_any && rearm_at_first_byte) {
      rearm_at_first_byte = false;
      handle_.client.arm(limits.header_timeout);
    }
    auto [ec, n] = co_await stream_.async_read_some(buffer_.prepare(16 * 1024), kNoThrow);
    ec = handle_.client.why(ec);  // a read may complete just before the sweep closed the socket
    if (ec) {
      handle_.idle = false;
      if (ec == beast::error::timeout && got_any) {
        rec_.start = std::chrono::steady_clock::now();
        co_return reply(Outcome::HeaderTimeout, true);
      }
      co_return Next::Close;
    }
    buffer_.commit(n);
    if (!got_any) {
      got_any = true;
      handle_.idle = false;
    }
  }
  handle_.client.disarm();
  handle_.idle = false;
  // The head may have waited through a reload (an idle keep-alive connection):
  // the request is decided under the config current when it arrived.
  snap_ = w_.snapshot();
  const Next next = plan_request(head_end);
  if (next != Next::Proceed) co_return next;
  UpstreamPool& pool = *snap_->pools[static_cast<std::size_t>(planner_.target()->upstream)];
  if (pool.https()) co_return co_await forward<TlsStream>(pool);
  co_return co_await forward<tcp::socket>(pool);
}

Next Session::plan_request(std::size_t head_end) {
  rec_.start = std::chrono::steady_clock::now();
  const std::string_view data(static_cast<const char*>(buffer_.data().data()), buffer_.size());
  planner_.plan(
      data, head_end,
      PlanContext{*snap_->engine, snap_->routes, client_, w_.shared().tls_listener && !check_, check_}, w_);
  buffer_.consume(planner_.head_bytes());
  request_id_ = planner_.request_id();
  client_keep_alive_ = planner_.keep_alive();
  client_version_ = planner_.version();
  is_head_ = planner_.is_head();
  rec_.method = planner_.method();
  rec_.path = planner_.path();
  rec_.route = planner_.route();
  rec_.detail = planner_.detail();
  if (const auto& token = planner_.token()) rec_.token_id = token->id;
  if (!planner_.forward()) {
    rec_.allowed = check_ && policy::forward_auth_status(planner_.outcome()) == 200;
    return reply(planner_.outcome(), planner_.close_after_reply(), planner_.message(), planner_.allow(),
                 planner_.reply_fields());
  }
  rec_.allowed = true;
  rec_.outcome = planner_.outcome();
  rec_.upstream = planner_.target()->name;
  body_ = planner_.body();
  return Next::Proceed;
}

template <class Stream>
asio::awaitable<Next> Session::forward(UpstreamPool& pool) {
  std::unique_ptr<UpstreamConn> conn;
  const DeadlineScope up_scope(handle_.upstream);  // after conn: released before it
  Next next = co_await exchange<Stream>(pool, conn, true);
  // A retry always gets a new connection: the other pooled ones may have been
  // closed by the upstream just like the first.
  if (next == Next::Retry) next = co_await exchange<Stream>(pool, conn, false);
  if (next != Next::Proceed) co_return next;
  co_return co_await relay_response<Stream>(pool, conn);
}

std::unique_ptr<UpstreamConn> Session::take_idle(UpstreamPool& pool) {
  // Nothing may have arrived on an idle connection since its last response: bytes
  // there would answer this request (a desynchronised or misbehaving upstream),
  // and a close means the request must not be sent on it. One non-blocking peek.
  auto conn = pool.take();
  while (conn && !idle_connection_alive(*conn)) {
    pool.drop_idle_since(*conn);
    conn = pool.take();
  }
  return conn;
}

template <class Stream>
asio::awaitable<Next> Session::exchange(UpstreamPool& pool, std::unique_ptr<UpstreamConn>& conn, bool first) {
  const conf::Limits& limits = snap_->engine->config().limits;
  const bool has_body = planner_.has_body();
  Deadline& up_deadline = handle_.upstream;
  up_deadline.socket = nullptr;
  conn = first ? take_idle(pool) : nullptr;
  const bool may_retry = conn && first && planner_.retryable();
  if (!conn) {
    conn = std::make_unique<UpstreamConn>();
    const error_code ec = co_await pool.connect(*conn, up_deadline, limits.upstream_connect_timeout);
    if (ec) {
      tls_failure_ = conn->tls ? tls_verify_error(conn->tls->native_handle()) : std::string();
      co_return upstream_failure(ec, true, has_body);
    }
  }
  Stream& up = stream_of<Stream>(*conn);
  up_deadline.socket = &conn->socket();
  // The head goes out alone unless body bytes are already here (then the first
  // body write carries it). With 100-continue it must go first.
  bool head_sent = false;
  if (!has_body || planner_.expect_continue() || buffer_.size() == 0) {
    up_deadline.arm(limits.upstream_timeout);
    auto [ec, n] = co_await asio::async_write(up, asio::buffer(planner_.upstream_head()), kNoThrow);
    up_deadline.disarm();
    ec = up_deadline.why(ec);
    if (ec && may_retry) {
      pool.drop_idle_since(*conn);
      co_return Next::Retry;
    }
    if (ec) co_return upstream_failure(ec, false, has_body);
    head_sent = true;
  }
  if (has_body) {
    const Next sent = co_await send_request_body(up, planner_.expect_continue(), head_sent);
    if (sent != Next::Proceed) co_return sent;
  }
  co_return co_await read_final_head<Stream>(pool, *conn, may_retry);
}

// The response head; 1xx other than 101 are consumed here (the gateway already
// answered Expect itself).
template <class Stream>
asio::awaitable<Next> Session::read_final_head(UpstreamPool& pool, UpstreamConn& conn, bool may_retry) {
  const conf::Limits& limits = snap_->engine->config().limits;
  Deadline& up_deadline = handle_.upstream;
  for (int interim = 0;; ++interim) {
    if (interim > kMaxInterimResponses) {
      co_return bad_upstream_response("the upstream sent too many 1xx responses", true);
    }
    res_parser_.emplace(http::response_header<Fields>(Fields(&arena_)));
    res_parser_->body_limit(boost::none);
    res_parser_->header_limit(kMaxUpstreamHeader);
    if (is_head_) res_parser_->skip(true);
    up_deadline.arm(limits.upstream_timeout);
    const error_code ec = up_deadline.why(co_await read_response_head(stream_of<Stream>(conn), conn.buffer));
    up_deadline.disarm();
    if (ec) {
      // Only when nothing at all came back: after a 1xx the upstream has the request.
      if (may_retry && interim == 0 && !res_parser_->got_some() && conn.buffer.size() == 0 &&
          is_stale_connection_error(ec)) {
        pool.drop_idle_since(conn);
        co_return Next::Retry;
      }
      co_return upstream_failure(ec, false, !body_.done());
    }
    const unsigned status = res_parser_->get().result_int();
    if (status >= 200 || status == 101) co_return Next::Proceed;
  }
}

// The request body, client to upstream, piece by piece (bounded memory), after a
// 100 Continue when the client asked for one. Proceed when all of it was sent.
// The body is decoded (body_) and re-framed, so nothing but well-formed data and
// the gateway's own framing reaches the upstream; after a bad byte the upstream
// connection is dropped with its request incomplete.
template <class Stream>
asio::awaitable<Next> Session::send_request_body(Stream& up, bool expect_continue, bool head_sent) {
  const conf::Limits& limits = snap_->engine->config().limits;
  Deadline& up_deadline = handle_.upstream;
  if (expect_continue) {
    // Only now, after authorization: an unauthorized client never sees a 100.
    handle_.client.arm(limits.idle_timeout);
    auto [ec, n] = co_await asio::async_write(stream_, asio::buffer(kContinue), kNoThrow);
    handle_.client.disarm();
    if (ec) co_return Next::Close;
  }
  char* buf = body_buffer();
  for (;;) {
    BodyError error;
    const std::size_t got = decode_buffered(body_, buffer_, buf, kBodyChunk, error);
    if (error != BodyError::None) co_return bad_request_body(error);
    rec_.bytes_in += got;
    const bool done = body_.done();
    BodyFrame frame(body_.is_chunked(), std::string_view(buf, got), done);
    const auto buffers =
        frame.buffers(head_sent ? std::string_view{} : std::string_view(planner_.upstream_head()));
    if (asio::buffer_size(buffers) > 0) {
      up_deadline.arm(limits.upstream_timeout);
      auto [wec, wn] = co_await asio::async_write(up, buffers, kNoThrow);
      up_deadline.disarm();
      if (wec) co_return upstream_failure(up_deadline.why(wec), false, true);
      head_sent = true;
    }
    if (done) co_return Next::Proceed;
    if (got == kBodyChunk && buffer_.size() > 0) continue;  // more is buffered already
    handle_.client.arm(limits.idle_timeout);
    auto [ec, n] = co_await stream_.async_read_some(buffer_.prepare(kBodyChunk), kNoThrow);
    handle_.client.disarm();
    if (handle_.client.why(ec)) {
      rec_.outcome = Outcome::ClientAborted;
      rec_.status = 499;  // nginx's code for "client went away"
      co_return Next::Close;
    }
    buffer_.commit(n);
  }
}

Next Session::bad_request_body(BodyError error) {
  rec_.detail = http1::to_string(error);
  if (error == BodyError::BodyTooLarge) return reply(Outcome::BodyTooLarge, true);
  if (error == BodyError::MetadataTooLarge) {
    return reply(Outcome::HeaderTooLarge, true, "the chunk extensions or trailers are too large");
  }
  message_ = fmt::format("malformed request body: {}", http1::to_string(error));
  return reply(Outcome::BadFraming, true, message_);
}

// The upstream's response (its head is in res_parser_), upstream to client; a
// 101 to a WebSocket request becomes a tunnel. conn goes back to the pool when it
// can serve another request.
template <class Stream>
asio::awaitable<Next> Session::relay_response(UpstreamPool& pool, std::unique_ptr<UpstreamConn>& conn) {
  auto& res = res_parser_->get();
  if (find_field(res, http::field::transfer_encoding) != res.end() &&
      find_field(res, http::field::content_length) != res.end()) {
    // RFC 9112 §6.3: framed both ways, the response may be a splitting attempt;
    // where it ends, and so what answers the connection's next request, cannot be
    // trusted. Refused, and the connection is closed, not pooled.
    co_return bad_upstream_response("the upstream's response framing is ambiguous", !body_.done());
  }
  const int status = static_cast<int>(res.result_int());
  rec_.status = status;
  if (status == 101) {
    if (!planner_.websocket())
      co_return bad_upstream_response("the upstream switched protocols unasked", true);
    co_return co_await tunnel<Stream>(*conn);
  }
  ResponseFraming framing = write_response_head();
  // When body bytes are already buffered, the head goes out with the first body
  // write (one send instead of two); otherwise the head is sent at once so a slow
  // body does not hold it back.
  bool head_sent = false;
  if (framing.header_only || !(conn->buffer.size() > 0 || framing.body.done())) {
    handle_.client.arm(snap_->engine->config().limits.upstream_timeout);
    auto [ec, n] = co_await asio::async_write(stream_, asio::buffer(down_head_), kNoThrow);
    handle_.client.disarm();
    if (ec) {
      rec_.outcome = Outcome::ClientAborted;
      co_return Next::Close;
    }
    head_sent = true;
  }
  if (!framing.header_only) {
    const Next relayed = co_await relay_response_body<Stream>(*conn, framing, head_sent);
    if (relayed != Next::Proceed) co_return relayed;
  }
  if (res_parser_->keep_alive() && framing.body.done() && conn->buffer.size() == 0) {
    pool.give_back(std::move(conn));  // peeked before its next use (take_idle)
  }
  co_return framing.keep_alive ? Next::KeepAlive : Next::Close;
}

// The client's response head in down_head_, framed for the client, and how the
// upstream's body is to be read.
Session::ResponseFraming Session::write_response_head() {
  auto& res = res_parser_->get();
  const int status = static_cast<int>(res.result_int());
  const auto upstream_length = res_parser_->content_length();
  ResponseFraming f;
  f.header_only = is_head_ || status == 204 || status == 304;
  f.keep_alive = client_keep_alive_ && !w_.shared().stopping.load(std::memory_order_relaxed);
  begin_head(status, res.reason());
  append_forwarded_fields(down_head_, res, StripOptions{{}, false, true, {"Content-Length", "X-Request-Id"}});
  if (f.header_only) {
    if (is_head_ && res_parser_->chunked() && client_version_ >= 11) {
      append_field(down_head_, "Transfer-Encoding", "chunked");
    } else if (status != 204 && upstream_length) {
      append_content_length(down_head_, *upstream_length);
    }
  } else if (upstream_length) {
    append_content_length(down_head_, *upstream_length);
  } else if (client_version_ >= 11) {
    f.chunked_out = true;
    append_field(down_head_, "Transfer-Encoding", "chunked");
  } else {
    f.keep_alive = false;  // HTTP/1.0 client: the body ends when we close
  }
  finish_head(f.keep_alive);
  const std::size_t metadata_limit = snap_->engine->config().limits.max_header_bytes;
  f.body = f.header_only            ? BodyDecoder::with_length(0)
           : res_parser_->chunked() ? BodyDecoder::chunked(metadata_limit)
           : upstream_length        ? BodyDecoder::with_length(*upstream_length)
                                    : BodyDecoder::until_close();
  return f;
}

// The upstream's response body, decoded and re-framed for the client, piece by
// piece. Proceed when all of it was relayed.
template <class Stream>
asio::awaitable<Next> Session::relay_response_body(UpstreamConn& conn, ResponseFraming& framing,
                                                   bool head_sent) {
  BodyDecoder& body = framing.body;
  char* buf = body_buffer();
  for (;;) {
    // A small body usually arrived with the head: no I/O for it.
    BodyError error;
    const std::size_t got = decode_buffered(body, conn.buffer, buf, kBodyChunk, error);
    if (error == BodyError::None && got == 0 && !body.done()) {
      const error_code ec = co_await read_upstream<Stream>(conn);
      // The end of a body delimited by the close, or a truncation. A TLS
      // connection cut without close_notify (stream_truncated) is never an end:
      // an attacker on the path could forge it.
      if (ec == asio::error::eof) {
        error = body.end_of_stream();
      } else if (ec) {
        // Nothing sent yet: the client still gets a 502/504 (counted there).
        if (!head_sent) co_return upstream_failure(ec, false, true);
        const bool timeout = ec == beast::error::timeout;
        rec_.outcome = timeout ? Outcome::UpstreamTimeout : Outcome::UpstreamAborted;
        w_.metrics().count_upstream_error(timeout ? UpstreamErrorKind::Timeout : UpstreamErrorKind::Aborted);
        rec_.detail = "response truncated";
        co_return Next::Close;  // never let a truncated body look complete
      } else {
        continue;
      }
    }
    if (error != BodyError::None) {
      rec_.detail = http1::to_string(error);
      if (!head_sent) co_return bad_upstream_response("the upstream's response body is malformed", true);
      rec_.outcome = Outcome::UpstreamBadResponse;
      w_.metrics().count_upstream_error(UpstreamErrorKind::BadResponse);
      co_return Next::Close;  // the client sees the body cut short, never a wrong end
    }
    const bool done = body.done();
    BodyFrame frame(framing.chunked_out, std::string_view(buf, got), done);
    const auto buffers = frame.buffers(head_sent ? std::string_view{} : std::string_view(down_head_));
    if (asio::buffer_size(buffers) > 0) {
      handle_.client.arm(snap_->engine->config().limits.upstream_timeout);
      auto [wec, wn] = co_await asio::async_write(stream_, buffers, kNoThrow);
      handle_.client.disarm();
      if (wec) {
        rec_.outcome = Outcome::ClientAborted;
        co_return Next::Close;
      }
      head_sent = true;
    }
    rec_.bytes_out += got;
    if (done) co_return Next::Proceed;
  }
}

// More of the upstream's response into its buffer, under upstream_timeout.
template <class Stream>
asio::awaitable<error_code> Session::read_upstream(UpstreamConn& conn) {
  Deadline& up_deadline = handle_.upstream;
  up_deadline.arm(snap_->engine->config().limits.upstream_timeout);
  auto [ec, n] = co_await stream_of<Stream>(conn).async_read_some(conn.buffer.prepare(kBodyChunk), kNoThrow);
  up_deadline.disarm();
  conn.buffer.commit(n);
  co_return up_deadline.why(ec);
}

template <class Stream>
asio::awaitable<Next> Session::tunnel(UpstreamConn& conn) {
  Stream& up = stream_of<Stream>(conn);
  using namespace asio::experimental::awaitable_operators;
  auto& res = res_parser_->get();
  begin_head(101, res.reason());
  append_forwarded_fields(down_head_, res, StripOptions{{}, true, true, {"Content-Length", "X-Request-Id"}});
  append_field(down_head_, "Connection", "Upgrade");
  down_head_.append("\r\n");
  // The handshake's leftovers go out under upstream_timeout; the tunnel itself has
  // no deadline (a WebSocket may stay quiet for hours; either side closing ends it).
  const auto timeout = snap_->engine->config().limits.upstream_timeout;
  handle_.client.arm(timeout);
  handle_.upstream.arm(timeout);
  {
    auto [ec, n] = co_await asio::async_write(stream_, asio::buffer(down_head_), kNoThrow);
    if (ec) co_return Next::Close;
  }
  // Bytes that arrived with the heads belong to the tunnel.
  if (buffer_.size() > 0) {
    auto [ec, n] = co_await asio::async_write(up, buffer_.data(), kNoThrow);
    if (ec) co_return Next::Close;
    rec_.bytes_in += n;
    buffer_.consume(buffer_.size());
  }
  if (conn.buffer.size() > 0) {
    auto [ec, n] = co_await asio::async_write(stream_, conn.buffer.data(), kNoThrow);
    if (ec) co_return Next::Close;
    rec_.bytes_out += n;
    conn.buffer.consume(conn.buffer.size());
  }
  handle_.client.disarm();
  handle_.upstream.disarm();
  co_await (pipe(stream_, up, rec_.bytes_in) && pipe(up, stream_, rec_.bytes_out));
  co_return Next::Close;
}

template <class Stream>
asio::awaitable<error_code> Session::read_response_head(Stream& up, beast::flat_buffer& buffer) {
  for (;;) {
    if (buffer.size() > 0) {
      // The parser stops after the head (it is not eager) and enforces header_limit.
      error_code ec;
      buffer.consume(put_head(*res_parser_, buffer.data(), ec));
      if (res_parser_->is_header_done()) co_return error_code{};
      if (ec != http::error::need_more) co_return ec;
    }
    auto [ec, n] = co_await up.async_read_some(buffer.prepare(16 * 1024), kNoThrow);
    if (ec) co_return ec;
    buffer.commit(n);
  }
}

void Session::begin_head(int status, std::string_view reason) {
  down_head_.clear();
  down_head_.append("HTTP/1.1 ");
  append_decimal(down_head_, static_cast<std::uint64_t>(status));
  down_head_ += ' ';
  down_head_.append(reason);
  down_head_.append("\r\n");
  append_field(down_head_, "X-Request-Id", request_id_);
}

void Session::finish_head(bool keep_alive) {
  if (!keep_alive) {
    append_field(down_head_, "Connection", "close");
  } else if (client_version_ == 10) {
    append_field(down_head_, "Connection", "keep-alive");
  }
  down_head_.append("\r\n");
}

Next Session::upstream_failure(const error_code& ec, bool connect, bool close) {
  const bool timeout = !connect && ec == beast::error::timeout;
  rec_.detail = {};
  if (connect && !tls_failure_.empty()) {
    // The upstream's certificate was refused: say why, it is an operator's problem.
    rec_.detail = tls_failure_;
    w_.metrics().count_upstream_error(UpstreamErrorKind::TlsVerify);
    log_line(LogLevel::Warn, fmt::format("upstream {}: TLS certificate verification failed: {}",
                                         rec_.upstream, tls_failure_));
    return reply(Outcome::UpstreamTlsFailed, close);
  }
  w_.metrics().count_upstream_error(connect   ? UpstreamErrorKind::ConnectFailed
                                    : timeout ? UpstreamErrorKind::Timeout
                                              : UpstreamErrorKind::Failed);
  log_line(LogLevel::Warn, fmt::format("upstream {}: {}: {}", rec_.upstream,
                                       connect ? "connect failed" : "request failed", ec.message()));
  return reply(connect   ? Outcome::UpstreamConnectFailed
               : timeout ? Outcome::UpstreamTimeout
                         : Outcome::UpstreamFailed,
               close);
}

asio::awaitable<Next> Session::send_reply() {
  const Reply& r = reply_;
  const policy::OutcomeInfo& info = policy::info(r.outcome);
  if (request_id_.empty()) w_.make_request_id(request_id_);
  // A check's answer says allow, authenticate or deny, in a status every ingress
  // understands; the outcome itself goes in X-Tokengate-Reason.
  const int status = check_ ? policy::forward_auth_status(r.outcome) : info.status;
  rec_.status = status;
  const bool close = r.close || !client_keep_alive_ || w_.shared().stopping.load(std::memory_order_relaxed);

  begin_head(status, http::obsolete_reason(static_cast<http::status>(status)));
  if (status == 200) {
    // An allowed check: the identity for the ingress to copy onto the request. An
    // anonymous one (public route) sends every field empty, so that whatever the
    // ingress copies replaces a client's own copy (Caddy 2.6's copy_headers would
    // otherwise set an absent field to its unexpanded placeholder).
    const std::string& identity = planner_.identity_fields();
    down_head_.append(identity.empty() ? snap_->empty_identity_fields : identity);
    append_content_length(down_head_, 0);
    finish_head(!close);
  } else {
    append_field(down_head_, "Content-Type", "application/json");
    if (!info.challenge.empty()) append_field(down_head_, "WWW-Authenticate", info.challenge);
    if (!r.allow.empty() && !check_) append_field(down_head_, "Allow", r.allow);
    if (check_) append_field(down_head_, "X-Tokengate-Reason", info.name);
    down_head_.append(r.fields);  // a 429's Retry-After and RateLimit fields (also on a check's 403)
    const std::string body =
        error_body(check_ ? policy::forward_auth_error(r.outcome) : info.error, r.message);
    append_content_length(down_head_, body.size());
    finish_head(!close);
    if (!is_head_) down_head_.append(body);
  }
  handle_.client.arm(std::chrono::seconds(10));
  auto [ec, n] = co_await asio::async_write(stream_, asio::buffer(down_head_), kNoThrow);
  handle_.client.disarm();
  if (ec) co_return Next::Close;
  if (close) {
    co_await linger_close();
    co_return Next::Close;
  }
  co_return Next::KeepAlive;
}

// Closing with unread input makes the kernel send RST, which can destroy the
// response we just wrote; half-close and drain briefly instead.
asio::awaitable<void> Session::linger_close() {
  error_code ignored;
  if (auto* tls = stream_.tls()) {
    // close_notify so the client can tell a complete response from a truncation.
    handle_.client.arm(std::chrono::seconds(2));
    co_await tls->async_shutdown(kNoThrow);
    stream_.socket().close(ignored);
    co_return;
  }
  stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  handle_.client.arm(std::chrono::seconds(2));
  char scratch[4096];
  std::size_t total = 0;
  while (total < (1u << 20)) {
    auto [ec, n] = co_await stream_.async_read_some(asio::buffer(scratch), kNoThrow);
    if (ec) break;
    total += n;
  }
}

}  // namespace

asio::awaitable<void> run_session(Worker& worker, tcp::socket socket, std::shared_ptr<ssl::context> tls,
                                  Listener listener,
                                  [[maybe_unused]] ConnectionSlot slot) {  // released with this frame
  try {
    Session session(worker, std::move(socket), std::move(tls), listener);
    co_await session.run();
  } catch (const std::exception& e) {
    log_line(LogLevel::Error, fmt::format("connection aborted by an internal error: {}", e.what()));
  } catch (...) {
    log_line(LogLevel::Error, "connection aborted by an unknown internal error");
  }
}

}  // namespace tokengate::gateway
