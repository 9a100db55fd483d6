// SPDX-License-Identifier: MIT
// detour/io/server_connection.hpp: the server side of one connection's detour tasks over any
// duplex_stream: a driver per stream, the pairing of north and south by match id, and the
// deadlines (header timeout, pairing timeout) driven by the caller's `now` (g3proxy stream
// detour "One task" and "Pairing"). This is what a QUIC server runs per connection.
#pragma once

#include <detour/concepts.hpp>
#include <detour/error.hpp>
#include <detour/io/inspect.hpp>
#include <detour/io/server_stream.hpp>
#include <detour/pairing.hpp>
#include <detour/request.hpp>
#include <detour/response.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

namespace detour::io {

/// Settings of a `server_connection`.
template <class Duration>
struct server_options {
  /// Per-stream settings: limits, relay window, error codes.
  stream_options stream{};
  /// Most streams tracked at once; `open()` refuses more. A QUIC server grants the client at
  /// most this many concurrent bidirectional streams (MAX_STREAMS), so the refusal never
  /// happens with a well-behaved peer. g3proxy keeps two streams per task and up to 16 tasks
  /// per connection; 128 leaves room for overlap. Slots are created as needed and reused.
  std::size_t max_streams = 128;
  /// Time a stream may take to deliver its header and payload; empty: no limit. A real client
  /// writes them at once; a slow or silent sender holds a slot and memory until this passes.
  std::optional<Duration> header_timeout{};
  /// Whether a south hello whose match id has no task on this connection waits for its north
  /// request (true), or is refused at once with `errc::unknown_match_id` (false, the default).
  /// g3proxy writes the south hello only after it has read the answer to its north request,
  /// and `decide()` puts the north stream in the pairing table before the answer is written, so
  /// from g3proxy such a south stream can never be paired: waiting only ties up a stream slot
  /// and a table entry for the pairing timeout, which a hostile client can repeat up to
  /// `max_streams`. Set it for a client that may send the south hello first (the pairing table
  /// pairs both orders; the south then fails with `pairing_expired` if no north comes in time).
  bool accept_south_first = false;
};

/// @brief One connection's detour streams: drivers, pairing, deadlines.
///
/// @tparam Stream models `duplex_stream` (the caller owns the stream objects).
/// @tparam TimePoint the caller's time (see `pairing_time_point`); the class reads no clock.
/// @tparam Inspector the relay's inspection hook; every stream gets a copy of the prototype.
///
/// Use: `open()` each stream the peer opens (you get a small id), `step()` it after every
/// transport event on it, `decide()` when `step()` returns `stream_status::decision` (at once or
/// later: nothing else waits), `release()` it when the transport is done with it, and call
/// `expire()` at `next_expiry()`. Streams are paired by match id within this object only (one
/// per QUIC connection); a south hello whose match id has no task here is refused
/// (`unknown_match_id`) unless `server_options::accept_south_first` is set. When a stream of a
/// paired task fails, its partner is aborted (`partner_aborted`); a normal end leaves the
/// partner alone.
///
/// Memory: up to `max_streams` slots, each created on first use and kept (the session's storage
/// grows to the largest request seen); the pairing table's storage is allocated by the first
/// task answered "continue" (or the first south hello). A new object holds no storage at all,
/// which matters to a server holding thousands of idle connections; `trim()` returns to that
/// state when no stream is open. Between `trim()` calls, nothing allocates after warm-up.
template <duplex_stream Stream, pairing_time_point TimePoint = std::uint64_t,
          class Inspector = pass_through>
requires inspector<Inspector, task_request>
class server_connection {
public:
  using time_point = TimePoint;
  using duration = pairing_duration_t<TimePoint>;
  using stream_id = std::uint32_t;
  using driver_type = server_stream<Stream, Inspector>;

