package localize

import (
	"math"
	"sort"
	"time"

	"github.com/meshlens/meshlens/internal/wire"
)

// evidence pools the last Horizon windows: traffic per link direction,
// probes sent, and traces (copied: callers may reuse theirs).
type evidence struct {
	x      *Index
	tr     *traffic
	slots  []slot
	pos    int
	T      []float64 // summed over the horizon
	TL     []float64 // T weighted by each probe's number of links
	in     []float64 // per node: probes entering it
	inL    []float64 // per node: TL entering it
	probes float64
	// crossings: link crossings of all probes, the denominator of the
	// background rate per link crossed.
	crossings float64
}

type slot struct {
	T, TL     []float64
	probes    float64
	crossings float64
	traces    []Trace
	links     []int32
}

func newEvidence(x *Index, horizon int) *evidence {
	e := &evidence{x: x, tr: newTraffic(x), slots: make([]slot, horizon),
		T: make([]float64, x.NumLinks()), TL: make([]float64, x.NumLinks()),
		in: make([]float64, x.NumNodes()), inL: make([]float64, x.NumNodes())}
	for i := range e.slots {
		e.slots[i].T = make([]float64, x.NumLinks())
		e.slots[i].TL = make([]float64, x.NumLinks())
	}
	return e
}

// add replaces the oldest window with w and re-sums the horizon.
func (e *evidence) add(w *Window) {
	s := &e.slots[e.pos]
	e.pos = (e.pos + 1) % len(e.slots)
	clear(s.T)
	clear(s.TL)
	s.probes, s.crossings = 0, 0
	if w.Sealed != nil {
		s.probes, s.crossings = e.tr.window(w.Sealed, s.T, s.TL)
	}
	s.traces = s.traces[:0]
	s.links = s.links[:0]
	for _, t := range w.Traces {
		if t.Src < 0 || int(t.Src) >= e.x.NumHosts || t.Dst < 0 || int(t.Dst) >= e.x.NumHosts {
			continue // not a host of this index: nothing to say about it
		}
		start := len(s.links)
		for _, l := range t.Links {
			if l >= 0 && int(l) < e.x.NumLinks() {
				s.links = append(s.links, l)
			}
		}
		t.Links = s.links[start:len(s.links):len(s.links)]
		s.traces = append(s.traces, t)
	}
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
	for l, v := range e.T {
		e.in[e.x.To[l]] += v
		e.inL[e.x.To[l]] += e.TL[l]
	}
}

// meshlens is the likelihood localizer; see the package doc.
type meshlens struct {
	x   *Index
	cfg Config
	ev  *evidence
	// scratch, indexed by candidate id (see candidate ids below)
	count []int32
	stamp []int32
	epoch int32
	// downSeen: switches and links blamed as dead; excluded: those of them
	// that have since stopped losing probes, which means routing converged
	// around them. The traffic model routes around excluded elements until
	// a traced probe crosses one again, or the traffic they no longer carry
	// would be expected of them and the traffic their neighbours took over
	// would look like a fault of the neighbours.
	downSeen map[int32]bool
	excluded map[int32]bool
	// once[n]: the share of the probes entering switch n that enter it
	// only once (see fanout).
	once []float64
}

// Candidate ids: a switch-to-switch link direction l is l, the physical
// link of l is L+min(l, reverse(l)), a node n (host or switch) is 2L+n.
// Host access links are never candidates of their own: every probe of a
// host crosses both directions, so probes cannot tell a host's NIC from its
// cable, and both are the host.
func newMeshlens(x *Index, cfg Config) *meshlens {
	c := 2*x.NumLinks() + x.NumNodes()
	return &meshlens{x: x, cfg: cfg, ev: newEvidence(x, cfg.Horizon), count: make([]int32, c), stamp: make([]int32, c),
		downSeen: map[int32]bool{}, excluded: map[int32]bool{}, once: fanout(x)}
}

func (m *meshlens) Name() string { return NameMeshlens }

