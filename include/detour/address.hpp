// SPDX-License-Identifier: MIT
// detour/address.hpp: IP addresses and (address, port) pairs as the PROXY protocol v2 address
// block carries them (section 2.2: network byte order, IPv4 4 bytes, IPv6 16 bytes, ports 2),
// with allocation-free text forms (RFC 5952 for IPv6) and a strict text parser.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace detour {

/// The two families an IP address can belong to.
enum class ip_family : std::uint8_t { v4, v6 };

/// An IPv4 or IPv6 address in network byte order. An IPv4 address uses the first 4 of `octets`
/// and keeps the other 12 zero (the factories guarantee it), so `==` compares meaningfully.
struct ip_address {
  ip_family family = ip_family::v4;
  std::array<std::uint8_t, 16> octets{};

  static constexpr ip_address v4(std::uint8_t a, std::uint8_t b, std::uint8_t c,
                                 std::uint8_t d) noexcept {
    // One aggregate initialization: compilers turn it into a few stores, not a memset.
    return {ip_family::v4, {a, b, c, d, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}};
  }
  /// From 4 bytes in network order.
  static constexpr ip_address v4(std::span<const std::uint8_t, 4> bytes) noexcept {
    // Copied as a block: compilers then move the bytes as one word, not one by one.
    ip_address ip;
    std::copy(bytes.begin(), bytes.end(), ip.octets.begin());
    return ip;
  }
  /// From 16 bytes in network order.
  static constexpr ip_address v6(std::span<const std::uint8_t, 16> bytes) noexcept {
    ip_address ip{ip_family::v6, {}};
    std::copy(bytes.begin(), bytes.end(), ip.octets.begin());
    return ip;
  }

  constexpr bool is_v4() const noexcept { return family == ip_family::v4; }
  constexpr bool is_v6() const noexcept { return family == ip_family::v6; }
  /// 4 or 16.
  constexpr std::size_t size() const noexcept { return is_v4() ? 4 : 16; }
  /// The address bytes in network order (4 or 16 of them), valid while `*this` is.
  constexpr std::span<const std::uint8_t> bytes() const noexcept { return {octets.data(), size()}; }

  friend constexpr bool operator==(const ip_address&, const ip_address&) = default;
};

/// An IP address and a port: a TCP or UDP endpoint.
struct socket_address {
  ip_address ip;
  std::uint16_t port = 0;

  friend constexpr bool operator==(const socket_address&, const socket_address&) = default;
};

/// Text produced by to_text(): a fixed buffer, no allocation. The longest form,
/// "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535", is 47 characters.
struct address_text {
  std::array<char, 56> chars{};
  std::uint8_t length = 0;

  constexpr std::string_view view() const noexcept { return {chars.data(), length}; }
  constexpr std::size_t size() const noexcept { return length; }
  friend constexpr bool operator==(const address_text& a, std::string_view b) noexcept {
    return a.view() == b;
  }
};

