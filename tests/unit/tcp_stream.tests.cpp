// SPDX-License-Identifier: MIT
// Tests for detour/posix/tcp_stream.hpp over loopback TCP: the socket adapter honours the stream
// concept's contract (order, FIN, resets, bounded buffering) and runs the relay unchanged.
// Every wait is a poll(2) with a deadline; nothing sleeps.
#include <detour/posix/tcp_stream.hpp>

#include <detour/io/relay.hpp>

#include "support/stream_harness.hpp"

#include <catch2/catch_test_macros.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <system_error>
#include <thread>

using detour::posix::poller;
using detour::posix::tcp_listener;
using detour::posix::tcp_options;
using detour::posix::tcp_stream;
using detour::test::random_bytes;
using detour::test::reader;
using detour::test::writer;
using namespace std::chrono_literals;

namespace {

// A connected pair over loopback: {client end, server end}.
struct tcp_pair {
  tcp_stream client;
  tcp_stream server;
};

std::optional<tcp_pair> connect_pair(const char* ip, const tcp_options& options = {}) {
  std::error_code ec;
  auto listener = tcp_listener::listen(ip, 0, ec);
  if (ec) return std::nullopt;
  REQUIRE(listener.port() != 0);
  auto client = detour::posix::connect(ip, listener.port(), ec, options);
  REQUIRE_FALSE(ec);
  REQUIRE(client);
  poller p;
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < deadline) {
    auto accepted = listener.accept(ec, options);
    REQUIRE_FALSE(ec);
    if (accepted) return tcp_pair{std::move(*client), std::move(*accepted)};
    (void)p.wait({}, &listener, 100ms, ec);
  }
  FAIL("accept timed out");
  return std::nullopt;
}

// Polls and steps until `done()` holds; fails after five seconds.
template <class Step, class Done>
void run_until(std::span<tcp_stream* const> streams, Step&& step, Done&& done) {
  poller p;
  std::error_code ec;
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  for (;;) {
    step();
    if (done()) return;
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    (void)p.wait(streams, nullptr, 50ms, ec);
    REQUIRE_FALSE(ec);
  }
}

} // namespace

