// SPDX-License-Identifier: MIT
// Tests for detour/session.hpp: the per-stream machine over every annotated vector at every
// split point, the north decision and response, bypass/block closing, quiet and unexpected
// ends, sticky errors, and the lifetime of the views it hands out (g3proxy stream detour,
// "One task").
#include <detour/session.hpp>

#include "support/expect.hpp"
#include "support/string_makers.hpp"
#include "support/tasks.hpp"
#include "support/vectors.hpp"

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

using detour::action;
using detour::errc;
using detour::session_event;
using detour::session_state;
using detour::stream_kind;
using detour::stream_session;
using detour::test::exact_bytes;
using detour::test::north_bytes;
using detour::test::south_bytes;
using detour::test::task_spec;

namespace {

std::span<const std::uint8_t> as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

// Everything a session's outcome consists of, for comparing one-shot and chunked runs.
struct outcome {
  session_state state;
  errc error;
  std::uint64_t offset;
  std::optional<stream_kind> kind;
  std::uint16_t match_id;
  std::size_t taken;
  std::string upstream;
  std::vector<std::uint8_t> payload;
  friend bool operator==(const outcome&, const outcome&) = default;
};

outcome summary(const stream_session& s, std::size_t taken) {
  return {s.state(),
          s.error(),
          s.error_offset(),
          s.kind(),
          s.match_id(),
          taken,
          std::string(s.task().request.upstream.text),
          {s.task().payload.begin(), s.task().payload.end()}};
}

// Feeds `bytes` in the given pieces as a driver would: offers what is not yet taken, and moves
// on when the session takes nothing more. Each piece lives in its own exactly-sized heap block
// that is freed right after the call, so any view into the caller's bytes would dangle.
outcome feed_in_pieces(stream_session& s, std::span<const std::uint8_t> bytes,
                       const std::vector<std::size_t>& cuts) {
  std::size_t taken = 0, start = 0;
  std::vector<std::uint8_t> pending;
  for (std::size_t i = 0; i <= cuts.size(); ++i) {
    const std::size_t end = i < cuts.size() ? cuts[i] : bytes.size();
    pending.insert(pending.end(), bytes.begin() + static_cast<std::ptrdiff_t>(start),
                   bytes.begin() + static_cast<std::ptrdiff_t>(end));
    start = end;
    const auto piece = std::make_unique<exact_bytes>(pending);
    const auto r = s.feed(*piece);
    REQUIRE(r.consumed <= pending.size());
    taken += r.consumed;
    pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(r.consumed));
  }
  return summary(s, taken);
}

} // namespace

TEST_CASE("stream_session gives the same outcome for every vector whatever the chunking",
          "[session][vectors]") {
  for (const auto& v : detour::test::load_vectors("ppv2")) {
    CAPTURE(v.name);
    stream_session one;
    const auto whole = feed_in_pieces(one, v.bytes, {});
    // What the vector says.
    const auto expectation = v.detour.empty() ? v.expect : v.detour;
    const auto w = detour::test::words(expectation);
    // Fields the vector states, where it states them.
    auto field_is = [&](const char* name, const std::string& value) {
      const auto it = v.fields.find(name);
      if (it != v.fields.end()) CHECK(it->second == value);
    };
    if (w[0] == "north") {
      CHECK(whole.state == session_state::decision);
      CHECK(whole.kind == stream_kind::north);
      CHECK(whole.taken == v.bytes.size());
      field_is("match_id", std::to_string(whole.match_id));
      field_is("upstream", whole.upstream);
      field_is("payload_length", std::to_string(whole.payload.size()));
    } else if (w[0] == "south") {
      CHECK(whole.state == session_state::relay);
      CHECK(whole.kind == stream_kind::south);
      field_is("match_id", std::to_string(whole.match_id));
      field_is("header_size", std::to_string(whole.taken));
    } else {
      REQUIRE(w[0] == "error");
      CHECK(whole.state == session_state::failed);
      CHECK(whole.error == detour::test::errc_from_name(w[1]));
      CHECK(std::to_string(whole.offset) == w[2]);
    }
    // Every split into two pieces, then byte by byte.
    for (std::size_t cut = 0; cut <= v.bytes.size(); ++cut) {
      stream_session s;
      const auto r = feed_in_pieces(s, v.bytes, {cut});
      CAPTURE(cut);
      REQUIRE(r.state == whole.state);
      REQUIRE(r.error == whole.error);
      REQUIRE(r.offset == whole.offset);
      if (whole.state != session_state::failed) REQUIRE(r == whole);
    }
    std::vector<std::size_t> every;
    for (std::size_t i = 1; i < v.bytes.size(); ++i) every.push_back(i);
    stream_session bytewise;
    const auto b = feed_in_pieces(bytewise, v.bytes, every);
    CHECK(b.state == whole.state);
    CHECK(b.error == whole.error);
    CHECK(b.offset == whole.offset);
    if (whole.state != session_state::failed) CHECK(b == whole);
  }
}

