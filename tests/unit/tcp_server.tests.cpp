// SPDX-License-Identifier: MIT
// Tests for detour/posix/tcp_server.hpp: a g3proxy-like client (io::client_task over loopback
// TCP) against the poll-driven TCP server with a policy and an inspection hook, as a user would
// try inspection logic without QUIC. Waits are poll(2) with deadlines; nothing sleeps.
#include <detour/posix/tcp_server.hpp>

#include <detour/io/client_task.hpp>

#include "support/stream_harness.hpp"
#include "support/tasks.hpp"

#include <catch2/catch_test_macros.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <string>
#include <string_view>
#include <vector>

using namespace std::chrono_literals;
using detour::action;
using detour::io::client_status;
using detour::posix::tcp_server;
using detour::posix::tcp_stream;

namespace {

// Counts the bytes of each direction it is shown and drops nothing.
struct byte_counter {
  std::uint64_t* north = nullptr;
  std::uint64_t* south = nullptr;
  detour::io::verdict operator()(const detour::io::chunk<detour::task_request>& c) const {
    *(c.side == detour::stream_kind::north ? north : south) += c.bytes.size();
    return detour::io::verdict::pass();
  }
};

struct client_side {
  tcp_stream north, south;
  std::vector<std::uint8_t> north_open, south_open;
  std::optional<detour::io::client_task<tcp_stream>> task;
  detour::test::writer up, down;
  detour::test::reader up_echo, down_echo;
};

} // namespace

TEST_CASE("tcp_server serves g3proxy-like tasks over loopback TCP with a policy and an inspector",
          "[tcp_server][posix]") {
  std::error_code ec;
  auto listener = detour::posix::tcp_listener::listen("127.0.0.1", 0, ec);
  REQUIRE_FALSE(ec);
  std::uint64_t north_bytes = 0, south_bytes = 0;
  std::vector<std::string> upstreams;
  tcp_server<byte_counter> server(
      std::move(listener),
      [&](const detour::task_request& t) {
        upstreams.emplace_back(t.request.upstream.text);
        return t.request.upstream.host == "blocked.example" ? action::block : action::proceed;
      },
      {}, byte_counter{&north_bytes, &south_bytes});

  const auto up = detour::test::random_bytes(100'000, 1);
  const auto down = detour::test::random_bytes(70'000, 2);
  std::array<client_side, 2> clients;
  for (std::uint16_t i = 0; i < clients.size(); ++i) {
    auto& c = clients[i];
    c.north = *detour::posix::connect("127.0.0.1", server.port(), ec);
    c.south = *detour::posix::connect("127.0.0.1", server.port(), ec);
    REQUIRE_FALSE(ec);
    c.north_open = detour::test::north_bytes(
        {.match_id = i, .upstream = i == 0 ? "mail.example.com:25" : "blocked.example:25"});
    c.south_open = detour::test::south_bytes(i);
    c.task.emplace(c.north, c.south, c.north_open, c.south_open, i);
    c.up.rest = up;
    c.down.rest = down;
  }

  detour::posix::poller client_poller;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  auto settled = [&] {
    const bool echoed =
        clients[0].up_echo.ended(clients[0].north) && clients[0].down_echo.ended(clients[0].south);
    return echoed && clients[1].task->status() == client_status::blocked && server.streams() == 0;
  };
  while (!settled()) {
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    for (auto& c : clients) {
      const auto st = c.task->step();
      if (st == client_status::relaying) {
        c.up.pump(c.north);
        c.down.pump(c.south);
        c.up_echo.pump(c.north);
        c.down_echo.pump(c.south);
      }
    }
    server.poll(5ms, ec);
    REQUIRE_FALSE(ec);
    std::vector<tcp_stream*> mine;
    for (auto& c : clients) {
      mine.push_back(&c.north);
      mine.push_back(&c.south);
    }
    (void)client_poller.wait(mine, nullptr, 5ms, ec);
  }
  CHECK(clients[0].up_echo.hash.value == detour::test::hash_of(up));
  CHECK(clients[0].down_echo.hash.value == detour::test::hash_of(down));
  CHECK(north_bytes == up.size());
  CHECK(south_bytes == down.size());
  CHECK(server.answered() == 2);
  std::sort(upstreams.begin(), upstreams.end()); // the two tasks may be answered in any order
  CHECK(upstreams == std::vector<std::string>{"blocked.example:25", "mail.example.com:25"});
  CHECK(server.tasks().pairing().empty());
  CHECK(server.tasks().open_streams() == 0);
}
