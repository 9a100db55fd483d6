// SPDX-License-Identifier: MIT
// detour/pairing.hpp: the per-connection table that pairs a task's north and south streams by
// match id (g3proxy stream detour: the k-th task on a QUIC connection has match id k & 0xFFFF,
// unique only within that connection). Fixed capacity, O(1) operations, no clock: the caller
// passes `now` and asks `next_expiry()` when to come back.
#pragma once

#include <detour/error.hpp>
#include <detour/request.hpp>

#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

namespace detour {

/// The other half of the same task (`stream_kind` comes from request.hpp: north carries the
/// client's bytes and opens with the north request, south the remote's, opening with the hello).
constexpr stream_kind partner_of(stream_kind s) noexcept {
  return s == stream_kind::north ? stream_kind::south : stream_kind::north;
}

/// @brief A time type the caller chooses: `std::chrono::steady_clock::time_point`, a plain
/// integer tick count, ... Points must be totally ordered; `a - b` gives a duration and
/// `a + duration` a point again. The table never reads a clock.
template <class T>
concept pairing_time_point = std::totally_ordered<T> && std::copyable<T> && requires(T a, T b) {
  a - b;
  { a + (a - b) } -> std::convertible_to<T>;
};

/// The duration type of a `pairing_time_point` (`a - b`).
template <pairing_time_point TimePoint>
using pairing_duration_t = decltype(std::declval<TimePoint>() - std::declval<TimePoint>());

/// Capacity a server should choose when it has no better figure: four times g3proxy's default
/// `connection_reuse_limit` of 16 tasks per connection, so tasks of a connection that overlap
/// (or a client configured with a higher reuse limit) still fit. Each entry costs a few dozen
/// bytes, reserved once.
inline constexpr std::size_t default_pairing_capacity = 64;

/// Largest useful capacity: there are 65536 distinct match ids.
inline constexpr std::size_t max_pairing_capacity = 65536;

/// What happened to a stream offered to the table.
enum class pairing_status : std::uint8_t {
  waiting,  ///< parked: its partner has not arrived yet (it expires at a deadline)
  paired,   ///< its partner was waiting: the result carries the partner's handle
  rejected, ///< refused (`duplicate_match_id` or `pairing_full`): the table is unchanged
};

/// The answer of `pairing_table::add`.
template <class Handle>
struct [[nodiscard]] pairing_result {
  pairing_status status = pairing_status::rejected;
  /// The partner's handle when `paired`.
  std::optional<Handle> partner;
  /// Why the stream was rejected; `errc{}` otherwise.
  errc error = {};
};

/// The answer of `pairing_table::remove`.
template <class Handle>
struct [[nodiscard]] removal {
  /// False when no such stream was in the table (the call changed nothing).
  bool found = false;
  /// The partner that is still in the table and should be told (its task lost a half); empty
  /// when the stream was waiting alone or its partner is already gone.
  std::optional<Handle> partner;
};

/// A waiting stream whose partner did not come in time (`errc::pairing_expired`).
template <class Handle>
struct expired_stream {
  std::uint16_t match_id = 0;
  stream_kind side = stream_kind::north;
  Handle handle;
};

/// What the table knows about one match id.
struct pairing_entry_state {
  bool north = false;  ///< the north stream is in the table
  bool south = false;  ///< the south stream is in the table
  bool paired = false; ///< both halves met (a half may have left since)
};

/// @brief Pairs north and south streams of the tasks of ONE connection by match id.
///
/// @tparam Handle what the caller uses to find a stream again (a stream id, a pointer, an
///   index); copied in and out of the table. Must be copyable.
/// @tparam TimePoint the caller's notion of time (see `pairing_time_point`); default: an
///   integer tick count in whatever unit the caller likes.
///
/// Lifecycle of a match id: the first half to arrive is parked (`waiting`, with deadline
/// `now + timeout`); the second half pairs with it (the deadline no longer applies). Each half
/// is removed when its stream ends, normally or not; the entry disappears with the last half.
/// While a task is in the table its match id is taken: any further stream with that id on the
/// side already seen (or on either side once the task paired) is rejected with
/// `duplicate_match_id`, and the streams already there stay intact. The normal order is north
/// first: add the north stream once the server answered "continue" (after bypass or block no
/// south stream comes; an empty south stream finished at once carries no match id and never
/// enters the table). A south stream first is tolerated.
///
/// Costs: the storage (capacity entries plus an index of twice that many 4-byte slots, about
/// 48 bytes per entry with 4-byte handles) is allocated whole by the first `add()` that needs
/// an entry, or by `reserve()`, and kept until `release_storage()` while the table is empty. A
/// server that holds many idle connections (g3proxy keeps a pool of them) pays nothing for a
/// table no task uses. Nothing else allocates. Lookups hash the match id into the index with
/// linear probing: O(1) expected, never more than `capacity` probes.
///
/// Time: deadlines are `now + timeout` with one timeout for the table, so they expire in the
/// order they were set. A `now` smaller than one seen before is treated as that earlier value,
/// so deadlines never go backwards and `next_expiry()` is non-decreasing.
template <class Handle, pairing_time_point TimePoint = std::uint64_t>
requires std::copyable<Handle>
class pairing_table {
public:
  using handle_type = Handle;
  using time_point = TimePoint;
  using duration = pairing_duration_t<TimePoint>;

