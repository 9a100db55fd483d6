// SPDX-License-Identifier: MIT
// cli/connection.cpp: one ngtcp2 server connection (see connection.hpp). The callbacks are thin
// trampolines in a constant table; everything time-related takes `now` from the event loop.
#include "connection.hpp"

#include "hex_dump.hpp"
#include "inspection.hpp"
#include "packet_protection.hpp"
#include "server.hpp"

#include <wolfssl/options.h> // must precede every other wolfSSL header
#include <wolfssl/ssl.h>

#include <ngtcp2/ngtcp2_crypto_wolfssl.h>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <stdexcept>

namespace detour::cli {

namespace {

// What a client's TLS alert during the handshake usually means for a detour server.
std::string_view client_alert_hint(int alert) {
  switch (alert) {
  case 42: // bad_certificate
  case 43: // unsupported_certificate
  case 44: // certificate_revoked
  case 46: // certificate_unknown
    return "the client does not accept our certificate (for g3proxy: it must name the address or "
           "tls_name g3proxy connects to)";
  case 45: // certificate_expired
    return "our certificate has expired or is not yet valid (renew it: detour cert)";
  case 48: // unknown_ca
    return "the client does not trust our certificate's CA (g3proxy: tls_client ca_certificate)";
  case 70: // protocol_version
  case 40: // handshake_failure
  case 71: // insufficient_security
    return "no TLS 1.3 parameters in common";
  case 120: // no_application_protocol
    return "no ALPN name in common";
  default:
    return "see the client's log";
  }
}

connection& self(void* user_data) {
  return *static_cast<connection*>(user_data);
}

// --- trampolines: ngtcp2 -> connection members -------------------------------------------------

int on_handshake_completed(ngtcp2_conn*, void* ud) {
  return self(ud).cb_handshake_completed();
}

int on_recv_stream_data(ngtcp2_conn*, std::uint32_t flags, std::int64_t id, std::uint64_t,
                        const std::uint8_t* data, std::size_t len, void* ud, void*) {
  return self(ud).cb_recv_stream_data(flags, id, {data, len});
}

int on_stream_open(ngtcp2_conn*, std::int64_t id, void* ud) {
  return self(ud).cb_stream_open(id);
}

int on_stream_close(ngtcp2_conn*, std::uint32_t flags, std::int64_t id, std::uint64_t code,
                    void* ud, void*) {
  return self(ud).cb_stream_close(flags, id, code);
}

int on_stream_reset(ngtcp2_conn*, std::int64_t id, std::uint64_t, std::uint64_t code, void* ud,
                    void*) {
  return self(ud).cb_stream_reset(id, code);
}

int on_acked_stream_data_offset(ngtcp2_conn*, std::int64_t id, std::uint64_t, std::uint64_t len,
                                void* ud, void*) {
  return self(ud).cb_acked_stream_data_offset(id, len);
}

int on_extend_max_stream_data(ngtcp2_conn*, std::int64_t id, std::uint64_t, void* ud, void*) {
  return self(ud).cb_extend_max_stream_data(id);
}

int on_get_new_connection_id(ngtcp2_conn*, ngtcp2_cid* cid, std::uint8_t* token, std::size_t len,
                             void* ud) {
  return self(ud).cb_get_new_connection_id(cid, token, len);
}

int on_remove_connection_id(ngtcp2_conn*, const ngtcp2_cid* cid, void* ud) {
  return self(ud).cb_remove_connection_id(cid);
}

// settings.qlog_write: ngtcp2 passes the connection's user data, as to the callbacks above.
void on_qlog_write(void* ud, std::uint32_t flags, const void* data, std::size_t len) {
  self(ud).cb_qlog_write({static_cast<const std::uint8_t*>(data), len},
                         (flags & NGTCP2_QLOG_WRITE_FLAG_FIN) != 0);
}

void on_rand(std::uint8_t* dest, std::size_t len, const ngtcp2_rand_ctx*) {
  fill_random({dest, len}); // aborts if the kernel cannot give randomness
}

// TLS alert unexpected_message (RFC 8446 §6).
constexpr std::uint8_t unexpected_message = 10;

// The TLS session is freed once the handshake is complete (connection::release_tls): a QUIC
// client has nothing more to say in TLS then (RFC 9001 §4.4 forbids post-handshake client
// authentication, §6 the TLS KeyUpdate: "a connection error of type 0x010a, equivalent to a
// fatal TLS alert of unexpected_message"), so CRYPTO data after that closes the connection so.
int on_recv_crypto_data(ngtcp2_conn* conn, ngtcp2_encryption_level level, std::uint64_t offset,
                        const std::uint8_t* data, std::size_t len, void* ud) {
  if (!ngtcp2_conn_get_tls_native_handle(conn)) {
    ngtcp2_conn_set_tls_alert(conn, unexpected_message);
    return NGTCP2_ERR_CRYPTO;
  }
  return ngtcp2_crypto_recv_crypto_data_cb(conn, level, offset, data, len, ud);
}

ngtcp2_conn* get_conn(ngtcp2_crypto_conn_ref* ref) {
  return static_cast<connection*>(ref->user_data)->native();
}

constexpr ngtcp2_callbacks callbacks = [] {
  ngtcp2_callbacks c{};
  c.recv_client_initial = recv_client_initial_cb; // tls.hpp: no random generator per key
  c.recv_crypto_data = on_recv_crypto_data;
  c.handshake_completed = on_handshake_completed;
  c.encrypt = encrypt_cb;
  c.decrypt = decrypt_cb;
  c.hp_mask = hp_mask_cb;
  c.recv_stream_data = on_recv_stream_data;
  c.acked_stream_data_offset = on_acked_stream_data_offset;
  c.stream_open = on_stream_open;
  c.stream_close = on_stream_close;
  c.rand = on_rand;
  c.get_new_connection_id = on_get_new_connection_id;
  c.remove_connection_id = on_remove_connection_id;
  c.update_key = update_key_cb; // tls.hpp: HKDF without a random generator per call
  c.stream_reset = on_stream_reset;
  c.extend_max_stream_data = on_extend_max_stream_data;
  c.delete_crypto_aead_ctx = delete_crypto_aead_ctx_cb;
  c.delete_crypto_cipher_ctx = delete_crypto_cipher_ctx_cb;
  c.get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb;
  // No stream_stop_sending: in ngtcp2 1.x it reports the STOP_SENDING *we* send. A received
  // STOP_SENDING has no callback at all (ngtcp2 answers it with RESET_STREAM by itself); the
  // stream learns of it on its next write or when it closes (quic_stream::on_write_shut).
  c.version_negotiation = version_negotiation_cb;
  return c;
}();

ngtcp2_addr as_ngtcp2(const socket_address& a) {
  return {const_cast<ngtcp2_sockaddr*>(reinterpret_cast<const ngtcp2_sockaddr*>(a.data())),
          static_cast<ngtcp2_socklen>(a.size())};
}

socket_address from_ngtcp2(const ngtcp2_addr& a) {
  return socket_address(reinterpret_cast<const sockaddr*>(a.addr), a.addrlen);
}

// Whether |a| holds the address |raw| points at: a compare per packet instead of two copies
// (a packet joins the train only when its path is the train's; a false "no" only ends a train).
bool same_address(const socket_address& a, const ngtcp2_addr& raw) noexcept {
  return a.size() == raw.addrlen && std::memcmp(a.data(), raw.addr, raw.addrlen) == 0;
}

// Packets written per burst, at most (the kernel's UDP_MAX_SEGMENTS; udp_socket splits a
// train that is larger than one GSO send may carry).
constexpr std::size_t max_train_packets = server::max_train_packets;
// What a connection's streams may keep unacknowledged together: its receive window, but never
// less than g3proxy's 16 tasks per connection x 2 streams x a full send buffer, so that slow
// readers among a connection's tasks never hold back its healthy ones.
std::size_t echo_budget(const serve_config& c) {
  return std::max<std::size_t>(c.connection_window, std::size_t{2 * 16} * c.send_buffer);
}

// Our Source Connection IDs: long enough to be unguessable and to route by.
constexpr std::size_t scid_length = 18;

} // namespace

connection::connection(server& srv, endpoint& ep, const socket_address& local,
                       const socket_address& remote, const initial& init, const tls_context& tls)
    : server_(srv), ep_(&ep), pmtud_(srv.config().max_udp_payload), local_(local), remote_(remote),
      opened_at_(monotonic_now()), timer_(srv.loop(), [this] { on_timer(); }),
      work_(srv.loop(), [this] { work(); }), tx_budget_{echo_budget(srv.config()), 0, false},
      tasks_({srv.config(), srv.log(), srv.pool(), *this, tx_budget_, log_id_}) {
  const serve_config& cfg = srv.config();
  ngtcp2_cid scid{};
  srv.new_cid(scid, scid_length);      // names this worker (server::new_cid)
  log_id_ = hex_bytes({scid.data, 4}); // the first 8 digits of its qlog file's name

  ngtcp2_settings settings;
  ngtcp2_settings_default(&settings);
  settings.initial_ts = opened_at_;
  if (!cfg.qlog_dir.empty()) {
    // Opened before ngtcp2_conn_server_new, which writes the first record.
    const std::string error = qlog_.open(cfg.qlog_dir, qlog_file_name({scid.data, scid.datalen}));
    if (error.empty()) {
      settings.qlog_write = on_qlog_write;
    } else {
      srv.qlog_failed(error);
    }
  }
  settings.handshake_timeout = cfg.handshake_timeout;
  // Datagrams grow from 1200 bytes only as far as path MTU discovery proves the path carries
  // them (and the client's max_udp_payload_size allows): a peer that takes 1200 gets 1200.
  settings.max_tx_udp_payload_size = cfg.max_udp_payload;
  settings.pmtud_probes = pmtud_.sizes.data();
  settings.pmtud_probeslen = pmtud_.count;
  // Credit follows the echo (quic_stream::consume); ngtcp2 must not grow the windows behind
  // our back, or memory per stream would no longer be bounded by them.
  settings.max_stream_window = cfg.stream_window;
  settings.max_window = cfg.connection_window;
  if (!init.token.empty()) {
    settings.token = init.token.data();
    settings.tokenlen = init.token.size();
    settings.token_type = init.retried ? NGTCP2_TOKEN_TYPE_RETRY : NGTCP2_TOKEN_TYPE_NEW_TOKEN;
  }

  ngtcp2_transport_params params;
  ngtcp2_transport_params_default(&params);
  params.initial_max_stream_data_bidi_remote = cfg.stream_window;
  params.initial_max_data = cfg.connection_window;
  params.initial_max_streams_bidi = cfg.max_streams;
  params.initial_max_streams_uni = 0; // g3proxy opens bidirectional streams only
  params.max_idle_timeout = cfg.idle_timeout;
  params.active_connection_id_limit = 4;
  params.stateless_reset_token_present = 1;
  if (!stateless_reset_token(params.stateless_reset_token, srv.secret(), scid)) {
    throw std::runtime_error("cannot derive a stateless reset token");
  }
  if (init.retried) {
    params.original_dcid = init.original_dcid;
    params.retry_scid = init.client_dcid;
    params.retry_scid_present = 1;
  } else {
    params.original_dcid = init.client_dcid;
  }
  params.original_dcid_present = 1;

  ngtcp2_path path{as_ngtcp2(local_), as_ngtcp2(remote_), &ep};
  if (const int rv = ngtcp2_conn_server_new(&conn_, &init.client_scid, &scid, &path, init.version,
                                            &callbacks, &settings, &params, nullptr, this);
      rv != 0) {
    throw std::runtime_error(std::string("ngtcp2_conn_server_new: ") + ngtcp2_strerror(rv));
  }
  conn_ref_.get_conn = get_conn;
  conn_ref_.user_data = this;
  try {
    tls_ = std::make_unique<tls_session>(tls, conn_ref_);
  } catch (...) {
    ngtcp2_conn_del(conn_);
    throw;
  }
  ngtcp2_conn_set_tls_native_handle(conn_, tls_->native_handle());

  routed_.push_back(scid);
  routed_.push_back(init.client_dcid);
  ngtcp2_ccerr_default(&last_error_);
}

connection::~connection() {
  tasks_.connection_closed("connection gone", monotonic_now());
  if (conn_) ngtcp2_conn_del(conn_);
  if (!qlog_.complete()) {
    server_.qlog_failed(qlog_.path() + ": a write failed, the file ends early");
  }
}

void connection::cb_qlog_write(std::span<const std::uint8_t> record, bool last) noexcept {
  qlog_.write(record.data(), record.size(), last);
}

// --- reading -----------------------------------------------------------------------------------

void connection::on_packet(const received_datagram& d, std::span<const std::uint8_t> packet) {
  if (dead_) return;
  if (phase_ == phase::draining) return;
  if (phase_ == phase::closing) {
    send_close_again();
    return;
  }
  socket_address local = d.local;
  socket_address remote = d.remote;
  const ngtcp2_path path{as_ngtcp2(local), as_ngtcp2(remote), ep_};
  ngtcp2_pkt_info pi{};
  pi.ecn = static_cast<std::uint8_t>(d.ecn);
  const int rv =
      ngtcp2_conn_read_pkt(conn_, &path, &pi, packet.data(), packet.size(), monotonic_now());
  if (rv != 0) {
    handle_liberror(rv);
    return;
  }
  if (phase_ == phase::established && tls_) release_tls();
  work_.schedule();
}

void connection::release_tls() {
  // What the connection needs from the handshake (keys, ALPN, the client's identity, the
  // session ticket, already handed to ngtcp2) was taken when it completed: the WOLFSSL object
  // and its buffers (about 10 KiB) would only sit there for the connection's life.
  ngtcp2_conn_set_tls_native_handle(conn_, nullptr);
  tls_.reset();
}

void connection::handle_liberror(int rv) {
  switch (rv) {
  case NGTCP2_ERR_DRAINING: // the peer closed: RFC 9000 §10.2.2
    enter_draining();
    return;
  case NGTCP2_ERR_DROP_CONN:
    finish("dropped");
    return;
  case NGTCP2_ERR_IDLE_CLOSE:
    finish("idle timeout");
    return;
  case NGTCP2_ERR_HANDSHAKE_TIMEOUT:
    if (auto* f = server_.config().features) f->handshake_failed("timeout");
    finish("handshake timeout");
    return;
  case NGTCP2_ERR_CRYPTO:
    ngtcp2_ccerr_set_tls_alert(&last_error_, ngtcp2_conn_get_tls_alert(conn_), nullptr, 0);
    if (!tls_) { // on_recv_crypto_data: a TLS message after the handshake
      server_.log().warn("conn.error", {{"conn", log_id_},
                                        {"peer", remote_.to_string()},
                                        {"error", "TLS message after the handshake"}});
      break;
    }
    if (auto* f = server_.config().features) f->handshake_failed("tls");
    server_.log().info(
        "conn.handshake_failed",
        {{"conn", log_id_}, {"peer", remote_.to_string()}, {"reason", tls_->failure_reason()}});
    break;
  default:
    ngtcp2_ccerr_set_liberr(&last_error_, rv, nullptr, 0);
    server_.log().warn("conn.error", {{"conn", log_id_}, {"error", ngtcp2_strerror(rv)}});
  }
  enter_closing();
}

// --- callbacks ---------------------------------------------------------------------------------

void connection::log_open(std::string client) {
  const std::string alpn = tls_->alpn();
  if (client.empty()) {
    // Under mutual TLS every session was verified ("-" would read as "no certificate"): a
    // resumed one when it began (its ticket is issued only after that), its subject known
    // unless forgotten; a full handshake's subject can be unreadable (an Ed25519 certificate,
    // tls_session::peer_subject).
    const bool mutual = !server_.config().client_ca_file.empty();
    client = !mutual ? "-" : tls_->resumed() ? "(resumed)" : "(verified)";
  }
  server_.log().info("conn.open", {{"conn", log_id_},
                                   {"peer", remote_.to_string()},
                                   {"alpn", alpn.empty() ? std::string_view("-") : alpn},
                                   {"cipher", tls_->cipher()},
                                   {"resumed", tls_->resumed()},
                                   {"client_cert", client}});
}

int connection::cb_handshake_completed() {
  phase_ = phase::established;
  // Read even when the line is not written: under mutual TLS it records the certificate's
  // subject for the connections that resume this session.
  std::string client = tls_->peer_subject();
  if (server_.log().enabled(log_level::info)) log_open(std::move(client));
  if (shutting_down_) tasks_.refuse_new();
  if (server_.config().retry) {
    // RFC 9000 §8.1.3: a token for the next connection from this address, which then needs no
    // Retry round trip.
    std::array<std::uint8_t, NGTCP2_CRYPTO_MAX_REGULAR_TOKENLEN> token{};
    const ngtcp2_ssize n = ngtcp2_crypto_generate_regular_token(
        token.data(), server_.secret().data(), server_.secret().size(),
        reinterpret_cast<const ngtcp2_sockaddr*>(remote_.data()), remote_.size(), token_time());
    if (n > 0) (void)ngtcp2_conn_submit_new_token(conn_, token.data(), static_cast<std::size_t>(n));
  }
  return 0;
}

int connection::cb_stream_open(std::int64_t id) {
  if (!ngtcp2_is_bidi_stream(id) || ngtcp2_conn_is_local_stream(conn_, id)) return 0;
  quic_stream& s = tasks_.open_stream(conn_, id, monotonic_now());
  streams_[id] = stream_slot{&s, false};
  return 0;
}

int connection::cb_recv_stream_data(std::uint32_t flags, std::int64_t id,
                                    std::span<const std::uint8_t> data) {
  const auto it = streams_.find(id);
  if (it == streams_.end()) {
    // Not ours any more: give the connection credit back so the window does not shrink.
    ngtcp2_conn_extend_max_offset(conn_, data.size());
    return 0;
  }
  it->second.stream->on_data(data, (flags & NGTCP2_STREAM_DATA_FLAG_FIN) != 0);
  return 0;
}

int connection::cb_stream_close(std::uint32_t flags, std::int64_t id, app_code code) {
  const auto it = streams_.find(id);
  if (it == streams_.end()) return 0;
  quic_stream* s = it->second.stream;
  streams_.erase(it);
  s->on_closed((flags & NGTCP2_STREAM_CLOSE_FLAG_APP_ERROR_CODE_SET) ? std::optional(code)
                                                                     : std::nullopt);
  tasks_.on_closed(*s, monotonic_now());
  // Give the stream back to the client: MAX_STREAMS rises as streams close, so a connection can
  // serve any number of tasks over its life.
  if (!ngtcp2_conn_is_local_stream(conn_, id) && ngtcp2_is_bidi_stream(id)) {
    ngtcp2_conn_extend_max_streams_bidi(conn_, 1);
  }
  work_.schedule();
  return 0;
}

int connection::cb_stream_reset(std::int64_t id, app_code code) {
  if (const auto it = streams_.find(id); it != streams_.end()) it->second.stream->on_reset(code);
  return 0;
}

int connection::cb_acked_stream_data_offset(std::int64_t id, std::uint64_t len) {
  if (const auto it = streams_.find(id); it != streams_.end()) it->second.stream->on_acked(len);
  return 0;
}

int connection::cb_extend_max_stream_data(std::int64_t id) {
  if (const auto it = streams_.find(id); it != streams_.end()) {
    it->second.stream->on_send_credit();
  }
  return 0;
}

int connection::cb_get_new_connection_id(ngtcp2_cid* cid, std::uint8_t* token, std::size_t len) {
  server_.new_cid(*cid, len);
  if (!stateless_reset_token(std::span<std::uint8_t, NGTCP2_STATELESS_RESET_TOKENLEN>(token, len),
                             server_.secret(), *cid)) {
    return NGTCP2_ERR_CALLBACK_FAILURE;
  }
  routed_.push_back(*cid);
  server_.associate(*cid, *this);
  return 0;
}

int connection::cb_remove_connection_id(const ngtcp2_cid* cid) {
  server_.dissociate(*cid);
  std::erase_if(routed_, [&](const ngtcp2_cid& c) { return ngtcp2_cid_eq(&c, cid); });
  return 0;
}

// --- streams -> work ---------------------------------------------------------------------------

void connection::on_stream_event(quic_stream& s) {
  tasks_.on_event(s);
  work_.schedule();
}

void connection::on_stream_wants_to_send(quic_stream& s) {
  const auto it = streams_.find(s.id());
  if (it == streams_.end()) return;
  if (!it->second.queued) {
    it->second.queued = true;
    send_queue_.push_back(s.id());
  }
  work_.schedule();
}

void connection::on_send_budget_freed() {
  tasks_.wake_all();
  work_.schedule();
}

void connection::work() {
  if (dead_ || phase_ == phase::closing || phase_ == phase::draining) return;
  tasks_.step(monotonic_now());
  if (shutting_down_ && tasks_.active() == 0) {
    close(0, "shutdown"); // the last task of a draining server ended
    return;
  }
  write();
}

// --- writing -----------------------------------------------------------------------------------

quic_stream* connection::next_sender() {
  while (!send_queue_.empty()) {
    const auto it = streams_.find(send_queue_.front());
    if (it != streams_.end() && it->second.stream->has_pending_send()) return it->second.stream;
    if (it != streams_.end()) it->second.queued = false;
    send_queue_.pop_front();
  }
  return nullptr;
}

void connection::write() {
  if (dead_ || phase_ == phase::closing || phase_ == phase::draining) return;
  if (send_blocked_) {
    arm_timer(); // every write ends with the timer armed: work() and on_timer() rely on it
    return;
  }
  const timestamp ts = monotonic_now();
  // Room for the largest packet (a path MTU probe); trains are counted in the path's size.
  const std::size_t max_payload = ngtcp2_conn_get_max_tx_udp_payload_size(conn_);
  const std::size_t path_payload = ngtcp2_conn_get_path_max_tx_udp_payload_size(conn_);
  // Pacing (RFC 9002 §7.7): no more than the send quantum in one burst, and no more than the
  // scratch buffer holds.
  const std::size_t quantum = ngtcp2_conn_get_send_quantum(conn_);
  const std::span<std::uint8_t> txbuf = server_.scratch();
  const std::size_t burst =
      train_packets(quantum, path_payload, max_payload, txbuf.size(), max_train_packets);

  ngtcp2_path_storage ps;
  ngtcp2_path_storage_zero(&ps);
  ngtcp2_pkt_info pi{};
  std::array<ngtcp2_vec, 16> vecs{};
  std::size_t packets = 0;
  // Packets are written into the server's scratch buffer (one for all connections: nothing
  // else runs until this train is sent or, if the socket is full, copied aside).
  train_ = txbuf.data();
  train_bytes_ = 0;

  while (packets < burst) {
    quic_stream* s = next_sender();
    bool fin = false;
    std::size_t count = 0;
    std::size_t offered = 0;
    if (s) {
      count = s->gather(vecs.data(), vecs.size(), max_payload, fin);
      for (std::size_t i = 0; i < count; ++i) offered += vecs[i].len;
    }
    std::uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_MORE;
    if (fin) flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
    ngtcp2_ssize accepted = -1;
    std::uint8_t* dest = train_ + train_bytes_;
    const ngtcp2_ssize n =
        ngtcp2_conn_writev_stream(conn_, &ps.path, &pi, dest, max_payload, &accepted, flags,
                                  s ? s->id() : -1, vecs.data(), count, ts);
    if (n < 0) {
      switch (n) {
      case NGTCP2_ERR_STREAM_DATA_BLOCKED: // flow control: wait for MAX_STREAM_DATA
        s->on_write_blocked();
        continue;
      case NGTCP2_ERR_STREAM_SHUT_WR: // the client sent STOP_SENDING (ngtcp2 reset the stream)
        s->on_write_shut();
        continue;
      case NGTCP2_ERR_WRITE_MORE: // the packet has room for more frames
        s->on_written(static_cast<std::size_t>(accepted),
                      fin && static_cast<std::size_t>(accepted) == offered);
        if (s->has_pending_send()) {
          // Round robin: the next frame of this packet comes from the next stream.
          send_queue_.push_back(send_queue_.front());
          send_queue_.pop_front();
        }
        continue;
      default:
        handle_liberror(static_cast<int>(n));
        return;
      }
    }
    if (s && accepted >= 0) {
      s->on_written(static_cast<std::size_t>(accepted),
                    fin && static_cast<std::size_t>(accepted) == offered);
    }
    if (n == 0) break; // nothing to send, or congestion control / pacing says wait

    const auto size = static_cast<std::size_t>(n);
    if (train_bytes_ != 0 &&
        (size > train_segment_ || !same_address(train_remote_, ps.path.remote) ||
         !same_address(train_local_, ps.path.local) || pi.ecn != train_ecn_)) {
      // This packet cannot join the train: send the train, then start a new one with it.
      const std::size_t before = train_bytes_;
      if (!flush_train()) return; // the socket is full: the packet is lost, QUIC resends it
      std::memmove(train_, train_ + before, size);
    }
    if (train_bytes_ == 0) {
      train_segment_ = size;
      train_remote_ = from_ngtcp2(ps.path.remote);
      train_local_ = from_ngtcp2(ps.path.local); // may differ from the first after a migration
      train_ecn_ = pi.ecn;
    }
    train_bytes_ += size;
    ++packets;
    if (size < train_segment_ && !flush_train()) return; // a short packet ends the train
  }
  if (!flush_train()) return;
  // Pacing (RFC 9002 §7.7): ngtcp2 spaces the next write after this burst and reports that
  // moment as one of its deadlines. When the pass ended because ngtcp2 had nothing more to
  // send (not at the burst limit), the moment only matters to a later pass, which an event
  // starts (a packet, a stream with data) and which ngtcp2 holds back itself if it comes too
  // early: a timer for it would wake the loop for nothing, about once per burst. ngtcp2 clears
  // its pacing deadline when it lets a pass write, so the expiry read before the update holds
  // one only if this pass was held back, and then the timer must wake the loop for it.
  const timestamp unpaced = packets < burst ? ngtcp2_conn_get_expiry(conn_) : 0;
  ngtcp2_conn_update_pkt_tx_time(conn_, ts);
  arm_timer(unpaced);
}

bool connection::flush_train() {
  if (train_bytes_ == 0) return true;
  const std::span<const std::uint8_t> data(train_, train_bytes_);
  const send_result r =
      server_.send(*ep_, train_remote_, train_local_, data, train_segment_, train_ecn_);
  train_bytes_ = 0;
  if (!r.blocked) return true;
  // The socket buffer is full: keep what is left (ngtcp2 counts it as sent) until EPOLLOUT.
  blocked_.assign(data.begin() + static_cast<std::ptrdiff_t>(r.bytes_sent), data.end());
  send_blocked_ = true;
  server_.wait_writable(*ep_, *this);
  arm_timer();
  return false;
}

void connection::on_writable() {
  if (!send_blocked_ || dead_) return;
  const send_result r =
      server_.send(*ep_, train_remote_, train_local_, blocked_, train_segment_, train_ecn_);
  if (r.blocked) {
    blocked_.erase(blocked_.begin(), blocked_.begin() + static_cast<std::ptrdiff_t>(r.bytes_sent));
    server_.wait_writable(*ep_, *this);
    return;
  }
  blocked_.clear();
  blocked_.shrink_to_fit();
  send_blocked_ = false;
  work_.schedule();
}

// --- time --------------------------------------------------------------------------------------

void connection::arm_timer(timestamp quic_expiry) {
  if (dead_) return;
  if (phase_ == phase::closing || phase_ == phase::draining) return; // armed once on entry
  timestamp deadline = quic_expiry != 0 ? quic_expiry : ngtcp2_conn_get_expiry(conn_);
  if (const auto t = tasks_.next_deadline(); t && *t < deadline) deadline = *t;
  if (deadline == UINT64_MAX) {
    timer_.cancel();
  } else {
    timer_.arm_at(deadline);
  }
}

void connection::on_timer() {
  if (dead_) return;
  if (phase_ == phase::closing || phase_ == phase::draining) {
    finish(phase_ == phase::closing ? "closed" : "closed by peer");
    return;
  }
  const timestamp now = monotonic_now();
  if (ngtcp2_conn_get_expiry(conn_) <= now) {
    if (const int rv = ngtcp2_conn_handle_expiry(conn_, now); rv != 0) {
      handle_liberror(rv);
      return;
    }
  }
  tasks_.on_deadline(now);
  work(); // ends with write(), which arms the timer
}

// --- closing -----------------------------------------------------------------------------------

void connection::begin_shutdown() {
  shutting_down_ = true;
  tasks_.refuse_new();
  if (tasks_.active() == 0) close(0, "shutdown");
}

void connection::close(app_code code, std::string_view reason) {
  if (dead_ || phase_ == phase::closing || phase_ == phase::draining) return;
  ngtcp2_ccerr_set_application_error(
      &last_error_, code, reinterpret_cast<const std::uint8_t*>(reason.data()), reason.size());
  enter_closing();
}

void connection::enter_closing() {
  if (dead_ || phase_ == phase::closing || phase_ == phase::draining) return;
  const timestamp now = monotonic_now();
  ngtcp2_path_storage ps;
  ngtcp2_path_storage_zero(&ps);
  ngtcp2_pkt_info pi{};
  std::array<std::uint8_t, NGTCP2_MAX_UDP_PAYLOAD_SIZE> buf{};
  const ngtcp2_ssize n = ngtcp2_conn_write_connection_close(conn_, &ps.path, &pi, buf.data(),
                                                            buf.size(), &last_error_, now);
  if (n <= 0) {
    finish("closed");
    return;
  }
  phase_ = phase::closing;
  drop_streams("connection closed by server", now);
  close_packet_.assign(buf.data(), buf.data() + n);
  (void)server_.send(*ep_, remote_, local_, close_packet_, close_packet_.size(), 0);
  // RFC 9000 §10.2: stay in the closing state for three PTOs, answering with the close.
  timer_.arm_at(close_deadline(now + 3 * ngtcp2_conn_get_pto(conn_)));
}

void connection::send_close_again() {
  // Answer every 2^k-th packet only, so a flood cannot make us a reflector.
  ++packets_in_closing_;
  if ((packets_in_closing_ & (packets_in_closing_ - 1)) != 0) return;
  (void)server_.send(*ep_, remote_, local_, close_packet_, close_packet_.size(), 0);
}

void connection::enter_draining() {
  if (dead_ || phase_ == phase::draining) return;
  const timestamp now = monotonic_now();
  if (phase_ == phase::handshaking) log_refused_by_client();
  phase_ = phase::draining;
  drop_streams("connection closed by client", now);
  timer_.arm_at(close_deadline(now + 3 * ngtcp2_conn_get_pto(conn_)));
}

timestamp connection::close_deadline(timestamp at_least) noexcept {
  // The closing and draining periods last at least three PTOs (RFC 9000 §10.2), and longer
  // costs nothing but a few milliseconds of a connection that holds no stream. Their ends,
  // rounded up to a common grid, fall together: one wake-up frees every connection whose
  // period ended in the same slot, instead of one each (about one a handshake at 3,000/s).
  constexpr timestamp grid = 4 * nanoseconds_per_millisecond;
  return (at_least + grid - 1) / grid * grid;
}

void connection::drop_streams(std::string_view reason, timestamp now) {
  // The tasks free their streams: forget every pointer to them first.
  streams_.clear();
  send_queue_.clear();
  tasks_.connection_closed(reason, now);
}

void connection::log_refused_by_client() {
  // RFC 9001 §4.8: a client that refuses the handshake (our certificate expired, not yet
  // valid, not for the name or address it checks, from a CA it does not trust) closes with
  // CRYPTO_ERROR, 0x100 + its TLS alert. Only the client knows why: its alert is the reason.
  const ngtcp2_ccerr* e = ngtcp2_conn_get_ccerr(conn_);
  if (!e || e->type != NGTCP2_CCERR_TYPE_TRANSPORT || e->error_code < NGTCP2_CRYPTO_ERROR ||
      e->error_code > NGTCP2_CRYPTO_ERROR + 0xff) {
    return;
  }
  const auto alert = static_cast<int>(e->error_code - NGTCP2_CRYPTO_ERROR);
  if (auto* f = server_.config().features) f->handshake_failed("tls");
  server_.log().info(
      "conn.handshake_failed",
      {{"conn", log_id_},
       {"peer", remote_.to_string()},
       {"reason", fmt::format("refused by the client: TLS alert {} ({}); {}", alert,
                              wolfSSL_alert_desc_string_long(alert), client_alert_hint(alert))}});
}

void connection::log_close(std::string_view how) {
  // Formatting the code and the address is most of a closed connection's logging cost: none of
  // it when the line would not be written (--log-level warn or error).
  if (!server_.log().enabled(log_level::info)) return;
  std::string reason(how);
  std::string code = "-";
  if (phase_ == phase::draining) {
    // What the client said in its CONNECTION_CLOSE: g3proxy closes a used-up connection with
    // application code 0 and reason "finished".
    if (const ngtcp2_ccerr* e = ngtcp2_conn_get_ccerr(conn_)) {
      code = fmt::format(
          "{}{:#x}", e->type == NGTCP2_CCERR_TYPE_APPLICATION ? "app:" : "quic:", e->error_code);
      if (e->reasonlen) reason.assign(reinterpret_cast<const char*>(e->reason), e->reasonlen);
    }
  } else if (phase_ == phase::closing) {
    code =
        fmt::format("{}{:#x}", last_error_.type == NGTCP2_CCERR_TYPE_APPLICATION ? "app:" : "quic:",
                    last_error_.error_code);
    if (last_error_.reasonlen) {
      reason.assign(reinterpret_cast<const char*>(last_error_.reason), last_error_.reasonlen);
    }
  }
  const task_counters& c = tasks_.counters();
  server_.log().info("conn.close",
                     {{"conn", log_id_},
                      {"peer", remote_.to_string()},
                      {"how", how},
                      {"reason", reason},
                      {"code", code},
                      {"tasks", c.tasks},
                      {"streams", c.streams},
                      {"bytes_in", c.bytes_in},
                      {"bytes_out", c.bytes_out},
                      {"ms", (monotonic_now() - opened_at_) / nanoseconds_per_millisecond}});
}

void connection::finish(std::string_view reason) {
  if (dead_) return;
  log_close(reason);
  drop_streams(reason, monotonic_now());
  dead_ = true;
  timer_.cancel();
  work_.cancel();
  server_.connection_done(*this);
}

} // namespace detour::cli
