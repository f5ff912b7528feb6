package probe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/meshlens/meshlens/internal/clock"
	"github.com/meshlens/meshlens/internal/wire"
)

// Drop reasons of meshlens_responder_dropped_total.
const (
	DropMalformed      = "malformed"
	DropNotRequest     = "not_request"
	DropStale          = "stale"
	DropBadMAC         = "bad_mac"
	DropNoKey          = "no_key"
	DropReplay         = "replay"
	DropReplayFull     = "replay_cache_full"
	DropRateLimited    = "rate_limited"
	DropTCPSourceLimit = "tcp_source_limit"
	DropTCPLimit       = "tcp_limit"
	// DropTraceBackOff: a trace-back request to a responder whose agent
	// does not trace (ResponderConfig.TraceBack unset).
	DropTraceBackOff = "trace_back_off"
)

// ResponderConfig configures a Responder. Zero values take the defaults.
type ResponderConfig struct {
	// Addr is host:port for both the TCP and the UDP listener. Port 0 picks
	// a free port (same for both). An unspecified host (0.0.0.0, ::)
	// answers on every local address; UDP replies still leave from the
	// address each probe was sent to.
	Addr string
	// Keys are the fleet keys a probe may be signed with: the current one
	// and, during a rotation, the previous one. Without a key every UDP
	// probe is dropped (reason no_key); TCP still works.
	Keys [][]byte
	// ReplayWindow bounds how far a probe's timestamp may be from the
	// responder's clock (default 30s).
	ReplayWindow time.Duration
	// RatePerSource and BurstPerSource bound UDP replies per source address
	// (defaults 100/s, 200).
	RatePerSource  float64
	BurstPerSource int
	// MaxConnsPerSource and MaxConns cap concurrent TCP connections
	// (defaults 32 and 4096); IdleTimeout closes a silent one (default 5s).
	MaxConnsPerSource int
	MaxConns          int
	IdleTimeout       time.Duration
	// TraceBack, when set, takes the authentic trace-back requests
	// (see packet.go): from is the prober's address, local the address
	// the request came to (the reply's source), on the responder's port.
	// It runs on the responder's UDP loop and must not block.
	TraceBack  func(from, local netip.Addr, port uint16, tb TraceBack)
	Clock      clock.Clock
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

const (
	maxRateSources = 1 << 16
	// The replay cache holds replayShared entries for everyone; beyond
	// that a source gets at most its fair share (replayShared over the
	// sources holding entries), and nobody beyond replayHard.
	replayShared = 1 << 18
	replayHard   = 2 * replayShared
	maxTCPRead   = 4096
)

// Responder answers TCP connects and signed UDP echoes on one address.
// A TCP probe is answered by the kernel's handshake alone (the listener
// defers accepting until data arrives); a client that sends data gets an
// accepted connection, held until it closes or idles out. It
// is never a reflector: it answers only authenticated, fresh, never-seen
// UDP probes, its replies are exactly as long as the requests, replies are
// rate-limited per source, and everything else is dropped silently and
// counted.
type Responder struct {
	cfg        ResponderConfig
	tcp        *net.TCPListener
	udp        *net.UDPConn
	keys       atomic.Pointer[[][]byte]
	dropped    *prometheus.CounterVec
	replies    *prometheus.CounterVec
	traceBacks prometheus.Counter
	log        *slog.Logger

	uconn udpConn

	// UDP loop state, touched only by the UDP goroutine.
	signers    []*packetSigner
	signerKeys *[][]byte
	// signerIndex is the signer that verified the current request; its
	// key signs the reply. traceBack is the current request's, if it is a
	// trace-back request.
	signerIndex int
	traceBack   *TraceBack
	replay      replayCache
	buckets     map[netip.Addr]*tokenBucket
	lastSweep   time.Time
	// lastFullSweep: when a full bucket map was last swept.
	lastFullSweep time.Time

	// TCP state.
	mu       sync.Mutex
	conns    map[net.Conn]netip.Addr
	perSrc   map[netip.Addr]int
	closed   bool
	connWG   sync.WaitGroup
	runOnce  sync.Once
	closeErr error
}

// NewResponder binds the TCP and UDP sockets (so a bad address fails here,
// and Addr is known before Run).
func NewResponder(cfg ResponderConfig) (*Responder, error) {
	if cfg.ReplayWindow <= 0 {
		cfg.ReplayWindow = 30 * time.Second
	}
	if cfg.RatePerSource <= 0 {
		cfg.RatePerSource = 100
	}
	if cfg.BurstPerSource <= 0 {
		cfg.BurstPerSource = 200
	}
	if cfg.MaxConnsPerSource <= 0 {
		cfg.MaxConnsPerSource = 32
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 4096
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 5 * time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	for i, k := range cfg.Keys {
		if len(k) < minKeyLen {
			return nil, fmt.Errorf("probe: responder key %d is %d bytes, need at least %d", i, len(k), minKeyLen)
		}
	}
	r := &Responder{
		cfg: cfg,
		dropped: register(cfg.Registerer, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_responder_dropped_total",
			Help: "Probes the responder dropped without answering, by reason.",
		}, []string{"reason"})),
		replies: register(cfg.Registerer, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_responder_answered_total",
			Help: "Probes the responder answered (udp echoes, tcp connections accepted).",
		}, []string{"protocol"})),
		traceBacks: register(cfg.Registerer, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_responder_trace_backs_total",
			Help: "Authentic trace-back requests handed to the agent's tracer (a prober asked for its lost probe's reply path).",
		})),
		log:     cfg.Logger,
		buckets: make(map[netip.Addr]*tokenBucket),
		conns:   make(map[net.Conn]netip.Addr),
		perSrc:  make(map[netip.Addr]int),
	}
	keys := cfg.Keys
	r.keys.Store(&keys)
	if err := r.listen(cfg.Addr); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Responder) listen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("probe: responder address %q: %w", addr, err)
	}
	// An IPv4 or empty host gets IPv4 sockets: Go would otherwise open a
	// dual-stack IPv6 socket for 0.0.0.0, on which replies cannot be sent
	// from the IPv4 address a probe came to.
	tcpNet, udpNet := "tcp", "udp"
	if ip, err := netip.ParseAddr(host); host == "" || (err == nil && ip.Is4()) {
		tcpNet, udpNet = "tcp4", "udp4"
	}
	// With port 0 the kernel picks the TCP port; the UDP one may be taken,
	// so try a few times.
	for attempt := 0; ; attempt++ {
		tl, err := net.Listen(tcpNet, net.JoinHostPort(host, port))
		if err != nil {
			return fmt.Errorf("probe: responder listen tcp %q: %w", addr, err)
		}
		bound := tl.Addr().(*net.TCPAddr)
		ul, err := net.ListenPacket(udpNet, net.JoinHostPort(host, fmt.Sprint(bound.Port)))
		if err != nil {
			tl.Close()
			if port == "0" && attempt < 5 {
				continue
			}
			return fmt.Errorf("probe: responder listen udp %q: %w", addr, err)
		}
		r.tcp = tl.(*net.TCPListener)
		r.udp = ul.(*net.UDPConn)
		if r.uconn, err = r.packetConn(); err != nil {
			r.tcp.Close()
			r.udp.Close()
			return err
		}
		if err := deferAccept(r.tcp, int(r.cfg.IdleTimeout/time.Second)+1); err != nil {
			r.tcp.Close()
			r.udp.Close()
			return fmt.Errorf("probe: responder %s: TCP_DEFER_ACCEPT: %w", addr, err)
		}
		return nil
	}
}

