package agent

// Path discovery: a probe that was lost or clearly slow is traced, Paris
// style (its exact 5-tuple, TTL 1, 2, ...), within a per-agent budget, and
// the traces are published in batches as wire.PathReport on the agent's
// paths subject. Best effort by design: a trace that does not fit the
// budget or the queue is counted and skipped, a report the bus refuses is
// counted and dropped (path evidence sharpens localization; it is not
// measurement data that must arrive).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/meshlens/meshlens/internal/bus"
	"github.com/meshlens/meshlens/internal/probe"
	"github.com/meshlens/meshlens/internal/wire"
)

const (
	// DefaultTraceRate is the per-agent trace budget (traces per second)
	// and DefaultTraceBurst its burst: a fault that loses every probe of
	// an agent still costs at most ~2 × (8 + 2 × 6) packets a second
	// (TTLs, and the queries of silent TTLs before answered ones).
	DefaultTraceRate  = 2.0
	DefaultTraceBurst = 10
	// DefaultTraceFlush is how often traced probes are published.
	DefaultTraceFlush = 2 * time.Second
	// slowMargin: a probe is clearly slow when its RTT exceeds the pair's
	// recent minimum by more than max(slowMargin, that minimum), as the
	// simulator decides (internal/sim/fabric.go).
	slowMargin = 300 * time.Microsecond
	// minRTTPeriod: the pair's minimum is over the last one to two periods,
	// so a path that got slower for good becomes the new normal.
	minRTTPeriod = 5 * time.Minute
	// traceWorkers run traces at once; traceQueueLen waits behind them.
	traceWorkers  = 4
	traceQueueLen = 64
	// maxTraceQueries bounds --trace-queries: traceroute's most is 10.
	maxTraceQueries = 10
	// onDemandRate bounds the traces /trace runs (per second, burst 5).
	onDemandRate = 1.0
)

// Skip reasons of meshlens_agent_traces_skipped_total.
const (
	skipBudget      = "budget"
	skipQueueFull   = "queue_full"
	skipNoPrivilege = "no_privilege"
	skipNoTracer    = "no_tracer"
)

// traceMetrics are the agent's path-discovery counters.
type traceMetrics struct {
	started, completed *prometheus.CounterVec
	skipped            *prometheus.CounterVec
	errors             prometheus.Counter
	hops               *prometheus.CounterVec
	packets            prometheus.Counter
	reports            prometheus.Counter
	reportErrors       prometheus.Counter
	enabled            prometheus.Gauge
	traceBacks         prometheus.Counter
	traceBackErrors    prometheus.Counter
	reverseSkipped     *prometheus.CounterVec
}

func newTraceMetrics() *traceMetrics {
	m := &traceMetrics{
		started: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_agent_traces_started_total", Help: "Paris traceroutes started, by trigger (lost, slow, on_demand, reverse: a peer's lost probe's reply).",
		}, []string{"trigger"}),
		completed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_agent_traces_completed_total", Help: "Paris traceroutes completed, by whether the destination answered.",
		}, []string{"reached"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_agent_traces_skipped_total", Help: "Lost or slow probes not traced: budget exhausted, queue full, no raw-socket privilege, tracer not running.",
		}, []string{"reason"}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_agent_trace_errors_total", Help: "Traces that failed locally (no route, send error).",
		}),
		hops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_agent_trace_hops_total", Help: "Hops of completed traces, by whether they answered.",
		}, []string{"answered"}),
		packets: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_agent_trace_packets_sent_total", Help: "Trace packets sent (the cost of path discovery on the wire).",
		}),
		reports: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_agent_path_reports_published_total", Help: "Path reports published on the agent's paths subject.",
		}),
		reportErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_agent_path_report_errors_total", Help: "Path reports dropped: the bus refused them (best effort, not spooled).",
		}),
		enabled: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshlens_agent_tracing_enabled", Help: "1 while the agent can trace (raw sockets open), else 0.",
		}),
		traceBacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_agent_trace_backs_requested_total", Help: "Trace-back requests sent: a lost probe's peer asked to trace the reply's way back.",
		}),
		traceBackErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_agent_trace_back_errors_total", Help: "Trace-back requests that could not be sent (no key yet, send error).",
		}),
		reverseSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_agent_reverse_traces_skipped_total", Help: "Peers' trace-back requests not traced: budget exhausted (shared with the agent's own traces), queue full, no raw-socket privilege, tracer not running.",
		}, []string{"reason"}),
	}
	for _, r := range []string{skipBudget, skipQueueFull, skipNoPrivilege, skipNoTracer} {
		m.skipped.WithLabelValues(r)
		m.reverseSkipped.WithLabelValues(r)
	}
	for _, v := range []string{"true", "false"} {
		m.completed.WithLabelValues(v)
		m.hops.WithLabelValues(v)
	}
	return m
}

