// SPDX-License-Identifier: MIT
// detour-quicgo-client: g3proxy's stream detour client on a third QUIC and TLS stack, quic-go
// (Debian's golang-github-lucas-clemente-quic-go-dev, 0.29, with Go's TLS), run against a detour
// server by tests/interop/run_client.sh, as the quinn client is. The tasks are g3proxy's
// (docs/protocol.md): two streams, PROXY v2 headers written by go-proxyproto (a PROXY protocol
// implementation of its own), the 4-byte answer, every echoed byte checked, g3proxy's closes.
// Where quic-go differs from quinn it is kept as it is, since such a client may also call:
// it must offer ALPN, and it dials with a zero-length connection ID of its own.
//
//	go build -o detour-quicgo-client main.go   (GO111MODULE=off GOPATH=/usr/share/gocode)
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	quic "github.com/lucas-clemente/quic-go"
	"github.com/lucas-clemente/quic-go/logging"
	proxyproto "github.com/pires/go-proxyproto"
)

const usage = `usage: detour-quicgo-client --server ADDR:PORT --ca FILE [options]

Plays g3proxy's stream detour client on quic-go against a detour server and checks every answer
and every echoed byte. One line per check; exit 0 when all passed, 1 when one failed, 2 on bad
usage.

options:
  --server ADDR:PORT   the detour server (IPv4, or IPv6 in brackets)
  --ca FILE            PEM CA certificates that verify the server
  --tls-name NAME      name checked in the server certificate (default: the server's IP
                       address, checked against an IP subjectAltName; no SNI is sent)
  --cert FILE --key FILE   client certificate and key for mutual TLS
  --alpn A[,B]         ALPN names offered (default detour: quic-go refuses to dial without
                       one, and closes a connection whose server selects none)
  --cid-len N          length of this client's connection IDs: 0 (quic-go's default when it
                       owns the socket, the default here) or 4 to 18
  --expect WHAT        continue (default): the relay suite; bypass | block: every task must be
                       answered so and abandoned quietly; refused: the server must refuse the
                       handshake (mutual TLS without a client certificate); untrusted: this
                       client must refuse the server's certificate (wrong CA or name)
  --connections N      connections that each run 16 tasks in a row (default 3)
  --bytes N            bytes each way in the large transfer (default 4194304)
  --deadline SECS      give up after this long (default 120)
  --idle SECS          only this check: a connection idle for SECS serves a task afterwards
  --key-update         only this check: 150 MiB each way on one task, over which quic-go
                       updates its keys (RFC 9001 section 6) and the server must follow
  --retry              the server must answer the first Initial with a Retry (serve --retry)
  --seed N             seed of the sizes and bytes (default: from the clock; printed first)
`

// g3proxy's connection_reuse_limit default: tasks per connection, match ids 0..15.
const tasksPerConnection = 16

// Bound on one step that loopback completes in milliseconds; only a stuck server reaches it.
const stepTimeout = 20 * time.Second

// g3proxy's request_timeout for the 4-byte answer.
const answerTimeout = 60 * time.Second

var protocols = [4]string{"http_2", "websocket", "smtp", "imap"}

const websocketPayload = "/chat\r\nhost: example.com\r\norigin: https://example.com\r\n" +
	"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n" +
	"sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nsec-websocket-protocol: chat\r\n" +
	"sec-websocket-extensions: permessage-deflate\r\nsec-websocket-extensions: x-webkit-deflate-frame\r\n"

type options struct {
	server      string
	serverIP    net.IP
	ca          string
	tlsName     string
	cert, key   string
	alpn        []string
	cidLen      int
	expect      string
	connections int
	bytes       int
	deadline    time.Duration
	idle        int
	keyUpdate   bool
	retry       bool
	seed        uint64
}

func parseOptions() (options, error) {
	var o options
	var alpn string
	var deadline int
	fs := flag.NewFlagSet("detour-quicgo-client", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.server, "server", "", "")
	fs.StringVar(&o.ca, "ca", "", "")
	fs.StringVar(&o.tlsName, "tls-name", "", "")
	fs.StringVar(&o.cert, "cert", "", "")
	fs.StringVar(&o.key, "key", "", "")
	fs.StringVar(&alpn, "alpn", "detour", "")
	fs.IntVar(&o.cidLen, "cid-len", 0, "")
	fs.StringVar(&o.expect, "expect", "continue", "")
	fs.IntVar(&o.connections, "connections", 3, "")
	fs.IntVar(&o.bytes, "bytes", 4<<20, "")
	fs.IntVar(&deadline, "deadline", 120, "")
	fs.IntVar(&o.idle, "idle", 0, "")
	fs.BoolVar(&o.keyUpdate, "key-update", false, "")
	fs.BoolVar(&o.retry, "retry", false, "")
	fs.Uint64Var(&o.seed, "seed", 0, "")
	help := fs.Bool("help", false, "")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return o, err
	}
	if *help {
		fmt.Print(usage)
		os.Exit(0)
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	host, _, err := net.SplitHostPort(o.server)
	if o.server == "" || err != nil || net.ParseIP(host) == nil {
		return o, fmt.Errorf("--server: not ADDR:PORT: %q", o.server)
	}
	o.serverIP = net.ParseIP(host)
	if o.ca == "" {
		return o, errors.New("--ca is required")
	}
	if (o.cert == "") != (o.key == "") {
		return o, errors.New("--cert and --key go together")
	}
	o.alpn = strings.Split(alpn, ",")
	for _, name := range o.alpn {
		if name == "" || len(name) > 255 {
			return o, fmt.Errorf("--alpn: names of 1 to 255 bytes, not %q", alpn)
		}
	}
	if o.cidLen != 0 && (o.cidLen < 4 || o.cidLen > 18) {
		return o, fmt.Errorf("--cid-len: 0 or 4 to 18, not %d", o.cidLen)
	}
	switch o.expect {
	case "continue", "bypass", "block", "refused", "untrusted":
	default:
		return o, fmt.Errorf("--expect: continue, bypass, block, refused or untrusted, not %q", o.expect)
	}
	o.deadline = time.Duration(deadline) * time.Second
	return o, nil
}

