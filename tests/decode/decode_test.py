#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# tests/decode/decode_test.py: `detour decode` as a user runs it: every input form (hex
# arguments, colon-separated, 0x/\x prefixes, stdin, --file with hex text, raw bytes, xxd,
# hexdump -C, tcpdump -X, tshark -x dumps), text and JSON output checked for content, PROXY v1
# lines told apart from v2, and the exit codes (0 valid, 1 malformed, incomplete or v1, 2 usage).
#   usage: decode_test.py <path to detour> <tests/vectors dir>
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile

DETOUR = sys.argv[1]
VECTORS = pathlib.Path(sys.argv[2])
failures = []


def run(*args, stdin=None):
    p = subprocess.run([DETOUR, "decode", *args], input=stdin, capture_output=True, timeout=30)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def check(name, cond, detail=""):
    if not cond:
        failures.append(f"{name}: {detail}")


def expect(name, args, rc, contains=(), absent=(), stdin=None):
    code, out, err = run(*args, stdin=stdin)
    check(name, code == rc, f"exit {code}, expected {rc}; stdout:\n{out}\nstderr:\n{err}")
    for text in contains:
        check(name, text in out + err, f"missing {text!r} in:\n{out}{err}")
    for text in absent:
        check(name, text not in out + err, f"unexpected {text!r} in:\n{out}{err}")
    return out


def vector_bytes(name):
    """The bytes of an annotated .hex vector (comments dropped)."""
    data = bytearray()
    for line in (VECTORS / "ppv2" / f"{name}.hex").read_text().splitlines():
        data += bytes.fromhex(line.split("#")[0])
    return bytes(data)


NORTH = vector_bytes("north_tcp4_websocket")
SOUTH = vector_bytes("south_tcp4")
G3_TCP4 = "0d0a0d0a000d0a515549540a 2111000c c0a80001 c0a8000b dc04 01bb"

# --- Input forms ----------------------------------------------------------------------------------
expect("hex arguments", G3_TCP4.split(), 0,
       ["PROXY protocol v2 header, 28 bytes", "command      PROXY", "TCP over IPv4",
        "source       192.168.0.1:56324", "destination  192.168.0.11:443",
        "not a detour stream header"])
expect("colon-separated", [":".join(f"{b:02x}" for b in SOUTH)], 0,
       ["detour south hello", "match id     7"])
expect("0x prefixes", [" ".join(f"0x{b:02X}" for b in SOUTH)], 0, ["detour south hello"])
expect("backslash-x escapes", ["".join(f"\\x{b:02x}" for b in SOUTH)], 0, ["detour south hello"])
expect("stdin hex with newlines and comments", ["-"], 0, ["detour south hello"],
       stdin=("# a south hello\n" + "\n".join(f"{b:02x}" for b in SOUTH) + "\n").encode())
expect("annotated vector file", ["--file", str(VECTORS / "ppv2" / "north_tcp4_websocket.hex")], 0,
       ["detour north request", "upstream     example.com:443 (host example.com, port 443)",
        'username     "alice"', "task id      6ba7b810-9dad-11d1-80b4-00c04fd430c8",
        "protocol     websocket", "match id     7", "payload      61 bytes announced, 61 present",
        "resource     /websocket", "host: example.com", "sec-websocket-protocol: mqtt",
        "0xe3 PP2_TYPE_CUSTOM_TASK_ID", "0xe6 PP2_TYPE_CUSTOM_PAYLOAD_LEN"])

