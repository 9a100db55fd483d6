// SPDX-License-Identifier: MIT
// detour/session.hpp: the sans-I/O state machine of one detour stream, server side. It reads the
// PROXY v2 header, tells a north request from a south hello, reads the north payload, holds the
// 4-byte response until it is written, then hands the stream to the relay (g3proxy stream
// detour, "One task" steps 2-5). No I/O, no clock; errors are sticky.
#pragma once

#include <detour/error.hpp>
#include <detour/ppv2/decode.hpp>
#include <detour/request.hpp>
#include <detour/response.hpp>
#include <detour/result.hpp>
#include <detour/websocket_payload.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <utility>

namespace detour {

/// Limits of a session.
struct session_options {
  /// Header size (default 4096), payload size (default 64 KiB) and the UTF-8 rule, as the
  /// request parser applies them. Together they bound the session's storage per stream.
  request_limits limits{};
  /// Limits for the WebSocket summary a `websocket` task carries as its payload.
  websocket_limits websocket{};
};

/// Where a session stands. `finished` and `failed` are final.
enum class session_state : std::uint8_t {
  header,   ///< reading the PROXY header; the stream's kind is not known yet
  payload,  ///< north: reading the payload that follows the header
  decision, ///< north: the request is complete; waiting for `decide()`
  response, ///< north: the 4-byte response waits in `pending_output()`
  relay,    ///< north after "continue" was written, south after its hello: the rest of the
            ///< stream belongs to the relay; `feed` takes nothing
  closing,  ///< north after bypass or block was written: input is dropped until the peer's FIN
  finished, ///< ended quietly: the stream was empty and finished at once (a quiet abort, or
            ///< the normal empty south stream after bypass/block), or `closing` completed
  failed,   ///< a sticky error: `error()` says why, `error_offset()` where
};

/// "header", "payload", ...
constexpr const char* to_string(session_state s) noexcept {
  switch (s) {
  case session_state::header:
    return "header";
  case session_state::payload:
    return "payload";
  case session_state::decision:
    return "decision";
  case session_state::response:
    return "response";
  case session_state::relay:
    return "relay";
  case session_state::closing:
    return "closing";
  case session_state::finished:
    return "finished";
  case session_state::failed:
    return "failed";
  }
  return "?";
}

/// What one call to `feed` or `end_of_stream` produced.
enum class session_event : std::uint8_t {
  need_more,   ///< everything offered was taken; the header or payload is not complete yet
  north_ready, ///< this call completed a north request and its payload: call `decide()`
  south_ready, ///< this call completed a south hello: pair it; the stream is in relay now
  waiting,     ///< nothing taken: a decision or the response's delivery is pending
  relay,       ///< nothing taken: the bytes belong to the relay
  closing,     ///< bytes dropped (after bypass/block nothing more is expected)
  finished,    ///< the session ended quietly (see session_state::finished)
  error,       ///< the session failed (now or earlier); see `error()`
};

/// The answer of `stream_session::feed`: the caller discards `consumed` bytes from the front of
/// what it offered (the session copied what it needs) and acts on `event`.
struct [[nodiscard]] feed_result {
  std::size_t consumed = 0;
  session_event event = session_event::need_more;
};

/// A task as its north stream announced it: what a policy decides on and what the relay's
/// inspection hook sees. Views point into the owning session's storage and stay valid until
/// that session is reset or destroyed (moving the session keeps them valid).
struct task_request {
  north_request request;                 ///< the header's typed fields
  std::span<const std::uint8_t> payload; ///< `request.payload_length` bytes (WebSocket summary)
  std::span<const std::uint8_t> header;  ///< the PROXY header as received
  /// For a `websocket` task: the parsed summary (resource, host, origin, ...).
  std::optional<websocket_payload> websocket;
  /// For a `websocket` task whose payload does not parse: why (`errc{}` otherwise). Such a task
  /// is still answered and relayed: what to do with it is the policy's decision.
  errc websocket_error = {};
};

/// @brief The server-side state machine of one detour stream.
///
/// Feed it the stream's received bytes in pieces of any size; it copies the header (and, for a
/// north request, the payload) into storage it owns, so the caller can discard them at once
/// (for QUIC: give the flow-control credit back) and views stay valid while the decision is
/// made, however long that takes, and for the whole task (the inspection hook sees them).
///
/// North: header, payload, `north_ready` -> `decide(action)` (now or later, from anywhere on
/// the caller's thread) -> `pending_output()` holds the 4-byte response until
/// `output_written()` covered it -> relay ("continue") or closing (bypass, block).
/// South: header -> `south_ready` -> relay.
/// An empty stream finished at once ends quietly (`finished`); a stream that ends inside a
/// header or payload fails with `unexpected_eof`.
///
/// Errors are sticky: after `failed`, every call reports the same error and takes nothing.
/// Storage grows to the header plus payload size of the largest request seen (at most the
/// limits), once; `reset()` keeps it, so a pooled session allocates nothing after warm-up.
/// `feed` never allocates per byte; it may throw `std::bad_alloc` only while growing storage.
class stream_session {
public:
  explicit stream_session(const session_options& options = {}) : options_(options) {}
  /// Not copyable: the request's views point into this session's own storage.
  stream_session(const stream_session&) = delete;
  stream_session& operator=(const stream_session&) = delete;
  /// Moving keeps the views valid (the storage moves with its owner, not in memory).
  stream_session(stream_session&&) noexcept = default;
  stream_session& operator=(stream_session&&) noexcept = default;

