// SPDX-License-Identifier: MIT
// fuzz/ppv2_decode.cpp: PROXY v2 decoding (proxy-protocol.txt section 2.2). Input: 2 bytes of
// chunking seed (the high byte also sizes a second decoder's storage), 1 byte choosing the size
// limit (0: the default), then the stream's bytes. The seed also chooses a split point.
// Properties: consumed <= size; a LOCAL header whose block is not valid is complete with it
// discarded, when the same bytes as PROXY are refused (or pass only by a CRC32C made for the
// PROXY byte); a complete header's TLV walk
// ends exactly at 16 + length and
// the typed accessors agree with it; need_more counts are exact once the fixed part is in, at
// every step; the incremental decoder, fed pieces of fuzzer-chosen sizes, two pieces split at
// a fuzzer-chosen point, and single bytes, gives the one-shot result, stops at the header's end
// and keeps its result sticky; a decoder with smaller storage behaves as decode() with that
// limit; every error has its own message; a TLV walk over any bytes stays inside them and stops
// where no further TLV fits.
#include <detour/ppv2/decode.hpp>
#include <detour/request.hpp>

#include "property.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

using namespace detour;
using detour::fuzz::inside;

namespace {

void check_same(const decode_result<ppv2::header_view>& a,
                const decode_result<ppv2::header_view>& b) {
  DETOUR_FUZZ_CHECK(a.status == b.status);
  DETOUR_FUZZ_CHECK(a.error == b.error);
  DETOUR_FUZZ_CHECK(a.offset == b.offset);
  DETOUR_FUZZ_CHECK(a.needed == b.needed);
  if (a.complete()) DETOUR_FUZZ_CHECK(a.value == b.value);
}

/// The size the fixed part of `in` declares (valid when 16 bytes are there).
std::size_t declared_size(std::span<const std::uint8_t> in) {
  return ppv2::fixed_size + detail::load_be16(in.data() + 14);
}

/// Feeds `in` to `d` in pieces whose sizes come from `seed` (0: one byte at a time), checking
/// every step; returns the last result and, in `consumed`, the bytes taken in all.
decode_result<ppv2::header_view> feed(ppv2::decoder& d, std::span<const std::uint8_t> in,
                                      std::uint32_t seed, std::size_t& consumed) {
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
    consumed += r.consumed;
    pos += r.consumed;
    DETOUR_FUZZ_CHECK(d.buffered() == pos);
    if (r.need_more()) {
      DETOUR_FUZZ_CHECK(r.consumed == take);
      // Exact once the fixed part is in: what is there plus what is needed is the header.
      if (pos >= ppv2::fixed_size)
        DETOUR_FUZZ_CHECK(pos + r.needed == declared_size(in));
      else
        DETOUR_FUZZ_CHECK(pos + r.needed == ppv2::fixed_size);
    }
  } while (r.need_more() && pos < in.size());
  return r;
}

/// The TLV type ranges of section 2.2.8 do not overlap, and exactly the registered types
/// (section 2.2), the SSL sub-types (2.2.6) and g3proxy's E0-E6 have names.
void check_type_name(std::uint8_t type) {
  const int ranges = ppv2::is_custom(type) + ppv2::is_experimental(type) + ppv2::is_future(type);
  DETOUR_FUZZ_CHECK(ranges <= 1);
  const bool named = (type >= 0x01 && type <= 0x05) || (type >= 0x20 && type <= 0x28) ||
                     type == 0x30 || (type >= 0xE0 && type <= 0xE6);
  const auto name = ppv2::tlv_type_name(type);
  DETOUR_FUZZ_CHECK(name.empty() != named);
  if (named) DETOUR_FUZZ_CHECK(name.substr(0, 4) == "PP2_");
}

