package probe

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"net/netip"
	"time"

	"github.com/meshlens/meshlens/internal/wire"
)

// The signed UDP echo packet. Layout (integers big-endian):
//
//	off  len  field
//	0    2    magic 0x4D 0x4C ("ML")
//	2    1    version, 1
//	3    1    flags: bit 0 (flagReply) is set on a reply; other bits must be 0
//	4    8    stream: random id of the sending prober (one per agent incarnation)
//	12   8    seq: sequence number within the (stream, peer) echo stream, from 1
//	20   8    sent: the sender's clock at sending, Unix nanoseconds
//	28   8    held: reply only (0 in a request): nanoseconds the responder
//	          held the probe, from its arrival in the responder's kernel to
//	          the reply's send
//	36   n    padding, any content, so a prober may send larger packets
//	36+n 16   mac: HMAC-SHA256 truncated to 16 bytes
//
// The MAC covers the 16-byte form of the probed IP address followed by bytes
// 0..36+n. Binding the probed address in means a captured probe cannot be
// replayed against another responder of the fleet, and a reply proves it
// came from the address that was probed. A reply is the request with
// flagReply set, held filled in and the MAC recomputed: exactly as long as
// the request, so the responder can never amplify. A responder drops
// anything carrying flagReply, so two responders cannot be made to talk to
// each other. With held, the prober subtracts the time the probe waited
// in a busy responder, so a starved peer host does not read as network
// latency (as TWAMP does).
//
// A trace-back request (flag bit 1, flagTraceBack, never with flagReply)
// asks the probed agent to trace the way its reply to a lost probe took
// back to the prober: the one path a traceroute from the prober cannot
// see. Its padding starts with the lost probe's protocol (1 byte, a
// wire.Protocol: TCP or UDP), source port (2) and start (8, Unix ns),
// which name the probe. The responder checks it as any request, never
// answers it, and traces only toward the address it came from, within
// its agent's trace budget.
const (
	packetVersion   = 1
	flagReply       = 1
	flagTraceBack   = 2
	traceBackLen    = 11 // protocol, port, start
	headerLen       = 36
	macLen          = 16
	MinPacketLen    = headerLen + macLen
	MaxPacketLen    = 1472 // one Ethernet frame of UDP over IPv4
	packetMagic0    = 'M'
	packetMagic1    = 'L'
	minKeyLen       = 16
	addrBindingSize = 16
)

// Packet is the decoded header of a probe packet.
type Packet struct {
	Reply bool
	// TraceBack is set on a trace-back request (see the layout above).
	TraceBack *TraceBack
	Stream    uint64
	Seq       uint64
	// SentUnixNano is the sender's clock when the request was sent.
	SentUnixNano int64
	// Held is how long the responder held the probe (replies only).
	Held time.Duration
	// Len is the whole packet's length, MAC included.
	Len int
}

// Reasons a packet is refused; the responder counts them by these labels.
var (
	ErrMalformed = errors.New("malformed packet")
	ErrBadMAC    = errors.New("bad mac")
)

// DecodePacket parses a packet's header. It does not check the MAC; see
// packetSigner.verify.
func DecodePacket(b []byte) (Packet, error) {
	if len(b) < MinPacketLen || len(b) > MaxPacketLen {
		return Packet{}, fmt.Errorf("probe: packet of %d bytes: %w", len(b), ErrMalformed)
	}
	if b[0] != packetMagic0 || b[1] != packetMagic1 {
		return Packet{}, fmt.Errorf("probe: packet magic %#x%02x: %w", b[0], b[1], ErrMalformed)
	}
	if b[2] != packetVersion {
		return Packet{}, fmt.Errorf("probe: packet version %d: %w", b[2], ErrMalformed)
	}
	if b[3]&^(flagReply|flagTraceBack) != 0 || b[3] == flagReply|flagTraceBack {
		return Packet{}, fmt.Errorf("probe: packet flags %#x: %w", b[3], ErrMalformed)
	}
	p := Packet{
		Reply:        b[3]&flagReply != 0,
		Stream:       binary.BigEndian.Uint64(b[4:]),
		Seq:          binary.BigEndian.Uint64(b[12:]),
		SentUnixNano: int64(binary.BigEndian.Uint64(b[20:])),
		Held:         time.Duration(binary.BigEndian.Uint64(b[28:])),
		Len:          len(b),
	}
	if p.Held < 0 || (!p.Reply && p.Held != 0) {
		return Packet{}, fmt.Errorf("probe: packet held %d: %w", p.Held, ErrMalformed)
	}
	if b[3]&flagTraceBack != 0 {
		if len(b) < MinPacketLen+traceBackLen {
			return Packet{}, fmt.Errorf("probe: trace-back request of %d bytes: %w", len(b), ErrMalformed)
		}
		tb := &TraceBack{Protocol: wire.Protocol(b[headerLen]), Port: binary.BigEndian.Uint16(b[headerLen+1:]),
			ProbeStartUnixNano: int64(binary.BigEndian.Uint64(b[headerLen+3:]))}
		if (tb.Protocol != wire.Protocol_PROTOCOL_TCP && tb.Protocol != wire.Protocol_PROTOCOL_UDP) || tb.Port == 0 || tb.ProbeStartUnixNano <= 0 {
			return Packet{}, fmt.Errorf("probe: trace-back request for %v port %d started %d: %w", tb.Protocol, tb.Port, tb.ProbeStartUnixNano, ErrMalformed)
		}
		p.TraceBack = tb
	}
	return p, nil
}

