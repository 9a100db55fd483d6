// SPDX-License-Identifier: MIT
// cli/probe_quic.hpp: one QUIC client connection of `detour probe`, set up the way g3proxy's
// detour client sets up its own (QUIC v1 over a connected UDP socket, TLS 1.3, no ALPN unless
// asked, idle timeout 60 s, keep-alive 10 s, zero streams granted to the server), with
// buffered stream writes, FIN, STOP_SENDING and RESET_STREAM, and every event reported.
#pragma once

#include "event_loop.hpp"
#include "pmtud.hpp"
#include "probe_buffer.hpp"
#include "qlog.hpp"
#include "tls.hpp"
#include "udp.hpp"

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

struct ngtcp2_conn;

namespace detour::cli::probe {

/// Transport settings of a client connection. The defaults are g3proxy's.
struct quic_config {
  /// The detour server.
  socket_address server;
  /// The name the server certificate is verified against: an IP address text checks an IP
  /// subjectAltName and sends no SNI (g3proxy's default: the server address); anything else
  /// checks a DNS name and is sent as SNI.
  std::string tls_name;
  /// Gives up a handshake that has not completed after this long.
  timestamp handshake_timeout = 10 * nanoseconds_per_second;
  /// max_idle_timeout: 60 s in g3proxy.
  timestamp idle_timeout = 60 * nanoseconds_per_second;
  /// A PING after this long without traffic: 10 s in g3proxy.
  timestamp keep_alive = 10 * nanoseconds_per_second;
  /// Receive window per stream: quinn's default (1.25 MB), which g3proxy keeps.
  std::uint64_t stream_window = 1'250'000;
  /// Receive window of the whole connection; data is consumed as it arrives, so this only has
  /// to cover the windows of the streams in flight at once (16 tasks x 2 streams x 1.25 MB).
  std::uint64_t connection_window = 40 * 1'250'000;
  /// Bytes a stream may hold unacknowledged before write_some() pushes back: large enough to
  /// fill the peer's stream window (1.25 MB in g3proxy's counterpart) with a little to spare.
  std::uint64_t stream_send_budget = 2 * 1024 * 1024;
  /// Largest UDP payload sent once path MTU discovery proved the path carries it, and the
  /// max_udp_payload_size transport parameter (the most the server may send us): quinn's
  /// Ethernet-sized default, which g3proxy keeps. Jumbo frames and loopback carry 8952.
  std::size_t max_udp_payload = 1452;
  udp_options udp;
  /// The QUIC version of the first Initial: v1 as g3proxy, or NGTCP2_PROTO_VER_V2 (RFC 9369)
  /// to check a server's QUIC v2.
  std::uint32_t version = 0x00000001;
  /// Start a 1-RTT key update (RFC 9001 §6) each time this many more stream bytes have been
  /// sent, to check a server's; 0: never (quinn updates only near the AEAD usage limits).
  std::uint64_t key_update_bytes = 0;
  /// --qlog: each connection's qlog goes to this directory (prepared by prepare_qlog_dir);
  /// empty: none. Files that could not be made or written are counted in |qlog_problems|.
  std::string qlog_dir;
  qlog_trouble* qlog_problems = nullptr;
};

/// How a connection ended.
struct close_info {
  enum class cause : std::uint8_t {
    open,              ///< not closed
    local,             ///< we sent CONNECTION_CLOSE (close())
    dropped,           ///< we dropped it without a word (drop())
    peer,              ///< the server sent CONNECTION_CLOSE
    idle_timeout,      ///< nothing heard for the idle timeout
    handshake_timeout, ///< the handshake did not complete in time
    tls_failure,       ///< the TLS handshake failed (certificate, ALPN...)
    stateless_reset,   ///< the server sent a stateless reset
    quic_error,        ///< a protocol or internal error inside QUIC
    socket_error,      ///< the UDP socket failed
    refused,           ///< ICMP port unreachable during the handshake: nothing listens
  };
  cause by = cause::open;
  /// CONNECTION_CLOSE from the server: an application code (frame type 0x1d) or a transport one.
  bool application = false;
  std::uint64_t code = 0;
  std::string reason; ///< the reason phrase sent, or our own explanation
  timestamp at = 0;

