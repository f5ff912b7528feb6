package localize

import (
	"testing"

	"github.com/meshlens/meshlens/internal/aggregate"
	"github.com/meshlens/meshlens/internal/topology"
	"github.com/meshlens/meshlens/internal/wire"
)

// BenchmarkLocalizeWindow10k is one window of a 10,000-host fabric (the
// rack-pair and host rollups of full Pingmesh pinglists) through each
// localizer, with ideal traces (every forward hop known) beside realistic
// ones (a tenth of the hops silent, a tenth of the traces stopped short,
// as a Paris traceroute through faults gets them), 10,000 of them, and
// 40,000: every agent spending its default budget of 4 traces. The
// localizer must keep up with the 10 s window.
func BenchmarkLocalizeWindow10k(b *testing.B) {
	spec := topology.GenSpec{DCs: 1, Pods: 10, RacksPerPod: 50, HostsPerRack: 20, LeavesPerPod: 4, Spines: 16}
	topo, err := topology.Generate(spec)
	if err != nil {
		b.Fatal(err)
	}
	x, err := NewIndex(topo)
	if err != nil {
		b.Fatal(err)
	}
	f := &fixture{t: b, x: x, routes: x.Routes(nil, nil)}
	sw := &aggregate.SealedWindow{Hosts: map[aggregate.HostKey]*aggregate.Rollup{}, RackPairs: map[aggregate.LocationPair]*aggregate.Rollup{}}
	for _, h := range topo.Hosts {
		// ~(19 + 499) peers x 2 protocols, out and in.
		sw.Hosts[aggregate.HostKey{Host: h.Name, Direction: aggregate.Out}] = &aggregate.Rollup{Sent: 1036}
		sw.Hosts[aggregate.HostKey{Host: h.Name, Direction: aggregate.In}] = &aggregate.Rollup{Sent: 1036}
	}
	for _, a := range topo.Racks {
		for _, c := range topo.Racks {
			for _, p := range []wire.Protocol{wire.Protocol_PROTOCOL_TCP, wire.Protocol_PROTOCOL_UDP} {
				sw.RackPairs[aggregate.LocationPair{Src: a.Name, Dst: c.Name, Proto: p}] = &aggregate.Rollup{Sent: uint64(len(a.Hosts))}
			}
		}
	}
	traces := func(n int, realistic bool) []Trace {
		var out []Trace
		r := uint64(12345)
		next := func() uint64 { r = r*6364136223846793005 + 1442695040888963407; return r >> 33 }
		for i := 0; len(out) < n; i++ {
			a, c := topo.Hosts[(i*7919)%len(topo.Hosts)], topo.Hosts[(i*104729+13)%len(topo.Hosts)]
			if a == c {
				continue
			}
			k := i
			t := f.trace(a.Name, c.Name, true, func(_ int32, hops []Hop) Hop { k = k*31 + 7; return hops[k%len(hops)] })
			if realistic {
				for j := range t.Hops[:len(t.Hops)-1] {
					if next()%10 == 0 {
						t.Hops[j] = UnknownHop
					}
				}
				if next()%10 == 0 {
					t.Hops = t.Hops[:1+next()%uint64(len(t.Hops)-1)]
					t.Reached = false
					for len(t.Hops) > 0 && t.Hops[len(t.Hops)-1] == UnknownHop {
						t.Hops = t.Hops[:len(t.Hops)-1]
					}
				}
			}
			out = append(out, t)
		}
		return out
	}
	for _, tc := range []struct {
		name      string
		n         int
		realistic bool
	}{{"ideal-10k-traces", 10000, false}, {"realistic-10k-traces", 10000, true}, {"realistic-40k-traces", 40000, true}} {
		w := &Window{Sealed: sw, Traces: traces(tc.n, tc.realistic)}
		for _, name := range []string{NameMeshlens, NameVote} {
			b.Run(tc.name+"/"+name, func(b *testing.B) {
				lz, err := New(name, x, Config{})
				if err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				for b.Loop() {
					if _, err := lz.Localize(w); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