TEST_CASE("stream_session answers a north request and switches to relay after 'continue'",
          "[session][north]") {
  const std::string payload = "/chat\r\nhost: example.com\r\n";
  const auto bytes = north_bytes(task_spec{
      .match_id = 513, .protocol = "websocket", .upstream = "example.com:443", .payload = payload});
  stream_session s;
  std::vector<std::uint8_t> with_relay_data = bytes;
  with_relay_data.push_back('X'); // client data right behind the request: not the session's
  const auto r = s.feed(with_relay_data);
  REQUIRE(r.event == session_event::north_ready);
  CHECK(r.consumed == bytes.size());
  CHECK(s.state() == session_state::decision);
  CHECK(s.task().request.protocol == detour::protocol_kind::websocket);
  CHECK(s.task().request.upstream.host == "example.com");
  CHECK(std::string(s.task().payload.begin(), s.task().payload.end()) == payload);
  REQUIRE(s.task().websocket);
  CHECK(s.task().websocket->resource == "/chat");
  CHECK(s.task().websocket->host() == std::optional<std::string_view>("example.com"));
  CHECK(s.task().websocket_error == errc{});
  CHECK(s.task().header.size() == bytes.size() - payload.size());
  CHECK(s.match_id() == 513);
  CHECK(s.pending_output().empty());
  CHECK(s.feed(as_bytes("X")).event == session_event::waiting); // nothing taken while deciding

  REQUIRE(s.decide(action::proceed));
  CHECK_FALSE(s.decide(action::block)); // one answer only
  const auto expected = detour::encode_response(513, action::proceed);
  const auto out = s.pending_output();
  REQUIRE(out.size() == 4);
  CHECK(std::equal(out.begin(), out.end(), expected.begin()));
  s.output_written(3);
  CHECK(s.state() == session_state::response);
  CHECK(s.pending_output().size() == 1);
  CHECK(s.pending_output()[0] == expected[3]);
  s.output_written(1);
  CHECK(s.state() == session_state::relay);
  CHECK(s.pending_output().empty());
  CHECK(s.feed(as_bytes("X")).event == session_event::relay);
  CHECK(s.feed(as_bytes("X")).consumed == 0);
  CHECK(s.decision() == action::proceed);
}

TEST_CASE("stream_session holds storage for the payload that arrived, not the one announced",
          "[session][north][memory]") {
  // A payload at the default limit (64 KiB), sent in pieces after a header of a hundred bytes.
  std::string payload(65536, '\0');
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>('a' + i % 26);
  const auto bytes = north_bytes(task_spec{.match_id = 9,
                                           .protocol = "http_2",
                                           .upstream = "mail.example.org:993",
                                           .username = "alice",
                                           .payload = payload});
  const std::size_t header = bytes.size() - payload.size();
  stream_session s;
  std::span<const std::uint8_t> rest(bytes);
  REQUIRE(s.feed(rest.first(header)).event == session_event::need_more);
  rest = rest.subspan(header);
  // Only the header is held: an announced payload that never comes costs nothing.
  CHECK(s.storage_capacity() < 1024);
  std::size_t previous = s.storage_capacity();
  int moves = 0;
  while (!rest.empty()) {
    const std::size_t n = std::min<std::size_t>(rest.size(), 1000);
    const auto r = s.feed(rest.first(n));
    REQUIRE(r.consumed == n);
    rest = rest.subspan(n);
    CHECK(s.storage_capacity() <= std::max(2 * s.received(), header + 1000));
    if (s.storage_capacity() != previous) ++moves;
    previous = s.storage_capacity();
    // The request's views follow the storage when it moves.
    CHECK(s.task().request.upstream.host == "mail.example.org");
    CHECK(s.task().request.username == std::optional<std::string_view>("alice"));
    CHECK(s.task().header.size() == header);
  }
  CHECK(moves <= 8); // doubling: a logarithmic number of moves
  REQUIRE(s.state() == session_state::decision);
  CHECK(s.storage_capacity() == bytes.size());
  CHECK(std::string(s.task().payload.begin(), s.task().payload.end()) == payload);
  CHECK(std::equal(s.task().header.begin(), s.task().header.end(), bytes.begin()));
}