  /// Offers received bytes; see `feed_result`. Bytes beyond the header and payload are not
  /// taken (in relay they are the relay's, before the decision they wait in the stream).
  feed_result feed(std::span<const std::uint8_t> bytes) {
    switch (state_) {
    case session_state::header:
      return feed_header(bytes);
    case session_state::payload:
      return feed_payload(bytes, 0);
    case session_state::decision:
    case session_state::response:
      return {0, session_event::waiting};
    case session_state::relay:
      return {0, session_event::relay};
    case session_state::closing:
      return {bytes.size(), session_event::closing};
    case session_state::finished:
      return {0, session_event::finished};
    case session_state::failed:
      return {0, session_event::error};
    }
    return {0, session_event::error};
  }

  /// The peer finished the stream (FIN) and every byte before it was offered to `feed` (and
  /// taken, where the state takes bytes). Ends an empty stream quietly, fails one that stops
  /// inside its header or payload, completes `closing`; otherwise only noted.
  feed_result end_of_stream() noexcept {
    peer_finished_ = true;
    switch (state_) {
    case session_state::header:
      if (size_ == 0) {
        state_ = session_state::finished;
        return {0, session_event::finished};
      }
      return fail_at(errc::unexpected_eof, size_, 0);
    case session_state::payload:
      return fail_at(errc::unexpected_eof, size_, 0);
    case session_state::decision:
    case session_state::response:
      return {0, session_event::waiting};
    case session_state::relay:
      return {0, session_event::relay};
    case session_state::closing:
      state_ = session_state::finished;
      return {0, session_event::finished};
    case session_state::finished:
      return {0, session_event::finished};
    case session_state::failed:
      return {0, session_event::error};
    }
    return {0, session_event::error};
  }

  /// Answers the north request with `a` (`action::proceed` is g3proxy's "continue"): queues the
  /// 4-byte response (match id, action) in `pending_output()`. Returns false, changing nothing,
  /// unless the session is in `decision`.
  bool decide(action a) noexcept {
    if (state_ != session_state::decision) return false;
    decision_ = a;
    response_ = encode_response(task_.request.match_id, a);
    written_ = 0;
    state_ = session_state::response;
    return true;
  }

  /// The response bytes still to be written (empty outside `response`). The view stays valid
  /// until the next `output_written` or `reset`.
  std::span<const std::uint8_t> pending_output() const noexcept {
    if (state_ != session_state::response) return {};
    return std::span<const std::uint8_t>(response_).subspan(written_);
  }

