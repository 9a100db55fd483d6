#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# tests/interop/haproxy_interop.py: the PROXY v2 codec against a real HAProxy on loopback.
#  1. HAProxy as the sender: a TLS frontend whose server line has send-proxy-v2 with the ssl,
#     cert-cn, ssl-cipher, cert-sig, cert-key, authority, crc32c and unique-id options; our
#     decoder must read what it sends, field by field, with and without a client certificate,
#     and agree with an independent TLV walk written here.
#  2. HAProxy as the receiver: headers from our encoders (TCP4, TCP6, detour north and south,
#     LOCAL) sent to an accept-proxy frontend, which must report the client and destination
#     addresses we encoded.
# HAProxy runs with its own configuration in a temporary directory; every wait polls with a
# deadline. If HAProxy cannot start, the test fails and says why.
#   usage: haproxy_interop.py <haproxy> <ppv2_inspect> [--save-captures DIR]
import argparse
import os
import pathlib
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time

DEADLINE_S = 15.0
failures = []


def check(name, cond, detail=""):
    if not cond:
        failures.append(f"{name}: {detail}")
    return cond


def deadline_loop(what, seconds=DEADLINE_S):
    """Yields until the deadline, then raises with `what`."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        yield
        time.sleep(0.02)
    raise TimeoutError(f"timed out after {seconds} s waiting for {what}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certs(d: pathlib.Path):
    """A throwaway CA, a server certificate for www.example.com and a client certificate."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=detour interop CA", cwd=d)
    (d / "san.ext").write_text("subjectAltName=DNS:www.example.com,DNS:localhost,IP:127.0.0.1\n")
    for name, cn, ext in (("server", "www.example.com", ["-extfile", "san.ext"]), ("client", "interop-client", [])):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={cn}", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.crt", "-days", "2", "-sha256", *ext, cwd=d)
    (d / "server.pem").write_text((d / "server.crt").read_text() + (d / "server.key").read_text())


