#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# tests/vectors/generate.py: writes the annotated PROXY v2 / detour test vectors
# (tests/vectors/ppv2/*.hex), the WebSocket payload vectors (tests/vectors/websocket/*.ws) and
# the fuzz seeds made from them (fuzz/corpus/<target>/<name>).
# The expectations below are written by hand from the PROXY protocol specification and
# g3proxy's encoder; the C++ tests check the library against them. Run it after editing:
#   python3 tests/vectors/generate.py
import pathlib
import struct

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "vectors" / "ppv2"
CORPUS = ROOT / "fuzz" / "corpus"

SIG = bytes.fromhex("0d0a0d0a000d0a515549540a")


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


class Seg:
    """A run of bytes with its comment; `header` says whether the length field counts it."""

    def __init__(self, data: bytes, comment: str, header: bool = True):
        self.data, self.comment, self.header = data, comment, header


def ip4(text):
    return bytes(int(x) for x in text.split("."))


def ip6(text):
    import ipaddress
    return ipaddress.IPv6Address(text).packed


def fixed(ver_cmd=0x21, fam=0x11, comment_vc=None, comment_fam=None, length=None):
    names_vc = {0x20: "v2, LOCAL", 0x21: "v2, PROXY"}
    names_fam = {0x00: "AF_UNSPEC, UNSPEC", 0x11: "TCP over IPv4", 0x12: "UDP over IPv4",
                 0x21: "TCP over IPv6", 0x22: "UDP over IPv6", 0x31: "UNIX stream",
                 0x32: "UNIX datagram"}
    return [Seg(SIG, "signature"),
            Seg(bytes([ver_cmd]), comment_vc or names_vc.get(ver_cmd, "version/command")),
            Seg(bytes([fam]), comment_fam or names_fam.get(fam, "family/transport")),
            Seg(b"LEN" if length is None else struct.pack(">H", length),
                "length" if length is None else "length (declared by hand)")]


def tcp4(src, sport, dst, dport):
    return [Seg(ip4(src), f"source {src}"), Seg(ip4(dst), f"destination {dst}"),
            Seg(struct.pack(">H", sport), f"source port {sport}"),
            Seg(struct.pack(">H", dport), f"destination port {dport}")]


def tcp6(src, sport, dst, dport):
    return [Seg(ip6(src), f"source {src}"), Seg(ip6(dst), f"destination {dst}"),
            Seg(struct.pack(">H", sport), f"source port {sport}"),
            Seg(struct.pack(">H", dport), f"destination port {dport}")]


def tlv(type_, value, comment, length=None):
    if isinstance(value, str):
        value = value.encode()
    n = len(value) if length is None else length
    shown = value.decode("utf-8", "replace")
    note = f'  "{shown}"' if shown.isprintable() else "  value"
    return [Seg(bytes([type_]) + struct.pack(">H", n), f"TLV {type_:#04x} length {n}: {comment}"),
            Seg(value, note)] if value else [
            Seg(bytes([type_]) + struct.pack(">H", n), f"TLV {type_:#04x} length {n}: {comment}")]


def raw(data, comment, header=True):
    return [Seg(data, comment, header)]


def u16(v):
    return struct.pack(">H", v)


def u32(v):
    return struct.pack(">I", v)


TASK_ID = bytes.fromhex("6ba7b8109dad11d180b400c04fd430c8")
WS_PAYLOAD = b"/websocket\r\nhost: example.com\r\nsec-websocket-protocol: mqtt\r\n"


def north(username=None, task_id=TASK_ID, upstream="example.com:443", match=7,
          protocol="websocket", payload_len=None):
    """g3proxy's TLV order: E2, E3, E0, E5, E4, E6."""
    segs = []
    if username is not None:
        segs += tlv(0xE2, username, "username")
    segs += tlv(0xE3, task_id, "task id")
    segs += tlv(0xE0, upstream, "upstream")
    segs += tlv(0xE5, u16(match), f"match id {match}")
    segs += tlv(0xE4, protocol, "protocol")
    segs += tlv(0xE6, u32(payload_len or 0), f"payload length {payload_len or 0}")
    return segs


