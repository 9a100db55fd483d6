// SPDX-License-Identifier: MIT
// cli/probe_buffer.hpp: the send buffer of one QUIC stream in `detour probe`: bytes written by
// the task and kept, at stable addresses, until the peer acknowledges them (ngtcp2 retransmits
// from the application's memory: ngtcp2_conn_writev_stream, acked_stream_data_offset).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <span>
#include <vector>

namespace detour::cli::probe {

/// Bytes of one stream from the oldest unacknowledged one to the newest written one, in chunks
/// of `chunk_size` that never move, so spans handed out stay valid until acknowledge() passes
/// them. Offsets are stream offsets (the first byte ever written is offset 0).
///
/// Three positions, always acked <= sent <= end: `acked` (the peer has everything before it),
/// `sent` (ngtcp2 has been given everything before it), `end` (everything written).
class send_buffer {
public:
  /// 16 KiB: about a dozen QUIC packets per chunk, few allocations per megabyte.
  static constexpr std::size_t chunk_size = 16 * 1024;

  /// Appends as much of |bytes| as keeps buffered() at most |limit|; returns how much.
  std::size_t append(std::span<const std::uint8_t> bytes, std::uint64_t limit) {
    const std::uint64_t room = limit > buffered() ? limit - buffered() : 0;
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(room, bytes.size()));
    std::size_t done = 0;
    while (done < n) {
      const std::size_t in_chunk = static_cast<std::size_t>((end_ - base_) % chunk_size);
      if (in_chunk == 0 && (end_ - base_) / chunk_size == chunks_.size()) add_chunk();
      const std::size_t take = std::min(n - done, chunk_size - in_chunk);
      std::memcpy(chunks_.back().get() + in_chunk, bytes.data() + done, take);
      done += take;
      end_ += take;
    }
    return n;
  }

  /// The unsent bytes as spans (split at chunk edges), at most out.size() of them; returns the
  /// number filled. The spans stay valid until acknowledge() passes their end.
  std::size_t unsent(std::span<std::span<const std::uint8_t>> out) const noexcept {
    std::size_t count = 0;
    std::uint64_t at = sent_;
    while (at < end_ && count < out.size()) {
      const std::size_t index = static_cast<std::size_t>((at - base_) / chunk_size);
      const std::size_t in_chunk = static_cast<std::size_t>((at - base_) % chunk_size);
      const std::size_t len =
          static_cast<std::size_t>(std::min<std::uint64_t>(chunk_size - in_chunk, end_ - at));
      out[count++] = {chunks_[index].get() + in_chunk, len};
      at += len;
    }
    return count;
  }

  /// ngtcp2 took the next |n| unsent bytes.
  void mark_sent(std::uint64_t n) noexcept { sent_ = std::min(end_, sent_ + n); }

  /// The peer acknowledged [offset, offset + length). ngtcp2 reports ranges in order without
  /// overlap, so this only moves `acked` forward and frees the chunks wholly before it.
  void acknowledge(std::uint64_t offset, std::uint64_t length) {
    acked_ = std::min(sent_, std::max(acked_, offset + length));
    while (!chunks_.empty() && base_ + chunk_size <= acked_) {
      if (spare_.size() < max_spare_chunks) spare_.push_back(std::move(chunks_.front()));
      chunks_.pop_front();
      base_ += chunk_size;
    }
  }

  std::uint64_t buffered() const noexcept { return end_ - acked_; }
  std::uint64_t unsent_size() const noexcept { return end_ - sent_; }
  std::uint64_t acked() const noexcept { return acked_; }
  std::uint64_t sent() const noexcept { return sent_; }
  std::uint64_t end() const noexcept { return end_; }

private:
  // Chunks kept for reuse: enough to refill a busy stream without going back to malloc.
  static constexpr std::size_t max_spare_chunks = 4;

  void add_chunk() {
    if (!spare_.empty()) {
      chunks_.push_back(std::move(spare_.back()));
      spare_.pop_back();
      return;
    }
    chunks_.push_back(std::make_unique_for_overwrite<std::uint8_t[]>(chunk_size));
  }

  std::deque<std::unique_ptr<std::uint8_t[]>> chunks_;
  std::vector<std::unique_ptr<std::uint8_t[]>> spare_;
  std::uint64_t base_ = 0; // stream offset of chunks_.front()[0]
  std::uint64_t acked_ = 0;
  std::uint64_t sent_ = 0;
  std::uint64_t end_ = 0;
};

} // namespace detour::cli::probe