// Addr is the bound address (host:port, same port for TCP and UDP).
func (r *Responder) Addr() netip.AddrPort {
	return r.tcp.Addr().(*net.TCPAddr).AddrPort()
}

// SetKeys replaces the fleet keys (e.g. on rotation). Safe for concurrent use.
func (r *Responder) SetKeys(keys [][]byte) error {
	for i, k := range keys {
		if len(k) < minKeyLen {
			return fmt.Errorf("probe: responder key %d is %d bytes, need at least %d", i, len(k), minKeyLen)
		}
	}
	cp := make([][]byte, len(keys))
	for i, k := range keys {
		cp[i] = append([]byte(nil), k...)
	}
	r.keys.Store(&cp)
	return nil
}

// Run serves until ctx ends, then closes its sockets and waits for its
// goroutines. It returns nil after a clean stop.
func (r *Responder) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	go func() { errc <- r.serveUDP() }()
	go func() { errc <- r.serveTCP() }()
	var first error
	got := 0
	select {
	case <-ctx.Done():
	case first = <-errc:
		got++
	}
	r.Close()
	for ; got < 2; got++ {
		if err := <-errc; first == nil {
			first = err
		}
	}
	r.connWG.Wait()
	return first
}

// Close closes the sockets; Run returns. Safe to call more than once.
func (r *Responder) Close() error {
	r.runOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		for c := range r.conns {
			c.Close()
		}
		r.mu.Unlock()
		r.closeErr = errors.Join(r.tcp.Close(), r.udp.Close())
	})
	return r.closeErr
}

