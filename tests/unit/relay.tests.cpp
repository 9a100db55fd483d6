// SPDX-License-Identifier: MIT
// Tests for detour/io/relay.hpp: echo and forward with back-pressure, integrity over megabytes
// with random chunking, half-close mirroring and reset propagation (g3proxy stream detour
// "Closing"), faults at every operation, and the inspection hook.
#include <detour/io/relay.hpp>

#include <detour/io/memory_pipe.hpp>

#include "support/stream_harness.hpp"

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>
#include <catch2/generators/catch_generators_range.hpp>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

using detour::stream_kind;
using detour::io::memory_pipe;
using detour::io::pipe_end;
using detour::io::pipe_fault;
using detour::io::pipe_options;
using detour::io::relay;
using detour::io::relay_options;
using detour::io::relay_state;
using detour::io::verdict;
using detour::test::random_bytes;
using detour::test::reader;
using detour::test::writer;

namespace {

std::span<const std::uint8_t> as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

// Runs a client (writer + reader on pipe end a) against an echo relay on end b until nothing
// moves any more. `check` runs after every step.
template <class Relay, class Check>
void run_echo(pipe_end& client, Relay& echo, writer& w, reader& r, Check&& check) {
  for (int rounds = 0; rounds < 1'000'000; ++rounds) {
    bool progress = w.pump(client);
    const auto before = echo.bytes_in() + echo.bytes_out();
    const auto was = echo.state();
    echo.step();
    progress = progress || echo.bytes_in() + echo.bytes_out() != before || echo.state() != was;
    progress = r.pump(client) || progress;
    check();
    if (!progress) return;
  }
  FAIL("the relay did not settle");
}

} // namespace

