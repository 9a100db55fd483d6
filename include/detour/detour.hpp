// SPDX-License-Identifier: MIT
// detour/detour.hpp: the whole library in one include.
#pragma once

#include <detour/version.hpp>
