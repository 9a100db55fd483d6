// SPDX-License-Identifier: MIT
// detour/io/inspect.hpp: the inspection hook of the relay. A user-supplied callable sees each
// chunk of each direction of a task, with the task's request (g3proxy stream detour: upstream,
// user, protocol, WebSocket fields), and passes it, replaces it, or ends the task.
#pragma once

#include <detour/concepts.hpp>
#include <detour/request.hpp>

#include <concepts>
#include <cstdint>
#include <span>

namespace detour::io {

/// One chunk of relayed bytes, as an inspector sees it.
/// @tparam Context what the relay was given as the task's context (the server drivers give
///   the task's `north_request`); `void` when relaying without one.
template <class Context>
struct chunk {
  /// Which stream the bytes travel on: north carries client bytes towards the remote, south
  /// carries remote bytes towards the client.
  stream_kind side = stream_kind::north;
  /// The bytes, never more than the relay's window. Valid only during the call. Empty only when
  /// `last` is set.
  std::span<const std::uint8_t> bytes;
  /// Offset of `bytes[0]` in this direction's relayed data (0 for the first byte after the
  /// stream's header and payload).
  std::uint64_t offset = 0;
  /// The final call for this direction: the source finished (FIN) and every earlier chunk was
  /// relayed; `bytes` is empty. An inspector that kept bytes back emits them now (replace).
  bool last = false;
  /// The task's context, or nullptr; lives as long as the task.
  const Context* task = nullptr;
};

/// What an inspector decides about one chunk.
struct verdict {
  enum class kind : std::uint8_t {
    pass,    ///< forward the chunk unchanged (zero copy: written straight from the source)
    replace, ///< forward `replacement` instead of the chunk (possibly empty: drop the chunk)
    end,     ///< end the task: both sides of this direction are reset with `code`
  };
  kind action = kind::pass;
  /// For `replace`: the bytes to forward. They must stay valid and unchanged until this
  /// inspector is called again or its relay is destroyed (keep them in the inspector).
  std::span<const std::uint8_t> replacement{};
  /// For `end`: the application code for RESET_STREAM and STOP_SENDING.
  app_code code = 0;

  static constexpr verdict pass() noexcept { return verdict{}; }
  static constexpr verdict replace(std::span<const std::uint8_t> bytes) noexcept {
    return verdict{kind::replace, bytes, 0};
  }
  static constexpr verdict end(app_code c) noexcept { return verdict{kind::end, {}, c}; }
};

/// @brief An inspection hook: `i(c)` for a `const chunk<Context>& c` returns a `verdict`.
///
/// Each relay direction owns its own copy of the inspector (copied from the prototype the
/// driver was given), so per-direction state (a line buffer, a byte counter, a pattern
/// matcher's position) lives in plain members; state shared by all tasks lives behind a pointer
/// member. The inspector runs on the caller's thread inside `relay::step()`; it must not throw.
template <class I, class Context>
concept inspector = requires(I& i, const chunk<Context>& c) {
  { i(c) } -> std::same_as<verdict>;
};

/// The identity inspector: every chunk passes. What the pass-through server uses.
struct pass_through {
  template <class Context>
  constexpr verdict operator()(const chunk<Context>&) const noexcept {
    return verdict::pass();
  }
};

} // namespace detour::io