with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    raw = tmp / "north.bin"
    raw.write_bytes(NORTH + b"relay")
    expect("raw binary file", ["--file", str(raw)], 0,
           ["detour north request", "then 5 bytes of relay data"])
    expect("raw bytes on stdin", ["-"], 0, ["detour south hello"], stdin=SOUTH)
    # Text that happens to be hex is read as hex unless --raw says otherwise.
    hexfile = tmp / "hex.txt"
    hexfile.write_text(SOUTH.hex())
    expect("--raw on hex text", ["--raw", "--file", str(hexfile)], 1, ["bad_signature"])
    expect("missing file", ["--file", str(tmp / "nope")], 2, ["cannot read"])

    # Dumps: the offsets and ASCII columns must not become bytes. The formats are written here as
    # xxd and hexdump -C print them, and checked with the real tools too when installed.
    data = NORTH + b"relay"
    xxd = hexdump = ""
    for off in range(0, len(data), 16):
        chunk = data[off:off + 16]
        ascii_col = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        groups = " ".join(chunk[i:i + 2].hex() for i in range(0, len(chunk), 2))
        xxd += f"{off:08x}: {groups:<39}  {ascii_col}\n"
        left = " ".join(f"{b:02x}" for b in chunk[:8])
        right = " ".join(f"{b:02x}" for b in chunk[8:])
        hexdump += f"{off:08x}  {left:<23}  {right:<23}  |{ascii_col}|\n"
    hexdump += f"{len(data):08x}\n"
    for tool, dump in (("xxd format", xxd), ("hexdump -C format", hexdump)):
        expect(tool, ["-"], 0, ["detour north request", "then 5 bytes of relay data"], stdin=dump.encode())
    for tool, args in (("xxd", ["xxd", str(raw)]), ("hexdump -C", ["hexdump", "-C", str(raw)])):
        if shutil.which(args[0]):
            dump = subprocess.run(args, capture_output=True, check=True).stdout
            expect(f"real {tool}", ["-"], 0, ["detour north request", "then 5 bytes of relay data"], stdin=dump)

    # A full last line whose ASCII column is itself made of hex digits ("0123456789abcdef"):
    # still an ASCII column, not 8 more bytes.
    relay = b"0123456789abcdef"[:16 - len(NORTH) % 16] + b"0123456789abcdef"
    data = NORTH + relay
    xxd = ""
    for off in range(0, len(data), 16):
        chunk = data[off:off + 16]
        ascii_col = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        groups = " ".join(chunk[i:i + 2].hex() for i in range(0, len(chunk), 2))
        xxd += f"{off:08x}: {groups:<39}  {ascii_col}\n"
    check("hex-looking ASCII column: a full last line", len(data) % 16 == 0, xxd)
    expect("xxd format, hex-looking ASCII column", ["-"], 0,
           ["detour north request", f"then {len(relay)} bytes of relay data"], stdin=xxd.encode())

# tcpdump -X and tshark -x (written here as those tools print them): a whole captured packet,
# IPv4 + TCP headers (40 bytes) before the PROXY header, found by its signature.
packet = bytes.fromhex("4500004d00004000400600007f0000017f000001c35001bb00000000000000005018ffff00000000") + SOUTH
tcpdump = "12:00:00.000000 IP 127.0.0.1.50000 > 127.0.0.1.443: Flags [P.], length 33\n"
tshark = ""
for off in range(0, len(packet), 16):
    chunk = packet[off:off + 16]
    groups = " ".join(chunk[i:i + 2].hex() for i in range(0, len(chunk), 2))
    ascii_col = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
    tcpdump += f"\t0x{off:04x}:  {groups:<40}  {ascii_col}\n"
    tshark += f"{off:04x}  {' '.join(f'{b:02x}' for b in chunk):<47}   {ascii_col}\n"
expect("tcpdump -X dump", ["-"], 0, ["skipped 40 bytes before the PROXY signature", "detour south hello"],
       stdin=tcpdump.encode())
out = expect("tshark -x dump as JSON", ["--json", "-"], 0, [], stdin=tshark.encode())
j = json.loads(out)
check("tshark json", j["skipped"] == 40 and j["detour"]["kind"] == "south" and j["detour"]["match_id"] == 7, out)
expect("--offset", ["--offset", "40", "-"], 0, ["detour south hello"], absent=["skipped"], stdin=tshark.encode())

# --- JSON ---------------------------------------------------------------------------------------
out = expect("json north", ["--json", "--file", str(VECTORS / "ppv2" / "north_tcp4_websocket.hex")], 0)
j = json.loads(out)
check("json status", j["status"] == "complete", out)
check("json header", j["header"]["size"] == 97 and j["header"]["source"] == "192.168.0.1:56324", out)
check("json tlvs", [t["type"] for t in j["header"]["tlvs"]] == [0xE2, 0xE3, 0xE0, 0xE5, 0xE4, 0xE6], out)
check("json tlv meaning", j["header"]["tlvs"][1]["meaning"] == "6ba7b810-9dad-11d1-80b4-00c04fd430c8", out)
d = j["detour"]
check("json detour", d["kind"] == "north" and d["upstream_host"] == "example.com" and d["upstream_port"] == 443
      and d["username"] == "alice" and d["protocol"] == "websocket" and d["known_protocol"] is True
      and d["match_id"] == 7 and d["payload_length"] == 61, out)
