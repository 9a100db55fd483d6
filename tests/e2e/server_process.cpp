// SPDX-License-Identifier: MIT
// tests/e2e/server_process.cpp: see server_process.hpp.
#include "server_process.hpp"

#include <catch2/catch_test_macros.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <stdexcept>

namespace detour::test {

using cli::monotonic_now;
using cli::nanoseconds_per_millisecond;
using cli::timestamp;

temp_dir::temp_dir() {
  char tmpl[] = "/tmp/detour-e2e-XXXXXX";
  if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
  path = tmpl;
}

temp_dir::~temp_dir() {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
}

std::string detour_binary() {
  return DETOUR_BINARY;
}

command_output run_detour(const std::string& args) {
  command_output out;
  FILE* p = ::popen((detour_binary() + " " + args + " 2>&1").c_str(), "r");
  if (!p) return out;
  std::array<char, 4096> buf{};
  while (std::fgets(buf.data(), static_cast<int>(buf.size()), p)) out.text += buf.data();
  const int st = ::pclose(p);
  out.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return out;
}

bool run_until(cli::event_loop& loop, const std::function<bool()>& done, timestamp timeout) {
  const timestamp give_up = monotonic_now() + timeout;
  while (!done()) {
    const timestamp now = monotonic_now();
    if (now >= give_up) return false;
    // Wake at least every 50 ms to re-check the predicate.
    loop.run_once(std::min(give_up, now + 50 * nanoseconds_per_millisecond));
  }
  return true;
}

server_process::server_process(std::vector<std::string> args) {
  bool has_listen = false, has_cert = false;
  for (const auto& a : args) {
    has_listen = has_listen || a == "--listen";
    has_cert = has_cert || a == "--cert" || a == "--state-dir";
  }
  if (!has_listen) args.insert(args.end(), {"--listen", "127.0.0.1:0"});
  if (!has_cert) args.insert(args.end(), {"--state-dir", state_.path.string()});

  // Files, not pipes: a server logging faster than the test reads must never block on a full
  // pipe (that would stall it and fail the test for the wrong reason).
  const auto err_path = (logs_.path / "stderr.log").string();
  const auto out_path = (logs_.path / "stdout.log").string();
  const int err_w = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  const int out_w = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  err_fd_ = ::open(err_path.c_str(), O_RDONLY | O_CLOEXEC);
  out_fd_ = ::open(out_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (err_w < 0 || out_w < 0 || err_fd_ < 0 || out_fd_ < 0) {
    throw std::runtime_error("cannot create the server's log files");
  }
  const std::string bin = detour_binary();
  std::vector<std::string> argv_s{bin, "serve"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : argv_s) argv.push_back(s.data());
  argv.push_back(nullptr);

  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    ::dup2(err_w, 2);
    ::dup2(out_w, 1);
    // The test process may block signals (signal_watch); the server must start clean.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execv(bin.c_str(), argv.data());
    ::_exit(127);
  }
  ::close(err_w);
  ::close(out_w);

  const auto line = wait_for_line({"server.listening"});
  if (!line) {
    std::string log;
    for (const auto& l : lines_) log += l + "\n";
    throw std::runtime_error("detour serve did not start:\n" + log);
  }
  // Text ("addresses=A,B") or JSON ("addresses":"A,B") log format.
  std::string addr;
  if (const auto at = line->find("addresses="); at != std::string::npos) {
    addr = line->substr(at + 10);
  } else if (const auto j = line->find("\"addresses\":\""); j != std::string::npos) {
    addr = line->substr(j + 13);
  }
  addr = addr.substr(0, addr.find_first_of(", \""));
  address_ = *cli::socket_address::parse(addr);
}

server_process::~server_process() {
  // A graceful end, so that sanitizers (leak checks included) have their say: SIGTERM drains,
  // a second SIGTERM closes at once, SIGKILL only if that hangs.
  if (running()) {
    ::kill(pid_, SIGTERM);
    if (!wait_exit(3 * cli::nanoseconds_per_second) && running()) {
      ::kill(pid_, SIGTERM);
      if (!wait_exit(5 * cli::nanoseconds_per_second) && running()) {
        ::kill(pid_, SIGKILL);
        int st = 0;
        ::waitpid(pid_, &st, 0);
      }
    }
  }
  // Whatever the test checked, a sanitizer report from the server fails it.
  std::string report;
  for (const auto& l : lines()) {
    if (l.find("ERROR: AddressSanitizer") != std::string::npos ||
        l.find("ERROR: LeakSanitizer") != std::string::npos ||
        l.find("runtime error:") != std::string::npos) {
      report += l + "\n";
    }
  }
  if (!report.empty()) FAIL_CHECK("detour serve reported:\n" << report);
  if (err_fd_ >= 0) ::close(err_fd_);
  if (out_fd_ >= 0) ::close(out_fd_);
}

void server_process::drain_pipes() {
  std::array<char, 65536> buf{};
  for (;;) {
    const ssize_t n = ::read(err_fd_, buf.data(), buf.size());
    if (n <= 0) break;
    err_partial_.append(buf.data(), static_cast<std::size_t>(n));
  }
  std::size_t nl;
  while ((nl = err_partial_.find('\n')) != std::string::npos) {
    lines_.push_back(err_partial_.substr(0, nl));
    err_partial_.erase(0, nl + 1);
  }
  for (;;) {
    const ssize_t n = ::read(out_fd_, buf.data(), buf.size());
    if (n <= 0) break;
    out_.append(buf.data(), static_cast<std::size_t>(n));
  }
}

const std::vector<std::string>& server_process::lines() {
  drain_pipes();
  return lines_;
}

const std::string& server_process::stdout_text() {
  drain_pipes();
  return out_;
}

std::vector<std::string> server_process::find_lines(const std::vector<std::string>& needles) {
  std::vector<std::string> out;
  for (const auto& l : lines()) {
    bool all = true;
    for (const auto& n : needles) all = all && l.find(n) != std::string::npos;
    if (all) out.push_back(l);
  }
  return out;
}

std::optional<std::string> server_process::wait_for_line(std::vector<std::string> needles,
                                                         timestamp timeout) {
  const timestamp give_up = monotonic_now() + timeout;
  std::size_t seen = 0;
  for (;;) {
    const auto& ls = lines();
    for (; seen < ls.size(); ++seen) {
      bool all = true;
      for (const auto& n : needles) all = all && ls[seen].find(n) != std::string::npos;
      if (all) return ls[seen];
    }
    const timestamp now = monotonic_now();
    if (now >= give_up) return std::nullopt;
    if (!running()) {
      // One last look: the lines written just before the exit.
      const auto& last = lines();
      for (; seen < last.size(); ++seen) {
        bool all = true;
        for (const auto& n : needles) all = all && last[seen].find(n) != std::string::npos;
        if (all) return last[seen];
      }
      return std::nullopt;
    }
    ::usleep(10'000);
  }
}

void server_process::signal(int sig) {
  if (running()) ::kill(pid_, sig);
}

bool server_process::running() {
  if (status_) return false;
  int st = 0;
  const pid_t r = ::waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    status_ = st;
    return false;
  }
  return true;
}

std::optional<int> server_process::wait_exit(timestamp timeout) {
  const timestamp give_up = monotonic_now() + timeout;
  while (running() && monotonic_now() < give_up) ::usleep(10'000);
  drain_pipes();
  if (!status_ || !WIFEXITED(*status_)) return std::nullopt;
  return WEXITSTATUS(*status_);
}

std::size_t server_process::rss_kib() const {
  std::ifstream f("/proc/" + std::to_string(pid_) + "/status");
  std::string key;
  while (f >> key) {
    if (key == "VmRSS:") {
      std::size_t kib = 0;
      f >> kib;
      return kib;
    }
    f.ignore(1 << 12, '\n');
  }
  return 0;
}

} // namespace detour::test
