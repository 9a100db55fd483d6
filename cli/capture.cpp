// SPDX-License-Identifier: MIT
// cli/capture.cpp: synthetic TCP conversations and the capture file (see capture.hpp).
#include "capture.hpp"

#include <pcap/pcap.h>

#include <fcntl.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <system_error>

namespace detour::cli {

namespace {

// TCP flags (RFC 9293 §3.1).
constexpr std::uint8_t tcp_fin = 0x01;
constexpr std::uint8_t tcp_syn = 0x02;
constexpr std::uint8_t tcp_rst = 0x04;
constexpr std::uint8_t tcp_psh = 0x08;
constexpr std::uint8_t tcp_ack = 0x10;

constexpr std::size_t ipv4_header = 20;
constexpr std::size_t ipv6_header = 40;
constexpr std::size_t tcp_header = 20;
// SYN options: MSS (kind 2, 4 bytes), NOP, window scale (kind 3, 3 bytes).
constexpr std::size_t syn_options = 4 + 1 + 3;
// Window scale: 2^7 x 65535 ~ 8 MiB, so a relay chunk never looks like a full window.
constexpr std::uint8_t window_shift = 7;
constexpr std::uint8_t protocol_tcp = 6;
constexpr int snapshot_length = 65535;

void put16(std::uint8_t* p, std::uint32_t v) {
  p[0] = static_cast<std::uint8_t>(v >> 8);
  p[1] = static_cast<std::uint8_t>(v);
}

void put32(std::uint8_t* p, std::uint32_t v) {
  p[0] = static_cast<std::uint8_t>(v >> 24);
  p[1] = static_cast<std::uint8_t>(v >> 16);
  p[2] = static_cast<std::uint8_t>(v >> 8);
  p[3] = static_cast<std::uint8_t>(v);
}

// The Internet checksum's running sum (RFC 1071) over |bytes|, big-endian 16-bit words.
std::uint64_t sum16(std::span<const std::uint8_t> bytes, std::uint64_t sum = 0) {
  std::size_t i = 0;
  for (; i + 1 < bytes.size(); i += 2) sum += std::uint32_t{bytes[i]} << 8 | bytes[i + 1];
  if (i < bytes.size()) sum += std::uint32_t{bytes[i]} << 8;
  return sum;
}

std::uint16_t fold(std::uint64_t sum) {
  while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum & 0xFFFF);
}

// FNV-1a over the lower-cased name: a stable address for a host that is not one.
std::uint32_t name_hash(std::string_view name, std::uint32_t basis) {
  std::uint32_t h = basis;
  for (char c : name) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    h ^= static_cast<unsigned char>(c);
    h *= 16777619u;
  }
  return h;
}

detour::ip_address mapped_v6(const detour::ip_address& v4) {
  std::array<std::uint8_t, 16> o{};
  o[10] = o[11] = 0xFF;
  std::memcpy(o.data() + 12, v4.octets.data(), 4);
  return detour::ip_address::v6(o);
}

} // namespace

tcp_endpoints capture_endpoints(const north_request& r) {
  tcp_endpoints e;
  e.client = r.client;
  e.server.port = r.upstream.port;
  if (const auto ip = detour::parse_ip(r.upstream.host)) {
    e.server.ip = *ip;
  } else {
    std::string_view host = r.upstream.host;
    if (!host.empty() && host.back() == '.') host.remove_suffix(1);
    const std::uint32_t h = name_hash(host, 2166136261u);
    if (r.client.ip.is_v4()) {
      // 198.18.0.0/15 (RFC 2544, benchmarking): never a real host.
      e.server.ip =
          detour::ip_address::v4(198, static_cast<std::uint8_t>(18 + ((h >> 16) & 1)),
                                 static_cast<std::uint8_t>(h >> 8), static_cast<std::uint8_t>(h));
    } else {
      // 2001:2::/48 (RFC 5180, benchmarking), 80 bits from two hashes.
      const std::uint32_t g = name_hash(host, 0x811C9DC5u ^ 0x5bd1e995u);
      const std::array<std::uint8_t, 16> o = {0x20,
                                              0x01,
                                              0x00,
                                              0x02,
                                              0x00,
                                              0x00,
                                              static_cast<std::uint8_t>(h >> 24),
                                              static_cast<std::uint8_t>(h >> 16),
                                              static_cast<std::uint8_t>(h >> 8),
                                              static_cast<std::uint8_t>(h),
                                              static_cast<std::uint8_t>(g >> 24),
                                              static_cast<std::uint8_t>(g >> 16),
                                              static_cast<std::uint8_t>(g >> 8),
                                              static_cast<std::uint8_t>(g),
                                              0x00,
                                              0x01};
      e.server.ip = detour::ip_address::v6(o);
    }
  }
  if (e.client.ip.family != e.server.ip.family) {
    if (e.client.ip.is_v4()) e.client.ip = mapped_v6(e.client.ip);
    if (e.server.ip.is_v4()) e.server.ip = mapped_v6(e.server.ip);
  }
  return e;
}