func (m *meshlens) Localize(w *Window) ([]Suspect, error) {
	m.ev.add(w)
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
	var lost, slowTraces []*Trace
	for i := range m.ev.slots {
		s := &m.ev.slots[i]
		for j := range s.traces {
			t := &s.traces[j]
			switch {
			case t.Lost:
				lost = append(lost, t)
			case !slow[t.Src]:
				slowTraces = append(slowTraces, t)
			}
		}
	}
	lossSuspects := m.explain(lost, false)
	m.trackDown(w, lossSuspects)
	out = append(out, lossSuspects...)
	out = append(out, m.explain(slowTraces, true)...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Score > out[j].Score })
	if len(out) > m.cfg.MaxSuspects {
		out = out[:m.cfg.MaxSuspects]
	}
	return out, nil
}

// trackDown updates the elements the traffic model routes around; see
// meshlens.excluded.
func (m *meshlens) trackDown(w *Window, loss []Suspect) {
	x := m.x
	L := int32(x.NumLinks())
	blamed := map[int32]bool{}
	for _, s := range loss {
		blamed[s.cand] = true
		if s.cand < 2*L || x.IsSwitch(s.cand-2*L) {
			if (s.Symptom == SymptomDown || s.Symptom == SymptomBlackhole) && s.Estimate >= 0.3 {
				m.downSeen[s.cand] = true
			}
		}
	}
	changed := false
	for c := range m.downSeen {
		if !blamed[c] && !m.excluded[c] {
			m.excluded[c] = true
			changed = true
		}
	}
	if len(m.excluded) > 0 {
		var buf []int32
		for i := range w.Traces {
			buf = m.candidates(&w.Traces[i], buf[:0])
			for _, c := range buf {
				if m.excluded[c] {
					delete(m.excluded, c)
					delete(m.downSeen, c)
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
}

func confidence(score, min float64) float64 { return 1 - math.Exp(-score/min) }

// candidates appends trace t's candidate ids, each once.
func (m *meshlens) candidates(t *Trace, buf []int32) []int32 {
	x := m.x
	L := int32(x.NumLinks())
	m.epoch++
	add := func(c int32) {
		if m.stamp[c] != m.epoch {
			m.stamp[c] = m.epoch
			buf = append(buf, c)
		}
	}
	for _, l := range t.Links {
		if h := x.AccessHost(l); h >= 0 {
			add(2*L + h)
			if x.IsSwitch(x.From[l]) {
				add(2*L + x.From[l])
			} else {
				add(2*L + x.To[l])
			}
			continue
		}
		add(l)
		add(L + min(l, x.Reverse[l]))
		add(2*L + x.From[l])
		add(2*L + x.To[l])
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
	e := float64(m.count[c])
	if int(m.count[c]) < m.cfg.MinAnomalies {
		return 0, 0
	}
	return binomialLLR(e, u, m.exposure(c)/m.ev.crossings)
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
// make it look worse than the link.
func (m *meshlens) refine(c int32, score, lambda, u float64) (int32, float64, float64) {
	// A link direction first looks up to its link: when the other
	// direction is lossy too, blaming one direction would leave the other's
	// anomalies to be pinned on whatever else their probes crossed.
	if L := int32(m.x.NumLinks()); c < L {
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
		for _, k := range m.children(c) {
			if s, l := m.score(k, u); s > kidScore {
				kid, kidScore, kidLambda = k, s, l
			}
		}
		if kid < 0 || kidScore < m.cfg.MinScore {
			return c, score, lambda
		}
		if m.nestedSignificant(c, kid, u) {
			return c, score, lambda
		}
		c, score, lambda = kid, kidScore, kidLambda
	}
}

// nestedSignificant reports whether parent explains significantly more
// than kid, an element inside it: what parent explains beyond kid, among
// the anomalies kid leaves, against the share of the remaining link
// crossings that parent adds to kid. It is a nested test of one more
// parameter, so it gets half the bar of a new suspect.
func (m *meshlens) nestedSignificant(parent, kid int32, u float64) bool {
	eR := float64(m.count[parent] - m.count[kid])
	uR := u - float64(m.count[kid])
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
func (m *meshlens) explain(traces []*Trace, latency bool) []Suspect {
	if len(traces) == 0 || m.ev.crossings <= 0 {
		return nil
	}
	// Inverted lists: candidate -> traces.
	var flat []int32
	offs := make([]int, len(traces)+1)
	for i, t := range traces {
		flat = m.candidates(t, flat)
		offs[i+1] = len(flat)
	}
	var active []int32
	for _, c := range flat {
		if m.count[c] == 0 {
			active = append(active, c)
		}
		m.count[c]++
	}
	defer func() {
		for _, c := range active {
			m.count[c] = 0
		}
	}()
	start := make(map[int32]int, len(active))
	length := make(map[int32]int, len(active))
	pos := 0
	for _, c := range active {
		start[c] = pos
		length[c] = int(m.count[c])
		pos += int(m.count[c])
	}
	members := make([]int32, pos)
	fill := make(map[int32]int, len(active))
	for i := range traces {
		for _, c := range flat[offs[i]:offs[i+1]] {
			members[start[c]+fill[c]] = int32(i)
			fill[c]++
		}
	}
	explained := make([]bool, len(traces))
	unexplained := len(traces)
	var out []Suspect
	for len(out) < m.cfg.MaxSuspects && unexplained > 0 {
		u := float64(unexplained)
		best, bestScore, bestLambda := int32(-1), 0.0, 0.0
		for _, c := range active {
			score, lambda := m.score(c, u)
			if score > bestScore || (score == bestScore && best >= 0 && c < best) {
				best, bestScore, bestLambda = c, score, lambda
			}
		}
		if best >= 0 && bestScore >= m.cfg.MinScore {
			best, bestScore, bestLambda = m.refine(best, bestScore, bestLambda, u)
		}
		if best < 0 || bestScore < m.cfg.MinScore {
			break
		}
		e := float64(m.count[best])
		touch := m.touches(best)
		name, kind := m.describe(best)
		sus := Suspect{cand: best, Element: name, Kind: kind, Score: bestScore, Confidence: confidence(bestScore, m.cfg.MinScore),
			Evidence: Evidence{Probes: touch, Anomalous: int(e), Expected: bestLambda}}
		pairs := map[[2]int32]bool{}
		var excess []time.Duration
		var tcpLost, tcpBoth int
		// Walk the best candidate's full member list; explain what is left.
		for _, i := range members[start[best] : start[best]+length[best]] {
			if explained[i] {
				continue
			}
			explained[i] = true
			unexplained--
			t := traces[i]
			pairs[[2]int32{t.Src, t.Dst}] = true
			excess = append(excess, t.Excess)
			if t.Lost && t.Proto == wire.Protocol_PROTOCOL_TCP {
				tcpLost++
				if t.BothLost {
					tcpBoth++
				}
			}
			for _, c := range flat[offs[i]:offs[i+1]] {
				m.count[c]--
			}
		}
		sus.Evidence.Pairs = len(pairs)
		sus.Evidence.SamplePairs = m.samplePairs(pairs)
		rate := (e - bestLambda) / touch
		if latency {
			sus.Symptom = SymptomLatency
			sort.Slice(excess, func(a, b int) bool { return excess[a] < excess[b] })
			sus.Estimate = excess[len(excess)/2].Seconds()
		} else {
			sus.Estimate = math.Min(1, math.Max(0, rate))
			switch {
			case sus.Estimate >= 0.5:
				sus.Symptom = SymptomDown
			case tcpLost >= 3 && float64(tcpBoth) >= 0.7*float64(tcpLost):
				sus.Symptom = SymptomBlackhole
			default:
				sus.Symptom = SymptomLoss
			}
		}
		out = append(out, sus)
	}
	return out
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
