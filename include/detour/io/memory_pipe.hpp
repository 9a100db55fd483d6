// SPDX-License-Identifier: MIT
// detour/io/memory_pipe.hpp: an in-memory duplex pipe whose two ends model detour::duplex_stream,
// for tests of drivers and inspection hooks without any transport. Each direction is a bounded
// buffer (the receiver's flow-control window); chunking, back-pressure, and FIN, reset or
// STOP_SENDING at the Nth operation can be injected, deterministically (seeded).
#pragma once

#include <detour/concepts.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <vector>

namespace detour::io {

/// How one direction of a `memory_pipe` behaves.
struct pipe_options {
  /// Bytes the direction holds before `write_some` accepts nothing: the receiver's flow-control
  /// window. Memory is reserved once, at construction. Must be at least 1.
  std::size_t capacity = 64 * 1024;
  /// Most bytes one `write_some` call accepts: small values chop writes into pieces.
  std::size_t max_write = std::numeric_limits<std::size_t>::max();
  /// Most bytes `readable()` shows at once: small values model data arriving in fragments.
  std::size_t max_readable = std::numeric_limits<std::size_t>::max();
  /// Nonzero: each write accepts, and each view shows, a pseudo-random size between 1 and the
  /// limits above, drawn from a generator seeded with this value (reproducible).
  std::uint64_t chunk_seed = 0;
};

/// A failure that a `pipe_end` injects as if its peer had done it.
enum class pipe_fault : std::uint8_t {
  none,
  fin,   ///< the peer finishes its send side: this end's receive side ends (at_eof)
  reset, ///< the peer abandons the stream: RESET_STREAM toward this end, STOP_SENDING for our sends
  stop,  ///< the peer asks us to stop sending (STOP_SENDING) and keeps sending itself
};

namespace detail {

/// One direction: a bounded linear buffer plus the end-of-stream and reset flags of both sides.
struct pipe_channel {
  explicit pipe_channel(const pipe_options& o)
      : opts(o), buf(std::max<std::size_t>(o.capacity, 1)) {
    rng = o.chunk_seed;
    roll_view_limit();
  }

  pipe_options opts;
  std::vector<std::uint8_t> buf;
  std::size_t head = 0;          // first unread byte
  std::size_t tail = 0;          // one past the last written byte
  bool fin = false;              // the writer finished (itself or by an injected fault)
  bool writer_gone = false;      // the writer was finished or reset by an injected fault
  std::optional<app_code> reset; // the writer abandoned the direction
  std::optional<app_code> stop;  // the reader abandoned the direction
  std::size_t view_limit = 0;    // most bytes readable() shows until the next consume
  std::uint64_t rng = 0;

  void restart() noexcept {
    head = tail = 0;
    fin = writer_gone = false;
    reset.reset();
    stop.reset();
    rng = opts.chunk_seed;
    roll_view_limit();
  }

  std::size_t size() const noexcept { return tail - head; }
  std::size_t room() const noexcept { return buf.size() - size(); }

  std::uint64_t next_random() noexcept { // splitmix64: small, seedable, good enough for chunking
    rng += 0x9E3779B97F4A7C15ull;
    std::uint64_t z = rng;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  std::size_t random_up_to(std::size_t limit) noexcept {
    if (opts.chunk_seed == 0 || limit <= 1) return limit;
    const std::size_t bound = std::min<std::size_t>(limit, buf.size());
    return 1 + static_cast<std::size_t>(next_random() % bound);
  }
  void roll_view_limit() noexcept { view_limit = random_up_to(opts.max_readable); }
  void drop_all() noexcept { head = tail = 0; }
};

} // namespace detail

/// One end of a `memory_pipe`. Models `detour::duplex_stream`.
///
/// Besides the stream members it offers test controls (`inject`, `pause_writes`) and observers
/// (operation count, byte totals, contract violations). A contract violation by the code under
/// test (writing after `close_write`, consuming more than `readable()` shows) is never undefined
/// behaviour here: it is counted in `misuse_count()` and otherwise ignored.
class pipe_end {
public:
  pipe_end(const pipe_end&) = delete;
  pipe_end& operator=(const pipe_end&) = delete;

