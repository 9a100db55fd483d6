// SPDX-License-Identifier: MIT
// detour/detail/crc32c.hpp: CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, RFC 4960
// appendix B), as PP2_TYPE_CRC32C uses (proxy-protocol.txt section 2.2.3). Portable
// slicing-by-8 over constexpr tables. Internal: no stability promise.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

namespace detour::detail {

using crc32c_tables_t = std::array<std::array<std::uint32_t, 256>, 8>;

constexpr crc32c_tables_t make_crc32c_tables() noexcept {
  crc32c_tables_t t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    t[0][i] = c;
  }
  for (std::size_t s = 1; s < 8; ++s)
    for (std::size_t i = 0; i < 256; ++i) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFF];
  return t;
}

inline constexpr crc32c_tables_t crc32c_tables = make_crc32c_tables();

/// Continues a CRC-32C over `data`. `crc` is the running register: start with 0xFFFFFFFF and
/// xor the final value with 0xFFFFFFFF (crc32c() does both).
constexpr std::uint32_t crc32c_update(std::uint32_t crc,
                                      std::span<const std::uint8_t> data) noexcept {
  const auto& t = crc32c_tables;
  const std::uint8_t* p = data.data();
  std::size_t n = data.size();
  while (n >= 8) {
    const std::uint32_t lo = crc ^ (std::uint32_t{p[0]} | std::uint32_t{p[1]} << 8 |
                                    std::uint32_t{p[2]} << 16 | std::uint32_t{p[3]} << 24);
    crc = t[7][lo & 0xFF] ^ t[6][(lo >> 8) & 0xFF] ^ t[5][(lo >> 16) & 0xFF] ^ t[4][lo >> 24] ^
          t[3][p[4]] ^ t[2][p[5]] ^ t[1][p[6]] ^ t[0][p[7]];
    p += 8;
    n -= 8;
  }
  while (n--) crc = (crc >> 8) ^ t[0][(crc ^ *p++) & 0xFF];
  return crc;
}

/// The CRC-32C of `data`.
constexpr std::uint32_t crc32c(std::span<const std::uint8_t> data) noexcept {
  return crc32c_update(0xFFFFFFFFu, data) ^ 0xFFFFFFFFu;
}

/// The CRC-32C of `data` as if the 4 bytes at `zeroed_at` were zero (the receiver's procedure
/// in section 2.2.3: the checksum field is replaced by zeros before checking).
constexpr std::uint32_t crc32c_with_zeroed_field(std::span<const std::uint8_t> data,
                                                 std::size_t zeroed_at) noexcept {
  constexpr std::array<std::uint8_t, 4> zeros{};
  std::uint32_t crc = crc32c_update(0xFFFFFFFFu, data.first(zeroed_at));
  crc = crc32c_update(crc, zeros);
  crc = crc32c_update(crc, data.subspan(zeroed_at + 4));
  return crc ^ 0xFFFFFFFFu;
}

} // namespace detour::detail
