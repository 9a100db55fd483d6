// SPDX-License-Identifier: MIT
// tests/e2e/server_process.hpp: runs the real `detour serve` binary for an end-to-end test:
// starts it on an ephemeral loopback port with its own state folder, collects its log lines,
// waits for events with deadlines, signals it, reads its memory use, and reaps it.
#pragma once

#include "event_loop.hpp"
#include "udp.hpp"

#include <sys/types.h>

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace detour::test {

/// A temporary folder, removed with everything in it.
struct temp_dir {
  std::filesystem::path path;
  temp_dir();
  ~temp_dir();
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
};

class server_process {
public:
  /// Starts `detour serve` with |args| plus `--listen 127.0.0.1:0 --state-dir <own folder>`
  /// (unless |args| has its own --listen / --cert) and waits (10 s at most) for its
  /// server.listening line. Throws std::runtime_error when it does not come up.
  explicit server_process(std::vector<std::string> args = {});
  /// Sends SIGKILL if it is still running.
  ~server_process();
  server_process(const server_process&) = delete;
  server_process& operator=(const server_process&) = delete;

  /// The address it listens on (the first, when several).
  const cli::socket_address& address() const noexcept { return address_; }
  /// The state folder (development certificates).
  const std::filesystem::path& state_dir() const noexcept { return state_.path; }
  std::filesystem::path ca_file() const { return state_.path / "ca.pem"; }
  pid_t pid() const noexcept { return pid_; }

  /// Reads what the process wrote so far (non-blocking) and returns all log lines (stderr).
  const std::vector<std::string>& lines();
  /// What it printed on stdout (the banner).
  const std::string& stdout_text();
  /// Polls the log until some line contains every one of |needles|, or |timeout| passes.
  std::optional<std::string> wait_for_line(std::vector<std::string> needles,
                                           cli::timestamp timeout = 10 *
                                                                    cli::nanoseconds_per_second);
  /// Lines containing every one of |needles|.
  std::vector<std::string> find_lines(const std::vector<std::string>& needles);

  void signal(int sig);
  /// Waits for the exit (at most |timeout|); returns the exit status, or empty on timeout or
  /// when killed by a signal.
  std::optional<int> wait_exit(cli::timestamp timeout = 10 * cli::nanoseconds_per_second);
  bool running();
  /// Resident memory (VmRSS) in KiB, from /proc.
  std::size_t rss_kib() const;

private:
  void drain_pipes();

  temp_dir state_;
  temp_dir logs_; // stderr.log and stdout.log of the server
  pid_t pid_ = -1;
  int err_fd_ = -1;
  int out_fd_ = -1;
  std::string err_partial_;
  std::vector<std::string> lines_;
  std::string out_;
  cli::socket_address address_;
  std::optional<int> status_;
};

/// The `detour` binary under test.
std::string detour_binary();

/// What `detour ARGS` (a shell command line after the binary) printed on stdout and stderr
/// together, and its exit status.
struct command_output {
  std::string text;
  int status = -1;
};
command_output run_detour(const std::string& args);

/// Runs the event loop until |done| or |timeout|; returns done().
bool run_until(cli::event_loop& loop, const std::function<bool()>& done,
               cli::timestamp timeout = 30 * cli::nanoseconds_per_second);

} // namespace detour::test