  /// @param pair_timeout how long a half waits for its partner (see `pairing_table`).
  server_connection(duration pair_timeout, const server_options<duration>& options = {},
                    Inspector prototype = Inspector{})
      : options_(options), prototype_(std::move(prototype)),
        table_(options.max_streams, pair_timeout) {}

  server_connection(const server_connection&) = delete;
  server_connection& operator=(const server_connection&) = delete;

  /// Starts tracking a stream the peer opened. Returns its id, or nothing when `max_streams`
  /// are open (reset the stream then, e.g. with `app_code_for(errc::pairing_full)`).
  std::optional<stream_id> open(Stream& stream, TimePoint now) {
    note_time(now);
    stream_id id;
    if (!free_.empty()) {
      id = free_.back();
      free_.pop_back();
    } else if (slots_.size() < options_.max_streams) {
      id = static_cast<stream_id>(slots_.size());
      slots_.push_back(std::make_unique<slot>(options_.stream, prototype_));
    } else {
      return std::nullopt;
    }
    slot& s = *slots_[id];
    s.clear();
    s.in_use = true;
    s.driver.attach(stream);
    if (options_.header_timeout) {
      s.deadline = latest_ + *options_.header_timeout;
      link_back(id);
    }
    ++open_;
    return id;
  }

  /// Drives stream `id` as far as it goes; pairs it when its header says which task it
  /// belongs to. Returns its status (see `stream_status`).
  stream_status step(stream_id id, TimePoint now) {
    note_time(now);
    slot& s = *slots_[id];
    if (!s.in_use || s.released) return s.driver.status();
    s.driver.step();
    return settle(id);
  }

  /// Answers the north stream `id` (after `step()` returned `decision`). For "continue" the
  /// stream joins the pairing table first (a duplicate match id fails it instead of answering);
  /// if its south stream came first (`server_options::accept_south_first`), both start
  /// relaying. Returns the stream's status.
  stream_status decide(stream_id id, action a, TimePoint now) {
    note_time(now);
    slot& s = *slots_[id];
    if (!s.in_use || s.released || s.driver.status() != stream_status::decision)
      return s.driver.status();
    std::optional<stream_id> south;
    if (a == action::proceed) {
      const auto r = table_.add(stream_kind::north, s.driver.match_id(), id, now);
      if (r.status == pairing_status::rejected) {
        s.driver.abort(r.error);
        return settle(id);
      }
      s.in_table = true;
      if (r.partner) south = *r.partner;
    }
    (void)s.driver.decide(a);
    s.driver.step();
    if (south) {
      link(id, *south);
      slot& other = *slots_[*south];
      (void)other.driver.start_relay(s.driver.task());
      other.driver.step();
      (void)settle(*south);
    }
    return settle(id);
  }

  /// The transport is done with stream `id` (closed, or dropped). A stream released before it
  /// ended counts as reset (its partner is aborted). The id is then reused for a later stream:
  /// forget it (calls with a released id act on whichever stream has it now).
  void release(stream_id id) {
    slot& s = *slots_[id];
    if (!s.in_use || s.released) return;
    if (!s.final_seen) {
      s.driver.abort(errc::stream_reset);
      on_final(id);
    }
    s.driver.detach();
    s.released = true;
    maybe_free(id);
  }

  /// Frees every slot and the pairing table's storage when no stream is open (every stream
  /// was released and no ended north stream waits for its south): the connection then costs
  /// what a new one costs, and its next streams allocate again. Call it when a connection goes
  /// idle. Returns whether it freed (false, and nothing changes, while a stream is open).
  bool trim() noexcept {
    if (open_ != 0) return false;
    std::vector<std::unique_ptr<slot>>().swap(slots_);
    std::vector<stream_id>().swap(free_);
    head_ = tail_ = none;
    return table_.release_storage();
  }

  /// Bytes held for slots and the pairing table (not the slots' own buffers): 0 for a new or
  /// trimmed connection.
  std::size_t storage_bytes() const noexcept {
    return slots_.capacity() * sizeof(slots_[0]) + slots_.size() * sizeof(slot) +
           free_.capacity() * sizeof(stream_id) + table_.storage_bytes();
  }

