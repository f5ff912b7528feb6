package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/meshlens/meshlens/internal/testkit"
	"github.com/meshlens/meshlens/internal/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var testKey = []byte("0123456789abcdef0123456789abcdef")

// startResponder runs a responder until the test ends.
func startResponder(t *testing.T, cfg ResponderConfig) (*Responder, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	r, err := NewResponder(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("responder Run: %v", err)
		}
	})
	return r, reg
}

// startUDPProber runs a udp prober until the test ends.
func startUDPProber(t *testing.T, cfg UDPProberConfig) *UDPProber {
	t.Helper()
	p, err := NewUDPProber(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("udp prober Run: %v", err)
		}
	})
	return p
}

func dropped(r *Responder, reason string) float64 {
	return testutil.ToFloat64(r.dropped.WithLabelValues(reason))
}

func TestUDPEchoThroughResponder(t *testing.T) {
	tests := []struct {
		name      string
		listen    string // responder address
		probe     string // address probed
		local     string // prober source
		proberKey []byte
		want      wire.Outcome
	}{
		{"own address", "127.0.0.11:0", "127.0.0.11", "127.0.0.12", testKey, wire.Outcome_OUTCOME_OK},
		{"wildcard answers from probed address", "0.0.0.0:0", "127.0.0.13", "127.0.0.1", testKey, wire.Outcome_OUTCOME_OK},
		{"wildcard other address", "0.0.0.0:0", "127.2.3.4", "127.0.0.1", testKey, wire.Outcome_OUTCOME_OK},
		{"wrong key is lost", "127.0.0.14:0", "127.0.0.14", "127.0.0.1", []byte("another key, 16+ bytes long"), wire.Outcome_OUTCOME_LOST},
		{"no key is a local error", "127.0.0.15:0", "127.0.0.15", "127.0.0.1", nil, wire.Outcome_OUTCOME_ERROR},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := startResponder(t, ResponderConfig{Addr: tc.listen, Keys: [][]byte{testKey}})
			p := startUDPProber(t, UDPProberConfig{Local: netip.MustParseAddr(tc.local), Key: tc.proberKey})
			target := Target{Name: "peer", Protocol: wire.Protocol_PROTOCOL_UDP,
				Addr: netip.AddrPortFrom(netip.MustParseAddr(tc.probe), r.Addr().Port()), Timeout: 300 * time.Millisecond}
			for seq := uint64(1); seq <= 3; seq++ {
				res := p.Probe(context.Background(), target)
				if res.Outcome != tc.want {
					t.Fatalf("probe %d: outcome %v (%s), want %v", seq, res.Outcome, res.Error, tc.want)
				}
				if tc.want != wire.Outcome_OUTCOME_OK {
					continue
				}
				if res.Seq != seq || res.RttNs <= 0 || res.Duplicates != 0 || res.Reordered {
					t.Errorf("probe %d: %v", seq, res)
				}
				if res.DstAddr != tc.probe || res.SrcAddr != tc.local || res.SrcPort == 0 {
					t.Errorf("probe %d: 5-tuple %s:%d -> %s:%d", seq, res.SrcAddr, res.SrcPort, res.DstAddr, res.DstPort)
				}
			}
			if tc.want == wire.Outcome_OUTCOME_LOST {
				testkit.CheckFor(t, 30*time.Second, 5*time.Millisecond, func() error {
					if dropped(r, DropBadMAC) != 3 {
						return errors.New("waiting for bad_mac drops")
					}
					return nil
				})
			}
		})
	}
}

