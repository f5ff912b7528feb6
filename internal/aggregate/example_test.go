package aggregate_test

import (
	"context"
	"fmt"
	"time"

	"github.com/meshlens/meshlens/internal/aggregate"
	"github.com/meshlens/meshlens/internal/clock"
	"github.com/meshlens/meshlens/internal/wire"
)

// The simulator drives the core synchronously on a virtual clock: Ingest
// each batch as it is produced, Advance after moving the clock, read the
// sealed windows from a subscriber. No goroutine is involved.
func Example_simulator() {
	vc := clock.NewVirtual(time.Unix(1_800_000_000, 0))
	agg, err := aggregate.New(aggregate.Config{
		Locator: aggregate.LocatorFunc(func(host string) (rack, pod, dc string, ok bool) {
			return host[:len(host)-4], "dc1-pod1", "dc1", true // "dc1-pod1-rack1-h01" → rack "dc1-pod1-rack1"
		}),
	})
	if err != nil {
		panic(err)
	}
	agg.Subscribe(func(w *aggregate.SealedWindow) {
		for _, e := range w.Pairs {
			fmt.Printf("%s %v: sent %d lost %d lost 5-tuples %d\n", w.Start.UTC().Format("15:04:05"), e.Key, e.Stats.Sent, e.Stats.Lost, len(e.Stats.LostTuples()))
		}
		for k, r := range w.RackPairs {
			p99, _ := r.Quantile(0.99)
			fmt.Printf("rack pair %s->%s loss %.2f p99 %v\n", k.Src, k.Dst, r.LossRatio(), time.Duration(p99*1e9).Round(time.Microsecond))
		}
	})
	for i := 0; i < 3; i++ {
		now := vc.Now()
		err := agg.Ingest(&wire.Batch{Agent: "dc1-pod1-rack1-h01", Epoch: 1, Seq: uint64(i + 1), Results: []*wire.ProbeResult{
			{Dst: "dc1-pod1-rack2-h01", Protocol: wire.Protocol_PROTOCOL_TCP, Outcome: wire.Outcome_OUTCOME_OK, StartUnixNano: now.UnixNano(), RttNs: 100_000},
			{Dst: "dc1-pod1-rack2-h01", Protocol: wire.Protocol_PROTOCOL_TCP, Outcome: wire.Outcome_OUTCOME_LOST, StartUnixNano: now.UnixNano(), SrcPort: 40001, DstPort: 7},
		}}, now)
		if err != nil {
			panic(err)
		}
		vc.Advance(5 * time.Second)
		if _, err := agg.Advance(context.Background(), vc.Now()); err != nil {
			panic(err)
		}
	}
	vc.Advance(time.Minute) // past window end + lateness
	if _, err := agg.Advance(context.Background(), vc.Now()); err != nil {
		panic(err)
	}
	// Output:
	// 08:00:00 dc1-pod1-rack1-h01->dc1-pod1-rack2-h01/tcp: sent 4 lost 2 lost 5-tuples 2
	// rack pair dc1-pod1-rack1->dc1-pod1-rack2 loss 0.50 p99 100µs
	// 08:00:10 dc1-pod1-rack1-h01->dc1-pod1-rack2-h01/tcp: sent 2 lost 1 lost 5-tuples 1
	// rack pair dc1-pod1-rack1->dc1-pod1-rack2 loss 0.50 p99 100µs
}
