// SPDX-License-Identifier: MIT
// detour/version.hpp: the library's version. CMake reads the three numbers from this file, so it
// is the one place a release changes them.
#pragma once

#define DETOUR_VERSION_MAJOR 0
#define DETOUR_VERSION_MINOR 1
#define DETOUR_VERSION_PATCH 0

namespace detour {

/// The version as "MAJOR.MINOR.PATCH".
inline constexpr const char* version_string = "0.1.0";

} // namespace detour