func (m *traceMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.started, m.completed, m.skipped, m.errors, m.hops, m.packets, m.reports, m.reportErrors, m.enabled,
		m.traceBacks, m.traceBackErrors, m.reverseSkipped}
}

// pairMin is a pair's recent minimum RTT, over two rotating periods.
type pairMin struct {
	cur, prev time.Duration // 0: none yet
	rotated   time.Time
}

func (p *pairMin) min() time.Duration {
	switch {
	case p.cur == 0:
		return p.prev
	case p.prev == 0:
		return p.cur
	}
	return min(p.cur, p.prev)
}

type pairKey struct {
	dst   string
	proto wire.Protocol
}

type traceJob struct {
	flow    probe.TraceFlow
	probe   *wire.TracedProbe
	trigger string
	// held: the job holds the agent's mark (paths.held). A reverse trace
	// does not: it traces a peer's probe, not one of this agent's data.
	held bool
}

// Triggers of meshlens_agent_traces_started_total besides lost and slow.
const (
	triggerOnDemand = "on_demand"
	// triggerReverse: a peer's trace-back request for its lost probe's
	// reply (probe.TraceBack).
	triggerReverse = "reverse"
)

// paths is the agent's path-discovery state.
type paths struct {
	m       *traceMetrics
	queue   chan traceJob
	maxTTL  int
	queries int
	enabled bool

	mu       sync.Mutex
	tracer   *probe.Tracer    // the probe runtime's; nil while none
	udp      *probe.UDPProber // the probe runtime's, which sends trace-back requests
	source   netip.Addr       // the probe runtime's source address, if bound
	noPriv   bool             // NewTracer said no privilege (logged once)
	budget   *probe.TokenBucket
	onDemand *probe.TokenBucket
	mins     map[pairKey]*pairMin
	pending  []*wire.TracedProbe
	// held counts, by probe start (Unix ns), the traces queued, running or
	// waiting to be published: the agent's mark of where its data ends
	// stays before them, so that a window is not sealed (and localized)
	// before the traces of its lost probes are in.
	held map[int64]int
}

// holdLocked and releaseLocked count a trace of the probe started at start
// in and out of held.
func (p *paths) holdLocked(start int64) { p.held[start]++ }

// skipLocked is why a trace cannot run now, "" when it can; when it can,
// it has taken its place in the budget.
func (p *paths) skipLocked(now time.Time) string {
	switch {
	case p.noPriv:
		return skipNoPrivilege
	case !p.budget.Allow(now):
		return skipBudget
	case p.tracer == nil:
		return skipNoTracer
	}
	return ""
}

func (p *paths) releaseLocked(start int64) {
	if p.held[start]--; p.held[start] <= 0 {
		delete(p.held, start)
	}
}

// heldBefore is the earliest start of a probe whose trace is not yet
// published, or mark when there is none before it.
func (p *paths) heldBefore(mark int64) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	for start := range p.held {
		mark = min(mark, start)
	}
	return mark
}

func (a *Agent) setTracer(t *probe.Tracer, udp *probe.UDPProber, source netip.Addr) {
	a.paths.mu.Lock()
	a.paths.tracer, a.paths.udp, a.paths.source = t, udp, source
	a.paths.mu.Unlock()
	if t != nil {
		a.paths.m.enabled.Set(1)
	} else {
		a.paths.m.enabled.Set(0)
	}
}