// --- tcp_conversation --------------------------------------------------------------------------

tcp_conversation::tcp_conversation(const tcp_endpoints& ends, std::uint32_t client_isn,
                                   std::uint32_t server_isn) noexcept
    : ends_(ends) {
  client_.next = client_isn;
  server_.next = server_isn;
}

void tcp_conversation::segment(packet_sink& out, stream_kind from, std::uint8_t flags,
                               std::span<const std::uint8_t> payload, std::int64_t time_us,
                               bool options) {
  const bool north = from == stream_kind::north;
  const detour::socket_address& src = north ? ends_.client : ends_.server;
  const detour::socket_address& dst = north ? ends_.server : ends_.client;
  const half& me = side(from);
  const half& peer = side(north ? stream_kind::south : stream_kind::north);
  const bool v4 = src.ip.is_v4();
  const std::size_t ip_len = v4 ? ipv4_header : ipv6_header;
  const std::size_t tcp_len = tcp_header + (options ? syn_options : 0);
  const std::size_t total = ip_len + tcp_len + payload.size();
  scratch_.assign(total - payload.size(), 0);
  scratch_.insert(scratch_.end(), payload.begin(), payload.end());
  std::uint8_t* p = scratch_.data();

  if (v4) {
    p[0] = 0x45; // version 4, 5 words
    put16(p + 2, static_cast<std::uint32_t>(total));
    put16(p + 6, 0x4000); // don't fragment
    p[8] = 64;            // TTL
    p[9] = protocol_tcp;
    std::memcpy(p + 12, src.ip.octets.data(), 4);
    std::memcpy(p + 16, dst.ip.octets.data(), 4);
    put16(p + 10, fold(sum16({p, ipv4_header})));
  } else {
    p[0] = 0x60; // version 6
    put16(p + 4, static_cast<std::uint32_t>(tcp_len + payload.size()));
    p[6] = protocol_tcp;
    p[7] = 64; // hop limit
    std::memcpy(p + 8, src.ip.octets.data(), 16);
    std::memcpy(p + 24, dst.ip.octets.data(), 16);
  }

  std::uint8_t* t = p + ip_len;
  put16(t, src.port);
  put16(t + 2, dst.port);
  put32(t + 4, me.next);
  put32(t + 8, (flags & tcp_ack) ? peer.next : 0);
  t[12] = static_cast<std::uint8_t>((tcp_len / 4) << 4);
  t[13] = flags;
  put16(t + 14, 0xFFFF); // window (scaled after the handshake)
  if (options) {
    t[20] = 2; // MSS
    t[21] = 4;
    put16(t + 22, static_cast<std::uint32_t>(max_segment));
    t[24] = 1; // NOP
    t[25] = 3; // window scale
    t[26] = 3;
    t[27] = window_shift;
  }
  // The checksum over the pseudo header (RFC 9293 §3.1; RFC 8200 §8.1 for IPv6) and the segment.
  std::uint64_t sum = 0;
  const std::size_t addr = v4 ? 4 : 16;
  sum = sum16({v4 ? p + 12 : p + 8, 2 * addr}, sum);
  sum += protocol_tcp;
  sum += tcp_len + payload.size();
  sum = sum16({t, tcp_len + payload.size()}, sum);
  put16(t + 16, fold(sum));
  out.packet(time_us, scratch_);
}

void tcp_conversation::open(packet_sink& out, std::int64_t time_us) {
  segment(out, stream_kind::north, tcp_syn, {}, time_us, true);
  client_.next += 1;
  segment(out, stream_kind::south, tcp_syn | tcp_ack, {}, time_us, true);
  server_.next += 1;
  segment(out, stream_kind::north, tcp_ack, {}, time_us, false);
}

