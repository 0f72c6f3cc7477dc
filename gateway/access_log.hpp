// The per-worker access log: one JSON line per request on stderr. Lines are
// batched per worker and written with one write(2) each time the worker's
// io_context gets round to it, so a busy worker does not pay a syscall per request
// and lines of different workers never interleave.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace tokengate::gateway {

struct AccessRecord {
  std::chrono::steady_clock::time_point start{};
  std::string_view request_id;
  std::string_view client;
  std::string_view method;
  std::string_view path;  // canonical; the raw target only if it was rejected
  int route = -1;         // -1 = null
  std::string_view token_id;
  std::string_view decision = "deny";  // "allow" | "deny"
  std::string_view reason;
  std::string_view detail;  // e.g. why a token was invalid; never in the response
  int status = 0;
  std::string_view upstream;
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;
};

enum class LogLevel { Debug, Info, Warn, Error };
enum class LogFormat { Json, Text };

// Process-wide log settings from --log-format/--log-level; set once before the
// workers start (read without synchronisation afterwards).
void set_log_options(LogFormat format, LogLevel level) noexcept;
LogFormat log_format() noexcept;
bool log_enabled(LogLevel level) noexcept;
// Parses "json"/"text" and "debug"/"info"/"warn"/"error"; false if unknown.
bool parse_log_format(std::string_view text, LogFormat& out) noexcept;
bool parse_log_level(std::string_view text, LogLevel& out) noexcept;

// One operational message (not a request) on stderr: a JSON object
// {"time","level","msg"} or, with --log-format text, "TIME LEVEL msg".
void log_line(LogLevel level, std::string_view message);

class AccessLog {
 public:
  explicit AccessLog(boost::asio::io_context& context) : context_(context) {}
  void write(const AccessRecord& record);
  void flush();

 private:
  std::string_view now_rfc3339();
  void write_text(const AccessRecord& record);
  void schedule_flush();

  boost::asio::io_context& context_;
  std::string pending_;
  bool flush_posted_ = false;
  std::int64_t cached_second_ = -1;
  char time_buf_[40] = {};
  std::size_t time_len_ = 0;
};

// Writes a whole string to stderr with write(2), retrying on short writes.
void write_stderr(std::string_view text);

}  // namespace tokengate::gateway
