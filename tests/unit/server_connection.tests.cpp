// SPDX-License-Identifier: MIT
// Tests for detour/io/server_connection.hpp (and the server_stream and client_task drivers it is
// run against): whole tasks over the in-memory pipe and loopback TCP through the same
// templates, pairing in every order, deadlines, resets and FINs at every operation, and seeded
// random interleavings of many tasks per connection (g3proxy stream detour "One task",
// "Pairing", "Closing").
#include <detour/io/server_connection.hpp>

#include "support/exchange.hpp"
#include "support/stream_harness.hpp"
#include "support/string_makers.hpp"
#include "support/tasks.hpp"

#include <catch2/catch_template_test_macros.hpp>
#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>

#include <array>
#include <cctype>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

using detour::action;
using detour::errc;
using detour::io::client_status;
using detour::io::pipe_fault;
using detour::io::stream_status;
using detour::test::exchange;
using detour::test::memory_net;
using detour::test::random_bytes;
using detour::test::task_plan;
using detour::test::task_spec;
using detour::test::tcp_net;

namespace {

std::vector<std::uint8_t> text(std::string_view s) {
  return {s.begin(), s.end()};
}

template <class Ex>
void check_server_clean(Ex& ex) {
  CHECK(ex.server().pairing().empty());
  CHECK(ex.server().open_streams() == 0);
  CHECK_FALSE(ex.server().next_expiry());
}

} // namespace

