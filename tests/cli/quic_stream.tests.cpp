// SPDX-License-Identifier: MIT
// Tests of cli/quic_stream.hpp's buffers: byte_queue keeps bytes in order across block
// boundaries, never moves them while they are queued (ngtcp2 may resend from them), and gives
// every block back; block_pool recycles up to its limit and frees the rest.
#include "quic_stream.hpp"

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>

#include <numeric>
#include <vector>

using namespace detour::cli;

namespace {

std::vector<std::uint8_t> sequence(std::size_t n, std::uint8_t start = 0) {
  std::vector<std::uint8_t> v(n);
  std::iota(v.begin(), v.end(), start);
  return v;
}

// Reads everything from |from| on, segment by segment.
std::vector<std::uint8_t> drain_view(const byte_queue& q, std::size_t from = 0) {
  std::vector<std::uint8_t> out;
  for (auto seg = q.segment(from); !seg.empty(); seg = q.segment(from)) {
    out.insert(out.end(), seg.begin(), seg.end());
    from += seg.size();
  }
  return out;
}

constexpr std::size_t block = block_pool::block_size;

} // namespace

TEST_CASE("byte_queue keeps bytes in order across blocks, whatever the append sizes",
          "[quic_stream][byte_queue]") {
  const std::size_t piece =
      GENERATE(std::size_t{1}, std::size_t{1000}, block - 1, block, block + 1, 3 * block + 17);
  block_pool pool;
  byte_queue q(pool);
  const auto data = sequence(5 * block + 123);
  for (std::size_t off = 0; off < data.size(); off += piece) {
    q.append(std::span(data).subspan(off, std::min(piece, data.size() - off)));
  }
  REQUIRE(q.size() == data.size());
  CHECK(drain_view(q) == data);
  CHECK(drain_view(q, block + 5) ==
        std::vector<std::uint8_t>(data.begin() + block + 5, data.end()));
}

TEST_CASE("byte_queue never moves queued bytes and frees blocks as they are popped",
          "[quic_stream][byte_queue]") {
  block_pool pool;
  byte_queue q(pool);
  const auto data = sequence(3 * block);
  q.append(data);
  // Where the last block's bytes live, before anything is popped or appended.
  const std::uint8_t* last = q.segment(2 * block).data();
  CHECK(pool.in_use() == 3);
  q.pop(block + 10);
  CHECK(pool.in_use() == 2); // the first block went back
  CHECK(q.segment(0).size() == block - 10);
  q.append(sequence(100));
  CHECK(q.segment(2 * block - (block + 10)).data() == last); // not moved
  CHECK(q.size() == 2 * block - 10 + 100);
  q.pop(q.size());
  CHECK(q.empty());
  CHECK(pool.in_use() == 0); // an empty queue holds no block
  CHECK(q.segment(0).empty());
}

TEST_CASE("byte_queue::segment past the end is empty, and pop clamps",
          "[quic_stream][byte_queue]") {
  block_pool pool;
  byte_queue q(pool);
  CHECK(q.segment(0).empty());
  q.append(sequence(10));
  CHECK(q.segment(10).empty());
  CHECK(q.segment(11).empty());
  q.pop(1000);
  CHECK(q.empty());
  CHECK(pool.in_use() == 0);
}

TEST_CASE("block_pool keeps at most its idle limit and frees the rest", "[quic_stream][pool]") {
  block_pool pool(2);
  std::vector<std::uint8_t*> blocks;
  for (int i = 0; i < 5; ++i) blocks.push_back(pool.get());
  CHECK(pool.in_use() == 5);
  for (auto* b : blocks) pool.put(b);
  CHECK(pool.in_use() == 0);
  CHECK(pool.idle() == 2);
  // Recycled first.
  std::uint8_t* again = pool.get();
  CHECK((again == blocks[0] || again == blocks[1]));
  pool.put(again);
}

namespace {

// Counts what a stream tells its owner. No ngtcp2 connection: the calls below never reach it.
struct recorder final : quic_stream::listener {
  int events = 0;
  int wants_to_send = 0;
  int budget_freed = 0;
  void on_stream_event(quic_stream&) override { ++events; }
  void on_stream_wants_to_send(quic_stream&) override { ++wants_to_send; }
  void on_send_budget_freed() override { ++budget_freed; }
};

} // namespace

TEST_CASE("quic_stream accepts writes up to its send limit and the connection's budget",
          "[quic_stream][budget]") {
  block_pool pool;
  send_budget budget{100'000, 0, false};
  recorder owner;
  quic_stream a(nullptr, 0, pool, 80'000, budget, owner);
  quic_stream b(nullptr, 4, pool, 80'000, budget, owner);
  const auto data = sequence(90'000);

  CHECK(a.write_some(data) == 80'000); // its own limit
  CHECK(a.write_some(data) == 0);
  CHECK(b.write_some(data) == 20'000); // what the connection has left
  CHECK(budget.used == 100'000);
  CHECK(b.write_some(data) == 0);
  CHECK(budget.starved);
  CHECK(owner.wants_to_send == 2);

  // ngtcp2 takes 30 000 bytes of a and the peer acknowledges them: room for everyone again.
  a.on_written(30'000, false);
  a.on_acked(30'000);
  CHECK(budget.used == 70'000);
  CHECK(owner.budget_freed == 1);
  CHECK_FALSE(budget.starved);
  CHECK(b.write_some(data) == 30'000);
  CHECK(a.tx_buffered() == 50'000);
  CHECK(b.tx_buffered() == 50'000);
}

TEST_CASE("quic_stream gives its share of the budget back when it goes", "[quic_stream][budget]") {
  block_pool pool;
  send_budget budget{1'000'000, 0, false};
  recorder owner;
  {
    quic_stream a(nullptr, 0, pool, 500'000, budget, owner);
    CHECK(a.write_some(sequence(300'000)) == 300'000);
    CHECK(budget.used == 300'000);
  }
  CHECK(budget.used == 0);
  CHECK(pool.in_use() == 0);
}

TEST_CASE("quic_stream takes nothing more after close_write or a STOP_SENDING", "[quic_stream]") {
  block_pool pool;
  send_budget budget{1'000'000, 0, false};
  recorder owner;
  quic_stream a(nullptr, 0, pool, 500'000, budget, owner);
  CHECK(a.write_some(sequence(10)) == 10);
  a.close_write();
  CHECK(a.write_some(sequence(10)) == 0);
  quic_stream b(nullptr, 4, pool, 500'000, budget, owner);
  b.on_write_shut(); // ngtcp2 refused a write: the peer sent STOP_SENDING
  CHECK(b.send_stopped() == std::optional<detour::app_code>(0));
  CHECK(b.write_some(sequence(10)) == 0);
  CHECK_FALSE(b.has_pending_send());
}
