package sim

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/meshlens/meshlens/internal/localize"
	"github.com/meshlens/meshlens/internal/pinglist"
	"github.com/meshlens/meshlens/internal/probe"
	"github.com/meshlens/meshlens/internal/wire"
)

// Latency model constants. Per link and direction a packet takes the base
// latency plus a uniform jitter; a small share of probes also meet a
// heavy (Pareto) tail, as queueing bursts and host scheduling produce.
const (
	stackLatency  = 10 * time.Microsecond // both ends' kernels, per probe
	tailProb      = 0.003
	tailScale     = 60e3 // ns, Pareto x_m
	tailAlpha     = 1.5
	tailCap       = 20e6 // ns
	synRetransmit = time.Second
	// Path discovery: an agent traces a probe whose RTT exceeds its pair's
	// lowest RTT seen by max(slowMargin, that lowest RTT), and lost probes,
	// at most Tracing.Budget per agent and round (idealTraces with ideal
	// tracing), as 007 bounds its traceroutes.
	slowMargin  = 300 * time.Microsecond
	idealTraces = 16
	maxHops     = 32
	// A lost probe is known lost after its timeout; a slow one when its
	// answer comes: the trace runs that much later, plus up to as much again.
	lostTraceDelay = time.Second
	slowTraceDelay = 100 * time.Millisecond
	// ICMP time-exceeded rate limits of a Linux router: per destination
	// (net.ipv4.icmp_ratelimit 1000 ms, burst XRLIM_BURST_FACTOR 6) and per
	// router (net.ipv4.icmp_msgs_per_sec 1000, icmp_msgs_burst 50).
	icmpPerDestRate  = 1.0
	icmpPerDestBurst = 6.0
	icmpRouterRate   = 1000.0
	icmpRouterBurst  = 50.0
)

// Fabric is the synthetic fabric: one agent per host following its real
// pinglist, a routing state, and the faults. It is deterministic for a
// scenario's seed: rounds must be stepped in order. Not safe for
// concurrent use.
type Fabric struct {
	sc     *Scenario
	x      *localize.Index
	start  time.Time
	protos []wire.Protocol

	peers   [][]int32 // per host, pinglist order
	slotOff []int32   // per host: first slot in minRTT
	minRTT  []uint32  // per (host, peer, proto): lowest RTT seen, ns
	tcpPort []uint32  // per host: next ephemeral port
	udpPort []uint32  // per host: the UDP prober's fixed port
	seq     []uint64  // per host: batch sequence
	addr    []string
	salt    []uint64 // per node: ECMP hash seed
	bhSalt  []uint64 // per node: blackhole hash seed

	routes   *localize.Routes
	routeKey string

	// Drained elements (drain.go); nil and "" when nothing is drained.
	drainNode map[int32]bool
	drainLink map[int32]bool
	drainKey  string
	drained   []string

	// Evidence on demand (SetBoost): boosted[h] are the peers host h
	// probes boostProbes times a round; nil when nothing is asked.
	boosted     []map[int32]bool
	boostProbes int
	extra       uint64

	linkFx [][]int32 // per link direction: faults acting on it
	nodeFx [][]int32 // per switch node
	slowFx [][]int32 // per host: host_slow faults
	downFx [][]int32 // per host: host_down faults

	bgKeep float64
	base   int64
	jitter int64

	// per-round buffers, reused
	results []wire.ProbeResult
	ptrs    []*wire.ProbeResult
	batch   wire.Batch
	lag     wire.SchedulingLag
	probes  uint64
	// Path discovery of the last round (see Tracing).
	want    []traceReq // this agent's anomalous probes of the round
	reqs    []traceReq // the round's traces, all agents
	reports []*wire.PathReport
	// ICMP rate limiters of the switches: per (router, source host) and
	// per router.
	icmpDest   map[[2]int32]*bucket
	icmpRouter map[int32]*bucket
	// of the probe just simulated, for its trace
	lastSport uint32
	lastFlow  uint64
	lastBack  uint64
}

// traceReq is an anomalous probe an agent traces.
type traceReq struct {
	src, dst int32
	proto    wire.Protocol
	sport    uint32
	// flow is the traced 5-tuple's hash, back the hash of the
	// destination's answer to it
	flow, back      uint64
	probeAt, at     int64 // offsets from the scenario start, ns
	lost, bothLost  bool
	excess          time.Duration
	round, agentSeq int
	// reverse: src traces the reply of dst's lost probe, sent from port
	// (see Fabric.traceBacks).
	reverse bool
	port    uint32
}

