// SPDX-License-Identifier: MIT
// cli/udp.cpp: UDP sockets with recvmmsg/GRO and GSO/sendmmsg (see udp.hpp).
#include "udp.hpp"

#include <arpa/inet.h>
#include <linux/filter.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <system_error>
#include <utility>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103 // <linux/udp.h>, missing from older libc headers
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

namespace detour::cli {

namespace {

[[noreturn]] void throw_errno(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

// The kernel's UDP_MAX_SEGMENTS: the most datagrams one GSO send may carry.
constexpr std::size_t max_gso_segments = 64;
// And all of them together must fit one IP packet's 16-bit length: 65535 minus the UDP header
// and the larger (IPv6) IP header. A bigger send fails with EINVAL/EMSGSIZE.
constexpr std::size_t max_gso_bytes = 65535 - 8 - 40;
// Datagrams per sendmmsg call in the fallback path.
constexpr std::size_t max_send_batch = 64;
// Room for the control messages of one datagram: packet info, TOS/traffic class, GRO/GSO size,
// receive time.
constexpr std::size_t control_size = CMSG_SPACE(sizeof(in6_pktinfo)) + CMSG_SPACE(sizeof(int)) +
                                     CMSG_SPACE(sizeof(int)) + CMSG_SPACE(sizeof(timespec));
struct alignas(cmsghdr) control_buffer {
  std::uint8_t bytes[control_size];
};

void set_int_option(int fd, int level, int name, int value) {
  (void)::setsockopt(fd, level, name, &value, sizeof value); // best effort
}

// Appends one control message to |msg|'s buffer (which holds control_size bytes).
template <class T>
void append_control(msghdr& msg, int level, int type, const T& value) {
  auto* cm =
      reinterpret_cast<cmsghdr*>(static_cast<std::uint8_t*>(msg.msg_control) + msg.msg_controllen);
  cm->cmsg_level = level;
  cm->cmsg_type = type;
  cm->cmsg_len = CMSG_LEN(sizeof(T));
  std::memcpy(CMSG_DATA(cm), &value, sizeof(T));
  msg.msg_controllen += CMSG_SPACE(sizeof(T));
}

// Fills |msg|'s control buffer: the source address, the ECN bits, the GSO segment size.
void put_send_control(msghdr& msg, const socket_address* local, unsigned ecn,
                      std::size_t gso_segment, int family) {
  msg.msg_controllen = 0;
  if (local && !local->is_unspecified()) {
    if (family == AF_INET) {
      in_pktinfo info{};
      info.ipi_spec_dst = reinterpret_cast<const sockaddr_in*>(local->data())->sin_addr;
      append_control(msg, IPPROTO_IP, IP_PKTINFO, info);
    } else {
      in6_pktinfo info{};
      info.ipi6_addr = reinterpret_cast<const sockaddr_in6*>(local->data())->sin6_addr;
      append_control(msg, IPPROTO_IPV6, IPV6_PKTINFO, info);
    }
  }
  if (ecn != 0) {
    const int tos = static_cast<int>(ecn & 0x3U);
    append_control(msg, family == AF_INET ? IPPROTO_IP : IPPROTO_IPV6,
                   family == AF_INET ? IP_TOS : IPV6_TCLASS, tos);
  }
  if (gso_segment != 0) {
    append_control(msg, SOL_UDP, UDP_SEGMENT, static_cast<std::uint16_t>(gso_segment));
  }
  if (msg.msg_controllen == 0) msg.msg_control = nullptr;
}

bool is_blocking_error(int e) {
  return e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS;
}

} // namespace

// --- socket_address ----------------------------------------------------------------------------

socket_address::socket_address(const sockaddr* sa, socklen_t len) noexcept {
  len_ = std::min<socklen_t>(len, sizeof storage_);
  std::memcpy(&storage_, sa, len_);
}

socket_address socket_address::ipv4_loopback(std::uint16_t port) {
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_port = htons(port);
  in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return {reinterpret_cast<const sockaddr*>(&in), sizeof in};
}

std::optional<socket_address> socket_address::parse(std::string_view text) {
  std::string_view host = "127.0.0.1";
  std::string_view port_text = text;
  bool v6 = false;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return std::nullopt;
    }
    host = text.substr(1, close - 1);
    port_text = text.substr(close + 2);
    v6 = true;
  } else if (const auto colon = text.rfind(':'); colon != std::string_view::npos) {
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return std::nullopt; // IPv6 needs brackets
  }
  unsigned port = 0;
  const auto [end, ec] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc{} || end != port_text.data() + port_text.size() || port > 65535 ||
      port_text.empty()) {
    return std::nullopt;
  }
  if (v6) {
    sockaddr_in6 in6{};
    in6.sin6_family = AF_INET6;
    in6.sin6_port = htons(static_cast<std::uint16_t>(port));
    std::string h(host);
    if (const auto pct = h.find('%'); pct != std::string::npos) {
      in6.sin6_scope_id = ::if_nametoindex(h.c_str() + pct + 1);
      if (in6.sin6_scope_id == 0) return std::nullopt;
      h.resize(pct);
    }
    if (::inet_pton(AF_INET6, h.c_str(), &in6.sin6_addr) != 1) return std::nullopt;
    return socket_address(reinterpret_cast<const sockaddr*>(&in6), sizeof in6);
  }
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_port = htons(static_cast<std::uint16_t>(port));
  if (::inet_pton(AF_INET, std::string(host).c_str(), &in.sin_addr) != 1) return std::nullopt;
  return socket_address(reinterpret_cast<const sockaddr*>(&in), sizeof in);
}