  bool closed() const noexcept { return by != cause::open; }
};

/// "peer", "idle_timeout"...
std::string_view to_string(close_info::cause c) noexcept;
/// One line for people: "closed by the server: application code 0x0 \"finished\"".
std::string describe(const close_info& c);

class quic_connection;

/// Receives the events of one stream. A callback may call the connection's stream operations
/// (writes, FIN, STOP_SENDING) but must not destroy the connection.
class stream_observer {
public:
  /// Bytes received (and already consumed: flow-control credit is returned at once); |fin|
  /// when the peer finished the stream with them.
  virtual void on_data(std::int64_t id, std::span<const std::uint8_t> bytes, bool fin) = 0;
  /// The peer reset its send side (RESET_STREAM) with |code|.
  virtual void on_reset(std::int64_t id, std::uint64_t code) = 0;
  /// The peer stopped reading our send side (STOP_SENDING). ngtcp2 1.11 reports no callback
  /// for it: it is noticed when a write finds the stream shut (|code| unknown then) or when
  /// the stream closes with our send side unfinished (|code| as the peer sent it).
  virtual void on_stop_sending(std::int64_t id, std::optional<std::uint64_t> code) = 0;
  /// Room opened in the stream's send buffer after write_some() accepted less than offered.
  virtual void on_writable(std::int64_t id) = 0;

protected:
  ~stream_observer() = default;
};

/// Receives the events of the connection as a whole.
class connection_observer {
public:
  /// The handshake completed (resumed() and alpn() are known now).
  virtual void on_handshake(quic_connection& c) = 0;
  /// The server raised the number of streams we may open (MAX_STREAMS).
  virtual void on_streams_available(quic_connection& c) = 0;
  /// The connection is over (close_state() says why). Destroy it later, not from here.
  virtual void on_closed(quic_connection& c) = 0;

protected:
  ~connection_observer() = default;
};

/// Counters of one connection.
struct connection_stats {
  timestamp started = 0;        ///< when connect() was called
  timestamp handshake_done = 0; ///< when the handshake completed (0: not yet)
  std::uint64_t stream_bytes_sent = 0;
  std::uint64_t stream_bytes_received = 0;
  std::uint64_t packets_sent = 0;
  std::uint64_t packets_received = 0;
  std::uint64_t key_updates = 0;           ///< key updates this client started (quic_config)
  std::size_t largest_packet_received = 0; ///< UDP payload bytes of the largest QUIC packet
  /// Packets by the ECN codepoint of their IP header (0 not-ECT, 1 ECT(1), 2 ECT(0), 3 CE). We
  /// mark what ngtcp2 asks for, as quinn does: ECT(0) while it validates the path's ECN (RFC
  /// 9000 §13.4.2) and on after, when the server's ACKs count the marks.
  std::array<std::uint64_t, 4> ecn_sent{};
  std::array<std::uint64_t, 4> ecn_received{};
};

/// One client connection. Create it, call connect(), then drive it from the event loop; every
/// wait inside (handshake, idle) is bounded by the configured timeouts.
class quic_connection {
public:
  /// |batch| is shared by the connections of one loop (datagrams are processed at once).
  /// Throws std::system_error (socket) or tls_error (session).
  quic_connection(event_loop& loop, const quic_config& config, const tls_context& tls,
                  receive_batch& batch, connection_observer& observer, std::uint64_t id);
  ~quic_connection();
  quic_connection(const quic_connection&) = delete;
  quic_connection& operator=(const quic_connection&) = delete;

  /// Starts the handshake.
  void connect();

  /// A short id for logs.
  std::uint64_t id() const noexcept { return id_; }
  /// The handshake completed on our side: tasks may start (quinn lets g3proxy send then).
  bool established() const noexcept { return handshake_done_ && !closed(); }
  /// The server confirmed the handshake (HANDSHAKE_DONE): with mutual TLS, it accepted our
  /// certificate. A server refusing it closes the connection after established() instead.
  bool confirmed() const noexcept { return confirmed_ && !closed(); }
  bool closed() const noexcept { return close_.closed(); }
  const close_info& close_state() const noexcept { return close_; }
  const connection_stats& stats() const noexcept { return stats_; }
  /// The QUIC version in use (0 before the handshake has settled it).
  std::uint32_t negotiated_version() const noexcept;
  /// After the handshake: whether the TLS session was resumed from an earlier ticket.
  bool resumed() const noexcept;
  std::string alpn() const;
  std::string tls_failure() const;
  /// Bidirectional streams we may still open (the server's MAX_STREAMS minus those opened).
  std::uint64_t streams_left() const noexcept;
  /// The local UDP address of this connection.
  const socket_address& local_address() const noexcept { return socket_.local_address(); }
  /// The ngtcp2 connection, for tests that make the client send what g3proxy never sends.
  ngtcp2_conn* native() const noexcept { return conn_; }

