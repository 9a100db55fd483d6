// SPDX-License-Identifier: MIT
// cli/pmtud.hpp: the datagram sizes path MTU discovery (RFC 9000 §14.3, RFC 8899) tries, shared
// by `detour serve` and `detour probe`: ngtcp2's own list, then Ethernet, jumbo frames and the
// configured maximum, so that a path with a larger MTU (jumbo frames, loopback) is used as such.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>

namespace detour::cli {

/// The probe sizes (UDP payload bytes) for ngtcp2_settings.pmtud_probes, in the order tried.
/// ngtcp2 keeps a pointer to |sizes|: the object must live as long as the connection.
struct pmtud_probes {
  std::array<std::uint16_t, 7> sizes{};
  std::size_t count = 0;

  /// Every size is above 1200 (QUIC's minimum) and at most |max_payload|.
  explicit pmtud_probes(std::size_t max_payload) noexcept {
    // ngtcp2's defaults (a common fibre MTU, tunnels, IPv6's minimum, PPPoE), then Ethernet
    // (1500 - 48), 9000-byte jumbo frames, and the maximum itself; each 48 bytes of IPv6 + UDP
    // headers below the MTU.
    constexpr std::array<std::size_t, 6> known{1454 - 48, 1390 - 48, 1280 - 48,
                                               1492 - 48, 1500 - 48, 9000 - 48};
    for (const std::size_t size : known) add(size, max_payload);
    add(max_payload, max_payload);
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
