// SPDX-License-Identifier: MIT
// fuzz/websocket_payload.cpp: the WebSocket payload of a north request (g3proxy
// WebSocketNotes::serialize). Properties: an error's offset lies inside the input; an accepted
// payload's views lie inside the input and serialize back to exactly the input, which parses
// to the same fields; tighter limits never accept what the defaults refuse.
#include <detour/websocket_payload.hpp>

#include "property.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

using namespace detour;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const auto r = parse_websocket_payload(in);
  const websocket_limits tight{size % 97 + 1, size % 13 + 1};
  const auto t = parse_websocket_payload(in, tight);
  if (t.complete()) DETOUR_FUZZ_CHECK(r.complete());
  if (r.failed()) {
    DETOUR_FUZZ_CHECK(r.offset < size || (size == 0 && r.offset == 0));
    return 0;
  }
  DETOUR_FUZZ_CHECK(r.complete() && r.consumed == size);
  const auto& p = r.value;
  const auto inside = [&](std::string_view v) {
    return v.data() >= in.data() && v.data() + v.size() <= in.data() + size;
  };
  DETOUR_FUZZ_CHECK(!p.resource.empty() && inside(p.resource));
  std::vector<websocket_header> headers;
  for (const auto h : p.headers()) {
    DETOUR_FUZZ_CHECK(!h.name.empty() && inside(h.name) && inside(h.value));
    headers.push_back(h);
  }
  DETOUR_FUZZ_CHECK(headers.size() == p.header_count);
  // parse -> serialize: exactly the input; -> parse: the same fields.
  std::vector<char> out(size);
  const auto s = serialize_websocket_payload(p.resource, headers, out);
  DETOUR_FUZZ_CHECK(s.ok() && s.size == size);
  DETOUR_FUZZ_CHECK(std::string_view(out.data(), size) == in);
  const auto again = parse_websocket_payload(std::string_view(out.data(), size));
  DETOUR_FUZZ_CHECK(again.complete() && again.value.header_count == p.header_count);
  DETOUR_FUZZ_CHECK(again.value.resource == p.resource);
  return 0;
}
