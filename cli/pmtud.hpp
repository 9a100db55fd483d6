// SPDX-License-Identifier: MIT
// cli/pmtud.hpp: the datagram sizes path MTU discovery (RFC 9000 §14.3, RFC 8899) tries, shared
// by `detour serve` and `detour probe`: Ethernet, jumbo frames and the configured maximum first,
// so that a common path settles in one or two probes and a larger MTU (jumbo frames, loopback)
// is used as such; ngtcp2's own sizes after them for the paths that are narrower.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>

namespace detour::cli {

/// The probe sizes (UDP payload bytes) for ngtcp2_settings.pmtud_probes, in the order tried.
/// ngtcp2 keeps a pointer to |sizes|: the object must live as long as the connection.
///
/// ngtcp2 walks the list once, in order, and sends a size only if it is larger than what the
/// path is already known to carry, no larger than the peer's max_udp_payload_size and smaller
/// than every size that failed (three probes lost). So the most likely sizes come first:
/// Ethernet, where a single probe settles g3proxy's 1452-byte limit, then jumbo frames and the
/// configured maximum; the smaller sizes of PPPoE, fibre, tunnels and IPv6's minimum follow in
/// descending order and are only sent on a path that lost the Ethernet-sized probes.
struct pmtud_probes {
  std::array<std::uint16_t, 7> sizes{};
  std::size_t count = 0;

  /// Every size is above 1200 (QUIC's minimum) and at most |max_payload|.
  explicit pmtud_probes(std::size_t max_payload) noexcept {
    // MTUs less the 48 bytes of IPv6 and UDP headers: Ethernet 1500, 9000-byte jumbo frames,
    // then the maximum itself; PPPoE 1492, a common fibre service 1454, tunnels 1390 and
    // IPv6's minimum 1280 (ngtcp2's own list).
    add(1500 - 48, max_payload);
    add(9000 - 48, max_payload);
    add(max_payload, max_payload);
    for (const std::size_t size : {1492 - 48, 1454 - 48, 1390 - 48, 1280 - 48}) {
      add(size, max_payload);
    }
  }

private:
  void add(std::size_t size, std::size_t max_payload) noexcept {
    if (size <= 1200 || size > max_payload || size > 0xFFFF || count == sizes.size()) return;
    for (std::size_t i = 0; i < count; ++i) {
      if (sizes[i] == size) return;
    }
    sizes[count++] = static_cast<std::uint16_t>(size);
  }
};

/// Packets to write into one GSO train of a |buffer|-byte send buffer: ngtcp2's send quantum
/// counted in packets of the path's size |path_payload|, at least 1, at most |max_packets|,
/// and never more than the buffer holds while keeping room for one packet of the largest size
/// ngtcp2 may write, |max_payload| (a path MTU probe).
inline std::size_t train_packets(std::size_t quantum, std::size_t path_payload,
                                 std::size_t max_payload, std::size_t buffer,
                                 std::size_t max_packets) noexcept {
  return std::clamp<std::size_t>(quantum / path_payload, 1,
                                 std::min(max_packets, (buffer - max_payload) / path_payload + 1));
}

} // namespace detour::cli
