// SPDX-License-Identifier: MIT
// cli/probe_quic.cpp: one QUIC client connection of `detour probe` on ngtcp2 (see
// probe_quic.hpp): callback trampolines, the read path, the write loop and the timer.
#include "probe_quic.hpp"

#include "packet_protection.hpp"
#include "random.hpp"

#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>

#include <fmt/core.h>

#include <sys/epoll.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <system_error>

namespace detour::cli::probe {

namespace {

// Packets written per send call: a full GSO train (the kernel takes at most 64 segments).
constexpr std::size_t max_packets_per_send = 64;
// The send buffer holds a GSO train of this many Ethernet-sized packets (fewer larger ones).
constexpr std::size_t train_buffer = max_packets_per_send * 1500;
// ngtcp2_vec entries per writev call: a stream's unsent bytes split at 16 KiB chunk edges.
constexpr std::size_t max_vecs = 16;


ngtcp2_conn* get_conn(ngtcp2_crypto_conn_ref* ref) {
  return *static_cast<ngtcp2_conn**>(ref->user_data);
}

} // namespace

std::string_view to_string(close_info::cause c) noexcept {
  switch (c) {
  case close_info::cause::open:
    return "open";
  case close_info::cause::local:
    return "local";
  case close_info::cause::dropped:
    return "dropped";
  case close_info::cause::peer:
    return "peer";
  case close_info::cause::idle_timeout:
    return "idle_timeout";
  case close_info::cause::handshake_timeout:
    return "handshake_timeout";
  case close_info::cause::tls_failure:
    return "tls_failure";
  case close_info::cause::stateless_reset:
    return "stateless_reset";
  case close_info::cause::quic_error:
    return "quic_error";
  case close_info::cause::socket_error:
    return "socket_error";
  case close_info::cause::refused:
    return "refused";
  }
  return "unknown";
}

namespace {

// RFC 8446 section 6 alert names, for the ones a detour handshake can end with.
std::string_view alert_name(std::uint64_t alert) noexcept {
  switch (alert) {
  case 10:
    return "unexpected_message";
  case 40:
    return "handshake_failure";
  case 42:
    return "bad_certificate";
  case 43:
    return "unsupported_certificate";
  case 44:
    return "certificate_revoked";
  case 45:
    return "certificate_expired";
  case 46:
    return "certificate_unknown";
  case 47:
    return "illegal_parameter";
  case 48:
    return "unknown_ca";
  case 50:
    return "decode_error";
  case 51:
    return "decrypt_error";
  case 70:
    return "protocol_version";
  case 80:
    return "internal_error";
  case 109:
    return "missing_extension";
  case 112:
    return "unrecognized_name";
  case 116:
    return "certificate_required";
  case 120:
    return "no_application_protocol";
  default:
    return "";
  }
}

} // namespace

std::string describe(const close_info& c) {
  switch (c.by) {
  case close_info::cause::open:
    return "open";
  case close_info::cause::local:
    return fmt::format("closed by us: code {:#x} \"{}\"", c.code, c.reason);
  case close_info::cause::dropped:
    return "dropped by us without CONNECTION_CLOSE";
  case close_info::cause::peer: {
    std::string what = fmt::format("closed by the server: {} code {:#x}",
                                   c.application ? "application" : "transport", c.code);
    // RFC 9001 section 4.8: CRYPTO_ERROR 0x100 + the TLS alert.
    if (!c.application && c.code >= 0x100 && c.code <= 0x1ff) {
      const std::string_view name = alert_name(c.code - 0x100);
      what += fmt::format(" (TLS alert {}{}{})", c.code - 0x100, name.empty() ? "" : " ", name);
    }
    return what + fmt::format(" \"{}\"", c.reason);
  }
  case close_info::cause::idle_timeout:
    return "idle timeout (nothing heard from the server)";
  case close_info::cause::handshake_timeout:
    return "handshake timeout";
  case close_info::cause::tls_failure:
    return "TLS handshake failed: " + c.reason;
  case close_info::cause::stateless_reset:
    return "stateless reset from the server";
  case close_info::cause::quic_error:
    return "QUIC error: " + c.reason;
  case close_info::cause::socket_error:
    return "UDP socket error: " + c.reason;
  case close_info::cause::refused:
    return "connection refused: " + c.reason;
  }
  return "unknown";
}

// --- callback trampolines ----------------------------------------------------------------------

struct quic_connection::callbacks {
  static quic_connection& self(void* user_data) {
    return *static_cast<quic_connection*>(user_data);
  }

