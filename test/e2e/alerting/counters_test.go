package alerting

import (
	"context"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/aggregate"
	"github.com/meshlens/meshlens/internal/store"
	"github.com/meshlens/meshlens/internal/topology"
	"github.com/meshlens/meshlens/internal/wire"
)

// aggregateRackPair writes a rack pair's counters to st through the real
// aggregator, as the server's does, so that the series the SLO engine reads
// are the ones the aggregator writes: for every window ending in (from,
// to], a host of srcRack sent probes(end) probes to a host of dstRack, lost
// of them lost. Racks are generator names of one pod (dc1-pod1-rackN, N ≤ 4).
func aggregateRackPair(t *testing.T, st *store.Store, srcRack, dstRack string, from, to time.Time, window time.Duration, probes func(end time.Time) (sent, lost int)) {
	t.Helper()
	topo, err := topology.Generate(topology.GenSpec{DCs: 1, Pods: 1, RacksPerPod: 4, HostsPerRack: 1, LeavesPerPod: 2, Spines: 2})
	if err != nil {
		t.Fatal(err)
	}
	src, dst := srcRack+"-h01", dstRack+"-h01"
	for _, h := range []string{src, dst} {
		if topo.Host(h) == nil {
			t.Fatalf("no host %s in the test fabric", h)
		}
	}
	const lateness = time.Second
	agg, err := aggregate.New(aggregate.Config{Window: window, Lateness: lateness, Locator: topo, Appendable: st})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	seq := uint64(0)
	for end := from.Truncate(window).Add(window); !end.After(to); end = end.Add(window) {
		if !end.After(from) {
			continue
		}
		sent, lost := probes(end)
		seq++
		b := &wire.Batch{Agent: src, Epoch: 1, Seq: seq, CreatedUnixNano: end.UnixNano()}
		start := end.Add(-window)
		for i := range sent {
			r := &wire.ProbeResult{Dst: dst, Protocol: wire.Protocol_PROTOCOL_TCP, Outcome: wire.Outcome_OUTCOME_OK,
				StartUnixNano: start.Add(time.Duration(i) * window / time.Duration(sent)).UnixNano(), RttNs: int64(50 * time.Microsecond)}
			if i < lost {
				r.Outcome, r.RttNs = wire.Outcome_OUTCOME_LOST, 0
			}
			b.Results = append(b.Results, r)
		}
		if err := agg.Ingest(b, end); err != nil {
			t.Fatal(err)
		}
		if _, err := agg.Advance(ctx, end.Add(lateness)); err != nil {
			t.Fatal(err)
		}
	}
}
