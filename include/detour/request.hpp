// SPDX-License-Identifier: MIT
// detour/request.hpp: the detour layer over PROXY protocol v2 (g3proxy stream detour): the
// north request (E0 upstream, E2 username, E3 task id, E4 protocol, E5 match id, E6 payload
// length) and the south hello (E5 alone) as typed views, how to tell them apart, and encoders
// that reproduce g3proxy's bytes exactly.
#pragma once

#include <detour/address.hpp>
#include <detour/detail/bytes.hpp>
#include <detour/detail/utf8.hpp>
#include <detour/error.hpp>
#include <detour/ppv2/decode.hpp>
#include <detour/ppv2/encode.hpp>
#include <detour/ppv2/header.hpp>
#include <detour/result.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace detour {

/// The size of g3proxy's header buffer (V2_BUF_CAP): it never sends a larger header, and fails
/// the task instead (the server then sees a north stream with nothing but a FIN).
inline constexpr std::size_t g3_max_header_size = 536;

/// A 16-byte UUID (the E3 task id), in network order as sent.
struct uuid {
  std::array<std::uint8_t, 16> bytes{};
  friend constexpr bool operator==(const uuid&, const uuid&) = default;
};

/// The canonical 8-4-4-4-12 lower-case form of a uuid, in a fixed buffer.
struct uuid_text {
  std::array<char, 36> chars{};
  constexpr std::string_view view() const noexcept { return {chars.data(), chars.size()}; }
  friend constexpr bool operator==(const uuid_text& a, std::string_view b) noexcept {
    return a.view() == b;
  }
};

/// "6ba7b810-9dad-11d1-80b4-00c04fd430c8".
constexpr uuid_text to_text(const uuid& id) noexcept {
  constexpr std::string_view hex = "0123456789abcdef";
  uuid_text t;
  std::size_t o = 0;
  for (std::size_t i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) t.chars[o++] = '-';
    t.chars[o++] = hex[id.bytes[i] >> 4];
    t.chars[o++] = hex[id.bytes[i] & 0xF];
  }
  return t;
}

/// The protocols g3proxy detours today (E4). Others are valid too: g3proxy knows more
/// protocols, so an unknown name is a policy question, not a parse error.
enum class protocol_kind : std::uint8_t {
  other,     ///< any other name (see north_request::protocol_name)
  http_2,    ///< "http_2"
  websocket, ///< "websocket" (HTTP/1.1 Upgrade and HTTP/2 extended CONNECT); carries a payload
  smtp,      ///< "smtp"
  imap,      ///< "imap"
};

/// The E4 text of a known protocol; empty for protocol_kind::other.
constexpr std::string_view to_string(protocol_kind p) noexcept {
  switch (p) {
  case protocol_kind::http_2:
    return "http_2";
  case protocol_kind::websocket:
    return "websocket";
  case protocol_kind::smtp:
    return "smtp";
  case protocol_kind::imap:
    return "imap";
  case protocol_kind::other:
    break;
  }
  return {};
}

/// The kind of an E4 text (exact, case-sensitive match, as g3proxy writes them).
constexpr protocol_kind protocol_from_name(std::string_view name) noexcept {
  for (auto p :
       {protocol_kind::http_2, protocol_kind::websocket, protocol_kind::smtp, protocol_kind::imap})
    if (name == to_string(p)) return p;
  return protocol_kind::other;
}

/// The E0 upstream address: where the client wanted to go.
struct upstream_address {
  std::string_view text; ///< as sent: "example.com:443", "192.0.2.1:25", "[2001:db8::1]:993"
  std::string_view host; ///< the host part, IPv6 brackets removed: "2001:db8::1"
  std::uint16_t port = 0;

  /// Field by field; the views compare the text they show, not where it lies.
  friend constexpr bool operator==(const upstream_address&, const upstream_address&) = default;
};