std::uint16_t socket_address::port() const noexcept {
  if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
  if (family() == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
  }
  return 0;
}

void socket_address::set_port(std::uint16_t port) noexcept {
  if (family() == AF_INET) reinterpret_cast<sockaddr_in*>(&storage_)->sin_port = htons(port);
  if (family() == AF_INET6) reinterpret_cast<sockaddr_in6*>(&storage_)->sin6_port = htons(port);
}

bool socket_address::is_unspecified() const noexcept {
  if (family() == AF_INET) {
    return reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr.s_addr == INADDR_ANY;
  }
  if (family() == AF_INET6) {
    return IN6_IS_ADDR_UNSPECIFIED(&reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr);
  }
  return true;
}

std::string socket_address::host() const {
  std::array<char, INET6_ADDRSTRLEN> buf{};
  if (family() == AF_INET) {
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr, buf.data(),
                buf.size());
  } else if (family() == AF_INET6) {
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr, buf.data(),
                buf.size());
  } else {
    return "?";
  }
  return buf.data();
}

std::string socket_address::to_string() const {
  const std::string h = host();
  const std::string p = std::to_string(port());
  return family() == AF_INET6 ? "[" + h + "]:" + p : h + ":" + p;
}

bool operator==(const socket_address& a, const socket_address& b) noexcept {
  if (a.family() != b.family() || a.port() != b.port()) return false;
  if (a.family() == AF_INET) {
    return reinterpret_cast<const sockaddr_in*>(&a.storage_)->sin_addr.s_addr ==
           reinterpret_cast<const sockaddr_in*>(&b.storage_)->sin_addr.s_addr;
  }
  if (a.family() == AF_INET6) {
    const auto* x = reinterpret_cast<const sockaddr_in6*>(&a.storage_);
    const auto* y = reinterpret_cast<const sockaddr_in6*>(&b.storage_);
    return std::memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0 &&
           x->sin6_scope_id == y->sin6_scope_id;
  }
  return true;
}

// --- receive_batch -----------------------------------------------------------------------------

struct receive_batch::impl {
  std::size_t buffer_size;
  std::vector<std::uint8_t> buffers;
  std::vector<sockaddr_storage> names;
  std::vector<control_buffer> controls;
  std::vector<iovec> iovs;
  std::vector<mmsghdr> headers;
};

receive_batch::receive_batch(std::size_t count, std::size_t buffer_size)
    : impl_(std::make_unique<impl>()), received_(count) {
  impl_->buffer_size = buffer_size;
  impl_->buffers.resize(count * buffer_size);
  impl_->names.resize(count);
  impl_->controls.resize(count);
  impl_->iovs.resize(count);
  impl_->headers.resize(count);
}

