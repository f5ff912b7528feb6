package aggregate

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb"

	"github.com/meshlens/meshlens/internal/wire"
)

func openTSDB(t *testing.T) *tsdb.DB {
	t.Helper()
	db, err := tsdb.Open(t.TempDir(), nil, nil, tsdb.DefaultOptions(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	})
	return db
}

// sample is one stored value.
type sample struct {
	ts int64
	v  float64
}

// querySeries returns every series of metric matching the label pairs,
// keyed by its labels' string, with all its samples.
func querySeries(t *testing.T, db *tsdb.DB, metric string, kv ...string) map[string][]sample {
	t.Helper()
	q, err := db.Querier(math.MinInt64, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ms := []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "__name__", metric)}

	for i := 0; i+1 < len(kv); i += 2 {
		ms = append(ms, labels.MustNewMatcher(labels.MatchEqual, kv[i], kv[i+1]))
	}
	ss := q.Select(context.Background(), false, nil, ms...)
	out := map[string][]sample{}
	for ss.Next() {
		s := ss.At()
		it := s.Iterator(nil)
		for it.Next() != 0 {
			ts, v := it.At()
			out[s.Labels().String()] = append(out[s.Labels().String()], sample{ts, v})
		}
		if it.Err() != nil {
			t.Fatal(it.Err())
		}
	}
	if ss.Err() != nil {
		t.Fatal(ss.Err())
	}
	return out
}

// lastSum adds up the newest sample of each series.
func lastSum(series map[string][]sample) float64 {
	var sum float64
	for _, s := range series {
		sum += s[len(s)-1].v
	}
	return sum
}