class Vector:
    def __init__(self, name, title, segs, expect, detour=None, fields=(), crc=False):
        self.name, self.title, self.segs = name, title, segs
        self.expect, self.detour, self.fields, self.crc = expect, detour, fields, crc

    def assemble(self):
        header_len = sum(2 if s.data == b"LEN" else len(s.data) for s in self.segs if s.header)
        out = []
        for s in self.segs:
            if s.data == b"LEN":
                s.data = struct.pack(">H", header_len - 16)
                s.comment = f"length {header_len - 16}: everything after these 16 bytes"
            out.append(s)
        if self.crc:  # fill the CRC32C value: checksum of the header with the field zeroed
            data = b"".join(s.data for s in out if s.header)
            at = next(i for i, s in enumerate(out) if s.comment.startswith("  crc"))
            value = struct.pack(">I", crc32c(data))
            out[at].data = value
            out[at].comment = f"  CRC32C {value.hex()} (over the header with this field zeroed)"
        self.segs = out
        return b"".join(s.data for s in out)

    def text(self):
        data = self.assemble()
        lines = [f"# {self.title}", f"# expect: {self.expect}"]
        if self.detour:
            lines.append(f"# detour: {self.detour}")
        for f in self.fields:
            lines.append(f"# field: {f}")
        for s in self.segs:
            hexes = [f"{b:02x}" for b in s.data]
            chunks = [hexes[i:i + 16] for i in range(0, len(hexes), 16)] or [[]]
            for k, chunk in enumerate(chunks):
                body = " ".join(chunk)
                note = s.comment if k == 0 else ""
                if not s.header and k == 0:
                    note = f"(after the header) {note}"
                lines.append(f"{body:<48}  # {note}".rstrip() if note else body)
        return "\n".join(lines) + "\n", data


# A client certificate (P-256, CN g3proxy, issued by "detour CA"), DER, as Ghostunnel puts it in
# PP2_SUBTYPE_SSL_CLIENT_CERT.
CLIENT_CERT_DER = bytes.fromhex(
    "308201c63082016ba0030201020210380b4a360c09f0b91d72f2260e27853b300a06082a8648ce3d0403023025310f30"
    "0d060355040a0c066465746f75723112301006035504030c096465746f75722043413022180f32303236313132363038"
    "303831325a180f32303239303330313038303831325a3023310f300d060355040a0c066465746f75723110300e060355"
    "04030c07673370726f78793059301306072a8648ce3d020106082a8648ce3d030107034200042273a61fa2598ce04fa9"
    "0822942491f5ee00fbe9b34214a54ff92bc403eea7ab0c59921b7efa0e0e20d3534c499ad2e7032e0f3f1b75a8db7ebc"
    "192d7d173342a37b307930120603551d11040b30098207673370726f7879301d0603551d0e04160414c9202f30ca7d3c"
    "72aacf52e8e5942b147beeca6d301f0603551d23041830168014a08309facb3098dfde6df7c9c445b4ec504ae506300e"
    "0603551d0f0101ff04040302078030130603551d25040c300a06082b06010505070302300a06082a8648ce3d04030203"
    "49003046022100f1497543cf9cf0671174fcbc17cc45aa78e615643b959277ede07bc0987e719c022100e5948252da8b"
    "628b1fcfa52e79d694f99ec28210643c94b1c03d875687dac43b"
)


V = []


def vec(*a, **k):
    V.append(Vector(*a, **k))


# --- g3proxy encoder tests (g3 lib/g3-types/src/net/haproxy/v2.rs) -----------------------------
vec("g3_tcp4_no_tlv", "g3proxy encoder test t_tcp4: TCP4 192.168.0.1:56324 -> 192.168.0.11:443",
    fixed() + tcp4("192.168.0.1", 56324, "192.168.0.11", 443), "complete 28",
    "error unknown_stream_kind 28")
vec("g3_tcp4_task_id_1234", "g3proxy encoder test t_tcp4_tlv: the same plus E3 \"1234\"",
    fixed() + tcp4("192.168.0.1", 56324, "192.168.0.11", 443) + tlv(0xE3, "1234", "task id"),
    "complete 35", "error tlv_bad_size 28")
vec("g3_tcp6_no_tlv", "g3proxy encoder test t_tcp6: TCP6 [2001:db8::1]:56324 -> [2001:db8::11]:443",
    fixed(fam=0x21) + tcp6("2001:db8::1", 56324, "2001:db8::11", 443), "complete 52",
    "error unknown_stream_kind 52")
vec("g3_tcp6_username_1234", "g3proxy encoder test t_tcp6_tlv: the same plus E2 \"1234\"",
    fixed(fam=0x21) + tcp6("2001:db8::1", 56324, "2001:db8::11", 443) + tlv(0xE2, "1234", "username"),
    "complete 59", "error missing_required_tlv 59")

# --- Detour north requests and south hellos ------------------------------------------------------
vec("north_tcp4_websocket", "north request, TCP4, authenticated user, WebSocket with its payload",
    fixed() + tcp4("192.168.0.1", 56324, "192.168.0.11", 443)
    + north(username="alice", payload_len=len(WS_PAYLOAD))
    + raw(WS_PAYLOAD, "payload: the WebSocket summary", header=False),
    "complete 97", "north",
    ["client = 192.168.0.1:56324", "proxy = 192.168.0.11:443", "upstream = example.com:443",
     "upstream.host = example.com", "upstream.port = 443", "username = alice",
     "task_id = 6ba7b810-9dad-11d1-80b4-00c04fd430c8", "protocol = websocket",
     "protocol_kind = websocket", "match_id = 7", f"payload_length = {len(WS_PAYLOAD)}",
     "header_size = 97"])