// bucket is a token bucket.
type bucket struct {
	tokens float64
	last   int64 // ns offset of the last refill
}

// take refills b to time t at rate per second up to burst and takes a
// token if there is one.
func (b *bucket) take(t int64, rate, burst float64) bool {
	if t > b.last {
		b.tokens = min(burst, b.tokens+float64(t-b.last)/1e9*rate)
		b.last = t
	}
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	return false
}

// NewFabric builds the synthetic fabric of sc over x (an index of
// sc.Topology), starting at start (aligned to the probe interval).
func NewFabric(sc *Scenario, x *localize.Index, start time.Time) (*Fabric, error) {
	t := sc.Topology
	f := &Fabric{sc: sc, x: x, start: start, bgKeep: 1 - sc.BackgroundLoss, base: int64(sc.BaseLatency), jitter: int64(sc.Jitter)}
	f.protos = sc.Protocols
	n := x.NumHosts
	f.peers = make([][]int32, n)
	f.slotOff = make([]int32, n+1)
	f.addr = make([]string, n)
	f.tcpPort = make([]uint32, n)
	f.udpPort = make([]uint32, n)
	f.seq = make([]uint64, n)
	// The real pinglists, entry by entry, kept as host indexes (4 bytes an
	// entry, not a pinglist.Peer's 40: 250 M entries at 50,000 hosts).
	hostIndex := make(map[string]int, n)
	for i, h := range t.Hosts {
		hostIndex[h.Name] = i
	}
	// Two passes, counting then filling one array, so no append slack
	// doubles the largest structure of the run.
	counts := make([]int32, n)
	var unknown error
	pinglist.EachPeer(t, 2, func(src, dst string, _ int) {
		if _, ok := x.Node(dst); !ok && unknown == nil {
			unknown = fmt.Errorf("sim: pinglist of %s names unknown host %s", src, dst)
		}
		counts[hostIndex[src]]++
	})
	if unknown != nil {
		return nil, unknown
	}
	var total int
	for _, c := range counts {
		total += int(c)
	}
	all := make([]int32, 0, total)
	for i, c := range counts {
		f.peers[i] = all[len(all) : len(all) : len(all)+int(c)]
		all = all[:len(all)+int(c)]
	}
	pinglist.EachPeer(t, 2, func(src, dst string, _ int) {
		id, _ := x.Node(dst)
		i := hostIndex[src]
		f.peers[i] = append(f.peers[i], id)
	})
	most := 0
	for i, h := range t.Hosts {
		f.addr[i] = h.Addr.String()
		f.slotOff[i+1] = f.slotOff[i] + int32(len(f.peers[i])*len(f.protos))
		most = max(most, len(f.peers[i])*len(f.protos))
		f.tcpPort[i] = 32768 + uint32(mix(sc.Seed^uint64(i))%28000)
		f.udpPort[i] = 33000 + uint32(mix(sc.Seed^uint64(i)^0xabc)%28000)
	}
	f.minRTT = make([]uint32, f.slotOff[n])
	f.results = make([]wire.ProbeResult, most)
	f.ptrs = make([]*wire.ProbeResult, most)
	for i := range f.results {
		f.ptrs[i] = &f.results[i]
	}
	f.salt = make([]uint64, x.NumNodes())
	f.bhSalt = make([]uint64, x.NumNodes())
	for i := range f.salt {
		f.salt[i] = mix(sc.Seed ^ uint64(i)*0x9e3779b97f4a7c15)
		f.bhSalt[i] = mix(f.salt[i] ^ 0x5bd1e995)
	}
	f.icmpDest = map[[2]int32]*bucket{}
	f.icmpRouter = map[int32]*bucket{}
	f.linkFx = make([][]int32, x.NumLinks())
	f.nodeFx = make([][]int32, x.NumNodes())
	f.slowFx = make([][]int32, n)
	f.downFx = make([][]int32, n)
	for i, ft := range sc.Faults {
		fi := int32(i)
		switch ft.Scope() {
		case ScopeLink:
			a, _ := x.Node(ft.A)
			b, _ := x.Node(ft.B)
			if l, ok := x.Link(a, b); ok {
				f.linkFx[l] = append(f.linkFx[l], fi)
			}
			if !ft.Directed {
				if l, ok := x.Link(b, a); ok {
					f.linkFx[l] = append(f.linkFx[l], fi)
				}
			}
		case ScopeDevice:
			d, _ := x.Node(ft.A)
			f.nodeFx[d] = append(f.nodeFx[d], fi)
		case ScopeHost:
			h, _ := x.Node(ft.A)
			if ft.Kind == HostSlow {
				f.slowFx[h] = append(f.slowFx[h], fi)
				break
			}
			if ft.Kind == HostDown {
				// Its agent neither probes nor publishes (Step).
				f.downFx[h] = append(f.downFx[h], fi)
			}
			// host_nic, host_down: the host's own packets, both ways.
			f.linkFx[x.HostUp[h]] = append(f.linkFx[x.HostUp[h]], fi)
			f.linkFx[x.HostDown[h]] = append(f.linkFx[x.HostDown[h]], fi)
		}
	}
	f.updateRoutes(0)
	return f, nil
}

