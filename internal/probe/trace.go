package probe

// Paris traceroute: the packets and the matching of their answers.
//
// A trace probe is a TCP SYN or a UDP datagram with exactly the 5-tuple of
// the probe it explains, so that ECMP (which hashes addresses, protocol
// and ports) puts it on the same path. Only the TTL and fields no ECMP
// hash reads vary from one TTL to the next: the IP ID, and the TCP
// sequence number or the UDP payload (and so its checksum). A router that
// drops the probe for its TTL quotes the IP header and the first 8 bytes
// of the L4 header in its ICMP time-exceeded; the IP ID and the TCP
// sequence number or UDP length and checksum found there name the probe
// (and its TTL) among every trace in flight. This file is pure: building
// packets, parsing answers, matching them; the sockets are in
// trace_linux.go.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Tracer defaults.
const (
	// DefaultTraceMaxTTL covers a folded Clos: host, ToR, leaf, spine,
	// leaf, ToR, host is 6 hops; 8 leaves room for a WAN hop.
	DefaultTraceMaxTTL = 8
	// DefaultTraceHopTimeout: routers answer from their slow path, in
	// milliseconds when healthy; a second is silence.
	DefaultTraceHopTimeout = time.Second
	// DefaultTraceInFlight TTLs are sent at once: a 6-hop trace takes
	// about two hop round trips, not six.
	DefaultTraceInFlight = 4
	// DefaultTraceConcurrency bounds traces in flight (and so memory).
	DefaultTraceConcurrency = 32
	// DefaultTraceQueries is how many times a TTL is sent before it counts
	// as silent, as traceroute's three queries per hop: a lossy link hides
	// the hops behind it (their packets and answers cross it), so with one
	// query the traces that crossed it were the uncertain ones and the
	// traces of replies it lost, over a healthy sibling, the certain ones.
	// Only a silent TTL before one that answered is sent again: a silent
	// tail is where a dead path goes dark.
	DefaultTraceQueries = 3
)

// Protocol numbers and ICMP types the tracer deals in.
const (
	ipProtoICMP = 1
	ipProtoTCP  = 6
	ipProtoUDP  = 17

	icmpDestUnreachable = 3
	icmpTimeExceeded    = 11
	icmpPortUnreachable = 3 // code of icmpDestUnreachable

	tcpFlagRST = 0x04
	tcpFlagSYN = 0x02
	tcpFlagACK = 0x10
)

// Why an answer on the tracer's sockets is dropped, besides DropMalformed
// (not a well-formed IPv4 ICMP error, TCP or UDP answer); the tracer
// counts them by these labels.
const (
	// DropLate: answers a trace packet already answered or given up on
	// (a duplicate, a router slower than the timeout, the destination
	// answering a TTL sent past it).
	DropLate = "late"
	// DropUnmatched: names no trace packet in flight (late, foreign, spoofed).
	DropUnmatched = "unmatched"
	// DropMismatched: names a packet in flight but quotes other contents
	// (its TCP sequence number or UDP length and checksum): spoofed.
	DropMismatched = "mismatched"
	// DropUnverified: a udp echo reply whose signature does not check.
	DropUnverified = "unverified"
)

var errMalformed = errors.New("malformed")

// traceKey names one trace packet: its flow, protocol and IP ID. Replies
// are looked up by it.
type traceKey struct {
	src, dst     [4]byte
	proto        uint8
	sport, dport uint16
	ipid         uint16
}

// ipv4Header is what the tracer reads of an IPv4 header.
type ipv4Header struct {
	hlen     int
	totalLen int
	id       uint16
	ttl      uint8
	proto    uint8
	src, dst [4]byte
}

// parseIPv4 reads an IPv4 header; b must hold at least the header.
func parseIPv4(b []byte) (ipv4Header, error) {
	if len(b) < 20 || b[0]>>4 != 4 {
		return ipv4Header{}, fmt.Errorf("probe: trace: not an IPv4 header: %w", errMalformed)
	}
	h := ipv4Header{hlen: int(b[0]&0x0f) * 4, totalLen: int(binary.BigEndian.Uint16(b[2:4])),
		id: binary.BigEndian.Uint16(b[4:6]), ttl: b[8], proto: b[9]}
	if h.hlen < 20 || len(b) < h.hlen {
		return ipv4Header{}, fmt.Errorf("probe: trace: IPv4 header length %d of %d bytes: %w", h.hlen, len(b), errMalformed)
	}
	copy(h.src[:], b[12:16])
	copy(h.dst[:], b[16:20])
	return h, nil
}

