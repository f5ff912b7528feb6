package localize

import (
	"math"
	"slices"
	"sort"
	"time"

	"github.com/meshlens/meshlens/internal/aggregate"
	"github.com/meshlens/meshlens/internal/wire"
)

// evidence pools the last Horizon windows: traffic per link direction,
// probes sent, and traces (copied: callers may reuse theirs) with what
// each says about the links its probe crossed (paths.go).
type evidence struct {
	x     *Index
	tr    *traffic
	pm    *pathModel
	slots []slot
	pos   int
	T     []float64 // summed over the horizon
	TL    []float64 // T weighted by each probe's number of links
	in    []float64 // per node: probes entering it
	inL   []float64 // per node: TL entering it
	// sample[h]: how many lost probes of host h each of its lost traces
	// stands for over the horizon (>= 1; 1 when none was traced).
	sample []float64
	probes float64
	// crossings: link crossings of all probes, the denominator of the
	// background rate per link crossed.
	crossings float64
	// replies: reverse traces whose probe's own trace has not come yet,
	// with the window (adds) they came in; they wait a horizon.
	replies map[probeKey]waitingReply
	adds    int
}

// probeKey names a lost probe: who sent it to whom, how, from which port
// and when. A trace of its reply (Trace.Reverse) joins its trace by it.
type probeKey struct {
	prober, probed int32
	proto          wire.Protocol
	port           uint32
	start          int64
}

func (t *Trace) probe() probeKey {
	if t.Reverse {
		return probeKey{t.Dst, t.Src, t.Proto, t.Port, t.Start}
	}
	return probeKey{t.Src, t.Dst, t.Proto, t.Port, t.Start}
}

type waitingReply struct {
	t    Trace
	al   *alive
	adds int
}

// maxWaitingReplies bounds evidence.replies: reverse traces whose probe's
// trace never comes (its report lost, or a forged one) cannot grow it.
const maxWaitingReplies = 1 << 14

type slot struct {
	T, TL     []float64
	probes    float64
	crossings float64
	// lost[h] and tracedLost[h]: the probes host h sent that were lost,
	// and how many of them its agent traced (a budget's sample).
	lost, tracedLost []float64
	traces           []Trace
	hops             []int32
	// paths[i]: trace i's forward and reverse link probabilities, slices
	// of pool.
	paths []tracePath
	pool  []wlink
	alive alive
}

// tracePath is what one trace says about the links its probe crossed;
// cands caches the meshlens candidates of those links (they do not change
// while the trace stays in the horizon).
type tracePath struct {
	fwd, rev []wlink
	cands    []wcand
}

func newEvidence(x *Index, horizon int) *evidence {
	tr := newTraffic(x)
	e := &evidence{x: x, tr: tr, pm: newPathModel(x, x.Routes(nil, nil)), slots: make([]slot, horizon),
		T: make([]float64, x.NumLinks()), TL: make([]float64, x.NumLinks()),
		in: make([]float64, x.NumNodes()), inL: make([]float64, x.NumNodes()), sample: make([]float64, x.NumHosts)}
	for i := range e.slots {
		e.slots[i].T = make([]float64, x.NumLinks())
		e.slots[i].TL = make([]float64, x.NumLinks())
		e.slots[i].lost = make([]float64, x.NumHosts)
		e.slots[i].tracedLost = make([]float64, x.NumHosts)
	}
	return e
}

// validTrace reports whether t names hosts and nodes of this index.
func (e *evidence) validTrace(t *Trace) bool {
	n := int32(e.x.NumHosts)
	if t.Src < 0 || t.Src >= n || t.Dst < 0 || t.Dst >= n || t.Src == t.Dst || len(t.Hops) > e.x.MaxHops() {
		return false
	}
	for _, h := range t.Hops {
		if h != UnknownHop && (h < 0 || int(h) >= e.x.NumNodes()) {
			return false
		}
	}
	return true
}

// newest is the slot of the last window added.
func (e *evidence) newest() *slot { return &e.slots[(e.pos+len(e.slots)-1)%len(e.slots)] }

// add replaces the oldest window with w and re-sums the horizon.
func (e *evidence) add(w *Window) {
	s := &e.slots[e.pos]
	e.pos = (e.pos + 1) % len(e.slots)
	clear(s.T)
	clear(s.TL)
	s.probes, s.crossings = 0, 0
	clear(s.lost)
	clear(s.tracedLost)
	if w.Sealed != nil {
		s.probes, s.crossings = e.tr.window(w.Sealed, s.T, s.TL)
		for k, r := range w.Sealed.Hosts {
			if h, ok := e.x.Node(k.Host); ok && !e.x.IsSwitch(h) && k.Direction == aggregate.Out {
				s.lost[h] += float64(r.Lost)
			}
		}
	}
	s.traces = s.traces[:0]
	s.hops = s.hops[:0]
	s.alive.reset()
	var replies []Trace
	for _, t := range w.Traces {
		if !e.validTrace(&t) {
			continue // not a path of this index: nothing to say about it
		}
		if t.Reverse {
			if t.Lost {
				replies = append(replies, t)
				s.alive.see(e.x, &t)
			}
			continue
		}
		if t.Lost {
			s.tracedLost[t.Src]++
		}
		start := len(s.hops)
		s.hops = append(s.hops, t.Hops...)
		t.Hops = s.hops[start:len(s.hops):len(s.hops)]
		s.traces = append(s.traces, t)
	}
	// s.hops may have moved while growing: re-slice.
	pos := 0
	for i := range s.traces {
		n := len(s.traces[i].Hops)
		s.traces[i].Hops = s.hops[pos : pos+n : pos+n]
		pos += n
		s.alive.see(e.x, &s.traces[i])
	}
	s.pool = s.pool[:0]
	type span struct{ a, b, c int }
	spans := make([]span, len(s.traces))
	for i := range s.traces {
		a := len(s.pool)
		s.pool = e.pm.forward(&s.traces[i], &s.alive, s.pool)
		b := len(s.pool)
		s.pool = e.pm.reverse(&s.traces[i], s.pool)
		spans[i] = span{a, b, len(s.pool)}
	}
	s.paths = s.paths[:0]
	for _, sp := range spans {
		s.paths = append(s.paths, tracePath{fwd: s.pool[sp.a:sp.b:sp.b], rev: s.pool[sp.b:sp.c:sp.c]})
	}
	e.joinReplies(replies, &s.alive)
	clear(e.T)
	clear(e.TL)
	clear(e.in)
	clear(e.inL)
	e.probes, e.crossings = 0, 0
	for i := range e.slots {
		for l, v := range e.slots[i].T {
			e.T[l] += v
		}
		for l, v := range e.slots[i].TL {
			e.TL[l] += v
		}
		e.probes += e.slots[i].probes
		e.crossings += e.slots[i].crossings
	}
	for h := range e.sample {
		var lost, traced float64
		for i := range e.slots {
			lost += e.slots[i].lost[h]
			traced += e.slots[i].tracedLost[h]
		}
		e.sample[h] = 1
		if traced > 0 && lost > traced {
			e.sample[h] = lost / traced
		}
	}
	for l, v := range e.T {
		e.in[e.x.To[l]] += v
		e.inL[e.x.To[l]] += e.TL[l]
	}
}