receive_batch::~receive_batch() = default;

// --- udp_socket --------------------------------------------------------------------------------

namespace {

int open_socket(int family, const udp_options& options) {
  const int fd = ::socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw_errno("socket");
  set_int_option(fd, SOL_SOCKET, SO_RCVBUF, options.receive_buffer_bytes);
  set_int_option(fd, SOL_SOCKET, SO_SNDBUF, options.send_buffer_bytes);
  if (family == AF_INET6) {
    set_int_option(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1);
    set_int_option(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, 1);
    set_int_option(fd, IPPROTO_IPV6, IPV6_RECVTCLASS, 1);
    // QUIC packets must not be fragmented (RFC 9000 §14): set DF, let ngtcp2 probe the MTU.
    set_int_option(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, IPV6_PMTUDISC_PROBE);
  } else {
    set_int_option(fd, IPPROTO_IP, IP_PKTINFO, 1);
    set_int_option(fd, IPPROTO_IP, IP_RECVTOS, 1);
    set_int_option(fd, IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE);
  }
  if (options.enable_gro) set_int_option(fd, SOL_UDP, UDP_GRO, 1);
  if (options.reuse_port) set_int_option(fd, SOL_SOCKET, SO_REUSEPORT, 1);
  if (options.receive_timestamps) set_int_option(fd, SOL_SOCKET, SO_TIMESTAMPNS, 1);
  return fd;
}

bool kernel_has_gso(int fd) {
  int value = 0;
  socklen_t len = sizeof value;
  return ::getsockopt(fd, SOL_UDP, UDP_SEGMENT, &value, &len) == 0;
}

socket_address local_of(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) throw_errno("getsockname");
  return {reinterpret_cast<const sockaddr*>(&ss), len};
}

} // namespace

udp_socket udp_socket::bound(const socket_address& local, const udp_options& options) {
  // No SO_REUSEADDR: for UDP it lets a second server bind the same port and steal datagrams.
  const int fd = open_socket(local.family(), options);
  if (::bind(fd, local.data(), local.size()) != 0) {
    const int e = errno;
    ::close(fd);
    errno = e;
    throw_errno("bind " + local.to_string());
  }
  return {fd, local_of(fd), options.enable_gso && kernel_has_gso(fd)};
}

udp_socket udp_socket::connected(const socket_address& remote, const udp_options& options) {
  const int fd = open_socket(remote.family(), options);
  if (::connect(fd, remote.data(), remote.size()) != 0) {
    const int e = errno;
    ::close(fd);
    errno = e;
    throw_errno("connect " + remote.to_string());
  }
  udp_socket s{fd, local_of(fd), options.enable_gso && kernel_has_gso(fd)};
  s.connected_ = true;
  return s;
}

udp_socket::udp_socket(udp_socket&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), local_(other.local_), gso_(other.gso_),
      connected_(other.connected_), send_errors_(other.send_errors_) {}

udp_socket& udp_socket::operator=(udp_socket&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    local_ = other.local_;
    gso_ = other.gso_;
    connected_ = other.connected_;
    send_errors_ = other.send_errors_;
  }
  return *this;
}

udp_socket::~udp_socket() {
  if (fd_ >= 0) ::close(fd_);
}

int udp_socket::steer_by_connection_id(std::size_t cid_length) noexcept {
  // The kernel runs the program with the UDP payload at offset 0. It returns a position in the
  // group; one past its end makes the kernel fall back to its hash. A load past the end of
  // the datagram would end the program with 0 (the first socket), so the length comes first.
  constexpr std::uint32_t hash = 0xFFFFFFFF;
  const auto length = static_cast<std::uint32_t>(cid_length);
  sock_filter program[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_LEN, 0),             // 0: A = datagram length
      BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 7, 0, 8),      // 1: too short for byte 6: 10
      BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 0),             // 2: A = first byte
      BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x80, 2, 0),  // 3: long header: 6
      BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 1),             // 4: short: the ID's first byte
      BPF_STMT(BPF_RET | BPF_A, 0),                      // 5
      BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 5),             // 6: long: the ID's length
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, length, 0, 2), // 7: ours? else 10
      BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 6),             // 8: the ID's first byte
      BPF_STMT(BPF_RET | BPF_A, 0),                      // 9
      BPF_STMT(BPF_RET | BPF_K, hash),                   // 10: not one of our IDs
  };
  sock_fprog prog{};
  prog.len = static_cast<unsigned short>(std::size(program));
  prog.filter = program;
  if (::setsockopt(fd_, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof prog) != 0)
    return errno;
  return 0;
}