// matches says whether an answer's action is the expected one; g3proxy reads any value above 1
// as block.
func (o *options) matches(action uint16) bool {
	switch o.expect {
	case "continue":
		return action == 0
	case "bypass":
		return action == 1
	case "block":
		return action >= 2
	}
	return false
}

// ---------------------------------------------------------------------------------------------
// The client: TLS as g3proxy configures it (CA, the server's IP as the name, optional client
// certificate, a session cache for resumption) and g3proxy's transport settings.

type client struct {
	opts options
	tls  *tls.Config
	quic *quic.Config

	mu  sync.Mutex
	rng uint64

	// What the server should have logged: conn.open, resumed=true and task.end lines.
	connections, resumed, answered atomic.Int64
}

func newClient(o options) (*client, error) {
	pem, err := os.ReadFile(o.ca)
	if err != nil {
		return nil, fmt.Errorf("--ca: %v", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--ca: no certificate in %s", o.ca)
	}
	name := o.tlsName
	if name == "" {
		name = o.serverIP.String()
	}
	t := &tls.Config{
		RootCAs:            roots,
		ServerName:         name,
		NextProtos:         o.alpn,
		MinVersion:         tls.VersionTLS13,
		ClientSessionCache: &ticketCache{ClientSessionCache: tls.NewLRUClientSessionCache(64)},
	}
	if o.cert != "" {
		pair, err := tls.LoadX509KeyPair(o.cert, o.key)
		if err != nil {
			return nil, fmt.Errorf("--cert/--key: %v", err)
		}
		t.Certificates = []tls.Certificate{pair}
	}
	q := &quic.Config{
		Versions:           []quic.VersionNumber{quic.Version1},
		ConnectionIDLength: o.cidLen,
		MaxIdleTimeout:     60 * time.Second,
		KeepAlivePeriod:    10 * time.Second,
		// g3proxy accepts no stream from the server.
		MaxIncomingStreams:    -1,
		MaxIncomingUniStreams: -1,
	}
	seed := o.seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano()%1_000_000_000) + 1
	}
	return &client{opts: o, tls: t, quic: q, rng: seed}, nil
}

// ticketCache is Go's session cache, telling when a ticket arrives. quic-go 0.29's TLS
// (qtls-go1-19) can use a cached ticket only once: it rewrites the cached state as it reads it,
// so the next attempt finds it malformed and drops it. Every resumption needs a fresh ticket.
type ticketCache struct {
	tls.ClientSessionCache
	mu      sync.Mutex
	tickets int
	arrived *sync.Cond
}

func (t *ticketCache) Put(key string, state *tls.ClientSessionState) {
	t.ClientSessionCache.Put(key, state)
	if state == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.tickets++
	if t.arrived != nil {
		t.arrived.Broadcast()
	}
}

// count is the number of tickets received so far.
func (t *ticketCache) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.tickets
}

// waitBeyond waits until more than n tickets have been received, or timeout.
func (t *ticketCache) waitBeyond(n int, timeout time.Duration) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.arrived == nil {
		t.arrived = sync.NewCond(&t.mu)
	}
	expired := false
	timer := time.AfterFunc(timeout, func() {
		t.mu.Lock()
		expired = true
		t.arrived.Broadcast()
		t.mu.Unlock()
	})
	defer timer.Stop()
	for t.tickets <= n && !expired {
		t.arrived.Wait()
	}
	return t.tickets > n
}

// random is xorshift64*: sizes, chunking and relayed bytes, the same sequence for a seed.
func (c *client) random() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	x := c.rng
	x ^= x >> 12
	x ^= x << 25
	x ^= x >> 27
	c.rng = x
	return x * 0x2545f4914f6cdd1d
}

func (c *client) below(n int) int {
	if n < 1 {
		n = 1
	}
	return int(c.random() % uint64(n))
}

func (c *client) bytes(n int) []byte {
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], c.random())
		copy(b[i:], w[:])
	}
	return b
}

// conn is one QUIC connection on its own connected UDP socket (quic-go dials with a socket of
// its own, as g3proxy does per connection).
type conn struct {
	quic.Connection
	resumed bool
	trace   *tracer
}

// dial makes a connection with config and a tracer of its own.
func (c *client) dial(config *quic.Config) (*conn, error) {
	trace := &tracer{confirmed: make(chan struct{})}
	config = config.Clone()
	config.Tracer = trace
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	q, err := quic.DialAddrContext(ctx, c.opts.server, c.tls, config)
	if err != nil {
		return nil, fmt.Errorf("handshake with %s: %v", c.opts.server, err)
	}
	resumed := q.ConnectionState().TLS.DidResume
	c.connections.Add(1)
	if resumed {
		c.resumed.Add(1)
	}
	return &conn{q, resumed, trace}, nil
}

func (c *client) connect() (*conn, error) { return c.dial(c.quic) }

// closeError is why a closed connection closed (quic-go reports it from any call on it).
func closeError(q *conn) error {
	_, err := q.AcceptStream(context.Background())
	return err
}

// finish retires a connection as g3proxy does after its tasks: application code 0, "finished".
// quic-go returns from a dial as soon as its TLS Finished is queued, and a close right after
// would drop it, leaving the server a handshake that never completed; so a connection closes
// once the server has confirmed the handshake (HANDSHAKE_DONE), as any g3proxy connection that
// served a task has.
func (q *conn) finish() {
	select {
	case <-q.trace.confirmed:
	case <-q.Context().Done():
	case <-time.After(stepTimeout):
	}
	_ = q.CloseWithError(0, "finished")
}

