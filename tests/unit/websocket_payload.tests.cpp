// SPDX-License-Identifier: MIT
// tests/unit/websocket_payload.tests.cpp: the WebSocket payload of a north request (g3proxy
// WebSocketNotes::serialize): the vectors, the limits, and serialize/parse in both directions.
#include <detour/websocket_payload.hpp>

#include "support/expect.hpp"
#include "support/string_makers.hpp"
#include "support/vectors.hpp"

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>

#include <array>
#include <random>
#include <string>
#include <vector>

using namespace detour;
using detour::test::exact_bytes;

namespace {

std::string show(std::string_view raw) {
  std::string out;
  for (char c : raw) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7F) {
      constexpr char hex[] = "0123456789abcdef";
      out += "\\x";
      out += hex[u >> 4];
      out += hex[u & 0xF];
    } else {
      out += c;
    }
  }
  return out;
}

std::string joined_extensions(const websocket_payload& p) {
  std::string out;
  p.for_each_extension([&](std::string_view v) {
    if (!out.empty()) out += '|';
    out += v;
  });
  return out;
}

} // namespace

TEST_CASE("parse_websocket_payload meets every vector's expectation", "[websocket][vectors]") {
  for (const auto& v : test::load_vectors("websocket")) {
    INFO("vector " << v.name << ": " << v.title);
    const exact_bytes input(v.bytes);
    const auto r = parse_websocket_payload(input.span());
    test::check_outcome(r, v.expect);
    if (!r.complete()) continue;
    const auto& p = r.value;
    for (const auto& [name, value] : v.fields) {
      INFO("field " << name);
      if (name == "resource")
        CHECK(p.resource == value);
      else if (name == "header_count")
        CHECK(std::to_string(p.header_count) == value);
      else if (name == "extensions")
        CHECK(joined_extensions(p) == value);
      else {
        const auto got = p.find(name);
        CHECK((got ? show(*got) : std::string("(none)")) == value);
      }
    }
    // Views lie inside the input.
    const char* lo = reinterpret_cast<const char*>(input.span().data());
    const char* hi = lo + input.size();
    CHECK((p.resource.data() >= lo && p.resource.data() + p.resource.size() <= hi));
    std::size_t count = 0;
    for (const auto h : p.headers()) {
      CHECK((h.name.data() >= lo && h.value.data() + h.value.size() <= hi));
      ++count;
    }
    CHECK(count == p.header_count);
  }
}

TEST_CASE("serialize_websocket_payload writes g3proxy's format and parses back",
          "[websocket][serialize][vectors]") {
  for (const auto& v : test::load_vectors("websocket")) {
    const exact_bytes input(v.bytes);
    const auto r = parse_websocket_payload(input.span());
    if (!r.complete()) continue;
    INFO("vector " << v.name);
    std::vector<websocket_header> headers(r.value.headers().begin(), r.value.headers().end());
    std::vector<std::uint8_t> out(v.bytes.size());
    const auto s = serialize_websocket_payload(r.value.resource, headers, out);
    REQUIRE(s);
    CHECK(out == v.bytes); // parse then serialize: the same bytes
    CHECK(websocket_payload_size(r.value.resource, headers) == v.bytes.size());
    // One byte short is refused.
    std::vector<std::uint8_t> small(v.bytes.size() - 1);
    CHECK(serialize_websocket_payload(r.value.resource, headers, small).error ==
          errc::buffer_too_small);
  }
}

TEST_CASE("the protocol notes' WebSocket example serializes exactly",
          "[websocket][serialize][g3]") {
  const std::array headers{websocket_header{"host", "example.com"},
                           websocket_header{"sec-websocket-protocol", "mqtt"}};
  std::array<char, 128> out{};
  const auto s = serialize_websocket_payload("/websocket", headers, out);
  REQUIRE(s);
  CHECK(std::string_view(out.data(), s.size) ==
        "/websocket\r\nhost: example.com\r\nsec-websocket-protocol: mqtt\r\n");
}

TEST_CASE("serialize_websocket_payload refuses what would not parse back the same",
          "[websocket][serialize]") {
  std::array<char, 256> out{};
  const auto refuse = [&](std::string_view resource, websocket_header h) {
    const std::array headers{h};
    return serialize_websocket_payload(resource, headers, out).error;
  };
  CHECK(refuse("", {"host", "a"}) == errc::ws_empty_resource);
  CHECK(refuse("/a\r\nb", {"host", "a"}) == errc::ws_bad_header_line);
  CHECK(refuse("/a\nb", {"host", "a"}) == errc::ws_bad_line_ending);
  CHECK(refuse("/", {"ho st", "a"}) == errc::ws_bad_header_line);
  CHECK(refuse("/", {"", "a"}) == errc::ws_bad_header_line);
  CHECK(refuse("/", {"host", "a\r\nhost: b"}) == errc::ws_duplicate_header);
  CHECK(refuse("/", {"x", "a\r\ny: b"}) == errc::ws_bad_header_line); // would parse as two lines
  CHECK(refuse("/", {"x", "a\rb"}) == errc::ws_bad_line_ending);
}

