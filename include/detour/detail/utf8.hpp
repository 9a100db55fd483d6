// SPDX-License-Identifier: MIT
// detour/detail/utf8.hpp: UTF-8 validation (RFC 3629: no overlong forms, no surrogates, nothing
// above U+10FFFF) with an ASCII fast path, for the detour text TLVs. Internal: no stability
// promise.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>

namespace detour::detail {

inline constexpr std::size_t utf8_valid = static_cast<std::size_t>(-1);

/// N (4 or 8) bytes as an integer, in memory order (only the high bits of each byte matter).
template <std::size_t N>
inline std::uint64_t load_word(const std::uint8_t* p) noexcept {
  if constexpr (N == 8) {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    return w;
  } else {
    std::uint32_t w;
    std::memcpy(&w, p, 4);
    return w;
  }
}

/// The bytes of `s` ORed together into one word, in no particular lanes: they are all ASCII
/// when no 0x80 bit is set in it (all_ascii()). Reads 8 bytes at a time, the last word
/// overlapping the one before so that it ends at the end, or fewer than 8 bytes as two
/// overlapping 4-byte words; fewer than 4 (and in constant expressions) one byte at a time.
constexpr std::uint64_t or_of_bytes(std::span<const std::uint8_t> s) noexcept {
  const std::size_t n = s.size();
  const std::uint8_t* p = s.data();
  if (!std::is_constant_evaluated()) {
    if (n >= 8) {
      std::uint64_t all = load_word<8>(p + n - 8);
      for (std::size_t k = 0; k + 8 < n; k += 8) all |= load_word<8>(p + k);
      return all;
    }
    if (n >= 4) return load_word<4>(p) | load_word<4>(p + n - 4);
  }
  std::uint64_t all = 0;
  for (std::uint8_t b : s) all |= b;
  return all;
}

/// True when or_of_bytes() found only ASCII bytes.
constexpr bool all_ascii(std::uint64_t bytes_ored) noexcept {
  return (bytes_ored & 0x8080808080808080u) == 0;
}

/// The offset of the first byte that does not start or continue a valid UTF-8 sequence, or
/// utf8_valid when every byte is part of one.
constexpr std::size_t utf8_invalid_at(std::span<const std::uint8_t> s) noexcept {
  // Fast path for the common case, all ASCII.
  if (all_ascii(or_of_bytes(s))) return utf8_valid;
  const std::size_t n = s.size();
  std::size_t i = 0;
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
