// SPDX-License-Identifier: MIT
// Tests for detour/io/memory_pipe.hpp: the in-memory duplex stream the driver tests run on.
// Its bounds, end-of-stream and reset semantics, and fault injection must be exactly as
// documented, or every driver test built on it would prove nothing.
#include <detour/io/memory_pipe.hpp>

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>
#include <catch2/generators/catch_generators_range.hpp>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <span>
#include <vector>

using detour::io::memory_pipe;
using detour::io::pipe_end;
using detour::io::pipe_fault;
using detour::io::pipe_options;

namespace {

std::vector<std::uint8_t> iota_bytes(std::size_t n, std::uint8_t first = 0) {
  std::vector<std::uint8_t> v(n);
  std::iota(v.begin(), v.end(), first);
  return v;
}

std::vector<std::uint8_t> drain(pipe_end& end) {
  std::vector<std::uint8_t> out;
  for (auto view = end.readable(); !view.empty(); view = end.readable()) {
    out.insert(out.end(), view.begin(), view.end());
    end.consume(view.size());
  }
  return out;
}

} // namespace

TEST_CASE("memory_pipe delivers each end's bytes to the other end in order", "[memory_pipe]") {
  memory_pipe pipe;
  const auto up = iota_bytes(100, 0);
  const auto down = iota_bytes(50, 200);
  REQUIRE(pipe.a().write_some(up) == up.size());
  REQUIRE(pipe.b().write_some(down) == down.size());
  CHECK(drain(pipe.b()) == up);
  CHECK(drain(pipe.a()) == down);
  CHECK(pipe.a().written_total() == 100);
  CHECK(pipe.b().consumed_total() == 100);
  CHECK(pipe.a().misuse_count() == 0);
  CHECK(pipe.b().misuse_count() == 0);
}

TEST_CASE("memory_pipe accepts no more than its capacity until the reader consumes",
          "[memory_pipe][backpressure]") {
  memory_pipe pipe(pipe_options{.capacity = 10});
  const auto data = iota_bytes(25);
  std::span<const std::uint8_t> rest = data;
  CHECK(pipe.a().write_some(rest) == 10);
  rest = rest.subspan(10);
  CHECK(pipe.a().write_some(rest) == 0); // window full
  CHECK(pipe.a().buffered_out() == 10);
  pipe.b().consume(4); // credit for 4 bytes
  CHECK(pipe.a().write_some(rest) == 4);
  rest = rest.subspan(4);
  std::vector<std::uint8_t> got;
  while (!rest.empty() || pipe.b().buffered_in() != 0) {
    const auto n = pipe.a().write_some(rest);
    rest = rest.subspan(n);
    const auto v = pipe.b().readable();
    got.insert(got.end(), v.begin(), v.end());
    pipe.b().consume(v.size());
    REQUIRE(pipe.b().buffered_in() <= 10);
  }
  const std::vector<std::uint8_t> expected(data.begin() + 4, data.end());
  CHECK(got == expected);
}

TEST_CASE("memory_pipe chops writes and views to the configured sizes", "[memory_pipe]") {
  memory_pipe pipe(pipe_options{.capacity = 100, .max_write = 3, .max_readable = 2});
  const auto data = iota_bytes(7);
  CHECK(pipe.a().write_some(data) == 3);
  CHECK(pipe.a().write_some(std::span(data).subspan(3)) == 3);
  CHECK(pipe.b().readable().size() == 2);
  pipe.b().consume(2);
  CHECK(pipe.b().readable().size() == 2);
  CHECK(pipe.b().buffered_in() == 4);
}

TEST_CASE("memory_pipe random chunking is reproducible from its seed and loses nothing",
          "[memory_pipe]") {
  const auto seed = GENERATE(1u, 7u, 12345u);
  auto run = [&](std::vector<std::size_t>& sizes) {
    memory_pipe pipe(pipe_options{.capacity = 64, .max_write = 16, .chunk_seed = seed});
    const auto data = iota_bytes(1000);
    std::span<const std::uint8_t> rest = data;
    std::vector<std::uint8_t> got;
    while (got.size() < data.size()) {
      const auto n = pipe.a().write_some(rest);
      if (!rest.empty() && pipe.a().buffered_out() < 64) REQUIRE(n >= 1);
      sizes.push_back(n);
      rest = rest.subspan(n);
      const auto v = pipe.b().readable();
      sizes.push_back(v.size());
      got.insert(got.end(), v.begin(), v.end());
      pipe.b().consume(v.size());
    }
    CHECK(got == data);
  };
  std::vector<std::size_t> first, second;
  run(first);
  run(second);
  CHECK(first == second);
  // The sizes really vary (a constant size would mean the seed is ignored).
  CHECK(std::any_of(first.begin(), first.end(), [&](auto s) { return s != first.front(); }));
}

TEST_CASE("memory_pipe close_write ends the peer's receive side after the data",
          "[memory_pipe][fin]") {
  memory_pipe pipe;
  const auto data = iota_bytes(5);
  REQUIRE(pipe.a().write_some(data) == 5);
  CHECK_FALSE(pipe.b().at_eof());
  pipe.a().close_write();
  CHECK(pipe.b().at_eof());
  CHECK(drain(pipe.b()) == data); // data before the FIN is still delivered
  CHECK(pipe.a().write_closed());
  // The other direction is independent.
  CHECK_FALSE(pipe.a().at_eof());
  CHECK(pipe.b().write_some(data) == 5);
}

