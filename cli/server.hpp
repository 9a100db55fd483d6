// SPDX-License-Identifier: MIT
// cli/server.hpp: the QUIC server of `detour serve` (RFC 9000): UDP endpoints, packets routed to
// their connection by destination connection ID, version negotiation (§6), stateless reset
// (§10.3), optional Retry (§8.1.2), the connection limit, graceful shutdown and certificate
// reload. With `--workers` several servers, one per worker thread, share a server_group: the
// connection IDs they issue name their worker, which the kernel steers each packet to; a new
// connection may be placed on another worker (--placement pack), and a packet that reaches the
// wrong worker is handed to the right one (cli/workers.hpp).
#pragma once

#include "connection.hpp"
#include "event_loop.hpp"
#include "log.hpp"
#include "quic_stream.hpp"
#include "random.hpp"
#include "serve_config.hpp"
#include "tls.hpp"
#include "udp.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace detour::cli {

/// The time stamped into Retry and NEW_TOKEN tokens. The key behind them (server::secret) is
/// random per process, so a token never outlives the process anyway: the monotonic clock
/// serves as well as a wall clock and never jumps.
timestamp token_time() noexcept;

/// One listening socket.
struct endpoint {
  udp_socket socket;
  std::unique_ptr<io_watch> watch;
  std::vector<connection*> blocked; ///< connections waiting for the socket to drain
};

/// Server-wide counters. Atomic: the metrics endpoint reads every worker's from its own thread
/// (relaxed: each counter stands alone).
struct server_stats {
  using counter = std::atomic<std::uint64_t>;
  counter connections{0}; ///< accepted
  counter refused{0};     ///< over --max-connections or while shutting down
  counter retries{0};     ///< Retry packets sent
  counter version_negotiations{0};
  counter stateless_resets{0};
  counter forwarded{0}; ///< packets handed to the worker that owns their connection
};

/// A datagram one worker received for a connection of another: a copy, since the receive
/// buffer is reused at once (only packets whose 4-tuple moved take this path).
struct forwarded_datagram {
  std::size_t endpoint = 0; ///< index of the listen address (same order in every worker)
  socket_address remote;
  socket_address local;
  std::vector<std::uint8_t> bytes;
  unsigned ecn = 0;
  bool placed = false; ///< a new connection's packet, placed on that worker (packing)
};

/// How late a worker is (--placement pack): how long the datagrams it reads waited in its
/// socket while it was awake, the most in the last 10 ms window or the current one
/// (microseconds; 0 unless it ran for at least half of the last window), and when that was
/// last said (CLOCK_REALTIME ns). Written by the worker, read by any (relaxed: each alone).
struct worker_lag {
  std::atomic<std::uint32_t> lag_us{0};
  std::atomic<std::uint64_t> at{0};
};

/// --placement pack: a worker whose datagrams waited less than this keeps up (2 ms: under a
/// handshake burst on this figure's worker, tasks stay well within g3proxy's timeouts and a
/// 5 ms p99; docs/performance.md has the 1, 2 and 4 ms measured).
inline constexpr std::uint32_t keeps_up_lag_us = 2000;
/// A lag older than this is stale: that worker read nothing since, so it waits for nothing.
inline constexpr std::uint64_t lag_stale_ns = 50'000'000;

/// --placement pack: the lowest-numbered worker whose lag is under |keeps_up_us|, else the
/// least late (the lowest-numbered among equals).
std::size_t choose_worker(std::span<const std::uint32_t> lag_us,
                          std::uint32_t keeps_up_us) noexcept;

/// What the servers of one process share; made before them, outliving them. One worker: a
/// group of one, no forwarding.
struct server_group {
  /// Workers, at most max_workers: the first byte of every connection ID we issue is the
  /// index of the worker that owns the connection.
  std::size_t workers = 1;
  static constexpr std::size_t max_workers = 256;
  /// The key of stateless reset tokens, Retry and NEW_TOKEN tokens: one for all workers, so
  /// that any of them can reset any connection and accept any token. Random per process.
  std::array<std::uint8_t, 32> secret{};
  /// Connections open in all workers together: --max-connections is a process-wide limit.
  std::atomic<std::size_t> connections{0};
  /// The last server.connections_full line (any worker), and refusals at the limit since then:
  /// one line every 10 s at most for the whole process.
  std::atomic<timestamp> full_warned_at{0};
  std::atomic<std::uint64_t> refused_unreported{0};
  /// Hands |d| to worker |to| (thread-safe; it runs on that worker's thread later).
  std::function<void(std::size_t to, forwarded_datagram&& d)> forward;
  /// The kernel hands each datagram to the worker its connection ID names (a reuseport
  /// program on every listen address): set once, before the workers start.
  bool steering = false;
  /// New connections are placed by lag (--placement pack, with steering); else by the hash.
  bool packing = false;
  std::array<worker_lag, max_workers> lags{};