// traceAnswer is one parsed answer to a trace packet: a router's ICMP
// error quoting it, or the destination's TCP or UDP reply.
type traceAnswer struct {
	// from is who answered (the outer source address).
	from [4]byte
	// key names the trace packet answered.
	key traceKey
	// check is what must equal the packet's: the TCP sequence number, or
	// the UDP length<<16 | checksum. For the destination's replies: the TCP
	// ack-1, or the echo's sequence number's low 32 bits.
	check uint32
	// icmpType/Code for ICMP errors; 0 for replies of the destination.
	icmpType, icmpCode uint8
	// reply: the destination itself answered in TCP or UDP.
	reply bool
	// payload of a UDP reply (to verify its signature).
	payload []byte
}

// parseICMPError parses a whole IPv4 packet carrying an ICMP time-exceeded
// or destination-unreachable and the trace packet it quotes. Anything
// else is an error.
func parseICMPError(pkt []byte) (traceAnswer, error) {
	outer, err := parseIPv4(pkt)
	if err != nil {
		return traceAnswer{}, err
	}
	if outer.proto != ipProtoICMP {
		return traceAnswer{}, fmt.Errorf("probe: trace: protocol %d, not ICMP: %w", outer.proto, errMalformed)
	}
	m := pkt[outer.hlen:]
	if len(m) < 8 {
		return traceAnswer{}, fmt.Errorf("probe: trace: ICMP message of %d bytes: %w", len(m), errMalformed)
	}
	a := traceAnswer{from: outer.src, icmpType: m[0], icmpCode: m[1]}
	if a.icmpType != icmpTimeExceeded && a.icmpType != icmpDestUnreachable {
		return traceAnswer{}, fmt.Errorf("probe: trace: ICMP type %d: %w", a.icmpType, errMalformed)
	}
	q := m[8:]
	inner, err := parseIPv4(q)
	if err != nil {
		return traceAnswer{}, fmt.Errorf("probe: trace: quoted header: %w", err)
	}
	if inner.proto != ipProtoTCP && inner.proto != ipProtoUDP {
		return traceAnswer{}, fmt.Errorf("probe: trace: quoted protocol %d: %w", inner.proto, errMalformed)
	}
	l4 := q[inner.hlen:]
	if len(l4) < 8 {
		return traceAnswer{}, fmt.Errorf("probe: trace: quoted L4 header of %d bytes: %w", len(l4), errMalformed)
	}
	a.key = traceKey{src: inner.src, dst: inner.dst, proto: inner.proto,
		sport: binary.BigEndian.Uint16(l4[0:2]), dport: binary.BigEndian.Uint16(l4[2:4]), ipid: inner.id}
	a.check = binary.BigEndian.Uint32(l4[4:8])
	return a, nil
}

// parseTCPReply parses a whole IPv4 packet carrying a TCP SYN-ACK or RST
// that answers a trace SYN (it acknowledges seq+1).
func parseTCPReply(pkt []byte) (traceAnswer, error) {
	h, err := parseIPv4(pkt)
	if err != nil {
		return traceAnswer{}, err
	}
	if h.proto != ipProtoTCP {
		return traceAnswer{}, fmt.Errorf("probe: trace: protocol %d, not TCP: %w", h.proto, errMalformed)
	}
	t := pkt[h.hlen:]
	if len(t) < 20 {
		return traceAnswer{}, fmt.Errorf("probe: trace: TCP header of %d bytes: %w", len(t), errMalformed)
	}
	flags := t[13]
	if flags&tcpFlagACK == 0 || (flags&tcpFlagRST == 0 && flags&tcpFlagSYN == 0) {
		return traceAnswer{}, fmt.Errorf("probe: trace: TCP flags %#x answer no SYN: %w", flags, errMalformed)
	}
	seq := binary.BigEndian.Uint32(t[8:12]) - 1 // the SYN's sequence number
	return traceAnswer{from: h.src, reply: true, check: seq, key: traceKey{
		src: h.dst, dst: h.src, proto: ipProtoTCP,
		sport: binary.BigEndian.Uint16(t[2:4]), dport: binary.BigEndian.Uint16(t[0:2]), ipid: uint16(seq),
	}}, nil
}

