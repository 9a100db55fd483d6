// SPDX-License-Identifier: MIT
// tests/unit/request.tests.cpp: the detour layer (g3proxy stream detour): north requests and
// south hellos read from the annotated vectors, classification, limits, and encoders that
// reproduce g3proxy's bytes.
#include <detour/request.hpp>

#include "support/expect.hpp"
#include "support/string_makers.hpp"
#include "support/vectors.hpp"

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>

#include <array>
#include <cstdint>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

using namespace detour;
using detour::test::exact_bytes;

namespace {

using bytes = std::vector<std::uint8_t>;

test::vector_file vector(const std::string& name) {
  return test::load_vector(std::filesystem::path(DETOUR_TEST_VECTORS_DIR) / "ppv2" /
                           (name + ".hex"));
}

std::map<std::string, std::string> describe(const north_request& r) {
  return {{"client", std::string(to_text(r.client).view())},
          {"proxy", std::string(to_text(r.proxy).view())},
          {"upstream", std::string(r.upstream.text)},
          {"upstream.host", std::string(r.upstream.host)},
          {"upstream.port", std::to_string(r.upstream.port)},
          {"username", r.username ? std::string(*r.username) : "(none)"},
          {"task_id", std::string(to_text(r.task_id).view())},
          {"protocol", std::string(r.protocol_name)},
          {"protocol_kind",
           r.protocol == protocol_kind::other ? "other" : std::string(to_string(r.protocol))},
          {"match_id", std::to_string(r.match_id)},
          {"payload_length", std::to_string(r.payload_length)},
          {"header_size", std::to_string(r.header_size)}};
}

std::map<std::string, std::string> describe(const south_hello& s) {
  return {{"client", std::string(to_text(s.client).view())},
          {"proxy", std::string(to_text(s.proxy).view())},
          {"match_id", std::to_string(s.match_id)},
          {"header_size", std::to_string(s.header_size)}};
}

void check_fields(const std::map<std::string, std::string>& actual,
                  const std::map<std::string, std::string>& expected) {
  for (const auto& [name, value] : expected) {
    INFO("field " << name);
    REQUIRE(actual.count(name) == 1);
    CHECK(actual.at(name) == value);
  }
}

north_request sample_north() {
  north_request r;
  r.client = {ip_address::v4(192, 168, 0, 1), 56324};
  r.proxy = {ip_address::v4(192, 168, 0, 11), 443};
  r.username = "alice";
  r.task_id.bytes = {0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1,
                     0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8};
  r.upstream.text = "example.com:443";
  r.match_id = 7;
  r.protocol = protocol_kind::websocket;
  r.payload_length = 61;
  return r;
}

} // namespace

TEST_CASE("decode_stream_header reads every vector as its annotation says", "[request][vectors]") {
  for (const auto& v : test::load_vectors("ppv2")) {
    if (v.detour.empty()) continue;
    INFO("vector " << v.name << ": " << v.title);
    const exact_bytes input(v.bytes);
    const auto r = decode_stream_header(input);
    const auto w = test::words(v.detour);
    if (w[0] == "error") {
      test::check_outcome(r, v.detour);
      continue;
    }
    REQUIRE(r.complete());
    const auto header = ppv2::decode(input);
    REQUIRE(header.complete());
    CHECK(r.consumed == header.consumed);
    const auto kind = classify(header.value);
    REQUIRE(kind.complete());
    if (w[0] == "north") {
      REQUIRE(r.value.kind == stream_kind::north);
      CHECK(kind.value == stream_kind::north);
      check_fields(describe(r.value.north), v.fields);
      // The specific parsers agree with the combined one.
      const auto n = parse_north_request(header.value);
      REQUIRE(n.complete());
      CHECK(describe(n.value) == describe(r.value.north));
      const auto direct = decode_north_request(input);
      REQUIRE(direct.complete());
      CHECK(describe(direct.value) == describe(r.value.north));
      CHECK(parse_south_hello(header.value).error == errc::unknown_stream_kind);
    } else {
      REQUIRE(w[0] == "south");
      REQUIRE(r.value.kind == stream_kind::south);
      CHECK(kind.value == stream_kind::south);
      check_fields(describe(r.value.south), v.fields);
      const auto s = decode_south_hello(input);
      REQUIRE(s.complete());
      CHECK(describe(s.value) == describe(r.value.south));
      CHECK(decode_north_request(input).error == errc::missing_required_tlv);
    }
  }
}