// tracer records what quic-go saw of one connection: the version negotiation, the server's
// transport parameters, the handshake's confirmation.
type tracer struct {
	logging.NullTracer
	mu        sync.Mutex
	offered   []logging.VersionNumber // in the server's Version Negotiation packet
	chosen    logging.VersionNumber
	received  *logging.TransportParameters
	retried   bool          // a Retry packet came first
	confirmed chan struct{} // closed when the Handshake keys are dropped (RFC 9001 §4.9.2)
	// 1-RTT key updates (RFC 9001 §6): started by this client, and by the server.
	localUpdates, remoteUpdates int
}

type connTracer struct {
	logging.NullConnectionTracer
	t *tracer
}

func (t *tracer) TracerForConnection(context.Context, logging.Perspective, logging.ConnectionID) logging.ConnectionTracer {
	return connTracer{t: t}
}

func (c connTracer) ReceivedVersionNegotiationPacket(_ *logging.Header, versions []logging.VersionNumber) {
	c.t.mu.Lock()
	defer c.t.mu.Unlock()
	c.t.offered = append([]logging.VersionNumber(nil), versions...)
}

func (c connTracer) NegotiatedVersion(chosen logging.VersionNumber, _, _ []logging.VersionNumber) {
	c.t.mu.Lock()
	defer c.t.mu.Unlock()
	c.t.chosen = chosen
}

func (c connTracer) ReceivedTransportParameters(p *logging.TransportParameters) {
	c.t.mu.Lock()
	defer c.t.mu.Unlock()
	c.t.received = p
}

func (c connTracer) ReceivedRetry(*logging.Header) {
	c.t.mu.Lock()
	defer c.t.mu.Unlock()
	c.t.retried = true
}

func (c connTracer) UpdatedKey(_ logging.KeyPhase, remote bool) {
	c.t.mu.Lock()
	defer c.t.mu.Unlock()
	if remote {
		c.t.remoteUpdates++
	} else {
		c.t.localUpdates++
	}
}

func (c connTracer) DroppedEncryptionLevel(level logging.EncryptionLevel) {
	if level == logging.EncryptionHandshake {
		close(c.t.confirmed)
	}
}

// ---------------------------------------------------------------------------------------------
// One task as g3proxy runs it.

type task struct {
	matchID       uint16
	taskID        [16]byte
	client, proxy *net.TCPAddr
	username      *string
	upstream      string
	protocol      string
	payload       []byte
}

func (c *client) newTask(matchID uint16, protocol string) *task {
	t := &task{matchID: matchID, protocol: protocol}
	copy(t.taskID[:], c.bytes(16))
	t.taskID[6] = t.taskID[6]&0x0f | 0x40 // UUID version 4
	t.taskID[8] = t.taskID[8]&0x3f | 0x80
	port := 40000 + int(matchID)
	if matchID%3 == 1 {
		t.client = &net.TCPAddr{IP: net.ParseIP("2001:db8::10"), Port: port}
		t.proxy = &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 3128}
	} else {
		t.client = &net.TCPAddr{IP: net.IPv4(192, 0, 2, 10).To4(), Port: port}
		t.proxy = &net.TCPAddr{IP: net.IPv4(198, 51, 100, 1).To4(), Port: 3128}
	}
	switch protocol {
	case "websocket":
		t.upstream, t.payload = "example.com:443", []byte(websocketPayload)
	case "smtp":
		t.upstream = "mail.example.com:25"
	case "imap":
		t.upstream = "[2001:db8::25]:993"
	default:
		t.upstream = fmt.Sprintf("www%d.example.com:443", matchID)
	}
	if matchID%2 == 1 {
		user := [2]string{"alice", "zoë"}[matchID/2%2]
		t.username = &user
	}
	return t
}

// header is PROXY v2, command PROXY, TCP over the task's address family, with tlvs, as
// go-proxyproto writes it.
func (t *task) header(tlvs []proxyproto.TLV) ([]byte, error) {
	h := proxyproto.HeaderProxyFromAddrs(2, t.client, t.proxy)
	if err := h.SetTLVs(tlvs); err != nil {
		return nil, err
	}
	return h.Format()
}

// northHeader carries E2 username (when authenticated), E3 task id, E0 upstream, E5 match id,
// E4 protocol, E6 payload length, in that order, as g3proxy's encoder.
func (t *task) northHeader() ([]byte, error) {
	var matchID [2]byte
	binary.BigEndian.PutUint16(matchID[:], t.matchID)
	var length [4]byte
	binary.BigEndian.PutUint32(length[:], uint32(len(t.payload)))
	var tlvs []proxyproto.TLV
	if t.username != nil {
		tlvs = append(tlvs, proxyproto.TLV{Type: 0xE2, Value: []byte(*t.username)})
	}
	tlvs = append(tlvs,
		proxyproto.TLV{Type: 0xE3, Value: t.taskID[:]},
		proxyproto.TLV{Type: 0xE0, Value: []byte(t.upstream)},
		proxyproto.TLV{Type: 0xE5, Value: matchID[:]},
		proxyproto.TLV{Type: 0xE4, Value: []byte(t.protocol)},
		proxyproto.TLV{Type: 0xE6, Value: length[:]})
	return t.header(tlvs)
}

// southHeader: the same addresses and E5 alone.
func (t *task) southHeader() ([]byte, error) {
	var matchID [2]byte
	binary.BigEndian.PutUint16(matchID[:], t.matchID)
	return t.header([]proxyproto.TLV{{Type: 0xE5, Value: matchID[:]}})
}

type streams struct{ north, south quic.Stream }

// openStreams opens north then south, back to back, as g3proxy; the server sees neither until
// something is written on it.
func openStreams(q *conn) (*streams, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // stream_open_timeout
	defer cancel()
	north, err := q.OpenStreamSync(ctx)
	if err != nil {
		return nil, fmt.Errorf("open north: %v", err)
	}
	south, err := q.OpenStreamSync(ctx)
	if err != nil {
		return nil, fmt.Errorf("open south: %v", err)
	}
	return &streams{north, south}, nil
}

