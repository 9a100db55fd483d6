// SPDX-License-Identifier: MIT
// cli/inspection.hpp: what `detour serve` does with each task beyond the echo: the policy's
// decision (policy.hpp), the audit record (audit.hpp), the plaintext capture (capture.hpp), the
// metrics (metrics.hpp) and a custom server's hook (hook.hpp), with their options, --help
// lines, SIGHUP reload and the inspector the relays run (detour/io/inspect.hpp).
#pragma once

#include "args.hpp"
#include "audit.hpp"
#include "capture.hpp"
#include "event_loop.hpp"
#include "hook.hpp"
#include "inspection_options.hpp"
#include "log.hpp"
#include "metrics.hpp"
#include "policy.hpp"
#include "udp.hpp"

#include <detour/io/inspect.hpp>
#include <detour/response.hpp>
#include <detour/session.hpp>

#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace detour::cli {

/// A policy file read and parsed: the policy, or the errors as "path:line:col: error: ..."
/// followed by the line and a caret.
struct policy_load {
  std::shared_ptr<const policy> value;
  std::vector<std::string> errors;
  std::vector<std::string> warnings;
};
policy_load load_policy(const std::string& path);

/// `detour serve --check-policy FILE`: prints the rules in words, or every error, to `out`.
/// Returns 0 when the file is a usable policy, 1 otherwise.
int check_policy_command(const std::string& path, std::FILE* out);

/// What the server keeps about a task from its answer to its end.
struct task_trace {
  const task_request* request = nullptr; ///< the library's request (the relays' context)
  audit_record record;
  timestamp started = 0;
  std::unique_ptr<tcp_conversation> conversation; ///< when the task is captured
  bool capture_stopped = false;                   ///< packets were dropped: the rest is not written
};

/// @brief The server's inspection features, shared by all connections (one per process). Its
/// task calls are thread-safe: with `--workers`, every worker thread reports to it (one mutex;
/// the relays' inspector takes it only when there is a capture or a hook to serve).
class inspection {
public:
  /// Loads the policy, opens the audit and capture files, starts the metrics endpoint and the
  /// summary timer. Throws std::runtime_error (std::system_error for files and sockets) with a
  /// message fit for the log.
  inspection(const inspection_options& options, event_loop& loop, logger& log,
             std::shared_ptr<task_hook> hook = {});
  ~inspection();
  inspection(const inspection&) = delete;
  inspection& operator=(const inspection&) = delete;

  /// Where the server's own counters come from when metrics are rendered.
  void set_gauges(std::function<metrics_gauges()> gauges) { gauges_ = std::move(gauges); }

  // --- from the tasks (cli/task.cpp) ------------------------------------------------------------

  /// A north request waits for its answer: decides it (the policy, else `configured`; while
  /// `draining`, continue becomes bypass), counts it, and starts its audit record and capture.
  /// The trace's record says the action to answer.
  std::shared_ptr<task_trace> begin_task(const task_request& t, std::string_view conn,
                                         action configured, bool draining, timestamp now);
  /// The task ended (`end`: "finished", an error name, or why the connection closed): writes
  /// its audit record, closes its conversation, counts it.
  void end_task(task_trace& t, std::uint64_t client_bytes, std::uint64_t remote_bytes,
                std::string_view end, timestamp now);
  /// A stream was reset for an error.
  void stream_error(errc e) {
    const std::lock_guard lock(mutex_);
    metrics_.stream_error(e);
  }
  /// A handshake failed ("tls" or "timeout").
  void handshake_failed(std::string_view reason) {
    const std::lock_guard lock(mutex_);
    metrics_.handshake_failed(reason);
  }

  /// The relays' inspector sees a chunk (serve_inspector); returns the verdict.
  io::verdict inspect(std::shared_ptr<task_trace>& trace,
                      std::unique_ptr<direction_inspector>& user, bool& looked_up,
                      const io::chunk<task_request>& c);

  // --- signals ----------------------------------------------------------------------------------

  /// SIGHUP: reloads the policy (a file with errors is refused, logged, and the old policy
  /// stays), reopens the audit and capture files. Running tasks are not touched.
  void reload();
  /// Waits until the audit and capture writers have written everything queued (tests).
  void flush();

  const metrics& counters() const noexcept { return metrics_; }
  std::shared_ptr<const policy> current_policy() const {
    const std::lock_guard lock(mutex_);
    return policy_;
  }
  /// The metrics endpoint's address, when there is one.
  std::optional<socket_address> metrics_address() const;
  /// The exposition text, as the endpoint serves it.
  std::string render_metrics() const;

private:
  void capture_chunk(task_trace& t, const io::chunk<task_request>& c, const io::verdict& v);
  void commit_capture(task_trace& t);
  void log_summary();

  // Guards everything below that tasks touch: the policy pointer, the metrics, the audit and
  // capture queues, live_.
  mutable std::mutex mutex_;
  inspection_options options_;
  event_loop& loop_;
  logger& log_;
  std::shared_ptr<task_hook> hook_;
  std::shared_ptr<const policy> policy_;
  std::unique_ptr<audit_log> audit_;
  std::unique_ptr<capture_file> capture_;
  metrics metrics_;
  std::function<metrics_gauges()> gauges_;
  std::unique_ptr<metrics_http> http_;
  std::unique_ptr<timer> summary_;
  std::uint64_t summary_tasks_ = 0; // tasks answered at the last summary
  // Tasks the relays must find (captured, or with a hook), by the request the relays see.
  std::unordered_map<const task_request*, std::shared_ptr<task_trace>> live_;
};

/// @brief The inspector of `detour serve`'s relays (an `io::inspector<task_request>`): finds
/// its task's trace on the first chunk, runs the custom hook, records the forwarded bytes in
/// the capture. Copies start fresh (each relay direction gets its own state).
class serve_inspector {
public:
  serve_inspector() = default;
  explicit serve_inspector(inspection* i) noexcept : inspection_(i) {}
  serve_inspector(const serve_inspector& o) noexcept : inspection_(o.inspection_) {}
  serve_inspector& operator=(const serve_inspector& o) noexcept {
    if (this != &o) {
      inspection_ = o.inspection_;
      trace_.reset();
      user_.reset();
      looked_up_ = false;
    }
    return *this;
  }
  serve_inspector(serve_inspector&&) noexcept = default;
  serve_inspector& operator=(serve_inspector&&) noexcept = default;
  ~serve_inspector() = default;

  io::verdict operator()(const io::chunk<task_request>& c) {
    if (inspection_ == nullptr) return io::verdict::pass();
    return inspection_->inspect(trace_, user_, looked_up_, c);
  }

private:
  inspection* inspection_ = nullptr;
  std::shared_ptr<task_trace> trace_;
  std::unique_ptr<direction_inspector> user_;
  bool looked_up_ = false;
};

static_assert(io::inspector<serve_inspector, task_request>);

} // namespace detour::cli