func (a *Agent) runtimeSource() netip.Addr {
	a.paths.mu.Lock()
	defer a.paths.mu.Unlock()
	return a.paths.source
}

func (a *Agent) currentTracer() *probe.Tracer {
	a.paths.mu.Lock()
	defer a.paths.mu.Unlock()
	return a.paths.tracer
}

// startTracer opens the runtime's tracer, or says once, at INFO, why the
// agent cannot trace.
func (a *Agent) startTracer(udp *probe.UDPProber) *probe.Tracer {
	if !a.paths.enabled {
		return nil
	}
	t, err := probe.NewTracer(probe.TracerConfig{MaxTTL: a.paths.maxTTL, Queries: a.paths.queries, UDPEcho: udp, Registerer: a.cfg.Registerer})
	if errors.Is(err, probe.ErrNoRawSocket) {
		a.paths.mu.Lock()
		first := !a.paths.noPriv
		a.paths.noPriv = true
		a.paths.mu.Unlock()
		if first {
			a.log.Info("path discovery off: no raw sockets (run as root or grant CAP_NET_RAW); probing goes on", "err", err)
		}
		return nil
	}
	if err != nil {
		a.log.Error("path discovery off until the probes restart", "err", err)
		return nil
	}
	return t
}

// observe decides whether a probe result is traced, and queues it.
func (a *Agent) observe(r *wire.ProbeResult) {
	if !a.paths.enabled || (r.Protocol != wire.Protocol_PROTOCOL_TCP && r.Protocol != wire.Protocol_PROTOCOL_UDP) {
		return
	}
	now := a.cfg.Clock.Now()
	p := &a.paths
	p.mu.Lock()
	trigger, tp := p.anomalyLocked(r, now)
	if trigger == "" {
		p.mu.Unlock()
		return
	}
	skip := p.skipLocked(now)
	p.mu.Unlock()
	if skip != "" {
		p.m.skipped.WithLabelValues(skip).Inc()
		return
	}
	src, err1 := netip.ParseAddr(r.SrcAddr)
	dst, err2 := netip.ParseAddr(r.DstAddr)
	if err1 != nil || err2 != nil || r.SrcPort == 0 || r.DstPort == 0 || r.SrcPort > 65535 || r.DstPort > 65535 {
		p.m.errors.Inc() // a probe that never left (local error) has no 5-tuple
		return
	}
	job := traceJob{trigger: trigger, probe: tp, held: true, flow: probe.TraceFlow{Protocol: r.Protocol,
		Src: netip.AddrPortFrom(src.Unmap(), uint16(r.SrcPort)), Dst: netip.AddrPortFrom(dst.Unmap(), uint16(r.DstPort))}}
	p.mu.Lock()
	p.holdLocked(tp.StartUnixNano)
	select {
	case p.queue <- job:
	default:
		p.releaseLocked(tp.StartUnixNano)
		p.m.skipped.WithLabelValues(skipQueueFull).Inc()
	}
	p.mu.Unlock()
}

// onTraceBack takes a peer's trace-back request (probe.ResponderConfig.
// TraceBack): from asked to have the reply to its lost probe traced from
// local:port, the way the reply went. It spends the agent's own trace
// budget, so a peer that asks a lot costs this agent its own traces, not
// more packets; and it traces only toward from, the address the request
// came from.
func (a *Agent) onTraceBack(from, local netip.Addr, port uint16, tb probe.TraceBack) {
	p := &a.paths
	now := a.cfg.Clock.Now()
	p.mu.Lock()
	skip := p.skipLocked(now)
	p.mu.Unlock()
	if skip != "" {
		p.m.reverseSkipped.WithLabelValues(skip).Inc()
		return
	}
	job := traceJob{trigger: triggerReverse,
		probe: &wire.TracedProbe{Dst: from.String(), Protocol: tb.Protocol, StartUnixNano: tb.ProbeStartUnixNano, Lost: true,
			Reverse: true, SrcPort: uint32(port), DstPort: uint32(tb.Port)},
		flow: probe.TraceFlow{Protocol: tb.Protocol, Src: netip.AddrPortFrom(local, port), Dst: netip.AddrPortFrom(from, tb.Port)}}
	select {
	case p.queue <- job:
	default:
		p.m.reverseSkipped.WithLabelValues(skipQueueFull).Inc()
	}
}

