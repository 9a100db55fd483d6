// SPDX-License-Identifier: MIT
// cli/audit.hpp: the audit records of `detour serve --audit` (docs/audit.md): one JSON object
// per line and per task (g3proxy stream detour: the north header's fields, the WebSocket
// summary, the decision and how the relay ended), written by a background thread so that the
// event loop never waits on the disk; reopened on SIGHUP, flushed on a clean exit.
#pragma once

#include "json.hpp"
#include "writer_thread.hpp"

#include <detour/response.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace detour::cli {

/// Everything an audit line says about one task.
struct audit_record {
  std::int64_t time_ns = 0;        ///< wall clock (ns since the Unix epoch) when it was answered
  std::string task;                ///< E3 task id as a UUID
  std::string conn;                ///< the QUIC connection, as in the log lines
  std::uint16_t match_id = 0;      ///< E5
  std::optional<std::string> user; ///< E2; absent when the client did not authenticate
  std::string client;              ///< PROXY source: the proxied client, "addr:port"
  std::string proxy;               ///< PROXY destination: the proxy's listening address
  std::string upstream;            ///< E0 as sent
  std::string protocol;            ///< E4 as sent
  /// For a `websocket` task: the summary's resource and header lines (names lower case, in
  /// order; repeated sec-websocket-extensions lines joined with ", ").
  bool websocket = false;
  std::string ws_resource;
  std::vector<std::pair<std::string, std::string>> ws_headers;
  std::string ws_error;            ///< the error name when the summary did not parse
  std::optional<std::string> rule; ///< the policy rule that decided ("default"); none: no policy
  action decision = action::proceed;
  bool capture = false;           ///< written to the --capture file
  std::uint64_t client_bytes = 0; ///< relayed client -> remote (north)
  std::uint64_t remote_bytes = 0; ///< relayed remote -> client (south)
  std::uint64_t duration_ns = 0;  ///< from the answer to the end of the task
  std::string end;                ///< "finished", an error name, or why the connection closed
};

/// "2026-08-25T10:11:12.123456Z" (UTC, microseconds).
std::string rfc3339_utc(std::int64_t unix_ns);

/// One record as a JSON object on one line, ending with '\n'. Field order and names are
/// documented in docs/audit.md.
void append_audit_line(std::string& out, const audit_record& r);

/// Wall-clock nanoseconds since the Unix epoch.
std::int64_t wall_clock_ns() noexcept;

/// Settings of the audit file.
struct audit_options {
  /// A file, appended to (created 0640 when missing); "-" for standard output.
  std::string path;
  /// Bytes of lines waiting for the disk at most; lines beyond are dropped and counted. 16 MiB
  /// hold ~40000 typical lines: seconds of a busy server's tasks while the disk stalls.
  std::size_t max_queued_bytes = std::size_t{16} << 20;
};

/// @brief The audit file: write() on the event loop, the disk on a thread of its own.
class audit_log {
public:
  /// Opens the file. Throws std::system_error naming the path when it cannot.
  explicit audit_log(audit_options options);
  ~audit_log();
  audit_log(const audit_log&) = delete;
  audit_log& operator=(const audit_log&) = delete;

  /// Queues the task's line. False when the queue was full (the line is dropped and counted).
  bool write(const audit_record& r);
  /// SIGHUP: opens the path again (after a rotation moved the file away); lines queued from now
  /// on go to the new file. False, with `error` set, when it cannot be opened: the old file
  /// stays in use.
  bool reopen(std::string& error);
  /// Waits until every line queued so far is written (tests; shutdown does it anyway).
  void flush();

  const std::string& path() const noexcept { return options_.path; }
  std::uint64_t written() const noexcept;
  std::uint64_t dropped() const noexcept;
  /// Failed writes to the file (a full disk): the lines of that batch are lost.
  std::uint64_t write_errors() const noexcept { return write_errors_.load(); }

private:
  struct file;
  audit_options options_;
  std::shared_ptr<file> file_; // used by the writer thread only, once constructed
  std::atomic<std::uint64_t> write_errors_{0};
  std::unique_ptr<writer_thread<std::string>> writer_; // last: stopped (and drained) first
};

} // namespace detour::cli
