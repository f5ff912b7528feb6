package slo

import (
	"context"
	"testing"
	"time"
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
