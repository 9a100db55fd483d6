// SPDX-License-Identifier: MIT
// Tests of cli/random.hpp: the random bytes of serve, probe and wolfSSL. Small requests come
// from a per-thread read-ahead block whose bytes are erased as they are handed out, so the ways
// it can go wrong are handing out erased (zero) or already given bytes, at block edges above
// all; and wolfSSL, built with CUSTOM_RAND_GENERATE_BLOCK by scripts/deps, must work from it.
#include "random.hpp"

#include <catch2/catch_test_macros.hpp>

#include <wolfssl/options.h>

#include <wolfssl/wolfcrypt/random.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <set>
#include <thread>
#include <vector>

using namespace detour::cli;

namespace {

// Draws |total| bytes in pieces of 1 to 37 bytes, so that many pieces straddle block edges.
std::vector<std::uint8_t> draw_in_pieces(std::size_t total) {
  std::vector<std::uint8_t> out(total);
  std::size_t done = 0;
  for (std::size_t piece = 1; done < total; piece = piece % 37 + 1) {
    const std::size_t n = std::min(piece, total - done);
    fill_random({out.data() + done, n});
    done += n;
  }
  return out;
}

// 16-byte windows of |bytes|, as a set: random data repeats none.
std::set<std::array<std::uint8_t, 16>> windows(const std::vector<std::uint8_t>& bytes) {
  std::set<std::array<std::uint8_t, 16>> out;
  for (std::size_t i = 0; i + 16 <= bytes.size(); i += 16) {
    std::array<std::uint8_t, 16> w{};
    std::copy_n(bytes.begin() + static_cast<std::ptrdiff_t>(i), 16, w.begin());
    out.insert(w);
  }
  return out;
}

} // namespace

TEST_CASE("fill_random hands out no erased byte, also across block edges") {
  // 64 KiB in small pieces go through 128 blocks. Each byte value is expected 256 times; handed
  // out erased bytes would push the count of zeros far above.
  const auto bytes = draw_in_pieces(64 * 1024);
  std::array<std::size_t, 256> count{};
  for (const std::uint8_t b : bytes) ++count[b];
  CHECK(count[0] < 400);
  CHECK(*std::min_element(count.begin(), count.end()) > 150);
  CHECK(*std::max_element(count.begin(), count.end()) < 400);
}

TEST_CASE("fill_random never hands out the same bytes twice") {
  const auto bytes = draw_in_pieces(32 * 1024);
  CHECK(windows(bytes).size() == bytes.size() / 16);
}

TEST_CASE("fill_random fills requests of every size, large ones straight from the kernel") {
  for (const std::size_t size : {std::size_t{0}, std::size_t{1}, random_block_size - 1,
                                 random_block_size, random_block_size + 1, std::size_t{70'000}}) {
    CAPTURE(size);
    std::vector<std::uint8_t> a(size, 0), b(size, 0);
    fill_random(a);
    fill_random(b);
    if (size == 0) continue;
    if (size >= 16) {
      // Not all zero (erased or untouched), and two draws differ.
      CHECK(std::count(a.begin(), a.end(), 0) < static_cast<std::ptrdiff_t>(size / 64 + 8));
      CHECK(a != b);
    }
  }
}

TEST_CASE("each thread draws its own bytes") {
  std::vector<std::uint8_t> a, b;
  std::thread ta([&] { a = draw_in_pieces(16 * 1024); });
  std::thread tb([&] { b = draw_in_pieces(16 * 1024); });
  ta.join();
  tb.join();
  auto all = windows(a);
  const auto from_b = windows(b);
  all.insert(from_b.begin(), from_b.end());
  CHECK(all.size() == (a.size() + b.size()) / 16);
}

TEST_CASE("wolfSSL's random number generator works from fill_random") {
#ifdef CUSTOM_RAND_GENERATE_BLOCK
  WC_RNG rng;
  REQUIRE(wc_InitRng(&rng) == 0);
  std::vector<std::uint8_t> a(1000, 0), b(1000, 0);
  REQUIRE(wc_RNG_GenerateBlock(&rng, a.data(), static_cast<word32>(a.size())) == 0);
  REQUIRE(wc_RNG_GenerateBlock(&rng, b.data(), static_cast<word32>(b.size())) == 0);
  CHECK(a != b);
  CHECK(std::count(a.begin(), a.end(), 0) < 20);
  wc_FreeRng(&rng);
#else
  SKIP("this wolfSSL keeps its own generator (not built by scripts/deps)");
#endif
}
