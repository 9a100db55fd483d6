// SPDX-License-Identifier: MIT
// End-to-end tests of `detour serve` with a g3proxy-like client on loopback: handshakes (ALPN,
// mutual TLS), the four protocols, every action, g3proxy's pool (32 connections x 16 tasks),
// large echoes, half-close orders, resets and STOP_SENDING, slow and malformed headers, and a
// drain with tasks in flight.
#include "client.hpp"
#include "results.hpp"

#include <ngtcp2/ngtcp2.h>

#include <catch2/catch_test_macros.hpp>

#include <array>
#include <csignal>

using namespace detour;
using namespace detour::test;
using cli::probe::failure;
using cli::probe::task_plan;
using cli::probe::task_result;

namespace {

constexpr cli::timestamp second = cli::nanoseconds_per_second;

// A connection of its own, established, for scripting streams by hand.
cli::probe::pooled_connection& dial(g3_client& c) {
  auto& conn = c.pool->dial();
  REQUIRE(c.pool->wait_established(conn, cli::monotonic_now() + 10 * second));
  return conn;
}

bool wait(g3_client& c, const std::function<bool()>& done, cli::timestamp timeout = 10 * second) {
  return c.pool->run_until(done, cli::monotonic_now() + timeout);
}

// Runs |p| on |conn| and requires it to pass within |timeout|.
void run_on(g3_client& c, cli::probe::pooled_connection& conn, const cli::probe::task_plan& p,
            cli::timestamp timeout) {
  std::optional<task_result> done;
  c.pool->submit_on(conn, p, [&](const task_result& r) { done = r; });
  REQUIRE(wait(
      c, [&] { return done.has_value(); }, timeout));
  require_all_ok({*done});
}

std::vector<std::uint8_t> bytes_of(std::string_view s) {
  return {s.begin(), s.end()};
}

// A connection the server must refuse in its TLS handshake: it ends with a CONNECTION_CLOSE
// carrying a TLS alert (QUIC CRYPTO_ERROR 0x100-0x1ff, RFC 9001 §4.8), and no task runs on it.
// (In TLS 1.3 the client may count its handshake as done before the server has checked the
// client's certificate, so "established" alone proves nothing.)
void expect_refused(g3_client& c) {
  auto& conn = c.pool->dial();
  REQUIRE(
      c.pool->run_until([&] { return conn.quic->closed(); }, cli::monotonic_now() + 10 * second));
  const auto& why = conn.quic->close_state();
  INFO(cli::probe::describe(why));
  CHECK_FALSE(why.application);
  if (why.by == cli::probe::close_info::cause::peer) {
    CHECK(why.code >= 0x100);
    CHECK(why.code <= 0x1ff);
  }
}

} // namespace

TEST_CASE("serve completes tasks over a handshake that offers no ALPN, like g3proxy's",
          "[e2e][tls]") {
  server_process srv;
  g3_client client(srv);
  require_all_ok(client.run({plan(0), plan(1)}));
  CHECK(client.pool->stats().handshakes >= 1);
  CHECK_FALSE(srv.find_lines({"conn.open", "alpn=-"}).empty());
}

TEST_CASE("serve without --alpn selects the first name a client offers", "[e2e][tls][alpn]") {
  // A QUIC client that offers ALPN closes the connection when none is selected (RFC 9001 §8.1;
  // rustls does), so accepting any offer means selecting one of its names.
  server_process srv;
  auto tc = trusting(srv);
  tc.alpn = {"x-first", "detour"};
  g3_client client(srv, tc);
  auto& conn = dial(client);
  REQUIRE(wait(client, [&] { return conn.quic->confirmed(); }));
  CHECK(conn.quic->alpn() == "x-first");
  run_on(client, conn, plan(0), 30 * second);
  CHECK(srv.wait_for_line({"conn.open", "alpn=x-first"}));
}

TEST_CASE("serve completes a handshake whose ClientHello spans several Initial packets",
          "[e2e][tls]") {
  // rustls' post-quantum key share (X25519MLKEM768, 1,216 bytes) makes g3proxy's ClientHello
  // larger than one 1,200-byte Initial packet. A long ALPN offer does the same here: about
  // 2,500 bytes, three Initial packets, the later ones routed by the client's chosen DCID.
  server_process srv;
  auto tc = trusting(srv);
  for (char c = 'a'; c < 'a' + 12; ++c) tc.alpn.push_back(std::string(200, c));
  g3_client client(srv, tc);
  auto& conn = dial(client);
  REQUIRE(wait(client, [&] { return conn.quic->confirmed(); }));
  CHECK(conn.quic->alpn() == std::string(200, 'a'));
  run_on(client, conn, plan(0), 30 * second);
}

