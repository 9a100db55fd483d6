// SPDX-License-Identifier: MIT
// cli/probe_task.hpp: one detour task as g3proxy's client runs it (PROTOCOL-NOTES "One task"
// and "Closing"): north header and payload, the 4-byte answer read under a timeout with its
// match id checked, the south hello only after "continue", both directions relayed and every
// echoed byte checked, and the close sequences g3proxy uses. Knows nothing of QUIC: it talks
// to its two streams through task_io, so tests can drive it by hand.
#pragma once

#include "probe_pattern.hpp"

#include <detour/address.hpp>
#include <detour/request.hpp>
#include <detour/response.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace detour::cli::probe {

/// Nanoseconds on the monotonic clock (the event loop's time base).
using nanoseconds = std::uint64_t;

/// The two streams of a task.
enum class side : std::uint8_t {
  north, ///< client -> server: header, payload, client bytes; server -> client: answer, echo
  south, ///< client -> server: hello, remote bytes; server -> client: echo
};
std::string_view to_string(side s) noexcept;

/// Who ends a relay first, which decides g3proxy's close sequence.
enum class ender : std::uint8_t {
  client, ///< FIN both sends, wait for north to end, STOP_SENDING(0) south
  remote, ///< FIN both sends, wait for south to end, STOP_SENDING(0) north
};

/// Why a task failed. The names (to_string) are stable: reports and --json use them.
enum class failure : std::uint8_t {
  none,
  connect,             ///< no connection could be made to carry the task
  stream_open_timeout, ///< the server granted no streams in time (g3proxy: 30 s)
  header_encode,       ///< the plan's header cannot be encoded (a bad plan)
  response_timeout,    ///< no 4-byte answer in time (g3proxy: 60 s request_timeout)
  response_truncated,  ///< the north stream ended before the 4-byte answer
  invalid_match_id,    ///< the answer's match id is not the task's (g3proxy: "invalid match id")
  unexpected_action,   ///< the answer's action is not the one expected
  stream_reset,        ///< the server reset a stream (RESET_STREAM)
  stop_sending,        ///< the server stopped reading a stream (STOP_SENDING) too early
  closed_early,        ///< the server ended a stream before we ended ours (g3proxy: "closed by
                       ///< detour service")
  data_mismatch,       ///< echoed bytes differ from those sent
  data_overrun,        ///< more bytes echoed than sent
  relay_timeout,       ///< the relay or the close made no progress in time
  connection_closed,   ///< the connection ended under the task
  deadline,            ///< the run's deadline passed first
};
std::string_view to_string(failure f) noexcept;

/// One turn of a scripted relay: `bytes` more bytes from one side.
struct relay_turn {
  side from = side::north;
  std::size_t bytes = 0;
};

/// Relay data given as it is (a protocol conversation) instead of the seeded pattern: each
/// side's bytes in order, and the turns that interleave them. A turn is sent once every earlier
/// turn has come back (or, without echo checks, has been sent).
struct relay_script {
  std::vector<std::uint8_t> client; ///< north: all client turns, concatenated
  std::vector<std::uint8_t> remote; ///< south: all remote turns, concatenated
  std::vector<relay_turn> turns;
};

/// What the task sends, and what it expects back.
struct task_plan {
  // North header fields, as g3proxy fills them (request.hpp north_request).
  detour::socket_address client{detour::ip_address::v4(192, 0, 2, 10), 50000};
  detour::socket_address proxy{detour::ip_address::v4(192, 0, 2, 1), 3128};
  std::string upstream = "example.com:443";
  std::optional<std::string> username;
  detour::uuid task_id{};
  std::string protocol = "http_2";
  /// The payload after the north header (its size is the E6 payload length).
  std::vector<std::uint8_t> payload;

  /// Relay bytes: client -> north and remote -> south (each echoed back by a pass-through).
  std::uint64_t client_bytes = 0;
  std::uint64_t remote_bytes = 0;
  /// SMTP and IMAP: the remote speaks first. South data goes out first and north stays
  /// silent until its echo is back, which a server waiting for north data never delivers.
  bool remote_speaks_first = false;
  ender ends_first = ender::client;
  /// The action expected (any value when unset). Pass-through servers answer continue.
  std::optional<detour::action> expect = detour::action::proceed;
  /// Check that each stream's bytes come back unchanged (a pass-through server).
  bool verify_echo = true;
  /// Seeds of the relay data (pattern) of each direction.
  std::uint64_t seed = 1;
  /// Scripted relay data instead of the pattern; client_bytes and remote_bytes must then be
  /// the script's sizes (and remote_speaks_first is left to the script's turns).
  std::shared_ptr<const relay_script> script;

  /// Bounds of every wait.
  nanoseconds response_timeout = 60'000'000'000; ///< g3proxy's request_timeout
  nanoseconds idle_timeout = 60'000'000'000;     ///< no relay or close progress for this long
  /// Size of each relay write (and so of the pieces a server sees at most).
  std::size_t write_size = 16 * 1024;
};

/// What became of a task.
struct task_result {
  failure error = failure::none;
  std::string detail;        ///< for a failure: what was expected and what came
  std::optional<side> where; ///< the stream concerned, when one is
  std::optional<detour::response> answer;
  std::uint16_t match_id = 0;
  nanoseconds started = 0;  ///< the north stream was opened
  nanoseconds answered = 0; ///< the 4-byte answer was complete (0: never)
  nanoseconds finished = 0;
  std::uint64_t north_echoed = 0; ///< relay bytes echoed and verified per stream
  std::uint64_t south_echoed = 0;
  // Where it ran (filled in by whoever carried the task; for logs and reports).
  std::uint64_t connection = 0;
  std::int64_t north_stream = -1;
  std::int64_t south_stream = -1;

