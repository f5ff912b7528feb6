package probe

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/clock"
	"github.com/meshlens/meshlens/internal/wire"
)

func TestDecodePacket(t *testing.T) {
	good := appendRequest(nil, 1, 2, 3, MinPacketLen)
	tests := []struct {
		name string
		pkt  []byte
		ok   bool
	}{
		{"minimal", good, true},
		{"padded", appendRequest(nil, 1, 2, 3, 200), true},
		{"short", good[:MinPacketLen-1], false},
		{"long", make([]byte, MaxPacketLen+1), false},
		{"magic", append([]byte{'X'}, good[1:]...), false},
		{"version", append([]byte{'M', 'L', 2}, good[3:]...), false},
		{"flags", append([]byte{'M', 'L', 1, 4}, good[4:]...), false},
		{"reply and trace-back", append([]byte{'M', 'L', 1, 3}, good[4:]...), false},
		{"trace-back without its fields", append([]byte{'M', 'L', 1, 2}, good[4:]...), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := DecodePacket(tc.pkt)
			if (err == nil) != tc.ok {
				t.Fatalf("err %v", err)
			}
			if tc.ok && (h.Stream != 1 || h.Seq != 2 || h.SentUnixNano != 3 || h.Reply) {
				t.Errorf("%+v", h)
			}
		})
	}
}