TEST_CASE("serve with --alpn selects an offered name on its list and refuses an offer without one",
          "[e2e][tls][alpn]") {
  server_process srv({"--alpn", "detour,other"});
  SECTION("no ALPN offered: accepted") {
    g3_client client(srv);
    require_all_ok(client.run({plan(0)}));
  }
  SECTION("a matching name offered: selected") {
    auto tc = trusting(srv);
    tc.alpn = {"x-unknown", "other"};
    g3_client client(srv, tc);
    require_all_ok(client.run({plan(0)}));
    CHECK_FALSE(srv.find_lines({"conn.open", "alpn=other"}).empty());
  }
  SECTION("only names off the list offered: refused in the handshake") {
    auto tc = trusting(srv);
    tc.alpn = {"h3"};
    g3_client client(srv, tc);
    expect_refused(client);
    CHECK(srv.wait_for_line({"conn.handshake_failed"}));
  }
}

TEST_CASE("serve with --client-ca accepts a client certificate from that CA and refuses others",
          "[e2e][tls][mtls]") {
  temp_dir certs;
  REQUIRE(std::system(
              (detour_binary() + " cert --out " + certs.path.string() + " >/dev/null").c_str()) ==
          0);
  temp_dir other;
  REQUIRE(std::system(
              (detour_binary() + " cert --out " + other.path.string() + " >/dev/null").c_str()) ==
          0);
  server_process srv({"--cert", (certs.path / "server.pem").string(), "--key",
                      (certs.path / "server.key").string(), "--client-ca",
                      (certs.path / "ca.pem").string()});
  cli::tls_client_config tc;
  tc.ca_file = (certs.path / "ca.pem").string();

  SECTION("a certificate of the CA: accepted") {
    tc.certificate_file = (certs.path / "client.pem").string();
    tc.private_key_file = (certs.path / "client.key").string();
    g3_client client(srv, tc);
    require_all_ok(client.run({plan(0)}));
    CHECK_FALSE(srv.find_lines({"conn.open", "CN=g3proxy"}).empty());
  }
  SECTION("no certificate: refused during the handshake") {
    g3_client client(srv, tc);
    expect_refused(client);
    CHECK(srv.wait_for_line({"conn.handshake_failed"}));
  }
  SECTION("a certificate of another CA: refused during the handshake") {
    tc.certificate_file = (other.path / "client.pem").string();
    tc.private_key_file = (other.path / "client.key").string();
    g3_client client(srv, tc);
    expect_refused(client);
    CHECK(srv.wait_for_line({"conn.handshake_failed"}));
  }
  CHECK(srv.find_lines({"task.end"}).size() <= 1);
}

TEST_CASE("serve logs why a client refused its certificate during the handshake", "[e2e][tls]") {
  temp_dir other;
  REQUIRE(std::system(
              (detour_binary() + " cert --out " + other.path.string() + " >/dev/null").c_str()) ==
          0);
  server_process srv;
  cli::tls_client_config tc;
  tc.ca_file = (other.path / "ca.pem").string(); // not the CA of the server's certificate
  g3_client client(srv, tc);
  expect_refused(client);
  // The client's alert is the only reason there is; it used to show as a bare close code.
  CHECK(srv.wait_for_line({"conn.handshake_failed", "refused by the client: TLS alert"}));
  CHECK(srv.find_lines({"conn.open"}).empty());
}

TEST_CASE("serve relays all four protocols, the WebSocket payload included", "[e2e][tasks]") {
  server_process srv;
  g3_client client(srv);
  auto h2 = plan(0);
  h2.protocol = "http_2";
  auto ws = plan(1);
  ws.protocol = "websocket";
  ws.payload = bytes_of("/websocket\r\nhost: example.com\r\nsec-websocket-protocol: mqtt\r\n");
  auto smtp = plan(2);
  smtp.protocol = "smtp";
  smtp.upstream = "192.0.2.25:25";
  smtp.remote_speaks_first = true; // the greeting comes first, on south, while north is silent
  smtp.ends_first = cli::probe::ender::remote;
  auto imap = plan(3);
  imap.protocol = "imap";
  imap.upstream = "[2001:db8::1]:993";
  imap.username = "alice";
  imap.remote_speaks_first = true;
  require_all_ok(client.run({h2, ws, smtp, imap}));
  for (const char* p :
       {"protocol=http_2", "protocol=websocket", "protocol=smtp", "protocol=imap"}) {
    INFO(p);
    CHECK(srv.find_lines({"task.end", p, "how=finished"}).size() == 1);
  }
  CHECK_FALSE(srv.find_lines({"task.end", "user=alice", "upstream=[2001:db8::1]:993"}).empty());
}

