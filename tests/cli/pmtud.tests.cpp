// SPDX-License-Identifier: MIT
// The datagram sizes path MTU discovery tries (cli/pmtud.hpp), walked the way ngtcp2 walks
// them, over paths of every MTU.
#include "pmtud.hpp"

#include <catch2/catch_test_macros.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>

using detour::cli::pmtud_probes;

namespace {

struct walk_result {
  std::size_t sent = 0;    // probe packets, lost ones included
  std::size_t lost = 0;    // of which the path dropped
  std::size_t size = 1200; // what the connection ends up sending
};

// ngtcp2 1.11 (lib/ngtcp2_pmtud.c): it starts at the first size above 1200 that the peer's
// max_udp_payload_size (|hard_max|) allows and moves forward through the list, skipping every
// size not above the one proven, above |hard_max|, or not below one that failed. A size that
// fits the path (|path|) succeeds with one probe; one that does not costs three lost probes.
walk_result walk(const pmtud_probes& p, std::size_t hard_max, std::size_t path) {
  walk_result r;
  std::size_t min_fail = static_cast<std::size_t>(-1);
  for (std::size_t i = 0; i < p.count; ++i) {
    const std::size_t size = p.sizes[i];
    if (size <= r.size || size > hard_max || size >= min_fail) continue;
    if (size <= path) {
      ++r.sent;
      r.size = size;
    } else {
      r.sent += 3;
      r.lost += 3;
      min_fail = size;
    }
  }
  return r;
}

// The size discovery should settle on: the largest listed size the path and peer allow.
std::size_t best(const pmtud_probes& p, std::size_t hard_max, std::size_t path) {
  std::size_t b = 1200;
  for (std::size_t i = 0; i < p.count; ++i) {
    if (p.sizes[i] <= std::min(hard_max, path)) b = std::max<std::size_t>(b, p.sizes[i]);
  }
  return b;
}

} // namespace

TEST_CASE("pmtud probes: every size is above 1200, at most the maximum, and listed once",
          "[pmtud]") {
  for (const std::size_t max : {1200, 1201, 1300, 1452, 1500, 4000, 8952, 9000, 16384}) {
    INFO("max " << max);
    const pmtud_probes p(max);
    for (std::size_t i = 0; i < p.count; ++i) {
      CHECK(p.sizes[i] > 1200);
      CHECK(p.sizes[i] <= max);
      for (std::size_t j = 0; j < i; ++j) CHECK(p.sizes[i] != p.sizes[j]);
    }
    // The maximum itself is tried (at 1200, there is nothing to try).
    const std::span<const std::uint16_t> listed = std::span(p.sizes).first(p.count);
    CHECK((std::find(listed.begin(), listed.end(), max) != listed.end()) == (max > 1200));
  }
  CHECK(pmtud_probes(1200).count == 0);
}

TEST_CASE("pmtud probes: an Ethernet path settles in one probe, loopback in two", "[pmtud]") {
  const pmtud_probes serve(8952); // serve's default maximum
  // g3proxy's quinn takes up to 1452: one probe, nothing lost.
  const walk_result ethernet = walk(serve, 1452, 1500 - 48);
  CHECK(ethernet.size == 1452);
  CHECK(ethernet.sent == 1);
  CHECK(ethernet.lost == 0);
  // A client that takes jumbo datagrams over loopback or jumbo frames: 1452, then 8952.
  const walk_result loopback = walk(serve, 8952, 65507);
  CHECK(loopback.size == 8952);
  CHECK(loopback.sent == 2);
  CHECK(loopback.lost == 0);
  // The same client over plain Ethernet: the jumbo probe is lost, 1452 stays.
  const walk_result no_jumbo = walk(serve, 8952, 1452);
  CHECK(no_jumbo.size == 1452);
  CHECK(no_jumbo.lost == 3);
}

TEST_CASE("pmtud probes: narrower paths still find their size", "[pmtud]") {
  const pmtud_probes serve(8952);
  // PPPoE, a fibre service, a tunnel, IPv6's minimum (MTU less 48 bytes of IPv6 + UDP).
  for (const std::size_t mtu : {1492, 1454, 1390, 1280}) {
    INFO("MTU " << mtu);
    const walk_result r = walk(serve, 1452, mtu - 48);
    CHECK(r.size == mtu - 48);
    CHECK(r.sent - r.lost == 1); // the one that fits
  }
  // Below every listed size: 1200, which QUIC requires of every path.
  CHECK(walk(serve, 1452, 1220).size == 1200);
}

TEST_CASE("pmtud probes: the walk ends at the largest listed size the path and peer allow",
          "[pmtud]") {
  for (const std::size_t max : {1250, 1300, 1452, 1500, 4000, 8952, 16384}) {
    const pmtud_probes p(max);
    for (const std::size_t hard_max : {1200, 1350, 1452, 4000, 8952, 65527}) {
      for (std::size_t path = 1200; path <= 17000; path += 7) {
        const walk_result r = walk(p, hard_max, path);
        if (r.size != best(p, hard_max, path)) {
          FAIL("max " << max << ", peer " << hard_max << ", path " << path << ": ended at "
                      << r.size << ", not " << best(p, hard_max, path));
        }
      }
    }
  }
}
