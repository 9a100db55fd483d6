// SPDX-License-Identifier: MIT
// detour-goproxyproto-interop: the library's PROXY v2 codec against pires/go-proxyproto
// (Debian's golang-github-pires-go-proxyproto-dev), the PROXY protocol implementation of Go
// servers and proxies, both ways, through tests/interop/ppv2_inspect:
//
//   - headers go-proxyproto writes (TCP and UDP over IPv4 and IPv6, UNIX stream and datagram,
//     LOCAL with and without addresses; TLVs of the specification, of cloud load balancers and
//     of detour, a CRC32C computed here with Go's own CRC) must decode to the same command,
//     family, addresses and TLVs, and a CRC32C that no longer matches must be refused;
//
//   - headers the library encodes (bare PROXY, detour north request and south hello, IPv4 and
//     IPv6) must read back in go-proxyproto with the same addresses and TLVs.
//
//     go build -o detour-goproxyproto-interop main.go   (GO111MODULE=off GOPATH=/usr/share/gocode)
//     detour-goproxyproto-interop PATH/TO/detour-ppv2-inspect
package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"net"
	"os"
	"os/exec"
	"strings"

	proxyproto "github.com/pires/go-proxyproto"
)

var inspect string
var failed int

func check(name string, err error) {
	if err != nil {
		fmt.Printf("FAIL  %s: %v\n", name, err)
		failed++
		return
	}
	fmt.Printf("ok    %s\n", name)
}

// decode runs ppv2_inspect decode on raw and returns its name=value lines.
func decode(raw []byte) (map[string]string, error) {
	cmd := exec.Command(inspect, "decode")
	cmd.Stdin = bytes.NewReader(raw)
	out, err := cmd.Output()
	fields := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			fields[k] = v
		}
	}
	if len(fields) == 0 {
		return nil, fmt.Errorf("ppv2_inspect decode: %v, no output", err)
	}
	return fields, nil
}

func tlv(t byte, v []byte) proxyproto.TLV {
	return proxyproto.TLV{Type: proxyproto.PP2Type(t), Value: v}
}

// withCRC32C appends a CRC32C TLV and fills it in as the specification says (section 2.2.5):
// the checksum of the whole header with the TLV's value zeroed.
func withCRC32C(h *proxyproto.Header, tlvs []proxyproto.TLV) ([]byte, error) {
	tlvs = append(tlvs, tlv(0x03, make([]byte, 4)))
	if err := h.SetTLVs(tlvs); err != nil {
		return nil, err
	}
	raw, err := h.Format()
	if err != nil {
		return nil, err
	}
	sum := crc32.Checksum(raw, crc32.MakeTable(crc32.Castagnoli))
	binary.BigEndian.PutUint32(raw[len(raw)-4:], sum)
	return raw, nil
}

// want is what ppv2_inspect must print for a header go-proxyproto wrote.
type want struct {
	command, fam, source, destination string
	tlvs                              []proxyproto.TLV
	extra                             map[string]string // further fields: crc32c, authority, ssl.*
}

func agree(raw []byte, w want) error {
	got, err := decode(raw)
	if err != nil {
		return err
	}
	expect := map[string]string{
		"status": "complete", "size": fmt.Sprint(len(raw)), "command": w.command, "fam": w.fam,
		"trailing": "0",
	}
	if w.source != "" {
		expect["source"], expect["destination"] = w.source, w.destination
	}
	var order []string
	for _, t := range w.tlvs {
		name := fmt.Sprintf("0x%02x", byte(t.Type))
		order = append(order, name)
		expect["tlv."+name] = hex.EncodeToString(t.Value)
	}
	expect["tlv_order"] = strings.Join(order, ",")
	for k, v := range w.extra {
		expect[k] = v
	}
	for k, v := range expect {
		if got[k] != v {
			return fmt.Errorf("%s: ours %q, go-proxyproto wrote %q (header %x)", k, got[k], v, raw)
		}
	}
	return nil
}

func tcp(addr string) *net.TCPAddr {
	a, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		panic(err)
	}
	return a
}

func udp(addr string) *net.UDPAddr {
	a, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		panic(err)
	}
	return a
}

