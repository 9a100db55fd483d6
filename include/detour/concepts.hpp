// SPDX-License-Identifier: MIT
// detour/concepts.hpp: the stream requirements every driver in detour::io is written against.
// A buffered readiness interface that a push-style QUIC stream (ngtcp2: received data appended by
// callbacks) and a pull-style socket both satisfy; resets map to RFC 9000 §19.4 RESET_STREAM and
// §19.5 STOP_SENDING, each with an application error code (§20.2).
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

namespace detour {

/// An application protocol error code as carried by QUIC's RESET_STREAM and STOP_SENDING frames
/// and CONNECTION_CLOSE of type 0x1d (RFC 9000 §20.2): a 62-bit unsigned integer. Transports
/// without codes (TCP) report 0 and ignore the codes they are given.
using app_code = std::uint64_t;

/// @brief The receive half of a stream: buffered received bytes, end of stream, reset.
///
/// @par Requirements
/// For `s` an lvalue of type `S`, `n` a `std::size_t` and `c` an `app_code`:
/// - `s.readable()` returns `std::span<const std::uint8_t>`: received bytes not yet consumed,
///   starting at the first unconsumed byte, in stream order. It may show only a prefix of what is
///   buffered (the first segment of a ring buffer, say) but is empty only when nothing is
///   buffered. The view stays valid until the next call of a non-const member of `s` other than
///   `readable()`, `at_eof()`, `receive_reset()`, `send_stopped()`, and until control returns to
///   the code that appends received data (for a push-style adaptor: the event loop).
/// - `s.consume(n)` with `n <= s.readable().size()` discards the first `n` bytes. This is the
///   only place a flow-controlled transport may give credit back to the peer (QUIC:
///   MAX_STREAM_DATA / MAX_DATA), so a relay's memory stays bounded by the window it advertises.
/// - `s.at_eof()` returns `bool`: true once the peer finished its send side (QUIC FIN, TCP FIN)
///   and every byte before the end has been received, so nothing will be appended to
///   `readable()` any more. The receive side has ended when `at_eof() && readable().empty()`.
/// - `s.receive_reset()` returns `std::optional<app_code>`: the code once the peer abandoned its
///   send side (QUIC RESET_STREAM; a TCP connection reset reports 0); empty until then, and never
///   empty again afterwards. Bytes still in `readable()` after a reset are incomplete: drivers
///   stop relaying them.
/// - `s.stop_reading(c)` abandons the receive side and asks the peer to stop sending (QUIC
///   STOP_SENDING with code `c`). Idempotent, and harmless after the receive side ended. Drivers
///   call nothing on the receive half afterwards except the const observers.
/// Nothing is required to be `noexcept`; the drivers in `detour::io` never throw themselves.
template <class S>
concept readable_stream = requires(S& s, std::size_t n, app_code c) {
  { s.readable() } -> std::same_as<std::span<const std::uint8_t>>;
  { s.consume(n) } -> std::same_as<void>;
  { s.at_eof() } -> std::same_as<bool>;
  { s.receive_reset() } -> std::same_as<std::optional<app_code>>;
  { s.stop_reading(c) } -> std::same_as<void>;
};

/// @brief The send half of a stream: bounded writes, end of stream, reset.
///
/// @par Requirements
/// For `s` an lvalue of type `S`, `b` a `std::span<const std::uint8_t>` and `c` an `app_code`:
/// - `s.write_some(b)` returns `std::size_t`: how many leading bytes of `b` the stream accepted,
///   from 0 to `b.size()`. Accepted bytes are in the stream's care from then on (copied into a
///   send buffer, or handed to the kernel): the caller may reuse `b`'s memory at once. A QUIC
///   adaptor keeps them until they are acknowledged. 0 means "no room now" (stream or connection
///   window full, send buffer at its limit): the driver waits for the transport to report
///   progress and calls again. Not called after `close_write()` or `reset_write()`.
/// - `s.close_write()` finishes the send side after every accepted byte (QUIC FIN, TCP
///   shutdown(SHUT_WR)). Idempotent.
/// - `s.send_stopped()` returns `std::optional<app_code>`: the code once the peer asked us to
///   stop sending (QUIC STOP_SENDING; a TCP connection reset or EPIPE reports 0); empty until then,
///   never empty again afterwards. Writes after that are pointless: drivers stop writing. (QUIC
///   requires answering STOP_SENDING with RESET_STREAM; ngtcp2 does so by itself, other adaptors
///   do it in their own code, not through `reset_write`.)
/// - `s.reset_write(c)` abandons the send side (QUIC RESET_STREAM with code `c`); bytes accepted
///   but not yet delivered may be dropped. Idempotent.
template <class S>
concept writable_stream = requires(S& s, std::span<const std::uint8_t> b, app_code c) {
  { s.write_some(b) } -> std::same_as<std::size_t>;
  { s.close_write() } -> std::same_as<void>;
  { s.send_stopped() } -> std::same_as<std::optional<app_code>>;
  { s.reset_write(c) } -> std::same_as<void>;
};

/// @brief A bidirectional stream: both halves (QUIC bidirectional stream, TCP connection).
///
/// Readiness is not part of the concept: after any transport event that may let a driver make
/// progress (bytes received, FIN, reset, STOP_SENDING, send window opened, data acknowledged) the
/// caller simply runs the driver's `step()` again; a driver never blocks and never waits.
/// Adaptors in this library: `io::pipe_end` (in memory, for tests), `posix::tcp_stream`.
/// A stream type `static_assert`s `detour::duplex_stream<T>` right under its class.
template <class S>
concept duplex_stream = readable_stream<S> && writable_stream<S>;

} // namespace detour
