package localize

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/aggregate"
	"github.com/meshlens/meshlens/internal/topology"
	"github.com/meshlens/meshlens/internal/wire"
)

// fixture is a small Clos with a hand-built window: every host probes every
// host of every other rack, probesPerPair probes each, and traces placed by
// the test.
type fixture struct {
	t      testing.TB
	x      *Index
	routes *Routes
	sw     *aggregate.SealedWindow
}

const probesPerPair = 20

func newFixture(t testing.TB, spec topology.GenSpec) *fixture {
	topo, err := topology.Generate(spec)
	if err != nil {
		t.Fatal(err)
	}
	x, err := NewIndex(topo)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, x: x, routes: x.Routes(nil, nil)}
	f.sw = &aggregate.SealedWindow{
		Hosts:     map[aggregate.HostKey]*aggregate.Rollup{},
		RackPairs: map[aggregate.LocationPair]*aggregate.Rollup{},
	}
	for _, a := range topo.Hosts {
		for _, b := range topo.Hosts {
			if a == b {
				continue
			}
			add := func(m map[aggregate.LocationPair]*aggregate.Rollup, k aggregate.LocationPair) {
				if m[k] == nil {
					m[k] = &aggregate.Rollup{}
				}
				m[k].Sent += probesPerPair
			}
			add(f.sw.RackPairs, aggregate.LocationPair{Src: a.Rack, Dst: b.Rack, Proto: wire.Protocol_PROTOCOL_TCP})
			for _, hk := range []aggregate.HostKey{{Host: a.Name, Direction: aggregate.Out}, {Host: b.Name, Direction: aggregate.In}} {
				if f.sw.Hosts[hk] == nil {
					f.sw.Hosts[hk] = &aggregate.Rollup{}
				}
				f.sw.Hosts[hk].Sent += probesPerPair
			}
		}
	}
	return f
}

// path is the links a probe src->dst takes there and back, choosing at each
// switch the hop pick returns (nil: the first).
func (f *fixture) path(src, dst string, pick func(n int32, hops []Hop) Hop) []int32 {
	s, _ := f.x.Node(src)
	d, _ := f.x.Node(dst)
	var out []int32
	one := func(a, b int32) {
		out = append(out, f.x.HostUp[a])
		cur, target := f.x.HostToR[a], f.x.HostToR[b]
		for cur != target {
			hops := f.routes.Next(cur, f.x.ToRSlot[target])
			h := hops[0]
			if pick != nil {
				h = pick(cur, hops)
			}
			out = append(out, h.Link)
			cur = h.Node
		}
		out = append(out, f.x.HostDown[b])
	}
	one(s, d)
	one(d, s)
	return out
}

// via picks the hop to node name when offered.
func (f *fixture) via(names ...string) func(int32, []Hop) Hop {
	return func(_ int32, hops []Hop) Hop {
		for _, h := range hops {
			for _, n := range names {
				if f.x.Names[h.Node] == n {
					return h
				}
			}
		}
		return hops[0]
	}
}

