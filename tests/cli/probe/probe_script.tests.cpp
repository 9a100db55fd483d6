// SPDX-License-Identifier: MIT
// Tests of cli/probe_script.hpp: the protocol conversations of `detour probe --relay-data
// protocol` are well formed, and a task sends them turn by turn, each turn only once the
// previous ones came back from a pass-through server.
#include "probe_script.hpp"

#include <detour/response.hpp>

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>

#include <numeric>
#include <string>
#include <vector>

using namespace detour::cli::probe;

namespace {

struct recording_io final : task_io {
  std::vector<std::uint8_t> north, south;
  bool north_fin = false, south_fin = false;
  std::size_t write(side s, std::span<const std::uint8_t> bytes) override {
    auto& out = s == side::north ? north : south;
    out.insert(out.end(), bytes.begin(), bytes.end());
    return bytes.size();
  }
  void finish(side s) override { (s == side::north ? north_fin : south_fin) = true; }
  void stop_sending(side, std::uint64_t) override {}
};

std::string text(const std::vector<std::uint8_t>& v, std::size_t from, std::size_t n) {
  return std::string(v.begin() + static_cast<std::ptrdiff_t>(from),
                     v.begin() + static_cast<std::ptrdiff_t>(from + n));
}

} // namespace

TEST_CASE("probe_script: each protocol has a conversation whose turns cover both sides",
          "[probe][script]") {
  const std::string protocol = GENERATE("smtp", "imap", "http_2", "websocket");
  const auto s = protocol_script(protocol);
  REQUIRE(s);
  std::size_t north = 0, south = 0;
  for (std::size_t i = 0; i < s->turns.size(); ++i) {
    CHECK(s->turns[i].bytes > 0);
    if (i > 0) CHECK(s->turns[i].from != s->turns[i - 1].from); // turns alternate
    (s->turns[i].from == side::north ? north : south) += s->turns[i].bytes;
  }
  CHECK(north == s->client.size());
  CHECK(south == s->remote.size());
  CHECK(protocol_script("gopher") == nullptr);
}

TEST_CASE("probe_script: SMTP and IMAP start with the server's greeting, HTTP/2 with the preface",
          "[probe][script]") {
  const auto smtp = protocol_script("smtp");
  CHECK(smtp->turns.front().from == side::south);
  CHECK(text(smtp->remote, 0, 4) == "220 ");
  CHECK(text(smtp->client, 0, 5) == "EHLO ");
  const auto imap = protocol_script("imap");
  CHECK(text(imap->remote, 0, 5) == "* OK ");
  const auto h2 = protocol_script("http_2");
  CHECK(h2->turns.front().from == side::north);
  CHECK(text(h2->client, 0, 24) == "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  // The first frame after the preface is SETTINGS (type 4) on stream 0.
  CHECK(h2->client[24 + 3] == 0x04);
  const auto ws = protocol_script("websocket");
  CHECK(ws->client[0] == 0x81);          // FIN, text
  CHECK((ws->client[1] & 0x80) == 0x80); // client frames are masked (RFC 6455 §5.3)
  CHECK(ws->remote[0] == 0x81);
  CHECK((ws->remote[1] & 0x80) == 0); // server frames are not
}

TEST_CASE("g3_task sends a script turn by turn, each after the previous ones were echoed",
          "[probe][script][task]") {
  task_plan p;
  p.protocol = "smtp";
  p.script = protocol_script("smtp");
  p.client_bytes = p.script->client.size();
  p.remote_bytes = p.script->remote.size();
  g3_task t(p, 0);
  recording_io io;
  t.start(io, 0);
  const std::size_t north_header = io.north.size();
  const auto a = detour::encode_response(0, detour::action::proceed);
  t.on_data(io, side::north, a, false, 1);
  const std::size_t south_header = io.south.size() - p.script->turns[0].bytes;

  std::size_t north_sent = 0, south_sent = 0, north_back = 0, south_back = 0;
  for (std::size_t i = 0; i < p.script->turns.size(); ++i) {
    const relay_turn& turn = p.script->turns[i];
    INFO("turn " << i);
    (turn.from == side::north ? north_sent : south_sent) += turn.bytes;
    // This turn is out, the next one not yet.
    REQUIRE(io.north.size() == north_header + north_sent);
    REQUIRE(io.south.size() == south_header + south_sent);
    // The pass-through echo of this turn.
    if (turn.from == side::north) {
      const std::vector<std::uint8_t> back(
          io.north.begin() + static_cast<std::ptrdiff_t>(north_header + north_back),
          io.north.end());
      north_back = north_sent;
      t.on_data(io, side::north, back, false, 2);
    } else {
      const std::vector<std::uint8_t> back(
          io.south.begin() + static_cast<std::ptrdiff_t>(south_header + south_back),
          io.south.end());
      south_back = south_sent;
      t.on_data(io, side::south, back, false, 2);
    }
  }
  CHECK(text(io.north, north_header, 5) == "EHLO ");
  CHECK(io.north_fin); // everything came back: g3proxy's close begins
  CHECK(io.south_fin);
  t.on_data(io, side::north, {}, true, 3);
  CHECK(t.done());
  CHECK(t.result().ok());
  CHECK(t.result().north_echoed == p.client_bytes);
}

TEST_CASE("g3_task reports a script byte that comes back changed", "[probe][script][task]") {
  task_plan p;
  p.script = protocol_script("imap");
  p.client_bytes = p.script->client.size();
  p.remote_bytes = p.script->remote.size();
  g3_task t(p, 0);
  recording_io io;
  t.start(io, 0);
  const auto a = detour::encode_response(0, detour::action::proceed);
  t.on_data(io, side::north, a, false, 1);
  std::vector<std::uint8_t> greeting(p.script->remote.begin(),
                                     p.script->remote.begin() +
                                         static_cast<std::ptrdiff_t>(p.script->turns[0].bytes));
  greeting[2] = 'X'; // "* XK"
  t.on_data(io, side::south, greeting, false, 2);
  CHECK(t.done());
  CHECK(t.result().error == failure::data_mismatch);
  CHECK(t.result().detail.find("offset 2") != std::string::npos);
}
