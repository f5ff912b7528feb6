package probe

import (
	"container/heap"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshlens/meshlens/internal/clock"
	"github.com/meshlens/meshlens/internal/wire"
)

// UDPProberConfig configures a UDPProber.
type UDPProberConfig struct {
	// Local is the source address; invalid means any.
	Local netip.Addr
	// Key is the fleet key; without one, probes report OUTCOME_ERROR
	// until SetKey is called.
	Key []byte
	// Size of each probe packet, MinPacketLen..MaxPacketLen (default
	// MinPacketLen).
	Size int
	// Ports is how many sockets, so source ports, the probes rotate over
	// (default DefaultUDPPorts, at most MaxUDPPorts).
	Ports      int
	Clock      clock.Clock
	Registerer prometheus.Registerer
}

// UDPProber sends signed echoes to peers' responders and matches replies
// by (peer, seq). Each peer is one echo stream with its own sequence
// numbers, so loss, duplicates and reordering are per stream. A probe's
// result is reported at its deadline (sent + timeout), not at the first
// reply, so that duplicates arriving within the timeout are counted on the
// echo they copy.
//
// A peer's probes rotate over a few sockets, each its own source port: a
// flow of its own that ECMP hashes onto its own path, there and back. From
// one socket every probe of a pair takes the same two paths for as long as
// routing stands, so a lossy link is seen only by the pairs whose one flow
// happens to cross it, and a pair whose flow goes up a healthy link and
// comes back over the lossy one loses probes that all point at the healthy
// link (the lab's lossy uplink was blamed on its healthy sibling so). TCP
// probes get a fresh port per connection anyway.
type UDPProber struct {
	conns   []*net.UDPConn
	ports   []uint32
	srcAddr string
	stream  uint64
	size    int
	// kernelRx: replies carry the kernel's arrival time (real clock only).
	kernelRx bool
	clock    clock.Clock
	late     prometheus.Counter
	bogus    prometheus.Counter
	// reverseTraces: peers' reverse traces that reached a socket
	reverseTraces prometheus.Counter
	traceBackSeq  uint64 // under mu

	mu      sync.Mutex
	signer  *packetSigner
	peers   map[netip.AddrPort]*udpStream
	pending map[udpKey]*udpPending
	byDue   udpHeap
	closed  bool
	// lastSweep is when streams of departed peers were last forgotten.
	lastSweep time.Time
	buf       []byte
}

type udpKey struct {
	peer netip.AddrPort
	seq  uint64
}

type udpStream struct {
	next       uint64 // next seq to send
	first      int    // the socket of seq 0: streams start apart
	maxReplied uint64 // highest seq answered so far
	lastUsed   time.Time
}

type udpPending struct {
	key      udpKey
	res      *wire.ProbeResult
	sent     time.Time
	deadline time.Time
	got      bool
	done     func(*wire.ProbeResult)
	index    int
}

type udpHeap []*udpPending

func (h udpHeap) Len() int           { return len(h) }
func (h udpHeap) Less(i, j int) bool { return h[i].deadline.Before(h[j].deadline) }
func (h udpHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i]; h[i].index = i; h[j].index = j }
func (h *udpHeap) Push(x any)        { p := x.(*udpPending); p.index = len(*h); *h = append(*h, p) }
func (h *udpHeap) Pop() any {
	old := *h
	p := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return p
}

// DefaultUDPPorts is how many source ports a UDP prober rotates over by
// default: with 2 to 4 equal-cost choices per tier, 8 flows cover a
// pair's paths well, for 8 sockets per agent.
const DefaultUDPPorts = 8

// MaxUDPPorts bounds UDPProberConfig.Ports.
const MaxUDPPorts = 64