namespace detail {
/// The bytes a host name outside brackets may hold: not a control character, space, DEL, colon
/// or bracket (bytes from 0x80 are allowed: the text is UTF-8).
inline constexpr auto host_chars = [] {
  std::array<bool, 256> t{};
  for (unsigned c = 0x21; c < 0x100; ++c) t[c] = c != 0x7F && c != ':' && c != '[' && c != ']';
  return t;
}();

/// True when every byte of `host` is one of host_chars. Four bytes a step without a branch per
/// byte, the last step overlapping the one before so that it ends at the end (host names are
/// short: a loop that stops at the first bad byte spends more on its branches than on bytes).
constexpr bool all_host_chars(std::string_view host) noexcept {
  const std::size_t n = host.size();
  const auto ok = [&](std::size_t i) -> unsigned {
    return host_chars[static_cast<unsigned char>(host[i])];
  };
  if (n < 4) return n == 0 || (ok(0) & ok(n / 2) & ok(n - 1)) != 0;
  const auto four = [&](std::size_t i) { return ok(i) & ok(i + 1) & ok(i + 2) & ok(i + 3); };
  unsigned all = four(n - 4);
  for (std::size_t i = 0; i + 4 < n; i += 4) all &= four(i);
  return all != 0;
}
} // namespace detail

/// Splits "host:port". The host is a name or IPv4 address, or an IPv6 address in brackets (the
/// bracketed part must be an IPv6 address); it is not empty and holds no control character,
/// space, or (outside brackets) colon; the port is decimal 0-65535.
constexpr std::optional<upstream_address> parse_upstream(std::string_view text) noexcept {
  // The port: the 1 to 5 digits after the last colon, read from the end back to that colon
  // (which saves looking for it through the whole host first).
  std::size_t colon = text.size();
  std::uint32_t port = 0;
  for (std::uint32_t scale = 1; colon > 0 && detail::is_digit(text[colon - 1]); scale *= 10) {
    --colon;
    port += static_cast<std::uint32_t>(text[colon] - '0') * scale; // wraps past 9 digits: refused
  }
  const std::size_t digits = text.size() - colon;
  if (digits == 0 || digits > 5 || port > 0xFFFF || colon == 0 || text[colon - 1] != ':')
    return std::nullopt;
  std::string_view host = text.substr(0, colon - 1);
  if (!host.empty() && host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') return std::nullopt;
    host = host.substr(1, host.size() - 2);
    const auto ip = parse_ip(host);
    if (!ip || !ip->is_v6()) return std::nullopt;
    return upstream_address{text, host, static_cast<std::uint16_t>(port)};
  }
  if (host.empty() || !detail::all_host_chars(host)) return std::nullopt;
  return upstream_address{text, host, static_cast<std::uint16_t>(port)};
}

/// A north request: the header g3proxy sends first on a task's north stream. Its payload
/// (`payload_length` bytes, a WebSocket summary for `websocket`) follows the header.
///
/// Text fields are views of the bytes as sent. g3proxy builds them from Rust strings, so they
/// are UTF-8; the parser checks that unless request_limits::require_utf8 is cleared, and never
/// transcodes or unescapes anything.
struct north_request {
  socket_address client;                    ///< PROXY source: the proxied client
  socket_address proxy;                     ///< PROXY destination: the proxy's listening address
  upstream_address upstream;                ///< E0
  std::optional<std::string_view> username; ///< E2, only when the client authenticated
  uuid task_id;                             ///< E3
  protocol_kind protocol = protocol_kind::other; ///< E4, when it is a known name
  std::string_view protocol_name;                ///< E4 as sent
  std::uint16_t match_id = 0;                    ///< E5: pairs the south stream on this connection
  std::uint32_t payload_length = 0;              ///< E6: payload bytes after the header
  std::size_t header_size = 0;                   ///< bytes of the PROXY header (when decoded)

  /// E4 as it goes on the wire: `protocol_name`, or the name of `protocol` when that is empty
  /// (what the encoder writes).
  constexpr std::string_view wire_protocol() const noexcept {
    return protocol_name.empty() ? to_string(protocol) : protocol_name;
  }

  /// Equal when they make the same header: addresses, E0 text, E2, E3, E4 as written, E5, E6.
  /// Not compared: header_size (a fact of one decoding) and what is derived from the text
  /// (upstream host and port, the protocol_kind), so a request encoded and decoded again equals
  /// the one it was built from. The views compare the text they show, not where it lies.
  friend constexpr bool operator==(const north_request& a, const north_request& b) noexcept {
    return a.client == b.client && a.proxy == b.proxy && a.upstream.text == b.upstream.text &&
           a.username == b.username && a.task_id == b.task_id &&
           a.wire_protocol() == b.wire_protocol() && a.match_id == b.match_id &&
           a.payload_length == b.payload_length;
  }
};

