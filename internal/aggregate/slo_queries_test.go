package aggregate_test

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/tsdb"

	"github.com/meshlens/meshlens/internal/aggregate"
	"github.com/meshlens/meshlens/internal/slo"
	"github.com/meshlens/meshlens/internal/wire"
)

// TestSLOQueriesReadCounters runs the SLO engine's own PromQL (slo's
// TotalQuery, BadQuery, ErrorRatioQuery) over what the aggregator wrote to
// a real TSDB: the series names and labels the engine expects exist, and
// the error ratios are exact. Two windows are written; increase() over a
// range holding both seals' samples measures the second window only, whose
// probes are known here.
func TestSLOQueriesReadCounters(t *testing.T) {
	const (
		a  = "dc1-pod1-rack1-h01"
		b  = "dc1-pod1-rack2-h01"
		w  = 10 * time.Second
		ok = wire.Outcome_OUTCOME_OK
	)
	locate := aggregate.LocatorFunc(func(h string) (string, string, string, bool) {
		p := strings.Split(h, "-")
		if len(p) != 4 {
			return "", "", "", false
		}
		return strings.Join(p[:3], "-"), strings.Join(p[:2], "-"), p[0], true
	})
	db, err := tsdb.Open(t.TempDir(), nil, nil, tsdb.DefaultOptions(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	agg, err := aggregate.New(aggregate.Config{Window: w, Locator: locate, Appendable: db, Queryable: db, HostRTTBuckets: true})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Add(-10 * time.Minute).Truncate(w)
	// Per window: tcp a->b RTTs 50 µs .. 10 ms and 1 in 10 lost; http
	// target "web": 4 answered in 20 ms, 1 lost.
	send := func(seq uint64, start time.Time) {
		var rs []*wire.ProbeResult
		for i := 0; i < 100; i++ {
			r := &wire.ProbeResult{Dst: b, Protocol: wire.Protocol_PROTOCOL_TCP, Outcome: ok, StartUnixNano: start.UnixNano(), RttNs: int64(50*time.Microsecond) + int64(i)*int64(100*time.Microsecond)}
			if i%10 == 0 {
				r.Outcome, r.RttNs = wire.Outcome_OUTCOME_LOST, 0
			}
			rs = append(rs, r)
		}
		for i := 0; i < 5; i++ {
			r := &wire.ProbeResult{Dst: "web", Protocol: wire.Protocol_PROTOCOL_HTTP, Outcome: ok, StartUnixNano: start.UnixNano(), RttNs: int64(20 * time.Millisecond)}
			if i == 0 {
				r.Outcome, r.RttNs = wire.Outcome_OUTCOME_LOST, 0
			}
			rs = append(rs, r)
		}
		if err := agg.Ingest(&wire.Batch{Agent: a, Epoch: 1, Seq: seq, Results: rs}, start); err != nil {
			t.Fatal(err)
		}
		if _, err := agg.Advance(context.Background(), start.Add(w+aggregate.DefaultLateness)); err != nil {
			t.Fatal(err)
		}
	}
	send(1, t0)
	send(2, t0.Add(w))
	at := t0.Add(2 * w)

	// tcp window: 100 probes, 10 lost; answered RTTs 50+100i µs for the 90
	// i not divisible by 10: within 1 ms those with i < 10 (9 of them), so
	// 91 are slow or lost.
	tests := []struct {
		name string
		sli  slo.SLI
		want float64
	}{
		{"rack availability", slo.SLI{Kind: slo.ProbeAvailability, Scope: slo.Scope{Rack: "dc1-pod1-rack2"}}, 0.1},
		{"pod availability tcp", slo.SLI{Kind: slo.ProbeAvailability, Scope: slo.Scope{Pod: "dc1-pod1", Proto: "tcp"}}, 0.1},
		{"host availability", slo.SLI{Kind: slo.ProbeAvailability, Scope: slo.Scope{Host: a}}, 0.1},
		{"target availability", slo.SLI{Kind: slo.ProbeAvailability, Scope: slo.Scope{Target: "web"}}, 0.2},
		{"rack latency 1ms", slo.SLI{Kind: slo.ProbeLatency, Threshold: time.Millisecond, Scope: slo.Scope{Rack: "dc1-pod1-rack1"}}, 0.91},
		{"dc latency 10ms", slo.SLI{Kind: slo.ProbeLatency, Threshold: 10 * time.Millisecond, Scope: slo.Scope{DC: "dc1"}}, 0.1},
		// 150 µs and 250 µs (le is inclusive) are fast.
		{"host latency 250us", slo.SLI{Kind: slo.ProbeLatency, Threshold: 250 * time.Microsecond, Scope: slo.Scope{Host: b}}, 0.98},
		{"target latency 25ms", slo.SLI{Kind: slo.ProbeLatency, Threshold: 25 * time.Millisecond, Scope: slo.Scope{Target: "web"}}, 0.2},
	}
	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e6, Timeout: time.Minute, Parser: parser.NewParser(parser.Options{})})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := slo.SLO{Name: "x", Target: 0.99, Window: time.Hour, SLI: tt.sli}
			q := s.ErrorRatioQuery(time.Minute)
			qry, err := engine.NewInstantQuery(context.Background(), db, nil, q, at)
			if err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			defer qry.Close()
			res := qry.Exec(context.Background())
			if res.Err != nil {
				t.Fatalf("%s: %v", q, res.Err)
			}
			v, err := res.Vector()
			if err != nil || len(v) != 1 {
				t.Fatalf("%s = %v (%v), want one value", q, res.Value, err)
			}
			if math.Abs(v[0].F-tt.want) > 1e-9 {
				t.Errorf("%s = %v, want %v", q, v[0].F, tt.want)
			}
		})
	}
}