  /// `n` more bytes of `pending_output()` were accepted by the stream. Once all 4 are, the
  /// session moves to relay ("continue") or to closing (bypass, block; straight to finished if
  /// the peer had already finished).
  void output_written(std::size_t n) noexcept {
    if (state_ != session_state::response) return;
    written_ = std::min(response_.size(), written_ + n);
    if (written_ < response_.size()) return;
    if (decision_ == action::proceed)
      state_ = session_state::relay;
    else
      state_ = peer_finished_ ? session_state::finished : session_state::closing;
  }

  /// Fails the session with `e` (a reset stream, an expired pairing, a timeout) unless it
  /// already ended. `offset` is where in the stream, if it matters.
  void fail(errc e, std::uint64_t offset = 0) noexcept {
    if (state_ == session_state::failed || state_ == session_state::finished) return;
    (void)fail_at(e, offset, 0);
  }

  /// Forgets the stream and starts over for a new one, keeping the storage.
  void reset() noexcept {
    size_ = 0; // the storage stays, for the next stream
    header_size_ = 0;
    header_total_ = 0;
    state_ = session_state::header;
    // Only what the last stream used needs clearing (a task_request is a few hundred bytes).
    if (kind_ == stream_kind::north) task_ = task_request{};
    if (kind_ == stream_kind::south) hello_ = south_hello{};
    kind_.reset();
    decision_.reset();
    written_ = 0;
    error_ = errc{};
    error_offset_ = 0;
    peer_finished_ = false;
  }

  session_state state() const noexcept { return state_; }
  /// North or south, once the header is complete.
  std::optional<stream_kind> kind() const noexcept { return kind_; }
  /// The task (north only, from `north_ready` on; empty views before).
  const task_request& task() const noexcept { return task_; }
  /// The south hello (south only, from `south_ready` on).
  const south_hello& hello() const noexcept { return hello_; }
  /// The match id of either kind (0 before the header is complete).
  std::uint16_t match_id() const noexcept {
    return kind_ == stream_kind::south ? hello_.match_id : task_.request.match_id;
  }
  /// The action given to `decide()`, if any.
  std::optional<action> decision() const noexcept { return decision_; }
  /// Why the session failed (`errc{}` unless failed).
  errc error() const noexcept { return error_; }
  /// Where: bytes from the start of the stream (the header's offsets are the decoder's).
  std::uint64_t error_offset() const noexcept { return error_offset_; }
  /// `end_of_stream()` was called.
  bool peer_finished() const noexcept { return peer_finished_; }
  /// Bytes of header and payload taken so far.
  std::size_t received() const noexcept { return size_; }
  /// Bytes of storage held for them: grows with what arrives (at most doubling), never to a
  /// payload length that was only announced.
  std::size_t storage_capacity() const noexcept { return capacity_; }
  const session_options& options() const noexcept { return options_; }

private:
  std::span<const std::uint8_t> stored() const noexcept { return {storage_.get(), size_}; }

  // Makes room for `total` bytes in all, keeping what is stored (views into it must be taken
  // again if it moved).
  void reserve(std::size_t total) {
    if (total <= capacity_) return;
    auto bigger = std::make_unique_for_overwrite<std::uint8_t[]>(total);
    if (size_ != 0) std::memcpy(bigger.get(), storage_.get(), size_);
    storage_ = std::move(bigger);
    capacity_ = total;
  }

  void append(std::span<const std::uint8_t> piece) {
    if (piece.empty()) return;
    if (size_ + piece.size() > capacity_) reserve(std::max(size_ + piece.size(), ppv2::fixed_size));
    std::memcpy(storage_.get() + size_, piece.data(), piece.size());
    size_ += piece.size();
  }

  feed_result fail_at(errc e, std::uint64_t offset, std::size_t consumed) noexcept {
    state_ = session_state::failed;
    error_ = e;
    error_offset_ = offset;
    return {consumed, session_event::error};
  }

