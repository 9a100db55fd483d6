// SPDX-License-Identifier: MIT
// cli/serve_config.hpp: everything `detour serve` can be told, with the defaults and the reason
// for each (docs/serve.md explains them for users).
#pragma once

#include "event_loop.hpp"
#include "inspection_options.hpp"
#include "log.hpp"
#include "udp.hpp"

#include <detour/response.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace detour::cli {

class inspection;

/// The smallest --idle-timeout accepted. The smaller of both peers' values applies, and g3proxy
/// keeps its idle pooled connections alive with a PING every 10 s: at 10 s the PING is due just
/// as the connection times out (it dies after 10 s of silence), and 11 s leaves less than a
/// round trip. Twice the keep-alive interval survives one lost PING and slow networks.
inline constexpr timestamp min_idle_timeout = 20 * nanoseconds_per_second;

struct serve_config {
  /// UDP addresses to listen on. g3proxy's default peer port is 2888; loopback by default so a
  /// first start exposes nothing.
  std::vector<socket_address> listen{socket_address::ipv4_loopback(2888)};

  /// PEM certificate chain and key. Empty: the development set in the state folder.
  std::string certificate_file;
  std::string private_key_file;
  /// PEM CA file for mutual TLS; empty: no client certificate asked for.
  std::string client_ca_file;
  /// Where the development certificates live (see certs.hpp default_state_dir()).
  std::string state_dir;
  /// ALPN names accepted; empty accepts any offer and none (g3proxy offers none).
  std::vector<std::string> alpn;

  /// The answer to every task. Continue relays through us (the pass-through echo).
  detour::action decision = detour::action::proceed;

  /// Event loops (threads), each with its own SO_REUSEPORT sockets (cli/workers.hpp). 0: one
  /// per core the process may use. A proxy fleet's many connections use them all (see
  /// placement); one connection is served by one worker, so a single task never uses more
  /// than one core.
  std::size_t workers = 0;
  /// Where new connections go when there are several workers (--placement): pack fills the
  /// lowest-numbered worker that keeps up before the next; spread leaves it to the kernel's
  /// hash of each client's address and port (equal shares).
  enum class placement { pack, spread };
  placement placement = placement::pack;
  /// Connections at once, all workers together; more are refused with CONNECTION_REFUSED.
  /// g3proxy keeps 32 per proxy; room for many proxies, small enough that a flood cannot
  /// exhaust memory.
  std::size_t max_connections = 4096;
  /// Concurrent bidirectional streams a client may open per connection (MAX_STREAMS), raised
  /// again as streams close. g3proxy needs 2 per task; at least 64 so that a connection serving
  /// its 16 tasks (32 streams) never waits for credit (g3proxy would hang for 30 s).
  std::uint64_t max_streams = 128;
  /// QUIC max_idle_timeout. Above g3proxy's 60 s so that the client's value decides, and
  /// pooled connections (10 s keep-alives) are never cut by us; never below min_idle_timeout.
  timestamp idle_timeout = 120 * nanoseconds_per_second;
  /// A stream must deliver its whole header (and the north payload) within this. Slow or
  /// silent streams are reset. g3proxy writes a header in one go right after opening.
  timestamp header_timeout = 10 * nanoseconds_per_second;
  /// A north stream answered "continue" waits this long for its south stream. g3proxy opens it
  /// within a round trip of our answer, but loss can delay the packet that carries it by
  /// several retransmission timeouts; g3proxy itself gives up opening a stream after 30 s
  /// (stream_open_timeout), so waiting longer is pointless and waiting less fails live tasks.
  timestamp pair_timeout = 30 * nanoseconds_per_second;
  /// Largest PROXY v2 header accepted (16 + length). g3proxy's encoder buffer is 536 bytes.
  std::size_t max_header_size = 4096;
  /// Largest north payload (E6) accepted. g3proxy's WebSocket payload is a few header lines.
  std::size_t max_payload_size = std::size_t{64} * 1024;
  /// Per-stream receive window (initial_max_stream_data_bidi_remote, never auto-grown): the most
  /// a stream buffers before its echo catches up.
  std::uint64_t stream_window = std::uint64_t{256} * 1024;
  /// Per-connection receive window (initial_max_data, never auto-grown), and the cap on echo
  /// bytes all of a connection's streams keep until acknowledged (but at least 32 send buffers:
  /// g3proxy's 16 tasks x 2 streams; connection.cpp echo_budget).
  std::uint64_t connection_window = std::uint64_t{4} * 1024 * 1024;
  /// Bytes a stream keeps that the peer has not acknowledged yet; the echo waits beyond this.
  std::size_t send_buffer = std::size_t{256} * 1024;
  /// Largest UDP payload we send (ngtcp2's max_tx_udp_payload_size). Packets start at 1200
  /// bytes and grow only as far as path MTU discovery (RFC 9000 §14.3) proves the path carries
  /// them and the client's max_udp_payload_size allows: 9000-byte jumbo frames (and loopback)
  /// carry 8952, so a byte costs a sixth of the packets; an Ethernet path stays at 1452.
  std::size_t max_udp_payload = 8952;
  /// --max-udp-payload's range: QUIC's minimum datagram (RFC 9000 §14), and 16 KiB so that a
  /// send train (server::scratch, about 90 KiB) still holds several packets.
  static constexpr std::size_t min_udp_payload = 1200;
  static constexpr std::size_t max_udp_payload_limit = std::size_t{16} * 1024;
  /// On SIGINT/SIGTERM: how long running tasks may finish before every connection is closed.
  timestamp drain_timeout = 30 * nanoseconds_per_second;
  /// QUIC handshake deadline.
  timestamp handshake_timeout = 10 * nanoseconds_per_second;
  /// Validate client addresses with a Retry before creating any state (RFC 9000 §8.1.2).
  bool retry = false;
  /// Where each connection's qlog goes (cli/qlog.hpp); empty: none. For debugging: a file per
  /// connection, open while it is.
  std::string qlog_dir;

  log_level level = log_level::info;
  log_format format = log_format::text;

  /// Policy, audit, capture and metrics (inspection_options.hpp).
  inspection_options inspect;
  /// Not an option: the running inspection features (set by run_serve before the server
  /// starts; the tasks report to them). Null: --action for every task, nothing recorded.
  inspection* features = nullptr;
};

} // namespace detour::cli