TEST_CASE("serve relays a WebSocket task whose payload g3proxy could not have written, and "
          "warns about it",
          "[e2e][tasks][websocket]") {
  server_process srv;
  g3_client client(srv);
  auto ws = plan(0);
  ws.protocol = "websocket";
  ws.payload = bytes_of("/chat\nhost: example.com\n"); // LF without CR
  auto good = plan(1);
  good.protocol = "websocket";
  good.payload = bytes_of("/chat\r\nhost: example.com\r\n");
  // A pass-through server decides nothing from the payload: both are answered and relayed.
  require_all_ok(client.run({ws, good}));
  CHECK(srv.wait_for_line(
      {"task.bad_payload", "match=", "protocol=websocket", "error=ws_bad_line_ending"}));
  CHECK(srv.find_lines({"task.bad_payload"}).size() == 1);
  CHECK(srv.find_lines({"task.end", "protocol=websocket", "how=finished"}).size() == 2);
}

TEST_CASE("serve answers bypass and block, and takes the empty south stream and STOP_SENDING "
          "that follow calmly",
          "[e2e][tasks][action]") {
  for (const auto& [name, a] : {std::pair{"bypass", action::bypass}, {"block", action::block}}) {
    INFO(name);
    server_process srv({"--action", name});
    g3_client client(srv);
    auto p0 = plan(0);
    auto p1 = plan(1);
    p0.expect = p1.expect = a;
    require_all_ok(client.run({p0, p1}));
    CHECK(srv.wait_for_line({"task.end", std::string("action=") + name}));
    CHECK(srv.find_lines({"warn"}).empty());
    CHECK(srv.find_lines({"error"}).empty());
  }
}

TEST_CASE("serve serves g3proxy's pool: 32 connections each serving 16 tasks", "[e2e][pool]") {
  server_process srv;
  g3_client client(srv, trusting(srv), std::nullopt, 32, 16);
  std::vector<task_plan> plans;
  for (std::uint64_t i = 0; i < 32 * 16; ++i) plans.push_back(plan(i, 32 * 1024));
  require_all_ok(client.run(plans, 120 * second));
  // Each connection served its 16 tasks and was retired by the client with 0 "finished".
  CHECK(srv.wait_for_line({"conn.close", "reason=finished", "tasks=16"}));
  CHECK(srv.find_lines({"task.end", "how=finished"}).size() == 32 * 16);
}

TEST_CASE("serve raises MAX_STREAMS as streams close, so one connection serves any number of tasks",
          "[e2e][pool][credit]") {
  // 100 tasks on one connection need 200 streams: three times the 64 granted at once.
  server_process srv({"--max-streams", "64"});
  g3_client client(srv, trusting(srv), std::nullopt, 1, 100);
  std::vector<task_plan> plans;
  for (std::uint64_t i = 0; i < 100; ++i) plans.push_back(plan(i, 4096));
  require_all_ok(client.run(plans, 60 * second));
  CHECK(srv.find_lines({"task.end", "how=finished"}).size() == 100);
}

TEST_CASE("serve frees an idle connection's task memory and serves its next tasks as before",
          "[e2e][pool][memory]") {
  // One connection, tasks in separate bursts: between bursts it is idle (every stream closed),
  // so the server frees its stream slots and pairing table, and the next burst needs them anew.
  server_process srv({"--log-level", "debug"});
  g3_client client(srv, trusting(srv), std::nullopt, 1, 16);
  // The client's loop runs meanwhile: the server's streams close once their last bytes and
  // FINs are acknowledged.
  const auto idle_after = [&](std::string tasks) {
    return wait(client, [&] { return !srv.find_lines({"conn.idle", "tasks=" + tasks}).empty(); });
  };
  require_all_ok(client.run({plan(0, 4096)}));
  REQUIRE(idle_after("1"));
  require_all_ok(client.run({plan(1, 4096), plan(2, 8192)}));
  REQUIRE(idle_after("3"));
  require_all_ok(client.run({plan(3, 65536)}));
  CHECK(client.pool->stats().handshakes == 1); // the same connection all along
  CHECK(srv.find_lines({"task.end", "how=finished"}).size() == 4);
}

