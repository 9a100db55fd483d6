// SPDX-License-Identifier: MIT
// detour/stream_side.hpp: which half of a detour task a stream carries (g3proxy stream detour:
// each task opens two bidirectional streams, north for client bytes, south for remote bytes).
#pragma once

#include <cstdint>

namespace detour {

/// Which half of a task a stream carries.
enum class stream_side : std::uint8_t {
  /// Opened with the north request (PPv2 with E0 E3 E4 E5 E6, then the payload); relays the
  /// client's bytes (client -> north send; north receive -> remote).
  north,
  /// Opened with the south hello (PPv2 with E5 alone); relays the remote's bytes
  /// (remote -> south send; south receive -> client).
  south,
};

/// The other half of the same task.
constexpr stream_side partner_of(stream_side s) noexcept {
  return s == stream_side::north ? stream_side::south : stream_side::north;
}

/// "north" or "south".
constexpr const char* to_string(stream_side s) noexcept {
  return s == stream_side::north ? "north" : "south";
}

} // namespace detour
