// Per-worker metric shards and their Prometheus text rendering; see metrics.hpp.
#include "gateway/obs/metrics.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <tuple>

#include "gateway/obs/contain.hpp"

namespace tokengate::gateway {

namespace {

constexpr std::string_view kVerifyNames[kVerifyResults] = {"valid",    "malformed", "unknown",
                                                           "mismatch", "expired",   "rotated_out"};

// key layout: forward_auth (1 bit) | route+2 (16 bits; 1 = no route) | allowed (1 bit) |
// status class (3 bits) | reason (8 bits); never 0.
std::uint32_t make_key(int route, int status, bool allowed, std::uint32_t reason,
                       bool forward_auth) noexcept {
  const std::uint32_t r =
      route < 0 ? 1u : std::min<std::uint32_t>(static_cast<std::uint32_t>(route) + 2, 0xFFFF);
  const std::uint32_t cls = status >= 100 && status < 600 ? static_cast<std::uint32_t>(status / 100) : 0;
  return (static_cast<std::uint32_t>(forward_auth) << 28) | (r << 12) |
         (static_cast<std::uint32_t>(allowed) << 11) | (cls << 8) | reason;
}

std::string escape_label(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::uint64_t read(const std::atomic<std::uint64_t>& a) noexcept { return a.load(std::memory_order_relaxed); }

std::string format_double(double v) { return fmt::format("{}", v); }

}  // namespace

std::string_view to_string(UpstreamErrorKind kind) noexcept {
  switch (kind) {
    case UpstreamErrorKind::ConnectFailed:
      return "connect_failed";
    case UpstreamErrorKind::Timeout:
      return "timeout";
    case UpstreamErrorKind::Failed:
      return "failed";
    case UpstreamErrorKind::Aborted:
      return "aborted";
    case UpstreamErrorKind::BadResponse:
      return "bad_response";
    case UpstreamErrorKind::TlsVerify:
      return "tls_verify";
    case UpstreamErrorKind::Count:
      break;
  }
  return "other";
}

void MetricsShard::count_request(int route, int status, bool allowed, policy::Outcome outcome,
                                 std::chrono::nanoseconds duration, bool forward_auth) noexcept {
  // Outcomes are numbered from 0; the key's 0 means an empty slot, hence +1.
  const std::uint32_t key =
      make_key(route, status, allowed, static_cast<std::uint32_t>(outcome) + 1, forward_auth);
  std::size_t i = (key * 2654435761u) % kSlots;
  for (std::size_t probe = 0;; ++probe, i = (i + 1) % kSlots) {
    if (probe == kSlots) {
      bump(requests_dropped_);
      break;
    }
    const std::uint32_t k = requests_[i].key.load(std::memory_order_relaxed);
    if (k == key) {
      bump(requests_[i].count);
      break;
    }
    if (k == 0) {
      requests_[i].count.store(1, std::memory_order_relaxed);
      requests_[i].key.store(key, std::memory_order_release);
      break;
    }
  }
  const double seconds = std::chrono::duration<double>(duration).count();
  std::size_t b = 0;
  while (b < kLatencyBuckets.size() && seconds > kLatencyBuckets[b]) ++b;
  bump(latency_buckets_[b]);  // non-cumulative here; summed on render
  bump(latency_sum_ns_, static_cast<std::uint64_t>(std::max<std::int64_t>(duration.count(), 0)));
}

void MetricsShard::count_verification(int result) noexcept {
  if (result < 0 || static_cast<std::size_t>(result) >= kVerifyResults) return;
  bump(verifications_[static_cast<std::size_t>(result)]);
}

Metrics::Metrics(std::size_t workers) {
  shards_.reserve(std::max<std::size_t>(workers, 1));
  for (std::size_t i = 0; i < std::max<std::size_t>(workers, 1); ++i)
    shards_.push_back(std::make_unique<PaddedShard>());
}

void Metrics::reload_ok(std::chrono::system_clock::time_point when) noexcept {
  reloads_ok_.fetch_add(1, std::memory_order_relaxed);
  last_reload_ms_.store(
      std::chrono::duration_cast<std::chrono::milliseconds>(when.time_since_epoch()).count(),
      std::memory_order_relaxed);
}

void Metrics::set_route_names(std::vector<std::string> names) {
  std::lock_guard lock(names_mutex_);
  route_names_ = std::move(names);
}

void Metrics::set_expiring_soon_source(std::function<std::uint64_t()> source) {
  std::lock_guard lock(names_mutex_);
  expiring_soon_ = std::move(source);
}

std::string Metrics::render_prometheus() const {
  std::vector<std::string> names;
  std::function<std::uint64_t()> expiring;
  {
    std::lock_guard lock(names_mutex_);
    names = route_names_;
    expiring = expiring_soon_;
  }
  std::string out;
  auto header = [&out](std::string_view name, std::string_view type, std::string_view help) {
    fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  };

  // Requests: merge the shards' slots by key.
  std::map<std::uint32_t, std::uint64_t> requests;
  std::uint64_t dropped = 0;
  for (const auto& s : shards_) {
    for (const auto& slot : s->requests_) {
      const std::uint32_t key = slot.key.load(std::memory_order_acquire);
      if (key != 0) requests[key] += read(slot.count);
    }
    dropped += read(s->requests_dropped_);
  }
  header("tokengate_requests_total", "counter",
         "Requests answered, by route, status class, decision and its reason; mode is proxy or "
         "forward_auth (checks for another proxy).");
  // Sorted by label text so the output is stable.
  std::map<std::tuple<std::string, std::string, std::string_view, std::string, std::string_view>,
           std::uint64_t>
      rows;
  // tokengate_rate_limited_total{route} is the same count seen by route alone
  // (429s have their own reason): the hot path counts a request once.
  std::map<std::string, std::uint64_t> rate_limited;
  for (const auto& [key, count] : requests) {
    const std::uint32_t r = (key >> 12) & 0xFFFF;
    const bool forward_auth = (key >> 28) & 1;
    const bool allowed = (key >> 11) & 1;
    const std::uint32_t cls = (key >> 8) & 7;
    const std::uint32_t reason = key & 0xFF;
    std::string route;
    if (r == 1) {
      route = "none";
    } else if (r - 2 < names.size()) {
      route = names[r - 2];
    } else {
      route = fmt::format("#{}", r - 2);
    }
    const std::string status = cls == 0 ? "other" : fmt::format("{}xx", cls);
    if (reason == static_cast<std::uint32_t>(policy::Outcome::RateLimited) + 1) rate_limited[route] += count;
    rows[{route, status, allowed ? "allow" : "deny",
          std::string(reason >= 1 && reason <= static_cast<std::uint32_t>(policy::Outcome::Count)
                          ? policy::to_string(static_cast<policy::Outcome>(reason - 1))
                          : "other"),
          forward_auth ? "forward_auth" : "proxy"}] += count;
  }
  for (const auto& [labels, count] : rows) {
    fmt::format_to(
        std::back_inserter(out),
        "tokengate_requests_total{{route=\"{}\",status=\"{}\",decision=\"{}\",reason=\"{}\",mode=\"{}\"}} "
        "{}\n",
        escape_label(std::get<0>(labels)), std::get<1>(labels), std::get<2>(labels), std::get<3>(labels),
        std::get<4>(labels), count);
  }
  header("tokengate_rate_limited_total", "counter", "Requests refused with 429 by a rate limit, by route.");
  for (const auto& [route, count] : rate_limited) {
    fmt::format_to(std::back_inserter(out), "tokengate_rate_limited_total{{route=\"{}\"}} {}\n",
                   escape_label(route), count);
  }
  header("tokengate_requests_unlabelled_total", "counter",
         "Requests counted without labels because a worker's label table was full.");
  fmt::format_to(std::back_inserter(out), "tokengate_requests_unlabelled_total {}\n", dropped);

  header("tokengate_request_duration_seconds", "histogram",
         "Time from the request head to the last byte sent.");
  std::array<std::uint64_t, kLatencyBuckets.size() + 1> buckets{};
  std::uint64_t sum_ns = 0;
  for (const auto& s : shards_) {
    for (std::size_t b = 0; b < buckets.size(); ++b) buckets[b] += read(s->latency_buckets_[b]);
    sum_ns += read(s->latency_sum_ns_);
  }
  std::uint64_t cumulative = 0;
  for (std::size_t b = 0; b < kLatencyBuckets.size(); ++b) {
    cumulative += buckets[b];
    fmt::format_to(std::back_inserter(out), "tokengate_request_duration_seconds_bucket{{le=\"{}\"}} {}\n",
                   format_double(kLatencyBuckets[b]), cumulative);
  }
  cumulative += buckets.back();
  fmt::format_to(std::back_inserter(out), "tokengate_request_duration_seconds_bucket{{le=\"+Inf\"}} {}\n",
                 cumulative);
  fmt::format_to(std::back_inserter(out), "tokengate_request_duration_seconds_sum {}\n",
                 format_double(static_cast<double>(sum_ns) / 1e9));
  fmt::format_to(std::back_inserter(out), "tokengate_request_duration_seconds_count {}\n", cumulative);

  header("tokengate_upstream_errors_total", "counter", "Failed upstream exchanges by kind.");
  for (int k = 0; k < static_cast<int>(UpstreamErrorKind::Count); ++k) {
    std::uint64_t n = 0;
    for (const auto& s : shards_) n += read(s->upstream_errors_[static_cast<std::size_t>(k)]);
    fmt::format_to(std::back_inserter(out), "tokengate_upstream_errors_total{{kind=\"{}\"}} {}\n",
                   to_string(static_cast<UpstreamErrorKind>(k)), n);
  }

  header("tokengate_token_verifications_total", "counter", "Bearer token verifications by result.");
  for (std::size_t k = 0; k < kVerifyResults; ++k) {
    std::uint64_t n = 0;
    for (const auto& s : shards_) n += read(s->verifications_[k]);
    fmt::format_to(std::back_inserter(out), "tokengate_token_verifications_total{{result=\"{}\"}} {}\n",
                   kVerifyNames[k], n);
  }

  std::uint64_t hits = 0, misses = 0, open = 0;
  for (const auto& s : shards_) {
    hits += read(s->cache_hits_);
    misses += read(s->cache_misses_);
    open += read(s->open_connections_);
  }
  header("tokengate_token_cache_hits_total", "counter", "Verified tokens whose rights were already cached.");
  fmt::format_to(std::back_inserter(out), "tokengate_token_cache_hits_total {}\n", hits);
  header("tokengate_token_cache_misses_total", "counter", "Verified tokens whose rights had to be computed.");
  fmt::format_to(std::back_inserter(out), "tokengate_token_cache_misses_total {}\n", misses);

  header("tokengate_internal_errors_total", "counter",
         "Unexpected errors contained to one connection or task (each is logged).");
  fmt::format_to(std::back_inserter(out), "tokengate_internal_errors_total {}\n", internal_errors());
  header("tokengate_config_reloads_total", "counter", "Configuration reloads by result.");
  fmt::format_to(std::back_inserter(out), "tokengate_config_reloads_total{{result=\"ok\"}} {}\n",
                 reloads_ok_.load(std::memory_order_relaxed));
  fmt::format_to(std::back_inserter(out), "tokengate_config_reloads_total{{result=\"failed\"}} {}\n",
                 reloads_failed_.load(std::memory_order_relaxed));
  header("tokengate_config_last_reload_success_timestamp_seconds", "gauge",
         "Unix time of the last successful configuration load.");
  fmt::format_to(
      std::back_inserter(out), "tokengate_config_last_reload_success_timestamp_seconds {}\n",
      format_double(static_cast<double>(last_reload_ms_.load(std::memory_order_relaxed)) / 1000.0));

  header("tokengate_open_connections", "gauge", "Client connections currently open on the public listener.");
  fmt::format_to(std::back_inserter(out), "tokengate_open_connections {}\n", static_cast<std::int64_t>(open));

  header("tokengate_last_used_writes_total", "counter", "Last-used times written to the token store.");
  fmt::format_to(std::back_inserter(out), "tokengate_last_used_writes_total {}\n", last_used_writes());

  if (expiring) {
    try {
      const std::uint64_t n = expiring();
      header("tokengate_tokens_expiring_soon", "gauge", "Tokens that expire within the next 7 days.");
      fmt::format_to(std::back_inserter(out), "tokengate_tokens_expiring_soon {}\n", n);
    } catch (const std::exception&) {
      // The store could not be read: leave the gauge out rather than report 0.
    }
  }
  return out;
}

}  // namespace tokengate::gateway
