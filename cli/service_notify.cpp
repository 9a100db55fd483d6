// SPDX-License-Identifier: MIT
// cli/service_notify.cpp: see service_notify.hpp.
#include "service_notify.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>

namespace detour::cli {

service_notifier::service_notifier() {
  const char* value = std::getenv("NOTIFY_SOCKET");
  open(value ? std::string_view(value) : std::string_view());
}

service_notifier::service_notifier(std::string_view notify_socket) {
  open(notify_socket);
}

void service_notifier::open(std::string_view notify_socket) {
  if (notify_socket.empty()) return;
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
