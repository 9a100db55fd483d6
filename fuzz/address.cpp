// SPDX-License-Identifier: MIT
// fuzz/address.cpp: the text forms of addresses (detour/address.hpp: dotted decimal, RFC 4291
// and RFC 5952 IPv6) and the E0 upstream address of g3proxy stream detour ("host:port").
// The input is text to parse; its first 16 bytes (zero-padded) are also an address to print.
// Properties: parse_ip accepts exactly what the C library's inet_pton accepts, with the same
// bytes; to_text prints what inet_ntop prints (RFC 5952), except the deprecated
// IPv4-compatible form glibc still writes in dotted decimal; parse(to_text(x)) == x for every
// address and socket address; parse_socket_address and parse_upstream agree; accepted views
// lie inside the input.
#include <detour/address.hpp>
#include <detour/request.hpp>

#include "property.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

using namespace detour;

namespace {

/// The address the C library reads from `text`, or nothing.
std::optional<ip_address> libc_parse(std::string_view text) {
  const std::string z(text);
  std::array<std::uint8_t, 16> bytes{};
  if (text.find(':') == std::string_view::npos) {
    if (inet_pton(AF_INET, z.c_str(), bytes.data()) != 1) return std::nullopt;
    return ip_address::v4(std::span<const std::uint8_t, 4>(bytes.data(), 4));
  }
  if (inet_pton(AF_INET6, z.c_str(), bytes.data()) != 1) return std::nullopt;
  return ip_address::v6(bytes);
}

/// What the C library prints for an address.
std::string libc_text(const ip_address& ip) {
  char buf[INET6_ADDRSTRLEN]{};
  inet_ntop(ip.is_v4() ? AF_INET : AF_INET6, ip.octets.data(), buf, sizeof buf);
  return buf;
}

/// glibc prints ::a.b.c.d for the deprecated IPv4-compatible addresses (RFC 4291 section
/// 2.5.5.1: 96 zero bits, then a non-zero group); RFC 5952 section 5 asks for dotted decimal
/// only in IPv4-mapped addresses, and detour prints hexadecimal groups.
bool ipv4_compatible(const ip_address& ip) {
  return ip.is_v6() &&
         std::all_of(ip.octets.begin(), ip.octets.begin() + 12,
                     [](std::uint8_t b) { return b == 0; }) &&
         (ip.octets[12] != 0 || ip.octets[13] != 0);
}

void check_printing(const ip_address& ip) {
  const auto text = to_text(ip);
  DETOUR_FUZZ_CHECK(text.size() <= (ip.is_v4() ? 15u : 45u));
  const auto back = parse_ip(text.view());
  DETOUR_FUZZ_CHECK(back && *back == ip);
  if (!ipv4_compatible(ip)) DETOUR_FUZZ_CHECK(text == libc_text(ip));
  // A socket address prints as a.b.c.d:port or [v6]:port and reads back, as a socket address
  // and as an upstream address.
  const std::uint16_t port = static_cast<std::uint16_t>(ip.octets[0] << 8 | ip.octets[15]);
  const socket_address sa{ip, port};
  const auto st = to_text(sa);
  DETOUR_FUZZ_CHECK(st.size() <= 47);
  DETOUR_FUZZ_CHECK(st.view() ==
                    (ip.is_v6() ? "[" + std::string(text.view()) + "]" : std::string(text.view())) +
                        ":" + std::to_string(port));
  const auto sb = parse_socket_address(st.view());
  DETOUR_FUZZ_CHECK(sb && *sb == sa);
  const auto up = parse_upstream(st.view());
  DETOUR_FUZZ_CHECK(up && up->port == port && up->host == text.view());
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);

  // Printing: the input's first bytes as an IPv4 and an IPv6 address.
  std::array<std::uint8_t, 16> raw{};
  std::copy_n(data, std::min<std::size_t>(size, 16), raw.begin());
  check_printing(ip_address::v4(std::span<const std::uint8_t, 4>(raw.data(), 4)));
  check_printing(ip_address::v6(raw));

  // Parsing an address: exactly inet_pton (which stops at a NUL; we refuse it).
  const auto ip = parse_ip(in);
  if (in.find('\0') != std::string_view::npos) {
    DETOUR_FUZZ_CHECK(!ip);
  } else {
    const auto expected = libc_parse(in);
    DETOUR_FUZZ_CHECK(ip.has_value() == expected.has_value());
    if (ip) DETOUR_FUZZ_CHECK(*ip == *expected);
  }
  if (ip) {
    DETOUR_FUZZ_CHECK(ip->is_v4() == (in.find(':') == std::string_view::npos));
    DETOUR_FUZZ_CHECK(ip->size() == ip->bytes().size() && ip->size() == (ip->is_v4() ? 4u : 16u));
    // Dotted decimal has one spelling (no leading zeros): the input itself.
    if (ip->is_v4()) DETOUR_FUZZ_CHECK(to_text(*ip) == in);
    const auto canonical = to_text(*ip);
    DETOUR_FUZZ_CHECK(to_text(*parse_ip(canonical.view())) == canonical.view());
  }

  // Parsing "address:port" and "host:port".
  const auto sa = parse_socket_address(in);
  const auto up = parse_upstream(in);
  if (sa) {
    DETOUR_FUZZ_CHECK(up && up->port == sa->port && parse_ip(up->host) == sa->ip);
    DETOUR_FUZZ_CHECK(parse_socket_address(to_text(*sa).view()) == sa);
  }
  if (up) {
    DETOUR_FUZZ_CHECK(up->text == in);
    DETOUR_FUZZ_CHECK(fuzz::inside(std::span<const char>(up->host), std::span<const char>(in)));
    const auto colon = in.rfind(':');
    DETOUR_FUZZ_CHECK(colon != std::string_view::npos && colon + 1 < in.size() &&
                      in.size() - colon - 1 <= 5);
    unsigned port = 0;
    for (const char c : in.substr(colon + 1)) {
      DETOUR_FUZZ_CHECK(c >= '0' && c <= '9');
      port = port * 10 + static_cast<unsigned>(c - '0');
    }
    DETOUR_FUZZ_CHECK(port == up->port);
    const std::string_view host = in.substr(0, colon);
    if (host.front() == '[') {
      // A bracketed host is an IPv6 address.
      DETOUR_FUZZ_CHECK(host.back() == ']' && up->host == host.substr(1, host.size() - 2));
      const auto v6 = parse_ip(up->host);
      DETOUR_FUZZ_CHECK(v6 && v6->is_v6());
      DETOUR_FUZZ_CHECK(parse_socket_address(in).has_value());
    } else {
      // A name or an IPv4 address: no colon, bracket, space, control character or DEL.
      DETOUR_FUZZ_CHECK(up->host == host && !host.empty());
      DETOUR_FUZZ_CHECK(std::none_of(host.begin(), host.end(), [](char c) {
        const auto b = static_cast<unsigned char>(c);
        return b <= 0x20 || b == 0x7F || c == ':' || c == '[' || c == ']';
      }));
      const auto v4 = parse_ip(host);
      DETOUR_FUZZ_CHECK(parse_socket_address(in).has_value() == (v4 && v4->is_v4()));
    }
  }
  return 0;
}
