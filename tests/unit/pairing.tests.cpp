// SPDX-License-Identifier: MIT
// Tests for detour/pairing.hpp: pairing a task's north and south streams by match id within one
// connection (g3proxy stream detour "Pairing"), with expiry driven by the caller's time.
#include <detour/pairing.hpp>

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <string_view>
#include <utility>

using detour::errc;
using detour::pairing_status;
using detour::pairing_table;
using detour::stream_kind;

namespace {

constexpr auto north = stream_kind::north;
constexpr auto south = stream_kind::south;

using table = pairing_table<int>; // handles: ints; time: integer ticks

} // namespace

TEST_CASE("pairing_table pairs a south stream with the north stream waiting for it", "[pairing]") {
  table t(8, 100);
  auto r = t.add(north, 7, 1001, 0);
  CHECK(r.status == pairing_status::waiting);
  CHECK_FALSE(r.partner);
  CHECK(t.waiting() == 1);
  REQUIRE(t.next_expiry() == std::optional<std::uint64_t>(100));

  r = t.add(south, 7, 2001, 5);
  REQUIRE(r.status == pairing_status::paired);
  CHECK(r.partner == std::optional<int>(1001));
  CHECK(r.error == errc{});
  CHECK(t.waiting() == 0);
  CHECK_FALSE(t.next_expiry()); // a paired task has no deadline
  const auto state = t.find(7);
  REQUIRE(state);
  CHECK(state->north);
  CHECK(state->south);
  CHECK(state->paired);
  CHECK_FALSE(t.pop_expired(1'000'000));
}

TEST_CASE("pairing_table tolerates the south stream arriving first", "[pairing]") {
  table t(8, 100);
  CHECK(t.add(south, 3, 20, 0).status == pairing_status::waiting);
  const auto r = t.add(north, 3, 10, 1);
  REQUIRE(r.status == pairing_status::paired);
  CHECK(r.partner == std::optional<int>(20));
}

TEST_CASE("pairing_table rejects a duplicate match id and keeps the first stream intact",
          "[pairing][duplicate]") {
  table t(8, 100);
  REQUIRE(t.add(north, 9, 1, 0).status == pairing_status::waiting);

  SECTION("a second north while the first waits") {
    const auto r = t.add(north, 9, 2, 1);
    CHECK(r.status == pairing_status::rejected);
    CHECK(r.error == errc::duplicate_match_id);
    CHECK_FALSE(r.partner);
    // The first north still pairs, with its own handle.
    const auto p = t.add(south, 9, 3, 2);
    REQUIRE(p.status == pairing_status::paired);
    CHECK(p.partner == std::optional<int>(1));
    CHECK(t.next_expiry() == std::nullopt);
  }
  SECTION("a third stream after the task paired, on either side") {
    REQUIRE(t.add(south, 9, 3, 1).status == pairing_status::paired);
    CHECK(t.add(south, 9, 4, 2).error == errc::duplicate_match_id);
    CHECK(t.add(north, 9, 5, 2).error == errc::duplicate_match_id);
    // ... even after one half of the task left: the id stays taken until both are gone.
    CHECK(t.remove(north, 9).partner == std::optional<int>(3));
    CHECK(t.add(north, 9, 6, 3).error == errc::duplicate_match_id);
    CHECK(t.remove(south, 9).found);
    CHECK(t.add(north, 9, 6, 3).status == pairing_status::waiting);
  }
  CHECK(t.size() == 1);
}

TEST_CASE("pairing_table expires a north whose south never comes, and the reverse",
          "[pairing][expiry]") {
  const auto side = GENERATE(north, south);
  table t(8, 50);
  REQUIRE(t.add(side, 11, 42, 1000).status == pairing_status::waiting);
  REQUIRE(t.next_expiry() == std::optional<std::uint64_t>(1050));
  CHECK_FALSE(t.pop_expired(1049));
  CHECK(t.size() == 1);
  const auto e = t.pop_expired(1050);
  REQUIRE(e);
  CHECK(e->match_id == 11);
  CHECK(e->side == side);
  CHECK(e->handle == 42);
  CHECK(t.empty());
  CHECK_FALSE(t.next_expiry());
  CHECK_FALSE(t.pop_expired(5000));
  // The match id is free again: a late partner starts a new wait rather than pairing.
  CHECK(t.add(detour::partner_of(side), 11, 43, 1051).status == pairing_status::waiting);
}

