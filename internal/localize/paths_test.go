package localize

import (
	"math"
	"testing"
)

// pathFixture is the 2-pod fixture's path model, with its nodes and link
// directions looked up by name.
func pathFixture(t *testing.T) (*Index, *pathModel, func(string) int32, func(a, b string) int32) {
	t.Helper()
	f := newFixture(t, spec)
	x := f.x
	pm := newPathModel(x, x.Routes(nil, nil))
	id := func(n string) int32 {
		v, ok := x.Node(n)
		if !ok {
			t.Fatalf("no node %s", n)
		}
		return v
	}
	link := func(a, b string) int32 {
		l, ok := x.Link(id(a), id(b))
		if !ok {
			t.Fatalf("no link %s->%s", a, b)
		}
		return l
	}
	return x, pm, id, link
}

// TestPathModel: what a partial trace says about the links its probe
// crossed, on the 2-pod fixture (2 leaves per pod, 2 spines).
func TestPathModel(t *testing.T) {
	x, pm, id, link := pathFixture(t)
	src, dst := host(1, 1, 1), host(2, 1, 2)
	tor1, tor2 := "dc1-pod1-rack1-tor", "dc1-pod2-rack1-tor"
	hops := func(names ...string) []int32 {
		var out []int32
		for _, n := range names {
			if n == "*" {
				out = append(out, UnknownHop)
			} else {
				out = append(out, id(n))
			}
		}
		return out
	}
	sum := func(ws []wlink) map[int32]float64 {
		m := map[int32]float64{}
		for _, w := range ws {
			m[w.link] += w.w
		}
		return m
	}
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	tests := []struct {
		name    string
		hops    []int32
		reached bool
		alive   [][2]string // link directions other traces saw answering
		want    map[[2]string]float64
		absent  [][2]string
	}{
		{
			name: "complete: every link certain", reached: true,
			hops: hops(tor1, "dc1-pod1-leaf1", "dc1-spine2", "dc1-pod2-leaf1", tor2, dst),
			want: map[[2]string]float64{{src, tor1}: 1, {tor1, "dc1-pod1-leaf1"}: 1, {"dc1-pod1-leaf1", "dc1-spine2"}: 1,
				{"dc1-spine2", "dc1-pod2-leaf1"}: 1, {"dc1-pod2-leaf1", tor2}: 1, {tor2, dst}: 1},
		},
		{
			name: "a silent spine: both spines, half each", reached: true,
			hops: hops(tor1, "dc1-pod1-leaf1", "*", "dc1-pod2-leaf1", tor2, dst),
			want: map[[2]string]float64{{"dc1-pod1-leaf1", "dc1-spine1"}: 0.5, {"dc1-pod1-leaf1", "dc1-spine2"}: 0.5,
				{"dc1-spine1", "dc1-pod2-leaf1"}: 0.5, {"dc1-pod2-leaf1", tor2}: 1},
		},
		{
			name: "stopped after the leaf: its uplinks share the blame", hops: hops(tor1, "dc1-pod1-leaf1"),
			want:   map[[2]string]float64{{tor1, "dc1-pod1-leaf1"}: 1, {"dc1-pod1-leaf1", "dc1-spine1"}: 0.5, {"dc1-pod1-leaf1", "dc1-spine2"}: 0.5},
			absent: [][2]string{{"dc1-spine1", "dc1-pod2-leaf1"}},
		},
		{
			name: "stopped after the leaf, one uplink seen alive: the other", hops: hops(tor1, "dc1-pod1-leaf1"),
			alive:  [][2]string{{"dc1-pod1-leaf1", "dc1-spine1"}},
			want:   map[[2]string]float64{{"dc1-pod1-leaf1", "dc1-spine2"}: 1},
			absent: [][2]string{{"dc1-pod1-leaf1", "dc1-spine1"}},
		},
		{
			name: "nothing answered: the source's own link", hops: nil,
			want: map[[2]string]float64{{src, tor1}: 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := Trace{Src: id(src), Dst: id(dst), Lost: true, Hops: tc.hops, Reached: tc.reached}
			var al alive
			al.reset()
			for _, l := range tc.alive {
				al.links[link(l[0], l[1])] = true
			}
			got := sum(pm.forward(&tr, &al, nil))
			for l, w := range tc.want {
				if g := got[link(l[0], l[1])]; !near(g, w) {
					t.Errorf("%s->%s: %v, want %v", l[0], l[1], g, w)
				}
			}
			for _, l := range tc.absent {
				if g, ok := got[link(l[0], l[1])]; ok {
					t.Errorf("%s->%s: %v, want none", l[0], l[1], g)
				}
			}
		})
	}
	// The reverse spread: the answer's way back, its shares summing to one
	// at every step (one link of each hop count).
	tr := Trace{Src: id(src), Dst: id(dst), Lost: true}
	rev := sum(pm.reverse(&tr, nil))
	if w := rev[x.HostUp[id(dst)]]; w != 1 {
		t.Errorf("destination's uplink %v, want 1", w)
	}
	if w := rev[link(tor2, "dc1-pod2-leaf1")] + rev[link(tor2, "dc1-pod2-leaf2")]; !near(w, 1) {
		t.Errorf("ToR uplinks sum to %v", w)
	}
	if w := rev[link("dc1-pod1-leaf1", tor1)] + rev[link("dc1-pod1-leaf2", tor1)]; !near(w, 1) {
		t.Errorf("into the source's ToR: %v", w)
	}
}
