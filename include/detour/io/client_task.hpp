// SPDX-License-Identifier: MIT
// detour/io/client_task.hpp: the client side of one detour task over any duplex_stream, as
// g3proxy plays it (g3proxy stream detour "One task"): north request and payload, the 4-byte
// answer, then the south hello on "continue", or FIN and STOP_SENDING on both streams for
// bypass and block. For tests and tools that stand in for g3proxy.
#pragma once

#include <detour/concepts.hpp>
#include <detour/error.hpp>
#include <detour/response.hpp>
#include <detour/result.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>

namespace detour::io {

/// Where a client task stands.
enum class client_status : std::uint8_t {
  active,     ///< sending the request or waiting for the answer
  proceeding, ///< "continue" received; the south hello is still being written. The north
              ///< stream is the caller's already (client data may follow the answer at once)
  relaying,   ///< "continue", hello written: both streams are the caller's to relay on
  bypassed,   ///< bypass: both send sides finished, both receive sides stopped (code 0)
  blocked,    ///< block (or an unknown action): the same
  failed,     ///< `error()`: no valid answer (mismatched match id, end or reset before it)
};

/// @brief Plays g3proxy's part of one task on two streams.
///
/// @tparam Stream models `duplex_stream`. The driver keeps pointers to both streams and views
///   of both openings; all must outlive it.
///
/// `north_opening` is the north request with its payload, `south_opening` the south hello, as
/// g3proxy's encoder would write them (see `encode_north_request`, `encode_south_hello`). Call
/// `step()` after every event on either stream. Only the 4 answer bytes are consumed from the
/// north stream: what follows is relay data. On a failure both streams are reset and stopped
/// with code 0, as g3proxy drops a failed task's streams.
template <duplex_stream Stream>
class client_task {
public:
  client_task(Stream& north, Stream& south, std::span<const std::uint8_t> north_opening,
              std::span<const std::uint8_t> south_opening, std::uint16_t match_id) noexcept
      : north_(&north), south_(&south), to_north_(north_opening), to_south_(south_opening),
        match_id_(match_id) {}

  client_status step() {
    for (;;) {
      switch (status_) {
      case client_status::active:
        if (!send(*north_, to_north_)) return status_;
        if (!read_answer()) return status_;
        break;
      case client_status::proceeding:
        if (!send(*south_, to_south_)) return status_;
        status_ = client_status::relaying;
        break;
      default:
        return status_;
      }
    }
  }

  client_status status() const noexcept { return status_; }
  /// The answer, once read.
  std::optional<response> answer() const noexcept { return answer_; }
  /// Why the task failed (`errc{}` otherwise).
  errc error() const noexcept { return error_; }

private:
  // Writes what is left of `rest`; true once all of it is written.
  bool send(Stream& s, std::span<const std::uint8_t>& rest) {
    if (s.send_stopped()) {
      fail(errc::stream_reset);
      return false;
    }
    while (!rest.empty()) {
      const std::size_t n = s.write_some(rest);
      if (n == 0) return false;
      rest = rest.subspan(n);
    }
    return true;
  }

  // Reads the 4-byte answer; true once the status moved on.
  bool read_answer() {
    if (north_->receive_reset()) {
      fail(errc::stream_reset);
      return false;
    }
    // Collect up to 4 bytes (the view may show fewer than are buffered).
    while (got_ < answer_bytes_.size()) {
      const auto view = north_->readable();
      if (view.empty()) break;
      const std::size_t n = std::min(view.size(), answer_bytes_.size() - got_);
      std::copy_n(view.begin(), n, answer_bytes_.begin() + static_cast<std::ptrdiff_t>(got_));
      north_->consume(n);
      got_ += n;
    }
    if (got_ < answer_bytes_.size()) {
      if (north_->at_eof() && north_->readable().empty()) fail(errc::unexpected_eof);
      return false;
    }
    const auto r = decode_response(answer_bytes_, match_id_);
    if (r.failed()) { // "invalid match id"
      fail(r.error);
      return false;
    }
    answer_ = r.value;
    switch (r.value.decision) {
    case action::proceed:
      status_ = client_status::proceeding;
      return true;
    case action::bypass:
      status_ = client_status::bypassed;
      break;
    case action::block:
      status_ = client_status::blocked;
      break;
    }
    // g3proxy finishes both send sides (the south one without a hello) and drops both receive
    // sides: the server sees an empty south stream finished at once, and STOP_SENDING.
    for (Stream* s : {north_, south_}) {
      s->close_write();
      s->stop_reading(0);
    }
    return true;
  }

  void fail(errc e) {
    status_ = client_status::failed;
    error_ = e;
    for (Stream* s : {north_, south_}) {
      s->reset_write(0);
      s->stop_reading(0);
    }
  }

  Stream* north_;
  Stream* south_;
  std::span<const std::uint8_t> to_north_;
  std::span<const std::uint8_t> to_south_;
  std::uint16_t match_id_;
  std::array<std::uint8_t, response_size> answer_bytes_{};
  std::size_t got_ = 0;
  std::optional<response> answer_;
  client_status status_ = client_status::active;
  errc error_ = {};
};

} // namespace detour::io