TEST_CASE("serve frees the TLS session after the handshake and refuses TLS data after it",
          "[e2e][tls][memory]") {
  // The server keeps nothing of TLS once the handshake is complete: tasks and a resumed session
  // still work, and a TLS message after the handshake (a KeyUpdate, which RFC 9001 §6 forbids)
  // closes the connection with crypto error 0x10a (unexpected_message, as §6 asks) instead of
  // reaching a TLS session.
  server_process srv;
  g3_client client(srv, trusting(srv), std::nullopt, 1, 16);
  require_all_ok(client.run({plan(0), plan(1)}));
  auto& conn = dial(client); // resumes with the ticket of the first connection's session
  REQUIRE(wait(client, [&] { return conn.quic->confirmed(); }));
  CHECK(conn.quic->resumed());
  CHECK(srv.wait_for_line({"conn.open", "resumed=true"}));
  const std::array<std::uint8_t, 5> key_update{0x18, 0x00, 0x00, 0x01, 0x00};
  REQUIRE(ngtcp2_conn_submit_crypto_data(conn.quic->native(), NGTCP2_ENCRYPTION_LEVEL_1RTT,
                                         key_update.data(), key_update.size()) == 0);
  const auto id = conn.quic->open_stream(nullptr);
  REQUIRE(conn.quic->write_some(id, bytes_of("x")) == 1); // something to send: the CRYPTO frame too
  REQUIRE(wait(client, [&] { return conn.quic->closed(); }));
  const auto& why = conn.quic->close_state();
  INFO(cli::probe::describe(why));
  CHECK(why.by == cli::probe::close_info::cause::peer);
  CHECK_FALSE(why.application);
  CHECK(why.code == NGTCP2_CRYPTO_ERROR + 10);
  CHECK(srv.wait_for_line({"conn.error", "TLS message after the handshake"}));
}

TEST_CASE("serve echoes 64 MiB each way on one task, every byte checked", "[e2e][large]") {
  server_process srv;
  g3_client client(srv);
  auto big = plan(7, 64ull << 20);
  const auto r = client.run({big}, 120 * second);
  require_all_ok(r);
  CHECK(r[0].north_echoed == 64ull << 20);
  CHECK(r[0].south_echoed == 64ull << 20);
  CHECK(srv.wait_for_line({"task.end", "client_bytes=67108864", "remote_bytes=67108864"}));
}

TEST_CASE("serve mirrors half-closes in both of g3proxy's close orders", "[e2e][close]") {
  server_process srv;
  g3_client client(srv);
  auto client_first = plan(0, 200 * 1024);
  client_first.ends_first = cli::probe::ender::client;
  auto remote_first = plan(1, 200 * 1024);
  remote_first.ends_first = cli::probe::ender::remote;
  auto north_only = plan(2, 0);
  north_only.client_bytes = 300 * 1024; // silent remote
  auto south_only = plan(3, 0);
  south_only.remote_bytes = 300 * 1024; // silent client
  south_only.remote_speaks_first = true;
  // The probe fails a task whose stream the server finished before the client finished its
  // side ("closed by detour service" in g3proxy), so success means the order was mirrored.
  require_all_ok(client.run({client_first, remote_first, north_only, south_only}));
}

