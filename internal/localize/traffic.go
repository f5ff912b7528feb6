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
	cur     []int32
	next    []int32
}

func newTraffic(x *Index) *traffic {
	t := &traffic{x: x, routes: x.Routes(nil, nil), rackToR: make(map[string]int32), amt: make([]float64, x.NumNodes())}
	for _, r := range x.Topo.Racks {
		if id, ok := x.Node(r.ToR); ok {
			t.rackToR[r.Name] = id
		}
	}
	return t
}

// window fills T (len NumLinks, zeroed by the caller) and returns the
// number of probes sent.
func (t *traffic) window(sw *aggregate.SealedWindow, T []float64) float64 {
	x := t.x
	var probes float64
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
		if k.Direction == aggregate.Out {
			probes += s
		}
	}
	pairs := make(map[[2]int32]float64, len(sw.RackPairs))
	for k, r := range sw.RackPairs {
		if r.Sent == 0 || k.Src == k.Dst {
			continue
		}
		a, okA := t.rackToR[k.Src]
		b, okB := t.rackToR[k.Dst]
		if !okA || !okB {
			continue
		}
		pairs[[2]int32{a, b}] += float64(r.Sent)
	}
	for k, s := range pairs {
		t.split(k[0], k[1], s, T)
		t.split(k[1], k[0], s, T)
	}
	return probes
}

// split spreads amount from ToR node `from` to ToR node `to` over the
// per-hop ECMP next hops, layer by layer.
func (t *traffic) split(from, to int32, amount float64, T []float64) {
	slot := t.x.ToRSlot[to]
	if slot < 0 {
		return
	}
	t.cur = append(t.cur[:0], from)
	t.amt[from] = amount
	for len(t.cur) > 0 {
		t.next = t.next[:0]
		for _, n := range t.cur {
			a := t.amt[n]
			t.amt[n] = 0
			if n == to {
				continue
			}
			hops := t.routes.Next(n, slot)
			if len(hops) == 0 {
				continue
			}
			share := a / float64(len(hops))
			for _, h := range hops {
				T[h.Link] += share
				if t.amt[h.Node] == 0 {
					t.next = append(t.next, h.Node)
				}
				t.amt[h.Node] += share
			}
		}
		t.cur, t.next = t.next, t.cur
	}
}