// abandon is g3proxy giving a task up (bypass, block, its own failure): FIN on both send sides,
// both receive sides dropped (STOP_SENDING 0).
func (s *streams) abandon() {
	_ = s.north.Close()
	_ = s.south.Close()
	s.north.CancelRead(0)
	s.south.CancelRead(0)
}

// endAsClient closes as g3proxy does when the client ends: FIN on south and north, wait for
// north's receive side to end, drop south's (STOP_SENDING 0).
func endAsClient(s *streams) error {
	_ = s.south.Close()
	_ = s.north.Close()
	if err := expectEnd(s.north, "north"); err != nil {
		return err
	}
	s.south.CancelRead(0)
	return nil
}

// continued is how every single-task check starts: a connection, the task's streams, the
// request answered continue and the south header written. The caller finishes the connection.
func (c *client) continued(t *task) (*conn, *streams, error) {
	q, err := c.connect()
	if err != nil {
		return nil, nil, err
	}
	s, err := openStreams(q)
	if err == nil {
		err = c.requestContinue(s, t, nil)
	}
	if err != nil {
		q.finish()
		return nil, nil, err
	}
	return q, s, nil
}

// readFull reads len(buf) bytes within timeout.
func readFull(st quic.Stream, buf []byte, timeout time.Duration) error {
	_ = st.SetReadDeadline(time.Now().Add(timeout))
	defer func() { _ = st.SetReadDeadline(time.Time{}) }()
	_, err := io.ReadFull(st, buf)
	return err
}

// request writes the north header and payload, reads the 4-byte answer, checks the match id,
// and returns the action.
func (c *client) request(s *streams, t *task) (uint16, error) {
	head, err := t.northHeader()
	if err != nil {
		return 0, fmt.Errorf("encode north header: %v", err)
	}
	if _, err := s.north.Write(append(head, t.payload...)); err != nil {
		return 0, fmt.Errorf("write north header: %v", err)
	}
	var answer [4]byte
	if err := readFull(s.north, answer[:], answerTimeout); err != nil {
		return 0, fmt.Errorf("read answer: %v", err)
	}
	c.answered.Add(1)
	if id := binary.BigEndian.Uint16(answer[:2]); id != t.matchID {
		return 0, fmt.Errorf("invalid match id: answered %d, task has %d", id, t.matchID)
	}
	return binary.BigEndian.Uint16(answer[2:]), nil
}

// requestContinue: the request answered continue, then the south header; early client bytes
// go out on north first, as they may arrive when a packet is lost.
func (c *client) requestContinue(s *streams, t *task, early []byte) error {
	action, err := c.request(s, t)
	if err != nil {
		return err
	}
	if action != 0 {
		return fmt.Errorf("answered action %d, expected 0 (continue)", action)
	}
	if _, err := s.north.Write(early); err != nil {
		return fmt.Errorf("write north: %v", err)
	}
	south, err := t.southHeader()
	if err != nil {
		return fmt.Errorf("encode south header: %v", err)
	}
	if _, err := s.south.Write(south); err != nil {
		return fmt.Errorf("write south header: %v", err)
	}
	return nil
}

func (c *client) sendChunks(st quic.Stream, data []byte, what string) error {
	for at := 0; at < len(data); {
		n := 1 + c.below(32<<10)
		if n > len(data)-at {
			n = len(data) - at
		}
		if _, err := st.Write(data[at : at+n]); err != nil {
			return fmt.Errorf("write %s: %v", what, err)
		}
		at += n
	}
	return nil
}

// expectEcho reads exactly len(expected) bytes back and compares them byte for byte.
func expectEcho(st quic.Stream, expected []byte, what string) error {
	buf := make([]byte, 64<<10)
	for got := 0; got < len(expected); {
		want := len(expected) - got
		if want > len(buf) {
			want = len(buf)
		}
		n, err := st.Read(buf[:want])
		for i := 0; i < n; i++ {
			if buf[i] != expected[got+i] {
				return fmt.Errorf("%s echo differs at byte %d", what, got+i)
			}
		}
		got += n
		if err == io.EOF && got < len(expected) {
			return fmt.Errorf("%s ended after %d of %d echoed bytes", what, got, len(expected))
		}
		if err != nil && err != io.EOF {
			return fmt.Errorf("%s after %d of %d echoed bytes: %v", what, got, len(expected), err)
		}
	}
	return nil
}

// expectEnd: the receive side must end (FIN) with nothing more on it.
func expectEnd(st quic.Stream, what string) error {
	var b [1]byte
	_ = st.SetReadDeadline(time.Now().Add(stepTimeout))
	n, err := st.Read(b[:])
	switch {
	case n > 0:
		return fmt.Errorf("%s carries more than was sent", what)
	case err == io.EOF:
		return nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("%s did not end within %v", what, stepTimeout)
	default:
		return fmt.Errorf("%s did not end cleanly: %v", what, err)
	}
}

// relay sends client bytes on north (past the sent already written) and remote bytes on south
// at once, each echo checked, then closes as g3proxy does when the client ends: FIN on south
// and north, wait for north's receive side to end, drop south's (STOP_SENDING 0). With eager,
// the close starts once the client is done, while south echoes may still be on the way.
func (c *client) relay(s *streams, toRemote []byte, sent int, toClient []byte, eager bool) error {
	// Four independent copies, as g3proxy relays: writing never waits for reading.
	jobs := []func() error{
		func() error { return c.sendChunks(s.north, toRemote[sent:], "north") },
		func() error { return expectEcho(s.north, toRemote, "north") },
		func() error { return c.sendChunks(s.south, toClient, "south") },
	}
	if !eager {
		jobs = append(jobs, func() error { return expectEcho(s.south, toClient, "south") })
	}
	errs := make(chan error, len(jobs))
	for _, job := range jobs {
		go func(job func() error) { errs <- job() }(job)
	}
	timer := time.NewTimer(3 * stepTimeout)
	defer timer.Stop()
	for range jobs {
		select {
		case err := <-errs:
			if err != nil {
				return err
			}
		case <-timer.C:
			return fmt.Errorf("relay of %d bytes north and %d south stalled for %v",
				len(toRemote), len(toClient), 3*stepTimeout)
		}
	}
	return endAsClient(s)
}