TEST_CASE("serve resets a stream's partner when the client resets it, and answers STOP_SENDING",
          "[e2e][reset]") {
  server_process srv;
  g3_client client(srv);
  auto& conn = dial(client);
  stream_recorder rec;
  const std::uint16_t match = client.pool->take_match_id(conn);
  auto p = plan(0);
  const auto north_header = *cli::probe::g3_task::north_header(p, match);
  const auto south_hello = *cli::probe::g3_task::south_hello(p, match);

  const std::int64_t north = conn.quic->open_stream(&rec);
  REQUIRE(conn.quic->write_some(north, north_header) == north_header.size());
  REQUIRE(wait(client, [&] { return rec.streams[north].data.size() >= 4; }));
  const std::int64_t south = conn.quic->open_stream(&rec);
  REQUIRE(conn.quic->write_some(south, south_hello) == south_hello.size());
  const auto hello = bytes_of("hello");
  REQUIRE(conn.quic->write_some(south, hello) == hello.size());
  REQUIRE(wait(client, [&] { return rec.streams[south].data.size() == hello.size(); }));

  SECTION("RESET_STREAM on north: north's echo is reset, south is ended as partner_aborted") {
    conn.quic->reset(north, 77);
    REQUIRE(wait(client, [&] { return rec.streams[south].reset.has_value(); }));
    CHECK(*rec.streams[south].reset == 0x100 + static_cast<std::uint64_t>(errc::partner_aborted));
    CHECK(srv.wait_for_line({"task.end", "how=stream_reset"}));
  }
  SECTION("STOP_SENDING on south: south's send side is reset with its code, its echo stops") {
    conn.quic->stop_sending(south, 9);
    // RFC 9000 §3.5: STOP_SENDING is answered with RESET_STREAM carrying the same code.
    REQUIRE(wait(client, [&] { return rec.streams[south].reset.has_value(); }));
    CHECK(*rec.streams[south].reset == 9);
    // More bytes on south are not echoed any more; the task still ends cleanly once the
    // client ends its sides as g3proxy does.
    const auto more = bytes_of("more");
    REQUIRE(conn.quic->write_some(south, more) == more.size());
    conn.quic->finish(south);
    const auto tail = bytes_of("tail");
    REQUIRE(conn.quic->write_some(north, tail) == tail.size());
    conn.quic->finish(north);
    REQUIRE(wait(client, [&] { return rec.streams[north].fin; }));
    CHECK(rec.streams[north].data.size() == 4 + tail.size());
    CHECK(rec.streams[south].data.size() == hello.size());
    CHECK(srv.wait_for_line({"task.end", "match=0"}));
  }
}

TEST_CASE("serve resets a stream whose header does not come in time", "[e2e][timeout]") {
  server_process srv({"--header-timeout", "1s"});
  g3_client client(srv);
  auto& conn = dial(client);
  stream_recorder rec;
  const auto header = *cli::probe::g3_task::north_header(plan(0), client.pool->take_match_id(conn));

  const std::int64_t silent = conn.quic->open_stream(&rec);
  conn.quic->touch(silent); // opened, never written
  const std::int64_t slow = conn.quic->open_stream(&rec);
  REQUIRE(conn.quic->write_some(slow, std::span(header).first(10)) == 10); // then nothing
  const auto t0 = cli::monotonic_now();
  REQUIRE(wait(client, [&] {
    return rec.streams[silent].reset.has_value() && rec.streams[slow].reset.has_value();
  }));
  const std::uint64_t code = 0x100 + static_cast<std::uint64_t>(errc::header_timeout);
  CHECK(*rec.streams[silent].reset == code);
  CHECK(*rec.streams[slow].reset == code);
  CHECK(cli::monotonic_now() - t0 >= 900 * cli::nanoseconds_per_millisecond);
  CHECK(srv.find_lines({"stream.error", "error=header_timeout"}).size() == 2);
  // The connection is still good.
  require_all_ok(client.run({plan(1)}));
}

TEST_CASE("serve resets a malformed header's stream and keeps the connection's other tasks going",
          "[e2e][malformed]") {
  server_process srv;
  g3_client client(srv, trusting(srv), std::nullopt, 1, 16);
  // Tasks running on the pool's one connection...
  std::vector<task_result> results(3);
  std::size_t done = 0;
  for (std::uint64_t i = 0; i < 3; ++i) {
    client.pool->submit(plan(i, 2 << 20), [&, i](const task_result& r) {
      results[i] = r;
      ++done;
    });
  }
  REQUIRE(wait(
      client, [&] { return client.pool->outstanding() == 3 && done == 0; }, 2 * second));
  // ...while a hand-made stream on a second connection and one on a dedicated connection carry
  // garbage. The bad signature's code names the error.
  auto& conn = dial(client);
  stream_recorder rec;
  const std::int64_t bad = conn.quic->open_stream(&rec);
  const auto junk = bytes_of("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n");
  REQUIRE(conn.quic->write_some(bad, junk) == junk.size());
  REQUIRE(wait(client, [&] { return rec.streams[bad].reset.has_value(); }));
  CHECK(*rec.streams[bad].reset == 0x100 + static_cast<std::uint64_t>(errc::bad_signature));
  CHECK(srv.wait_for_line({"stream.error", "error=bad_signature", "match=-"}));

  // A well-formed task on the same connection as the bad stream still works.
  stream_recorder rec2;
  const std::uint16_t match = client.pool->take_match_id(conn);
  const auto header = *cli::probe::g3_task::north_header(plan(9), match);
  const std::int64_t north = conn.quic->open_stream(&rec2);
  REQUIRE(conn.quic->write_some(north, header) == header.size());
  REQUIRE(wait(client, [&] { return rec2.streams[north].data.size() >= 4; }));
  CHECK(rec2.streams[north].data[0] == (match >> 8));
  CHECK(rec2.streams[north].data[1] == (match & 0xff));

  REQUIRE(wait(
      client, [&] { return done == 3; }, 60 * second));
  require_all_ok(results);
}