// TestDecodeTraceBack: a trace-back request names its lost probe, and
// one naming no probe of a traced protocol is malformed.
func TestDecodeTraceBack(t *testing.T) {
	tb := TraceBack{Protocol: wire.Protocol_PROTOCOL_TCP, Port: 40123, ProbeStartUnixNano: 1_700_000_000_123_456_789}
	h, err := DecodePacket(appendTraceBack(nil, 1, 2, 3, tb))
	if err != nil || h.TraceBack == nil || *h.TraceBack != tb || h.Reply || h.Stream != 1 || h.Seq != 2 {
		t.Fatalf("%+v %+v, %v", h, h.TraceBack, err)
	}
	for name, bad := range map[string]TraceBack{
		"icmp":     {Protocol: wire.Protocol_PROTOCOL_ICMP, Port: 1, ProbeStartUnixNano: 1},
		"no port":  {Protocol: wire.Protocol_PROTOCOL_UDP, ProbeStartUnixNano: 1},
		"no start": {Protocol: wire.Protocol_PROTOCOL_UDP, Port: 1},
	} {
		if _, err := DecodePacket(appendTraceBack(nil, 1, 2, 3, bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzDecodePacket(f *testing.F) {
	s, _ := newPacketSigner(testKey)
	dst := netip.MustParseAddr("127.0.0.1")
	for _, size := range []int{MinPacketLen, 100, MaxPacketLen} {
		p := appendRequest(nil, 42, 7, time.Now().UnixNano(), size)
		s.sign(dst, p)
		f.Add(p)
	}
	tb := appendTraceBack(nil, 42, 8, time.Now().UnixNano(), TraceBack{Protocol: wire.Protocol_PROTOCOL_UDP, Port: 40000, ProbeStartUnixNano: 1})
	s.sign(dst, tb)
	f.Add(tb)
	f.Add([]byte("ML"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := DecodePacket(b)
		if err != nil {
			return
		}
		// A decoded header re-encodes to the same bytes.
		again := appendRequest(nil, h.Stream, h.Seq, h.SentUnixNano, h.Len)
		n := headerLen
		switch {
		case h.Reply:
			toReply(again, h.Held)
		case h.TraceBack != nil:
			again, n = appendTraceBack(nil, h.Stream, h.Seq, h.SentUnixNano, *h.TraceBack), headerLen+traceBackLen
		}
		if !bytes.Equal(again[:n], b[:n]) {
			t.Fatalf("header %x re-encodes as %x", b[:n], again[:n])
		}
	})
}

// FuzzResponderAdmit feeds arbitrary datagrams to the responder's
// admission: it must never panic, and never admit a packet that does not
// carry the fleet key's MAC.
func FuzzResponderAdmit(f *testing.F) {
	dst := netip.MustParseAddr("127.0.0.1")
	now := time.Unix(1_700_000_000, 0)
	s, _ := newPacketSigner(testKey)
	p := appendRequest(nil, 42, 7, now.UnixNano(), 64)
	s.sign(dst, p)
	f.Add(p)
	f.Add(make([]byte, MinPacketLen))
	f.Fuzz(func(t *testing.T, b []byte) {
		keys := [][]byte{testKey}
		r := &Responder{cfg: ResponderConfig{ReplayWindow: 30 * time.Second, RatePerSource: 100, BurstPerSource: 200,
			Clock: clock.NewVirtual(now)}, buckets: map[netip.Addr]*tokenBucket{}}
		r.keys.Store(&keys)
		src := netip.MustParseAddrPort("127.0.0.2:4000")
		if r.admitUDP(b, dst, udpAddr(src)) == "" {
			v, _ := newPacketSigner(testKey)
			if !v.verify(dst, b) {
				t.Fatalf("admitted an unsigned packet %x", b)
			}
		}
	})
}

func udpAddr(a netip.AddrPort) *net.UDPAddr { return net.UDPAddrFromAddrPort(a) }

// testAdmitter is a responder's UDP admission on a virtual clock, with the
// default limits, for tests that send many datagrams without sockets.
func testAdmitter(now time.Time) (*Responder, *clock.Virtual) {
	clk := clock.NewVirtual(now)
	keys := [][]byte{testKey}
	r := &Responder{cfg: ResponderConfig{ReplayWindow: 30 * time.Second, RatePerSource: 100, BurstPerSource: 200, Clock: clk},
		buckets: map[netip.Addr]*tokenBucket{}}
	r.keys.Store(&keys)
	return r, clk
}

// TestResponderFloodIsTheFloodersLoss: a holder of the fleet key floods a
// responder with signed probes. From one address, 262,154 of them once
// filled the replay cache and every other peer's probes were refused for
// two minutes; from 70,000 spoofed addresses, the rate limiter's map. Now
// the flood is its sender's loss: a peer probing once a second through it
// gets every answer.
func TestResponderFloodIsTheFloodersLoss(t *testing.T) {
	dst := netip.MustParseAddr("127.0.0.1")
	start := time.Unix(1_700_000_000, 0)
	s, _ := newPacketSigner(testKey)
	probe := func(r *Responder, clk *clock.Virtual, src netip.Addr, stream, seq uint64) string {
		p := appendRequest(nil, stream, seq, clk.Now().UnixNano(), MinPacketLen)
		s.sign(dst, p)
		return r.admitUDP(p, dst, udpAddr(netip.AddrPortFrom(src, 4000)))
	}
	peer := netip.MustParseAddr("127.0.0.9")

	t.Run("one source", func(t *testing.T) {
		r, clk := testAdmitter(start)
		attacker := netip.MustParseAddr("127.0.0.66")
		refused := map[string]int{}
		peerSeq := uint64(0)
		// 262,154 probes over 130 s (2,000/s), the peer's one a second.
		for i := range 262_154 {
			if i%2000 == 0 {
				clk.Advance(time.Second)
				peerSeq++
				if why := probe(r, clk, peer, 7, peerSeq); why != "" {
					t.Fatalf("second %d of the flood: the peer's probe refused: %s", i/2000, why)
				}
			}
			refused[probe(r, clk, attacker, 1, uint64(i+1))]++
		}
		if refused[""] > 200+100*131 || refused[DropRateLimited] == 0 {
			t.Errorf("flooder's probes: %v; want at most its rate answered", refused)
		}
		if n := len(r.replay.cur) + len(r.replay.prev); n >= replayShared {
			t.Errorf("replay cache at %d entries", n)
		}
	})

	t.Run("spoofed sources", func(t *testing.T) {
		r, clk := testAdmitter(start)
		for i := range 70_000 {
			src := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
			probe(r, clk, src, 1, uint64(i+1))
		}
		// Full of sources that each sent once; a second later they have
		// refilled and give way.
		clk.Advance(1100 * time.Millisecond)
		if why := probe(r, clk, peer, 7, 1); why != "" {
			t.Fatalf("after 70,000 spoofed sources: the peer's probe refused: %s", why)
		}
	})

	t.Run("many heavy sources", func(t *testing.T) {
		// Past replayShared entries, a source over its fair share is
		// refused, one under it is not.
		var c replayCache
		now := start
		heavy := 40
		for i := range replayShared + 10_000 {
			src := netip.AddrFrom4([4]byte{10, 0, 0, byte(i % heavy)})
			c.add(replayKey{dst: dst, stream: 1, seq: uint64(i)}, src, now, time.Minute)
		}
		if got := c.add(replayKey{dst: dst, stream: 1, seq: 1 << 40}, netip.AddrFrom4([4]byte{10, 0, 0, 1}), now, time.Minute); got != replayFull {
			t.Errorf("a heavy source past the shared room: %d, want replayFull", got)
		}
		for seq := range uint64(100) {
			if got := c.add(replayKey{dst: dst, stream: 7, seq: seq}, peer, now, time.Minute); got != replayNew {
				t.Fatalf("a light source's probe %d: %d, want replayNew", seq, got)
			}
		}
		if n := len(c.cur) + len(c.prev); n > replayHard {
			t.Errorf("%d entries, more than %d", n, replayHard)
		}
	})
}
