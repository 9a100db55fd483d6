// SPDX-License-Identifier: MIT
// detour/io/relay.hpp: the relay pump of one direction, from a readable stream to a writable
// one (echo when both are the same stream), with back-pressure and the inspection hook. Ends
// propagate as g3proxy stream detour "Closing" requires: a send side is finished only after its
// receive side ended and everything received was written; resets travel on with their code.
#pragma once

#include <detour/concepts.hpp>
#include <detour/io/inspect.hpp>
#include <detour/request.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <utility>

namespace detour::io {

/// Limits of one relay direction.
struct relay_options {
  /// Most bytes the relay takes from the source before the sink accepted them: the size of the
  /// chunks an inspector sees and the relay's whole share of the direction's buffering (the
  /// rest sits in the source's receive buffer and the sink's send buffer, both bounded by the
  /// transport's own windows). 64 KiB lets a relay keep a QUIC stream's typical window busy
  /// while an inspector still sees reasonably small pieces. At least 1.
  std::size_t window = 64 * 1024;
};

/// Where a relay direction stands. Every state but `running` is final.
enum class relay_state : std::uint8_t {
  running,  ///< more to do once the source has bytes or the sink has room
  finished, ///< the source ended (FIN), everything was written and the sink was finished (FIN)
  stopped,  ///< the sink's peer stopped reading (STOP_SENDING); the source was abandoned with
            ///< the same code (or drained, if it had already ended)
  reset,    ///< the source was reset (RESET_STREAM); the sink was reset with the same code
  ended,    ///< the inspector ended the task; both sides were reset with its code
  aborted,  ///< `abort()` was called; both sides were reset with its code
};

/// "running", "finished", ...
constexpr const char* to_string(relay_state s) noexcept {
  switch (s) {
  case relay_state::running:
    return "running";
  case relay_state::finished:
    return "finished";
  case relay_state::stopped:
    return "stopped";
  case relay_state::reset:
    return "reset";
  case relay_state::ended:
    return "ended";
  case relay_state::aborted:
    return "aborted";
  }
  return "?";
}

/// @brief Relays one direction: bytes from `Source`'s receive side to `Sink`'s send side.
///
/// @tparam Source models `detour::readable_stream`; @tparam Sink models
///   `detour::writable_stream`. For an echo (the pass-through server) both are the same
///   `duplex_stream` object; for a forward they are two streams.
/// @tparam Inspector models `inspector<Context>`; `pass_through` by default.
/// @tparam Context the task's context handed to the inspector (`void` for none).
///
/// Flow control: the relay never copies. A chunk the inspector passes is written straight from
/// `source.readable()` and consumed exactly as far as `sink.write_some()` accepted it, so
/// flow-control credit goes back to the source's peer only as bytes are handed on. A chunk the
/// inspector replaces is consumed once the replacement has been fully accepted. At most
/// `relay_options::window` bytes of the source are taken at a time (`in_flight()`).
///
/// Ends: when the source has ended (`at_eof()` and nothing left) and everything was written,
/// the inspector gets a last call and the sink is finished (`close_write()`). A reset source
/// resets the sink with the same code; a sink whose peer sent STOP_SENDING makes the relay
/// abandon the source (`stop_reading` with that code) unless the source had already ended.
///
/// The relay keeps pointers to both streams and to the context: they must outlive it.
/// Not thread-safe; never throws itself, never allocates.
template <readable_stream Source, writable_stream Sink, class Inspector = pass_through,
          class Context = void>
requires inspector<Inspector, Context>
class relay {
public:
  /// @param side which stream of the task the bytes travel on (told to the inspector).
  relay(Source& source, Sink& sink, stream_kind side, const relay_options& options = {},
        Inspector inspect = Inspector{}, const Context* task = nullptr)
      : source_(&source), sink_(&sink), inspect_(std::move(inspect)), task_(task),
        window_(std::max<std::size_t>(options.window, 1)), side_(side) {}

  relay(const relay&) = delete;
  relay& operator=(const relay&) = delete;

  /// Moves as many bytes as the streams allow right now, and propagates ends and resets.
  /// Call again after any event on either stream. Returns the state afterwards.
  relay_state step() {
    while (state_ == relay_state::running) {
      // A reset source first: it means lost data, whereas STOP_SENDING alone is how g3proxy
      // ends a task normally; a peer abandoning a stream sends both.
      if (const auto code = source_->receive_reset()) {
        sink_->reset_write(*code);
        finish(relay_state::reset, *code);
        break;
      }
      if (const auto code = sink_->send_stopped()) {
        on_sink_stopped(*code);
        break;
      }
      if (pending_ != 0 || replacing_) {
        if (!flush()) break; // the sink is full: wait for room
        continue;
      }
      const auto view = source_->readable();
      if (!view.empty()) {
        const auto piece = view.first(std::min(view.size(), window_));
        apply(inspect_(chunk<Context>{side_, piece, bytes_in_, false, task_}), piece.size());
        continue;
      }
      if (!source_->at_eof()) break; // wait for bytes
      if (!last_called_) {
        last_called_ = true;
        apply(inspect_(chunk<Context>{side_, {}, bytes_in_, true, task_}), 0);
        continue;
      }
      sink_->close_write();
      finish(relay_state::finished, std::nullopt);
    }
    return state_;
  }