TEST_CASE("pairing_table expires waiting halves in deadline order", "[pairing][expiry]") {
  table t(8, 10);
  REQUIRE(t.add(north, 1, 1, 0).status == pairing_status::waiting);
  REQUIRE(t.add(south, 2, 2, 3).status == pairing_status::waiting);
  REQUIRE(t.add(north, 3, 3, 6).status == pairing_status::waiting);
  REQUIRE(t.add(south, 1, 4, 7).status == pairing_status::paired); // 1 leaves the queue
  CHECK(t.next_expiry() == std::optional<std::uint64_t>(13));
  const auto first = t.pop_expired(100);
  const auto second = t.pop_expired(100);
  REQUIRE(first);
  REQUIRE(second);
  CHECK(first->match_id == 2);
  CHECK(second->match_id == 3);
  CHECK_FALSE(t.pop_expired(100));
  CHECK(t.size() == 1); // the paired task stays
}

TEST_CASE("pairing_table never moves a deadline backwards when time goes backwards",
          "[pairing][expiry]") {
  table t(8, 10);
  REQUIRE(t.add(north, 1, 1, 100).status == pairing_status::waiting);
  REQUIRE(t.add(north, 2, 2, 50).status == pairing_status::waiting); // treated as now = 100
  CHECK(t.next_expiry() == std::optional<std::uint64_t>(110));
  CHECK(t.pop_expired(200)->match_id == 1);
  CHECK(t.next_expiry() == std::optional<std::uint64_t>(110));
  CHECK(t.pop_expired(5)->match_id == 2); // "now" 5 is read as the latest time seen, 200
}

TEST_CASE("pairing_table removes a closed or reset stream and names its partner",
          "[pairing][close]") {
  table t(8, 100);
  SECTION("a waiting half leaves alone") {
    REQUIRE(t.add(north, 5, 1, 0).status == pairing_status::waiting);
    const auto r = t.remove(north, 5);
    CHECK(r.found);
    CHECK_FALSE(r.partner);
    CHECK(t.empty());
    CHECK(t.waiting() == 0);
    CHECK_FALSE(t.next_expiry());
  }
  SECTION("a paired half leaves; its partner is named; the partner leaves last") {
    REQUIRE(t.add(north, 5, 1, 0).status == pairing_status::waiting);
    REQUIRE(t.add(south, 5, 2, 0).status == pairing_status::paired);
    const auto r = t.remove(south, 5);
    CHECK(r.found);
    CHECK(r.partner == std::optional<int>(1));
    const auto state = t.find(5);
    REQUIRE(state);
    CHECK(state->north);
    CHECK_FALSE(state->south);
    CHECK(state->paired);
    CHECK_FALSE(t.next_expiry()); // the remaining half does not start waiting again
    const auto last = t.remove(north, 5);
    CHECK(last.found);
    CHECK_FALSE(last.partner);
    CHECK(t.empty());
  }
  SECTION("removing what is not there changes nothing") {
    REQUIRE(t.add(north, 5, 1, 0).status == pairing_status::waiting);
    CHECK_FALSE(t.remove(south, 5).found);
    CHECK_FALSE(t.remove(north, 6).found);
    CHECK(t.size() == 1);
    CHECK(t.waiting() == 1);
  }
}

TEST_CASE("pairing_table refuses a stream beyond its capacity with pairing_full",
          "[pairing][capacity]") {
  table t(4, 100);
  for (std::uint16_t id = 0; id < 4; ++id)
    REQUIRE(t.add(north, id, id, 0).status == pairing_status::waiting);
  const auto r = t.add(north, 4, 4, 0);
  CHECK(r.status == pairing_status::rejected);
  CHECK(r.error == errc::pairing_full);
  CHECK(t.size() == 4);
  // Pairing an existing entry needs no new room.
  CHECK(t.add(south, 2, 12, 0).status == pairing_status::paired);
  REQUIRE(t.remove(north, 0).found);
  CHECK(t.add(north, 4, 4, 0).status == pairing_status::waiting);
  CHECK(t.capacity() == 4);
  CHECK(pairing_table<int>(0, 1).capacity() == 1);
  CHECK(pairing_table<int>(1'000'000, 1).capacity() == detour::max_pairing_capacity);
}

