package slo

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/aggregate/aggregatetest"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
)

func TestFastShare(t *testing.T) {
	qs := map[float64]float64{0.5: 0.001, 0.9: 0.002, 0.99: 0.004, 0.999: 0.008}
	tests := []struct {
		thr, want float64
	}{
		{0.0005, 0.25},                // below p50: from zero
		{0.001, 0.5},                  // exactly p50
		{0.0015, 0.7},                 // between p50 and p90
		{0.005, 0.99 + 0.009*1.0/4.0}, // between p99 and p99.9
		{0.008, 1},                    // at p99.9 and above: all
		{1, 1},
	}
	for _, tc := range tests {
		if got := fastShare(qs, tc.thr); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("fastShare(%v) = %v, want %v", tc.thr, got, tc.want)
		}
	}
	if got := fastShare(nil, 1); got != 0 {
		t.Errorf("no quantiles: %v", got)
	}
}

func TestEngineLatencyEstimate(t *testing.T) {
	s := openStore(t)
	end := t0.Add(2*time.Hour + 30*time.Minute)
	slowFrom := end.Add(-30 * time.Minute)
	normal := map[string]float64{"0.5": 0.001, "0.9": 0.002, "0.99": 0.004, "0.999": 0.008}
	slow := map[string]float64{"0.5": 0.003, "0.9": 0.006, "0.99": 0.010, "0.999": 0.020}
	probes := 0.0
	pair := []string{"src_rack", "dc1-pod1-rack1", "dst_rack", "dc1-pod1-rack2", "proto", "tcp"}
	lbl := func(name string, kv ...string) labels.Labels {
		return labels.FromStrings(append(append([]string{"__name__", name}, pair...), kv...)...)
	}
	written := t0
	var wr aggregatetest.Writer
	// writeUntil appends the windows ending in (written, until], as the
	// aggregator does while the engine runs.
	writeUntil := func(until time.Time) {
		app := s.Appender(context.Background())
		for ts := written.Add(10 * time.Second); !ts.After(until); ts = ts.Add(10 * time.Second) {
			probes += 100
			must := func(_ any, err error) {
				if err != nil {
					t.Fatal(err)
				}
			}
			if err := wr.Append(app, ts, 10*time.Second, []aggregatetest.RackPair{{Src: "dc1-pod1-rack1", Dst: "dc1-pod1-rack2", Proto: "tcp", Probes: probes}}); err != nil {
				t.Fatal(err)
			}
			qs := normal
			if ts.After(slowFrom) {
				qs = slow
			}
			for q, v := range qs {
				must(app.Append(0, lbl("meshlens_rack_pair_latency_seconds", "quantile", q), ts.UnixMilli(), v))
			}
			written = ts
		}
		if err := app.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	slos, err := Parse(File{Name: "lat.yaml", Data: []byte("name: lat\ntarget: 99%\nwindow: 7d\nsli:\n  probe_latency: {rack: dc1-pod1-rack1, threshold: 5ms, estimate: true}\n")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewEngine(Config{SLOs: slos, Querier: s}); err == nil {
		t.Fatal("an estimating engine without Appendable was accepted")
	}
	e, err := NewEngine(Config{SLOs: slos, Querier: s, Appendable: s, ConsumedDays: 1})
	if err != nil {
		t.Fatal(err)
	}
	var st Status
	for at := t0.Add(10 * time.Minute); !at.After(end); at = at.Add(time.Minute) {
		writeUntil(at)
		sts, err := e.EvaluateAt(context.Background(), at)
		if err != nil {
			t.Fatal(err)
		}
		st = sts[0]
	}
	if !st.Estimated {
		t.Error("status not marked estimated")
	}
	// Hand-computed shares: normal 0.99 + 0.009/4 = 0.99225; slow
	// 0.5 + 0.4*(5-3)/(6-3) = 0.76667. Target 99%: burn = (1-share)/0.01.
	// Counters lag a minute: the last 5m and 14m are all slow, the last
	// 84m (the 7d SLO's page-6h tier) 29 slow and 55 normal minutes.
	slowBurn, normalBurn := (1-(0.5+0.4*2/3))/0.01, (1-0.99225)/0.01
	for _, c := range []struct {
		w    string
		want float64
	}{{"5m", slowBurn}, {"14m", slowBurn}, {"1h24m", (29*slowBurn + 55*normalBurn) / 84}} {
		if got := st.BurnRates[c.w]; math.Abs(got-c.want) > 0.03*c.want {
			t.Errorf("burn %s = %v, want %v", c.w, got, c.want)
		}
	}
	if !st.Tiers[0].Firing {
		t.Errorf("page-1h (14.4x over 14m and 5m on 7d: %v) not firing: %+v", st.Tiers[0].Factor, st.Tiers[0])
	}
	// A restarted engine resumes the counters where they were.
	last := func(at time.Time) float64 {
		res, err := s.Query(context.Background(), MetricEstimatedProbes+`{slo="lat"}`, at)
		if err != nil {
			t.Fatal(err)
		}
		v := res.Value.(promql.Vector)
		if len(v) != 1 {
			t.Fatalf("estimated probes at %v: %v", at, v)
		}
		return v[0].F
	}
	before := last(end)
	e2, err := NewEngine(Config{SLOs: slos, Querier: s, Appendable: s, ConsumedDays: 1})
	if err != nil {
		t.Fatal(err)
	}
	writeUntil(end.Add(time.Minute))
	if _, err := e2.EvaluateAt(context.Background(), end.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if after := last(end.Add(time.Minute)); after != before+600 {
		t.Errorf("after restart the counter went from %v to %v, want +600 (one more minute)", before, after)
	}
}

func TestEstimateScopes(t *testing.T) {
	_, err := Parse(File{Name: "x.yaml", Data: []byte("name: x\ntarget: 99%\nwindow: 7d\nsli:\n  probe_latency: {host: h1, threshold: 3ms, estimate: true}\n")})
	if err == nil || !strings.Contains(err.Error(), "x.yaml:5: sli.probe_latency.estimate: estimates need the pair counters") {
		t.Fatalf("err = %v", err)
	}
	if _, err := Parse(File{Name: "x.yaml", Data: []byte("name: x\ntarget: 99%\nwindow: 7d\nsli:\n  probe_latency: {pod: dc1-pod1, threshold: 3ms, estimate: true}\n")}); err != nil {
		t.Fatalf("a non-bucket threshold with estimate: %v", err)
	}
}
