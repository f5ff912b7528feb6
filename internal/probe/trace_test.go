package probe

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var (
	trSrc    = [4]byte{198, 18, 1, 1}
	trDst    = [4]byte{198, 18, 3, 2}
	trRouter = [4]byte{198, 18, 2, 2}
)

// icmpError wraps quoted (a whole IPv4 packet, cut to its header + n bytes
// of L4 as a router does) in an ICMP error from `from` to `to`.
func icmpError(from, to [4]byte, typ, code uint8, quoted []byte) []byte {
	m := make([]byte, 8+len(quoted))
	m[0], m[1] = typ, code
	copy(m[8:], quoted)
	binary.BigEndian.PutUint16(m[2:4], checksum(m, 0))
	b := make([]byte, 20+len(m))
	buildIPv4(b, from, to, ipProtoICMP, 64, 7, len(m))
	copy(b[20:], m)
	return b
}

func TestParseICMPError(t *testing.T) {
	k := traceKey{src: trSrc, dst: trDst, proto: ipProtoTCP, sport: 40001, dport: 7777, ipid: 42}
	syn := buildTCPSYN(k, 2, 0xabcd002a)
	uk := k
	uk.proto = ipProtoUDP
	udp, udpCheck := buildUDP(uk, 3, []byte("payload!"))
	withOptions := func(pkt []byte) []byte { // IHL 6: one word of IP options
		b := make([]byte, 0, len(pkt)+4)
		b = append(b, 0x46)
		b = append(b, pkt[1:20]...)
		b = append(b, 1, 1, 1, 0) // NOPs, end
		return append(b, pkt[20:]...)
	}
	cases := []struct {
		name      string
		pkt       []byte
		wantErr   bool
		wantKey   traceKey
		wantCheck uint32
		wantType  uint8
	}{
		{name: "tcp time exceeded", pkt: icmpError(trRouter, trSrc, icmpTimeExceeded, 0, syn[:28]),
			wantKey: k, wantCheck: 0xabcd002a, wantType: icmpTimeExceeded},
		{name: "tcp time exceeded, whole packet quoted", pkt: icmpError(trRouter, trSrc, icmpTimeExceeded, 0, syn),
			wantKey: k, wantCheck: 0xabcd002a, wantType: icmpTimeExceeded},
		{name: "udp port unreachable", pkt: icmpError(trDst, trSrc, icmpDestUnreachable, icmpPortUnreachable, udp[:28]),
			wantKey: uk, wantCheck: udpCheck, wantType: icmpDestUnreachable},
		{name: "quoted header with options", pkt: icmpError(trRouter, trSrc, icmpTimeExceeded, 0, withOptions(syn)[:32]),
			wantKey: k, wantCheck: 0xabcd002a, wantType: icmpTimeExceeded},
		{name: "quoted L4 cut short", pkt: icmpError(trRouter, trSrc, icmpTimeExceeded, 0, syn[:27]), wantErr: true},
		{name: "quoted header cut short", pkt: icmpError(trRouter, trSrc, icmpTimeExceeded, 0, syn[:19]), wantErr: true},
		{name: "echo reply", pkt: icmpError(trRouter, trSrc, 0, 0, syn[:28]), wantErr: true},
		{name: "quoted icmp", pkt: icmpError(trRouter, trSrc, icmpTimeExceeded, 0, icmpError(trSrc, trDst, 8, 0, nil)), wantErr: true},
		{name: "not icmp", pkt: syn, wantErr: true},
		{name: "ipv6 quoted", pkt: func() []byte {
			q := append([]byte(nil), syn[:28]...)
			q[0] = 0x65
			return icmpError(trRouter, trSrc, icmpTimeExceeded, 0, q)
		}(), wantErr: true},
		{name: "quoted IHL below 5", pkt: func() []byte {
			q := append([]byte(nil), syn[:28]...)
			q[0] = 0x44
			return icmpError(trRouter, trSrc, icmpTimeExceeded, 0, q)
		}(), wantErr: true},
		{name: "empty", pkt: nil, wantErr: true},
		{name: "icmp header cut short", pkt: icmpError(trRouter, trSrc, icmpTimeExceeded, 0, nil)[:24], wantErr: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, err := parseICMPError(c.pkt)
			if c.wantErr {
				if err == nil || !errors.Is(err, errMalformed) {
					t.Fatalf("err = %v, want malformed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if a.key != c.wantKey || a.check != c.wantCheck || a.icmpType != c.wantType || a.reply {
				t.Fatalf("got key %+v check %#x type %d reply %v, want %+v %#x %d", a.key, a.check, a.icmpType, a.reply, c.wantKey, c.wantCheck, c.wantType)
			}
			if a.from != [4]byte(c.pkt[12:16]) {
				t.Fatalf("from %v", a.from)
			}
		})
	}
}

func TestParseTCPReply(t *testing.T) {
	// A SYN-ACK from the destination to our SYN with seq 0x1234000a.
	synack := func(flags uint8, ack uint32) []byte {
		b := make([]byte, 40)
		buildIPv4(b, trDst, trSrc, ipProtoTCP, 64, 1, 20)
		binary.BigEndian.PutUint16(b[20:], 7777)
		binary.BigEndian.PutUint16(b[22:], 40001)
		binary.BigEndian.PutUint32(b[28:], ack)
		b[32] = 5 << 4
		b[33] = flags
		return b
	}
	want := traceKey{src: trSrc, dst: trDst, proto: ipProtoTCP, sport: 40001, dport: 7777, ipid: 0x000a}
	cases := []struct {
		name    string
		pkt     []byte
		wantErr bool
	}{
		{"syn-ack", synack(tcpFlagSYN|tcpFlagACK, 0x1234000b), false},
		{"rst-ack", synack(tcpFlagRST|tcpFlagACK, 0x1234000b), false},
		{"bare ack", synack(tcpFlagACK, 0x1234000b), true},
		{"rst without ack", synack(tcpFlagRST, 0x1234000b), true},
		{"cut short", synack(tcpFlagSYN|tcpFlagACK, 0x1234000b)[:39], true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, err := parseTCPReply(c.pkt)
			if (err != nil) != c.wantErr {
				t.Fatalf("err = %v, want error %v", err, c.wantErr)
			}
			if err == nil && (a.key != want || a.check != 0x1234000a || !a.reply) {
				t.Fatalf("got %+v", a)
			}
		})
	}
}

