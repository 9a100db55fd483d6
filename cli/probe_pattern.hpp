// SPDX-License-Identifier: MIT
// cli/probe_pattern.hpp: the relay bytes `detour probe` sends: a pseudo-random sequence that is
// a pure function of a seed and the stream offset, so a pass-through server's echo can be
// checked byte for byte without keeping a copy of what was sent.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

namespace detour::cli::probe {

/// An endless byte sequence: byte `o` is byte `o % 8` (little-endian) of word `o / 8`; the
/// eight words of each 64-byte line `l` are splitmix64 of the seed and `l`, plus 0, 1, ... 7
/// times an odd constant. Different seeds give unrelated sequences, so north and south data,
/// or two tasks, can never be mistaken for one another; a byte moved by any distance lands on a
/// different value. One mixing round per 64 bytes keeps filling and checking cheap next to the
/// transfer they drive.
class pattern {
public:
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

  explicit constexpr pattern(std::uint64_t seed) noexcept : seed_(seed) {}

  /// The 8 bytes of word |index| as a little-endian number.
  constexpr std::uint64_t word(std::uint64_t index) const noexcept {
    return line(index / words_per_line) + (index % words_per_line) * step;
  }

  constexpr std::uint8_t at(std::uint64_t offset) const noexcept {
    return byte_of(word(offset / 8), offset);
  }

  /// Writes the bytes from |offset| into |out|.
  void fill(std::uint64_t offset, std::span<std::uint8_t> out) const noexcept {
    std::size_t i = 0;
    if (offset % 8 != 0) {
      // Up to the next word edge, from one word.
      const std::uint64_t w = word(offset / 8);
      for (; i < out.size() && (offset + i) % 8 != 0; ++i) out[i] = byte_of(w, offset + i);
    }
    while (i + 8 <= out.size()) {
      // The rest of this line: one mix, then a constant step per word.
      std::uint64_t index = (offset + i) / 8;
      std::uint64_t w = word(index);
      do {
        const std::uint64_t le = little_endian(w);
        std::memcpy(out.data() + i, &le, 8);
        i += 8;
        w += step;
      } while (++index % words_per_line != 0 && i + 8 <= out.size());
    }
    if (i < out.size()) {
      const std::uint64_t w = word((offset + i) / 8); // the last, partial word
      for (; i < out.size(); ++i) out[i] = byte_of(w, offset + i);
    }
  }

  /// The index in |data| of the first byte that differs from the sequence at |offset|, or npos
  /// when all match.
  std::size_t mismatch(std::uint64_t offset, std::span<const std::uint8_t> data) const noexcept {
    std::size_t i = 0;
    if (offset % 8 != 0) {
      const std::uint64_t w = word(offset / 8);
      for (; i < data.size() && (offset + i) % 8 != 0; ++i)
        if (data[i] != byte_of(w, offset + i)) return i;
    }
    while (i + 8 <= data.size()) {
      std::uint64_t index = (offset + i) / 8;
      std::uint64_t w = word(index);
      do {
        const std::uint64_t le = little_endian(w);
        if (std::memcmp(data.data() + i, &le, 8) != 0) {
          for (std::size_t j = i;; ++j)
            if (data[j] != at(offset + j)) return j;
        }
        i += 8;
        w += step;
      } while (++index % words_per_line != 0 && i + 8 <= data.size());
    }
    if (i < data.size()) {
      const std::uint64_t w = word((offset + i) / 8);
      for (; i < data.size(); ++i)
        if (data[i] != byte_of(w, offset + i)) return i;
    }
    return npos;
  }

private:
  // Byte |offset| of the sequence, taken from its word |w|.
  static constexpr std::uint8_t byte_of(std::uint64_t w, std::uint64_t offset) noexcept {
    return static_cast<std::uint8_t>(w >> (8 * (offset % 8)));
  }

  static constexpr std::uint64_t little_endian(std::uint64_t v) noexcept {
    if constexpr (std::endian::native == std::endian::little) {
      return v;
    } else {
      std::uint64_t r = 0;
      for (int k = 0; k < 8; ++k) r |= ((v >> (8 * k)) & 0xFF) << (8 * (7 - k));
      return r;
    }
  }

  static constexpr std::uint64_t words_per_line = 8;
  static constexpr std::uint64_t step = 0xD1B54A32D192ED03ULL; // odd: all eight words differ

  // splitmix64 (Steele, Lea, Flood 2014) of line |l|: one multiply-xorshift round.
  constexpr std::uint64_t line(std::uint64_t l) const noexcept {
    std::uint64_t z = seed_ + (l + 1) * 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }

  std::uint64_t seed_;
};

} // namespace detour::cli::probe
