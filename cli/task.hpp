// SPDX-License-Identifier: MIT
// cli/task.hpp: the detour tasks of one connection (g3proxy stream detour): each client stream
// is read up to its header through the library, north requests are answered, south streams are
// paired with their north by match id, and both streams are echoed with real flow control.
#pragma once

#include "event_loop.hpp"
#include "log.hpp"
#include "quic_stream.hpp"
#include "serve_config.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

struct ngtcp2_conn;

namespace detour::cli {

/// Counters of a connection's tasks.
struct task_counters {
  std::uint64_t tasks = 0;       ///< north requests answered
  std::uint64_t streams = 0;     ///< streams opened by the client
  std::uint64_t bytes_in = 0;    ///< relayed bytes received from the client
  std::uint64_t bytes_out = 0;   ///< relayed bytes accepted for sending back
  std::uint64_t bad_streams = 0; ///< streams reset for a protocol error or a timeout
};

/// The tasks of one connection. The connection forwards stream events; the set decides, steps
/// the library's machines, logs each task when it ends, and owns every stream.
class task_set {
public:
  struct context {
    const serve_config& config;
    logger& log;
    block_pool& pool;
    quic_stream::listener& listener; ///< the connection
    const std::string& conn_id;      ///< for log lines
  };

  explicit task_set(const context& ctx);
  ~task_set();
  task_set(const task_set&) = delete;
  task_set& operator=(const task_set&) = delete;

  /// The client opened stream |id|: returns the stream object that receives its events.
  quic_stream& open_stream(ngtcp2_conn* conn, std::int64_t id, timestamp now);
  /// Something happened on |s|: its task is stepped at the next step().
  void on_event(quic_stream& s);
  /// Steps every task that had events. Ended tasks are logged and freed once both of their
  /// streams are closed.
  void step(timestamp now);
  /// ngtcp2 closed |s| (quic_stream::on_closed was called).
  void on_closed(quic_stream& s, timestamp now);

  /// The earliest header, pairing or drain deadline; empty when none.
  std::optional<timestamp> next_deadline() const;
  /// Fails what is due at |now| (resets slow headers, unpaired halves).
  void on_deadline(timestamp now);

  /// Shutdown: every stream opened from now on is reset (code `shutting_down`).
  void refuse_new() noexcept { refusing_ = true; }
  /// The connection is closing or closed under the tasks: log the running ones as ended by
  /// |reason| (calmly: g3proxy closes a used-up connection right after its last task) and free
  /// everything. No ngtcp2 call is made.
  void connection_closed(std::string_view reason, timestamp now);

  /// Streams and tasks not yet finished.
  std::size_t active() const noexcept;
  const task_counters& counters() const noexcept { return counters_; }

  struct impl;

private:
  std::unique_ptr<impl> impl_;
  task_counters counters_;
  bool refusing_ = false;
};

} // namespace detour::cli
