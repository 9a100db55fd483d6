// SPDX-License-Identifier: MIT
// cli/workers.hpp: `detour serve --workers N`: N QUIC servers (cli/server.hpp) in one process,
// each with its own event loop and its own SO_REUSEPORT sockets on every listen address. The
// kernel hands each datagram to the worker its connection ID names (udp_socket::
// steer_by_connection_id) and hashes the rest; --placement decides where new connections go.
// Worker 0 runs on the caller's loop, the others on threads. A mailbox per worker (mutex +
// eventfd) carries the new connections placed on it by another worker, the datagrams that
// reached the wrong worker without the kernel's steering, and the signals' work (reload,
// drain).
#pragma once

#include "event_loop.hpp"
#include "log.hpp"
#include "serve_config.hpp"
#include "server.hpp"
#include "tls.hpp"
#include "udp.hpp"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string_view>
#include <thread>
#include <vector>

namespace detour::cli {

/// `--workers 0`: one worker per core the process may run on (sched_getaffinity), at least 1
/// and at most server_group::max_workers.
std::size_t default_worker_count() noexcept;

/// Calls and datagrams for one event loop from any thread. An eventfd wakes the loop; the
/// queues are swapped out under the mutex and run on the loop's thread.
class mailbox {
public:
  /// |deliver| runs (on |loop|'s thread) for every datagram posted.
  mailbox(event_loop& loop, std::function<void(const forwarded_datagram&)> deliver);
  ~mailbox();
  mailbox(const mailbox&) = delete;
  mailbox& operator=(const mailbox&) = delete;

  /// Thread-safe: |fn| runs on the loop's thread soon, after the calls posted before it.
  void post(std::function<void()> fn);
  /// Thread-safe: the datagram is delivered on the loop's thread soon.
  void post(forwarded_datagram&& d);

private:
  void wake();
  void on_ready();

  int fd_ = -1;
  std::function<void(const forwarded_datagram&)> deliver_;
  std::unique_ptr<io_watch> watch_;
  std::mutex mutex_;
  std::vector<std::function<void()>> calls_;      // guarded by mutex_
  std::vector<forwarded_datagram> datagrams_;     // guarded by mutex_
  std::vector<std::function<void()>> run_calls_;  // loop thread only
  std::vector<forwarded_datagram> run_datagrams_; // loop thread only
};

/// The totals of all workers' counters (each read atomically, not all at one instant).
struct worker_totals {
  std::uint64_t connections = 0;
  std::uint64_t open = 0;
  std::uint64_t refused = 0;
  std::uint64_t retries = 0;
  std::uint64_t version_negotiations = 0;
  std::uint64_t stateless_resets = 0;
  std::uint64_t forwarded = 0;
};

/// @brief The workers of one `detour serve` process. Every call is made on the thread of the
/// loop given to the constructor (the main thread: signals, metrics endpoint).
class worker_group {
public:
  /// Makes |count| servers and binds their sockets (all of them before any thread starts, so a
  /// bind error is thrown here: std::system_error naming the address). A listen port 0 becomes
  /// the port the kernel gave worker 0, for every worker. With |count| 1 the server is exactly
  /// the single-loop server: no SO_REUSEPORT, no tag on the log lines.
  worker_group(event_loop& loop, const serve_config& config, const tls_context& tls, logger& log,
               std::size_t count);
  /// Stops the worker threads (if still running), joins them, then destroys the servers.
  ~worker_group();
  worker_group(const worker_group&) = delete;
  worker_group& operator=(const worker_group&) = delete;

  /// Starts the threads of workers 1..N-1, with every signal blocked in them (the main
  /// thread's signalfd receives them).
  void start();
  std::size_t size() const noexcept { return workers_.size(); }
  /// How new connections are placed: "pack" or "spread" (--placement; spread when the kernel
  /// cannot steer packets by connection ID), or "single" with one worker.
  std::string_view placement() const noexcept {
    return workers_.size() < 2 ? "single" : group_.packing ? "pack" : "spread";
  }

  std::vector<socket_address> local_addresses() const;
  bool gso_available() const noexcept;
  /// Thread-safe (atomic counters): for the metrics endpoint and the summary line.
  worker_totals totals() const noexcept;

  /// SIGHUP: every worker's new connections use |tls| from now on.
  void replace_tls(const tls_context& tls);
  /// SIGINT/SIGTERM: every worker drains (server::begin_shutdown); |on_done| runs on the main
  /// loop once all have. A second call closes every connection at once.
  void begin_shutdown(std::function<void()> on_done);

  /// Liveness, for a service manager's watchdog: the workers (by index) that have not yet run
  /// the call the previous heartbeat() put in their mailbox. When there are none, a new round
  /// is put in every worker's mailbox, answered as soon as its loop gets to it. Called
  /// periodically from the main loop: an empty result means every loop turned since the
  /// previous call.
  std::vector<std::size_t> heartbeat();

private:
  /// Joins the kernel's steering to worker 0's sockets (cli/udp.hpp), and decides packing.
  void steer(logger& log);
  struct worker {
    std::unique_ptr<event_loop> own_loop; // null for worker 0 (the caller's loop)
    event_loop* loop = nullptr;
    serve_config config;
    logger log;
    std::unique_ptr<server> srv;
    std::unique_ptr<mailbox> box;
    std::thread thread;
    std::atomic<std::uint64_t> answered{0}; // the last heartbeat round its loop ran
  };
  void on_worker_drained();
  void stop_threads();

  event_loop& main_loop_;
  server_group group_;
  std::vector<std::unique_ptr<worker>> workers_;
  std::size_t drained_ = 0;
  std::function<void()> on_drained_;
  std::uint64_t heartbeat_round_ = 0; // the round last put in the mailboxes
};

} // namespace detour::cli
