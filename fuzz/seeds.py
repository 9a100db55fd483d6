#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# fuzz/seeds.py: writes the hand-named fuzz seeds that tests/vectors/generate.py does not (it
# writes the test vectors and the seeds made from them): inputs aimed at paths the vectors do
# not take, in each target's input format, so that the committed corpora alone cover the
# parsers and encoders (scripts/fuzz coverage). Names say what each seed exercises. Run it
# after editing, then `scripts/fuzz coverage`:
#   python3 fuzz/seeds.py
import pathlib
import struct

CORPUS = pathlib.Path(__file__).resolve().parent / "corpus"

SIG = bytes.fromhex("0d0a0d0a000d0a515549540a")
TASK_ID = bytes.fromhex("6ba7b8109dad11d180b400c04fd430c8")


def u16(v):
    return struct.pack(">H", v)


def u32(v):
    return struct.pack(">I", v)


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def tlv(t, v):
    v = v.encode() if isinstance(v, str) else v
    return bytes([t]) + u16(len(v)) + v


def header(tlvs=b"", fam=0x11, ver_cmd=0x21, addresses=None):
    if addresses is None:
        addresses = {0x11: bytes([192, 0, 2, 1, 192, 0, 2, 2]) + u16(40000) + u16(443),
                     0x21: bytes(15) + b"\x01" + bytes(15) + b"\x02" + u16(40000) + u16(443)}[fam]
    body = addresses + tlvs
    return SIG + bytes([ver_cmd, fam]) + u16(len(body)) + body


def with_crc32c(tlvs, fam=0x11):
    """A header with a CRC32C TLV first (where HAProxy puts it), then `tlvs`; the checksum is
    computed over the whole header with its own field zeroed (section 2.2.3)."""
    zeroed = header(tlv(0x03, bytes(4)) + tlvs, fam=fam)
    at = 16 + (12 if fam == 0x11 else 36) + 3
    return zeroed[:at] + u32(crc32c(zeroed)) + zeroed[at + 4:]


def north(username=None, upstream="example.com:443", match=7, protocol="websocket",
          payload_len=0):
    """g3proxy's TLV order: E2, E3, E0, E5, E4, E6."""
    out = tlv(0xE2, username) if username is not None else b""
    return out + tlv(0xE3, TASK_ID) + tlv(0xE0, upstream) + tlv(0xE5, u16(match)) + \
        tlv(0xE4, protocol) + tlv(0xE6, u32(payload_len))


SEEDS = {}


def seed(target, name, data):
    key = (target, name)
    assert key not in SEEDS, key
    SEEDS[key] = data.encode("latin-1") if isinstance(data, str) else data


