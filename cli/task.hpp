// SPDX-License-Identifier: MIT
// cli/task.hpp: the detour tasks of one connection (g3proxy stream detour, docs/protocol.md "One
// task"), run by the library's io::server_connection: each client stream's header is read, north
// requests are answered with the configured action, south streams meet their north by match id,
// and each stream is echoed onto itself with real flow control.
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
#include <string_view>

struct ngtcp2_conn;

namespace detour::cli {

/// Counters of a connection's tasks.
struct task_counters {
  std::uint64_t tasks = 0;       ///< north requests answered
  std::uint64_t streams = 0;     ///< streams opened by the client
  std::uint64_t bytes_in = 0;    ///< relayed bytes taken from the client (both streams)
  std::uint64_t bytes_out = 0;   ///< relayed bytes handed back to the client
  std::uint64_t bad_streams = 0; ///< streams reset for a protocol error or a timeout
};

/// The tasks of one connection. The connection forwards stream events; the set steps the
/// library's machines, answers, pairs, relays, enforces the header and pairing deadlines, logs
/// each task when it ends and each bad stream, and owns every stream object.
class task_set {
public:
  struct context {
    const serve_config& config;
    logger& log;
    block_pool& pool;
    quic_stream::listener& listener; ///< the connection
    send_budget& budget;             ///< the connection's cap on unacknowledged echo bytes
    const std::string& conn_id;      ///< for log lines
  };

  explicit task_set(const context& ctx);
  ~task_set();
  task_set(const task_set&) = delete;
  task_set& operator=(const task_set&) = delete;

  /// The client opened stream |id|: returns the stream object that receives its events.
  quic_stream& open_stream(ngtcp2_conn* conn, std::int64_t id, timestamp now);
  /// Something happened on |s|: it is stepped at the next step().
  void on_event(quic_stream& s);
  /// Steps every stream that had events.
  void step(timestamp now);
  /// Marks every stream for the next step() (the connection's send budget has room again).
  void wake_all();
  /// ngtcp2 closed |s| (quic_stream::on_closed ran): it is freed once its task is logged.
  void on_closed(quic_stream& s, timestamp now);

  /// The earliest header or pairing deadline; empty when none.
  std::optional<timestamp> next_deadline() const;
  /// Fails what is due at |now|: slow headers, halves whose partner did not come.
  void on_deadline(timestamp now);

  /// Shutdown: every stream opened from now on is refused (code_shutting_down).
  void refuse_new() noexcept;
  /// The connection is closing or closed under the tasks: the running ones are logged as
  /// ended by |reason| (calmly: g3proxy closes a used-up connection right after its last
  /// task's FIN) and everything is freed. No ngtcp2 call is made; idempotent.
  void connection_closed(std::string_view reason, timestamp now);

  /// Streams not yet done (tasks running, headers in progress).
  std::size_t active() const noexcept;
  const task_counters& counters() const noexcept;

  struct impl;

private:
  std::unique_ptr<impl> impl_;
};

} // namespace detour::cli
