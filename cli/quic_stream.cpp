// SPDX-License-Identifier: MIT
// cli/quic_stream.cpp: the ngtcp2 stream adaptor and its pooled buffers (see quic_stream.hpp).
#include "quic_stream.hpp"

#include <ngtcp2/ngtcp2.h>

#include <algorithm>
#include <cstring>
#include <new>

namespace detour::cli {

// --- block_pool --------------------------------------------------------------------------------

namespace {

// A block's reference count sits in front of its bytes; 16 bytes keep the bytes aligned.
constexpr std::size_t header_size = 16;

std::uint32_t& refs(const std::uint8_t* block) noexcept {
  return *reinterpret_cast<std::uint32_t*>(const_cast<std::uint8_t*>(block) - header_size);
}

} // namespace

block_pool::~block_pool() {
  for (auto* b : free_) ::operator delete(b - header_size);
}

std::uint8_t* block_pool::get() {
  std::uint8_t* b = nullptr;
  if (free_.empty()) {
    b = static_cast<std::uint8_t*>(::operator new(header_size + block_size)) + header_size;
  } else {
    b = free_.back();
    free_.pop_back();
  }
  ++in_use_;
  refs(b) = 1;
  return b;
}

void block_pool::ref(std::uint8_t* block) noexcept {
  ++refs(block);
}

bool block_pool::shared(const std::uint8_t* block) noexcept {
  return refs(block) > 1;
}

void block_pool::put(std::uint8_t* block) noexcept {
  if (--refs(block) != 0) return;
  --in_use_;
  if (free_.size() < max_idle_) {
    try {
      free_.push_back(block);
      return;
    } catch (const std::bad_alloc&) { // fall through: free it
    }
  }
  ::operator delete(block - header_size);
}

// --- byte_queue --------------------------------------------------------------------------------

void byte_queue::append(std::span<const std::uint8_t> bytes) {
  constexpr std::size_t block_size = block_pool::block_size;
  while (!bytes.empty()) {
    if (pieces_.empty() || !tail_ours_ || pieces_.back().end == block_size) {
      pieces_.reserve(pieces_.size() + 1); // may throw: before the block is taken
      pieces_.push_back({pool_->get(), 0, 0});
      tail_ours_ = true;
    }
    piece& back = pieces_.back();
    const std::size_t n = std::min(bytes.size(), block_size - back.end);
    std::memcpy(back.block + back.end, bytes.data(), n);
    back.end += static_cast<std::uint32_t>(n);
    size_ += n;
    bytes = bytes.subspan(n);
  }
}

void byte_queue::share_front(const byte_queue& source, std::size_t n) {
  n = std::min(n, source.size_);
  for (const piece& p : source.pieces_) {
    if (n == 0) break;
    const std::size_t len = std::min<std::size_t>(n, p.end - p.begin);
    if (len == 0) continue; // the source's kept, empty block
    if (!pieces_.empty() && pieces_.back().block == p.block && pieces_.back().end == p.begin) {
      pieces_.back().end += static_cast<std::uint32_t>(len); // the same run: one reference
    } else {
      pieces_.reserve(pieces_.size() + 1);
      pool_->ref(p.block);
      pieces_.push_back({p.block, p.begin, p.begin + static_cast<std::uint32_t>(len)});
    }
    tail_ours_ = false; // the source goes on filling that block
    size_ += len;
    n -= len;
  }
}

std::span<const std::uint8_t> byte_queue::segment(std::size_t from) const noexcept {
  std::size_t i = 0;
  std::size_t at = 0; // queue offset of piece i's first byte
  if (from >= cursor_from_ && cursor_index_ < pieces_.size()) {
    i = cursor_index_;
    at = cursor_from_;
  }
  for (; i < pieces_.size(); ++i) {
    const piece& p = pieces_[i];
    const std::size_t len = p.end - p.begin;
    if (from - at < len) {
      cursor_index_ = i;
      cursor_from_ = at;
      return {p.block + p.begin + (from - at), len - (from - at)};
    }
    at += len;
  }
  return {};
}

void byte_queue::pop(std::size_t n) noexcept {
  n = std::min(n, size_);
  size_ -= n;
  const std::size_t popped = n;
  std::size_t drop = 0; // pieces emptied from the front
  for (; drop < pieces_.size(); ++drop) {
    piece& p = pieces_[drop];
    const std::size_t len = p.end - p.begin;
    if (n < len || (len == 0 && n == 0)) {
      p.begin += static_cast<std::uint32_t>(n);
      break;
    }
    n -= len;
  }
  if (size_ == 0 && !pieces_.empty()) {
    // Keep the block being filled only while another queue holds it anyway.
    piece& back = pieces_.back();
    const bool keep =
        tail_ours_ && back.end < block_pool::block_size && block_pool::shared(back.block);
    drop = pieces_.size() - (keep ? 1 : 0);
    if (keep) back.begin = back.end;
  }
  for (std::size_t i = 0; i < drop; ++i) pool_->put(pieces_[i].block);
  pieces_.erase(pieces_.begin(), pieces_.begin() + static_cast<std::ptrdiff_t>(drop));
  if (pieces_.empty()) tail_ours_ = false;
  // The cursor's piece keeps its bytes only if every popped byte came before it.
  if (size_ == 0 || cursor_index_ < drop || cursor_from_ < popped) {
    cursor_index_ = 0;
    cursor_from_ = 0;
  } else {
    cursor_index_ -= drop;
    cursor_from_ -= popped;
  }
}

void byte_queue::clear() noexcept {
  for (const piece& p : pieces_) pool_->put(p.block);
  pieces_.clear();
  size_ = 0;
  cursor_index_ = 0;
  cursor_from_ = 0;
  tail_ours_ = false;
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
  if (const auto front = rx_.segment(0); bytes.data() == front.data() && n <= front.size()) {
    tx_.share_front(rx_, n); // an echo of what we received: sent from the same blocks
  } else {
    tx_.append(bytes.first(n));
  }
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

void quic_stream::release_idle_block() noexcept {
  // The receive side kept the block it was filling because the echo still referred to it; with
  // both sides empty an idle stream holds no memory.
  if (rx_.empty() && tx_.empty()) rx_.clear();
}

void quic_stream::on_acked(std::uint64_t n) {
  const auto k = static_cast<std::size_t>(std::min<std::uint64_t>(n, tx_sent_));
  tx_.pop(k);
  tx_sent_ -= k;
  budget_->used -= k;
  if (k == 0) return;
  release_idle_block();
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

std::size_t quic_stream::gather(ngtcp2_vec* vecs, std::size_t max, std::size_t enough,
                                bool& fin) const noexcept {
  std::size_t count = 0;
  std::size_t from = tx_sent_;
  while (count < max && from - tx_sent_ < enough) {
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