TEST_CASE("decode_north_request leaves the payload to the caller", "[request]") {
  const auto v = vector("north_tcp4_websocket");
  const exact_bytes input(v.bytes);
  const auto r = decode_north_request(input);
  REQUIRE(r.complete());
  const auto payload = input.span().subspan(r.consumed);
  CHECK(payload.size() == r.value.payload_length);
  CHECK(ppv2::as_text(payload) ==
        "/websocket\r\nhost: example.com\r\nsec-websocket-protocol: mqtt\r\n");
}

TEST_CASE("decode_north_request says how many bytes it needs", "[request]") {
  const auto v = vector("north_tcp4_websocket");
  const exact_bytes prefix{std::span(v.bytes).first(40)};
  const auto r = decode_north_request(prefix);
  REQUIRE(r.need_more());
  CHECK(r.needed == 97 - 40);
}

TEST_CASE("encode_north_request reproduces g3proxy's bytes", "[request][encode][g3]") {
  const auto v = vector("north_tcp4_websocket");
  std::array<std::uint8_t, g3_max_header_size> out{};
  const auto e = encode_north_request(sample_north(), out);
  REQUIRE(e);
  CHECK(bytes(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(e.size)) ==
        bytes(v.bytes.begin(), v.bytes.begin() + 97));

  // Without a user name there is no E2; IPv6 addresses give a TCP6 header.
  const auto v6 = vector("north_tcp6_imap");
  north_request r;
  r.client = {*parse_ip("2001:db8::1"), 56324};
  r.proxy = {*parse_ip("2001:db8::11"), 443};
  r.task_id = sample_north().task_id;
  r.upstream.text = "[2001:db8::1]:993";
  r.match_id = 0xFFFF;
  r.protocol_name = "imap";
  const auto e6 = encode_north_request(r, out);
  REQUIRE(e6);
  CHECK(bytes(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(e6.size)) == v6.bytes);
}

TEST_CASE("encode_south_hello reproduces g3proxy's bytes", "[request][encode][g3]") {
  const auto v = vector("south_tcp4");
  south_hello s;
  s.client = {ip_address::v4(192, 168, 0, 1), 56324};
  s.proxy = {ip_address::v4(192, 168, 0, 11), 443};
  s.match_id = 7;
  std::array<std::uint8_t, 64> out{};
  const auto e = encode_south_hello(s, out);
  REQUIRE(e);
  CHECK(bytes(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(e.size)) == v.bytes);
}

TEST_CASE("the encoders refuse what a north request cannot carry", "[request][encode]") {
  std::array<std::uint8_t, 1024> out{};
  SECTION("addresses of two families (g3proxy: AddressFamilyNotMatch)") {
    auto r = sample_north();
    r.proxy = {*parse_ip("::1"), 443};
    CHECK(encode_north_request(r, out).error == errc::address_family_mismatch);
    south_hello s{r.client, r.proxy, 1, 0};
    CHECK(encode_south_hello(s, out).error == errc::address_family_mismatch);
  }
  SECTION("an upstream that is not host:port") {
    auto r = sample_north();
    r.upstream.text = "example.com";
    CHECK(encode_north_request(r, out).error == errc::bad_upstream_address);
  }
  SECTION("a user name that is not UTF-8") {
    auto r = sample_north();
    r.username = std::string_view("\xff", 1);
    CHECK(encode_north_request(r, out).error == errc::text_not_utf8);
  }
  SECTION("a buffer too small") {
    CHECK(encode_north_request(sample_north(), std::span(out).first(96)).error ==
          errc::buffer_too_small);
  }
}