  /// @param capacity most match ids in the table at once (clamped to 1..65536); a stream that
  ///   would need one more is rejected with `pairing_full`.
  /// @param timeout how long a half waits for its partner before `pop_expired` returns it. A
  ///   south stream follows "continue" within a round trip; g3proxy itself gives up opening a
  ///   stream after 30 s (`stream_open_timeout`), so a few seconds to 30 s is sensible.
  ///   No storage is allocated yet (see `reserve()`).
  pairing_table(std::size_t capacity, duration timeout)
      : timeout_(timeout), capacity_(clamp_capacity(capacity)) {}

  /// Allocates the storage now (if it is not there yet), so that later calls never allocate.
  /// Throws `std::bad_alloc` like any allocation; `add()` calls it for its first entry.
  void reserve() {
    if (!entries_.empty()) return;
    entries_.resize(capacity_);
    slots_.assign(std::bit_ceil(capacity_ * 2), empty_slot);
    mask_ = static_cast<std::uint32_t>(slots_.size() - 1);
    shift_ = 32 - static_cast<unsigned>(std::countr_zero(slots_.size()));
    const auto count = static_cast<std::uint32_t>(entries_.size());
    for (std::uint32_t i = 0; i < count; ++i) entries_[i].next = i + 1 < count ? i + 1 : none;
    free_ = 0;
  }

  /// Frees the storage when the table is empty (a connection with no task running); the next
  /// `add()` allocates it again. Returns whether the table is now without storage.
  bool release_storage() noexcept {
    if (size_ != 0) return false;
    std::vector<entry>().swap(entries_);
    std::vector<std::uint32_t>().swap(slots_);
    free_ = head_ = tail_ = none;
    return true;
  }

  /// Bytes of storage the table holds now: 0 before the first entry and after
  /// `release_storage()`.
  std::size_t storage_bytes() const noexcept {
    return entries_.capacity() * sizeof(entry) + slots_.capacity() * sizeof(std::uint32_t);
  }

  /// Offers a stream that just announced `match_id` as the given side.
  /// @return `paired` with the partner's handle, `waiting`, or `rejected` with
  ///   `duplicate_match_id` (that side of the task is already known, or the task already
  ///   paired) or `pairing_full`. A rejected stream is not in the table.
  pairing_result<Handle> add(stream_kind side, std::uint16_t match_id, const Handle& handle,
                             TimePoint now) {
    note_time(now);
    pairing_result<Handle> r;
    const std::uint32_t found = find_slot(match_id);
    if (found != not_found) {
      entry& e = entries_[slots_[found]];
      if (e.paired || e.half(side)) {
        r.error = errc::duplicate_match_id;
        return r;
      }
      e.half(side) = handle;
      e.paired = true;
      unlink(slots_[found]);
      r.status = pairing_status::paired;
      r.partner = e.half(partner_of(side));
      return r;
    }
    if (size_ == capacity_) {
      r.error = errc::pairing_full;
      return r;
    }
    reserve();
    const std::uint32_t index = free_;
    entry& e = entries_[index];
    free_ = e.next;
    e = entry{};
    e.match_id = match_id;
    e.half(side) = handle;
    e.deadline = latest_ + timeout_;
    link_back(index);
    insert_slot(match_id, index);
    ++size_;
    r.status = pairing_status::waiting;
    return r;
  }

  /// Takes the stream `side` of task `match_id` out of the table: its stream ended (finished,
  /// reset, failed). The entry goes when its last half goes.
  /// @return whether the stream was there, and the partner still in the table, if any, which
  ///   the caller may want to tell (for instance abort it when this half was reset).
  removal<Handle> remove(stream_kind side, std::uint16_t match_id) {
    removal<Handle> r;
    const std::uint32_t slot = find_slot(match_id);
    if (slot == not_found) return r;
    const std::uint32_t index = slots_[slot];
    entry& e = entries_[index];
    if (!e.half(side)) return r;
    r.found = true;
    e.half(side).reset();
    if (e.half(partner_of(side))) {
      r.partner = e.half(partner_of(side));
      return r;
    }
    unlink(index);
    erase_slot(slot);
    e.north.reset();
    e.south.reset();
    e.next = free_;
    free_ = index;
    --size_;
    return r;
  }

  /// When the earliest waiting half expires; empty when none is waiting. Arm the caller's timer
  /// for it and call `pop_expired` then.
  std::optional<TimePoint> next_expiry() const {
    if (head_ == none) return std::nullopt;
    return entries_[head_].deadline;
  }