TEST_CASE("pairing_table allocates its storage for the first entry and frees it when empty",
          "[pairing][capacity][memory]") {
  table t(64, 100);
  CHECK(t.storage_bytes() == 0);
  CHECK(t.capacity() == 64);
  CHECK_FALSE(t.find(3));
  CHECK_FALSE(t.remove(north, 3).found);
  CHECK_FALSE(t.pop_expired(0));
  REQUIRE(t.add(north, 3, 30, 0).status == pairing_status::waiting);
  const auto full = t.storage_bytes();
  CHECK(full >= 64 * sizeof(std::uint32_t) * 2); // the index alone: two slots per entry
  CHECK_FALSE(t.release_storage());              // not empty: nothing changes
  CHECK(t.storage_bytes() == full);
  CHECK(t.add(south, 3, 31, 1).status == pairing_status::paired);
  REQUIRE(t.remove(north, 3).found);
  REQUIRE(t.remove(south, 3).found);
  CHECK(t.release_storage());
  CHECK(t.storage_bytes() == 0);
  // Used again after that, it behaves as new: capacity, expiry, pairing.
  for (std::uint16_t id = 0; id < 64; ++id)
    REQUIRE(t.add(north, id, id, 200).status == pairing_status::waiting);
  CHECK(t.add(north, 64, 64, 200).error == errc::pairing_full);
  CHECK(t.storage_bytes() == full);
  CHECK(t.next_expiry() == std::optional<std::uint64_t>(300));
  CHECK(t.add(south, 63, 163, 201).partner == std::optional<int>(63));
  const auto e = t.pop_expired(300);
  REQUIRE(e);
  CHECK(e->match_id == 0);
  table reserved(8, 100);
  reserved.reserve();
  CHECK(reserved.storage_bytes() > 0);
  CHECK(reserved.empty());
}

TEST_CASE("pairing_table serves match ids that wrap at 65536 over a connection's life",
          "[pairing][wrap]") {
  // 70000 tasks, each paired and finished before the next: task k carries k & 0xFFFF.
  table t(16, 100);
  for (std::uint32_t k = 0; k < 70'000; ++k) {
    const auto id = static_cast<std::uint16_t>(k & 0xFFFF);
    REQUIRE(t.add(north, id, static_cast<int>(k), k).status == pairing_status::waiting);
    const auto r = t.add(south, id, -static_cast<int>(k), k);
    REQUIRE(r.status == pairing_status::paired);
    REQUIRE(r.partner == std::optional<int>(static_cast<int>(k)));
    REQUIRE(t.remove(north, id).partner == std::optional<int>(-static_cast<int>(k)));
    REQUIRE(t.remove(south, id).found);
  }
  CHECK(t.empty());
}

TEST_CASE("pairing_table keeps 16 overlapping tasks of one connection apart (reuse cycle)",
          "[pairing][reuse]") {
  // g3proxy: a connection serves connection_reuse_limit (16) tasks; here all 16 are open at once,
  // with the souths arriving in reverse order, around the wrap point of the match id.
  table t(16, 1000);
  const std::uint32_t first = 65536 - 8;
  for (std::uint32_t k = first; k < first + 16; ++k)
    REQUIRE(t.add(north, static_cast<std::uint16_t>(k & 0xFFFF), static_cast<int>(k), 0).status ==
            pairing_status::waiting);
  CHECK(t.add(north, 100, 1, 0).error == errc::pairing_full);
  for (std::uint32_t k = first + 16; k-- > first;) {
    const auto r = t.add(south, static_cast<std::uint16_t>(k & 0xFFFF), 0, 1);
    REQUIRE(r.status == pairing_status::paired);
    CHECK(r.partner == std::optional<int>(static_cast<int>(k)));
  }
  CHECK(t.waiting() == 0);
}

