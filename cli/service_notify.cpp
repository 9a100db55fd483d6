// SPDX-License-Identifier: MIT
// cli/service_notify.cpp: see service_notify.hpp.
#include "service_notify.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>

namespace detour::cli {

namespace {

std::string_view env(const char* name) {
  const char* value = std::getenv(name);
  return value ? std::string_view(value) : std::string_view();
}

// A decimal number, the whole of |text|; nullopt otherwise.
std::optional<std::uint64_t> decimal(std::string_view text) {
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return v;
}

} // namespace

service_notifier::service_notifier() {
  open(env("NOTIFY_SOCKET"), env("WATCHDOG_USEC"), env("WATCHDOG_PID"));
}

service_notifier::service_notifier(std::string_view notify_socket, std::string_view watchdog_usec,
                                   std::string_view watchdog_pid) {
  open(notify_socket, watchdog_usec, watchdog_pid);
}

void service_notifier::open(std::string_view notify_socket, std::string_view watchdog_usec,
                            std::string_view watchdog_pid) {
  if (notify_socket.empty()) return;
  // The watchdog is for the process systemd started; a child that inherited the variables
  // (WATCHDOG_PID names another process) has none.
  const auto pid = decimal(watchdog_pid);
  const bool ours = watchdog_pid.empty() || (pid && *pid == static_cast<std::uint64_t>(::getpid()));
  if (!watchdog_usec.empty() && ours) {
    const auto usec = decimal(watchdog_usec);
    if (usec && *usec > 0) {
      watchdog_ = std::chrono::microseconds(*usec);
    } else {
      problem_ = "WATCHDOG_USEC '" + std::string(watchdog_usec) +
                 "' is not a number of microseconds; no watchdog";
    }
  }
  if (notify_socket.front() != '/' && notify_socket.front() != '@') {
    problem_ = "NOTIFY_SOCKET '" + std::string(notify_socket) +
               "' is neither an absolute path nor an abstract '@' name";
    return;
  }
  if (notify_socket.size() >= sizeof(sockaddr_un::sun_path)) {
    problem_ = "NOTIFY_SOCKET '" + std::string(notify_socket) + "' is too long for a Unix socket";
    return;
  }
  address_ = std::string(notify_socket);
  if (address_.front() == '@') address_.front() = '\0';
  fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) problem_ = std::string("socket: ") + std::strerror(errno);
}

service_notifier::~service_notifier() {
  if (fd_ >= 0) ::close(fd_);
}

bool service_notifier::send(std::string_view state) {
  if (fd_ < 0) return false;
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, address_.data(), address_.size());
  const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address_.size() +
                                          (address_.front() == '\0' ? 0 : 1));
  const ssize_t n = ::sendto(fd_, state.data(), state.size(), MSG_NOSIGNAL,
                             reinterpret_cast<const sockaddr*>(&sa), len);
  if (n == static_cast<ssize_t>(state.size())) return true;
  problem_ =
      std::string("sending to NOTIFY_SOCKET: ") + (n < 0 ? std::strerror(errno) : "a short write");
  return false;
}

bool service_notifier::reloading() {
  const auto usec = std::chrono::duration_cast<std::chrono::microseconds>(
                        std::chrono::steady_clock::now().time_since_epoch())
                        .count();
  return send("RELOADING=1\nSTATUS=reloading certificates and policy\nMONOTONIC_USEC=" +
              std::to_string(usec));
}

} // namespace detour::cli