// parseUDPEchoReply parses a whole IPv4 packet carrying a UDP datagram
// holding a meshlens echo reply to a trace request (its seq names the
// request's IP ID).
func parseUDPEchoReply(pkt []byte) (traceAnswer, error) {
	h, err := parseIPv4(pkt)
	if err != nil {
		return traceAnswer{}, err
	}
	if h.proto != ipProtoUDP {
		return traceAnswer{}, fmt.Errorf("probe: trace: protocol %d, not UDP: %w", h.proto, errMalformed)
	}
	u := pkt[h.hlen:]
	if len(u) < 8 {
		return traceAnswer{}, fmt.Errorf("probe: trace: UDP header of %d bytes: %w", len(u), errMalformed)
	}
	payload := u[8:]
	if ul := int(binary.BigEndian.Uint16(u[4:6])); ul >= 8 && ul-8 <= len(payload) {
		payload = payload[:ul-8]
	}
	p, err := DecodePacket(payload)
	if err != nil || !p.Reply {
		return traceAnswer{}, fmt.Errorf("probe: trace: not an echo reply: %w", errMalformed)
	}
	return traceAnswer{from: h.src, reply: true, check: uint32(p.Seq), payload: payload, key: traceKey{
		src: h.dst, dst: h.src, proto: ipProtoUDP,
		sport: binary.BigEndian.Uint16(u[2:4]), dport: binary.BigEndian.Uint16(u[0:2]), ipid: uint16(p.Seq),
	}}, nil
}

// buildIPv4 writes an IPv4 header for a trace packet of l4len bytes of
// protocol proto. The kernel fills in the header checksum (IP_HDRINCL);
// the don't-fragment bit is set, as on the probes themselves.
func buildIPv4(b []byte, src, dst [4]byte, proto, ttl uint8, id uint16, l4len int) {
	b[0] = 0x45
	b[1] = 0
	binary.BigEndian.PutUint16(b[2:4], uint16(20+l4len))
	binary.BigEndian.PutUint16(b[4:6], id)
	binary.BigEndian.PutUint16(b[6:8], 0x4000)
	b[8] = ttl
	b[9] = proto
	b[10], b[11] = 0, 0
	copy(b[12:16], src[:])
	copy(b[16:20], dst[:])
	binary.BigEndian.PutUint16(b[10:12], checksum(b[:20], 0))
}

// buildTCPSYN returns a whole IPv4 TCP SYN.
func buildTCPSYN(k traceKey, ttl uint8, seq uint32) []byte {
	b := make([]byte, 20+20)
	buildIPv4(b, k.src, k.dst, ipProtoTCP, ttl, k.ipid, 20)
	t := b[20:]
	binary.BigEndian.PutUint16(t[0:2], k.sport)
	binary.BigEndian.PutUint16(t[2:4], k.dport)
	binary.BigEndian.PutUint32(t[4:8], seq)
	t[12] = 5 << 4
	t[13] = tcpFlagSYN
	binary.BigEndian.PutUint16(t[14:16], 64240)
	binary.BigEndian.PutUint16(t[16:18], checksum(t, pseudoHeaderSum(k.src, k.dst, ipProtoTCP, len(t))))
	return b
}

// buildUDP returns a whole IPv4 UDP datagram and its length<<16|checksum,
// what a router quotes of it.
func buildUDP(k traceKey, ttl uint8, payload []byte) ([]byte, uint32) {
	b := make([]byte, 20+8+len(payload))
	buildIPv4(b, k.src, k.dst, ipProtoUDP, ttl, k.ipid, 8+len(payload))
	u := b[20:]
	binary.BigEndian.PutUint16(u[0:2], k.sport)
	binary.BigEndian.PutUint16(u[2:4], k.dport)
	binary.BigEndian.PutUint16(u[4:6], uint16(len(u)))
	copy(u[8:], payload)
	cs := checksum(u, pseudoHeaderSum(k.src, k.dst, ipProtoUDP, len(u)))
	if cs == 0 {
		cs = 0xffff // 0 would mean "no checksum"
	}
	binary.BigEndian.PutUint16(u[6:8], cs)
	return b, binary.BigEndian.Uint32(u[4:8])
}

func pseudoHeaderSum(src, dst [4]byte, proto uint8, l4len int) uint32 {
	s := uint32(binary.BigEndian.Uint16(src[0:2])) + uint32(binary.BigEndian.Uint16(src[2:4])) +
		uint32(binary.BigEndian.Uint16(dst[0:2])) + uint32(binary.BigEndian.Uint16(dst[2:4]))
	return s + uint32(proto) + uint32(l4len)
}

// checksum is the Internet checksum of b, starting from sum.
func checksum(b []byte, sum uint32) uint16 {
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// addr4 is a's 4 bytes; ok false for anything but IPv4.
func addr4(a netip.Addr) ([4]byte, bool) {
	a = a.Unmap()
	if !a.Is4() {
		return [4]byte{}, false
	}
	return a.As4(), true
}
