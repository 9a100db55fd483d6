// SPDX-License-Identifier: MIT
// bench/go/main.go: the comparison point of the codec benchmark: pires/go-proxyproto (Debian's
// golang-github-pires-go-proxyproto-dev) decoding the very headers the C++ benchmark decodes
// (written by `codec_bench --dump DIR`). Reports the median ns per header over rounds and the
// allocations per header, as JSON.
//   go run main.go -north DIR/north.bin -haproxy DIR/haproxy.bin [-rounds N] [-round-ms MS]
package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
)

type result struct {
	Name          string  `json:"name"`
	MedianNs      float64 `json:"median_ns"`
	P25Ns         float64 `json:"p25_ns"`
	P75Ns         float64 `json:"p75_ns"`
	MinNs         float64 `json:"min_ns"`
	AllocsPerCall float64 `json:"allocs_per_call"`
}

// north holds the typed fields of a detour north request, as the C++ north_request does.
type north struct {
	client, proxy *net.TCPAddr
	upstream      string
	host          string
	port          int
	username      string
	taskID        [16]byte
	protocol      string
	matchID       uint16
	payloadLength uint32
}

var sink interface{}

// readNorth decodes the header and reads the detour fields from its TLVs, with the checks the
// C++ decoder makes (sizes of E3, E5, E6; host:port).
func readNorth(h *proxyproto.Header) (north, error) {
	var n north
	var ok bool
	n.client, n.proxy, ok = h.TCPAddrs()
	if !ok {
		return n, fmt.Errorf("not TCP")
	}
	tlvs, err := h.TLVs()
	if err != nil {
		return n, err
	}
	for _, t := range tlvs {
		switch t.Type {
		case 0xE0:
			n.upstream = string(t.Value)
			host, port, err := net.SplitHostPort(n.upstream)
			if err != nil {
				return n, err
			}
			n.host = host
			if n.port, err = strconv.Atoi(port); err != nil || n.port > 65535 {
				return n, fmt.Errorf("bad port")
			}
		case 0xE2:
			n.username = string(t.Value)
		case 0xE3:
			if len(t.Value) != 16 {
				return n, fmt.Errorf("bad task id")
			}
			copy(n.taskID[:], t.Value)
		case 0xE4:
			n.protocol = string(t.Value)
		case 0xE5:
			if len(t.Value) != 2 {
				return n, fmt.Errorf("bad match id")
			}
			n.matchID = binary.BigEndian.Uint16(t.Value)
		case 0xE6:
			if len(t.Value) != 4 {
				return n, fmt.Errorf("bad payload length")
			}
			n.payloadLength = binary.BigEndian.Uint32(t.Value)
		}
	}
	return n, nil
}

func measure(name string, rounds int, roundMs int, body func(b *testing.B)) result {
	var ns []float64
	var allocs, ops int64
	for r := 0; r < rounds; r++ {
		res := testing.Benchmark(body)
		ns = append(ns, float64(res.T.Nanoseconds())/float64(res.N))
		allocs += int64(res.MemAllocs)
		ops += int64(res.N)
	}
	sort.Float64s(ns)
	return result{name, ns[len(ns)/2], ns[len(ns)/4], ns[len(ns)*3/4], ns[0], float64(allocs) / float64(ops)}
}

func main() {
	northPath := flag.String("north", "", "the north header (codec_bench --dump)")
	haproxyPath := flag.String("haproxy", "", "the HAProxy SSL header (codec_bench --dump)")
	rounds := flag.Int("rounds", 11, "rounds per benchmark")
	roundMs := flag.Int("round-ms", 200, "length of a round")
	testing.Init()
	flag.Parse()
	flag.Set("test.benchtime", (time.Duration(*roundMs) * time.Millisecond).String())

	northHdr, err1 := os.ReadFile(*northPath)
	haproxyHdr, err2 := os.ReadFile(*haproxyPath)
	if err1 != nil || err2 != nil {
		fmt.Fprintln(os.Stderr, "usage: -north FILE -haproxy FILE", err1, err2)
		os.Exit(2)
	}
	// One reader per connection is reused; only the decoding itself is measured.
	rd := bytes.NewReader(nil)
	br := bufio.NewReader(rd)
	read := func(hdr []byte) *proxyproto.Header {
		rd.Reset(hdr)
		br.Reset(rd)
		h, err := proxyproto.Read(br)
		if err != nil {
			panic(err)
		}
		return h
	}
	// Check once that both headers decode, with the fields we expect.
	if n, err := readNorth(read(northHdr)); err != nil || n.matchID != 7 || n.host != "example.com" {
		panic(fmt.Sprintf("north header: %v %+v", err, n))
	}

	var out []result
	out = append(out, measure("north: Read", *rounds, *roundMs, func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			sink = read(northHdr)
		}
	}))
	out = append(out, measure("north: Read + typed detour fields", *rounds, *roundMs, func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			n, err := readNorth(read(northHdr))
			if err != nil {
				panic(err)
			}
			sink = n.matchID
		}
	}))
	out = append(out, measure("haproxy ssl: Read + TLVs read", *rounds, *roundMs, func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			h := read(haproxyHdr)
			tlvs, err := h.TLVs()
			if err != nil {
				panic(err)
			}
			ssl, ok := tlvparse.FindSSL(tlvs)
			if !ok {
				panic("no SSL TLV")
			}
			cn, _ := ssl.ClientCN()
			version, _ := ssl.SSLVersion()
			for _, t := range tlvs {
				if t.Type == proxyproto.PP2_TYPE_AUTHORITY {
					sink = string(t.Value)
				}
			}
			sink = cn + version
		}
	}))
	json.NewEncoder(os.Stdout).Encode(map[string]interface{}{"results": out})
}
