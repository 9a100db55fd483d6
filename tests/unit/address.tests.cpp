// SPDX-License-Identifier: MIT
// tests/unit/address.tests.cpp: IP address text forms (RFC 5952 for IPv6) and the strict
// parser, both ways.
#include <detour/address.hpp>

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>

#include <random>
#include <string>

using namespace detour;

TEST_CASE("IPv6 text follows RFC 5952", "[address][text]") {
  const auto [in, canonical] = GENERATE(table<std::string, std::string>({
      {"2001:db8::1", "2001:db8::1"},
      {"2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:db8::1"},
      {"::", "::"},
      {"::1", "::1"},
      {"1::", "1::"},
      {"2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"},    // first of two equal runs
      {"2001:0:0:1:0:0:0:1", "2001:0:0:1::1"},          // the longest run
      {"2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"}, // no "::" for one zero group
      {"::ffff:192.0.2.1", "::ffff:192.0.2.1"},         // IPv4-mapped keeps dotted decimal
      {"::ffff:c000:0201", "::ffff:192.0.2.1"},
      {"::192.0.2.1", "::c000:201"}, // deprecated IPv4-compatible: hex
      {"fe80::1:2", "fe80::1:2"},
      {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
  }));
  INFO(in);
  const auto ip = parse_ip(in);
  REQUIRE(ip);
  CHECK(ip->is_v6());
  CHECK(to_text(*ip) == canonical);
}

TEST_CASE("parse_ip refuses malformed text", "[address][parse]") {
  const std::string bad = GENERATE(
      "", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.4 ", " 1.2.3.4", "1..2.3", "1.2.3.",
      "a.b.c.d", ":", ":::", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "1::2::3", "12345::", "::g",
      "1:", ":1", "[::1]", "fe80::1%eth0", "1:2:3:4:5:6:7:1.2.3.4", "::1.2.3");
  INFO("'" << bad << "'");
  CHECK_FALSE(parse_ip(bad));
}

TEST_CASE("IPv4 and socket address text round-trips", "[address][text]") {
  CHECK(to_text(ip_address::v4(0, 0, 0, 0)) == "0.0.0.0");
  CHECK(to_text(ip_address::v4(255, 255, 255, 255)) == "255.255.255.255");
  CHECK(to_text(socket_address{ip_address::v4(192, 168, 0, 1), 56324}) == "192.168.0.1:56324");
  CHECK(to_text(socket_address{*parse_ip("::1"), 0}) == "[::1]:0");
  const socket_address longest{*parse_ip("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"), 65535};
  CHECK(to_text(longest).size() == 47); // no "::ffff" mapping: all eight groups in hex
  CHECK(parse_socket_address("192.168.0.1:56324") ==
        socket_address{ip_address::v4(192, 168, 0, 1), 56324});
  CHECK(parse_socket_address("[2001:db8::1]:443") == socket_address{*parse_ip("2001:db8::1"), 443});
  CHECK_FALSE(parse_socket_address("2001:db8::1:443"));
  CHECK_FALSE(parse_socket_address("[1.2.3.4]:443"));
  CHECK_FALSE(parse_socket_address("1.2.3.4"));
  CHECK_FALSE(parse_socket_address("1.2.3.4:65536"));
}

TEST_CASE("random addresses survive to_text then parse_ip", "[address][property]") {
  std::mt19937 rng(7);
  for (int i = 0; i < 20000; ++i) {
    std::array<std::uint8_t, 16> b{};
    for (auto& x : b)
      x = static_cast<std::uint8_t>(rng() % (i % 3 == 0 ? 2 : 256)); // many zero runs
    const auto ip = i % 4 == 0 ? ip_address::v4(std::span<const std::uint8_t, 4>(b.data(), 4))
                               : ip_address::v6(b);
    const auto text = to_text(ip);
    INFO(std::string(text.view()));
    const auto back = parse_ip(text.view());
    REQUIRE(back);
    CHECK(*back == ip);
    const socket_address sa{ip, static_cast<std::uint16_t>(rng())};
    CHECK(parse_socket_address(to_text(sa).view()) == sa);
  }
}