// Index is the fabric's element index; trace link ids refer to it.
func (f *Fabric) Index() *localize.Index { return f.x }

// Rounds is how many probing rounds the scenario runs.
func (f *Fabric) Rounds() int {
	return int((f.sc.Duration + f.sc.Interval - 1) / f.sc.Interval)
}

// RoundStart is when round r starts.
func (f *Fabric) RoundStart(r int) time.Time { return f.start.Add(time.Duration(r) * f.sc.Interval) }

// Probes counts the probes simulated so far.
func (f *Fabric) Probes() uint64 { return f.probes }

// PathReports are the path discoveries of the last round's lost and slow
// probes as the agents publish them, one report per agent that traced, in
// host order: only what a Paris traceroute from the source learns (see
// Tracing). They are valid until the next Step.
func (f *Fabric) PathReports() []*wire.PathReport { return f.reports }

// Step simulates round r: every agent probes every peer of its pinglist
// once per protocol, at a per-pair phase plus jitter inside the round, and
// emit receives each agent's batch in host order. The batch and its
// results are reused after emit returns: emit must encode or ingest it, not
// keep it. An error from emit stops the round.
func (f *Fabric) Step(r int, emit func(*wire.Batch) error) error {
	t0 := int64(r) * int64(f.sc.Interval)
	f.updateRoutes(time.Duration(t0))
	f.reqs = f.reqs[:0]
	interval := int64(f.sc.Interval)
	startNs := f.start.UnixNano()
	np := len(f.protos)
	for h := range f.peers {
		// An agent publishes its round at the round's end: a host down
		// then publishes nothing, batch or traces, and its probes of the
		// round are gone with it.
		if f.down(int32(h), t0+interval-1) {
			continue
		}
		var rng rng
		rng.seed(mix(f.sc.Seed ^ uint64(r)*0x2545f4914f6cdd1d ^ uint64(h)*0x9e3779b97f4a7c15))
		f.want = f.want[:0]
		n := 0
		for k, g := range f.peers[h] {
			copies := 1
			if f.boosted != nil && f.boosted[h][g] {
				copies = f.boostProbes
			}
			for j, proto := range f.protos {
				for c := range copies {
					slot := int(f.slotOff[h]) + k*np + j
					phase := int64(mix(uint64(slot)^f.sc.Seed) % uint64(interval))
					// Extra probes of a boosted peer spread evenly over the
					// interval (probe.Target.Copy).
					phase = (phase + int64(c)*interval/int64(copies)) % interval
					off := phase + int64((rng.float()-0.5)*float64(interval)/20)
					off = ((off % interval) + interval) % interval
					if f.down(int32(h), t0+off) {
						continue // a host that is down sends nothing
					}
					if n == len(f.ptrs) {
						f.grow()
					}
					res := f.ptrs[n]
					n++
					f.probe(int32(h), g, proto, t0+off, int64(r)*int64(copies)+int64(c), &rng, res)
					res.StartUnixNano = startNs + t0 + off
					f.probes++
					if c > 0 {
						f.extra++
					}
					lost := wire.Lost(res)
					slow := false
					var excess time.Duration
					if res.Outcome == wire.Outcome_OUTCOME_OK {
						rtt := uint32(min(res.RttNs, math.MaxUint32))
						m := f.minRTT[slot]
						switch {
						case m == 0 || rtt < m:
							f.minRTT[slot] = rtt
						case int64(rtt-m) > max(int64(slowMargin), int64(m)):
							slow, excess = true, time.Duration(rtt-m)
						}
					}
					if lost || slow {
						f.want = append(f.want, traceReq{
							src: int32(h), dst: g, proto: proto, sport: f.lastSport, flow: f.lastFlow, back: f.lastBack,
							probeAt: t0 + off, lost: lost, bothLost: res.Outcome == wire.Outcome_OUTCOME_LOST, excess: excess,
							round: r,
						})
					}
				}
			}
		}
		f.seq[h]++
		f.lag.P50Ns = 50_000 + int64(rng.float()*50_000)
		f.lag.P99Ns = 150_000 + int64(rng.float()*150_000)
		f.lag.Samples = uint32(n)
		for _, fi := range f.slowFx[h] {
			if ft := &f.sc.Faults[fi]; ft.ActiveAt(time.Duration(t0)) {
				f.lag.P50Ns = int64(ft.Lag) / 3
				f.lag.P99Ns = int64(ft.Lag)
			}
		}
		f.lag.MaxNs = f.lag.P99Ns * 2
		b := &f.batch
		b.Agent = f.x.Names[h]
		b.Epoch = 1
		b.Seq = f.seq[h]
		b.CreatedUnixNano = startNs + t0 + interval
		// The round's probes are all in: the agent's data ends at the
		// round's end (the round is published then, its traces first).
		b.CompleteBeforeUnixNano = startNs + t0 + interval
		b.AgentVersion = "sim"
		b.PinglistVersion = 1
		b.SchedulingLag = &f.lag
		b.Results = f.ptrs[:n]
		if err := emit(b); err != nil {
			return fmt.Errorf("sim: round %d, agent %s: %w", r, b.Agent, err)
		}
		f.chooseTraces(&rng)
	}
	f.traceBacks(r)
	f.trace(r)
	return nil
}