ws = j["payload"]["websocket"]
check("json websocket", ws["resource"] == "/websocket"
      and ws["headers"] == [["host", "example.com"], ["sec-websocket-protocol", "mqtt"]], out)

out = expect("json ssl", ["--json", "--file", str(VECTORS / "ppv2" / "haproxy_ssl_crc32c.hex")], 0)
j = json.loads(out)
ssl = [t for t in j["header"]["tlvs"] if t["type"] == 0x20][0]
check("json ssl fields", ssl["client"] == 7 and ssl["verify"] == 0
      and [s["text"] for s in ssl["sub_tlvs"]] == ["TLSv1.3", "TLS_AES_256_GCM_SHA384", "SHA256", "RSA2048", "client"], out)
check("json no detour", j["detour"] is None, out)

out = expect("json error", ["--json", "--file", str(VECTORS / "ppv2" / "err_tlv_value_truncated.hex")], 1)
j = json.loads(out)
check("json error fields", j["status"] == "error" and j["header"]["error"] == "tlv_truncated"
      and j["header"]["offset"] == 28, out)
out = expect("json incomplete", ["--json", "0d0a0d0a000d0a515549540a2111"], 1)
check("json incomplete fields", json.loads(out) == {"skipped": 0, "status": "incomplete", "needed": 2}, out)

# --- Malformed input: the error, its name and its offset ----------------------------------------
for name, text in (
        ("err_version_1", "unsupported PROXY protocol version (not 2) (bad_version) at byte 12"),
        ("err_crc32c_mismatch", "(crc32c_mismatch) at byte 28"),
        ("err_header_too_large", "(header_too_large) at byte 14"),
        ("err_ssl_sub_truncated", "(tlv_truncated) at byte 36"),
        ("north_err_upstream_no_port", "malformed detour header: upstream address is not host:port (bad_upstream_address) at byte 47"),
        ("north_err_username_latin1", "(text_not_utf8) at byte 33"),
        ("north_err_no_protocol", "(missing_required_tlv) at byte 77"),
):
    expect(name, ["--file", str(VECTORS / "ppv2" / f"{name}.hex")], 1, [text])
expect("--any-text accepts Latin-1", ["--any-text", "--file", str(VECTORS / "ppv2" / "north_err_username_latin1.hex")], 0,
       ['username     "zo\\xeb"'])
expect("--max-payload", ["--max-payload", "60", "--file", str(VECTORS / "ppv2" / "north_tcp4_websocket.hex")], 1,
       ["(payload_too_large) at byte 90"])
expect("--max-header", ["--max-header", "96", "--file", str(VECTORS / "ppv2" / "north_tcp4_websocket.hex")], 1,
       ["(header_too_large) at byte 14"])
expect("incomplete", ["0d0a0d0a000d0a515549540a 2111000c c0a8"], 1,
       ["incomplete PROXY v2 header: 18 bytes given, 10 more needed"])
expect("an HTTP request", ["-"], 1, ["(bad_signature) at byte 0"], stdin=b"GET / HTTP/1.1\r\n\r\n\x00")

# --- Cloud load balancers' custom TLVs -----------------------------------------------------------
def ppv2_tcp4(tlvs):
    body = bytes.fromhex("0a000001 0a000002 3039 01bb") + b"".join(
        bytes([t]) + len(v).to_bytes(2, "big") + v for t, v in tlvs)
    return bytes.fromhex("0d0a0d0a000d0a515549540a 2111") + len(body).to_bytes(2, "big") + body


expect("AWS VPC endpoint ID", [ppv2_tcp4([(0xEA, b"\x01vpce-08d2bf15fd1234567")]).hex()], 0,
       ['0xea custom', 'AWS VPC endpoint ID "vpce-08d2bf15fd1234567"',
        "not a detour stream header"])
expect("Azure private endpoint LINKID", [ppv2_tcp4([(0xEE, b"\x01\x40\xe2\x01\x00")]).hex()], 0,
       ["Azure private endpoint LINKID 123456", "not a detour stream header"])
expect("Azure TLV of another sub-type", [ppv2_tcp4([(0xEE, b"\x02\x40\xe2\x01\x00")]).hex()], 0,
       ["0xee custom", "0240e20100"], absent=["LINKID"])