TEST_CASE("serve drains on SIGTERM: running tasks finish, new connections are refused, exit 0",
          "[e2e][signals][drain]") {
  server_process srv({"--log-level", "debug"});
  g3_client client(srv, trusting(srv), std::nullopt, 2, 16);
  std::vector<task_result> results(4);
  std::size_t done = 0;
  for (std::uint64_t i = 0; i < 4; ++i) {
    client.pool->submit(plan(i, 16 << 20), [&, i](const task_result& r) {
      results[i] = r;
      ++done;
    });
  }
  // Every task answered and none finished: all four are in flight.
  REQUIRE(wait(
      client, [&] { return srv.find_lines({"task.start"}).size() == 4; }, 10 * second));
  REQUIRE(done == 0);
  srv.signal(SIGTERM);
  REQUIRE(srv.wait_for_line({"server.draining"}));
  REQUIRE(wait(
      client, [&] { return done == 4; }, 60 * second));
  require_all_ok(results);

  // A new connection is refused while the server still drains (or it is gone already).
  g3_client late(srv);
  auto& conn = late.pool->dial();
  CHECK_FALSE(late.pool->wait_established(conn, cli::monotonic_now() + 3 * second));

  client.pool->shutdown("done");
  CHECK(srv.wait_exit(40 * second) == 0);
}

TEST_CASE("serve refuses a header over --max-header-size and a payload over --max-payload-size",
          "[e2e][limits]") {
  server_process srv({"--max-header-size", "256", "--max-payload-size", "32"});
  g3_client client(srv);
  auto& conn = dial(client);
  stream_recorder rec;
  // A 300-byte user name makes a header of more than 256 bytes (g3proxy's fit in 536).
  auto long_user = plan(0);
  long_user.username = std::string(300, 'u');
  const auto big_header =
      *cli::probe::g3_task::north_header(long_user, client.pool->take_match_id(conn));
  REQUIRE(big_header.size() > 256);
  const std::int64_t a = conn.quic->open_stream(&rec);
  REQUIRE(conn.quic->write_some(a, big_header) == big_header.size());
  // A WebSocket summary of 33 bytes, one more than allowed.
  auto ws = plan(1);
  ws.protocol = "websocket";
  ws.payload = bytes_of("/chat/12\r\nhost: www.example.com\r\n");
  REQUIRE(ws.payload.size() == 33);
  auto request = *cli::probe::g3_task::north_header(ws, client.pool->take_match_id(conn));
  request.insert(request.end(), ws.payload.begin(), ws.payload.end());
  const std::int64_t b = conn.quic->open_stream(&rec);
  REQUIRE(conn.quic->write_some(b, request) == request.size());
  REQUIRE(wait(client, [&] { return rec.streams[a].reset && rec.streams[b].reset; }));
  CHECK(*rec.streams[a].reset == 0x100 + static_cast<std::uint64_t>(errc::header_too_large));
  CHECK(*rec.streams[b].reset == 0x100 + static_cast<std::uint64_t>(errc::payload_too_large));
  CHECK(rec.streams[a].data.empty()); // refused, not answered
  CHECK(rec.streams[b].data.empty());
  CHECK(srv.wait_for_line({"stream.error", "error=header_too_large"}));
  CHECK(srv.wait_for_line({"stream.error", "error=payload_too_large"}));
  // Within both limits: served.
  auto fits = plan(2);
  fits.protocol = "websocket";
  fits.payload = bytes_of("/chat\r\nhost: example.com\r\n");
  require_all_ok(client.run({fits}));
}