# --- address: text to parse; its first 16 bytes are also printed as addresses -------------------
for name, text in {
    "v4_documentation": "192.0.2.1",
    "v4_zero": "0.0.0.0",
    "v4_broadcast": "255.255.255.255",
    "err_v4_leading_zero": "010.0.0.1",
    "err_v4_octet_256": "256.1.1.1",
    "err_v4_four_digits": "1.2.3.1234",
    "err_v4_three_parts": "1.2.3",
    "err_v4_trailing_dot": "1.2.3.4.",
    "err_v4_nul_inside": "1.2.3.4\0",
    "v6_loopback": "::1",
    "v6_unspecified": "::",
    "v6_documentation": "2001:db8::1",
    "v6_upper_case": "2001:DB8::A",
    "v6_no_compression": "2001:db8:0:0:1:0:0:1",
    "v6_compressed_at_end": "1::",
    "v6_seven_groups_then_compression": "1:2:3:4:5:6:7::",
    "v6_mapped": "::ffff:192.0.2.1",
    "v6_compatible": "::192.0.2.1",
    "v6_dotted_after_six_groups": "1:2:3:4:5:6:1.2.3.4",
    "err_v6_two_compressions": "1::2::3",
    "err_v6_five_digits": "12345::",
    "err_v6_leading_colon": ":1::",
    "err_v6_trailing_colon": "1:2:3:4:5:6:7:8:",
    "err_v6_nine_groups": "1:2:3:4:5:6:7:8:9",
    "err_v6_compression_for_no_group": "1::2:3:4:5:6:7:8",
    "err_v6_dotted_too_late": "1:2:3:4:5:6:7:1.2.3.4",
    "err_v6_dotted_bad": "::1.2.3.04",
    "err_v6_zone_id": "fe80::1%eth0",
    "err_v6_triple_colon": "1:::2",
    "socket_v4": "192.0.2.1:443",
    "socket_v6": "[2001:db8::1]:993",
    "socket_port_0": "1.2.3.4:0",
    "socket_port_leading_zeros": "1.2.3.4:00443",
    "err_socket_port_65536": "1.2.3.4:65536",
    "err_socket_port_six_digits": "1.2.3.4:000443",
    "err_socket_no_port": "1.2.3.4:",
    "err_socket_bare_v6": "2001:db8::1:443",
    "err_socket_v4_in_brackets": "[192.0.2.1]:80",
    "err_socket_unclosed_bracket": "[2001:db8::1:80",
    "upstream_name": "example.com:443",
    "upstream_utf8_name": "b\u00fccher.example:80",
    "err_upstream_space": "a b:80",
    "err_upstream_del": "a\x7fb:80",
    "err_upstream_empty_host": ":80",
    "err_upstream_empty_brackets": "[]:80",
    "err_upstream_colon_in_name": "a:b:80",
    "err_upstream_bracket_in_name": "a]b:80",
    "err_no_colon": "example.com",
}.items():
    seed("address", name, text.encode("utf-8"))
# Raw address bytes for the printer (RFC 5952 cases); as text they are refused.
for name, groups in {
    "print_v6_two_zero_runs_first_wins": [0x2001, 0xDB8, 0, 0, 1, 0, 0, 1],
    "print_v6_longest_zero_run_later": [0x2001, 0, 0, 1, 0, 0, 0, 1],
    "print_v6_single_zero_group_kept": [0x2001, 0xDB8, 0, 1, 1, 1, 1, 1],
    "print_v6_mapped": [0, 0, 0, 0, 0, 0xFFFF, 0xC000, 0x0201],
    "print_v6_mapped_zero": [0, 0, 0, 0, 0, 0xFFFF, 0, 0],
    "print_v6_compatible": [0, 0, 0, 0, 0, 0, 0x0102, 0x0304],
    "print_v6_all_ones": [0xFFFF] * 8,
    "print_v6_leading_zeros_dropped": [0x0001, 0x0010, 0x0100, 0x1000, 0, 0, 0, 0x000A],
}.items():
    seed("address", name, b"".join(u16(g) for g in groups))


# --- ppv2_roundtrip: a header to build ---------------------------------------------------------
# Format (fuzz/ppv2_roundtrip.cpp): command % 3, family byte, kinds (bit 0: IPv6 source, bit 1:
# IPv6 destination, bit 2: compute CRC32C), source address (4 or 16 bytes) and port, destination
# address and port, unix source length % 112 and bytes, unix destination likewise, TLV count % 8,
# then per TLV: type, length byte (0xFF: a u16 plus 256 times one more byte follows), value.
def build(command=1, fam=0x11, src6=False, dst6=False, crc=False, tlvs=(), unix=(b"", b"")):
    kinds = (1 if src6 else 0) | (2 if dst6 else 0) | (4 if crc else 0)
    out = bytes([command, fam, kinds])
    out += (bytes(15) + b"\x01" if src6 else bytes([192, 0, 2, 1])) + u16(40000)
    out += (bytes(15) + b"\x02" if dst6 else bytes([192, 0, 2, 2])) + u16(443)
    out += bytes([len(unix[0])]) + unix[0] + bytes([len(unix[1])]) + unix[1]
    out += bytes([len(tlvs)])
    for t, v in tlvs:
        v = v.encode() if isinstance(v, str) else v
        assert len(v) < 0xFF
        out += bytes([t, len(v)]) + v
    return out


