// Hot reload (docs/configuration.md, "Reload and restart"): SIGHUP or a change of
// the config file (inotify on its directory, debounced) loads and compiles a new
// config off the data plane and hands it to the server to publish; an invalid file
// or a change that needs a restart (listen, store, workers, admin) is logged and
// the old config keeps serving.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "conf/config.hpp"
#include "policy/engine.hpp"

namespace tokengate::gateway {

class Metrics;

// Why `next` cannot be applied without a restart ("listen changed from A to B"), or
// nullopt if it can.
std::optional<std::string> restart_required(const conf::Config& current, const conf::Config& next);

class ConfigReloader {
 public:
  // Applies a validated config and its engine; may throw (e.g. unreadable TLS
  // files), which fails the reload and keeps the old config.
  using Apply = std::function<void(const std::shared_ptr<const conf::Config>&,
                                   const std::shared_ptr<const policy::Engine>&)>;

  ConfigReloader(boost::asio::io_context& context, std::filesystem::path file,
                 std::shared_ptr<const conf::Config> current, Apply apply, Metrics* metrics);
  ~ConfigReloader();

  // Loads, checks and applies the file now; `why` goes into the log line. Returns
  // whether the new config is in force.
  bool reload(std::string_view why);
  // Starts watching the config file; logs and carries on without if inotify fails.
  void watch();
  void stop();

 private:
  void read_events();

  boost::asio::io_context& context_;
  std::filesystem::path file_;
  std::shared_ptr<const conf::Config> current_;
  Apply apply_;
  Metrics* metrics_;
  std::optional<boost::asio::posix::stream_descriptor> inotify_;
  boost::asio::steady_timer debounce_;
  char events_[8192];
};

}  // namespace tokengate::gateway