TEST_CASE("serve closes the connections of tasks still running at --drain-timeout and exits 0",
          "[e2e][signals][drain]") {
  server_process srv({"--drain-timeout", "2s"});
  g3_client client(srv);
  auto& conn = dial(client);
  stream_recorder rec;
  const std::uint16_t match = client.pool->take_match_id(conn);
  const auto north_header = *cli::probe::g3_task::north_header(plan(0), match);
  const auto south_hello = *cli::probe::g3_task::south_hello(plan(0), match);
  const std::int64_t north = conn.quic->open_stream(&rec);
  REQUIRE(conn.quic->write_some(north, north_header) == north_header.size());
  REQUIRE(wait(client, [&] { return rec.streams[north].data.size() >= 4; }));
  const std::int64_t south = conn.quic->open_stream(&rec);
  REQUIRE(conn.quic->write_some(south, south_hello) == south_hello.size());
  const auto ping = bytes_of("ping");
  REQUIRE(conn.quic->write_some(south, ping) == ping.size());
  REQUIRE(wait(client, [&] { return rec.streams[south].data.size() == ping.size(); }));
  const auto hello = bytes_of("hello");
  REQUIRE(conn.quic->write_some(north, hello) == hello.size());
  REQUIRE(wait(client, [&] { return rec.streams[north].data.size() == 4 + hello.size(); }));
  // The task stays open: neither side ever ends. The drain cannot wait for it forever.
  const auto t0 = cli::monotonic_now();
  srv.signal(SIGTERM);
  REQUIRE(wait(
      client, [&] { return conn.quic->closed(); }, 15 * second));
  const auto& why = conn.quic->close_state();
  INFO(cli::probe::describe(why));
  CHECK(why.by == cli::probe::close_info::cause::peer);
  CHECK(why.application);
  CHECK(why.code == 0);
  CHECK(why.reason == "shutdown");
  CHECK(cli::monotonic_now() - t0 >= 1500 * cli::nanoseconds_per_millisecond);
  CHECK(srv.wait_for_line({"server.drain_timeout", "connections=1"}));
  // What the cut task relayed still counts (it used to read 0).
  CHECK(srv.wait_for_line({"task.end", "match=0", "client_bytes=5", "remote_bytes=4",
                           "how=\"connection closed by server\""}));
  CHECK(srv.wait_for_line({"conn.close", "bytes_in=9", "bytes_out=9"}));
  CHECK(srv.wait_exit(10 * second) == 0);
}

TEST_CASE("serve resets a continued north stream whose south stream never comes",
          "[e2e][timeout][pairing]") {
  server_process srv({"--pair-timeout", "1s"});
  g3_client client(srv);
  auto& conn = dial(client);
  stream_recorder rec;
  const auto header = *cli::probe::g3_task::north_header(plan(0), client.pool->take_match_id(conn));
  const std::int64_t north = conn.quic->open_stream(&rec);
  REQUIRE(conn.quic->write_some(north, header) == header.size());
  REQUIRE(wait(client, [&] { return rec.streams[north].data.size() >= 4; }));
  // No south hello follows.
  REQUIRE(wait(
      client, [&] { return rec.streams[north].reset.has_value(); }, 5 * second));
  CHECK(*rec.streams[north].reset == 0x100 + static_cast<std::uint64_t>(errc::pairing_expired));
  CHECK(srv.wait_for_line({"stream.error", "error=pairing_expired", "match=0"}));
  CHECK(srv.wait_for_line({"task.end", "how=pairing_expired"}));
}

TEST_CASE("serve refuses at once a south stream whose match id has no task on the connection",
          "[e2e][pairing]") {
  // The default --pair-timeout (30 s) is far beyond the wait: the refusal does not wait for it.
  server_process srv;
  g3_client client(srv);
  auto& conn = dial(client);
  stream_recorder rec;
  const auto hello = *cli::probe::g3_task::south_hello(plan(0), 0xBEEF);
  const std::int64_t south = conn.quic->open_stream(&rec);
  REQUIRE(conn.quic->write_some(south, hello) == hello.size());
  REQUIRE(wait(
      client, [&] { return rec.streams[south].reset && rec.streams[south].stop_sending; },
      5 * second));
  const std::uint64_t code = 0x100 + static_cast<std::uint64_t>(errc::unknown_match_id);
  CHECK(*rec.streams[south].reset == code);
  CHECK(rec.streams[south].data.empty());
  CHECK(srv.wait_for_line(
      {"stream.error", "match=48879", "kind=south", "error=unknown_match_id", "code=297"}));
  // The connection serves a task afterwards.
  run_on(client, conn, plan(1), 30 * second);
}

