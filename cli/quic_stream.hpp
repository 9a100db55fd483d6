// SPDX-License-Identifier: MIT
// cli/quic_stream.hpp: one bidirectional QUIC stream of an ngtcp2 connection as a
// detour::duplex_stream (include/detour/concepts.hpp). ngtcp2 pushes received bytes in; flow
// control credit (RFC 9000 §4: MAX_STREAM_DATA, MAX_DATA) goes back only in consume(); bytes
// accepted by write_some() stay in pooled blocks until the peer acknowledges them.
#pragma once

#include <detour/concepts.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

struct ngtcp2_conn;
struct ngtcp2_vec;

namespace detour::cli {

/// Fixed-size blocks for stream buffers, recycled so that a busy server does not go back to the
/// allocator for every packet. Keeps at most |max_idle| free blocks; the rest are freed, so the
/// memory of a burst returns once it is over. A block is counted: several queues may refer to
/// it (an echo sends from the very bytes it received), and it returns once the last lets go.
class block_pool {
public:
  /// 16 KiB: a dozen QUIC packets per block, few blocks per window.
  static constexpr std::size_t block_size = std::size_t{16} * 1024;

  explicit block_pool(std::size_t max_idle = 64) noexcept : max_idle_(max_idle) {}
  ~block_pool();
  block_pool(const block_pool&) = delete;
  block_pool& operator=(const block_pool&) = delete;

  /// A block with one reference, the caller's.
  std::uint8_t* get();
  /// One more reference to |block|.
  void ref(std::uint8_t* block) noexcept;
  /// Drops a reference; the last one returns the block.
  void put(std::uint8_t* block) noexcept;
  /// Whether more than one reference to |block| is held.
  static bool shared(const std::uint8_t* block) noexcept;
  /// Blocks handed out and not yet returned.
  std::size_t in_use() const noexcept { return in_use_; }
  std::size_t idle() const noexcept { return free_.size(); }

private:
  std::vector<std::uint8_t*> free_;
  std::size_t max_idle_;
  std::size_t in_use_ = 0;
};

/// A FIFO of bytes in pool blocks. Bytes never move once appended, so a pointer into the queue
/// stays valid until those bytes are popped: what ngtcp2 needs for data it may retransmit.
/// Bytes are either copied in (append) or shared with another queue without a copy
/// (share_front): the echo's send queue refers to the blocks its receive queue filled.
class byte_queue {
public:
  explicit byte_queue(block_pool& pool) noexcept : pool_(&pool) {}
  ~byte_queue() { clear(); }
  byte_queue(const byte_queue&) = delete;
  byte_queue& operator=(const byte_queue&) = delete;

  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  /// Copies |bytes| to the back.
  void append(std::span<const std::uint8_t> bytes);
  /// Appends the first |n| bytes of |source| (n <= source.size()) by reference: no copy, their
  /// blocks stay until both queues have popped them. |source| is unchanged.
  void share_front(const byte_queue& source, std::size_t n);
  /// The first contiguous run of bytes from byte |from| on (empty when |from| >= size()).
  /// Calls with |from| not decreasing (a stream handing its unsent bytes to ngtcp2 packet after
  /// packet) continue from where the previous one ended: constant time, however many pieces
  /// are queued before |from|.
  std::span<const std::uint8_t> segment(std::size_t from) const noexcept;
  /// Drops the first |n| bytes (n <= size()). An emptied queue keeps no block of its own;
  /// it keeps the block it was filling while another queue still refers to it (no memory of
  /// its own: the next bytes go there instead of into a fresh block per packet).
  void pop(std::size_t n) noexcept;
  /// Drops every byte and every block reference.
  void clear() noexcept;
  /// Block references held, the kept one of an empty queue included.
  std::size_t blocks() const noexcept { return pieces_.size(); }

private:
  struct piece {
    std::uint8_t* block;
    std::uint32_t begin; // the piece's bytes are block[begin, end)
    std::uint32_t end;
  };
  block_pool* pool_;
  std::vector<piece> pieces_; // oldest first, one reference each
  std::size_t size_ = 0;
  // Where the last segment() found its bytes: piece |cursor_index_|, whose bytes start at
  // queue offset |cursor_from_|. Appending leaves both true; pop() moves or resets them.
  mutable std::size_t cursor_index_ = 0;
  mutable std::size_t cursor_from_ = 0;
  bool tail_ours_ = false; // this queue filled the back piece's block and may go on after end
};

/// What the streams of one connection may keep unacknowledged in total: a cap over all their
/// send buffers, so a client that reads nothing cannot make the server hold max_streams times
/// a stream's send limit. Owned by the connection, shared by its streams.
struct send_budget {
  std::size_t limit = 0;
  std::size_t used = 0;
  bool starved = false; ///< a write found it exhausted: wake the streams when it frees up
};

/// One bidirectional stream. Owned by the application (the task it belongs to), not by ngtcp2:
/// it outlives ngtcp2's interest in the stream, which ends with on_closed().
///
/// The receive side holds at most the stream's flow-control window, because credit is extended
/// only in consume(). The send side accepts at most |send_limit| bytes that the peer has not
/// acknowledged yet (and no more than the connection's send_budget leaves); write_some()
/// returns 0 beyond that, which is the back-pressure the relay waits on. Memory per stream is
/// therefore bounded by window + send_limit, and per connection by its window + its budget.
/// An echo (write_some() of the front of readable(), what the relay does when a stream is its
/// own sink) is not copied: the send side refers to the received blocks until acknowledged.
class quic_stream {
public:
  /// Tells the owner that something changed (data, FIN, reset, STOP_SENDING, room to send,
  /// closed) so that it steps its driver; and the connection that there is something to send.
  struct listener {
    virtual void on_stream_event(quic_stream& s) = 0;
    virtual void on_stream_wants_to_send(quic_stream& s) = 0;
    /// The connection's send budget was exhausted and has room again: every stream may write.
    virtual void on_send_budget_freed() = 0;

