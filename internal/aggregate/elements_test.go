package aggregate

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"

	"github.com/meshlens/meshlens/internal/aggregate/aggregatetest"
	"github.com/meshlens/meshlens/internal/wire"
)

// samplesAt returns metric's samples at exactly ts, by label set without
// the name.
func samplesAt(t *testing.T, db *tsdb.DB, metric string, ts int64) map[string]labeledValue {
	t.Helper()
	q, err := db.Querier(ts, ts)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ss := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", metric))
	out := map[string]labeledValue{}
	for ss.Next() {
		s := ss.At()
		ls := labels.NewBuilder(s.Labels()).Del("__name__").Labels()
		it := s.Iterator(nil)
		for it.Next() != 0 {
			if at, v := it.At(); at == ts {
				out[ls.String()] = labeledValue{ls, v}
			}
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

type labeledValue struct {
	ls labels.Labels
	v  float64
}

// elementsFromPairs sums the location-pair series of suffix at ts by
// element, as the element counters should: a pair counts for its source
// and, when it differs, its destination.
func elementsFromPairs(t *testing.T, db *tsdb.DB, lv level, suffix string, ts int64) map[string]float64 {
	t.Helper()
	name := levelNames[lv]
	out := map[string]float64{}
	for _, s := range samplesAt(t, db, levelMetric(lv, suffix), ts) {
		src, dst := s.ls.Get("src_"+name), s.ls.Get("dst_"+name)
		ends := []string{src}
		if dst != src {
			ends = append(ends, dst)
		}
		for _, e := range ends {
			ls := labels.NewBuilder(s.ls).Del("src_"+name, "dst_"+name).Set(name, e).Labels()
			out[ls.String()] += s.v
		}
	}
	return out
}

// ingestAll ingests each agent's results, arrived at at.
func ingestAll(t *testing.T, agg *Aggregator, at time.Time, results map[string][]*wire.ProbeResult, seq uint64) {
	t.Helper()
	for _, agent := range slices.Sorted(maps.Keys(results)) {
		if err := agg.Ingest(batch(agent, 1, seq, results[agent]...), at); err != nil {
			t.Fatal(err)
		}
	}
}

// TestElementCounters: the per-element counters are the sums of the
// location-pair counters with either end in the element, a pair inside
// the element once, for racks, pods and DCs, buckets, _sum and _count
// included, cumulative across windows, with Config.SeriesLabels.
func TestElementCounters(t *testing.T) {
	w := 10 * time.Second
	const (
		r1h1 = "dc1-pod1-rack1-h01"
		r1h2 = "dc1-pod1-rack1-h02" // same rack
		r2h1 = "dc1-pod1-rack2-h01" // same pod
		p2h1 = "dc1-pod2-rack1-h01" // same DC
		d2h1 = "dc2-pod1-rack1-h01" // another DC
	)
	probes := func(dst string, proto wire.Protocol, n, lostN int, rtt time.Duration, start time.Time) []*wire.ProbeResult {
		var out []*wire.ProbeResult
		for i := 0; i < n; i++ {
			outcome := ok
			if i < lostN {
				outcome = lost
			}
			out = append(out, res(dst, proto, outcome, start.Add(time.Duration(i)*time.Millisecond), rtt))
		}
		return out
	}
	type value struct {
		metric string
		kv     []string
		want   float64
	}
	tests := []struct {
		name    string
		results func(start time.Time) map[string][]*wire.ProbeResult
		// want: per window, checked beside the sums of the pairs.
		want [2][]value
	}{
		{
			name: "by hand",
			results: func(start time.Time) map[string][]*wire.ProbeResult {
				return map[string][]*wire.ProbeResult{
					// 3 inside rack1 (1 lost), 2 to rack2, 1 to another DC.
					r1h1: slices.Concat(probes(r1h2, tcp, 3, 1, 200*time.Microsecond, start),
						probes(r2h1, tcp, 2, 0, 2*time.Millisecond, start),
						probes(d2h1, tcp, 1, 0, 20*time.Millisecond, start)),
					// 4 into rack1 from pod2, 2 of them lost; udp elsewhere.
					p2h1: slices.Concat(probes(r1h2, tcp, 4, 2, 300*time.Microsecond, start),
						probes(r2h1, udp, 5, 5, 0, start)),
				}
			},
			want: [2][]value{{
				// Counting the pair inside rack1 twice would give 13.
				{"meshlens_rack_probes_total", []string{"rack", "dc1-pod1-rack1", "proto", "tcp"}, 10},
				{"meshlens_rack_probes_lost_total", []string{"rack", "dc1-pod1-rack1", "proto", "tcp"}, 3},
				{"meshlens_rack_probes_total", []string{"rack", "dc1-pod1-rack2", "proto", "tcp"}, 2},
				{"meshlens_rack_probes_total", []string{"rack", "dc1-pod1-rack2", "proto", "udp"}, 5},
				{"meshlens_rack_probes_lost_total", []string{"rack", "dc1-pod1-rack2", "proto", "udp"}, 5},
				{"meshlens_rack_probes_total", []string{"rack", "dc1-pod2-rack1", "proto", "tcp"}, 4},
				{"meshlens_rack_probes_total", []string{"rack", "dc2-pod1-rack1", "proto", "tcp"}, 1},
				// pod1: 3 + 2 inside, 1 out to dc2, 4 in from pod2.
				{"meshlens_pod_probes_total", []string{"pod", "dc1-pod1", "proto", "tcp"}, 10},
				{"meshlens_pod_probes_total", []string{"pod", "dc1-pod2", "proto", "tcp"}, 4},
				{"meshlens_pod_probes_total", []string{"pod", "dc1-pod2", "proto", "udp"}, 5},
				// dc1: all but the one to dc2 inside, counted once.
				{"meshlens_dc_probes_total", []string{"dc", "dc1", "proto", "tcp"}, 10},
				{"meshlens_dc_probes_lost_total", []string{"dc", "dc1", "proto", "tcp"}, 3},
				{"meshlens_dc_probes_total", []string{"dc", "dc2", "proto", "tcp"}, 1},
				// rack1's 7 answered: 2 at 200 µs, 2 at 2 ms, 1 at 20 ms,
				// 2 at 300 µs.
				{"meshlens_rack_rtt_seconds_bucket", []string{"rack", "dc1-pod1-rack1", "proto", "tcp", "le", "0.00025"}, 2},
				{"meshlens_rack_rtt_seconds_bucket", []string{"rack", "dc1-pod1-rack1", "proto", "tcp", "le", "0.0005"}, 4},
				{"meshlens_rack_rtt_seconds_bucket", []string{"rack", "dc1-pod1-rack1", "proto", "tcp", "le", "0.0025"}, 6},
				{"meshlens_rack_rtt_seconds_bucket", []string{"rack", "dc1-pod1-rack1", "proto", "tcp", "le", "+Inf"}, 7},
				{"meshlens_rack_rtt_seconds_count", []string{"rack", "dc1-pod1-rack1", "proto", "tcp"}, 7},
				{"meshlens_rack_rtt_seconds_sum", []string{"rack", "dc1-pod1-rack1", "proto", "tcp"}, 2*200e-6 + 2*2e-3 + 20e-3 + 2*300e-6},
				{"meshlens_dc_rtt_seconds_bucket", []string{"dc", "dc2", "proto", "tcp", "le", "0.01"}, 0},
				{"meshlens_dc_rtt_seconds_bucket", []string{"dc", "dc2", "proto", "tcp", "le", "0.025"}, 1},
				// All lost: an element with probes and an empty histogram.
				{"meshlens_pod_rtt_seconds_count", []string{"pod", "dc1-pod2", "proto", "udp"}, 0},
			}, {
				// The same again: cumulative.
				{"meshlens_rack_probes_total", []string{"rack", "dc1-pod1-rack1", "proto", "tcp"}, 20},
				{"meshlens_dc_probes_total", []string{"dc", "dc1", "proto", "tcp"}, 20},
				{"meshlens_rack_rtt_seconds_bucket", []string{"rack", "dc1-pod1-rack1", "proto", "tcp", "le", "+Inf"}, 14},
			}},
		},
		{
			name: "full mesh",
			results: func(start time.Time) map[string][]*wire.ProbeResult {
				hosts := newFabric(2, 2, 2, 2).hosts()
				out := map[string][]*wire.ProbeResult{}
				for i, src := range hosts {
					for j, dst := range hosts {
						if i == j {
							continue
						}
						n := 1 + (i+j)%4
						rtt := time.Duration(50*(1+(i*7+j)%40)) * time.Microsecond
						out[src] = append(out[src], probes(dst, []wire.Protocol{tcp, udp}[(i+j)%2], n, (i*j)%3%n, rtt, start)...)
					}
				}
				return out
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t0 := aligned(w, 10*time.Minute)
			db := openTSDB(t)
			// With the rack pairs' histograms, to sum every level's.
			agg, _ := newTestAggregator(t, Config{Window: w, Lateness: time.Second, IgnoreMarks: true, Locator: newFabric(2, 2, 2, 2),
				Appendable: db, SeriesLabels: map[string]string{"partition": "3"}, RackPairRTTBuckets: true})
			for win := 0; win < 2; win++ {
				start := t0.Add(time.Duration(win) * w)
				ingestAll(t, agg, start, tt.results(start), uint64(win+1))
				if sealed, err := agg.Advance(context.Background(), start.Add(w+time.Second)); err != nil || len(sealed) != 1 {
					t.Fatalf("window %d: sealed %d (%v), want 1", win, len(sealed), err)
				}
				end := start.Add(w).UnixMilli()
				for lv := level(0); lv < numLevels; lv++ {
					for _, suffix := range []string{"probes_total", "probes_lost_total", "rtt_seconds_bucket", "rtt_seconds_sum", "rtt_seconds_count"} {
						metric := "meshlens_" + levelNames[lv] + "_" + suffix
						want := elementsFromPairs(t, db, lv, suffix, end)
						got := samplesAt(t, db, metric, end)
						if len(want) == 0 {
							t.Fatalf("window %d: no %s pair series", win, levelNames[lv])
						}
						if len(got) != len(want) {
							t.Errorf("window %d: %d %s series, want %d", win, len(got), metric, len(want))
						}
						for ls, v := range want {
							if g, ok := got[ls]; !ok || math.Abs(g.v-v) > 1e-9*v {
								t.Errorf("window %d: %s%s = %v (present %v), want %v, the sum of its pairs", win, metric, ls, g.v, ok, v)
							}
						}
					}
				}
				for _, v := range tt.want[win] {
					kv := append([]string{"partition", "3"}, v.kv...)
					got := querySeries(t, db, v.metric, kv...)
					if len(got) != 1 {
						t.Fatalf("window %d: %s %v: %d series, want 1: %v", win, v.metric, v.kv, len(got), got)
					}
					for ls, s := range got {
						if n := strings.Count(ls, "="); n != len(kv)/2+1 {
							t.Errorf("%s: %d labels, want %d", ls, n, len(kv)/2+1)
						}
						if last := s[len(s)-1]; last.ts != end || math.Abs(last.v-v.want) > 1e-12 {
							t.Errorf("window %d: %s = %v at %d, want %v at %d", win, ls, last.v, last.ts, v.want, end)
						}
					}
				}
			}
		})
	}
}

// TestElementCountersOnce: a pair inside one element adds to it once, a
// pair across two adds to both.
func TestElementCountersOnce(t *testing.T) {
	c := func(probes uint64) counter {
		cn := counter{Count: Count{Probes: probes, Lost: 1}, rttSumNs: 1000 * probes}
		cn.ok[2] = probes - 1
		return cn
	}
	snap := []counterSample{
		{counterKey{rackCounter, LocationPair{"r1", "r1", tcp}}, c(3), true},
		{counterKey{rackCounter, LocationPair{"r1", "r2", tcp}}, c(5), true},
		{counterKey{rackCounter, LocationPair{"r2", "r1", udp}}, c(7), true},
		{counterKey{rackCounter, LocationPair{"r3", "r3", tcp}}, counter{}, true}, // nothing sent
		{counterKey{dcCounter, LocationPair{"d1", "d1", tcp}}, c(15), true},
		{counterKey{hostOutCounter, LocationPair{Src: "h1", Proto: tcp}}, c(9), true}, // not a location
	}
	got := map[elementKey]counter{}
	for k, c := range elementCounters(snap) {
		got[k] = c.counter
	}
	sum := func(cs ...counter) counter {
		var out counter
		for i := range cs {
			out.merge(&cs[i])
		}
		return out
	}
	want := map[elementKey]counter{
		{level(rackCounter), "r1", tcp}: sum(c(3), c(5)),
		{level(rackCounter), "r2", tcp}: c(5),
		{level(rackCounter), "r1", udp}: c(7),
		{level(rackCounter), "r2", udp}: c(7),
		{level(dcCounter), "d1", tcp}:   c(15),
	}
	if !maps.Equal(got, want) {
		t.Errorf("element counters\n%v\nwant\n%v", got, want)
	}
}

// failingAppendable fails every append of the next n appenders, as a full
// disk would.
type failingAppendable struct {
	storage.Appendable
	n int
}

func (f *failingAppendable) Appender(ctx context.Context) storage.Appender {
	app := f.Appendable.Appender(ctx)
	if f.n > 0 {
		f.n--
		return failingAppender{app}
	}
	return app
}

type failingAppender struct{ storage.Appender }

func (failingAppender) Append(storage.SeriesRef, labels.Labels, int64, float64) (storage.SeriesRef, error) {
	return 0, errors.New("disk full")
}

// TestHourlyCopies: the hourly copies are written at the first window an
// Aggregator writes, then at the first window ending in each later hour,
// with the originals' values, of the listed series only; a failed write
// leaves the next window to write them.
func TestHourlyCopies(t *testing.T) {
	w := 10 * time.Second
	hour := time.Now().Add(-2 * time.Hour).Truncate(time.Hour) // an hour's start
	type step struct {
		end    time.Duration // the window's end, from hour
		fail   bool          // the TSDB write fails
		hourly bool          // want the hourly copies at end
	}
	tests := []struct {
		name           string
		hostRTTBuckets bool
		steps          []step
	}{
		{"the first window and on the hour", true, []step{
			{-20 * time.Second, false, true}, // the first window
			{-10 * time.Second, false, false},
			{0, false, true}, // ends on the hour
			{10 * time.Second, false, false},
			{20 * time.Second, false, false},
		}},
		{"without host buckets", false, []step{
			{-10 * time.Second, false, true},
			{0, false, true},
			{10 * time.Second, false, false},
		}},
		{"a failed write retries", true, []step{
			{-30 * time.Second, true, false}, // nothing written, not even the first
			{-20 * time.Second, false, true},
			{-10 * time.Second, false, false},
			{0, true, false},
			{10 * time.Second, false, true}, // the hour's, late
			{20 * time.Second, false, false},
		}},
	}
	const (
		a  = "dc1-pod1-rack1-h01"
		b  = "dc1-pod1-rack1-h02"
		c  = "dc1-pod2-rack2-h01"
		tg = "web"
	)
	// The families copied: elements, DC pairs, hosts and targets.
	copied := []string{"rack", "pod", "dc", "dc_pair", "host", "target"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := openTSDB(t)
			app := &failingAppendable{Appendable: db}
			agg, _ := newTestAggregator(t, Config{Window: w, Lateness: time.Second, IgnoreMarks: true, Appendable: app,
				HostRTTBuckets: tt.hostRTTBuckets, SeriesLabels: map[string]string{"partition": "1"}})
			var ends, hourlyEnds, okEnds []int64
			for i, st := range tt.steps {
				end := hour.Add(st.end)
				start := end.Add(-w)
				ingestAll(t, agg, start, map[string][]*wire.ProbeResult{
					a: {res(b, tcp, ok, start, 300*time.Microsecond), res(c, udp, lost, start, 0),
						res(tg, wire.Protocol_PROTOCOL_HTTP, ok, start, 5*time.Millisecond)},
					c: {res(a, tcp, ok, start, 2*time.Millisecond)},
				}, uint64(i+1))
				if st.fail {
					app.n = 1
				}
				sealed, err := agg.Advance(context.Background(), end.Add(time.Second))
				if len(sealed) != 1 || (err != nil) != st.fail {
					t.Fatalf("step %d: sealed %d, err %v, want a failure: %v", i, len(sealed), err, st.fail)
				}
				ends = append(ends, end.UnixMilli())
				if !st.fail {
					okEnds = append(okEnds, end.UnixMilli())
				}
				if st.hourly {
					hourlyEnds = append(hourlyEnds, end.UnixMilli())
				}
			}
			// Exactly the listed hourly series, no more.
			wantNames := map[string]bool{}
			for _, f := range copied {
				for _, s := range []string{"probes_total", "probes_lost_total", "rtt_seconds_bucket"} {
					if f == "host" && s == "rtt_seconds_bucket" && !tt.hostRTTBuckets {
						continue
					}
					wantNames[HourlyPrefix+f+"_"+s] = true
				}
			}
			gotNames := map[string]bool{}
			q, err := db.Querier(math.MinInt64, math.MaxInt64)
			if err != nil {
				t.Fatal(err)
			}
			names, _, err := q.LabelValues(context.Background(), "__name__", nil)
			q.Close()
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range names {
				if strings.HasPrefix(n, HourlyPrefix) {
					gotNames[n] = true
				}
			}
			if !maps.Equal(gotNames, wantNames) {
				t.Errorf("hourly series %v, want %v", slices.Sorted(maps.Keys(gotNames)), slices.Sorted(maps.Keys(wantNames)))
			}
			// At the hourly ends, each copy equals its original; at the
			// other ends there is none, while the originals are there. A
			// failed write leaves nothing but the 0s the next commit puts
			// at its window's start, before every series born in it.
			for name := range wantNames {
				orig := "meshlens_" + strings.TrimPrefix(name, HourlyPrefix)
				for _, end := range ends {
					got, want := samplesAt(t, db, name, end), samplesAt(t, db, orig, end)
					if !slices.Contains(okEnds, end) {
						if len(want) != 0 {
							t.Errorf("%d series of %s at %d, whose write failed", len(want), orig, end)
						}
						for ls, v := range got {
							if v.v != 0 {
								t.Errorf("%s%s = %v at %d, whose write failed; want only a birth's 0", name, ls, v.v, end)
							}
						}
						continue
					}
					if len(want) == 0 {
						t.Fatalf("no %s at %d", orig, end)
					}
					if !slices.Contains(hourlyEnds, end) {
						if len(got) != 0 {
							t.Errorf("%s at %d, not an hourly window: %v", name, end, got)
						}
						continue
					}
					if len(got) != len(want) {
						t.Errorf("%d series of %s at %d, %s has %d", len(got), name, end, orig, len(want))
					}
					for ls, v := range want {
						if g, ok := got[ls]; !ok || g.v != v.v {
							t.Errorf("%s%s at %d = %v (present %v), want %v", name, ls, end, g.v, ok, v.v)
						}
					}
				}
			}
			// Not copied: rack and pod pairs, _sum and _count.
			for _, n := range []string{"meshlens_hourly_rack_pair_probes_total", "meshlens_hourly_pod_pair_probes_total",
				"meshlens_hourly_dc_pair_rtt_seconds_sum", "meshlens_hourly_rack_rtt_seconds_count", "meshlens_hourly_host_rtt_seconds_sum"} {
				if got := querySeries(t, db, n); len(got) != 0 {
					t.Errorf("%s written: %v", n, got)
				}
			}
		})
	}
}

// TestRestoreIgnoresDerivedSeries: with the element counters and the
// hourly copies in the TSDB at the checkpoint's time, a restart restores
// the counters exactly (the derived series neither match nor change the
// count of counter sets), and writes the hourly copies at its first window.
func TestRestoreIgnoresDerivedSeries(t *testing.T) {
	w := 10 * time.Second
	// All in one clock hour: the restart writes the copies all the same.
	t0 := time.Now().Add(-2 * time.Hour).Truncate(time.Hour).Add(10 * time.Minute)
	db := openTSDB(t)
	cfg := Config{Window: w, Lateness: time.Second, IgnoreMarks: true, Appendable: db, Queryable: db, HostRTTBuckets: true,
		SeriesLabels: map[string]string{"partition": "1"}}
	results := func(start time.Time) map[string][]*wire.ProbeResult {
		return map[string][]*wire.ProbeResult{
			"dc1-pod1-rack1-h01": {res("dc1-pod1-rack1-h02", tcp, ok, start, 300*time.Microsecond), res("dc1-pod2-rack2-h01", udp, lost, start, 0),
				res("web", wire.Protocol_PROTOCOL_HTTP, ok, start, 5*time.Millisecond)},
			"dc1-pod2-rack2-h01": {res("dc1-pod1-rack1-h01", tcp, ok, start, 2*time.Millisecond)},
		}
	}
	agg, _ := newTestAggregator(t, cfg)
	for win := 0; win < 2; win++ {
		start := t0.Add(time.Duration(win) * w)
		ingestAll(t, agg, start, results(start), uint64(win+1))
		if _, err := agg.Advance(t.Context(), start.Add(w+time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	c := Checkpoint{Version: checkpointVersion}
	if err := agg.checkpoint(&c); err != nil {
		t.Fatal(err)
	}
	// The derived series are there to be (wrongly) read back.
	for _, n := range []string{"meshlens_rack_probes_total", "meshlens_dc_rtt_seconds_bucket"} {
		if len(samplesAt(t, db, n, c.CountersAt)) == 0 {
			t.Fatalf("no %s at the checkpoint's time %d", n, c.CountersAt)
		}
	}
	for _, n := range []string{"meshlens_hourly_rack_probes_total", "meshlens_hourly_dc_pair_probes_total", "meshlens_hourly_host_probes_total", "meshlens_hourly_target_probes_total"} {
		if len(querySeries(t, db, n)) == 0 {
			t.Fatalf("no %s in the TSDB", n)
		}
	}

	agg2, _ := newTestAggregator(t, cfg)
	if err := agg2.restoreCountersFromTSDB(t.Context(), c.CountersAt, c.CounterSeries, c.ElementSeries); err != nil {
		t.Fatal(err)
	}
	if got, want := allCounters(agg2), allCounters(agg); !maps.Equal(got, want) {
		t.Errorf("restored %d counter sets, want %d:\n%v\nwant\n%v", len(got), len(want), got, want)
	}
	// The restarted aggregator's first window, in the same hour as the
	// last hourly copies: it writes them, from the restored counters on.
	start := t0.Add(2 * w)
	ingestAll(t, agg2, start, results(start), 3)
	if _, err := agg2.Advance(t.Context(), start.Add(w+time.Second)); err != nil {
		t.Fatal(err)
	}
	end := start.Add(w).UnixMilli()
	got := samplesAt(t, db, "meshlens_hourly_rack_probes_total", end)
	want := samplesAt(t, db, "meshlens_rack_probes_total", end)
	if len(got) == 0 || len(got) != len(want) {
		t.Fatalf("%d hourly rack series at the restart's first window, want %d", len(got), len(want))
	}
	for ls, v := range want {
		if got[ls].v != v.v {
			t.Errorf("hourly %s = %v, want %v", ls, got[ls].v, v.v)
		}
	}
	// Restored counters were not 0 before: no birth's 0 at the window's
	// start.
	if zeros := samplesAt(t, db, "meshlens_hourly_rack_probes_total", start.UnixMilli()); len(zeros) != 0 {
		t.Errorf("hourly copies of restored counters at the window's start: %v", zeros)
	}
	// Per window, r1h1 to r1h2 (inside rack1, once) and pod2 to r1h1.
	if v := want[labels.FromStrings("partition", "1", "proto", "tcp", "rack", "dc1-pod1-rack1").String()].v; v != 6 {
		t.Errorf("rack1 tcp probes after the restart %v, want 6 (3 windows of 2)", v)
	}
}

// TestHourlyCopyAtBirth: a series that first appears within an hour gets
// its hourly copy in that commit, the others do not, and it gets none
// again until the next hour: a long SLO window over a series born inside
// it reads its first value from the copy.
func TestHourlyCopyAtBirth(t *testing.T) {
	w := 10 * time.Second
	hour := time.Now().Add(-2 * time.Hour).Truncate(time.Hour)
	db := openTSDB(t)
	agg, _ := newTestAggregator(t, Config{Window: w, Lateness: time.Second, IgnoreMarks: true, Appendable: db})
	const (
		a = "dc1-pod1-rack1-h01"
		b = "dc1-pod1-rack1-h02"
		c = "dc1-pod2-rack2-h01" // first probed in the second window
	)
	ends := []time.Time{hour.Add(20 * time.Minute), hour.Add(20*time.Minute + w), hour.Add(20*time.Minute + 2*w)}
	for i, end := range ends {
		start := end.Add(-w)
		results := map[string][]*wire.ProbeResult{a: {res(b, tcp, ok, start, 300*time.Microsecond)}}
		if i > 0 {
			results[a] = append(results[a], res(c, tcp, lost, start, 0))
		}
		ingestAll(t, agg, start, results, uint64(i+1))
		if _, err := agg.Advance(context.Background(), end.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	// rack2 is born in the second window: its copy is 0 at that window's
	// start (the first's end), then its value at its end, then nothing.
	racks := func(i int) map[string]float64 {
		out := map[string]float64{}
		for ls, v := range samplesAt(t, db, "meshlens_hourly_rack_probes_total", ends[i].UnixMilli()) {
			out[ls] = v.v
		}
		return out
	}
	rack1, rack2 := `{proto="tcp", rack="dc1-pod1-rack1"}`, `{proto="tcp", rack="dc1-pod2-rack2"}`
	if got, want := racks(0), map[string]float64{rack1: 1, rack2: 0}; !maps.Equal(got, want) {
		t.Errorf("first window (all copied): hourly rack series %v, want %v", got, want)
	}
	if got, want := racks(1), map[string]float64{rack2: 1}; !maps.Equal(got, want) {
		t.Errorf("second window: hourly rack series %v, want %v (only the new rack2's)", got, want)
	}
	if got := racks(2); len(got) != 0 {
		t.Errorf("third window: hourly rack series %v, want none", got)
	}
	dcPairs := samplesAt(t, db, "meshlens_hourly_dc_pair_probes_total", ends[1].UnixMilli())
	if len(dcPairs) != 0 {
		t.Errorf("second window: hourly dc-pair copies %v of a pair seen before", dcPairs)
	}
	// a's out and b's in counters (tcp) were there before; c's in is new.
	hosts := samplesAt(t, db, "meshlens_hourly_host_probes_total", ends[1].UnixMilli())
	for ls := range hosts {
		if !strings.Contains(ls, c) {
			t.Errorf("second window: hourly copy of %s, seen before", ls)
		}
	}
	if len(hosts) != 1 {
		t.Errorf("second window: hourly host copies %v, want c's only", hosts)
	}
}

// TestAggregatetestWritesWhatTheAggregatorWrites: the fixture the SLO
// tests lay their counters down with (aggregatetest) writes the per-rack
// counters and their hourly copies exactly as the aggregator does, across
// a rack born later and an hour's start, given the rack-pair counters the
// aggregator wrote.
func TestAggregatetestWritesWhatTheAggregatorWrites(t *testing.T) {
	w := 10 * time.Second
	hour := time.Now().Add(-2 * time.Hour).Truncate(time.Hour)
	real, fixture := openTSDB(t), openTSDB(t)
	agg, _ := newTestAggregator(t, Config{Window: w, Lateness: time.Second, IgnoreMarks: true, Appendable: real})
	const (
		a = "dc1-pod1-rack1-h01"
		b = "dc1-pod1-rack1-h02"
		c = "dc1-pod2-rack2-h01"
	)
	var ends []int64
	for i := range 6 {
		end := hour.Add(-30*time.Second + time.Duration(i)*w)
		start := end.Add(-w)
		results := map[string][]*wire.ProbeResult{a: {res(b, tcp, ok, start, 300*time.Microsecond), res(c, udp, lost, start, 0)}}
		if i >= 2 { // rack2 probes too, from the third window
			results[c] = []*wire.ProbeResult{res(a, tcp, ok, start, time.Millisecond), res(b, tcp, lost, start, 0)}
		}
		ingestAll(t, agg, start, results, uint64(i+1))
		if _, err := agg.Advance(context.Background(), end.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		ends = append(ends, end.UnixMilli())
	}
	var wr aggregatetest.Writer
	for _, end := range ends {
		probes := samplesAt(t, real, "meshlens_rack_pair_probes_total", end)
		lost := samplesAt(t, real, "meshlens_rack_pair_probes_lost_total", end)
		var pairs []aggregatetest.RackPair
		for ls, p := range probes {
			pairs = append(pairs, aggregatetest.RackPair{Src: p.ls.Get("src_rack"), Dst: p.ls.Get("dst_rack"), Proto: p.ls.Get("proto"),
				Probes: p.v, Lost: lost[ls].v})
		}
		app := fixture.Appender(context.Background())
		if err := wr.Append(app, time.UnixMilli(end), w, pairs); err != nil {
			t.Fatal(err)
		}
		if err := app.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"meshlens_rack_probes_total", "meshlens_rack_probes_lost_total",
		"meshlens_hourly_rack_probes_total", "meshlens_hourly_rack_probes_lost_total"} {
		got, want := allSamples(t, fixture, name), allSamples(t, real, name)
		if !maps.Equal(got, want) {
			t.Errorf("%s: aggregatetest wrote\n%v\nthe aggregator\n%v", name, got, want)
		}
		if len(want) == 0 {
			t.Errorf("%s: nothing written", name)
		}
	}
}

// allSamples is every sample of metric, by "labels@ts".
func allSamples(t *testing.T, db *tsdb.DB, metric string) map[string]float64 {
	t.Helper()
	q, err := db.Querier(math.MinInt64, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ss := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", metric))
	out := map[string]float64{}
	for ss.Next() {
		it := ss.At().Iterator(nil)
		for it.Next() != 0 {
			ts, v := it.At()
			out[fmt.Sprintf("%s@%d", ss.At().Labels(), ts)] = v
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