// udpConn hides the IPv4/IPv6 difference of reading a datagram together
// with the local address it was sent to and replying from that address.
type udpConn interface {
	// read returns the datagram's length, the local address it was sent
	// to, its sender and, when the platform tells, its kernel arrival time.
	read(b []byte) (n int, dst netip.Addr, src net.Addr, rx time.Time, err error)
	reply(b []byte, from netip.Addr, to net.Addr) error
}

type udp4 struct{ p *ipv4.PacketConn }

func (u udp4) read(b []byte) (int, netip.Addr, net.Addr, time.Time, error) {
	n, cm, src, err := u.p.ReadFrom(b)
	if err != nil {
		return 0, netip.Addr{}, nil, time.Time{}, err
	}
	var dst netip.Addr
	if cm != nil {
		dst, _ = netip.AddrFromSlice(cm.Dst)
	}
	return n, dst.Unmap(), src, time.Time{}, nil
}

func (u udp4) reply(b []byte, from netip.Addr, to net.Addr) error {
	_, err := u.p.WriteTo(b, &ipv4.ControlMessage{Src: from.AsSlice()}, to)
	return err
}

type udp6 struct{ p *ipv6.PacketConn }

func (u udp6) read(b []byte) (int, netip.Addr, net.Addr, time.Time, error) {
	n, cm, src, err := u.p.ReadFrom(b)
	if err != nil {
		return 0, netip.Addr{}, nil, time.Time{}, err
	}
	var dst netip.Addr
	if cm != nil {
		dst, _ = netip.AddrFromSlice(cm.Dst)
	}
	return n, dst.Unmap(), src, time.Time{}, nil
}

func (u udp6) reply(b []byte, from netip.Addr, to net.Addr) error {
	var cm *ipv6.ControlMessage
	if from.Is6() && !from.Is4In6() {
		cm = &ipv6.ControlMessage{Src: from.AsSlice()}
	}
	_, err := u.p.WriteTo(b, cm, to)
	return err
}

func (r *Responder) packetConn() (udpConn, error) {
	local := r.udp.LocalAddr().(*net.UDPAddr)
	if local.IP.To4() != nil {
		if c, ok := newUDP4Stamped(r.udp); ok {
			return c, nil
		}
		p := ipv4.NewPacketConn(r.udp)
		if err := p.SetControlMessage(ipv4.FlagDst, true); err != nil {
			return nil, fmt.Errorf("probe: responder %v: enable IP_PKTINFO: %w", local, err)
		}
		return udp4{p}, nil
	}
	p := ipv6.NewPacketConn(r.udp)
	if err := p.SetControlMessage(ipv6.FlagDst, true); err != nil {
		return nil, fmt.Errorf("probe: responder %v: enable IPV6_RECVPKTINFO: %w", local, err)
	}
	return udp6{p}, nil
}

func (r *Responder) serveUDP() error {
	conn := r.uconn
	_, realClock := r.cfg.Clock.(clock.Real)
	buf := make([]byte, MaxPacketLen+1)
	for {
		n, dst, src, rx, err := conn.read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Transient errors (e.g. ICMP errors surfacing as ECONNREFUSED
			// on some kernels) must not stop the responder.
			r.log.Debug("responder udp read", "err", err)
			continue
		}
		pkt := buf[:n]
		reason := r.admitUDP(pkt, dst, src)
		if reason != "" {
			r.dropped.WithLabelValues(reason).Inc()
			continue
		}
		if tb := r.traceBack; tb != nil {
			// Never answered: traced toward its sender, if at all.
			r.cfg.TraceBack(addrOf(src), dst, r.Addr().Port(), *tb)
			r.traceBacks.Inc()
			continue
		}
		var held time.Duration
		if realClock && !rx.IsZero() {
			held = time.Since(rx)
		}
		toReply(pkt, held)
		r.signers[r.signerIndex].sign(dst, pkt)
		if err := conn.reply(pkt, dst, src); err != nil {
			r.log.Debug("responder udp reply", "to", src, "err", err)
			r.dropped.WithLabelValues("send_error").Inc()
			continue
		}
		r.replies.WithLabelValues(wire.Protocol_PROTOCOL_UDP.Name()).Inc()
	}
}