  /// The worker a new connection should go to (packing), from every worker's lag at |now|
  /// (CLOCK_REALTIME ns).
  std::size_t place(std::uint64_t now) const noexcept;
};

class server {
public:
  /// Packets a connection writes in one burst, at most (the kernel's UDP_MAX_SEGMENTS).
  static constexpr std::size_t max_train_packets = 64;

  /// Binds every listen address of |config| (with SO_REUSEPORT when |group| has several
  /// workers). |index|: this server's worker number in |group|. Throws std::system_error naming
  /// the address.
  server(event_loop& loop, const serve_config& config, tls_context tls, logger& log,
         server_group& group, std::size_t index = 0);
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  /// The addresses actually bound (a port 0 in the configuration becomes the kernel's choice).
  std::vector<socket_address> local_addresses() const;
  /// Whether every endpoint sends packet trains with UDP GSO (else one sendmmsg entry each).
  bool gso_available() const noexcept;

  /// SIGINT/SIGTERM: stop accepting connections and tasks; connections close as their tasks
  /// end; after |config.drain_timeout| the rest are closed; then |on_done| runs.
  void begin_shutdown(std::function<void()> on_done);
  /// SIGHUP: new connections use |tls|; existing ones keep theirs.
  void replace_tls(tls_context tls);

  // --- for connections -----------------------------------------------------------------------
  event_loop& loop() noexcept { return loop_; }
  const serve_config& config() const noexcept { return config_; }
  logger& log() noexcept { return log_; }
  block_pool& pool() noexcept { return pool_; }
  /// The secret behind stateless reset tokens and Retry tokens; random per process, shared by
  /// its workers.
  std::span<const std::uint8_t> secret() const noexcept { return group_.secret; }
  /// Fills |cid| with a new connection ID of |length| bytes: random, but for the first byte,
  /// which names this worker when there are several (at least 8 random bytes remain).
  void new_cid(ngtcp2_cid& cid, std::size_t length) const noexcept;
  /// A datagram another worker received for one of our connections, or for a new connection
  /// it placed here (this worker's thread).
  void on_forwarded(const forwarded_datagram& d);
  /// Asks the kernel to hand each datagram to the worker its connection ID names (every
  /// listen address; worker 0, once its sockets are bound). 0, or the errno of the first
  /// address that could not.
  int steer_by_connection_id() noexcept;
  void associate(const ngtcp2_cid& cid, connection& c);
  void dissociate(const ngtcp2_cid& cid);
  send_result send(endpoint& ep, const socket_address& remote, const socket_address& local,
                   std::span<const std::uint8_t> data, std::size_t segment, unsigned ecn);
  void wait_writable(endpoint& ep, connection& c);
  /// Where a connection writes its packets before sending them: one buffer for all, since
  /// only one connection writes at a time (max_train_packets full-sized packets).
  std::span<std::uint8_t> scratch() noexcept { return scratch_; }
  /// The connection has ended; it is destroyed after the current callback returns.
  void connection_done(connection& c);
  /// A connection's --qlog file could not be made or written: the first failure on this
  /// worker is logged (a full disk would otherwise log once per connection).
  void qlog_failed(std::string_view error);

  std::size_t connection_count() const noexcept { return connections_.size(); }
  const server_stats& stats() const noexcept { return stats_; }

private:
  void on_readable(endpoint& ep);
  void warn_full();
  void on_writable(endpoint& ep);
  /// |placed|: another worker chose this one for the packet's new connection (packing).
  void on_packet(endpoint& ep, const received_datagram& d, std::span<const std::uint8_t> pkt,
                 bool placed = false);
  /// Packing: an Initial (or 0-RTT) packet of a connection no worker has yet goes to the worker
  /// group_.place() picks, and every later one with the same client and client-chosen ID to
  /// the same worker. False when it stays here.
  bool place_elsewhere(endpoint& ep, const received_datagram& d, std::span<const std::uint8_t> pkt,
                       std::span<const std::uint8_t> dcid, std::uint32_t version);
  /// Hands a copy of |pkt| to worker |owner|; |placed|: a new connection placed there.
  void forward(endpoint& ep, const received_datagram& d, std::span<const std::uint8_t> pkt,
               std::size_t owner, bool placed);
  /// Packing: how long the oldest datagram of a batch waited, into this worker's lag.
  void note_lag(const received_datagram& oldest) noexcept;
  /// |version|: the packet's, as decoded by on_packet (long header only).
  bool forward_to_owner(endpoint& ep, const received_datagram& d, std::span<const std::uint8_t> pkt,
                        std::span<const std::uint8_t> dcid, std::uint32_t version);
  void accept(endpoint& ep, const received_datagram& d, std::span<const std::uint8_t> pkt);
  void send_version_negotiation(endpoint& ep, const received_datagram& d,
                                std::span<const std::uint8_t> dcid,
                                std::span<const std::uint8_t> scid);
  void send_stateless_reset(endpoint& ep, const received_datagram& d, std::size_t size,
                            std::span<const std::uint8_t> dcid);
  void send_retry(endpoint& ep, const received_datagram& d, const ngtcp2_pkt_hd& hd);
  void send_refusal(endpoint& ep, const received_datagram& d, const ngtcp2_pkt_hd& hd,
                    std::uint64_t error);
  void reap();
  void trim_memory();
  void check_drained();