vec("north_tcp6_imap", "north request, TCP6, no user, IMAP to an IPv6 upstream, last match id",
    fixed(fam=0x21) + tcp6("2001:db8::1", 56324, "2001:db8::11", 443)
    + north(upstream="[2001:db8::1]:993", match=0xFFFF, protocol="imap"),
    "complete 110", "north",
    ["client = [2001:db8::1]:56324", "proxy = [2001:db8::11]:443",
     "upstream = [2001:db8::1]:993", "upstream.host = 2001:db8::1", "upstream.port = 993",
     "username = (none)", "protocol = imap", "protocol_kind = imap", "match_id = 65535",
     "payload_length = 0", "header_size = 110"])
vec("north_tcp4_http2", "north request, TCP4, HTTP/2 to an IPv4 upstream, match id 0",
    fixed() + tcp4("10.0.0.2", 40000, "10.0.0.1", 3128)
    + north(username="bob", upstream="192.0.2.10:443", match=0, protocol="http_2"),
    "complete 91", "north",
    ["client = 10.0.0.2:40000", "proxy = 10.0.0.1:3128", "upstream.host = 192.0.2.10",
     "upstream.port = 443", "username = bob", "protocol = http_2", "protocol_kind = http_2",
     "match_id = 0"])
vec("north_tcp4_smtp_utf8_user", "north request, SMTP, a UTF-8 user name",
    fixed() + tcp4("192.168.0.1", 1025, "192.168.0.11", 25)
    + north(username="zoë", upstream="mail.example.org:25", match=3, protocol="smtp"),
    "complete 95", "north",
    ["username = zoë", "upstream = mail.example.org:25", "protocol_kind = smtp", "match_id = 3"])
vec("north_unknown_protocol", "north request with a protocol g3proxy may add later: valid",
    fixed() + tcp4("192.168.0.1", 1025, "192.168.0.11", 443)
    + north(upstream="example.net:22", match=9, protocol="ssh"),
    "complete 82", "north", ["protocol = ssh", "protocol_kind = other", "match_id = 9"])
vec("north_extra_tlvs", "north request with E1, NOOP, an unknown custom type and an experiment: tolerated",
    fixed() + tcp4("192.168.0.1", 1025, "192.168.0.11", 443)
    + tlv(0x04, b"\x00\x00", "PP2_TYPE_NOOP padding")
    + north(upstream="example.com:443", match=1, protocol="http_2")[:6]
    + tlv(0xE1, "example.com", "E1 TLS name (defined by g3proxy, not sent today)")
    + north(upstream="example.com:443", match=1, protocol="http_2")[6:]
    + tlv(0xEF, b"\x01", "custom type 0xEF, unknown")
    + tlv(0xF0, b"", "experimental type 0xF0, empty"),
    "complete 112", "north", ["upstream = example.com:443", "match_id = 1", "protocol = http_2"])
vec("south_tcp4", "south hello, TCP4: the same addresses and E5 alone",
    fixed() + tcp4("192.168.0.1", 56324, "192.168.0.11", 443) + tlv(0xE5, u16(7), "match id 7"),
    "complete 33", "south", ["client = 192.168.0.1:56324", "proxy = 192.168.0.11:443", "match_id = 7",
                             "header_size = 33"])
vec("south_tcp6", "south hello, TCP6",
    fixed(fam=0x21) + tcp6("2001:db8::1", 56324, "2001:db8::11", 443) + tlv(0xE5, u16(0xFFFF), "match id 65535"),
    "complete 57", "south", ["client = [2001:db8::1]:56324", "match_id = 65535"])

# --- Other well-formed headers -------------------------------------------------------------------
vec("local_unspec", "LOCAL over AF_UNSPEC with no address: what a proxy sends for health checks",
    fixed(ver_cmd=0x20, fam=0x00), "complete 16", "error not_proxy_command 12")
vec("local_inet_block_skipped", "LOCAL with a TCP4 address block and a TLV: still skipped by the declared length",
    fixed(ver_cmd=0x20, fam=0x11) + tcp4("127.0.0.1", 1, "127.0.0.2", 2) + tlv(0x04, b"", "NOOP"),
    "complete 31", "error not_proxy_command 12")
vec("local_inet_no_block", "LOCAL naming AF_INET with no address block: the family is ignored, the header accepted",
    fixed(ver_cmd=0x20, fam=0x11), "complete 16", "error not_proxy_command 12",
    ["block_discarded = true"])
vec("local_block_not_tlvs", "LOCAL over AF_UNSPEC with two bytes that are no TLV: discarded, not refused",
    fixed(ver_cmd=0x20, fam=0x00) + raw(b"\x01\x02", "not a TLV (3 bytes at least)"),
    "complete 18", "error not_proxy_command 12", ["block_discarded = true"])