// TraceBack names the lost probe whose reply a trace-back request asks
// the probed agent to trace: its protocol, the prober's port, its start.
type TraceBack struct {
	Protocol           wire.Protocol
	Port               uint16
	ProbeStartUnixNano int64
}

// appendTraceBack builds an unsigned trace-back request into buf.
func appendTraceBack(buf []byte, stream, seq uint64, sentUnixNano int64, tb TraceBack) []byte {
	buf = appendRequest(buf, stream, seq, sentUnixNano, MinPacketLen+traceBackLen)
	buf[3] = flagTraceBack
	buf[headerLen] = byte(tb.Protocol)
	binary.BigEndian.PutUint16(buf[headerLen+1:], tb.Port)
	binary.BigEndian.PutUint64(buf[headerLen+3:], uint64(tb.ProbeStartUnixNano))
	return buf
}

// packetSigner signs and verifies packets with one key. It reuses its hash
// state, so it is not safe for concurrent use: each goroutine has its own.
type packetSigner struct {
	mac hash.Hash
	sum [sha256.Size]byte
}

func newPacketSigner(key []byte) (*packetSigner, error) {
	if len(key) < minKeyLen {
		return nil, fmt.Errorf("probe: fleet key of %d bytes, need at least %d", len(key), minKeyLen)
	}
	return &packetSigner{mac: hmac.New(sha256.New, key)}, nil
}

func (s *packetSigner) compute(dst netip.Addr, body []byte) []byte {
	s.mac.Reset()
	a := dst.As16()
	s.mac.Write(a[:])
	s.mac.Write(body)
	return s.mac.Sum(s.sum[:0])[:macLen]
}

// sign writes the MAC into the last macLen bytes of pkt.
func (s *packetSigner) sign(dst netip.Addr, pkt []byte) {
	n := len(pkt) - macLen
	copy(pkt[n:], s.compute(dst, pkt[:n]))
}

// verify reports whether pkt carries a valid MAC for dst, in constant time.
func (s *packetSigner) verify(dst netip.Addr, pkt []byte) bool {
	if len(pkt) < MinPacketLen {
		return false
	}
	n := len(pkt) - macLen
	return hmac.Equal(s.compute(dst, pkt[:n]), pkt[n:])
}

// appendRequest builds an unsigned request of total length size into buf.
func appendRequest(buf []byte, stream, seq uint64, sentUnixNano int64, size int) []byte {
	if size < MinPacketLen {
		size = MinPacketLen
	}
	if size > MaxPacketLen {
		size = MaxPacketLen
	}
	buf = append(buf[:0], packetMagic0, packetMagic1, packetVersion, 0)
	buf = binary.BigEndian.AppendUint64(buf, stream)
	buf = binary.BigEndian.AppendUint64(buf, seq)
	buf = binary.BigEndian.AppendUint64(buf, uint64(sentUnixNano))
	buf = binary.BigEndian.AppendUint64(buf, 0) // held
	for len(buf) < size {
		buf = append(buf, 0)
	}
	return buf
}

// toReply turns a verified request into a reply in place; sign it after.
func toReply(pkt []byte, held time.Duration) {
	pkt[3] |= flagReply
	binary.BigEndian.PutUint64(pkt[28:], uint64(max(held, 0)))
}
