// SPDX-License-Identifier: MIT
// cli/udp.hpp: UDP sockets for QUIC, server and client side: socket addresses, batched receive
// (recvmmsg, UDP GRO when the kernel offers it) and batched send (UDP GSO with a sendmmsg
// fallback), with the local address of each datagram (IP_PKTINFO) for wildcard listeners.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace detour::cli {

/// An IPv4 or IPv6 socket address, sized for sockaddr_in6; convertible to what ngtcp2_addr wants.
class socket_address {
public:
  socket_address() = default;
  /// Copies |len| bytes of |sa| (AF_INET or AF_INET6).
  socket_address(const sockaddr* sa, socklen_t len) noexcept;

  /// Parses a numeric "host:port": "127.0.0.1:2888", "[::1]:2888", "[fe80::1%lo]:2888".
  /// A bare port ("2888") means 127.0.0.1. No name resolution. Empty on a malformed text.
  static std::optional<socket_address> parse(std::string_view text);
  static socket_address ipv4_loopback(std::uint16_t port);

  int family() const noexcept { return storage_.ss_family; }
  std::uint16_t port() const noexcept;
  void set_port(std::uint16_t port) noexcept;
  bool is_unspecified() const noexcept; ///< 0.0.0.0 or ::
  const sockaddr* data() const noexcept { return reinterpret_cast<const sockaddr*>(&storage_); }
  sockaddr* data() noexcept { return reinterpret_cast<sockaddr*>(&storage_); }
  socklen_t size() const noexcept { return len_; }
  /// "127.0.0.1:2888" or "[::1]:2888".
  std::string to_string() const;
  /// The host part alone, without brackets: "127.0.0.1", "::1".
  std::string host() const;

  friend bool operator==(const socket_address& a, const socket_address& b) noexcept;

private:
  sockaddr_storage storage_{};
  socklen_t len_ = 0;
};

/// One received datagram (or a GRO-coalesced train of equal-sized ones).
struct received_datagram {
  std::span<const std::uint8_t> data; ///< valid until the next receive() on the batch
  socket_address remote;              ///< the sender
  socket_address local;               ///< our address it was sent to (IP_PKTINFO)
  std::size_t segment_size = 0;       ///< each datagram's size when GRO coalesced several
  unsigned ecn = 0;                   ///< the two ECN bits of the IP header
  /// When the kernel queued it (CLOCK_REALTIME nanoseconds; udp_options::receive_timestamps),
  /// 0 when not asked for: how long it waited for us is the worker's lag.
  std::uint64_t queued_at = 0;
};

/// Buffers for one recvmmsg call: |count| datagrams of up to |buffer_size| bytes each. Allocated
/// once and reused for every receive.
class receive_batch {
public:
  /// Defaults: 32 slots of 64 KiB, the most a GRO train (or any UDP datagram) can carry.
  explicit receive_batch(std::size_t count = 32, std::size_t buffer_size = 65536);
  ~receive_batch();
  receive_batch(const receive_batch&) = delete;
  receive_batch& operator=(const receive_batch&) = delete;

  /// The datagrams of the last receive().
  std::span<const received_datagram> datagrams() const noexcept {
    return {received_.data(), filled_};
  }

private:
  friend class udp_socket;
  struct impl;
  std::unique_ptr<impl> impl_;
  std::vector<received_datagram> received_;
  std::size_t filled_ = 0;
};

/// What a send achieved.
struct send_result {
  std::size_t bytes_sent = 0; ///< always a whole number of segments
  bool blocked = false;       ///< the socket buffer is full: wait for EPOLLOUT, resend the rest
};

