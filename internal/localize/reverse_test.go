package localize

import (
	"math"
	"testing"

	"github.com/meshlens/meshlens/internal/wire"
)

// TestReplyPath: what a reverse trace (the probed host's trace of a lost
// probe's reply, back to the prober) says about the reply's links, on the
// 2-pod fixture. The trace ran after the reply, so staleReply of the
// weight stays spread as hashing spreads it.
func TestReplyPath(t *testing.T) {
	_, pm, id, link := pathFixture(t)
	// The probe went from prober to probed; its reply, traced here, back.
	probed, prober := host(2, 1, 2), host(1, 1, 1)
	tor2, tor1 := "dc1-pod2-rack1-tor", "dc1-pod1-rack1-tor"
	const k = 1 - staleReply
	tests := []struct {
		name  string
		proto wire.Protocol
		hops  []string
		alive [][2]string
		want  map[[2]string]float64
	}{
		{
			name: "udp up to the prober's ToR: the whole way (a prober's socket answers no trace)", proto: wire.Protocol_PROTOCOL_UDP,
			hops: []string{tor2, "dc1-pod2-leaf1", "dc1-spine2", "dc1-pod1-leaf2", tor1},
			want: map[[2]string]float64{
				{probed, tor2}: 1, {"dc1-pod2-leaf1", "dc1-spine2"}: k + staleReply/4, {"dc1-pod2-leaf1", "dc1-spine1"}: staleReply / 4,
				{"dc1-spine2", "dc1-pod1-leaf2"}: k + staleReply/4, {"dc1-pod1-leaf2", tor1}: k + staleReply/2, {tor1, prober}: 1,
			},
		},
		{
			name: "udp silent after the leaf: the rest spread, not a dead end", proto: wire.Protocol_PROTOCOL_UDP,
			hops:  []string{tor2, "dc1-pod2-leaf1"},
			alive: [][2]string{{"dc1-pod2-leaf1", "dc1-spine1"}},
			want: map[[2]string]float64{
				{tor2, "dc1-pod2-leaf1"}: k + staleReply/2, {"dc1-pod2-leaf1", "dc1-spine1"}: 0.5*k + staleReply/4,
				{"dc1-pod2-leaf1", "dc1-spine2"}: 0.5*k + staleReply/4, {tor1, prober}: 1,
			},
		},
		{
			name: "tcp silent after the leaf: a dead end, on the uplink not seen alive", proto: wire.Protocol_PROTOCOL_TCP,
			hops:  []string{tor2, "dc1-pod2-leaf1"},
			alive: [][2]string{{"dc1-pod2-leaf1", "dc1-spine1"}},
			want: map[[2]string]float64{
				{"dc1-pod2-leaf1", "dc1-spine2"}: k + staleReply/4, {"dc1-pod2-leaf1", "dc1-spine1"}: staleReply / 4, {tor1, prober}: staleReply,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := Trace{Src: id(probed), Dst: id(prober), Proto: tc.proto, Lost: true, Reverse: true}
			for _, h := range tc.hops {
				tr.Hops = append(tr.Hops, id(h))
			}
			var al alive
			al.reset()
			for _, l := range tc.alive {
				al.links[link(l[0], l[1])] = true
			}
			got := map[int32]float64{}
			for _, w := range pm.reply(&tr, &al, nil) {
				if _, dup := got[w.link]; dup {
					t.Errorf("link %d twice", w.link)
				}
				got[w.link] = w.w
			}
			for l, w := range tc.want {
				if g := got[link(l[0], l[1])]; math.Abs(g-w) > 1e-9 {
					t.Errorf("%s->%s: %v, want %v", l[0], l[1], g, w)
				}
			}
		})
	}
}

// TestReverseTraceJoinsItsProbe: a reverse trace replaces the spread its
// lost probe's trace assumed for the reply, whichever comes first, and
// waits a horizon at most.
func TestReverseTraceJoinsItsProbe(t *testing.T) {
	f := newFixture(t, spec)
	x := f.x
	id := func(n string) int32 {
		v, ok := x.Node(n)
		if !ok {
			t.Fatalf("no node %s", n)
		}
		return v
	}
	prober, probed := id(host(1, 1, 1)), id(host(2, 1, 2))
	fwd := Trace{Src: prober, Dst: probed, Proto: wire.Protocol_PROTOCOL_UDP, Lost: true, Start: 1e18, Port: 40000, Reached: true}
	for _, n := range []string{"dc1-pod1-rack1-tor", "dc1-pod1-leaf1", "dc1-spine1", "dc1-pod2-leaf1", "dc1-pod2-rack1-tor", host(2, 1, 2)} {
		fwd.Hops = append(fwd.Hops, id(n))
	}
	rev := Trace{Src: probed, Dst: prober, Proto: wire.Protocol_PROTOCOL_UDP, Lost: true, Reverse: true, Start: 1e18, Port: 40000}
	for _, n := range []string{"dc1-pod2-rack1-tor", "dc1-pod2-leaf2", "dc1-spine2", "dc1-pod1-leaf2", "dc1-pod1-rack1-tor"} {
		rev.Hops = append(rev.Hops, id(n))
	}
	spine2, _ := x.Link(id("dc1-pod2-leaf2"), id("dc1-spine2"))
	// replyWeight is what the lost probe's trace says of the reply's way
	// over pod2-leaf2 -> spine2: 1/4 spread, nearly 1 once joined.
	replyWeight := func(e *evidence) float64 {
		for i := range e.slots {
			for j := range e.slots[i].traces {
				if e.slots[i].traces[j].Reverse {
					t.Fatal("a reverse trace kept as a trace of its own")
				}
				for _, w := range e.slots[i].paths[j].rev {
					if w.link == spine2 {
						return w.w
					}
				}
			}
		}
		return 0
	}
	const spread, joined = 0.25, 1 - staleReply*3/4
	other := rev
	other.Port = 40001 // another probe's reply
	tests := []struct {
		name    string
		windows [][]Trace
		want    float64
	}{
		{"together", [][]Trace{{rev, fwd}}, joined},
		{"reply first", [][]Trace{{rev}, {fwd}}, joined},
		{"probe first", [][]Trace{{fwd}, {rev}}, joined},
		{"another probe's reply", [][]Trace{{other, fwd}}, spread},
		{"reply older than the horizon", [][]Trace{{rev}, {}, {}, {fwd}}, spread},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEvidence(x, 3)
			for _, w := range tc.windows {
				e.add(&Window{Traces: w})
			}
			if g := replyWeight(e); math.Abs(g-tc.want) > 1e-9 {
				t.Errorf("reply over pod2-leaf2 -> spine2: %v, want %v", g, tc.want)
			}
			if len(e.replies) > 1 {
				t.Errorf("%d replies wait", len(e.replies))
			}
		})
	}
}