// runTask is a whole continued task with random sizes; every fourth sends client bytes before
// the south header, every fourth closes eagerly.
func (c *client) runTask(t *task, s *streams) error {
	toRemote := c.bytes(c.below(64 << 10))
	toClient := c.bytes(c.below(64 << 10))
	early := 0
	if t.matchID%4 == 1 {
		early = len(toRemote)
		if early > 1000 {
			early = 1000
		}
	}
	if err := c.requestContinue(s, t, toRemote[:early]); err != nil {
		return err
	}
	return c.relay(s, toRemote, early, toClient, t.matchID%4 == 3)
}

// ---------------------------------------------------------------------------------------------
// The checks.

// inARow: n tasks in a row on one connection (match ids 0..n-1), then g3proxy's close. With
// more than 64 tasks the streams outnumber the server's initial credit (MAX_STREAMS).
func (c *client) inARow(n int) (string, error) {
	q, err := c.connect()
	if err != nil {
		return "", err
	}
	defer q.finish()
	for k := 0; k < n; k++ {
		s, err := openStreams(q)
		if err != nil {
			return "", err
		}
		if err := c.runTask(c.newTask(uint16(k), protocols[k%4]), s); err != nil {
			return "", fmt.Errorf("task %d: %v", k, err)
		}
	}
	return fmt.Sprintf("resumed=%v", q.resumed), nil
}

// parallel runs f(0..n-1) at once and returns the failures, in index order.
func parallel(n int, f func(int) error) []string {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs[i] = f(i)
		}(i)
	}
	wg.Wait()
	var failed []string
	for i, err := range errs {
		if err != nil {
			failed = append(failed, fmt.Sprintf("%d: %v", i, err))
		}
	}
	return failed
}

// poolStart is g3proxy's pool at start: 32 connections at once, a task on each, all at the
// same time, then every connection retired.
func (c *client) poolStart() (string, error) {
	conns := make([]*conn, 32)
	failed := parallel(32, func(i int) (err error) {
		conns[i], err = c.connect()
		return err
	})
	defer func() {
		for _, q := range conns {
			if q != nil {
				q.finish()
			}
		}
	}()
	if len(failed) > 0 {
		return "", fmt.Errorf("%d of 32 handshakes failed; the first: %s", len(failed), failed[0])
	}
	resumed := 0
	for _, q := range conns {
		if q.resumed {
			resumed++
		}
	}
	failed = parallel(32, func(i int) error {
		s, err := openStreams(conns[i])
		if err != nil {
			return err
		}
		return c.runTask(c.newTask(0, "http_2"), s)
	})
	if len(failed) > 0 {
		return "", fmt.Errorf("%d of 32 tasks failed; the first: %s", len(failed), failed[0])
	}
	return fmt.Sprintf("%d of 32 resumed", resumed), nil
}

// sixteenAtOnce: streams opened in task order (as g3proxy's connection loop does), then all
// relayed together, so headers arrive interleaved and south streams out of order.
func (c *client) sixteenAtOnce() (string, error) {
	q, err := c.connect()
	if err != nil {
		return "", err
	}
	defer q.finish()
	opened := make([]*streams, tasksPerConnection)
	tasks := make([]*task, tasksPerConnection)
	for k := range opened {
		tasks[k] = c.newTask(uint16(k), protocols[k%4])
		if opened[k], err = openStreams(q); err != nil {
			return "", err
		}
	}
	failed := parallel(tasksPerConnection, func(k int) error { return c.runTask(tasks[k], opened[k]) })
	if len(failed) > 0 {
		if len(failed) > 3 {
			failed = failed[:3]
		}
		return "", fmt.Errorf("of 16, failed: %s", strings.Join(failed, "; "))
	}
	return "", nil
}

// remoteSpeaksFirst (SMTP): the remote's greeting goes out on south while north is silent and
// must come back; a short dialogue; then the remote ends first: FIN on north and south, wait
// for south to end, drop north (g3proxy's relay_after_remote_closed).
func (c *client) remoteSpeaksFirst() (string, error) {
	q, s, err := c.continued(c.newTask(0, "smtp"))
	if err != nil {
		return "", err
	}
	defer q.finish()
	dialogue := []struct {
		fromClient bool
		line       string
	}{
		{false, "220 mail.example.com ESMTP ready\r\n"},
		{true, "EHLO client.example.org\r\n"},
		{false, "250-mail.example.com\r\n250 SIZE 10240000\r\n"},
		{true, "QUIT\r\n"},
		{false, "221 2.0.0 bye\r\n"},
	}
	for _, d := range dialogue {
		st, what := s.south, "south"
		if d.fromClient {
			st, what = s.north, "north"
		}
		if _, err := st.Write([]byte(d.line)); err != nil {
			return "", fmt.Errorf("write %s: %v", what, err)
		}
		_ = st.SetReadDeadline(time.Now().Add(stepTimeout))
		if err := expectEcho(st, []byte(d.line), what); err != nil {
			return "", fmt.Errorf("%v (line %q)", err, strings.TrimSpace(d.line))
		}
		_ = st.SetReadDeadline(time.Time{})
	}
	_ = s.north.Close()
	_ = s.south.Close()
	if err := expectEnd(s.south, "south"); err != nil {
		return "", err
	}
	s.north.CancelRead(0)
	return "", nil
}

