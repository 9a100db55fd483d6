// SPDX-License-Identifier: MIT
// tests/support/expect.hpp: turns a vector's "# expect:" / "# detour:" line into checks.
#pragma once

#include <detour/error.hpp>
#include <detour/result.hpp>

#include "support/string_makers.hpp"
#include "support/vectors.hpp"

#include <catch2/catch_test_macros.hpp>

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>

namespace detour::test {

/// The errc spelled `name` ("bad_version").
inline errc errc_from_name(std::string_view name) {
  for (int i = 1; i < 256; ++i)
    if (errc_name(static_cast<errc>(i)) == name) return static_cast<errc>(i);
  throw std::invalid_argument("unknown errc name " + std::string(name));
}

/// Checks `r` against "complete <consumed>" or "error <name> <offset>".
template <class T>
void check_outcome(const decode_result<T>& r, const std::string& expectation) {
  const auto w = words(expectation);
  REQUIRE(!w.empty());
  if (w[0] == "complete") {
    REQUIRE(r.status == decode_status::complete);
    CHECK(r.consumed == std::stoul(w.at(1)));
  } else if (w[0] == "error") {
    REQUIRE(r.status == decode_status::error);
    CHECK(r.error == errc_from_name(w.at(1)));
    CHECK(r.offset == std::stoul(w.at(2)));
  } else {
    FAIL("unknown expectation " << expectation);
  }
}

} // namespace detour::test