// down reports whether host h is down (host_down) at offset t (ns from
// the scenario start).
func (f *Fabric) down(h int32, t int64) bool {
	for _, fi := range f.downFx[h] {
		if f.sc.Faults[fi].ActiveAt(time.Duration(t)) {
			return true
		}
	}
	return false
}

// walk is one direction of a probe.
type walk struct {
	keep      float64 // probability of surviving the random losses
	dead      bool    // dropped for sure: a down element, a blackhole, no route
	latencyNs int64
}

// probe fills res with the outcome of one probe from h to g sent at offset
// t (ns from the scenario start), the n-th probe of h to g over UDP;
// f.lastSport and f.lastFlow receive its source port and forward flow
// hash.
func (f *Fabric) probe(h, g int32, proto wire.Protocol, t, n int64, rng *rng, res *wire.ProbeResult) {
	var sport uint32
	if proto == wire.Protocol_PROTOCOL_TCP {
		// A fresh source port per connection, as the kernel picks them.
		sport = f.tcpPort[h]
		f.tcpPort[h]++
		if f.tcpPort[h] > 60999 {
			f.tcpPort[h] = 32768
		}
	} else {
		// The agent's UDP probes to a peer take its sockets in turn
		// (probe.UDPProber): a round's probe to g is from one of them.
		k := (n + int64(g)) % probe.DefaultUDPPorts
		sport = f.udpPort[h] + uint32(k)
	}
	dport := uint32(f.x.Topo.ResponderPort)
	fwdFlow := mix(uint64(h)*0x100000001b3 + uint64(g) ^ uint64(sport)<<40 ^ uint64(dport)<<20 ^ uint64(proto))
	revFlow := mix(uint64(g)*0x100000001b3 + uint64(h) ^ uint64(dport)<<40 ^ uint64(sport)<<20 ^ uint64(proto) ^ 0x77)
	f.lastSport, f.lastFlow, f.lastBack = sport, fwdFlow, revFlow
	fwd := f.walk(h, g, fwdFlow, t, rng)
	rev := f.walk(g, h, revFlow, t, rng)
	keep := fwd.keep * rev.keep
	dead := fwd.dead || rev.dead
	rtt := fwd.latencyNs + rev.latencyNs + int64(stackLatency)
	if rng.float() < tailProb {
		rtt += int64(math.Min(tailCap, tailScale/math.Pow(1-rng.float(), 1/tailAlpha)))
	}
	outcome := wire.Outcome_OUTCOME_OK
	if dead || rng.float() >= keep {
		outcome = wire.Outcome_OUTCOME_LOST
		// TCP retransmits the SYN after 1 s on the same 5-tuple, hence the
		// same path: a blackhole or a dead element takes it too.
		if proto == wire.Protocol_PROTOCOL_TCP && !dead && rng.float() < keep {
			outcome = wire.Outcome_OUTCOME_SYN_RETRANSMIT
			rtt += int64(synRetransmit)
		}
	}
	for _, fi := range f.slowFx[h] {
		if ft := &f.sc.Faults[fi]; ft.ActiveAt(time.Duration(t)) {
			// A starved agent timestamps late: its RTTs inflate, nothing is lost.
			rtt += int64(float64(ft.Add) * (0.5 + rng.float()))
		}
	}
	res.Dst = f.x.Names[g]
	res.Protocol = proto
	res.Outcome = outcome
	res.RttNs = 0
	if outcome != wire.Outcome_OUTCOME_LOST {
		res.RttNs = rtt
	}
	res.SrcAddr = f.addr[h]
	res.SrcPort = sport
	res.DstAddr = f.addr[g]
	res.DstPort = dport
	res.Seq = 0
}

