// SPDX-License-Identifier: MIT
// fuzz/ppv2_decode.cpp: PROXY v2 decoding (proxy-protocol.txt section 2.2). Input: 2 bytes of
// chunking seed, 1 byte choosing the size limit (0: the default), then the stream's bytes.
// Properties: consumed <= size; a complete header's TLV walk ends exactly at 16 + length; the
// need_more count is exact once the fixed part is in; the incremental decoder, fed pieces of
// fuzzer-chosen sizes and then byte by byte, gives the one-shot result.
#include <detour/ppv2/decode.hpp>
#include <detour/request.hpp>

#include "property.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

using namespace detour;

namespace {

void check_same(const decode_result<ppv2::header_view>& a,
                const decode_result<ppv2::header_view>& b) {
  DETOUR_FUZZ_CHECK(a.status == b.status);
  DETOUR_FUZZ_CHECK(a.error == b.error);
  DETOUR_FUZZ_CHECK(a.offset == b.offset);
  DETOUR_FUZZ_CHECK(a.needed == b.needed);
  if (a.complete()) DETOUR_FUZZ_CHECK(a.value == b.value);
}

/// Feeds `in` to a decoder in pieces whose sizes come from `seed` (0: one byte at a time).
decode_result<ppv2::header_view> feed(std::span<const std::uint8_t> in,
                                      std::span<std::uint8_t> storage,
                                      const ppv2::decode_limits& limits, std::uint32_t seed,
                                      std::size_t& consumed) {
  ppv2::decoder d(storage, limits);
  std::uint32_t x = seed | 1;
  std::size_t pos = 0;
  consumed = 0;
  decode_result<ppv2::header_view> r = d.result();
  do {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    const std::size_t n = seed == 0 ? 1 : 1 + x % (1 + (seed >> 8));
    const std::size_t take = n < in.size() - pos ? n : in.size() - pos;
    r = d.feed(in.subspan(pos, take));
    DETOUR_FUZZ_CHECK(r.consumed <= take);
    if (r.need_more()) DETOUR_FUZZ_CHECK(r.consumed == take);
    consumed += r.consumed;
    pos += r.consumed;
  } while (r.need_more() && pos < in.size());
  return r;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 3) return 0;
  const std::uint32_t seed = data[0] | (std::uint32_t{data[1]} << 8);
  ppv2::decode_limits limits;
  if (data[2] != 0) limits.max_header_size = 16 + std::size_t{data[2]} * 8;
  const std::span<const std::uint8_t> in(data + 3, size - 3);

  const auto one = ppv2::decode(in, limits);
  DETOUR_FUZZ_CHECK(one.consumed <= in.size());
  switch (one.status) {
  case decode_status::complete: {
    const auto& h = one.value;
    DETOUR_FUZZ_CHECK(one.consumed == h.size());
    DETOUR_FUZZ_CHECK(h.size() >= ppv2::fixed_size && h.size() <= limits.max_header_size);
    DETOUR_FUZZ_CHECK(h.size() == ppv2::fixed_size + detail::load_be16(in.data() + 14));
    DETOUR_FUZZ_CHECK(ppv2::fixed_size + h.address_block.size() + h.tlv_block.size() == h.size());
    std::size_t walked = 0;
    for (const auto t : h.tlvs()) {
      DETOUR_FUZZ_CHECK(t.offset == ppv2::fixed_size + h.address_block.size() + walked);
      walked += ppv2::tlv_head_size + t.value.size();
    }
    DETOUR_FUZZ_CHECK(walked == h.tlv_block.size()); // the walk ends exactly at 16 + length
    if (const auto ssl = h.ssl()) {
      std::size_t sub = 0;
      for (const auto t : ssl->sub_tlvs) sub += ppv2::tlv_head_size + t.value.size();
      DETOUR_FUZZ_CHECK(sub + ppv2::ssl_fixed_size == h.find(ppv2::tlv_type::ssl)->value.size());
    }
    if (const auto id = h.unique_id()) DETOUR_FUZZ_CHECK(id->size() <= ppv2::max_unique_id_size);
    // The detour layer accepts or refuses, consistently with its classifier.
    const auto s = parse_stream_header(h);
    const auto k = classify(h);
    if (s.complete()) DETOUR_FUZZ_CHECK(k.complete() && k.value == s.value.kind);
    break;
  }
  case decode_status::need_more:
    DETOUR_FUZZ_CHECK(one.needed > 0);
    if (in.size() >= ppv2::fixed_size)
      DETOUR_FUZZ_CHECK(in.size() + one.needed ==
                        ppv2::fixed_size + detail::load_be16(in.data() + 14));
    else
      DETOUR_FUZZ_CHECK(in.size() + one.needed == ppv2::fixed_size);
    break;
  case decode_status::error:
    DETOUR_FUZZ_CHECK(one.offset < in.size());
    break;
  }

  // The incremental decoder, into exactly-sized storage, at fuzzer-chosen split points.
  const std::size_t cap = limits.max_header_size;
  const auto storage = std::make_unique<std::uint8_t[]>(cap);
  std::size_t consumed = 0;
  const auto pieces = feed(in, {storage.get(), cap}, limits, seed, consumed);
  check_same(pieces, one);
  if (one.complete()) DETOUR_FUZZ_CHECK(consumed == one.consumed); // stops exactly at the end
  if (in.size() <= 1024) {
    const auto bytewise = feed(in, {storage.get(), cap}, limits, 0, consumed);
    check_same(bytewise, one);
  }
  return 0;
}