  /// Removes and returns one waiting half whose deadline is at or before `now`; empty when none
  /// is due. Call until empty. Each returned stream should be failed with `pairing_expired`.
  std::optional<expired_stream<Handle>> pop_expired(TimePoint now) {
    note_time(now);
    if (head_ == none || latest_ < entries_[head_].deadline) return std::nullopt;
    const entry& e = entries_[head_];
    const stream_kind side = e.north ? stream_kind::north : stream_kind::south;
    expired_stream<Handle> out{e.match_id, side, *e.half(side)};
    (void)remove(side, e.match_id);
    return out;
  }

  /// The state of task `match_id`, if the table holds it.
  std::optional<pairing_entry_state> find(std::uint16_t match_id) const {
    const std::uint32_t slot = find_slot(match_id);
    if (slot == not_found) return std::nullopt;
    const entry& e = entries_[slots_[slot]];
    return pairing_entry_state{e.north.has_value(), e.south.has_value(), e.paired};
  }

  /// Match ids in the table (waiting, paired, or with one half left).
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  std::size_t capacity() const noexcept { return capacity_; }
  /// Halves waiting for their partner.
  std::size_t waiting() const noexcept { return waiting_; }
  duration timeout() const { return timeout_; }

private:
  static constexpr std::uint32_t none = 0xFFFFFFFFu;
  static constexpr std::uint32_t empty_slot = 0xFFFFFFFFu;
  static constexpr std::uint32_t not_found = 0xFFFFFFFFu;

  struct entry {
    std::optional<Handle> north;
    std::optional<Handle> south;
    TimePoint deadline{};
    std::uint32_t prev = none; // expiry list while waiting
    std::uint32_t next = none; // expiry list while waiting, free list while unused
    std::uint16_t match_id = 0;
    bool paired = false;
    bool linked = false;

    std::optional<Handle>& half(stream_kind s) { return s == stream_kind::north ? north : south; }
    const std::optional<Handle>& half(stream_kind s) const {
      return s == stream_kind::north ? north : south;
    }
  };

  static std::size_t clamp_capacity(std::size_t c) noexcept {
    return c < 1 ? 1 : (c > max_pairing_capacity ? max_pairing_capacity : c);
  }

  void note_time(const TimePoint& now) {
    if (!seen_time_ || latest_ < now) latest_ = now;
    seen_time_ = true;
  }

  // Fibonacci hashing spreads consecutive match ids (the normal case) and strided ones alike.
  std::uint32_t home(std::uint16_t id) const noexcept {
    return static_cast<std::uint32_t>((std::uint32_t{id} * 2654435769u) >> shift_) & mask_;
  }
  std::uint32_t find_slot(std::uint16_t id) const noexcept {
    if (slots_.empty()) return not_found; // no storage yet: no entry
    for (std::uint32_t i = home(id);; i = (i + 1) & mask_) {
      const std::uint32_t index = slots_[i];
      if (index == empty_slot) return not_found;
      if (entries_[index].match_id == id) return i;
    }
  }
  void insert_slot(std::uint16_t id, std::uint32_t index) noexcept {
    std::uint32_t i = home(id);
    while (slots_[i] != empty_slot) i = (i + 1) & mask_;
    slots_[i] = index;
  }
  // Backward-shift deletion keeps probe sequences intact without tombstones.
  void erase_slot(std::uint32_t hole) noexcept {
    for (std::uint32_t j = (hole + 1) & mask_; slots_[j] != empty_slot; j = (j + 1) & mask_) {
      const std::uint32_t h = home(entries_[slots_[j]].match_id);
      // Move slot j into the hole unless its home lies cyclically in (hole, j].
      const bool stays = hole <= j ? (hole < h && h <= j) : (hole < h || h <= j);
      if (!stays) {
        slots_[hole] = slots_[j];
        hole = j;
      }
    }
    slots_[hole] = empty_slot;
  }

  void link_back(std::uint32_t index) noexcept {
    entry& e = entries_[index];
    e.prev = tail_;
    e.next = none;
    e.linked = true;
    if (tail_ == none)
      head_ = index;
    else
      entries_[tail_].next = index;
    tail_ = index;
    ++waiting_;
  }
  void unlink(std::uint32_t index) noexcept {
    entry& e = entries_[index];
    if (!e.linked) return;
    if (e.prev == none)
      head_ = e.next;
    else
      entries_[e.prev].next = e.next;
    if (e.next == none)
      tail_ = e.prev;
    else
      entries_[e.next].prev = e.prev;
    e.prev = e.next = none;
    e.linked = false;
    --waiting_;
  }

  duration timeout_;
  std::size_t capacity_;
  std::vector<entry> entries_;       // empty until the first entry (see reserve())
  std::vector<std::uint32_t> slots_; // the same
  std::uint32_t mask_ = 0;
  unsigned shift_ = 0;
  std::uint32_t free_ = none;
  std::uint32_t head_ = none;
  std::uint32_t tail_ = none;
  std::size_t size_ = 0;
  std::size_t waiting_ = 0;
  TimePoint latest_{};
  bool seen_time_ = false;
};

} // namespace detour