TEST_CASE("stream_session keeps a WebSocket payload that does not parse for the policy to judge",
          "[session][north]") {
  stream_session s;
  const auto r = s.feed(north_bytes(task_spec{.protocol = "websocket", .payload = "no crlf"}));
  CHECK(r.event == session_event::north_ready);
  CHECK_FALSE(s.task().websocket);
  CHECK(s.task().websocket_error == errc::ws_line_not_terminated);
  // Other protocols' payloads are not interpreted.
  stream_session smtp;
  (void)smtp.feed(north_bytes(task_spec{.protocol = "smtp", .payload = "no crlf"}));
  CHECK_FALSE(smtp.task().websocket);
  CHECK(smtp.task().websocket_error == errc{});
}

TEST_CASE("stream_session reads a south hello and leaves the relay's bytes alone",
          "[session][south]") {
  auto bytes = south_bytes(77, true);
  const auto header = bytes.size();
  const std::string greeting = "* OK IMAP4rev1 ready\r\n";
  bytes.insert(bytes.end(), greeting.begin(), greeting.end());
  stream_session s;
  const auto r = s.feed(bytes);
  CHECK(r.event == session_event::south_ready);
  CHECK(r.consumed == header);
  CHECK(s.kind() == stream_kind::south);
  CHECK(s.hello().match_id == 77);
  CHECK(s.hello().client.ip.is_v6());
  CHECK(s.state() == session_state::relay);
  CHECK_FALSE(s.decide(action::proceed)); // a south stream is not answered
}

TEST_CASE("stream_session closes after bypass or block without expecting more",
          "[session][north]") {
  const auto a = GENERATE(action::bypass, action::block);
  const auto bytes = north_bytes(task_spec{.match_id = 9});
  SECTION("the peer finishes after the answer (g3proxy: FIN both send sides)") {
    stream_session s;
    REQUIRE(s.feed(bytes).event == session_event::north_ready);
    REQUIRE(s.decide(a));
    s.output_written(4);
    CHECK(s.state() == session_state::closing);
    // Anything still arriving is dropped.
    const auto r = s.feed(as_bytes("late bytes"));
    CHECK(r.event == session_event::closing);
    CHECK(r.consumed == 10);
    CHECK(s.end_of_stream().event == session_event::finished);
    CHECK(s.state() == session_state::finished);
    CHECK(s.error() == errc{});
  }
  SECTION("the peer finished before the answer was written") {
    stream_session s;
    REQUIRE(s.feed(bytes).event == session_event::north_ready);
    CHECK(s.end_of_stream().event == session_event::waiting);
    REQUIRE(s.decide(a));
    s.output_written(4);
    CHECK(s.state() == session_state::finished);
  }
}

TEST_CASE("stream_session ends an empty finished stream quietly and a truncated one with "
          "unexpected_eof",
          "[session][eof]") {
  SECTION("nothing at all, then FIN: a quiet abort (or the empty south after bypass/block)") {
    stream_session s;
    CHECK(s.end_of_stream().event == session_event::finished);
    CHECK(s.state() == session_state::finished);
    CHECK(s.error() == errc{});
    CHECK_FALSE(s.kind());
  }
  const auto bytes = north_bytes(task_spec{.match_id = 1, .payload = "payload!"});
  const std::size_t header = bytes.size() - 8;
  for (const std::size_t cut :
       {std::size_t{1}, std::size_t{15}, std::size_t{16}, header - 1, header, bytes.size() - 1}) {
    CAPTURE(cut);
    stream_session s;
    (void)s.feed(std::span(bytes).first(cut));
    const auto r = s.end_of_stream();
    CHECK(r.event == session_event::error);
    CHECK(s.error() == errc::unexpected_eof);
    CHECK(s.error_offset() == cut);
  }
}

