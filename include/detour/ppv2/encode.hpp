// SPDX-License-Identifier: MIT
// detour/ppv2/encode.hpp: PROXY protocol v2 encoding (proxy-protocol.txt section 2.2): LOCAL
// and PROXY headers of every family with any TLVs, CRC32C computed on request (section 2.2.3),
// into a caller-supplied buffer or appended to a growable one. Never emits a truncated header.
#pragma once

#include <detour/address.hpp>
#include <detour/detail/bytes.hpp>
#include <detour/detail/crc32c.hpp>
#include <detour/error.hpp>
#include <detour/ppv2/decode.hpp>
#include <detour/ppv2/header.hpp>
#include <detour/result.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <span>
#include <string_view>

namespace detour::ppv2 {

/// One TLV to encode: a type and a view of its value (copied by the encoder).
struct tlv {
  std::uint8_t type = 0;
  std::span<const std::uint8_t> value;

  constexpr tlv() = default;
  /// An empty value (a NOOP's padding of zero bytes, an empty custom TLV): `tlv{0x04}`, where
  /// `tlv{0x04, {}}` would not say whether `{}` is bytes or text.
  constexpr explicit tlv(std::uint8_t t) noexcept : type(t) {}
  constexpr explicit tlv(tlv_type t) noexcept : type(to_byte(t)) {}
  constexpr tlv(std::uint8_t t, std::span<const std::uint8_t> v) noexcept : type(t), value(v) {}
  constexpr tlv(tlv_type t, std::span<const std::uint8_t> v) noexcept
      : type(to_byte(t)), value(v) {}
  /// A text value (its bytes as they are, no terminator).
  tlv(std::uint8_t t, std::string_view v) noexcept
      : type(t), value(reinterpret_cast<const std::uint8_t*>(v.data()), v.size()) {}
  tlv(tlv_type t, std::string_view v) noexcept : tlv(to_byte(t), v) {}
};

/// What goes into the fixed part and the address block.
struct header_fields {
  ppv2::command command = command::proxy;
  address_family family = address_family::inet;
  ppv2::transport transport = transport::stream;
  /// AF_INET / AF_INET6: both addresses must be of the matching IP family.
  socket_address source;
  socket_address destination;
  /// AF_UNIX: the paths, at most 108 bytes each, zero-padded to 108 on the wire.
  std::span<const std::uint8_t> unix_source;
  std::span<const std::uint8_t> unix_destination;

