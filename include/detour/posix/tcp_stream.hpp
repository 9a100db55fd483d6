// SPDX-License-Identifier: MIT
// detour/posix/tcp_stream.hpp: a non-blocking POSIX TCP socket as a detour::duplex_stream, plus
// a loopback-friendly listener, a connect helper and a small poll(2) loop, so a whole detour
// exchange (client and server side) can run over TCP without QUIC: for tests, and for users who
// try their inspection logic. POSIX sockets (IEEE Std 1003.1); Linux and BSDs.
#pragma once

#include <detour/concepts.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <span>
#include <system_error>
#include <utility>
#include <vector>

namespace detour::posix {

/// Settings of a `tcp_stream`.
struct tcp_options {
  /// Size of the user-space receive buffer that `readable()` shows: what the stream reads ahead
  /// of the driver, and so the stream's share of a relay's memory (the kernel's socket buffers
  /// come on top). 64 KiB matches a typical QUIC stream window. Reserved once. At least 1.
  std::size_t receive_buffer = 64 * 1024;
};

/// @brief A connected, non-blocking TCP socket that models `detour::duplex_stream`.
///
/// Pull model: `fill()` reads what the kernel has into the receive buffer (the `poller` calls
/// it when the socket is readable); `readable()` and `consume()` work on that buffer and never
/// make system calls. `write_some()` sends directly (the kernel copies), so nothing waits in
/// user space and `close_write()` can shut the send side at once.
///
/// TCP has no application codes and no half reset, so QUIC semantics are approximated:
/// - A connection reset by the peer (ECONNRESET) reports `receive_reset() == 0` and
///   `send_stopped() == 0`; writing to a peer that is gone (EPIPE) reports `send_stopped() == 0`.
/// - `reset_write(c)` resets the whole connection (RST, via SO_LINGER 0) and closes the socket;
///   from then on both `receive_reset()` and `send_stopped()` report `c`.
/// - `stop_reading(c)` shuts the receive side locally (SHUT_RD) and drops buffered bytes; the
///   peer is not told (TCP has no STOP_SENDING).
///
/// Owns the descriptor: closes it when destroyed. Movable, not copyable. Never throws; system
/// call failures other than the above are kept in `last_error()` and treated as a reset.
class tcp_stream {
public:
  tcp_stream() = default;
  /// Takes ownership of a connected socket and makes it non-blocking (and TCP_NODELAY, so small
  /// answers such as the 4-byte response leave at once).
  explicit tcp_stream(int fd, const tcp_options& options = {})
      : fd_(fd), buf_(std::max<std::size_t>(options.receive_buffer, 1)) {
    if (fd_ < 0) return;
    const int flags = ::fcntl(fd_, F_GETFL, 0);
    if (flags < 0 || ::fcntl(fd_, F_SETFL, flags | O_NONBLOCK) < 0) fail(errno);
    const int one = 1;
    (void)::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  tcp_stream(tcp_stream&& other) noexcept { swap(other); }
  tcp_stream& operator=(tcp_stream&& other) noexcept {
    tcp_stream(std::move(other)).swap(*this);
    return *this;
  }
  tcp_stream(const tcp_stream&) = delete;
  tcp_stream& operator=(const tcp_stream&) = delete;
  ~tcp_stream() { close_fd(); }

  // ---- readable_stream ----

  std::span<const std::uint8_t> readable() const noexcept {
    if (reset_ || read_stopped_) return {};
    return {buf_.data() + head_, tail_ - head_};
  }
  void consume(std::size_t n) noexcept {
    head_ += std::min(n, tail_ - head_);
    if (head_ == tail_) head_ = tail_ = 0;
  }
  /// True once the peer's FIN was read: `readable()` holds the rest.
  bool at_eof() const noexcept { return eof_; }
  std::optional<app_code> receive_reset() const noexcept { return reset_; }
  void stop_reading(app_code) noexcept {
    if (read_stopped_ || reset_) return;
    read_stopped_ = true;
    head_ = tail_ = 0;
    if (fd_ >= 0 && !eof_) (void)::shutdown(fd_, SHUT_RD);
  }

  // ---- writable_stream ----

  std::size_t write_some(std::span<const std::uint8_t> bytes) noexcept {
    if (fd_ < 0 || write_closed_ || stopped_ || bytes.empty()) return 0;
    for (;;) {
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n >= 0) {
        if (static_cast<std::size_t>(n) < bytes.size()) write_blocked_ = true;
        return static_cast<std::size_t>(n);
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        write_blocked_ = true;
        return 0;
      }
      if (errno == EPIPE) {
        stopped_ = app_code{0};
      } else {
        fail(errno);
      }
      return 0;
    }
  }
  /// Shuts the send side (FIN); everything accepted so far is already in the kernel's hands.
  void close_write() noexcept {
    if (write_closed_) return;
    write_closed_ = true;
    if (fd_ >= 0 && !stopped_) (void)::shutdown(fd_, SHUT_WR);
  }
  std::optional<app_code> send_stopped() const noexcept { return stopped_; }
  /// Resets the whole connection (RST) and closes the socket; see the class comment.
  void reset_write(app_code code) noexcept {
    if (fd_ >= 0) {
      const ::linger hard{1, 0};
      (void)::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
      close_fd();
    }
    if (!reset_) reset_ = code;
    if (!stopped_) stopped_ = code;
    write_closed_ = true;
    head_ = tail_ = 0;
  }

