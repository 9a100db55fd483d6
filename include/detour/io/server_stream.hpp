// SPDX-License-Identifier: MIT
// detour/io/server_stream.hpp: the server-side driver of one detour stream over any
// duplex_stream: it runs the stream_session (header, payload, response), then the echo relay,
// mirroring half-closes and propagating resets as g3proxy stream detour "Closing" requires.
#pragma once

#include <detour/concepts.hpp>
#include <detour/error.hpp>
#include <detour/io/inspect.hpp>
#include <detour/io/relay.hpp>
#include <detour/request.hpp>
#include <detour/response.hpp>
#include <detour/session.hpp>

#include <cstdint>
#include <optional>
#include <utility>

namespace detour::io {

/// Application codes start here when a server ends a stream for a reason of its own: code =
/// `app_code_base + errc value`, so every library error has a stable code on the wire (0x11f,
/// say, is `unexpected_eof`, 31). Codes below are left to the peer and to the application.
inline constexpr app_code app_code_base = 0x100;

/// The application code for a library error: `app_code_base + e`.
constexpr app_code app_code_for(errc e) noexcept {
  return app_code_base + static_cast<app_code>(e);
}

/// Settings of a server stream.
struct stream_options {
  /// Header and payload limits.
  session_options session{};
  /// The echo relay's window.
  relay_options relay{};
  /// The code used in RESET_STREAM and STOP_SENDING when the server ends a stream because of
  /// `errc` (a malformed header, an expired pairing, an aborted partner, ...).
  app_code (*code_for)(errc) = &app_code_for;
};

/// Where a server stream stands after `step()`.
enum class stream_status : std::uint8_t {
  active,   ///< waiting for the transport: bytes, room to write, an end
  decision, ///< north: the request is complete and waits for `decide()` (returned by every
            ///< `step()` until then)
  hello,    ///< south: the hello is complete; the stream waits for `start_relay()` (pairing)
  done,     ///< ended normally: the receive side ended and the send side was finished (or the
            ///< peer stopped it, as g3proxy does when it closes a task)
  failed,   ///< ended abnormally: `error()` says why; both sides were reset / stopped
};

/// "active", "decision", ...
constexpr const char* to_string(stream_status s) noexcept {
  switch (s) {
  case stream_status::active:
    return "active";
  case stream_status::decision:
    return "decision";
  case stream_status::hello:
    return "hello";
  case stream_status::done:
    return "done";
  case stream_status::failed:
    return "failed";
  }
  return "?";
}

/// @brief Drives one server-side detour stream: session, response, echo.
///
/// @tparam Stream models `duplex_stream`; the driver keeps a pointer to it (`attach`), which
///   must stay valid until the stream is detached or the driver destroyed.
/// @tparam Inspector models `inspector<task_request>`; each stream gets its own copy of the
///   prototype given to the constructor.
///
/// Call `step()` after every event on the stream. North: header and payload are read
/// (`decision`), `decide()` queues the answer, the answer is written, then "continue" echoes the
/// stream and bypass/block drop input until the peer's FIN. South: the hello is read
/// (`hello`), `start_relay()` (once the north stream is found) starts the echo. A stream's send
/// side is finished only after its receive side ended and everything was echoed; a stream that
/// ends empty is finished quietly. Resets: a peer's RESET_STREAM resets our send side with the
/// same code (`failed`, `stream_reset`); the peer's STOP_SENDING ends the echo normally (that
/// is how g3proxy closes a task); a library error resets and stops the stream with
/// `code_for(error)`.
///
/// Reusable: `attach()` starts over on a new stream, keeping the session's storage.
template <duplex_stream Stream, class Inspector = pass_through>
requires inspector<Inspector, task_request>
class server_stream {
public:
  explicit server_stream(const stream_options& options = {}, Inspector prototype = Inspector{})
      : options_(options), prototype_(std::move(prototype)), session_(options.session) {}

  server_stream(const server_stream&) = delete;
  server_stream& operator=(const server_stream&) = delete;

  /// Starts driving `stream` (a new one): forgets the previous stream, keeps storage.
  void attach(Stream& stream) {
    stream_ = &stream;
    session_.reset();
    relay_.reset();
    status_ = stream_status::active;
    error_ = errc{};
    task_ = nullptr;
  }
  /// Forgets the stream (the driver then does nothing until the next `attach`).
  void detach() noexcept {
    relay_.reset();
    stream_ = nullptr;
  }

  /// Makes all the progress the stream allows now. See `stream_status`.
  stream_status step() {
    if (stream_ == nullptr) return status_;
    while (status_ == stream_status::active || status_ == stream_status::decision ||
           status_ == stream_status::hello) {
      switch (session_.state()) {
      case session_state::header:
      case session_state::payload:
      case session_state::closing:
        if (!read_into_session()) return status_;
        break;
      case session_state::decision:
        if (const auto code = stream_->receive_reset()) return peer_reset(*code);
        if (stream_->at_eof() && stream_->readable().empty()) (void)session_.end_of_stream();
        status_ = stream_status::decision;
        return status_;
      case session_state::response:
        if (const auto code = stream_->receive_reset()) return peer_reset(*code);
        if (stream_->send_stopped()) return fail(errc::stream_reset); // gone before the answer
        if (!write_response()) return status_;
        break;
      case session_state::relay:
        if (!relay_) {
          if (session_.kind() == stream_kind::north) {
            start(&session_.task());
          } else {
            if (const auto code = stream_->receive_reset()) return peer_reset(*code);
            status_ = stream_status::hello; // waiting for start_relay()
            return status_;
          }
        }
        status_ = stream_status::active;
        return relay_step();
      case session_state::finished:
        if (!stream_->send_stopped()) stream_->close_write(); // mirror the peer's end
        status_ = stream_status::done;
        break;
      case session_state::failed:
        return fail(session_.error());
      }
    }
    return status_;
  }

