package localize

import (
	"github.com/meshlens/meshlens/internal/aggregate"
)

// traffic estimates how many probes crossed each link direction in one
// window. Probes are counted per rack pair (the aggregator's rollups), and
// a rack pair's probes spread over its ECMP path set as per-hop hashing
// spreads them: evenly over the next hops at every switch. Each probe
// crosses its forward path and its reply the reverse path.
type traffic struct {
	x      *Index
	routes *Routes
	// rackToR maps rack names to ToR node ids.
	rackToR map[string]int32
	amt     []float64
	amtL    []float64
	demand  []float64
}

func newTraffic(x *Index) *traffic {
	t := &traffic{x: x, routes: x.Routes(nil, nil), rackToR: make(map[string]int32), amt: make([]float64, x.NumNodes()), amtL: make([]float64, x.NumNodes())}
	for _, r := range x.Topo.Racks {
		if id, ok := x.Node(r.ToR); ok {
			t.rackToR[r.Name] = id
		}
	}
	return t
}

// probeLinks is how many link directions a probe between hosts whose
// ToRs are d hops apart crosses, there and back.
func probeLinks(d int32) float64 { return float64(2 * (d + 2)) }

// window fills T and TL (len NumLinks, zeroed by the caller): probes that
// crossed each link direction, and the same weighted by each probe's
// number of links (a probe with more links has more chances to meet the
// background loss, which the localizer's null must expect). It returns the
// probes sent and their total link crossings.
func (t *traffic) window(sw *aggregate.SealedWindow, T, TL []float64) (probes, crossings float64) {
	x := t.x
	nt := len(x.ToRs)
	// Mean links per probe of each rack's hosts, for their access links.
	rackLinks := make([]float64, nt)
	rackProbes := make([]float64, nt)
	for k, r := range sw.RackPairs {
		a, okA := t.rackToR[k.Src]
		b, okB := t.rackToR[k.Dst]
		if !okA || !okB || r.Sent == 0 {
			continue
		}
		sa, sb := x.ToRSlot[a], x.ToRSlot[b]
		d := int32(0)
		if a != b {
			if d = t.routes.Dist(a, sb); d < 0 {
				continue
			}
		}
		n := float64(r.Sent)
		crossings += n * probeLinks(d)
		for _, s := range []int32{sa, sb} {
			rackLinks[s] += n * probeLinks(d)
			rackProbes[s] += n
		}
	}
	for k, r := range sw.Hosts {
		h, ok := x.Node(k.Host)
		if !ok || x.IsSwitch(h) || r.Sent == 0 {
			continue
		}
		// Every probe a host sends or answers crosses both directions of
		// its access link.
		s := float64(r.Sent)
		T[x.HostUp[h]] += s
		T[x.HostDown[h]] += s
		perProbe := 4.0
		if slot := x.ToRSlot[x.HostToR[h]]; rackProbes[slot] > 0 {
			perProbe = rackLinks[slot] / rackProbes[slot]
		}
		TL[x.HostUp[h]] += s * perProbe
		TL[x.HostDown[h]] += s * perProbe
		if k.Direction == aggregate.Out {
			probes += s
		}
	}
	// demand[to*nt+from]: probes from ToR slot `from` to ToR slot `to`,
	// forward and replies.
	if len(t.demand) != nt*nt {
		t.demand = make([]float64, nt*nt)
	}
	for k, r := range sw.RackPairs {
		if r.Sent == 0 || k.Src == k.Dst {
			continue
		}
		a, okA := t.rackToR[k.Src]
		b, okB := t.rackToR[k.Dst]
		if !okA || !okB || a == b {
			continue
		}
		sa, sb := int(x.ToRSlot[a]), int(x.ToRSlot[b])
		t.demand[sb*nt+sa] += float64(r.Sent)
		t.demand[sa*nt+sb] += float64(r.Sent)
	}
	for to := 0; to < nt; to++ {
		t.toward(int32(to), t.demand[to*nt:(to+1)*nt], T, TL)
	}
	clear(t.demand)
	return probes, crossings
}

// toward spreads every ToR's demand to the ToR in slot over the per-hop
// ECMP next hops, evenly at each switch, in one pass from the farthest
// switches in: one walk of the routing DAG per destination instead of one
// per pair.
func (t *traffic) toward(slot int32, demand []float64, T, TL []float64) {
	x := t.x
	any := false
	for from, d := range demand {
		if d > 0 {
			tor := x.ToRs[from]
			t.amt[tor] += d
			if dist := t.routes.Dist(tor, slot); dist > 0 {
				t.amtL[tor] += d * probeLinks(dist)
			}
			any = true
		}
	}
	if !any {
		return
	}
	order := t.routes.Toward(slot)
	for i := len(order) - 1; i > 0; i-- { // order[0] is the destination
		n := order[i]
		a := t.amt[n]
		if a == 0 {
			continue
		}
		aL := t.amtL[n]
		t.amt[n], t.amtL[n] = 0, 0
		hops := t.routes.Next(n, slot)
		share, shareL := a/float64(len(hops)), aL/float64(len(hops))
		for _, h := range hops {
			T[h.Link] += share
			TL[h.Link] += shareL
			t.amt[h.Node] += share
			t.amtL[h.Node] += shareL
		}
	}
	if len(order) > 0 {
		t.amt[order[0]], t.amtL[order[0]] = 0, 0
	}
	// Demand from ToRs with no route stays put: clear it.
	for from, d := range demand {
		if d > 0 {
			t.amt[x.ToRs[from]], t.amtL[x.ToRs[from]] = 0, 0
		}
	}
}
