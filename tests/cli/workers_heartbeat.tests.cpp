// SPDX-License-Identifier: MIT
// worker_group::heartbeat (cli/workers.hpp), the liveness behind `detour serve`'s watchdog: a
// worker whose loop has not run the previous round's call is reported late, and no new round
// starts until it has.
#include "certs.hpp"
#include "event_loop.hpp"
#include "log.hpp"
#include "serve_config.hpp"
#include "tls.hpp"
#include "workers.hpp"

#include <catch2/catch_test_macros.hpp>

#include <stdlib.h>

#include <cstddef>
#include <filesystem>
#include <vector>

using namespace detour::cli;

namespace {

struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    char tmpl[] = "/tmp/detour-heartbeat-test-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~temp_dir() { std::filesystem::remove_all(path); }
};

// Turns |loop| until heartbeat() finds every worker answered, within five seconds.
bool until_all_answered(event_loop& loop, worker_group& group) {
  const timestamp deadline = monotonic_now() + 5'000 * nanoseconds_per_millisecond;
  while (monotonic_now() < deadline) {
    if (group.heartbeat().empty()) return true;
    loop.run_once(monotonic_now() + nanoseconds_per_millisecond);
  }
  return false;
}

} // namespace

TEST_CASE("worker_group::heartbeat reports a worker whose loop did not turn, until it does") {
  temp_dir dir;
  bool created = false;
  const cert_set_paths certs = ensure_development_certs(dir.path, created);
  tls_server_config tc;
  tc.certificate_file = certs.server_certificate;
  tc.private_key_file = certs.server_key;
  serve_config config;
  config.listen = {socket_address::ipv4_loopback(0)};
  logger log(log_level::off);
  event_loop loop;
  worker_group group(loop, config, tls_context::server(tc), log, 2);
  group.start();

  // Round 0 needs no answer: the first call starts round 1 in both mailboxes.
  CHECK(group.heartbeat().empty());
  // Worker 0 runs on this thread's loop, which has not turned since: it is late (worker 1, on
  // its own thread, may or may not have answered yet). No new round starts meanwhile.
  const std::vector<std::size_t> late = group.heartbeat();
  REQUIRE_FALSE(late.empty());
  CHECK(late.front() == 0);
  // Once the loops have run the call, every worker has answered and the next round starts.
  REQUIRE(until_all_answered(loop, group));
  // The new round is again owed by worker 0 until this loop turns.
  const std::vector<std::size_t> again = group.heartbeat();
  REQUIRE_FALSE(again.empty());
  CHECK(again.front() == 0);
  CHECK(until_all_answered(loop, group));
}