  // ---- readable_stream ----

  /// Bytes written by the peer and not yet consumed (at most the configured view size).
  /// Counts as one operation.
  std::span<const std::uint8_t> readable() noexcept {
    tick();
    if (in_->reset || in_->stop) return {};
    const std::size_t n = std::min(in_->size(), in_->view_limit);
    return {in_->buf.data() + in_->head, n};
  }
  /// Discards `n` shown bytes; this is what opens the peer's window again. One operation.
  void consume(std::size_t n) noexcept {
    tick();
    if (in_->reset || in_->stop) return;
    if (n > std::min(in_->size(), in_->view_limit)) {
      misuse("consume() beyond readable()");
      n = std::min(n, in_->size());
    }
    in_->head += n;
    consumed_ += n;
    if (in_->head == in_->tail) in_->drop_all();
    if (n != 0) in_->roll_view_limit();
  }
  /// True once the peer finished writing (everything it wrote is in the buffer already).
  bool at_eof() const noexcept { return in_->fin; }
  std::optional<app_code> receive_reset() const noexcept { return in_->reset; }
  /// STOP_SENDING: the peer's writes are refused from now on; buffered bytes are dropped.
  void stop_reading(app_code code) noexcept {
    tick();
    if (!in_->stop) in_->stop = code;
    in_->drop_all();
  }

  // ---- writable_stream ----

  /// Accepts what fits in the direction's free space (and the configured write size).
  /// One operation.
  std::size_t write_some(std::span<const std::uint8_t> bytes) noexcept {
    tick();
    if (out_->writer_gone) return 0; // an injected fault ended this direction for us
    if (closed_ || out_->reset) {
      misuse("write_some() after close_write() or reset_write()");
      return 0;
    }
    if (paused_ || out_->stop || bytes.empty()) return 0;
    std::size_t n = std::min({bytes.size(), out_->room(), out_->opts.max_write});
    if (n == 0) return 0;
    n = out_->random_up_to(n);
    if (out_->tail + n > out_->buf.size()) { // compact: move unread bytes to the front
      std::memmove(out_->buf.data(), out_->buf.data() + out_->head, out_->size());
      out_->tail -= out_->head;
      out_->head = 0;
    }
    std::memcpy(out_->buf.data() + out_->tail, bytes.data(), n);
    out_->tail += n;
    written_ += n;
    return n;
  }
  /// FIN after everything written. One operation.
  void close_write() noexcept {
    tick();
    if (out_->reset && !out_->writer_gone) misuse("close_write() after reset_write()");
    closed_ = true;
    out_->fin = true;
  }
  std::optional<app_code> send_stopped() const noexcept { return out_->stop; }
  /// RESET_STREAM: the peer sees `receive_reset()`, unread bytes are dropped. One operation.
  void reset_write(app_code code) noexcept {
    tick();
    if (!out_->reset) out_->reset = code;
    out_->drop_all();
  }

  // ---- test controls ----

  /// Makes the peer do `fault` (with `code` for resets) right before this end's operation number
  /// `at_operation` (0 is the first operation). Operations are readable(), consume(),
  /// stop_reading(), write_some(), close_write() and reset_write() calls.
  void inject(std::size_t at_operation, pipe_fault fault, app_code code = 0) noexcept {
    fault_at_ = at_operation;
    fault_ = fault;
    fault_code_ = code;
  }
  /// While paused, write_some() accepts nothing, as if the peer's window stayed shut.
  void pause_writes(bool paused) noexcept { paused_ = paused; }

  // ---- observers ----