TEST_CASE("parse_websocket_payload applies its limits", "[websocket][limits]") {
  SECTION("line length, CRLF excluded") {
    const std::string line(100, 'a');
    const std::string payload = "/" + line + "\r\nhost: " + line + "\r\n";
    const auto r = parse_websocket_payload(payload, {100, 64});
    REQUIRE(r.failed());
    CHECK(r.error == errc::ws_line_too_long);
    CHECK(r.offset == 0);
    const auto h = parse_websocket_payload(payload, {106, 64}); // "host: " + 100 is 106
    CHECK(h.complete());
    const auto h2 = parse_websocket_payload(payload, {105, 64});
    REQUIRE(h2.failed());
    CHECK(h2.error == errc::ws_line_too_long);
    CHECK(h2.offset == 103);
    // An unterminated long line is reported as too long: the limit bounds what is scanned.
    const auto u = parse_websocket_payload("/" + line, {50, 64});
    CHECK(u.error == errc::ws_line_too_long);
  }
  SECTION("line count, the resource line included") {
    std::string payload = "/\r\n";
    for (int i = 0; i < 9; ++i) payload += "sec-websocket-extensions: e\r\n";
    CHECK(parse_websocket_payload(payload, {100, 10}).complete());
    const auto r = parse_websocket_payload(payload, {100, 9});
    REQUIRE(r.failed());
    CHECK(r.error == errc::ws_too_many_lines);
    CHECK(r.offset == payload.size() - 29);
  }
  SECTION("the defaults take g3proxy's largest realistic payloads") {
    std::string payload = "/" + std::string(2000, 'p') + "\r\n";
    for (int i = 0; i < 40; ++i)
      payload += "sec-websocket-extensions: permessage-deflate; client_max_window_bits\r\n";
    CHECK(parse_websocket_payload(payload).complete());
  }
}

TEST_CASE("duplicates: only sec-websocket-extensions may repeat", "[websocket]") {
  const auto name =
      GENERATE("host", "origin", "sec-websocket-key", "sec-websocket-version",
               "sec-websocket-accept", "sec-websocket-protocol", "SEC-WEBSOCKET-PROTOCOL");
  INFO(name);
  const std::string payload = std::string("/\r\n") + name + ": a\r\n" + name + ": b\r\n";
  const auto r = parse_websocket_payload(payload);
  REQUIRE(r.failed());
  CHECK(r.error == errc::ws_duplicate_header);
  const auto ok = parse_websocket_payload(
      "/\r\nsec-websocket-extensions: a\r\nSec-WebSocket-Extensions: b\r\n");
  REQUIRE(ok.complete());
  CHECK(ok.value.extension_count() == 2);
}

TEST_CASE("random payloads survive serialize then parse", "[websocket][property]") {
  std::mt19937 rng(99);
  const auto pick = [&](std::uint32_t n) {
    return std::uniform_int_distribution<std::uint32_t>(0, n - 1)(rng);
  };
  const std::array<std::string_view, 8> names{"host",
                                              "origin",
                                              "sec-websocket-key",
                                              "sec-websocket-version",
                                              "sec-websocket-accept",
                                              "sec-websocket-protocol",
                                              "sec-websocket-extensions",
                                              "x-other"};
  std::vector<char> out(4096);
  for (int i = 0; i < 3000; ++i) {
    std::string resource = "/";
    for (std::uint32_t k = pick(30); k > 0; --k) resource += static_cast<char>(0x21 + pick(0x5E));
    std::vector<std::string> values;
    std::vector<websocket_header> headers;
    std::array<bool, 6> used{};
    for (std::uint32_t k = pick(10); k > 0; --k) {
      const auto n = pick(8);
      if (n < 6 && used[n]) continue;
      if (n < 6) used[n] = true;
      std::string value;
      for (std::uint32_t j = pick(40); j > 0; --j) {
        char c = static_cast<char>(pick(256));
        if (c == '\r' || c == '\n') c = ' ';
        value += c;
      }
      values.push_back(value);
      headers.push_back({names[n], {}});
    }
    for (std::size_t k = 0; k < headers.size(); ++k) headers[k].value = values[k];
    INFO("iteration " << i);
    const auto s = serialize_websocket_payload(resource, headers, std::span<char>(out));
    REQUIRE(s);
    const auto p = parse_websocket_payload(std::string_view(out.data(), s.size));
    REQUIRE(p.complete());
    CHECK(p.value.resource == resource);
    REQUIRE(p.value.header_count == headers.size());
    std::size_t k = 0;
    for (const auto h : p.value.headers()) {
      CHECK(h.name == headers[k].name);
      CHECK(h.value == headers[k].value);
      ++k;
    }
  }
}
