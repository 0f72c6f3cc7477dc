// Access log lines (Boost.JSON) batched per worker; see access_log.hpp.
#include "gateway/access_log.hpp"

#include <unistd.h>

#include <boost/asio/post.hpp>
#include <boost/json/monotonic_resource.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serializer.hpp>
#include <cerrno>
#include <ctime>

namespace tokengate::gateway {

namespace json = boost::json;

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

void AccessLog::write(const AccessRecord& r) {
  unsigned char storage[2048];
  json::monotonic_resource mr(storage, sizeof storage);
  json::object o(&mr);
  o.reserve(15);
  o.emplace("time", now_rfc3339());
  o.emplace("request_id", r.request_id);
  o.emplace("client", r.client);
  o.emplace("method", r.method);
  o.emplace("path", r.path);
  if (r.route >= 0) {
    o.emplace("route", r.route);
  } else {
    o.emplace("route", nullptr);
  }
  if (r.token_id.empty()) {
    o.emplace("token_id", nullptr);
  } else {
    o.emplace("token_id", r.token_id);
  }
  o.emplace("decision", r.decision);
  o.emplace("reason", r.reason);
  if (!r.detail.empty()) o.emplace("detail", r.detail);
  o.emplace("status", r.status);
  if (r.upstream.empty()) {
    o.emplace("upstream", nullptr);
  } else {
    o.emplace("upstream", r.upstream);
  }
  o.emplace("bytes_in", r.bytes_in);
  o.emplace("bytes_out", r.bytes_out);
  const auto elapsed = std::chrono::steady_clock::now() - r.start;
  o.emplace("duration_ms", std::chrono::duration<double, std::milli>(elapsed).count());

  json::serializer sr;
  sr.reset(&o);
  char buf[1024];
  while (!sr.done()) pending_.append(sr.read(buf));
  pending_ += '\n';

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
  if (pending_.empty()) return;
  write_stderr(pending_);
  pending_.clear();
}

}  // namespace tokengate::gateway
