// SPDX-License-Identifier: MIT
// detour/detail/utf8.hpp: UTF-8 validation (RFC 3629: no overlong forms, no surrogates, nothing
// above U+10FFFF) with an ASCII fast path, for the detour text TLVs. Internal: no stability
// promise.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace detour::detail {

inline constexpr std::size_t utf8_valid = static_cast<std::size_t>(-1);

/// The offset of the first byte that does not start or continue a valid UTF-8 sequence, or
/// utf8_valid when every byte is part of one.
constexpr std::size_t utf8_invalid_at(std::span<const std::uint8_t> s) noexcept {
  std::size_t i = 0;
  const std::size_t n = s.size();
  while (i < n) {
    const std::uint8_t c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len = 0;
    std::uint8_t lo = 0x80, hi = 0xBF; // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0)
        lo = 0xA0; // no overlong 3-byte forms
      else if (c == 0xED)
        hi = 0x9F; // no UTF-16 surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0)
        lo = 0x90; // no overlong 4-byte forms
      else if (c == 0xF4)
        hi = 0x8F; // nothing above U+10FFFF
    } else {
      return i;
    }
    if (n - i < len) return i;
    if (s[i + 1] < lo || s[i + 1] > hi) return i;
    for (std::size_t k = 2; k < len; ++k)
      if (s[i + k] < 0x80 || s[i + k] > 0xBF) return i;
    i += len;
  }
  return utf8_valid;
}

} // namespace detour::detail