  bool ok() const noexcept { return error == failure::none; }
  nanoseconds latency() const noexcept { return finished > started ? finished - started : 0; }
};

/// The task's view of its two streams. Operations on a stream after it ended are ignored.
class task_io {
public:
  /// Buffers up to |bytes|.size() bytes for sending; returns how many were taken. When fewer,
  /// g3_task::on_writable() follows once there is room.
  virtual std::size_t write(side s, std::span<const std::uint8_t> bytes) = 0;
  /// FIN our send side after what was written.
  virtual void finish(side s) = 0;
  /// STOP_SENDING on our receive side.
  virtual void stop_sending(side s, std::uint64_t code) = 0;

protected:
  ~task_io() = default;
};

/// One task. start() once, then feed it the streams' events with the current time; it calls
/// back into task_io and is done() once it passed or failed (result()).
class g3_task {
public:
  g3_task(task_plan plan, std::uint16_t match_id) noexcept;

  /// Writes the north header and payload. Fails at once (header_encode) for a plan whose
  /// header cannot be encoded.
  void start(task_io& io, nanoseconds now);

  void on_data(task_io& io, side s, std::span<const std::uint8_t> bytes, bool fin, nanoseconds now);
  void on_reset(task_io& io, side s, std::uint64_t code, nanoseconds now);
  /// The server stopped reading one of our send sides; |code| when known.
  void on_stop_sending(task_io& io, side s, std::optional<std::uint64_t> code, nanoseconds now);
  void on_writable(task_io& io, side s, nanoseconds now);
  /// Checks the deadlines; call at next_deadline() or later.
  void on_timer(task_io& io, nanoseconds now);
  /// Fails the task from outside (connection lost, run deadline); streams are left alone.
  void fail(failure f, std::string detail, nanoseconds now);

  /// When on_timer() must run next (0 once done).
  nanoseconds next_deadline() const noexcept;
  bool done() const noexcept { return phase_ == phase::done; }
  const task_result& result() const noexcept { return result_; }
  const task_plan& plan() const noexcept { return plan_; }
  std::uint16_t match_id() const noexcept { return result_.match_id; }

  /// The north header this task sends (g3proxy's exact bytes), for tests and logs.
  static std::optional<std::vector<std::uint8_t>> north_header(const task_plan& plan,
                                                               std::uint16_t match_id);
  /// The south hello this task sends after "continue".
  static std::optional<std::vector<std::uint8_t>> south_hello(const task_plan& plan,
                                                              std::uint16_t match_id);

private:
  enum class phase : std::uint8_t { idle, answer, relay, closing, done };

  struct direction {
    std::vector<std::uint8_t> preamble; // header (+ payload) still to write
    std::size_t preamble_sent = 0;
    std::vector<std::uint8_t> chunk; // relay bytes generated, from offset sent - chunk_taken
    std::size_t chunk_taken = 0;     // of chunk, accepted by the stream
    std::uint64_t sent = 0;          // relay bytes written
    std::uint64_t echoed = 0;        // relay bytes received back and verified
    bool fin_sent = false;
    bool fin_received = false;
    bool stopped = false; // we sent STOP_SENDING
  };

  direction& dir(side s) noexcept { return s == side::north ? north_ : south_; }
  std::uint64_t target(side s) const noexcept {
    return s == side::north ? plan_.client_bytes : plan_.remote_bytes;
  }
  const pattern& data_of(side s) const noexcept {
    return s == side::north ? north_data_ : south_data_;
  }
  // The relay bytes of a side: the script's, else the pattern's.
  const std::vector<std::uint8_t>* script_of(side s) const noexcept {
    if (!plan_.script) return nullptr;
    return s == side::north ? &plan_.script->client : &plan_.script->remote;
  }
  void fill(side s, std::uint64_t offset, std::span<std::uint8_t> out) const noexcept;
  std::uint8_t data_at(side s, std::uint64_t offset) const noexcept;
  std::size_t mismatch(side s, std::uint64_t offset, std::span<const std::uint8_t> bytes) const;
  // How far a side may send now: everything, or with a script the turns whose predecessors
  // are all back.
  std::uint64_t allowed(side s) const noexcept;

  void on_answer(task_io& io, nanoseconds now);
  void take_echo(task_io& io, side s, std::span<const std::uint8_t> bytes, nanoseconds now);
  void pump(task_io& io, nanoseconds now);
  bool pump_side(task_io& io, side s);
  void begin_close(task_io& io, nanoseconds now);
  void maybe_finish_close(task_io& io, nanoseconds now);
  void end_like_g3(task_io& io);
  void fail_and_end(task_io& io, failure f, std::optional<side> where, std::string detail,
                    nanoseconds now);
  void succeed(nanoseconds now);

  task_plan plan_;
  pattern north_data_;
  pattern south_data_;
  phase phase_ = phase::idle;
  task_result result_;
  direction north_;
  direction south_;
  std::uint8_t answer_[detour::response_size]{};
  std::size_t answer_size_ = 0;
  nanoseconds last_progress_ = 0;
};

} // namespace detour::cli::probe