TEST_CASE("parse_north_request applies the payload-length limit", "[request][limits]") {
  auto r = sample_north();
  std::array<std::uint8_t, 256> out{};
  for (std::uint32_t limit : {0u, 60u, 61u, 4096u}) {
    INFO("limit " << limit);
    REQUIRE(encode_north_request(r, out));
    request_limits limits;
    limits.max_payload_length = limit;
    const auto d = decode_north_request(out, limits);
    if (limit >= 61) {
      CHECK(d.complete());
    } else {
      REQUIRE(d.failed());
      CHECK(d.error == errc::payload_too_large);
      CHECK(d.offset == 90); // the E6 TLV
    }
  }
}

TEST_CASE("parse_north_request treats text as opaque bytes when UTF-8 is not required",
          "[request][limits]") {
  const auto v = vector("north_err_username_latin1");
  const exact_bytes input(v.bytes);
  CHECK(decode_north_request(input).error == errc::text_not_utf8);
  request_limits lax;
  lax.require_utf8 = false;
  const auto r = decode_north_request(input, lax);
  REQUIRE(r.complete());
  CHECK(r.value.username == std::string_view("zo\xeb"));
}

TEST_CASE("the header size limit applies to the decode_* functions", "[request][limits]") {
  const auto v = vector("north_tcp4_websocket");
  const exact_bytes input(v.bytes);
  request_limits limits;
  limits.header.max_header_size = 96;
  const auto r = decode_stream_header(input, limits);
  REQUIRE(r.failed());
  CHECK(r.error == errc::header_too_large);
  CHECK(r.offset == 14);
}

TEST_CASE("classify tells north, south and neither apart", "[request][classify]") {
  const auto [name, expected] = GENERATE(table<std::string, int>({{"north_tcp4_websocket", 0},
                                                                  {"north_tcp6_imap", 0},
                                                                  {"g3_tcp6_username_1234", 0},
                                                                  {"south_tcp4", 1},
                                                                  {"south_tcp6", 1},
                                                                  {"crc32c_last", 1},
                                                                  {"g3_tcp4_no_tlv", -1},
                                                                  {"haproxy_ssl_crc32c", -1},
                                                                  {"tlv_types_passthrough", -1}}));
  INFO(name);
  const auto v = vector(name);
  const exact_bytes input(v.bytes);
  const auto h = ppv2::decode(input);
  REQUIRE(h.complete());
  const auto k = classify(h.value);
  if (expected < 0) {
    REQUIRE(k.failed());
    CHECK(k.error == errc::unknown_stream_kind);
    CHECK(k.offset == ppv2::fixed_size + h.value.address_block.size());
  } else {
    REQUIRE(k.complete());
    CHECK(k.value == (expected == 0 ? stream_kind::north : stream_kind::south));
  }
}

TEST_CASE("parse_upstream splits host and port, IPv6 in brackets", "[request][upstream]") {
  const auto [text, host, port] = GENERATE(table<std::string, std::string, int>({
      {"example.com:443", "example.com", 443},
      {"192.0.2.1:25", "192.0.2.1", 25},
      {"[2001:db8::1]:993", "2001:db8::1", 993},
      {"[::ffff:192.0.2.1]:80", "::ffff:192.0.2.1", 80},
      {"xn--bcher-kva.example:0", "xn--bcher-kva.example", 0},
      {"bücher.example:65535", "bücher.example", 65535},
      {"example.com", "", -1},
      {"example.com:", "", -1},
      {":443", "", -1},
      {"example.com:65536", "", -1},
      {"example.com:44a", "", -1},
      {"example.com:+443", "", -1},
      {"2001:db8::1:993", "", -1},
      {"[2001:db8::1]993", "", -1},
      {"[example.com]:443", "", -1},
      {"[192.0.2.1]:443", "", -1},
      {"[]:443", "", -1},
      {"exa mple.com:443", "", -1},
      {"example.com\r\n:443", "", -1},
  }));
  INFO(text);
  const auto u = parse_upstream(text);
  if (port < 0) {
    CHECK_FALSE(u);
  } else {
    REQUIRE(u);
    CHECK(u->text == text);
    CHECK(u->host == host);
    CHECK(u->port == port);
  }
}

