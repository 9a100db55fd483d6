// SPDX-License-Identifier: MIT
// fuzz/response.cpp: the 4-byte detour response. Properties: need_more with the exact count
// below 4 bytes (also when a match id is expected); otherwise complete with consumed 4; the
// decision follows g3proxy's reading (0 continue, 1 bypass, else block, under g3proxy's names)
// with the raw value kept; parse -> serialize -> parse is stable; the match-id check refuses
// exactly the other ids.
#include <detour/response.hpp>

#include "property.hpp"

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

using namespace detour;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> in(data, size);
  const auto r = decode_response(in);
  if (size < response_size) {
    DETOUR_FUZZ_CHECK(r.need_more() && r.needed == response_size - size && r.consumed == 0);
    // Too short to hold a match id is not a mismatch.
    const auto short_checked = decode_response(in, 0x1234);
    DETOUR_FUZZ_CHECK(short_checked.need_more() && short_checked.needed == r.needed);
    return 0;
  }
  DETOUR_FUZZ_CHECK(r.complete() && r.consumed == response_size);
  const std::uint16_t raw = static_cast<std::uint16_t>(data[2] << 8 | data[3]);
  DETOUR_FUZZ_CHECK(r.value.raw_action == raw);
  DETOUR_FUZZ_CHECK(r.value.decision == (raw == 0   ? action::proceed
                                         : raw == 1 ? action::bypass
                                                    : action::block));
  DETOUR_FUZZ_CHECK(action_from_wire(raw) == r.value.decision);
  // g3proxy's names for what it will do.
  const std::string_view name = to_string(r.value.decision);
  DETOUR_FUZZ_CHECK(name == (raw == 0 ? "continue" : raw == 1 ? "bypass" : "block"));
  const auto wire = encode_response(r.value.match_id, r.value.raw_action);
  for (std::size_t i = 0; i < response_size; ++i) DETOUR_FUZZ_CHECK(wire[i] == data[i]);
  const auto again = decode_response(wire);
  DETOUR_FUZZ_CHECK(again.complete() && again.value == r.value);
  // Canonical form: the decision's own value.
  const auto canonical = decode_response(encode_response(r.value.match_id, r.value.decision));
  DETOUR_FUZZ_CHECK(canonical.value.decision == r.value.decision);
  const std::uint16_t other = static_cast<std::uint16_t>(r.value.match_id + 1);
  DETOUR_FUZZ_CHECK(decode_response(in, r.value.match_id).complete());
  const auto mismatch = decode_response(in, other);
  DETOUR_FUZZ_CHECK(mismatch.failed() && mismatch.error == errc::match_id_mismatch &&
                    mismatch.offset == 0 && fuzz::named_error(mismatch.error));
  return 0;
}
