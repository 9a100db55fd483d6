// SPDX-License-Identifier: MIT
// fuzz/pairing.cpp: the pairing table driven by a byte-coded script, checked against a plain
// model after every step. Input: byte 0 = capacity (1-16), byte 1 = timeout (1-32 ticks), then
// two bytes per operation: op (low 3 bits: add north, add south, remove north, remove south,
// advance time by the high 5 bits and expire, look up) and match id (low 4 bits, so ids
// collide; the high bits pick ids that share low bits, and ids around the 65535/0 wrap); at
// most 256 operations.
// Properties: never paired twice or with anything but the waiting half; size within capacity;
// rejections exactly when the model says; expiry monotone and only of due, unpaired halves;
// nothing left once every stream was removed.
#include <detour/pairing.hpp>

#include "property.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <vector>

using namespace detour;

namespace {

struct model_entry {
  std::optional<int> north, south;
  bool paired = false;
  std::uint64_t deadline = 0;
};

std::optional<int>& half(model_entry& e, stream_kind k) {
  return k == stream_kind::north ? e.north : e.south;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::size_t capacity = 1 + data[0] % 16;
  const std::uint64_t timeout = 1 + data[1] % 32;
  pairing_table<int> table(capacity, timeout);
  std::map<std::uint16_t, model_entry> model;
  std::uint64_t now = 0;
  int next_handle = 1;
  std::optional<std::uint64_t> last_expiry;

  // 256 operations are plenty for a table of at most 16 entries; longer inputs only slow the
  // campaign down.
  const std::size_t end = std::min<std::size_t>(size, 2 + 2 * 256);
  for (std::size_t i = 2; i + 1 < end; i += 2) {
    const std::uint8_t op = data[i] & 7, arg = data[i] >> 3, raw = data[i + 1];
    // Ids: 0-15 (colliding low bits), multiples of 4096, and 65530-65535 (the wrap).
    const auto id = static_cast<std::uint16_t>(
        raw < 0x80 ? raw & 0x0F : (raw < 0xC0 ? (raw & 0x0F) * 4096 : 65530 + raw % 6));
    const stream_kind side = op & 1 ? stream_kind::south : stream_kind::north;
    switch (op) {
    case 0:
    case 1: {
      const int h = next_handle++;
      const auto r = table.add(side, id, h, now);
      auto it = model.find(id);
      if (it == model.end()) {
        if (model.size() == capacity) {
          DETOUR_FUZZ_CHECK(r.status == pairing_status::rejected && r.error == errc::pairing_full);
        } else {
          DETOUR_FUZZ_CHECK(r.status == pairing_status::waiting && !r.partner);
          model_entry e;
          half(e, side) = h;
          e.deadline = now + timeout;
          model.emplace(id, e);
        }
      } else if (it->second.paired || half(it->second, side)) {
        DETOUR_FUZZ_CHECK(r.status == pairing_status::rejected &&
                          r.error == errc::duplicate_match_id);
      } else {
        // Paired exactly with the half that waited, and only once.
        DETOUR_FUZZ_CHECK(r.status == pairing_status::paired);
        DETOUR_FUZZ_CHECK(r.partner == half(it->second, partner_of(side)));
        half(it->second, side) = h;
        it->second.paired = true;
      }
      break;
    }
    case 2:
    case 3: {
      const auto r = table.remove(side, id);
      auto it = model.find(id);
      if (it == model.end() || !half(it->second, side)) {
        DETOUR_FUZZ_CHECK(!r.found && !r.partner);
        break;
      }
      DETOUR_FUZZ_CHECK(r.found);
      half(it->second, side).reset();
      DETOUR_FUZZ_CHECK(r.partner == half(it->second, partner_of(side)));
      if (!it->second.north && !it->second.south) model.erase(it);
      break;
    }
    case 4:
    case 5: {
      now += arg;
      while (const auto e = table.pop_expired(now)) {
        auto it = model.find(e->match_id);
        DETOUR_FUZZ_CHECK(it != model.end());
        DETOUR_FUZZ_CHECK(!it->second.paired && it->second.deadline <= now);
        DETOUR_FUZZ_CHECK(half(it->second, e->side) == e->handle);
        DETOUR_FUZZ_CHECK(!half(it->second, partner_of(e->side)));
        model.erase(it);
      }
      break;
    }
    default: { // look up
      const auto state = table.find(id);
      const auto it = model.find(id);
      DETOUR_FUZZ_CHECK(state.has_value() == (it != model.end()));
      if (state)
        DETOUR_FUZZ_CHECK(state->north == it->second.north.has_value() &&
                          state->south == it->second.south.has_value() &&
                          state->paired == it->second.paired);
      break;
    }
    }
    // Invariants after every step.
    DETOUR_FUZZ_CHECK(table.size() == model.size() && table.size() <= capacity);
    std::size_t waiting = 0;
    std::optional<std::uint64_t> earliest;
    for (const auto& [key, e] : model) {
      if (e.paired) continue;
      ++waiting;
      if (!earliest || e.deadline < *earliest) earliest = e.deadline;
    }
    DETOUR_FUZZ_CHECK(table.waiting() == waiting);
    DETOUR_FUZZ_CHECK(table.next_expiry() == earliest);
    if (earliest && last_expiry) DETOUR_FUZZ_CHECK(*last_expiry <= *earliest); // monotone
    if (earliest) last_expiry = earliest;
  }
  // Nothing leaks: removing every stream empties the table, and its capacity is whole again.
  for (const auto& [key, e] : model) {
    if (e.north) DETOUR_FUZZ_CHECK(table.remove(stream_kind::north, key).found);
    if (e.south) DETOUR_FUZZ_CHECK(table.remove(stream_kind::south, key).found);
  }
  DETOUR_FUZZ_CHECK(table.empty() && table.waiting() == 0 && !table.next_expiry());
  for (std::size_t k = 0; k < capacity; ++k)
    DETOUR_FUZZ_CHECK(table.add(stream_kind::north, static_cast<std::uint16_t>(k), 0, now).status ==
                      pairing_status::waiting);
  return 0;
}