  static void rand(std::uint8_t* dest, std::size_t len, const ngtcp2_rand_ctx*) {
    fill_random({dest, len});
  }

  // settings.qlog_write (not part of the table: set only with --qlog).
  static void qlog_write(void* user_data, std::uint32_t flags, const void* data, std::size_t len) {
    self(user_data).qlog_.write(data, len, (flags & NGTCP2_QLOG_WRITE_FLAG_FIN) != 0);
  }

  static int new_connection_id(ngtcp2_conn*, ngtcp2_cid* cid, std::uint8_t* token,
                               std::size_t cidlen, void*) {
    fill_random({cid->data, cidlen});
    cid->datalen = cidlen;
    fill_random({token, NGTCP2_STATELESS_RESET_TOKENLEN});
    return 0;
  }

  static int handshake_completed(ngtcp2_conn*, void* user_data) {
    auto& c = self(user_data);
    c.handshake_done_ = true;
    c.stats_.handshake_done = monotonic_now();
    c.observer_.on_handshake(c);
    return 0;
  }

  static int handshake_confirmed(ngtcp2_conn*, void* user_data) {
    // HANDSHAKE_DONE: the server finished its side too (it accepted our certificate, if any).
    self(user_data).confirmed_ = true;
    return 0;
  }

  static int recv_stream_data(ngtcp2_conn* conn, std::uint32_t flags, std::int64_t id,
                              std::uint64_t, const std::uint8_t* data, std::size_t len,
                              void* user_data, void*) {
    auto& c = self(user_data);
    c.stats_.stream_bytes_received += len;
    // A task checks what it receives at once and keeps nothing: give the credit back now.
    ngtcp2_conn_extend_max_stream_offset(conn, id, len);
    ngtcp2_conn_extend_max_offset(conn, len);
    if (stream* s = c.find(id); s && s->observer) {
      s->observer->on_data(id, {data, len}, (flags & NGTCP2_STREAM_DATA_FLAG_FIN) != 0);
    }
    return 0;
  }

  static int acked_stream_data_offset(ngtcp2_conn*, std::int64_t id, std::uint64_t offset,
                                      std::uint64_t len, void* user_data, void*) {
    auto& c = self(user_data);
    if (stream* s = c.find(id)) {
      s->tx.acknowledge(offset, len);
      c.release_writable(*s);
    }
    return 0;
  }

  static int stream_close(ngtcp2_conn*, std::uint32_t flags, std::int64_t id, std::uint64_t code,
                          void* user_data, void*) {
    auto& c = self(user_data);
    const auto it = c.streams_.find(id);
    if (it == c.streams_.end()) return 0;
    std::unique_ptr<stream> s = std::move(it->second);
    c.streams_.erase(it); // ngtcp2 touches none of its data again
    // ngtcp2 1.11 has no callback for the peer's STOP_SENDING: a stream that closes while our
    // send side was neither finished nor reset by us was stopped by the server.
    if (!s->fin_sent && !s->reset_by_us && !s->stop_reported && s->observer) {
      const bool known = (flags & NGTCP2_STREAM_CLOSE_FLAG_APP_ERROR_CODE_SET) != 0;
      s->observer->on_stop_sending(id, known ? std::optional<std::uint64_t>(code) : std::nullopt);
    }
    return 0;
  }