TEST_CASE("memory_pipe reset_write reports the code to the peer and drops unread bytes",
          "[memory_pipe][reset]") {
  memory_pipe pipe;
  const auto data = iota_bytes(5);
  REQUIRE(pipe.a().write_some(data) == 5);
  pipe.a().reset_write(42);
  REQUIRE(pipe.b().receive_reset() == std::optional<detour::app_code>(42));
  CHECK(pipe.b().readable().empty());
  CHECK(pipe.a().write_reset() == std::optional<detour::app_code>(42));
  CHECK_FALSE(pipe.a().send_stopped());
}

TEST_CASE("memory_pipe stop_reading makes the peer's writes stop with the code",
          "[memory_pipe][reset]") {
  memory_pipe pipe;
  const auto data = iota_bytes(5);
  REQUIRE(pipe.a().write_some(data) == 5);
  pipe.b().stop_reading(7);
  CHECK(pipe.a().send_stopped() == std::optional<detour::app_code>(7));
  CHECK(pipe.a().write_some(data) == 0);
  CHECK(pipe.b().readable().empty());
  CHECK(pipe.b().read_stopped() == std::optional<detour::app_code>(7));
  CHECK(pipe.a().misuse_count() == 0);
}

TEST_CASE("memory_pipe counts contract violations instead of corrupting state", "[memory_pipe]") {
  memory_pipe pipe;
  const auto data = iota_bytes(3);
  pipe.a().close_write();
  CHECK(pipe.a().write_some(data) == 0);
  CHECK(pipe.a().misuse_count() == 1);
  pipe.b().consume(1); // nothing is readable
  CHECK(pipe.b().misuse_count() == 1);
  CHECK(pipe.b().last_misuse() != nullptr);
}

TEST_CASE("memory_pipe injects the peer's FIN, reset or STOP_SENDING at the chosen operation",
          "[memory_pipe][faults]") {
  const std::size_t at = GENERATE(range<std::size_t>(0, 4));
  memory_pipe pipe;
  pipe.b().inject(at, pipe_fault::reset, 9);
  const auto data = iota_bytes(4);
  REQUIRE(pipe.a().write_some(data) == 4);
  for (std::size_t op = 0; op < at; ++op) {
    CHECK_FALSE(pipe.b().receive_reset());
    (void)pipe.b().readable();
  }
  CHECK_FALSE(pipe.b().fault_fired());
  (void)pipe.b().readable(); // operation number `at`
  CHECK(pipe.b().fault_fired());
  CHECK(pipe.b().receive_reset() == std::optional<detour::app_code>(9));
  CHECK(pipe.b().send_stopped() == std::optional<detour::app_code>(9));
  // The peer that "did" it is not blamed for writing afterwards.
  CHECK(pipe.a().write_some(data) == 0);
  CHECK(pipe.a().misuse_count() == 0);

  memory_pipe fin_pipe;
  fin_pipe.b().inject(0, pipe_fault::fin);
  REQUIRE(fin_pipe.a().write_some(data) == 4);
  CHECK(fin_pipe.b().readable().size() == 4);
  CHECK(fin_pipe.b().at_eof());
  CHECK(fin_pipe.a().write_some(data) == 0);
  CHECK(fin_pipe.a().misuse_count() == 0);

  memory_pipe stop_pipe;
  stop_pipe.b().inject(0, pipe_fault::stop, 3);
  (void)stop_pipe.b().readable();
  CHECK(stop_pipe.b().send_stopped() == std::optional<detour::app_code>(3));
  CHECK_FALSE(stop_pipe.b().receive_reset());
  CHECK_FALSE(stop_pipe.b().at_eof());
}

TEST_CASE("memory_pipe pause_writes shuts the window until released", "[memory_pipe]") {
  memory_pipe pipe;
  const auto data = iota_bytes(3);
  pipe.a().pause_writes(true);
  CHECK(pipe.a().write_some(data) == 0);
  pipe.a().pause_writes(false);
  CHECK(pipe.a().write_some(data) == 3);
}

TEST_CASE("memory_pipe reset returns it to its first state", "[memory_pipe]") {
  memory_pipe pipe(pipe_options{.capacity = 16, .chunk_seed = 3});
  const auto data = iota_bytes(10);
  std::vector<std::size_t> first_sizes;
  first_sizes.push_back(pipe.a().write_some(data));
  pipe.a().close_write();
  pipe.b().inject(100, pipe_fault::reset);
  pipe.b().stop_reading(1);
  pipe.reset();
  CHECK(pipe.b().readable().empty());
  CHECK_FALSE(pipe.b().at_eof());
  CHECK_FALSE(pipe.a().send_stopped());
  CHECK_FALSE(pipe.a().write_closed());
  CHECK(pipe.a().written_total() == 0);
  CHECK(pipe.b().operations() == 1); // the readable() above
  // The same seed gives the same sizes again.
  CHECK(pipe.a().write_some(data) == first_sizes.front());
  CHECK(pipe.a().misuse_count() == 0);
}
