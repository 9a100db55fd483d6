// SPDX-License-Identifier: MIT
// tests/support/stream_harness.hpp: small helpers for tests that push bytes through streams:
// a running FNV-1a hash, seeded byte generation, and the two ends of a test peer (a writer that
// feeds a byte sequence into a stream, a reader that hashes what comes out of one).
#pragma once

#include <detour/concepts.hpp>

#include <cstddef>
#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace detour::test {

/// FNV-1a, 64 bits, fed incrementally: enough to compare megabytes without keeping them.
struct fnv1a {
  std::uint64_t value = 0xcbf29ce484222325ull;
  void add(std::span<const std::uint8_t> bytes) noexcept {
    for (const auto b : bytes) value = (value ^ b) * 0x100000001b3ull;
  }
};

inline std::uint64_t hash_of(std::span<const std::uint8_t> bytes) {
  fnv1a h;
  h.add(bytes);
  return h.value;
}

/// `n` pseudo-random bytes from `seed`.
inline std::vector<std::uint8_t> random_bytes(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::uint8_t> v(n);
  for (auto& b : v) b = static_cast<std::uint8_t>(rng());
  return v;
}

/// Writes a byte sequence into a stream as fast as it accepts it, then finishes it.
struct writer {
  std::span<const std::uint8_t> rest;
  bool fin_after = true;
  bool finished = false;

  /// Returns true if it made progress.
  template <writable_stream S>
  bool pump(S& s) {
    if (finished || s.send_stopped()) return false;
    bool progress = false;
    while (!rest.empty()) {
      const auto n = s.write_some(rest);
      if (n == 0) break;
      rest = rest.subspan(n);
      progress = true;
    }
    if (rest.empty() && fin_after) {
      s.close_write();
      finished = true;
      progress = true;
    }
    return progress;
  }
};

/// Reads everything a stream delivers, hashing it (and keeping it when asked).
struct reader {
  fnv1a hash;
  std::uint64_t count = 0;
  bool keep = false;
  std::vector<std::uint8_t> kept;

  template <readable_stream S>
  bool pump(S& s) {
    bool progress = false;
    if (s.receive_reset()) return false;
    for (auto view = s.readable(); !view.empty(); view = s.readable()) {
      hash.add(view);
      count += view.size();
      if (keep) kept.insert(kept.end(), view.begin(), view.end());
      s.consume(view.size());
      progress = true;
    }
    return progress;
  }
  /// The stream's receive side is over: finished and drained, reset, or (for streams that
  /// report it, like io::pipe_end) abandoned by this side.
  template <readable_stream S>
  bool ended(S& s) {
    if constexpr (requires { s.read_stopped(); })
      if (s.read_stopped()) return true;
    return s.receive_reset() || (s.at_eof() && s.readable().empty());
  }
};

} // namespace detour::test
