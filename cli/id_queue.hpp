// SPDX-License-Identifier: MIT
// cli/id_queue.hpp: a first-in first-out queue of stream ids on one vector.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace detour::cli {

/// The connection's round robin of streams with something to send. std::deque allocates a
/// 512-byte block as it is constructed and one more each time its end crosses a block, so a
/// connection paid two allocations before its first stream and more as the round robin turned;
/// this allocates when the first id is queued and then only to grow. The ids before `head_` are
/// consumed; they are dropped when the queue empties, or when they are at least half of it
/// (each id is moved at most once per time it is queued: amortised constant time).
class id_queue {
public:
  bool empty() const noexcept { return head_ == ids_.size(); }
  std::size_t size() const noexcept { return ids_.size() - head_; }
  /// The oldest id; the queue must not be empty.
  std::int64_t front() const noexcept { return ids_[head_]; }
  void push_back(std::int64_t id) { ids_.push_back(id); }
  /// Drops the oldest id; the queue must not be empty.
  void pop_front() noexcept {
    ++head_;
    if (head_ == ids_.size()) {
      clear();
    } else if (head_ >= compact_after && 2 * head_ >= ids_.size()) {
      ids_.erase(ids_.begin(), ids_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
  }
  void clear() noexcept {
    ids_.clear();
    head_ = 0;
  }
  /// Room held, in ids (for tests: it stays bounded while ids cycle through).
  std::size_t capacity() const noexcept { return ids_.capacity(); }

private:
  static constexpr std::size_t compact_after = 16;
  std::vector<std::int64_t> ids_;
  std::size_t head_ = 0;
};

} // namespace detour::cli