/// A south hello: the header g3proxy sends on a task's south stream after a "continue" answer,
/// with the same addresses as the north request and the match id alone.
struct south_hello {
  socket_address client;       ///< PROXY source
  socket_address proxy;        ///< PROXY destination
  std::uint16_t match_id = 0;  ///< E5
  std::size_t header_size = 0; ///< bytes of the PROXY header (when decoded)

  /// Equal when they make the same header (header_size, a fact of one decoding, is not
  /// compared).
  friend constexpr bool operator==(const south_hello& a, const south_hello& b) noexcept {
    return a.client == b.client && a.proxy == b.proxy && a.match_id == b.match_id;
  }
};

/// Which half of a task a stream header opens.
enum class stream_kind : std::uint8_t {
  north, ///< carries E0, E3, E4, E5, E6 (and E2 when the client authenticated)
  south, ///< carries E5 and none of E0, E2, E3, E4, E6
};

/// A classified stream header: `north` is meaningful when kind is north, `south` when south.
struct stream_header {
  stream_kind kind = stream_kind::north;
  north_request north;
  south_hello south;
};

/// Limits and policy for the detour layer.
struct request_limits {
  /// Limits of the PROXY header itself (for the decode_* functions that start from bytes).
  ppv2::decode_limits header;
  /// Largest E6 payload length accepted. A server holds the payload before it answers, so this
  /// bounds what one task can make it buffer. g3proxy sends 0, except for `websocket` where the
  /// payload is a handshake summary of a few hundred bytes; 64 KiB leaves ample room.
  std::uint32_t max_payload_length = 64 * 1024;
  /// Refuse E0, E2 and E4 values that are not UTF-8 (text_not_utf8). g3proxy only sends UTF-8;
  /// clear this to accept any bytes and treat the text as opaque.
  bool require_utf8 = true;
};

namespace detail {

inline constexpr std::uint8_t detour_first = 0xE0, detour_last = 0xE6;
constexpr std::uint8_t detour_bit(ppv2::tlv_type t) noexcept {
  return static_cast<std::uint8_t>(1u << (ppv2::to_byte(t) - detour_first));
}
inline constexpr std::uint8_t north_markers =
    detour_bit(ppv2::tlv_type::upstream) | detour_bit(ppv2::tlv_type::username) |
    detour_bit(ppv2::tlv_type::task_id) | detour_bit(ppv2::tlv_type::protocol) |
    detour_bit(ppv2::tlv_type::payload_length);
inline constexpr std::uint8_t north_required =
    detour_bit(ppv2::tlv_type::upstream) | detour_bit(ppv2::tlv_type::task_id) |
    detour_bit(ppv2::tlv_type::protocol) | detour_bit(ppv2::tlv_type::match_id) |
    detour_bit(ppv2::tlv_type::payload_length);

/// Where the detour TLVs E0-E6 of a header are, found in one walk: the offset of each TLV's
/// type byte (0 when absent: no TLV starts before offset 16).
struct detour_tlvs {
  std::array<std::uint32_t, 7> at{};
  std::uint8_t present = 0; ///< bit (type - 0xE0)

  constexpr bool has(ppv2::tlv_type t) const noexcept { return present & detour_bit(t); }
  constexpr std::size_t offset(ppv2::tlv_type t) const noexcept {
    return at[ppv2::to_byte(t) - detour_first];
  }
  /// The value of a present TLV (the header was validated by ppv2::decode).
  static constexpr std::span<const std::uint8_t> value_at(const ppv2::header_view& h,
                                                          std::size_t at) noexcept {
    const std::uint8_t* tlv = h.bytes.data() + at;
    return {tlv + ppv2::tlv_head_size, load_be16(tlv + 1)};
  }
  constexpr std::span<const std::uint8_t> value(const ppv2::header_view& h,
                                                ppv2::tlv_type t) const noexcept {
    return value_at(h, offset(t));
  }
};

/// A failure found by the detour checks (errc{} when none).
struct failure {
  errc error = {};
  std::size_t offset = 0;
};

/// Records the detour TLVs E0-E6 while something walks the TLVs (ppv2's checks, or
/// scan_detour_tlvs()): where each one is, and where the first repeated one is. The walk only
/// records; first_failure() judges once it is over.
struct detour_scanner {
  detour_tlvs tlvs;
  std::uint32_t repeated_at = 0; ///< the first detour TLV seen a second time, 0 when none

