// SPDX-License-Identifier: MIT
// cli/server.hpp: the QUIC server of `detour serve` (RFC 9000): UDP endpoints, packets routed to
// their connection by destination connection ID, version negotiation (§6), stateless reset
// (§10.3), optional Retry (§8.1.2), the connection limit, graceful shutdown and certificate
// reload.
#pragma once

#include "connection.hpp"
#include "event_loop.hpp"
#include "log.hpp"
#include "quic_stream.hpp"
#include "serve_config.hpp"
#include "tls.hpp"
#include "udp.hpp"

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace detour::cli {

/// Fills |out| with cryptographically random bytes (getrandom); aborts if the kernel cannot.
void fill_random(std::span<std::uint8_t> out) noexcept;

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

/// Server-wide counters.
struct server_stats {
  std::uint64_t connections = 0; ///< accepted
  std::uint64_t refused = 0;     ///< over --max-connections or while shutting down
  std::uint64_t retries = 0;     ///< Retry packets sent
  std::uint64_t version_negotiations = 0;
  std::uint64_t stateless_resets = 0;
};

class server {
public:
  /// Packets a connection writes in one burst, at most (the kernel's UDP_MAX_SEGMENTS).
  static constexpr std::size_t max_train_packets = 64;

  /// Binds every listen address of |config|. Throws std::system_error naming the address.
  server(event_loop& loop, const serve_config& config, tls_context tls, logger& log);
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
  /// The secret behind stateless reset tokens and Retry tokens; random per process.
  std::span<const std::uint8_t> secret() const noexcept { return secret_; }
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

  std::size_t connection_count() const noexcept { return connections_.size(); }
  const server_stats& stats() const noexcept { return stats_; }

private:
  void on_readable(endpoint& ep);
  void on_writable(endpoint& ep);
  void on_packet(endpoint& ep, const received_datagram& d, std::span<const std::uint8_t> pkt);
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
  std::array<std::uint8_t, 32> secret_{};
  std::vector<std::unique_ptr<endpoint>> endpoints_;
  receive_batch batch_;
  std::vector<std::uint8_t> scratch_;
  std::unordered_map<std::string, connection*> routes_; // CID bytes -> connection
  std::unordered_map<connection*, std::unique_ptr<connection>> connections_;
  std::vector<connection*> dead_;
  deferred reaper_;
  server_stats stats_;
  std::size_t peak_blocks_ = 0; // stream blocks in use at the last peak (trim_memory)

  // Stateless resets are rate limited (RFC 9000 §10.3.3): a token bucket refilled each second.
  timestamp reset_bucket_refill_ = 0;
  std::uint32_t reset_bucket_ = 0;

  bool shutting_down_ = false;
  std::function<void()> on_drained_;
  std::unique_ptr<timer> drain_timer_;
};

} // namespace detour::cli