  // --- streams ---------------------------------------------------------------------------------
  /// Opens a bidirectional stream (invisible to the server until something is sent on it).
  /// Returns -1 when the server's stream limit is reached.
  std::int64_t open_stream(stream_observer* observer);
  /// Replaces (or, with null, removes) the observer of a stream.
  void set_observer(std::int64_t id, stream_observer* observer) noexcept;
  /// Buffers as much of |bytes| as the stream's send budget allows; returns how much. When
  /// that is less than offered, the observer's on_writable() follows once room opens.
  std::size_t write_some(std::int64_t id, std::span<const std::uint8_t> bytes);
  /// Sends FIN after everything written so far.
  void finish(std::int64_t id);
  /// Sends an empty STREAM frame, making a stream visible to the server without data.
  void touch(std::int64_t id);
  /// STOP_SENDING: we will not read this stream any more.
  void stop_sending(std::int64_t id, std::uint64_t code);
  /// RESET_STREAM: abandons our send side, unsent and unacknowledged data included.
  void reset(std::int64_t id, std::uint64_t code);
  /// Bytes written on a stream and not yet acknowledged by the server.
  std::uint64_t unacknowledged(std::int64_t id) const noexcept;
  /// Whether the stream was finished or reset by the server, and whether ngtcp2 still knows it.
  bool stream_exists(std::int64_t id) const noexcept { return streams_.count(id) != 0; }

  // --- ending ----------------------------------------------------------------------------------
  /// Sends CONNECTION_CLOSE with an application error code and reason (g3proxy: 0 "finished").
  void close(std::uint64_t app_code, std::string_view reason);
  /// Stops at once without telling the server (a crashed or unplugged client).
  void drop();

  /// Writes what is pending now rather than after the current batch of events.
  void flush();

  // ngtcp2 callbacks land here (trampolines in probe_quic.cpp).
  struct callbacks;

private:
  struct stream {
    std::int64_t id = -1;
    stream_observer* observer = nullptr;
    send_buffer tx;
    bool fin_wanted = false;
    bool fin_sent = false;
    bool touch_wanted = false;
    bool write_closed = false; // reset by us, or stopped by the peer
    bool reset_by_us = false;
    bool stop_reported = false;
    bool queued = false;
    bool wants_writable = false;
  };

  void on_socket(std::uint32_t events);
  void read_datagrams();
  void check_refused();
  void on_timer();
  void arm_timer();
  void queue(stream& s);
  bool send_packets(std::span<const std::uint8_t> data, std::size_t segment, unsigned ecn);
  void fail_with(int liberr);
  void set_closed(close_info::cause by, std::string reason);
  void finish_close();
  void write_close_frame();
  stream* find(std::int64_t id) noexcept;
  void release_writable(stream& s);

  event_loop& loop_;
  quic_config config_;
  receive_batch& batch_;
  connection_observer& observer_;
  std::uint64_t id_;
  udp_socket socket_;
  std::unique_ptr<io_watch> watch_;
  timer timer_;
  deferred flush_later_;
  deferred notify_closed_;
  std::unique_ptr<struct ngtcp2_crypto_conn_ref> conn_ref_;
  std::unique_ptr<tls_session> tls_;
  qlog_file qlog_; // --qlog; ngtcp2's last record (from ngtcp2_conn_del) closes it
  ngtcp2_conn* conn_ = nullptr;
  bool handshake_done_ = false;
  bool confirmed_ = false;
  std::uint64_t next_key_update_ = 0; // stream bytes sent at which to start one
  close_info close_;
  connection_stats stats_;
  std::unordered_map<std::int64_t, std::unique_ptr<stream>> streams_;
  std::vector<std::int64_t> sendq_;
  pmtud_probes pmtud_; // ngtcp2 keeps a pointer to its sizes
  std::vector<std::uint8_t> txbuf_;
  std::vector<std::uint8_t> blocked_; // datagrams the socket refused; resent on EPOLLOUT
  std::size_t blocked_segment_ = 0;
  unsigned blocked_ecn_ = 0;
};

} // namespace detour::cli::probe
