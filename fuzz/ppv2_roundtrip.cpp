// SPDX-License-Identifier: MIT
// fuzz/ppv2_roundtrip.cpp: PROXY v2 encoding against decoding (proxy-protocol.txt section 2.2).
// 0. The CRC-32C of the input (section 2.2.3), whole and with 4 bytes zeroed, equals a bitwise
//    computation.
// 1. When the input decodes as a header, encoding its fields and TLVs gives the same bytes.
// 2. The input also describes a header to build (command, family byte, addresses, TLVs, CRC32C
//    on or off): the encoder either refuses it with one of its documented errors, whose cause
//    shows in what was asked (and writes nothing), or produces bytes that decode to exactly what
//    was asked for; into a buffer of exactly that size it writes the same bytes, one byte less is
//    refused; the factories tcp() and local() describe the same header, and a LOCAL header with the
//    same TLVs encodes.
#include <detour/detail/crc32c.hpp>
#include <detour/ppv2/decode.hpp>
#include <detour/ppv2/encode.hpp>

#include "property.hpp"

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

using namespace detour;

namespace {

/// Reads the build description; runs out gracefully (zeros).
struct reader {
  std::span<const std::uint8_t> in;
  std::size_t pos = 0;
  std::uint8_t byte() { return pos < in.size() ? in[pos++] : 0; }
  std::uint16_t u16() { return static_cast<std::uint16_t>(byte() << 8 | byte()); }
  std::span<const std::uint8_t> bytes(std::size_t n) {
    n = std::min(n, in.size() - std::min(pos, in.size()));
    const auto s = in.subspan(std::min(pos, in.size()), n);
    pos += n;
    return s;
  }
};

/// A refusal is one of the encoder's documented errors, and what was asked shows its cause.
bool explained_refusal(errc e, const ppv2::header_fields& f, const std::vector<ppv2::tlv>& tlvs,
                       const ppv2::encode_options& opt) {
  const auto fam = static_cast<unsigned>(f.family);
  const auto tr = static_cast<unsigned>(f.transport);
  const auto count = [&](std::uint8_t type) {
    return std::count_if(tlvs.begin(), tlvs.end(),
                         [&](const ppv2::tlv& t) { return t.type == type; });
  };
  const auto any = [&](std::uint8_t type, auto&& pred) {
    return std::any_of(tlvs.begin(), tlvs.end(),
                       [&](const ppv2::tlv& t) { return t.type == type && pred(t.value.size()); });
  };
  const auto always = [](std::size_t) { return true; };
  std::size_t length = fam <= 3 ? ppv2::address_size(f.family) : 0;
  for (const auto& t : tlvs) length += ppv2::tlv_head_size + t.value.size();
  if (opt.crc32c && count(0x03) == 0) length += ppv2::tlv_head_size + 4;
  switch (e) {
  case errc::bad_family:
    return fam > 3;
  case errc::bad_transport:
    return tr > 2 || (fam == 0) != (tr == 0);
  case errc::bad_command:
    return static_cast<unsigned>(f.command) > 1;
  case errc::address_family_mismatch:
    return (f.family == ppv2::address_family::inet &&
            !(f.source.ip.is_v4() && f.destination.ip.is_v4())) ||
           (f.family == ppv2::address_family::inet6 &&
            !(f.source.ip.is_v6() && f.destination.ip.is_v6()));
  case errc::unix_path_too_long:
    return f.family == ppv2::address_family::unix_socket &&
           (f.unix_source.size() > 108 || f.unix_destination.size() > 108);
  case errc::tlv_value_too_long:
    return std::any_of(tlvs.begin(), tlvs.end(),
                       [](const ppv2::tlv& t) { return t.value.size() > 0xFFFF; });
  case errc::header_length_overflow:
    return length > 0xFFFF;
  case errc::tlv_duplicate: // a registered single type twice, or an SSL sub-type twice
    return count(0x01) > 1 || count(0x02) > 1 || count(0x03) > 1 || count(0x05) > 1 ||
           count(0x20) > 1 || count(0x30) > 1 || count(0x20) == 1;
  case errc::tlv_bad_size: // CRC32C of 4 bytes, SSL of at least 5
    return any(0x03, [](std::size_t n) { return n != 4; }) ||
           any(0x20, [](std::size_t n) { return n < ppv2::ssl_fixed_size; });
  case errc::tlv_truncated: // only a caller's SSL value holds lengths the encoder does not write
    return any(0x20, always);
  case errc::unique_id_too_long:
    return any(0x05, [](std::size_t n) { return n > ppv2::max_unique_id_size; });
  case errc::crc32c_mismatch:
    return !opt.crc32c && count(0x03) > 0;
  default:
    return false;
  }
}

/// CRC-32C one bit at a time (RFC 4960 appendix B): the reference for detail::crc32c.
std::uint32_t reference_crc32c(std::span<const std::uint8_t> bytes) {
  std::uint32_t crc = 0xFFFFFFFFu;
  for (const std::uint8_t b : bytes) {
    crc ^= b;
    for (int k = 0; k < 8; ++k) crc = crc & 1 ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
  }
  return crc ^ 0xFFFFFFFFu;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> input(data, size);

  // 0. The table-driven CRC-32C against the bitwise one, also with a field zeroed.
  DETOUR_FUZZ_CHECK(detail::crc32c(input) == reference_crc32c(input));
  if (size >= 4) {
    const std::size_t at = data[0] % (size - 3);
    std::vector<std::uint8_t> zeroed(input.begin(), input.end());
    std::fill_n(zeroed.begin() + static_cast<std::ptrdiff_t>(at), 4, 0);
    DETOUR_FUZZ_CHECK(detail::crc32c_with_zeroed_field(input, at) == reference_crc32c(zeroed));
  }

  // 1. decode -> encode: the same bytes (a LOCAL block the decoder discarded is not written
  // again: the plain LOCAL header instead).
  const auto d = ppv2::decode(input, {ppv2::max_size});
  if (d.complete() && d.value.block_discarded) {
    std::vector<std::uint8_t> again;
    DETOUR_FUZZ_CHECK(ppv2::encode_append(ppv2::fields_of(d.value), {}, again).ok());
    DETOUR_FUZZ_CHECK(again.size() == ppv2::fixed_size && again[12] == 0x20 && again[13] == 0);
  } else if (d.complete()) {
    std::vector<ppv2::tlv> tlvs;
    for (const auto t : d.value.tlvs()) tlvs.emplace_back(t.type, t.value);
    std::vector<std::uint8_t> again;
    const auto e = ppv2::encode_append(ppv2::fields_of(d.value), tlvs, again);
    DETOUR_FUZZ_CHECK(e.ok());
    DETOUR_FUZZ_CHECK(std::equal(again.begin(), again.end(), input.begin(),
                                 input.begin() + static_cast<std::ptrdiff_t>(d.consumed)));
    DETOUR_FUZZ_CHECK(again.size() == d.consumed);
  }

  // 2. build -> encode -> decode: what was asked for, or a documented refusal.
  reader r{input};
  ppv2::header_fields f;
  f.command = static_cast<ppv2::command>(r.byte() % 3);
  const std::uint8_t fam = r.byte();
  f.family = static_cast<ppv2::address_family>(fam >> 4);
  f.transport = static_cast<ppv2::transport>(fam & 0xF);
  const std::uint8_t kinds = r.byte();
  const auto ip = [&](bool v6) {
    const auto b = r.bytes(v6 ? 16 : 4);
    std::array<std::uint8_t, 16> a{};
    std::copy(b.begin(), b.end(), a.begin());
    return v6 ? ip_address::v6(a) : ip_address::v4(std::span<const std::uint8_t, 4>(a.data(), 4));
  };
  f.source = {ip(kinds & 1), r.u16()};
  f.destination = {ip(kinds & 2), r.u16()};
  f.unix_source = r.bytes(r.byte() % 112);
  f.unix_destination = r.bytes(r.byte() % 112);
  const ppv2::encode_options opt{(kinds & 4) != 0};
  std::vector<ppv2::tlv> tlvs;
  for (std::uint8_t n = r.byte() % 8; n > 0; --n) {
    const std::uint8_t type = r.byte();
    std::size_t len = r.byte();
    if (len == 0xFF) len = r.u16() + std::size_t{r.byte()} * 0x100; // sometimes over 65535
    tlvs.emplace_back(type, r.bytes(len));
  }

  std::vector<std::uint8_t> out;
  const auto e = ppv2::encode_append(f, tlvs, out, opt);
  if (!e.ok()) {
    DETOUR_FUZZ_CHECK(explained_refusal(e.error, f, tlvs, opt) && fuzz::named_error(e.error));
    DETOUR_FUZZ_CHECK(out.empty() && e.size == 0 && e.error_code() == make_error_code(e.error));
    return 0;
  }
  DETOUR_FUZZ_CHECK(out.size() == e.size && !e.error_code());
  const auto back = ppv2::decode(out, {ppv2::max_size});
  DETOUR_FUZZ_CHECK(back.complete());
  DETOUR_FUZZ_CHECK(back.consumed == out.size());
  const auto& h = back.value;
  DETOUR_FUZZ_CHECK(h.command == f.command && h.family == f.family && h.transport == f.transport);
  if (f.family == ppv2::address_family::inet || f.family == ppv2::address_family::inet6) {
    DETOUR_FUZZ_CHECK(h.source == f.source);
    DETOUR_FUZZ_CHECK(h.destination == f.destination);
  }
  if (f.family == ppv2::address_family::unix_socket) {
    DETOUR_FUZZ_CHECK(
        std::equal(f.unix_source.begin(), f.unix_source.end(), h.unix_source().begin()));
    DETOUR_FUZZ_CHECK(
        std::all_of(h.unix_source().begin() + static_cast<std::ptrdiff_t>(f.unix_source.size()),
                    h.unix_source().end(), [](std::uint8_t b) { return b == 0; }));
    DETOUR_FUZZ_CHECK(std::equal(f.unix_destination.begin(), f.unix_destination.end(),
                                 h.unix_destination().begin()));
    DETOUR_FUZZ_CHECK(std::all_of(
        h.unix_destination().begin() + static_cast<std::ptrdiff_t>(f.unix_destination.size()),
        h.unix_destination().end(), [](std::uint8_t b) { return b == 0; }));
  }
  bool crc_given = false;
  for (const auto& t : tlvs) crc_given = crc_given || t.type == 0x03;
  std::size_t k = 0;
  for (const auto t : h.tlvs()) {
    if (opt.crc32c && !crc_given && k == 0 && t.type == 0x03) {
      crc_given = true; // the one the encoder added first
      continue;
    }
    DETOUR_FUZZ_CHECK(k < tlvs.size());
    DETOUR_FUZZ_CHECK(t.type == tlvs[k].type);
    if (!(opt.crc32c && t.type == 0x03)) // a computed CRC32C replaces the given value
      DETOUR_FUZZ_CHECK(
          std::equal(t.value.begin(), t.value.end(), tlvs[k].value.begin(), tlvs[k].value.end()));
    ++k;
  }
  DETOUR_FUZZ_CHECK(k == tlvs.size());

  // A buffer of exactly the size: the same bytes. One byte less: refused, never truncated.
  const auto exact = std::make_unique<std::uint8_t[]>(out.size());
  const auto e2 = ppv2::encode(f, tlvs, {exact.get(), out.size()}, opt);
  DETOUR_FUZZ_CHECK(e2.ok() && e2.size == out.size());
  DETOUR_FUZZ_CHECK(std::equal(out.begin(), out.end(), exact.get()));
  DETOUR_FUZZ_CHECK(ppv2::encode(f, tlvs, {exact.get(), out.size() - 1}, opt).error ==
                    errc::buffer_too_small);

  // The factories say what they build.
  if (f.command == ppv2::command::proxy && f.transport == ppv2::transport::stream &&
      (f.family == ppv2::address_family::inet || f.family == ppv2::address_family::inet6)) {
    std::vector<std::uint8_t> tcp;
    DETOUR_FUZZ_CHECK(
        ppv2::encode_append(ppv2::header_fields::tcp(f.source, f.destination), tlvs, tcp, opt)
            .ok());
    DETOUR_FUZZ_CHECK(tcp == out);
  }
  // Without the address block the same TLVs still make a valid (LOCAL, AF_UNSPEC) header,
  // unless a CRC32C was given as is (it was right for the other header only).
  if (!opt.crc32c &&
      std::any_of(tlvs.begin(), tlvs.end(), [](const ppv2::tlv& t) { return t.type == 0x03; }))
    return 0;
  std::vector<std::uint8_t> local;
  DETOUR_FUZZ_CHECK(ppv2::encode_append(ppv2::header_fields::local(), tlvs, local, opt).ok());
  const auto l = ppv2::decode(local, {ppv2::max_size});
  DETOUR_FUZZ_CHECK(l.complete() && l.value.command == ppv2::command::local &&
                    l.value.family == ppv2::address_family::unspec &&
                    l.value.tlv_block.size() == h.tlv_block.size());
  return 0;
}