  constexpr void operator()(std::uint8_t type, std::size_t pos, std::size_t) noexcept {
    const auto index = static_cast<unsigned>(type - detour_first); // wraps below 0xE0
    if (index > detour_last - detour_first) return;
    const auto bit = static_cast<std::uint8_t>(1u << index);
    if (tlvs.present & bit) {
      if (repeated_at == 0) repeated_at = static_cast<std::uint32_t>(pos);
      return;
    }
    tlvs.present |= bit;
    tlvs.at[index] = static_cast<std::uint32_t>(pos);
  }

  /// The first failure in wire order among the detour TLVs of `h`, the header walked: each may
  /// appear once (tlv_duplicate), and E3, E5, E6 have fixed sizes, 16, 2, 4 (tlv_bad_size);
  /// at the offending TLV.
  constexpr failure first_failure(const ppv2::header_view& h) const noexcept {
    using ppv2::tlv_type;
    failure f;
    if (repeated_at != 0) f = {errc::tlv_duplicate, repeated_at};
    constexpr std::array<std::pair<tlv_type, std::size_t>, 3> fixed{
        {{tlv_type::task_id, 16}, {tlv_type::match_id, 2}, {tlv_type::payload_length, 4}}};
    for (const auto& [type, size] : fixed) {
      if (!tlvs.has(type)) continue;
      const std::size_t at = tlvs.offset(type);
      if (load_be16(h.bytes.data() + at + 1) != size && (f.error == errc{} || at < f.offset))
        f = {errc::tlv_bad_size, at};
    }
    return f;
  }
};

/// Recognises the TLVs of a north header as g3proxy lays them out (every north header it
/// sends): E2 (only for an authenticated client), E3, E0, E5, E4, E6 and nothing else, E3, E5
/// and E6 of their sizes (16, 2, 4), the last one ending exactly at the end of `header`, the
/// first starting at `pos`. On a match it records them in `d` and returns true: the general
/// walk would find exactly these, and no fault. Anything else returns false (`d` is then
/// unspecified), for the general walk to judge. One straight pass with nothing to look up.
constexpr bool match_g3_tlvs(std::span<const std::uint8_t> header, std::size_t pos,
                             detour_tlvs& d) noexcept {
  using ppv2::tlv_type;
  struct field {
    tlv_type type;
    std::size_t size; // 0: any
  };
  constexpr std::array<field, 6> layout{{{tlv_type::username, 0},
                                         {tlv_type::task_id, 16},
                                         {tlv_type::upstream, 0},
                                         {tlv_type::match_id, 2},
                                         {tlv_type::protocol, 0},
                                         {tlv_type::payload_length, 4}}};
  const std::uint8_t* p = header.data();
  const std::size_t total = header.size();
  if (pos > total) return false;
  d = {};
  std::uint8_t present = 0;
  for (const auto& [type, size] : layout) {
    if (total - pos < ppv2::tlv_head_size || p[pos] != ppv2::to_byte(type)) {
      if (type == tlv_type::username) continue;
      return false;
    }
    const std::size_t len = load_be16(p + pos + 1);
    if (len > total - pos - ppv2::tlv_head_size || (size != 0 && len != size)) return false;
    d.at[ppv2::to_byte(type) - detour_first] = static_cast<std::uint32_t>(pos);
    present |= detour_bit(type);
    pos += ppv2::tlv_head_size + len;
  }
  d.present = present;
  return pos == total;
}

/// A whole north header as g3proxy sends it, at the start of `bytes`: PROXY over TCP4 or TCP6
/// within `limits`, its TLVs as match_g3_tlvs() wants them. Returns its size, the TLVs recorded
/// in `d`, when it is one: ppv2::decode() and the detour checks would then find no fault; 0
/// for anything else (`d` is then unspecified), which the general checks judge.
inline std::size_t match_g3_north(std::span<const std::uint8_t> bytes,
                                  const ppv2::decode_limits& limits, detour_tlvs& d) noexcept {
  // §2.2: the signature, then 0x21 (v2, PROXY) and 0x11 or 0x21 (TCP over IPv4 or IPv6).
  if (bytes.size() < ppv2::fixed_size ||
      std::memcmp(bytes.data(), ppv2::signature.data(), ppv2::signature.size()) != 0 ||
      bytes[12] != 0x21 || (bytes[13] != 0x11 && bytes[13] != 0x21))
    return 0;
  const std::size_t total = ppv2::fixed_size + load_be16(bytes.data() + 14);
  const std::size_t tlvs_at =
      ppv2::fixed_size + (bytes[13] == 0x11 ? ppv2::address_size_inet : ppv2::address_size_inet6);
  if (total < tlvs_at || total > limits.max_header_size || total > bytes.size()) return 0;
  return match_g3_tlvs(bytes.first(total), tlvs_at, d) ? total : 0;
}

/// Detour headers are PROXY over TCP4 or TCP6.
constexpr failure check_tcp_proxy(const ppv2::header_view& h) noexcept {
  if (h.command != ppv2::command::proxy) return {errc::not_proxy_command, 12};
  if ((h.family != ppv2::address_family::inet && h.family != ppv2::address_family::inet6) ||
      h.transport != ppv2::transport::stream)
    return {errc::not_tcp, 13};
  return {};
}

/// Walks the TLVs of a decoded header with a scanner: the general way, whatever their layout.
constexpr failure walk_detour_tlvs(const ppv2::header_view& h, detour_tlvs& d) noexcept {
  detour_scanner scanner;
  const std::uint8_t* p = h.bytes.data();
  const std::size_t end = h.bytes.size();
  for (std::size_t pos = ppv2::fixed_size + h.address_block.size();
       pos + ppv2::tlv_head_size <= end;) {
    const std::size_t len = load_be16(p + pos + 1);
    scanner(p[pos], pos, len);
    pos += ppv2::tlv_head_size + len;
  }
  d = scanner.tlvs;
  return scanner.first_failure(h);
}

/// Checks the command and family, then finds the detour TLVs of a decoded header: g3proxy's
/// own layout in one straight pass (match_g3_tlvs()), anything else with walk_detour_tlvs().
constexpr failure scan_detour_tlvs(const ppv2::header_view& h, detour_tlvs& d) noexcept {
  if (const auto f = check_tcp_proxy(h); f.error != errc{}) return f;
  if (match_g3_tlvs(h.bytes, ppv2::fixed_size + h.address_block.size(), d)) return {};
  return walk_detour_tlvs(h, d);
}

template <class T>
constexpr decode_result<T> fail_with(failure f) noexcept {
  return decode_result<T>::fail(f.error, f.offset);
}

/// The checks on a scanned north header that follow the walk, in order: the required TLVs, E0
/// (UTF-8, then host:port, which lands in `upstream`), E2 and E4 (UTF-8), E6 against the limit.
inline failure check_north(const ppv2::header_view& h, const detour_tlvs& d,
                           const request_limits& limits, upstream_address& upstream) noexcept {
  using ppv2::tlv_type;
  if ((d.present & north_required) != north_required) return {errc::missing_required_tlv, h.size()};
  const std::size_t up = d.offset(tlv_type::upstream);
  const std::size_t user = d.offset(tlv_type::username); // 0 when absent
  const std::size_t proto = d.offset(tlv_type::protocol);
  const auto up_bytes = detour_tlvs::value_at(h, up);
  const auto user_bytes = user != 0 ? detour_tlvs::value_at(h, user) : up_bytes.first(0);
  const auto proto_bytes = detour_tlvs::value_at(h, proto);
  // Text that is all ASCII (the usual case, tested at once for the three) is valid UTF-8.
  const bool check_utf8 =
      limits.require_utf8 &&
      !all_ascii(or_of_bytes(up_bytes) | or_of_bytes(user_bytes) | or_of_bytes(proto_bytes));
  const auto bad_utf8 = [check_utf8](std::span<const std::uint8_t> text) {
    return check_utf8 ? utf8_invalid_at(text) : utf8_valid;
  };

  if (const auto bad = bad_utf8(up_bytes); bad != utf8_valid)
    return {errc::text_not_utf8, up + ppv2::tlv_head_size + bad};
  const auto parsed = parse_upstream(ppv2::as_text(up_bytes));
  if (!parsed) return {errc::bad_upstream_address, up};
  upstream = *parsed;
  if (const auto bad = bad_utf8(user_bytes); bad != utf8_valid)
    return {errc::text_not_utf8, user + ppv2::tlv_head_size + bad};
  if (const auto bad = bad_utf8(proto_bytes); bad != utf8_valid)
    return {errc::text_not_utf8, proto + ppv2::tlv_head_size + bad};
  if (load_be32(d.value(h, tlv_type::payload_length).data()) > limits.max_payload_length)
    return {errc::payload_too_large, d.offset(tlv_type::payload_length)};
  return {};
}

inline uuid uuid_at(const std::uint8_t* p) noexcept {
  uuid id;
  std::copy_n(p, 16, id.bytes.data());
  return id;
}

/// The north request of a header check_north() accepted, `upstream` being what it found. A
/// prvalue built as one aggregate: it lands where the caller's result holds it, written once.
inline north_request north_of(const ppv2::header_view& h, const detour_tlvs& d,
                              const upstream_address& upstream) noexcept {
  using ppv2::tlv_type;
  const std::string_view protocol_name = ppv2::as_text(d.value(h, tlv_type::protocol));
  return north_request{h.source,
                       h.destination,
                       upstream,
                       d.has(tlv_type::username) ? std::optional<std::string_view>(ppv2::as_text(
                                                       d.value(h, tlv_type::username)))
                                                 : std::nullopt,
                       uuid_at(d.value(h, tlv_type::task_id).data()),
                       protocol_from_name(protocol_name),
                       protocol_name,
                       load_be16(d.value(h, tlv_type::match_id).data()),
                       load_be32(d.value(h, tlv_type::payload_length).data()),
                       h.size()};
}

/// check_north() then north_of(): the north request of a scanned header, or the first failure.
inline decode_result<north_request> read_north(const ppv2::header_view& h, const detour_tlvs& d,
                                               const request_limits& limits) noexcept {
  upstream_address upstream;
  if (const auto f = check_north(h, d, limits, upstream); f.error != errc{})
    return decode_result<north_request>::fail(f.error, f.offset);
  return {decode_status::complete, errc{}, h.size(), 0, 0, north_of(h, d, upstream)};
}

/// read_north() as a stream header. `no_south` is its south half, zeros: passed in rather than
/// written as zeros in place, which makes GCC clear the whole result first (`rep stos`, slow to
/// start on small blocks) and then write it again.
inline decode_result<stream_header> read_north_stream(const ppv2::header_view& h,
                                                      const detour_tlvs& d,
                                                      const request_limits& limits,
                                                      const south_hello& no_south = {}) noexcept {
  upstream_address upstream;
  if (const auto f = check_north(h, d, limits, upstream); f.error != errc{})
    return decode_result<stream_header>::fail(f.error, f.offset);
  return {decode_status::complete,
          errc{},
          h.size(),
          0,
          0,
          stream_header{stream_kind::north, north_of(h, d, upstream), no_south}};
}

/// The south hello of a scanned header; sets `f` on failure.
inline south_hello read_south(const ppv2::header_view& h, const detour_tlvs& d,
                              failure& f) noexcept {
  if (d.present & north_markers) {
    // A south hello carries E5 alone: report the first north-only TLV.
    std::size_t first = h.size();
    for (std::size_t i = 0; i < 7; ++i)
      if ((d.present & north_markers & (1u << i)) && d.at[i] < first) first = d.at[i];
    f = {errc::unknown_stream_kind, first};
    return {};
  }
  if (!d.has(ppv2::tlv_type::match_id)) {
    f = {errc::missing_required_tlv, h.size()};
    return {};
  }
  return south_hello{h.source, h.destination,
                     load_be16(d.value(h, ppv2::tlv_type::match_id).data()), h.size()};
}

/// read_south() as a stream header; `no_north` (zeros) as `no_south` in read_north_stream().
inline decode_result<stream_header> read_south_stream(const ppv2::header_view& h,
                                                      const detour_tlvs& d,
                                                      const north_request& no_north = {}) noexcept {
  failure f;
  const south_hello s = read_south(h, d, f);
  if (f.error != errc{}) return fail_with<stream_header>(f);
  return {decode_status::complete,
          errc{},
          h.size(),
          0,
          0,
          stream_header{stream_kind::south, no_north, s}};
}

/// decode_north_request() the general way, whatever the layout: ppv2's checks with the detour
/// TLVs recorded on the way, then the detour checks.
inline decode_result<north_request> decode_north_walk(std::span<const std::uint8_t> bytes,
                                                      const request_limits& limits) noexcept {
  detour_scanner scanner;
  const auto c = ppv2::detail::check_header(bytes, limits.header, scanner);
  if (c.status != decode_status::complete)
    return {c.status, c.error, 0, c.needed, c.offset, north_request{}};
  const ppv2::header_view h = ppv2::detail::view_of(bytes.first(c.total), c.discarded);
  failure f = check_tcp_proxy(h);
  if (f.error == errc{}) f = scanner.first_failure(h);
  if (f.error != errc{}) return fail_with<north_request>(f);
  return read_north(h, scanner.tlvs, limits);
}

} // namespace detail

