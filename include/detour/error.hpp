// SPDX-License-Identifier: MIT
// detour/error.hpp: every failure the library reports, as one append-only enum usable as a
// std::error_code ("detour" category). Each value names the clause it enforces: the PROXY
// protocol specification (haproxy doc/proxy-protocol.txt, section 2.2) or g3proxy's stream detour.
#pragma once

#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>

namespace detour {

/// Why decoding, encoding or a session failed. The numbers are stable: values are only ever
/// appended, never renumbered or reused, so logs and exit codes stay comparable across versions.
/// "Need more input" is not an error: it is `decode_status::need_more` (see result.hpp).
enum class errc : int {
  // --- PROXY protocol v2 header (proxy-protocol.txt section 2.2) ------------------------------
  /// §2.2: the first 12 bytes must be `0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A`.
  bad_signature = 1,
  /// §2.2: the high nibble of the 13th byte (offset 12, version) must be 0x2.
  bad_version = 2,
  /// §2.2: the low nibble of the 13th byte (offset 12, command) must be LOCAL 0x0 or PROXY 0x1.
  bad_command = 3,
  /// §2.2: the high nibble of the 14th byte (offset 13) must be AF_UNSPEC, AF_INET, AF_INET6
  /// or AF_UNIX.
  bad_family = 4,
  /// §2.2: the low nibble of the 14th byte (offset 13) must be UNSPEC, STREAM or DGRAM, and
  /// UNSPEC exactly when the family is AF_UNSPEC (the listed bytes 00, 11, 12, 21, 22, 31, 32).
  bad_transport = 5,
  /// §2.2: the length field must cover the family's address block (12, 36 or 216 bytes).
  address_block_too_short = 6,
  /// ppv2::decode_limits::max_header_size: 16 + length is larger than the configured limit.
  header_too_large = 7,
  /// §2.2 (pp2_tlv): a TLV's 3-byte head or its value runs past the end of the header, or an
  /// SSL sub-TLV runs past the end of the SSL TLV (§2.2.6).
  tlv_truncated = 8,
  /// A TLV whose size is fixed has another size: CRC32C 4 (§2.2.3), SSL at least 5 (§2.2.6),
  /// detour task id E3 16, match id E5 2, payload length E6 4.
  tlv_bad_size = 9,
  /// A TLV that may appear only once appears again (standard types other than NOOP, SSL
  /// sub-TLVs 0x21-0x25, detour types E0-E6).
  tlv_duplicate = 10,
  /// §2.2.3: the CRC32C TLV does not match the checksum of the header ("the receiver MUST treat
  /// the TCP connection providing the header as invalid").
  crc32c_mismatch = 11,
  /// §2.2.5: PP2_TYPE_UNIQUE_ID is "an opaque byte sequence of up to 128 bytes".
  unique_id_too_long = 12,

  // --- Encoding --------------------------------------------------------------------------------
  /// The caller's output buffer cannot hold the encoded bytes (nothing usable was written).
  buffer_too_small = 13,
  /// §2.2: everything after the 16 fixed bytes must fit the 16-bit length field (65535 bytes).
  header_length_overflow = 14,
  /// §2.2 (pp2_tlv): a TLV value must fit its 16-bit length (65535 bytes).
  tlv_value_too_long = 15,
  /// The addresses given to an encoder do not belong to the header's address family.
  address_family_mismatch = 16,

  // --- Detour stream headers (g3proxy stream detour) ------------------------------------------
  /// Detour: stream headers carry the PROXY command (the 13th byte is 0x21).
  not_proxy_command = 17,
  /// Detour: stream headers carry TCP over IPv4 (0x11) or TCP over IPv6 (0x21).
  not_tcp = 18,
  /// Detour: a north request carries E0, E3, E4, E5 and E6; a south hello carries E5.
  missing_required_tlv = 19,
  /// request_limits::max_payload_length: the E6 payload length is larger than allowed.
  payload_too_large = 20,
  /// Detour: E0 must read `host:port`, the port decimal 0-65535, an IPv6 host in brackets.
  bad_upstream_address = 21,
  /// Detour: a text TLV (E0 upstream, E2 username, E4 protocol) is not valid UTF-8 while
  /// request_limits::require_utf8 is set.
  text_not_utf8 = 22,
  /// Detour: the 4-byte response must echo the task's match id ("invalid match id" in g3proxy).
  match_id_mismatch = 23,

