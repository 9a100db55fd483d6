// SPDX-License-Identifier: MIT
// Tests of cli/probe_task.hpp: one detour task as g3proxy runs it, driven by hand through a
// recording task_io: the exact header bytes, the answer and its match id, the south hello only
// after continue, echo verification, g3proxy's close sequences, and every failure it reports.
#include "probe_task.hpp"

#include "support/vectors.hpp"

#include <detour/request.hpp>
#include <detour/response.hpp>

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>
#include <catch2/generators/catch_generators_range.hpp>

#include <algorithm>
#include <vector>

using namespace detour::cli::probe;

namespace {

constexpr nanoseconds ms = 1'000'000;

/// Records what the task does to its two streams. Writes take at most `room` bytes in all (a
/// send buffer the test drains by raising `room` again).
struct recording_io final : task_io {
  struct stream_log {
    std::vector<std::uint8_t> written;
    bool fin = false;
    bool stopped = false;
    std::uint64_t stop_code = 99;
    std::size_t consumed = 0; // bytes already echoed back by echo()
  };
  stream_log north, south;
  std::size_t room = static_cast<std::size_t>(-1);

  stream_log& of(side s) { return s == side::north ? north : south; }

  std::size_t write(side s, std::span<const std::uint8_t> bytes) override {
    auto& l = of(s);
    REQUIRE_FALSE(l.fin); // nothing may follow a FIN
    const std::size_t n = std::min(bytes.size(), room);
    if (room != static_cast<std::size_t>(-1)) room -= n;
    l.written.insert(l.written.end(), bytes.begin(),
                     bytes.begin() + static_cast<std::ptrdiff_t>(n));
    return n;
  }
  void finish(side s) override {
    REQUIRE_FALSE(of(s).fin); // FIN once
    of(s).fin = true;
  }
  void stop_sending(side s, std::uint64_t code) override {
    of(s).stopped = true;
    of(s).stop_code = code;
  }
};

task_plan small_plan(std::uint64_t bytes = 1000) {
  task_plan p;
  p.client_bytes = bytes;
  p.remote_bytes = bytes;
  p.seed = 42;
  for (std::size_t i = 0; i < 16; ++i) p.task_id.bytes[i] = static_cast<std::uint8_t>(i);
  return p;
}

/// A pass-through server: echoes what was written after |skip| header bytes on each stream.
void echo(g3_task& t, recording_io& io, side s, std::size_t skip, nanoseconds now,
          bool with_fin = false) {
  auto& l = io.of(s);
  if (l.consumed < skip) l.consumed = std::min(skip, l.written.size());
  const std::vector<std::uint8_t> back(l.written.begin() + static_cast<std::ptrdiff_t>(l.consumed),
                                       l.written.end());
  l.consumed = l.written.size();
  t.on_data(io, s, back, with_fin, now);
}

void answer(g3_task& t, recording_io& io, std::uint16_t match_id, detour::action a,
            nanoseconds now = 1 * ms) {
  const auto bytes = detour::encode_response(match_id, a);
  t.on_data(io, side::north, bytes, false, now);
}

std::size_t header_size(const task_plan& p, std::uint16_t match_id) {
  return g3_task::north_header(p, match_id)->size() + p.payload.size();
}

} // namespace

TEST_CASE("g3_task writes g3proxy's north header bytes, payload after it", "[probe][task][wire]") {
  const auto v = detour::test::load_vector(std::string(DETOUR_TEST_VECTORS_DIR) +
                                           "/ppv2/north_tcp4_websocket.hex");
  task_plan p;
  p.client = *detour::parse_socket_address(v.fields.at("client"));
  p.proxy = *detour::parse_socket_address(v.fields.at("proxy"));
  p.upstream = v.fields.at("upstream");
  p.username = v.fields.at("username");
  p.protocol = v.fields.at("protocol");
  const std::vector<std::uint8_t> id{0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1,
                                     0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8};
  std::copy(id.begin(), id.end(), p.task_id.bytes.begin());
  const std::size_t header = std::stoul(v.fields.at("header_size"));
  p.payload.assign(v.bytes.begin() + static_cast<std::ptrdiff_t>(header), v.bytes.end());

  g3_task t(p, 7);
  recording_io io;
  t.start(io, 0);
  // E2 username, E3 task id, E0 upstream, E5 match id, E4 protocol, E6 payload length.
  CHECK(io.north.written == v.bytes);
  CHECK(io.south.written.empty()); // south stays unwritten (and so invisible) until continue
  CHECK_FALSE(io.north.fin);
}

