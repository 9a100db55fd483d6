// SPDX-License-Identifier: MIT
// Tests of cli/id_queue.hpp: first in, first out, no allocation before use, bounded room while
// ids cycle through (the connection's round robin pushes the front back and pops it).
#include "id_queue.hpp"

#include <catch2/catch_test_macros.hpp>

#include <cstdint>
#include <deque>

using detour::cli::id_queue;

TEST_CASE("id_queue gives ids back in the order they came", "[id_queue]") {
  id_queue q;
  CHECK(q.empty());
  CHECK(q.capacity() == 0); // nothing allocated before the first id
  for (std::int64_t id = 0; id < 100; id += 4) q.push_back(id);
  CHECK(q.size() == 25);
  for (std::int64_t id = 0; id < 100; id += 4) {
    REQUIRE_FALSE(q.empty());
    CHECK(q.front() == id);
    q.pop_front();
  }
  CHECK(q.empty());
  q.push_back(7);
  CHECK(q.front() == 7);
  q.clear();
  CHECK(q.empty());
  CHECK(q.size() == 0);
}

TEST_CASE("id_queue matches a deque under a round robin, in bounded room", "[id_queue]") {
  id_queue q;
  std::deque<std::int64_t> model;
  std::uint64_t x = 88172645463325252ULL; // xorshift64: a fixed mix of operations
  for (int step = 0; step < 200000; ++step) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    switch (x % 4) {
    case 0: // a stream gets something to send
      if (model.size() < 64) {
        q.push_back(static_cast<std::int64_t>(step));
        model.push_back(step);
      }
      break;
    case 1: // the front stream still has more: to the back of the round
      if (!model.empty()) {
        q.push_back(q.front());
        q.pop_front();
        model.push_back(model.front());
        model.pop_front();
      }
      break;
    default: // the front stream is done
      if (!model.empty()) {
        q.pop_front();
        model.pop_front();
      }
    }
    REQUIRE(q.size() == model.size());
    REQUIRE(q.empty() == model.empty());
    if (!model.empty()) REQUIRE(q.front() == model.front());
  }
  // At most 64 live ids; consumed ones are dropped once they are half the vector.
  CHECK(q.capacity() <= 256);
}
