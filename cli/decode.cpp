// SPDX-License-Identifier: MIT
// cli/decode.cpp: `detour decode`, which reads a PROXY protocol v2 header from a byte dump (hex
// text in the usual dump formats, or raw bytes) and prints every field, the detour meaning of
// the custom TLVs and the payload, or the exact error and its byte offset.
#include "commands.hpp"
#include "hex_dump.hpp"
#include "proxy_v1.hpp"

#include <detour/ppv2/decode.hpp>
#include <detour/request.hpp>
#include <detour/websocket_payload.hpp>

#include <fmt/core.h>

#include <wolfssl/options.h> // must precede every other wolfSSL header
#include <wolfssl/wolfcrypt/hash.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace detour::cli {
namespace {

constexpr std::string_view decode_help = R"(usage: detour decode [options] HEX...
       detour decode [options] --file PATH
       detour decode [options] -

Decodes a PROXY protocol v2 header and the g3proxy stream detour request it carries (north
request or south hello), with its payload, from a byte dump. Prints every field; for a
malformed header, the error and the offset of the offending byte. Any PROXY v2 header decodes:
HAProxy's TLVs (SSL with its sub-TLVs, CRC32C checked, authority, unique ID, ...) are named,
a client certificate in the SSL TLV (0x28, as Ghostunnel sends it) by its SHA-256 fingerprint,
and so are the custom TLVs of AWS (0xEA VPC endpoint ID), Azure (0xEE private endpoint LINKID)
and Google Cloud (0xE0 PSC connection ID, the type detour uses for its upstream).
A PROXY protocol v1 line ("PROXY TCP4 ...", HAProxy's send-proxy) is recognised and shown, with
exit status 1: g3proxy and detour speak only v2.

Input, one of:
  HEX...         hex bytes on the command line; spaces, colons, commas, "0x" and "\x"
                 prefixes are ignored
  -              read standard input
  --file PATH    read a file
Hex text may be a plain dump or the output of xxd, hexdump -C, tcpdump -xx / -X or tshark -x
(offsets and ASCII columns are dropped), with # comments. A file or standard input that is not
hex text is read as raw bytes, and so is text that starts with "PROXY " (a v1 line); a v1
line given as arguments gets its CRLF added.

Options:
  --raw          read the file or standard input as raw bytes, even if it looks like hex
  --offset N     start decoding N bytes into the input (default: at the PROXY signature when
                 the input does not start with it, e.g. a whole captured packet)
  --json         print one JSON object instead of text
  --max-header N largest header accepted (default 4096)
  --max-payload N
                 largest payload length accepted (default 65536)
  --any-text     accept text TLVs that are not UTF-8 (default: refuse them)
  -h, --help     this help

Exit status: 0 for a complete, valid v2 header (with all of a north request's payload); 1 for
a malformed or incomplete one, a payload cut short, or a v1 line; 2 for a usage error (bad
option, unreadable file, text that is not hex).

Examples:
  # g3proxy's encoder test vector (TCP4 192.168.0.1:56324 -> 192.168.0.11:443, no TLV, so no
  # detour request: the PROXY part alone):
  detour decode 0d0a0d0a000d0a515549540a 2111000c c0a80001 c0a8000b dc04 01bb

  # A south hello, colon-separated as Wireshark copies it:
  detour decode 0d:0a:0d:0a:00:0d:0a:51:55:49:54:0a:21:11:00:11:c0:a8:00:01:c0:a8:00:0b:dc:04:01:bb:e5:00:02:00:07

  # The first bytes of a captured TCP stream (tshark -x, or tcpdump -xx), as JSON:
  tshark -r capture.pcap -x -Y 'tcp.len > 0' -c 1 | detour decode --json -

  # A file written by a test or a proxy, raw bytes:
  detour decode --file north-request.bin
)";

struct options {
  std::vector<std::string_view> hex_args;
  std::optional<std::string> file;
  bool stdin_input = false;
  bool raw = false;
  bool json = false;
  std::optional<std::size_t> offset;
  request_limits limits;
};

// --- Output -------------------------------------------------------------------------------------

std::string printable(std::span<const std::uint8_t> bytes) {
  std::string out;
  for (std::uint8_t b : bytes) {
    if (b == '"' || b == '\\')
      out += fmt::format("\\{}", static_cast<char>(b));
    else if (b >= 0x20 && b < 0x7F)
      out += static_cast<char>(b);
    else if (b == '\r')
      out += "\\r";
    else if (b == '\n')
      out += "\\n";
    else
      out += fmt::format("\\x{:02x}", b);
  }
  return out;
}

std::span<const std::uint8_t> bytes_of(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

bool is_printable_text(std::span<const std::uint8_t> bytes) {
  return !bytes.empty() && std::all_of(bytes.begin(), bytes.end(),
                                       [](std::uint8_t b) { return b >= 0x20 && b < 0x7F; });
}

/// JSON string contents: UTF-8 passes through when valid, other bytes become \u00XX (Latin-1).
std::string json_string(std::span<const std::uint8_t> bytes) {
  const bool utf8 = detail::utf8_invalid_at(bytes) == detail::utf8_valid;
  std::string out = "\"";
  for (std::uint8_t b : bytes) {
    if (b == '"' || b == '\\')
      out += fmt::format("\\{}", static_cast<char>(b));
    else if (b < 0x20 || b == 0x7F || (!utf8 && b >= 0x80))
      out += fmt::format("\\u{:04x}", b);
    else
      out += static_cast<char>(b);
  }
  return out + "\"";
}
std::string json_string(std::string_view s) {
  return json_string(bytes_of(s));
}

std::string_view command_name(ppv2::command c) {
  return c == ppv2::command::local ? "LOCAL" : "PROXY";
}

std::string_view family_name(ppv2::address_family f) {
  switch (f) {
  case ppv2::address_family::unspec:
    return "AF_UNSPEC";
  case ppv2::address_family::inet:
    return "AF_INET";
  case ppv2::address_family::inet6:
    return "AF_INET6";
  case ppv2::address_family::unix_socket:
    return "AF_UNIX";
  }
  return "?";
}

std::string_view transport_name(ppv2::transport t) {
  switch (t) {
  case ppv2::transport::unspec:
    return "UNSPEC";
  case ppv2::transport::stream:
    return "STREAM";
  case ppv2::transport::dgram:
    return "DGRAM";
  }
  return "?";
}

std::string_view family_summary(const ppv2::header_view& h) {
  const auto fam = static_cast<int>(h.family) << 4 | static_cast<int>(h.transport);
  switch (fam) {
  case 0x00:
    return "unspecified";
  case 0x11:
    return "TCP over IPv4";
  case 0x12:
    return "UDP over IPv4";
  case 0x21:
    return "TCP over IPv6";
  case 0x22:
    return "UDP over IPv6";
  case 0x31:
    return "UNIX stream";
  case 0x32:
    return "UNIX datagram";
  default:
    return "?";
  }
}

std::string unix_path(std::span<const std::uint8_t> path) {
  const auto end = std::find(path.begin(), path.end(), std::uint8_t{0});
  return printable(std::span<const std::uint8_t>(path.begin(), end));
}

/// PP2_SUBTYPE_SSL_CLIENT_CERT: a DER certificate, named by its SHA-256 fingerprint (what
/// `openssl x509 -noout -fingerprint -sha256` prints for the same certificate).
std::string certificate_meaning(std::span<const std::uint8_t> der) {
  std::array<std::uint8_t, WC_SHA256_DIGEST_SIZE> digest{};
  if (wc_Sha256Hash(der.data(), static_cast<word32>(der.size()), digest.data()) != 0)
    return fmt::format("client certificate, DER, {} bytes", der.size());
  std::string fp;
  for (const std::uint8_t b : digest) fp += fmt::format("{}{:02X}", fp.empty() ? "" : ":", b);
  return fmt::format("client certificate, DER, {} bytes, SHA-256 {}{}", der.size(), fp,
                     der[0] == 0x30 ? "" : " (not DER: does not start with a SEQUENCE)");
}

/// What a TLV's value means, in one line of text.
std::string tlv_meaning(const ppv2::tlv_view& t) {
  using ppv2::tlv_type;
  const auto v = t.value;
  switch (static_cast<tlv_type>(t.type)) {
  case tlv_type::crc32c:
    if (v.size() == 4) return fmt::format("{:#010x} (verified)", detail::load_be32(v.data()));
    break;
  case tlv_type::task_id:
    if (v.size() == 16) {
      uuid id;
      std::copy(v.begin(), v.end(), id.bytes.begin());
      return std::string(to_text(id).view());
    }
    break;
  case tlv_type::match_id:
    if (v.size() == 2) return std::to_string(detail::load_be16(v.data()));
    break;
  case tlv_type::payload_length:
    if (v.size() == 4) return fmt::format("{} bytes", detail::load_be32(v.data()));
    break;
  case tlv_type::ssl:
    if (v.size() >= ppv2::ssl_fixed_size)
      return fmt::format("client {:#04x}, verify {}", v[0], detail::load_be32(v.data() + 1));
    break;
  case tlv_type::noop:
    return v.empty() ? "(padding)" : fmt::format("(padding) {}", hex_bytes(v));
  case tlv_type::upstream:
    // Google Cloud's load balancers send their PSC connection ID in 0xE0 too: 8 bytes, a
    // 64-bit big-endian number, where detour has host:port text.
    if (v.size() == 8 && !is_printable_text(v))
      return fmt::format("\"{}\" (not text: as Google Cloud's PSC connection ID, {})", printable(v),
                         std::uint64_t{detail::load_be32(v.data())} << 32 |
                             detail::load_be32(v.data() + 4));
    return fmt::format("\"{}\"", printable(v));
  case tlv_type::authority:
  case tlv_type::netns:
  case tlv_type::tls_name:
  case tlv_type::username:
  case tlv_type::protocol:
    return fmt::format("\"{}\"", printable(v)); // text, escaped
  default:
    break;
  }
  // Cloud load balancers put their own TLVs in the custom range, next to (not among) detour's
  // E0-E6: AWS's VPC endpoint id (0xEA, sub-type 0x01, text) and Azure's private endpoint
  // LINKID (0xEE, sub-type 0x01, 32 bits little-endian).
  if (t.type == 0xEA && v.size() > 1 && v[0] == 0x01)
    return fmt::format("AWS VPC endpoint ID \"{}\"", printable(v.subspan(1)));
  if (t.type == 0xEE && v.size() == 5 && v[0] == 0x01) {
    const std::uint32_t link =
        static_cast<std::uint32_t>(v[1]) | static_cast<std::uint32_t>(v[2]) << 8 |
        static_cast<std::uint32_t>(v[3]) << 16 | static_cast<std::uint32_t>(v[4]) << 24;
    return fmt::format("Azure private endpoint LINKID {}", link);
  }
  if (t.type >= 0x21 && t.type <= 0x27) return fmt::format("\"{}\"", printable(v)); // SSL text
  if (t.type == 0x28 && !v.empty()) return certificate_meaning(v);
  if (is_printable_text(v)) return fmt::format("\"{}\"", printable(v));
  return v.empty() ? "(empty)" : hex_bytes(v);
}

std::string tlv_label(std::uint8_t type) {
  const auto name = ppv2::tlv_type_name(type);
  if (!name.empty()) return std::string(name);
  if (ppv2::is_custom(type)) return "custom";
  if (ppv2::is_experimental(type)) return "experimental";
  if (ppv2::is_future(type)) return "reserved (future)";
  return "unregistered";
}

struct report {
  std::span<const std::uint8_t> input; // from the decoding start
  std::size_t skipped = 0;
  bool offset_given = false; // skipped by --offset, not by finding the signature
  decode_result<ppv2::header_view> header;
  std::optional<decode_result<stream_header>> detour; // when the header carries E0-E6
};

bool has_detour_tlvs(const ppv2::header_view& h) {
  for (const auto t : h.tlvs())
    if (t.type >= 0xE0 && t.type <= 0xE6) return true;
  return false;
}

/// Bytes of a north request's payload the input lacks (0 when complete or not a north).
std::size_t payload_missing(const report& r) {
  if (!r.detour || r.detour->failed() || r.detour->value.kind != stream_kind::north) return 0;
  const std::size_t have = r.input.size() - r.header.value.size();
  const std::size_t want = r.detour->value.north.payload_length;
  return want > have ? want - have : 0;
}

/// The detour TLVs a header lacks: a north request needs E0, E3, E4, E5 and E6, a south hello
/// E5 (any of the others makes it a north request). A list for text or for JSON.
std::string missing_detour_tlvs(const ppv2::header_view& h, bool json) {
  bool has[7] = {};
  for (const auto t : h.tlvs())
    if (t.type >= 0xE0 && t.type <= 0xE6) has[t.type - 0xE0] = true;
  const bool north = has[0] || has[2] || has[3] || has[4] || has[6];
  static constexpr std::pair<int, std::string_view> required[] = {
      {0, "upstream"}, {3, "task id"}, {4, "protocol"}, {5, "match id"}, {6, "payload length"}};
  std::string out;
  for (const auto& [i, name] : required) {
    if (has[i] || (!north && i != 5)) continue;
    if (!out.empty()) out += json ? "," : ", ";
    out +=
        json ? fmt::format("\"{:#04x}\"", 0xE0 + i) : fmt::format("{:#04x} ({})", 0xE0 + i, name);
  }
  return json ? "[" + out + "]" : out;
}

void print_error_text(std::string_view what, errc e, std::size_t offset, std::size_t skipped) {
  fmt::print("{}: {} ({}) at byte {}", what, make_error_code(e).message(), errc_name(e), offset);
  if (skipped != 0) fmt::print(" (byte {} of the input)", offset + skipped);
  fmt::print("\n");
}

void print_text(const report& r) {
  const auto& h = r.header.value;
  if (r.skipped != 0 && r.offset_given)
    fmt::print("(decoding from byte {} of the input)\n", r.skipped);
  if (r.skipped != 0 && !r.offset_given)
    fmt::print("(skipped {} bytes before the PROXY signature)\n", r.skipped);
  fmt::print("PROXY protocol v2 header, {} bytes (16 fixed + {} address + {} TLV)\n", h.size(),
             h.address_block.size(), h.tlv_block.size());
  fmt::print("  command      {}\n", command_name(h.command));
  if (h.block_discarded)
    fmt::print("  (the {} bytes after the fixed part are no valid address block and TLVs for "
               "family byte {:#04x}: ignored, as the specification says for LOCAL)\n",
               h.size() - ppv2::fixed_size, h.bytes[13]);
  fmt::print("  family       {} ({}, {}, byte {:#04x})\n", family_summary(h), family_name(h.family),
             transport_name(h.transport), h.bytes[13]);
  if (h.family == ppv2::address_family::inet || h.family == ppv2::address_family::inet6) {
    fmt::print("  source       {}\n", to_text(h.source).view());
    fmt::print("  destination  {}\n", to_text(h.destination).view());
  } else if (h.family == ppv2::address_family::unix_socket) {
    fmt::print("  source       \"{}\"\n", unix_path(h.unix_source()));
    fmt::print("  destination  \"{}\"\n", unix_path(h.unix_destination()));
  }
  std::size_t count = 0;
  for (const auto t : h.tlvs()) (void)t, ++count;
  fmt::print("  TLVs         {}\n", count);
  for (const auto t : h.tlvs()) {
    fmt::print("    @{:<4} {:#04x} {:<28} {:>5} bytes  {}\n", t.offset, t.type, tlv_label(t.type),
               t.value.size(), tlv_meaning(t));
    if (t.type == ppv2::to_byte(ppv2::tlv_type::ssl)) {
      if (const auto ssl = h.ssl()) {
        for (const auto s : ssl->sub_tlvs)
          fmt::print("      @{:<4} {:#04x} {:<26} {:>5} bytes  {}\n", s.offset, s.type,
                     tlv_label(s.type), s.value.size(), tlv_meaning(s));
      }
    }
  }

  if (!r.detour) {
    fmt::print("not a detour stream header (no E0-E6 TLV)\n");
    return;
  }
  const auto& d = *r.detour;
  if (d.failed()) {
    print_error_text("malformed detour header", d.error, d.offset, r.skipped);
    if (d.error == errc::missing_required_tlv)
      fmt::print("  missing: {}\n", missing_detour_tlvs(h, false));
    return;
  }
  const auto payload_all = r.input.subspan(h.size());
  if (d.value.kind == stream_kind::south) {
    const auto& s = d.value.south;
    fmt::print("detour south hello\n");
    fmt::print("  client       {}\n  proxy        {}\n  match id     {}\n",
               to_text(s.client).view(), to_text(s.proxy).view(), s.match_id);
    if (!payload_all.empty()) fmt::print("then {} bytes of relay data\n", payload_all.size());
    return;
  }
  const auto& n = d.value.north;
  fmt::print("detour north request\n");
  fmt::print("  client       {}\n", to_text(n.client).view());
  fmt::print("  proxy        {}\n", to_text(n.proxy).view());
  fmt::print("  upstream     {} (host {}, port {})\n", printable(bytes_of(n.upstream.text)),
             printable(bytes_of(n.upstream.host)), n.upstream.port);
  fmt::print("  username     {}\n", n.username
                                        ? fmt::format("\"{}\"", printable(bytes_of(*n.username)))
                                        : std::string("(none)"));
  fmt::print("  task id      {}\n", to_text(n.task_id).view());
  fmt::print("  protocol     {}{}\n", printable(bytes_of(n.protocol_name)),
             n.protocol == protocol_kind::other ? " (not one g3proxy sends today)" : "");
  fmt::print("  match id     {}\n", n.match_id);
  fmt::print("  payload      {} bytes announced, {} present\n", n.payload_length,
             std::min<std::size_t>(n.payload_length, payload_all.size()));
  if (const std::size_t missing = payload_missing(r))
    fmt::print("incomplete payload: {} more bytes needed\n", missing);
  const auto payload =
      payload_all.first(std::min<std::size_t>(n.payload_length, payload_all.size()));
  if (n.payload_length != 0 && payload.size() == n.payload_length) {
    if (n.protocol == protocol_kind::websocket) {
      const auto w = parse_websocket_payload(payload);
      if (w.failed()) {
        print_error_text("malformed websocket payload", w.error, w.offset, 0);
      } else {
        fmt::print("websocket payload\n  resource     {}\n", printable(bytes_of(w.value.resource)));
        for (const auto hd : w.value.headers())
          fmt::print("  {}: {}\n", hd.name, printable(bytes_of(hd.value)));
      }
    } else {
      fmt::print("payload bytes\n  {}\n", printable(payload));
    }
  }
  if (payload_all.size() > n.payload_length)
    fmt::print("then {} bytes of relay data\n", payload_all.size() - n.payload_length);
}

void print_json(const report& r) {
  const auto& res = r.header;
  std::string out = "{";
  const auto field = [&out](std::string_view name, const std::string& value) {
    if (out.size() > 1 && out.back() != '{' && out.back() != '[') out += ',';
    out += fmt::format("\"{}\":{}", name, value);
  };
  const auto error_object = [&](errc e, std::size_t offset) {
    return fmt::format("{{\"error\":\"{}\",\"message\":{},\"offset\":{},\"input_offset\":{}}}",
                       errc_name(e), json_string(make_error_code(e).message()), offset,
                       offset + r.skipped);
  };
  field("skipped", std::to_string(r.skipped));
  if (res.failed()) {
    field("status", "\"error\"");
    field("header", error_object(res.error, res.offset));
    fmt::print("{}}}\n", out);
    return;
  }
  if (res.need_more()) {
    field("status", "\"incomplete\"");
    field("needed", std::to_string(res.needed));
    fmt::print("{}}}\n", out);
    return;
  }
  const auto& h = res.value;
  std::string hdr = fmt::format(
      "{{\"size\":{},\"command\":\"{}\",\"family\":\"{}\",\"transport\":\"{}\"", h.size(),
      command_name(h.command), family_name(h.family), transport_name(h.transport));
  if (h.block_discarded) hdr += ",\"block_discarded\":true";
  if (h.family == ppv2::address_family::inet || h.family == ppv2::address_family::inet6)
    hdr += fmt::format(",\"source\":\"{}\",\"destination\":\"{}\"", to_text(h.source).view(),
                       to_text(h.destination).view());
  if (h.family == ppv2::address_family::unix_socket)
    hdr += fmt::format(",\"source\":{},\"destination\":{}", json_string(unix_path(h.unix_source())),
                       json_string(unix_path(h.unix_destination())));
  const auto tlv_json = [](const ppv2::tlv_view& t) {
    std::string s = fmt::format(
        "{{\"offset\":{},\"type\":{},\"name\":\"{}\",\"length\":{},\"hex\":\"{}\",\"meaning\":{}",
        t.offset, t.type, tlv_label(t.type), t.value.size(), hex_bytes(t.value),
        json_string(tlv_meaning(t)));
    if (is_printable_text(t.value)) s += fmt::format(",\"text\":{}", json_string(t.value));
    return s;
  };
  hdr += ",\"tlvs\":[";
  bool first = true;
  for (const auto t : h.tlvs()) {
    hdr += (first ? "" : ",") + tlv_json(t);
    first = false;
    if (t.type == ppv2::to_byte(ppv2::tlv_type::ssl)) {
      const auto ssl = h.ssl();
      hdr += fmt::format(",\"client\":{},\"verify\":{},\"sub_tlvs\":[", ssl->client, ssl->verify);
      bool sub_first = true;
      for (const auto s : ssl->sub_tlvs) {
        hdr += (sub_first ? "" : ",") + tlv_json(s) + "}";
        sub_first = false;
      }
      hdr += "]";
    }
    hdr += "}";
  }
  hdr += "]}";
  field("header", hdr);

  if (!r.detour) {
    field("status", "\"complete\"");
    field("detour", "null");
    fmt::print("{}}}\n", out);
    return;
  }
  const auto& d = *r.detour;
  if (d.failed()) {
    field("status", "\"error\"");
    std::string e = error_object(d.error, d.offset);
    if (d.error == errc::missing_required_tlv) {
      e.pop_back(); // the closing brace
      e += ",\"missing\":" + missing_detour_tlvs(h, true) + "}";
    }
    field("detour", e);
    fmt::print("{}}}\n", out);
    return;
  }
  if (const std::size_t missing = payload_missing(r)) {
    field("status", "\"incomplete\"");
    field("needed", std::to_string(missing));
  } else {
    field("status", "\"complete\"");
  }
  const auto rest = r.input.subspan(h.size());
  if (d.value.kind == stream_kind::south) {
    const auto& s = d.value.south;
    field("detour",
          fmt::format("{{\"kind\":\"south\",\"client\":\"{}\",\"proxy\":\"{}\",\"match_id\":{}}}",
                      to_text(s.client).view(), to_text(s.proxy).view(), s.match_id));
    field("trailing", std::to_string(rest.size()));
    fmt::print("{}}}\n", out);
    return;
  }
  const auto& n = d.value.north;
  field("detour", fmt::format("{{\"kind\":\"north\",\"client\":\"{}\",\"proxy\":\"{}\","
                              "\"upstream\":{},\"upstream_host\":{},"
                              "\"upstream_port\":{},\"username\":{},\"task_id\":\"{}\","
                              "\"protocol\":{},\"known_protocol\":{},"
                              "\"match_id\":{},\"payload_length\":{}}}",
                              to_text(n.client).view(), to_text(n.proxy).view(),
                              json_string(n.upstream.text), json_string(n.upstream.host),
                              n.upstream.port, n.username ? json_string(*n.username) : "null",
                              to_text(n.task_id).view(), json_string(n.protocol_name),
                              n.protocol != protocol_kind::other, n.match_id, n.payload_length));
  const auto payload = rest.first(std::min<std::size_t>(n.payload_length, rest.size()));
  std::string p =
      fmt::format("{{\"present\":{},\"hex\":\"{}\"", payload.size(), hex_bytes(payload));
  if (n.protocol == protocol_kind::websocket && payload.size() == n.payload_length &&
      !payload.empty()) {
    const auto w = parse_websocket_payload(payload);
    if (w.failed()) {
      p += ",\"websocket\":" + error_object(w.error, w.offset);
    } else {
      p += fmt::format(",\"websocket\":{{\"resource\":{},\"headers\":[",
                       json_string(w.value.resource));
      bool first_h = true;
      for (const auto hd : w.value.headers()) {
        p += fmt::format("{}[{},{}]", first_h ? "" : ",", json_string(hd.name),
                         json_string(hd.value));
        first_h = false;
      }
      p += "]}";
    }
  }
  p += "}";
  field("payload", p);
  field("trailing", std::to_string(rest.size() - payload.size()));
  fmt::print("{}}}\n", out);
}

/// Where a PROXY v1 line starts in an input that holds no v2 signature: at its start, or (a
/// whole captured packet) at the first "PROXY " followed by one of the three protocols.
std::optional<std::size_t> find_proxy_v1(std::span<const std::uint8_t> bytes) {
  if (starts_like_proxy_v1(bytes)) return 0;
  for (const std::string_view p : {"PROXY TCP4 ", "PROXY TCP6 ", "PROXY UNKNOWN"}) {
    const auto at = std::search(bytes.begin(), bytes.end(), p.begin(), p.end());
    if (at != bytes.end()) return static_cast<std::size_t>(at - bytes.begin());
  }
  return std::nullopt;
}

constexpr std::string_view v1_note =
    "g3proxy and detour use PROXY protocol v2 (binary), the version this command decodes; "
    "HAProxy sends v1 with send-proxy, v2 with send-proxy-v2.";

std::string v1_address(std::string_view protocol, std::string_view address, std::uint16_t port) {
  return protocol == "TCP6" ? fmt::format("[{}]:{}", address, port)
                            : fmt::format("{}:{}", address, port);
}

/// A PROXY v1 line where a v2 header was expected: what it says, and that it is not v2.
int report_proxy_v1(std::span<const std::uint8_t> input, std::size_t skipped, bool offset_given,
                    bool crlf_added, bool json) {
  const auto r = parse_proxy_v1(input);
  if (json) {
    std::string v1;
    if (r.header) {
      const auto& h = *r.header;
      v1 = fmt::format("{{\"size\":{},\"protocol\":\"{}\"", h.size, h.protocol);
      if (h.protocol != "UNKNOWN")
        v1 += fmt::format(",\"source\":\"{}\",\"destination\":\"{}\"",
                          v1_address(h.protocol, h.source, h.source_port),
                          v1_address(h.protocol, h.destination, h.destination_port));
      v1 += "}";
    } else if (r.incomplete) {
      v1 = fmt::format("{{\"incomplete\":true,\"given\":{}}}", input.size());
    } else {
      v1 = fmt::format("{{\"error\":{},\"offset\":{},\"input_offset\":{}}}", json_string(r.error),
                       r.offset, r.offset + skipped);
    }
    fmt::print("{{\"skipped\":{},\"status\":\"proxy_v1\",\"proxy_v1\":{},\"note\":{}}}\n", skipped,
               v1, json_string(v1_note));
    return 1;
  }
  if (skipped != 0 && offset_given) fmt::print("(decoding from byte {} of the input)\n", skipped);
  if (skipped != 0 && !offset_given)
    fmt::print("(skipped {} bytes before the PROXY v1 line)\n", skipped);
  if (r.header) {
    const auto& h = *r.header;
    fmt::print("PROXY protocol v1 header (text), {} bytes: not a v2 header{}\n", h.size,
               crlf_added ? " (CRLF added after the command-line text)" : "");
    if (h.protocol == "UNKNOWN") {
      fmt::print(
          "  protocol     UNKNOWN (no addresses: a health check or a family v1 cannot carry)\n");
    } else {
      fmt::print("  protocol     {} (TCP over {})\n", h.protocol,
                 h.protocol == "TCP4" ? "IPv4" : "IPv6");
      fmt::print("  source       {}\n", v1_address(h.protocol, h.source, h.source_port));
      fmt::print("  destination  {}\n", v1_address(h.protocol, h.destination, h.destination_port));
    }
  } else if (r.incomplete) {
    fmt::print("incomplete PROXY v1 header: {} bytes given, no CRLF yet\n", input.size());
  } else {
    fmt::print("malformed PROXY v1 header: {} at byte {}", r.error, r.offset);
    if (skipped != 0) fmt::print(" (byte {} of the input)", r.offset + skipped);
    fmt::print("\n");
  }
  fmt::print("{}\n", v1_note);
  return 1;
}

/// Reads a whole file; the reason when it cannot (missing, a directory, no permission, ...).
std::optional<std::string> read_whole_file(const std::string& path,
                                           std::vector<std::uint8_t>& out) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::string(std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
    ::close(fd);
    return std::string("it is a directory");
  }
  std::array<std::uint8_t, 65536> buf{};
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      const std::string why = std::strerror(errno);
      ::close(fd);
      return why;
    }
    out.insert(out.end(), buf.begin(), buf.begin() + n);
  }
  ::close(fd);
  return std::nullopt;
}