// theirsToOurs: headers written by go-proxyproto, decoded by the library.
func theirsToOurs() {
	type testCase struct {
		name string
		h    *proxyproto.Header
		tlvs []proxyproto.TLV
		crc  bool
		w    want
	}
	ssl := append([]byte{0x07, 0, 0, 0, 0}, // client: SSL, cert in connection, cert in session; verified
		append(append([]byte{0x21, 0, 7}, "TLSv1.3"...), append([]byte{0x22, 0, 6}, "client"...)...)...)
	cases := []testCase{
		{
			name: "TCP over IPv4, no TLV",
			h:    proxyproto.HeaderProxyFromAddrs(2, tcp("192.0.2.10:56324"), tcp("198.51.100.1:443")),
			w:    want{command: "PROXY", fam: "0x11", source: "192.0.2.10:56324", destination: "198.51.100.1:443"},
		},
		{
			name: "TCP over IPv6 with ALPN, authority, NOOP, unique ID and a CRC32C",
			h:    proxyproto.HeaderProxyFromAddrs(2, tcp("[2001:db8::10]:40001"), tcp("[2001:db8::1]:443")),
			tlvs: []proxyproto.TLV{tlv(0x01, []byte("h2")), tlv(0x02, []byte("example.com")),
				tlv(0x04, []byte{0, 0, 0}), tlv(0x05, bytes.Repeat([]byte{0xab}, 32))},
			crc: true,
			w: want{command: "PROXY", fam: "0x21", source: "[2001:db8::10]:40001",
				destination: "[2001:db8::1]:443", extra: map[string]string{"authority": "example.com"}},
		},
		{
			name: "UDP over IPv4 with AWS's and Azure's custom TLVs",
			h:    proxyproto.HeaderProxyFromAddrs(2, udp("203.0.113.7:5353"), udp("198.51.100.1:53")),
			tlvs: []proxyproto.TLV{tlv(0xEA, append([]byte{0x01}, "vpce-08d2bf15fd1234567"...)),
				tlv(0xEE, []byte{0x01, 0x40, 0xe2, 0x01, 0x00})},
			w: want{command: "PROXY", fam: "0x12", source: "203.0.113.7:5353", destination: "198.51.100.1:53"},
		},
		{
			name: "UDP over IPv6, no TLV",
			h:    proxyproto.HeaderProxyFromAddrs(2, udp("[::1]:1"), udp("[fe80::1]:65535")),
			w:    want{command: "PROXY", fam: "0x22", source: "[::1]:1", destination: "[fe80::1]:65535"},
		},
		{
			name: "UNIX stream",
			h: proxyproto.HeaderProxyFromAddrs(2, &net.UnixAddr{Name: "/run/client.sock", Net: "unix"},
				&net.UnixAddr{Name: "/run/proxy.sock", Net: "unix"}),
			w: want{command: "PROXY", fam: "0x31", source: "/run/client.sock", destination: "/run/proxy.sock"},
		},
		{
			name: "UNIX datagram",
			h: proxyproto.HeaderProxyFromAddrs(2, &net.UnixAddr{Name: "/run/a", Net: "unixgram"},
				&net.UnixAddr{Name: "/run/b", Net: "unixgram"}),
			w: want{command: "PROXY", fam: "0x32", source: "/run/a", destination: "/run/b"},
		},
		{
			name: "LOCAL, unspecified family (a health check)",
			h:    &proxyproto.Header{Version: 2, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC},
			w:    want{command: "LOCAL", fam: "0x00"},
		},
		{
			name: "LOCAL with addresses and a TLV",
			h: &proxyproto.Header{Version: 2, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.TCPv4,
				SourceAddr: tcp("10.0.0.1:1"), DestinationAddr: tcp("10.0.0.2:2")},
			tlvs: []proxyproto.TLV{tlv(0x02, []byte("health.example"))},
			w:    want{command: "LOCAL", fam: "0x11", extra: map[string]string{"authority": "health.example"}},
		},
		{
			name: "an SSL TLV with version and CN sub-TLVs, then a CRC32C",
			h:    proxyproto.HeaderProxyFromAddrs(2, tcp("192.0.2.10:1"), tcp("192.0.2.20:443")),
			tlvs: []proxyproto.TLV{tlv(0x20, ssl)},
			crc:  true,
			w: want{command: "PROXY", fam: "0x11", source: "192.0.2.10:1", destination: "192.0.2.20:443",
				extra: map[string]string{"ssl.client": "7", "ssl.verify": "0", "ssl.order": "0x21,0x22",
					"ssl.version": "TLSv1.3", "ssl.cn": "client"}},
		},
		{
			name: "a detour north request (g3proxy's TLVs, in its order)",
			h:    proxyproto.HeaderProxyFromAddrs(2, tcp("192.0.2.10:40000"), tcp("198.51.100.1:3128")),
			tlvs: []proxyproto.TLV{tlv(0xE2, []byte("alice")), tlv(0xE3, bytes.Repeat([]byte{0x42}, 16)),
				tlv(0xE0, []byte("[2001:db8::25]:993")), tlv(0xE5, []byte{0, 7}), tlv(0xE4, []byte("imap")),
				tlv(0xE6, []byte{0, 0, 0, 0})},
			w: want{command: "PROXY", fam: "0x11", source: "192.0.2.10:40000", destination: "198.51.100.1:3128"},
		},
	}
	for _, c := range cases {
		var raw []byte
		var err error
		if c.crc {
			raw, err = withCRC32C(c.h, c.tlvs)
		} else {
			if len(c.tlvs) > 0 {
				err = c.h.SetTLVs(c.tlvs)
			}
			if err == nil {
				raw, err = c.h.Format()
			}
		}
		if err != nil {
			check("go-proxyproto writes, we read: "+c.name, fmt.Errorf("go-proxyproto: %v", err))
			continue
		}
		c.w.tlvs = c.tlvs
		if c.crc {
			sum := raw[len(raw)-4:]
			c.w.tlvs = append(append([]proxyproto.TLV(nil), c.tlvs...), tlv(0x03, sum))
			if c.w.extra == nil {
				c.w.extra = map[string]string{}
			}
			c.w.extra["crc32c"] = fmt.Sprint(binary.BigEndian.Uint32(sum))
		}
		check("go-proxyproto writes, we read: "+c.name, agree(raw, c.w))
		if c.crc {
			// One address bit changed after the checksum: go-proxyproto, which does not check
			// it, still reads the header; ours must refuse it.
			bad := append([]byte(nil), raw...)
			bad[16] ^= 0x01
			_, theirErr := proxyproto.Read(bufio.NewReader(bytes.NewReader(bad)))
			got, err := decode(bad)
			if err == nil && got["status"] != "error" {
				err = fmt.Errorf("a header whose CRC32C does not match was accepted: %v", got)
			}
			if err == nil && got["error"] != "crc32c_mismatch" {
				err = fmt.Errorf("refused as %q, not crc32c_mismatch", got["error"])
			}
			if err == nil && theirErr != nil {
				err = fmt.Errorf("go-proxyproto no longer reads it either (%v): the case proves nothing", theirErr)
			}
			check("a CRC32C that no longer matches is refused: "+c.name, err)
		}
	}
}