/// tlv_range over any bytes: contiguous TLVs from the start, each inside the bytes, ending
/// where the rest cannot hold one more; both increments walk alike.
void check_raw_walk(std::span<const std::uint8_t> bytes, std::size_t base) {
  const ppv2::tlv_range range(bytes, base);
  DETOUR_FUZZ_CHECK(range.bytes().data() == bytes.data() && range.bytes().size() == bytes.size());
  std::size_t pos = 0;
  auto post = range.begin();
  for (const auto t : range) {
    DETOUR_FUZZ_CHECK(t.offset == base + pos && t.value.data() == bytes.data() + pos + 3);
    DETOUR_FUZZ_CHECK(t.type == bytes[pos] && t.value.size() == detail::load_be16(&bytes[pos + 1]));
    const auto same = *post++;
    DETOUR_FUZZ_CHECK(same.offset == t.offset && same.value.size() == t.value.size());
    pos += ppv2::tlv_head_size + t.value.size();
  }
  DETOUR_FUZZ_CHECK(post == range.end() && pos <= bytes.size());
  // Where the walk stopped, no further TLV fits.
  const std::size_t left = bytes.size() - pos;
  DETOUR_FUZZ_CHECK(left < ppv2::tlv_head_size ||
                    detail::load_be16(&bytes[pos + 1]) > left - ppv2::tlv_head_size);
  DETOUR_FUZZ_CHECK(range.empty() == (pos == 0));
}