TEST_CASE("serve resets a second north stream with a match id already in use on the connection",
          "[e2e][pairing]") {
  server_process srv;
  g3_client client(srv);
  auto& conn = dial(client);
  stream_recorder rec;
  const std::uint16_t match = client.pool->take_match_id(conn);
  const auto header = *cli::probe::g3_task::north_header(plan(0), match);
  const std::int64_t first = conn.quic->open_stream(&rec);
  REQUIRE(conn.quic->write_some(first, header) == header.size());
  REQUIRE(wait(client, [&] { return rec.streams[first].data.size() >= 4; }));
  const std::int64_t second_north = conn.quic->open_stream(&rec);
  REQUIRE(conn.quic->write_some(second_north, header) == header.size());
  REQUIRE(wait(client, [&] { return rec.streams[second_north].reset.has_value(); }));
  CHECK(*rec.streams[second_north].reset ==
        0x100 + static_cast<std::uint64_t>(errc::duplicate_match_id));
  CHECK(rec.streams[second_north].data.empty()); // refused before any answer
  CHECK_FALSE(rec.streams[first].reset.has_value());
}

TEST_CASE("serve grows its datagrams as far as path MTU discovery and the client allow",
          "[e2e][mtu]") {
  // Loopback carries any size, so the limits decide: the server's --max-udp-payload and the
  // client's max_udp_payload_size (what the probe sends and accepts alike).
  struct sizes {
    std::vector<std::string> serve_args;
    std::size_t client_max;
    std::size_t above; // the largest datagram received is bigger than this...
    std::size_t most;  // ...and at most this
  };
  for (const sizes& c : {sizes{{}, 8952, 1452, 8952}, // jumbo frames: the default's reach
                         sizes{{}, 1452, 1200, 1452}, // g3proxy's Ethernet-sized default
                         sizes{{}, 1200, 0, 1200},    // a client that takes 1200 only
                         sizes{{"--max-udp-payload", "4000"}, 8952, 1452, 4000},
                         sizes{{"--max-udp-payload", "1200"}, 8952, 0, 1200}}) {
    INFO("serve --max-udp-payload " << (c.serve_args.empty() ? "(default)" : c.serve_args[1])
                                    << ", client " << c.client_max);
    server_process srv(c.serve_args);
    g3_client client(srv);
    client.config.quic.max_udp_payload = c.client_max;
    client.target(srv.address());
    auto& conn = dial(client);
    run_on(client, conn, plan(1, 8ull << 20), 60 * second);
    const std::size_t largest = conn.quic->stats().largest_packet_received;
    CHECK(largest > c.above);
    CHECK(largest <= c.most);
  }
}

TEST_CASE("serve takes part in ECN: it counts the client's marks and marks its own packets",
          "[e2e][ecn]") {
  // RFC 9000 §13.4: each side marks its packets ECT(0) while it validates the path, and keeps
  // marking only if the peer's ACK frames count the marks it received. So a client still
  // marking after the first few packets means the server read the IP header bits and reported
  // them; packets from the server marked beyond its own validation mean the server sends them.
  server_process srv;
  g3_client client(srv);
  client.target(srv.address());
  auto& conn = dial(client);
  run_on(client, conn, plan(1, 4ull << 20), 60 * second);
  const auto& st = conn.quic->stats();
  INFO("client sent by ECN codepoint " << st.ecn_sent[0] << " " << st.ecn_sent[1] << " "
                                       << st.ecn_sent[2] << " " << st.ecn_sent[3] << "; received "
                                       << st.ecn_received[0] << " " << st.ecn_received[1] << " "
                                       << st.ecn_received[2] << " " << st.ecn_received[3]);
  // ngtcp2 validates with 10 marked packets (NGTCP2_ECN_MAX_NUM_VALIDATION_PKTS); 4 MiB each
  // way is thousands of packets.
  CHECK(st.ecn_sent[2] > 100);
  CHECK(st.ecn_received[2] > 100);
  CHECK(st.ecn_received[2] * 10 > st.packets_received * 9);
  CHECK(st.ecn_received[1] + st.ecn_received[3] == 0);
}