  // --- WebSocket payload (g3proxy WebSocketNotes::serialize) ---------------------------------
  /// WebSocket payload: every line, the last one included, ends with CRLF.
  ws_line_not_terminated = 24,
  /// WebSocket payload: a CR not followed by LF, or an LF not preceded by CR.
  ws_bad_line_ending = 25,
  /// WebSocket payload: the first line (the resource name) must not be empty.
  ws_empty_resource = 26,
  /// WebSocket payload: a header line must read `name: value` with a token name.
  ws_bad_header_line = 27,
  /// websocket_limits::max_line_length: a line is longer than allowed.
  ws_line_too_long = 28,
  /// websocket_limits::max_lines: the payload has more lines than allowed.
  ws_too_many_lines = 29,
  /// WebSocket payload: a header other than sec-websocket-extensions appears twice.
  ws_duplicate_header = 30,

  // --- Sessions (per stream, per connection) ---------------------------------------------------
  /// A stream ended inside a header or its payload.
  unexpected_eof = 31,
  /// A header that is neither a north request (E0, E3, E4, E6) nor a south hello (E5 alone).
  unknown_stream_kind = 32,
  /// A north request's match id is already waiting for its south stream on this connection.
  duplicate_match_id = 33,
  /// A north request waited too long for its south stream.
  pairing_expired = 34,
  /// The pairing table of a connection is full.
  pairing_full = 35,
  /// The peer reset a stream.
  stream_reset = 36,
  /// A receive side finished before the task allowed it.
  peer_closed_early = 37,
  /// A stream's header (and payload) did not complete within the time the server allows
  /// (io::server_options::header_timeout): a slow or silent sender.
  header_timeout = 38,
  /// The relay's inspection hook ended the task (io::verdict::end).
  task_ended = 39,
  /// The other stream of the task ended abnormally (reset, failed, expired), so this one was
  /// ended too.
  partner_aborted = 40,
  /// Detour: a south hello's match id has no north request answered "continue" on this
  /// connection (g3proxy writes the south hello only after reading that answer), and
  /// io::server_options::accept_south_first is off.
  unknown_match_id = 41,
  /// Encoder: an AF_UNIX path longer than the 108 bytes its field holds (§2.2).
  unix_path_too_long = 42,
};

/// The enumerator's name ("bad_signature"), for logs and machine-readable output; empty for a
/// value this version does not know.
constexpr std::string_view errc_name(errc e) noexcept {
  switch (e) {
  case errc::bad_signature:
    return "bad_signature";
  case errc::bad_version:
    return "bad_version";
  case errc::bad_command:
    return "bad_command";
  case errc::bad_family:
    return "bad_family";
  case errc::bad_transport:
    return "bad_transport";
  case errc::address_block_too_short:
    return "address_block_too_short";
  case errc::header_too_large:
    return "header_too_large";
  case errc::tlv_truncated:
    return "tlv_truncated";
  case errc::tlv_bad_size:
    return "tlv_bad_size";
  case errc::tlv_duplicate:
    return "tlv_duplicate";
  case errc::crc32c_mismatch:
    return "crc32c_mismatch";
  case errc::unique_id_too_long:
    return "unique_id_too_long";
  case errc::buffer_too_small:
    return "buffer_too_small";
  case errc::header_length_overflow:
    return "header_length_overflow";
  case errc::tlv_value_too_long:
    return "tlv_value_too_long";
  case errc::address_family_mismatch:
    return "address_family_mismatch";
  case errc::not_proxy_command:
    return "not_proxy_command";
  case errc::not_tcp:
    return "not_tcp";
  case errc::missing_required_tlv:
    return "missing_required_tlv";
  case errc::payload_too_large:
    return "payload_too_large";
  case errc::bad_upstream_address:
    return "bad_upstream_address";
  case errc::text_not_utf8:
    return "text_not_utf8";
  case errc::match_id_mismatch:
    return "match_id_mismatch";
  case errc::ws_line_not_terminated:
    return "ws_line_not_terminated";
  case errc::ws_bad_line_ending:
    return "ws_bad_line_ending";
  case errc::ws_empty_resource:
    return "ws_empty_resource";
  case errc::ws_bad_header_line:
    return "ws_bad_header_line";
  case errc::ws_line_too_long:
    return "ws_line_too_long";
  case errc::ws_too_many_lines:
    return "ws_too_many_lines";
  case errc::ws_duplicate_header:
    return "ws_duplicate_header";
  case errc::unexpected_eof:
    return "unexpected_eof";
  case errc::unknown_stream_kind:
    return "unknown_stream_kind";
  case errc::duplicate_match_id:
    return "duplicate_match_id";
  case errc::pairing_expired:
    return "pairing_expired";
  case errc::pairing_full:
    return "pairing_full";
  case errc::stream_reset:
    return "stream_reset";
  case errc::peer_closed_early:
    return "peer_closed_early";
  case errc::header_timeout:
    return "header_timeout";
  case errc::task_ended:
    return "task_ended";
  case errc::partner_aborted:
    return "partner_aborted";
  case errc::unknown_match_id:
    return "unknown_match_id";
  case errc::unix_path_too_long:
    return "unix_path_too_long";
  }
  return {};
}

/// The "detour" error category: short lower-case messages, meant to follow "detour: " in a log.
class error_category final : public std::error_category {
public:
  const char* name() const noexcept override { return "detour"; }