// NewUDPProber opens the prober's sockets. Call Run to receive replies and
// report results.
func NewUDPProber(cfg UDPProberConfig) (*UDPProber, error) {
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Size == 0 {
		cfg.Size = MinPacketLen
	}
	if cfg.Size < MinPacketLen || cfg.Size > MaxPacketLen {
		return nil, fmt.Errorf("probe: udp probe size %d outside %d..%d", cfg.Size, MinPacketLen, MaxPacketLen)
	}
	if cfg.Ports == 0 {
		cfg.Ports = DefaultUDPPorts
	}
	if cfg.Ports < 1 || cfg.Ports > MaxUDPPorts {
		return nil, fmt.Errorf("probe: %d udp source ports outside 1..%d", cfg.Ports, MaxUDPPorts)
	}
	var laddr *net.UDPAddr
	if cfg.Local.IsValid() {
		laddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(cfg.Local, 0))
	}
	var conns []*net.UDPConn
	closeAll := func() {
		for _, c := range conns {
			c.Close()
		}
	}
	for range cfg.Ports {
		conn, err := net.ListenUDP("udp", laddr)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("probe: udp prober socket on %v: %w", cfg.Local, err)
		}
		conns = append(conns, conn)
	}
	var sb [8]byte
	if _, err := rand.Read(sb[:]); err != nil {
		closeAll()
		return nil, fmt.Errorf("probe: udp stream id: %w", err)
	}
	p := &UDPProber{
		conns:  conns,
		stream: binary.BigEndian.Uint64(sb[:]),
		size:   cfg.Size,
		clock:  cfg.Clock,
		late: register(cfg.Registerer, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_probe_udp_late_replies_total",
			Help: "Authentic udp echo replies that came back after their probe was reported lost.",
		})),
		bogus: register(cfg.Registerer, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_probe_udp_bogus_replies_total",
			Help: "Datagrams on the udp prober socket that were not an authentic reply to it.",
		})),
		reverseTraces: register(cfg.Registerer, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_probe_udp_reverse_traces_received_total",
			Help: "Peers' reverse traces (of a lost probe's reply, on this agent's request) that reached the udp prober.",
		})),
		peers:   make(map[netip.AddrPort]*udpStream),
		pending: make(map[udpKey]*udpPending),
	}
	p.srcAddr = p.LocalAddr().Addr().String()
	_, real := cfg.Clock.(clock.Real)
	p.kernelRx = real
	for _, c := range conns {
		p.ports = append(p.ports, uint32(c.LocalAddr().(*net.UDPAddr).Port))
		if real {
			p.kernelRx = enableRxTimestamps(c) && p.kernelRx
		}
	}
	if cfg.Key != nil {
		if err := p.SetKey(cfg.Key); err != nil {
			closeAll()
			return nil, err
		}
	}
	return p, nil
}

// LocalAddr is the address of the prober's first socket.
func (p *UDPProber) LocalAddr() netip.AddrPort {
	return p.conns[0].LocalAddr().(*net.UDPAddr).AddrPort()
}

// Ports are the source ports the probes rotate over.
func (p *UDPProber) Ports() []uint32 { return append([]uint32(nil), p.ports...) }

// SetKey sets the fleet key probes are signed with. Safe for concurrent use.
func (p *UDPProber) SetKey(key []byte) error {
	s, err := newPacketSigner(append([]byte(nil), key...))
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.signer = s
	p.mu.Unlock()
	return nil
}