// admitUDP decides whether a datagram gets a reply; it returns the drop
// reason, or "" to answer. Checks run cheapest first, and the source's
// rate limit before any state shared with other sources is spent: a
// source can only put into the replay cache what its rate allows (12,200
// entries at most in an entry's lifetime by default), and a flood from one
// source is that source's loss alone. (Replay-cache first, one holder of
// the fleet key filled the cache from one address and every other peer's
// probes were refused for two minutes.) Packets without the fleet key's
// MAC spend nothing, so only a key holder can spend a source's budget,
// and it can spoof only sources it can send as.
func (r *Responder) admitUDP(pkt []byte, dst netip.Addr, src net.Addr) string {
	p, err := DecodePacket(pkt)
	if err != nil || !dst.IsValid() {
		return DropMalformed
	}
	if p.Reply {
		return DropNotRequest
	}
	r.traceBack = p.TraceBack
	if p.TraceBack != nil && r.cfg.TraceBack == nil {
		return DropTraceBackOff
	}
	now := r.cfg.Clock.Now()
	sent := time.Unix(0, p.SentUnixNano)
	if d := now.Sub(sent); d > r.cfg.ReplayWindow || d < -r.cfg.ReplayWindow {
		return DropStale
	}
	r.refreshSigners()
	if len(r.signers) == 0 {
		return DropNoKey
	}
	r.signerIndex = -1
	for i, s := range r.signers {
		if s.verify(dst, pkt) {
			r.signerIndex = i
			break
		}
	}
	if r.signerIndex < 0 {
		return DropBadMAC
	}
	srcAddr := addrOf(src)
	if !r.allow(srcAddr, now) {
		return DropRateLimited
	}
	switch r.replay.add(replayKey{dst: dst, stream: p.Stream, seq: p.Seq}, srcAddr, now, 2*r.cfg.ReplayWindow) {
	case replaySeen:
		return DropReplay
	case replayFull:
		return DropReplayFull
	}
	return ""
}

func addrOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

func (r *Responder) refreshSigners() {
	keys := r.keys.Load()
	if keys == r.signerKeys {
		return
	}
	r.signers = r.signers[:0]
	for _, k := range *keys {
		s, err := newPacketSigner(k)
		if err != nil {
			continue // SetKeys and NewResponder already refused short keys
		}
		r.signers = append(r.signers, s)
	}
	r.signerKeys = keys
}

// tokenBucket limits replies to one source.
type tokenBucket struct {
	tokens float64
	last   time.Time
}

func (r *Responder) allow(src netip.Addr, now time.Time) bool {
	if now.Sub(r.lastSweep) > time.Minute {
		r.sweepBuckets(now)
		r.lastSweep = now
	}
	b := r.buckets[src]
	if b == nil {
		if len(r.buckets) >= maxRateSources && now.Sub(r.lastFullSweep) >= time.Second {
			// Full, perhaps of spoofed sources that sent once: forget
			// the refilled buckets now, not at the next minute, so that
			// holding the map needs a flood of every source, all the time.
			r.lastFullSweep = now
			r.sweepBuckets(now)
		}
		if len(r.buckets) >= maxRateSources {
			return false
		}
		b = &tokenBucket{tokens: float64(r.cfg.BurstPerSource), last: now}
		r.buckets[src] = b
	}
	return b.take(now, r.cfg.RatePerSource, float64(r.cfg.BurstPerSource))
}

// sweepBuckets forgets sources whose bucket has refilled: they cost
// nothing to recreate, and the map stays as small as the set of active
// peers.
func (r *Responder) sweepBuckets(now time.Time) {
	for a, b := range r.buckets {
		if now.Sub(b.last).Seconds()*r.cfg.RatePerSource+b.tokens >= float64(r.cfg.BurstPerSource) {
			delete(r.buckets, a)
		}
	}
}