  protected:
    ~listener() = default;
  };

  quic_stream(ngtcp2_conn* conn, std::int64_t id, block_pool& pool, std::size_t send_limit,
              send_budget& budget, listener& owner) noexcept;
  ~quic_stream();
  quic_stream(const quic_stream&) = delete;
  quic_stream& operator=(const quic_stream&) = delete;

  std::int64_t id() const noexcept { return id_; }

  // --- detour::readable_stream ----------------------------------------------------------------
  std::span<const std::uint8_t> readable() const noexcept { return rx_.segment(0); }
  /// Discards |n| received bytes and extends the stream's and the connection's credit by |n|.
  void consume(std::size_t n);
  bool at_eof() const noexcept { return fin_received_; }
  std::optional<app_code> receive_reset() const noexcept { return reset_received_; }
  /// STOP_SENDING with |code|; buffered bytes are dropped and their connection credit returned.
  void stop_reading(app_code code);

  // --- detour::writable_stream ----------------------------------------------------------------
  std::size_t write_some(std::span<const std::uint8_t> bytes);
  void close_write();
  std::optional<app_code> send_stopped() const noexcept { return stop_sending_received_; }
  /// RESET_STREAM with |code|. Unsent bytes are dropped; sent ones stay until on_closed(),
  /// because ngtcp2 may still refer to them until then.
  void reset_write(app_code code);

  // --- from the connection (ngtcp2 callbacks) --------------------------------------------------
  /// recv_stream_data: |data| arrives in order, without overlap.
  void on_data(std::span<const std::uint8_t> data, bool fin);
  /// stream_reset: the peer abandoned its send side.
  void on_reset(app_code code);
  /// ngtcp2 refused to write (NGTCP2_ERR_STREAM_SHUT_WR) although we did not reset: the peer
  /// sent STOP_SENDING, which ngtcp2 1.x answers with RESET_STREAM by itself and reports
  /// through no callback. Its code is not known here; it is reported as 0 (g3proxy's only
  /// value) until on_closed() brings the real one.
  void on_write_shut();
  /// acked_stream_data_offset: the next |n| sent bytes were acknowledged.
  void on_acked(std::uint64_t n);
  /// extend_max_stream_data: the peer gave more send credit.
  void on_send_credit();
  /// stream_close: ngtcp2 forgot the stream. Returns the connection credit of bytes still
  /// buffered, frees both buffers; nothing is passed to ngtcp2 for this stream afterwards.
  /// A send side we neither finished nor reset was stopped by the peer: |code| is its
  /// STOP_SENDING code.
  void on_closed(std::optional<app_code> code);

  // --- for the connection's write loop ---------------------------------------------------------
  /// Whether the write loop should offer this stream to ngtcp2: unsent bytes, or a FIN not yet
  /// handed over.
  bool has_pending_send() const noexcept;
  /// Fills up to |max| vectors with unsent bytes, stopping once they hold |enough| (what one
  /// packet can carry); sets |fin| when they end the stream.
  std::size_t gather(ngtcp2_vec* vecs, std::size_t max, std::size_t enough,
                     bool& fin) const noexcept;
  /// ngtcp2 took |n| of the gathered bytes (and the FIN, when |fin_taken|).
  void on_written(std::size_t n, bool fin_taken) noexcept;
  /// ngtcp2 reported the stream blocked by flow control or shut for writing: do not offer it
  /// again until on_send_credit().
  void on_write_blocked() noexcept { write_blocked_ = true; }

  bool closed() const noexcept { return closed_; }
  std::optional<app_code> close_code() const noexcept { return close_code_; }
  /// Bytes received from the peer (all of them, consumed or not) and accepted for sending.
  std::uint64_t bytes_received() const noexcept { return bytes_received_; }
  std::uint64_t bytes_accepted() const noexcept { return bytes_accepted_; }
  /// Bytes buffered right now on each side (received not consumed; accepted not acknowledged).
  std::size_t rx_buffered() const noexcept { return rx_.size(); }
  std::size_t tx_buffered() const noexcept { return tx_.size(); }

private:
  void return_rx_credit() noexcept;
  void drop_tx() noexcept;
  void release_idle_block() noexcept;

  ngtcp2_conn* conn_;
  std::int64_t id_;
  listener* owner_;
  std::size_t send_limit_;
  send_budget* budget_;
  byte_queue rx_;
  byte_queue tx_;
  std::size_t tx_sent_ = 0; // bytes of tx_ (from its front) already handed to ngtcp2
  std::uint64_t bytes_received_ = 0;
  std::uint64_t bytes_accepted_ = 0;
  std::optional<app_code> reset_received_;
  std::optional<app_code> stop_sending_received_;
  std::optional<app_code> close_code_;
  bool fin_received_ = false;
  bool reading_stopped_ = false;
  bool fin_wanted_ = false;
  bool fin_sent_ = false;
  bool write_reset_ = false;
  bool write_blocked_ = false;
  bool closed_ = false;
};

static_assert(detour::duplex_stream<quic_stream>);

} // namespace detour::cli
