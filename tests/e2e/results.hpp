// SPDX-License-Identifier: MIT
// tests/e2e/results.hpp: judging the results of a batch of probe tasks in the end-to-end tests;
// each failed task is reported (task, failure kind, detail) next to the assertion that fails.
#pragma once

#include "probe_task.hpp"

#include <catch2/catch_message.hpp>
#include <catch2/catch_test_macros.hpp>

#include <cstddef>
#include <vector>

namespace detour::test {

/// How many of `results` passed; each one that did not is reported with the next assertion.
inline std::size_t count_ok(const std::vector<cli::probe::task_result>& results) {
  std::size_t ok = 0;
  for (const auto& r : results) {
    if (!r.ok()) {
      UNSCOPED_INFO("task " << r.match_id << ": " << cli::probe::to_string(r.error) << " "
                            << r.detail);
    }
    ok += r.ok() ? 1 : 0;
  }
  return ok;
}

/// Whether every one of `results` passed (for CHECK).
inline bool all_ok(const std::vector<cli::probe::task_result>& results) {
  return count_ok(results) == results.size();
}

/// Every one of `results` passed, or the test case ends here.
inline void require_all_ok(const std::vector<cli::probe::task_result>& results) {
  REQUIRE(count_ok(results) == results.size());
}

} // namespace detour::test