expect("Google Cloud PSC connection ID in 0xE0",
       [ppv2_tcp4([(0xE0, (0x1234567890).to_bytes(8, "big"))]).hex()], 1,
       ["as Google Cloud's PSC connection ID, 78187493520",
        "malformed detour header: detour header lacks a required TLV (missing_required_tlv)"])
expect("an 8-byte text upstream is not taken for Google Cloud's",
       ["--json", ppv2_tcp4([(0xE0, b"a.io:443")]).hex()], 1, ['"meaning":"\\"a.io:443\\""'],
       absent=["Google"])

# --- SSL sub-TLVs registered in 2025 (HAProxy 3.x, Ghostunnel's tls-full) -----------------------
import hashlib

GHOSTUNNEL = vector_bytes("ghostunnel_tls_full")
der = GHOSTUNNEL[GHOSTUNNEL.index(b"\x28\x01") + 3:]  # the last sub-TLV: 0x28, then the DER
fingerprint = ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
expect("Ghostunnel tls-full: the DER client certificate", [GHOSTUNNEL.hex()], 0,
       ["0x28 PP2_SUBTYPE_SSL_CLIENT_CERT", f"client certificate, DER, {len(der)} bytes",
        f"SHA-256 {fingerprint}", '"g3proxy"'])
out = expect("Ghostunnel tls-full, JSON", ["--json", GHOSTUNNEL.hex()], 0)
try:
    sub = [t for t in json.loads(out)["header"]["tlvs"] if t["type"] == 0x20][0]["sub_tlvs"]
    cert = [t for t in sub if t["type"] == 0x28][0]
    check("Ghostunnel JSON certificate", cert["hex"] == der.hex() and fingerprint in cert["meaning"]
          and cert["name"] == "PP2_SUBTYPE_SSL_CLIENT_CERT", str(cert)[:200])
except (ValueError, KeyError, IndexError) as e:
    check("Ghostunnel JSON certificate", False, f"{e}: {out[:300]}")
expect("SSL GROUP and SIG_SCHEME", [vector_bytes("ssl_group_sig_scheme").hex()], 0,
       ['0x26 PP2_SUBTYPE_SSL_GROUP', '"X25519"', "0x27 PP2_SUBTYPE_SSL_SIG_SCHEME",
        '"ecdsa_secp256r1_sha256"'])
expect("SSL GROUP twice", [vector_bytes("err_ssl_group_twice").hex()], 1,
       ["(tlv_duplicate) at byte 40"])

# --- PROXY protocol v1 (text): named, decoded, and told apart from v2 -------------------------------
V1 = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
NOT_V2 = "g3proxy and detour use PROXY protocol v2"
with tempfile.TemporaryDirectory() as tmp:
    v1_file = pathlib.Path(tmp) / "v1.txt"
    v1_file.write_bytes(V1 + b"GET / HTTP/1.1\r\n\r\n")
    expect("v1 from a file of text", ["--file", str(v1_file)], 1,
           ["PROXY protocol v1 header (text), 47 bytes: not a v2 header", "TCP4 (TCP over IPv4)",
            "source       192.168.0.1:56324", "destination  192.168.0.11:443", NOT_V2],
           absent=["not hex"])
expect("v1 from standard input, IPv6", ["-"], 1,
       ["source       [2001:db8::1]:56324", "destination  [2001:db8::11]:443", NOT_V2],
       stdin=b"PROXY TCP6 2001:db8::1 2001:db8::11 56324 443\r\n")
expect("v1 as arguments (no CRLF on a command line)",
       ["PROXY", "TCP4", "10.0.0.1", "10.0.0.2", "1000", "80"], 1,
       ["CRLF added", "source       10.0.0.1:1000", "destination  10.0.0.2:80"])
expect("v1 in hex", [V1.hex()], 1, ["PROXY protocol v1 header (text), 47 bytes"])
expect("v1 UNKNOWN", ["-"], 1, ["protocol     UNKNOWN"], stdin=b"PROXY UNKNOWN\r\n")
# A whole captured TCP segment: IPv4 and TCP headers, then the v1 line.
packet = bytes(40) + V1
expect("v1 inside a captured packet", [packet.hex()], 1,
       ["(skipped 40 bytes before the PROXY v1 line)", "destination  192.168.0.11:443"])