void tcp_conversation::data(packet_sink& out, stream_kind from, std::span<const std::uint8_t> bytes,
                            std::int64_t time_us) {
  half& me = side(from);
  if (reset_ || me.fin || bytes.empty()) return;
  while (!bytes.empty()) {
    const auto piece = bytes.first(std::min(bytes.size(), max_segment));
    bytes = bytes.subspan(piece.size());
    const std::uint8_t flags = bytes.empty() ? (tcp_psh | tcp_ack) : tcp_ack;
    segment(out, from, flags, piece, time_us, false);
    me.next += static_cast<std::uint32_t>(piece.size());
  }
  const stream_kind other = from == stream_kind::north ? stream_kind::south : stream_kind::north;
  segment(out, other, tcp_ack, {}, time_us, false);
}

void tcp_conversation::finish(packet_sink& out, stream_kind from, std::int64_t time_us) {
  half& me = side(from);
  if (reset_ || me.fin) return;
  segment(out, from, tcp_fin | tcp_ack, {}, time_us, false);
  me.next += 1;
  me.fin = true;
  const stream_kind other = from == stream_kind::north ? stream_kind::south : stream_kind::north;
  segment(out, other, tcp_ack, {}, time_us, false);
}

void tcp_conversation::reset(packet_sink& out, std::int64_t time_us) {
  if (closed()) return;
  segment(out, stream_kind::north, tcp_rst | tcp_ack, {}, time_us, false);
  reset_ = true;
}

// --- WebSocket handshake -------------------------------------------------------------------------

namespace {

void header_line(std::string& out, std::string_view name, std::string_view value) {
  out += name;
  out += ": ";
  out += value;
  out += "\r\n";
}

} // namespace

std::string websocket_upgrade_request(const websocket_payload& w, std::string_view upstream_host) {
  std::string out = "GET ";
  out += w.resource;
  out += " HTTP/1.1\r\n";
  header_line(out, "Host", w.host().value_or(upstream_host));
  header_line(out, "Upgrade", "websocket");
  header_line(out, "Connection", "Upgrade");
  if (const auto v = w.sec_websocket_key()) header_line(out, "Sec-WebSocket-Key", *v);
  if (const auto v = w.sec_websocket_version()) header_line(out, "Sec-WebSocket-Version", *v);
  if (const auto v = w.origin()) header_line(out, "Origin", *v);
  // The summary has the negotiated values only; offering exactly them keeps the exchange
  // consistent for a reader.
  if (const auto v = w.sec_websocket_protocol()) header_line(out, "Sec-WebSocket-Protocol", *v);
  w.for_each_extension(
      [&out](std::string_view e) { header_line(out, "Sec-WebSocket-Extensions", e); });
  out += "\r\n";
  return out;
}

std::string websocket_upgrade_response(const websocket_payload& w) {
  std::string out = "HTTP/1.1 101 Switching Protocols\r\n";
  header_line(out, "Upgrade", "websocket");
  header_line(out, "Connection", "Upgrade");
  if (const auto v = w.sec_websocket_accept()) header_line(out, "Sec-WebSocket-Accept", *v);
  if (const auto v = w.sec_websocket_protocol()) header_line(out, "Sec-WebSocket-Protocol", *v);
  w.for_each_extension(
      [&out](std::string_view e) { header_line(out, "Sec-WebSocket-Extensions", e); });
  out += "\r\n";
  return out;
}

// --- the file ------------------------------------------------------------------------------------

struct capture_file::file {
  capture_options options;
  pcap_dumper_t* dumper = nullptr;
  std::uint64_t size = 0; // bytes in the current file
  std::atomic<std::uint64_t> rotations{0};
  std::atomic<std::uint64_t> write_errors{0};

  ~file() {
    if (dumper) {
      (void)pcap_dump_flush(dumper);
      pcap_dump_close(dumper);
    }
  }