// TestUDPProbesRotatePorts: a peer's probes take the prober's source
// ports in turn, each a flow of its own for ECMP, and every reply is
// matched to its probe whichever socket it came back to.
func TestUDPProbesRotatePorts(t *testing.T) {
	r, _ := startResponder(t, ResponderConfig{Addr: "127.0.0.16:0", Keys: [][]byte{testKey}})
	p := startUDPProber(t, UDPProberConfig{Local: netip.MustParseAddr("127.0.0.17"), Key: testKey, Ports: 4})
	ports := map[uint32]bool{}
	for _, port := range p.Ports() {
		ports[port] = true
	}
	if len(ports) != 4 {
		t.Fatalf("ports %v, want 4 distinct", p.Ports())
	}
	target := Target{Name: "peer", Protocol: wire.Protocol_PROTOCOL_UDP, Addr: r.Addr(), Timeout: 300 * time.Millisecond}
	used := map[uint32]int{}
	var last uint32
	for seq := uint64(1); seq <= 8; seq++ {
		res := p.Probe(context.Background(), target)
		if res.Outcome != wire.Outcome_OUTCOME_OK || res.Seq != seq || res.Duplicates != 0 {
			t.Fatalf("probe %d: %v", seq, res)
		}
		if !ports[res.SrcPort] || res.SrcPort == last {
			t.Errorf("probe %d from port %d after %d; ports %v", seq, res.SrcPort, last, p.Ports())
		}
		last = res.SrcPort
		used[res.SrcPort]++
	}
	for port, n := range used {
		if n != 2 {
			t.Errorf("8 probes over 4 ports: %v (port %d)", used, port)
		}
	}
	if _, err := NewUDPProber(UDPProberConfig{Ports: MaxUDPPorts + 1}); err == nil {
		t.Errorf("%d ports accepted", MaxUDPPorts+1)
	}
}

// rawClient sends hand-made packets and reads whatever comes back.
type rawClient struct {
	t    *testing.T
	conn *net.UDPConn
	to   netip.AddrPort
}

func newRawClient(t *testing.T, to netip.AddrPort) *rawClient {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, conn: c, to: to}
}

func (c *rawClient) send(pkt []byte) {
	if _, err := c.conn.WriteToUDPAddrPort(pkt, c.to); err != nil {
		c.t.Fatal(err)
	}
}

// next returns the next datagram received.
func (c *rawClient) next() ([]byte, netip.AddrPort) {
	buf := make([]byte, 2048)
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, from, err := c.conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		c.t.Fatalf("no reply: %v", err)
	}
	return buf[:n], from
}

func signed(key []byte, dst netip.Addr, stream, seq uint64, sent time.Time, size int) []byte {
	s, err := newPacketSigner(key)
	if err != nil {
		panic(err)
	}
	pkt := appendRequest(nil, stream, seq, sent.UnixNano(), size)
	s.sign(dst, pkt)
	return pkt
}