  feed_result feed_header(std::span<const std::uint8_t> bytes) {
    const std::size_t limit = options_.limits.header.max_header_size;
    std::size_t taken = 0;
    // Fast path: the whole header in one piece (the normal case) is copied and decoded once.
    if (size_ == 0 && bytes.size() >= ppv2::fixed_size) {
      const std::size_t total =
          ppv2::fixed_size + (std::size_t{bytes[14]} << 8 | std::size_t{bytes[15]});
      if (total <= limit && bytes.size() >= total) {
        reserve(total);
        append(bytes.first(total));
        taken = total;
        header_total_ = total;
      }
    }
    for (;;) {
      // Until the fixed part is in, take at most up to it; then exactly up to the end.
      const std::size_t target = header_total_ != 0 ? header_total_ : ppv2::fixed_size;
      std::size_t take = 0;
      if (size_ < target) {
        take = std::min(target - size_, bytes.size() - taken);
        append(bytes.subspan(taken, take));
        taken += take;
      }
      // Past the fixed part the decoder has nothing to say until the header is complete, so a
      // header sent a byte at a time costs O(size) in all, not O(size^2).
      if (header_total_ != 0 && size_ < header_total_) return {taken, session_event::need_more};
      const auto h = ppv2::decode(stored(), options_.limits.header);
      if (h.failed()) return fail_at(h.error, h.offset, taken);
      if (h.complete()) return header_complete(h.value, bytes, taken);
      if (size_ >= ppv2::fixed_size && header_total_ == 0) {
        header_total_ = size_ + h.needed; // exact from here on, and within the limit
        reserve(header_total_);
        continue;
      }
      if (taken == bytes.size() || take == 0) return {taken, session_event::need_more};
    }
  }

  feed_result header_complete(const ppv2::header_view& view, std::span<const std::uint8_t> bytes,
                              std::size_t taken) {
    header_size_ = view.size();
    const auto parsed = parse_stream_header(view, options_.limits);
    if (parsed.failed()) return fail_at(parsed.error, parsed.offset, taken);
    kind_ = parsed.value.kind;
    if (parsed.value.kind == stream_kind::south) {
      hello_ = parsed.value.south;
      state_ = session_state::relay;
      return {taken, session_event::south_ready};
    }
    task_.request = parsed.value.north;
    task_.header = stored().first(header_size_);
    state_ = session_state::payload;
    return feed_payload(bytes, taken);
  }

  // Room for payload bytes as they arrive, not as announced: a header of a hundred bytes may
  // announce max_payload_length and send nothing. The storage at least doubles each time, so a
  // payload arriving in pieces moves O(log n) times; the request's views point into the
  // storage, so after a move they are taken again.
  void grow_for_payload(std::size_t needed, std::size_t total) {
    if (needed <= capacity_) return;
    reserve(std::min(total, std::max(needed, 2 * capacity_)));
    task_.request =
        parse_north_request(ppv2::decode(stored(), options_.limits.header).value, options_.limits)
            .value;
    task_.header = stored().first(header_size_);
  }

  feed_result feed_payload(std::span<const std::uint8_t> bytes, std::size_t taken) {
    const std::size_t total = header_size_ + task_.request.payload_length;
    const std::size_t take = std::min(total - size_, bytes.size() - taken);
    grow_for_payload(size_ + take, total);
    append(bytes.subspan(taken, take));
    taken += take;
    if (size_ < total) return {taken, session_event::need_more};
    task_.payload = stored().subspan(header_size_);
    if (task_.request.protocol == protocol_kind::websocket) {
      const auto ws = parse_websocket_payload(
          std::string_view(reinterpret_cast<const char*>(task_.payload.data()),
                           task_.payload.size()),
          options_.websocket);
      if (ws.complete())
        task_.websocket = ws.value;
      else
        task_.websocket_error = ws.error;
    }
    state_ = session_state::decision;
    return {taken, session_event::north_ready};
  }

  session_options options_;
  std::unique_ptr<std::uint8_t[]> storage_;
  std::size_t capacity_ = 0;
  std::size_t size_ = 0;         // bytes of header + payload stored
  std::size_t header_size_ = 0;  // once the header is complete
  std::size_t header_total_ = 0; // once the fixed part is in
  session_state state_ = session_state::header;
  std::optional<stream_kind> kind_;
  task_request task_{};
  south_hello hello_{};
  std::optional<action> decision_;
  std::array<std::uint8_t, response_size> response_{};
  std::size_t written_ = 0;
  errc error_ = {};
  std::uint64_t error_offset_ = 0;
  bool peer_finished_ = false;
};

} // namespace detour
