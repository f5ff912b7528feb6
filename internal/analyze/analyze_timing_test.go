package analyze

import (
	"fmt"
	"testing"

	"github.com/meshlens/meshlens/internal/localize"
	"github.com/meshlens/meshlens/internal/topology"
	"github.com/meshlens/meshlens/internal/wire"
)

// bigFabric is a 10,000-host Clos (8 pods of 25 racks of 50 hosts) and, for
// each of its first racks' hosts, a complete forward path to a host of
// another pod.
func bigFabric(b *testing.B) (*localize.Index, []*wire.PathReport) {
	b.Helper()
	topo, err := topology.Generate(topology.GenSpec{DCs: 1, Pods: 8, RacksPerPod: 25, HostsPerRack: 50, LeavesPerPod: 4, Spines: 8})
	if err != nil {
		b.Fatal(err)
	}
	x, err := localize.NewIndex(topo)
	if err != nil {
		b.Fatal(err)
	}
	var reps []*wire.PathReport
	for h := 1; h <= 50; h++ {
		src := fmt.Sprintf("dc1-pod1-rack1-h%02d", h)
		rep := &wire.PathReport{Agent: src}
		// 40 traced probes a report: a busy agent's window of anomalies.
		for i := range 40 {
			rack := i%25 + 1
			dst := fmt.Sprintf("dc1-pod2-rack%d-h%02d", rack, h)
			rep.Probes = append(rep.Probes, &wire.TracedProbe{Dst: dst, Protocol: wire.Protocol_PROTOCOL_TCP, Lost: true,
				Hops: []string{"dc1-pod1-rack1-tor", fmt.Sprintf("dc1-pod1-leaf%d", i%4+1), fmt.Sprintf("dc1-spine%d", i%8+1),
					fmt.Sprintf("dc1-pod2-leaf%d", i%4+1), fmt.Sprintf("dc1-pod2-rack%d-tor", rack), dst}})
		}
		reps = append(reps, rep)
	}
	return x, reps
}

// BenchmarkIngestPathData: one 40-probe report decoded, checked and
// resolved against a 10,000-host index (ns/op per report).
func BenchmarkIngestPathData(b *testing.B) {
	x, reps := bigFabric(b)
	var data [][]byte
	for _, r := range reps {
		for _, p := range r.Probes {
			p.StartUnixNano = win(0).UnixNano()
		}
		d, err := r.MarshalVT()
		if err != nil {
			b.Fatal(err)
		}
		data = append(data, d)
	}
	a, _ := newTest(b, x, Config{MaxBufferedTraces: 1 << 30})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		r := reps[i%len(reps)]
		if err := a.IngestPathData(r.Agent, data[i%len(data)], win(0)); err != nil {
			b.Fatal(err)
		}
		if a.nTraces > 100_000 {
			clear(a.traces)
			a.nTraces = 0
		}
	}
}

// BenchmarkJoin: handing a window its traces out of a full buffer (the
// default 200,000 traced probes, half of them for a later window, the
// other half over the two windows before), the analyzer's own cost per
// window beside the localizer's.
func BenchmarkJoin(b *testing.B) {
	x, reps := bigFabric(b)
	a, _ := newTest(b, x, Config{})
	fill := map[int64][]localize.Trace{}
	for i, n := 0, 0; n < DefaultMaxBufferedTraces; i++ {
		r := reps[i%len(reps)]
		for j, p := range r.Probes {
			tr, err := x.ResolveTrace(r.Agent, p)
			if err != nil {
				b.Fatal(err)
			}
			k := win(2).UnixNano()
			if j%2 == 0 {
				k = win(i % 2).UnixNano()
			}
			fill[k] = append(fill[k], tr)
			n++
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		clear(a.traces)
		a.nTraces = 0
		for k, ts := range fill {
			a.traces[k] = ts
			a.nTraces += len(ts)
		}
		b.StartTimer()
		a.mu.Lock()
		joined := a.joinLocked(&pendingWindow{start: win(1).UnixNano(), end: win(2).UnixNano()})
		a.mu.Unlock()
		if len(joined) == 0 {
			b.Fatal("nothing joined")
		}
	}
}