TEST_CASE("an echo relay returns every byte in order and finishes only after the peer did",
          "[relay][echo]") {
  memory_pipe pipe(pipe_options{.capacity = 1000}, pipe_options{.capacity = 1000});
  relay echo(pipe.b(), pipe.b(), stream_kind::north);
  const auto data = random_bytes(10'000, 1);
  writer w{data, /*fin_after=*/false};
  reader r;
  r.keep = true;
  run_echo(pipe.a(), echo, w, r, [] {});
  CHECK(r.kept == data);
  // The client has not finished: the echo must not finish its send side (mirror half-closes).
  CHECK(echo.state() == relay_state::running);
  CHECK_FALSE(pipe.b().write_closed());
  pipe.a().close_write();
  CHECK(echo.step() == relay_state::finished);
  CHECK(pipe.b().write_closed());
  CHECK(pipe.a().at_eof());
  CHECK(echo.bytes_in() == data.size());
  CHECK(echo.bytes_out() == data.size());
  CHECK(pipe.b().misuse_count() == 0);
}

TEST_CASE("a forward relay moves bytes from one stream to another", "[relay][forward]") {
  memory_pipe from; // from.a() is the far sender, from.b() the relay's source
  memory_pipe to;   // to.a() is the relay's sink, to.b() the far receiver
  relay fwd(from.b(), to.a(), stream_kind::south);
  const std::string text = "220 mail.example.com ESMTP ready\r\n";
  REQUIRE(from.a().write_some(as_bytes(text)) == text.size());
  from.a().close_write();
  CHECK(fwd.step() == relay_state::finished);
  reader r;
  r.keep = true;
  r.pump(to.b());
  CHECK(std::string(r.kept.begin(), r.kept.end()) == text);
  CHECK(to.b().at_eof());
  // The source's own send side is untouched by a forward.
  CHECK_FALSE(from.b().write_closed());
}

TEST_CASE("a relay waits for room and gives credit back only for bytes the sink accepted",
          "[relay][backpressure]") {
  memory_pipe from(pipe_options{.capacity = 100});
  memory_pipe to(pipe_options{.capacity = 30});
  relay fwd(from.b(), to.a(), stream_kind::north, relay_options{.window = 40});
  const auto data = random_bytes(100, 2);
  REQUIRE(from.a().write_some(data) == 100);
  CHECK(fwd.step() == relay_state::running);
  CHECK(to.a().buffered_out() == 30);     // the sink is full
  CHECK(from.b().consumed_total() == 30); // credit only for what the sink took
  CHECK(from.a().write_some(data) == 30); // ... so the sender can add exactly 30 bytes
  CHECK(fwd.in_flight() == 10);           // the rest of the 40-byte chunk waits
  CHECK(fwd.in_flight() <= fwd.window());
  reader r;
  r.keep = true;
  for (int round = 0; round < 100 && fwd.bytes_out() < 130; ++round) {
    r.pump(to.b());
    fwd.step();
    REQUIRE(fwd.in_flight() <= 40);
    REQUIRE(from.b().consumed_total() == to.a().written_total());
  }
  r.pump(to.b());
  std::vector<std::uint8_t> expected(data.size() + 30); // all of data, then its first 30 bytes
  std::copy(data.begin(), data.end(), expected.begin());
  std::copy_n(data.begin(), 30, expected.begin() + static_cast<std::ptrdiff_t>(data.size()));
  CHECK(r.kept == expected);
  CHECK(fwd.state() == relay_state::running); // no FIN from the sender yet
}

TEST_CASE("relays carry megabytes both ways with random chunking, never holding more than the "
          "window",
          "[relay][integrity]") {
  const auto seed = GENERATE(11u, 22u, 33u);
  const std::size_t window = GENERATE(1u, 1000u, 65536u);
  constexpr std::size_t capacity = 16 * 1024; // the transports' own windows
  // Two streams of one task, echoed by the server: north carries the client's bytes, south the
  // remote's, both at once, each chopped differently.
  const pipe_options opt{
      .capacity = capacity, .max_write = 5000, .max_readable = 7000, .chunk_seed = seed};
  memory_pipe north(opt,
                    pipe_options{.capacity = capacity, .max_write = 3000, .chunk_seed = seed + 1});
  memory_pipe south(pipe_options{.capacity = capacity, .max_write = 9000, .chunk_seed = seed + 2},
                    opt);
  relay north_echo(north.b(), north.b(), stream_kind::north, relay_options{.window = window});
  relay south_echo(south.b(), south.b(), stream_kind::south, relay_options{.window = window});
  const std::size_t size = window == 1 ? 256 * 1024 : 3 * 1024 * 1024 + 17;
  const auto up = random_bytes(size, seed);
  const auto down = random_bytes(size + 1, seed + 100);
  writer w_north{up}, w_south{down};
  reader r_north, r_south;

  auto check = [&](const pipe_end& server, const auto& echo) {
    REQUIRE(echo.in_flight() <= window);
    REQUIRE(server.buffered_in() <= capacity);
    // Credit follows output: nothing was consumed that the sink did not accept.
    REQUIRE(server.consumed_total() == server.written_total());
  };
  for (int round = 0;; ++round) {
    REQUIRE(round < 10'000'000);
    bool progress = w_north.pump(north.a());
    progress = w_south.pump(south.a()) || progress;
    const auto before = north_echo.bytes_out() + south_echo.bytes_out();
    north_echo.step();
    check(north.b(), north_echo);
    south_echo.step();
    check(south.b(), south_echo);
    progress |= north_echo.bytes_out() + south_echo.bytes_out() != before;
    progress = r_north.pump(north.a()) || progress;
    progress = r_south.pump(south.a()) || progress;
    if (!progress) break;
  }
  CHECK(north_echo.state() == relay_state::finished);
  CHECK(south_echo.state() == relay_state::finished);
  CHECK(r_north.count == up.size());
  CHECK(r_south.count == down.size());
  CHECK(r_north.hash.value == detour::test::hash_of(up));
  CHECK(r_south.hash.value == detour::test::hash_of(down));
  CHECK(r_north.ended(north.a()));
  CHECK(r_south.ended(south.a()));
  CHECK(north.b().misuse_count() + south.b().misuse_count() == 0);
}

TEST_CASE("a reset source resets the sink with the same code", "[relay][reset]") {
  memory_pipe pipe;
  relay echo(pipe.b(), pipe.b(), stream_kind::north);
  const auto data = random_bytes(10, 3);
  REQUIRE(pipe.a().write_some(data) == 10);
  pipe.a().reset_write(0x1234);
  CHECK(echo.step() == relay_state::reset);
  CHECK(echo.code() == std::optional<detour::app_code>(0x1234));
  CHECK(pipe.b().write_reset() == std::optional<detour::app_code>(0x1234));
  CHECK(pipe.a().receive_reset() == std::optional<detour::app_code>(0x1234));
}

TEST_CASE("a sink whose peer stops reading makes the relay abandon its source", "[relay][reset]") {
  SECTION("the source still open: STOP_SENDING with the peer's code") {
    memory_pipe pipe;
    relay echo(pipe.b(), pipe.b(), stream_kind::south);
    pipe.a().stop_reading(5);
    CHECK(echo.step() == relay_state::stopped);
    CHECK(echo.code() == std::optional<detour::app_code>(5));
    CHECK(pipe.b().read_stopped() == std::optional<detour::app_code>(5));
    CHECK(pipe.a().send_stopped() == std::optional<detour::app_code>(5));
  }
  SECTION("the source already finished: drained quietly, no STOP_SENDING") {
    // g3proxy's own close: it finishes its south send side, then drops the south receive side.
    memory_pipe pipe(pipe_options{}, pipe_options{.capacity = 4});
    relay echo(pipe.b(), pipe.b(), stream_kind::south);
    const auto data = random_bytes(10, 4);
    REQUIRE(pipe.a().write_some(data) == 10);
    pipe.a().close_write();
    CHECK(echo.step() == relay_state::running); // 4 echoed, the sink is full
    pipe.a().stop_reading(0);
    CHECK(echo.step() == relay_state::stopped);
    CHECK_FALSE(pipe.b().read_stopped());
    CHECK(pipe.b().buffered_in() == 0);
  }
}

TEST_CASE("an echo relay ends cleanly whatever the peer does at any operation", "[relay][faults]") {
  const auto fault = GENERATE(pipe_fault::fin, pipe_fault::reset, pipe_fault::stop);
  const auto data = random_bytes(3000, 5);
  // Count the relay's operations in a run without faults, then fault at every one of them.
  std::size_t total_ops = 0;
  {
    memory_pipe pipe(pipe_options{.capacity = 512, .max_write = 100},
                     pipe_options{.capacity = 512});
    relay echo(pipe.b(), pipe.b(), stream_kind::north, relay_options{.window = 300});
    writer w{data};
    reader r;
    run_echo(pipe.a(), echo, w, r, [] {});
    REQUIRE(echo.state() == relay_state::finished);
    total_ops = pipe.b().operations();
  }
  REQUIRE(total_ops > 20);
  for (std::size_t at = 0; at <= total_ops; ++at) {
    CAPTURE(at);
    memory_pipe pipe(pipe_options{.capacity = 512, .max_write = 100},
                     pipe_options{.capacity = 512});
    pipe.b().inject(at, fault, 77);
    relay echo(pipe.b(), pipe.b(), stream_kind::north, relay_options{.window = 300});
    writer w{data};
    reader r;
    r.keep = true;
    run_echo(pipe.a(), echo, w, r, [&] { REQUIRE(echo.in_flight() <= 300); });
    REQUIRE(pipe.b().misuse_count() == 0);
    // What came back is always a prefix of what was sent.
    REQUIRE(r.kept.size() <= data.size());
    REQUIRE(std::equal(r.kept.begin(), r.kept.end(), data.begin()));
    if (!pipe.b().fault_fired()) {
      REQUIRE(echo.state() == relay_state::finished);
      continue;
    }
    switch (fault) {
    case pipe_fault::fin: // an early FIN is an end like any other: echo what came, then FIN
      REQUIRE(echo.state() == relay_state::finished);
      REQUIRE(pipe.b().write_closed());
      REQUIRE(r.kept.size() == echo.bytes_in());
      break;
    case pipe_fault::reset:
      REQUIRE((echo.state() == relay_state::reset || echo.state() == relay_state::stopped ||
               echo.state() == relay_state::finished));
      REQUIRE(echo.code().value_or(77) == 77);
      break;
    case pipe_fault::stop:
      REQUIRE((echo.state() == relay_state::stopped || echo.state() == relay_state::finished));
      break;
    case pipe_fault::none:
      break;
    }
  }
}

namespace {

// Upper-cases letters: replaces every chunk with a transformed copy kept in the inspector.
struct shout {
  std::vector<std::uint8_t> out;
  std::vector<std::size_t>* sizes = nullptr;
  verdict operator()(const detour::io::chunk<void>& c) {
    if (sizes && !c.last) sizes->push_back(c.bytes.size());
    out.assign(c.bytes.begin(), c.bytes.end());
    for (auto& b : out) b = static_cast<std::uint8_t>(std::toupper(b));
    return verdict::replace(out);
  }
};

// Redacts "secret" across chunk boundaries: keeps back a possible partial match, emits it at
// the end. Shows what the final call is for.
struct redact {
  std::string held;
  std::string out;
  verdict operator()(const detour::io::chunk<void>& c) {
    held.append(reinterpret_cast<const char*>(c.bytes.data()), c.bytes.size());
    for (std::size_t at; (at = held.find("secret")) != std::string::npos;)
      held.replace(at, 6, "******");
    std::size_t keep = 0; // longest suffix that could start "secret"
    if (!c.last)
      for (std::size_t k = std::min<std::size_t>(5, held.size()); k > 0; --k)
        if (std::string_view("secret").substr(0, k) ==
            std::string_view(held).substr(held.size() - k)) {
          keep = k;
          break;
        }
    out = held.substr(0, held.size() - keep);
    held.erase(0, held.size() - keep);
    return verdict::replace(as_bytes(out));
  }
};

// Ends the task when it sees a forbidden word.
struct guard {
  verdict operator()(const detour::io::chunk<void>& c) const {
    const std::string_view s(reinterpret_cast<const char*>(c.bytes.data()), c.bytes.size());
    return s.find("DROP") != std::string_view::npos ? verdict::end(0xdead) : verdict::pass();
  }
};

// Records what it was shown.
struct recorder {
  std::vector<std::uint8_t>* seen;
  std::vector<std::uint64_t>* offsets;
  int* last_calls;
  verdict operator()(const detour::io::chunk<void>& c) const {
    if (c.last) ++*last_calls;
    offsets->push_back(c.offset);
    seen->insert(seen->end(), c.bytes.begin(), c.bytes.end());
    return verdict::pass();
  }
};

} // namespace

TEST_CASE("the inspector sees every byte once, in order, in chunks no larger than the window",
          "[relay][inspect]") {
  memory_pipe pipe(pipe_options{.capacity = 700, .max_write = 300, .chunk_seed = 9});
  std::vector<std::uint8_t> seen;
  std::vector<std::uint64_t> offsets;
  int last_calls = 0;
  relay echo(pipe.b(), pipe.b(), stream_kind::north, relay_options{.window = 256},
             recorder{&seen, &offsets, &last_calls});
  const auto data = random_bytes(20'000, 6);
  writer w{data};
  reader r;
  run_echo(pipe.a(), echo, w, r, [] {});
  CHECK(seen == data);
  CHECK(last_calls == 1);
  REQUIRE(offsets.size() >= 20'000 / 256);
  CHECK(offsets.front() == 0);
  CHECK(offsets.back() == data.size()); // the last call's offset is the end of the data
  CHECK(std::is_sorted(offsets.begin(), offsets.end()));
  CHECK(echo.state() == relay_state::finished);
}

TEST_CASE("an inspector can replace chunks; credit follows the replacement's progress",
          "[relay][inspect]") {
  memory_pipe pipe(pipe_options{.capacity = 64}, pipe_options{.capacity = 10});
  std::vector<std::size_t> sizes;
  relay echo(pipe.b(), pipe.b(), stream_kind::north, relay_options{.window = 16},
             shout{{}, &sizes});
  const std::string text = "hello, detour: every letter comes back upper-case";
  writer w{as_bytes(text)};
  reader r;
  r.keep = true;
  run_echo(pipe.a(), echo, w, r, [&] {
    REQUIRE(echo.in_flight() <= 16);
    // The chunk being replaced is consumed only once its replacement was accepted.
    REQUIRE(pipe.b().consumed_total() <= pipe.b().written_total());
  });
  std::string expected = text;
  for (auto& ch : expected) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  CHECK(std::string(r.kept.begin(), r.kept.end()) == expected);
  CHECK(std::all_of(sizes.begin(), sizes.end(), [](auto s) { return s <= 16; }));
  CHECK(echo.state() == relay_state::finished);
}

TEST_CASE("an inspector can hold bytes back across chunks and release them at the end",
          "[relay][inspect]") {
  const std::size_t split = GENERATE(range<std::size_t>(1, 12));
  memory_pipe pipe(pipe_options{.capacity = 1000, .max_write = split});
  relay echo(pipe.b(), pipe.b(), stream_kind::north, relay_options{}, redact{});
  const std::string text = "AUTH PLAIN secret\r\nsecretsecret sec\r\nbye secre";
  writer w{as_bytes(text)};
  reader r;
  r.keep = true;
  run_echo(pipe.a(), echo, w, r, [] {});
  CHECK(std::string(r.kept.begin(), r.kept.end()) ==
        "AUTH PLAIN ******\r\n************ sec\r\nbye secre");
  CHECK(echo.state() == relay_state::finished);
}

TEST_CASE("an inspector can end the task: both sides are reset with its code", "[relay][inspect]") {
  memory_pipe pipe;
  relay echo(pipe.b(), pipe.b(), stream_kind::north, relay_options{}, guard{});
  const std::string first = "MAIL FROM:<a@example.com>\r\n";
  REQUIRE(pipe.a().write_some(as_bytes(first)) == first.size());
  CHECK(echo.step() == relay_state::running);
  const std::string second = "DROP TABLE\r\n";
  REQUIRE(pipe.a().write_some(as_bytes(second)) == second.size());
  CHECK(echo.step() == relay_state::ended);
  CHECK(echo.code() == std::optional<detour::app_code>(0xdead));
  CHECK(pipe.a().receive_reset() == std::optional<detour::app_code>(0xdead));
  CHECK(pipe.a().send_stopped() == std::optional<detour::app_code>(0xdead));
  reader r;
  r.keep = true;
  r.pump(pipe.a());
  CHECK(r.kept.empty()); // the reset dropped what had not been read
}

TEST_CASE("abort resets both sides once and is ignored after the end", "[relay]") {
  memory_pipe pipe;
  relay echo(pipe.b(), pipe.b(), stream_kind::south);
  echo.abort(3);
  CHECK(echo.state() == relay_state::aborted);
  CHECK(pipe.a().receive_reset() == std::optional<detour::app_code>(3));
  CHECK(pipe.a().send_stopped() == std::optional<detour::app_code>(3));
  echo.abort(4);
  CHECK(echo.code() == std::optional<detour::app_code>(3));
  CHECK(echo.step() == relay_state::aborted);
}