/// Tells a north request from a south hello: north when any of E0, E2, E3, E4, E6 is present,
/// south when E5 is present without them, otherwise unknown_stream_kind (at the start of the
/// TLV block). Only classifies: the command, family and TLV sizes are checked by the parsers.
inline decode_result<stream_kind> classify(const ppv2::header_view& h) noexcept {
  using result = decode_result<stream_kind>;
  std::uint8_t present = 0;
  for (const ppv2::tlv_view t : h.tlvs())
    if (t.type >= detail::detour_first && t.type <= detail::detour_last)
      present |= static_cast<std::uint8_t>(1u << (t.type - detail::detour_first));
  if (present & detail::north_markers) return result::ok(stream_kind::north, h.size());
  if (present & detail::detour_bit(ppv2::tlv_type::match_id))
    return result::ok(stream_kind::south, h.size());
  return result::fail(errc::unknown_stream_kind, ppv2::fixed_size + h.address_block.size());
}

/// Reads a north request from a decoded header. Checks, in order: the PROXY command
/// (not_proxy_command, offset 12), TCP over IPv4/IPv6 (not_tcp, 13), the detour TLVs in wire
/// order (tlv_duplicate; tlv_bad_size for E3 16, E5 2, E6 4; at the TLV), the presence of E0,
/// E3, E4, E5, E6 (missing_required_tlv, at the end of the header), then the values: E0
/// (text_not_utf8 at the bad byte, bad_upstream_address at the TLV), E2 and E4 (text_not_utf8),
/// E6 against max_payload_length (payload_too_large, at the TLV). Other TLVs are ignored.
/// `consumed` is the header size; views point where the header's do.
inline decode_result<north_request>
parse_north_request(const ppv2::header_view& h, const request_limits& limits = {}) noexcept {
  detail::detour_tlvs d;
  const detail::failure f = detail::scan_detour_tlvs(h, d);
  if (f.error != errc{}) return detail::fail_with<north_request>(f);
  return detail::read_north(h, d, limits);
}

