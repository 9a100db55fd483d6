// SPDX-License-Identifier: MIT
// fuzz/detour_request.cpp: the detour layer (g3proxy stream detour) over raw stream bytes.
// Properties: consumed <= size; the result agrees with the PROXY v2 decoder and the classifier;
// an accepted north request or south hello re-encodes (g3proxy's bytes) and decodes to the same
// fields; the incremental decoder fed byte by byte gives the same result; relaxing the UTF-8
// rule never refuses what the strict rule accepts; a WebSocket payload parses with views inside
// the input.
#include <detour/ppv2/decode.hpp>
#include <detour/request.hpp>
#include <detour/websocket_payload.hpp>

#include "property.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

using namespace detour;

namespace {

bool same_north(const north_request& a, const north_request& b) {
  return a.client == b.client && a.proxy == b.proxy && a.upstream.text == b.upstream.text &&
         a.upstream.host == b.upstream.host && a.upstream.port == b.upstream.port &&
         a.username == b.username && a.task_id == b.task_id && a.protocol == b.protocol &&
         a.protocol_name == b.protocol_name && a.match_id == b.match_id &&
         a.payload_length == b.payload_length;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> in(data, size);
  const auto r = decode_stream_header(in);
  DETOUR_FUZZ_CHECK(r.consumed <= size);

  const auto h = ppv2::decode(in);
  if (!h.complete()) {
    DETOUR_FUZZ_CHECK(r.status == h.status && r.error == h.error && r.offset == h.offset &&
                      r.needed == h.needed);
    return 0;
  }
  // Byte by byte through the incremental decoder: the same outcome.
  std::vector<std::uint8_t> storage(ppv2::decode_limits{}.max_header_size);
  ppv2::decoder dec(storage);
  decode_result<ppv2::header_view> fed = dec.result();
  for (std::size_t i = 0; i < size && fed.need_more(); ++i) fed = dec.feed(in.subspan(i, 1));
  DETOUR_FUZZ_CHECK(fed.complete());
  const auto r2 = parse_stream_header(fed.value);
  DETOUR_FUZZ_CHECK(r2.status == r.status && r2.error == r.error && r2.offset == r.offset);

  const auto k = classify(h.value);
  if (r.failed()) {
    DETOUR_FUZZ_CHECK(r.offset <= h.consumed);
    return 0;
  }
  DETOUR_FUZZ_CHECK(r.consumed == h.consumed);
  DETOUR_FUZZ_CHECK(k.complete() && k.value == r.value.kind);
  request_limits lax;
  lax.require_utf8 = false;
  DETOUR_FUZZ_CHECK(decode_stream_header(in, lax).complete());

  std::array<std::uint8_t, ppv2::max_size> out{};
  if (r.value.kind == stream_kind::north) {
    const auto& n = r.value.north;
    DETOUR_FUZZ_CHECK(n.payload_length <= request_limits{}.max_payload_length);
    const auto e = encode_north_request(n, out);
    DETOUR_FUZZ_CHECK(e.ok());
    const auto back = decode_north_request(std::span<const std::uint8_t>(out.data(), e.size));
    DETOUR_FUZZ_CHECK(back.complete());
    DETOUR_FUZZ_CHECK(same_north(back.value, n));
    // A WebSocket payload, when all of it is there: parse it; views stay inside the input.
    const auto payload = in.subspan(r.consumed);
    if (n.protocol == protocol_kind::websocket && payload.size() >= n.payload_length) {
      const auto w = parse_websocket_payload(payload.first(n.payload_length));
      if (w.complete()) {
        const char* lo = reinterpret_cast<const char*>(payload.data());
        DETOUR_FUZZ_CHECK(w.value.resource.data() >= lo);
        for (const auto hd : w.value.headers())
          DETOUR_FUZZ_CHECK(hd.value.data() + hd.value.size() <= lo + n.payload_length);
      }
    }
  } else {
    const auto& s = r.value.south;
    const auto e = encode_south_hello(s, out);
    DETOUR_FUZZ_CHECK(e.ok());
    const auto back = decode_south_hello(std::span<const std::uint8_t>(out.data(), e.size));
    DETOUR_FUZZ_CHECK(back.complete());
    DETOUR_FUZZ_CHECK(back.value.client == s.client && back.value.proxy == s.proxy &&
                      back.value.match_id == s.match_id);
  }
  return 0;
}