  /// When `expire()` should run next: the earliest header or pairing deadline; empty if none.
  std::optional<TimePoint> next_expiry() const {
    auto e = table_.next_expiry();
    if (head_ != none && (!e || slots_[head_]->deadline < *e)) e = slots_[head_]->deadline;
    return e;
  }

  /// Fails the streams whose deadline passed: `header_timeout` for a header or payload not
  /// complete in time, `pairing_expired` for a half whose partner never came. Their status
  /// becomes `failed` (they were reset); `release()` them when the transport is done.
  void expire(TimePoint now) {
    note_time(now);
    while (const auto e = table_.pop_expired(now)) {
      slot& s = *slots_[e->handle];
      s.in_table = false;
      s.driver.abort(errc::pairing_expired); // no effect on a north stream that already ended
      on_final(e->handle);
      if (s.pinned) {
        s.pinned = false;
        --s.refs;
        maybe_free(e->handle);
      }
    }
    while (head_ != none && !(latest_ < slots_[head_]->deadline)) {
      const stream_id id = head_;
      unlink(id);
      slots_[id]->driver.abort(errc::header_timeout);
      on_final(id);
    }
  }

  /// The driver of stream `id` (its session, request, counters).
  const driver_type& stream(stream_id id) const { return slots_[id]->driver; }
  stream_status status(stream_id id) const { return slots_[id]->driver.status(); }
  /// The partner of stream `id` once paired.
  std::optional<stream_id> partner(stream_id id) const { return slots_[id]->partner; }
  /// Streams opened and not yet released.
  std::size_t open_streams() const noexcept { return open_; }
  const pairing_table<stream_id, TimePoint>& pairing() const noexcept { return table_; }

private:
  static constexpr stream_id none = 0xFFFFFFFFu;

  struct slot {
    slot(const stream_options& o, const Inspector& p) : driver(o, p) {}
    void clear() {
      in_use = released = final_seen = in_table = duplicate_checked = pinned = false;
      refs = 0;
      partner.reset();
      task_owner.reset();
      prev = next = none;
      linked = false;
    }
    driver_type driver;
    bool in_use = false;
    bool released = false;   // the transport let go; freed once no south uses our request
    bool final_seen = false; // the end (done/failed) was handled
    bool in_table = false;
    bool duplicate_checked = false;
    bool pinned = false;                 // ended north kept in the table for its south
    std::uint32_t refs = 0;              // south streams whose inspector sees our request
    std::optional<stream_id> partner;    // the other stream of the task, once paired
    std::optional<stream_id> task_owner; // south: the north stream whose request we use
    TimePoint deadline{};                // header deadline while linked
    stream_id prev = none, next = none;  // header deadline list
    bool linked = false;
  };

  void note_time(const TimePoint& now) {
    if (!seen_time_ || latest_ < now) latest_ = now;
    seen_time_ = true;
  }