std::size_t udp_socket::receive(receive_batch& batch) noexcept {
  auto& b = *batch.impl_;
  const std::size_t count = batch.received_.size();
  for (std::size_t i = 0; i < count; ++i) {
    b.iovs[i] = {b.buffers.data() + i * b.buffer_size, b.buffer_size};
    msghdr& m = b.headers[i].msg_hdr;
    m = {};
    m.msg_name = &b.names[i];
    m.msg_namelen = sizeof(sockaddr_storage);
    m.msg_iov = &b.iovs[i];
    m.msg_iovlen = 1;
    m.msg_control = b.controls[i].bytes;
    m.msg_controllen = control_size;
  }
  int n;
  do {
    n = ::recvmmsg(fd_, b.headers.data(), static_cast<unsigned>(count), MSG_DONTWAIT, nullptr);
  } while (n < 0 && errno == EINTR);
  batch.filled_ = 0;
  if (n < 0 && !is_blocking_error(errno)) last_error_ = errno;
  if (n <= 0) return 0;

  for (std::size_t i = 0; i < static_cast<std::size_t>(n); ++i) {
    const msghdr& m = b.headers[i].msg_hdr;
    if (m.msg_flags & MSG_TRUNC) continue; // larger than any QUIC datagram we accept
    received_datagram& d = batch.received_[batch.filled_];
    d.data = {static_cast<const std::uint8_t*>(b.iovs[i].iov_base), b.headers[i].msg_len};
    d.remote = socket_address(static_cast<const sockaddr*>(m.msg_name), m.msg_namelen);
    d.local = local_;
    d.segment_size = 0;
    d.ecn = 0;
    d.queued_at = 0;
    for (cmsghdr* cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(const_cast<msghdr*>(&m), cm)) {
      if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO) {
        in_pktinfo info{};
        std::memcpy(&info, CMSG_DATA(cm), sizeof info);
        sockaddr_in in{};
        in.sin_family = AF_INET;
        in.sin_addr = info.ipi_addr;
        in.sin_port = htons(local_.port());
        d.local = socket_address(reinterpret_cast<const sockaddr*>(&in), sizeof in);
      } else if (cm->cmsg_level == IPPROTO_IPV6 && cm->cmsg_type == IPV6_PKTINFO) {
        in6_pktinfo info{};
        std::memcpy(&info, CMSG_DATA(cm), sizeof info);
        sockaddr_in6 in6{};
        in6.sin6_family = AF_INET6;
        in6.sin6_addr = info.ipi6_addr;
        in6.sin6_port = htons(local_.port());
        if (IN6_IS_ADDR_LINKLOCAL(&info.ipi6_addr)) in6.sin6_scope_id = info.ipi6_ifindex;
        d.local = socket_address(reinterpret_cast<const sockaddr*>(&in6), sizeof in6);
      } else if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_TOS) {
        d.ecn = *CMSG_DATA(cm) & 0x3U;
      } else if (cm->cmsg_level == IPPROTO_IPV6 && cm->cmsg_type == IPV6_TCLASS) {
        int tclass = 0;
        std::memcpy(&tclass, CMSG_DATA(cm), sizeof tclass);
        d.ecn = static_cast<unsigned>(tclass) & 0x3U;
      } else if (cm->cmsg_level == SOL_UDP && cm->cmsg_type == UDP_GRO) {
        int seg = 0;
        std::memcpy(&seg, CMSG_DATA(cm), sizeof seg);
        d.segment_size = static_cast<std::size_t>(seg);
      } else if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPNS) {
        timespec ts{};
        std::memcpy(&ts, CMSG_DATA(cm), sizeof ts);
        d.queued_at = static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000U +
                      static_cast<std::uint64_t>(ts.tv_nsec);
      }
    }
    if (d.segment_size == 0 || d.segment_size > d.data.size()) d.segment_size = d.data.size();
    ++batch.filled_;
  }
  return batch.filled_;
}

