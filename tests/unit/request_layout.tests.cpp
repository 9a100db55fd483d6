// SPDX-License-Identifier: MIT
// tests/unit/request_layout.tests.cpp: the straight pass that recognises g3proxy's own north
// headers (E2?, E3, E0, E5, E4, E6 over PROXY TCP4/TCP6) against the general walk it stands in
// for: the same outcome for every vector and every g3proxy-shaped header, with each of their
// bytes changed and cut at every length.
#include <detour/request.hpp>

#include "support/string_makers.hpp"
#include "support/vectors.hpp"

#include <catch2/catch_test_macros.hpp>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

using namespace detour;
using detour::test::exact_bytes;

namespace {

using bytes = std::vector<std::uint8_t>;

template <class A, class B>
void check_same_outcome(const decode_result<A>& a, const decode_result<B>& b) {
  REQUIRE(a.status == b.status);
  CHECK(a.error == b.error);
  CHECK(a.offset == b.offset);
  CHECK(a.consumed == b.consumed);
  CHECK(a.needed == b.needed);
}

/// North requests as g3proxy encodes them: both families, with and without a user name, the
/// forms of E0, known and unknown protocols, a payload length over the default limit.
std::vector<bytes> g3_headers() {
  struct fields {
    bool v6;
    std::optional<std::string_view> username;
    std::string_view upstream;
    std::string_view protocol;
    std::uint32_t payload_length;
  };
  const std::array<fields, 8> all{{
      {false, "alice", "example.com:443", "smtp", 0},
      {false, std::nullopt, "192.0.2.1:25", "imap", 0},
      {true, "bücher", "[2001:db8::1]:993", "websocket", 300},
      {true, std::nullopt, "a:1", "http_2", 0},
      {false, "", "xn--bcher-kva.example:65535", "gopher", 0},
      {false, "bob", "mail.example.org:587", "smtp", 70000},
      {true, "carol", "very-long-host-name.subdomain.example.com:8443", "http_2", 12},
      {false, std::nullopt, "[::ffff:192.0.2.1]:80", "", 0},
  }};
  std::vector<bytes> out;
  std::uint16_t match_id = 0xFFFE;
  for (const auto& f : all) {
    north_request r;
    r.client = f.v6 ? socket_address{*parse_ip("2001:db8::7"), 56324}
                    : socket_address{ip_address::v4(192, 168, 0, 1), 56324};
    r.proxy = f.v6 ? socket_address{*parse_ip("2001:db8::11"), 443}
                   : socket_address{ip_address::v4(192, 168, 0, 11), 443};
    r.username = f.username;
    r.task_id.bytes = {0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1,
                       0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8};
    r.upstream.text = f.upstream;
    r.protocol_name = f.protocol;
    r.protocol = f.protocol.empty() ? protocol_kind::smtp : protocol_kind::other;
    r.match_id = match_id++;
    r.payload_length = f.payload_length;
    bytes b(g3_max_header_size);
    const auto e = encode_north_request(r, b);
    REQUIRE(e.ok());
    b.resize(e.size);
    out.push_back(b);
  }
  return out;
}

/// Every input the cases below replay: the annotated vectors and the g3proxy-shaped headers,
/// each as it is, with each byte changed in a few ways, and cut at every length.
std::vector<bytes> inputs() {
  std::vector<bytes> bases = g3_headers();
  for (const auto& v : test::load_vectors("ppv2")) bases.push_back(v.bytes);
  std::vector<bytes> out;
  for (const auto& base : bases) {
    out.push_back(base);
    for (std::size_t n = 0; n < base.size(); ++n) out.emplace_back(base.begin(), base.begin() + n);
    for (std::size_t i = 0; i < base.size(); ++i) {
      const std::uint8_t b = base[i];
      for (const std::uint8_t to :
           {std::uint8_t{0x00}, std::uint8_t{0xFF}, std::uint8_t(b ^ 0x01), std::uint8_t(b ^ 0x80),
            std::uint8_t(b + 1), std::uint8_t(b - 1), std::uint8_t{':'}, std::uint8_t{0xE5}}) {
        if (to == b) continue;
        bytes changed = base;
        changed[i] = to;
        out.push_back(std::move(changed));
      }
    }
  }
  return out;
}

/// The limits the cases run under: the defaults, a header limit that cuts through the
/// g3proxy-shaped headers, and text taken as opaque bytes.
std::vector<request_limits> all_limits() {
  request_limits small_header;
  small_header.header.max_header_size = 80;
  request_limits opaque_text;
  opaque_text.require_utf8 = false;
  return {request_limits{}, small_header, opaque_text};
}

} // namespace