out = expect("v1 as JSON", ["--json", "-"], 1, stdin=V1)
try:
    d = json.loads(out)
    check("v1 JSON", d["status"] == "proxy_v1" and d["proxy_v1"] == {
        "size": 47, "protocol": "TCP4", "source": "192.168.0.1:56324",
        "destination": "192.168.0.11:443"}, out)
except (ValueError, KeyError) as e:
    check("v1 JSON", False, f"{e}: {out}")
expect("v1 with a port above 65535", ["-"], 1,
       ["malformed PROXY v1 header: destination port is above 65535 at byte 30", NOT_V2],
       stdin=b"PROXY TCP4 1.2.3.4 5.6.7.8 80 65536\r\n")
expect("v1 with an IPv6 address under TCP4", ["-"], 1,
       ["source is not an IPv4 address at byte 11"], stdin=b"PROXY TCP4 ::1 ::1 1 2\r\n")
expect("v1 without its CRLF in 107 bytes", ["-"], 1,
       ["no CRLF within the first 107 bytes"], stdin=b"PROXY UNKNOWN " + b"x" * 120)
expect("v1 cut short", ["-"], 1, ["incomplete PROXY v1 header: 17 bytes given"],
       stdin=b"PROXY TCP4 1.2.3.")
expect("v1 --offset", ["--offset", "4", "--raw", "-"], 1,
       ["(decoding from byte 4 of the input)", "source       192.168.0.1:56324"],
       stdin=b"abcd" + V1)

# --- LOCAL: a block that is no address block and TLVs is ignored (spec 2.2), not refused -----------
out = expect("LOCAL with a block that is no TLV", [vector_bytes("local_block_not_tlvs").hex()], 0,
             ["command      LOCAL", "ignored, as the specification says for LOCAL"])
out = expect("LOCAL naming AF_INET without addresses, JSON",
             ["--json", vector_bytes("local_inet_no_block").hex()], 0, ['"block_discarded":true'])

# --- A detour header without one of its TLVs: which one ---------------------------------------------
expect("a north request without its protocol", [vector_bytes("north_err_no_protocol").hex()], 1,
       ["(missing_required_tlv)", "missing: 0xe4 (protocol)"])
out = expect("the same, JSON", ["--json", vector_bytes("north_err_no_protocol").hex()], 1)
try:
    check("missing TLVs in JSON", json.loads(out)["detour"]["missing"] == ["0xe4"], out)
except (ValueError, KeyError) as e:
    check("missing TLVs in JSON", False, f"{e}: {out}")

# --- A north request whose payload the dump cuts short ---------------------------------------------
out = expect("payload cut short", [NORTH[:-5].hex()], 1,
             ["bytes announced", "incomplete payload: 5 more bytes needed"])
out = expect("payload cut short, JSON", ["--json", NORTH[:-5].hex()], 1)
try:
    d = json.loads(out)
    check("payload cut short, JSON", d["status"] == "incomplete" and d["needed"] == 5, out)
except (ValueError, KeyError) as e:
    check("payload cut short, JSON", False, f"{e}: {out}")
expect("whole payload", [NORTH.hex()], 0, absent=["incomplete"])

# --- Usage errors -------------------------------------------------------------------------------
expect("no input", [], 2, ["give the bytes"])
expect("two inputs", ["-", "0d0a"], 2, ["give the bytes one way only"])
expect("two files", ["--file", "a", "--file", "b"], 2, ["one --file at a time"])
expect("--max-header below the fixed part", ["--max-header", "0", G3_TCP4], 2,
       ["--max-header is at least 16"])
expect("--raw with hex arguments", ["--raw", G3_TCP4], 2, ["--raw is for --file or -"])
with tempfile.TemporaryDirectory() as tmp:
    expect("a directory for --file", ["--file", tmp], 2, ["it is a directory"])
expect("a missing file", ["--file", "/nonexistent/x"], 2, ["No such file or directory"])
expect("not hex", ["0d0g"], 2, ["not hex"])
expect("odd digits", ["0d0a0"], 2, ["odd number of hex digits"])
expect("unknown option", ["--frobnicate"], 2, ["unknown option '--frobnicate'"])
expect("bad number", ["--max-header", "lots", "0d"], 2, ["--max-header needs a number"])
help_text = expect("help", ["--help"], 0, ["usage: detour decode", "Examples:", "--json", "Exit status"])

if failures:
    print(f"{len(failures)} failure(s):")
    for f in failures:
        print(" -", f)
    sys.exit(1)
print("detour decode: all checks passed")