  /// The message for one value; values this version does not know read "unknown detour error".
  static constexpr const char* describe(errc e) noexcept {
    switch (e) {
    case errc::bad_signature:
      return "not a PROXY protocol v2 signature";
    case errc::bad_version:
      return "unsupported PROXY protocol version (not 2)";
    case errc::bad_command:
      return "unknown PROXY protocol command (not LOCAL or PROXY)";
    case errc::bad_family:
      return "unknown address family";
    case errc::bad_transport:
      return "unknown or mismatched transport protocol";
    case errc::address_block_too_short:
      return "header length too short for the address block";
    case errc::header_too_large:
      return "header larger than the configured limit";
    case errc::tlv_truncated:
      return "TLV runs past the end of the header";
    case errc::tlv_bad_size:
      return "TLV has the wrong size for its type";
    case errc::tlv_duplicate:
      return "TLV appears more than once";
    case errc::crc32c_mismatch:
      return "CRC32C checksum does not match the header";
    case errc::unique_id_too_long:
      return "unique id longer than 128 bytes";
    case errc::buffer_too_small:
      return "output buffer too small";
    case errc::header_length_overflow:
      return "header longer than 16 + 65535 bytes";
    case errc::tlv_value_too_long:
      return "TLV value longer than 65535 bytes";
    case errc::address_family_mismatch:
      return "addresses do not match the address family";
    case errc::not_proxy_command:
      return "detour header does not use the PROXY command";
    case errc::not_tcp:
      return "detour header is not TCP over IPv4 or IPv6";
    case errc::missing_required_tlv:
      return "detour header lacks a required TLV";
    case errc::payload_too_large:
      return "payload length larger than the configured limit";
    case errc::bad_upstream_address:
      return "upstream address is not host:port";
    case errc::text_not_utf8:
      return "text field is not valid UTF-8";
    case errc::match_id_mismatch:
      return "response match id differs from the task's";
    case errc::ws_line_not_terminated:
      return "websocket payload line not terminated by CRLF";
    case errc::ws_bad_line_ending:
      return "websocket payload has a stray CR or LF";
    case errc::ws_empty_resource:
      return "websocket payload has an empty resource name";
    case errc::ws_bad_header_line:
      return "websocket payload line is not 'name: value'";
    case errc::ws_line_too_long:
      return "websocket payload line longer than the limit";
    case errc::ws_too_many_lines:
      return "websocket payload has more lines than the limit";
    case errc::ws_duplicate_header:
      return "websocket payload repeats a single-valued header";
    case errc::unexpected_eof:
      return "stream ended inside a header or payload";
    case errc::unknown_stream_kind:
      return "header is neither a north request nor a south hello";
    case errc::duplicate_match_id:
      return "match id already waiting for its south stream";
    case errc::pairing_expired:
      return "north stream waited too long for its south stream";
    case errc::pairing_full:
      return "too many north streams waiting for their south stream";
    case errc::stream_reset:
      return "stream reset by the peer";
    case errc::peer_closed_early:
      return "peer finished a stream before the task allowed it";
    case errc::header_timeout:
      return "stream header not complete in time";
    case errc::task_ended:
      return "task ended by the inspection hook";
    case errc::partner_aborted:
      return "the task's other stream ended abnormally";
    case errc::unknown_match_id:
      return "south stream's match id has no north request";
    case errc::unix_path_too_long:
      return "unix socket path longer than 108 bytes";
    }
    return "unknown detour error";
  }

  std::string message(int value) const override { return describe(static_cast<errc>(value)); }
};

/// The one instance of the "detour" category (a function-local static: no global constructor).
inline const std::error_category& detour_category() noexcept {
  static const error_category instance;
  return instance;
}

/// Found by argument-dependent lookup, so `std::error_code ec = errc::bad_signature;` works.
inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), detour_category()};
}

} // namespace detour

template <>
struct std::is_error_code_enum<detour::errc> : std::true_type {};