// joinReplies puts the reply paths that reverse traces saw in place of
// the spread their probes' traces assumed (pathModel.reverse), in
// whichever window of the horizon those traces are; a reverse trace that
// came before its probe's trace waits for it, a horizon at most. al is
// what the new window's traces saw answering.
func (e *evidence) joinReplies(replies []Trace, al *alive) {
	e.adds++
	if len(replies) == 0 && len(e.replies) == 0 {
		return
	}
	lost := map[probeKey]*tracePath{}
	for i := range e.slots {
		s := &e.slots[i]
		for j := range s.traces {
			if s.traces[j].Lost {
				lost[s.traces[j].probe()] = &s.paths[j]
			}
		}
	}
	set := func(p *tracePath, r *Trace, al *alive) {
		p.rev = e.pm.reply(r, al, nil)
		p.cands = nil // recomputed by the next explain
	}
	for k, r := range e.replies {
		switch p := lost[k]; {
		case e.adds-r.adds >= len(e.slots):
			delete(e.replies, k) // its window's alive set is another's now
		case p != nil:
			set(p, &r.t, r.al)
			delete(e.replies, k)
		}
	}
	for i := range replies {
		r := &replies[i]
		k := r.probe()
		if p := lost[k]; p != nil {
			set(p, r, al)
			continue
		}
		if e.replies == nil {
			e.replies = map[probeKey]waitingReply{}
		}
		if len(e.replies) < maxWaitingReplies {
			t := *r
			t.Hops = slices.Clone(r.Hops)
			e.replies[k] = waitingReply{t: t, al: al, adds: e.adds}
		}
	}
}

// meshlens is the likelihood localizer; see the package doc.
type meshlens struct {
	x   *Index
	cfg Config
	ev  *evidence
	// scratch, indexed by candidate id (see candidate ids below): the
	// expected anomalous probes crossing each candidate, and per trace the
	// probability its probe crossed it, forward and back
	count  []float64
	nmem   []int32 // explain's inverted lists: lengths and starts
	mstart []int32
	supp   []float64 // the same, counting every trace that may have crossed it in full
	fw, rv []float64
	stamp  []int32
	epoch  int32
	// downSeen: switches and links blamed as dead; excluded: those of them
	// that have since stopped losing probes, which means routing converged
	// around them. The traffic model routes around excluded elements until
	// a traced probe crosses one again, or the traffic they no longer carry
	// would be expected of them and the traffic their neighbours took over
	// would look like a fault of the neighbours. The path model routes
	// around them too: a silent hop that may have been an excluded
	// element, which the traffic model says carries nothing, made it the
	// likeliest culprit of the next fault beside it (a spine down after
	// another spine had come back was blamed on the first one). Stopping
	// losing probes also means the element came back, which no trace
	// shows when nothing else is lossy: an exclusion lapses after
	// excludeWindows, so that an element that fails again is seen.
	downSeen   map[int32]bool
	excluded   map[int32]bool
	excludedAt map[int32]int // the window (see windows) of the exclusion
	windows    int           // Localize calls
	// once[n]: the share of the probes entering switch n that enter it
	// only once (see fanout).
	once []float64
	// members and mass are explain's inverted lists and unexplained trace
	// masses while it runs (nil otherwise), for mixtureLLR.
	members func(c int32) []member
	mass    []float64
	// leads of the last Localize call
	leads []Lead
}

// observed is one trace with what it says about its probe's links.
type observed struct {
	t *Trace
	p *tracePath
}

// member is a trace of a candidate's inverted list.
type member struct {
	trace int32
	w     float64
}

// wcand is a candidate that a trace's probe crossed with probability w.
type wcand struct {
	c int32
	w float64
}

// Candidate ids: a switch-to-switch link direction l is l, the physical
// link of l is L+min(l, reverse(l)), a node n (host or switch) is 2L+n.
// Host access links are never candidates of their own: every probe of a
// host crosses both directions, so probes cannot tell a host's NIC from its
// cable, and both are the host.
func newMeshlens(x *Index, cfg Config) *meshlens {
	c := 2*x.NumLinks() + x.NumNodes()
	return &meshlens{x: x, cfg: cfg, ev: newEvidence(x, cfg.Horizon), count: make([]float64, c), supp: make([]float64, c), nmem: make([]int32, c), mstart: make([]int32, c),
		fw: make([]float64, c), rv: make([]float64, c), stamp: make([]int32, c),
		downSeen: map[int32]bool{}, excluded: map[int32]bool{}, excludedAt: map[int32]int{}, once: fanout(x)}
}

func (m *meshlens) Name() string { return NameMeshlens }

// Leads are the elements the last window's unexplained anomalies point at
// without convicting them.
func (m *meshlens) Leads() []Lead { return m.leads }