  /// Ends this direction now: abandons the source (STOP_SENDING) and resets the sink
  /// (RESET_STREAM), both with `code`. For a task that fails elsewhere (its partner was reset,
  /// it expired). No effect once the relay is in a final state.
  void abort(app_code code) {
    if (state_ != relay_state::running) return;
    stop_source(code);
    sink_->reset_write(code);
    finish(relay_state::aborted, code);
  }

  relay_state state() const noexcept { return state_; }
  bool done() const noexcept { return state_ != relay_state::running; }
  /// The code of the reset, STOP_SENDING, inspector end or abort that ended the relay.
  std::optional<app_code> code() const noexcept { return code_; }
  /// Bytes taken from the source and not yet accepted by the sink; never above the window.
  std::size_t in_flight() const noexcept { return replacing_ ? replaced_ : pending_; }
  /// Bytes consumed from the source.
  std::uint64_t bytes_in() const noexcept { return bytes_in_; }
  /// Bytes accepted by the sink.
  std::uint64_t bytes_out() const noexcept { return bytes_out_; }
  std::size_t window() const noexcept { return window_; }
  stream_kind side() const noexcept { return side_; }
  Inspector& inspector_object() noexcept { return inspect_; }
  /// Points the inspector at the task's context (for a south stream: once it is paired).
  void set_task(const Context* task) noexcept { task_ = task; }

private:
  void apply(const verdict& v, std::size_t taken) {
    switch (v.action) {
    case verdict::kind::pass:
      pending_ = taken;
      return;
    case verdict::kind::replace:
      replacement_ = v.replacement;
      replaced_ = taken;
      replacing_ = true;
      return;
    case verdict::kind::end:
      stop_source(v.code);
      sink_->reset_write(v.code);
      finish(relay_state::ended, v.code);
      return;
    }
  }

  // Writes what is pending; true when all of it was accepted.
  bool flush() {
    if (replacing_) {
      while (!replacement_.empty()) {
        const std::size_t n = std::min(sink_->write_some(replacement_), replacement_.size());
        if (n == 0) return false;
        replacement_ = replacement_.subspan(n);
        bytes_out_ += n;
      }
      source_->consume(replaced_); // the original chunk goes only now: credit follows output
      bytes_in_ += replaced_;
      replaced_ = 0;
      replacing_ = false;
      return true;
    }
    while (pending_ != 0) {
      const auto view = source_->readable();
      const auto piece = view.first(std::min(view.size(), pending_));
      if (piece.empty()) return false;
      const std::size_t n = std::min(sink_->write_some(piece), piece.size());
      if (n == 0) return false;
      source_->consume(n);
      pending_ -= n;
      bytes_in_ += n;
      bytes_out_ += n;
    }
    return true;
  }

  void on_sink_stopped(app_code code) {
    // Nothing more can be delivered: let go of what the source holds, and ask its peer to stop
    // sending unless it already finished.
    pending_ = 0;
    replacing_ = false;
    replacement_ = {};
    stop_source(code);
    finish(relay_state::stopped, code);
  }

  void stop_source(app_code code) {
    if (source_->receive_reset()) return;
    if (source_->at_eof()) { // ended already: just drop what is left
      for (auto view = source_->readable(); !view.empty(); view = source_->readable())
        source_->consume(view.size());
      return;
    }
    source_->stop_reading(code);
  }

  void finish(relay_state s, std::optional<app_code> code) {
    state_ = s;
    code_ = code;
  }

  Source* source_;
  Sink* sink_;
  Inspector inspect_;
  const Context* task_;
  std::size_t window_;
  std::size_t pending_ = 0;  // passed bytes at the head of source.readable() not yet written
  std::size_t replaced_ = 0; // source bytes a pending replacement stands for
  std::span<const std::uint8_t> replacement_{};
  std::uint64_t bytes_in_ = 0;
  std::uint64_t bytes_out_ = 0;
  std::optional<app_code> code_;
  stream_kind side_;
  relay_state state_ = relay_state::running;
  bool replacing_ = false;
  bool last_called_ = false;
};

/// An echo: the stream's receive side relayed back onto its own send side (the pass-through
/// server, per stream).
template <duplex_stream Stream, class Inspector = pass_through, class Context = void>
using echo_relay = relay<Stream, Stream, Inspector, Context>;

} // namespace detour::io
