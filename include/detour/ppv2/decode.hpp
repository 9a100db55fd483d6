// SPDX-License-Identifier: MIT
// detour/ppv2/decode.hpp: PROXY protocol v2 decoding (proxy-protocol.txt section 2.2): a
// stateless decode() over "everything received so far", and an incremental decoder that
// accumulates pieces of any size into caller-provided storage. Both give identical results,
// never allocate and never read past the bytes they are given.
#pragma once

#include <detour/detail/bytes.hpp>
#include <detour/detail/crc32c.hpp>
#include <detour/error.hpp>
#include <detour/ppv2/header.hpp>
#include <detour/result.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>

namespace detour::ppv2 {

/// Limits applied while decoding.
struct decode_limits {
  /// Largest header accepted, the 16 fixed bytes included, checked as soon as the length field
  /// is in (before the rest is buffered). The format allows 16 + 65535; real peers send far
  /// less: g3proxy's encoder buffer is 536 bytes, HAProxy with SSL, authority and unique-id TLVs
  /// a few hundred. 4096 leaves room for client-certificate TLVs while bounding what one stream
  /// can make a server buffer.
  std::size_t max_header_size = 4096;
};

/// The largest value a PP2_TYPE_UNIQUE_ID may have (§2.2.5: "up to 128 bytes").
inline constexpr std::size_t max_unique_id_size = 128;

namespace detail {

/// Bit for a registered type that may appear at most once (NOOP may repeat; other types are
/// not ours to police), or 0.
constexpr std::uint32_t single_tlv_bit(std::uint8_t type) noexcept {
  switch (type) {
  case 0x01:
    return 1u << 0; // ALPN
  case 0x02:
    return 1u << 1; // AUTHORITY
  case 0x03:
    return 1u << 2; // CRC32C
  case 0x05:
    return 1u << 3; // UNIQUE_ID
  case 0x20:
    return 1u << 4; // SSL
  case 0x30:
    return 1u << 5; // NETNS
  default:
    return 0;
  }
}

/// Walks the SSL TLV's sub-TLVs (§2.2.6), `at` being the offset of `sub` in the header.
constexpr decode_result<bool> check_ssl_sub_tlvs(std::span<const std::uint8_t> sub,
                                                 std::size_t at) noexcept {
  std::uint32_t seen = 0;
  std::size_t pos = 0;
  while (pos < sub.size()) {
    if (sub.size() - pos < tlv_head_size)
      return decode_result<bool>::fail(errc::tlv_truncated, at + pos);
    const std::uint8_t type = sub[pos];
    const std::size_t len = ::detour::detail::load_be16(sub.data() + pos + 1);
    if (len > sub.size() - pos - tlv_head_size)
      return decode_result<bool>::fail(errc::tlv_truncated, at + pos);
    if (type >= 0x21 && type <= 0x28) { // the registered sub-types, each at most once
      const std::uint32_t bit = 1u << (type - 0x21);
      if (seen & bit) return decode_result<bool>::fail(errc::tlv_duplicate, at + pos);
      seen |= bit;
    }
    pos += tlv_head_size + len;
  }
  return decode_result<bool>::ok(true, sub.size());
}

} // namespace detail

namespace detail {

/// No TLV visitor.
struct ignore_tlvs {
  constexpr void operator()(std::uint8_t, std::size_t, std::size_t) const noexcept {}
};

/// The source (or destination) of an AF_INET or AF_INET6 address block at `a`; zero for the
/// other families.
constexpr socket_address endpoint(address_family f, const std::uint8_t* a,
                                  bool destination) noexcept {
  if (f == address_family::inet)
    return {ip_address::v4(std::span<const std::uint8_t, 4>(a + (destination ? 4 : 0), 4)),
            ::detour::detail::load_be16(a + (destination ? 10 : 8))};
  if (f == address_family::inet6)
    return {ip_address::v6(std::span<const std::uint8_t, 16>(a + (destination ? 16 : 0), 16)),
            ::detour::detail::load_be16(a + (destination ? 34 : 32))};
  return {};
}

/// The outcome of the checks on a header, or on as much of its start as is there, without the
/// view: small enough to pass around cheaply, and the view is built once, at the end.
struct header_check {
  decode_status status = decode_status::need_more; ///< complete: everything checked is valid
  errc error = {};
  std::size_t offset = 0;
  std::size_t needed = 0; ///< need_more: bytes missing (up to the fixed part, or exact)
  std::size_t total = 0;  ///< complete: the header's size, 16 + length
  /// complete, LOCAL only: the block after the fixed part is not the family's addresses and
  /// valid TLVs, so it is ignored (§2.2), not refused.
  bool discarded = false;
};

constexpr header_check check_failed(errc e, std::size_t at) noexcept {
  return {decode_status::error, e, at, 0, 0};
}
constexpr header_check check_needs(std::size_t needed) noexcept {
  return {decode_status::need_more, errc{}, 0, needed, 0};
}

/// The checks of the fixed part, each as soon as its byte is there: signature, version and
/// command, family and transport, then the length against the address block and the limit.
/// Complete when the 16 bytes are in and valid, `total` then being the header's size.
constexpr header_check check_fixed_part(std::span<const std::uint8_t> bytes,
                                        const decode_limits& limits) noexcept {
  const std::size_t n = bytes.size();

  // §2.2: the signature, checked byte by byte so a stranger is refused at the first byte (when
  // all 12 are in, one comparison of the whole block first).
  const std::size_t sig_have = std::min(n, signature.size());
  if (std::is_constant_evaluated() || sig_have < signature.size() ||
      std::memcmp(bytes.data(), signature.data(), signature.size()) != 0) {
    for (std::size_t i = 0; i < sig_have; ++i)
      if (bytes[i] != signature[i]) return check_failed(errc::bad_signature, i);
  }
  if (n <= 12) return check_needs(fixed_size - n);

  // §2.2: "the highest four bits contains the version ... must always be \x2"; the command is
  // LOCAL or PROXY, "receivers must drop connections presenting unexpected values here".
  const std::uint8_t ver_cmd = bytes[12];
  if ((ver_cmd >> 4) != 0x2) return check_failed(errc::bad_version, 12);
  if ((ver_cmd & 0xF) > 0x1) return check_failed(errc::bad_command, 12);
  if (n == 13) return check_needs(fixed_size - n);

  // §2.2: "other values are unspecified ... and must be rejected as invalid by receivers".
  // Only the listed bytes are valid: 00 (UNSPEC) and 11 12 21 22 31 32.
  const std::uint8_t family_nibble = bytes[13] >> 4;
  const std::uint8_t transport_nibble = bytes[13] & 0xF;
  if (family_nibble > 0x3) return check_failed(errc::bad_family, 13);
  if (transport_nibble > 0x2 || (family_nibble == 0) != (transport_nibble == 0))
    return check_failed(errc::bad_transport, 13);
  if (n < fixed_size) return check_needs(fixed_size - n);

  const std::size_t length = ::detour::detail::load_be16(bytes.data() + 14);
  // §2.2: the address block must fit in the declared length. Not for LOCAL, whose receiver
  // "must ... discard the protocol block including the family which is ignored" (check_tlvs).
  const bool local = (ver_cmd & 0xF) == 0;
  if (!local && length < address_size(static_cast<address_family>(family_nibble)))
    return check_failed(errc::address_block_too_short, 14);
  if (fixed_size + length > limits.max_header_size) return check_failed(errc::header_too_large, 14);
  return {decode_status::complete, errc{}, 0, 0, fixed_size + length};
}

/// The checks after the fixed part, on a whole header whose fixed part check_fixed_part()
/// accepted (`header` is exactly its 16 + length bytes): the TLV walk, calling
/// `on_tlv(type, offset, length)` for each TLV as the walk validates it, then the CRC32C.
template <class OnTlv>
constexpr header_check walk_tlvs(std::span<const std::uint8_t> header, OnTlv&& on_tlv) noexcept {
  const std::uint8_t* p = header.data();
  const std::size_t total = header.size();

  // §2.2 (pp2_tlv): walk the TLVs; the walk must end exactly at 16 + length.
  std::uint32_t seen = 0;
  std::size_t crc_at = 0; // offset of the CRC32C TLV, 0 when absent
  std::size_t pos = fixed_size + address_size(static_cast<address_family>(p[13] >> 4));
  while (pos < total) {
    if (total - pos < tlv_head_size) return check_failed(errc::tlv_truncated, pos);
    const std::uint8_t type = p[pos];
    const std::size_t len = ::detour::detail::load_be16(p + pos + 1);
    if (len > total - pos - tlv_head_size) return check_failed(errc::tlv_truncated, pos);
    on_tlv(type, pos, len);
    // Registered types (all up to 0x30) have rules; the others are kept as they are.
    if (type > to_byte(tlv_type::netns)) {
      pos += tlv_head_size + len;
      continue;
    }
    if (const std::uint32_t bit = single_tlv_bit(type)) {
      if (seen & bit) return check_failed(errc::tlv_duplicate, pos);
      seen |= bit;
    }
    switch (type) {
    case to_byte(tlv_type::crc32c): // §2.2.3: a 32-bit number
      if (len != 4) return check_failed(errc::tlv_bad_size, pos);
      crc_at = pos;
      break;
    case to_byte(tlv_type::unique_id): // §2.2.5: "up to 128 bytes"
      if (len > max_unique_id_size) return check_failed(errc::unique_id_too_long, pos);
      break;
    case to_byte(tlv_type::ssl): { // §2.2.6: client (1), verify (4), sub-TLVs
      if (len < ssl_fixed_size) return check_failed(errc::tlv_bad_size, pos);
      const std::size_t sub_at = pos + tlv_head_size + ssl_fixed_size;
      const auto sub = check_ssl_sub_tlvs(header.subspan(sub_at, len - ssl_fixed_size), sub_at);
      if (sub.failed()) return check_failed(sub.error, sub.offset);
      break;
    }
    default:
      break; // ALPN, AUTHORITY, NOOP, NETNS and unregistered types below 0x30: kept as they are
    }
    pos += tlv_head_size + len;
  }

  // §2.2.3: "replace the 32 bits of the checksum field ... with all '0's and calculate a CRC32c
  // checksum value of the whole PROXY header"; a mismatch makes the connection invalid.
  if (crc_at != 0) {
    const std::size_t field = crc_at + tlv_head_size;
    const std::uint32_t sent = ::detour::detail::load_be32(p + field);
    if (::detour::detail::crc32c_with_zeroed_field(header, field) != sent)
      return check_failed(errc::crc32c_mismatch, crc_at);
  }
  return {decode_status::complete, errc{}, 0, 0, total};
}

/// The checks after the fixed part (see walk_tlvs). §2.2, LOCAL: the receiver "must accept this
/// connection as valid ... and discard the protocol block including the family which is
/// ignored". A LOCAL block that reads as the family's addresses and valid TLVs is kept (a
/// health check may carry TLVs); any other is discarded, never refused, and `on_tlv` sees none
/// of it.
template <class OnTlv>
constexpr header_check check_tlvs(std::span<const std::uint8_t> header, OnTlv&& on_tlv) noexcept {
  if ((header[12] & 0xF) != 0) return walk_tlvs(header, on_tlv);
  header_check kept{decode_status::complete, errc{}, 0, 0, header.size(), false};
  if (header.size() >= fixed_size + address_size(static_cast<address_family>(header[13] >> 4))) {
    const header_check walked = walk_tlvs(header, ignore_tlvs{});
    if (walked.status == decode_status::complete) {
      if constexpr (!std::is_same_v<std::remove_cvref_t<OnTlv>, ignore_tlvs>)
        (void)walk_tlvs(header, on_tlv);
      return kept;
    }
  }
  kept.discarded = true;
  return kept;
}

/// Every check of decode(), in its order, calling `on_tlv(type, offset, length)` for each TLV
/// as the walk validates it, so that a layer above can read the TLVs it cares about in the
/// same pass (the outcome stays decode()'s, whatever the visitor does).
template <class OnTlv>
constexpr header_check check_header(std::span<const std::uint8_t> bytes,
                                    const decode_limits& limits, OnTlv&& on_tlv) noexcept {
  const header_check fixed = check_fixed_part(bytes, limits);
  if (fixed.status != decode_status::complete) return fixed;
  if (bytes.size() < fixed.total) return check_needs(fixed.total - bytes.size());
  return check_tlvs(bytes.first(fixed.total), on_tlv);
}

/// The view of a header that check_header() accepted; `header` is exactly its bytes.
constexpr header_view view_of(std::span<const std::uint8_t> header,
                              bool discarded = false) noexcept {
  if (discarded) {
    // The family is ignored with the block: no addresses, no TLVs.
    header_view v{command::local,
                  address_family::unspec,
                  transport::unspec,
                  {},
                  {},
                  header,
                  header.subspan(fixed_size, 0),
                  header.subspan(fixed_size, 0)};
    v.block_discarded = true;
    return v;
  }
  const auto family = static_cast<address_family>(header[13] >> 4);
  const std::size_t addr_size = address_size(family);
  const std::uint8_t* a = header.data() + fixed_size;
  return header_view{static_cast<command>(header[12] & 0xF),
                     family,
                     static_cast<transport>(header[13] & 0xF),
                     endpoint(family, a, false),
                     endpoint(family, a, true),
                     header,
                     header.subspan(fixed_size, addr_size),
                     header.subspan(fixed_size + addr_size)};
}

/// The decode_result of a check over `bytes`. Every member given: compilers then write the
/// result once, without clearing it first.
constexpr decode_result<header_view> result_of(const header_check& c,
                                               std::span<const std::uint8_t> bytes) noexcept {
  using result = decode_result<header_view>;
  if (c.status == decode_status::complete)
    return result{c.status, errc{}, c.total, 0, 0, view_of(bytes.first(c.total), c.discarded)};
  return result{c.status, c.error, 0, c.needed, c.offset, header_view{}};
}

} // namespace detail

/// Decodes a PROXY v2 header from the start of `bytes`, everything received so far.
///
/// - complete: `consumed` is the header size (16 + length); bytes after it are not looked at
///   and belong to the caller. `value` views into `bytes`.
/// - need_more: `needed` more bytes are required. Until the 16-byte fixed part is in, that
///   is the count up to it; from then on it is exact (`bytes.size() + needed` is the header
///   size). Each byte is checked as soon as it is present: a wrong signature byte, version,
///   command, family or transport is an error at once, and the size limit is enforced when the
///   length field arrives.
/// - error: `error` and `offset` (from the start of the header) of the first problem found.
///
/// Checks, in order: signature (offset of the first wrong byte), version and command (12),
/// family and transport (13), length covering the address block and the size limit (14), then
/// each TLV (offset of its type byte): truncation, duplicates, fixed sizes, SSL sub-TLVs, and
/// last the CRC32C (offset of the CRC32C TLV).
constexpr decode_result<header_view> decode(std::span<const std::uint8_t> bytes,
                                            const decode_limits& limits = {}) noexcept {
  return detail::result_of(detail::check_header(bytes, limits, detail::ignore_tlvs{}), bytes);
}

/// An incremental PROXY v2 decoder: feed it the bytes of a stream in pieces of any size (down
/// to one byte at a time); it copies exactly the header's bytes into the storage it was given
/// and stops at the header's end, so the bytes after it (payload, relay data) stay the
/// caller's. Its result is always the one decode() gives for the concatenation of what it was
/// fed, with `consumed` counting the bytes taken from the latest piece.
///
/// The limit applied is the smaller of `limits.max_header_size` and the storage size: give it
/// storage of at least max_header_size bytes (the default limit is 4096) to apply the limit as
/// configured. It never allocates; after a complete header or an error every further feed()
/// returns the same result again with `consumed` 0 (errors are sticky) until reset().
class decoder {
public:
  /// `storage` must stay valid and untouched while the decoder and its header views are in use;
  /// storage smaller than the 16-byte fixed part makes every feed() fail with header_too_large.
  explicit decoder(std::span<std::uint8_t> storage, decode_limits limits = {}) noexcept
      : storage_(storage), limits_(limits) {
    limits_.max_header_size = std::min(limits_.max_header_size, storage_.size());
    // Storage that cannot even hold the fixed part can hold no header at all.
    if (storage_.size() < fixed_size)
      last_ = detail::result_of(detail::check_failed(errc::header_too_large, 0), {});
  }

