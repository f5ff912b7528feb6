package sim

import (
	"fmt"
	"testing"

	"github.com/meshlens/meshlens/internal/wire"
)

// BenchmarkFabricRound is one probing round of the synthetic fabric alone
// (full Pingmesh pinglists, tcp and udp, no aggregation): the simulator
// core's own cost per round, to set beside the end-to-end runs through the
// aggregator (go run ./bench/localize -run bench/localize/scale-*.yaml).
// Run with -benchtime 1x: the 50k fabric probes ~252M times per round.
func BenchmarkFabricRound(b *testing.B) {
	for _, size := range []struct {
		name                      string
		pods, racks, hosts, spine int
	}{
		{"1k", 5, 10, 20, 8},
		{"10k", 10, 50, 20, 16},
		{"50k", 25, 100, 20, 32},
	} {
		b.Run(size.name, func(b *testing.B) {
			sc := mustParse(b, fmt.Sprintf("name: bench\nseed: 1\ntopology: {generate: {dcs: 1, pods: %d, racks_per_pod: %d, hosts_per_rack: %d, leaves_per_pod: 4, spines: %d}}\n"+
				"background: {loss: 0.0001}\nfaults:\n  - {kind: link_loss, link: \"dc1-pod2-leaf3--dc1-spine5\", rate: 0.01}\n", size.pods, size.racks, size.hosts, size.spine))
			f := newTestFabric(b, sc)
			var results int
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if err := f.Step(i, func(batch *wire.Batch) error { results += len(batch.Results); return nil }); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(results)/float64(b.N), "probes/round")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(results), "ns/probe")
		})
	}
}
