//go:build linux

package probe

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/meshlens/meshlens/internal/wire"
)

var errTracerClosed = errors.New("probe: tracer stopped")

// ErrNoRawSocket is returned by NewTracer without CAP_NET_RAW.
var ErrNoRawSocket = errors.New("probe: tracing needs raw sockets (root or CAP_NET_RAW)")

// UDPEcho lets UDP traces reach the destination's responder: the trace
// datagrams are signed echo requests, so the responder answers the one that
// arrives, and the answer proves the trace reached it. UDPProber implements
// it. Without one, a UDP trace reaches only a port that answers ICMP port
// unreachable.
type UDPEcho interface {
	// TraceStream is the echo stream id of trace requests.
	TraceStream() uint64
	// TraceRequest is a signed echo request to dst with sequence seq.
	TraceRequest(dst netip.Addr, seq uint64) ([]byte, error)
	// VerifyReply reports whether pkt is an authentic reply from from.
	VerifyReply(from netip.Addr, pkt []byte) bool
}

// TracerConfig configures a Tracer. Zero values take the defaults.
type TracerConfig struct {
	MaxTTL     int
	HopTimeout time.Duration
	// Queries: sends of a TTL before it is silent (DefaultTraceQueries).
	Queries     int
	InFlight    int
	Concurrency int
	UDPEcho     UDPEcho
	Registerer  prometheus.Registerer
}

// TraceFlow is the 5-tuple to trace.
type TraceFlow struct {
	Protocol wire.Protocol // TCP or UDP
	// Src is the probe's source; an unspecified address takes the route's
	// source (what the kernel picked for a probe from an unbound socket).
	Src netip.AddrPort
	Dst netip.AddrPort
}

// TraceResult is what one trace saw.
type TraceResult struct {
	// Src is the source address the trace used.
	Src netip.Addr
	// Hops[i] answered TTL i+1; an invalid address where none did. A trace
	// that goes silent ends with one silent hop after the last answer.
	Hops []netip.Addr
	// Reached: the destination answered; it is the last hop.
	Reached bool
	// Sent is the number of trace packets sent.
	Sent int
}

// HopStrings renders Hops as wire.TracedProbe hops.
func (r TraceResult) HopStrings() []string {
	out := make([]string, len(r.Hops))
	for i, h := range r.Hops {
		if h.IsValid() {
			out[i] = h.String()
		} else {
			out[i] = wire.UnknownHop
		}
	}
	return out
}

// Tracer runs Paris traceroutes of probes' 5-tuples over raw sockets: one
// to send (IP_HDRINCL), one ICMP socket that receives time-exceeded and
// unreachable errors for every trace, and one TCP and one UDP socket that
// see the destination's answers. Kernel filters keep everything else off
// them. Safe for concurrent use; Run must be running for answers to be
// seen.
type Tracer struct {
	cfg TracerConfig
	// sockMu guards send and route against their closing: a closed
	// descriptor number may already name another socket.
	sockMu   sync.RWMutex
	send     int
	route    int // UDP socket: connect() asks the kernel's route source
	routeMu  sync.Mutex
	icmp     *os.File
	tcp      *os.File
	udp      *os.File // nil without UDPEcho
	tag      uint16   // high half of every TCP seq / echo seq: this tracer's
	nextID   atomic.Uint32
	slots    chan struct{}
	m        *traceMetrics
	mu       sync.Mutex
	inflight map[traceKey]*tracePacket
	// retired are packets answered or given up on in the last 10-20 s, in
	// two generations: their late or duplicate answers (the destination
	// answering TTLs sent past it, a router slower than the timeout) are
	// counted as late, not as unmatched (which would look like spoofing).
	retired, retiredPrev map[traceKey]retiredPacket
	retiredAt            time.Time
}

type retiredPacket struct{ quoteCheck, replyCheck uint32 }

const (
	retiredPeriod = 10 * time.Second
	maxRetired    = 1 << 14
)

// retireLocked ends a packet's wait for its answer.
func (t *Tracer) retireLocked(k traceKey) {
	p := t.inflight[k]
	if p == nil {
		return
	}
	delete(t.inflight, k)
	now := time.Now()
	if t.retired == nil || now.Sub(t.retiredAt) > retiredPeriod {
		t.retiredPrev, t.retired, t.retiredAt = t.retired, make(map[traceKey]retiredPacket), now
	}
	if len(t.retired) < maxRetired {
		t.retired[k] = retiredPacket{p.quoteCheck, p.replyCheck}
	}
}

