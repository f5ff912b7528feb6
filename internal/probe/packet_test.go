package probe

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/clock"
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

func FuzzDecodePacket(f *testing.F) {
	s, _ := newPacketSigner(testKey)
	dst := netip.MustParseAddr("127.0.0.1")
	for _, size := range []int{MinPacketLen, 100, MaxPacketLen} {
		p := appendRequest(nil, 42, 7, time.Now().UnixNano(), size)
		s.sign(dst, p)
		f.Add(p)
	}
	f.Add([]byte("ML"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := DecodePacket(b)
		if err != nil {
			return
		}
		// A decoded header re-encodes to the same bytes.
		again := appendRequest(nil, h.Stream, h.Seq, h.SentUnixNano, h.Len)
		if h.Reply {
			toReply(again, h.Held)
		}
		if !bytes.Equal(again[:headerLen], b[:headerLen]) {
			t.Fatalf("header %x re-encodes as %x", b[:headerLen], again[:headerLen])
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