TEST_CASE("stream_session errors are sticky", "[session][errors]") {
  stream_session s;
  const auto r = s.feed(as_bytes("GET / HTTP/1.1\r\n"));
  CHECK(r.event == session_event::error);
  CHECK(s.error() == errc::bad_signature);
  CHECK(s.error_offset() == 0);
  const auto bytes = north_bytes(task_spec{});
  const auto again = s.feed(bytes);
  CHECK(again.event == session_event::error);
  CHECK(again.consumed == 0);
  CHECK(s.end_of_stream().event == session_event::error);
  CHECK_FALSE(s.decide(action::proceed));
  s.fail(errc::stream_reset); // the first error stays
  CHECK(s.error() == errc::bad_signature);
}

TEST_CASE("stream_session fails at once on a wrong byte, before the header is complete",
          "[session][errors]") {
  auto bytes = north_bytes(task_spec{});
  bytes[5] ^= 0xFF; // inside the signature
  stream_session s;
  const auto r = s.feed(std::span(bytes).first(6));
  CHECK(r.event == session_event::error);
  CHECK(s.error() == errc::bad_signature);
  CHECK(s.error_offset() == 5);
}

TEST_CASE("stream_session enforces the configured header and payload limits", "[session][limits]") {
  detour::session_options tight;
  tight.limits.header.max_header_size = 64;
  tight.limits.max_payload_length = 4;
  SECTION("a header above the limit fails when its length field arrives") {
    stream_session s(tight);
    const auto bytes = north_bytes(task_spec{.upstream = "a-rather-long-host-name.example.com:25"});
    REQUIRE(bytes.size() > 64);
    const auto r = s.feed(std::span(bytes).first(16));
    CHECK(r.event == session_event::error);
    CHECK(s.error() == errc::header_too_large);
    CHECK(s.error_offset() == 14);
  }
  SECTION("a payload above the limit fails at the E6 TLV") {
    detour::session_options small;
    small.limits.max_payload_length = 4;
    stream_session s(small);
    (void)s.feed(north_bytes(task_spec{.payload = "12345"}));
    CHECK(s.error() == errc::payload_too_large);
  }
}

TEST_CASE("stream_session views outlive the caller's buffers and survive moves",
          "[session][lifetime]") {
  const auto bytes = north_bytes(task_spec{.match_id = 3,
                                           .protocol = "imap",
                                           .upstream = "[2001:db8::1]:993",
                                           .username = "bob",
                                           .payload = "x"});
  stream_session s;
  {
    // Header first, payload later, each from a buffer freed right away: the payload is stored
    // after the header's views were taken, so its room must not move them.
    auto head = std::make_unique<exact_bytes>(std::span(bytes).first(bytes.size() - 1));
    REQUIRE(s.feed(*head).event == session_event::need_more);
    auto tail = std::make_unique<exact_bytes>(std::span(bytes).last(1));
    REQUIRE(s.feed(*tail).event == session_event::north_ready);
  }
  stream_session moved = std::move(s);
  CHECK(moved.task().request.upstream.host == "2001:db8::1");
  CHECK(moved.task().request.username == std::optional<std::string_view>("bob"));
  CHECK(moved.task().request.protocol_name == "imap");
  CHECK(moved.task().payload.size() == 1);
  CHECK(moved.task().payload[0] == 'x');
}

TEST_CASE("stream_session reset starts a new stream and keeps working", "[session]") {
  stream_session s;
  for (std::uint16_t id = 0; id < 20; ++id) {
    const auto bytes = id % 2 ? south_bytes(id) : north_bytes(task_spec{.match_id = id});
    const auto r = s.feed(bytes);
    CHECK(r.consumed == bytes.size());
    CHECK(r.event == (id % 2 ? session_event::south_ready : session_event::north_ready));
    CHECK(s.match_id() == id);
    s.reset();
    CHECK(s.state() == session_state::header);
    CHECK_FALSE(s.kind());
  }
}

TEST_CASE("the session errors have names and messages", "[session][errors]") {
  for (const auto e : {errc::header_timeout, errc::task_ended, errc::partner_aborted}) {
    CHECK_FALSE(detour::errc_name(e).empty());
    CHECK(detour::make_error_code(e).message() != "unknown detour error");
  }
}