G3_NORTH = [(0xE2, "alice"), (0xE3, TASK_ID), (0xE0, "example.com:443"), (0xE5, u16(7)),
            (0xE4, "websocket"), (0xE6, u32(0))]
for name, data in {
    "build_tcp4_g3_north": build(tlvs=G3_NORTH),
    "build_tcp6_g3_south": build(fam=0x21, src6=True, dst6=True, tlvs=[(0xE5, u16(7))]),
    "build_udp4_no_tlv": build(fam=0x12),
    "build_udp6_no_tlv": build(fam=0x22, src6=True, dst6=True),
    "build_local_unspec": build(command=0, fam=0x00),
    "build_local_inet_addresses_kept": build(command=0, fam=0x11),
    "build_unix_stream_paths": build(fam=0x31, unix=(b"/run/client.sock", b"/run/proxy.sock")),
    "build_unix_dgram_108_byte_paths": build(fam=0x32, unix=(b"a" * 108, b"b" * 108)),
    "build_err_unix_path_109_bytes": build(fam=0x31, unix=(b"a" * 109, b"")),
    "build_crc32c_added_first": build(crc=True, tlvs=[(0x02, "example.com"), (0x04, b"")]),
    "build_crc32c_given_is_computed": build(crc=True, tlvs=[(0x01, "h2"), (0x03, bytes(4))]),
    "build_crc32c_tcp6": build(fam=0x21, src6=True, dst6=True, crc=True, tlvs=[(0xE5, u16(1))]),
    "build_err_crc32c_given_3_bytes": build(crc=True, tlvs=[(0x03, bytes(3))]),
    "build_err_crc32c_given_wrong": build(tlvs=[(0x03, bytes(4))]),
    "build_err_crc32c_twice": build(crc=True, tlvs=[(0x03, bytes(4)), (0x03, bytes(4))]),
    "build_err_inet_with_ipv6_source": build(src6=True),
    "build_err_inet_with_ipv6_destination": build(dst6=True),
    "build_err_inet6_with_ipv4_addresses": build(fam=0x21),
    "build_err_command_2": build(command=2),
    "build_err_family_4": build(fam=0x41),
    "build_err_transport_3": build(fam=0x13),
    "build_err_unspec_with_stream": build(fam=0x01),
    "build_err_inet_with_unspec_transport": build(fam=0x10),
    "build_err_unique_id_129": build(tlvs=[(0x05, bytes(129))]),
    "build_unique_id_128": build(tlvs=[(0x05, bytes(128))]),
    "build_err_authority_twice": build(tlvs=[(0x02, "a"), (0x02, "b")]),
    "build_err_ssl_4_bytes": build(tlvs=[(0x20, bytes(4))]),
    "build_ssl_with_sub_tlvs": build(tlvs=[(0x20, b"\x07" + u32(0) + tlv(0x21, "TLSv1.3") +
                                            tlv(0x22, "client"))]),
    "build_err_ssl_sub_head_truncated": build(tlvs=[(0x20, b"\x01" + u32(0) + b"\x21\x00")]),
    "build_err_ssl_sub_truncated": build(tlvs=[(0x20, b"\x01" + u32(0) + b"\x21\x00\x09TLS")]),
    "build_noop_twice_allowed": build(tlvs=[(0x04, b""), (0x04, b"\x00\x00")]),
}.items():
    seed("ppv2_roundtrip", name, data)