namespace detail {

constexpr void append(address_text& t, char c) noexcept {
  t.chars[t.length++] = c;
}

constexpr void append_decimal(address_text& t, unsigned v) noexcept {
  char digits[10]{};
  int n = 0;
  do {
    digits[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (n > 0) append(t, digits[--n]);
}

constexpr void append_hex16(address_text& t, unsigned v) noexcept {
  constexpr std::string_view hex = "0123456789abcdef";
  bool started = false;
  for (int shift = 12; shift >= 0; shift -= 4) {
    const unsigned nibble = (v >> shift) & 0xF;
    if (nibble != 0 || started || shift == 0) {
      append(t, hex[nibble]);
      started = true;
    }
  }
}

constexpr void append_ipv4(address_text& t, const std::uint8_t* p) noexcept {
  for (int i = 0; i < 4; ++i) {
    if (i) append(t, '.');
    append_decimal(t, p[i]);
  }
}

constexpr void append_ip(address_text& t, const ip_address& ip) noexcept {
  if (ip.is_v4()) {
    append_ipv4(t, ip.octets.data());
    return;
  }
  unsigned groups[8]{};
  for (std::size_t i = 0; i < 8; ++i)
    groups[i] = (unsigned{ip.octets[2 * i]} << 8) | ip.octets[2 * i + 1];
  // RFC 5952 section 5: IPv4-mapped addresses (::ffff:0:0/96) end in dotted decimal.
  const bool mapped = groups[0] == 0 && groups[1] == 0 && groups[2] == 0 && groups[3] == 0 &&
                      groups[4] == 0 && groups[5] == 0xFFFF;
  const int hex_groups = mapped ? 6 : 8;
  // RFC 5952 section 4.2: "::" replaces the longest run of two or more zero groups, the first
  // one when runs tie.
  int best_at = -1, best_len = 0;
  for (int i = 0; i < hex_groups;) {
    if (groups[i] != 0) {
      ++i;
      continue;
    }
    int j = i;
    while (j < hex_groups && groups[j] == 0) ++j;
    if (j - i > best_len) {
      best_at = i;
      best_len = j - i;
    }
    i = j;
  }
  if (best_len < 2) best_at = -1;
  for (int i = 0; i < hex_groups;) {
    if (i == best_at) {
      append(t, ':');
      append(t, ':');
      i += best_len;
      continue;
    }
    // A group right after "::" needs no separator of its own.
    if (i != 0 && i != best_at + best_len) append(t, ':');
    append_hex16(t, groups[i]);
    ++i;
  }
  if (mapped) {
    if (best_at < 0 || best_at + best_len != 6) append(t, ':');
    append_ipv4(t, ip.octets.data() + 12);
  }
}

constexpr bool is_digit(char c) noexcept {
  return c >= '0' && c <= '9';
}

constexpr int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/// Decimal 0-65535, 1 to 5 digits, nothing else.
constexpr std::optional<std::uint16_t> parse_port(std::string_view s) noexcept {
  if (s.empty() || s.size() > 5) return std::nullopt;
  std::uint32_t v = 0;
  for (char c : s) {
    if (!is_digit(c)) return std::nullopt;
    v = v * 10 + static_cast<std::uint32_t>(c - '0');
  }
  if (v > 0xFFFF) return std::nullopt;
  return static_cast<std::uint16_t>(v);
}

/// Dotted decimal, exactly four parts of 1-3 digits each at most 255, no leading zero (so
/// "010.0.0.1", an octal form to some parsers, is refused rather than misread).
constexpr bool parse_ipv4_into(std::string_view s, std::uint8_t* out) noexcept {
  int part = 0;
  std::size_t i = 0;
  while (true) {
    if (i >= s.size() || !is_digit(s[i])) return false;
    unsigned v = 0;
    const std::size_t start = i;
    while (i < s.size() && is_digit(s[i])) {
      v = v * 10 + static_cast<unsigned>(s[i] - '0');
      if (++i - start > 3) return false;
    }
    if (v > 255 || (s[start] == '0' && i - start > 1)) return false;
    out[part++] = static_cast<std::uint8_t>(v);
    if (part == 4) return i == s.size();
    if (i >= s.size() || s[i] != '.') return false;
    ++i;
  }
}

constexpr bool parse_ipv6_into(std::string_view s, std::uint8_t* out) noexcept {
  std::uint16_t head[8]{}, tail[8]{};
  int nhead = 0, ntail = 0;
  bool compressed = false;
  std::size_t i = 0;
  if (s.size() >= 2 && s[0] == ':' && s[1] == ':') {
    compressed = true;
    i = 2;
  } else if (!s.empty() && s[0] == ':') {
    return false;
  }
  while (i < s.size()) {
    if (nhead + ntail >= 8) return false;
    // A trailing dotted IPv4 part fills the last two groups.
    const std::string_view rest = s.substr(i);
    if (rest.find('.') != std::string_view::npos && rest.find(':') == std::string_view::npos) {
      std::uint8_t v4[4]{};
      if (!parse_ipv4_into(rest, v4) || nhead + ntail > 6) return false;
      auto& groups = compressed ? tail : head;
      int& n = compressed ? ntail : nhead;
      groups[n++] = static_cast<std::uint16_t>((v4[0] << 8) | v4[1]);
      groups[n++] = static_cast<std::uint16_t>((v4[2] << 8) | v4[3]);
      i = s.size();
      break;
    }
    unsigned v = 0;
    std::size_t digits = 0;
    while (i < s.size() && hex_value(s[i]) >= 0) {
      v = (v << 4) | static_cast<unsigned>(hex_value(s[i]));
      ++i;
      if (++digits > 4) return false;
    }
    if (digits == 0) return false;
    (compressed ? tail[ntail++] : head[nhead++]) = static_cast<std::uint16_t>(v);
    if (i == s.size()) break;
    if (s[i] != ':') return false;
    ++i;
    if (i < s.size() && s[i] == ':') {
      if (compressed) return false;
      compressed = true;
      ++i;
    } else if (i == s.size()) {
      return false; // a single trailing ':'
    }
  }
  const int total = nhead + ntail;
  if (compressed ? total > 7 : total != 8) return false;
  std::uint16_t groups[8]{};
  for (int k = 0; k < nhead; ++k) groups[k] = head[k];
  for (int k = 0; k < ntail; ++k) groups[8 - ntail + k] = tail[k];
  for (int k = 0; k < 8; ++k) {
    out[2 * k] = static_cast<std::uint8_t>(groups[k] >> 8);
    out[2 * k + 1] = static_cast<std::uint8_t>(groups[k]);
  }
  return true;
}

} // namespace detail

/// The address as text: dotted decimal, or RFC 5952 IPv6 (lower case, longest zero run as "::",
/// IPv4-mapped addresses as ::ffff:a.b.c.d).
constexpr address_text to_text(const ip_address& ip) noexcept {
  address_text t;
  detail::append_ip(t, ip);
  return t;
}

/// "a.b.c.d:port" or "[v6]:port".
constexpr address_text to_text(const socket_address& sa) noexcept {
  address_text t;
  if (sa.ip.is_v6()) detail::append(t, '[');
  detail::append_ip(t, sa.ip);
  if (sa.ip.is_v6()) detail::append(t, ']');
  detail::append(t, ':');
  detail::append_decimal(t, sa.port);
  return t;
}

/// Parses a dotted-decimal IPv4 address or an RFC 4291 IPv6 address (with "::" and a trailing
/// dotted IPv4 part; no zone id, no brackets). std::nullopt for anything else.
constexpr std::optional<ip_address> parse_ip(std::string_view s) noexcept {
  ip_address ip;
  if (s.find(':') == std::string_view::npos) {
    if (!detail::parse_ipv4_into(s, ip.octets.data())) return std::nullopt;
    return ip;
  }
  ip.family = ip_family::v6;
  if (!detail::parse_ipv6_into(s, ip.octets.data())) return std::nullopt;
  return ip;
}

/// Parses "a.b.c.d:port" or "[v6]:port". std::nullopt for anything else.
constexpr std::optional<socket_address> parse_socket_address(std::string_view s) noexcept {
  const auto colon = s.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  std::string_view host = s.substr(0, colon);
  const auto port = detail::parse_port(s.substr(colon + 1));
  if (!port) return std::nullopt;
  if (!host.empty() && host.front() == '[') {
    if (host.size() < 2 || host.back() != ']') return std::nullopt;
    host = host.substr(1, host.size() - 2);
    auto ip = parse_ip(host);
    if (!ip || !ip->is_v6()) return std::nullopt;
    return socket_address{*ip, *port};
  }
  auto ip = parse_ip(host);
  if (!ip || !ip->is_v4()) return std::nullopt;
  return socket_address{*ip, *port};
}

} // namespace detour
