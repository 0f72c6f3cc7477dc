// Access-log and event lines (JSON written directly) batched per worker; see access_log.hpp.
#include "gateway/obs/access_log.hpp"

#include <fmt/format.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <cerrno>
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

void append_json_string(std::string& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  std::size_t plain = 0;  // start of the run of bytes not yet copied
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(text.data() + plain, i - plain);
    plain = i + 1;
    switch (c) {
      case '"':
        out.append("\\\"");
        break;
      case '\\':
        out.append("\\\\");
        break;
      case '\n':
        out.append("\\n");
        break;
      case '\r':
        out.append("\\r");
        break;
      case '\t':
        out.append("\\t");
        break;
      default:
        out.append("\\u00");
        out += kHex[c >> 4];
        out += kHex[c & 0xF];
    }
  }
  out.append(text.data() + plain, text.size() - plain);
  out += '"';
}

namespace {

void append_uint_member(std::string& out, std::string_view key, std::uint64_t value) {
  out += '"';
  out.append(key);
  out.append("\":");
  append_decimal(out, value);
  out += ',';
}

// Appends `"key":` then the value as a JSON string, or null when it is empty.
void append_json_member(std::string& out, std::string_view key, std::string_view value, bool null_if_empty) {
  out += '"';
  out.append(key);
  out.append("\":");
  if (value.empty() && null_if_empty) {
    out.append("null");
  } else {
    append_json_string(out, value);
  }
  out += ',';
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
  out += '{';
  append_json_member(out, "time", time, false);
  append_json_member(out, "request_id", r.request_id, false);
  append_json_member(out, "client", r.client, false);
  append_json_member(out, "method", r.method, false);
  append_json_member(out, "path", r.path, false);
  if (r.route >= 0) {
    append_uint_member(out, "route", static_cast<std::uint64_t>(r.route));
  } else {
    out.append("\"route\":null,");
  }
  append_json_member(out, "token_id", r.token_id, true);
  append_json_member(out, "decision", r.allowed ? "allow" : "deny", false);
  append_json_member(out, "reason", policy::to_string(r.outcome), false);
  if (!r.detail.empty()) append_json_member(out, "detail", r.detail, false);
  if (r.forward_auth) append_json_member(out, "mode", "forward_auth", false);
  append_json_member(out, "upstream", r.upstream, true);
  append_uint_member(out, "status", static_cast<std::uint64_t>(r.status));
  append_uint_member(out, "bytes_in", r.bytes_in);
  append_uint_member(out, "bytes_out", r.bytes_out);
  // Milliseconds with three decimals, rounded to the microsecond.
  const auto micros =
      static_cast<std::uint64_t>((std::max<std::int64_t>(r.duration.count(), 0) + 500) / 1000);
  out.append("\"duration_ms\":");
  append_decimal(out, micros / 1000);
  const auto frac = micros % 1000;
  const char decimals[4] = {'.', static_cast<char>('0' + frac / 100), static_cast<char>('0' + frac / 10 % 10),
                            static_cast<char>('0' + frac % 10)};
  out.append(decimals, sizeof decimals);
  out.append("}\n");
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