  // Acts on what the driver reports until nothing more is to be done here.
  stream_status settle(stream_id id) {
    slot& s = *slots_[id];
    for (;;) {
      const auto state = s.driver.session().state();
      if (s.linked && state != session_state::header && state != session_state::payload)
        unlink(id); // the header is complete: no header deadline any more
      switch (s.driver.status()) {
      case stream_status::active:
        return stream_status::active;
      case stream_status::decision:
        if (!s.duplicate_checked) {
          // Refuse a match id that is already taken before anyone answers it.
          s.duplicate_checked = true;
          const auto e = table_.find(s.driver.match_id());
          if (e && (e->north || e->paired)) {
            s.driver.abort(errc::duplicate_match_id);
            continue;
          }
        }
        return stream_status::decision;
      case stream_status::hello: {
        if (s.in_table) return stream_status::hello; // waiting for the north stream
        if (!options_.accept_south_first && !table_.find(s.driver.match_id())) {
          // No north request with this match id was answered "continue" here: g3proxy cannot
          // have sent this hello (it writes it after reading the answer), so it never pairs.
          s.driver.abort(errc::unknown_match_id);
          continue;
        }
        const auto r = table_.add(stream_kind::south, s.driver.match_id(), id, latest_);
        if (r.status == pairing_status::rejected) {
          s.driver.abort(r.error);
          continue;
        }
        s.in_table = true;
        if (!r.partner) return stream_status::hello;
        link(*r.partner, id);
        unpin(*r.partner);
        (void)s.driver.start_relay(slots_[*r.partner]->driver.task());
        s.driver.step();
        continue;
      }
      case stream_status::done:
      case stream_status::failed:
        on_final(id);
        return s.driver.status();
      }
    }
  }

  void link(stream_id north, stream_id south) {
    slots_[north]->partner = south;
    slots_[south]->partner = north;
    slots_[south]->task_owner = north;
    ++slots_[north]->refs;
  }

  // A stream ended: leave the table, tell a paired partner if it failed, drop references.
  void on_final(stream_id id) {
    slot& s = *slots_[id];
    if (s.final_seen) return;
    s.final_seen = true;
    if (s.linked) unlink(id);
    if (s.in_table) {
      if (s.driver.status() == stream_status::done && s.driver.kind() == stream_kind::north &&
          !s.partner) {
        // A north stream can end normally before the server sees its south hello (different
        // streams, no ordering between them): the task stays in the table for the south, and
        // the slot stays alive for its inspector, until the south comes or the entry expires.
        s.pinned = true;
        ++s.refs;
      } else {
        (void)table_.remove(*s.driver.kind(), s.driver.match_id());
        s.in_table = false;
      }
    }
    if (s.driver.status() == stream_status::failed && s.partner) {
      slot& p = *slots_[*s.partner];
      if (p.in_use && !p.final_seen) {
        p.driver.abort(errc::partner_aborted);
        on_final(*s.partner);
      }
    }
    if (s.task_owner) {
      const stream_id owner = *s.task_owner;
      s.task_owner.reset();
      --slots_[owner]->refs;
      maybe_free(owner);
    }
  }

  // A pinned north stream (ended before its south came) leaves the table.
  void unpin(stream_id id) {
    slot& s = *slots_[id];
    if (!s.pinned) return;
    s.pinned = false;
    if (s.in_table) (void)table_.remove(*s.driver.kind(), s.driver.match_id());
    s.in_table = false;
    --s.refs;
    maybe_free(id);
  }

  void maybe_free(stream_id id) {
    slot& s = *slots_[id];
    if (!s.in_use || !s.released || s.refs != 0) return;
    s.in_use = false;
    free_.push_back(id);
    --open_;
  }

  void link_back(stream_id id) {
    slot& s = *slots_[id];
    s.prev = tail_;
    s.next = none;
    s.linked = true;
    if (tail_ == none)
      head_ = id;
    else
      slots_[tail_]->next = id;
    tail_ = id;
  }
  void unlink(stream_id id) {
    slot& s = *slots_[id];
    if (!s.linked) return;
    if (s.prev == none)
      head_ = s.next;
    else
      slots_[s.prev]->next = s.next;
    if (s.next == none)
      tail_ = s.prev;
    else
      slots_[s.next]->prev = s.prev;
    s.prev = s.next = none;
    s.linked = false;
  }

  server_options<duration> options_;
  Inspector prototype_;
  pairing_table<stream_id, TimePoint> table_;
  std::vector<std::unique_ptr<slot>> slots_;
  std::vector<stream_id> free_;
  std::size_t open_ = 0;
  stream_id head_ = none;
  stream_id tail_ = none;
  TimePoint latest_{};
  bool seen_time_ = false;
};

} // namespace detour::io