TEST_CASE("g3_task runs a pass-through task and closes as g3proxy does when the client ends",
          "[probe][task][close]") {
  const task_plan p = small_plan(5000);
  g3_task t(p, 3);
  recording_io io;
  t.start(io, 0);
  const std::size_t north_header = header_size(p, 3);
  answer(t, io, 3, detour::action::proceed);

  // The south hello: same addresses, E5 alone.
  const auto hello = detour::decode_south_hello(io.south.written);
  REQUIRE(hello.complete());
  CHECK(hello.value.match_id == 3);
  CHECK(hello.value.client == p.client);
  CHECK(hello.value.proxy == p.proxy);
  // Relay data went out on both streams at once.
  CHECK(io.north.written.size() == north_header + 5000);
  CHECK(io.south.written.size() == hello.consumed + 5000);

  echo(t, io, side::north, north_header, 2 * ms);
  CHECK_FALSE(io.north.fin); // not before both echoes are back
  echo(t, io, side::south, hello.consumed, 3 * ms);
  // Both sends end together; then we wait for north to end.
  CHECK(io.north.fin);
  CHECK(io.south.fin);
  CHECK_FALSE(t.done());
  t.on_data(io, side::north, {}, true, 4 * ms);
  REQUIRE(t.done());
  CHECK(t.result().ok());
  CHECK(io.south.stopped); // south receive dropped with STOP_SENDING(0)
  CHECK(io.south.stop_code == 0);
  CHECK_FALSE(io.north.stopped);
  CHECK(t.result().north_echoed == 5000);
  CHECK(t.result().south_echoed == 5000);
  CHECK(t.result().latency() == 4 * ms);
  CHECK(t.result().answered == 1 * ms);
}

TEST_CASE("g3_task mirrors the close when the remote ends first", "[probe][task][close]") {
  task_plan p = small_plan(10);
  p.ends_first = ender::remote;
  g3_task t(p, 0);
  recording_io io;
  t.start(io, 0);
  answer(t, io, 0, detour::action::proceed);
  const std::size_t hello = detour::decode_south_hello(io.south.written).consumed;
  echo(t, io, side::north, header_size(p, 0), ms);
  echo(t, io, side::south, hello, ms);
  t.on_data(io, side::north, {}, true, 2 * ms); // north first: not what we wait for
  CHECK_FALSE(t.done());
  t.on_data(io, side::south, {}, true, 3 * ms);
  REQUIRE(t.done());
  CHECK(t.result().ok());
  CHECK_FALSE(io.north.stopped); // north had ended already
}

TEST_CASE("g3_task answered bypass or block finishes both sends and writes no south hello",
          "[probe][task][action]") {
  const auto a = GENERATE(detour::action::bypass, detour::action::block);
  task_plan p = small_plan();
  p.expect = a;
  g3_task t(p, 9);
  recording_io io;
  t.start(io, 0);
  answer(t, io, 9, a);
  REQUIRE(t.done());
  CHECK(t.result().ok());
  CHECK(io.south.written.empty()); // an empty south stream, finished at once
  CHECK(io.south.fin);
  CHECK(io.north.fin);
  CHECK(io.north.stopped);
  CHECK(io.south.stopped);
}

TEST_CASE("g3_task reports an unexpected action with what was expected and what came",
          "[probe][task][action]") {
  g3_task t(small_plan(), 1);
  recording_io io;
  t.start(io, 0);
  const auto bytes = detour::encode_response(1, std::uint16_t{7}); // unknown: g3proxy blocks
  t.on_data(io, side::north, bytes, false, ms);
  REQUIRE(t.done());
  CHECK(t.result().error == failure::unexpected_action);
  CHECK(t.result().detail == "expected continue, the server answered block (7)");
  CHECK(io.north.fin);
  CHECK(io.south.fin);
  CHECK(io.south.written.empty());
}

TEST_CASE("g3_task refuses an answer for another match id", "[probe][task][action]") {
  g3_task t(small_plan(), 4);
  recording_io io;
  t.start(io, 0);
  answer(t, io, 5, detour::action::proceed);
  REQUIRE(t.done());
  CHECK(t.result().error == failure::invalid_match_id);
  CHECK(io.south.written.empty());
}