// Start implements Prober. It sends at once and reports at the deadline.
func (p *UDPProber) Start(ctx context.Context, t Target, done func(*wire.ProbeResult)) {
	now := p.clock.Now()
	res := newResult(t, now)
	res.SrcAddr = p.srcAddr
	timeout := t.Timeout
	if timeout <= 0 {
		timeout = time.Second
	}
	p.mu.Lock()
	if p.closed || ctx.Err() != nil {
		p.mu.Unlock()
		res.Outcome, res.Error = wire.Outcome_OUTCOME_ERROR, "prober stopped"
		done(res)
		return
	}
	if p.signer == nil {
		p.mu.Unlock()
		res.Outcome, res.Error = wire.Outcome_OUTCOME_ERROR, shortError(ErrNoKey)
		done(res)
		return
	}
	st := p.peers[t.Addr]
	if st == nil {
		st = &udpStream{next: 1, first: len(p.peers) % len(p.conns)}
		p.peers[t.Addr] = st
	}
	st.lastUsed = now
	seq := st.next
	st.next++
	res.Seq = seq
	// Each peer's probes take the sockets in turn.
	c := (st.first + int(seq%uint64(len(p.conns)))) % len(p.conns)
	res.SrcPort = p.ports[c]
	p.buf = appendRequest(p.buf, p.stream, seq, now.UnixNano(), p.size)
	p.signer.sign(t.Addr.Addr(), p.buf)
	// Send under the lock: the buffer is shared, and a reply must not be
	// able to arrive before its pending entry exists.
	_, err := p.conns[c].WriteToUDPAddrPort(p.buf, t.Addr)
	if err != nil {
		p.mu.Unlock()
		res.Outcome, res.Error = wire.Outcome_OUTCOME_ERROR, shortError(fmt.Errorf("probe: udp send to %v: %w", t.Addr, err))
		done(res)
		return
	}
	pd := &udpPending{key: udpKey{t.Addr, seq}, res: res, sent: now, deadline: now.Add(timeout), done: done}
	p.pending[pd.key] = pd
	heap.Push(&p.byDue, pd)
	p.mu.Unlock()
}

// TraceStream implements UDPEcho: trace requests are their own echo
// stream, so their replies are never taken for a probe's.
func (p *UDPProber) TraceStream() uint64 { return p.stream ^ 1 }

// TraceRequest implements UDPEcho: a signed echo request of the trace
// stream, of the probes' size (the same packet length on the same path).
func (p *UDPProber) TraceRequest(dst netip.Addr, seq uint64) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.signer == nil {
		return nil, ErrNoKey
	}
	b := appendRequest(nil, p.TraceStream(), seq, p.clock.Now().UnixNano(), p.size)
	p.signer.sign(dst, b)
	return b, nil
}

// VerifyReply implements UDPEcho.
func (p *UDPProber) VerifyReply(from netip.Addr, pkt []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.signer != nil && p.signer.verify(from, pkt)
}

// TraceBack asks the responder at peer to trace its reply to a lost probe
// back here (see packet.go). A UDP probe's request leaves from the probe's
// own socket, so it takes the probe's way there; a TCP probe's from the
// first. The request is a signed datagram of its own echo stream, never
// answered.
func (p *UDPProber) TraceBack(peer netip.AddrPort, tb TraceBack) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("probe: udp prober stopped")
	}
	if p.signer == nil {
		return ErrNoKey
	}
	c := 0
	if tb.Protocol == wire.Protocol_PROTOCOL_UDP {
		c = max(0, slices.Index(p.ports, uint32(tb.Port)))
	}
	p.traceBackSeq++
	b := appendTraceBack(nil, p.stream^2, p.traceBackSeq, p.clock.Now().UnixNano(), tb)
	p.signer.sign(peer.Addr(), b)
	if _, err := p.conns[c].WriteToUDPAddrPort(b, peer); err != nil {
		return fmt.Errorf("probe: trace-back request to %v: %w", peer, err)
	}
	return nil
}

// Probe runs one probe and waits for its result (tests, one-off use).
func (p *UDPProber) Probe(ctx context.Context, t Target) *wire.ProbeResult {
	ch := make(chan *wire.ProbeResult, 1)
	p.Start(ctx, t, func(r *wire.ProbeResult) { ch <- r })
	return <-ch
}