// walk routes one packet from host src to host dst: up the access link,
// then at every switch the next hop the flow's hash picks among the
// equal-cost ones, then down to dst.
func (f *Fabric) walk(src, dst int32, flow uint64, t int64, rng *rng) walk {
	x := f.x
	w := walk{keep: 1}
	f.link(x.HostUp[src], t, rng, &w)
	cur := x.HostToR[src]
	f.nodeIn(cur, t, &w)
	f.nodeOut(cur, flow, t, &w)
	f.walkFrom(cur, dst, flow, t, rng, &w)
	return w
}

// walkFrom continues a walk at switch cur (already crossed) to host dst.
func (f *Fabric) walkFrom(cur, dst int32, flow uint64, t int64, rng *rng, w *walk) {
	x := f.x
	target := x.HostToR[dst]
	slot := x.ToRSlot[target]
	for hops := 0; cur != target; hops++ {
		hop, ok := f.nextHop(cur, slot, flow, hops)
		if !ok {
			w.dead = true // no route: the rest of the path does not exist
			return
		}
		f.link(hop.Link, t, rng, w)
		cur = hop.Node
		f.nodeIn(cur, t, w)
		f.nodeOut(cur, flow, t, w)
	}
	f.link(x.HostDown[dst], t, rng, w)
}

// nextHop is the equal-cost next hop the flow's hash picks at switch cur
// towards the ToR in slot, the hops-th of its walk.
func (f *Fabric) nextHop(cur, slot int32, flow uint64, hops int) (localize.Hop, bool) {
	next := f.routes.Next(cur, slot)
	if len(next) == 0 || hops > maxHops {
		return localize.Hop{}, false
	}
	return next[mix(flow^f.salt[cur])%uint64(len(next))], true
}

func (f *Fabric) link(l int32, t int64, rng *rng, w *walk) {
	w.keep *= f.bgKeep
	w.latencyNs += f.base
	if f.jitter > 0 {
		w.latencyNs += int64(rng.float() * float64(f.jitter))
	}
	for _, fi := range f.linkFx[l] {
		ft := &f.sc.Faults[fi]
		if !ft.ActiveAt(time.Duration(t)) {
			continue
		}
		switch ft.Kind {
		case LinkLoss, HostNIC:
			w.keep *= 1 - ft.Rate
		case LinkLatency:
			w.latencyNs += int64(ft.Add)
		case LinkDown, HostDown:
			w.dead = true
		case Flap:
			if (t-int64(ft.At))%int64(ft.Period) < int64(ft.Period)/2 {
				w.dead = true
			}
		}
	}
}

// nodeIn is what switch n does to a packet arriving: a down switch takes
// nothing in, a lossy one drops a share. A packet that got in is one n can
// answer (a trace's TTL expiring there).
func (f *Fabric) nodeIn(n int32, t int64, w *walk) {
	for _, fi := range f.nodeFx[n] {
		ft := &f.sc.Faults[fi]
		if !ft.ActiveAt(time.Duration(t)) {
			continue
		}
		switch ft.Kind {
		case DeviceLoss:
			w.keep *= 1 - ft.Rate
		case DeviceDown:
			w.dead = true
		}
	}
}