func TestTSDBRollups(t *testing.T) {
	w := 10 * time.Second
	t0 := aligned(w, 10*time.Minute)
	db := openTSDB(t)
	agg, _ := newTestAggregator(t, Config{Window: w, Appendable: db, HostRTTBuckets: true, RackPairRTTBuckets: true, SeriesLabels: map[string]string{"partition": "2"}})
	const (
		a = "dc1-pod1-rack1-h01"
		b = "dc1-pod2-rack2-h01"
	)
	var rs []*wire.ProbeResult
	for i := 0; i < 100; i++ {
		outcome := ok
		if i%10 == 0 {
			outcome = lost
		}
		rs = append(rs, res(b, tcp, outcome, t0.Add(time.Duration(i)*10*time.Millisecond), time.Duration(100+i)*time.Microsecond))
	}
	// A refused probe to a pair that never sends: no series for it.
	rs = append(rs, res("dc1-pod1-rack1-h02", udp, refuse, t0, 0))
	// A pair whose every probe was lost (another agent's): its loss, and
	// no latency at all.
	const c = "dc1-pod2-rack1-h01"
	var allLost []*wire.ProbeResult
	for i := 0; i < 5; i++ {
		allLost = append(allLost, res(c, udp, lost, t0.Add(time.Duration(i)*time.Second), 0))
	}
	rs = append(rs, res("web", wire.Protocol_PROTOCOL_HTTP, ok, t0, 20*time.Millisecond), res("web", wire.Protocol_PROTOCOL_HTTP, lost, t0, 0))
	if err := agg.Ingest(batch(a, 1, 1, rs...), t0); err != nil {
		t.Fatal(err)
	}
	if err := agg.Ingest(batch("dc1-pod1-rack2-h01", 1, 1, allLost...), t0); err != nil {
		t.Fatal(err)
	}
	if _, err := agg.Advance(context.Background(), t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	end := t0.Add(w).UnixMilli()
	tests := []struct {
		metric string
		kv     []string
		want   float64
		tol    float64
	}{
		{"meshlens_rack_pair_loss_ratio", []string{"src_rack", "dc1-pod1-rack1", "dst_rack", "dc1-pod2-rack2", "proto", "tcp"}, 0.1, 0},
		{"meshlens_pod_pair_loss_ratio", []string{"src_pod", "dc1-pod1", "dst_pod", "dc1-pod2", "proto", "tcp"}, 0.1, 0},
		{"meshlens_dc_pair_loss_ratio", []string{"src_dc", "dc1", "dst_dc", "dc1", "proto", "tcp"}, 0.1, 0},
		{"meshlens_rack_pair_latency_seconds", []string{"src_rack", "dc1-pod1-rack1", "quantile", "0.5"}, 150e-6, 0.02},
		{"meshlens_dc_pair_latency_seconds", []string{"quantile", "0.999"}, 199e-6, 0.02},
		{"meshlens_host_loss_ratio", []string{"host", a, "direction", "out"}, 0.1, 0},
		{"meshlens_host_loss_ratio", []string{"host", b, "direction", "in"}, 0.1, 0},
		{"meshlens_host_latency_seconds", []string{"host", b, "direction", "in", "quantile", "0.9"}, 190e-6, 0.02},
		{"meshlens_rack_pair_probes_total", []string{"src_rack", "dc1-pod1-rack1", "dst_rack", "dc1-pod2-rack2"}, 100, 0},
		{"meshlens_rack_pair_probes_lost_total", []string{"src_rack", "dc1-pod1-rack1", "dst_rack", "dc1-pod2-rack2"}, 10, 0},
		{"meshlens_dc_pair_probes_total", []string{"partition", "2", "proto", "tcp"}, 100, 0},
		// RTTs 100..199 µs, every 10th lost: 90 answered.
		{"meshlens_rack_pair_rtt_seconds_bucket", []string{"src_rack", "dc1-pod1-rack1", "dst_rack", "dc1-pod2-rack2", "proto", "tcp", "le", "0.0001"}, 0, 0},
		{"meshlens_pod_pair_rtt_seconds_bucket", []string{"src_pod", "dc1-pod1", "dst_pod", "dc1-pod2", "proto", "tcp", "le", "0.00025"}, 90, 0},
		{"meshlens_dc_pair_rtt_seconds_bucket", []string{"src_dc", "dc1", "dst_dc", "dc1", "proto", "tcp", "le", "+Inf", "partition", "2"}, 90, 0},
		{"meshlens_host_probes_total", []string{"host", a, "direction", "out", "proto", "tcp"}, 100, 0},
		{"meshlens_host_probes_lost_total", []string{"host", b, "direction", "in", "proto", "tcp"}, 10, 0},
		{"meshlens_host_rtt_seconds_bucket", []string{"host", b, "direction", "in", "proto", "tcp", "le", "1"}, 90, 0},
		{"meshlens_target_probes_total", []string{"target", "web"}, 2, 0},
		{"meshlens_target_probes_lost_total", []string{"target", "web"}, 1, 0},
		{"meshlens_target_rtt_seconds_bucket", []string{"target", "web", "le", "0.01"}, 0, 0},
		{"meshlens_target_rtt_seconds_bucket", []string{"target", "web", "le", "0.025"}, 1, 0},
		// The histograms' _sum and _count: the 90 answered RTTs add up to
		// 13.5 ms (100..199 µs but 100, 110, ..., 190).
		{"meshlens_rack_pair_rtt_seconds_sum", []string{"src_rack", "dc1-pod1-rack1", "dst_rack", "dc1-pod2-rack2", "proto", "tcp"}, 0.0135, 1e-9},
		{"meshlens_rack_pair_rtt_seconds_count", []string{"src_rack", "dc1-pod1-rack1", "dst_rack", "dc1-pod2-rack2", "proto", "tcp"}, 90, 0},
		{"meshlens_pod_pair_rtt_seconds_sum", []string{"src_pod", "dc1-pod1", "dst_pod", "dc1-pod2", "proto", "tcp"}, 0.0135, 1e-9},
		{"meshlens_dc_pair_rtt_seconds_count", []string{"src_dc", "dc1", "dst_dc", "dc1", "proto", "tcp", "partition", "2"}, 90, 0},
		{"meshlens_host_rtt_seconds_sum", []string{"host", b, "direction", "in", "proto", "tcp"}, 0.0135, 1e-9},
		{"meshlens_host_rtt_seconds_count", []string{"host", a, "direction", "out", "proto", "tcp"}, 90, 0},
		{"meshlens_target_rtt_seconds_sum", []string{"target", "web"}, 0.02, 1e-9},
		{"meshlens_target_rtt_seconds_count", []string{"target", "web"}, 1, 0},
		// The all-lost pair: loss 1, an empty histogram.
		{"meshlens_rack_pair_loss_ratio", []string{"dst_rack", "dc1-pod2-rack1", "proto", "udp"}, 1, 0},
		{"meshlens_host_loss_ratio", []string{"host", c, "direction", "in"}, 1, 0},
		{"meshlens_rack_pair_rtt_seconds_count", []string{"dst_rack", "dc1-pod2-rack1", "proto", "udp"}, 0, 0},
		{"meshlens_rack_pair_rtt_seconds_sum", []string{"dst_rack", "dc1-pod2-rack1", "proto", "udp"}, 0, 0},
		// The racks' own counters: the 100 tcp probes leave one rack and
		// enter the other; the 5 lost udp ones are another pair's.
		{"meshlens_rack_probes_total", []string{"rack", "dc1-pod1-rack1", "proto", "tcp"}, 100, 0},
		{"meshlens_rack_probes_total", []string{"rack", "dc1-pod2-rack2", "proto", "tcp"}, 100, 0},
		{"meshlens_rack_rtt_seconds_bucket", []string{"rack", "dc1-pod2-rack2", "proto", "tcp", "le", "0.00025"}, 90, 0},
		{"meshlens_rack_probes_lost_total", []string{"rack", "dc1-pod2-rack1", "proto", "udp"}, 5, 0},
		{"meshlens_pod_probes_total", []string{"pod", "dc1-pod2", "proto", "udp"}, 5, 0},
		{"meshlens_dc_rtt_seconds_count", []string{"dc", "dc1", "proto", "tcp"}, 90, 0},
	}
	for _, tt := range tests {
		t.Run(tt.metric, func(t *testing.T) {
			got := querySeries(t, db, tt.metric, tt.kv...)
			if len(got) != 1 {
				t.Fatalf("%d series, want 1: %v", len(got), got)
			}
			for _, s := range got {
				if len(s) != 1 || s[0].ts != end || math.Abs(s[0].v-tt.want) > tt.tol*tt.want+1e-12 {
					t.Errorf("samples %v, want %v at %d", s, tt.want, end)
				}
			}
		})
	}
	// No fake zeros: the refused-only UDP pair wrote nothing.
	if got := querySeries(t, db, "meshlens_rack_pair_loss_ratio", "dst_rack", "dc1-pod1-rack1", "proto", "udp"); len(got) != 0 {
		t.Errorf("series for a pair that sent nothing: %v", got)
	}
	// No latency where nothing was answered: absent, never 0.
	for _, sel := range [][]string{
		{"meshlens_rack_pair_latency_seconds", "dst_rack", "dc1-pod2-rack1"},
		{"meshlens_pod_pair_latency_seconds", "proto", "udp"},
		{"meshlens_dc_pair_latency_seconds", "proto", "udp"},
		{"meshlens_host_latency_seconds", "host", c},
	} {
		if got := querySeries(t, db, sel[0], sel[1:]...); len(got) != 0 {
			t.Errorf("%s %v: latency of a pair none of whose probes was answered: %v", sel[0], sel[1:], got)
		}
	}
}

// TestRackPairsWithoutHistograms: by default a rack pair writes its
// counts and quantiles but no RTT histogram, and its racks' histograms
// are whole all the same.
func TestRackPairsWithoutHistograms(t *testing.T) {
	w := 10 * time.Second
	t0 := aligned(w, 10*time.Minute)
	db := openTSDB(t)
	agg, _ := newTestAggregator(t, Config{Window: w, Appendable: db})
	var rs []*wire.ProbeResult
	for i := 0; i < 10; i++ {
		rs = append(rs, res("dc1-pod2-rack2-h01", tcp, ok, t0.Add(time.Duration(i)*time.Millisecond), 300*time.Microsecond))
	}
	if err := agg.Ingest(batch("dc1-pod1-rack1-h01", 1, 1, rs...), t0); err != nil {
		t.Fatal(err)
	}
	if _, err := agg.Advance(context.Background(), t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"meshlens_rack_pair_rtt_seconds_bucket", "meshlens_rack_pair_rtt_seconds_sum", "meshlens_rack_pair_rtt_seconds_count"} {
		if got := querySeries(t, db, m); len(got) != 0 {
			t.Errorf("%s: %d series, want none", m, len(got))
		}
	}
	for _, m := range []string{"meshlens_rack_pair_probes_total", "meshlens_rack_pair_latency_seconds", "meshlens_pod_pair_rtt_seconds_bucket"} {
		if got := querySeries(t, db, m); len(got) == 0 {
			t.Errorf("%s: no series", m)
		}
	}
	for _, rack := range []string{"dc1-pod1-rack1", "dc1-pod2-rack2"} {
		got := querySeries(t, db, "meshlens_rack_rtt_seconds_bucket", "rack", rack, "le", "0.0005")
		if v := lastSum(got); len(got) != 1 || v != 10 {
			t.Errorf("rack %s: %d bucket series at le 0.0005 holding %v, want one holding 10", rack, len(got), v)
		}
	}
}

// TestLateCountersReachTSDBWhenQuiet: results that arrive after their
// window was sealed, with no newer window open (the fleet went quiet while
// the backlog was in flight), still reach the TSDB's counters at the next
// window boundary, and only the counters: no rollup for an empty window.
func TestLateCountersReachTSDBWhenQuiet(t *testing.T) {
	w := 10 * time.Second
	t0 := aligned(w, 10*time.Minute)
	db := openTSDB(t)
	agg, _ := newTestAggregator(t, Config{Window: w, Lateness: w, Appendable: db})
	const (
		a = "dc1-pod1-rack1-h01"
		b = "dc1-pod2-rack2-h01"
	)
	rack := []string{"src_rack", "dc1-pod1-rack1", "dst_rack", "dc1-pod2-rack2"}
	ctx := context.Background()
	if err := agg.Ingest(batch(a, 1, 1, res(b, tcp, ok, t0, time.Millisecond)), t0); err != nil {
		t.Fatal(err)
	}
	if sealed, err := agg.Advance(ctx, t0.Add(2*w)); err != nil || len(sealed) != 1 {
		t.Fatalf("sealed %d windows (%v), want 1", len(sealed), err)
	}
	if got := lastSum(querySeries(t, db, "meshlens_rack_pair_probes_total", rack...)); got != 1 {
		t.Fatalf("counter %v after the seal, want 1", got)
	}
	// The backlog: two more results of the sealed window, late.
	if err := agg.Ingest(batch(a, 1, 2, res(b, tcp, ok, t0.Add(time.Second), time.Millisecond), res(b, tcp, lost, t0.Add(2*time.Second), 0)), t0.Add(2*w+time.Second)); err != nil {
		t.Fatal(err)
	}
	// Within the same boundary: nothing is written yet.
	if sealed, err := agg.Advance(ctx, t0.Add(2*w+5*time.Second)); err != nil || len(sealed) != 0 {
		t.Fatalf("sealed %d windows (%v), want 0", len(sealed), err)
	}
	if agg.takeFlushed() {
		t.Fatal("counters flushed before a window boundary passed")
	}
	// The next boundary: no window to seal, the counters go in alone.
	if sealed, err := agg.Advance(ctx, t0.Add(3*w)); err != nil || len(sealed) != 0 {
		t.Fatalf("sealed %d windows (%v), want 0", len(sealed), err)
	}
	if !agg.takeFlushed() {
		t.Fatal("no counter flush reported")
	}
	probes := querySeries(t, db, "meshlens_rack_pair_probes_total", rack...)
	lostC := querySeries(t, db, "meshlens_rack_pair_probes_lost_total", rack...)
	if got, want := lastSum(probes), 3.0; got != want {
		t.Errorf("probes counter %v, want %v", got, want)
	}
	if got := lastSum(lostC); got != 1 {
		t.Errorf("lost counter %v, want 1", got)
	}
	for _, s := range probes {
		if last := s[len(s)-1].ts; last != t0.Add(2*w).UnixMilli() {
			t.Errorf("flushed at %d, want the boundary %d", last, t0.Add(2*w).UnixMilli())
		}
	}
	// The window sealed once: one loss-ratio sample, none for the flush.
	for _, s := range querySeries(t, db, "meshlens_rack_pair_loss_ratio", rack...) {
		if len(s) != 1 {
			t.Errorf("loss ratio samples %v, want one", s)
		}
	}
	if n := testutil.ToFloat64(agg.m.counterFlushes); n != 1 {
		t.Errorf("%v counter flushes counted, want 1", n)
	}
	// Nothing changed since: the next boundary writes nothing.
	if _, err := agg.Advance(ctx, t0.Add(4*w)); err != nil {
		t.Fatal(err)
	}
	if agg.takeFlushed() {
		t.Error("a flush with no change")
	}
}