// Run receives replies and reports results at their deadlines until ctx
// ends; then it reports every probe still pending as an error (they were
// cut short, not lost) and closes the sockets.
func (p *UDPProber) Run(ctx context.Context) error {
	readDone := make(chan error, len(p.conns))
	for _, c := range p.conns {
		go func() { readDone <- p.readLoop(c) }()
	}
	running := len(p.conns)
	tick := p.clock.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var err error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err = <-readDone:
			running--
			break loop
		case <-tick.C():
			p.reap(p.clock.Now())
		}
	}
	p.mu.Lock()
	p.closed = true
	var cut []*udpPending
	for _, pd := range p.byDue {
		cut = append(cut, pd)
	}
	p.byDue, p.pending = nil, make(map[udpKey]*udpPending)
	p.mu.Unlock()
	for _, pd := range cut {
		pd.res.Outcome, pd.res.Error, pd.res.RttNs = wire.Outcome_OUTCOME_ERROR, "prober stopped", 0
		pd.done(pd.res)
	}
	for _, c := range p.conns {
		c.Close()
	}
	for ; running > 0; running-- {
		<-readDone
	}
	return err
}

// reap reports every probe whose deadline has passed.
func (p *UDPProber) reap(now time.Time) {
	var due []*udpPending
	p.mu.Lock()
	for len(p.byDue) > 0 && !p.byDue[0].deadline.After(now) {
		pd := heap.Pop(&p.byDue).(*udpPending)
		delete(p.pending, pd.key)
		due = append(due, pd)
	}
	// Forget streams of peers no longer probed, once a minute.
	if now.Sub(p.lastSweep) > time.Minute {
		p.lastSweep = now
		for a, st := range p.peers {
			if now.Sub(st.lastUsed) > 10*time.Minute {
				delete(p.peers, a)
			}
		}
	}
	p.mu.Unlock()
	for _, pd := range due {
		if !pd.got {
			pd.res.Outcome, pd.res.Error = wire.Outcome_OUTCOME_LOST, "no reply"
		}
		pd.done(pd.res)
	}
}

func (p *UDPProber) readLoop(conn *net.UDPConn) error {
	buf := make([]byte, MaxPacketLen+1)
	oob := make([]byte, 128)
	for {
		n, oobn, _, from, err := conn.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			// ICMP port unreachable from a peer without a responder
			// surfaces here as ECONNREFUSED on Linux; the probe will be
			// reported lost at its deadline.
			continue
		}
		now := p.clock.Now()
		if p.kernelRx {
			if at, ok := rxTimestamp(oob[:oobn]); ok && at.Before(now) {
				now = at
			}
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		p.onReply(buf[:n], from, now)
	}
}

func (p *UDPProber) onReply(pkt []byte, from netip.AddrPort, now time.Time) {
	h, err := DecodePacket(pkt)
	if err == nil && h.Reply && h.Stream == p.TraceStream() {
		return // a trace reached the responder; the tracer takes it
	}
	if err == nil && !h.Reply && h.TraceBack == nil {
		// A peer's reverse trace of a lost probe reaching its prober
		// (TraceBack): signed for this address, never answered.
		p.mu.Lock()
		ok := p.signer != nil && p.signer.verify(p.LocalAddr().Addr(), pkt)
		p.mu.Unlock()
		if ok {
			p.reverseTraces.Inc()
			return
		}
	}
	if err != nil || !h.Reply || h.Stream != p.stream {
		p.bogus.Inc()
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.signer == nil || !p.signer.verify(from.Addr(), pkt) {
		p.bogus.Inc()
		return
	}
	pd := p.pending[udpKey{from, h.Seq}]
	if pd == nil {
		p.late.Inc()
		return
	}
	if pd.got {
		pd.res.Duplicates++
		return
	}
	pd.got = true
	pd.res.Outcome = wire.Outcome_OUTCOME_OK
	rtt := now.Sub(pd.sent)
	if h.Held < rtt {
		// The network's part: minus the time the peer's responder sat on
		// the probe (a busy or starved peer host is not network latency).
		rtt -= h.Held
	}
	pd.res.RttNs = int64(rtt)
	if st := p.peers[from]; st != nil {
		if h.Seq < st.maxReplied {
			pd.res.Reordered = true
		} else {
			st.maxReplied = h.Seq
		}
	}
}
