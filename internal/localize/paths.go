package localize

import "github.com/meshlens/meshlens/internal/wire"

// What a partial trace says about where its probe went. A Paris
// traceroute from the source sees the forward path only, some hops stay
// silent, and it may stop answering where the path is broken; the probe's
// answer came back over a reverse path nobody traced. So a trace is read
// as a probability, for each link direction, that the probe or its answer
// crossed it:
//
//   - forward, up to the last hop that answered: the ECMP paths of the
//     routing (Index.Routes with nothing down) that agree with every
//     answered hop, each as likely as per-hop hashing makes it (a forward-
//     backward pass over the hops); a link is certain where both its ends
//     answered;
//   - a trace that stopped answering after hop k (not reached): the probe
//     went on from hop k over one of its next hops, and that one is dead
//     for this flow; next hops that other traces of the same window saw
//     answering (alive) are unlikely to be it, so the weight goes to the
//     others (to all when every one was seen alive);
//   - back: the reverse ECMP paths from the destination's ToR, spread as
//     hashing spreads them (Pingmesh probes both ways, so the other
//     direction's traces pin what this spread leaves open).

// wlink is a link direction crossed with probability w.
type wlink struct {
	link int32
	w    float64
}

// pathModel reads traces against the full routing.
type pathModel struct {
	x      *Index
	routes *Routes
	// forward-backward scratch, per position
	alpha, beta [][]nodeP
	// reverse spread scratch
	level, nextLevel []nodeP
}

type nodeP struct {
	n int32
	p float64
}

func newPathModel(x *Index, routes *Routes) *pathModel {
	return &pathModel{x: x, routes: routes}
}

// alive is what the traces of one window saw answering: switches and
// hosts, and the link directions between two consecutive answered hops.
type alive struct {
	nodes map[int32]bool
	links map[int32]bool
}

func (a *alive) reset() {
	if a.nodes == nil {
		a.nodes, a.links = map[int32]bool{}, map[int32]bool{}
	}
	clear(a.nodes)
	clear(a.links)
}

// see records what trace t saw answering.
func (a *alive) see(x *Index, t *Trace) {
	prev := t.Src
	for _, n := range t.Hops {
		if n == UnknownHop {
			prev = UnknownHop
			continue
		}
		a.nodes[n] = true
		if prev != UnknownHop {
			if l, ok := x.Link(prev, n); ok {
				a.links[l] = true
			}
		}
		prev = n
	}
}

// next lists the hops from node n towards host dst: a host's link to its
// ToR, a ToR's link down to dst, else the ECMP next hops.
func (pm *pathModel) next(n, dst int32) []Hop {
	x := pm.x
	if !x.IsSwitch(n) {
		return []Hop{{x.HostToR[n], x.HostUp[n]}}
	}
	if n == x.HostToR[dst] {
		return []Hop{{dst, x.HostDown[dst]}}
	}
	return pm.routes.Next(n, x.ToRSlot[x.HostToR[dst]])
}

// forward appends t's forward link directions with the probability the
// probe crossed each, given its answered hops; for a trace that stopped
// short, the link it most likely died on (see the file comment; al is the
// window's alive set, nil for none). When the hops fit no path of the
// routing (it changed), only the links between answered neighbours are
// certain, and those are what is appended.
func (pm *pathModel) forward(t *Trace, al *alive, out []wlink) []wlink {
	x := pm.x
	// k: positions 1..k are the hops up to the last one that answered.
	k := len(t.Hops)
	for k > 0 && t.Hops[k-1] == UnknownHop {
		k--
	}
	last := t.Src
	if k > 0 {
		last = t.Hops[k-1]
	}
	if k > 0 {
		var ok bool
		if out, ok = pm.posterior(t, k, out); !ok {
			prev := t.Src
			for _, n := range t.Hops[:k] {
				if n != UnknownHop && prev != UnknownHop {
					if l, ok := x.Link(prev, n); ok {
						out = append(out, wlink{l, 1})
					}
				}
				prev = n
			}
		}
	}
	if t.Reached || last == t.Dst {
		return out
	}
	// Stopped short after last: one of its next hops is where it died.
	next := pm.next(last, t.Dst)
	if len(next) == 0 {
		return out
	}
	dead := 0
	for _, h := range next {
		if al == nil || !al.links[h.Link] {
			dead++
		}
	}
	for _, h := range next {
		switch {
		case dead == 0:
			out = append(out, wlink{h.Link, 1 / float64(len(next))})
		case al == nil || !al.links[h.Link]:
			out = append(out, wlink{h.Link, 1 / float64(dead)})
		}
	}
	return out
}