// requestTraceBack asks the peer of a lost probe being traced to trace
// the reply's way back (probe.UDPProber.TraceBack): the prober's trace
// sees only the way there.
func (a *Agent) requestTraceBack(job traceJob) {
	a.paths.mu.Lock()
	udp := a.paths.udp
	a.paths.mu.Unlock()
	if udp == nil {
		a.paths.m.traceBackErrors.Inc()
		return
	}
	err := udp.TraceBack(job.flow.Dst, probe.TraceBack{Protocol: job.flow.Protocol, Port: job.flow.Src.Port(), ProbeStartUnixNano: job.probe.StartUnixNano})
	if err != nil {
		a.paths.m.traceBackErrors.Inc()
		a.log.Debug("trace-back request", "peer", job.flow.Dst, "err", err)
		return
	}
	a.paths.m.traceBacks.Inc()
}

// anomalyLocked says why r is traced ("lost", "slow"), or "" when it is
// not, and starts the traced probe it would publish. It keeps the pair's
// recent minimum RTT.
func (p *paths) anomalyLocked(r *wire.ProbeResult, now time.Time) (string, *wire.TracedProbe) {
	tp := &wire.TracedProbe{Dst: r.Dst, Protocol: r.Protocol, StartUnixNano: r.StartUnixNano, SrcPort: r.SrcPort, DstPort: r.DstPort}
	switch r.Outcome {
	case wire.Outcome_OUTCOME_LOST:
		tp.Lost = true
		// A TCP connect that timed out lost its SYN retransmission too.
		tp.BothLost = r.Protocol == wire.Protocol_PROTOCOL_TCP
		return "lost", tp
	case wire.Outcome_OUTCOME_SYN_RETRANSMIT:
		tp.Lost = true
		return "lost", tp
	case wire.Outcome_OUTCOME_OK:
	default:
		return "", nil // refused, error: the host answered or the probe never left
	}
	rtt := time.Duration(r.RttNs)
	k := pairKey{r.Dst, r.Protocol}
	pm := p.mins[k]
	if pm == nil {
		pm = &pairMin{rotated: now}
		p.mins[k] = pm
	}
	if now.Sub(pm.rotated) > minRTTPeriod {
		pm.prev, pm.cur, pm.rotated = pm.cur, 0, now
	}
	trigger := ""
	if m := pm.min(); m > 0 && rtt-m > max(slowMargin, m) {
		trigger, tp.ExcessNs = "slow", int64(rtt-m)
	}
	if rtt > 0 && (pm.cur == 0 || rtt < pm.cur) {
		pm.cur = rtt
	}
	return trigger, tp
}

// forgetPairs drops the RTT minimums of pairs no longer probed.
func (a *Agent) forgetPairs(now time.Time) {
	a.paths.mu.Lock()
	defer a.paths.mu.Unlock()
	for k, pm := range a.paths.mins {
		if now.Sub(pm.rotated) > 3*minRTTPeriod {
			delete(a.paths.mins, k)
		}
	}
}

// runTrace runs one trace with the current tracer and fills tp.
func (a *Agent) runTrace(ctx context.Context, job traceJob) (probe.TraceResult, error) {
	t := a.currentTracer()
	if t == nil {
		a.paths.m.skipped.WithLabelValues(skipNoTracer).Inc()
		return probe.TraceResult{}, errors.New("agent: path discovery is off (no raw sockets, or not probing yet)")
	}
	a.paths.m.started.WithLabelValues(job.trigger).Inc()
	res, err := t.Trace(ctx, job.flow, 0)
	a.paths.m.packets.Add(float64(res.Sent))
	if err != nil {
		a.paths.m.errors.Inc()
		return res, err
	}
	a.paths.m.completed.WithLabelValues(strconv.FormatBool(res.Reached)).Inc()
	for _, h := range res.Hops {
		a.paths.m.hops.WithLabelValues(strconv.FormatBool(h.IsValid())).Inc()
	}
	job.probe.Hops = res.HopStrings()
	job.probe.Reached = res.Reached
	job.probe.TracedUnixNano = a.cfg.Clock.Now().UnixNano()
	return res, nil
}