func (m *meshlens) Localize(w *Window) ([]Suspect, error) {
	m.windows++
	m.ev.add(w)
	m.leads = m.leads[:0]
	var out []Suspect
	slow := map[int32]bool{}
	for agent, lag := range w.AgentLag {
		if lag < m.cfg.AgentSlowLag {
			continue
		}
		h, ok := m.x.Node(agent)
		if !ok || m.x.IsSwitch(h) {
			continue
		}
		slow[h] = true
		score := m.cfg.MinScore * float64(lag) / float64(m.cfg.AgentSlowLag)
		out = append(out, Suspect{
			Element: agent, Kind: KindHost, Symptom: SymptomAgentSlow, Estimate: lag.Seconds(),
			Score: score, Confidence: confidence(score, m.cfg.MinScore),
			Evidence: Evidence{Probes: m.ev.T[m.x.HostUp[h]]},
		})
	}
	// A host whose agent went silent and whose probes are lost is down:
	// blamed as such, and the probes to it are held against nothing else
	// (its ToR and links are not at fault for a host that is gone).
	down := map[int32]bool{}
	for _, sus := range m.hostsDown(w) {
		down[sus.cand-2*int32(m.x.NumLinks())] = true
		out = append(out, sus)
	}
	// A starved agent's lag explains its own measurements, late answers
	// and timeouts alike: its traces are not held against anything, and
	// it is not also blamed as a sick host.
	var lost, slowTraces []observed
	for i := range m.ev.slots {
		s := &m.ev.slots[i]
		for j := range s.traces {
			t := &s.traces[j]
			if slow[t.Src] || down[t.Dst] || down[t.Src] {
				continue
			}
			o := observed{t, &s.paths[j]}
			if t.Lost {
				lost = append(lost, o)
			} else {
				slowTraces = append(slowTraces, o)
			}
		}
	}
	lossSuspects := m.restored(w, m.explain(lost, false))
	m.trackDown(lossSuspects)
	out = append(out, lossSuspects...)
	out = append(out, m.explain(slowTraces, true)...)
	kept := out[:0]
	for _, s := range out {
		h := s.cand - 2*int32(m.x.NumLinks())
		if s.Kind == KindHost && ((s.Symptom != SymptomAgentSlow && s.Symptom != SymptomHostDown && (slow[h] || down[h])) || (s.Symptom == SymptomAgentSlow && down[h])) {
			continue
		}
		kept = append(kept, s)
	}
	out = kept
	sort.SliceStable(out, func(i, j int) bool { return out[i].Score > out[j].Score })
	if len(out) > m.cfg.MaxSuspects {
		out = out[:m.cfg.MaxSuspects]
	}
	sort.SliceStable(m.leads, func(i, j int) bool { return m.leads[i].Score > m.leads[j].Score })
	if len(m.leads) > MaxLeads {
		m.leads = m.leads[:MaxLeads]
	}
	return out, nil
}

