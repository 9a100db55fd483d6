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