// websocket: the summary payload after the header, then frames both ways.
func (c *client) websocket() (string, error) {
	t := c.newTask(0, "websocket")
	q, s, err := c.continued(t)
	if err != nil {
		return "", err
	}
	defer q.finish()
	toRemote := append([]byte{0x82, 0xfe, 0x01, 0x00}, c.bytes(4+256)...) // masked, 256 bytes
	toClient := append([]byte{0x81, 0x05}, "hello"...)
	if err := c.relay(s, toRemote, 0, toClient, false); err != nil {
		return "", err
	}
	return fmt.Sprintf("%d-byte payload", len(t.payload)), nil
}

// large: --bytes each way on one task, both directions at once.
func (c *client) large() (string, error) {
	q, s, err := c.continued(c.newTask(0, "http_2"))
	if err != nil {
		return "", err
	}
	defer q.finish()
	toRemote, toClient := c.bytes(c.opts.bytes), c.bytes(c.opts.bytes)
	start := time.Now()
	if err := c.relay(s, toRemote, 0, toClient, false); err != nil {
		return "", err
	}
	seconds := time.Since(start).Seconds()
	mib := float64(c.opts.bytes) / float64(1<<20)
	return fmt.Sprintf("%.1f MiB each way in %.0f ms (%.0f MiB/s each way)",
		mib, seconds*1e3, mib/seconds), nil
}