// tracePaths runs the trace workers and publishes their reports until
// ctx ends.
func (a *Agent) tracePaths(ctx context.Context, nc *nats.Conn) {
	var wg sync.WaitGroup
	for range traceWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case job := <-a.paths.queue:
					if job.probe.Lost && !job.probe.Reverse {
						a.requestTraceBack(job)
					}
					if _, err := a.runTrace(ctx, job); err != nil {
						if ctx.Err() == nil {
							a.log.Debug("trace", "dst", job.probe.Dst, "err", err)
						}
						if job.held {
							a.paths.mu.Lock()
							a.paths.releaseLocked(job.probe.StartUnixNano)
							a.paths.mu.Unlock()
						}
						continue
					}
					window, _ := a.windowAndTimeout()
					a.paths.mu.Lock()
					a.paths.pending = append(a.paths.pending, job.probe)
					full := len(a.paths.pending) >= wire.MaxTracedPerReport
					a.paths.mu.Unlock()
					// A trace of a window that has ended goes out at once:
					// the window's seal waits for it.
					ended := window > 0 && job.probe.StartUnixNano < a.cfg.Clock.Now().UnixNano()/int64(window)*int64(window)
					if full || ended {
						a.publishPaths(nc)
					}
				}
			}
		}()
	}
	tick := a.cfg.Clock.NewTicker(a.cfg.TraceFlush)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			a.publishPaths(nc) // what finished: best effort
			return
		case <-tick.C():
			a.publishPaths(nc)
			a.forgetPairs(a.cfg.Clock.Now())
		}
	}
}

// publishPaths publishes the traced probes gathered so far as one report.
func (a *Agent) publishPaths(nc *nats.Conn) {
	a.paths.mu.Lock()
	probes := a.paths.pending
	a.paths.pending = nil
	a.paths.mu.Unlock()
	if len(probes) == 0 {
		return
	}
	rep := &wire.PathReport{Agent: a.cfg.Host, Probes: probes}
	data, err := proto.Marshal(rep)
	if err == nil {
		err = nc.Publish(bus.PathsSubject(a.cfg.Host), data)
	}
	// Published or dropped, these traces no longer hold the mark.
	a.paths.mu.Lock()
	for _, tp := range probes {
		if !tp.Reverse {
			a.paths.releaseLocked(tp.StartUnixNano)
		}
	}
	a.paths.mu.Unlock()
	if err != nil {
		a.paths.m.reportErrors.Inc()
		a.log.Debug("path report dropped", "probes", len(probes), "err", err)
		return
	}
	a.paths.m.reports.Inc()
}

// TraceReply is what GET /trace answers: one on-demand trace.
type TraceReply struct {
	Src      string   `json:"src"`
	Dst      string   `json:"dst"`
	SrcAddr  string   `json:"src_addr"`
	DstAddr  string   `json:"dst_addr"`
	Protocol string   `json:"protocol"`
	SrcPort  uint16   `json:"src_port"`
	DstPort  uint16   `json:"dst_port"`
	Hops     []string `json:"hops"`
	Reached  bool     `json:"reached"`
	Packets  int      `json:"packets"`
	// TracedUnixNano is when the trace ended.
	TracedUnixNano int64 `json:"traced_unix_nano"`
}