# --- ppv2_decode: 2 chunking bytes (the second also sizes a smaller decoder), 1 limit byte ----
NORTH = header(north(username="alice"))
for name, data in {
    "north_small_storage_8_refuses": b"\x05\x08\x00" + NORTH,
    "north_small_storage_64_too_small": b"\x05\x40\x00" + NORTH,
    "north_small_storage_255_fits": b"\x05\xff\x00" + NORTH,
    "north_limit_32_too_small": b"\x05\xff\x02" + NORTH,
    "north_random_pieces_up_to_9": b"\x37\x08\x00" + NORTH,
    "north_then_payload_bytes": b"\x01\xff\x00" + NORTH + b"GET / HTTP/1.1\r\n",
    "not_a_header_tlv_shaped_bytes": b"\x01\x20\x00\x04\x00\x01\xaa\xe5\x00\x09\x01",
    "short_13_bytes": b"\x01\x20\x00" + SIG + b"\x21",
    "short_15_bytes": b"\x01\x20\x00" + SIG + b"\x21\x11\x00",
    "ssl_client_flags_and_texts": b"\x01\xff\x00" + header(tlv(0x20, b"\x07" + u32(1) + tlv(
        0x21, "TLSv1.3") + tlv(0x22, "cn") + tlv(0x23, "ECDHE") + tlv(0x24, "SHA256") +
        tlv(0x25, "RSA2048") + tlv(0x26, "x"))),
    "every_accessor_once": b"\x01\xff\x00" + header(
        tlv(0x01, "h2") + tlv(0x02, "example.com") + tlv(0x04, b"") + tlv(0x05, b"id") +
        tlv(0x30, "ns") + tlv(0xE1, "name") + tlv(0xF0, b"x") + tlv(0xF8, b"y")),
}.items():
    seed("ppv2_decode", name, data)
seed("ppv2_decode", "crc32c_first_with_ssl_sub_tlvs",
     b"\x01\xff\x00" + with_crc32c(tlv(0x20, b"\x01" + u32(0) + tlv(0x21, "TLSv1.2"))))
seed("detour_request", "south_with_crc32c", with_crc32c(tlv(0xE5, u16(7))))


# --- detour_request: stream bytes ---------------------------------------------------------------
for name, data in {
    "north_utf8_username_4_byte_sequence": header(north(username="\U0001F600"), fam=0x11),
    "north_utf8_upstream_3_byte_sequence": header(north(upstream="\u20ac.example:443")),
    "north_utf8_protocol_2_byte_sequence": header(north(protocol="caf\u00e9")),
    "north_err_username_overlong_slash": header(tlv(0xE2, b"\xC0\xAF") + north()),
    "north_err_username_surrogate": header(tlv(0xE2, b"a\xED\xA0\x80") + north()),
    "north_err_username_above_10ffff": header(tlv(0xE2, b"\xF4\x90\x80\x80") + north()),
    "north_err_username_overlong_3_byte": header(tlv(0xE2, b"\xE0\x80\xAF") + north()),
    "north_err_username_overlong_4_byte": header(tlv(0xE2, b"\xF0\x80\x80\xAF") + north()),
    "north_err_username_truncated_sequence": header(tlv(0xE2, b"ok\xE2\x82") + north()),
    "north_err_username_bad_continuation": header(tlv(0xE2, b"\xE2\x28\xA1") + north()),
    "north_err_username_f5": header(tlv(0xE2, b"\xF5\x80\x80\x80") + north()),
    "north_err_upstream_not_utf8": header(north(upstream=b"h\xe9llo:443")),
    "north_err_protocol_not_utf8": header(north().replace(b"websocket", b"websock\xe9t")),
    "north_err_upstream_empty_brackets": header(north(upstream="[]:443")),
    "north_err_upstream_bracketed_ipv4": header(north(upstream="[192.0.2.1]:443")),
    "north_err_upstream_space": header(north(upstream="a b:443")),
    "north_upstream_port_0": header(north(upstream="example.com:0")),
    "north_tcp6_websocket_with_payload": header(
        north(payload_len=61), fam=0x21) +
    b"/websocket\r\nhost: example.com\r\nsec-websocket-protocol: mqtt\r\n",
    "north_websocket_payload_not_parsing": header(north(payload_len=6)) + b"/a\r\nb\n",
    "north_e5_before_markers": header(tlv(0xE5, u16(9)) + tlv(0xE3, TASK_ID) +
                                      tlv(0xE0, "a:1") + tlv(0xE4, "smtp") + tlv(0xE6, u32(0))),
    "north_err_e6_twice": header(north() + tlv(0xE6, u32(0))),
    "north_err_missing_task_id": header(tlv(0xE0, "a:1") + tlv(0xE5, u16(1)) +
                                        tlv(0xE4, "smtp") + tlv(0xE6, u32(0))),
    "err_match_id_and_protocol_is_an_incomplete_north": header(tlv(0xE5, u16(7)) + tlv(0xE4, "smtp")),
    "south_err_match_id_twice": header(tlv(0xE5, u16(7)) + tlv(0xE5, u16(7))),
    "south_err_local": header(tlv(0xE5, u16(7)), ver_cmd=0x20),
    "south_with_unknown_tlvs": header(tlv(0xE7, b"x") + tlv(0xE5, u16(7)) + tlv(0xE1, b"")),
    "err_detour_tlvs_without_e5_or_markers": header(tlv(0xE1, "example.com")),
}.items():
    seed("detour_request", name, data)


