// Access-log and event lines (JSON written directly) batched per worker; see access_log.hpp.
#include "gateway/obs/access_log.hpp"

#include <fmt/format.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <ctime>
#include <system_error>

#include "gateway/http/framing.hpp"

namespace tokengate::gateway {

void write_stderr(std::string_view text) {
  while (!text.empty()) {
    const ssize_t n = ::write(2, text.data(), text.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // stderr gone: nothing sensible left to do
    }
    text.remove_prefix(static_cast<std::size_t>(n));
  }
}

namespace {

// Set once by set_log_options before the workers start.
LogFormat g_format = LogFormat::Json;
LogLevel g_level = LogLevel::Info;

}  // namespace

namespace {

// True if one of the eight bytes of `w` must be escaped in a JSON string: a control
// (< 0x20), '"' or '\'. Exact as a yes/no answer (the classic "has zero byte" bit
// tricks); bytes >= 0x80 (UTF-8) never trigger it.
constexpr bool word_needs_escape(std::uint64_t w) noexcept {
  constexpr std::uint64_t kOnes = 0x0101010101010101ULL;
  constexpr std::uint64_t kHigh = 0x8080808080808080ULL;
  const auto has_zero = [](std::uint64_t v) { return (v - kOnes) & ~v & kHigh; };
  const std::uint64_t control = (w - kOnes * 0x20) & ~w & kHigh;
  return (control | has_zero(w ^ (kOnes * '"')) | has_zero(w ^ (kOnes * '\\'))) != 0;
}

}  // namespace

namespace {

// Writes `text` as a JSON string (quotes included) at `p`, which must have room for
// 6 * text.size() + 2 bytes (every byte escaped as \u00XX); returns the end.
char* put_json_string(char* p, std::string_view text) noexcept {
  static constexpr char kHex[] = "0123456789abcdef";
  const char* const s = text.data();
  const std::size_t n = text.size();
  *p++ = '"';
  std::size_t i = 0;
  while (i < n) {
    // Most of an access-log line needs no escaping: eight bytes at a time.
    if (n - i >= 8) {
      std::uint64_t word;
      std::memcpy(&word, s + i, sizeof word);
      if (!word_needs_escape(word)) {
        std::memcpy(p, &word, sizeof word);
        p += 8;
        i += 8;
        continue;
      }
    }
    for (const std::size_t stop = std::min(n, i + 8); i < stop; ++i) {
      const auto c = static_cast<unsigned char>(s[i]);
      if (c >= 0x20 && c != '"' && c != '\\') {
        *p++ = static_cast<char>(c);
        continue;
      }
      *p++ = '\\';
      switch (c) {
        case '"':
        case '\\':
          *p++ = static_cast<char>(c);
          break;
        case '\n':
          *p++ = 'n';
          break;
        case '\r':
          *p++ = 'r';
          break;
        case '\t':
          *p++ = 't';
          break;
        default:
          *p++ = 'u';
          *p++ = '0';
          *p++ = '0';
          *p++ = kHex[c >> 4];
          *p++ = kHex[c & 0xF];
      }
    }
  }
  *p++ = '"';
  return p;
}

char* put_raw(char* p, std::string_view text) noexcept {
  std::memcpy(p, text.data(), text.size());
  return p + text.size();
}

char* put_decimal(char* p, std::uint64_t value) noexcept {
  return std::to_chars(p, p + 20, value).ptr;  // 20 digits hold any uint64
}

}  // namespace

void append_json_string(std::string& out, std::string_view text) {
  const std::size_t start = out.size();
  out.resize(start + 6 * text.size() + 2);
  char* const end = put_json_string(out.data() + start, text);
  out.resize(static_cast<std::size_t>(end - out.data()));
}

namespace {

// `"key":` then the value and a comma. Keys are literals (no escaping needed).
char* put_uint_member(char* p, std::string_view key, std::uint64_t value) noexcept {
  *p++ = '"';
  p = put_raw(p, key);
  p = put_raw(p, "\":");
  p = put_decimal(p, value);
  *p++ = ',';
  return p;
}

// `"key":` then the value as a JSON string, or null when it is empty and
// null_if_empty; then a comma.
char* put_json_member(char* p, std::string_view key, std::string_view value, bool null_if_empty) noexcept {
  *p++ = '"';
  p = put_raw(p, key);
  p = put_raw(p, "\":");
  p = value.empty() && null_if_empty ? put_raw(p, "null") : put_json_string(p, value);
  *p++ = ',';
  return p;
}

void append_json_member(std::string& out, std::string_view key, std::string_view value, bool null_if_empty) {
  const std::size_t start = out.size();
  out.resize(start + key.size() + 6 * value.size() + 8);
  char* const end = put_json_member(out.data() + start, key, value, null_if_empty);
  out.resize(static_cast<std::size_t>(end - out.data()));
}

constexpr std::string_view level_name(LogLevel level) noexcept {
  switch (level) {
    case LogLevel::Debug:
      return "debug";
    case LogLevel::Info:
      return "info";
    case LogLevel::Warn:
      return "warn";
    case LogLevel::Error:
      return "error";
  }
  return "info";
}

std::string rfc3339_now() {
  const auto now = std::chrono::system_clock::now();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  const std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  const std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return std::string(buf, n) + fmt::format(".{:03}Z", ms % 1000);
}
}  // namespace

void set_log_options(LogFormat format, LogLevel level) noexcept {
  g_format = format;
  g_level = level;
}
LogFormat log_format() noexcept { return g_format; }
bool log_enabled(LogLevel level) noexcept { return level >= g_level; }

bool parse_log_format(std::string_view text, LogFormat& out) noexcept {
  if (text == "json") {
    out = LogFormat::Json;
  } else if (text == "text") {
    out = LogFormat::Text;
  } else {
    return false;
  }
  return true;
}

bool parse_log_level(std::string_view text, LogLevel& out) noexcept {
  for (LogLevel l : {LogLevel::Debug, LogLevel::Info, LogLevel::Warn, LogLevel::Error}) {
    if (text == level_name(l)) {
      out = l;
      return true;
    }
  }
  return false;
}

void log_line(LogLevel level, std::string_view message) {
  if (!log_enabled(level)) return;
  if (g_format == LogFormat::Text) {
    write_stderr(fmt::format("{} {:<5} {}\n", rfc3339_now(), level_name(level), message));
    return;
  }
  std::string line = "{";
  append_json_member(line, "time", rfc3339_now(), false);
  append_json_member(line, "level", level_name(level), false);
  line.append("\"msg\":");
  append_json_string(line, message);
  line.append("}\n");
  write_stderr(line);
}

std::string_view AccessLog::now_rfc3339() {
  const auto now = std::chrono::system_clock::now();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  const std::int64_t second = ms / 1000;
  if (second != cached_second_) {
    cached_second_ = second;
    const std::time_t t = static_cast<std::time_t>(second);
    std::tm tm{};
    gmtime_r(&t, &tm);
    time_len_ = std::strftime(time_buf_, sizeof time_buf_, "%Y-%m-%dT%H:%M:%S", &tm);
  }
  const int frac = static_cast<int>(ms % 1000);
  time_buf_[time_len_] = '.';
  time_buf_[time_len_ + 1] = static_cast<char>('0' + frac / 100);
  time_buf_[time_len_ + 2] = static_cast<char>('0' + frac / 10 % 10);
  time_buf_[time_len_ + 3] = static_cast<char>('0' + frac % 10);
  time_buf_[time_len_ + 4] = 'Z';
  return {time_buf_, time_len_ + 5};
}

void append_access_json(std::string& out, const AccessRecord& r, std::string_view time) {
  // One resize to the longest the line can be (every string byte escaped as \u00XX,
  // 20 digits per number, the keys and punctuation well under 512 bytes), then plain
  // stores and a final trim: appending piece by piece cost a capacity check and a
  // call per piece, a third of the line's instructions.
  const std::string_view reason = policy::to_string(r.outcome);
  const std::size_t strings = time.size() + r.request_id.size() + r.client.size() + r.method.size() +
                              r.path.size() + r.token_id.size() + reason.size() + r.detail.size() +
                              r.upstream.size();
  const std::size_t start = out.size();
  out.resize(start + 6 * strings + 512);
  char* p = out.data() + start;
  *p++ = '{';
  p = put_json_member(p, "time", time, false);
  p = put_json_member(p, "request_id", r.request_id, false);
  p = put_json_member(p, "client", r.client, false);
  p = put_json_member(p, "method", r.method, false);
  p = put_json_member(p, "path", r.path, false);
  p = r.route >= 0 ? put_uint_member(p, "route", static_cast<std::uint64_t>(r.route))
                   : put_raw(p, "\"route\":null,");
  p = put_json_member(p, "token_id", r.token_id, true);
  p = put_json_member(p, "decision", r.allowed ? "allow" : "deny", false);
  p = put_json_member(p, "reason", reason, false);
  if (!r.detail.empty()) p = put_json_member(p, "detail", r.detail, false);
  if (r.forward_auth) p = put_json_member(p, "mode", "forward_auth", false);
  p = put_json_member(p, "upstream", r.upstream, true);
  p = put_uint_member(p, "status", static_cast<std::uint64_t>(r.status));
  p = put_uint_member(p, "bytes_in", r.bytes_in);
  p = put_uint_member(p, "bytes_out", r.bytes_out);
  // Milliseconds with three decimals, rounded to the microsecond.
  const auto micros =
      static_cast<std::uint64_t>((std::max<std::int64_t>(r.duration.count(), 0) + 500) / 1000);
  p = put_raw(p, "\"duration_ms\":");
  p = put_decimal(p, micros / 1000);
  const auto frac = micros % 1000;
  *p++ = '.';
  *p++ = static_cast<char>('0' + frac / 100);
  *p++ = static_cast<char>('0' + frac / 10 % 10);
  *p++ = static_cast<char>('0' + frac % 10);
  p = put_raw(p, "}\n");
  out.resize(static_cast<std::size_t>(p - out.data()));
}

void AccessLog::write(const AccessRecord& r) {
  if (!log_enabled(LogLevel::Info)) return;
  if (g_format == LogFormat::Text) {
    write_text(r);
    return;
  }
  append_access_json(pending_, r, now_rfc3339());
  schedule_flush();
}

// "TIME STATUS METHOD PATH decision/reason (detail) route=N token=ID upstream=U in=B out=B 1.2ms client
// rid=ID" for a person at a terminal; values are the same as the JSON line's (the path is canonical or an
// escaped rejected target, so it holds no spaces or controls).
void AccessLog::write_text(const AccessRecord& r) {
  auto out = std::back_inserter(pending_);
  fmt::format_to(out, "{} {} {} {} {}/{}", now_rfc3339(), r.status, r.method, r.path,
                 r.allowed ? "allow" : "deny", policy::to_string(r.outcome));
  if (!r.detail.empty()) fmt::format_to(out, " ({})", r.detail);
  if (r.forward_auth) fmt::format_to(out, " mode=forward_auth");
  if (r.route >= 0) fmt::format_to(out, " route={}", r.route);
  if (!r.token_id.empty()) fmt::format_to(out, " token={}", r.token_id);
  if (!r.upstream.empty()) fmt::format_to(out, " upstream={}", r.upstream);
  fmt::format_to(out, " in={} out={} {:.1f}ms {} rid={}\n", r.bytes_in, r.bytes_out,
                 std::chrono::duration<double, std::milli>(r.duration).count(), r.client, r.request_id);
  schedule_flush();
}

void AccessLog::schedule_flush() {
  if (pending_.size() >= 64 * 1024) {
    flush();
  } else if (!flush_posted_) {
    // Runs after the handlers already queued: under load many lines share one write.
    flush_posted_ = true;
    boost::asio::post(context_, [this] {
      flush_posted_ = false;
      flush();
    });
  }
}

void AccessLog::flush() {
  if (!pending_.empty()) outbox_.hand_over(pending_);
}

void LogWriter::Outbox::hand_over(std::string& batch) {
  {
    std::lock_guard lock(mutex_);
    if (queued_.size() + batch.size() > kMaxBacklog) {
      dropped_lines_ += static_cast<std::uint64_t>(std::count(batch.begin(), batch.end(), '\n'));
    } else if (queued_.empty()) {
      queued_.swap(batch);  // no copy; the worker gets the writer's old buffer back
    } else {
      queued_.append(batch);
    }
  }
  batch.clear();
  // Set after the batch is queued and cleared by the writer before it drains, so no
  // batch waits for a wake-up that already happened; at most one eventfd write per
  // writer cycle, however many batches arrive meanwhile.
  if (!writer_.pending_.exchange(true)) writer_.wake();
}

LogWriter::LogWriter(std::size_t outboxes) : wake_fd_(::eventfd(0, EFD_CLOEXEC)) {
  if (wake_fd_ < 0) throw std::system_error(errno, std::generic_category(), "eventfd for the access log");
  for (std::size_t i = 0; i < outboxes; ++i) outboxes_.push_back(std::unique_ptr<Outbox>(new Outbox(*this)));
  thread_ = std::thread([this] { run(); });
}

LogWriter::~LogWriter() {
  stop();
  ::close(wake_fd_);
}

void LogWriter::wake() noexcept {
  const std::uint64_t one = 1;
  while (::write(wake_fd_, &one, sizeof one) < 0 && errno == EINTR) {
  }
}

void LogWriter::stop() {
  if (!thread_.joinable()) return;
  stopping_.store(true);
  wake();
  thread_.join();
  drain();
}

void LogWriter::run() {
  for (;;) {
    std::uint64_t count;
    if (::read(wake_fd_, &count, sizeof count) < 0 && errno == EINTR) continue;
    pending_.store(false);
    drain();
    if (stopping_.load()) return;
    // Gather for a moment: under load one write carries many batches, and this
    // thread wakes a few hundred times a second at most.
    std::this_thread::sleep_for(kGatherTime);
  }
}

void LogWriter::drain() {
  for (auto& box : outboxes_) {
    std::uint64_t dropped = 0;
    {
      std::lock_guard lock(box->mutex_);
      writing_.swap(box->queued_);
      dropped = std::exchange(box->dropped_lines_, 0);
    }
    if (!writing_.empty()) {
      write_stderr(writing_);
      writing_.clear();
    }
    if (dropped > 0)
      log_line(LogLevel::Warn, fmt::format("access log: {} lines dropped (stderr too slow)", dropped));
  }
}

}  // namespace tokengate::gateway