// TraceHandler serves GET /trace?dst=HOST-OR-ADDR[&protocol=tcp|udp]
// [&src_port=N][&dst_port=N][&dst_addr=ADDR]: one Paris traceroute run now,
// from this agent (meshlens trace). dst is a peer of the pinglist or an
// address; the destination port defaults to the fleet's responder port,
// the source port to a random ephemeral one. Rate-limited (1/s, burst 5),
// answers 429 over it, 503 when the agent cannot trace.
func (a *Agent) TraceHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		fail := func(code int, format string, args ...any) {
			http.Error(w, fmt.Sprintf("trace: "+format, args...), code)
		}
		dstName := q.Get("dst")
		if dstName == "" {
			fail(http.StatusBadRequest, "dst (a peer host or an address) is required")
			return
		}
		protoName := q.Get("protocol")
		if protoName == "" {
			protoName = "tcp"
		}
		job := traceJob{trigger: triggerOnDemand, probe: &wire.TracedProbe{Dst: dstName}}
		proto, err := wire.ParsePeerProtocol(protoName)
		if err == nil && !proto.NeedsResponder() {
			err = fmt.Errorf("protocol %q: traces follow flows to the responder (%s)", protoName, strings.Join(tracedProtocols(), " or "))
		}
		if err != nil {
			fail(http.StatusBadRequest, "%v", err)
			return
		}
		job.flow.Protocol = proto
		port := func(name string, def uint16) (uint16, bool) {
			s := q.Get(name)
			if s == "" {
				return def, true
			}
			n, err := strconv.ParseUint(s, 10, 16)
			if err != nil || n == 0 {
				fail(http.StatusBadRequest, "%s %q: a port 1..65535", name, s)
				return 0, false
			}
			return uint16(n), true
		}
		a.mu.Lock()
		pl := a.pl
		a.mu.Unlock()
		var dst netip.Addr
		respPort := uint16(0)
		if pl != nil {
			respPort = uint16(pl.ResponderPort)
			for _, p := range pl.Peers {
				if p.Host == dstName {
					dst, _ = netip.ParseAddr(p.Addr)
				}
			}
		}
		if s := q.Get("dst_addr"); s != "" && !dst.IsValid() {
			dst, _ = netip.ParseAddr(s)
		}
		if !dst.IsValid() {
			var err error
			if dst, err = netip.ParseAddr(dstName); err != nil {
				fail(http.StatusBadRequest, "dst %q is neither a peer of this agent's pinglist nor an address", dstName)
				return
			}
		}
		sport, ok := port("src_port", uint16(32768+time.Now().UnixNano()%28232))
		if !ok {
			return
		}
		if respPort == 0 {
			respPort = 7
		}
		dport, ok := port("dst_port", respPort)
		if !ok {
			return
		}
		a.paths.mu.Lock()
		allowed := a.paths.onDemand.Allow(a.cfg.Clock.Now())
		a.paths.mu.Unlock()
		if !allowed {
			fail(http.StatusTooManyRequests, "at most %v on-demand traces per second", onDemandRate)
			return
		}
		var src netip.Addr
		if rt := a.runtimeSource(); rt.IsValid() {
			src = rt
		} else {
			src = netip.IPv4Unspecified()
		}
		job.flow.Src = netip.AddrPortFrom(src, sport)
		job.flow.Dst = netip.AddrPortFrom(dst.Unmap(), dport)
		res, err := a.runTrace(r.Context(), job)
		if err != nil {
			code := http.StatusInternalServerError
			if a.currentTracer() == nil {
				code = http.StatusServiceUnavailable
			}
			fail(code, "%v", err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(TraceReply{
			Src: a.cfg.Host, Dst: dstName, SrcAddr: res.Src.String(), DstAddr: dst.String(), Protocol: protoName,
			SrcPort: sport, DstPort: dport, Hops: job.probe.Hops, Reached: res.Reached, Packets: res.Sent,
			TracedUnixNano: job.probe.TracedUnixNano,
		})
	})
}

// tracedProtocols names the protocols a trace can follow: those whose
// probes are flows with ports to the responder, the 5-tuple ECMP hashes.
func tracedProtocols() []string {
	var out []string
	for _, r := range wire.Protocols() {
		if r.Peer && r.Responder {
			out = append(out, r.Name)
		}
	}
	return out
}