  /// Answers the north request (`action::proceed` is g3proxy's "continue"). Returns false,
  /// changing nothing, unless `step()` returned `decision`. Call `step()` afterwards to write
  /// the answer.
  bool decide(action a) noexcept {
    if (status_ != stream_status::decision || !session_.decide(a)) return false;
    status_ = stream_status::active;
    return true;
  }

  /// South: starts the echo, the inspector seeing `task` (the north stream's request; it must
  /// stay valid until this stream is over). Returns false unless the status is `hello`. Call
  /// `step()` afterwards.
  bool start_relay(const task_request* task) {
    if (status_ != stream_status::hello) return false;
    start(task);
    status_ = stream_status::active;
    return true;
  }

  /// Ends the stream now with `e` (expired, timed out, partner failed): resets the send side
  /// and stops the receive side with `code_for(e)`. No effect once it ended.
  void abort(errc e) {
    if (stream_ == nullptr || status_ == stream_status::done || status_ == stream_status::failed)
      return;
    (void)fail(e);
  }

  stream_status status() const noexcept { return status_; }
  /// Why the stream failed (`errc{}` otherwise).
  errc error() const noexcept { return error_; }
  const stream_session& session() const noexcept { return session_; }
  std::optional<stream_kind> kind() const noexcept { return session_.kind(); }
  std::uint16_t match_id() const noexcept { return session_.match_id(); }
  /// The request of a north stream (from `decision` on); of a south stream, the paired north's.
  const task_request* task() const noexcept {
    return session_.kind() == stream_kind::north ? &session_.task() : task_;
  }
  /// The echo's state, once it started.
  std::optional<relay_state> relay_status() const noexcept {
    return relay_ ? std::optional<relay_state>(relay_->state()) : std::nullopt;
  }
  /// Bytes echoed (consumed from the receive side / accepted by the send side).
  std::uint64_t bytes_in() const noexcept { return relay_ ? relay_->bytes_in() : 0; }
  std::uint64_t bytes_out() const noexcept { return relay_ ? relay_->bytes_out() : 0; }
  std::size_t in_flight() const noexcept { return relay_ ? relay_->in_flight() : 0; }
  bool attached() const noexcept { return stream_ != nullptr; }
  /// The stream being driven (nullptr once detached): how a caller gets from a driver, or a
  /// `server_connection` id, back to its own stream object (a partner's, say).
  Stream* transport() const noexcept { return stream_; }
  const stream_options& options() const noexcept { return options_; }

private:
  using echo_type = relay<Stream, Stream, Inspector, task_request>;

  void start(const task_request* task) {
    task_ = task;
    relay_.emplace(*stream_, *stream_, *session_.kind(), options_.relay, prototype_, task);
  }

  // Feeds received bytes to the session; false when the driver must wait.
  bool read_into_session() {
    if (const auto code = stream_->receive_reset()) {
      // After bypass/block the task is settled: a reset instead of a FIN changes nothing.
      if (session_.state() == session_state::closing) {
        status_ = stream_status::done;
        return false;
      }
      (void)peer_reset(*code);
      return false;
    }
    const auto view = stream_->readable();
    if (!view.empty()) {
      // The session copies what it takes, so the credit goes back at once. Either it took
      // everything (more may be buffered behind a partial view) or its state moved on.
      const auto r = session_.feed(view);
      stream_->consume(r.consumed);
      return true;
    }
    if (stream_->at_eof()) {
      (void)session_.end_of_stream();
      return true;
    }
    return false;
  }

  bool write_response() {
    for (auto out = session_.pending_output(); !out.empty(); out = session_.pending_output()) {
      const std::size_t n = stream_->write_some(out);
      if (n == 0) return false;
      session_.output_written(n);
    }
    return true;
  }

  stream_status relay_step() {
    switch (relay_->step()) {
    case relay_state::running:
      status_ = stream_status::active;
      break;
    case relay_state::finished:
    case relay_state::stopped:
      status_ = stream_status::done;
      break;
    case relay_state::reset:
      mark_failed(errc::stream_reset);
      break;
    case relay_state::ended:
      mark_failed(errc::task_ended);
      break;
    case relay_state::aborted:
      break; // fail() already recorded why
    }
    return status_;
  }

  // The peer reset its send side before the relay: reset ours with the same code.
  stream_status peer_reset(app_code code) {
    session_.fail(errc::stream_reset);
    stream_->reset_write(code);
    mark_failed(errc::stream_reset);
    return status_;
  }

  stream_status fail(errc e) {
    const app_code code = options_.code_for(e);
    session_.fail(e);
    if (relay_ && !relay_->done()) {
      mark_failed(e); // before abort(): relay_step() must not overwrite it
      relay_->abort(code);
      return status_;
    }
    if (!stream_->receive_reset() && !(stream_->at_eof() && stream_->readable().empty()))
      stream_->stop_reading(code);
    stream_->reset_write(code);
    mark_failed(e);
    return status_;
  }

  void mark_failed(errc e) {
    status_ = stream_status::failed;
    error_ = e;
  }

  stream_options options_;
  Inspector prototype_;
  stream_session session_;
  std::optional<echo_type> relay_;
  Stream* stream_ = nullptr;
  const task_request* task_ = nullptr;
  stream_status status_ = stream_status::active;
  errc error_ = {};
};

} // namespace detour::io