// oursToTheirs: headers the library encodes, read by go-proxyproto.
func oursToTheirs() {
	taskTLVs := func(kind string) []byte {
		switch kind {
		case "north":
			return []byte{0xE3, 0xE0, 0xE5, 0xE4, 0xE6}
		case "south":
			return []byte{0xE5}
		}
		return nil
	}
	for _, pair := range [][3]string{
		{"192.0.2.1:1234", "198.51.100.1:443", "TCP over IPv4"},
		{"[2001:db8::1]:1234", "[2001:db8::2]:443", "TCP over IPv6"},
	} {
		for _, kind := range []string{"bare", "north", "south"} {
			name := fmt.Sprintf("we write, go-proxyproto reads: %s, %s", pair[2], kind)
			args := []string{"encode", pair[0], pair[1]}
			if kind != "bare" {
				args = append(args, kind)
			}
			raw, err := exec.Command(inspect, args...).Output()
			if err != nil {
				check(name, fmt.Errorf("ppv2_inspect encode: %v", err))
				continue
			}
			h, err := proxyproto.Read(bufio.NewReader(bytes.NewReader(raw)))
			if err == nil && (h.Version != 2 || h.Command != proxyproto.PROXY) {
				err = fmt.Errorf("version %d command %v", h.Version, h.Command)
			}
			if err == nil {
				src, dst, ok := h.TCPAddrs()
				if !ok || src.String() != tcp(pair[0]).String() || dst.String() != tcp(pair[1]).String() {
					err = fmt.Errorf("addresses %v -> %v", h.SourceAddr, h.DestinationAddr)
				}
			}
			var tlvs []proxyproto.TLV
			if err == nil {
				tlvs, err = h.TLVs()
			}
			if err == nil {
				var types []byte
				values := map[byte]string{}
				for _, t := range tlvs {
					types = append(types, byte(t.Type))
					values[byte(t.Type)] = string(t.Value)
				}
				switch {
				case !bytes.Equal(types, taskTLVs(kind)):
					err = fmt.Errorf("TLV types %x, expected %x", types, taskTLVs(kind))
				case kind == "north" && (values[0xE0] != "example.com:443" || values[0xE4] != "smtp" ||
					values[0xE5] != "\x00\x01" || values[0xE6] != "\x00\x00\x00\x00" || len(values[0xE3]) != 16):
					err = fmt.Errorf("north TLV values %q", values)
				case kind == "south" && values[0xE5] != "\x00\x01":
					err = fmt.Errorf("south match id %q", values[0xE5])
				}
			}
			check(name, err)
		}
	}
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: detour-goproxyproto-interop PATH/TO/detour-ppv2-inspect")
		os.Exit(2)
	}
	inspect = os.Args[1]
	theirsToOurs()
	oursToTheirs()
	if failed > 0 {
		fmt.Printf("%d check(s) failed\n", failed)
		os.Exit(1)
	}
	fmt.Println("all checks passed")
}