vec("proxy_unspec_authority", "PROXY over AF_UNSPEC: no address block, TLVs right after the fixed part",
    fixed(fam=0x00) + tlv(0x02, "example.com", "PP2_TYPE_AUTHORITY"),
    "complete 30", "error not_tcp 13")
vec("udp4", "UDP over IPv4",
    fixed(fam=0x12) + tcp4("198.51.100.1", 53, "198.51.100.2", 5353),
    "complete 28", "error not_tcp 13")
vec("udp6_match_id", "UDP over IPv6 with a detour match id: not a detour header",
    fixed(fam=0x22) + tcp6("::1", 53, "fe80::1", 5353) + tlv(0xE5, u16(1), "match id 1"),
    "complete 57", "error not_tcp 13")
vec("unix_stream", "UNIX stream: two 108-byte paths",
    fixed(fam=0x31) + raw(b"/run/client.sock".ljust(108, b"\0"), "source path, zero-padded")
    + raw(b"/run/server.sock".ljust(108, b"\0"), "destination path, zero-padded"),
    "complete 232", "error not_tcp 13")
vec("unix_dgram_tlv", "UNIX datagram with a NETNS TLV",
    fixed(fam=0x32) + raw(b"/a".ljust(108, b"\0"), "source path")
    + raw(b"/b".ljust(108, b"\0"), "destination path") + tlv(0x30, "blue", "PP2_TYPE_NETNS"),
    "complete 239", "error not_tcp 13")
vec("haproxy_ssl_crc32c", "the shape HAProxy 2.6 sends with crc32c,unique-id,authority,ssl,cert-cn: CRC32C first, SSL sub-TLVs out of numeric order",
    fixed() + tcp4("127.0.0.1", 50000, "127.0.0.1", 8443)
    + [Seg(bytes([0x03]) + u16(4), "TLV 0x03 length 4: PP2_TYPE_CRC32C"), Seg(b"\0\0\0\0", "  crc")]
    + tlv(0x02, "www.example.com", "PP2_TYPE_AUTHORITY")
    + tlv(0x05, "7F000001:C350_7F000001:20FB_0001_0001", "PP2_TYPE_UNIQUE_ID")
    + [Seg(bytes([0x20]) + u16(5 + 3 + 7 + 3 + 22 + 3 + 6 + 3 + 7 + 3 + 6), "TLV 0x20: PP2_TYPE_SSL"),
       Seg(b"\x07", "  client: PP2_CLIENT_SSL | CERT_CONN | CERT_SESS"),
       Seg(u32(0), "  verify: 0 (verified)")]
    + tlv(0x21, "TLSv1.3", "  PP2_SUBTYPE_SSL_VERSION")
    + tlv(0x23, "TLS_AES_256_GCM_SHA384", "  PP2_SUBTYPE_SSL_CIPHER")
    + tlv(0x24, "SHA256", "  PP2_SUBTYPE_SSL_SIG_ALG")
    + tlv(0x25, "RSA2048", "  PP2_SUBTYPE_SSL_KEY_ALG")
    + tlv(0x22, "client", "  PP2_SUBTYPE_SSL_CN"),
    "complete 164", "error unknown_stream_kind 28",
    ["authority = www.example.com", "ssl.client = 7", "ssl.verify = 0", "ssl.version = TLSv1.3",
     "ssl.cn = client", "ssl.cipher = TLS_AES_256_GCM_SHA384", "ssl.sig_alg = SHA256",
     "ssl.key_alg = RSA2048", "unique_id = 7F000001:C350_7F000001:20FB_0001_0001"], crc=True)
vec("ssl_group_sig_scheme", "SSL with the sub-TLVs registered in 2025: GROUP and SIG_SCHEME (HAProxy 3.x)",
    fixed() + tcp4("198.51.100.7", 40000, "192.0.2.10", 443)
    + [Seg(bytes([0x20]) + u16(5 + 3 + 7 + 3 + 6 + 3 + 22), "TLV 0x20: PP2_TYPE_SSL"),
       Seg(b"\x01", "  client: PP2_CLIENT_SSL"), Seg(u32(0), "  verify: 0")]
    + tlv(0x21, "TLSv1.3", "  PP2_SUBTYPE_SSL_VERSION")
    + tlv(0x26, "X25519", "  PP2_SUBTYPE_SSL_GROUP")
    + tlv(0x27, "ecdsa_secp256r1_sha256", "  PP2_SUBTYPE_SSL_SIG_SCHEME"),
    "complete 80", "error unknown_stream_kind 28",
    ["ssl.client = 1", "ssl.verify = 0", "ssl.version = TLSv1.3", "ssl.group = X25519",
     "ssl.sig_scheme = ecdsa_secp256r1_sha256"])
