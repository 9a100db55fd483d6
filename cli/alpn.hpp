// SPDX-License-Identifier: MIT
// cli/alpn.hpp: the server's ALPN policy over the wire form of RFC 7301 §3.1 (a list of names,
// each prefixed by its 1-byte length): the first name of the client's offer that is on the
// accepted list wins; with no list, the client's first name. Standard library only, so the fuzz
// target can test it alone.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace detour::cli {

/// Returns the offset in |offer| of the length byte of the selected name, or -1 when no name
/// on |accepted| is offered or the offer is malformed (an empty name, or a name running past
/// the end: RFC 7301 forbids both). |accepted| is trusted (our own configuration); a name
/// running past its end is never matched. Reads nothing outside the two buffers.
inline long select_alpn(const std::uint8_t* offer, std::size_t offer_len,
                        const std::uint8_t* accepted, std::size_t accepted_len) noexcept {
  for (std::size_t i = 0; i < offer_len;) {
    const std::size_t len = offer[i];
    if (len == 0 || len > offer_len - i - 1) return -1; // malformed offer
    for (std::size_t j = 0; j < accepted_len;) {
      const std::size_t alen = accepted[j];
      if (alen == len && alen <= accepted_len - j - 1 &&
          std::memcmp(offer + i + 1, accepted + j + 1, len) == 0) {
        return static_cast<long>(i);
      }
      j += 1 + alen;
    }
    i += 1 + len;
  }
  return -1;
}

/// The server's answer when it has no list of its own: the client's first name (offset 0), as
/// long as the whole offer is well formed (RFC 7301 §3.1: no empty name, none running past the
/// end); -1 otherwise, and for an empty offer. A QUIC client that offers ALPN must close the
/// connection when the server selects nothing (RFC 9001 §8.1; rustls, g3proxy's TLS, does), so
/// accepting any offer means selecting one of its names.
inline long first_alpn(const std::uint8_t* offer, std::size_t offer_len) noexcept {
  if (offer_len == 0) return -1;
  for (std::size_t i = 0; i < offer_len;) {
    const std::size_t len = offer[i];
    if (len == 0 || len > offer_len - i - 1) return -1; // malformed offer
    i += 1 + len;
  }
  return 0;
}

} // namespace detour::cli