/// Socket options chosen at creation.
struct udp_options {
  int receive_buffer_bytes = 4 << 20; ///< SO_RCVBUF wish (the kernel caps it at rmem_max)
  int send_buffer_bytes = 4 << 20;    ///< SO_SNDBUF wish (capped at wmem_max)
  bool enable_gro = true;             ///< UDP_GRO: fewer, coalesced receives
  bool enable_gso = true;             ///< UDP_SEGMENT: one send for a train of packets
  /// SO_REUSEPORT: several sockets (one per worker of `detour serve --workers`) share the
  /// address and the kernel spreads 4-tuples over them. Only sockets of the same user join.
  bool reuse_port = false;
  /// SO_TIMESTAMPNS: each received datagram carries the time the kernel queued it.
  bool receive_timestamps = false;
};

/// A non-blocking UDP socket. bound() makes a listener that talks to many peers (the server);
/// connected() makes a socket for one peer (a client, as g3proxy uses one per connection).
/// Setup failures throw std::system_error naming the call and the address; I/O never throws.
class udp_socket {
public:
  static udp_socket bound(const socket_address& local, const udp_options& options = {});
  static udp_socket connected(const socket_address& remote, const udp_options& options = {});

  udp_socket(udp_socket&& other) noexcept;
  udp_socket& operator=(udp_socket&& other) noexcept;
  ~udp_socket();

  int fd() const noexcept { return fd_; }
  /// The bound address (with the port the kernel chose when 0 was asked for).
  const socket_address& local_address() const noexcept { return local_; }
  bool gso_enabled() const noexcept { return gso_; }

  /// Receives what is queued (one recvmmsg call, up to the batch's capacity) into |batch|.
  /// Returns the number of datagram entries; 0 when nothing was waiting.
  std::size_t receive(receive_batch& batch) noexcept;

  /// Sends |data| as datagrams of |segment_size| bytes (the last may be shorter) to |remote|;
  /// ignored for a connected socket, where it may be null. |local| selects the source address
  /// of a wildcard listener (null: the kernel's choice). Uses one GSO send when available;
  /// when the kernel refuses GSO the socket falls back to sendmmsg for good. Errors other than
  /// a full buffer drop the datagrams (UDP is lossy; QUIC recovers) and count as sent.
  send_result send(const socket_address* remote, const socket_address* local,
                   std::span<const std::uint8_t> data, std::size_t segment_size,
                   unsigned ecn = 0) noexcept;

  /// Joins a classic BPF program to this socket's SO_REUSEPORT group that hands each datagram
  /// to the socket whose position in the group (the order the sockets were bound) is the first
  /// byte of its destination connection ID: a short header's (byte 1), or a long header's
  /// whose ID is |cid_length| bytes (byte 6). Other datagrams, and bytes past the group's
  /// size, fall back to the kernel's hash of the 4-tuple. For every socket of the group,
  /// bound or joining later. Returns 0, or the errno of SO_ATTACH_REUSEPORT_CBPF.
  int steer_by_connection_id(std::size_t cid_length) noexcept;

  /// Datagrams dropped by send errors other than a full buffer, for diagnostics.
  std::uint64_t send_errors() const noexcept { return send_errors_; }

  /// The last error a receive or send met other than "would block" (errno), and clears it; 0
  /// when none. On a connected socket an ICMP port unreachable from the peer shows here as
  /// ECONNREFUSED: the kernel reports it once, on whichever call comes next.
  int take_error() noexcept { return std::exchange(last_error_, 0); }

private:
  udp_socket(int fd, socket_address local, bool gso) noexcept : fd_(fd), local_(local), gso_(gso) {}
  send_result send_gso(const socket_address* remote, const socket_address* local,
                       std::span<const std::uint8_t> data, std::size_t segment_size,
                       unsigned ecn) noexcept;
  send_result send_each(const socket_address* remote, const socket_address* local,
                        std::span<const std::uint8_t> data, std::size_t segment_size,
                        unsigned ecn) noexcept;

  int fd_ = -1;
  socket_address local_;
  bool gso_ = false;
  bool connected_ = false;
  std::uint64_t send_errors_ = 0;
  int last_error_ = 0;
};

} // namespace detour::cli