/// Reads a south hello from a decoded header: the PROXY command, TCP over IPv4/IPv6, E5 of 2
/// bytes, and none of E0, E2, E3, E4, E6 (unknown_stream_kind at the first of them).
inline decode_result<south_hello> parse_south_hello(const ppv2::header_view& h) noexcept {
  detail::detour_tlvs d;
  detail::failure f = detail::scan_detour_tlvs(h, d);
  if (f.error != errc{}) return detail::fail_with<south_hello>(f);
  const south_hello s = detail::read_south(h, d, f);
  if (f.error != errc{}) return detail::fail_with<south_hello>(f);
  return decode_result<south_hello>{decode_status::complete, errc{}, h.size(), 0, 0, s};
}

/// Classifies and reads a header in one walk: what classify() and then parse_north_request()
/// or parse_south_hello() would report.
inline decode_result<stream_header>
parse_stream_header(const ppv2::header_view& h, const request_limits& limits = {}) noexcept {
  using result = decode_result<stream_header>;
  detail::detour_tlvs d;
  const detail::failure f = detail::scan_detour_tlvs(h, d);
  if (f.error != errc{}) return detail::fail_with<stream_header>(f);
  if (d.present & detail::north_markers) return detail::read_north_stream(h, d, limits);
  if (!d.has(ppv2::tlv_type::match_id))
    return result::fail(errc::unknown_stream_kind, ppv2::fixed_size + h.address_block.size());
  return detail::read_south_stream(h, d);
}

