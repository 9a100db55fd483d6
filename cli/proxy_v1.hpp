// SPDX-License-Identifier: MIT
// cli/proxy_v1.hpp: reads a PROXY protocol version 1 header (the text form, spec §2.1), so that
// `detour decode` can say what such a header holds and that it is not the version 2 header
// g3proxy and detour speak. Nothing else accepts version 1.
//
//   "PROXY" SP ("TCP4" | "TCP6") SP src SP dst SP sport SP dport CRLF
//   "PROXY" SP "UNKNOWN" [anything but CRLF] CRLF
//
// At most 107 bytes with the CRLF; single spaces; addresses as inet_pton reads them for the
// family; ports decimal 0-65535.
#pragma once

#include <arpa/inet.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace detour::cli {

/// A complete, valid version 1 header. The views point into the bytes read.
struct proxy_v1_header {
  std::string_view protocol;    ///< "TCP4", "TCP6" or "UNKNOWN"
  std::string_view source;      ///< address text; empty for UNKNOWN
  std::string_view destination; ///< address text; empty for UNKNOWN
  std::uint16_t source_port = 0;
  std::uint16_t destination_port = 0;
  std::size_t size = 0; ///< bytes of the header, CRLF included
};

struct proxy_v1_result {
  std::optional<proxy_v1_header> header; ///< set when complete and valid
  bool incomplete = false;               ///< the bytes end before the CRLF (and before 107)
  std::string_view error;                ///< what is wrong, when neither of the above
  std::size_t offset = 0;                ///< the offending byte, for an error
};

inline constexpr std::string_view proxy_v1_prefix = "PROXY ";
inline constexpr std::size_t proxy_v1_max_size = 107;

/// Whether `bytes` start as a version 1 header does ("PROXY ").
inline bool starts_like_proxy_v1(std::span<const std::uint8_t> bytes) noexcept {
  return bytes.size() >= proxy_v1_prefix.size() &&
         std::equal(proxy_v1_prefix.begin(), proxy_v1_prefix.end(), bytes.begin());
}

/// Reads the header at the start of `bytes` (which starts_like_proxy_v1).
inline proxy_v1_result parse_proxy_v1(std::span<const std::uint8_t> bytes) noexcept {
  proxy_v1_result r;
  const auto fail = [&r](std::string_view what, std::size_t at) {
    r.error = what;
    r.offset = at;
    return r;
  };
  if (!starts_like_proxy_v1(bytes)) return fail("does not start with \"PROXY \"", 0);

  // §2.1: the receiver "must not try to read more than 107 characters" for the CRLF.
  const std::size_t window = std::min(bytes.size(), proxy_v1_max_size);
  std::size_t eol = window;
  for (std::size_t i = 0; i + 1 < window; ++i) {
    if (bytes[i] == '\r' && bytes[i + 1] == '\n') {
      eol = i;
      break;
    }
  }
  if (eol == window) {
    if (bytes.size() < proxy_v1_max_size) {
      r.incomplete = true;
      return r;
    }
    return fail("no CRLF within the first 107 bytes", proxy_v1_max_size - 1);
  }
  const std::string_view line(reinterpret_cast<const char*>(bytes.data()), eol);

  std::size_t pos = proxy_v1_prefix.size();
  // The next space-separated field from pos; fields are separated by exactly one space.
  const auto next_field = [&line, &pos](bool last) -> std::optional<std::string_view> {
    const std::size_t end = last ? line.size() : line.find(' ', pos);
    if (end == std::string_view::npos || end == pos) return std::nullopt;
    const std::string_view f = line.substr(pos, end - pos);
    pos = last ? end : end + 1;
    return f;
  };

  const std::size_t protocol_at = pos;
  const std::size_t protocol_end = std::min(line.find(' ', pos), line.size());
  const std::string_view protocol = line.substr(pos, protocol_end - pos);
  if (protocol == "UNKNOWN") {
    // §2.1: "the receiver must ignore anything presented before the CRLF".
    r.header = proxy_v1_header{protocol, {}, {}, 0, 0, eol + 2};
    return r;
  }
  if (protocol != "TCP4" && protocol != "TCP6")
    return fail("unknown protocol (TCP4, TCP6 or UNKNOWN)", protocol_at);
  if (protocol_end == line.size()) return fail("addresses and ports missing", protocol_end);
  pos = protocol_end + 1;

  const int family = protocol == "TCP4" ? AF_INET : AF_INET6;
  std::string_view addr[2];
  for (int i = 0; i < 2; ++i) {
    const std::size_t at = pos;
    const auto f = next_field(false);
    if (!f) return fail("expected an address and a single space", at);
    // inet_pton needs a NUL-terminated string: copy into a buffer long enough for any valid
    // address (INET6_ADDRSTRLEN); longer text is not an address.
    char text[INET6_ADDRSTRLEN] = {};
    unsigned char out[16];
    if (f->size() >= sizeof text ||
        (std::copy(f->begin(), f->end(), text), ::inet_pton(family, text, out) != 1))
      return fail(
          family == AF_INET
              ? (i == 0 ? "source is not an IPv4 address" : "destination is not an IPv4 address")
              : (i == 0 ? "source is not an IPv6 address" : "destination is not an IPv6 address"),
          at);
    addr[i] = *f;
  }
  std::uint16_t port[2] = {};
  for (int i = 0; i < 2; ++i) {
    const std::size_t at = pos;
    const auto f = next_field(i == 1);
    if (!f)
      return fail(i == 0 ? "expected a source port and a single space"
                         : "expected a destination port before the CRLF",
                  at);
    if (f->size() > 5 ||
        !std::all_of(f->begin(), f->end(), [](char c) { return c >= '0' && c <= '9'; }))
      return fail(i == 0 ? "source port is not a number 0-65535"
                         : "destination port is not a number 0-65535",
                  at);
    std::uint32_t v = 0;
    for (const char c : *f) v = v * 10 + static_cast<std::uint32_t>(c - '0');
    if (v > 0xFFFF)
      return fail(i == 0 ? "source port is above 65535" : "destination port is above 65535", at);
    port[i] = static_cast<std::uint16_t>(v);
  }
  r.header = proxy_v1_header{protocol, addr[0], addr[1], port[0], port[1], eol + 2};
  return r;
}

} // namespace detour::cli