  std::size_t operations() const noexcept { return ops_; }
  std::size_t consumed_total() const noexcept { return consumed_; }
  std::size_t written_total() const noexcept { return written_; }
  /// Bytes waiting for this end to read (all of them, not only the shown part).
  std::size_t buffered_in() const noexcept { return in_->size(); }
  /// Bytes this end wrote that the peer has not consumed yet.
  std::size_t buffered_out() const noexcept { return out_->size(); }
  bool write_closed() const noexcept { return closed_; }
  /// The code of this end's own RESET_STREAM, if it sent one.
  std::optional<app_code> write_reset() const noexcept {
    return out_->writer_gone ? std::nullopt : out_->reset;
  }
  /// The code of this end's own STOP_SENDING, if it sent one.
  std::optional<app_code> read_stopped() const noexcept { return in_->stop; }
  bool fault_fired() const noexcept { return fired_; }
  std::size_t misuse_count() const noexcept { return misuse_count_; }
  /// What the last contract violation was, or nullptr.
  const char* last_misuse() const noexcept { return last_misuse_; }

private:
  friend class memory_pipe;
  pipe_end(detail::pipe_channel& in, detail::pipe_channel& out) noexcept : in_(&in), out_(&out) {}

  void restart() noexcept {
    ops_ = consumed_ = written_ = 0;
    fault_at_ = 0;
    fault_ = pipe_fault::none;
    fault_code_ = 0;
    fired_ = closed_ = paused_ = false;
    misuse_count_ = 0;
    last_misuse_ = nullptr;
  }

  void tick() noexcept {
    if (fault_ != pipe_fault::none && !fired_ && ops_ == fault_at_) fire();
    ++ops_;
  }
  void fire() noexcept {
    fired_ = true;
    switch (fault_) {
    case pipe_fault::fin:
      in_->fin = true;
      in_->writer_gone = true;
      break;
    case pipe_fault::reset:
      if (!in_->reset) in_->reset = fault_code_;
      in_->writer_gone = true;
      in_->drop_all();
      if (!out_->stop) out_->stop = fault_code_;
      break;
    case pipe_fault::stop:
      if (!out_->stop) out_->stop = fault_code_;
      break;
    case pipe_fault::none:
      break;
    }
  }
  void misuse(const char* what) noexcept {
    ++misuse_count_;
    last_misuse_ = what;
  }

  detail::pipe_channel* in_;
  detail::pipe_channel* out_;
  std::size_t ops_ = 0;
  std::size_t consumed_ = 0;
  std::size_t written_ = 0;
  std::size_t fault_at_ = 0;
  pipe_fault fault_ = pipe_fault::none;
  app_code fault_code_ = 0;
  bool fired_ = false;
  bool closed_ = false;
  bool paused_ = false;
  std::size_t misuse_count_ = 0;
  const char* last_misuse_ = nullptr;
};

static_assert(duplex_stream<pipe_end>);

/// Two connected `pipe_end`s: what `a()` writes, `b()` reads, and the other way round.
/// Not movable (the ends refer to the pipe's buffers); allocates only in the constructor.
class memory_pipe {
public:
  explicit memory_pipe(const pipe_options& a_to_b = {}, const pipe_options& b_to_a = {})
      : ab_(a_to_b), ba_(b_to_a), a_(ba_, ab_), b_(ab_, ba_) {}
  memory_pipe(const memory_pipe&) = delete;
  memory_pipe& operator=(const memory_pipe&) = delete;

  pipe_end& a() noexcept { return a_; }
  pipe_end& b() noexcept { return b_; }

  /// Back to the state right after construction (empty, open, no faults, counters at zero),
  /// keeping the buffers: a pipe can serve many tests or benchmark rounds without allocating.
  void reset() noexcept {
    ab_.restart();
    ba_.restart();
    a_.restart();
    b_.restart();
  }

private:
  detail::pipe_channel ab_;
  detail::pipe_channel ba_;
  pipe_end a_;
  pipe_end b_;
};

} // namespace detour::io
