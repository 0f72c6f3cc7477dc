// The per-worker access log: one JSON line per request on stderr. Lines are
// batched per worker (one batch per turn of the worker's io_context) and handed to
// the LogWriter thread, which does the write(2): a slow stderr (a file on a busy
// disk, a pipe to a slow reader) never stalls a worker, and lines of different
// workers never interleave.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "policy/outcome.hpp"

namespace tokengate::gateway {

struct AccessRecord {
  std::chrono::steady_clock::time_point start{};
  std::chrono::nanoseconds duration{};  // head received to response done; set once by the session
  std::string_view request_id;
  std::string_view client;
  std::string_view method;
  std::string_view path;  // canonical; the raw target only if it was rejected
  int route = -1;         // -1 = null
  std::string_view token_id;
  bool allowed = false;  // the policy allowed it (stays true when the upstream then failed)
  policy::Outcome outcome = policy::Outcome::BadFraming;
  std::string_view detail;  // e.g. why a token was invalid; never in the response
  int status = 0;
  std::string_view upstream;
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;
  bool forward_auth = false;  // a check on the forward_auth listener ("mode":"forward_auth")
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

// The thread that writes access-log batches to stderr. Each worker hands its
// batches to its own Outbox, whose mutex only that worker and this thread take.
// When stderr cannot keep up and an outbox holds kMaxBacklog bytes, further batches
// are dropped (never blocking a worker) and the count is reported on stderr.
class LogWriter {
 public:
  static constexpr std::size_t kMaxBacklog = 16 << 20;

  class Outbox {
   public:
    // Moves `batch` (whole lines) to the writer and leaves it empty.
    void hand_over(std::string& batch);

   private:
    friend class LogWriter;
    explicit Outbox(LogWriter& writer) : writer_(writer) {}
    LogWriter& writer_;
    std::mutex mutex_;
    std::string queued_;
    std::uint64_t dropped_lines_ = 0;
  };

  // One outbox per worker; starts the thread.
  explicit LogWriter(std::size_t outboxes);
  ~LogWriter();  // stop()
  LogWriter(const LogWriter&) = delete;
  LogWriter& operator=(const LogWriter&) = delete;

  Outbox& outbox(std::size_t index) noexcept { return *outboxes_[index]; }
  // Writes everything handed over so far and stops the thread (idempotent). The
  // workers must have stopped handing over.
  void stop();

 private:
  static constexpr auto kGatherTime = std::chrono::milliseconds(2);

  void run();
  void drain();
  void wake() noexcept;

  int wake_fd_;  // eventfd: the workers' "something to write" signal

  std::vector<std::unique_ptr<Outbox>> outboxes_;
  std::atomic<bool> pending_{false};
  std::atomic<bool> stopping_{false};
  std::string writing_;
  std::thread thread_;
};

class AccessLog {
 public:
  AccessLog(boost::asio::io_context& context, LogWriter::Outbox& outbox)
      : context_(context), outbox_(outbox) {}
  void write(const AccessRecord& record);
  void flush();

 private:
  std::string_view now_rfc3339();
  void write_text(const AccessRecord& record);
  void schedule_flush();

  boost::asio::io_context& context_;
  LogWriter::Outbox& outbox_;
  std::string pending_;
  bool flush_posted_ = false;
  std::int64_t cached_second_ = -1;
  char time_buf_[40] = {};
  std::size_t time_len_ = 0;
};

// Appends one access-log line: a JSON object (README.md, "Access log") and a newline.
void append_access_json(std::string& out, const AccessRecord& record, std::string_view time);

// Appends `text` as a JSON string: quotes, backslashes and control characters
// escaped (RFC 8259 §7); other bytes as they are.
void append_json_string(std::string& out, std::string_view text);

// Writes a whole string to stderr with write(2), retrying on short writes.
void write_stderr(std::string_view text);

}  // namespace tokengate::gateway