// through picks the hop to node must when offered, else a pseudo-random
// one, as different flows hash differently.
func (f *fixture) through(seed int, must string) func(int32, []Hop) Hop {
	n := uint64(seed)*0x632be59bd9b4e019 + 0x1234567
	return func(_ int32, hops []Hop) Hop {
		for _, h := range hops {
			if f.x.Names[h.Node] == must {
				return h
			}
		}
		n += 0x9e3779b97f4a7c15
		z := (n ^ n>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		return hops[(z^z>>31)%uint64(len(hops))]
	}
}

// crossing lists traces of lost (or slow) probes between the pods' hosts
// whose paths cross must, both directions.
func (f *fixture) crossing(must string, lost bool) []Trace {
	var ts []Trace
	seed := 0
	for i := 1; i <= 4; i++ {
		for r := 1; r <= 2; r++ {
			seed++
			ts = append(ts, f.trace(host(1, r, i), host(2, 3-r, 1+i%4), lost, f.through(seed, must)))
			seed++
			ts = append(ts, f.trace(host(2, r, i), host(1, r, 1+(i+1)%4), lost, f.through(seed, must)))
		}
	}
	return ts
}

func (f *fixture) trace(src, dst string, lost bool, pick func(int32, []Hop) Hop) Trace {
	s, _ := f.x.Node(src)
	d, _ := f.x.Node(dst)
	// A complete forward trace: every hop answered.
	t := Trace{Src: s, Dst: d, Proto: wire.Protocol_PROTOCOL_TCP, Lost: lost, Reached: true}
	for _, l := range f.path(src, dst, pick) {
		t.Hops = append(t.Hops, f.x.To[l])
		if f.x.To[l] == d {
			break
		}
	}
	if !lost {
		t.Excess = 2 * time.Millisecond
	}
	return t
}

var spec = topology.GenSpec{DCs: 1, Pods: 2, RacksPerPod: 2, HostsPerRack: 4, LeavesPerPod: 2, Spines: 2}

func host(pod, rack, h int) string { return fmt.Sprintf("dc1-pod%d-rack%d-h%02d", pod, rack, h) }

func TestLocalizeDiscriminates(t *testing.T) {
	f := newFixture(t, spec)
	// A few scattered background losses every case shares.
	background := []Trace{
		f.trace(host(1, 1, 1), host(2, 2, 3), true, nil),
		f.trace(host(2, 1, 2), host(1, 2, 4), true, nil),
	}
	tests := []struct {
		name    string
		traces  func() []Trace
		lag     map[string]time.Duration
		element string
		kind    Kind
		symptom Symptom
	}{
		{
			name: "one link direction", element: "dc1-pod1-leaf1->dc1-spine1", kind: KindLink, symptom: SymptomLoss,
			traces: func() []Trace {
				var ts []Trace
				for i := 1; i <= 4; i++ {
					for j := 1; j <= 2; j++ {
						tr := f.trace(host(1, 1, i), host(2, j, i), true, f.via("dc1-pod1-leaf1", "dc1-spine1"))
						tr.BothLost = false
						ts = append(ts, tr)
					}
				}
				return ts
			},
		},
		{
			name: "whole device", element: "dc1-spine2", kind: KindDevice,
			traces: func() []Trace { return f.crossing("dc1-spine2", true) },
		},
		{
			name: "sick server, not its ToR", element: host(1, 2, 3), kind: KindHost,
			traces: func() []Trace {
				var ts []Trace
				for _, peer := range []string{host(1, 1, 1), host(2, 1, 2), host(2, 2, 3), host(1, 1, 4), host(2, 1, 1)} {
					ts = append(ts, f.trace(host(1, 2, 3), peer, true, f.through(len(ts), "")), f.trace(peer, host(1, 2, 3), true, f.through(len(ts)+1, "")))
				}
				return ts
			},
		},
		{
			name: "flow-consistent drops are a blackhole", element: "dc1-pod2-leaf2", kind: KindDevice, symptom: SymptomBlackhole,
			traces: func() []Trace {
				// A blackholed flow's trace (same 5-tuple) dies at the
				// blackholing switch: it answers, nothing after it does.
				leaf, _ := f.x.Node("dc1-pod2-leaf2")
				ts := f.crossing("dc1-pod2-leaf2", true)
				for i := range ts {
					ts[i].BothLost = true
					ts[i].Hops = ts[i].Hops[:slices.Index(ts[i].Hops, leaf)+1]
					ts[i].Reached = false
				}
				return ts
			},
		},
		{
			name: "latency on a link", element: "dc1-spine1->dc1-pod2-leaf1", kind: KindLink, symptom: SymptomLatency,
			traces: func() []Trace {
				var ts []Trace
				for i := 1; i <= 4; i++ {
					for r := 1; r <= 2; r++ {
						for j := 1; j <= 2; j++ {
							rnd := f.through(i*10+r*3+j, "")
							pick := func(n int32, hops []Hop) Hop {
								for _, h := range hops {
									if f.x.Names[h.Node] == "dc1-spine1" || (f.x.Names[n] == "dc1-spine1" && f.x.Names[h.Node] == "dc1-pod2-leaf1") {
										return h
									}
								}
								return rnd(n, hops)
							}
							ts = append(ts, f.trace(host(1, r, i), host(2, j, 1+(i+r)%4), false, pick))
						}
					}
				}
				return ts
			},
		},
		{
			name: "a starved agent is not the network", element: host(1, 1, 2), kind: KindHost, symptom: SymptomAgentSlow,
			lag: map[string]time.Duration{host(1, 1, 2): 60 * time.Millisecond, host(1, 1, 3): time.Millisecond},
			traces: func() []Trace {
				var ts []Trace
				for _, peer := range []string{host(1, 1, 1), host(2, 1, 2), host(2, 2, 3), host(1, 2, 4)} {
					ts = append(ts, f.trace(host(1, 1, 2), peer, false, nil))
				}
				return ts
			},
		},
		{
			// Its timeouts read as losses of its own probes: still only
			// agent_slow, never also a sick host.
			name: "a starved agent's timeouts are not a sick host", element: host(2, 1, 3), kind: KindHost, symptom: SymptomAgentSlow,
			lag: map[string]time.Duration{host(2, 1, 3): 80 * time.Millisecond},
			traces: func() []Trace {
				var ts []Trace
				for i, peer := range []string{host(1, 1, 1), host(1, 2, 2), host(2, 2, 3), host(1, 1, 4), host(2, 1, 1)} {
					ts = append(ts, f.trace(host(2, 1, 3), peer, true, f.through(i, "")), f.trace(host(2, 1, 3), peer, false, f.through(i+7, "")))
				}
				return ts
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lz, err := New(NameMeshlens, f.x, Config{})
			if err != nil {
				t.Fatal(err)
			}
			// A fault's anomalies recur over the horizon's windows.
			var traces []Trace
			for range 4 {
				traces = append(traces, tc.traces()...)
			}
			w := &Window{Sealed: f.sw, AgentLag: tc.lag, Traces: append(traces, background...)}
			sus, err := lz.Localize(w)
			if err != nil {
				t.Fatal(err)
			}
			if len(sus) != 1 {
				t.Fatalf("suspects %+v, want exactly %s", sus, tc.element)
			}
			s := sus[0]
			if s.Element != tc.element || s.Kind != tc.kind || (tc.symptom != "" && s.Symptom != tc.symptom) {
				t.Errorf("blamed %s %s (%s), want %s %s (%s)", s.Kind, s.Element, s.Symptom, tc.kind, tc.element, tc.symptom)
			}
			if s.Confidence <= 0 || s.Confidence > 1 || s.Evidence.Anomalous == 0 && s.Symptom != SymptomAgentSlow {
				t.Errorf("suspect %+v lacks evidence", s)
			}
			if s.Symptom != SymptomAgentSlow {
				// The pairs it names are the pairs it counts, up to the bound.
				if n := len(s.Evidence.SamplePairs); n != min(s.Evidence.Pairs, MaxSamplePairs) || n == 0 {
					t.Errorf("%d sample pairs of %d pairs", n, s.Evidence.Pairs)
				}
				if !slices.IsSorted(s.Evidence.SamplePairs) || !strings.Contains(s.Evidence.SamplePairs[0], " -> ") {
					t.Errorf("sample pairs %v", s.Evidence.SamplePairs)
				}
			}
		})
	}
}

func TestLocalizeQuietOnBackground(t *testing.T) {
	f := newFixture(t, spec)
	for _, name := range []string{NameMeshlens, NameVote} {
		lz, err := New(name, f.x, Config{})
		if err != nil {
			t.Fatal(err)
		}
		for w := 0; w < 10; w++ {
			// One loss per window, each somewhere else.
			tr := f.trace(host(1+w%2, 1+w/2%2, 1+w%4), host(2-w%2, 2-w/3%2, 1+(w+1)%4), true, nil)
			sus, err := lz.Localize(&Window{Sealed: f.sw, Traces: []Trace{tr}})
			if err != nil {
				t.Fatal(err)
			}
			if len(sus) > 0 {
				t.Fatalf("%s window %d: blamed %+v on background", name, w, sus)
			}
		}
	}
}

func TestNewUnknown(t *testing.T) {
	f := newFixture(t, spec)
	if _, err := New("magic", f.x, Config{}); err == nil {
		t.Error("unknown localizer accepted")
	}
}

func TestRoutesAvoidDown(t *testing.T) {
	f := newFixture(t, spec)
	spine1, _ := f.x.Node("dc1-spine1")
	leaf, _ := f.x.Node("dc1-pod1-leaf1")
	r := f.x.Routes(func(n int32) bool { return n == spine1 }, nil)
	tor, _ := f.x.Node("dc1-pod2-rack1-tor")
	hops := r.Next(leaf, f.x.ToRSlot[tor])
	if len(hops) != 1 || f.x.Names[hops[0].Node] != "dc1-spine2" {
		t.Errorf("next hops from leaf avoiding spine1: %+v", hops)
	}
	if got := f.routes.Next(leaf, f.x.ToRSlot[tor]); len(got) != 2 {
		t.Errorf("full routes: %d next hops, want 2", len(got))
	}
}

// TestTrafficConserved: every inter-pod probe crosses one leaf->spine link
// going out and one coming back, and every probe both directions of its
// hosts' access links.
func TestTrafficConserved(t *testing.T) {
	f := newFixture(t, spec)
	tr := newTraffic(f.x)
	T, TL := make([]float64, f.x.NumLinks()), make([]float64, f.x.NumLinks())
	probes, crossings := tr.window(f.sw, T, TL)
	if want := 16.0 * 15 * probesPerPair; probes != want {
		t.Errorf("probes %v, want %v", probes, want)
	}
	// Per host: 3 rack-mates (4 links there and back), 4 hosts of the other
	// rack of its pod (8), 8 of the other pod (12).
	if want := 16.0 * probesPerPair * (3*4 + 4*8 + 8*12); crossings != want {
		t.Errorf("link crossings %v, want %v", crossings, want)
	}
	var up, access float64
	for l := range T {
		from, to := f.x.Names[f.x.From[l]], f.x.Names[f.x.To[l]]
		if strings.Contains(from, "leaf") && strings.Contains(to, "spine") {
			up += T[l]
		}
		if f.x.AccessHost(int32(l)) >= 0 {
			access += T[l]
		}
	}
	interPod := 2.0 * 8 * 8 * probesPerPair
	if math.Abs(up-2*interPod) > 1e-6 {
		t.Errorf("leaf->spine traffic %v, want %v", up, 2*interPod)
	}
	if want := 4 * probes; math.Abs(access-want) > 1e-6 {
		t.Errorf("access traffic %v, want %v", access, want)
	}
}

// TestHostDown: a host whose agent went silent and whose probes are lost
// is down, and is the only suspect: the probes lost on their way to it are
// not held against its ToR or links. A silent host that still answers is
// not down (its agent stopped; the host lives).
func TestHostDown(t *testing.T) {
	gone := host(1, 2, 3)
	window := func(t *testing.T, silent map[string]bool, lostIn uint64) []Suspect {
		f := newFixture(t, spec)
		f.sw.Hosts[aggregate.HostKey{Host: gone, Direction: aggregate.In}].Lost = lostIn
		// Every peer's probe to it dies at its ToR's last hop, traced.
		var ts []Trace
		for _, peer := range []string{host(1, 1, 1), host(2, 1, 2), host(2, 2, 3), host(1, 1, 4), host(2, 1, 1), host(1, 2, 1), host(2, 2, 4)} {
			tr := f.trace(peer, gone, true, f.through(len(ts), ""))
			tr.Hops[len(tr.Hops)-1] = UnknownHop
			tr.Reached = false
			ts = append(ts, tr)
		}
		lz, err := New(NameMeshlens, f.x, Config{})
		if err != nil {
			t.Fatal(err)
		}
		sus, err := lz.Localize(&Window{Sealed: f.sw, Traces: ts, Silent: silent})
		if err != nil {
			t.Fatal(err)
		}
		return sus
	}
	t.Run("silent and dropping", func(t *testing.T) {
		sus := window(t, map[string]bool{gone: true}, 300)
		if len(sus) != 1 || sus[0].Element != gone || sus[0].Symptom != SymptomHostDown || sus[0].Kind != KindHost || sus[0].Confidence < 0.9 {
			t.Fatalf("suspects %v, want %s host_down alone", sus, gone)
		}
		if sus[0].Estimate < 0.9 {
			t.Errorf("estimate %v for a host that lost all it was sent", sus[0].Estimate)
		}
	})
	t.Run("agent up", func(t *testing.T) {
		// The same traces with its agent delivering: a host (or its
		// link) that drops, not a host that is gone.
		for _, s := range window(t, nil, 300) {
			if s.Symptom == SymptomHostDown {
				t.Fatalf("host_down without a silent agent: %v", s)
			}
		}
	})
	t.Run("silent but mostly answering", func(t *testing.T) {
		// Its agent stopped; the host lost 7 of 600 probes sent to it:
		// alive, so not down (what the traces say is judged as usual).
		for _, s := range window(t, map[string]bool{gone: true}, 7) {
			if s.Symptom == SymptomHostDown {
				t.Fatalf("host_down for a host that answers 593 of 600: %v", s)
			}
		}
	})
}

// TestBlackholeNeedsEvidence: "their retransmissions died too" reads as a
// blackhole only from enough lost connects; 3 of 4 happens one time in
// seven to a host losing 20 % of its packets (the lab's host_nic, named a
// blackhole in its first window by CI), 5 of 6 one time in forty; 9 of
// 10 hardly ever.
func TestBlackholeNeedsEvidence(t *testing.T) {
	sick := host(1, 2, 3)
	peers := []string{host(1, 1, 1), host(2, 1, 2), host(2, 2, 3), host(1, 1, 4), host(2, 1, 1), host(1, 2, 1), host(2, 2, 4), host(1, 1, 2), host(2, 1, 4), host(2, 2, 1)}
	for _, tc := range []struct {
		tcp, both int // of 10 lost probes traced, tcp are connects
		want      Symptom
	}{{6, 5, SymptomLoss}, {10, 9, SymptomBlackhole}} {
		f := newFixture(t, spec)
		var ts []Trace
		for i := range peers {
			tr := f.trace(sick, peers[i], true, f.through(i, ""))
			if i >= tc.tcp {
				tr.Proto = wire.Protocol_PROTOCOL_UDP
			}
			tr.BothLost = i < tc.both
			ts = append(ts, tr)
		}
		lz, err := New(NameMeshlens, f.x, Config{})
		if err != nil {
			t.Fatal(err)
		}
		sus, err := lz.Localize(&Window{Sealed: f.sw, Traces: ts})
		if err != nil {
			t.Fatal(err)
		}
		if len(sus) == 0 || sus[0].Element != sick || sus[0].Symptom != tc.want {
			t.Errorf("%d of %d lost connects both lost: suspects %v, want %s with %s", tc.both, tc.tcp, sus, sick, tc.want)
		}
	}
}

// TestRestoredToRNotBlamed: a ToR blamed down on the horizon's windows is
// no longer blamed once a window's probes crossed it and lost none (it came
// back: routing cannot go around a ToR); while its hosts' rollups still
// count losses, it is, even when that window's traces are late.
func TestRestoredToRNotBlamed(t *testing.T) {
	f := newFixture(t, spec)
	tor, _ := f.x.Node("dc1-pod1-rack1-tor")
	// Probes to its hosts end silent where it would answer, over either
	// leaf; probes from them at their first hop.
	var down []Trace
	seed := 0
	for i := 1; i <= 4; i++ {
		for _, peer := range []string{host(1, 2, i), host(2, 1, i), host(2, 2, i)} {
			seed++
			tr := f.trace(peer, host(1, 1, i), true, f.through(seed, ""))
			for j, h := range tr.Hops {
				if h == tor {
					tr.Hops, tr.Reached = tr.Hops[:j], false
					break
				}
			}
			out := f.trace(host(1, 1, i), peer, true, nil)
			out.Hops, out.Reached = []int32{UnknownHop}, false
			down = append(down, tr, out)
		}
	}
	// The rollups of a window it is down in: every probe of its hosts lost.
	lossy := &aggregate.SealedWindow{Hosts: map[aggregate.HostKey]*aggregate.Rollup{}, RackPairs: f.sw.RackPairs}
	for k, r := range f.sw.Hosts {
		c := *r
		if strings.HasPrefix(k.Host, "dc1-pod1-rack1-") {
			c.Lost = c.Sent
		}
		lossy.Hosts[k] = &c
	}
	for _, tc := range []struct {
		name   string
		third  *Window
		blamed bool
	}{
		{"back", &Window{Sealed: f.sw}, false},
		{"still down", &Window{Sealed: lossy, Traces: down}, true},
		{"still down, traces late", &Window{Sealed: lossy}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lz, err := New(NameMeshlens, f.x, Config{})
			if err != nil {
				t.Fatal(err)
			}
			for i, w := range []*Window{{Sealed: lossy, Traces: down}, {Sealed: lossy, Traces: down}, tc.third} {
				sus, err := lz.Localize(w)
				if err != nil {
					t.Fatal(err)
				}
				blamed := len(sus) > 0 && sus[0].Element == "dc1-pod1-rack1-tor"
				if want := i < 2 || tc.blamed; blamed != want {
					t.Errorf("window %d: blamed %v, want the ToR blamed %v", i+1, sus, want)
				}
			}
		})
	}
}