// wasRetiredLocked reports whether a answers a packet that was in flight a
// moment ago (key and contents).
func (t *Tracer) wasRetiredLocked(a traceAnswer) bool {
	for _, m := range []map[traceKey]retiredPacket{t.retired, t.retiredPrev} {
		if r, ok := m[a.key]; ok && ((a.reply && r.replyCheck == a.check) || (!a.reply && r.quoteCheck == a.check)) {
			return true
		}
	}
	return false
}

type tracePacket struct {
	run        *traceRun
	ttl        int
	quoteCheck uint32
	replyCheck uint32
}

type traceRun struct {
	dst    [4]byte
	echo   UDPEcho
	events chan traceEvent // cap MaxTTL × Queries: one event per packet sent at most
}

type traceEvent struct {
	ttl     int
	from    netip.Addr
	reached bool
	final   bool // an unreachable: the path ends here
}

type traceMetrics struct {
	dropped *prometheus.CounterVec
}

// NewTracer opens the raw sockets; without the privilege the error wraps
// ErrNoRawSocket.
func NewTracer(cfg TracerConfig) (*Tracer, error) {
	if cfg.MaxTTL <= 0 {
		cfg.MaxTTL = DefaultTraceMaxTTL
	}
	cfg.MaxTTL = min(cfg.MaxTTL, wire.MaxHops)
	if cfg.HopTimeout <= 0 {
		cfg.HopTimeout = DefaultTraceHopTimeout
	}
	if cfg.InFlight <= 0 {
		cfg.InFlight = DefaultTraceInFlight
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultTraceConcurrency
	}
	if cfg.Queries <= 0 {
		cfg.Queries = DefaultTraceQueries
	}
	var tb [2]byte
	if _, err := rand.Read(tb[:]); err != nil {
		return nil, fmt.Errorf("probe: tracer tag: %w", err)
	}
	t := &Tracer{cfg: cfg, send: -1, route: -1, tag: binary.BigEndian.Uint16(tb[:]),
		slots: make(chan struct{}, cfg.Concurrency), inflight: make(map[traceKey]*tracePacket),
		m: &traceMetrics{dropped: register(cfg.Registerer, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_trace_answers_dropped_total",
			Help: "Packets on the tracer's sockets that answered no trace packet in flight (malformed; late: answered or given up already; unmatched; mismatched quoted header; unverified echo), by reason.",
		}, []string{"reason"}))}}
	for _, r := range []string{DropMalformed, DropLate, DropUnmatched, DropMismatched, DropUnverified} {
		t.m.dropped.WithLabelValues(r)
	}
	var err error
	fail := func(what string, e error) (*Tracer, error) {
		t.closeSockets()
		if errors.Is(e, unix.EPERM) || errors.Is(e, unix.EACCES) {
			return nil, fmt.Errorf("%w: %s: %w", ErrNoRawSocket, what, e)
		}
		return nil, fmt.Errorf("probe: tracer %s: %w", what, e)
	}
	if t.send, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW); err != nil {
		return fail("send socket", err)
	}
	if t.route, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
		return fail("route socket", err)
	}
	// ICMP errors only: time exceeded and destination unreachable.
	icmpFilter := []bpf.Instruction{
		bpf.LoadMemShift{Off: 0},
		bpf.LoadIndirect{Off: 0, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: icmpTimeExceeded, SkipTrue: 1},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: icmpDestUnreachable, SkipFalse: 1},
		bpf.RetConstant{Val: 0xffff},
		bpf.RetConstant{Val: 0},
	}
	if t.icmp, err = rawSocket(unix.IPPROTO_ICMP, icmpFilter, "tracer-icmp"); err != nil {
		return fail("icmp socket", err)
	}
	// SYN-ACKs and RSTs acknowledging a SYN of this tracer: the ack's high
	// half is the tag (ipid, the low half, never reaches 0xffff, so no
	// carry). Other segments of the host's connections stay off the socket.
	tcpFilter := []bpf.Instruction{
		bpf.LoadMemShift{Off: 0},
		bpf.LoadIndirect{Off: 13, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: tcpFlagSYN | tcpFlagRST, SkipFalse: 4},
		bpf.LoadIndirect{Off: 8, Size: 4},
		bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 16},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(t.tag), SkipFalse: 1},
		bpf.RetConstant{Val: 0xffff},
		bpf.RetConstant{Val: 0},
	}
	if t.tcp, err = rawSocket(unix.IPPROTO_TCP, tcpFilter, "tracer-tcp"); err != nil {
		return fail("tcp socket", err)
	}
	if cfg.UDPEcho != nil {
		// Echo replies of the trace stream only (header at UDP offset 8:
		// magic, version, flags, then the 8-byte stream).
		s := cfg.UDPEcho.TraceStream()
		udpFilter := []bpf.Instruction{
			bpf.LoadMemShift{Off: 0},
			bpf.LoadIndirect{Off: 8 + 4, Size: 4},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(s >> 32), SkipFalse: 3},
			bpf.LoadIndirect{Off: 8 + 8, Size: 4},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(s), SkipFalse: 1},
			bpf.RetConstant{Val: 0xffff},
			bpf.RetConstant{Val: 0},
		}
		if t.udp, err = rawSocket(unix.IPPROTO_UDP, udpFilter, "tracer-udp"); err != nil {
			return fail("udp socket", err)
		}
	}
	return t, nil
}

