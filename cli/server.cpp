// SPDX-License-Identifier: MIT
// cli/server.cpp: packet routing, version negotiation, stateless reset, Retry, shutdown (see
// server.hpp).
#include "server.hpp"

#include <ngtcp2/ngtcp2_crypto.h>

#include <sys/epoll.h>

#if defined(__GLIBC__)
#include <malloc.h> // malloc_trim
#endif

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace detour::cli {

namespace {

// Shortest datagram that can be a QUIC packet we act on (RFC 9000 §10.3: a stateless reset
// must stay shorter than what triggered it, and is at least 21 bytes).
constexpr std::size_t min_packet_size = 21;
// Our connection IDs are 18 bytes (connection.cpp): what short-header packets carry.
constexpr std::size_t our_cid_length = 18;
// Stateless resets per second, at most.
constexpr std::uint32_t stateless_resets_per_second = 100;
// A Retry token is accepted this long after it was made.
constexpr timestamp retry_token_lifetime = 10 * nanoseconds_per_second;
// A NEW_TOKEN (RFC 9000 §8.1.3) spares a returning client the Retry round trip for this long.
constexpr timestamp new_token_lifetime = 3600 * nanoseconds_per_second;

} // namespace

timestamp token_time() noexcept {
  return monotonic_now();
}

server::server(event_loop& loop, const serve_config& config, tls_context tls, logger& log,
               server_group& group, std::size_t index)
    : loop_(loop), config_(config), tls_(std::move(tls)), log_(log), group_(group), index_(index),
      batch_(), scratch_(max_train_packets * NGTCP2_MAX_PMTUD_UDP_PAYLOAD_SIZE),
      reaper_(loop, [this] { reap(); }) {
  udp_options options;
  options.reuse_port = group_.workers > 1;
  // The lag that --placement pack reads; spread has no use for a stamp on every datagram.
  options.receive_timestamps =
      group_.workers > 1 && config_.placement == serve_config::placement::pack;
  for (const socket_address& a : config_.listen) {
    auto ep = std::make_unique<endpoint>(endpoint{udp_socket::bound(a, options), nullptr, {}});
    endpoint* raw = ep.get();
    ep->watch = std::make_unique<io_watch>(loop_, ep->socket.fd(), EPOLLIN,
                                           [this, raw](std::uint32_t events) {
                                             if (events & EPOLLOUT) on_writable(*raw);
                                             if (events & (EPOLLIN | EPOLLERR)) on_readable(*raw);
                                           });
    endpoints_.push_back(std::move(ep));
  }
}

server::~server() {
  // Connections first: they reference endpoints and the pool.
  group_.connections -= connections_.size();
  connections_.clear();
  routes_.clear();
}

int server::steer_by_connection_id() noexcept {
  for (const auto& ep : endpoints_) {
    if (const int e = ep->socket.steer_by_connection_id(our_cid_length); e != 0) return e;
  }
  return 0;
}

std::vector<socket_address> server::local_addresses() const {
  std::vector<socket_address> out;
  for (const auto& ep : endpoints_) out.push_back(ep->socket.local_address());
  return out;
}

// --- receiving ---------------------------------------------------------------------------------

void server::on_readable(endpoint& ep) {
  // Bounded: a few batches per wake-up, then let timers and writes run.
  for (int round = 0; round < 4; ++round) {
    if (ep.socket.receive(batch_) == 0) return;
    if (group_.packing) note_lag(batch_.datagrams().front());
    for (const received_datagram& d : batch_.datagrams()) {
      // A GRO train: equal-sized datagrams back to back.
      for (std::size_t off = 0; off < d.data.size(); off += d.segment_size) {
        const std::size_t n = std::min(d.segment_size, d.data.size() - off);
        on_packet(ep, d, d.data.subspan(off, n));
      }
    }
  }
}

namespace {

// Initial and 0-RTT packets carry the client's own random DCID until it learns ours (RFC 9000
// §7.2). QUIC v1 numbers Initial 0 and 0-RTT 1 (RFC 9000 §17.2); v2 numbers them 1 and 2 (RFC
// 9369 §3.2), and its Handshake packets, type 3, carry our ID.
bool is_initial(std::uint8_t first, std::uint32_t version) noexcept {
  const unsigned type = (first & 0x30U) >> 4;
  return version == NGTCP2_PROTO_VER_V2 ? type == 1 : type == 0;
}
bool client_chosen_dcid(std::uint8_t first, std::uint32_t version) noexcept {
  const unsigned type = (first & 0x30U) >> 4;
  return version == NGTCP2_PROTO_VER_V2 ? (type == 1 || type == 2) : (type == 0 || type == 1);
}

// CPU time of the calling thread (a system call: once a lag window).
std::uint64_t thread_cpu_ns() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000U +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

std::uint64_t realtime_now() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000U +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

} // namespace

void server::on_packet(endpoint& ep, const received_datagram& d, std::span<const std::uint8_t> pkt,
                       bool placed) {
  if (pkt.size() < min_packet_size) return;
  ngtcp2_version_cid vc{};
  switch (ngtcp2_pkt_decode_version_cid(&vc, pkt.data(), pkt.size(), our_cid_length)) {
  case 0:
    break;
  case NGTCP2_ERR_VERSION_NEGOTIATION:
    send_version_negotiation(ep, d, {vc.dcid, vc.dcidlen}, {vc.scid, vc.scidlen});
    return;
  default:
    return; // not QUIC: ignore
  }
  if (const auto it = routes_.find(cid_key(vc.dcid, vc.dcidlen)); it != routes_.end()) {
    connection* c = it->second;
    if (!c->dead()) c->on_packet(d, pkt);
    return;
  }
  if (forward_to_owner(ep, d, pkt, {vc.dcid, vc.dcidlen}, vc.version)) return;
  if ((pkt[0] & 0x80) == 0) {
    // A short-header packet for a connection we do not know (we restarted, or it is long
    // gone): tell the client with a stateless reset so it stops at once.
    send_stateless_reset(ep, d, pkt.size(), {vc.dcid, vc.dcidlen});
    return;
  }
  if (!placed && group_.packing && place_elsewhere(ep, d, pkt, {vc.dcid, vc.dcidlen}, vc.version))
    return;
  accept(ep, d, pkt);
}

std::size_t choose_worker(std::span<const std::uint32_t> lag_us,
                          std::uint32_t keeps_up_us) noexcept {
  std::size_t least = 0;
  for (std::size_t i = 0; i < lag_us.size(); ++i) {
    if (lag_us[i] < keeps_up_us) return i;
    if (lag_us[i] < lag_us[least]) least = i;
  }
  return least;
}

std::size_t server_group::place(std::uint64_t now) const noexcept {
  std::array<std::uint32_t, max_workers> lag{};
  for (std::size_t i = 0; i < workers; ++i) {
    const std::uint64_t at = lags[i].at.load(std::memory_order_relaxed);
    lag[i] = at + lag_stale_ns < now ? 0 : lags[i].lag_us.load(std::memory_order_relaxed);
  }
  return choose_worker({lag.data(), workers}, keeps_up_lag_us);
}

void server::note_lag(const received_datagram& oldest) noexcept {
  if (oldest.queued_at == 0) return;
  // The datagrams of a batch queued in order: the first waited longest. Of its wait, the part
  // spent while this thread slept in the loop's wait (the time the host took to wake it) is
  // not counted: another worker would not be woken sooner. What remains is the time it
  // waited for this worker to finish other work.
  const std::uint64_t now = realtime_now();
  const timestamp mono = monotonic_now();
  const std::uint64_t to_real = now - mono; // both clocks read together
  const std::uint64_t queued = oldest.queued_at;
  std::uint64_t lag = now > queued ? now - queued : 0;
  const std::uint64_t slept_from = std::max(queued, loop_.wait_began() + to_real);
  const std::uint64_t slept_to = loop_.wait_ended() + to_real;
  if (slept_to > slept_from) lag -= std::min(lag, slept_to - slept_from);
  constexpr std::uint64_t window = 10'000'000; // 10 ms
  const std::uint64_t before = lag_busy_ ? std::max(lag_window_max_, lag_previous_max_) : 0;
  if (now - lag_window_start_ >= window) {
    // A new window; the last one still counts until this one ends. A lag counts only while
    // this thread ran for at least half of the last window: a worker with little to do whose
    // packets waited was held up by other work on the host, which would hold up any other
    // worker as much.
    const std::uint64_t cpu = thread_cpu_ns();
    lag_busy_ = now - lag_window_start_ < 2 * window &&
                2 * (cpu - lag_window_cpu_) >= now - lag_window_start_;
    lag_previous_max_ = now - lag_window_start_ < 2 * window ? lag_window_max_ : 0;
    lag_window_max_ = 0;
    lag_window_start_ = now;
    lag_window_cpu_ = cpu;
  }
  lag_window_max_ = std::max(lag_window_max_, lag);
  const std::uint64_t current = lag_busy_ ? std::max(lag_window_max_, lag_previous_max_) : 0;
  worker_lag& mine = group_.lags[index_];
  // Said when it changes, and at least once a window so that it does not look stale.
  if (current != before || now - mine.at.load(std::memory_order_relaxed) >= window) {
    mine.lag_us.store(static_cast<std::uint32_t>(std::min<std::uint64_t>(current / 1000, 1U << 30)),
                      std::memory_order_relaxed);
    mine.at.store(now, std::memory_order_relaxed);
  }
}

bool server::place_elsewhere(endpoint& ep, const received_datagram& d,
                             std::span<const std::uint8_t> pkt, std::span<const std::uint8_t> dcid,
                             std::uint32_t version) {
  if (!client_chosen_dcid(pkt[0], version)) return false;
  placement_key key(d.remote.data(), std::min<std::size_t>(d.remote.size(), 28));
  key.append(dcid.data(), dcid.size());
  std::size_t owner = 0;
  if (auto it = placed_.find(key); it != placed_.end()) {
    owner = it->second;
  } else if (auto old = placed_before_.find(key); old != placed_before_.end()) {
    owner = old->second;
  } else {
    // Only an Initial that accept() would take starts a connection (a full-sized datagram);
    // anything else finds none, wherever it goes, and is dropped here.
    ngtcp2_pkt_hd hd{};
    if (!is_initial(pkt[0], version) || ngtcp2_accept(&hd, pkt.data(), pkt.size()) != 0)
      return false;
    const std::uint64_t now = realtime_now();
    if (now - placed_since_ >= 10 * nanoseconds_per_second || placed_.size() >= 16384) {
      placed_before_ = std::move(placed_);
      placed_.clear();
      placed_since_ = now;
    }
    owner = group_.place(now);
    placed_.emplace(key, static_cast<std::uint16_t>(owner));
  }
  if (owner == index_) return false;
  forward(ep, d, pkt, owner, true);
  return true;
}

bool server::forward_to_owner(endpoint& ep, const received_datagram& d,
                              std::span<const std::uint8_t> pkt, std::span<const std::uint8_t> dcid,
                              std::uint32_t version) {
  if (group_.workers < 2 || dcid.size() != our_cid_length) return false;
  // Initial and 0-RTT packets carry the client's own random DCID until it learns ours (RFC
  // 9000 §7.2), and a client does not migrate before the handshake (§9): whoever receives
  // them accepts them or places them (place_elsewhere). Every other packet names its
  // connection with an ID of ours.
  if ((pkt[0] & 0x80) != 0 && client_chosen_dcid(pkt[0], version)) return false;
  const std::size_t owner = dcid[0];
  if (owner == index_ || owner >= group_.workers) return false;
  forward(ep, d, pkt, owner, false);
  return true;
}

void server::forward(endpoint& ep, const received_datagram& d, std::span<const std::uint8_t> pkt,
                     std::size_t owner, bool placed) {
  forwarded_datagram f;
  for (std::size_t i = 0; i < endpoints_.size(); ++i) {
    if (endpoints_[i].get() == &ep) f.endpoint = i;
  }
  f.remote = d.remote;
  f.local = d.local;
  f.bytes.assign(pkt.begin(), pkt.end());
  f.ecn = d.ecn;
  stats_.forwarded.fetch_add(1, std::memory_order_relaxed);
  // Every packet of a rebound connection comes this way: no address text unless it is logged.
  if (log_.enabled(log_level::debug)) {
    log_.debug("packet.forwarded",
               {{"to_worker", owner}, {"peer", d.remote.to_string()}, {"new_connection", placed}});
  }
  f.placed = placed;
  group_.forward(owner, std::move(f));
}

void server::on_forwarded(const forwarded_datagram& f) {
  if (f.endpoint >= endpoints_.size() || f.bytes.empty()) return;
  received_datagram d;
  d.data = f.bytes;
  d.remote = f.remote;
  d.local = f.local;
  d.segment_size = f.bytes.size();
  d.ecn = f.ecn;
  // The DCID names this worker, or the sender placed the new connection here: on_packet
  // never forwards it again.
  on_packet(*endpoints_[f.endpoint], d, f.bytes, f.placed);
}

void server::new_cid(ngtcp2_cid& cid, std::size_t length) const noexcept {
  cid.datalen = length;
  fill_random({cid.data, length});
  if (group_.workers > 1 && length > 0) cid.data[0] = static_cast<std::uint8_t>(index_);
}

void server::warn_full() {
  // The first refusal at --max-connections is a warning, then one every 10 s at most (for all
  // workers together) with the count since the last: clients g3proxy cannot connect fail on
  // its side only.
  group_.refused_unreported.fetch_add(1, std::memory_order_relaxed);
  const timestamp now = monotonic_now();
  timestamp last = group_.full_warned_at.load(std::memory_order_relaxed);
  if (last != 0 && now - last < 10 * nanoseconds_per_second) return;
  // One worker wins the turn; the others count.
  if (!group_.full_warned_at.compare_exchange_strong(last, now, std::memory_order_relaxed)) return;
  const std::uint64_t refused = group_.refused_unreported.exchange(0, std::memory_order_relaxed);
  log_.warn("server.connections_full", {{"max_connections", config_.max_connections},
                                        {"refused", refused},
                                        {"hint", "raise --max-connections"}});
}

void server::accept(endpoint& ep, const received_datagram& d, std::span<const std::uint8_t> pkt) {
  ngtcp2_pkt_hd hd{};
  if (ngtcp2_accept(&hd, pkt.data(), pkt.size()) != 0) return; // not an acceptable Initial
  if (shutting_down_ || group_.connections.load() >= config_.max_connections) {
    ++stats_.refused;
    log_.debug("conn.refused", {{"peer", d.remote.to_string()},
                                {"reason", shutting_down_ ? "shutting down" : "max connections"}});
    if (!shutting_down_) warn_full();
    send_refusal(ep, d, hd, NGTCP2_CONNECTION_REFUSED);
    return;
  }

  connection::initial init;
  init.client_scid = hd.scid;
  init.client_dcid = hd.dcid;
  init.version = hd.version;
  if (hd.type == NGTCP2_PKT_INITIAL && hd.tokenlen > 0 &&
      hd.token[0] == NGTCP2_CRYPTO_TOKEN_MAGIC_RETRY2) {
    // The client comes back with our Retry token: check it (address, CID, age).
    ngtcp2_cid odcid{};
    if (ngtcp2_crypto_verify_retry_token2(
            &odcid, hd.token, hd.tokenlen, group_.secret.data(), group_.secret.size(), hd.version,
            reinterpret_cast<const ngtcp2_sockaddr*>(d.remote.data()), d.remote.size(), &hd.dcid,
            retry_token_lifetime, token_time()) != 0) {
      send_refusal(ep, d, hd, NGTCP2_INVALID_TOKEN);
      return;
    }
    init.original_dcid = odcid;
    init.retried = true;
    init.token.assign(hd.token, hd.token + hd.tokenlen);
  } else if (hd.type == NGTCP2_PKT_INITIAL && hd.tokenlen > 0 &&
             hd.token[0] == NGTCP2_CRYPTO_TOKEN_MAGIC_REGULAR &&
             ngtcp2_crypto_verify_regular_token(
                 hd.token, hd.tokenlen, group_.secret.data(), group_.secret.size(),
                 reinterpret_cast<const ngtcp2_sockaddr*>(d.remote.data()), d.remote.size(),
                 new_token_lifetime, token_time()) == 0) {
    // A NEW_TOKEN we gave this address on an earlier connection: validated already, no Retry.
    init.token.assign(hd.token, hd.token + hd.tokenlen);
  } else if (config_.retry) {
    send_retry(ep, d, hd);
    return;
  }

  std::unique_ptr<connection> c;
  try {
    c = std::make_unique<connection>(*this, ep, d.local, d.remote, init, tls_);
  } catch (const std::exception& e) {
    log_.warn("conn.setup_failed", {{"peer", d.remote.to_string()}, {"error", e.what()}});
    return;
  }
  connection* raw = c.get();
  connections_.emplace(raw, std::move(c));
  ++group_.connections;
  for (const ngtcp2_cid& cid : raw->routed_cids()) associate(cid, *raw);
  ++stats_.connections;
  raw->on_packet(d, pkt);
}

// --- stateless answers -------------------------------------------------------------------------

void server::send_version_negotiation(endpoint& ep, const received_datagram& d,
                                      std::span<const std::uint8_t> dcid,
                                      std::span<const std::uint8_t> scid) {
  // RFC 9000 §6.1: list what we support (QUIC v1, and v2 of RFC 9369, whose Initials ngtcp2
  // accepts as well) plus a reserved version to keep clients honest (§15, 0x?a?a?a?a).
  std::array<std::uint8_t, 4> r{};
  fill_random(r);
  const std::uint32_t reserved =
      ((std::uint32_t{r[0]} << 24 | std::uint32_t{r[1]} << 16 | std::uint32_t{r[2]} << 8 | r[3]) &
       0xf0f0f0f0u) |
      0x0a0a0a0au;
  const std::uint32_t versions[] = {reserved, NGTCP2_PROTO_VER_V1, NGTCP2_PROTO_VER_V2};
  std::array<std::uint8_t, NGTCP2_MAX_UDP_PAYLOAD_SIZE> buf{};
  std::uint8_t unused = 0;
  fill_random({&unused, 1});
  // The client's SCID becomes our DCID and vice versa (§17.2.1).
  const ngtcp2_ssize n =
      ngtcp2_pkt_write_version_negotiation(buf.data(), buf.size(), unused, scid.data(), scid.size(),
                                           dcid.data(), dcid.size(), versions, std::size(versions));
  if (n <= 0) return;
  ++stats_.version_negotiations;
  (void)send(ep, d.remote, d.local, {buf.data(), static_cast<std::size_t>(n)},
             static_cast<std::size_t>(n), 0);
}

void server::send_stateless_reset(endpoint& ep, const received_datagram& d, std::size_t size,
                                  std::span<const std::uint8_t> dcid) {
  const timestamp now = monotonic_now();
  if (now >= reset_bucket_refill_) {
    reset_bucket_ = stateless_resets_per_second;
    reset_bucket_refill_ = now + nanoseconds_per_second;
  }
  if (reset_bucket_ == 0) return;
  // §10.3: shorter than the packet that triggered it (no amplification, no loops), at least
  // 21 bytes; 1 + random + 16-byte token.
  if (size <= min_packet_size + 1 || dcid.empty()) return;
  const std::size_t total = std::min<std::size_t>(size - 1, 43);
  std::array<std::uint8_t, 43> rand{};
  fill_random(rand);
  ngtcp2_cid cid{};
  ngtcp2_cid_init(&cid, dcid.data(), dcid.size());
  std::array<std::uint8_t, NGTCP2_STATELESS_RESET_TOKENLEN> token{};
  if (!stateless_reset_token(token, group_.secret, cid)) {
    return;
  }
  std::array<std::uint8_t, 64> buf{};
  const ngtcp2_ssize n = ngtcp2_pkt_write_stateless_reset(buf.data(), buf.size(), token.data(),
                                                          rand.data(), total - 1 - token.size());
  if (n <= 0) return;
  --reset_bucket_;
  ++stats_.stateless_resets;
  (void)send(ep, d.remote, d.local, {buf.data(), static_cast<std::size_t>(n)},
             static_cast<std::size_t>(n), 0);
}

void server::send_retry(endpoint& ep, const received_datagram& d, const ngtcp2_pkt_hd& hd) {
  ngtcp2_cid scid{};
  new_cid(scid, our_cid_length);
  std::array<std::uint8_t, NGTCP2_CRYPTO_MAX_RETRY_TOKENLEN2> token{};
  const ngtcp2_ssize tlen = ngtcp2_crypto_generate_retry_token2(
      token.data(), group_.secret.data(), group_.secret.size(), hd.version,
      reinterpret_cast<const ngtcp2_sockaddr*>(d.remote.data()), d.remote.size(), &scid, &hd.dcid,
      token_time());
  if (tlen < 0) return;
  std::array<std::uint8_t, NGTCP2_MAX_UDP_PAYLOAD_SIZE> buf{};
  const ngtcp2_ssize n =
      ngtcp2_crypto_write_retry(buf.data(), buf.size(), hd.version, &hd.scid, &scid, &hd.dcid,
                                token.data(), static_cast<std::size_t>(tlen));
  if (n <= 0) return;
  ++stats_.retries;
  (void)send(ep, d.remote, d.local, {buf.data(), static_cast<std::size_t>(n)},
             static_cast<std::size_t>(n), 0);
}

void server::send_refusal(endpoint& ep, const received_datagram& d, const ngtcp2_pkt_hd& hd,
                          std::uint64_t error) {
  std::array<std::uint8_t, NGTCP2_MAX_UDP_PAYLOAD_SIZE> buf{};
  const ngtcp2_ssize n = ngtcp2_crypto_write_connection_close(
      buf.data(), buf.size(), hd.version, &hd.scid, &hd.dcid, error, nullptr, 0);
  if (n <= 0) return;
  (void)send(ep, d.remote, d.local, {buf.data(), static_cast<std::size_t>(n)},
             static_cast<std::size_t>(n), 0);
}

// --- sending -----------------------------------------------------------------------------------

send_result server::send(endpoint& ep, const socket_address& remote, const socket_address& local,
                         std::span<const std::uint8_t> data, std::size_t segment, unsigned ecn) {
  const bool gso = ep.socket.gso_enabled();
  const send_result r = ep.socket.send(&remote, &local, data, segment, ecn);
  if (gso && !ep.socket.gso_enabled()) {
    log_.warn("udp.gso_disabled", {{"address", ep.socket.local_address().to_string()},
                                   {"reason", "the kernel refused a segmented send"}});
  }
  return r;
}

bool server::gso_available() const noexcept {
  for (const auto& ep : endpoints_) {
    if (!ep->socket.gso_enabled()) return false;
  }
  return !endpoints_.empty();
}

void server::wait_writable(endpoint& ep, connection& c) {
  if (std::find(ep.blocked.begin(), ep.blocked.end(), &c) == ep.blocked.end()) {
    ep.blocked.push_back(&c);
  }
  ep.watch->set_events(EPOLLIN | EPOLLOUT);
}

void server::on_writable(endpoint& ep) {
  std::vector<connection*> waiting;
  waiting.swap(ep.blocked);
  ep.watch->set_events(EPOLLIN);
  for (connection* c : waiting) {
    if (connections_.count(c) && !c->dead()) c->on_writable();
  }
}

// --- connection lifetime -----------------------------------------------------------------------

void server::associate(const ngtcp2_cid& cid, connection& c) {
  routes_[cid_key(cid.data, cid.datalen)] = &c;
}

void server::dissociate(const ngtcp2_cid& cid) {
  routes_.erase(cid_key(cid.data, cid.datalen));
}

void server::connection_done(connection& c) {
  dead_.push_back(&c);
  reaper_.schedule();
}

void server::qlog_failed(std::string_view error) {
  if (qlog_failures_++ == 0) {
    // The worker's logger names the worker.
    log_.warn("qlog.failed",
              {{"error", error}, {"note", "later qlog failures on this worker are not logged"}});
  }
}

void server::reap() {
  std::vector<connection*> dead;
  dead.swap(dead_);
  for (connection* c : dead) {
    for (const ngtcp2_cid& cid : c->routed_cids()) {
      const auto it = routes_.find(cid_key(cid.data, cid.datalen));
      if (it != routes_.end() && it->second == c) routes_.erase(it);
    }
    for (auto& ep : endpoints_) std::erase(ep->blocked, c);
    if (connections_.erase(c) != 0) --group_.connections;
  }
  if (!dead.empty()) trim_memory();
  check_drained();
}

void server::trim_memory() {
  // The allocator keeps freed stream blocks for reuse and does not hand them back to the
  // system by itself: after a burst the process would stay at its peak. Give back what is free
  // when the load has fallen (all connections gone, or half the blocks of the last peak).
  // A trim walks the whole heap: while connections come and go (a handshake storm), at most
  // one a second.
  const std::size_t in_use = pool_.in_use();
  if (in_use > peak_blocks_) peak_blocks_ = in_use;
  const timestamp now = monotonic_now();
  if (!connections_.empty() &&
      (in_use * 2 > peak_blocks_ || now - last_trim_ < nanoseconds_per_second)) {
    return;
  }
#if defined(__GLIBC__)
  ::malloc_trim(0);
#endif
  last_trim_ = now;
  peak_blocks_ = in_use;
}

// --- shutdown and reload -----------------------------------------------------------------------

void server::begin_shutdown(std::function<void()> on_done) {
  if (shutting_down_) {
    // A second signal: do not wait any longer.
    for (auto& [c, owned] : connections_) c->close(0, "shutdown");
    return;
  }
  shutting_down_ = true;
  on_drained_ = std::move(on_done);
  log_.info("server.draining",
            {{"connections", connections_.size()},
             {"timeout_ms", config_.drain_timeout / nanoseconds_per_millisecond}});
  for (auto& [c, owned] : connections_) c->begin_shutdown();
  drain_timer_ = std::make_unique<timer>(loop_, [this] {
    log_.info("server.drain_timeout", {{"connections", connections_.size()}});
    for (auto& [c, owned] : connections_) c->close(0, "shutdown");
  });
  drain_timer_->arm_in(config_.drain_timeout);
  check_drained();
}

void server::check_drained() {
  if (!shutting_down_ || !connections_.empty() || !on_drained_) return;
  drain_timer_.reset();
  auto done = std::move(on_drained_);
  on_drained_ = nullptr;
  done();
}

void server::replace_tls(tls_context tls) {
  tls_ = std::move(tls);
}

} // namespace detour::cli