send_result udp_socket::send(const socket_address* remote, const socket_address* local,
                             std::span<const std::uint8_t> data, std::size_t segment_size,
                             unsigned ecn) noexcept {
  if (data.empty()) return {};
  if (segment_size == 0 || segment_size > data.size()) segment_size = data.size();
  if (connected_) remote = nullptr;
  if (gso_ && data.size() > segment_size) {
    send_result r = send_gso(remote, local, data, segment_size, ecn);
    if (gso_ || r.blocked || r.bytes_sent == data.size()) return r;
    // GSO was just refused by the kernel: send the rest one datagram at a time.
    send_result rest = send_each(remote, local, data.subspan(r.bytes_sent), segment_size, ecn);
    rest.bytes_sent += r.bytes_sent;
    return rest;
  }
  return send_each(remote, local, data, segment_size, ecn);
}

send_result udp_socket::send_gso(const socket_address* remote, const socket_address* local,
                                 std::span<const std::uint8_t> data, std::size_t segment_size,
                                 unsigned ecn) noexcept {
  send_result result;
  while (result.bytes_sent < data.size()) {
    const auto chunk = data.subspan(result.bytes_sent)
                           .first(std::min(data.size() - result.bytes_sent,
                                           segment_size * std::min(max_gso_segments,
                                                                   max_gso_bytes / segment_size)));
    iovec iov{const_cast<std::uint8_t*>(chunk.data()), chunk.size()};
    control_buffer control{};
    msghdr msg{};
    if (remote) {
      msg.msg_name = const_cast<sockaddr*>(remote->data());
      msg.msg_namelen = remote->size();
    }
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.bytes;
    put_send_control(msg, connected_ ? nullptr : local, ecn,
                     chunk.size() > segment_size ? segment_size : 0, local_.family());
    ssize_t n;
    do {
      n = ::sendmsg(fd_, &msg, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      if (is_blocking_error(errno)) {
        result.blocked = true;
        return result;
      }
      if (errno == EIO || errno == EINVAL || errno == EOPNOTSUPP) {
        gso_ = false; // the device or the path cannot segment: never try again
        return result;
      }
      last_error_ = errno;
      ++send_errors_;
    }
    result.bytes_sent += chunk.size();
  }
  return result;
}

send_result udp_socket::send_each(const socket_address* remote, const socket_address* local,
                                  std::span<const std::uint8_t> data, std::size_t segment_size,
                                  unsigned ecn) noexcept {
  send_result result;
  std::array<mmsghdr, max_send_batch> headers{};
  std::array<iovec, max_send_batch> iovs{};
  std::array<control_buffer, max_send_batch> controls{};
  while (result.bytes_sent < data.size()) {
    std::size_t count = 0;
    std::size_t offset = result.bytes_sent;
    for (; count < max_send_batch && offset < data.size(); ++count) {
      const std::size_t len = std::min(segment_size, data.size() - offset);
      iovs[count] = {const_cast<std::uint8_t*>(data.data() + offset), len};
      msghdr& msg = headers[count].msg_hdr;
      msg = {};
      if (remote) {
        msg.msg_name = const_cast<sockaddr*>(remote->data());
        msg.msg_namelen = remote->size();
      }
      msg.msg_iov = &iovs[count];
      msg.msg_iovlen = 1;
      msg.msg_control = controls[count].bytes;
      put_send_control(msg, connected_ ? nullptr : local, ecn, 0, local_.family());
      offset += len;
    }
    int n;
    do {
      n = ::sendmmsg(fd_, headers.data(), static_cast<unsigned>(count), 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      if (is_blocking_error(errno)) {
        result.blocked = true;
        return result;
      }
      // The first datagram failed for good (say, ECONNREFUSED): drop it and go on.
      last_error_ = errno;
      ++send_errors_;
      n = 1;
    }
    for (int i = 0; i < n; ++i) result.bytes_sent += iovs[static_cast<std::size_t>(i)].iov_len;
  }
  return result;
}

} // namespace detour::cli