// nodeOut is what switch n does to a packet it forwards: a blackhole drops
// whole flows at forwarding (a bad FIB or ECMP member entry), after the
// TTL check, so the blackholing switch still answers a trace's TTL.
func (f *Fabric) nodeOut(n int32, flow uint64, t int64, w *walk) {
	for _, fi := range f.nodeFx[n] {
		ft := &f.sc.Faults[fi]
		if ft.Kind != Blackhole || !ft.ActiveAt(time.Duration(t)) {
			continue
		}
		// The same flows every time: the hash decides, not chance.
		if unit(mix(flow^f.bhSalt[n])) < ft.Fraction {
			w.dead = true
		}
	}
}

// updateRoutes recomputes the routing tables when the set of down elements
// routing has converged around changes at offset t, or the set of drained
// elements (which routing avoids at once) changed.
func (f *Fabric) updateRoutes(t time.Duration) {
	var down []int
	for i, ft := range f.sc.Faults {
		if (ft.Kind == LinkDown || ft.Kind == DeviceDown) && ft.ActiveAt(t) && t >= ft.At+f.sc.Convergence {
			down = append(down, i)
		}
	}
	sort.Ints(down)
	var key strings.Builder
	for _, i := range down {
		key.WriteString(strconv.Itoa(i) + ",")
	}
	key.WriteString(f.drainKey)
	if f.routes != nil && key.String() == f.routeKey {
		return
	}
	f.routeKey = key.String()
	nodes := map[int32]bool{}
	links := map[int32]bool{}
	for _, i := range down {
		ft := f.sc.Faults[i]
		a, _ := f.x.Node(ft.A)
		if ft.Kind == DeviceDown {
			nodes[a] = true
			continue
		}
		b, _ := f.x.Node(ft.B)
		if l, ok := f.x.Link(a, b); ok {
			// Routing takes a link out in both directions.
			links[l], links[f.x.Reverse[l]] = true, true
		}
	}
	f.routes = f.x.Routes(func(n int32) bool { return nodes[n] || f.drainNode[n] }, func(l int32) bool { return links[l] || f.drainLink[l] })
}

// mix is SplitMix64's finalizer: a fast, well-spread 64-bit hash.
func mix(z uint64) uint64 {
	z ^= z >> 30
	z *= 0xbf58476d1ce4e5b9
	z ^= z >> 27
	z *= 0x94d049bb133111eb
	z ^= z >> 31
	return z
}

// unit maps a hash to [0, 1).
func unit(h uint64) float64 { return float64(h>>11) / (1 << 53) }

// rng is SplitMix64: tiny state, so every (round, agent) gets its own
// stream and a run does not depend on the order agents are stepped in.
type rng struct{ s uint64 }

func (r *rng) seed(s uint64) { r.s = s }

func (r *rng) float() float64 {
	r.s += 0x9e3779b97f4a7c15
	return unit(mix(r.s))
}

// grow makes room for more results in a round (a boosted agent's).
func (f *Fabric) grow() {
	results := make([]wire.ProbeResult, max(len(f.ptrs), 64))
	for i := range results {
		f.ptrs = append(f.ptrs, &results[i])
	}
}

// SetBoost applies evidence on demand from the next round on: agents
// probe the listed peers probes times a round per protocol, as real
// agents do with a pinglist.Boost (the peer must be in the agent's
// pinglist; others are ignored, as agents ignore them). Nil or probes < 2
// withdraws every boost.
func (f *Fabric) SetBoost(probes int, agents map[string][]string) {
	if probes < 2 || len(agents) == 0 {
		f.boosted, f.boostProbes = nil, 0
		return
	}
	f.boosted = make([]map[int32]bool, f.x.NumHosts)
	f.boostProbes = min(probes, pinglist.MaxBoostProbes)
	for agent, peers := range agents {
		h, ok := f.x.Node(agent)
		if !ok || f.x.IsSwitch(h) {
			continue
		}
		mine := map[int32]bool{}
		for _, g := range f.peers[h] {
			mine[g] = true
		}
		for _, p := range peers {
			if g, ok := f.x.Node(p); ok && mine[g] {
				if f.boosted[h] == nil {
					f.boosted[h] = map[int32]bool{}
				}
				f.boosted[h][g] = true
			}
		}
	}
}

// ExtraProbes counts the probes evidence on demand added, over the run.
func (f *Fabric) ExtraProbes() uint64 { return f.extra }
