package sim

import (
	"sort"
	"time"

	"github.com/meshlens/meshlens/internal/probe"
	"github.com/meshlens/meshlens/internal/wire"
)

// chooseTraces picks, of the anomalous probes the agent just stepped saw
// (f.want), the ones it traces: the first Budget in probe time, as an agent
// that traces when it notices an anomaly and stops at its budget. Each
// gets the time its trace runs.
func (f *Fabric) chooseTraces(rng *rng) {
	want := f.want
	if f.sc.Tracing.Ideal {
		// Today's complete traces: pinglist order, at the probe's time.
		for i := range want[:min(len(want), idealTraces)] {
			want[i].at = want[i].probeAt
			want[i].agentSeq = i
			f.reqs = append(f.reqs, want[i])
		}
		return
	}
	sort.Slice(want, func(i, j int) bool { return want[i].probeAt < want[j].probeAt })
	for i := range want[:min(len(want), f.sc.Tracing.Budget)] {
		q := want[i]
		delay := slowTraceDelay
		if q.lost {
			delay = lostTraceDelay
		}
		q.at = q.probeAt + int64(float64(delay)*(1+rng.float()))
		q.agentSeq = i
		f.reqs = append(f.reqs, q)
	}
}

// traceBackDelay is how long after its prober starts tracing a lost
// probe the probed agent starts tracing the reply's way: the trace-back
// request's one way and the agent's queue.
const traceBackDelay = int64(5 * time.Millisecond)

// traceBacks adds, for each lost probe traced this round, the trace of
// its reply's way that the probed agent runs when the prober asks
// (probe.TraceBack): if the request gets there (over the probe's own
// 5-tuple for UDP, from an echo socket for TCP), the probed agent is up
// at the round's end to publish it, and its budget has room after its
// own traces.
func (f *Fabric) traceBacks(r int) {
	if f.sc.Tracing.Ideal {
		return // complete forward paths only, as they were compared
	}
	used := map[int32]int{}
	for i := range f.reqs {
		used[f.reqs[i].src]++
	}
	end := int64(r+1)*int64(f.sc.Interval) - 1
	for i, n := 0, len(f.reqs); i < n; i++ {
		q := f.reqs[i]
		if !q.lost || used[q.dst] >= f.sc.Tracing.Budget || f.down(q.dst, end) {
			continue
		}
		var rg rng
		rg.seed(mix(f.sc.Seed ^ uint64(r)*0x7f4a7c159e3779b9 ^ uint64(q.src)*0x51a3ed6b1c7d0f4b ^ uint64(q.agentSeq)*0x2545f4914f6cdd1d))
		flow := q.flow
		if q.proto == wire.Protocol_PROTOCOL_TCP {
			flow = mix(q.flow ^ 0x7b)
		}
		if w := f.walk(q.src, q.dst, flow, q.at, &rg); w.dead || rg.float() >= w.keep {
			continue // the request was lost
		}
		f.reqs = append(f.reqs, traceReq{
			src: q.dst, dst: q.src, proto: q.proto, sport: uint32(f.x.Topo.ResponderPort), flow: q.back, back: q.flow,
			probeAt: q.probeAt, at: q.at + traceBackDelay, lost: true, round: r, agentSeq: 1<<16 + used[q.dst],
			reverse: true, port: q.sport,
		})
		used[q.dst]++
	}
}

// trace runs the round's traces in the order they happen (the routers'
// ICMP rate limits see them in that order) and groups them into reports.
func (f *Fabric) trace(r int) {
	sort.SliceStable(f.reqs, func(i, j int) bool { return f.reqs[i].at < f.reqs[j].at })
	byAgent := map[int32]*wire.PathReport{}
	var agents []int32
	for i := range f.reqs {
		q := &f.reqs[i]
		var rg rng
		rg.seed(mix(f.sc.Seed ^ uint64(r)*0x51a3ed6b1c7d0f4b ^ uint64(q.src)*0x9e3779b97f4a7c15 ^ uint64(q.agentSeq)*0xd6e8feb86659fd93))
		tp := f.traceOne(q, &rg)
		rep := byAgent[q.src]
		if rep == nil {
			rep = &wire.PathReport{Agent: f.x.Names[q.src]}
			byAgent[q.src] = rep
			agents = append(agents, q.src)
		}
		rep.Probes = append(rep.Probes, tp)
	}
	sort.Slice(agents, func(i, j int) bool { return agents[i] < agents[j] })
	f.reports = f.reports[:0]
	for _, a := range agents {
		f.reports = append(f.reports, byAgent[a])
	}
	// Forget rate limiters that are full again by the next round: they
	// hold no state.
	end := int64(r+1) * int64(f.sc.Interval)
	for k, b := range f.icmpDest {
		if b.tokens+float64(end-b.last)/1e9*icmpPerDestRate >= icmpPerDestBurst {
			delete(f.icmpDest, k)
		}
	}
	for k, b := range f.icmpRouter {
		if b.tokens+float64(end-b.last)/1e9*icmpRouterRate >= icmpRouterBurst {
			delete(f.icmpRouter, k)
		}
	}
}

