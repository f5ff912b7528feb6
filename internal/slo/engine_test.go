package slo

import (
	"context"
	"maps"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql"
	"go.uber.org/goleak"

	"github.com/meshlens/meshlens/internal/aggregate/aggregatetest"
	"github.com/meshlens/meshlens/internal/clock"
	"github.com/meshlens/meshlens/internal/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// pairLoad is the traffic of one rack pair: every step, probes more
// probes, of which lost(t) are lost.
type pairLoad struct {
	src, dst string
	every    time.Duration
	probes   float64
	lost     func(t time.Time) float64
}

// feed writes the aggregator's cumulative rack-pair counters, and what it
// derives from them, every 10 s from start to end, as the aggregator does
// at each sealed window's end.
func feed(t testing.TB, s *store.Store, start, end time.Time, loads []pairLoad) {
	t.Helper()
	pairs := make([]aggregatetest.RackPair, len(loads))
	for i, l := range loads {
		pairs[i] = aggregatetest.RackPair{Src: l.src, Dst: l.dst, Proto: "tcp"}
	}
	var wr aggregatetest.Writer
	app := s.Appender(context.Background())
	n := 0
	for ts := start.Add(10 * time.Second); !ts.After(end); ts = ts.Add(10 * time.Second) {
		for i, l := range loads {
			if ts.Sub(start)%l.every == 0 {
				pairs[i].Probes += l.probes
				pairs[i].Lost += l.lost(ts)
			}
		}
		if err := wr.Append(app, ts, 10*time.Second, pairs); err != nil {
			t.Fatal(err)
		}
		if n++; n%1000 == 0 {
			if err := app.Commit(); err != nil {
				t.Fatal(err)
			}
			app = s.Appender(context.Background())
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
}

// openStore opens a store that keeps 60 days: the tests and benchmarks
// write up to 40 days of history and read it all.
func openStore(t testing.TB) *store.Store {
	t.Helper()
	s, err := store.Open(t.TempDir(), store.Options{Retention: 60 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

const engineSLOs = `
slos:
  - name: rack1
    target: 99.9%
    window: 30d
    sli:
      probe_availability: {rack: dc1-pod1-rack1, proto: tcp}
    alerting: {runbook: "https://runbooks.example/rack"}
  - name: quiet-guarded
    target: 99.9%
    window: 30d
    sli:
      probe_availability: {rack: dc1-pod1-rack5}
  - name: quiet-unguarded
    target: 99.9%
    window: 30d
    sli:
      probe_availability: {rack: dc1-pod1-rack5}
    alerting: {min_events: 0}
`

// The fault: 10% of rack1->rack2's probes lost from 3h to 3h30m; the quiet pair
// (one probe a minute) loses everything in the same half hour.
func engineFixture(t testing.TB) (*store.Store, []SLO) {
	s := openStore(t)
	fault := func(rate float64) func(time.Time) float64 {
		return func(ts time.Time) float64 {
			if ts.After(t0.Add(3*time.Hour)) && !ts.After(t0.Add(3*time.Hour+30*time.Minute)) {
				return rate
			}
			return 0
		}
	}
	feed(t, s, t0, t0.Add(4*time.Hour), []pairLoad{
		{"dc1-pod1-rack1", "dc1-pod1-rack2", 10 * time.Second, 100, fault(10)},
		{"dc1-pod1-rack3", "dc1-pod1-rack1", 10 * time.Second, 100, func(time.Time) float64 { return 0 }},
		{"dc1-pod1-rack3", "dc1-pod1-rack4", 10 * time.Second, 100, fault(100)}, // out of every scope
		{"dc1-pod1-rack5", "dc1-pod1-rack6", time.Minute, 1, fault(1)},
	})
	slos, err := Parse(File{Name: "engine.yaml", Data: []byte(engineSLOs)})
	if err != nil {
		t.Fatal(err)
	}
	return s, slos
}

func TestEngineEvaluate(t *testing.T) {
	s, slos := engineFixture(t)
	e, err := NewEngine(Config{SLOs: slos, Querier: s, Appendable: s, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	// Hand-computed for rack1 (either end: 200 probes per 10 s, 10 lost
	// per 10 s during the fault, i.e. 5%; 99.9% target: burn 50 while it
	// lasts). Data starts at t0, so windows longer than 3h hold only what
	// exists; the 30d budget is that of the events 30 days will hold at
	// the recent rate (WindowEvents), not of the 3h so far.
	const month = 30 * 24 * 60 // the SLO window, in minutes
	tests := []struct {
		at       time.Duration
		burn5m   float64
		burn1h   float64
		firing   []string // tiers of rack1 that fire
		budget   float64  // whole-window budget left
		quietFir bool     // quiet-unguarded page-1h
	}{
		{3 * time.Hour, 0, 0, nil, 1, false},
		// 1h: 10 of 60 min at 5% -> 8.33x < 14.4; 6h, 1d, 3d: 10 of 190
		// min -> 2.63x: only the 1x tier.
		{3*time.Hour + 10*time.Minute, 50, 50.0 / 6, []string{"ticket-3d"}, 1 - 0.05*10/month/0.001, true},
		// 1h: 25x; 6h: 30/210 -> 7.14x > 6 with 30m at 50x; 2h: 12.5x.
		{3*time.Hour + 30*time.Minute, 50, 25, []string{"page-1h", "page-6h", "ticket-1d", "ticket-3d"}, 1 - 0.05*30/month/0.001, true},
		// Recovered 10 min ago: 5m is clean, page-1h resets; 30m still
		// holds 20 min of fault (33x) and 6h 6.8x: page-6h holds.
		{3*time.Hour + 40*time.Minute, 0, 25, []string{"page-6h", "ticket-1d", "ticket-3d"}, 1 - 0.05*30/month/0.001, false},
	}
	for _, tc := range tests {
		at := t0.Add(tc.at)
		sts, err := e.EvaluateAt(context.Background(), at)
		if err != nil {
			t.Fatalf("at %v: %v", tc.at, err)
		}
		st := sts[0]
		near := func(what string, got *float64, want float64) {
			t.Helper()
			if got == nil || math.Abs(*got-want) > 0.02*math.Max(1, math.Abs(want)) {
				t.Errorf("at %v: %s = %v, want %v", tc.at, what, deref(got), want)
			}
		}
		b5, b1 := st.BurnRates["5m"], st.BurnRates["1h"]
		near("burn 5m", &b5, tc.burn5m)
		near("burn 1h", &b1, tc.burn1h)
		near("budget remaining", st.BudgetRemaining, tc.budget)
		var firing []string
		for _, tr := range st.Tiers {
			if tr.Firing {
				firing = append(firing, tr.Name)
			}
		}
		if strings.Join(firing, ",") != strings.Join(tc.firing, ",") {
			t.Errorf("at %v: firing %v, want %v (tiers %+v)", tc.at, firing, tc.firing, st.Tiers)
		}
		if sts[1].Tiers[0].Firing {
			t.Errorf("at %v: quiet scope paged with %v events in 1h", tc.at, sts[1].Tiers[0].LongEvents)
		}
		if got := sts[2].Tiers[0].Firing; got != tc.quietFir {
			t.Errorf("at %v: unguarded quiet scope firing %v, want %v", tc.at, got, tc.quietFir)
		}
		// What was computed is in the store.
		res, err := s.Query(context.Background(), `meshlens_slo_burn_rate{slo="rack1",window="5m"}`, at)
		if err != nil {
			t.Fatal(err)
		}
		if v := res.Value.(promql.Vector); len(v) != 1 || math.Abs(v[0].F-b5) > 1e-9 {
			t.Errorf("at %v: stored burn rate %v, want %v", tc.at, v, b5)
		}
	}
	if got := len(e.Statuses()); got != 3 {
		t.Errorf("Statuses: %d", got)
	}
	st := e.Statuses()[0]
	if len(st.ConsumedPerDay) != DefaultConsumedDays || st.ConsumedPerDay[0].Consumed == nil {
		t.Fatalf("consumed per day: %+v", st.ConsumedPerDay)
	}
	// All the bad events fell on the last day: it consumed what is gone.
	if got, want := *st.ConsumedPerDay[0].Consumed, 1-*st.BudgetRemaining; math.Abs(got-want) > 0.02*want {
		t.Errorf("consumed today %v, want %v", got, want)
	}
}

func deref(f *float64) any {
	if f == nil {
		return nil
	}
	return *f
}

func TestEngineRunVirtualClock(t *testing.T) {
	s, slos := engineFixture(t)
	vc := clock.NewVirtual(t0.Add(3 * time.Hour))
	got := make(chan time.Time, 10)
	e, err := NewEngine(Config{SLOs: slos, Querier: s, Clock: vc, Interval: time.Minute,
		OnEvaluate: func(at time.Time, _ []Status) { got <- at }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	// Run creates its ticker: move the clock only once it is armed, by
	// exactly one interval. Then exactly one evaluation happens, at a
	// known time, and nothing else moves the clock under it. (Advancing on
	// a real timer until an evaluation showed up let further ticks in
	// under load, so Statuses already held a later evaluation.)
	armed, cancelArmed := context.WithTimeout(ctx, 30*time.Second) // generous: -race on a loaded 2-core machine
	defer cancelArmed()
	if err := vc.BlockUntil(armed, 1); err != nil {
		t.Fatalf("the engine never armed its ticker: %v", err)
	}
	vc.Advance(time.Minute)
	var at time.Time
	select {
	case at = <-got:
	case <-armed.Done():
		t.Fatal("no evaluation after one interval")
	}
	if want := t0.Add(3*time.Hour + time.Minute); !at.Equal(want) || !e.Statuses()[0].At.Equal(at) {
		t.Errorf("evaluated at %v, statuses at %v; want both %v", at, e.Statuses()[0].At, want)
	}
	if len(got) != 0 {
		t.Errorf("%d more evaluations without the clock moving", len(got))
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestEngineQueryError(t *testing.T) {
	s := openStore(t)
	slos, err := Parse(File{Name: "x.yaml", Data: []byte("name: x\ntarget: 99%\nwindow: 7d\nsli:\n  ratio:\n    bad: sum(increase(a[{{.window}}])) / on(nope) group_left sum(increase(b[{{.window}}]))\n    total: sum(increase(b[{{.window}}]))\n")})
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEngine(Config{SLOs: slos, Querier: failing{s}})
	if err != nil {
		t.Fatal(err)
	}
	sts, err := e.EvaluateAt(context.Background(), t0)
	if err == nil || sts[0].Error == "" {
		t.Fatalf("want an error, got %v, %+v", err, sts)
	}
}

type failing struct{ *store.Store }

func (failing) Query(context.Context, string, time.Time) (*promql.Result, error) {
	return nil, context.DeadlineExceeded
}

// Without the counters an SLI needs, an SLO has no data: never "all bad".
func TestEngineMissingCounters(t *testing.T) {
	s, _ := engineFixture(t)
	slos, err := Parse(File{Name: "missing.yaml", Data: []byte(`
slos:
  - {name: latency, target: 99%, window: 7d, sli: {probe_latency: {rack: dc1-pod1-rack1, threshold: 5ms}}}
  - {name: host, target: 99%, window: 7d, sli: {probe_availability: {host: dc1-pod1-rack1-h01}}}
  - {name: service, target: 99%, window: 7d, sli: {ratio: {bad: 'sum(increase(errors_total[{{.window}}]))', total: 'sum(increase(requests_total[{{.window}}]))'}}}
`)})
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEngine(Config{SLOs: slos, Querier: s})
	if err != nil {
		t.Fatal(err)
	}
	sts, err := e.EvaluateAt(context.Background(), t0.Add(3*time.Hour+30*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range sts {
		if st.SLI != nil || st.BudgetRemaining != nil || st.Events != 0 || len(st.BurnRates) != 0 {
			t.Errorf("%s: %+v, want no data", st.Name, st)
		}
		for _, tr := range st.Tiers {
			if tr.Firing {
				t.Errorf("%s: tier %s fires without data", st.Name, tr.Name)
			}
		}
	}
}

// An SLO's service (OpenSLO spec.service) is on meshlens's own alerts as
// on the generated rules' (AlertLabels): Status.Labels, which the alert
// manager copies onto every tier's alert, carries it with the SLO's labels.
func TestEngineStatusLabels(t *testing.T) {
	s, _ := engineFixture(t)
	slos, err := Parse(File{Name: "service.yaml", Data: []byte(`apiVersion: openslo/v1
kind: SLO
metadata: {name: checkout, labels: {team: shop}}
spec:
  service: payments
  timeWindow: [{duration: 7d, isRolling: true}]
  objectives: [{target: 0.99}]
  indicator:
    metadata: {name: checkout-errors}
    spec:
      ratioMetric:
        counter: true
        bad: {metricSource: {type: Prometheus, spec: {query: sum(errors_total)}}}
        total: {metricSource: {type: Prometheus, spec: {query: sum(requests_total)}}}
`)})
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEngine(Config{SLOs: slos, Querier: s})
	if err != nil {
		t.Fatal(err)
	}
	sts, err := e.EvaluateAt(context.Background(), t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"service": "payments", "team": "shop"}; !maps.Equal(sts[0].Labels, want) {
		t.Errorf("status labels %v, want %v", sts[0].Labels, want)
	}
}

// TestEngineDataDelay: the store's counters trail the clock by the
// aggregator's lateness. Evaluated at 3h40m with the data complete up to
// 3h30m (the fault's end), a 5 m window ending at the clock would hold the
// clean tail only; with DataDelay it ends where the data does, and the
// status is still dated at the evaluation.
func TestEngineDataDelay(t *testing.T) {
	s, slos := engineFixture(t)
	for _, tc := range []struct {
		delay  time.Duration
		burn5m float64
	}{
		{0, 0},
		{10 * time.Minute, 50},
	} {
		e, err := NewEngine(Config{SLOs: slos[:1], Querier: s, DataDelay: tc.delay, Registerer: prometheus.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		at := t0.Add(3*time.Hour + 40*time.Minute)
		sts, err := e.EvaluateAt(context.Background(), at)
		if err != nil {
			t.Fatal(err)
		}
		if b := sts[0].BurnRates["5m"]; math.Abs(b-tc.burn5m) > 1 {
			t.Errorf("delay %v: burn 5m = %v, want %v", tc.delay, b, tc.burn5m)
		}
		if !sts[0].At.Equal(at) {
			t.Errorf("delay %v: status at %v, want %v", tc.delay, sts[0].At, at)
		}
	}
}