// rawSocket opens a non-blocking raw IPv4 socket of proto with a kernel
// filter, served by the runtime's poller.
func rawSocket(proto int, filter []bpf.Instruction, name string) (*os.File, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return nil, err
	}
	raw, err := bpf.Assemble(filter)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	ins := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		ins[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: uint16(len(ins)), Filter: &ins[0]}); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), name), nil
}

func (t *Tracer) closeSockets() {
	t.sockMu.Lock()
	defer t.sockMu.Unlock()
	for _, fd := range []*int{&t.send, &t.route} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
	for _, f := range []*os.File{t.icmp, t.tcp, t.udp} {
		if f != nil {
			f.Close()
		}
	}
}

// Run receives answers until ctx ends, then closes the sockets.
func (t *Tracer) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	read := func(f *os.File, parse func([]byte) (traceAnswer, error)) {
		defer wg.Done()
		buf := make([]byte, 1500)
		for {
			n, err := f.Read(buf)
			if err != nil {
				if errors.Is(err, os.ErrClosed) {
					return
				}
				continue // ENOBUFS and the like: the answer is lost, its hop reads "*"
			}
			a, err := parse(buf[:n])
			if err != nil {
				t.m.dropped.WithLabelValues(DropMalformed).Inc()
				continue
			}
			t.deliver(a)
		}
	}
	wg.Add(2)
	go read(t.icmp, parseICMPError)
	go read(t.tcp, parseTCPReply)
	if t.udp != nil {
		wg.Add(1)
		go read(t.udp, parseUDPEchoReply)
	}
	<-ctx.Done()
	t.closeSockets()
	wg.Wait()
	return nil
}

// deliver hands a parsed answer to the trace whose packet it answers.
func (t *Tracer) deliver(a traceAnswer) {
	t.mu.Lock()
	p := t.inflight[a.key]
	want := uint32(0)
	if p != nil {
		want = p.quoteCheck
		if a.reply {
			want = p.replyCheck
		}
	}
	if p == nil || want != a.check {
		late := p == nil && t.wasRetiredLocked(a)
		t.mu.Unlock()
		switch {
		case late:
			t.m.dropped.WithLabelValues(DropLate).Inc()
		case p == nil:
			t.m.dropped.WithLabelValues(DropUnmatched).Inc()
		default:
			t.m.dropped.WithLabelValues(DropMismatched).Inc()
		}
		return
	}
	if a.reply && a.payload != nil && (p.run.echo == nil || !p.run.echo.VerifyReply(netip.AddrFrom4(a.from), a.payload)) {
		t.mu.Unlock()
		t.m.dropped.WithLabelValues(DropUnverified).Inc()
		return
	}
	t.retireLocked(a.key)
	t.mu.Unlock()
	ev := traceEvent{ttl: p.ttl, from: netip.AddrFrom4(a.from)}
	switch {
	case a.reply:
		ev.reached = true
	case a.icmpType == icmpDestUnreachable:
		// The destination refusing the port has been reached; any other
		// unreachable ends the path at the router that sent it.
		ev.final = true
		ev.reached = a.from == p.run.dst && a.icmpCode == icmpPortUnreachable
	}
	p.run.events <- ev // never blocks: one event per packet sent, at most MaxTTL × Queries
}

