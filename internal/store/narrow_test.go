package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
)

// TestNarrowQuerierReadsAsOneQuerier: the store's queries, whose querier
// opens the TSDB over each selector's own range, answer what the engine
// answers over one querier of the whole query's range, on days of
// history compacted into blocks: instant and range queries, offsets,
// ranges across every block and none, label matchers.
func TestNarrowQuerierReadsAsOneQuerier(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{Retention: 60 * 24 * time.Hour, Registerer: prometheus.NewRegistry()})
	defer s.Close()
	start := time.Now().Truncate(time.Hour).Add(-10 * 24 * time.Hour)
	end := start.Add(10 * 24 * time.Hour)
	var samples []sample
	for ts := start; !ts.After(end); ts = ts.Add(5 * time.Minute) {
		for i, rack := range []string{"r1", "r2", "r3"} {
			n := float64(ts.Sub(start)/time.Minute) * float64(i+1)
			samples = append(samples,
				sample{labels.FromStrings("__name__", "meshlens_rack_probes_total", "rack", rack), ts, n},
				sample{labels.FromStrings("__name__", "meshlens_rack_probes_lost_total", "rack", rack), ts, n / 100})
			if ts.Minute() == 0 {
				samples = append(samples, sample{labels.FromStrings("__name__", "meshlens_hourly_rack_probes_total", "rack", rack), ts, n})
			}
		}
	}
	appendAll(t, s, samples)
	if err := s.Compact(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(s.db.Blocks()); n < 3 {
		t.Fatalf("%d blocks, want several", n)
	}
	exprs := []string{
		`meshlens_rack_probes_total`,
		`sum(increase(meshlens_rack_probes_lost_total{rack="r2"}[6h]))`,
		`sum((meshlens_rack_probes_total - (last_over_time(meshlens_rack_probes_total[10m] offset 7d) or last_over_time(meshlens_hourly_rack_probes_total[1d] offset 7d) or min_over_time(meshlens_hourly_rack_probes_total[7d]))) >= 0 or meshlens_rack_probes_total)`,
		`min_over_time(meshlens_hourly_rack_probes_total{rack=~"r[13]"}[30d])`,
		`meshlens_rack_probes_total offset 9d - meshlens_rack_probes_total offset 2d`,
		`last_over_time(meshlens_rack_probes_total[10m] offset 20d)`,
		`count by (rack) (count_over_time(meshlens_rack_probes_lost_total[3d]))`,
	}
	at := end.Add(-time.Minute)
	nonEmpty := 0 // range queries with series: the comparison is not of nothing
	for _, expr := range exprs {
		want, err := s.engine.NewInstantQuery(context.Background(), s.db, nil, expr, at)
		if err != nil {
			t.Fatal(err)
		}
		w := want.Exec(context.Background())
		got, err := s.Query(context.Background(), expr, at)
		if err != nil || w.Err != nil {
			t.Fatalf("%s: %v, %v", expr, err, w.Err)
		}
		if fmt.Sprint(got.Value) != fmt.Sprint(w.Value) {
			t.Errorf("%s:\n got  %v\n want %v", expr, got.Value, w.Value)
		}
		want.Close()
		rq, err := s.engine.NewRangeQuery(context.Background(), s.db, nil, expr, start, end, 7*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		rw := rq.Exec(context.Background())
		rgot, err := s.QueryRange(context.Background(), expr, start, end, 7*time.Hour)
		if err != nil || rw.Err != nil {
			t.Fatalf("%s over a range: %v, %v", expr, err, rw.Err)
		}
		if m, ok := rw.Value.(promql.Matrix); ok && len(m) > 0 {
			nonEmpty++
		}
		if fmt.Sprint(rgot.Value) != fmt.Sprint(rw.Value) {
			t.Errorf("%s over a range:\n got  %v\n want %v", expr, rgot.Value, rw.Value)
		}
		rq.Close()
	}
	if nonEmpty < len(exprs)-1 {
		t.Errorf("%d of %d range queries found series", nonEmpty, len(exprs))
	}
	// Label queries go through it too.
	q, err := s.Querier(start.UnixMilli(), end.UnixMilli())
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	vals, _, err := q.LabelValues(context.Background(), "rack", nil)
	if err != nil || fmt.Sprint(vals) != "[r1 r2 r3]" {
		t.Errorf("label values %v (%v), want r1 r2 r3", vals, err)
	}
}