TEST_CASE("g3_task reads an answer that arrives one byte at a time", "[probe][task][action]") {
  g3_task t(small_plan(0), 0x1234);
  recording_io io;
  t.start(io, 0);
  const auto bytes = detour::encode_response(0x1234, detour::action::proceed);
  for (std::uint8_t b : bytes) {
    CHECK(io.south.written.empty());
    t.on_data(io, side::north, std::span<const std::uint8_t>(&b, 1), false, ms);
  }
  CHECK_FALSE(io.south.written.empty());
  CHECK_FALSE(t.done());
}

TEST_CASE("g3_task fails when north ends before the 4-byte answer", "[probe][task][action]") {
  g3_task t(small_plan(), 0);
  recording_io io;
  t.start(io, 0);
  const std::uint8_t two[] = {0, 0};
  t.on_data(io, side::north, two, true, ms);
  REQUIRE(t.done());
  CHECK(t.result().error == failure::response_truncated);
  CHECK(t.result().detail == "the north stream ended after 2 of the 4 answer bytes");
}

TEST_CASE("g3_task waits for the answer exactly the response timeout", "[probe][task][timeout]") {
  task_plan p = small_plan();
  p.response_timeout = 60'000 * ms;
  g3_task t(p, 0);
  recording_io io;
  t.start(io, 10 * ms);
  CHECK(t.next_deadline() == 60'010 * ms);
  t.on_timer(io, 60'009 * ms);
  CHECK_FALSE(t.done());
  t.on_timer(io, 60'010 * ms);
  REQUIRE(t.done());
  CHECK(t.result().error == failure::response_timeout);
  // g3proxy drops a failed task: FIN both (south stays empty), stop reading both.
  CHECK(io.north.fin);
  CHECK(io.south.fin);
  CHECK(io.north.stopped);
  CHECK(io.south.stopped);
}

TEST_CASE("g3_task fails a relay without progress after the idle timeout",
          "[probe][task][timeout]") {
  task_plan p = small_plan(100);
  p.idle_timeout = 5'000 * ms;
  g3_task t(p, 0);
  recording_io io;
  t.start(io, 0);
  answer(t, io, 0, detour::action::proceed, 1 * ms);
  CHECK(t.next_deadline() == 5'001 * ms);
  echo(t, io, side::north, header_size(p, 0), 2'000 * ms); // progress moves the deadline
  CHECK(t.next_deadline() == 7'000 * ms);
  t.on_timer(io, 7'000 * ms);
  REQUIRE(t.done());
  CHECK(t.result().error == failure::relay_timeout);
  CHECK(t.result().detail.find("south 100/100 sent 0 echoed") != std::string::npos);
}

TEST_CASE("g3_task finds the first byte of an echo that differs", "[probe][task][verify]") {
  const std::size_t at = GENERATE(0u, 1u, 7u, 8u, 999u);
  const task_plan p = small_plan(1000);
  g3_task t(p, 0);
  recording_io io;
  t.start(io, 0);
  answer(t, io, 0, detour::action::proceed);
  const std::size_t header = header_size(p, 0);
  std::vector<std::uint8_t> back(io.north.written.begin() + static_cast<std::ptrdiff_t>(header),
                                 io.north.written.end());
  back[at] ^= 0x01;
  t.on_data(io, side::north, back, false, ms);
  REQUIRE(t.done());
  CHECK(t.result().error == failure::data_mismatch);
  CHECK(t.result().where == side::north);
  CHECK(t.result().detail.find("at relay offset " + std::to_string(at) + ":") != std::string::npos);
}

TEST_CASE("g3_task refuses more echo than was sent", "[probe][task][verify]") {
  const task_plan p = small_plan(10);
  g3_task t(p, 0);
  recording_io io;
  t.start(io, 0);
  answer(t, io, 0, detour::action::proceed);
  const std::vector<std::uint8_t> eleven(11, 0);
  t.on_data(io, side::south, eleven, false, ms);
  REQUIRE(t.done());
  CHECK(t.result().error == failure::data_overrun);
  CHECK(t.result().where == side::south);
}

TEST_CASE("g3_task treats a server FIN before ours as closed by the detour service",
          "[probe][task][close]") {
  const side s = GENERATE(side::north, side::south);
  const task_plan p = small_plan(100);
  g3_task t(p, 0);
  recording_io io;
  t.start(io, 0);
  answer(t, io, 0, detour::action::proceed);
  t.on_data(io, s, {}, true, ms);
  REQUIRE(t.done());
  CHECK(t.result().error == failure::closed_early);
  CHECK(t.result().where == s);
}

TEST_CASE("g3_task reports a reset, but not the one answering its own STOP_SENDING",
          "[probe][task][close]") {
  const task_plan p = small_plan(10);
  {
    g3_task t(p, 0);
    recording_io io;
    t.start(io, 0);
    answer(t, io, 0, detour::action::proceed);
    t.on_reset(io, side::south, 0x128, ms);
    REQUIRE(t.done());
    CHECK(t.result().error == failure::stream_reset);
    CHECK(t.result().detail.find("code 0x128 partner_aborted") != std::string::npos);
  }
  {
    g3_task t(p, 0);
    recording_io io;
    t.start(io, 0);
    answer(t, io, 0, detour::action::proceed);
    const std::size_t hello = detour::decode_south_hello(io.south.written).consumed;
    echo(t, io, side::north, header_size(p, 0), ms);
    echo(t, io, side::south, hello, ms);
    t.on_data(io, side::north, {}, true, ms);
    REQUIRE(t.done());
    t.on_reset(io, side::south, 0, 2 * ms); // the answer to STOP_SENDING(0) on south
    CHECK(t.result().ok());
  }
}

TEST_CASE("g3_task treats an early STOP_SENDING as a failure and a late one as harmless",
          "[probe][task][close]") {
  const task_plan p = small_plan(10);
  g3_task early(p, 0);
  recording_io io;
  early.start(io, 0);
  answer(early, io, 0, detour::action::proceed);
  early.on_stop_sending(io, side::north, 0x5, ms);
  REQUIRE(early.done());
  CHECK(early.result().error == failure::stop_sending);

  g3_task late(p, 0);
  recording_io io2;
  late.start(io2, 0);
  answer(late, io2, 0, detour::action::proceed);
  const std::size_t hello = detour::decode_south_hello(io2.south.written).consumed;
  echo(late, io2, side::north, header_size(p, 0), ms);
  echo(late, io2, side::south, hello, ms);
  late.on_stop_sending(io2, side::south, std::nullopt, ms); // after our FIN, all echoed
  CHECK_FALSE(late.done());
  late.on_data(io2, side::north, {}, true, ms);
  CHECK(late.result().ok());
}

TEST_CASE("g3_task keeps north silent until the remote's greeting is echoed (SMTP, IMAP)",
          "[probe][task][relay]") {
  task_plan p = small_plan(300);
  p.remote_speaks_first = true;
  g3_task t(p, 0);
  recording_io io;
  t.start(io, 0);
  const std::size_t header = header_size(p, 0);
  answer(t, io, 0, detour::action::proceed);
  CHECK(io.north.written.size() == header); // no client bytes yet
  const std::size_t hello = detour::decode_south_hello(io.south.written).consumed;
  CHECK(io.south.written.size() == hello + 300);
  echo(t, io, side::south, hello, ms);
  CHECK(io.north.written.size() == header + 300); // now the client speaks
  echo(t, io, side::north, header, ms);
  t.on_data(io, side::north, {}, true, ms);
  CHECK(t.result().ok());
}

TEST_CASE("g3_task resumes writing when the stream makes room", "[probe][task][relay]") {
  task_plan p = small_plan(100'000);
  p.payload.assign(3000, 'w'); // header and payload larger than one write
  g3_task t(p, 0);
  recording_io io;
  io.room = 1000;
  t.start(io, 0);
  CHECK(io.north.written.size() == 1000); // the header and payload go out in pieces too
  const std::size_t header = header_size(p, 0);
  for (int i = 0; i < 10 && io.north.written.size() < header; ++i) {
    io.room = 1000;
    t.on_writable(io, side::north, ms);
  }
  REQUIRE(io.north.written.size() == header);
  io.room = 1000;
  answer(t, io, 0, detour::action::proceed);
  std::size_t rounds = 0;
  for (; rounds < 1000 && !t.done(); ++rounds) {
    const std::size_t hello = std::min<std::size_t>(
        io.south.written.size(), detour::decode_south_hello(io.south.written).consumed);
    echo(t, io, side::north, header, ms);
    echo(t, io, side::south, hello, ms);
    io.room = 1000;
    t.on_writable(io, side::north, ms);
    t.on_writable(io, side::south, ms);
    if (io.north.fin) t.on_data(io, side::north, {}, true, ms);
  }
  CHECK(rounds > 100); // it really was held back
  REQUIRE(t.done());
  CHECK(t.result().ok());
  CHECK(t.result().north_echoed == 100'000);
  CHECK(t.result().south_echoed == 100'000);
}

TEST_CASE("g3_task gives up a header over 536 bytes the way g3proxy does", "[probe][task][wire]") {
  task_plan p = small_plan();
  p.username = std::string(600, 'u');
  CHECK_FALSE(g3_task::north_header(p, 0).has_value());
  g3_task t(p, 0);
  recording_io io;
  t.start(io, 0);
  REQUIRE(t.done());
  CHECK(t.result().error == failure::header_encode);
  CHECK(io.north.written.empty()); // the quiet abort: an empty north stream, finished
  CHECK(io.north.fin);
}

TEST_CASE("g3_task north header stays within 536 bytes at the limit", "[probe][task][wire]") {
  task_plan p = small_plan();
  p.upstream = std::string(400, 'h') + ":443";
  const auto h = g3_task::north_header(p, 0);
  REQUIRE(h.has_value());
  CHECK(h->size() <= detour::g3_max_header_size);
  const auto r = detour::decode_north_request(*h);
  REQUIRE(r.complete());
  CHECK(r.value.upstream.text == p.upstream);
}

TEST_CASE("g3_task survives any sequence of server events and ends exactly once",
          "[probe][task][robustness]") {
  // A seeded random server: answers right or wrong, echoes, garbage, FINs, resets, STOP_SENDING,
  // room to write, and the clock moving on. recording_io REQUIREs that nothing is written after
  // a FIN and that FIN comes once; after done() the task must not touch its streams again.
  const std::uint64_t seed = GENERATE(Catch::Generators::range<std::uint64_t>(1, 301));
  const pattern dice(seed);
  std::uint64_t roll = 0;
  const auto next = [&](unsigned n) { return static_cast<unsigned>(dice.word(roll++) % n); };

  task_plan p = small_plan(next(3) == 0 ? 0 : 1 + next(40'000));
  p.remote_speaks_first = next(2) == 0;
  p.ends_first = next(2) == 0 ? ender::client : ender::remote;
  p.response_timeout = 1000 * ms;
  p.idle_timeout = 1000 * ms;
  g3_task t(p, static_cast<std::uint16_t>(next(3)));
  recording_io io;
  io.room = 1 + next(70'000);
  nanoseconds now = 0;
  t.start(io, now);
  bool was_done = t.done();
  for (int step = 0; step < 200; ++step) {
    const side s = next(2) == 0 ? side::north : side::south;
    now += next(300) * ms;
    const auto before = std::make_pair(io.north.written.size(), io.south.written.size());
    const bool fins_before = io.north.fin || io.south.fin;
    switch (next(9)) {
    case 0:
      answer(t, io, static_cast<std::uint16_t>(next(3)), detour::action_from_wire(next(3)), now);
      break;
    case 1:
    case 2: {
      const std::size_t skip = s == side::north ? header_size(p, t.match_id()) : 0;
      echo(t, io, s, skip, now, next(8) == 0);
      break;
    }
    case 3: {
      std::vector<std::uint8_t> junk(next(64));
      dice.fill(roll++ * 64, junk);
      t.on_data(io, s, junk, next(4) == 0, now);
      break;
    }
    case 4:
      t.on_data(io, s, {}, true, now);
      break;
    case 5:
      t.on_reset(io, s, next(0x200), now);
      break;
    case 6:
      t.on_stop_sending(io, s, next(2) ? std::optional<std::uint64_t>(next(9)) : std::nullopt, now);
      break;
    case 7:
      io.room = next(70'000);
      t.on_writable(io, s, now);
      break;
    default:
      t.on_timer(io, now);
      break;
    }
    if (was_done) {
      // Nothing after the end: no bytes, no FIN.
      CHECK(std::make_pair(io.north.written.size(), io.south.written.size()) == before);
      CHECK((io.north.fin || io.south.fin) == fins_before);
    }
    if (t.done()) {
      was_done = true;
      CHECK(t.next_deadline() == 0);
      CHECK((t.result().ok() || !t.result().detail.empty()));
    } else {
      CHECK(t.next_deadline() > 0);
    }
  }
  // The clock alone ends whatever is left.
  if (!t.done()) t.on_timer(io, now + 2000 * ms);
  CHECK(t.done());
}