// posterior is the forward-backward pass over positions 0 (the source)
// to k (the last answered hop): each link's probability of being on the
// path given the answered hops, under per-hop ECMP hashing.
func (pm *pathModel) posterior(t *Trace, k int, out []wlink) ([]wlink, bool) {
	for len(pm.alpha) <= k {
		pm.alpha = append(pm.alpha, nil)
		pm.beta = append(pm.beta, nil)
	}
	pm.alpha[0] = append(pm.alpha[0][:0], nodeP{t.Src, 1})
	for j := 1; j <= k; j++ {
		obs := t.Hops[j-1]
		cur := pm.alpha[j][:0]
		for _, a := range pm.alpha[j-1] {
			if a.n == t.Dst {
				continue
			}
			next := pm.next(a.n, t.Dst)
			for _, h := range next {
				if obs != UnknownHop && h.Node != obs {
					continue
				}
				cur = addP(cur, h.Node, a.p/float64(len(next)))
			}
		}
		pm.alpha[j] = cur
		if len(cur) == 0 {
			return out, false
		}
	}
	pm.beta[k] = pm.beta[k][:0]
	z := 0.0
	for _, a := range pm.alpha[k] {
		pm.beta[k] = append(pm.beta[k], nodeP{a.n, 1})
		z += a.p
	}
	for j := k - 1; j >= 0; j-- {
		cur := pm.beta[j][:0]
		for _, a := range pm.alpha[j] {
			b := 0.0
			if a.n != t.Dst {
				next := pm.next(a.n, t.Dst)
				for _, h := range next {
					b += getP(pm.beta[j+1], h.Node) / float64(len(next))
				}
			}
			cur = append(cur, nodeP{a.n, b})
		}
		pm.beta[j] = cur
	}
	for j := 0; j < k; j++ {
		for _, a := range pm.alpha[j] {
			if a.n == t.Dst {
				continue
			}
			next := pm.next(a.n, t.Dst)
			for _, h := range next {
				if w := a.p / float64(len(next)) * getP(pm.beta[j+1], h.Node) / z; w > 0 {
					out = append(out, wlink{h.Link, w})
				}
			}
		}
	}
	return out, true
}

func addP(s []nodeP, n int32, p float64) []nodeP {
	for i := range s {
		if s[i].n == n {
			s[i].p += p
			return s
		}
	}
	return append(s, nodeP{n, p})
}

func getP(s []nodeP, n int32) float64 {
	for _, v := range s {
		if v.n == n {
			return v.p
		}
	}
	return 0
}

// minSpread is the least probability of a reverse link worth counting:
// on a large fabric the reverse paths fan out over every spine, and those
// thin shares are most of the work and next to no evidence.
const minSpread = 1.0 / 32

// reply appends the link directions a lost probe's reply took, as its
// reverse trace (Trace.Reverse, from the probed host back to the prober)
// saw them. A prober's UDP socket answers no trace, so a UDP reverse
// trace never reaches it: its silence after the last hop that answered
// says nothing of where the reply died (rate-limited or silent hops look
// the same), and the rest of the way is spread as hashing spreads it. A
// TCP reverse trace is read as a forward one (the prober's kernel resets
// it), a dead end included.
func (pm *pathModel) reply(t *Trace, al *alive, out []wlink) []wlink {
	start := len(out)
	out = pm.traced(t, al, out)
	// The trace ran after the reply, maybe on routes that have changed
	// since (converged around a link that went down): the reply may have
	// gone any way, with probability staleReply.
	n := len(out)
	out = pm.spread(t.Src, t.Dst, out)
	for i := start; i < n; i++ {
		out[i].w *= 1 - staleReply
	}
next:
	for _, s := range out[n:] {
		for i := start; i < n; i++ {
			if out[i].link == s.link {
				out[i].w += staleReply * s.w
				continue next
			}
		}
		out[n] = wlink{s.link, staleReply * s.w}
		n++
	}
	return out[:n]
}

// staleReply: see reply.
const staleReply = 0.2

// traced is reply's reading of the trace itself.
func (pm *pathModel) traced(t *Trace, al *alive, out []wlink) []wlink {
	if t.Reached || t.Proto == wire.Protocol_PROTOCOL_TCP {
		return pm.forward(t, al, out)
	}
	k := len(t.Hops)
	for k > 0 && t.Hops[k-1] == UnknownHop {
		k--
	}
	last, start := t.Src, len(out)
	if k > 0 {
		var ok bool
		if out, ok = pm.posterior(t, k, out); !ok {
			return pm.spread(t.Src, t.Dst, out[:start]) // no path of the routing: all spread
		}
		last = t.Hops[k-1]
	}
	return pm.spread(last, t.Dst, out)
}

// spread appends the link directions a flow nobody traced takes from
// node n on to host dst, spread as per-hop ECMP hashing spreads it.
func (pm *pathModel) spread(n, dst int32, out []wlink) []wlink {
	pm.level = append(pm.level[:0], nodeP{n, 1})
	for steps := 0; len(pm.level) > 0 && steps <= pm.x.MaxHops(); steps++ {
		pm.nextLevel = pm.nextLevel[:0]
		for _, a := range pm.level {
			if a.n == dst {
				continue
			}
			next := pm.next(a.n, dst)
			for _, h := range next {
				w := a.p / float64(len(next))
				if w >= minSpread {
					out = append(out, wlink{h.Link, w})
				}
				pm.nextLevel = addP(pm.nextLevel, h.Node, w)
			}
		}
		pm.level, pm.nextLevel = pm.nextLevel, pm.level
	}
	return out
}

// reverse appends the link directions the probe's answer may have taken
// from t.Dst back to t.Src, spread as per-hop ECMP hashing spreads it.
func (pm *pathModel) reverse(t *Trace, out []wlink) []wlink {
	return pm.spread(t.Dst, t.Src, out)
}