  // Opens |path| for appending (libpcap checks that an existing file is a raw-IP pcap) or, when
  // |truncate|, starts it afresh. Returns nullptr with |error| set on failure.
  static pcap_dumper_t* open(const std::string& path, bool truncate, std::uint64_t& size,
                             std::string& error) {
    // The file holds plaintext (credentials, messages): created 0640 here rather than with
    // libpcap's umask-only mode; libpcap then writes the header into the empty file.
    const int fd =
        ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (truncate ? O_TRUNC : 0), 0640);
    if (fd < 0) {
      error = std::error_code(errno, std::generic_category()).message();
      return nullptr;
    }
    ::close(fd);
    pcap_t* dead =
        pcap_open_dead_with_tstamp_precision(DLT_RAW, snapshot_length, PCAP_TSTAMP_PRECISION_MICRO);
    if (!dead) {
      error = "libpcap cannot make a raw-IP handle";
      return nullptr;
    }
    pcap_dumper_t* d = pcap_dump_open_append(dead, path.c_str());
    if (!d) {
      error = pcap_geterr(dead);
    } else {
      const long at = pcap_dump_ftell(d);
      size = at > 0 ? static_cast<std::uint64_t>(at) : 0;
      (void)pcap_dump_flush(d); // the file header is on the disk from the start
    }
    pcap_close(dead); // the dumper keeps what it needs (link type, snapshot length)
    return d;
  }

  void rotate() {
    pcap_dump_close(dumper);
    dumper = nullptr;
    const std::string& path = options.path;
    for (unsigned i = options.files - 1; i >= 1; --i) {
      const std::string from = i == 1 ? path : path + "." + std::to_string(i - 1);
      const std::string to = path + "." + std::to_string(i);
      if (std::rename(from.c_str(), to.c_str()) != 0 && errno != ENOENT) write_errors += 1;
    }
    std::string error;
    dumper = open(path, true, size, error);
    if (!dumper) write_errors += 1;
    rotations += 1;
  }

  void write(std::vector<std::uint8_t>& block) {
    for (std::size_t at = 0; at + 12 <= block.size();) {
      std::int64_t time_us = 0;
      std::uint32_t length = 0;
      std::memcpy(&time_us, block.data() + at, 8);
      std::memcpy(&length, block.data() + at + 8, 4);
      at += 12;
      if (!dumper) return; // a failed rotation: nothing can be written until a reopen
      pcap_pkthdr h{};
      h.ts.tv_sec = static_cast<time_t>(time_us / 1'000'000);
      h.ts.tv_usec = static_cast<suseconds_t>(time_us % 1'000'000);
      h.caplen = h.len = length;
      pcap_dump(reinterpret_cast<u_char*>(dumper), &h, block.data() + at);
      at += length;
      size += 16 + length; // the record header and the packet
      if (size >= options.max_file_size) {
        if (pcap_dump_flush(dumper) != 0) write_errors += 1;
        rotate();
      }
    }
  }
};

capture_file::capture_file(capture_options options)
    : options_(std::move(options)), file_(std::make_shared<file>()) {
  if (options_.files == 0) options_.files = 1;
  file_->options = options_;
  std::string error;
  file_->dumper = file::open(options_.path, false, file_->size, error);
  if (!file_->dumper) {
    throw std::runtime_error("cannot open the capture file " + options_.path + ": " + error);
  }
  writer_ = std::make_unique<writer_thread<std::vector<std::uint8_t>>>(
      options_.max_queued_bytes, [f = file_](std::vector<std::vector<std::uint8_t>>& blocks) {
        for (auto& b : blocks) f->write(b);
        if (f->dumper && pcap_dump_flush(f->dumper) != 0) f->write_errors += 1;
      });
}

capture_file::~capture_file() {
  writer_.reset(); // writes what is queued, then stops; the file closes with file_
}

void capture_file::packet(std::int64_t time_us, std::span<const std::uint8_t> ip_packet) {
  const auto length = static_cast<std::uint32_t>(ip_packet.size());
  const std::size_t at = block_.size();
  block_.resize(at + 12);
  std::memcpy(block_.data() + at, &time_us, 8);
  std::memcpy(block_.data() + at + 8, &length, 4);
  block_.insert(block_.end(), ip_packet.begin(), ip_packet.end());
  ++block_packets_;
}

bool capture_file::commit() {
  if (block_.empty()) return true;
  const std::size_t n = block_.size();
  const std::uint64_t packets = block_packets_;
  block_packets_ = 0;
  const bool ok = writer_->push(std::move(block_), n);
  block_ = {};
  if (ok) {
    packets_ += packets;
    bytes_ += n - 12 * packets;
  }
  return ok;
}

void capture_file::discard() noexcept {
  block_.clear();
  block_packets_ = 0;
}

bool capture_file::reopen(std::string& error) {
  std::uint64_t size = 0;
  pcap_dumper_t* d = file::open(options_.path, false, size, error);
  if (!d) return false;
  writer_->post([f = file_, d, size] {
    if (f->dumper) {
      (void)pcap_dump_flush(f->dumper);
      pcap_dump_close(f->dumper);
    }
    f->dumper = d;
    f->size = size;
  });
  return true;
}

void capture_file::flush() {
  writer_->flush();
}

capture_stats capture_file::stats() const noexcept {
  capture_stats s;
  s.packets = packets_;
  s.bytes = bytes_;
  s.dropped_blocks = writer_->counters().dropped.load();
  s.rotations = file_->rotations.load();
  s.write_errors = file_->write_errors.load();
  return s;
}

} // namespace detour::cli