TEMPLATE_TEST_CASE("whole tasks end as answered: continue echoes both streams, bypass and block "
                   "close quietly",
                   "[server_connection][task]", memory_net, tcp_net) {
  TestType net;
  exchange<TestType> ex(net, 1'000'000);
  auto& go = ex.add(task_plan{.spec = {.match_id = 0, .protocol = "smtp"},
                              .answer = action::proceed,
                              .up = random_bytes(200'000, 1),
                              .down = random_bytes(150'000, 2)});
  auto& ws = ex.add(task_plan{.spec = {.match_id = 1,
                                       .protocol = "websocket",
                                       .upstream = "chat.example.com:443",
                                       .payload = "/chat\r\nhost: chat.example.com\r\n"},
                              .answer = action::proceed,
                              .up = text("ping"),
                              .down = text("pong")});
  auto& by =
      ex.add(task_plan{.spec = {.match_id = 2, .protocol = "http_2"}, .answer = action::bypass});
  auto& bl = ex.add(task_plan{.spec = {.match_id = 3, .protocol = "imap", .ipv6 = true},
                              .answer = action::block});
  // What the server parsed from the WebSocket task, looked at while its stream is alive.
  std::optional<detour::protocol_kind> ws_protocol;
  std::string ws_payload;
  ex.each_round = [&](auto& e) {
    if (!ws.north_id || ws.north_released) return;
    const auto& driver = e.server().stream(*ws.north_id);
    if (driver.kind() != detour::stream_kind::north ||
        driver.session().state() < detour::session_state::decision)
      return;
    ws_protocol = driver.task()->request.protocol;
    ws_payload.assign(driver.task()->payload.begin(), driver.task()->payload.end());
  };
  ex.run();
  INFO(ex.describe());
  REQUIRE(ex.settled());
  CHECK(ws_protocol == detour::protocol_kind::websocket);
  CHECK(ws_payload == ws.plan.spec.payload);

  for (auto* t : {&go, &ws}) {
    CHECK(t->client->status() == client_status::relaying);
    CHECK(t->client->answer()->decision == action::proceed);
    CHECK(exchange<TestType>::echoes_match(*t));
    CHECK(t->north_end == stream_status::done);
    CHECK(t->south_end == stream_status::done);
  }
  CHECK(by.client->status() == client_status::bypassed);
  CHECK(bl.client->status() == client_status::blocked);
  for (auto* t : {&by, &bl}) {
    CHECK(t->north_end == stream_status::done);
    // The empty south stream finished at once is normal after bypass and block.
    REQUIRE(t->south_id);
    CHECK(t->south_end == stream_status::done);
    CHECK(t->south_error == errc{});
  }
  check_server_clean(ex);
}

TEMPLATE_TEST_CASE("a connection serves 16 overlapping tasks with match ids wrapping at 65536 and "
                   "slow decisions",
                   "[server_connection][reuse]", memory_net, tcp_net) {
  TestType net;
  exchange<TestType> ex(net, 1'000'000);
  std::mt19937 rng(16);
  for (std::uint32_t k = 0; k < 16; ++k) {
    const auto id = static_cast<std::uint16_t>((65528 + k) & 0xFFFF);
    const auto pick = rng() % 4;
    ex.add(task_plan{.spec = {.match_id = id},
                     .answer = pick == 0 ? action::bypass : action::proceed,
                     .up = random_bytes(rng() % 3000, k),
                     .down = random_bytes(rng() % 3000, k + 100),
                     .decide_after = static_cast<int>(rng() % 4),
                     .start_round = static_cast<int>(k / 2)});
  }
  ex.run();
  INFO(ex.describe());
  REQUIRE(ex.settled());
  for (auto& t : ex.tasks()) {
    CAPTURE(t->plan.spec.match_id);
    if (t->plan.answer == action::proceed) {
      CHECK(t->client->status() == client_status::relaying);
      CHECK(exchange<TestType>::echoes_match(*t));
    } else {
      CHECK(t->client->status() == client_status::bypassed);
    }
    CHECK(t->north_end == stream_status::done);
  }
  check_server_clean(ex);
}

TEMPLATE_TEST_CASE("a malformed header fails only its own stream; the connection carries on",
                   "[server_connection][errors]", memory_net, tcp_net) {
  TestType net;
  exchange<TestType> ex(net, 1'000'000);
  auto& good = ex.add(task_plan{
      .spec = {.match_id = 5}, .up = random_bytes(5000, 3), .down = random_bytes(4000, 4)});
  auto& bad = ex.add(task_plan{.spec = {.match_id = 6}});
  bad.north_open[13] = 0x12; // UDP over IPv4: not a detour header
  ex.run();
  INFO(ex.describe());
  REQUIRE(ex.settled());
  CHECK(exchange<TestType>::echoes_match(good));
  CHECK(bad.north_end == stream_status::failed);
  CHECK(bad.north_error == errc::not_tcp);
  CHECK(bad.client->status() == client_status::failed);
  check_server_clean(ex);
}

namespace {

// A server end and a client end of one stream, for tests that drive the API by hand.
struct hand_stream {
  detour::io::memory_pipe pipe;
  detour::io::pipe_end& client() { return pipe.a(); }
  detour::io::pipe_end& server() { return pipe.b(); }
  void send(std::span<const std::uint8_t> bytes) {
    REQUIRE(client().write_some(bytes) == bytes.size());
  }
  std::vector<std::uint8_t> received() {
    detour::test::reader r;
    r.keep = true;
    r.pump(client());
    return r.kept;
  }
};

using conn_type = detour::io::server_connection<detour::io::pipe_end>;

// Opens |north| on |conn| with the north header of |spec| and answers it with continue: the
// task then waits for its south stream.
template <class Connection>
auto proceed_north(Connection& conn, hand_stream& north, const task_spec& spec, std::uint64_t now) {
  north.send(detour::test::north_bytes(spec));
  const auto n = conn.open(north.server(), now);
  REQUIRE(n);
  REQUIRE(conn.step(*n, now) == stream_status::decision);
  REQUIRE(conn.decide(*n, action::proceed, now) == stream_status::active);
  return n;
}

} // namespace

TEST_CASE("server_connection with accept_south_first pairs a south stream that arrives before its "
          "north stream",
          "[server_connection][pairing]") {
  detour::io::server_options<std::uint64_t> options;
  options.accept_south_first = true;
  conn_type conn(100, options);
  hand_stream north, south;
  const auto greeting = text("220 ready\r\n");
  south.send(detour::test::south_bytes(42));
  south.send(greeting);
  const auto s = conn.open(south.server(), 0);
  REQUIRE(s);
  CHECK(conn.step(*s, 0) == stream_status::hello);
  CHECK(south.received().empty()); // nothing echoed before the pairing
  CHECK(conn.pairing().waiting() == 1);

  north.send(detour::test::north_bytes(task_spec{.match_id = 42}));
  const auto n = conn.open(north.server(), 1);
  REQUIRE(n);
  CHECK(conn.step(*n, 1) == stream_status::decision);
  CHECK(conn.decide(*n, action::proceed, 2) == stream_status::active);
  CHECK(conn.partner(*n) == s);
  CHECK(conn.stream(*conn.partner(*n)).transport() == &south.server());
  CHECK(conn.status(*s) == stream_status::active);
  CHECK(south.received() == greeting); // the south echo started with the pairing
  const auto answer = north.received();
  REQUIRE(answer.size() == 4);
  CHECK(detour::decode_response(answer, 42).complete());
  CHECK(conn.stream(*s).task() == conn.stream(*n).task());
}

TEST_CASE("server_connection refuses at once a south stream whose match id has no task on the "
          "connection",
          "[server_connection][pairing]") {
  conn_type conn(100);
  const auto code =
      std::optional<detour::app_code>(detour::io::app_code_for(errc::unknown_match_id));
  SECTION("no north stream with that match id at all") {
    hand_stream south;
    south.send(detour::test::south_bytes(0xBEEF));
    const auto s = conn.open(south.server(), 0);
    CHECK(conn.step(*s, 0) == stream_status::failed);
    CHECK(conn.stream(*s).error() == errc::unknown_match_id);
    // RESET_STREAM and STOP_SENDING with the documented code, nothing echoed, nothing kept.
    CHECK(south.client().receive_reset() == code);
    CHECK(south.client().send_stopped() == code);
    CHECK(south.received().empty());
    CHECK(conn.pairing().empty());
    CHECK_FALSE(conn.next_expiry());
    conn.release(*s);
    CHECK(conn.open_streams() == 0);
  }
  SECTION("its north stream is still waiting for the answer") {
    hand_stream north, south;
    north.send(detour::test::north_bytes(task_spec{.match_id = 3}));
    const auto n = conn.open(north.server(), 0);
    REQUIRE(conn.step(*n, 0) == stream_status::decision);
    south.send(detour::test::south_bytes(3));
    const auto s = conn.open(south.server(), 0);
    CHECK(conn.step(*s, 0) == stream_status::failed);
    CHECK(conn.stream(*s).error() == errc::unknown_match_id);
    // The north request is untouched; its real south, after the answer, pairs.
    CHECK(conn.decide(*n, action::proceed, 1) == stream_status::active);
    hand_stream real;
    real.send(detour::test::south_bytes(3));
    const auto r = conn.open(real.server(), 2);
    CHECK(conn.step(*r, 2) == stream_status::active);
    CHECK(conn.partner(*n) == r);
  }
  SECTION("its north stream was answered bypass") {
    hand_stream north, south;
    north.send(detour::test::north_bytes(task_spec{.match_id = 4}));
    const auto n = conn.open(north.server(), 0);
    REQUIRE(conn.step(*n, 0) == stream_status::decision);
    REQUIRE(conn.decide(*n, action::bypass, 0) == stream_status::active);
    south.send(detour::test::south_bytes(4));
    const auto s = conn.open(south.server(), 1);
    CHECK(conn.step(*s, 1) == stream_status::failed);
    CHECK(conn.stream(*s).error() == errc::unknown_match_id);
    CHECK(conn.status(*n) == stream_status::active); // a refused south aborts no one
  }
  SECTION("the south stream of a north stream that already ended normally still pairs") {
    hand_stream north, south;
    const auto n = proceed_north(conn, north, task_spec{.match_id = 5}, 0);
    (void)north.received();
    north.client().close_write();
    REQUIRE(conn.step(*n, 1) == stream_status::done);
    conn.release(*n);
    south.send(detour::test::south_bytes(5));
    const auto s = conn.open(south.server(), 2);
    CHECK(conn.step(*s, 2) == stream_status::active);
    CHECK(conn.stream(*s).task()->request.match_id == 5);
  }
}

TEST_CASE("server_connection refuses a duplicate match id before answering it",
          "[server_connection][pairing]") {
  conn_type conn(100);
  hand_stream first, second;
  first.send(detour::test::north_bytes(task_spec{.match_id = 8}));
  second.send(detour::test::north_bytes(task_spec{.match_id = 8}));
  const auto a = conn.open(first.server(), 0);
  const auto b = conn.open(second.server(), 0);
  REQUIRE(conn.step(*a, 0) == stream_status::decision);
  REQUIRE(conn.decide(*a, action::proceed, 0) == stream_status::active);
  CHECK(conn.step(*b, 0) == stream_status::failed);
  CHECK(conn.stream(*b).error() == errc::duplicate_match_id);
  CHECK(second.received().empty()); // no answer was sent
  CHECK(second.client().receive_reset() ==
        std::optional<detour::app_code>(detour::io::app_code_for(errc::duplicate_match_id)));
  // The first task is intact and pairs normally.
  hand_stream south;
  south.send(detour::test::south_bytes(8));
  const auto s = conn.open(south.server(), 1);
  CHECK(conn.step(*s, 1) == stream_status::active);
  CHECK(conn.partner(*a) == s);
}

TEST_CASE("server_connection expires a north stream whose south never comes",
          "[server_connection][expiry]") {
  conn_type conn(50);
  hand_stream north;
  const auto n = proceed_north(conn, north, task_spec{.match_id = 1}, 10);
  REQUIRE(conn.next_expiry() == std::optional<std::uint64_t>(60));
  conn.expire(59);
  CHECK(conn.status(*n) == stream_status::active);
  conn.expire(60);
  CHECK(conn.status(*n) == stream_status::failed);
  CHECK(conn.stream(*n).error() == errc::pairing_expired);
  CHECK(north.client().receive_reset() ==
        std::optional<detour::app_code>(detour::io::app_code_for(errc::pairing_expired)));
  CHECK(conn.pairing().empty());
  conn.release(*n);
  CHECK(conn.open_streams() == 0);
}

TEST_CASE("server_connection resets a stream whose header does not complete in time",
          "[server_connection][expiry]") {
  detour::io::server_options<std::uint64_t> options;
  options.header_timeout = 30;
  conn_type conn(1000, options);
  hand_stream slow, quick;
  const auto bytes = detour::test::north_bytes(task_spec{.match_id = 2});
  slow.send(std::span(bytes).first(20));
  const auto a = conn.open(slow.server(), 0);
  CHECK(conn.step(*a, 0) == stream_status::active);
  quick.send(bytes);
  const auto b = conn.open(quick.server(), 5);
  CHECK(conn.step(*b, 5) == stream_status::decision); // complete: no header deadline any more
  CHECK(conn.next_expiry() == std::optional<std::uint64_t>(30));
  conn.expire(30);
  CHECK(conn.status(*a) == stream_status::failed);
  CHECK(conn.stream(*a).error() == errc::header_timeout);
  CHECK(conn.status(*b) == stream_status::decision);
  CHECK_FALSE(conn.next_expiry());
  conn.expire(1'000'000);
  CHECK(conn.status(*b) == stream_status::decision);
}

TEST_CASE("server_connection aborts the partner of a stream the peer reset",
          "[server_connection][reset]") {
  conn_type conn(100);
  hand_stream north, south;
  const auto n = proceed_north(conn, north, task_spec{.match_id = 4}, 0);
  south.send(detour::test::south_bytes(4));
  const auto s = conn.open(south.server(), 0);
  REQUIRE(conn.step(*s, 0) == stream_status::active);
  north.client().reset_write(0x77);
  CHECK(conn.step(*n, 1) == stream_status::failed);
  CHECK(conn.stream(*n).error() == errc::stream_reset);
  CHECK(north.client().receive_reset() == std::optional<detour::app_code>(0x77));
  CHECK(conn.status(*s) == stream_status::failed);
  CHECK(conn.stream(*s).error() == errc::partner_aborted);
  CHECK(south.client().receive_reset() ==
        std::optional<detour::app_code>(detour::io::app_code_for(errc::partner_aborted)));
  CHECK(conn.pairing().empty());
}

TEST_CASE("server_connection keeps a north request alive while its south stream still uses it",
          "[server_connection][lifetime]") {
  conn_type conn(100);
  hand_stream north, south;
  const auto n =
      proceed_north(conn, north, task_spec{.match_id = 4, .upstream = "imap.example.org:993"}, 0);
  south.send(detour::test::south_bytes(4));
  const auto s = conn.open(south.server(), 0);
  REQUIRE(conn.step(*s, 0) == stream_status::active);
  // The north stream ends normally and is released first; the south goes on.
  (void)north.received();
  north.client().close_write();
  REQUIRE(conn.step(*n, 1) == stream_status::done);
  conn.release(*n);
  CHECK(conn.status(*s) == stream_status::active); // a normal end leaves the partner alone
  // A new stream must not take the north's slot while the south's inspector may look at it.
  hand_stream other;
  const auto o = conn.open(other.server(), 2);
  CHECK(o != n);
  CHECK(conn.stream(*s).task()->request.upstream.text == "imap.example.org:993");
  south.client().close_write();
  REQUIRE(conn.step(*s, 3) == stream_status::done);
  conn.release(*s);
  conn.release(*o);
  CHECK(conn.open_streams() == 0);
  CHECK(conn.pairing().empty());
}

TEST_CASE("server_connection holds no storage until a task needs it, gives it back when idle, "
          "and serves the next task after that",
          "[server_connection][memory]") {
  conn_type conn(100);
  CHECK(conn.storage_bytes() == 0); // a new (idle) connection: no slots, no pairing table
  CHECK(conn.pairing().capacity() == 128);
  // One whole task: both streams echo, both end normally, both are released.
  const auto run_task = [&](std::uint16_t match_id, std::uint64_t now) {
    hand_stream north, south;
    const auto n = proceed_north(conn, north, task_spec{.match_id = match_id}, now);
    CHECK(conn.pairing().storage_bytes() > 0);
    south.send(detour::test::south_bytes(match_id));
    const auto s = conn.open(south.server(), now);
    REQUIRE(s);
    REQUIRE(conn.step(*s, now) == stream_status::active);
    REQUIRE(conn.partner(*n) == s);
    CHECK_FALSE(conn.trim()); // streams are open: nothing changes
    CHECK(conn.storage_bytes() > 0);
    north.send(text("a1 login"));
    south.send(text("* ok ready"));
    (void)conn.step(*n, now);
    (void)conn.step(*s, now);
    const auto up = north.received();
    REQUIRE(up.size() == 4 + 8); // the answer, then the echo
    CHECK(up[0] == 0);
    CHECK(up[1] == match_id);
    CHECK(std::vector<std::uint8_t>(up.begin() + 4, up.end()) == text("a1 login"));
    CHECK(south.received() == text("* ok ready"));
    north.client().close_write();
    south.client().close_write();
    REQUIRE(conn.step(*n, now + 1) == stream_status::done);
    REQUIRE(conn.step(*s, now + 1) == stream_status::done);
    conn.release(*n);
    conn.release(*s);
    CHECK(conn.open_streams() == 0);
    CHECK(conn.pairing().empty());
  };
  run_task(0, 0);
  CHECK(conn.trim());
  CHECK(conn.storage_bytes() == 0);
  CHECK(conn.pairing().storage_bytes() == 0);
  CHECK_FALSE(conn.next_expiry());
  // The connection was idle and trimmed; its next tasks allocate again and work as before.
  run_task(1, 10);
  run_task(2, 20);
  CHECK(conn.trim());
  CHECK(conn.storage_bytes() == 0);
}

TEST_CASE("server_connection does not trim while an ended north stream waits for its south",
          "[server_connection][memory]") {
  conn_type conn(100);
  hand_stream north, south;
  const auto n = proceed_north(conn, north, task_spec{.match_id = 9}, 0);
  (void)north.received();
  north.client().close_write();
  REQUIRE(conn.step(*n, 1) == stream_status::done);
  conn.release(*n); // QUIC closed it, but the task stays in the table for its south
  CHECK_FALSE(conn.trim());
  south.send(detour::test::south_bytes(9));
  const auto s = conn.open(south.server(), 2);
  CHECK(conn.step(*s, 2) == stream_status::active);
  CHECK(conn.stream(*s).task()->request.match_id == 9);
  south.client().close_write();
  REQUIRE(conn.step(*s, 3) == stream_status::done);
  conn.release(*s);
  CHECK(conn.trim());
}

TEST_CASE("server_connection refuses streams beyond max_streams", "[server_connection]") {
  detour::io::server_options<std::uint64_t> options;
  options.max_streams = 2;
  conn_type conn(100, options);
  hand_stream a, b, c;
  const auto ia = conn.open(a.server(), 0);
  const auto ib = conn.open(b.server(), 0);
  CHECK(ia);
  CHECK(ib);
  CHECK_FALSE(conn.open(c.server(), 0));
  conn.release(*ia); // released while running: counts as reset
  CHECK(a.client().receive_reset().has_value());
  CHECK(conn.open(c.server(), 0) == ia);
}

namespace {

// Upper-cases the remote's bytes of SMTP tasks and counts every byte it sees.
struct shout_smtp {
  std::uint64_t* seen = nullptr;
  std::vector<std::uint8_t> out{};
  detour::io::verdict operator()(const detour::io::chunk<detour::task_request>& c) {
    *seen += c.bytes.size();
    if (c.side != detour::stream_kind::south || c.task == nullptr ||
        c.task->request.protocol != detour::protocol_kind::smtp)
      return detour::io::verdict::pass();
    out.assign(c.bytes.begin(), c.bytes.end());
    for (auto& b : out) b = static_cast<std::uint8_t>(std::toupper(b));
    return detour::io::verdict::replace(out);
  }
};

} // namespace

TEST_CASE("server_connection runs the inspection hook with the task's request on both streams",
          "[server_connection][inspect]") {
  memory_net net;
  std::uint64_t seen = 0;
  exchange<memory_net, shout_smtp> ex(net, 1'000'000, {}, shout_smtp{&seen});
  auto& smtp = ex.add(task_plan{.spec = {.match_id = 0, .protocol = "smtp"},
                                .up = text("ehlo client.example\r\n"),
                                .down = text("220 mail.example.com esmtp\r\n")});
  auto& imap = ex.add(task_plan{.spec = {.match_id = 1, .protocol = "imap"},
                                .up = text("a1 login\r\n"),
                                .down = text("* ok imap\r\n")});
  smtp.down_r.keep = imap.down_r.keep = smtp.up_r.keep = true;
  ex.run();
  INFO(ex.describe());
  REQUIRE(ex.settled());
  CHECK(std::string(smtp.down_r.kept.begin(), smtp.down_r.kept.end()) ==
        "220 MAIL.EXAMPLE.COM ESMTP\r\n");
  CHECK(std::string(smtp.up_r.kept.begin(), smtp.up_r.kept.end()) == "ehlo client.example\r\n");
  CHECK(std::string(imap.down_r.kept.begin(), imap.down_r.kept.end()) == "* ok imap\r\n");
  CHECK(seen ==
        smtp.plan.up.size() + smtp.plan.down.size() + imap.plan.up.size() + imap.plan.down.size());
}

TEST_CASE("a task ends cleanly whatever the client does at any operation of a server stream",
          "[server_connection][faults]") {
  const auto fault = GENERATE(pipe_fault::fin, pipe_fault::reset, pipe_fault::stop);
  const auto which = GENERATE(detour::stream_kind::north, detour::stream_kind::south);
  auto plan = [] {
    return task_plan{.spec = {.match_id = 3, .payload = "abc"},
                     .up = random_bytes(3000, 5),
                     .down = random_bytes(2000, 6)};
  };
  memory_net net;
  net.client_to_server = {.capacity = 700, .max_write = 300};
  net.server_to_client = {.capacity = 500};
  // A clean run tells how many operations the server end performs.
  std::size_t total = 0;
  {
    exchange<memory_net> ex(net, 1'000'000);
    auto& t = ex.add(plan());
    ex.run();
    INFO(ex.describe());
    REQUIRE(ex.settled());
    REQUIRE(exchange<memory_net>::echoes_match(t));
    total = (which == detour::stream_kind::north ? t.north : t.south)->server().operations();
  }
  REQUIRE(total > 10);
  std::size_t fired = 0, failed = 0;
  for (std::size_t at = 0; at <= total; ++at) {
    CAPTURE(at);
    exchange<memory_net> ex(net, 200); // a south that never comes expires after 200 rounds
    auto& t = ex.add(plan());
    ex.on_start = [&](auto& task) {
      (which == detour::stream_kind::north ? task.north : task.south)
          ->server()
          .inject(at, fault, 9);
    };
    ex.run(20'000);
    INFO(ex.describe());
    REQUIRE(ex.settled());
    auto& end = (which == detour::stream_kind::north ? t.north : t.south)->server();
    REQUIRE(t.north->server().misuse_count() == 0);
    REQUIRE(t.south->server().misuse_count() == 0);
    if (!end.fault_fired()) REQUIRE(exchange<memory_net>::echoes_match(t));
    fired += end.fault_fired() ? 1 : 0;
    failed += t.north_end == stream_status::failed || t.south_end == stream_status::failed;
    // What the client got back is always a prefix of what it sent.
    REQUIRE(t.up_r.count <= t.plan.up.size());
    REQUIRE(t.down_r.count <= t.plan.down.size());
    REQUIRE(ex.server().pairing().empty());
    REQUIRE(ex.server().open_streams() == 0);
  }
  CHECK(fired == total); // every operation index was reached
  // An early FIN is an end like any other (the header was in before the first operation);
  // a reset fails the stream unless it came after the stream's end.
  if (fault == pipe_fault::fin) CHECK(failed == 0);
  if (fault == pipe_fault::reset) CHECK(failed > total / 2);
}

TEST_CASE("many tasks per connection in seeded random interleavings, with random faults",
          "[server_connection][random]") {
  const auto seed = GENERATE(1u, 2u, 3u, 4u);
  std::mt19937 rng(seed);
  memory_net net;
  net.client_to_server = {.capacity = 2048, .max_write = 700, .chunk_seed = seed};
  net.server_to_client = {.capacity = 1500, .max_readable = 900, .chunk_seed = seed + 7};
  exchange<memory_net> ex(net, 300); // a south that never comes expires after 300 rounds
  struct fault_plan {
    bool north;
    std::size_t at;
    pipe_fault fault;
  };
  std::vector<std::optional<fault_plan>> faults;
  for (std::uint32_t k = 0; k < 48; ++k) {
    const auto r = rng() % 10;
    ex.add(task_plan{.spec = {.match_id = static_cast<std::uint16_t>((65520 + k) & 0xFFFF),
                              .protocol = k % 3 ? "smtp" : "http_2"},
                     .answer = r < 7 ? action::proceed : (r < 9 ? action::bypass : action::block),
                     .up = random_bytes(rng() % 6000, seed * 100 + k),
                     .down = random_bytes(rng() % 6000, seed * 200 + k),
                     .decide_after = static_cast<int>(rng() % 6),
                     .start_round = static_cast<int>(rng() % 40)});
    if (rng() % 5 == 0)
      faults.push_back(
          fault_plan{rng() % 2 == 0, rng() % 40, static_cast<pipe_fault>(1 + rng() % 3)});
    else
      faults.push_back(std::nullopt);
  }
  ex.on_start = [&](auto& t) {
    const auto& f = faults[static_cast<std::size_t>(t.plan.spec.match_id - 65520) & 0xFFFF];
    if (f) (f->north ? t.north->server() : t.south->server()).inject(f->at, f->fault, 5);
  };
  ex.run();
  INFO(ex.describe());
  REQUIRE(ex.settled());
  std::size_t clean = 0;
  for (std::size_t i = 0; i < ex.tasks().size(); ++i) {
    auto& t = *ex.tasks()[i];
    CAPTURE(i, t.plan.spec.match_id);
    REQUIRE(t.north->server().misuse_count() == 0);
    REQUIRE(t.south->server().misuse_count() == 0);
    const bool faulted = t.north->server().fault_fired() || t.south->server().fault_fired();
    if (faulted) continue;
    ++clean;
    switch (t.plan.answer) {
    case action::proceed:
      CHECK(t.client->status() == client_status::relaying);
      CHECK(exchange<memory_net>::echoes_match(t));
      CHECK(t.north_end == stream_status::done);
      CHECK(t.south_end == stream_status::done);
      break;
    case action::bypass:
      CHECK(t.client->status() == client_status::bypassed);
      break;
    case action::block:
      CHECK(t.client->status() == client_status::blocked);
      break;
    }
  }
  CHECK(clean >= 24);
  check_server_clean(ex);
}

TEST_CASE("server_connection refuses a second north stream that reached its decision at the same "
          "time",
          "[server_connection][pairing]") {
  conn_type conn(100);
  hand_stream first, second;
  first.send(detour::test::north_bytes(task_spec{.match_id = 12}));
  second.send(detour::test::north_bytes(task_spec{.match_id = 12}));
  const auto a = conn.open(first.server(), 0);
  const auto b = conn.open(second.server(), 0);
  // Both are complete before either is answered: the table cannot tell yet.
  REQUIRE(conn.step(*a, 0) == stream_status::decision);
  REQUIRE(conn.step(*b, 0) == stream_status::decision);
  REQUIRE(conn.decide(*a, action::proceed, 0) == stream_status::active);
  CHECK(conn.decide(*b, action::proceed, 0) == stream_status::failed);
  CHECK(conn.stream(*b).error() == errc::duplicate_match_id);
  CHECK(second.received().empty()); // refused instead of answered
  // A south stream for an id whose task already paired is refused the same way.
  hand_stream south, extra;
  south.send(detour::test::south_bytes(12));
  extra.send(detour::test::south_bytes(12));
  const auto s = conn.open(south.server(), 1);
  const auto x = conn.open(extra.server(), 1);
  CHECK(conn.step(*s, 1) == stream_status::active);
  CHECK(conn.step(*x, 1) == stream_status::failed);
  CHECK(conn.stream(*x).error() == errc::duplicate_match_id);
  CHECK(conn.partner(*a) == s);
}

TEST_CASE("server_connection drops a header deadline wherever the stream sits in the queue",
          "[server_connection][expiry]") {
  detour::io::server_options<std::uint64_t> options;
  options.header_timeout = 10;
  conn_type conn(1000, options);
  std::array<hand_stream, 3> streams;
  std::array<std::optional<conn_type::stream_id>, 3> ids;
  for (std::size_t i = 0; i < 3; ++i) ids[i] = conn.open(streams[i].server(), i);
  // The middle one completes its header first, then the last, then the first.
  for (const std::size_t i : {std::size_t{1}, std::size_t{2}, std::size_t{0}}) {
    streams[i].send(
        detour::test::north_bytes(task_spec{.match_id = static_cast<std::uint16_t>(i)}));
    CHECK(conn.step(*ids[i], 5) == stream_status::decision);
  }
  CHECK_FALSE(conn.next_expiry());
  conn.expire(100);
  for (const auto& id : ids) CHECK(conn.status(*id) == stream_status::decision);
}

namespace {

// Ends the task as soon as the remote sends "QUIT".
struct quit_guard {
  detour::io::verdict operator()(const detour::io::chunk<detour::task_request>& c) const {
    const std::string_view s(reinterpret_cast<const char*>(c.bytes.data()), c.bytes.size());
    return s.find("QUIT") != std::string_view::npos ? detour::io::verdict::end(0x51)
                                                    : detour::io::verdict::pass();
  }
};

} // namespace

TEST_CASE("an inspection hook that ends a task fails both of its streams",
          "[server_connection][inspect]") {
  detour::io::server_connection<detour::io::pipe_end, std::uint64_t, quit_guard> conn(100);
  hand_stream north, south;
  const auto n = proceed_north(conn, north, task_spec{.match_id = 1}, 0);
  south.send(detour::test::south_bytes(1));
  const auto s = conn.open(south.server(), 0);
  REQUIRE(conn.step(*s, 0) == stream_status::active);
  south.send(text("QUIT\r\n"));
  CHECK(conn.step(*s, 1) == stream_status::failed);
  CHECK(conn.stream(*s).error() == errc::task_ended);
  CHECK(south.client().receive_reset() == std::optional<detour::app_code>(0x51));
  CHECK(conn.status(*n) == stream_status::failed);
  CHECK(conn.stream(*n).error() == errc::partner_aborted);
}

TEST_CASE("a bypassed north stream reset by the client instead of finished still ends normally",
          "[server_connection][north]") {
  conn_type conn(100);
  hand_stream north;
  north.send(detour::test::north_bytes(task_spec{.match_id = 2}));
  const auto n = conn.open(north.server(), 0);
  REQUIRE(conn.step(*n, 0) == stream_status::decision);
  REQUIRE(conn.decide(*n, action::bypass, 0) == stream_status::active);
  REQUIRE(north.received().size() == 4);
  north.client().reset_write(0);
  CHECK(conn.step(*n, 1) == stream_status::done);
  CHECK(conn.stream(*n).error() == errc{});
}

TEST_CASE("the state enums have names for logs", "[server_connection][names]") {
  using detour::session_state;
  using detour::io::relay_state;
  for (auto s : {session_state::header, session_state::payload, session_state::decision,
                 session_state::response, session_state::relay, session_state::closing,
                 session_state::finished, session_state::failed})
    CHECK(std::string_view(detour::to_string(s)) != "?");
  for (auto s : {relay_state::running, relay_state::finished, relay_state::stopped,
                 relay_state::reset, relay_state::ended, relay_state::aborted})
    CHECK(std::string_view(detour::io::to_string(s)) != "?");
  for (auto s : {stream_status::active, stream_status::decision, stream_status::hello,
                 stream_status::done, stream_status::failed})
    CHECK(std::string_view(detour::io::to_string(s)) != "?");
  CHECK(std::string_view(detour::to_string(session_state::relay)) == "relay");
  CHECK(std::string_view(detour::io::to_string(stream_status::hello)) == "hello");
}