std::optional<std::size_t> parse_size(std::string_view s) {
  std::size_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || end != s.data() + s.size()) return std::nullopt;
  return v;
}

int usage_error(const std::string& message) {
  fmt::print(stderr, "detour decode: {}\nRun `detour decode --help` for usage.\n", message);
  return 2;
}

} // namespace

int run_decode(args a) {
  options opt;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const std::string_view arg = a[i];
    const auto value = [&]() -> std::optional<std::string_view> {
      if (i + 1 >= a.size()) return std::nullopt;
      return std::string_view(a[++i]);
    };
    if (arg == "-h" || arg == "--help") {
      fmt::print("{}", decode_help);
      return 0;
    } else if (arg == "-") {
      opt.stdin_input = true;
    } else if (arg == "--file") {
      const auto v = value();
      if (!v) return usage_error("--file needs a path");
      if (opt.file) return usage_error("one --file at a time");
      opt.file = std::string(*v);
    } else if (arg == "--raw") {
      opt.raw = true;
    } else if (arg == "--json") {
      opt.json = true;
    } else if (arg == "--any-text") {
      opt.limits.require_utf8 = false;
    } else if (arg == "--offset" || arg == "--max-header" || arg == "--max-payload") {
      const auto v = value();
      const auto n = v ? parse_size(*v) : std::nullopt;
      if (!n) return usage_error(fmt::format("{} needs a number", arg));
      if (arg == "--offset")
        opt.offset = *n;
      else if (arg == "--max-header" && *n < ppv2::fixed_size)
        return usage_error("--max-header is at least 16 (the fixed part of every header)");
      else if (arg == "--max-header")
        opt.limits.header.max_header_size = *n;
      else if (*n > 0xFFFFFFFFu)
        return usage_error("--max-payload is at most 4294967295");
      else
        opt.limits.max_payload_length = static_cast<std::uint32_t>(*n);
    } else if (arg.size() > 1 && arg[0] == '-' && arg.substr(0, 2) != "0x" && arg != "-") {
      return usage_error(fmt::format("unknown option '{}'", arg));
    } else {
      opt.hex_args.push_back(arg);
    }
  }
  const int sources =
      (opt.hex_args.empty() ? 0 : 1) + (opt.file ? 1 : 0) + (opt.stdin_input ? 1 : 0);
  if (sources == 0)
    return usage_error(
        "give the bytes as HEX arguments, with --file PATH, or - for standard input");
  if (opt.raw && !opt.hex_args.empty())
    return usage_error("--raw is for --file or - (standard input): arguments are always hex");
  if (sources > 1)
    return usage_error("give the bytes one way only: HEX arguments, --file PATH or - (standard "
                       "input), not several");

  std::vector<std::uint8_t> bytes;
  bool crlf_added = false; // a v1 line given as arguments, which cannot carry its CRLF
  if (!opt.hex_args.empty()) {
    std::string joined;
    for (const auto h : opt.hex_args) (joined += h) += ' ';
    if (joined.starts_with(proxy_v1_prefix)) {
      joined.pop_back();
      if (joined.find("\r\n") == std::string::npos) {
        joined += "\r\n";
        crlf_added = true;
      }
      bytes.assign(joined.begin(), joined.end());
    } else if (auto e = parse_hex_text(joined, bytes)) {
      return usage_error("the arguments are not hex: " + e->message);
    }
  } else {
    std::vector<std::uint8_t> raw;
    if (opt.file) {
      if (auto e = read_whole_file(*opt.file, raw))
        return usage_error(fmt::format("cannot read '{}': {}", *opt.file, *e));
    } else {
      raw.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    }
    if (!opt.raw && looks_like_text(raw) && !raw.empty() && !starts_like_proxy_v1(raw)) {
      const std::string_view text(reinterpret_cast<const char*>(raw.data()), raw.size());
      if (auto e = parse_hex_text(text, bytes))
        return usage_error("the input is text but not hex: " + e->message);
    } else {
      bytes = std::move(raw);
    }
  }

  report r;
  const std::span<const std::uint8_t> all(bytes);
  if (opt.offset) {
    if (*opt.offset > bytes.size()) return usage_error("--offset is past the end of the input");
    r.skipped = *opt.offset;
    r.offset_given = true;
    if (starts_like_proxy_v1(all.subspan(r.skipped)))
      return report_proxy_v1(all.subspan(r.skipped), r.skipped, true, crlf_added, opt.json);
  } else if (!std::equal(ppv2::signature.begin(), ppv2::signature.end(), bytes.begin(),
                         bytes.begin() + static_cast<std::ptrdiff_t>(
                                             std::min(bytes.size(), ppv2::signature.size())))) {
    const auto at =
        std::search(bytes.begin(), bytes.end(), ppv2::signature.begin(), ppv2::signature.end());
    const auto v1 = find_proxy_v1(all);
    // A v1 line at the start wins; further in, only where no v2 signature is found.
    if (v1 && (*v1 == 0 || at == bytes.end()))
      return report_proxy_v1(all.subspan(*v1), *v1, false, crlf_added, opt.json);
    if (at != bytes.end()) r.skipped = static_cast<std::size_t>(at - bytes.begin());
  }
  r.input = all.subspan(r.skipped);
  r.header = ppv2::decode(r.input, opt.limits.header);
  if (r.header.complete() && has_detour_tlvs(r.header.value))
    r.detour = parse_stream_header(r.header.value, opt.limits);

  if (opt.json) {
    print_json(r);
  } else if (r.header.failed()) {
    print_error_text("malformed PROXY v2 header", r.header.error, r.header.offset, r.skipped);
  } else if (r.header.need_more()) {
    fmt::print("incomplete PROXY v2 header: {} bytes given, {}{} more needed\n", r.input.size(),
               r.input.size() >= ppv2::fixed_size ? "" : "at least ", r.header.needed);
  } else {
    print_text(r);
  }
  if (!r.header.complete()) return 1;
  if (r.detour && r.detour->failed()) return 1;
  return payload_missing(r) != 0 ? 1 : 0;
}

} // namespace detour::cli
