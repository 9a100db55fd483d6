// SPDX-License-Identifier: MIT
// Tests of cli/event_loop.hpp: timer order and re-arming, deferred calls, fd watches (also one
// removed while its event is pending), signals through signalfd.
#include "event_loop.hpp"

#include <catch2/catch_test_macros.hpp>

#include <sys/epoll.h>
#include <unistd.h>

#include <csignal>
#include <memory>
#include <vector>

using namespace detour::cli;

namespace {

// Runs the loop until |done| or a 5 s deadline, whichever comes first.
template <class Pred>
bool run_until(event_loop& loop, Pred done) {
  const timestamp give_up = monotonic_now() + 5 * nanoseconds_per_second;
  while (!done() && monotonic_now() < give_up) loop.run_once(give_up);
  return done();
}

struct pipe_fds {
  int r = -1, w = -1;
  pipe_fds() {
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    r = fds[0];
    w = fds[1];
  }
  ~pipe_fds() {
    ::close(r);
    ::close(w);
  }
};

} // namespace

TEST_CASE("event_loop fires timers in deadline order, not arming order", "[event_loop][timer]") {
  event_loop loop;
  std::vector<int> fired;
  const timestamp now = monotonic_now();
  timer a(loop, [&] { fired.push_back(1); });
  timer b(loop, [&] { fired.push_back(2); });
  timer c(loop, [&] { fired.push_back(3); });
  c.arm_at(now + 3 * nanoseconds_per_millisecond);
  a.arm_at(now + 1 * nanoseconds_per_millisecond);
  b.arm_at(now + 2 * nanoseconds_per_millisecond);
  REQUIRE(run_until(loop, [&] { return fired.size() == 3; }));
  CHECK(fired == std::vector<int>{1, 2, 3});
  CHECK_FALSE(a.armed());
}

TEST_CASE("event_loop timers can be re-armed later, earlier and cancelled", "[event_loop][timer]") {
  event_loop loop;
  std::vector<int> fired;
  const timestamp now = monotonic_now();
  timer a(loop, [&] { fired.push_back(1); });
  timer b(loop, [&] { fired.push_back(2); });
  timer c(loop, [&] { fired.push_back(3); });
  a.arm_at(now + 1 * nanoseconds_per_millisecond);
  b.arm_at(now + 2 * nanoseconds_per_millisecond);
  c.arm_at(now + 3 * nanoseconds_per_millisecond);
  a.arm_at(now + 4 * nanoseconds_per_millisecond); // later
  c.arm_at(now);                                   // earlier
  b.cancel();
  REQUIRE(run_until(loop, [&] { return fired.size() == 2; }));
  CHECK(fired == std::vector<int>{3, 1});
}

TEST_CASE("event_loop never fires a timer before its deadline", "[event_loop][timer]") {
  event_loop loop;
  timestamp fired_at = 0;
  const timestamp deadline = monotonic_now() + 3 * nanoseconds_per_millisecond;
  timer t(loop, [&] { fired_at = monotonic_now(); });
  t.arm_at(deadline);
  REQUIRE(run_until(loop, [&] { return fired_at != 0; }));
  CHECK(fired_at >= deadline);
}

TEST_CASE("event_loop timers may destroy themselves in their callback", "[event_loop][timer]") {
  event_loop loop;
  bool fired = false;
  std::unique_ptr<timer> t;
  t = std::make_unique<timer>(loop, [&] {
    fired = true;
    t.reset();
  });
  t->arm_in(0);
  REQUIRE(run_until(loop, [&] { return fired; }));
  CHECK(t == nullptr);
}

TEST_CASE("event_loop runs a deferred call once however often it was scheduled",
          "[event_loop][deferred]") {
  event_loop loop;
  int runs = 0;
  deferred d(loop, [&] { ++runs; });
  d.schedule();
  d.schedule();
  CHECK(d.scheduled());
  loop.run_once(monotonic_now());
  CHECK(runs == 1);
  CHECK_FALSE(d.scheduled());
  loop.run_once(monotonic_now());
  CHECK(runs == 1);
}

TEST_CASE("event_loop runs a deferred call scheduled by another on the next iteration",
          "[event_loop][deferred]") {
  event_loop loop;
  int second_runs = 0;
  deferred second(loop, [&] { ++second_runs; });
  deferred first(loop, [&] { second.schedule(); });
  first.schedule();
  loop.run_once(monotonic_now());
  CHECK(second_runs == 0);
  CHECK(second.scheduled());
  loop.run_once(monotonic_now());
  CHECK(second_runs == 1);
}

TEST_CASE("event_loop reports a readable pipe to its watch", "[event_loop][io]") {
  event_loop loop;
  pipe_fds p;
  std::uint32_t seen = 0;
  io_watch w(loop, p.r, EPOLLIN, [&](std::uint32_t ev) { seen = ev; });
  REQUIRE(::write(p.w, "x", 1) == 1);
  REQUIRE(run_until(loop, [&] { return seen != 0; }));
  CHECK((seen & EPOLLIN) != 0);
}

TEST_CASE("event_loop drops the pending event of a watch destroyed during dispatch",
          "[event_loop][io]") {
  event_loop loop;
  pipe_fds p1, p2;
  int calls = 0;
  std::unique_ptr<io_watch> w1, w2;
  // Whichever is dispatched first destroys the other, whose event is pending in the same batch.
  w1 = std::make_unique<io_watch>(loop, p1.r, EPOLLIN, [&](std::uint32_t) {
    ++calls;
    w2.reset();
  });
  w2 = std::make_unique<io_watch>(loop, p2.r, EPOLLIN, [&](std::uint32_t) {
    ++calls;
    w1.reset();
  });
  REQUIRE(::write(p1.w, "x", 1) == 1);
  REQUIRE(::write(p2.w, "x", 1) == 1);
  loop.run_once(monotonic_now() + nanoseconds_per_second);
  CHECK(calls == 1);
  CHECK((w1 == nullptr) != (w2 == nullptr));
}

TEST_CASE("event_loop delivers a signal through signal_watch", "[event_loop][signal]") {
  event_loop loop;
  int got = 0;
  signal_watch s(loop, {SIGUSR1}, [&](int sig) { got = sig; });
  REQUIRE(::raise(SIGUSR1) == 0); // blocked, so it waits in the signalfd
  REQUIRE(run_until(loop, [&] { return got != 0; }));
  CHECK(got == SIGUSR1);
}

TEST_CASE("event_loop stop() ends run()", "[event_loop]") {
  event_loop loop;
  timer t(loop, [&] { loop.stop(); });
  t.arm_in(nanoseconds_per_millisecond);
  loop.run();
  CHECK(loop.stopped());
}