  /// TCP over IPv4 or IPv6 (by the addresses' family) with the PROXY command.
  static constexpr header_fields tcp(const socket_address& src,
                                     const socket_address& dst) noexcept {
    header_fields f;
    f.family = src.ip.is_v4() ? address_family::inet : address_family::inet6;
    f.source = src;
    f.destination = dst;
    return f;
  }
  /// LOCAL over AF_UNSPEC: what a proxy sends for its own connections (health checks).
  static constexpr header_fields local() noexcept {
    header_fields f;
    f.command = command::local;
    f.family = address_family::unspec;
    f.transport = transport::unspec;
    return f;
  }
};

/// The fields of a decoded header, ready to encode again.
inline header_fields fields_of(const header_view& h) noexcept {
  header_fields f;
  f.command = h.command;
  f.family = h.family;
  f.transport = h.transport;
  f.source = h.source;
  f.destination = h.destination;
  f.unix_source = h.unix_source();
  f.unix_destination = h.unix_destination();
  return f;
}

struct encode_options {
  /// Compute PP2_TYPE_CRC32C (§2.2.3). When the TLV list holds a CRC32C entry (4 bytes, any
  /// content) its value is computed in place; otherwise one is added before all the others,
  /// where HAProxy puts it. When false, a CRC32C entry is written as given (and the result
  /// must still decode: a wrong checksum is refused with crc32c_mismatch).
  bool crc32c = false;
};

namespace detail {

/// Size of the header for `fields` and `tlvs`, or an error.
constexpr decode_result<std::size_t> encoded_size(const header_fields& f, std::span<const tlv> tlvs,
                                                  const encode_options& opt) noexcept {
  using result = decode_result<std::size_t>;
  const auto fam = static_cast<std::uint8_t>(f.family);
  const auto tr = static_cast<std::uint8_t>(f.transport);
  if (fam > 0x3) return result::fail(errc::bad_family, 13);
  if (tr > 0x2 || (fam == 0) != (tr == 0)) return result::fail(errc::bad_transport, 13);
  if (static_cast<std::uint8_t>(f.command) > 0x1) return result::fail(errc::bad_command, 12);
  if (f.family == address_family::inet && (!f.source.ip.is_v4() || !f.destination.ip.is_v4()))
    return result::fail(errc::address_family_mismatch, fixed_size);
  if (f.family == address_family::inet6 && (!f.source.ip.is_v6() || !f.destination.ip.is_v6()))
    return result::fail(errc::address_family_mismatch, fixed_size);
  if (f.family == address_family::unix_socket &&
      (f.unix_source.size() > 108 || f.unix_destination.size() > 108))
    return result::fail(errc::unix_path_too_long, fixed_size);
  std::size_t length = address_size(f.family);
  bool has_crc = false;
  for (const tlv& t : tlvs) {
    if (t.value.size() > 0xFFFF) return result::fail(errc::tlv_value_too_long, fixed_size + length);
    length += tlv_head_size + t.value.size();
    has_crc = has_crc || t.type == to_byte(tlv_type::crc32c);
  }
  if (opt.crc32c && !has_crc) length += tlv_head_size + 4;
  if (length > 0xFFFF) return result::fail(errc::header_length_overflow, 14);
  return result::ok(fixed_size + length, 0);
}

constexpr void write_tlv(std::uint8_t*& p, std::uint8_t type,
                         std::span<const std::uint8_t> v) noexcept {
  *p++ = type;
  ::detour::detail::store_be16(p, static_cast<std::uint16_t>(v.size()));
  p += 2;
  for (std::uint8_t b : v) *p++ = b;
}

} // namespace detail

/// Encodes a header into `out`. On success `size` bytes of `out` hold the header; on error
/// nothing usable was written (the bytes of `out` are unspecified) and `error` says why:
/// bad_family / bad_transport / bad_command for values outside §2.2, address_family_mismatch,
/// tlv_value_too_long, header_length_overflow, buffer_too_small, or the error decode() reports
/// for the result (a duplicate CRC32C, a unique id over 128 bytes, a malformed SSL value...):
/// the encoder never emits a header the decoder would refuse (with the largest size limit).
constexpr encode_result encode(const header_fields& f, std::span<const tlv> tlvs,
                               std::span<std::uint8_t> out,
                               const encode_options& opt = {}) noexcept {
  const auto size = detail::encoded_size(f, tlvs, opt);
  if (size.failed()) return {size.error, 0};
  const std::size_t total = size.value;
  if (out.size() < total) return {errc::buffer_too_small, 0};

  std::uint8_t* p = out.data();
  for (std::uint8_t b : signature) *p++ = b;
  *p++ = static_cast<std::uint8_t>(0x20 | static_cast<std::uint8_t>(f.command));
  *p++ = static_cast<std::uint8_t>(static_cast<std::uint8_t>(f.family) << 4 |
                                   static_cast<std::uint8_t>(f.transport));
  ::detour::detail::store_be16(p, static_cast<std::uint16_t>(total - fixed_size));
  p += 2;
  switch (f.family) {
  case address_family::inet:
  case address_family::inet6:
    for (std::uint8_t b : f.source.ip.bytes()) *p++ = b;
    for (std::uint8_t b : f.destination.ip.bytes()) *p++ = b;
    ::detour::detail::store_be16(p, f.source.port);
    ::detour::detail::store_be16(p + 2, f.destination.port);
    p += 4;
    break;
  case address_family::unix_socket:
    for (auto path : {f.unix_source, f.unix_destination}) {
      for (std::size_t i = 0; i < 108; ++i) *p++ = i < path.size() ? path[i] : 0;
    }
    break;
  case address_family::unspec:
    break;
  }

  std::size_t crc_field = 0;
  const bool has_crc = [&] {
    for (const tlv& t : tlvs)
      if (t.type == to_byte(tlv_type::crc32c)) return true;
    return false;
  }();
  if (opt.crc32c && !has_crc) {
    constexpr std::uint8_t zeros[4]{};
    crc_field = static_cast<std::size_t>(p - out.data()) + tlv_head_size;
    detail::write_tlv(p, to_byte(tlv_type::crc32c), zeros);
  }
  for (const tlv& t : tlvs) {
    if (opt.crc32c && t.type == to_byte(tlv_type::crc32c) && crc_field == 0) {
      if (t.value.size() != 4) return {errc::tlv_bad_size, 0};
      constexpr std::uint8_t zeros[4]{};
      crc_field = static_cast<std::size_t>(p - out.data()) + tlv_head_size;
      detail::write_tlv(p, t.type, zeros);
      continue;
    }
    detail::write_tlv(p, t.type, t.value);
  }
  const auto header = out.first(total);
  if (crc_field != 0)
    ::detour::detail::store_be32(out.data() + crc_field, ::detour::detail::crc32c(header));

  // The decoder's checks are the definition of a valid header: refuse what it would refuse,
  // and for LOCAL what it would only discard (a receiver ignores such a block; we never write
  // one).
  const auto check = decode(header, decode_limits{max_size});
  if (!check.complete()) return {check.error, 0};
  if (check.value.block_discarded) {
    const auto walked = detail::walk_tlvs(header, detail::ignore_tlvs{});
    return {walked.error != errc{} ? walked.error : errc::address_block_too_short, 0};
  }
  return {errc{}, total};
}

constexpr encode_result encode(const header_fields& f, std::initializer_list<tlv> tlvs,
                               std::span<std::uint8_t> out,
                               const encode_options& opt = {}) noexcept {
  return encode(f, std::span<const tlv>(tlvs.begin(), tlvs.size()), out, opt);
}

/// A growable byte buffer (std::vector<std::uint8_t>, std::string, ...).
template <class Buffer>
concept growable_byte_buffer = requires(Buffer& b, std::size_t n) {
  b.resize(n);
  { b.size() } -> std::convertible_to<std::size_t>;
  {b.data()};
  requires sizeof(*b.data()) == 1;
};

/// Encodes a header at the end of `buffer`, which grows by exactly the header's size on
/// success and keeps its size on error. Allocation is the buffer's business.
template <growable_byte_buffer Buffer>
encode_result encode_append(const header_fields& f, std::span<const tlv> tlvs, Buffer& buffer,
                            const encode_options& opt = {}) {
  const auto size = detail::encoded_size(f, tlvs, opt);
  if (size.failed()) return {size.error, 0};
  const std::size_t old = buffer.size();
  buffer.resize(old + size.value);
  auto* base = reinterpret_cast<std::uint8_t*>(buffer.data()) + old;
  const auto r = encode(f, tlvs, std::span<std::uint8_t>(base, size.value), opt);
  if (!r) buffer.resize(old);
  return r;
}

template <growable_byte_buffer Buffer>
encode_result encode_append(const header_fields& f, std::initializer_list<tlv> tlvs, Buffer& buffer,
                            const encode_options& opt = {}) {
  return encode_append(f, std::span<const tlv>(tlvs.begin(), tlvs.size()), buffer, opt);
}

} // namespace detour::ppv2
