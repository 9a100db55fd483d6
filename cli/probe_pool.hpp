// SPDX-License-Identifier: MIT
// cli/probe_pool.hpp: the connection pool of `detour probe`, as g3proxy keeps its own
// (PROTOCOL-NOTES "Connection pool"): `connections` QUIC connections kept open, each serving
// at most `reuse_limit` tasks with match ids counted from 0 and then closed with application
// code 0 "finished"; tasks wait for stream credit at most the stream-open timeout. Also hands
// out connections of their own to the modes that script streams by hand (check, abuse).
#pragma once

#include "event_loop.hpp"
#include "log.hpp"
#include "probe_quic.hpp"
#include "probe_task.hpp"

#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <vector>

namespace detour::cli::probe {

/// Pool settings. The defaults are g3proxy's.
struct pool_config {
  quic_config quic;
  /// Connections kept open (g3proxy min_idle_count: 32).
  std::size_t connections = 32;
  /// Tasks one connection serves before it is closed with 0 "finished" (g3proxy
  /// connection_reuse_limit: 16).
  std::size_t reuse_limit = 16;
  /// How long a task may wait for a connection with stream credit (g3proxy
  /// stream_open_timeout: 30 s).
  nanoseconds stream_open_timeout = 30'000'000'000;
  /// Connection attempts that may fail in a row before the server counts as unreachable: then
  /// waiting and new tasks fail at once with failure::connect (a load run against a dead
  /// server ends in seconds, not at its deadline) while one attempt at a time looks for the
  /// server's return; the next completed handshake ends that state. Three rides out a lost
  /// packet or two without mistaking them for an outage.
  std::size_t max_connect_failures = 3;
  /// Open a connection only for a task waiting for one (at most `connections` at once), never
  /// to keep the pool full: `probe handshakes` then makes exactly one connection per task.
  bool dial_on_demand = false;
};

/// Counters of a pool's life.
struct pool_stats {
  std::uint64_t connections_opened = 0;
  std::uint64_t handshakes = 0;       ///< completed
  std::uint64_t resumed = 0;          ///< of which resumed a TLS session
  std::uint64_t connect_failures = 0; ///< closed before the handshake completed
  std::uint64_t closed_by_server = 0; ///< CONNECTION_CLOSE from the server, any code
  std::uint64_t idle_timeouts = 0;
  std::uint64_t finished_closes = 0; ///< closed by us with 0 "finished"
  std::vector<nanoseconds> handshake_times;
  std::string last_connect_error;
};

class client_pool;

/// A connection and what the pool knows of it.
struct pooled_connection {
  std::unique_ptr<quic_connection> quic;
  std::size_t tasks_started = 0; ///< also the next match id (& 0xFFFF)
  std::size_t active = 0;
  bool dedicated = false; ///< outside the pool's rotation: tasks only when asked for it
  bool retiring = false;  ///< reuse limit reached: closed once its tasks are done
  bool reported = false;  ///< the close was handled
};

/// Runs tasks on QUIC connections. Single-threaded, driven by the event loop through
/// run_until(); every callback it makes runs from the loop, never from inside ngtcp2.
class client_pool final : public connection_observer {
public:
  using task_done = std::function<void(const task_result&)>;

  client_pool(event_loop& loop, const tls_context& tls, pool_config config, logger& log);
  ~client_pool();
  client_pool(const client_pool&) = delete;
  client_pool& operator=(const client_pool&) = delete;

  /// Queues a task for the next pooled connection with room. |done| is called exactly once.
  void submit(task_plan plan, task_done done);
  /// Queues a task for one particular connection (a dedicated one, say).
  void submit_on(pooled_connection& c, task_plan plan, task_done done);

  /// Opens a connection of its own, outside the pool's rotation.
  pooled_connection& dial();
  /// Runs the loop until |c| completed its handshake or closed; true when established.
  bool wait_established(pooled_connection& c, nanoseconds deadline);
  /// Takes the connection's next match id as a task would (for hand-made streams).
  std::uint16_t take_match_id(pooled_connection& c);
  /// Closes a connection with 0 "finished" (or another code and reason).
  void close(pooled_connection& c, std::uint64_t code = 0, std::string_view reason = "finished");

  /// Runs the event loop until |done()| holds or |deadline| passes. Returns done().
  bool run_until(const std::function<bool()>& done, nanoseconds deadline);
  /// Fails what is queued or running with |why| (failure::deadline) and closes every
  /// connection with 0 "finished". The pool can be used again afterwards.
  void shutdown(std::string_view why);

  /// Tasks queued or running.
  std::size_t outstanding() const noexcept { return pending_.size() + running_; }
  const pool_stats& stats() const noexcept { return stats_; }
  const pool_config& config() const noexcept { return config_; }
  event_loop& loop() noexcept { return loop_; }
  logger& log() noexcept { return log_; }

private:
  class binding;
  friend class binding;

  struct pending_task {
    task_plan plan;
    task_done done;
    pooled_connection* target = nullptr; // null: any pooled connection
    nanoseconds queued_at = 0;
  };

  // connection_observer (called by the pool's own connections only)
  void on_handshake(quic_connection& c) override;
  void on_streams_available(quic_connection& c) override;
  void on_closed(quic_connection& c) override;

  pooled_connection* find(quic_connection& q) noexcept;
  pooled_connection& open_connection(bool dedicated);
  void dispatch();
  bool start(pooled_connection& c, pending_task& p);
  void task_finished(binding& b);
  void reap();
  void check_pending_timeouts();
  void fail_pending(failure f, const std::string& why, pooled_connection* only = nullptr);

  event_loop& loop_;
  const tls_context& tls_;
  pool_config config_;
  logger& log_;
  receive_batch batch_;
  std::list<pooled_connection> connections_;
  std::deque<pending_task> pending_;
  std::vector<std::unique_ptr<binding>> bindings_;
  std::vector<std::unique_ptr<binding>> finished_;
  std::vector<std::unique_ptr<quic_connection>> graveyard_;
  std::size_t running_ = 0;
  std::size_t connect_failures_in_row_ = 0;
  std::uint64_t next_connection_id_ = 1;
  bool shutting_down_ = false;
  pool_stats stats_;
  deferred reap_later_;
  deferred dispatch_later_;
  timer pending_timer_;
};

} // namespace detour::cli::probe