/// decode() then parse_north_request(), in one walk over the TLVs: need_more until the whole
/// header is in; `consumed` is the header size and the payload starts right after it.
inline decode_result<north_request>
decode_north_request(std::span<const std::uint8_t> bytes,
                     const request_limits& limits = {}) noexcept {
  // g3proxy's own headers, recognised in one straight pass.
  detail::detour_tlvs d;
  if (const std::size_t total = detail::match_g3_north(bytes, limits.header, d))
    return detail::read_north(ppv2::detail::view_of(bytes.first(total)), d, limits);
  return detail::decode_north_walk(bytes, limits);
}

/// decode() then parse_south_hello().
inline decode_result<south_hello> decode_south_hello(std::span<const std::uint8_t> bytes,
                                                     const request_limits& limits = {}) noexcept {
  const auto h = ppv2::decode(bytes, limits.header);
  if (!h.complete()) return h.rebind(south_hello{});
  return parse_south_hello(h.value);
}

/// decode() then parse_stream_header().
inline decode_result<stream_header>
decode_stream_header(std::span<const std::uint8_t> bytes,
                     const request_limits& limits = {}) noexcept {
  // A north header as g3proxy sends it, recognised in one straight pass (decode_north_request).
  detail::detour_tlvs d;
  if (const std::size_t total = detail::match_g3_north(bytes, limits.header, d))
    return detail::read_north_stream(ppv2::detail::view_of(bytes.first(total)), d, limits);
  const auto h = ppv2::decode(bytes, limits.header);
  if (!h.complete()) return h.rebind(stream_header{});
  return parse_stream_header(h.value, limits);
}