// hostsDown are the window's silent hosts (Window.Silent) that lost at
// least half of the probes sent to them, and at least MinAnomalies: down,
// not merely with a stopped agent (whose host would refuse, not drop).
func (m *meshlens) hostsDown(w *Window) []Suspect {
	if len(w.Silent) == 0 || w.Sealed == nil {
		return nil
	}
	var out []Suspect
	for name := range w.Silent {
		h, ok := m.x.Node(name)
		if !ok || m.x.IsSwitch(h) {
			continue
		}
		r := w.Sealed.Hosts[aggregate.HostKey{Host: name, Direction: aggregate.In}]
		if r == nil || r.Lost < uint64(m.cfg.MinAnomalies) || 2*r.Lost < r.Sent {
			continue
		}
		// As sure as its lost probes are many: each is a chance for a
		// live host to have answered.
		score := m.cfg.MinScore * float64(r.Lost) / float64(m.cfg.MinAnomalies)
		out = append(out, Suspect{
			cand: 2*int32(m.x.NumLinks()) + h, Element: name, Kind: KindHost, Symptom: SymptomHostDown,
			Estimate: r.LossRatio(), Score: score, Confidence: confidence(score, m.cfg.MinScore),
			Evidence: Evidence{Probes: float64(r.Sent), Anomalous: int(r.Lost)},
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Element < out[j].Element })
	return out
}

// restored drops the ToRs and hosts blamed on the horizon's evidence that
// the newest window (w) shows back: routing cannot go around them, so that
// window's probes from and to their hosts crossed them, so many that the
// blamed rate would have lost several (restoredLosses), yet its rollups
// count none of them lost and none of its lost traces may have crossed
// them. The rollups are what says so: a window's traces can arrive after
// it is sealed (they join the next), its results cannot. Otherwise a ToR
// or host that came back stayed blamed for the horizon's older windows
// (one or two more), and its incident resolved that much later.
func (m *meshlens) restored(w *Window, sus []Suspect) []Suspect {
	if w.Sealed == nil {
		return sus
	}
	x := m.x
	L2 := 2 * int32(x.NumLinks())
	s := m.ev.newest()
	var crossed map[int32]bool // by the newest window's lost traces
	kept := sus[:0]
	for _, su := range sus {
		n := su.cand - L2
		if su.cand < L2 || (x.IsSwitch(n) && x.ToRSlot[n] < 0) {
			kept = append(kept, su)
			continue
		}
		var sent, lost uint64
		for h := range int32(x.NumHosts) {
			if h != n && x.HostToR[h] != n {
				continue
			}
			for _, d := range []aggregate.Direction{aggregate.In, aggregate.Out} {
				if r := w.Sealed.Hosts[aggregate.HostKey{Host: x.Names[h], Direction: d}]; r != nil {
					sent, lost = sent+r.Sent, lost+r.Lost
				}
			}
		}
		if lost > 0 || float64(sent)*su.Estimate < restoredLosses {
			kept = append(kept, su)
			continue
		}
		if crossed == nil {
			crossed = map[int32]bool{}
			var buf []wcand
			for i := range s.traces {
				if !s.traces[i].Lost {
					continue
				}
				buf = m.candidates(&s.paths[i], buf[:0])
				for _, wc := range buf {
					crossed[wc.c] = true
				}
			}
		}
		if crossed[su.cand] {
			kept = append(kept, su)
		}
	}
	return kept
}

// restoredLosses: see restored. Not losing one of that many expected
// losses happens by chance one time in a thousand (e^-7).
const restoredLosses = 7

// trackDown updates the elements the traffic model routes around; see
// meshlens.excluded.
func (m *meshlens) trackDown(loss []Suspect) {
	x := m.x
	L := int32(x.NumLinks())
	blamed := map[int32]bool{}
	for _, s := range loss {
		blamed[s.cand] = true
		if s.cand < 2*L || x.IsSwitch(s.cand-2*L) {
			if (s.Symptom == SymptomDown || s.Symptom == SymptomBlackhole) && s.tracedRate >= 0.3 {
				m.downSeen[s.cand] = true
			}
		}
	}
	changed := false
	for c := range m.downSeen {
		if !blamed[c] && !m.excluded[c] {
			m.excluded[c] = true
			m.excludedAt[c] = m.windows
			changed = true
		}
	}
	for c, at := range m.excludedAt {
		if m.windows-at >= excludeWindows {
			delete(m.excluded, c)
			delete(m.excludedAt, c)
			delete(m.downSeen, c)
			changed = true
		}
	}
	if len(m.excluded) > 0 {
		// A trace of the newest window that surely crossed an excluded
		// element (its hops answered on both sides) says routing uses it
		// again.
		s := m.ev.newest()
		var buf []wcand
		for i := range s.traces {
			buf = m.candidates(&s.paths[i], buf[:0])
			for _, wc := range buf {
				if m.excluded[wc.c] && m.fw[wc.c] >= 0.999 {
					delete(m.excluded, wc.c)
					delete(m.excludedAt, wc.c)
					delete(m.downSeen, wc.c)
					changed = true
				}
			}
		}
	}
	if !changed {
		return
	}
	nodes, links := map[int32]bool{}, map[int32]bool{}
	for c := range m.excluded {
		switch {
		case c < L:
			links[c] = true
		case c < 2*L:
			links[c-L], links[x.Reverse[c-L]] = true, true
		default:
			nodes[c-2*L] = true
		}
	}
	m.ev.tr.routes = x.Routes(func(n int32) bool { return nodes[n] }, func(l int32) bool { return links[l] })
	m.ev.pm = newPathModel(x, m.ev.tr.routes)
}

// excludeWindows: an element excluded from the models (see
// meshlens.excluded) is taken back after this many windows (a minute of
// 10 s windows), the longest it may go unseen if it fails again.
const excludeWindows = 6

func confidence(score, min float64) float64 { return 1 - math.Exp(-score/min) }

// candidates appends, once each, the candidates a trace's probe crossed
// with the probability it did: the most likely of the ways its forward
// path (or its reply's reverse path) crossed each, the two ways combined
// as independent. m.fw holds the forward probability until the next call.
func (m *meshlens) candidates(p *tracePath, buf []wcand) []wcand {
	x := m.x
	L := int32(x.NumLinks())
	m.epoch++
	start := len(buf)
	add := func(c int32, w float64, into []float64) {
		if m.stamp[c] != m.epoch {
			m.stamp[c] = m.epoch
			m.fw[c], m.rv[c] = 0, 0
			buf = append(buf, wcand{c, 0})
		}
		into[c] = max(into[c], w)
	}
	for _, dir := range []struct {
		links []wlink
		into  []float64
	}{{p.fwd, m.fw}, {p.rev, m.rv}} {
		for _, wl := range dir.links {
			l, w := wl.link, wl.w
			if h := x.AccessHost(l); h >= 0 {
				add(2*L+h, w, dir.into)
				if x.IsSwitch(x.From[l]) {
					add(2*L+x.From[l], w, dir.into)
				} else {
					add(2*L+x.To[l], w, dir.into)
				}
				continue
			}
			add(l, w, dir.into)
			add(L+min(l, x.Reverse[l]), w, dir.into)
			add(2*L+x.From[l], w, dir.into)
			add(2*L+x.To[l], w, dir.into)
		}
	}
	for i := start; i < len(buf); i++ {
		c := buf[i].c
		buf[i].w = min(1, 1-(1-m.fw[c])*(1-m.rv[c]))
	}
	return buf
}

// touches is how many probes of the horizon crossed candidate c.
func (m *meshlens) touches(c int32) float64 { return m.load(c, m.ev.T, m.ev.in) }

// exposure is the link crossings of the probes that crossed candidate c:
// what the background loss acts on.
func (m *meshlens) exposure(c int32) float64 { return m.load(c, m.ev.TL, m.ev.inL) }

// fanout estimates, for each switch, how much of its entering traffic
// belongs to probes that cross it only one way. A probe that crossed switch
// n going out comes back through n with probability 1/k, k being the
// number of equal-cost alternatives n is one of (the spines of a DC, the
// leaves of a pod; 1 for a ToR, crossed both ways by every probe of its
// hosts). So probes touching n are its entries times 1 - 1/(2k).
func fanout(x *Index) []float64 {
	r := x.Routes(nil, nil)
	once := make([]float64, x.NumNodes())
	nt := len(x.ToRs)
	step := max(1, nt/64)
	for n := int32(x.NumHosts); int(n) < x.NumNodes(); n++ {
		k := 1
		if x.ToRSlot[n] < 0 {
			for _, h := range x.Adj[n] {
				for slot := 0; slot < nt; slot += step {
					next := r.Next(h.Node, int32(slot))
					for _, nh := range next {
						if nh.Node == n {
							k = max(k, len(next))
						}
					}
				}
			}
		}
		once[n] = 1 - 1/(2*float64(k))
	}
	return once
}

func (m *meshlens) load(c int32, T, in []float64) float64 {
	x := m.x
	L := int32(x.NumLinks())
	switch {
	case c < L:
		return T[c]
	case c < 2*L:
		l := c - L
		return T[l] + T[x.Reverse[l]]
	}
	n := c - 2*L
	if !x.IsSwitch(n) {
		return T[x.HostUp[n]]
	}
	return in[n] * m.once[n]
}

func (m *meshlens) describe(c int32) (string, Kind) {
	x := m.x
	L := int32(x.NumLinks())
	switch {
	case c < L:
		return x.LinkName(c), KindLink
	case c < 2*L:
		return x.PhysicalName(c - L), KindLink
	}
	n := c - 2*L
	if x.IsSwitch(n) {
		return x.Names[n], KindDevice
	}
	return x.Names[n], KindHost
}

// score is candidate c's log-likelihood ratio with u anomalies
// unexplained. Under the null every link crossing is equally likely to be
// where a background anomaly happened, so of the u anomalies the number
// whose probes crossed c is binomial with c's share of all link crossings;
// the alternative lets c have its own share. This is the conditional test
// of two Poisson rates (inside c against outside it): an element is
// suspect when probes crossing it fare worse than the others, not worse
// than a rate its own fault inflates, and the uncertainty of a background
// rate estimated from a handful of events is accounted for. Zero when c
// does not qualify; expected is the null's count.
func (m *meshlens) score(c int32, u float64) (score, expected float64) {
	return m.scoreAbove(c, u, m.cfg.MinScore)
}

// binomialScore is score counting the probabilities that each trace's
// probe crossed c (no mixture).
func (m *meshlens) binomialScore(c int32, u float64) (score, expected float64) {
	if m.count[c] < float64(m.cfg.MinAnomalies) {
		return 0, 0
	}
	return binomialLLR(m.count[c], u, m.exposure(c)/m.ev.crossings)
}

// scoreAbove is score, reading every trace that may have crossed c as a
// mixture (see mixtureLLR) when that can exceed floor.
func (m *meshlens) scoreAbove(c int32, u, floor float64) (score, expected float64) {
	e := m.count[c]
	if e < float64(m.cfg.MinAnomalies) {
		return 0, 0
	}
	q := m.exposure(c) / m.ev.crossings
	score, expected = binomialLLR(e, u, q)
	if m.members == nil {
		return score, expected
	}
	// Counting every trace that may have crossed c in full bounds the
	// mixture from above: skip it when that bound cannot matter.
	if ub, _ := binomialLLR(m.supp[c], u, q); ub <= max(score, floor) {
		return score, expected
	}
	return max(score, m.mixtureLLR(c, u, q)), expected
}

// mixtureLLR is candidate c's log-likelihood ratio read trace by trace: c
// is anomalous at rho times the rate of the other link crossings, so a
// trace whose probe crossed c with probability w is anomalous with
// likelihood 1 + w(rho-1) against the background's 1, and of all u
// anomalies a share q(rho-1)+1 more fall on c's crossings (the
// normalisation of the conditional test):
//
//	LLR(rho) = sum_i mass_i ln(1 + w_i(rho-1)) - u ln(1 + q(rho-1)),
//
// maximised over rho >= 1. With w in {0, 1} it is binomialLLR; with
// uncertain paths (a reverse path spread over the spines, a silent hop)
// it is not diluted as a count of probabilities is. On the lab's 12-host
// fabric a lossy leaf-spine link (q 0.3) with 12 anomalies crossing it
// surely and 12 with probability 1/4 on their way back counts 15 of 24,
// 5.4 as a count; read trace by trace it is 12.3, since a large rho
// explains the certain ones and costs the others only ln 4 each.
func (m *meshlens) mixtureLLR(c int32, u, q float64) float64 {
	if q <= 0 || u <= 0 {
		return 0
	}
	q = min(q, 1-1e-9)
	mem := m.members(c)
	f := func(rho float64) float64 {
		var sum float64
		for _, mb := range mem {
			if w := m.mass[mb.trace]; w > 0 {
				sum += w * math.Log1p(mb.w*(rho-1))
			}
		}
		return sum - u*math.Log1p(q*(rho-1))
	}
	slope := func(rho float64) float64 {
		var sum float64
		for _, mb := range mem {
			if w := m.mass[mb.trace]; w > 0 {
				sum += w * mb.w / (1 + mb.w*(rho-1))
			}
		}
		return sum - u*q/(1+q*(rho-1))
	}
	const maxRho = 1e6
	if slope(1) <= 0 {
		return 0
	}
	if slope(maxRho) >= 0 {
		return max(0, f(maxRho))
	}
	// Bisect the slope's root in log rho.
	lo, hi := 0.0, math.Log(maxRho)
	for range 40 {
		mid := (lo + hi) / 2
		if slope(math.Exp(mid)) > 0 {
			lo = mid
		} else {
			hi = mid
		}
	}
	return max(0, f(math.Exp((lo+hi)/2)))
}

// dominantKid is the share of its parent's expected anomalies a child
// needs to be scored on every anomaly that may have crossed it (refine).
const dominantKid = 0.75

// scoreSupp is score counting every anomaly that may have crossed c.
func (m *meshlens) scoreSupp(c int32, u float64) (score, expected float64) {
	if m.supp[c] < float64(m.cfg.MinAnomalies) {
		return 0, 0
	}
	return binomialLLR(m.supp[c], u, m.exposure(c)/m.ev.crossings)
}

// binomialLLR is the log-likelihood ratio of e successes in u trials
// against success probability q, when e exceeds u*q.
func binomialLLR(e, u, q float64) (llr, expected float64) {
	if q <= 0 || u <= 0 {
		return 0, 0
	}
	q = min(q, 1-1e-9)
	expected = u * q
	if e <= expected {
		return 0, expected
	}
	llr = e * math.Log(e/expected)
	if rest := u - e; rest > 0 {
		llr += rest * math.Log(rest/(u*(1-q)))
	}
	return llr, expected
}

// children are the candidates inside c: a switch's links (and a ToR's
// hosts), a link's two directions.
func (m *meshlens) children(c int32) []int32 {
	x := m.x
	L := int32(x.NumLinks())
	switch {
	case c < L:
		return nil
	case c < 2*L:
		return []int32{c - L, x.Reverse[c-L]}
	}
	n := c - 2*L
	if !x.IsSwitch(n) {
		return nil
	}
	var out []int32
	for _, h := range x.Adj[n] {
		out = append(out, L+min(h.Link, x.Reverse[h.Link]))
	}
	if x.ToRSlot[n] >= 0 {
		for h := range x.NumHosts {
			if x.HostToR[h] == n {
				out = append(out, 2*L+int32(h))
			}
		}
	}
	return out
}

// refine prefers the smallest element that explains what c does: going
// from a device to one of its links, or from a link to one direction, as
// long as what the larger element explains beyond the smaller one is not
// itself significant against the outside rate. A device is blamed when its
// links fail together, not when one link's losses plus a little background
// make it look worse than the link. -1 when c is a switch whose links tie
// (kidsTie).
func (m *meshlens) refine(c int32, score, lambda, u float64, beyond func(parent, a, b int32) float64) (int32, float64, float64) {
	L := int32(m.x.NumLinks())
	if b, _ := m.binomialScore(c, u); c < 2*L && b < m.cfg.MinScore {
		// A link that qualified only read trace by trace looks up to the
		// switches at its ends on that reading (see refine's loop below).
		phys := c
		if c < L {
			phys = L + min(c, m.x.Reverse[c])
		}
		for _, n := range []int32{m.x.From[phys-L], m.x.To[phys-L]} {
			if !m.x.IsSwitch(n) {
				continue
			}
			if s, l := m.score(2*L+n, u); s > score {
				c, score, lambda = 2*L+n, s, l
			}
		}
	}
	// A link direction first looks up to its link: when the other
	// direction is lossy too, blaming one direction would leave the other's
	// anomalies to be pinned on whatever else their probes crossed.
	if c < L {
		phys := L + min(c, m.x.Reverse[c])
		if m.nestedSignificant(phys, c, u) {
			if s, l := m.score(phys, u); s > 0 {
				return phys, s, l
			}
		}
		return c, score, lambda
	}
	for {
		var kid int32 = -1
		var kidScore, kidLambda float64
		// The kid its expected anomalies point at; when it holds most of
		// them, it qualifies when significant counting every anomaly that
		// may have crossed it: were it the fault, they would be its (a
		// probe's reverse path is a guess while its ToR is certain, so a
		// ToR outscores its uplinks on expected counts alone).
		var kidCount float64
		for _, k := range m.children(c) {
			if m.count[k] > kidCount {
				kid, kidCount = k, m.count[k]
			}
		}
		if kid >= 0 {
			// The kid is scored as its parent qualified: by counts when
			// they sufficed, trace by trace only when the parent needed it.
			// Read trace by trace, a kid must also explain its traces at
			// least as well as its parent: a link crossed surely by a few
			// traces can outscore its switch on that reading while the
			// switch, crossed maybe by many more, is the fault.
			kidScore, kidLambda = m.binomialScore(kid, u)
			if b, _ := m.binomialScore(c, u); b < m.cfg.MinScore {
				if kidScore, kidLambda = m.score(kid, u); kidScore < score {
					kidScore = 0
				}
			}
			if kidScore < m.cfg.MinScore && kidCount >= dominantKid*m.count[c] {
				kidScore, kidLambda = m.scoreSupp(kid, u)
			}
		}
		if kid < 0 || kidScore < m.cfg.MinScore {
			return c, score, lambda
		}
		if m.nestedSignificant(c, kid, u) && !m.twoKidsExplain(c, kid, u, beyond) {
			return c, score, lambda
		}
		if c >= 2*L && score >= allTieMinScore*m.cfg.MinScore && m.kidsAllTie(c, kid) {
			// No link of the switch stands out, and the switch's case is
			// strong: the switch. A dead spine leaves every trace a
			// silent hop that may have been any of its links, so the
			// nested test above, which gives kid every anomaly it may
			// have carried, finds nothing beyond kid; kid only leads its
			// siblings by noise. On weak evidence (a gray link's few
			// anomalies) ties are the norm and say nothing.
			return c, score, lambda
		}
		if m.kidsTie(c, kid) {
			// The counts cannot order kid and a sibling: a lossy uplink
			// hides the hops behind it, so its traces are the uncertain
			// ones while the replies it lost were traced, surely, over its
			// healthy sibling. A link's directions tie: the link. A
			// switch's links tie: not which one, not yet (they stay
			// leads, and evidence on demand probes them).
			if c < 2*L {
				return c, score, lambda
			}
			return -1, 0, 0
		}
		c, score, lambda = kid, kidScore, kidLambda
	}
}

// kidsTie reports whether another child of parent has about as many
// expected anomalies as kid: less than a quarter of the standard deviation
// of their difference (as Poisson counts) apart.
func (m *meshlens) kidsTie(parent, kid int32) bool {
	for _, k := range m.children(parent) {
		if k == kid {
			continue
		}
		if d := m.count[kid] - m.count[k]; d < kidsTieZ*math.Sqrt(m.count[kid]+m.count[k]) {
			return true
		}
	}
	return false
}

// kidsAllTie reports whether parent has at least three children and none
// is more than kidsAllTieZ standard deviations (of their difference, as
// Poisson counts) behind kid in expected anomalies: the anomalies are
// spread over all of parent's links.
func (m *meshlens) kidsAllTie(parent, kid int32) bool {
	kids := m.children(parent)
	if len(kids) < 3 {
		return false
	}
	for _, k := range kids {
		if d := m.count[kid] - m.count[k]; k != kid && d >= kidsAllTieZ*math.Sqrt(m.count[kid]+m.count[k]) {
			return false
		}
	}
	return true
}

// kidsAllTieZ and allTieMinScore (times Config.MinScore): see refine. Set
// on bench/detect's dead spines (80 onsets, in the simulator) and checked
// against its 2 % link loss, which a lower score bar made slower.
const (
	kidsAllTieZ    = 2
	allTieMinScore = 2
)

// kidsTieZ: see kidsTie.
const kidsTieZ = 0.25

// twoKidsExplain reports whether kid and one other child of parent
// explain what parent does beyond kid: parent's anomalies that can have
// crossed neither are not significant against the crossings parent adds
// to both. Then what parent adds is concentrated in one more element, a
// second fault (blamed on its own when its evidence suffices), not a sick
// parent: a sick server and its ToR's uplink are two faults, not a sick
// ToR; a sick ToR loses probes on all its ports, also between its own
// hosts, which no two of its children explain. Two links of a switch are
// never taken for two faults here: a switch's links together carry all
// its traffic, so with the few traces an agent's budget allows they mimic
// the switch, and one faulty switch is the likelier story.
func (m *meshlens) twoKidsExplain(parent, kid int32, u float64, beyond func(parent, a, b int32) float64) bool {
	if beyond == nil {
		return false
	}
	for _, k := range m.children(parent) {
		L := int32(m.x.NumLinks())
		if k == kid || m.related(k, kid) || (k < 2*L && kid < 2*L) {
			continue
		}
		if m.count[k] < float64(m.cfg.MinAnomalies) {
			continue
		}
		eR := beyond(parent, kid, k)
		rest := m.ev.crossings - m.exposure(kid) - m.exposure(k)
		add := m.exposure(parent) - m.exposure(kid) - m.exposure(k)
		if add <= 0 {
			// kid and k share probes (a small ToR: its uplink carries
			// most of its hosts' probes), so subtracting both counts
			// those twice. What parent adds is at most what it adds to
			// the larger of the two: the bound that favours two faults.
			add = m.exposure(parent) - max(m.exposure(kid), m.exposure(k))
		}
		if rest <= 0 || add <= 0 {
			return true
		}
		uR := u - (m.supp[parent] - eR)
		if llr, _ := binomialLLR(eR, uR, add/rest); eR < float64(m.cfg.MinAnomalies) || llr < m.cfg.MinScore/2 {
			return true
		}
	}
	return false
}

// nestedSignificant reports whether parent explains significantly more
// than kid, an element inside it: what parent explains beyond kid, among
// the anomalies kid leaves, against the share of the remaining link
// crossings that parent adds to kid. It is a nested test of one more
// parameter, so it gets half the bar of a new suspect. An anomaly whose
// probe may have crossed kid (a silent hop, an untraced reverse path)
// counts for kid here: were kid at fault, it would be the explanation, so
// it is no evidence that parent does more than kid.
func (m *meshlens) nestedSignificant(parent, kid int32, u float64) bool {
	eR := m.supp[parent] - m.supp[kid]
	uR := u - m.supp[kid]
	rest := m.ev.crossings - m.exposure(kid)
	if eR < float64(m.cfg.MinAnomalies) || rest <= 0 {
		return false
	}
	llr, _ := binomialLLR(eR, uR, (m.exposure(parent)-m.exposure(kid))/rest)
	return llr >= m.cfg.MinScore/2
}

// explain picks, greedily, the elements whose anomalous probes are least
// likely under the fabric-wide background rate, and explains their traces
// away before looking for the next: the 007 intuition (anomalous flows
// point at their path) made quantitative with each element's traffic, as
// NetBouncer does, so that busy elements are not blamed for their share of
// the background and a device is preferred only when its links together
// are worse than any one of them.
func (m *meshlens) explain(traces []observed, latency bool) []Suspect {
	if len(traces) == 0 || m.ev.crossings <= 0 {
		return nil
	}
	// Inverted lists: candidate -> (trace, probability). A link gives at
	// most four candidates: size flat once, it is the largest array here.
	n := 0
	for _, o := range traces {
		if o.p.cands == nil {
			o.p.cands = m.candidates(o.p, make([]wcand, 0, 4*(len(o.p.fwd)+len(o.p.rev))))
		}
		n += len(o.p.cands)
	}
	flat := make([]wcand, 0, n)
	offs := make([]int, len(traces)+1)
	for i, o := range traces {
		flat = append(flat, o.p.cands...)
		offs[i+1] = len(flat)
	}
	var active []int32
	for _, wc := range flat {
		if m.nmem[wc.c] == 0 {
			active = append(active, wc.c)
		}
		m.nmem[wc.c]++
		m.count[wc.c] += wc.w
		m.supp[wc.c]++
	}
	// members[mstart[c]:mstart[c]+nmem[c]] are candidate c's traces.
	pos := int32(0)
	for _, c := range active {
		m.mstart[c] = pos
		pos += m.nmem[c]
		m.nmem[c] = 0 // refilled below
	}
	all := make([]member, pos)
	for i := range traces {
		for _, wc := range flat[offs[i]:offs[i+1]] {
			all[m.mstart[wc.c]+m.nmem[wc.c]] = member{int32(i), wc.w}
			m.nmem[wc.c]++
		}
	}
	members := func(c int32) []member { return all[m.mstart[c] : m.mstart[c]+m.nmem[c]] }
	// mass[i]: how much of trace i is still unexplained. Blaming c
	// explains each of its traces as far as that trace's probe crossed c.
	mass := make([]float64, len(traces))
	for i := range mass {
		mass[i] = 1
	}
	m.members, m.mass = members, mass
	defer func() {
		for _, c := range active {
			m.count[c], m.supp[c], m.nmem[c] = 0, 0, 0
		}
		m.members, m.mass = nil, nil
	}()
	unexplained := float64(len(traces))
	// beyond is the unexplained anomalies that may have crossed parent
	// but neither a nor b.
	beyond := func(parent, a, b int32) float64 {
		var sum float64
		for _, mb := range members(parent) {
			i := mb.trace
			if mass[i] <= 0 {
				continue
			}
			hit := false
			for _, wc := range flat[offs[i]:offs[i+1]] {
				if wc.c == a || wc.c == b {
					hit = true
					break
				}
			}
			if !hit {
				sum += mass[i]
			}
		}
		return sum
	}
	blamedRho := map[int32]float64{}
	var out []Suspect
	for len(out) < m.cfg.MaxSuspects && unexplained >= float64(m.cfg.MinAnomalies) {
		u := unexplained
		best, bestScore, bestLambda := int32(-1), 0.0, 0.0
		for _, c := range active {
			score, lambda := m.binomialScore(c, u)
			if score > bestScore || (score == bestScore && best >= 0 && c < best) {
				best, bestScore, bestLambda = c, score, lambda
			}
		}
		if best >= 0 && bestScore < m.cfg.MinScore {
			// Not significant by counts: read trace by trace
			// (mixtureLLR), it qualifies only when that reading points at
			// the same element, so two ways of weighing uncertain paths
			// that disagree blame nothing.
			bestScore, bestLambda = m.score(best, u)
			if bestScore >= m.cfg.MinScore {
				mix, mixScore, mixLambda := int32(-1), 0.0, 0.0
				for _, c := range active {
					score, lambda := m.scoreAbove(c, u, max(mixScore, m.cfg.MinScore))
					if score > mixScore || (score == mixScore && mix >= 0 && c < mix) {
						mix, mixScore, mixLambda = c, score, lambda
					}
				}
				best, bestScore, bestLambda = m.refine(best, bestScore, bestLambda, u, beyond)
				if mix, _, _ = m.refine(mix, mixScore, mixLambda, u, beyond); mix != best {
					best = -1
				}
			}
		} else if best >= 0 {
			best, bestScore, bestLambda = m.refine(best, bestScore, bestLambda, u, beyond)
		}
		if best < 0 || bestScore < m.cfg.MinScore {
			// Nothing qualifies, or the best is a switch whose links tie:
			// then nothing more is blamed this window, as the anomalies
			// left would be pinned on whatever else their probes crossed.
			break
		}
		e := m.count[best]
		touch := m.touches(best)
		// The background the estimate discounts is the rate outside best
		// (as rho reads it), not the null's share of all anomalies: when
		// best's fault is most of them, that share is most of its own
		// anomalies, and a link losing 30 % was estimated at 12 %.
		var background float64
		if rest := m.ev.crossings - m.exposure(best); rest > 0 {
			background = max(0, u-m.supp[best]) / rest * m.exposure(best)
		}
		name, kind := m.describe(best)
		sus := Suspect{cand: best, Element: name, Kind: kind, Score: bestScore, Confidence: confidence(bestScore, m.cfg.MinScore),
			Evidence: Evidence{Probes: touch, Anomalous: int(math.Round(e)), Expected: bestLambda}}
		pairs := map[[2]int32]bool{}
		var excess []time.Duration
		var tcpLost, tcpBoth float64
		// explained and sampled: the trace mass best explains, and the
		// lost probes that mass stands for (each agent traces a sample).
		var explained, sampled float64
		// Explaining away: best is at fault at rho times the rate of the
		// crossings its anomalies cannot have crossed, so a trace that may
		// have crossed it (weight w) most likely did, unless the trace
		// surely crossed an element already blamed: its posterior is
		// w*rho against (1-w) times that element's rho (or the
		// background's 1).
		rho := m.rho(best, u)
		blamedRho[best] = rho
		for _, mb := range members(best) {
			i := mb.trace
			alt := 1.0
			if mb.w < 1 {
				for _, wc := range flat[offs[i]:offs[i+1]] {
					if r, ok := blamedRho[wc.c]; ok && wc.w >= 0.999 && wc.c != best && !m.related(best, wc.c) {
						alt = max(alt, r)
					}
				}
			}
			post := mb.w * rho / (mb.w*rho + (1-mb.w)*alt)
			d := mass[i] * post
			if d <= 0 {
				continue
			}
			mass[i] -= d
			unexplained -= d
			t := traces[i].t
			explained += d
			sampled += d * m.ev.sample[t.Src]
			if mb.w >= 0.5 {
				pairs[[2]int32{t.Src, t.Dst}] = true
				excess = append(excess, t.Excess)
			}
			if t.Lost && t.Proto == wire.Protocol_PROTOCOL_TCP {
				tcpLost += d
				if t.BothLost {
					tcpBoth += d
				}
			}
			for _, wc := range flat[offs[i]:offs[i+1]] {
				m.count[wc.c] -= d * wc.w
				m.supp[wc.c] -= d
			}
		}
		m.count[best] = 0
		sus.Evidence.Pairs = len(pairs)
		sus.Evidence.SamplePairs = m.samplePairs(pairs)
		rate := (e - bestLambda) / touch
		if latency {
			sus.Symptom = SymptomLatency
			if len(excess) > 0 {
				sort.Slice(excess, func(a, b int) bool { return excess[a] < excess[b] })
				sus.Estimate = excess[len(excess)/2].Seconds()
			}
		} else {
			// The symptom reads the traced rate, as it was tuned; the
			// estimate scales it by how many lost probes each explained
			// trace stands for, so that it is a drop rate and not a
			// rate of traces.
			scale := 1.0
			if explained > 0 {
				scale = sampled / explained
			}
			sus.Estimate = math.Min(1, math.Max(0, (e-background)/touch*scale))
			sus.tracedRate = rate
			switch {
			case rate >= 0.5:
				sus.Symptom = SymptomDown
			case tcpLost >= minBlackholeEvidence && tcpBoth >= 0.7*tcpLost:
				sus.Symptom = SymptomBlackhole
			default:
				sus.Symptom = SymptomLoss
			}
		}
		out = append(out, sus)
	}
	m.addLeads(active, unexplained, out)
	return out
}

// addLeads notes the candidates that what is left unexplained points at
// (see Lead), scored as suspects are by counts, but below their bar; a
// candidate related to a suspect just blamed is that suspect's evidence.
func (m *meshlens) addLeads(active []int32, u float64, blamed []Suspect) {
	if u < m.cfg.LeadAnomalies {
		return
	}
next:
	for _, c := range active {
		e := m.count[c]
		if e < m.cfg.LeadAnomalies {
			continue
		}
		for _, s := range blamed {
			if s.cand == c || m.related(s.cand, c) {
				continue next
			}
		}
		score, _ := binomialLLR(e, u, m.exposure(c)/m.ev.crossings)
		if score < m.cfg.LeadScore {
			continue
		}
		name, kind := m.describe(c)
		m.leads = append(m.leads, Lead{Element: name, Kind: kind, Score: score, Anomalous: e, Share: m.touches(c) / max(1, m.ev.probes)})
	}
}

// minBlackholeEvidence is how many lost TCP probes a suspect needs before
// "their retransmissions died too" reads as a blackhole (whole flows
// dropped) rather than heavy random loss: a host losing 20 % of packets
// loses a connect's first SYN-and-answer 36 % of the time and its
// retransmission as often, so 3 of 4 both lost happens one time in seven;
// 6 of 8, one in fifty.
const minBlackholeEvidence = 8

// rho is how many times the rate of the link crossings its anomalies
// cannot have crossed the probes crossing candidate c were anomalous, at
// least 1: the anomalies that may have crossed c (a silent hop, an
// untraced reverse path) do not count for elsewhere.
func (m *meshlens) rho(c int32, u float64) float64 {
	exp := m.exposure(c)
	rest := m.ev.crossings - exp
	if m.count[c] <= 0 || exp <= 0 {
		return 1
	}
	if rest <= 0 {
		return 1e6
	}
	outside := max(u-m.supp[c], 1)
	return min(1e6, max(1, (m.count[c]/exp)/(outside/rest)))
}

// related reports whether candidates a and b are one element or nested
// (a switch and its links, a link and its directions or its ends).
func (m *meshlens) related(a, b int32) bool {
	x := m.x
	L := int32(x.NumLinks())
	ends := func(c int32) (int32, int32, int32) { // physical link id and its end nodes, or -1
		switch {
		case c < L:
			return min(c, x.Reverse[c]), x.From[c], x.To[c]
		case c < 2*L:
			return c - L, x.From[c-L], x.To[c-L]
		}
		return -1, c - 2*L, c - 2*L
	}
	pa, a1, a2 := ends(a)
	pb, b1, b2 := ends(b)
	if pa >= 0 && pb >= 0 {
		return pa == pb
	}
	return a1 == b1 || a1 == b2 || a2 == b1 || a2 == b2
}

// samplePairs names up to MaxSamplePairs of pairs, in name order.
func (m *meshlens) samplePairs(pairs map[[2]int32]bool) []string {
	names := make([]string, 0, len(pairs))
	for p := range pairs {
		names = append(names, m.x.Names[p[0]]+" -> "+m.x.Names[p[1]])
	}
	sort.Strings(names)
	return names[:min(len(names), MaxSamplePairs)]
}
