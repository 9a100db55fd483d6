// SPDX-License-Identifier: MIT
// cli/capture.hpp: the plaintext capture of `detour serve --capture` (docs/capture.md). Each
// captured task becomes a synthetic TCP conversation (RFC 9293: SYN, SYN-ACK, ACK, data both
// ways with consistent sequence and acknowledgement numbers, FIN or RST) between the client's
// address and the upstream's, in raw IPv4/IPv6 packets, so that Wireshark and tshark decode the
// SMTP, IMAP, HTTP/2 or WebSocket inside; a file writer (libpcap, on its own thread) with size
// limits and rotation.
#pragma once

#include "writer_thread.hpp"

#include <detour/address.hpp>
#include <detour/request.hpp>
#include <detour/websocket_payload.hpp>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace detour::cli {

/// Where synthetic packets go: each call is one raw IP packet (IPv4 or IPv6 header first).
class packet_sink {
public:
  /// `time_us`: wall clock, microseconds since the Unix epoch. The bytes are valid during the
  /// call only.
  virtual void packet(std::int64_t time_us, std::span<const std::uint8_t> ip_packet) = 0;

protected:
  ~packet_sink() = default;
};

/// The two ends of a synthetic conversation; both of one family.
struct tcp_endpoints {
  detour::socket_address client; ///< the proxied client (PROXY source)
  detour::socket_address server; ///< the upstream (E0)
};

/// The ends a task's conversation uses. The client is the PROXY source address. The server is
/// the upstream host when it is an address; for a name (no resolution is done), a stable address
/// derived from the name in a benchmarking range (RFC 2544 198.18.0.0/15, RFC 5180
/// 2001:2::/48), of the client's family. When the families still differ, the IPv4 end is
/// written as an IPv4-mapped IPv6 address (::ffff:a.b.c.d).
tcp_endpoints capture_endpoints(const north_request& r);

/// @brief One synthetic TCP conversation: packets with correct sequence numbers, flags,
/// lengths and checksums, built as the task's bytes are relayed.
///
/// North bytes travel client -> server, south bytes server -> client. Segments carry at most
/// `max_segment` bytes; after each piece of data the receiving side acknowledges it, as a real
/// stack would. Nothing is sent after both FINs or a RST.
class tcp_conversation {
public:
  /// Largest payload per segment: keeps every packet far below 64 KiB (the IPv4 total length
  /// and the capture's snapshot length) and readable in Wireshark's packet list.
  static constexpr std::size_t max_segment = 16384;

  /// `client_isn`, `server_isn`: the initial sequence numbers (any values).
  tcp_conversation(const tcp_endpoints& ends, std::uint32_t client_isn,
                   std::uint32_t server_isn) noexcept;

  /// SYN, SYN-ACK, ACK.
  void open(packet_sink& out, std::int64_t time_us);
  /// `bytes` from the client (north) or the server (south), then the other side's ACK.
  void data(packet_sink& out, stream_kind from, std::span<const std::uint8_t> bytes,
            std::int64_t time_us);
  /// FIN from that side (once), and the other side's ACK.
  void finish(packet_sink& out, stream_kind from, std::int64_t time_us);
  /// RST from the client side: the task ended abnormally.
  void reset(packet_sink& out, std::int64_t time_us);

  bool finished(stream_kind from) const noexcept { return side(from).fin; }
  bool closed() const noexcept { return reset_ || (client_.fin && server_.fin); }
  const tcp_endpoints& endpoints() const noexcept { return ends_; }
  /// The next sequence number of a side (its ISN + 1 + bytes sent + FIN).
  std::uint32_t next_sequence(stream_kind from) const noexcept { return side(from).next; }

private:
  struct half {
    std::uint32_t next = 0; // next sequence number to send
    bool fin = false;
  };
  half& side(stream_kind s) noexcept { return s == stream_kind::north ? client_ : server_; }
  const half& side(stream_kind s) const noexcept {
    return s == stream_kind::north ? client_ : server_;
  }
  void segment(packet_sink& out, stream_kind from, std::uint8_t flags,
               std::span<const std::uint8_t> payload, std::int64_t time_us, bool options);

  tcp_endpoints ends_;
  half client_;
  half server_;
  bool reset_ = false;
  std::vector<std::uint8_t> scratch_;
};

/// The HTTP/1.1 Upgrade request a WebSocket task's summary stands for (RFC 6455 §4.1): the
/// resource, then Host, Upgrade, Connection, and the summary's request headers.
std::string websocket_upgrade_request(const websocket_payload& w, std::string_view upstream_host);
/// The 101 Switching Protocols answer (RFC 6455 §4.2.2) with the summary's response headers.
std::string websocket_upgrade_response(const websocket_payload& w);

/// Settings of the capture file.
struct capture_options {
  /// The file. Written in the classic pcap format through libpcap (Debian's libpcap 1.10 reads
  /// pcapng but writes only pcap); link type raw IP, microsecond time stamps.
  std::string path;
  /// Rotate once the file reaches this size: it becomes path.1 (path.1 becomes path.2, ...).
  std::uint64_t max_file_size = std::uint64_t{256} << 20;
  /// Files kept, the current one included: the capture never takes more than about
  /// files x max_file_size of disk. 1: the file starts over when full.
  unsigned files = 4;
  /// Packet bytes waiting for the disk at most; beyond, a task's packets are dropped (and its
  /// conversation stops, since TCP cannot be reassembled across a hole). 64 MiB: a second or
  /// more of a busy server's relay traffic while the disk stalls.
  std::size_t max_queued_bytes = std::size_t{64} << 20;
};

/// Counters of the capture file.
struct capture_stats {
  std::uint64_t packets = 0;        ///< packets queued
  std::uint64_t bytes = 0;          ///< their bytes
  std::uint64_t dropped_blocks = 0; ///< groups of packets refused: the queue was full
  std::uint64_t rotations = 0;      ///< files started because the limit was reached
  std::uint64_t write_errors = 0;   ///< failures writing, renaming or opening files
};

/// @brief The capture file: packets are gathered on the event loop into a block, a thread hands
/// the blocks to libpcap; rotation and reopening happen there too.
class capture_file final : public packet_sink {
public:
  /// Opens (appending to an existing capture) or creates the file. Throws std::runtime_error
  /// naming the path and libpcap's reason when it cannot.
  explicit capture_file(capture_options options);
  ~capture_file();
  capture_file(const capture_file&) = delete;
  capture_file& operator=(const capture_file&) = delete;

  /// Adds a packet to the current block.
  void packet(std::int64_t time_us, std::span<const std::uint8_t> ip_packet) override;
  /// Queues the current block. False when it did not fit (it is dropped and counted).
  bool commit();
  /// Drops the current block (a conversation that is no longer written).
  void discard() noexcept;

  /// SIGHUP: opens the path again (a rotation tool moved the file away). False, with `error`
  /// set, when it cannot: the old file stays in use.
  bool reopen(std::string& error);
  /// Waits until everything committed so far is written to the file.
  void flush();

  capture_stats stats() const noexcept;
  const capture_options& options() const noexcept { return options_; }

private:
  struct file;
  capture_options options_;
  std::vector<std::uint8_t> block_; // [time_us 8][length 4][packet] ...
  std::uint64_t block_packets_ = 0;
  std::uint64_t packets_ = 0;
  std::uint64_t bytes_ = 0;
  std::shared_ptr<file> file_;
  std::unique_ptr<writer_thread<std::vector<std::uint8_t>>> writer_; // last: drained first
};

} // namespace detour::cli
