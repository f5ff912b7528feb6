package probe

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/clock"
	"github.com/meshlens/meshlens/internal/wire"
)

// BenchmarkResponderAdmit is the responder's per-datagram work before the
// reply: decode, freshness, HMAC, replay cache, rate limit.
func BenchmarkResponderAdmit(b *testing.B) {
	dst := netip.MustParseAddr("127.0.0.1")
	now := time.Unix(1_700_000_000, 0)
	keys := [][]byte{testKey}
	clk := clock.NewVirtual(now)
	r := &Responder{cfg: ResponderConfig{ReplayWindow: 30 * time.Second, RatePerSource: 1e9, BurstPerSource: 1e9,
		Clock: clk}, buckets: map[netip.Addr]*tokenBucket{}}
	r.keys.Store(&keys)
	s, _ := newPacketSigner(testKey)
	src := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 4000}
	pkt := appendRequest(nil, 1, 0, now.UnixNano(), MinPacketLen)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		// A fresh seq each time, as real traffic has, 1,000 a second: the
		// replay cache holds two minutes of them, as it does a busy peer's.
		clk.Advance(time.Millisecond)
		pkt = appendRequest(pkt, 1, uint64(i+1), clk.Now().UnixNano(), MinPacketLen)
		s.sign(dst, pkt)
		if reason := r.admitUDP(pkt, dst, src); reason != "" {
			b.Fatal(reason)
		}
	}
}

// BenchmarkTCPProbe is one connect-and-reset to a local responder, end to
// end (both sides' kernel work lands here on loopback).
func BenchmarkTCPProbe(b *testing.B) {
	r, _ := startResponderB(b)
	p, err := NewTCPProber(TCPProberConfig{})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	target := Target{Name: "peer", Protocol: wire.Protocol_PROTOCOL_TCP, Addr: r.Addr(), Timeout: time.Second}
	b.ReportAllocs()
	for b.Loop() {
		if res := p.Probe(context.Background(), target); res.Outcome != wire.Outcome_OUTCOME_OK {
			b.Fatal(res.Outcome, res.Error)
		}
	}
}

// BenchmarkUDPProbeSend is the prober's cost to send one signed echo
// (the reply is matched by the reader; results come at the deadline).
func BenchmarkUDPProbeSend(b *testing.B) {
	r, _ := startResponderB(b)
	p, err := NewUDPProber(UDPProberConfig{Key: testKey})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	target := Target{Name: "peer", Protocol: wire.Protocol_PROTOCOL_UDP, Addr: r.Addr(), Timeout: 50 * time.Millisecond}
	b.ReportAllocs()
	for b.Loop() {
		p.Start(context.Background(), target, func(*wire.ProbeResult) {})
	}
}

func startResponderB(b *testing.B) (*Responder, func()) {
	r, err := NewResponder(ResponderConfig{Addr: "127.0.0.51:0", Keys: [][]byte{testKey}, RatePerSource: 1e9, BurstPerSource: 1e9})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	stop := func() { cancel(); <-done }
	b.Cleanup(stop)
	return r, stop
}
