// SPDX-License-Identifier: MIT
// The service manager's readiness protocol (cli/service_notify.hpp): NOTIFY_SOCKET's forms, the
// datagrams a supervisor receives, and the failures it reports.
#include "service_notify.hpp"

#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

using Catch::Matchers::ContainsSubstring;
using Catch::Matchers::StartsWith;
using detour::cli::service_notifier;

namespace {

// A datagram socket standing for the service manager, bound to |name| (a path, or "@name"
// for the abstract namespace); unlinked at the end.
struct supervisor {
  int fd = -1;
  std::string name;

  explicit supervisor(std::string n) : name(std::move(n)) {
    fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path, name.data(), name.size());
    if (name.front() == '@') sa.sun_path[0] = '\0';
    const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size() +
                                            (name.front() == '@' ? 0 : 1));
    REQUIRE(::bind(fd, reinterpret_cast<const sockaddr*>(&sa), len) == 0);
  }
  ~supervisor() {
    ::close(fd);
    if (name.front() == '/') ::unlink(name.c_str());
  }

  // The next datagram, or "" after a second without one.
  std::string receive() const {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 1000) != 1) return {};
    char buf[4096];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
  }
};

std::string unique(const char* prefix) {
  return prefix + std::to_string(::getpid()) + "-" +
         std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
}

} // namespace

TEST_CASE("service_notifier is off without NOTIFY_SOCKET and says nothing") {
  service_notifier n{""};
  CHECK_FALSE(n.enabled());
  CHECK(n.problem().empty());
  CHECK_FALSE(n.ready("listening"));
  CHECK(n.problem().empty());
}

TEST_CASE("service_notifier refuses a NOTIFY_SOCKET it cannot use, saying why") {
  service_notifier relative{"run/notify"};
  CHECK_FALSE(relative.enabled());
  CHECK_THAT(relative.problem(), ContainsSubstring("neither an absolute path nor"));
  service_notifier vsock{"vsock:2:1234"};
  CHECK_FALSE(vsock.enabled());
  CHECK_THAT(vsock.problem(), ContainsSubstring("vsock:2:1234"));
  service_notifier longer{"/" + std::string(sizeof(sockaddr_un::sun_path), 'x')};
  CHECK_FALSE(longer.enabled());
  CHECK_THAT(longer.problem(), ContainsSubstring("too long"));
}

TEST_CASE("service_notifier tells a supervisor on a path: ready, reloading, stopping") {
  const supervisor s(std::filesystem::temp_directory_path().string() + "/" +
                     unique("detour-notify-"));
  service_notifier n{s.name};
  REQUIRE(n.enabled());

  REQUIRE(n.ready("listening on 127.0.0.1:2888, 2 workers"));
  CHECK(s.receive() == "READY=1\nSTATUS=listening on 127.0.0.1:2888, 2 workers");

  const auto before = std::chrono::duration_cast<std::chrono::microseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  REQUIRE(n.reloading());
  const std::string reload = s.receive();
  CHECK_THAT(reload, StartsWith("RELOADING=1\n"));
  // Type=notify-reload wants the monotonic clock of the reload, in microseconds.
  const auto at = reload.find("MONOTONIC_USEC=");
  REQUIRE(at != std::string::npos);
  const long long usec = std::stoll(reload.substr(at + 15));
  CHECK(usec >= before);
  CHECK(usec - before < 10'000'000);

  REQUIRE(n.stopping());
  CHECK_THAT(s.receive(), StartsWith("STOPPING=1\n"));
  CHECK(n.problem().empty());
}

TEST_CASE("service_notifier reaches an abstract socket name (@...)") {
  const supervisor s(unique("@detour-notify-"));
  service_notifier n{s.name};
  REQUIRE(n.enabled());
  REQUIRE(n.ready("up"));
  CHECK(s.receive() == "READY=1\nSTATUS=up");
}

TEST_CASE("service_notifier reports a supervisor that is not there") {
  service_notifier n{std::filesystem::temp_directory_path().string() + "/" +
                     unique("detour-nobody-")};
  REQUIRE(n.enabled());
  CHECK_FALSE(n.ready("up"));
  CHECK_THAT(n.problem(), ContainsSubstring("sending to NOTIFY_SOCKET"));
}

TEST_CASE("service_notifier reads NOTIFY_SOCKET from the environment") {
  const supervisor s(unique("@detour-env-"));
  REQUIRE(::setenv("NOTIFY_SOCKET", s.name.c_str(), 1) == 0);
  service_notifier n;
  ::unsetenv("NOTIFY_SOCKET");
  REQUIRE(n.enabled());
  REQUIRE(n.stopping());
  CHECK_THAT(s.receive(), StartsWith("STOPPING=1"));
}

TEST_CASE("service_notifier takes the watchdog period meant for this process") {
  const std::string self = std::to_string(::getpid());
  CHECK(service_notifier("@x", "3000000", "").watchdog_period() == std::chrono::seconds(3));
  CHECK(service_notifier("@x", "3000000", self).watchdog_period() == std::chrono::seconds(3));
  // A child that inherited the variables: the watchdog is its parent's.
  CHECK(service_notifier("@x", "3000000", "1").watchdog_period().count() == 0);
  // No NOTIFY_SOCKET, no watchdog to tell.
  CHECK(service_notifier("", "3000000", "").watchdog_period().count() == 0);
  CHECK(service_notifier("@x", "", "").watchdog_period().count() == 0);
  for (const char* bad : {"0", "3s", "-1", " 5"}) {
    service_notifier n{"@x", bad, ""};
    CHECK(n.watchdog_period().count() == 0);
    CHECK_THAT(n.problem(), ContainsSubstring("WATCHDOG_USEC"));
  }
}

TEST_CASE("service_notifier feeds the watchdog") {
  const supervisor s(unique("@detour-watchdog-"));
  service_notifier n{s.name, "1000000", ""};
  REQUIRE(n.watchdog());
  CHECK(s.receive() == "WATCHDOG=1");
}
