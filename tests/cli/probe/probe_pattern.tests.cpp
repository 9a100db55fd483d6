// SPDX-License-Identifier: MIT
// Tests of cli/probe_pattern.hpp: the relay bytes are a pure function of seed and offset, at
// any alignment, and a changed byte is found exactly where it is.
#include "probe_pattern.hpp"

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>

#include <vector>

using detour::cli::probe::pattern;

TEST_CASE("pattern::fill gives the same bytes as at(), whatever the alignment",
          "[probe][pattern]") {
  const pattern p(7);
  const std::uint64_t start = GENERATE(0u, 1u, 5u, 8u, 13u, 60u, 64u, 4093u);
  const std::size_t size = GENERATE(0u, 1u, 7u, 8u, 9u, 63u, 64u, 65u, 100u, 1000u);
  std::vector<std::uint8_t> out(size);
  p.fill(start, out);
  for (std::size_t i = 0; i < size; ++i) CHECK(out[i] == p.at(start + i));
}

TEST_CASE("pattern::fill of a piece equals the same range of a larger fill", "[probe][pattern]") {
  const pattern p(11);
  std::vector<std::uint8_t> whole(1000);
  p.fill(0, whole);
  std::vector<std::uint8_t> piece(333);
  p.fill(123, piece);
  CHECK(std::equal(piece.begin(), piece.end(), whole.begin() + 123));
}

TEST_CASE("pattern::mismatch finds the first differing byte exactly", "[probe][pattern]") {
  const pattern p(5);
  // Pieces of lines before and after whole ones (lines are 64 bytes), and whole lines alone.
  const std::uint64_t start = GENERATE(0u, 3u, 8u, 61u, 64u);
  const std::size_t size = GENERATE(64u, 300u);
  std::vector<std::uint8_t> bytes(size);
  p.fill(start, bytes);
  CHECK(p.mismatch(start, bytes) == pattern::npos);
  for (std::size_t at = 0; at < bytes.size(); ++at) {
    auto bad = bytes;
    bad[at] ^= 0x80;
    bad.back() ^= at + 1 < bad.size() ? 0x01 : 0x00; // a later difference must not win
    CHECK(p.mismatch(start, bad) == at);
  }
}

TEST_CASE("pattern differs between seeds and along a stream", "[probe][pattern]") {
  std::vector<std::uint8_t> a(256), b(256), c(256);
  pattern(1).fill(0, a);
  pattern(2).fill(0, b);
  pattern(1).fill(256, c);
  CHECK(a != b);
  CHECK(a != c);
  CHECK(pattern(1).mismatch(0, b) != pattern::npos);
}

TEST_CASE("pattern finds bytes echoed from the wrong place, by a word, a line or more",
          "[probe][pattern]") {
  const pattern p(9);
  const std::size_t shift = GENERATE(1u, 8u, 64u, 512u, 4096u);
  std::vector<std::uint8_t> bytes(8192);
  p.fill(shift, bytes); // what a server that skipped |shift| bytes would send back
  CHECK(p.mismatch(0, bytes) == 0);
  // And a long run of correct bytes from an unaligned offset still matches.
  std::vector<std::uint8_t> right(8192);
  p.fill(3 + shift, right);
  CHECK(p.mismatch(3 + shift, right) == pattern::npos);
}
