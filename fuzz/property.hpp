// SPDX-License-Identifier: MIT
// fuzz/property.hpp: DETOUR_FUZZ_CHECK, the assertion the fuzz targets use for their
// properties: it prints the failed condition and aborts, so libFuzzer saves the input (and the
// replay build fails the corpus test). Active in every build type.
#pragma once

#include <cstdio>
#include <cstdlib>

#define DETOUR_FUZZ_CHECK(cond)                                                                    \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      std::fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #cond);             \
      std::abort();                                                                                \
    }                                                                                              \
  } while (0)
