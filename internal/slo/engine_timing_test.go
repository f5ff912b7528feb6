package slo

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/aggregate/aggregatetest"
)

// BenchmarkEvaluateAt: one evaluation of three SLOs (four default tiers,
// seven windows each, one day of budget consumption) over four hours of
// rack-pair counters in a real TSDB.
func BenchmarkEvaluateAt(b *testing.B) {
	s, slos := engineFixture(b)
	e, err := NewEngine(Config{SLOs: slos, Querier: s, ConsumedDays: 1})
	if err != nil {
		b.Fatal(err)
	}
	at := t0.Add(3*time.Hour + 30*time.Minute)
	for b.Loop() {
		if _, err := e.EvaluateAt(context.Background(), at); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEvaluateAtHistory: the same three SLOs over 4 hours, 7 days and
// 30 days of the same rack-pair counters: what one evaluation costs as the
// store fills up to the SLO window.
func BenchmarkEvaluateAtHistory(b *testing.B) {
	slos, err := Parse(File{Name: "engine.yaml", Data: []byte(engineSLOs)})
	if err != nil {
		b.Fatal(err)
	}
	for _, h := range []time.Duration{4 * time.Hour, 7 * 24 * time.Hour, 30 * 24 * time.Hour} {
		b.Run(promDuration(h), func(b *testing.B) {
			s := openStore(b)
			none := func(time.Time) float64 { return 0 }
			feed(b, s, t0, t0.Add(h), []pairLoad{
				{"dc1-pod1-rack1", "dc1-pod1-rack2", 10 * time.Second, 100, none},
				{"dc1-pod1-rack3", "dc1-pod1-rack1", 10 * time.Second, 100, none},
				{"dc1-pod1-rack3", "dc1-pod1-rack4", 10 * time.Second, 100, none},
				{"dc1-pod1-rack5", "dc1-pod1-rack6", time.Minute, 1, none},
			})
			if err := s.Compact(context.Background()); err != nil {
				b.Fatal(err)
			}
			e, err := NewEngine(Config{SLOs: slos, Querier: s, ConsumedDays: 7})
			if err != nil {
				b.Fatal(err)
			}
			at := t0.Add(h)
			b.ResetTimer()
			for b.Loop() {
				if _, err := e.EvaluateAt(context.Background(), at); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRackSLOAt30Days: one rack-scope SLO (all protocols) in a fabric
// of 100 racks, at 30 days of history: the rack's counters with every
// other rack either way, four protocols, every 10 s, as the aggregator
// writes them (799 rack-pair series per protocol family, the per-rack
// counters of all 100 racks and their hourly copies), compacted into
// blocks as a server's TSDB would be. "evaluate" is one evaluation (four
// tiers, the budget, seven days of consumption); beside it the budget's
// event count over the 30-day window as meshlens reads it now and as it
// read it before (increase() over every rack pair with either end in the
// rack).
func BenchmarkRackSLOAt30Days(b *testing.B) {
	const racks = 100
	protos := []string{"tcp", "udp", "http", "icmp"}
	rack := func(i int) string { return fmt.Sprintf("dc1-pod1-rack%d", i) }
	var pairs []aggregatetest.RackPair
	for _, p := range protos {
		for i := 1; i <= racks; i++ {
			pairs = append(pairs, aggregatetest.RackPair{Src: rack(1), Dst: rack(i), Proto: p})
			if i != 1 {
				pairs = append(pairs, aggregatetest.RackPair{Src: rack(i), Dst: rack(1), Proto: p})
			}
		}
	}
	s := openStore(b)
	start, end := t0, t0.Add(30*24*time.Hour)
	var wr aggregatetest.Writer
	app := s.Appender(context.Background())
	n := 0
	for ts := start.Add(10 * time.Second); !ts.After(end); ts = ts.Add(10 * time.Second) {
		for i := range pairs {
			pairs[i].Probes += 20
			if i%7 == 0 && ts.Sub(start)%time.Hour == 0 {
				pairs[i].Lost++
			}
		}
		if err := wr.Append(app, ts, 10*time.Second, pairs); err != nil {
			b.Fatal(err)
		}
		if n++; n%100 == 0 {
			if err := app.Commit(); err != nil {
				b.Fatal(err)
			}
			app = s.Appender(context.Background())
		}
	}
	if err := app.Commit(); err != nil {
		b.Fatal(err)
	}
	if err := s.Compact(context.Background()); err != nil {
		b.Fatal(err)
	}
	slos, err := Parse(File{Name: "rack.yaml", Data: []byte("name: rack1\ntarget: 99.9%\nwindow: 30d\nsli:\n  probe_availability: {rack: dc1-pod1-rack1}\n")})
	if err != nil {
		b.Fatal(err)
	}
	e, err := NewEngine(Config{SLOs: slos, Querier: s, ConsumedDays: 7})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("evaluate", func(b *testing.B) {
		for b.Loop() {
			if _, err := e.EvaluateAt(context.Background(), end); err != nil {
				b.Fatal(err)
			}
		}
	})
	sel := func(end string) string {
		return fmt.Sprintf(`meshlens_rack_pair_probes_total{%s_rack="dc1-pod1-rack1"}[30d]`, end)
	}
	for _, q := range []struct{ name, expr string }{
		{"budget events now", slos[0].TotalQuery(30 * 24 * time.Hour)},
		{"budget events before", "sum(increase(" + sel("src") + ") or increase(" + sel("dst") + "))"},
	} {
		b.Run(q.name, func(b *testing.B) {
			var v float64
			for b.Loop() {
				if v, err = e.scalar(context.Background(), q.expr, end); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(v, "events")
		})
	}
}