  event_loop& loop_;
  const serve_config& config_;
  tls_context tls_;
  logger& log_;
  block_pool pool_;
  server_group& group_;
  std::size_t index_;
  std::uint64_t qlog_failures_ = 0;
  std::vector<std::unique_ptr<endpoint>> endpoints_;
  receive_batch batch_;
  std::vector<std::uint8_t> scratch_;
  /// Up to N bytes as a map key, held in place: a connection ID is looked up for every packet
  /// received, so no allocation (a std::string of an 18-byte CID would allocate). The bytes
  /// past N are dropped.
  template <std::size_t N>
  struct inline_key {
    static_assert(N < 256);
    std::array<std::uint8_t, N> bytes{};
    std::uint8_t length = 0;
    inline_key() = default;
    inline_key(const void* p, std::size_t n) noexcept { append(p, n); }
    void append(const void* p, std::size_t n) noexcept {
      n = std::min(n, N - length);
      std::memcpy(bytes.data() + length, p, n);
      length = static_cast<std::uint8_t>(length + n);
    }
    std::string_view view() const noexcept {
      return {reinterpret_cast<const char*>(bytes.data()), length};
    }
    bool operator==(const inline_key& o) const noexcept { return view() == o.view(); }
    struct hash {
      // Client-chosen CIDs are keys too: the same hash std::string had, no weaker.
      std::size_t operator()(const inline_key& k) const noexcept {
        return std::hash<std::string_view>{}(k.view());
      }
    };
  };
  using cid_key = inline_key<20>; // RFC 9000 §17.2: at most 20 bytes
  std::unordered_map<cid_key, connection*, cid_key::hash> routes_; // CID -> connection
  std::unordered_map<connection*, std::unique_ptr<connection>> connections_;
  std::vector<connection*> dead_;
  deferred reaper_;
  server_stats stats_;
  std::size_t peak_blocks_ = 0; // stream blocks in use at the last peak (trim_memory)
  timestamp last_trim_ = 0;     // when trim_memory last gave memory back

  // Packing: where this worker sent the new connections it received (client address and
  // client-chosen ID -> worker), so that their retransmitted Initials and 0-RTT follow. Two
  // generations, the older dropped every 10 s or at 16,384 entries (a flood of Initials from
  // forged addresses holds at most 32,768, about 4 MiB): a handshake is long over by then.
  using placement_key = inline_key<48>; // a sockaddr_in6 (28 bytes) and an ID (at most 20)
  std::unordered_map<placement_key, std::uint16_t, placement_key::hash> placed_;
  std::unordered_map<placement_key, std::uint16_t, placement_key::hash> placed_before_;
  std::uint64_t placed_since_ = 0; // CLOCK_REALTIME ns
  // Packing: this worker's lag window (CLOCK_REALTIME ns, lags in ns).
  std::uint64_t lag_window_start_ = 0;
  std::uint64_t lag_window_max_ = 0;
  std::uint64_t lag_previous_max_ = 0;
  std::uint64_t lag_window_cpu_ = 0; // this thread's CPU time when the window began
  bool lag_busy_ = false;            // it ran at least half of the last window

  // Stateless resets are rate limited (RFC 9000 §10.3.3): a token bucket refilled each second.
  timestamp reset_bucket_refill_ = 0;
  std::uint32_t reset_bucket_ = 0;

  bool shutting_down_ = false;
  std::function<void()> on_drained_;
  std::unique_ptr<timer> drain_timer_;
};

} // namespace detour::cli
