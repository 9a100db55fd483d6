// SPDX-License-Identifier: MIT
// cli/quic_stream.cpp: the ngtcp2 stream adaptor and its pooled buffers (see quic_stream.hpp).
#include "quic_stream.hpp"

#include <ngtcp2/ngtcp2.h>

#include <algorithm>
#include <cstring>
#include <new>

namespace detour::cli {

// --- block_pool --------------------------------------------------------------------------------

block_pool::~block_pool() {
  for (auto* b : free_) ::operator delete(b);
}

std::uint8_t* block_pool::get() {
  ++in_use_;
  if (free_.empty()) return static_cast<std::uint8_t*>(::operator new(block_size));
  std::uint8_t* b = free_.back();
  free_.pop_back();
  return b;
}

void block_pool::put(std::uint8_t* block) noexcept {
  --in_use_;
  if (free_.size() < max_idle_) {
    try {
      free_.push_back(block);
      return;
    } catch (const std::bad_alloc&) { // fall through: free it
    }
  }
  ::operator delete(block);
}

// --- byte_queue --------------------------------------------------------------------------------

void byte_queue::append(std::span<const std::uint8_t> bytes) {
  constexpr std::size_t block_size = block_pool::block_size;
  while (!bytes.empty()) {
    const std::size_t end = head_ + size_; // position of the back in the block sequence
    if (end == blocks_.size() * block_size) blocks_.push_back(pool_->get());
    const std::size_t offset = end % block_size;
    const std::size_t n = std::min(bytes.size(), block_size - offset);
    std::memcpy(blocks_.back() + offset, bytes.data(), n);
    size_ += n;
    bytes = bytes.subspan(n);
  }
}

std::span<const std::uint8_t> byte_queue::segment(std::size_t from) const noexcept {
  if (from >= size_) return {};
  const std::size_t at = head_ + from;
  const std::size_t block = at / block_pool::block_size;
  const std::size_t offset = at % block_pool::block_size;
  const std::size_t n = std::min(block_pool::block_size - offset, size_ - from);
  return {blocks_[block] + offset, n};
}

void byte_queue::pop(std::size_t n) noexcept {
  n = std::min(n, size_);
  head_ += n;
  size_ -= n;
  std::size_t drop = head_ / block_pool::block_size;
  if (size_ == 0) drop = blocks_.size(); // keep nothing: an idle stream holds no block
  for (std::size_t i = 0; i < drop; ++i) pool_->put(blocks_[i]);
  blocks_.erase(blocks_.begin(), blocks_.begin() + static_cast<std::ptrdiff_t>(drop));
  head_ = size_ == 0 ? 0 : head_ - drop * block_pool::block_size;
}

void byte_queue::clear() noexcept {
  pop(size_);
}

// --- quic_stream -------------------------------------------------------------------------------

quic_stream::quic_stream(ngtcp2_conn* conn, std::int64_t id, block_pool& pool,
                         std::size_t send_limit, send_budget& budget, listener& owner) noexcept
    : conn_(conn), id_(id), owner_(&owner), send_limit_(send_limit), budget_(&budget), rx_(pool),
      tx_(pool) {}

quic_stream::~quic_stream() {
  drop_tx();
}

void quic_stream::drop_tx() noexcept {
  budget_->used -= tx_.size();
  tx_.clear();
  tx_sent_ = 0;
}

void quic_stream::consume(std::size_t n) {
  n = std::min(n, rx_.size());
  if (n == 0) return;
  rx_.pop(n);
  if (closed_ || reading_stopped_) return;
  // The only place credit is given back: a relay's receive window follows its echo.
  ngtcp2_conn_extend_max_stream_offset(conn_, id_, n);
  ngtcp2_conn_extend_max_offset(conn_, n);
}

void quic_stream::return_rx_credit() noexcept {
  // Bytes dropped unread still counted against the connection window (RFC 9000 §4.5).
  if (!rx_.empty() && !closed_) ngtcp2_conn_extend_max_offset(conn_, rx_.size());
  rx_.clear();
}

void quic_stream::stop_reading(app_code code) {
  if (reading_stopped_) return;
  reading_stopped_ = true;
  return_rx_credit();
  if (!closed_ && !fin_received_ && !reset_received_) {
    ngtcp2_conn_shutdown_stream_read(conn_, 0, id_, code);
    owner_->on_stream_wants_to_send(*this); // STOP_SENDING is a frame to send
  }
}

std::size_t quic_stream::write_some(std::span<const std::uint8_t> bytes) {
  if (closed_ || write_reset_ || fin_wanted_ || stop_sending_received_) return 0;
  const std::size_t room = send_limit_ > tx_.size() ? send_limit_ - tx_.size() : 0;
  const std::size_t shared = budget_->limit > budget_->used ? budget_->limit - budget_->used : 0;
  if (shared == 0 && !bytes.empty()) budget_->starved = true;
  const std::size_t n = std::min({room, shared, bytes.size()});
  if (n == 0) return 0;
  tx_.append(bytes.first(n));
  budget_->used += n;
  bytes_accepted_ += n;
  owner_->on_stream_wants_to_send(*this);
  return n;
}

void quic_stream::close_write() {
  if (fin_wanted_ || write_reset_ || closed_) return;
  fin_wanted_ = true;
  owner_->on_stream_wants_to_send(*this);
}

void quic_stream::reset_write(app_code code) {
  if (write_reset_ || closed_) return;
  write_reset_ = true;
  ngtcp2_conn_shutdown_stream_write(conn_, 0, id_, code);
  owner_->on_stream_wants_to_send(*this);
}

void quic_stream::on_data(std::span<const std::uint8_t> data, bool fin) {
  bytes_received_ += data.size();
  if (reading_stopped_ || reset_received_) {
    // Dropped unread: the connection credit goes back at once.
    if (!data.empty()) ngtcp2_conn_extend_max_offset(conn_, data.size());
  } else {
    rx_.append(data);
  }
  if (fin) fin_received_ = true;
  owner_->on_stream_event(*this);
}

void quic_stream::on_reset(app_code code) {
  if (!reset_received_) reset_received_ = code;
  owner_->on_stream_event(*this);
}

void quic_stream::on_write_shut() {
  write_blocked_ = true;
  if (write_reset_ || stop_sending_received_) return;
  stop_sending_received_ = 0;
  owner_->on_stream_event(*this);
}

void quic_stream::on_acked(std::uint64_t n) {
  const auto k = static_cast<std::size_t>(std::min<std::uint64_t>(n, tx_sent_));
  tx_.pop(k);
  tx_sent_ -= k;
  budget_->used -= k;
  if (k == 0) return;
  owner_->on_stream_event(*this); // room to accept more
  if (budget_->starved) {
    budget_->starved = false;
    owner_->on_send_budget_freed();
  }
}

void quic_stream::on_send_credit() {
  write_blocked_ = false;
  if (has_pending_send()) owner_->on_stream_wants_to_send(*this);
}

void quic_stream::on_closed(std::optional<app_code> code) {
  if (closed_) return;
  return_rx_credit();
  closed_ = true;
  close_code_ = code;
  const bool send_done = fin_sent_ && tx_sent_ == tx_.size();
  if (!write_reset_ && !send_done && !stop_sending_received_) {
    stop_sending_received_ = code.value_or(0); // the peer stopped our send side
  }
  const bool freed = !tx_.empty();
  drop_tx();
  owner_->on_stream_event(*this);
  if (freed && budget_->starved) {
    budget_->starved = false;
    owner_->on_send_budget_freed();
  }
}

bool quic_stream::has_pending_send() const noexcept {
  if (closed_ || write_reset_ || write_blocked_ || stop_sending_received_) return false;
  return tx_sent_ < tx_.size() || (fin_wanted_ && !fin_sent_);
}

std::size_t quic_stream::gather(ngtcp2_vec* vecs, std::size_t max, bool& fin) const noexcept {
  std::size_t count = 0;
  std::size_t from = tx_sent_;
  while (count < max) {
    const auto seg = tx_.segment(from);
    if (seg.empty()) break;
    vecs[count].base = const_cast<std::uint8_t*>(seg.data());
    vecs[count].len = seg.size();
    ++count;
    from += seg.size();
  }
  fin = fin_wanted_ && !fin_sent_ && from == tx_.size();
  return count;
}

void quic_stream::on_written(std::size_t n, bool fin_taken) noexcept {
  tx_sent_ += n;
  if (fin_taken) fin_sent_ = true;
}

} // namespace detour::cli
