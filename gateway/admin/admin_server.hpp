// The admin listeners: TCP `admin.listen` (bearer tokens) and the unix socket
// `admin.socket` (mode 0600, trusted), both speaking HTTP/1.1 to one AdminApi on a
// thread of their own, so slow admin calls (synced writes) never stall the proxy.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "conf/config.hpp"
#include "gateway/admin/admin_api.hpp"

namespace tokengate::gateway {

class AdminServer {
 public:
  explicit AdminServer(AdminApi& api);
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Binds what the config asks for. On failure returns false with a one-line
  // `error` and nothing left bound.
  bool listen(const conf::AdminConfig& admin, std::string& error);

  std::optional<std::uint16_t> tcp_port() const;  // actual port of admin.listen
  bool has_socket() const;

  void start();  // serves on its own thread
  void stop();   // closes the listeners, joins the thread, removes the socket file

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tokengate::gateway