# --- websocket_payload: a payload; with NUL bytes also fields for the serializer --------------
for name, text in {
    "extensions_repeated": "/\r\nsec-websocket-extensions: a\r\nsec-websocket-extensions: b\r\n",
    "every_known_header_upper_case": "/chat\r\nHost: h\r\nOrigin: o\r\nSec-WebSocket-Key: k\r\n"
                                     "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Accept: a\r\n"
                                     "Sec-WebSocket-Protocol: p\r\nSec-WebSocket-Extensions: e\r\n",
    "value_with_colon_space": "/\r\nx-note: a: b\r\n",
    "err_duplicate_origin_mixed_case": "/\r\norigin: a\r\nOrigin: b\r\n",
    "err_cr_without_lf_at_end": "/\r\nhost: a\r",
    "err_name_with_space": "/\r\nho st: a\r\n",
    "err_last_line_too_long_for_tight_limits": "/\r\n" + "x" * 97,
    "ser_resource_and_host": "/chat\0host\0example.com",
    "ser_resource_only": "/",
    "ser_three_headers_and_a_lone_name": "/x\0host\0h\0origin\0o\0sec-websocket-key\0k\0dangling",
    "ser_value_with_colon_space": "/\0x-note\0a: b",
    "ser_err_empty_resource": "\0host\0h",
    "ser_err_resource_with_crlf": "/a\r\nb\0host\0h",
    "ser_err_value_with_lf": "/\0host\0a\nb",
    "ser_err_value_with_cr": "/\0host\0a\rb",
    "ser_err_value_with_crlf_makes_two_lines": "/\0host\0a\r\norigin: b",
    "ser_err_resource_with_crlf_makes_a_header": "/a\r\nhost: h",
    "ser_err_name_not_a_token": "/\0ho st\0h",
    "ser_err_name_with_colon_space_reads_back_split": "/\0a: b\0c",
    "ser_err_empty_name": "/\0\0h",
    "ser_err_duplicate_host_mixed_case": "/\0host\0a\0HOST\0b",
    "ser_extensions_repeat": "/\0sec-websocket-extensions\0a\0sec-websocket-extensions\0b",
}.items():
    seed("websocket_payload", name, text)


def main():
    for (target, name), data in sorted(SEEDS.items()):
        d = CORPUS / target
        d.mkdir(parents=True, exist_ok=True)
        (d / name).write_bytes(data)
    print(f"{len(SEEDS)} seeds")


if __name__ == "__main__":
    main()