  static int stream_reset(ngtcp2_conn*, std::int64_t id, std::uint64_t, std::uint64_t code,
                          void* user_data, void*) {
    auto& c = self(user_data);
    if (stream* s = c.find(id); s && s->observer) s->observer->on_reset(id, code);
    return 0;
  }

  static int extend_max_local_streams_bidi(ngtcp2_conn*, std::uint64_t, void* user_data) {
    auto& c = self(user_data);
    if (c.handshake_done_) c.observer_.on_streams_available(c);
    return 0;
  }

  static int recv_stateless_reset(ngtcp2_conn*, const ngtcp2_pkt_stateless_reset*,
                                  void* user_data) {
    self(user_data).set_closed(close_info::cause::stateless_reset, "stateless reset");
    return 0;
  }

  // Built field by field: designated initializers would trip -Wmissing-field-initializers.
  static constexpr ngtcp2_callbacks table = [] {
    ngtcp2_callbacks c{};
    c.client_initial = client_initial_cb; // tls.hpp: no random generator per key
    c.recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb;
    c.handshake_completed = handshake_completed;
    c.encrypt = encrypt_cb;
    c.decrypt = decrypt_cb;
    c.hp_mask = hp_mask_cb;
    c.recv_stream_data = recv_stream_data;
    c.acked_stream_data_offset = acked_stream_data_offset;
    c.stream_close = stream_close;
    c.recv_stateless_reset = recv_stateless_reset;
    c.recv_retry = recv_retry_cb;
    c.extend_max_local_streams_bidi = extend_max_local_streams_bidi;
    c.rand = rand;
    c.get_new_connection_id = new_connection_id;
    c.update_key = update_key_cb; // tls.hpp: HKDF without a random generator per call
    c.stream_reset = stream_reset;
    c.handshake_confirmed = handshake_confirmed;
    c.delete_crypto_aead_ctx = delete_crypto_aead_ctx_cb;
    c.delete_crypto_cipher_ctx = delete_crypto_cipher_ctx_cb;
    c.get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb;
    c.version_negotiation = version_negotiation_cb;
    return c;
  }();
};

// --- setup -------------------------------------------------------------------------------------

quic_connection::quic_connection(event_loop& loop, const quic_config& config,
                                 const tls_context& tls, receive_batch& batch,
                                 connection_observer& observer, std::uint64_t id)
    : loop_(loop), config_(config), batch_(batch), observer_(observer), id_(id),
      socket_(udp_socket::connected(config.server, config.udp)),
      timer_(loop, [this] { on_timer(); }), flush_later_(loop, [this] { flush(); }),
      notify_closed_(loop, [this] { observer_.on_closed(*this); }),
      conn_ref_(std::make_unique<ngtcp2_crypto_conn_ref>()), pmtud_(config.max_udp_payload),
      txbuf_(train_buffer) {
  conn_ref_->get_conn = get_conn;
  conn_ref_->user_data = &conn_;
  const std::string name = config_.tls_name.empty() ? config_.server.host() : config_.tls_name;
  tls_ = std::make_unique<tls_session>(tls, *conn_ref_, name);

  ngtcp2_cid dcid{}, scid{};
  dcid.datalen = NGTCP2_MIN_INITIAL_DCIDLEN + 2;
  fill_random({dcid.data, dcid.datalen});
  scid.datalen = 16;
  fill_random({scid.data, scid.datalen});

  ngtcp2_settings settings;
  ngtcp2_settings_default(&settings);
  settings.initial_ts = monotonic_now();
  if (!config_.qlog_dir.empty()) {
    // Opened before ngtcp2_conn_client_new, which writes the first record.
    std::string error = qlog_.open(config_.qlog_dir, qlog_file_name({scid.data, scid.datalen}));
    if (error.empty()) {
      settings.qlog_write = callbacks::qlog_write;
    } else if (config_.qlog_problems) {
      config_.qlog_problems->note(std::move(error));
    }
  }
  settings.handshake_timeout = config_.handshake_timeout;
  settings.max_tx_udp_payload_size = config_.max_udp_payload;
  settings.pmtud_probes = pmtud_.sizes.data();
  settings.pmtud_probeslen = pmtud_.count;

  ngtcp2_transport_params params;
  ngtcp2_transport_params_default(&params);
  // g3proxy grants the server no streams of its own: a detour server never opens one.
  params.initial_max_streams_bidi = 0;
  params.initial_max_streams_uni = 0;
  params.initial_max_stream_data_bidi_local = config_.stream_window;
  params.initial_max_stream_data_bidi_remote = 0;
  params.initial_max_stream_data_uni = 0;
  params.initial_max_data = config_.connection_window;
  params.max_idle_timeout = config_.idle_timeout;
  params.max_udp_payload_size = config_.max_udp_payload;

  ngtcp2_path path{};
  path.local.addr = const_cast<sockaddr*>(socket_.local_address().data());
  path.local.addrlen = socket_.local_address().size();
  path.remote.addr = const_cast<sockaddr*>(config_.server.data());
  path.remote.addrlen = config_.server.size();

  const int rv = ngtcp2_conn_client_new(&conn_, &dcid, &scid, &path, config_.version,
                                        &callbacks::table, &settings, &params, nullptr, this);
  if (rv != 0) {
    throw std::runtime_error(std::string("ngtcp2_conn_client_new: ") + ngtcp2_strerror(rv));
  }
  ngtcp2_conn_set_tls_native_handle(conn_, tls_->native_handle());
  ngtcp2_conn_set_keep_alive_timeout(conn_, config_.keep_alive);
}

quic_connection::~quic_connection() {
  watch_.reset();
  if (conn_) ngtcp2_conn_del(conn_);
  if (!qlog_.complete() && config_.qlog_problems)
    config_.qlog_problems->note(qlog_.path() + ": a write failed, the file ends early");
}

void quic_connection::connect() {
  stats_.started = monotonic_now();
  watch_ = std::make_unique<io_watch>(loop_, socket_.fd(), EPOLLIN,
                                      [this](std::uint32_t ev) { on_socket(ev); });
  flush();
}

bool quic_connection::resumed() const noexcept {
  return tls_ && tls_->resumed();
}

std::string quic_connection::alpn() const {
  return tls_ ? tls_->alpn() : std::string();
}

std::string quic_connection::tls_failure() const {
  return tls_ ? tls_->failure_reason() : std::string();
}

std::uint64_t quic_connection::streams_left() const noexcept {
  return closed() ? 0 : ngtcp2_conn_get_streams_bidi_left(conn_);
}

// --- streams -----------------------------------------------------------------------------------

quic_connection::stream* quic_connection::find(std::int64_t id) noexcept {
  const auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : it->second.get();
}

std::int64_t quic_connection::open_stream(stream_observer* observer) {
  if (closed() || !handshake_done_) return -1;
  std::int64_t id = -1;
  if (ngtcp2_conn_open_bidi_stream(conn_, &id, nullptr) != 0) return -1;
  auto s = std::make_unique<stream>();
  s->id = id;
  s->observer = observer;
  streams_.emplace(id, std::move(s));
  return id;
}

void quic_connection::set_observer(std::int64_t id, stream_observer* observer) noexcept {
  if (stream* s = find(id)) s->observer = observer;
}

void quic_connection::queue(stream& s) {
  if (!s.queued) {
    s.queued = true;
    sendq_.push_back(s.id);
  }
  flush_later_.schedule();
}

std::size_t quic_connection::write_some(std::int64_t id, std::span<const std::uint8_t> bytes) {
  stream* s = find(id);
  if (!s || s->write_closed || s->fin_wanted || closed()) return 0;
  const std::size_t n = s->tx.append(bytes, config_.stream_send_budget);
  if (n < bytes.size()) s->wants_writable = true;
  if (n > 0) queue(*s);
  return n;
}

void quic_connection::finish(std::int64_t id) {
  stream* s = find(id);
  if (!s || s->write_closed || s->fin_wanted || closed()) return;
  s->fin_wanted = true;
  queue(*s);
}

void quic_connection::touch(std::int64_t id) {
  stream* s = find(id);
  if (!s || s->write_closed || closed()) return;
  s->touch_wanted = true;
  queue(*s);
}

void quic_connection::stop_sending(std::int64_t id, std::uint64_t code) {
  if (closed() || !find(id)) return;
  ngtcp2_conn_shutdown_stream_read(conn_, 0, id, code);
  flush_later_.schedule();
}

void quic_connection::reset(std::int64_t id, std::uint64_t code) {
  stream* s = find(id);
  if (closed() || !s) return;
  s->write_closed = true;
  s->reset_by_us = true;
  ngtcp2_conn_shutdown_stream_write(conn_, 0, id, code);
  flush_later_.schedule();
}

std::uint64_t quic_connection::unacknowledged(std::int64_t id) const noexcept {
  const auto it = streams_.find(id);
  return it == streams_.end() ? 0 : it->second->tx.buffered();
}

void quic_connection::release_writable(stream& s) {
  // Wake the writer once half the budget is free: fewer, larger refills.
  if (s.wants_writable && s.tx.buffered() <= config_.stream_send_budget / 2) {
    s.wants_writable = false;
    if (s.observer) s.observer->on_writable(s.id);
  }
}

// --- reading -----------------------------------------------------------------------------------

void quic_connection::on_socket(std::uint32_t events) {
  if (closed()) return;
  if (events & EPOLLOUT) {
    if (!blocked_.empty()) {
      std::vector<std::uint8_t> pending;
      pending.swap(blocked_);
      if (!send_packets(pending, blocked_segment_, blocked_ecn_)) return;
    }
    if (blocked_.empty() && watch_) watch_->set_events(EPOLLIN);
  }
  if (events & (EPOLLIN | EPOLLERR)) read_datagrams();
  if (!closed()) flush();
  if (!closed()) check_refused();
}

// g3proxy's sockets are connected, so the kernel turns an ICMP port unreachable into
// ECONNREFUSED on the next receive or send. Before the handshake completes it means nothing
// listens there: no point waiting for the handshake timeout. (Later, the idle timeout decides.)
void quic_connection::check_refused() {
  if (socket_.take_error() != ECONNREFUSED || established()) return;
  set_closed(
      close_info::cause::refused,
      fmt::format("nothing listens on {} (ICMP port unreachable)", config_.server.to_string()));
}

void quic_connection::read_datagrams() {
  // A few batches per wake-up, then let the other connections of the loop have their turn.
  for (int round = 0; round < 4 && !closed(); ++round) {
    const std::size_t n = socket_.receive(batch_);
    if (n == 0) return;
    const timestamp now = monotonic_now();
    for (const received_datagram& d : batch_.datagrams()) {
      ngtcp2_path path{};
      path.local.addr = const_cast<sockaddr*>(d.local.data());
      path.local.addrlen = d.local.size();
      path.remote.addr = const_cast<sockaddr*>(d.remote.data());
      path.remote.addrlen = d.remote.size();
      ngtcp2_pkt_info pi{};
      pi.ecn = static_cast<std::uint8_t>(d.ecn);
      for (std::size_t at = 0; at < d.data.size(); at += d.segment_size) {
        const std::size_t len = std::min(d.segment_size, d.data.size() - at);
        ++stats_.packets_received;
        ++stats_.ecn_received[d.ecn & 3U];
        stats_.largest_packet_received = std::max(stats_.largest_packet_received, len);
        const int rv = ngtcp2_conn_read_pkt(conn_, &path, &pi, d.data.data() + at, len, now);
        if (rv != 0) {
          fail_with(rv);
          return;
        }
        if (closed()) return; // a stateless reset
      }
    }
  }
}

// --- writing -----------------------------------------------------------------------------------

std::uint32_t quic_connection::negotiated_version() const noexcept {
  return conn_ ? ngtcp2_conn_get_negotiated_version(conn_) : 0;
}

void quic_connection::flush() {
  if (closed() || !conn_ || !blocked_.empty()) return;
  if (ngtcp2_conn_in_closing_period(conn_) || ngtcp2_conn_in_draining_period(conn_)) return;
  const timestamp ts = monotonic_now();
  // Between packets only (not while one is being built). ngtcp2 refuses while the previous
  // update is unconfirmed: tried again on the next flush.
  if (config_.key_update_bytes != 0 && confirmed_ && stats_.stream_bytes_sent >= next_key_update_ &&
      ngtcp2_conn_initiate_key_update(conn_, ts) == 0) {
    ++stats_.key_updates;
    next_key_update_ = stats_.stream_bytes_sent + config_.key_update_bytes;
  }
  // Room for the largest packet (a path MTU probe); trains are counted in the path's size.
  const std::size_t packet_limit = ngtcp2_conn_get_max_tx_udp_payload_size(conn_);
  const std::size_t path_size = ngtcp2_conn_get_path_max_tx_udp_payload_size(conn_);
  const std::size_t quantum = ngtcp2_conn_get_send_quantum(conn_);
  const std::size_t max_packets =
      train_packets(quantum, path_size, packet_limit, txbuf_.size(), max_packets_per_send);

  ngtcp2_path_storage ps;
  ngtcp2_path_storage_zero(&ps);
  ngtcp2_pkt_info pi{};
  std::size_t used = 0, packets = 0, segment = 0, total_packets = 0;
  unsigned ecn = 0; // of the train: all its datagrams carry the same IP header bits
  std::size_t next = 0; // position in sendq_ (streams that cannot progress are skipped)
  std::array<std::span<const std::uint8_t>, max_vecs> spans{};
  std::array<ngtcp2_vec, max_vecs> vecs{};
  std::vector<std::int64_t> stopped; // streams the server stopped reading

  for (;;) {
    // The next stream with something to send, round robin.
    stream* s = nullptr;
    while (next < sendq_.size()) {
      s = find(sendq_[next]);
      if (s && !s->write_closed &&
          (s->tx.unsent_size() > 0 || (s->fin_wanted && !s->fin_sent) || s->touch_wanted))
        break;
      if (s) s->queued = false;
      sendq_.erase(sendq_.begin() + static_cast<std::ptrdiff_t>(next));
      s = nullptr;
    }
    std::int64_t stream_id = -1;
    std::size_t nvecs = 0;
    std::uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_MORE;
    if (s) {
      stream_id = s->id;
      nvecs = s->tx.unsent(spans);
      for (std::size_t i = 0; i < nvecs; ++i) {
        vecs[i].base = const_cast<std::uint8_t*>(spans[i].data());
        vecs[i].len = spans[i].size();
      }
      // FIN rides with the last data (all of it fits the vector when unsent() returned it all).
      std::uint64_t listed = 0;
      for (std::size_t i = 0; i < nvecs; ++i) listed += spans[i].size();
      if (s->fin_wanted && listed == s->tx.unsent_size()) flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
    }
    ngtcp2_ssize written_data = -1;
    const ngtcp2_ssize n = ngtcp2_conn_writev_stream(conn_, &ps.path, &pi, txbuf_.data() + used,
                                                     packet_limit, &written_data, flags, stream_id,
                                                     nvecs ? vecs.data() : nullptr, nvecs, ts);
    if (s && written_data >= 0) {
      const auto data = static_cast<std::uint64_t>(written_data);
      const bool all = data == s->tx.unsent_size();
      s->tx.mark_sent(data);
      stats_.stream_bytes_sent += data;
      s->touch_wanted = false;
      if (all && (flags & NGTCP2_WRITE_STREAM_FLAG_FIN)) s->fin_sent = true;
    }
    if (n == NGTCP2_ERR_WRITE_MORE) continue;
    if (n == NGTCP2_ERR_STREAM_DATA_BLOCKED) {
      ++next; // flow control: MAX_STREAM_DATA will bring us back here
      continue;
    }
    if (n == NGTCP2_ERR_STREAM_SHUT_WR || n == NGTCP2_ERR_STREAM_NOT_FOUND) {
      // Not reset by us, so the server sent STOP_SENDING (and ngtcp2 answered RESET_STREAM).
      s->write_closed = true;
      if (!s->reset_by_us && !s->stop_reported) {
        s->stop_reported = true;
        stopped.push_back(s->id);
      }
      continue;
    }
    if (n < 0) {
      fail_with(static_cast<int>(n));
      return;
    }
    if (n == 0) break; // nothing more now (congestion window, pacing, or all sent)
    const auto size = static_cast<std::size_t>(n);
    if (packets > 0 && (size > segment || pi.ecn != ecn)) {
      // A train's segments must not grow nor change their ECN bits: send the train, keep this
      // packet as the next one.
      if (!send_packets({txbuf_.data(), used}, segment, ecn)) return;
      std::memmove(txbuf_.data(), txbuf_.data() + used, size);
      used = 0;
      packets = 0;
    }
    if (packets == 0) {
      segment = size;
      ecn = pi.ecn;
    }
    used += size;
    ++packets;
    ++total_packets;
    if (size < segment || total_packets == max_packets) {
      if (!send_packets({txbuf_.data(), used}, segment, ecn)) return;
      used = 0;
      packets = 0;
    }
    // One send quantum per call: pacing and the timer bring us back for the rest.
    if (total_packets == max_packets) break;
  }
  if (used > 0 && !send_packets({txbuf_.data(), used}, segment, ecn)) return;
  ngtcp2_conn_update_pkt_tx_time(conn_, ts);
  arm_timer();
  // Told after the write loop, so that observers never run inside it.
  for (const std::int64_t id : stopped)
    if (stream* st = find(id); st && st->observer) st->observer->on_stop_sending(id, std::nullopt);
}

bool quic_connection::send_packets(std::span<const std::uint8_t> data, std::size_t segment,
                                   unsigned ecn) {
  const std::size_t count = (data.size() + segment - 1) / segment;
  stats_.packets_sent += count;
  stats_.ecn_sent[ecn & 3U] += count;
  const send_result r = socket_.send(nullptr, nullptr, data, segment, ecn);
  if (r.blocked) {
    blocked_.assign(data.begin() + static_cast<std::ptrdiff_t>(r.bytes_sent), data.end());
    blocked_segment_ = segment;
    blocked_ecn_ = ecn;
    if (watch_) watch_->set_events(EPOLLIN | EPOLLOUT);
    arm_timer();
    return false;
  }
  return true;
}

// --- time --------------------------------------------------------------------------------------

void quic_connection::arm_timer() {
  if (closed()) return;
  const ngtcp2_tstamp expiry = ngtcp2_conn_get_expiry(conn_);
  if (expiry == UINT64_MAX) {
    timer_.cancel();
    return;
  }
  timer_.arm_at(expiry);
}

void quic_connection::on_timer() {
  if (closed()) return;
  const int rv = ngtcp2_conn_handle_expiry(conn_, monotonic_now());
  if (rv != 0) {
    fail_with(rv);
    return;
  }
  flush();
  if (!closed()) check_refused(); // a retransmission's send may be what met the error
}

// --- ending ------------------------------------------------------------------------------------

void quic_connection::set_closed(close_info::cause by, std::string reason) {
  if (closed()) return;
  close_.by = by;
  close_.reason = std::move(reason);
  close_.at = monotonic_now();
  finish_close();
}

void quic_connection::finish_close() {
  timer_.cancel();
  flush_later_.cancel();
  watch_.reset();
  notify_closed_.schedule();
}

void quic_connection::fail_with(int liberr) {
  if (closed()) return;
  switch (liberr) {
  case NGTCP2_ERR_DRAINING: {
    // The server sent CONNECTION_CLOSE: nothing more to send, just report it.
    const ngtcp2_ccerr* e = ngtcp2_conn_get_ccerr(conn_);
    close_.application = e->type == NGTCP2_CCERR_TYPE_APPLICATION;
    close_.code = e->error_code;
    set_closed(close_info::cause::peer,
               std::string(reinterpret_cast<const char*>(e->reason), e->reasonlen));
    return;
  }
  case NGTCP2_ERR_IDLE_CLOSE:
    set_closed(close_info::cause::idle_timeout, "idle timeout");
    return;
  case NGTCP2_ERR_HANDSHAKE_TIMEOUT:
    set_closed(close_info::cause::handshake_timeout, "handshake timeout");
    return;
  case NGTCP2_ERR_DROP_CONN:
    set_closed(close_info::cause::quic_error, "connection dropped");
    return;
  case NGTCP2_ERR_CRYPTO: {
    std::string why = tls_failure();
    const unsigned alert = ngtcp2_conn_get_tls_alert(conn_);
    if (alert != 0) why += fmt::format(" (TLS alert {})", alert);
    ngtcp2_ccerr err;
    ngtcp2_ccerr_default(&err);
    ngtcp2_ccerr_set_tls_alert(&err, static_cast<std::uint8_t>(alert), nullptr, 0);
    std::array<std::uint8_t, 1280> buf{};
    ngtcp2_path_storage ps;
    ngtcp2_path_storage_zero(&ps);
    const ngtcp2_ssize n = ngtcp2_conn_write_connection_close(conn_, &ps.path, nullptr, buf.data(),
                                                              buf.size(), &err, monotonic_now());
    if (n > 0) socket_.send(nullptr, nullptr, {buf.data(), static_cast<std::size_t>(n)}, 0);
    set_closed(close_info::cause::tls_failure, why);
    return;
  }
  default:
    break;
  }
  ngtcp2_ccerr err;
  ngtcp2_ccerr_default(&err);
  ngtcp2_ccerr_set_liberr(&err, liberr, nullptr, 0);
  std::array<std::uint8_t, 1280> buf{};
  ngtcp2_path_storage ps;
  ngtcp2_path_storage_zero(&ps);
  const ngtcp2_ssize n = ngtcp2_conn_write_connection_close(conn_, &ps.path, nullptr, buf.data(),
                                                            buf.size(), &err, monotonic_now());
  if (n > 0) socket_.send(nullptr, nullptr, {buf.data(), static_cast<std::size_t>(n)}, 0);
  set_closed(close_info::cause::quic_error, ngtcp2_strerror(liberr));
}

void quic_connection::close(std::uint64_t app_code, std::string_view reason) {
  if (closed()) return;
  if (!ngtcp2_conn_in_closing_period(conn_) && !ngtcp2_conn_in_draining_period(conn_)) {
    // Whatever is still buffered goes out first, as quinn sends pending frames before closing.
    if (blocked_.empty()) flush();
    if (closed()) return;
    ngtcp2_ccerr err;
    ngtcp2_ccerr_default(&err);
    ngtcp2_ccerr_set_application_error(
        &err, app_code, reinterpret_cast<const std::uint8_t*>(reason.data()), reason.size());
    std::array<std::uint8_t, 1280> buf{};
    ngtcp2_path_storage ps;
    ngtcp2_path_storage_zero(&ps);
    const ngtcp2_ssize n = ngtcp2_conn_write_connection_close(conn_, &ps.path, nullptr, buf.data(),
                                                              buf.size(), &err, monotonic_now());
    if (n > 0) socket_.send(nullptr, nullptr, {buf.data(), static_cast<std::size_t>(n)}, 0);
  }
  close_.application = true;
  close_.code = app_code;
  set_closed(close_info::cause::local, std::string(reason));
}

void quic_connection::drop() {
  set_closed(close_info::cause::dropped, "dropped");
}

} // namespace detour::cli::probe
