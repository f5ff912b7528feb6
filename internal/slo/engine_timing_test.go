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
