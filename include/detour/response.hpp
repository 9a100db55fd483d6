// SPDX-License-Identifier: MIT
// detour/response.hpp: the 4-byte answer a detour server writes on the north stream after a
// north request (g3proxy stream detour): u16 big-endian match id, then u16 big-endian action
// (0 continue, 1 bypass, anything else block).
#pragma once

#include <detour/detail/bytes.hpp>
#include <detour/error.hpp>
#include <detour/result.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace detour {

/// The size of a response on the wire.
inline constexpr std::size_t response_size = 2 + 2;

/// What g3proxy does with a task.
enum class action : std::uint16_t {
  proceed = 0, ///< g3 DetourAction::Continue: write the south hello and relay through us
  bypass = 1,  ///< g3 DetourAction::Bypass: relay directly, without us
  block = 2,   ///< g3 DetourAction::Block: close the client's connection
};

/// g3proxy's name: "continue", "bypass", "block".
constexpr std::string_view to_string(action a) noexcept {
  switch (a) {
  case action::proceed:
    return "continue";
  case action::bypass:
    return "bypass";
  case action::block:
    return "block";
  }
  return "block";
}

/// How g3proxy reads an action value: 0 continue, 1 bypass, any other value block.
constexpr action action_from_wire(std::uint16_t raw) noexcept {
  return raw == 0 ? action::proceed : raw == 1 ? action::bypass : action::block;
}

/// A decoded response.
struct response {
  std::uint16_t match_id = 0;
  /// What g3proxy will do (an unknown value means block, as in g3proxy).
  action decision = action::proceed;
  /// The action value as sent, for logs and diagnostics.
  std::uint16_t raw_action = 0;

  friend constexpr bool operator==(const response&, const response&) = default;
};

/// The 4 bytes of a response carrying `raw_action` as is (for tests and diagnostics).
constexpr std::array<std::uint8_t, response_size>
encode_response(std::uint16_t match_id, std::uint16_t raw_action) noexcept {
  std::array<std::uint8_t, response_size> out{};
  detail::store_be16(out.data(), match_id);
  detail::store_be16(out.data() + 2, raw_action);
  return out;
}

/// The 4 bytes answering the task `match_id` with `a`.
constexpr std::array<std::uint8_t, response_size> encode_response(std::uint16_t match_id,
                                                                  action a) noexcept {
  return encode_response(match_id, static_cast<std::uint16_t>(a));
}

/// Decodes a response from the start of `bytes`: need_more until 4 bytes are there, then
/// complete with `consumed` 4. Never an error: every action value has a meaning.
constexpr decode_result<response> decode_response(std::span<const std::uint8_t> bytes) noexcept {
  if (bytes.size() < response_size)
    return decode_result<response>::more(response_size - bytes.size());
  const std::uint16_t raw = detail::load_be16(bytes.data() + 2);
  return decode_result<response>::ok({detail::load_be16(bytes.data()), action_from_wire(raw), raw},
                                     response_size);
}

/// Decodes a response as g3proxy reads it for the task `expected_match_id`: a different match
/// id is match_id_mismatch at offset 0 ("invalid match id" in g3proxy, which fails the task).
constexpr decode_result<response> decode_response(std::span<const std::uint8_t> bytes,
                                                  std::uint16_t expected_match_id) noexcept {
  auto r = decode_response(bytes);
  if (r.complete() && r.value.match_id != expected_match_id)
    return decode_result<response>::fail(errc::match_id_mismatch, 0);
  return r;
}

} // namespace detour
