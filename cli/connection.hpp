// SPDX-License-Identifier: MIT
// cli/connection.hpp: one QUIC connection of `detour serve` (RFC 9000) on ngtcp2: the callback
// trampolines, reading packets, the write loop (GSO trains, pacing), timers from
// ngtcp2_conn_get_expiry, closing and draining. Its streams belong to its tasks (task.hpp).
#pragma once

#include "event_loop.hpp"
#include "id_queue.hpp"
#include "pmtud.hpp"
#include "qlog.hpp"
#include "quic_stream.hpp"
#include "task.hpp"
#include "tls.hpp"
#include "udp.hpp"

#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace detour::cli {

class server;
struct endpoint;

/// Counters a connection reports when it closes.
struct connection_stats {
  std::uint64_t tasks = 0;          ///< north requests answered
  std::uint64_t streams = 0;        ///< streams the client opened
  std::uint64_t bytes_received = 0; ///< stream bytes from the client
  std::uint64_t bytes_sent = 0;     ///< stream bytes accepted for the client
};

class connection final : public quic_stream::listener {
public:
  /// What the packet that created the connection said (from ngtcp2_accept).
  struct initial {
    ngtcp2_cid client_scid{};   ///< the client's source CID: our destination CID
    ngtcp2_cid client_dcid{};   ///< the destination CID of the client's first Initial
    ngtcp2_cid original_dcid{}; ///< before a Retry: the DCID of the very first Initial
    bool retried = false;       ///< the client came back with our Retry token
    std::uint32_t version = 0;
    std::vector<std::uint8_t> token;
  };

  /// Creates the ngtcp2 connection and its TLS session. Throws std::runtime_error when ngtcp2
  /// or wolfSSL refuses (the server then drops the packet).
  connection(server& srv, endpoint& ep, const socket_address& local, const socket_address& remote,
             const initial& init, const tls_context& tls);
  ~connection();
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  /// A datagram for this connection. Reads it and writes what is due.
  void on_packet(const received_datagram& d, std::span<const std::uint8_t> packet);
  /// The endpoint became writable again after a blocked send.
  void on_writable();
  /// Graceful shutdown: refuse new tasks, close once the running ones are done (or at once
  /// when idle).
  void begin_shutdown();
  /// Closes now with an application error code (CONNECTION_CLOSE type 0x1d).
  void close(app_code code, std::string_view reason);

  bool dead() const noexcept { return dead_; }
  const std::string& log_id() const noexcept { return log_id_; }
  const std::vector<ngtcp2_cid>& routed_cids() const noexcept { return routed_; }
  endpoint& ep() const noexcept { return *ep_; }
  std::size_t active_tasks() const noexcept { return tasks_.active(); }

  // --- quic_stream::listener --------------------------------------------------------------------
  void on_stream_event(quic_stream& s) override;
  void on_stream_wants_to_send(quic_stream& s) override;
  void on_send_budget_freed() override;

  // --- ngtcp2 callbacks (called by the trampolines in connection.cpp) ------------------------
  int cb_handshake_completed();
  int cb_recv_stream_data(std::uint32_t flags, std::int64_t id, std::span<const std::uint8_t> d);
  int cb_stream_open(std::int64_t id);
  int cb_stream_close(std::uint32_t flags, std::int64_t id, app_code code);
  int cb_stream_reset(std::int64_t id, app_code code);
  int cb_acked_stream_data_offset(std::int64_t id, std::uint64_t len);
  int cb_extend_max_stream_data(std::int64_t id);
  int cb_get_new_connection_id(ngtcp2_cid* cid, std::uint8_t* token, std::size_t len);
  int cb_remove_connection_id(const ngtcp2_cid* cid);
  void cb_qlog_write(std::span<const std::uint8_t> record, bool last) noexcept;
  ngtcp2_conn* native() const noexcept { return conn_; }

private:
  enum class phase { handshaking, established, closing, draining };

  void work();
  void write();
  bool flush_train();
  quic_stream* next_sender();
  /// Arms the connection's timer at its earliest deadline: ngtcp2's (|quic_expiry|, by default
  /// ngtcp2_conn_get_expiry) or a task's.
  void arm_timer(timestamp quic_expiry = 0);
  void on_timer();
  void handle_liberror(int rv);
  void enter_closing();
  /// When a closing or draining period of at least |at_least| ends (rounded up to 4 ms).
  static timestamp close_deadline(timestamp at_least) noexcept;
  void enter_draining();
  void finish(std::string_view reason);
  void send_close_again();
  void log_open(std::string client); // conn.open; |client| is the peer certificate's subject
  void log_close(std::string_view how);
  void log_refused_by_client();
  void drop_streams(std::string_view reason, timestamp now);
  void release_tls(); // after the handshake: frees the TLS session

  server& server_;
  endpoint* ep_;
  pmtud_probes pmtud_; // ngtcp2 keeps a pointer to its sizes
  ngtcp2_conn* conn_ = nullptr;
  ngtcp2_crypto_conn_ref conn_ref_{};
  std::unique_ptr<tls_session> tls_; // the handshake's; freed when it is complete
  socket_address local_;
  socket_address remote_;
  std::string log_id_;
  qlog_file qlog_;                 // --qlog; ngtcp2's last record (from ngtcp2_conn_del) closes it
  std::vector<ngtcp2_cid> routed_; // CIDs the server routes to us (ours + the client's first)
  phase phase_ = phase::handshaking;
  bool dead_ = false;
  bool shutting_down_ = false;
  ngtcp2_ccerr last_error_{};
  timestamp opened_at_ = 0;

  timer timer_;
  deferred work_; // steps ready tasks, then writes

  // The write loop: a train of equal-sized packets for one GSO send, in the server's scratch
  // buffer; what the socket refused waits in blocked_ until it is writable again.
  std::uint8_t* train_ = nullptr;
  std::size_t train_bytes_ = 0;
  std::size_t train_segment_ = 0;
  socket_address train_remote_;
  socket_address train_local_;
  unsigned train_ecn_ = 0;
  std::vector<std::uint8_t> blocked_;
  bool send_blocked_ = false;
  std::vector<std::uint8_t> close_packet_;
  std::uint64_t packets_in_closing_ = 0;

  // Streams by id, and those with bytes or a FIN to hand to ngtcp2, in round-robin order.
  struct stream_slot {
    quic_stream* stream = nullptr;
    bool queued = false;
  };
  std::unordered_map<std::int64_t, stream_slot> streams_;
  id_queue send_queue_;

  send_budget tx_budget_; // before tasks_: their streams use it until they are destroyed
  task_set tasks_;
  connection_stats stats_;
};

} // namespace detour::cli
