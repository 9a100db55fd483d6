// SPDX-License-Identifier: MIT
// fuzz/detour_request.cpp: the detour layer (g3proxy stream detour) over raw stream bytes.
// Properties: consumed <= size; the result agrees with the PROXY v2 decoder, the classifier and
// every other entry point (parse_north_request, parse_south_hello, decode_north_request,
// decode_south_hello); an accepted north request or south hello re-encodes with g3proxy's TLV
// order and decodes to the same fields; the incremental decoder fed byte by byte gives the same
// result; relaxing the UTF-8 rule changes nothing but text_not_utf8 refusals; the UTF-8 check
// agrees with a plain code-point decoder; views lie inside the input; errors have messages.
#include <detour/ppv2/decode.hpp>
#include <detour/request.hpp>
#include <detour/websocket_payload.hpp>

#include "property.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

using namespace detour;
using detour::fuzz::inside;

namespace {

/// What a decode reports besides its value. Comparing these copies, rather than the results
/// themselves, keeps GCC 12 from merging the comparisons of different result types and then
/// warning (-Warray-bounds) about the merged body.
struct outcome {
  decode_status status;
  errc error;
  std::size_t offset, consumed, needed;
  bool operator==(const outcome&) const = default;
};

template <class T>
outcome outcome_of(const decode_result<T>& r) {
  return {r.status, r.error, r.offset, r.consumed, r.needed};
}

template <class A, class B>
bool same_outcome(const decode_result<A>& a, const decode_result<B>& b) {
  return outcome_of(a) == outcome_of(b);
}

/// RFC 3629 by decoding code points one at a time: the offset of the first byte that does not
/// start a valid sequence, or utf8_valid. The reference for detail::utf8_invalid_at.
std::size_t reference_utf8_invalid_at(std::span<const std::uint8_t> s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const std::uint8_t c = s[i];
    std::size_t len = 1;
    std::uint32_t cp = c;
    if (c >= 0x80) {
      if ((c & 0xE0) == 0xC0) {
        len = 2, cp = c & 0x1F;
      } else if ((c & 0xF0) == 0xE0) {
        len = 3, cp = c & 0x0F;
      } else if ((c & 0xF8) == 0xF0) {
        len = 4, cp = c & 0x07;
      } else {
        return i;
      }
      if (s.size() - i < len) return i;
      for (std::size_t k = 1; k < len; ++k) {
        if ((s[i + k] & 0xC0) != 0x80) return i;
        cp = cp << 6 | (s[i + k] & 0x3F);
      }
      const std::uint32_t least = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
      if (cp < least || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    }
    i += len;
  }
  return detail::utf8_valid;
}

/// The checks on an accepted north request's fields.
void check_north(const north_request& n, const ppv2::header_view& h, bool strict) {
  const std::span<const std::uint8_t> header = h.bytes;
  const auto text_inside = [&](std::string_view v) {
    return inside(std::span<const char>(v.data(), v.size()), header);
  };
  DETOUR_FUZZ_CHECK(n.header_size == h.size());
  DETOUR_FUZZ_CHECK(n.client == h.source && n.proxy == h.destination);
  DETOUR_FUZZ_CHECK(text_inside(n.upstream.text) && text_inside(n.upstream.host) &&
                    text_inside(n.protocol_name));
  if (n.username) DETOUR_FUZZ_CHECK(text_inside(*n.username));
  // E0 "host:port": the host is the text before the last colon (brackets removed).
  const std::string_view up = n.upstream.text;
  const auto colon = up.rfind(':');
  DETOUR_FUZZ_CHECK(colon != std::string_view::npos && !n.upstream.host.empty());
  const std::string_view host = up.substr(0, colon);
  if (host.front() == '[') {
    DETOUR_FUZZ_CHECK(n.upstream.host == host.substr(1, host.size() - 2));
    const auto ip = parse_ip(n.upstream.host);
    DETOUR_FUZZ_CHECK(ip && ip->is_v6());
  } else {
    DETOUR_FUZZ_CHECK(n.upstream.host == host);
  }
  unsigned port = 0;
  for (const char c : up.substr(colon + 1)) port = port * 10 + static_cast<unsigned>(c - '0');
  DETOUR_FUZZ_CHECK(port == n.upstream.port);
  DETOUR_FUZZ_CHECK(n.protocol == protocol_from_name(n.protocol_name));
  // The known names read back as themselves; any other name is `other`, which has none.
  DETOUR_FUZZ_CHECK(to_string(n.protocol).empty() == (n.protocol == protocol_kind::other));
  if (n.protocol != protocol_kind::other)
    DETOUR_FUZZ_CHECK(to_string(n.protocol) == n.protocol_name);
  // The task id in its canonical text form: 8-4-4-4-12 lower-case hex digits.
  constexpr std::string_view hex = "0123456789abcdef";
  std::string expected;
  for (std::size_t b = 0; b < 16; ++b) {
    if (b == 4 || b == 6 || b == 8 || b == 10) expected += '-';
    expected += hex[n.task_id.bytes[b] >> 4];
    expected += hex[n.task_id.bytes[b] & 0xF];
  }
  DETOUR_FUZZ_CHECK(to_text(n.task_id) == expected);
  if (strict) {
    const auto valid = [](std::string_view v) {
      return reference_utf8_invalid_at(
                 {reinterpret_cast<const std::uint8_t*>(v.data()), v.size()}) == detail::utf8_valid;
    };
    DETOUR_FUZZ_CHECK(valid(n.upstream.text) && valid(n.protocol_name));
    if (n.username) DETOUR_FUZZ_CHECK(valid(*n.username));
  }
}

/// Re-encodes an accepted north request: g3proxy's TLV order, and the same fields back.
void check_north_encoding(const north_request& n) {
  std::array<std::uint8_t, ppv2::max_size> out{};
  const auto e = encode_north_request(n, out);
  DETOUR_FUZZ_CHECK(e.ok());
  const auto back = decode_north_request(std::span<const std::uint8_t>(out.data(), e.size));
  DETOUR_FUZZ_CHECK(back.complete());
  north_request expected = n;
  expected.header_size = e.size;
  DETOUR_FUZZ_CHECK(back.value == expected);
  // E2 (when there is a user name), E3, E0, E5, E4, E6: nothing else, in this order.
  const auto h = ppv2::decode(std::span<const std::uint8_t>(out.data(), e.size));
  std::vector<std::uint8_t> order;
  for (const auto t : h.value.tlvs()) order.push_back(t.type);
  std::vector<std::uint8_t> g3{0xE3, 0xE0, 0xE5, 0xE4, 0xE6};
  if (n.username) g3.insert(g3.begin(), 0xE2);
  DETOUR_FUZZ_CHECK(order == g3);
  // One byte less of buffer is refused; addresses of two families are refused.
  DETOUR_FUZZ_CHECK(
      encode_north_request(n, std::span<std::uint8_t>(out.data(), e.size - 1)).error ==
      errc::buffer_too_small);
  north_request mixed = n;
  mixed.proxy.ip = n.client.ip.is_v4() ? ip_address::v6(std::array<std::uint8_t, 16>{})
                                       : ip_address::v4(0, 0, 0, 0);
  DETOUR_FUZZ_CHECK(encode_north_request(mixed, out).error == errc::address_family_mismatch);
}

void check_south_encoding(const south_hello& s) {
  std::array<std::uint8_t, ppv2::max_size> out{};
  const auto e = encode_south_hello(s, out);
  DETOUR_FUZZ_CHECK(e.ok());
  DETOUR_FUZZ_CHECK(e.size == ppv2::fixed_size + (s.client.ip.is_v4() ? 12 : 36) + 5);
  const auto back = decode_south_hello(std::span<const std::uint8_t>(out.data(), e.size));
  DETOUR_FUZZ_CHECK(back.complete());
  DETOUR_FUZZ_CHECK(back.value.client == s.client && back.value.proxy == s.proxy &&
                    back.value.match_id == s.match_id && back.value.header_size == e.size);
  south_hello mixed = s;
  mixed.proxy.ip = s.client.ip.is_v4() ? ip_address::v6(std::array<std::uint8_t, 16>{})
                                       : ip_address::v4(0, 0, 0, 0);
  DETOUR_FUZZ_CHECK(encode_south_hello(mixed, out).error == errc::address_family_mismatch);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> in(data, size);
  // The UTF-8 check itself, over any bytes, against the reference.
  DETOUR_FUZZ_CHECK(detail::utf8_invalid_at(in) == reference_utf8_invalid_at(in));

  const auto r = decode_stream_header(in);
  DETOUR_FUZZ_CHECK(r.consumed <= size);
  if (r.failed()) DETOUR_FUZZ_CHECK(fuzz::named_error(r.error));

  // Every entry point that starts from bytes is decode() followed by its parse_*().
  const auto h = ppv2::decode(in);
  const auto dn = decode_north_request(in);
  const auto ds = decode_south_hello(in);
  if (!h.complete()) {
    DETOUR_FUZZ_CHECK(same_outcome(r, h) && same_outcome(dn, h) && same_outcome(ds, h));
    return 0;
  }
  const auto pn = parse_north_request(h.value);
  const auto ps = parse_south_hello(h.value);
  DETOUR_FUZZ_CHECK(same_outcome(dn, pn) && same_outcome(ds, ps));
  if (pn.complete()) DETOUR_FUZZ_CHECK(dn.value == pn.value);
  if (ps.complete()) DETOUR_FUZZ_CHECK(ds.value == ps.value);

  // Byte by byte through the incremental decoder: the same outcome.
  std::vector<std::uint8_t> storage(ppv2::decode_limits{}.max_header_size);
  ppv2::decoder dec(storage);
  decode_result<ppv2::header_view> fed = dec.result();
  for (std::size_t i = 0; i < size && fed.need_more(); ++i) fed = dec.feed(in.subspan(i, 1));
  DETOUR_FUZZ_CHECK(fed.complete());
  const auto r2 = parse_stream_header(fed.value);
  DETOUR_FUZZ_CHECK(r2.status == r.status && r2.error == r.error && r2.offset == r.offset);

  // Relaxing the UTF-8 rule only lifts text_not_utf8 refusals.
  request_limits lax;
  lax.require_utf8 = false;
  const auto rl = decode_stream_header(in, lax);
  if (r.complete() || r.error != errc::text_not_utf8) DETOUR_FUZZ_CHECK(same_outcome(rl, r));
  if (r.failed() && r.error == errc::text_not_utf8) {
    // The offending byte lies in the value of a text TLV (E0, E2 or E4).
    bool in_text = false;
    for (const auto t : h.value.tlvs())
      if ((t.type == 0xE0 || t.type == 0xE2 || t.type == 0xE4) &&
          r.offset >= t.offset + ppv2::tlv_head_size &&
          r.offset < t.offset + ppv2::tlv_head_size + t.value.size())
        in_text = true;
    DETOUR_FUZZ_CHECK(in_text);
  }

  const auto k = classify(h.value);
  if (r.failed()) {
    DETOUR_FUZZ_CHECK(r.offset <= h.consumed);
    // The parser of the kind the classifier sees reports the same failure (the south parser
    // says missing_required_tlv where the combined one says unknown_stream_kind).
    if (k.complete() && k.value == stream_kind::north)
      DETOUR_FUZZ_CHECK(pn.error == r.error && pn.offset == r.offset);
    if (r.error != errc::unknown_stream_kind && !(k.complete() && k.value == stream_kind::north))
      DETOUR_FUZZ_CHECK(ps.error == r.error && ps.offset == r.offset);
    return 0;
  }
  DETOUR_FUZZ_CHECK(r.consumed == h.consumed);
  DETOUR_FUZZ_CHECK(k.complete() && k.value == r.value.kind);

  if (r.value.kind == stream_kind::north) {
    const auto& n = r.value.north;
    DETOUR_FUZZ_CHECK(pn.complete() && pn.value == n);
    DETOUR_FUZZ_CHECK(ps.failed() && ps.error == errc::unknown_stream_kind);
    DETOUR_FUZZ_CHECK(rl.value.north == n);
    DETOUR_FUZZ_CHECK(n.payload_length <= request_limits{}.max_payload_length);
    check_north(n, h.value, true);
    check_north_encoding(n);
    // A WebSocket payload, when all of it is there: parse it; views stay inside the input.
    const auto payload = in.subspan(r.consumed);
    if (n.protocol == protocol_kind::websocket && payload.size() >= n.payload_length) {
      const auto w = parse_websocket_payload(payload.first(n.payload_length));
      const auto whole = payload.first(n.payload_length);
      if (w.complete()) {
        DETOUR_FUZZ_CHECK(inside(std::span<const char>(w.value.resource), whole));
        for (const auto hd : w.value.headers())
          DETOUR_FUZZ_CHECK(inside(std::span<const char>(hd.name), whole) &&
                            inside(std::span<const char>(hd.value), whole));
      } else {
        DETOUR_FUZZ_CHECK(fuzz::named_error(w.error) &&
                          (w.offset < n.payload_length || n.payload_length == 0));
      }
    }
  } else {
    const auto& s = r.value.south;
    DETOUR_FUZZ_CHECK(ps.complete() && ps.value == s);
    DETOUR_FUZZ_CHECK(pn.failed() && pn.error == errc::missing_required_tlv &&
                      pn.offset == h.consumed);
    DETOUR_FUZZ_CHECK(s.client == h.value.source && s.proxy == h.value.destination);
    check_south_encoding(s);
  }
  return 0;
}