// Trace traces flow with TTLs 1..maxTTL (0: the configured MaxTTL). It
// blocks while Concurrency traces are in flight.
func (t *Tracer) Trace(ctx context.Context, flow TraceFlow, maxTTL int) (TraceResult, error) {
	if maxTTL <= 0 || maxTTL > t.cfg.MaxTTL {
		maxTTL = t.cfg.MaxTTL
	}
	var res TraceResult
	var proto uint8
	switch flow.Protocol {
	case wire.Protocol_PROTOCOL_TCP:
		proto = ipProtoTCP
	case wire.Protocol_PROTOCOL_UDP:
		proto = ipProtoUDP
	default:
		return res, fmt.Errorf("probe: trace: protocol %v cannot be traced (tcp and udp only)", flow.Protocol)
	}
	dst, ok := addr4(flow.Dst.Addr())
	if !ok || flow.Dst.Port() == 0 || flow.Src.Port() == 0 {
		return res, fmt.Errorf("probe: trace %v -> %v: IPv4 addresses and ports needed", flow.Src, flow.Dst)
	}
	srcAddr := flow.Src.Addr()
	if !srcAddr.IsValid() || srcAddr.IsUnspecified() {
		var err error
		if srcAddr, err = t.routeSource(flow.Dst); err != nil {
			return res, err
		}
	}
	src, ok := addr4(srcAddr)
	if !ok {
		return res, fmt.Errorf("probe: trace %v -> %v: IPv4 addresses needed", flow.Src, flow.Dst)
	}
	res.Src = netip.AddrFrom4(src)
	select {
	case t.slots <- struct{}{}:
	case <-ctx.Done():
		return res, fmt.Errorf("probe: trace %v -> %v: %w", flow.Src, flow.Dst, ctx.Err())
	}
	defer func() { <-t.slots }()

	run := &traceRun{dst: dst, events: make(chan traceEvent, maxTTL*t.cfg.Queries)}
	if proto == ipProtoUDP {
		run.echo = t.cfg.UDPEcho
	}
	hops := make([]netip.Addr, maxTTL)
	answered := make([]bool, maxTTL)
	deadline := make([]time.Time, maxTTL+1) // by TTL; zero: not in flight
	keys := make([]traceKey, maxTTL+1)
	inFlight := 0
	defer func() {
		t.mu.Lock()
		for ttl := 1; ttl <= maxTTL; ttl++ {
			if !deadline[ttl].IsZero() {
				t.retireLocked(keys[ttl])
			}
		}
		t.mu.Unlock()
	}()
	end := maxTTL // the last TTL of interest: lowered by an answer that ends the path
	next := 1
	sends := make([]int, maxTTL+1) // by TTL
	// silent TTLs wait to be sent again until a later TTL answers: a gap
	// in the path, where a lossy link may have eaten the packet or its
	// answer. A silent tail is where the path goes dark (a dead link or
	// switch): sending it again would only slow every trace of an outage.
	silent := make([]bool, maxTTL+1)
	var again []int // silent TTLs with a later answer, to send once more
	lastAnswered := 0
	gaps := func() {
		for ttl := 1; ttl < lastAnswered && ttl <= end; ttl++ {
			if silent[ttl] {
				silent[ttl] = false
				again = append(again, ttl)
			}
		}
	}
	send := func(ttl int) error {
		k, err := t.sendProbe(run, proto, src, dst, flow, ttl)
		if err != nil {
			return err
		}
		res.Sent++
		sends[ttl]++
		keys[ttl], deadline[ttl] = k, time.Now().Add(t.cfg.HopTimeout)
		inFlight++
		return nil
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		for inFlight < t.cfg.InFlight && (len(again) > 0 || next <= end) {
			ttl := next
			if len(again) > 0 {
				ttl, again = again[0], again[1:]
				if ttl > end {
					continue
				}
			} else {
				next++
			}
			if err := send(ttl); err != nil {
				return res, err
			}
		}
		if inFlight == 0 {
			break
		}
		earliest := time.Time{}
		for ttl := 1; ttl <= maxTTL; ttl++ {
			if d := deadline[ttl]; !d.IsZero() && (earliest.IsZero() || d.Before(earliest)) {
				earliest = d
			}
		}
		timer.Reset(time.Until(earliest))
		select {
		case <-ctx.Done():
			return res, fmt.Errorf("probe: trace %v -> %v: %w", flow.Src, flow.Dst, ctx.Err())
		case ev := <-run.events:
			if deadline[ev.ttl].IsZero() {
				continue // timed out already, or past the end
			}
			deadline[ev.ttl] = time.Time{}
			inFlight--
			hops[ev.ttl-1], answered[ev.ttl-1] = ev.from, true
			lastAnswered = max(lastAnswered, ev.ttl)
			if ev.reached || ev.final {
				switch {
				case ev.ttl < end:
					end, res.Reached = ev.ttl, ev.reached
				case ev.ttl == end && ev.reached:
					res.Reached = true
				}
				// Forget the TTLs past the end.
				t.mu.Lock()
				for ttl := end + 1; ttl <= maxTTL; ttl++ {
					if !deadline[ttl].IsZero() {
						t.retireLocked(keys[ttl])
						deadline[ttl] = time.Time{}
						inFlight--
					}
				}
				t.mu.Unlock()
			}
		case now := <-timer.C:
			t.mu.Lock()
			for ttl := 1; ttl <= maxTTL; ttl++ {
				if d := deadline[ttl]; !d.IsZero() && !d.After(now) {
					t.retireLocked(keys[ttl])
					deadline[ttl] = time.Time{}
					inFlight--
					silent[ttl] = sends[ttl] < t.cfg.Queries
				}
			}
			t.mu.Unlock()
		}
		gaps()
	}
	// Keep one silent hop after the last answer: the path goes dark there.
	last := -1
	for i := 0; i < end; i++ {
		if answered[i] {
			last = i
		}
	}
	n := min(last+2, end)
	if res.Reached {
		n = end
	}
	res.Hops = hops[:n]
	return res, nil
}

