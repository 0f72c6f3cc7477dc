// Config hot reload: SIGHUP and inotify; see reload.hpp.
#include "gateway/server/reload.hpp"

#include <fmt/format.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <boost/asio/buffer.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "gateway/obs/access_log.hpp"
#include "gateway/obs/metrics.hpp"

namespace tokengate::gateway {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {

// Editors and `kubectl` write in bursts (truncate, write, rename): wait for quiet.
constexpr auto kDebounce = std::chrono::milliseconds(150);

std::string path_or(const std::optional<std::filesystem::path>& p) { return p ? p->string() : "(none)"; }
std::string endpoint_or(const std::optional<conf::Endpoint>& e) { return e ? e->to_string() : "(none)"; }

}  // namespace

std::optional<std::string> restart_required(const conf::Config& a, const conf::Config& b) {
  if (a.listen.to_string() != b.listen.to_string()) {
    return fmt::format("listen changed from {} to {}", a.listen.to_string(), b.listen.to_string());
  }
  if (a.workers != b.workers) return fmt::format("workers changed from {} to {}", a.workers, b.workers);
  if (a.store.path != b.store.path) {
    return fmt::format("store.path changed from {} to {}", a.store.path.string(), b.store.path.string());
  }
  if (a.store.key_file != b.store.key_file) {
    return fmt::format("store.key_file changed from {} to {}", a.store.key_file.string(),
                       b.store.key_file.string());
  }
  // The control thread holds its connection and the local copy's cluster for the
  // process's life. The URL is not quoted: it may hold a password.
  const auto& pa = a.store.postgres;
  const auto& pb = b.store.postgres;
  if (pa.has_value() != pb.has_value() ||
      (pa && (pa->url != pb->url || pa->password_file != pb->password_file ||
              pa->max_staleness != pb->max_staleness))) {
    return std::string("store.postgres changed");
  }
  if (endpoint_or(a.admin.listen) != endpoint_or(b.admin.listen)) {
    return fmt::format("admin.listen changed from {} to {}", endpoint_or(a.admin.listen),
                       endpoint_or(b.admin.listen));
  }
  const auto forward_auth_listen = [](const conf::Config& c) {
    return c.forward_auth ? std::optional<conf::Endpoint>(c.forward_auth->listen) : std::nullopt;
  };
  if (endpoint_or(forward_auth_listen(a)) != endpoint_or(forward_auth_listen(b))) {
    return fmt::format("forward_auth.listen changed from {} to {}", endpoint_or(forward_auth_listen(a)),
                       endpoint_or(forward_auth_listen(b)));
  }
  if (path_or(a.admin.socket) != path_or(b.admin.socket)) {
    return fmt::format("admin.socket changed from {} to {}", path_or(a.admin.socket),
                       path_or(b.admin.socket));
  }
  if (a.tls.has_value() != b.tls.has_value()) {
    return b.tls ? std::string("tls was turned on") : std::string("tls was turned off");
  }
  return std::nullopt;
}

ConfigReloader::ConfigReloader(asio::io_context& context, std::filesystem::path file,
                               std::shared_ptr<const conf::Config> current, Apply apply, Metrics* metrics)
    : context_(context),
      file_(std::move(file)),
      current_(std::move(current)),
      apply_(std::move(apply)),
      metrics_(metrics),
      debounce_(context) {}

ConfigReloader::~ConfigReloader() { stop(); }

bool ConfigReloader::reload(std::string_view why) {
  auto fail = [&](std::string_view message) {
    if (metrics_) metrics_->reload_failed();
    log_line(LogLevel::Error,
             fmt::format("config reload ({}) failed, keeping the old config: {}", why, message));
    return false;
  };
  std::shared_ptr<const conf::Config> next;
  std::shared_ptr<const policy::Engine> engine;
  try {
    next = conf::load_config(file_);
  } catch (const std::exception& e) {
    return fail(e.what());  // ConfigError's text is "file:line:col: ..."
  }
  if (auto why_restart = restart_required(*current_, *next)) {
    return fail(fmt::format("{}; this needs a restart, nothing was applied", *why_restart));
  }
  try {
    engine = policy::Engine::compile(next);
    apply_(next, engine);
  } catch (const std::exception& e) {
    return fail(e.what());
  }
  current_ = std::move(next);
  if (metrics_) metrics_->reload_ok(std::chrono::system_clock::now());
  log_line(LogLevel::Info, fmt::format("config reloaded ({})", why));
  return true;
}

void ConfigReloader::watch() {
  const int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) {
    log_line(LogLevel::Warn, fmt::format("not watching the config file: inotify: {}", std::strerror(errno)));
    return;
  }
  // The directory, not the file: editors and ConfigMaps replace the file by rename.
  const auto dir = file_.parent_path().empty() ? std::filesystem::path(".") : file_.parent_path();
  if (::inotify_add_watch(fd, dir.c_str(), IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE) < 0) {
    log_line(LogLevel::Warn, fmt::format("not watching {}: inotify: {}", dir.string(), std::strerror(errno)));
    ::close(fd);
    return;
  }
  inotify_.emplace(context_, fd);
  read_events();
}

void ConfigReloader::stop() {
  debounce_.cancel();
  if (inotify_) {
    error_code ignored;
    inotify_->close(ignored);
    inotify_.reset();
  }
}

void ConfigReloader::read_events() {
  inotify_->async_read_some(asio::buffer(events_), [this](error_code ec, std::size_t n) {
    if (ec) return;  // closed at shutdown
    const std::string name = file_.filename().string();
    bool ours = false;
    for (std::size_t off = 0; off + sizeof(inotify_event) <= n;) {
      inotify_event ev;
      std::memcpy(&ev, events_ + off, sizeof ev);
      if (ev.len > 0) {
        const std::string_view changed(events_ + off + sizeof(inotify_event));
        // "..data": a Kubernetes ConfigMap volume swaps its files by renaming this link.
        if (changed == name || changed == "..data") ours = true;
      }
      off += sizeof(inotify_event) + ev.len;
    }
    if (ours) {
      debounce_.expires_after(kDebounce);
      debounce_.async_wait([this](error_code tec) {
        if (!tec) reload("config file changed");
      });
    }
    read_events();
  });
}

}  // namespace tokengate::gateway