// TestResponderRefuses sends each kind of bad packet, then a good one
// with a marker seq: the first datagram back must be the good one's reply,
// so none of the bad ones was answered; and each drop is counted.
func TestResponderRefuses(t *testing.T) {
	dst := netip.MustParseAddr("127.0.0.21")
	now := time.Now()
	good := func(seq uint64) []byte { return signed(testKey, dst, 7, seq, now, MinPacketLen) }
	tests := []struct {
		name   string
		bad    func() [][]byte
		reason string
		cfg    ResponderConfig
	}{
		{"forged", func() [][]byte { return [][]byte{signed([]byte("not the fleet key at all"), dst, 7, 1, now, 100)} }, DropBadMAC, ResponderConfig{}},
		{"signed for another address", func() [][]byte {
			return [][]byte{signed(testKey, netip.MustParseAddr("127.0.0.22"), 7, 1, now, 100)}
		}, DropBadMAC, ResponderConfig{}},
		{"tampered", func() [][]byte { p := good(1); p[19] ^= 1; return [][]byte{p} }, DropBadMAC, ResponderConfig{}},
		{"stale", func() [][]byte { return [][]byte{signed(testKey, dst, 7, 1, now.Add(-time.Minute), 100)} }, DropStale, ResponderConfig{}},
		{"future", func() [][]byte { return [][]byte{signed(testKey, dst, 7, 1, now.Add(time.Minute), 100)} }, DropStale, ResponderConfig{}},
		{"replayed", func() [][]byte { return [][]byte{good(1), good(1), good(1)} }, DropReplay, ResponderConfig{}},
		{"short", func() [][]byte { return [][]byte{good(1)[:MinPacketLen-1], {}} }, DropMalformed, ResponderConfig{}},
		// Correctly signed, but over one frame: never answered, so no probe
		// can make the responder send a large datagram.
		{"oversized", func() [][]byte {
			big := append(appendRequest(nil, 7, 1, now.UnixNano(), MaxPacketLen), make([]byte, 100)...)
			s, _ := newPacketSigner(testKey)
			s.sign(dst, big)
			if !s.verify(dst, big) {
				panic("the oversized probe's MAC does not verify: the case would test the MAC, not the size")
			}
			return [][]byte{big, make([]byte, MaxPacketLen+100)}
		}, DropMalformed, ResponderConfig{}},
		// The packet has no length field to lie about: a reply is as long
		// as its request (TestResponderReplyNeverLarger). Padding a signed
		// request to grow the reply breaks the MAC.
		{"padded after signing", func() [][]byte {
			p := good(1)
			grown := append(append(append([]byte(nil), p[:len(p)-macLen]...), make([]byte, 400)...), p[len(p)-macLen:]...)
			return [][]byte{grown}
		}, DropBadMAC, ResponderConfig{}},
		{"reply flag", func() [][]byte {
			p := good(1)
			toReply(p, 0)
			s, _ := newPacketSigner(testKey)
			s.sign(dst, p)
			return [][]byte{p}
		}, DropNotRequest, ResponderConfig{}},
		{"rate limited", func() [][]byte { return [][]byte{good(1), good(2), good(3), good(4)} }, DropRateLimited,
			ResponderConfig{RatePerSource: 0.001, BurstPerSource: 3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Addr, cfg.Keys = netip.AddrPortFrom(dst, 0).String(), [][]byte{testKey}
			r, _ := startResponder(t, cfg)
			c := newRawClient(t, r.Addr())
			bad := tc.bad()
			answered := 0
			for _, pkt := range bad {
				c.send(pkt)
			}
			if tc.reason == DropReplay || tc.reason == DropRateLimited {
				// The first copies are genuine and answered.
				answered = map[string]int{DropReplay: 1, DropRateLimited: 3}[tc.reason]
			}
			for range answered {
				reply, _ := c.next()
				if h, err := DecodePacket(reply); err != nil || !h.Reply {
					t.Fatalf("reply %x: %v", reply, err)
				}
			}
			if tc.reason != DropRateLimited {
				c.send(good(99))
				reply, from := c.next()
				h, err := DecodePacket(reply)
				if err != nil || h.Seq != 99 || !h.Reply || from.Addr() != dst {
					t.Fatalf("first datagram back is %+v from %v (%v), want the reply to seq 99", h, from, err)
				}
			}
			want := float64(len(bad) - answered)
			testkit.CheckFor(t, 30*time.Second, 5*time.Millisecond, func() error {
				if dropped(r, tc.reason) != want {
					return fmt.Errorf("waiting for %s drops: %v", tc.reason, dropped(r, tc.reason))
				}
				return nil
			})
			if tc.reason == DropRateLimited {
				// Dropped, so nothing more comes back.
				c.conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
				if n, _, err := c.conn.ReadFromUDPAddrPort(make([]byte, 2048)); err == nil {
					t.Fatalf("a rate-limited probe was answered (%d bytes)", n)
				}
			}
		})
	}
}