TEST_CASE("tcp_stream carries bytes both ways in order and reports the peer's FIN",
          "[tcp_stream][posix]") {
  auto pair = connect_pair("127.0.0.1");
  REQUIRE(pair);
  const auto up = random_bytes(300'000, 1);
  const auto down = random_bytes(200'000, 2);
  writer w_up{up}, w_down{down};
  reader r_up, r_down;
  std::array<tcp_stream*, 2> streams{&pair->client, &pair->server};
  run_until(
      streams,
      [&] {
        w_up.pump(pair->client);
        w_down.pump(pair->server);
        r_up.pump(pair->server);
        r_down.pump(pair->client);
      },
      [&] { return r_up.ended(pair->server) && r_down.ended(pair->client); });
  CHECK(r_up.count == up.size());
  CHECK(r_up.hash.value == detour::test::hash_of(up));
  CHECK(r_down.hash.value == detour::test::hash_of(down));
  CHECK(pair->server.at_eof());
  CHECK_FALSE(pair->server.receive_reset());
  CHECK(pair->client.finished());
  CHECK(pair->server.finished());
  CHECK_FALSE(pair->client.last_error());
}

TEST_CASE("tcp_stream never buffers more than its receive buffer", "[tcp_stream][posix]") {
  auto pair = connect_pair("127.0.0.1", tcp_options{.receive_buffer = 1000});
  REQUIRE(pair);
  const auto data = random_bytes(100'000, 3);
  writer w{data};
  reader r;
  std::array<tcp_stream*, 2> streams{&pair->client, &pair->server};
  run_until(
      streams,
      [&] {
        w.pump(pair->client);
        REQUIRE(pair->server.readable().size() <= 1000);
        // Read only part of what is there, so the buffer really fills up.
        const auto view = pair->server.readable();
        const auto take = view.size() < 2 ? view.size() : view.size() / 2;
        r.hash.add(view.first(take));
        r.count += take;
        pair->server.consume(take);
      },
      [&] { return r.ended(pair->server); });
  CHECK(r.count == data.size());
  CHECK(r.hash.value == detour::test::hash_of(data));
}

TEST_CASE("tcp_stream runs an echo relay unchanged", "[tcp_stream][posix][relay]") {
  auto pair = connect_pair("127.0.0.1", tcp_options{.receive_buffer = 4096});
  REQUIRE(pair);
  detour::io::relay echo(pair->server, pair->server, detour::stream_kind::south,
                         detour::io::relay_options{.window = 1500});
  const auto data = random_bytes(500'000, 4);
  writer w{data};
  reader r;
  std::array<tcp_stream*, 2> streams{&pair->client, &pair->server};
  run_until(
      streams,
      [&] {
        w.pump(pair->client);
        echo.step();
        REQUIRE(echo.in_flight() <= 1500);
        r.pump(pair->client);
      },
      [&] { return r.ended(pair->client); });
  CHECK(echo.state() == detour::io::relay_state::finished);
  CHECK(r.count == data.size());
  CHECK(r.hash.value == detour::test::hash_of(data));
}

TEST_CASE("tcp_stream reset_write resets the connection and the peer sees it",
          "[tcp_stream][posix][reset]") {
  auto pair = connect_pair("127.0.0.1");
  REQUIRE(pair);
  pair->server.reset_write(9);
  CHECK(pair->server.receive_reset() == std::optional<detour::app_code>(9));
  CHECK(pair->server.send_stopped() == std::optional<detour::app_code>(9));
  CHECK_FALSE(pair->server.is_open());
  std::array<tcp_stream*, 1> streams{&pair->client};
  run_until(
      streams, [] {}, [&] { return pair->client.receive_reset().has_value(); });
  CHECK(pair->client.receive_reset() == std::optional<detour::app_code>(0)); // TCP has no codes
  CHECK(pair->client.send_stopped().has_value());
}

TEST_CASE("tcp_stream reports send_stopped when the peer is gone", "[tcp_stream][posix][reset]") {
  auto pair = connect_pair("127.0.0.1");
  REQUIRE(pair);
  pair->server = tcp_stream{}; // closes the server's socket
  const auto data = random_bytes(64 * 1024, 5);
  std::array<tcp_stream*, 1> streams{&pair->client};
  run_until(
      streams, [&] { (void)pair->client.write_some(data); },
      [&] { return pair->client.send_stopped().has_value(); });
  CHECK(pair->client.write_some(data) == 0);
}

TEST_CASE("tcp_stream works over IPv6 loopback", "[tcp_stream][posix]") {
  auto pair = connect_pair("::1");
  if (!pair) SKIP("no IPv6 loopback on this machine");
  const auto data = random_bytes(1000, 6);
  writer w{data};
  reader r;
  std::array<tcp_stream*, 2> streams{&pair->client, &pair->server};
  run_until(
      streams,
      [&] {
        w.pump(pair->client);
        r.pump(pair->server);
      },
      [&] { return r.ended(pair->server); });
  CHECK(r.hash.value == detour::test::hash_of(data));
}

TEST_CASE("tcp_listener and connect refuse what is not a numeric address", "[tcp_stream][posix]") {
  std::error_code ec;
  const auto l = tcp_listener::listen("localhost", 0, ec);
  CHECK(ec == std::errc::invalid_argument);
  CHECK_FALSE(l.is_open());
  CHECK_FALSE(detour::posix::connect("not an address", 1, ec));
  CHECK(ec == std::errc::invalid_argument);
}

TEST_CASE("poller waits for the event under a timeout longer than poll(2) takes",
          "[tcp_stream][posix][poller]") {
  auto pair = connect_pair("127.0.0.1");
  REQUIRE(pair);
  // 2^32 + 1 ms: cut to an int as it was, the wait lasted 1 ms and saw nothing.
  const std::chrono::milliseconds long_wait{(std::int64_t{1} << 32) + 1};
  std::thread late([&] {
    std::this_thread::sleep_for(50ms); // the data comes after a moment, not before the wait
    const std::uint8_t byte = 'x';
    (void)pair->client.write_some({&byte, 1});
  });
  poller p;
  std::error_code ec;
  std::array<tcp_stream*, 1> streams{&pair->server};
  const auto r = p.wait(streams, nullptr, long_wait, ec);
  late.join();
  CHECK_FALSE(ec);
  CHECK(r.ready == 1);
}