  // ---- I/O ----

  /// Reads what the kernel has, as far as the receive buffer has room; notes FIN and resets.
  /// Returns the number of bytes read. Called by `poller` on POLLIN/POLLHUP/POLLERR.
  std::size_t fill() noexcept {
    std::size_t total = 0;
    while (fd_ >= 0 && !eof_ && !reset_ && !read_stopped_) {
      if (tail_ == buf_.size() && head_ != 0) { // compact: move unread bytes to the front
        std::memmove(buf_.data(), buf_.data() + head_, tail_ - head_);
        tail_ -= head_;
        head_ = 0;
      }
      if (tail_ == buf_.size()) break; // full: the driver must consume first
      const ssize_t n = ::recv(fd_, buf_.data() + tail_, buf_.size() - tail_, MSG_DONTWAIT);
      if (n > 0) {
        tail_ += static_cast<std::size_t>(n);
        total += static_cast<std::size_t>(n);
        continue;
      }
      if (n == 0) {
        eof_ = true;
        break;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      fail(errno);
    }
    return total;
  }

  /// The poll(2) events this stream waits for now: POLLIN while it can take bytes, POLLOUT
  /// after a write was refused. 0 when it waits for nothing.
  short wanted_events() const noexcept {
    if (fd_ < 0) return 0;
    short ev = 0;
    if (!eof_ && !reset_ && !read_stopped_ && (tail_ - head_) < buf_.size()) ev |= POLLIN;
    if (write_blocked_ && !write_closed_ && !stopped_) ev |= POLLOUT;
    return ev;
  }
  /// Called by `poller` when poll(2) reported POLLOUT.
  void writable_again() noexcept { write_blocked_ = false; }

  int native_handle() const noexcept { return fd_; }
  bool is_open() const noexcept { return fd_ >= 0; }
  /// The last unexpected system error (empty if none).
  std::error_code last_error() const noexcept { return error_; }
  /// Both directions are over: the receive side ended or was abandoned, and the send side was
  /// finished or stopped. The owner may destroy the stream.
  bool finished() const noexcept {
    const bool rx_done = reset_ || read_stopped_ || (eof_ && head_ == tail_);
    const bool tx_done = write_closed_ || stopped_;
    return rx_done && tx_done;
  }

  void swap(tcp_stream& o) noexcept {
    using std::swap;
    swap(fd_, o.fd_);
    swap(buf_, o.buf_);
    swap(head_, o.head_);
    swap(tail_, o.tail_);
    swap(eof_, o.eof_);
    swap(reset_, o.reset_);
    swap(stopped_, o.stopped_);
    swap(read_stopped_, o.read_stopped_);
    swap(write_closed_, o.write_closed_);
    swap(write_blocked_, o.write_blocked_);
    swap(error_, o.error_);
  }

private:
  void fail(int err) noexcept {
    if (err != ECONNRESET && err != EPIPE) error_ = std::error_code(err, std::generic_category());
    if (!reset_) reset_ = app_code{0};
    if (!stopped_) stopped_ = app_code{0};
  }
  void close_fd() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  int fd_ = -1;
  std::vector<std::uint8_t> buf_;
  std::size_t head_ = 0;
  std::size_t tail_ = 0;
  bool eof_ = false;
  std::optional<app_code> reset_;
  std::optional<app_code> stopped_;
  bool read_stopped_ = false;
  bool write_closed_ = false;
  bool write_blocked_ = false;
  std::error_code error_;
};

static_assert(duplex_stream<tcp_stream>);

namespace detail {

inline bool make_address(const char* ip, std::uint16_t port, ::sockaddr_storage& ss,
                         ::socklen_t& len) noexcept {
  std::memset(&ss, 0, sizeof ss);
  auto* v4 = reinterpret_cast<::sockaddr_in*>(&ss);
  if (::inet_pton(AF_INET, ip, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    len = sizeof(::sockaddr_in);
    return true;
  }
  auto* v6 = reinterpret_cast<::sockaddr_in6*>(&ss);
  if (::inet_pton(AF_INET6, ip, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    len = sizeof(::sockaddr_in6);
    return true;
  }
  return false;
}

} // namespace detail

/// A non-blocking listening TCP socket.
class tcp_listener {
public:
  tcp_listener() = default;
  tcp_listener(tcp_listener&& o) noexcept : fd_(std::exchange(o.fd_, -1)), port_(o.port_) {}
  tcp_listener& operator=(tcp_listener&& o) noexcept {
    if (this != &o) {
      close_fd();
      fd_ = std::exchange(o.fd_, -1);
      port_ = o.port_;
    }
    return *this;
  }
  tcp_listener(const tcp_listener&) = delete;
  tcp_listener& operator=(const tcp_listener&) = delete;
  ~tcp_listener() { close_fd(); }

  /// Listens on `ip` (numeric IPv4 or IPv6; tests use "127.0.0.1" or "::1") and `port` (0: any
  /// free port, see `port()`). On failure returns a closed listener and sets `ec`.
  static tcp_listener listen(const char* ip, std::uint16_t port, std::error_code& ec) noexcept {
    tcp_listener l;
    ::sockaddr_storage ss;
    ::socklen_t len = 0;
    if (!detail::make_address(ip, port, ss, len)) {
      ec = std::make_error_code(std::errc::invalid_argument);
      return l;
    }
    l.fd_ = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    const int one = 1;
    if (l.fd_ < 0 || ::setsockopt(l.fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        ::bind(l.fd_, reinterpret_cast<const ::sockaddr*>(&ss), len) < 0 ||
        ::listen(l.fd_, SOMAXCONN) < 0 ||
        ::getsockname(l.fd_, reinterpret_cast<::sockaddr*>(&ss), &len) < 0) {
      ec = std::error_code(errno, std::generic_category());
      l.close_fd();
      return l;
    }
    l.port_ = ntohs(ss.ss_family == AF_INET ? reinterpret_cast<::sockaddr_in*>(&ss)->sin_port
                                            : reinterpret_cast<::sockaddr_in6*>(&ss)->sin6_port);
    ec.clear();
    return l;
  }

  /// Accepts one pending connection, or returns an empty optional when none is pending (`ec`
  /// clear) or on failure (`ec` set).
  std::optional<tcp_stream> accept(std::error_code& ec, const tcp_options& options = {}) noexcept {
    ec.clear();
    for (;;) {
      const int fd = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd >= 0) return tcp_stream(fd, options);
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        ec = std::error_code(errno, std::generic_category());
      return std::nullopt;
    }
  }

  std::uint16_t port() const noexcept { return port_; }
  int native_handle() const noexcept { return fd_; }
  bool is_open() const noexcept { return fd_ >= 0; }

private:
  void close_fd() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

/// Connects to `ip`:`port` (numeric address). The connect itself blocks (instant on loopback);
/// the stream is non-blocking afterwards. On failure returns an empty optional and sets `ec`.
inline std::optional<tcp_stream> connect(const char* ip, std::uint16_t port, std::error_code& ec,
                                         const tcp_options& options = {}) noexcept {
  ::sockaddr_storage ss;
  ::socklen_t len = 0;
  if (!detail::make_address(ip, port, ss, len)) {
    ec = std::make_error_code(std::errc::invalid_argument);
    return std::nullopt;
  }
  const int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ec = std::error_code(errno, std::generic_category());
    return std::nullopt;
  }
  int rc;
  do {
    rc = ::connect(fd, reinterpret_cast<const ::sockaddr*>(&ss), len);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    ec = std::error_code(errno, std::generic_category());
    ::close(fd);
    return std::nullopt;
  }
  ec.clear();
  return tcp_stream(fd, options);
}

/// What one `poller::wait` saw.
struct poll_result {
  std::size_t ready = 0;       ///< streams with an event (their buffers were filled)
  bool listener_ready = false; ///< the listener has a connection to accept
};

/// @brief A small poll(2) loop over `tcp_stream`s and an optional listener.
///
/// `wait` blocks until a stream can make progress (or the timeout passes), then fills the
/// receive buffers of the readable streams, so the caller can step its drivers right after.
/// Its pollfd array is reused between calls (no allocation once it has grown).
class poller {
public:
  poll_result wait(std::span<tcp_stream* const> streams, const tcp_listener* listener,
                   std::chrono::milliseconds timeout, std::error_code& ec) {
    ec.clear();
    fds_.clear();
    for (tcp_stream* s : streams) {
      const short ev = s ? s->wanted_events() : 0;
      fds_.push_back(::pollfd{ev != 0 ? s->native_handle() : -1, ev, 0});
    }
    if (listener && listener->is_open())
      fds_.push_back(::pollfd{listener->native_handle(), POLLIN, 0});
    poll_result r;
    // poll(2) takes an int: a longer timeout waits the longest it can, a negative one forever.
    const int ms = timeout.count() < 0 ? -1
                   : timeout.count() > std::numeric_limits<int>::max()
                       ? std::numeric_limits<int>::max()
                       : static_cast<int>(timeout.count());
    int n;
    do {
      n = ::poll(fds_.data(), fds_.size(), ms);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      ec = std::error_code(errno, std::generic_category());
      return r;
    }
    for (std::size_t i = 0; i < streams.size(); ++i) {
      const short rev = fds_[i].revents;
      if (rev == 0) continue;
      ++r.ready;
      if (rev & (POLLOUT | POLLERR | POLLHUP)) streams[i]->writable_again();
      if (rev & (POLLIN | POLLERR | POLLHUP)) (void)streams[i]->fill();
    }
    if (listener && listener->is_open() && (fds_.back().revents & POLLIN)) r.listener_ready = true;
    return r;
  }

private:
  std::vector<::pollfd> fds_;
};

} // namespace detour::posix
