// SPDX-License-Identifier: MIT
// Tests of cli/probe_buffer.hpp: the per-stream send buffer keeps bytes at stable addresses
// until they are acknowledged, honours its limit, and hands out exactly the unsent bytes.
#include "probe_buffer.hpp"

#include "probe_pattern.hpp"

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>

#include <array>
#include <vector>

using detour::cli::probe::pattern;
using detour::cli::probe::send_buffer;

namespace {

std::vector<std::uint8_t> unsent_bytes(const send_buffer& b) {
  std::array<std::span<const std::uint8_t>, 64> spans{};
  const std::size_t n = b.unsent(spans);
  std::vector<std::uint8_t> out;
  for (std::size_t i = 0; i < n; ++i) out.insert(out.end(), spans[i].begin(), spans[i].end());
  return out;
}

std::vector<std::uint8_t> data(std::uint64_t offset, std::size_t n) {
  std::vector<std::uint8_t> v(n);
  pattern(3).fill(offset, v);
  return v;
}

} // namespace

TEST_CASE("send_buffer takes no more than its limit", "[probe][buffer]") {
  send_buffer b;
  const auto d = data(0, 1000);
  CHECK(b.append(d, 600) == 600);
  CHECK(b.append(d, 600) == 0);
  CHECK(b.buffered() == 600);
  CHECK(b.append(d, 0) == 0);
  b.mark_sent(600);
  b.acknowledge(0, 100);
  CHECK(b.buffered() == 500);
  CHECK(b.append(d, 600) == 100);
}

TEST_CASE("send_buffer hands out the unsent bytes across chunk edges, in order",
          "[probe][buffer]") {
  const std::size_t piece = GENERATE(1u, 100u, 16'384u, 16'385u, 40'000u);
  send_buffer b;
  std::uint64_t written = 0;
  while (written < 100'000) {
    const auto d = data(written, std::min<std::size_t>(piece, 100'000 - written));
    REQUIRE(b.append(d, 1'000'000) == d.size());
    written += d.size();
  }
  CHECK(unsent_bytes(b) == data(0, 100'000));
  b.mark_sent(20'000);
  CHECK(unsent_bytes(b) == data(20'000, 80'000));
  CHECK(b.unsent_size() == 80'000);
}

TEST_CASE("send_buffer keeps sent bytes at their address until acknowledged", "[probe][buffer]") {
  send_buffer b;
  const auto first = data(0, 20'000);
  b.append(first, 1'000'000);
  std::array<std::span<const std::uint8_t>, 4> spans{};
  REQUIRE(b.unsent(spans) == 2);
  const auto held = spans[0];
  b.mark_sent(20'000);
  // More data and acknowledgements of other bytes must not move what ngtcp2 still holds.
  for (int i = 0; i < 10; ++i) b.append(data(20'000 + i * 5000, 5000), 1'000'000);
  b.acknowledge(0, 10);
  CHECK(std::equal(held.begin(), held.end(), first.begin()));
  CHECK(b.acked() == 10);
}

TEST_CASE("send_buffer acknowledges in order and frees whole chunks only", "[probe][buffer]") {
  send_buffer b;
  b.append(data(0, 50'000), 1'000'000);
  b.mark_sent(50'000);
  b.acknowledge(0, 16'384);
  b.acknowledge(16'384, 1);
  CHECK(b.acked() == 16'385);
  CHECK(b.buffered() == 50'000 - 16'385);
  b.acknowledge(16'385, 50'000 - 16'385);
  CHECK(b.buffered() == 0);
  // Refilled after everything was freed, offsets go on.
  b.append(data(50'000, 10), 1'000'000);
  CHECK(b.end() == 50'010);
  CHECK(unsent_bytes(b) == data(50'000, 10));
}

TEST_CASE("send_buffer never counts acknowledgements past what was sent", "[probe][buffer]") {
  send_buffer b;
  b.append(data(0, 100), 1000);
  b.mark_sent(40);
  b.acknowledge(0, 1000);
  CHECK(b.acked() == 40);
  b.mark_sent(1000);
  CHECK(b.sent() == 100);
}