namespace detail {

/// The limits an encoder checks its own output against: only what makes a request malformed.
inline constexpr request_limits encoder_check_limits{
    ppv2::decode_limits{ppv2::max_size}, std::numeric_limits<std::uint32_t>::max(), true};

} // namespace detail

/// Encodes a north request exactly as g3proxy does: TCP4 or TCP6 with the PROXY command, then
/// E2 (when `username` is set), E3, E0 (`upstream.text`), E5, E4 (`protocol_name`, or the name
/// of `protocol` when protocol_name is empty), E6. `header_size` is ignored. Refuses
/// (address_family_mismatch) addresses of different families, and anything
/// parse_north_request() would refuse with the largest limits. The result may exceed
/// g3_max_header_size, which g3proxy itself would refuse to send.
inline encode_result encode_north_request(const north_request& r,
                                          std::span<std::uint8_t> out) noexcept {
  using ppv2::tlv_type;
  if (r.client.ip.family != r.proxy.ip.family) return {errc::address_family_mismatch, 0};
  std::array<std::uint8_t, 2> match{};
  std::array<std::uint8_t, 4> length{};
  detail::store_be16(match.data(), r.match_id);
  detail::store_be32(length.data(), r.payload_length);
  const std::string_view protocol = r.wire_protocol();
  std::array<ppv2::tlv, 6> tlvs{};
  std::size_t n = 0;
  if (r.username) tlvs[n++] = {tlv_type::username, *r.username};
  tlvs[n++] = {tlv_type::task_id, std::span<const std::uint8_t>(r.task_id.bytes)};
  tlvs[n++] = {tlv_type::upstream, r.upstream.text};
  tlvs[n++] = {tlv_type::match_id, std::span<const std::uint8_t>(match)};
  tlvs[n++] = {tlv_type::protocol, protocol};
  tlvs[n++] = {tlv_type::payload_length, std::span<const std::uint8_t>(length)};
  const auto e = ppv2::encode(ppv2::header_fields::tcp(r.client, r.proxy),
                              std::span<const ppv2::tlv>(tlvs.data(), n), out);
  if (!e) return e;
  const auto check = decode_north_request(out.first(e.size), detail::encoder_check_limits);
  if (!check.complete()) return {check.error, 0};
  return e;
}

/// Encodes a south hello exactly as g3proxy does: the same addresses, then E5 alone.
inline encode_result encode_south_hello(const south_hello& s,
                                        std::span<std::uint8_t> out) noexcept {
  if (s.client.ip.family != s.proxy.ip.family) return {errc::address_family_mismatch, 0};
  std::array<std::uint8_t, 2> match{};
  detail::store_be16(match.data(), s.match_id);
  return ppv2::encode(ppv2::header_fields::tcp(s.client, s.proxy),
                      {ppv2::tlv{ppv2::tlv_type::match_id, std::span<const std::uint8_t>(match)}},
                      out);
}

} // namespace detour
