// SPDX-License-Identifier: MIT
// fuzz/property.hpp: what the fuzz targets share: DETOUR_FUZZ_CHECK, the assertion for their
// properties (it prints the failed condition and aborts, so libFuzzer saves the input and the
// replay build fails the corpus test; active in every build type), and small checks that more
// than one target applies.
#pragma once

#include <detour/error.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>

#define DETOUR_FUZZ_CHECK(cond)                                                                    \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      std::fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #cond);             \
      std::abort();                                                                                \
    }                                                                                              \
  } while (0)

namespace detour::fuzz {

/// A reported error is one of ours with a message of its own: set, in the "detour" category,
/// and not the fallback text the category gives values it does not know.
inline bool named_error(errc e) {
  if (e == errc{}) return false;
  const std::error_code ec = make_error_code(e);
  const std::string unknown = make_error_code(static_cast<errc>(-1)).message();
  return ec.category().name() == std::string("detour") && !ec.message().empty() &&
         ec.message() != unknown;
}

/// `part` lies inside `whole` (an empty view, pointing anywhere, counts as inside).
template <class T, class U>
bool inside(std::span<T> part, std::span<U> whole) {
  // As integers: pointers into different objects do not compare meaningfully.
  const auto lo = reinterpret_cast<std::uintptr_t>(whole.data());
  const auto p = reinterpret_cast<std::uintptr_t>(part.data());
  return part.empty() || (p >= lo && p + part.size_bytes() <= lo + whole.size_bytes());
}

} // namespace detour::fuzz