TEST_CASE("protocol names map to kinds and back", "[request][protocol]") {
  for (auto p :
       {protocol_kind::http_2, protocol_kind::websocket, protocol_kind::smtp, protocol_kind::imap})
    CHECK(protocol_from_name(to_string(p)) == p);
  CHECK(protocol_from_name("HTTP_2") == protocol_kind::other);
  CHECK(protocol_from_name("") == protocol_kind::other);
  CHECK(to_string(protocol_kind::other).empty());
}

TEST_CASE("uuid text is canonical and lower case", "[request][uuid]") {
  uuid id;
  for (std::uint8_t i = 0; i < 16; ++i) id.bytes[i] = static_cast<std::uint8_t>(0xF0 + i);
  CHECK(to_text(id) == "f0f1f2f3-f4f5-f6f7-f8f9-fafbfcfdfeff");
  CHECK(to_text(uuid{}) == "00000000-0000-0000-0000-000000000000");
}

TEST_CASE("random north requests and south hellos survive encode then decode",
          "[request][property]") {
  std::mt19937 rng(20260917);
  const auto pick = [&](std::uint32_t n) {
    return std::uniform_int_distribution<std::uint32_t>(0, n - 1)(rng);
  };
  const std::array<std::string, 6> hosts{"example.com", "192.0.2.7", "[2001:db8::7]",
                                         "a",           "xn--p1ai",  "höst.example"};
  const std::array<std::string, 6> protocols{"http_2", "websocket", "smtp", "imap", "ssh", "x"};
  std::array<std::uint8_t, 1024> out{};
  for (int i = 0; i < 5000; ++i) {
    const bool v6 = pick(2) == 1;
    const auto addr = [&] {
      std::array<std::uint8_t, 16> b{};
      for (auto& x : b) x = static_cast<std::uint8_t>(pick(256));
      return v6 ? ip_address::v6(b) : ip_address::v4(std::span<const std::uint8_t, 4>(b.data(), 4));
    };
    north_request r;
    r.client = {addr(), static_cast<std::uint16_t>(pick(65536))};
    r.proxy = {addr(), static_cast<std::uint16_t>(pick(65536))};
    const std::string upstream = hosts[pick(6)] + ":" + std::to_string(pick(65536));
    r.upstream.text = upstream;
    std::string user(pick(40), 'u');
    for (auto& c : user) c = static_cast<char>('a' + pick(26));
    if (pick(2)) r.username = user;
    for (auto& b : r.task_id.bytes) b = static_cast<std::uint8_t>(pick(256));
    r.protocol_name = protocols[pick(6)];
    r.match_id = static_cast<std::uint16_t>(pick(65536));
    r.payload_length = pick(65537);
    INFO("iteration " << i << " upstream " << upstream);

    const auto e = encode_north_request(r, out);
    REQUIRE(e);
    const auto d = decode_north_request(std::span(out).first(e.size));
    REQUIRE(d.complete());
    CHECK(d.consumed == e.size);
    CHECK(d.value.client == r.client);
    CHECK(d.value.proxy == r.proxy);
    CHECK(d.value.upstream.text == r.upstream.text);
    CHECK(d.value.username == r.username);
    CHECK(d.value.task_id == r.task_id);
    CHECK(d.value.protocol_name == r.protocol_name);
    CHECK(d.value.protocol == protocol_from_name(r.protocol_name));
    CHECK(d.value.match_id == r.match_id);
    CHECK(d.value.payload_length == r.payload_length);

    const south_hello s{r.client, r.proxy, r.match_id, 0};
    const auto es = encode_south_hello(s, out);
    REQUIRE(es);
    const auto ds = decode_stream_header(std::span(out).first(es.size));
    REQUIRE(ds.complete());
    CHECK(ds.value.kind == stream_kind::south);
    CHECK(ds.value.south.client == s.client);
    CHECK(ds.value.south.proxy == s.proxy);
    CHECK(ds.value.south.match_id == s.match_id);
  }
}