TEST_CASE("pairing_table works with std::chrono time points as well as ticks",
          "[pairing][expiry]") {
  using clock = std::chrono::steady_clock; // only the types: the table reads no clock
  using namespace std::chrono_literals;
  pairing_table<const char*, clock::time_point> t(4, 5s);
  const clock::time_point t0{};
  REQUIRE(t.add(north, 1, "north", t0).status == pairing_status::waiting);
  CHECK(t.next_expiry() == t0 + 5s);
  CHECK_FALSE(t.pop_expired(t0 + 4999ms));
  const auto e = t.pop_expired(t0 + 5s);
  REQUIRE(e);
  CHECK(std::string_view(e->handle) == "north");
}

TEST_CASE("pairing_table agrees with a simple model under seeded random operations",
          "[pairing][random]") {
  const auto seed = GENERATE(1u, 2u, 3u, 4u, 5u, 6u, 7u, 8u);
  std::mt19937 rng(seed);
  constexpr std::size_t capacity = 12;
  constexpr std::uint64_t timeout = 20;
  table t(capacity, timeout);

  struct model_entry {
    std::optional<int> north, south;
    bool paired = false;
    std::uint64_t deadline = 0;
  };
  std::map<std::uint16_t, model_entry> model;
  std::uint64_t now = 0;
  int next_handle = 1;
  std::optional<std::uint64_t> last_expiry;

  // Ids from a small set, some of them colliding in any power-of-two index (multiples of 4096).
  auto pick_id = [&] {
    const auto r = rng() % 24;
    return static_cast<std::uint16_t>(r < 12 ? r : (r - 12) * 4096);
  };
  for (int step = 0; step < 20'000; ++step) {
    const auto op = rng() % 10;
    const auto side = rng() % 2 ? north : south;
    const auto id = pick_id();
    if (op < 4) {
      const int h = next_handle++;
      const auto r = t.add(side, id, h, now);
      auto it = model.find(id);
      if (it == model.end()) {
        if (model.size() == capacity) {
          REQUIRE(r.error == errc::pairing_full);
        } else {
          REQUIRE(r.status == pairing_status::waiting);
          model_entry e;
          (side == north ? e.north : e.south) = h;
          e.deadline = now + timeout;
          model.emplace(id, e);
        }
      } else {
        auto& e = it->second;
        auto& mine = side == north ? e.north : e.south;
        const auto& theirs = side == north ? e.south : e.north;
        if (e.paired || mine) {
          REQUIRE(r.error == errc::duplicate_match_id);
        } else {
          REQUIRE(r.status == pairing_status::paired);
          REQUIRE(r.partner == theirs); // never paired with anything but the waiting half
          mine = h;
          e.paired = true;
        }
      }
    } else if (op < 7) {
      const auto r = t.remove(side, id);
      auto it = model.find(id);
      if (it == model.end() || !(side == north ? it->second.north : it->second.south)) {
        REQUIRE_FALSE(r.found);
      } else {
        auto& e = it->second;
        (side == north ? e.north : e.south).reset();
        const auto& theirs = side == north ? e.south : e.north;
        REQUIRE(r.found);
        REQUIRE(r.partner == theirs);
        if (!e.north && !e.south) model.erase(it);
      }
    } else {
      now += rng() % 8;
      while (auto e = t.pop_expired(now)) {
        auto it = model.find(e->match_id);
        REQUIRE(it != model.end());
        REQUIRE_FALSE(it->second.paired);
        REQUIRE(it->second.deadline <= now);
        REQUIRE((e->side == north ? it->second.north : it->second.south) == e->handle);
        model.erase(it);
      }
    }
    // Invariants after every step.
    REQUIRE(t.size() == model.size());
    REQUIRE(t.size() <= capacity);
    std::size_t waiting = 0;
    std::optional<std::uint64_t> earliest;
    for (const auto& [key, e] : model) {
      const auto state = t.find(key);
      REQUIRE(state);
      REQUIRE(state->north == e.north.has_value());
      REQUIRE(state->south == e.south.has_value());
      REQUIRE(state->paired == e.paired);
      if (!e.paired) {
        ++waiting;
        REQUIRE(e.deadline > now); // everything due was popped
        if (!earliest || e.deadline < *earliest) earliest = e.deadline;
      }
    }
    REQUIRE(t.waiting() == waiting);
    REQUIRE(t.next_expiry() == earliest);
    if (earliest && last_expiry) REQUIRE(*last_expiry <= *earliest); // expiry is monotone
    if (earliest) last_expiry = earliest;
  }
}