// TestTraceBack: a prober asks a peer's responder to trace the reply to
// its lost probe back. The responder hands the request, never answered,
// to its agent with the prober's address, the address the request came to
// and its own port; a UDP probe's request leaves from the probe's socket,
// so that it takes the probe's way. A responder whose agent does not
// trace, or a request without the fleet key, gets nothing.
func TestTraceBack(t *testing.T) {
	type call struct {
		from, local netip.Addr
		port        uint16
		tb          TraceBack
	}
	calls := make(chan call, 4)
	r, _ := startResponder(t, ResponderConfig{Addr: "127.0.0.21:0", Keys: [][]byte{testKey},
		TraceBack: func(from, local netip.Addr, port uint16, tb TraceBack) { calls <- call{from, local, port, tb} }})
	p := startUDPProber(t, UDPProberConfig{Local: netip.MustParseAddr("127.0.0.22"), Key: testKey})
	port := uint16(p.Ports()[3])
	want := TraceBack{Protocol: wire.Protocol_PROTOCOL_UDP, Port: port, ProbeStartUnixNano: time.Now().UnixNano()}
	if err := p.TraceBack(r.Addr(), want); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-calls:
		if c.from != netip.MustParseAddr("127.0.0.22") || c.local != netip.MustParseAddr("127.0.0.21") || c.port != r.Addr().Port() || c.tb != want {
			t.Errorf("trace-back %+v, want from 127.0.0.22 to 127.0.0.21:%d for %+v", c, r.Addr().Port(), want)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no trace-back request reached the agent")
	}
	if got := testutil.ToFloat64(r.replies.WithLabelValues("udp")); got != 0 {
		t.Errorf("%v replies to a trace-back request", got)
	}
	if got := testutil.ToFloat64(r.traceBacks); got != 1 {
		t.Errorf("meshlens_responder_trace_backs_total %v", got)
	}
	// The request leaves from the probe's own socket: its port.
	sink, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.24:0")))
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	if err := p.TraceBack(sink.LocalAddr().(*net.UDPAddr).AddrPort(), want); err != nil {
		t.Fatal(err)
	}
	sink.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, MaxPacketLen)
	n, from, err := sink.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	if h, err := DecodePacket(buf[:n]); err != nil || h.TraceBack == nil || from.Port() != port {
		t.Errorf("request from port %d (want %d): %+v, %v", from.Port(), port, h, err)
	}

	off, _ := startResponder(t, ResponderConfig{Addr: "127.0.0.23:0", Keys: [][]byte{testKey}})
	stranger := startUDPProber(t, UDPProberConfig{Local: netip.MustParseAddr("127.0.0.22"), Key: []byte("another key, 32 bytes long......")})
	if err := p.TraceBack(off.Addr(), want); err != nil {
		t.Fatal(err)
	}
	if err := stranger.TraceBack(r.Addr(), want); err != nil {
		t.Fatal(err)
	}
	testkit.CheckFor(t, 30*time.Second, 5*time.Millisecond, func() error {
		if dropped(off, DropTraceBackOff) != 1 || dropped(r, DropBadMAC) != 1 {
			return fmt.Errorf("dropped: trace_back_off %v, bad_mac %v", dropped(off, DropTraceBackOff), dropped(r, DropBadMAC))
		}
		return nil
	})
	select {
	case c := <-calls:
		t.Errorf("unauthenticated trace-back reached the agent: %+v", c)
	default:
	}
}