  /// Takes from `piece` what belongs to the header.
  /// - need_more: all of `piece` was taken (`consumed == piece.size()`); `needed` as decode().
  /// - complete: `consumed` bytes of `piece` completed the header; the rest of `piece` is not
  ///   part of it. `value` views into the storage.
  /// - error: `error` and `offset` as decode() reports them for the same bytes; `consumed` is
  ///   what was taken from `piece` up to the point the error was seen.
  decode_result<header_view> feed(std::span<const std::uint8_t> piece) noexcept {
    if (!last_.need_more()) {
      auto again = last_;
      again.consumed = 0;
      return again;
    }
    // The usual case first: a whole header in the first piece is checked where it is (the
    // checks need not wait for the copy), then copied.
    if (size_ == 0) {
      const auto c = detail::check_header(piece, limits_, detail::ignore_tlvs{});
      if (c.status == decode_status::complete) {
        std::memcpy(storage_.data(), piece.data(), c.total);
        size_ = c.total;
        return settle(c, c.total);
      }
    }
    std::size_t taken = 0;
    const auto take_up_to = [&](std::size_t target) {
      const std::size_t take = std::min(target - size_, piece.size() - taken);
      if (take != 0) std::memcpy(storage_.data() + size_, piece.data() + taken, take);
      size_ += take;
      taken += take;
    };
    // The fixed part first (checked as it arrives), then exactly up to the end of the header,
    // whose other checks run once, when its last byte is in.
    if (size_ < fixed_size) take_up_to(fixed_size);
    detail::header_check c =
        detail::check_fixed_part(std::span<const std::uint8_t>(storage_.data(), size_), limits_);
    if (c.status == decode_status::complete) {
      const std::size_t total = c.total;
      take_up_to(total);
      c = size_ < total ? detail::check_needs(total - size_)
                        : detail::check_tlvs(std::span<const std::uint8_t>(storage_.data(), total),
                                             detail::ignore_tlvs{});
    }
    return settle(c, taken);
  }

  /// Bytes of the header stored so far.
  std::size_t buffered() const noexcept { return size_; }
  /// The latest result (need_more with 16 needed before the first feed).
  const decode_result<header_view>& result() const noexcept { return last_; }
  /// Forgets everything and starts on a new header.
  void reset() noexcept {
    size_ = 0;
    last_ = detail::result_of(storage_.size() < fixed_size
                                  ? detail::check_failed(errc::header_too_large, 0)
                                  : detail::check_needs(fixed_size),
                              {});
  }

private:
  /// Records the outcome of a check over the stored bytes and returns it as feed()'s result.
  decode_result<header_view> settle(const detail::header_check& c, std::size_t taken) noexcept {
    // Built where it is returned, then recorded. Copying the record instead, just written in
    // narrow stores, into the result makes the wide loads of the copy wait for those stores.
    auto r = detail::result_of(c, std::span<const std::uint8_t>(storage_.data(), size_));
    last_ = r;
    r.consumed = taken;
    return r;
  }

  std::span<std::uint8_t> storage_;
  decode_limits limits_;
  std::size_t size_ = 0;
  decode_result<header_view> last_ = detail::result_of(detail::check_needs(fixed_size), {});
};

} // namespace detour::ppv2