// traceOne is one Paris traceroute of q's 5-tuple from its source at
// q.at: TTL 1, 2, ... follow the probe's own ECMP path (same hash) through
// the fabric's state at that time. A TTL's answer comes back when its
// packet got to the hop (through the faults on the way), the hop answers
// (a switch with probability HopAnswer, within its ICMP rate limits; the
// destination always), and the answer survives its own way back; a silent
// TTL before one that answered is sent again, up to Tracing.Queries times. Trailing
// silence is cut: the report ends at the last hop that answered (one "*"
// when none did).
func (f *Fabric) traceOne(q *traceReq, rng *rng) *wire.TracedProbe {
	x := f.x
	ideal := f.sc.Tracing.Ideal
	t := q.at
	tp := &wire.TracedProbe{
		Dst: x.Names[q.dst], Protocol: q.proto, StartUnixNano: f.start.UnixNano() + q.probeAt,
		TracedUnixNano: f.start.UnixNano() + q.at, Lost: q.lost, BothLost: q.bothLost, ExcessNs: int64(q.excess),
		SrcPort: q.sport, DstPort: uint32(x.Topo.ResponderPort),
	}
	if q.reverse {
		// The probed agent knows the prober by the address its request
		// came from; its trace goes to the prober's port.
		tp.Dst, tp.DstPort, tp.Reverse = f.addr[q.dst], q.port, true
	}
	answered := 0
	// silent switches of the first query, with the way their TTL's packet
	// took: sent again if a later TTL answers.
	type silentHop struct {
		i   int
		n   int32
		fwd walk
	}
	var silent []silentHop
	hop := func(n int32, ok bool) {
		if ok {
			tp.Hops = append(tp.Hops, x.Names[n])
			answered = len(tp.Hops)
		} else {
			tp.Hops = append(tp.Hops, wire.UnknownHop)
		}
	}
	fwd := walk{keep: 1}
	f.link(x.HostUp[q.src], t, rng, &fwd)
	cur := x.HostToR[q.src]
	target := x.HostToR[q.dst]
	slot := x.ToRSlot[target]
	for hops := 0; ; hops++ {
		f.nodeIn(cur, t, &fwd)
		ok := ideal || f.switchAnswersOnce(cur, q, t, fwd, rng)
		if !ok {
			silent = append(silent, silentHop{len(tp.Hops), cur, fwd})
		}
		hop(cur, ok)
		f.nodeOut(cur, q.flow, t, &fwd)
		if cur == target {
			break
		}
		next, ok := f.nextHop(cur, slot, q.flow, hops)
		if !ok {
			break // no route: every later TTL is lost
		}
		f.link(next.Link, t, rng, &fwd)
		cur = next.Node
	}
	if cur == target {
		f.link(x.HostDown[q.dst], t, rng, &fwd)
		reached := ideal
		// The destination answers over the reverse path of the same
		// 5-tuple, as the probe's own answer does; a prober's UDP socket
		// answers no trace (its kernel's TCP refuses one with a reset).
		answers := !q.reverse || q.proto == wire.Protocol_PROTOCOL_TCP
		if !reached && answers && !fwd.dead && rng.float() < fwd.keep {
			back := f.walk(q.dst, q.src, q.back, t, rng)
			reached = !back.dead && rng.float() < back.keep
		}
		hop(q.dst, reached)
		tp.Reached = reached
	}
	if ideal {
		tp.Reached = cur == target
		return tp
	}
	// A silent TTL before one that answered is a gap: the agent sends it
	// again, a hop timeout later, up to Queries times in all.
	for _, h := range silent {
		if h.i >= answered-1 {
			break
		}
		for k := 1; k < f.sc.Tracing.Queries; k++ {
			if f.switchAnswersOnce(h.n, q, t+int64(k)*int64(probe.DefaultTraceHopTimeout), h.fwd, rng) {
				tp.Hops[h.i] = x.Names[h.n]
				break
			}
		}
	}
	tp.Hops = tp.Hops[:answered]
	if answered == 0 {
		// Not even the first hop answered: the wire form still says so
		// with one silent TTL (a traced probe has at least one hop).
		tp.Hops = append(tp.Hops, wire.UnknownHop)
	}
	return tp
}

// switchAnswersOnce decides whether one query of the TTL that expires at
// switch n is answered: the packet got there (fwd: its way so far), n
// answers this time and within its rate limits, and the time-exceeded
// makes it back to the source.
func (f *Fabric) switchAnswersOnce(n int32, q *traceReq, t int64, fwd walk, rng *rng) bool {
	if fwd.dead || rng.float() >= fwd.keep {
		return false
	}
	if rng.float() >= f.sc.Tracing.HopAnswer {
		return false
	}
	rb := f.icmpRouter[n]
	if rb == nil {
		rb = &bucket{tokens: icmpRouterBurst, last: t}
		f.icmpRouter[n] = rb
	}
	k := [2]int32{n, q.src}
	db := f.icmpDest[k]
	if db == nil {
		db = &bucket{tokens: icmpPerDestBurst, last: t}
		f.icmpDest[k] = db
	}
	if !db.take(t, icmpPerDestRate, icmpPerDestBurst) || !rb.take(t, icmpRouterRate, icmpRouterBurst) {
		return false
	}
	// The time-exceeded is a packet of its own flow back to the source.
	back := walk{keep: 1}
	icmpFlow := mix(uint64(n)<<32 ^ uint64(q.src) ^ q.flow<<7 ^ 0x1c3)
	f.walkFrom(n, q.src, icmpFlow, t, rng, &back)
	return !back.dead && rng.float() < back.keep
}