// TestReverseTraceReachesTheProber: a peer's reverse trace of a lost
// probe ends at the prober's socket as a signed echo request; the prober
// counts it and never answers it, and an unsigned one is bogus.
func TestReverseTraceReachesTheProber(t *testing.T) {
	p := startUDPProber(t, UDPProberConfig{Local: netip.MustParseAddr("127.0.0.25"), Key: testKey})
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.25"), uint16(p.Ports()[0]))))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, _ := newPacketSigner(testKey)
	signed := appendRequest(nil, 9, 1, time.Now().UnixNano(), MinPacketLen)
	s.sign(netip.MustParseAddr("127.0.0.25"), signed)
	unsigned := appendRequest(nil, 9, 2, time.Now().UnixNano(), MinPacketLen)
	for _, b := range [][]byte{signed, unsigned} {
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	testkit.CheckFor(t, 30*time.Second, 5*time.Millisecond, func() error {
		if r, b := testutil.ToFloat64(p.reverseTraces), testutil.ToFloat64(p.bogus); r != 1 || b != 1 {
			return fmt.Errorf("reverse traces %v, bogus %v", r, b)
		}
		return nil
	})
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := c.Read(make([]byte, MaxPacketLen)); err == nil {
		t.Errorf("the prober answered with %d bytes", n)
	}
}

func TestResponderReplyNeverLarger(t *testing.T) {
	dst := netip.MustParseAddr("127.0.0.23")
	r, _ := startResponder(t, ResponderConfig{Addr: "127.0.0.23:0", Keys: [][]byte{testKey}})
	c := newRawClient(t, r.Addr())
	for i, size := range []int{MinPacketLen, 100, 512, MaxPacketLen} {
		req := signed(testKey, dst, 9, uint64(i+1), time.Now(), size)
		c.send(req)
		reply, _ := c.next()
		if len(reply) != len(req) {
			t.Errorf("request of %d bytes got a reply of %d", len(req), len(reply))
		}
		s, _ := newPacketSigner(testKey)
		if !s.verify(dst, reply) {
			t.Errorf("reply of %d bytes is not signed by the fleet key", len(reply))
		}
		// The responder says how long it held the probe (kernel arrival
		// to reply), for the prober to subtract.
		if h, err := DecodePacket(reply); err != nil || h.Held <= 0 || h.Held > 10*time.Second {
			t.Errorf("reply held %v (%v)", h.Held, err)
		}
	}
}

func TestResponderKeyRotation(t *testing.T) {
	newKey := []byte("the next fleet key, 32 bytes long")
	r, _ := startResponder(t, ResponderConfig{Addr: "127.0.0.24:0", Keys: [][]byte{testKey}})
	p := startUDPProber(t, UDPProberConfig{Local: netip.MustParseAddr("127.0.0.1"), Key: newKey})
	target := Target{Name: "peer", Protocol: wire.Protocol_PROTOCOL_UDP, Addr: r.Addr(), Timeout: 300 * time.Millisecond}
	if res := p.Probe(context.Background(), target); res.Outcome != wire.Outcome_OUTCOME_LOST {
		t.Fatalf("before rotation: %v", res.Outcome)
	}
	if err := r.SetKeys([][]byte{newKey, testKey}); err != nil {
		t.Fatal(err)
	}
	if res := p.Probe(context.Background(), target); res.Outcome != wire.Outcome_OUTCOME_OK {
		t.Fatalf("after rotation: %v %s", res.Outcome, res.Error)
	}
	if err := r.SetKeys([][]byte{[]byte("short")}); err == nil {
		t.Error("short key accepted")
	}
}

// TestUDPDuplicatesAndReordering plays the responder by hand, so it can
// answer twice and out of order.
func TestUDPDuplicatesAndReordering(t *testing.T) {
	peerConn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.25:0")))
	if err != nil {
		t.Fatal(err)
	}
	defer peerConn.Close()
	peer := peerConn.LocalAddr().(*net.UDPAddr).AddrPort()
	p := startUDPProber(t, UDPProberConfig{Local: netip.MustParseAddr("127.0.0.1"), Key: testKey})
	target := Target{Name: "peer", Protocol: wire.Protocol_PROTOCOL_UDP, Addr: peer, Timeout: 2 * time.Second}

	var mu sync.Mutex
	results := map[uint64]*wire.ProbeResult{}
	all := make(chan struct{})
	for range 2 {
		p.Start(context.Background(), target, func(r *wire.ProbeResult) {
			mu.Lock()
			defer mu.Unlock()
			results[r.Seq] = r
			if len(results) == 2 {
				close(all)
			}
		})
	}
	// Receive both requests, then answer seq 2, seq 1, seq 1 again.
	reqs := map[uint64][]byte{}
	var from netip.AddrPort
	for len(reqs) < 2 {
		buf := make([]byte, 2048)
		n, f, err := peerConn.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatal(err)
		}
		h, err := DecodePacket(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		reqs[h.Seq], from = buf[:n], f
	}
	s, _ := newPacketSigner(testKey)
	for _, seq := range []uint64{2, 1, 1} {
		pkt := append([]byte(nil), reqs[seq]...)
		toReply(pkt, 0)
		s.sign(peer.Addr(), pkt)
		if _, err := peerConn.WriteToUDPAddrPort(pkt, from); err != nil {
			t.Fatal(err)
		}
	}
	<-all
	if r := results[2]; r.Outcome != wire.Outcome_OUTCOME_OK || r.Reordered || r.Duplicates != 0 {
		t.Errorf("seq 2: %v", r)
	}
	if r := results[1]; r.Outcome != wire.Outcome_OUTCOME_OK || !r.Reordered || r.Duplicates != 1 {
		t.Errorf("seq 1: %v", r)
	}
}

func TestResponderTCPConnectionCaps(t *testing.T) {
	r, _ := startResponder(t, ResponderConfig{Addr: "127.0.0.26:0", MaxConnsPerSource: 2, IdleTimeout: time.Minute})
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// Connections are accepted once they carry data.
	for range 2 {
		c, err := net.Dial("tcp", r.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	testkit.CheckFor(t, 30*time.Second, 5*time.Millisecond, func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		if len(r.conns) != 2 {
			return errors.New("waiting for two held connections")
		}
		return nil
	})
	// The third is accepted by the kernel, then reset by the responder:
	// the reset may even beat the end of the client's connect.
	if c, err := net.Dial("tcp", r.Addr().String()); err == nil {
		defer c.Close()
		c.Write([]byte("x"))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("third connection from one source was served")
		}
	}
	testkit.CheckFor(t, 30*time.Second, 5*time.Millisecond, func() error {
		if dropped(r, DropTCPSourceLimit) != 1 {
			return errors.New("waiting for source limit drop")
		}
		return nil
	})
}

func TestResponderClosesIdleConnections(t *testing.T) {
	r, _ := startResponder(t, ResponderConfig{Addr: "127.0.0.27:0", IdleTimeout: 50 * time.Millisecond})
	c, err := net.Dial("tcp", r.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("idle connection not closed")
	}
}

func TestNewResponderErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  ResponderConfig
	}{
		{"no port", ResponderConfig{Addr: "127.0.0.1"}},
		{"not local", ResponderConfig{Addr: "192.0.2.1:0"}},
		{"short key", ResponderConfig{Addr: "127.0.0.1:0", Keys: [][]byte{[]byte("short")}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if r, err := NewResponder(tc.cfg); err == nil {
				r.Close()
				t.Fatal("no error")
			}
		})
	}
}

func TestTwoRespondersOneMachine(t *testing.T) {
	a, _ := startResponder(t, ResponderConfig{Addr: "127.0.0.31:0", Keys: [][]byte{testKey}})
	port := a.Addr().Port()
	b, _ := startResponder(t, ResponderConfig{Addr: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.32"), port).String(), Keys: [][]byte{testKey}})
	p := startUDPProber(t, UDPProberConfig{Key: testKey})
	for _, r := range []*Responder{a, b} {
		res := p.Probe(context.Background(), Target{Name: "x", Protocol: wire.Protocol_PROTOCOL_UDP, Addr: r.Addr(), Timeout: time.Second})
		if res.Outcome != wire.Outcome_OUTCOME_OK {
			t.Errorf("%v: %v", r.Addr(), res.Outcome)
		}
	}
}