// patternWord is word i of a relay stream's bytes: a stream of any length, made and checked
// piece by piece without holding it.
func patternWord(seed uint64, i int) uint64 {
	z := seed + uint64(i)*0x9e3779b97f4a7c15 // splitmix64
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

func fillPattern(seed uint64, offset int, b []byte) {
	for i := range b {
		at := offset + i
		b[i] = byte(patternWord(seed, at/8) >> (8 * (at % 8)))
	}
}

// sendPattern writes n pattern bytes on st.
func sendPattern(st quic.Stream, seed uint64, n int, what string) error {
	buf := make([]byte, 64<<10)
	for at := 0; at < n; {
		piece := buf
		if n-at < len(piece) {
			piece = piece[:n-at]
		}
		fillPattern(seed, at, piece)
		if _, err := st.Write(piece); err != nil {
			return fmt.Errorf("write %s at %d: %v", what, at, err)
		}
		at += len(piece)
	}
	return nil
}

// expectPattern reads n pattern bytes back from st and checks each.
func expectPattern(st quic.Stream, seed uint64, n int, what string) error {
	buf := make([]byte, 64<<10)
	want := make([]byte, 64<<10)
	for got := 0; got < n; {
		limit := len(buf)
		if n-got < limit {
			limit = n - got
		}
		k, err := st.Read(buf[:limit])
		fillPattern(seed, got, want[:k])
		for i := 0; i < k; i++ {
			if buf[i] != want[i] {
				return fmt.Errorf("%s echo differs at byte %d", what, got+i)
			}
		}
		got += k
		if err != nil && !(err == io.EOF && got == n) {
			return fmt.Errorf("%s after %d of %d echoed bytes: %v", what, got, n, err)
		}
	}
	return nil
}

// keyUpdate: one task relays enough each way (150 MiB) for quic-go to update its 1-RTT keys
// (it does after 100,000 packets sent or received with one key); the server must follow, and
// every byte must come back.
func (c *client) keyUpdate() (string, error) {
	const size = 150 << 20
	q, s, err := c.continued(c.newTask(0, "http_2"))
	if err != nil {
		return "", err
	}
	defer q.finish()
	north, south := c.random(), c.random()
	start := time.Now()
	failed := parallel(4, func(i int) error {
		switch i {
		case 0:
			return sendPattern(s.north, north, size, "north")
		case 1:
			return expectPattern(s.north, north, size, "north")
		case 2:
			return sendPattern(s.south, south, size, "south")
		default:
			return expectPattern(s.south, south, size, "south")
		}
	})
	if len(failed) > 0 {
		return "", errors.New(failed[0])
	}
	seconds := time.Since(start).Seconds()
	if err := endAsClient(s); err != nil {
		return "", err
	}
	q.trace.mu.Lock()
	local, remote := q.trace.localUpdates, q.trace.remoteUpdates
	q.trace.mu.Unlock()
	if local == 0 {
		return "", fmt.Errorf("quic-go updated no key in %d MiB each way", size>>20)
	}
	return fmt.Sprintf("%d MiB each way in %.1f s, %d key updates by this client, %d by the server",
		size>>20, seconds, local, remote), nil
}

// largestHeader: g3proxy's encoder holds 536 bytes, which a 253-byte host name and a long user
// name fill exactly.
func (c *client) largestHeader() (string, error) {
	q, err := c.connect()
	if err != nil {
		return "", err
	}
	defer q.finish()
	t := c.newTask(1, "http_2") // IPv6 addresses
	t.upstream = strings.Join([]string{strings.Repeat("a", 63), strings.Repeat("b", 63),
		strings.Repeat("c", 63), strings.Repeat("d", 61)}, ".") + ":443"
	empty := ""
	t.username = &empty
	head, err := t.northHeader()
	if err != nil {
		return "", err
	}
	user := strings.Repeat("u", 536-len(head))
	t.username = &user
	if head, err = t.northHeader(); err != nil || len(head) != 536 {
		return "", fmt.Errorf("the header is %d bytes, not 536 (%v)", len(head), err)
	}
	s, err := openStreams(q)
	if err != nil {
		return "", err
	}
	if err := c.runTask(t, s); err != nil {
		return "", err
	}
	return "536 bytes", nil
}

// quietAbort: tasks g3proxy gives up on, each followed by a task that must work: streams that
// end with nothing on them (it could not encode the header), a task answered continue and
// dropped before the south header, one dropped right after the south header.
func (c *client) quietAbort() (string, error) {
	q, err := c.connect()
	if err != nil {
		return "", err
	}
	defer q.finish()
	next := func(k uint16) error {
		s, err := openStreams(q)
		if err != nil {
			return err
		}
		if err := c.runTask(c.newTask(k, "http_2"), s); err != nil {
			return fmt.Errorf("task %d: %v", k, err)
		}
		return nil
	}
	s, err := openStreams(q) // match id 0: nothing written
	if err != nil {
		return "", err
	}
	s.abandon()
	if err := next(1); err != nil {
		return "", err
	}
	if s, err = openStreams(q); err != nil {
		return "", err
	}
	action, err := c.request(s, c.newTask(2, "smtp"))
	if err != nil || action != 0 {
		return "", fmt.Errorf("task 2: action %d, %v", action, err)
	}
	s.abandon()
	if err := next(3); err != nil {
		return "", err
	}
	if s, err = openStreams(q); err != nil {
		return "", err
	}
	if err := c.requestContinue(s, c.newTask(4, "smtp"), []byte("EHLO")); err != nil {
		return "", fmt.Errorf("task 4: %v", err)
	}
	s.abandon()
	if err := next(5); err != nil {
		return "", err
	}
	return "", nil
}

// idle: a pooled connection left idle for secs (g3proxy keeps idle connections up to 300 s,
// with a keep-alive PING every 10 s) must still serve a task.
func (c *client) idle(secs int) (string, error) {
	q, err := c.connect()
	if err != nil {
		return "", err
	}
	defer q.finish()
	select {
	case <-q.Context().Done():
		return "", fmt.Errorf("the connection died while idle: %v", closeError(q))
	case <-time.After(time.Duration(secs) * time.Second):
	}
	s, err := openStreams(q)
	if err != nil {
		return "", err
	}
	return "", c.runTask(c.newTask(0, "http_2"), s)
}

// answeredAs: every task answered with the expected action, then abandoned as g3proxy does
// after bypass or block; in a row or all at once; then a 17th request on the same connection.
func (c *client) answeredAs(atOnce bool) (string, error) {
	q, err := c.connect()
	if err != nil {
		return "", err
	}
	defer q.finish()
	check := func(s *streams, k int) error {
		action, err := c.request(s, c.newTask(uint16(k), protocols[k%4]))
		if err != nil {
			return fmt.Errorf("task %d: %v", k, err)
		}
		s.abandon()
		if !c.opts.matches(action) {
			return fmt.Errorf("task %d: answered action %d, expected %s", k, action, c.opts.expect)
		}
		return nil
	}
	opened := make([]*streams, tasksPerConnection)
	for k := range opened {
		if opened[k], err = openStreams(q); err != nil {
			return "", err
		}
		if !atOnce {
			if err := check(opened[k], k); err != nil {
				return "", err
			}
		}
	}
	if atOnce {
		if failed := parallel(tasksPerConnection, func(k int) error { return check(opened[k], k) }); len(failed) > 0 {
			return "", errors.New(failed[0])
		}
	}
	s, err := openStreams(q)
	if err != nil {
		return "", err
	}
	return "", check(s, tasksPerConnection)
}

// refused: mutual TLS without a client certificate. The server must close the connection with
// a TLS alert (CRYPTO_ERROR, 0x100 + alert) before answering anything; in TLS 1.3 the client's
// handshake may complete first, so the refusal may arrive on the first request.
func (c *client) refused() (string, error) {
	alert := func(err error) (string, error) {
		var te *quic.TransportError
		if errors.As(err, &te) && te.ErrorCode >= 0x100 && te.ErrorCode < 0x200 {
			return fmt.Sprintf("closed with TLS alert %d", te.ErrorCode&0xff), nil
		}
		return "", fmt.Errorf("expected a close with a TLS alert, got %v", err)
	}
	q, err := c.connect()
	if err != nil {
		return alert(err)
	}
	defer q.finish()
	s, err := openStreams(q)
	if err == nil {
		var action uint16
		if action, err = c.request(s, c.newTask(0, "http_2")); err == nil {
			return "", fmt.Errorf("the server answered a task (action %d) without a client certificate", action)
		}
	}
	<-q.Context().Done()
	return alert(closeError(q))
}

// untrusted: the server's certificate does not chain to --ca or does not name the address;
// this client must refuse the handshake on the certificate.
func (c *client) untrusted() (string, error) {
	q, err := c.connect()
	if err == nil {
		q.finish()
		return "", errors.New("the handshake succeeded")
	}
	if strings.Contains(err.Error(), "certificate") {
		return err.Error(), nil
	}
	return "", fmt.Errorf("failed, but not on the certificate: %v", err)
}

// handshake: QUIC v1, TLS 1.3, the certificate verified, one of the offered ALPN names.
func (c *client) handshake() (string, error) {
	q, err := c.connect()
	if err != nil {
		return "", err
	}
	defer q.finish()
	tr := q.trace
	tr.mu.Lock()
	params, retried := tr.received, tr.retried
	tr.mu.Unlock()
	// g3proxy needs two streams per task and 16 tasks per connection (PROTOCOL-NOTES: stream
	// credit); fewer makes its tasks wait for stream_open_timeout.
	if params == nil || params.MaxBidiStreamNum < 2*tasksPerConnection {
		return "", fmt.Errorf("the server grants too few bidirectional streams: %+v", params)
	}
	state := q.ConnectionState().TLS
	alpn := state.NegotiatedProtocol
	offered := false
	for _, name := range c.opts.alpn {
		offered = offered || name == alpn
	}
	if !offered {
		return "", fmt.Errorf("ALPN %q selected, not one of the offered %q", alpn, c.opts.alpn)
	}
	name := c.opts.tlsName
	if name == "" {
		name = "IP " + c.opts.serverIP.String()
	}
	mtls := "off"
	if c.opts.cert != "" {
		mtls = "on"
	}
	if retried != c.opts.retry {
		return "", fmt.Errorf("a Retry came: %v, expected: %v", retried, c.opts.retry)
	}
	retry := "no Retry"
	if retried {
		retry = "after a Retry"
	}
	return fmt.Sprintf("%s verified, ALPN %s selected, %s, mutual TLS %s, client CID %d bytes, "+
		"%s, %d bidirectional streams granted", name, alpn, tls.CipherSuiteName(state.CipherSuite),
		mtls, c.opts.cidLen, retry, params.MaxBidiStreamNum), nil
}

// versionNegotiation: a client that starts with a version the server does not speak (QUIC
// draft-29, which quic-go still offers) is sent a Version Negotiation packet and continues in
// QUIC v1 on a new connection.
func (c *client) versionNegotiation() (string, error) {
	config := c.quic.Clone()
	config.Versions = []quic.VersionNumber{quic.VersionDraft29, quic.Version1}
	q, err := c.dial(config)
	if err != nil {
		return "", err
	}
	defer q.finish()
	tr := q.trace
	tr.mu.Lock()
	offered, chosen := tr.offered, tr.chosen
	tr.mu.Unlock()
	if len(offered) == 0 {
		return "", errors.New("no Version Negotiation packet came back for draft-29")
	}
	if chosen != quic.Version1 {
		return "", fmt.Errorf("continued in %v, not QUIC v1", chosen)
	}
	s, err := openStreams(q)
	if err != nil {
		return "", err
	}
	if err := c.runTask(c.newTask(0, "http_2"), s); err != nil {
		return "", err
	}
	return fmt.Sprintf("the server offered %v", offered), nil
}

// resumption: a second connection resumes the TLS session of the first, once the first has
// received its ticket (the server sends it after the handshake).
func (c *client) resumption() (string, error) {
	cache := c.tls.ClientSessionCache.(*ticketCache)
	before := cache.count()
	first, err := c.connect()
	if err != nil {
		return "", err
	}
	got := cache.waitBeyond(before, stepTimeout)
	first.finish()
	if !got {
		return "", fmt.Errorf("no session ticket from the server within %v of the handshake", stepTimeout)
	}
	second, err := c.connect()
	if err != nil {
		return "", err
	}
	defer second.finish()
	if !second.resumed {
		return "", errors.New("the server did not resume the TLS session (full handshake again)")
	}
	return "the second connection resumed without a certificate", nil
}

type report struct{ failed int }

func (r *report) check(name string, detail string, err error) {
	switch {
	case err != nil:
		fmt.Printf("FAIL  %s: %v\n", name, err)
		r.failed++
	case detail == "":
		fmt.Printf("ok    %s\n", name)
	default:
		fmt.Printf("ok    %s: %s\n", name, detail)
	}
}

func (c *client) run() int {
	var r report
	switch c.opts.expect {
	case "refused":
		d, err := c.refused()
		r.check("mutual TLS: a client without a certificate is refused", d, err)
		return r.failed
	case "untrusted":
		d, err := c.untrusted()
		r.check("an untrusted server certificate is refused", d, err)
		return r.failed
	}
	if c.opts.idle > 0 {
		d, err := c.idle(c.opts.idle)
		r.check(fmt.Sprintf("a connection idle for %d s on keep-alives serves a task", c.opts.idle), d, err)
		return r.failed
	}
	if c.opts.keyUpdate {
		d, err := c.keyUpdate()
		r.check("key update by the client during a long relay", d, err)
		return r.failed
	}
	d, err := c.handshake()
	r.check("handshake: QUIC v1, TLS 1.3, server certificate", d, err)
	if c.opts.expect != "continue" {
		d, err = c.answeredAs(false)
		r.check(fmt.Sprintf("16 tasks in a row answered %s, abandoned quietly", c.opts.expect), d, err)
		d, err = c.answeredAs(true)
		r.check(fmt.Sprintf("16 tasks at once answered %s, abandoned quietly", c.opts.expect), d, err)
	} else {
		for n := 1; n <= c.opts.connections; n++ {
			d, err = c.inARow(tasksPerConnection)
			r.check(fmt.Sprintf("connection %d: 16 tasks in a row, closed \"finished\"", n), d, err)
		}
		d, err = c.inARow(100)
		r.check("100 tasks in a row on one connection (200 streams: MAX_STREAMS raised)", d, err)
		d, err = c.poolStart()
		r.check("pool start: 32 connections at once, a task on each", d, err)
		d, err = c.sixteenAtOnce()
		r.check("16 tasks at once on one connection", d, err)
		d, err = c.remoteSpeaksFirst()
		r.check("smtp: the remote speaks first and ends first", d, err)
		d, err = c.websocket()
		r.check("websocket: summary payload, frames echoed", d, err)
		d, err = c.large()
		r.check("large transfer", d, err)
		d, err = c.largestHeader()
		r.check("a 536-byte north header", d, err)
		d, err = c.quietAbort()
		r.check("abandoned tasks end quietly; the next task works", d, err)
		d, err = c.versionNegotiation()
		r.check("version negotiation: draft-29 offered first, the task runs in QUIC v1", d, err)
	}
	d, err = c.resumption()
	r.check("session resumption on a new connection", d, err)
	return r.failed
}

func main() {
	opts, err := parseOptions()
	if err != nil {
		fmt.Fprintf(os.Stderr, "detour-quicgo-client: %v\n\n%s", err, usage)
		os.Exit(2)
	}
	c, err := newClient(opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "detour-quicgo-client: %v\n", err)
		os.Exit(2)
	}
	fmt.Printf("detour-quicgo-client: server %s expect %s seed %d\n", opts.server, opts.expect, c.rng)
	done := make(chan int, 1)
	go func() { done <- c.run() }()
	failed := -1
	select {
	case failed = <-done:
	case <-time.After(opts.deadline):
	}
	fmt.Printf("totals: connections=%d resumed=%d answered=%d\n",
		c.connections.Load(), c.resumed.Load(), c.answered.Load())
	switch {
	case failed < 0:
		fmt.Printf("FAIL  deadline: not done within %v\n", opts.deadline)
		os.Exit(1)
	case failed == 0:
		fmt.Println("all checks passed")
	default:
		fmt.Printf("%d check(s) failed\n", failed)
		os.Exit(1)
	}
}