vec("ghostunnel_tls_full", "Ghostunnel's tls-full mode: ALPN, AUTHORITY, SSL with VERSION, CN and the client certificate in DER (0x28, binary)",
    fixed() + tcp4("10.1.2.3", 51000, "10.1.2.4", 8443)
    + tlv(0x01, "h2", "PP2_TYPE_ALPN") + tlv(0x02, "api.internal", "PP2_TYPE_AUTHORITY")
    + [Seg(bytes([0x20]) + u16(5 + 3 + 7 + 3 + 7 + 3 + len(CLIENT_CERT_DER)), "TLV 0x20: PP2_TYPE_SSL"),
       Seg(b"\x07", "  client: PP2_CLIENT_SSL | CERT_CONN | CERT_SESS"), Seg(u32(0), "  verify: 0")]
    + tlv(0x21, "TLS 1.3", "  PP2_SUBTYPE_SSL_VERSION")
    + tlv(0x22, "g3proxy", "  PP2_SUBTYPE_SSL_CN")
    + tlv(0x28, CLIENT_CERT_DER, "  PP2_SUBTYPE_SSL_CLIENT_CERT: DER"),
    f"complete {16 + 12 + 5 + 15 + 3 + 5 + 10 + 10 + 3 + len(CLIENT_CERT_DER)}", "error unknown_stream_kind 28",
    ["authority = api.internal", "ssl.client = 7", "ssl.verify = 0", "ssl.version = TLS 1.3",
     "ssl.cn = g3proxy", f"ssl.client_cert = {CLIENT_CERT_DER.hex()}"])
vec("crc32c_last", "CRC32C as the last TLV: position does not matter",
    fixed() + tcp4("192.168.0.1", 56324, "192.168.0.11", 443) + tlv(0xE5, u16(7), "match id 7")
    + [Seg(bytes([0x03]) + u16(4), "TLV 0x03 length 4: PP2_TYPE_CRC32C"), Seg(b"\0\0\0\0", "  crc")],
    "complete 40", "south", ["match_id = 7"], crc=True)
vec("tlv_types_passthrough", "every TLV type range: ALPN, custom E7-EF, experiment F0-F7, future F8-FF, unregistered 0x42",
    fixed() + tcp4("192.0.2.1", 1, "192.0.2.2", 2)
    + tlv(0x01, b"\x02h2", "PP2_TYPE_ALPN") + tlv(0xE7, b"x", "custom 0xE7")
    + tlv(0xEF, b"", "custom 0xEF, empty") + tlv(0xF7, b"y", "experiment 0xF7")
    + tlv(0xFF, b"z", "future 0xFF") + tlv(0x42, b"", "unregistered 0x42")
    + tlv(0x04, b"", "NOOP") + tlv(0x04, b"\0", "NOOP again: may repeat"),
    "complete 59", "error unknown_stream_kind 28")
vec("bytes_after_header", "a TLV placed after the declared length is not part of the header (HAProxy proxy_protocol_tlv_validation.vtc)",
    fixed() + tcp4("192.168.0.1", 56324, "192.168.0.11", 443) + tlv(0xE5, u16(2), "match id 2")
    + raw(bytes([0xE5, 0x00, 0x02, 0x00, 0x09]), "looks like a second E5, but is after the header", header=False),
    "complete 33", "south", ["match_id = 2"])