def start_haproxy(haproxy, d: pathlib.Path, tls_port, backend_port, accept_port):
    cfg = d / "haproxy.cfg"
    cfg.write_text(f"""
global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend tls_in
    bind 127.0.0.1:{tls_port} ssl crt {d}/server.pem ca-file {d}/ca.pem verify optional
    unique-id-format uid-%ci-%cp
    default_backend capture
backend capture
    server capture 127.0.0.1:{backend_port} send-proxy-v2 proxy-v2-options ssl,cert-cn,ssl-cipher,cert-sig,cert-key,authority,crc32c,unique-id
frontend accept_in
    mode http
    bind 127.0.0.1:{accept_port} accept-proxy
    http-request return status 200 content-type text/plain lf-string "client=%ci:%cp frontend=%fi:%fp\\n"
""")
    check_cfg = subprocess.run([haproxy, "-c", "-f", str(cfg)], capture_output=True, text=True)
    if check_cfg.returncode != 0:
        raise RuntimeError(f"haproxy rejects the test configuration:\n{check_cfg.stdout}{check_cfg.stderr}")
    log = open(d / "haproxy.log", "w")
    proc = subprocess.Popen([haproxy, "-db", "-f", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
    for _ in deadline_loop("haproxy to listen"):
        if proc.poll() is not None:
            raise RuntimeError(f"haproxy exited with {proc.returncode}:\n{(d / 'haproxy.log').read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", accept_port), timeout=1):
                pass
            with socket.create_connection(("127.0.0.1", tls_port), timeout=1):
                return proc
        except OSError:
            continue


def walk_tlvs(data, start, end):
    """An independent TLV walk: [(offset, type, value)], or None if it does not end exactly."""
    out, pos = [], start
    while pos < end:
        if end - pos < 3:
            return None
        t, n = data[pos], struct.unpack(">H", data[pos + 1:pos + 3])[0]
        if pos + 3 + n > end:
            return None
        out.append((pos, t, data[pos + 3:pos + 3 + n]))
        pos += 3 + n
    return out


def inspect(tool, data):
    p = subprocess.run([tool, "decode"], input=data, capture_output=True, timeout=30)
    fields = {}
    for line in p.stdout.decode().splitlines():
        k, _, v = line.partition("=")
        fields[k] = v
    return fields


def capture_from_haproxy(tool, backend: socket.socket, tls_port, ca, client_cert, sni, label, save_dir):
    """Connects through the TLS frontend, returns the bytes the backend received and the
    client's own view of the connection."""
    ctx = ssl.create_default_context(cafile=str(ca))
    if client_cert:
        ctx.load_cert_chain(*client_cert)
    raw = socket.create_connection(("127.0.0.1", tls_port), timeout=DEADLINE_S)
    tls = ctx.wrap_socket(raw, server_hostname=sni)
    client_port = tls.getsockname()[1]
    view = {"version": tls.version(), "cipher": tls.cipher()[0], "port": client_port}
    tls.sendall(b"hello")
    backend.settimeout(DEADLINE_S)
    conn, _ = backend.accept()
    conn.settimeout(0.2)
    data = b""
    for _ in deadline_loop(f"the {label} header and data at the backend"):
        try:
            chunk = conn.recv(4096)
        except socket.timeout:
            chunk = None
        if chunk:
            data += chunk
        if len(data) >= 16 and len(data) >= 16 + struct.unpack(">H", data[14:16])[0] + 5:
            break
        if chunk == b"":
            break
    conn.close()
    tls.close()
    if save_dir:
        for target, prefix in (("ppv2_decode", b"\x01\x00\x00"), ("ppv2_roundtrip", b""), ("detour_request", b"")):
            (save_dir / target).mkdir(parents=True, exist_ok=True)
            (save_dir / target / f"haproxy26_{label}").write_bytes(prefix + data)
    return data, view


def check_haproxy_header(tool, data, view, tls_port, with_cert, label):
    f = inspect(tool, data)
    name = f"HAProxy send-proxy-v2 ({label})"
    if not check(name, f.get("status") == "complete", f"decode: {f}\nbytes: {data.hex()}"):
        return
    size = int(f["size"])
    check(name, size == 16 + struct.unpack(">H", data[14:16])[0], f"size {size}")
    check(name, f["command"] == "PROXY" and f["fam"] == "0x11", f"{f['command']} {f['fam']}")
    check(name, f["source"] == f"127.0.0.1:{view['port']}", f"source {f['source']}, client port {view['port']}")
    check(name, f["destination"] == f"127.0.0.1:{tls_port}", f"destination {f['destination']}")
    check(name, f["trailing"] == "5", f"bytes after the header: {f['trailing']} (the client sent 5)")
    # Every TLV as an independent walk sees it, in the same order.
    walk = walk_tlvs(data, 28, size)
    check(name, walk is not None, "the independent walk does not end at the header's end")
    order = ",".join(f"0x{t:02x}" for _, t, _ in walk or [])
    check(name, f["tlv_order"] == order, f"{f['tlv_order']} vs {order}")
    for _, t, v in walk or []:
        if t != 0x20:
            check(name, f.get(f"tlv.0x{t:02x}") == v.hex(), f"TLV 0x{t:02x}")
    check(name, order.startswith("0x03"), f"HAProxy puts CRC32C first: {order}")
    check(name, "crc32c" in f, "CRC32C verified")
    check(name, f.get("authority") == "www.example.com", f"authority {f.get('authority')}")
    check(name, f.get("unique_id") == f"uid-127.0.0.1-{view['port']}", f"unique id {f.get('unique_id')}")
    # The SSL TLV: flags, verify result, sub-TLVs in HAProxy's order.
    ssl_tlv = [v for _, t, v in walk or [] if t == 0x20]
    if not check(name, len(ssl_tlv) == 1, "one SSL TLV"):
        return
    sub = walk_tlvs(ssl_tlv[0], 5, len(ssl_tlv[0]))
    check(name, f["ssl.order"] == ",".join(f"0x{t:02x}" for _, t, _ in sub), f"ssl order {f['ssl.order']}")
    check(name, f["ssl.client"] == ("7" if with_cert else "1"), f"ssl client flags {f['ssl.client']}")
    check(name, f["ssl.verify"] == "0", f"ssl verify {f['ssl.verify']}")
    check(name, f.get("ssl.version") == view["version"], f"ssl version {f.get('ssl.version')} vs {view['version']}")
    check(name, f.get("ssl.cipher") == view["cipher"], f"ssl cipher {f.get('ssl.cipher')} vs {view['cipher']}")
    check(name, f.get("ssl.key_alg") == "RSA2048", f"ssl key alg {f.get('ssl.key_alg')}")
    check(name, "SHA256" in f.get("ssl.sig_alg", ""), f"ssl sig alg {f.get('ssl.sig_alg')}")
    if with_cert:
        check(name, f.get("ssl.cn") == "interop-client", f"ssl cn {f.get('ssl.cn')}")
    else:
        check(name, "ssl.cn" not in f, f"no client certificate, yet ssl cn {f.get('ssl.cn')}")


def send_to_accept_proxy(tool, accept_port, src, dst, kind):
    header = subprocess.run([tool, "encode", src, dst, kind], capture_output=True, check=True, timeout=30).stdout
    with socket.create_connection(("127.0.0.1", accept_port), timeout=DEADLINE_S) as s:
        local_port = s.getsockname()[1]
        # HAProxy needs the whole header in one read: one send, header and request together.
        s.sendall(header + b"GET / HTTP/1.0\r\nHost: interop\r\n\r\n")
        s.settimeout(0.2)
        reply = b""
        for _ in deadline_loop(f"HAProxy's answer to a {kind or 'bare'} header {src} -> {dst}"):
            try:
                chunk = s.recv(4096)
            except socket.timeout:
                continue
            if not chunk:
                break
            reply += chunk
    return reply.decode(errors="replace"), local_port


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("haproxy")
    ap.add_argument("tool")
    ap.add_argument("--save-captures", type=pathlib.Path)
    a = ap.parse_args()
    haproxy = shutil.which(a.haproxy) or (a.haproxy if os.access(a.haproxy, os.X_OK) else None)
    if not haproxy:
        print(f"FAIL: haproxy not found ('{a.haproxy}'): install Debian's haproxy package")
        return 1
    with tempfile.TemporaryDirectory(prefix="detour-interop-") as tmp:
        d = pathlib.Path(tmp)
        try:
            make_certs(d)
        except (OSError, subprocess.CalledProcessError) as e:
            print(f"FAIL: cannot make the test certificates with openssl: {e}")
            return 1
        backend = socket.socket()
        backend.bind(("127.0.0.1", 0))
        backend.listen(4)
        tls_port, accept_port = free_port(), free_port()
        try:
            proc = start_haproxy(haproxy, d, tls_port, backend.getsockname()[1], accept_port)
        except Exception as e:  # noqa: BLE001 - reported as the test's failure
            print(f"FAIL: cannot start haproxy: {e}")
            return 1
        try:
            for with_cert in (True, False):
                label = "ssl_client_cert" if with_cert else "ssl_no_client_cert"
                cert = (d / "client.crt", d / "client.key") if with_cert else None
                data, view = capture_from_haproxy(a.tool, backend, tls_port, d / "ca.pem", cert, "www.example.com",
                                                  label, a.save_captures)
                check_haproxy_header(a.tool, data, view, tls_port, with_cert, label)

            for src, dst, kind, want_client, want_frontend in (
                    ("192.0.2.10:40000", "198.51.100.20:3128", "", "192.0.2.10:40000", "198.51.100.20:3128"),
                    ("192.0.2.11:1", "198.51.100.21:65535", "north", "192.0.2.11:1", "198.51.100.21:65535"),
                    ("192.0.2.12:56324", "198.51.100.22:443", "south", "192.0.2.12:56324", "198.51.100.22:443"),
                    ("[2001:db8::10]:40000", "[2001:db8::20]:3128", "", "2001:db8::10:40000", "2001:db8::20:3128"),
                    ("[2001:db8::11]:5", "[2001:db8::21]:993", "north", "2001:db8::11:5", "2001:db8::21:993"),
            ):
                reply, _ = send_to_accept_proxy(a.tool, accept_port, src, dst, kind)
                want = f"client={want_client} frontend={want_frontend}"
                check(f"accept-proxy {kind or 'bare'} {src} -> {dst}", want in reply, f"HAProxy answered:\n{reply}")
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=DEADLINE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
            backend.close()
        if failures:
            print((d / "haproxy.log").read_text())
    if failures:
        print(f"{len(failures)} failure(s):")
        for f in failures:
            print(" -", f)
        return 1
    print("HAProxy interop: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