func TestParseUDPEchoReply(t *testing.T) {
	signer, err := newPacketSigner([]byte("0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	reply := appendRequest(nil, 99, 0x5555000c, 1, MinPacketLen)
	reply[3] = flagReply
	signer.sign(netip.AddrFrom4(trDst), reply)
	k := traceKey{src: trDst, dst: trSrc, proto: ipProtoUDP, sport: 7777, dport: 40001}
	pkt, _ := buildUDP(k, 64, reply)
	a, err := parseUDPEchoReply(pkt)
	if err != nil {
		t.Fatal(err)
	}
	want := traceKey{src: trSrc, dst: trDst, proto: ipProtoUDP, sport: 40001, dport: 7777, ipid: 0x000c}
	if a.key != want || a.check != 0x5555000c || !a.reply || !signer.verify(netip.AddrFrom4(trDst), a.payload) {
		t.Fatalf("got %+v", a)
	}
	request := appendRequest(nil, 99, 1, 1, MinPacketLen)
	if pkt, _ := buildUDP(k, 64, request); true {
		if _, err := parseUDPEchoReply(pkt); err == nil {
			t.Fatal("a request parsed as a reply")
		}
	}
}

func TestChecksumOfBuiltPackets(t *testing.T) {
	k := traceKey{src: trSrc, dst: trDst, proto: ipProtoTCP, sport: 1, dport: 2, ipid: 3}
	syn := buildTCPSYN(k, 1, 77)
	if checksum(syn[:20], 0) != 0 {
		t.Error("IPv4 header checksum does not verify")
	}
	if checksum(syn[20:], pseudoHeaderSum(trSrc, trDst, ipProtoTCP, 20)) != 0 {
		t.Error("TCP checksum does not verify")
	}
	udp, _ := buildUDP(k, 1, []byte{1, 2, 3})
	if checksum(udp[20:], pseudoHeaderSum(trSrc, trDst, ipProtoUDP, len(udp)-20)) != 0 {
		t.Error("UDP checksum does not verify")
	}
}

// TestDeliverMatches drives the matcher: answers reach the trace whose
// packet they quote, exactly once; the others are counted by reason.
func TestDeliverMatches(t *testing.T) {
	reg := prometheus.NewRegistry()
	tr := &Tracer{inflight: map[traceKey]*tracePacket{}, m: &traceMetrics{dropped: register(reg, prometheus.NewCounterVec(
		prometheus.CounterOpts{Name: "x_dropped_total"}, []string{"reason"}))}}
	k1 := traceKey{src: trSrc, dst: trDst, proto: ipProtoTCP, sport: 40001, dport: 7777, ipid: 10}
	k2 := k1
	k2.ipid = 11
	run1 := &traceRun{dst: trDst, events: make(chan traceEvent, 4)}
	run2 := &traceRun{dst: trDst, events: make(chan traceEvent, 4)}
	tr.inflight[k1] = &tracePacket{run: run1, ttl: 1, quoteCheck: 100, replyCheck: 100}
	tr.inflight[k2] = &tracePacket{run: run2, ttl: 3, quoteCheck: 101, replyCheck: 101}

	steps := []struct {
		name   string
		a      traceAnswer
		run    *traceRun
		want   traceEvent
		reason string
	}{
		{name: "spoofed: right key, wrong seq", a: traceAnswer{from: trRouter, key: k1, check: 999, icmpType: icmpTimeExceeded}, reason: DropMismatched},
		{name: "unknown flow", a: traceAnswer{from: trRouter, key: traceKey{ipid: 10}, check: 100, icmpType: icmpTimeExceeded}, reason: DropUnmatched},
		{name: "time exceeded for run1", a: traceAnswer{from: trRouter, key: k1, check: 100, icmpType: icmpTimeExceeded},
			run: run1, want: traceEvent{ttl: 1, from: netip.AddrFrom4(trRouter)}},
		{name: "duplicate", a: traceAnswer{from: trRouter, key: k1, check: 100, icmpType: icmpTimeExceeded}, reason: DropLate},
		{name: "spoofed after the answer: right key, wrong seq", a: traceAnswer{from: trRouter, key: k1, check: 7, icmpType: icmpTimeExceeded}, reason: DropUnmatched},
		{name: "syn-ack for run2", a: traceAnswer{from: trDst, key: k2, check: 101, reply: true},
			run: run2, want: traceEvent{ttl: 3, from: netip.AddrFrom4(trDst), reached: true}},
	}
	for _, s := range steps {
		before := testutil.ToFloat64(tr.m.dropped.WithLabelValues(s.reason))
		tr.deliver(s.a)
		if s.run == nil {
			if got := testutil.ToFloat64(tr.m.dropped.WithLabelValues(s.reason)) - before; got != 1 {
				t.Errorf("%s: %s count +%v, want +1", s.name, s.reason, got)
			}
			continue
		}
		select {
		case ev := <-s.run.events:
			if ev != s.want {
				t.Errorf("%s: event %+v, want %+v", s.name, ev, s.want)
			}
		default:
			t.Errorf("%s: no event", s.name)
		}
	}
	for _, r := range []*traceRun{run1, run2} {
		if len(r.events) != 0 {
			t.Errorf("stray event %+v", <-r.events)
		}
	}
	if len(tr.inflight) != 0 {
		t.Errorf("%d packets still in flight", len(tr.inflight))
	}
}

// FuzzParseTraceAnswer feeds anything to the parsers of the tracer's
// sockets: they must never panic, and what they accept must be coherent.
func FuzzParseTraceAnswer(f *testing.F) {
	k := traceKey{src: trSrc, dst: trDst, proto: ipProtoTCP, sport: 40001, dport: 7777, ipid: 42}
	syn := buildTCPSYN(k, 2, 0xabcd002a)
	f.Add(icmpError(trRouter, trSrc, icmpTimeExceeded, 0, syn[:28]))
	f.Add(icmpError(trRouter, trSrc, icmpDestUnreachable, 3, syn))
	f.Add(syn)
	u, _ := buildUDP(k, 3, make([]byte, MinPacketLen))
	f.Add(u)
	f.Add([]byte{0x4f})
	f.Fuzz(func(t *testing.T, b []byte) {
		if a, err := parseICMPError(b); err == nil {
			if a.icmpType != icmpTimeExceeded && a.icmpType != icmpDestUnreachable {
				t.Fatalf("accepted ICMP type %d", a.icmpType)
			}
			if a.key.proto != ipProtoTCP && a.key.proto != ipProtoUDP {
				t.Fatalf("accepted quoted protocol %d", a.key.proto)
			}
		}
		if a, err := parseTCPReply(b); err == nil && (!a.reply || a.key.proto != ipProtoTCP) {
			t.Fatalf("bad tcp answer %+v", a)
		}
		if a, err := parseUDPEchoReply(b); err == nil && (!a.reply || len(a.payload) < MinPacketLen) {
			t.Fatalf("bad udp answer %+v", a)
		}
	})
}