// take refills the bucket for the time since its last use and takes one
// token if there is one.
func (b *tokenBucket) take(now time.Time, rate, burst float64) bool {
	b.tokens += now.Sub(b.last).Seconds() * rate
	if b.tokens > burst {
		b.tokens = burst
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// TokenBucket admits rate events per second on average, burst at once:
// the responder's per-source limit, and the agent's trace budget. Not safe
// for concurrent use.
type TokenBucket struct {
	b           tokenBucket
	rate, burst float64
}

// NewTokenBucket returns a full bucket.
func NewTokenBucket(rate float64, burst int, now time.Time) *TokenBucket {
	burst = max(burst, 1)
	return &TokenBucket{b: tokenBucket{tokens: float64(burst), last: now}, rate: rate, burst: float64(burst)}
}

// Allow takes a token if there is one.
func (t *TokenBucket) Allow(now time.Time) bool { return t.b.take(now, t.rate, t.burst) }

type replayKey struct {
	dst    netip.Addr
	stream uint64
	seq    uint64
}

const (
	replayNew = iota
	replaySeen
	replayFull
)

// replayCache remembers the probes answered recently, in two generations
// rotated every retention period, so an entry lives between one and two
// periods. With a retention of twice the replay window, a probe is
// remembered for as long as its timestamp would be accepted. Each entry
// remembers its source, and each source's share is counted: past
// replayShared entries a source gets no more than its fair share, so no
// source, or few, can take the room of the others.
type replayCache struct {
	cur, prev map[replayKey]netip.Addr
	held      map[netip.Addr]int // entries in cur and prev, by source
	rotated   time.Time
}

func (c *replayCache) add(k replayKey, src netip.Addr, now time.Time, retention time.Duration) int {
	if c.cur == nil {
		c.cur, c.prev, c.held, c.rotated = map[replayKey]netip.Addr{}, map[replayKey]netip.Addr{}, map[netip.Addr]int{}, now
	}
	if now.Sub(c.rotated) >= retention {
		for _, a := range c.prev {
			if c.held[a]--; c.held[a] <= 0 {
				delete(c.held, a)
			}
		}
		c.prev, c.cur, c.rotated = c.cur, make(map[replayKey]netip.Addr, len(c.cur)), now
	}
	if _, ok := c.cur[k]; ok {
		return replaySeen
	}
	if _, ok := c.prev[k]; ok {
		return replaySeen
	}
	if n := len(c.cur) + len(c.prev); n >= replayShared {
		// Fail closed, for the sources over their share only: an
		// unanswered probe is a measured loss, a forgotten replay is a
		// reflector.
		if n >= replayHard || c.held[src] >= replayShared/max(1, len(c.held)) {
			return replayFull
		}
	}
	c.cur[k] = src
	c.held[src]++
	return replayNew
}

func (r *Responder) serveTCP() error {
	for {
		c, err := r.tcp.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// EMFILE and friends: back off a little rather than spin.
			r.log.Warn("responder tcp accept", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		src := addrOf(c.RemoteAddr())
		r.mu.Lock()
		reason := ""
		switch {
		case r.closed:
			reason = "closed"
		case len(r.conns) >= r.cfg.MaxConns:
			reason = DropTCPLimit
		case r.perSrc[src] >= r.cfg.MaxConnsPerSource:
			reason = DropTCPSourceLimit
		default:
			r.conns[c] = src
			r.perSrc[src]++
			r.connWG.Add(1)
		}
		r.mu.Unlock()
		if reason != "" {
			c.SetLinger(0)
			c.Close()
			r.dropped.WithLabelValues(reason).Inc()
			continue
		}
		r.replies.WithLabelValues(wire.Protocol_PROTOCOL_TCP.Name()).Inc()
		go r.holdTCP(c, src)
	}
}

// holdTCP keeps an accepted connection until the prober closes it (the
// prober resets it right after connecting, so neither side keeps TIME_WAIT)
// or it idles out. A connection the responder has to close itself is reset
// too, so the responder never accumulates TIME_WAIT either.
func (r *Responder) holdTCP(c *net.TCPConn, src netip.Addr) {
	defer r.connWG.Done()
	defer func() {
		r.mu.Lock()
		delete(r.conns, c)
		if r.perSrc[src]--; r.perSrc[src] <= 0 {
			delete(r.perSrc, src)
		}
		r.mu.Unlock()
	}()
	var buf [512]byte
	read := 0
	c.SetReadDeadline(time.Now().Add(r.cfg.IdleTimeout))
	for read < maxTCPRead {
		n, err := c.Read(buf[:])
		read += n
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.SetLinger(0)
			}
			c.Close()
			return
		}
	}
	c.SetLinger(0)
	c.Close()
}