// sendProbe sends the trace packet of one TTL and registers it.
func (t *Tracer) sendProbe(run *traceRun, proto uint8, src, dst [4]byte, flow TraceFlow, ttl int) (traceKey, error) {
	k := traceKey{src: src, dst: dst, proto: proto, sport: flow.Src.Port(), dport: flow.Dst.Port()}
	p := &tracePacket{run: run, ttl: ttl}
	t.mu.Lock()
	for {
		// IP IDs 0 and 0xffff are skipped: 0xffff+1 would carry into the
		// tag of an acknowledgement.
		k.ipid = uint16(t.nextID.Add(1)%0xfffe + 1)
		if t.inflight[k] == nil {
			break
		}
	}
	seq := uint32(t.tag)<<16 | uint32(k.ipid)
	var pkt []byte
	if proto == ipProtoTCP {
		pkt = buildTCPSYN(k, uint8(ttl), seq)
		p.quoteCheck, p.replyCheck = seq, seq
	} else {
		payload := make([]byte, 8)
		if run.echo != nil {
			var err error
			if payload, err = run.echo.TraceRequest(netip.AddrFrom4(dst), uint64(seq)); err != nil {
				t.mu.Unlock()
				return k, fmt.Errorf("probe: trace %v: %w", flow.Dst, err)
			}
		}
		pkt, p.quoteCheck = buildUDP(k, uint8(ttl), payload)
		p.replyCheck = seq
	}
	// Registered before sending: an answer cannot beat its entry.
	t.inflight[k] = p
	t.mu.Unlock()
	sa := &unix.SockaddrInet4{Addr: dst}
	t.sockMu.RLock()
	err := errTracerClosed
	if t.send >= 0 {
		err = unix.Sendto(t.send, pkt, 0, sa)
	}
	t.sockMu.RUnlock()
	if err != nil {
		t.mu.Lock()
		delete(t.inflight, k)
		t.mu.Unlock()
		return k, fmt.Errorf("probe: trace %v ttl %d: send: %w", flow.Dst, ttl, err)
	}
	return k, nil
}

// routeSource asks the kernel which source address it routes dst from.
// Connecting a UDP socket sends nothing.
func (t *Tracer) routeSource(dst netip.AddrPort) (netip.Addr, error) {
	t.routeMu.Lock()
	defer t.routeMu.Unlock()
	t.sockMu.RLock()
	defer t.sockMu.RUnlock()
	if t.route < 0 {
		return netip.Addr{}, errTracerClosed
	}
	if err := unix.Connect(t.route, &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().Unmap().As4()}); err != nil {
		return netip.Addr{}, fmt.Errorf("probe: trace: no route to %v: %w", dst, err)
	}
	sa, err := unix.Getsockname(t.route)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("probe: trace: route source to %v: %w", dst, err)
	}
	return addrPortOf(sa).Addr(), nil
}

// Pending is the number of trace packets awaiting an answer.
func (t *Tracer) Pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.inflight)
}