# --- Malformed headers: one per error of the codec -----------------------------------------------
vec("err_http_request", "an HTTP request is refused at its first byte",
    raw(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", "not a PROXY header"),
    "error bad_signature 0")
vec("err_proxy_v1", "a version 1 (text) header is out of scope: refused at its first byte",
    raw(b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", "version 1 text"),
    "error bad_signature 0")
vec("err_signature_last_byte", "the 12th signature byte is wrong",
    raw(SIG[:11] + b"\x0b", "signature with 0x0B instead of 0x0A at the end")
    + raw(b"\x21\x11\x00\x00", "the rest of a fixed part"), "error bad_signature 11")
vec("err_version_1", "version nibble 1", fixed(ver_cmd=0x11, comment_vc="version 1 (refused), PROXY")
    + tcp4("1.2.3.4", 1, "5.6.7.8", 2), "error bad_version 12")
vec("err_version_3", "version nibble 3", fixed(ver_cmd=0x31, comment_vc="version 3 (refused), PROXY")
    + tcp4("1.2.3.4", 1, "5.6.7.8", 2), "error bad_version 12")
vec("err_command_2", "command 0x2 is unassigned", fixed(ver_cmd=0x22, comment_vc="v2, command 2 (refused)")
    + tcp4("1.2.3.4", 1, "5.6.7.8", 2), "error bad_command 12")
vec("err_family_4", "address family 0x4 is unspecified",
    fixed(fam=0x41, comment_fam="family 4 (refused), STREAM") + tcp4("1.2.3.4", 1, "5.6.7.8", 2),
    "error bad_family 13")
vec("err_transport_3", "transport 0x3 is unspecified",
    fixed(fam=0x13, comment_fam="AF_INET, transport 3 (refused)") + tcp4("1.2.3.4", 1, "5.6.7.8", 2),
    "error bad_transport 13")
vec("err_inet_unspec_transport", "AF_INET with transport UNSPEC is not a listed combination",
    fixed(fam=0x10, comment_fam="AF_INET, UNSPEC (not listed)") + tcp4("1.2.3.4", 1, "5.6.7.8", 2),
    "error bad_transport 13")
vec("err_address_block_short", "TCP4 with a length of 11: the address block does not fit",
    fixed(length=11) + raw(bytes(11), "11 bytes"), "error address_block_too_short 14")
vec("err_tcp6_with_tcp4_length", "TCP6 declaring 12 bytes (a TCP4 length)",
    fixed(fam=0x21, length=12) + tcp4("1.2.3.4", 1, "5.6.7.8", 2), "error address_block_too_short 14")
vec("err_header_too_large", "length 65535: refused from the fixed part alone, before the rest arrives",
    fixed(length=0xFFFF), "error header_too_large 14")
vec("err_tlv_head_truncated", "two bytes after the address block: not even a TLV head",
    fixed() + tcp4("1.2.3.4", 1, "5.6.7.8", 2) + raw(b"\xe5\x00", "half a TLV head"),
    "error tlv_truncated 28")
vec("err_tlv_value_truncated", "a TLV value running past the declared length",
    fixed() + tcp4("1.2.3.4", 1, "5.6.7.8", 2) + tlv(0xE5, u16(7), "match id, declaring 3 bytes", length=3),
    "error tlv_truncated 28")
vec("err_crc32c_mismatch", "a CRC32C that does not match",
    fixed() + tcp4("1.2.3.4", 1, "5.6.7.8", 2) + tlv(0x03, u32(0x12345678), "PP2_TYPE_CRC32C, wrong"),
    "error crc32c_mismatch 28")
vec("err_crc32c_size_3", "a CRC32C of 3 bytes",
    fixed() + tcp4("1.2.3.4", 1, "5.6.7.8", 2) + tlv(0x03, b"\x01\x02\x03", "PP2_TYPE_CRC32C, 3 bytes"),
    "error tlv_bad_size 28")
vec("err_crc32c_twice", "two CRC32C TLVs",
    fixed() + tcp4("1.2.3.4", 1, "5.6.7.8", 2) + tlv(0x03, u32(0), "PP2_TYPE_CRC32C")
    + tlv(0x03, u32(0), "PP2_TYPE_CRC32C again"), "error tlv_duplicate 35")
vec("err_unique_id_129", "a unique id of 129 bytes",
    fixed() + tcp4("1.2.3.4", 1, "5.6.7.8", 2) + tlv(0x05, b"u" * 129, "PP2_TYPE_UNIQUE_ID, 129 bytes"),
    "error unique_id_too_long 28")
vec("err_ssl_4_bytes", "an SSL TLV shorter than its client and verify fields",
    fixed() + tcp4("1.2.3.4", 1, "5.6.7.8", 2) + tlv(0x20, b"\x01\x00\x00\x00", "PP2_TYPE_SSL, 4 bytes"),
    "error tlv_bad_size 28")
vec("err_ssl_sub_truncated", "an SSL sub-TLV running past the SSL TLV",
    fixed() + tcp4("1.2.3.4", 1, "5.6.7.8", 2)
    + [Seg(bytes([0x20]) + u16(5 + 3 + 2), "TLV 0x20 length 10: PP2_TYPE_SSL"),
       Seg(b"\x01" + u32(0), "  client 1, verify 0"),
       Seg(bytes([0x21]) + u16(7) + b"TL", "  VERSION declaring 7 bytes, 2 present")],
    "error tlv_truncated 36")
for name, sub, label in (("err_ssl_sub_twice", 0x21, "VERSION"), ("err_ssl_group_twice", 0x26, "GROUP")):
    vec(name, f"two SSL_{label} sub-TLVs",
        fixed() + tcp4("1.2.3.4", 1, "5.6.7.8", 2)
        + [Seg(bytes([0x20]) + u16(5 + 3 + 1 + 3 + 1), "TLV 0x20 length 13: PP2_TYPE_SSL"),
           Seg(b"\x01" + u32(0), "  client 1, verify 0")]
        + tlv(sub, "a", f"  PP2_SUBTYPE_SSL_{label}")
        + tlv(sub, "b", f"  PP2_SUBTYPE_SSL_{label} again"),
        "error tlv_duplicate 40")
vec("err_authority_twice", "two AUTHORITY TLVs",
    fixed() + tcp4("1.2.3.4", 1, "5.6.7.8", 2) + tlv(0x02, "a", "PP2_TYPE_AUTHORITY")
    + tlv(0x02, "b", "PP2_TYPE_AUTHORITY again"), "error tlv_duplicate 32")

# --- Well-formed PROXY headers that are not valid detour headers ---------------------------------
B4 = tcp4("192.168.0.1", 56324, "192.168.0.11", 443)
vec("north_err_match_id_twice", "north request with two E5",
    fixed() + B4 + north() + tlv(0xE5, u16(8), "match id again"),
    "complete 94", "error tlv_duplicate 89")
vec("north_err_task_id_15", "north request with a 15-byte task id",
    fixed() + B4 + north(task_id=TASK_ID[:15]), "complete 88", "error tlv_bad_size 28")
vec("north_err_match_id_3", "north request with a 3-byte match id",
    fixed() + B4 + tlv(0xE3, TASK_ID, "task id") + tlv(0xE0, "example.com:443", "upstream")
    + tlv(0xE5, b"\0\0\7", "match id, 3 bytes") + tlv(0xE4, "smtp", "protocol")
    + tlv(0xE6, u32(0), "payload length 0"), "complete 85", "error tlv_bad_size 65")
vec("north_err_payload_length_2", "north request with a 2-byte payload length",
    fixed() + B4 + north(protocol="smtp")[:-2] + tlv(0xE6, u16(0), "payload length, 2 bytes"),
    "complete 82", "error tlv_bad_size 77")
vec("north_err_no_protocol", "north request without E4",
    fixed() + B4 + north()[:6] + north()[-2:], "complete 77", "error missing_required_tlv 77")
vec("north_err_upstream_no_port", "north request whose upstream has no port",
    fixed() + B4 + north(upstream="example.com"), "complete 85", "error bad_upstream_address 47")
vec("north_err_upstream_bare_ipv6", "north request with an IPv6 upstream outside brackets",
    fixed() + B4 + north(upstream="2001:db8::1:993"), "complete 89", "error bad_upstream_address 47")
vec("north_err_upstream_port_65536", "north request whose upstream port is too large",
    fixed() + B4 + north(upstream="example.com:65536"), "complete 91", "error bad_upstream_address 47")
vec("north_err_username_latin1", "north request whose user name is Latin-1, not UTF-8",
    fixed() + B4 + north(username=b"zo\xeb"), "complete 95", "error text_not_utf8 33")
vec("north_err_payload_too_large", "north request announcing a 1 MiB payload (default limit 64 KiB)",
    fixed() + B4 + north(payload_len=1 << 20), "complete 89", "error payload_too_large 82")
vec("north_err_local", "north TLVs under the LOCAL command",
    fixed(ver_cmd=0x20) + B4 + north(), "complete 89", "error not_proxy_command 12")
vec("north_err_udp", "north TLVs over UDP",
    fixed(fam=0x12) + B4 + north(), "complete 89", "error not_tcp 13")
vec("south_err_username", "E5 and E2 only: a north request missing its other TLVs",
    fixed() + B4 + tlv(0xE2, "alice", "username") + tlv(0xE5, u16(7), "match id 7"),
    "complete 41", "error missing_required_tlv 41")
vec("south_err_match_id_1", "south hello with a 1-byte match id",
    fixed() + B4 + tlv(0xE5, b"\x07", "match id, 1 byte"), "complete 32", "error tlv_bad_size 28")


# --- WebSocket payloads (g3 lib/g3-types/src/net/websocket.rs WebSocketNotes::serialize) -------
WS_OUT = ROOT / "tests" / "vectors" / "websocket"
W = []


def ws(name, title, lines, expect, fields=()):
    W.append((name, title, lines, expect, fields))


ws("notes_example", "the example of the protocol notes: path, host and sub-protocol",
   ["/websocket\r\n", "host: example.com\r\n", "sec-websocket-protocol: mqtt\r\n"],
   "complete 61", ["resource = /websocket", "header_count = 2", "host = example.com",
                   "sec-websocket-protocol = mqtt", "extensions = "])
ws("full_handshake", "every header g3proxy keeps, with two sec-websocket-extensions lines",
   ["/chat\r\n", "host: server.example.com\r\n", "origin: http://example.com\r\n",
    "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "sec-websocket-version: 13\r\n",
    "sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n", "sec-websocket-protocol: chat\r\n",
    "sec-websocket-extensions: permessage-deflate; client_max_window_bits\r\n",
    "sec-websocket-extensions: x-webkit-deflate-frame\r\n"],
   "complete 335", ["resource = /chat", "header_count = 8", "host = server.example.com",
                    "origin = http://example.com", "sec-websocket-key = dGhlIHNhbXBsZSBub25jZQ==",
                    "sec-websocket-version = 13", "sec-websocket-accept = s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
                    "sec-websocket-protocol = chat",
                    "extensions = permessage-deflate; client_max_window_bits|x-webkit-deflate-frame"])
ws("resource_only", "the root path and no header", ["/\r\n"], "complete 3",
   ["resource = /", "header_count = 0", "host = (none)"])
ws("raw_bytes_and_empty_value", "values are raw bytes (not UTF-8 here) and may be empty",
   ["/r\r\n", "origin: http://\xe9xample.com\r\n", "sec-websocket-protocol: \r\n"],
   "complete 58", ["origin = http://\\xe9xample.com", "sec-websocket-protocol = "])
ws("unknown_and_mixed_case", "unknown names are kept (even repeated) and names compare case-insensitively",
   ["/a/b\r\n", "x-custom: 1\r\n", "Host: example.com:8080\r\n", "x-custom: 2\r\n"],
   "complete 56", ["header_count = 3", "host = example.com:8080"])
ws("err_empty", "an empty payload has no resource line", [], "error ws_empty_resource 0")
ws("err_empty_resource", "the first line is empty", ["\r\n", "host: a\r\n"], "error ws_empty_resource 0")
ws("err_no_final_crlf", "the last line is not terminated", ["/x\r\n", "host: a"], "error ws_line_not_terminated 4")
ws("err_final_cr", "the last line ends with CR alone", ["/x\r\n", "host: a\r"], "error ws_line_not_terminated 4")
ws("err_bare_lf", "a line ends with LF alone", ["/x\n", "host: a\r\n"], "error ws_bad_line_ending 2")
ws("err_bare_cr", "a CR not followed by LF", ["/x\r", "\rhost: a\r\n"], "error ws_bad_line_ending 2")
ws("err_no_colon", "a header line without a colon", ["/x\r\n", "host example.com\r\n"], "error ws_bad_header_line 8")
ws("err_no_space", "a colon not followed by a space", ["/x\r\n", "host:example.com\r\n"], "error ws_bad_header_line 9")
ws("err_colon_at_end", "a colon ending the line", ["/x\r\n", "host:\r\n"], "error ws_bad_header_line 9")
ws("err_empty_name", "a line starting with the colon", ["/x\r\n", ": v\r\n"], "error ws_bad_header_line 4")
ws("err_blank_line", "an empty header line", ["/x\r\n", "\r\n"], "error ws_bad_header_line 4")
ws("err_leading_space", "folded or indented header lines are not allowed", ["/x\r\n", "host: a\r\n", " b: c\r\n"],
   "error ws_bad_header_line 13")
ws("err_duplicate_host", "host twice, in two spellings", ["/x\r\n", "host: a\r\n", "Host: b\r\n"],
   "error ws_duplicate_header 13")


def esc(text):
    out = []
    for ch in text:
        o = ord(ch)
        if ch == "\r":
            out.append("\\r")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\\":
            out.append("\\\\")
        elif o < 0x20 or o >= 0x7F:
            out.append(f"\\x{o:02x}")
        else:
            out.append(ch)
    return "".join(out)


def write_ws():
    WS_OUT.mkdir(parents=True, exist_ok=True)
    d = CORPUS / "websocket_payload"
    d.mkdir(parents=True, exist_ok=True)
    for name, title, lines, expect, fields in W:
        data = "".join(lines).encode("latin-1")
        if expect.startswith("complete"):
            assert int(expect.split()[1]) == len(data), (name, len(data))
        text = [f"# {title}", f"# expect: {expect}"] + [f"# field: {f}" for f in fields]
        text += [esc(line) for line in lines]
        (WS_OUT / f"{name}.ws").write_text("\n".join(text) + "\n")
        (d / name).write_bytes(data)
    print(f"{len(W)} websocket vectors")


# --- Responses (4 bytes: u16 match id, u16 action) ----------------------------------------------
RESPONSES = {
    "continue_match_7": u16(7) + u16(0),
    "bypass_match_0": u16(0) + u16(1),
    "block_match_65535": u16(0xFFFF) + u16(2),
    "unknown_action_reads_block": u16(0x1234) + u16(0xBEEF),
    "short_3_bytes": b"\x00\x07\x00",
    "with_relay_bytes_after": u16(7) + u16(0) + b"EHLO example.com\r\n",
}


def write_responses():
    d = CORPUS / "response"
    d.mkdir(parents=True, exist_ok=True)
    for name, data in RESPONSES.items():
        (d / name).write_bytes(data)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    names = set()
    for v in V:
        assert v.name not in names, v.name
        names.add(v.name)
        text, data = v.text()
        exp = v.expect.split()
        if exp[0] == "complete":
            declared = 16 + struct.unpack(">H", data[14:16])[0]
            assert declared == int(exp[1]), (v.name, declared, exp)
        (OUT / f"{v.name}.hex").write_text(text)
        # Fuzz seeds: ppv2_decode takes 3 control bytes (2 for chunking, 1 for the size limit,
        # 0 meaning the default) before the stream bytes; the other targets take the bytes as is.
        for target, prefix in (("ppv2_decode", b"\x01\x00\x00"), ("ppv2_roundtrip", b""),
                               ("detour_request", b"")):
            d = CORPUS / target
            d.mkdir(parents=True, exist_ok=True)
            (d / v.name).write_bytes(prefix + data)
    print(f"{len(V)} vectors")
    write_ws()
    write_responses()


if __name__ == "__main__":
    main()
