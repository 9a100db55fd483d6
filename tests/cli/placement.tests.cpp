// SPDX-License-Identifier: MIT
// Tests of `detour serve --placement pack`'s choice (cli/server.hpp): the lowest-numbered worker
// that keeps up, else the least late; a worker that read nothing for a while counts as idle.
#include "server.hpp"

#include <catch2/catch_test_macros.hpp>

#include <vector>

using namespace detour::cli;

TEST_CASE("choose_worker takes the lowest-numbered worker that keeps up", "[placement]") {
  const std::vector<std::uint32_t> all_idle{0, 0, 0};
  CHECK(choose_worker(all_idle, 2000) == 0);
  const std::vector<std::uint32_t> first_late{2500, 100, 0};
  CHECK(choose_worker(first_late, 2000) == 1);
  // Just under the bar keeps up; at the bar does not.
  const std::vector<std::uint32_t> at_bar{2000, 1999, 0};
  CHECK(choose_worker(at_bar, 2000) == 1);
}

TEST_CASE("choose_worker takes the least late when none keeps up", "[placement]") {
  const std::vector<std::uint32_t> all_late{9000, 4000, 7000};
  CHECK(choose_worker(all_late, 2000) == 1);
  const std::vector<std::uint32_t> equal{5000, 3000, 3000};
  CHECK(choose_worker(equal, 2000) == 1); // the lowest-numbered among equals
}

TEST_CASE("server_group::place reads each worker's lag, a stale one as idle", "[placement]") {
  server_group g;
  g.workers = 3;
  const std::uint64_t now = 1'000'000'000'000;
  auto say = [&](std::size_t w, std::uint32_t lag_us, std::uint64_t at) {
    g.lags[w].lag_us.store(lag_us);
    g.lags[w].at.store(at);
  };
  say(0, 5000, now - 1'000'000);
  say(1, 3000, now - 1'000'000);
  say(2, 4000, now - 1'000'000);
  CHECK(g.place(now) == 1); // all late: the least
  say(1, 500, now);
  CHECK(g.place(now) == 1); // worker 0 late, worker 1 keeps up
  say(0, 1500, now);
  CHECK(g.place(now) == 0); // worker 0 keeps up again
  // Worker 0 said it was late, then read nothing for longer than lag_stale_ns: nothing of its
  // waits, so it is idle, and first again.
  say(0, 9000, now - lag_stale_ns - 1);
  CHECK(g.place(now) == 0);
  say(0, 9000, now - lag_stale_ns + 1'000'000);
  CHECK(g.place(now) == 1);
  // Only the group's workers count, whatever the rest of the table says.
  g.workers = 1;
  CHECK(g.place(now) == 0);
}