/// The typed accessors of a complete header agree with a plain walk over its TLVs.
void check_accessors(const ppv2::header_view& h) {
  std::optional<ppv2::tlv_view> first[256];
  std::size_t count = 0;
  for (const auto t : h.tlvs()) {
    if (!first[t.type]) first[t.type] = t;
    ++count;
    DETOUR_FUZZ_CHECK(inside(t.value, h.tlv_block));
    DETOUR_FUZZ_CHECK(t.text().size() == t.value.size());
    check_type_name(t.type);
  }
  DETOUR_FUZZ_CHECK(h.tlvs().empty() == (count == 0));
  const auto same_view = [](const std::optional<ppv2::tlv_view>& t, auto accessor_value) {
    if (!t) return !accessor_value;
    if (!accessor_value) return false;
    return static_cast<const void*>(accessor_value->data()) ==
               static_cast<const void*>(t->value.data()) &&
           accessor_value->size() == t->value.size();
  };
  DETOUR_FUZZ_CHECK(same_view(first[0x01], h.alpn()));
  DETOUR_FUZZ_CHECK(same_view(first[0x02], h.authority()));
  DETOUR_FUZZ_CHECK(same_view(first[0x05], h.unique_id()));
  DETOUR_FUZZ_CHECK(same_view(first[0x30], h.netns()));
  DETOUR_FUZZ_CHECK(h.crc32c().has_value() == first[0x03].has_value());
  if (const auto crc = h.crc32c())
    DETOUR_FUZZ_CHECK(*crc == detail::load_be32(first[0x03]->value.data()));
  if (const auto id = h.unique_id()) DETOUR_FUZZ_CHECK(id->size() <= ppv2::max_unique_id_size);
  for (int type = 0; type < 256; type += 37) {
    const auto found = h.find(static_cast<std::uint8_t>(type));
    DETOUR_FUZZ_CHECK(found.has_value() == first[type].has_value());
    if (found) DETOUR_FUZZ_CHECK(found->offset == first[type]->offset);
  }

  // SSL: the decoder checked the fixed part and the sub-TLV walk.
  DETOUR_FUZZ_CHECK(h.ssl().has_value() == first[0x20].has_value());
  if (const auto ssl = h.ssl()) {
    const auto& whole = first[0x20]->value;
    DETOUR_FUZZ_CHECK(ssl->client == whole[0]);
    DETOUR_FUZZ_CHECK(ssl->client_ssl() == ((whole[0] & 1) != 0));
    DETOUR_FUZZ_CHECK(ssl->client_cert_conn() == ((whole[0] & 2) != 0));
    DETOUR_FUZZ_CHECK(ssl->client_cert_sess() == ((whole[0] & 4) != 0));
    DETOUR_FUZZ_CHECK(ssl->verify == detail::load_be32(whole.data() + 1));
    std::size_t sub = 0;
    std::optional<std::span<const std::uint8_t>> sub_first[9];
    for (const auto t : ssl->sub_tlvs) {
      DETOUR_FUZZ_CHECK(t.offset ==
                        first[0x20]->offset + ppv2::tlv_head_size + ppv2::ssl_fixed_size + sub);
      check_type_name(t.type);
      if (t.type >= 0x21 && t.type <= 0x28) {
        DETOUR_FUZZ_CHECK(!sub_first[t.type - 0x20]); // the decoder refuses duplicates
        sub_first[t.type - 0x20] = t.value;
      }
      sub += ppv2::tlv_head_size + t.value.size();
    }
    DETOUR_FUZZ_CHECK(sub + ppv2::ssl_fixed_size == whole.size());
    const std::optional<std::string_view> texts[] = {
        ssl->version(), ssl->cn(),    ssl->cipher(),    ssl->sig_alg(),
        ssl->key_alg(), ssl->group(), ssl->sig_scheme()};
    for (int k = 0; k < 7; ++k) {
      DETOUR_FUZZ_CHECK(texts[k].has_value() == sub_first[k + 1].has_value());
      if (texts[k])
        DETOUR_FUZZ_CHECK(texts[k]->data() ==
                              reinterpret_cast<const char*>(sub_first[k + 1]->data()) &&
                          texts[k]->size() == sub_first[k + 1]->size());
    }
    const auto cert = ssl->client_cert();
    DETOUR_FUZZ_CHECK(cert.has_value() == sub_first[8].has_value());
    if (cert)
      DETOUR_FUZZ_CHECK(cert->data() == sub_first[8]->data() &&
                        cert->size() == sub_first[8]->size());
  }

  if (h.family == ppv2::address_family::unix_socket) {
    DETOUR_FUZZ_CHECK(h.unix_source().size() == 108 && h.unix_destination().size() == 108);
    DETOUR_FUZZ_CHECK(h.unix_destination().data() == h.unix_source().data() + 108);
  } else {
    DETOUR_FUZZ_CHECK(h.unix_source().empty() && h.unix_destination().empty());
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 3) return 0;
  const std::uint32_t seed = data[0] | (std::uint32_t{data[1]} << 8);
  ppv2::decode_limits limits;
  if (data[2] != 0) limits.max_header_size = 16 + std::size_t{data[2]} * 8;
  const std::span<const std::uint8_t> in(data + 3, size - 3);

  check_raw_walk(in, 3);
  const auto one = ppv2::decode(in, limits);
  DETOUR_FUZZ_CHECK(one.consumed <= in.size());
  switch (one.status) {
  case decode_status::complete: {
    const auto& h = one.value;
    DETOUR_FUZZ_CHECK(one.consumed == h.size());
    DETOUR_FUZZ_CHECK(h.size() >= ppv2::fixed_size && h.size() <= limits.max_header_size);
    DETOUR_FUZZ_CHECK(h.size() == declared_size(in));
    DETOUR_FUZZ_CHECK(h.bytes.data() == in.data());
    DETOUR_FUZZ_CHECK(h.address_block.size() == ppv2::address_size(h.family));
    DETOUR_FUZZ_CHECK(h.command == static_cast<ppv2::command>(in[12] & 0xF));
    if (h.block_discarded) {
      // Only LOCAL, only a block that is not the family's addresses and valid TLVs: nothing of
      // it is read (AF_UNSPEC, no TLV), and a PROXY header with the same block is refused.
      DETOUR_FUZZ_CHECK(h.command == ppv2::command::local);
      DETOUR_FUZZ_CHECK(h.family == ppv2::address_family::unspec && h.tlv_block.empty());
      std::vector<std::uint8_t> as_proxy(h.bytes.begin(), h.bytes.end());
      as_proxy[12] = 0x21;
      const auto p = ppv2::decode(as_proxy, limits);
      // Unless a CRC32C made for the PROXY byte is what failed as LOCAL.
      DETOUR_FUZZ_CHECK(p.failed() || (p.complete() && p.value.crc32c().has_value()));
      break;
    }
    DETOUR_FUZZ_CHECK(ppv2::fixed_size + h.address_block.size() + h.tlv_block.size() == h.size());
    std::size_t walked = 0;
    for (const auto t : h.tlvs()) {
      DETOUR_FUZZ_CHECK(t.offset == ppv2::fixed_size + h.address_block.size() + walked);
      walked += ppv2::tlv_head_size + t.value.size();
    }
    DETOUR_FUZZ_CHECK(walked == h.tlv_block.size()); // the walk ends exactly at 16 + length
    check_raw_walk(h.tlv_block, ppv2::fixed_size + h.address_block.size());
    check_accessors(h);
    // The detour layer accepts or refuses, consistently with its classifier.
    const auto s = parse_stream_header(h);
    const auto k = classify(h);
    if (s.complete()) DETOUR_FUZZ_CHECK(k.complete() && k.value == s.value.kind);
    if (s.failed()) DETOUR_FUZZ_CHECK(fuzz::named_error(s.error) && s.offset <= h.size());
    break;
  }
  case decode_status::need_more:
    DETOUR_FUZZ_CHECK(one.needed > 0 && one.consumed == 0);
    if (in.size() >= ppv2::fixed_size)
      DETOUR_FUZZ_CHECK(in.size() + one.needed == declared_size(in));
    else
      DETOUR_FUZZ_CHECK(in.size() + one.needed == ppv2::fixed_size);
    break;
  case decode_status::error:
    DETOUR_FUZZ_CHECK(one.offset < in.size());
    DETOUR_FUZZ_CHECK(fuzz::named_error(one.error));
    // The error is in the bytes up to the header's end: decoding only them finds it too.
    if (in.size() >= ppv2::fixed_size && declared_size(in) <= in.size())
      check_same(ppv2::decode(in.first(declared_size(in)), limits), one);
    break;
  }

  // The incremental decoder, into exactly-sized storage, at fuzzer-chosen split points.
  const std::size_t cap = limits.max_header_size;
  const auto storage = std::make_unique<std::uint8_t[]>(cap);
  ppv2::decoder d({storage.get(), cap}, limits);
  std::size_t consumed = 0;
  const auto pieces = feed(d, in, seed, consumed);
  check_same(pieces, one);
  if (one.complete()) {
    DETOUR_FUZZ_CHECK(consumed == one.consumed); // stops exactly at the end
    DETOUR_FUZZ_CHECK(pieces.value.bytes.data() == storage.get());
  }
  if (!pieces.need_more()) { // sticky: more input changes nothing and is not taken
    const auto again = d.feed(in);
    DETOUR_FUZZ_CHECK(again.consumed == 0);
    check_same(again, one);
    check_same(d.result(), one);
  }
  // Two pieces, split where the fuzzer says (the seed, modulo the length).
  {
    const std::size_t split = seed % (in.size() + 1);
    ppv2::decoder two({storage.get(), cap}, limits);
    auto r = two.feed(in.first(split));
    DETOUR_FUZZ_CHECK(r.consumed <= split);
    std::size_t taken = r.consumed;
    if (r.need_more()) {
      DETOUR_FUZZ_CHECK(r.consumed == split);
      r = two.feed(in.subspan(split));
      taken += r.consumed;
    }
    check_same(r, one);
    if (one.complete()) DETOUR_FUZZ_CHECK(taken == one.consumed);
  }
  if (in.size() <= 1024) {
    d.reset();
    DETOUR_FUZZ_CHECK(d.buffered() == 0 && d.result().need_more() &&
                      d.result().needed == ppv2::fixed_size);
    const auto bytewise = feed(d, in, 0, consumed);
    check_same(bytewise, one);
  }

  // Smaller storage is a smaller limit (and storage below the fixed part refuses everything).
  const std::size_t small = std::min<std::size_t>(cap, data[1]);
  const auto small_storage = std::make_unique<std::uint8_t[]>(small + 1);
  ppv2::decoder s({small_storage.get(), small}, limits);
  const auto via_small = feed(s, in, seed, consumed);
  if (small < ppv2::fixed_size) {
    DETOUR_FUZZ_CHECK(via_small.failed() && via_small.error == errc::header_too_large &&
                      via_small.offset == 0 && consumed == 0);
    s.reset();
    DETOUR_FUZZ_CHECK(s.result().failed());
  } else {
    check_same(via_small, ppv2::decode(in, {small}));
  }
  return 0;
}