TEST_CASE("decode_north_request's straight pass agrees with the general walk",
          "[request][layout]") {
  const auto all = inputs();
  std::size_t straight = 0;
  for (const auto& limits : all_limits()) {
    for (const auto& input : all) {
      const exact_bytes in(input);
      detail::detour_tlvs d;
      if (detail::match_g3_north(in, limits.header, d) != 0) ++straight;
      const auto fast = decode_north_request(in, limits);
      const auto general = detail::decode_north_walk(in, limits);
      check_same_outcome(fast, general);
      if (fast.complete()) CHECK(fast.value == general.value);
    }
  }
  // The straight pass took a good share of them, not none.
  CHECK(straight > all.size() / 4);
}

TEST_CASE("the straight scan of a decoded header agrees with the general walk",
          "[request][layout]") {
  for (const auto& input : inputs()) {
    const exact_bytes in(input);
    const auto h = ppv2::decode(in);
    if (!h.complete() || detail::check_tcp_proxy(h.value).error != errc{}) continue;
    detail::detour_tlvs straight, general;
    const auto f = detail::scan_detour_tlvs(h.value, straight);
    const auto g = detail::walk_detour_tlvs(h.value, general);
    REQUIRE(f.error == g.error);
    CHECK(f.offset == g.offset);
    if (f.error != errc{}) continue;
    CHECK(straight.present == general.present);
    CHECK(straight.at == general.at);
  }
}

TEST_CASE("decode_stream_header agrees with decode then parse_stream_header",
          "[request][layout]") {
  for (const auto& limits : all_limits()) {
    for (const auto& input : inputs()) {
      const exact_bytes in(input);
      const auto one = decode_stream_header(in, limits);
      const auto h = ppv2::decode(in, limits.header);
      if (!h.complete()) {
        check_same_outcome(one, h);
        continue;
      }
      const auto two = parse_stream_header(h.value, limits);
      check_same_outcome(one, two);
      if (!one.complete()) continue;
      REQUIRE(one.value.kind == two.value.kind);
      if (one.value.kind == stream_kind::north) {
        CHECK(one.value.north == two.value.north);
      } else {
        CHECK(one.value.south.match_id == two.value.south.match_id);
        CHECK(one.value.south.client == two.value.south.client);
        CHECK(one.value.south.header_size == two.value.south.header_size);
      }
    }
  }
}

TEST_CASE("north requests and south hellos compare by the header they make, views by their text",
          "[request]") {
  const std::string host_a = "example.com:443", host_b = "example.com:443";
  north_request a;
  a.upstream = {host_a, std::string_view(host_a).substr(0, 11), 443};
  a.match_id = 7;
  a.protocol = protocol_kind::http_2;
  north_request b = a;
  b.upstream = {host_b, std::string_view(host_b).substr(0, 11), 443}; // other storage, same text
  CHECK(a == b);
  b.username = "alice";
  CHECK_FALSE(a == b);
  b = a;
  b.upstream.text = "example.com:444";
  CHECK_FALSE(a == b);
  b = a;
  b.payload_length = 1;
  CHECK_FALSE(a == b);
  b = a;
  b.protocol_name = "smtp";
  CHECK_FALSE(a == b);
  // The same E4 on the wire, given as a name or as the kind.
  b = a;
  b.protocol_name = "http_2";
  CHECK(a == b);
  // Built from the text alone, encoded and decoded again (which fills host, port, the
  // protocol's kind and header_size): the same request.
  north_request built;
  built.client = *parse_socket_address("192.0.2.7:50000");
  built.proxy = *parse_socket_address("192.0.2.1:3128");
  built.upstream.text = "mail.example.org:993";
  built.protocol_name = "imap";
  built.match_id = 3;
  std::array<std::uint8_t, 536> out{};
  const auto e = encode_north_request(built, out);
  REQUIRE(e.ok());
  const auto back = decode_north_request(std::span<const std::uint8_t>(out.data(), e.size));
  REQUIRE(back.complete());
  CHECK(back.value.upstream.port == 993);
  CHECK(back.value.header_size == e.size);
  CHECK(back.value == built);
  south_hello s, t;
  s.match_id = t.match_id = 7;
  CHECK(s == t);
  t.header_size = 1; // a fact of one decoding, not of the header
  CHECK(s == t);
  t.match_id = 8;
  CHECK_FALSE(s == t);
}
