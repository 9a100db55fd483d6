// SPDX-License-Identifier: MIT
// cli/service_notify.hpp: the service manager's readiness protocol (systemd's sd_notify(3), which
// other supervisors speak too): when the server was started with NOTIFY_SOCKET set, it says when
// it is ready (its sockets bound), reloading (SIGHUP) and stopping, with a one-line status.
// Without NOTIFY_SOCKET nothing is sent. No libsystemd: one datagram on a Unix socket.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

namespace detour::cli {

class service_notifier {
public:
  /// Reads NOTIFY_SOCKET: an absolute path, or "@name" for Linux's abstract namespace. Unset or
  /// empty: disabled. Any other form, or a path too long for a Unix address: disabled, with the
  /// reason in problem(). And the watchdog: WATCHDOG_USEC, when WATCHDOG_PID is unset or names
  /// this process (systemd's WatchdogSec=).
  service_notifier();
  /// As above with the variables' values given; for tests.
  explicit service_notifier(std::string_view notify_socket, std::string_view watchdog_usec = {},
                            std::string_view watchdog_pid = {});
  ~service_notifier();
  service_notifier(const service_notifier&) = delete;
  service_notifier& operator=(const service_notifier&) = delete;

  /// True when a service manager asked to be told.
  bool enabled() const noexcept { return fd_ >= 0; }
  /// Why NOTIFY_SOCKET was set but cannot be used; empty otherwise.
  const std::string& problem() const noexcept { return problem_; }

  /// Sends newline-separated assignments ("READY=1\nSTATUS=...") as one datagram. False when
  /// disabled or not delivered (errno-style text in problem()).
  bool send(std::string_view state);

  bool ready(std::string_view status) { return send("READY=1\nSTATUS=" + std::string(status)); }
  /// RELOADING=1 with the monotonic clock, as Type=notify-reload units require.
  bool reloading();
  bool stopping() { return send("STOPPING=1\nSTATUS=draining connections"); }

  /// The period within which the service manager wants WATCHDOG=1, or zero: no watchdog.
  std::chrono::microseconds watchdog_period() const noexcept { return watchdog_; }
  /// Tells the watchdog the service is alive.
  bool watchdog() { return send("WATCHDOG=1"); }

private:
  void open(std::string_view notify_socket, std::string_view watchdog_usec,
            std::string_view watchdog_pid);

  int fd_ = -1;
  std::string address_; // sockaddr_un's sun_path bytes (a leading NUL for abstract names)
  std::string problem_;
  std::chrono::microseconds watchdog_{0};
};

} // namespace detour::cli
