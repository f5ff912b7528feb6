package aggregate

import (
	"context"
	"math"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshlens/meshlens/internal/wire"
)

const (
	ok     = wire.Outcome_OUTCOME_OK
	lost   = wire.Outcome_OUTCOME_LOST
	synRtx = wire.Outcome_OUTCOME_SYN_RETRANSMIT
	refuse = wire.Outcome_OUTCOME_REFUSED
	bad    = wire.Outcome_OUTCOME_BAD_RESPONSE
	lerr   = wire.Outcome_OUTCOME_ERROR
)

func newTestAggregator(t *testing.T, cfg Config) (*Aggregator, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	if cfg.Locator == nil {
		cfg.Locator = newFabric(1, 2, 2, 2)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a, reg
}

func TestPairWindowsAndRollups(t *testing.T) {
	w := 10 * time.Second
	t0 := aligned(w, 5*time.Minute)
	const (
		a1 = "dc1-pod1-rack1-h01"
		a2 = "dc1-pod1-rack1-h02" // same rack as a1
		b1 = "dc1-pod1-rack2-h01" // same pod
		c1 = "dc1-pod2-rack1-h01" // other pod
	)
	tests := []struct {
		name    string
		batches []*wire.Batch
		pair    PairKey
		want    PairStats // Latency ignored
		lostTup int
		rack    LocationPair
		rackW   Rollup
	}{
		{
			name: "outcomes",
			batches: []*wire.Batch{batch(a1, 1, 1,
				res(b1, tcp, ok, t0.Add(time.Second), time.Millisecond),
				res(b1, tcp, lost, t0.Add(2*time.Second), 0),
				res(b1, tcp, synRtx, t0.Add(3*time.Second), 3*time.Second),
				res(b1, tcp, refuse, t0.Add(4*time.Second), 0),
				res(b1, tcp, lerr, t0.Add(5*time.Second), 0),
				res(b1, tcp, bad, t0.Add(6*time.Second), time.Millisecond),
			)},
			pair:    PairKey{a1, b1, tcp},
			want:    PairStats{Sent: 4, Lost: 2, SynRetransmits: 1, SchedulingLagP99: 2 * time.Millisecond},
			lostTup: 2,
			rack:    LocationPair{"dc1-pod1-rack1", "dc1-pod1-rack2", tcp},
			rackW:   Rollup{Sent: 4, Lost: 2, SynRetransmits: 1},
		},
		{
			name: "lost tuples capped, two agents in one rack pair",
			batches: func() []*wire.Batch {
				var rs []*wire.ProbeResult
				for i := 0; i < 20; i++ {
					rs = append(rs, res(b1, udp, lost, t0.Add(time.Duration(i)*100*time.Millisecond), 0))
				}
				return []*wire.Batch{batch(a1, 1, 1, rs...), batch(a2, 1, 1, res(b1, udp, ok, t0, time.Millisecond))}
			}(),
			pair:    PairKey{a1, b1, udp},
			want:    PairStats{Sent: 20, Lost: 20, SchedulingLagP99: 2 * time.Millisecond},
			lostTup: MaxLostTuples,
			rack:    LocationPair{"dc1-pod1-rack1", "dc1-pod1-rack2", udp},
			rackW:   Rollup{Sent: 21, Lost: 20},
		},
		{
			name: "results of the next window stay out",
			batches: []*wire.Batch{batch(c1, 1, 1,
				res(a1, tcp, ok, t0, time.Millisecond),
				res(a1, tcp, lost, t0.Add(w), 0),
			)},
			pair:  PairKey{c1, a1, tcp},
			want:  PairStats{Sent: 1, SchedulingLagP99: 2 * time.Millisecond},
			rack:  LocationPair{"dc1-pod2-rack1", "dc1-pod1-rack1", tcp},
			rackW: Rollup{Sent: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			agg, _ := newTestAggregator(t, Config{Window: w})
			var got []*SealedWindow
			agg.Subscribe(func(sw *SealedWindow) { got = append(got, sw) })
			for _, b := range tt.batches {
				if err := agg.Ingest(b, t0.Add(time.Second)); err != nil {
					t.Fatal(err)
				}
			}
			// One window past end + lateness: only the first window seals.
			sealed, err := agg.Advance(context.Background(), t0.Add(w+DefaultLateness))
			if err != nil {
				t.Fatal(err)
			}
			if len(sealed) != 1 || len(got) != 1 || !sealed[0].Start.Equal(t0) {
				t.Fatalf("sealed %d windows, subscriber got %d, want the one at %v", len(sealed), len(got), t0)
			}
			st := sealed[0].PairMap()[tt.pair]
			if st == nil {
				t.Fatalf("no stats for %v", tt.pair)
			}
			if st.Sent != tt.want.Sent || st.Lost != tt.want.Lost || st.SynRetransmits != tt.want.SynRetransmits || st.SchedulingLagP99 != tt.want.SchedulingLagP99 {
				t.Errorf("pair = %+v, want %+v", *st, tt.want)
			}
			if len(st.LostTuples()) != tt.lostTup {
				t.Errorf("%d lost tuples, want %d", len(st.LostTuples()), tt.lostTup)
			}
			r := sealed[0].RackPairs[tt.rack]
			if r == nil || r.Sent != tt.rackW.Sent || r.Lost != tt.rackW.Lost || r.SynRetransmits != tt.rackW.SynRetransmits {
				t.Errorf("rack pair %v = %+v, want %+v", tt.rack, r, tt.rackW)
			}
			out := sealed[0].Hosts[HostKey{tt.pair.Src, Out}]
			in := sealed[0].Hosts[HostKey{tt.pair.Dst, In}]
			if out == nil || in == nil || out.Sent < uint64(st.Sent) || in.Sent < uint64(st.Sent) {
				t.Errorf("host rollups out=%+v in=%+v, want at least the pair's %d", out, in, st.Sent)
			}
			pw := agg.PairWindows(tt.pair.Src, tt.pair.Dst, tt.pair.Proto, t0, t0.Add(time.Hour))
			if len(pw) != 1 || pw[0].Sent != uint64(tt.want.Sent) || pw[0].Lost != uint64(tt.want.Lost) {
				t.Errorf("PairWindows = %+v", pw)
			}
			// The rest seals later.
			if sealed, _ = agg.Advance(context.Background(), t0.Add(time.Hour)); len(got) != 1+len(sealed) {
				t.Errorf("subscriber saw %d windows, want %d", len(got), 1+len(sealed))
			}
		})
	}
}

func TestRejectionsAndAgents(t *testing.T) {
	w := 10 * time.Second
	now := aligned(w, time.Minute)
	const src, dst = "dc1-pod1-rack1-h01", "dc1-pod2-rack2-h02"
	tests := []struct {
		name    string
		b       *wire.Batch
		wantErr bool
		reason  string
		n       float64
	}{
		{"future", batch(src, 1, 1, res(dst, tcp, ok, now.Add(3*time.Minute), 1)), false, "clock_skew", 1},
		{"too old", batch(src, 1, 1, res(dst, tcp, ok, now.Add(-2*time.Hour), 1)), false, "too_old", 1},
		{"unknown dst", batch(src, 1, 1, res("nosuch", tcp, ok, now, 1), res(dst, tcp, ok, now, 1)), false, "unknown_host", 1},
		{"unknown agent", batch("intruder", 1, 1, res(dst, tcp, ok, now, 1)), true, "unknown_host", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			agg, _ := newTestAggregator(t, Config{Window: w})
			err := agg.Ingest(tt.b, now)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Ingest error = %v, want error %v", err, tt.wantErr)
			}
			if got := testutil.ToFloat64(agg.m.rejected.WithLabelValues(tt.reason)); got != tt.n {
				t.Errorf("rejected{reason=%q} = %v, want %v", tt.reason, got, tt.n)
			}
			agents := agg.Agents()
			if tt.wantErr {
				if len(agents) != 0 {
					t.Errorf("agents = %+v, want none", agents)
				}
				return
			}
			if len(agents) != 1 || agents[0].Agent != src || agents[0].Batches != 1 || agents[0].RejectedResults != 1 ||
				agents[0].Version != "test" || agents[0].PinglistVersion != 3 || !agents[0].LastSeen.Equal(now) {
				t.Errorf("agents = %+v", agents)
			}
		})
	}
}

func TestLateResults(t *testing.T) {
	w := 10 * time.Second
	t0 := aligned(w, 10*time.Minute)
	const src, dst = "dc1-pod1-rack1-h01", "dc1-pod2-rack2-h02"
	agg, _ := newTestAggregator(t, Config{Window: w})
	var first *SealedWindow
	agg.Subscribe(func(sw *SealedWindow) {
		if first == nil {
			first = sw
		}
	})
	if err := agg.Ingest(batch(src, 1, 1, res(dst, tcp, ok, t0, time.Millisecond)), t0); err != nil {
		t.Fatal(err)
	}
	if _, err := agg.Advance(context.Background(), t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	// An agent's spool replayed after an outage: far beyond the lateness.
	if err := agg.Ingest(batch(src, 1, 2, res(dst, tcp, lost, t0.Add(time.Second), 0), res(dst, tcp, ok, t0, 5*time.Millisecond)), t0.Add(3*time.Minute)); err != nil {
		t.Fatal(err)
	}
	pw := agg.PairWindows(src, dst, tcp, t0, t0.Add(w))
	if len(pw) != 1 || pw[0].Sent != 3 || pw[0].Lost != 1 || pw[0].LateResults != 2 || len(pw[0].LostTuples) != 1 {
		t.Fatalf("PairWindows after late results = %+v", pw)
	}
	if st := first.PairMap()[PairKey{src, dst, tcp}]; st.Sent != 1 || st.LatencyCount() != 1 {
		t.Errorf("the sealed window handed out changed: %+v", *st)
	}
	if got := testutil.ToFloat64(agg.m.late); got != 2 {
		t.Errorf("late results = %v, want 2", got)
	}
	c := agg.Counters("rack")[LocationPair{"dc1-pod1-rack1", "dc1-pod2-rack2", tcp}]
	if c.Probes != 3 || c.Lost != 1 {
		t.Errorf("rack counter = %+v, want 3 probes 1 lost", c)
	}
	// Detail older than the recent horizon is dropped.
	if _, err := agg.Advance(context.Background(), t0.Add(DefaultRecent+time.Minute)); err != nil {
		t.Fatal(err)
	}
	if pw := agg.PairWindows(src, dst, tcp, t0, t0.Add(w)); len(pw) != 0 {
		t.Errorf("detail beyond the horizon still served: %+v", pw)
	}
}

// TestIdleWindows: when the seal passes a window end with nothing of the
// aggregator's ending there (its agents silent, or none), SubscribeIdle
// and takeIdle get the empty window ending at the cut, once per cut;
// never when a sealed window ends there.
func TestIdleWindows(t *testing.T) {
	w := 10 * time.Second
	t0 := aligned(w, 10*time.Minute)
	const src, dst = "dc1-pod1-rack1-h01", "dc1-pod1-rack1-h02"
	agg, _ := newTestAggregator(t, Config{Window: w, Lateness: 5 * time.Second, IgnoreMarks: true})
	var sealed, idle []*SealedWindow
	agg.Subscribe(func(sw *SealedWindow) { sealed = append(sealed, sw) })
	agg.SubscribeIdle(func(sw *SealedWindow) { idle = append(idle, sw) })
	advance := func(now time.Time) {
		t.Helper()
		if _, err := agg.Advance(context.Background(), now); err != nil {
			t.Fatal(err)
		}
	}
	if err := agg.Ingest(batch(src, 1, 1, res(dst, tcp, ok, t0.Add(time.Second), time.Millisecond)), t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	advance(t0.Add(w + 5*time.Second)) // window 0 sealed, at the cut
	if len(sealed) != 1 || len(idle) != 0 || agg.takeIdle() != nil {
		t.Fatalf("after the first seal: %d sealed, %d idle, want 1 and 0", len(sealed), len(idle))
	}
	advance(t0.Add(2*w + 4*time.Second)) // before the next cut: nothing
	advance(t0.Add(2*w + 5*time.Second)) // window 1 passed, empty
	advance(t0.Add(2*w + 9*time.Second)) // the same cut again
	if len(idle) != 1 || !idle[0].Start.Equal(t0.Add(w)) || !idle[0].End.Equal(t0.Add(2*w)) || !idle[0].Empty() {
		t.Fatalf("idle windows %v, want the empty window 1", idle)
	}
	if got := agg.takeIdle(); got != idle[0] || agg.takeIdle() != nil {
		t.Errorf("takeIdle gave %v then more, want window 1 once", got)
	}
	// A jump of several windows: only the one ending at the cut.
	advance(t0.Add(6*w + 5*time.Second))
	if len(idle) != 2 || !idle[1].Start.Equal(t0.Add(5*w)) || len(sealed) != 1 {
		t.Errorf("after a jump: idle %v, %d sealed; want window 5 idle and nothing sealed", idle, len(sealed))
	}
}

func TestWindowRollover(t *testing.T) {
	w := 10 * time.Second
	t0 := aligned(w, 10*time.Minute)
	const src, dst = "dc1-pod1-rack1-h01", "dc1-pod1-rack1-h02"
	agg, _ := newTestAggregator(t, Config{Window: w, Lateness: 5 * time.Second})
	var sealed []*SealedWindow
	agg.Subscribe(func(sw *SealedWindow) { sealed = append(sealed, sw) })
	now := t0
	for i := 0; i < 60; i++ { // one probe a second for a minute
		now = t0.Add(time.Duration(i) * time.Second)
		if err := agg.Ingest(batch(src, 1, uint64(i+1), res(dst, tcp, ok, now, time.Millisecond)), now); err != nil {
			t.Fatal(err)
		}
		if _, err := agg.Advance(context.Background(), now); err != nil {
			t.Fatal(err)
		}
	}
	// Windows 0..4 are sealed (the 5th ends at 50 s, sealed at 55 s).
	if len(sealed) != 5 {
		t.Fatalf("sealed %d windows, want 5", len(sealed))
	}
	for i, sw := range sealed {
		if !sw.Start.Equal(t0.Add(time.Duration(i)*w)) || sw.PairMap()[PairKey{src, dst, tcp}].Sent != 10 {
			t.Errorf("window %d: start %v sent %d", i, sw.Start, sw.PairMap()[PairKey{src, dst, tcp}].Sent)
		}
	}
	if got := agg.SealedUntil(); !got.Equal(t0.Add(50 * time.Second)) {
		t.Errorf("sealed until %v", got)
	}
}

// TestSketchAccuracy checks the quantiles read from pair rollups against the
// exact ones: within the 1% relative accuracy the sketch promises.
func TestSketchAccuracy(t *testing.T) {
	t.Run("sparse pairs", testSparseRollupAccuracy)
	rng := rand.New(rand.NewPCG(1, 2))
	dists := []struct {
		name string
		gen  func() float64 // seconds
	}{
		{"uniform 50-500us", func() float64 { return 50e-6 + rng.Float64()*450e-6 }},
		{"lognormal datacenter RTT", func() float64 { return 100e-6 * math.Exp(rng.NormFloat64()*0.8) }},
		{"exponential", func() float64 { return 1e-6 + rng.ExpFloat64()*200e-6 }},
		{"bimodal with SYN-timeout tail", func() float64 {
			if rng.Float64() < 0.02 {
				return 1 + rng.Float64()*0.01
			}
			return 40e-6 + rng.Float64()*20e-6
		}},
	}
	for _, d := range dists {
		t.Run(d.name, func(t *testing.T) {
			w := 10 * time.Second
			t0 := aligned(w, 10*time.Minute)
			agg, _ := newTestAggregator(t, Config{Window: w})
			hosts := []string{"dc1-pod1-rack1-h01", "dc1-pod1-rack1-h02", "dc1-pod1-rack2-h01", "dc1-pod1-rack2-h02"}
			var exact []float64
			for i, src := range hosts[:2] {
				var rs []*wire.ProbeResult
				for j := 0; j < 10000; j++ {
					v := d.gen()
					rtt := time.Duration(v * 1e9)
					exact = append(exact, float64(rtt)/1e9)
					rs = append(rs, res(hosts[2+j%2], tcp, ok, t0.Add(time.Millisecond), rtt))
				}
				if err := agg.Ingest(batch(src, 1, uint64(i+1), rs...), t0); err != nil {
					t.Fatal(err)
				}
			}
			sealed, err := agg.Advance(context.Background(), t0.Add(time.Minute))
			if err != nil || len(sealed) != 1 {
				t.Fatalf("sealed %d windows, err %v", len(sealed), err)
			}
			// Both sources are in rack1, both destinations in rack2: the rack
			// pair sketch is the merge of four pair sketches.
			r := sealed[0].RackPairs[LocationPair{"dc1-pod1-rack1", "dc1-pod1-rack2", tcp}]
			sort.Float64s(exact)
			for _, q := range append([]float64{0.01, 0.25}, Quantiles...) {
				want := exact[int(q*float64(len(exact)-1))]
				got, ok := r.Quantile(q)
				if !ok || math.Abs(got-want) > RelativeAccuracy*want {
					t.Errorf("q%v = %v, exact %v: relative error %.4f", q, got, want, math.Abs(got-want)/want)
				}
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{
		{Window: time.Microsecond},
		{Lateness: -time.Second},
		{Window: time.Minute, Recent: time.Second},
		{MaxFuture: -1},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

// testSparseRollupAccuracy: one probe per pair per window (the usual
// Pingmesh case), so the rollups are built from the pairs' inline RTTs.
func testSparseRollupAccuracy(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	w := 10 * time.Second
	t0 := aligned(w, 10*time.Minute)
	fab := newFabric(1, 2, 2, 50)
	agg, _ := newTestAggregator(t, Config{Window: w, Locator: fab})
	var exact []float64
	seq := uint64(0)
	for src := range fab {
		var rs []*wire.ProbeResult
		for dst := range fab {
			rtt := time.Duration(30_000 + rng.IntN(200_000) + rng.IntN(2)*rng.IntN(5_000_000))
			exact = append(exact, float64(rtt)/1e9)
			rs = append(rs, res(dst, tcp, ok, t0, rtt))
		}
		seq++
		if err := agg.Ingest(batch(src, 1, seq, rs...), t0); err != nil {
			t.Fatal(err)
		}
	}
	sealed, err := agg.Advance(context.Background(), t0.Add(time.Minute))
	if err != nil || len(sealed) != 1 {
		t.Fatalf("sealed %d windows, err %v", len(sealed), err)
	}
	r := sealed[0].DCPairs[LocationPair{"dc1", "dc1", tcp}]
	if r == nil || r.LatencyCount() != len(exact) {
		t.Fatalf("dc rollup %+v, want %d RTTs", r, len(exact))
	}
	sort.Float64s(exact)
	for _, q := range Quantiles {
		want := exact[int(q*float64(len(exact)-1))]
		got, ok := r.Quantile(q)
		if !ok || math.Abs(got-want) > RelativeAccuracy*want {
			t.Errorf("q%v = %v, exact %v: relative error %.4f", q, got, want, math.Abs(got-want)/want)
		}
	}
	// The pair level stays exact.
	for _, e := range sealed[0].Pairs[:10] {
		if v, ok := e.Stats.Quantile(0.5); !ok || v <= 0 {
			t.Errorf("pair %v median %v", e.Key, v)
		}
	}
}

// TestMergeWindows: two partitions' aggregators seal the same window; the
// merge equals what one aggregator seeing everything seals.
func TestMergeWindows(t *testing.T) {
	w := 10 * time.Second
	t0 := aligned(w, 10*time.Minute)
	fab := newFabric(1, 2, 2, 3)
	rng := rand.New(rand.NewPCG(13, 14))
	all, _ := newTestAggregator(t, Config{Window: w, Locator: fab})
	p0, _ := newTestAggregator(t, Config{Window: w, Locator: fab})
	p1, _ := newTestAggregator(t, Config{Window: w, Locator: fab})
	i := 0
	for src := range fab {
		var rs []*wire.ProbeResult
		for dst := range fab {
			for k := 0; k < 3; k++ {
				outcome := ok
				if rng.IntN(10) == 0 {
					outcome = lost
				}
				rs = append(rs, res(dst, tcp, outcome, t0, time.Duration(20_000+rng.IntN(500_000))))
			}
		}
		b := batch(src, 1, 1, rs...)
		part := []*Aggregator{p0, p1}[i%2]
		i++
		for _, a := range []*Aggregator{all, part} {
			if err := a.Ingest(b, t0); err != nil {
				t.Fatal(err)
			}
		}
	}
	seal := func(a *Aggregator) *SealedWindow {
		s, err := a.Advance(context.Background(), t0.Add(time.Minute))
		if err != nil || len(s) != 1 {
			t.Fatalf("sealed %d, %v", len(s), err)
		}
		return s[0]
	}
	want := seal(all)
	s0, s1 := seal(p0), seal(p1)
	before := s0.DCPairs[LocationPair{"dc1", "dc1", tcp}].LatencyCount()
	got := MergeWindows(s0, s1)
	if s0.DCPairs[LocationPair{"dc1", "dc1", tcp}].LatencyCount() != before {
		t.Error("merging modified a part")
	}
	if len(got.Pairs) != len(want.Pairs) {
		t.Errorf("%d pairs, want %d", len(got.Pairs), len(want.Pairs))
	}
	for name, maps := range map[string][2]map[LocationPair]*Rollup{
		"rack": {got.RackPairs, want.RackPairs}, "pod": {got.PodPairs, want.PodPairs}, "dc": {got.DCPairs, want.DCPairs},
	} {
		if len(maps[0]) != len(maps[1]) {
			t.Errorf("%s: %d rollups, want %d", name, len(maps[0]), len(maps[1]))
		}
		for k, w := range maps[1] {
			g := maps[0][k]
			if g == nil || g.Sent != w.Sent || g.Lost != w.Lost || g.LatencyCount() != w.LatencyCount() {
				t.Errorf("%s %v: got %+v, want %+v", name, k, g, w)
				continue
			}
			gq, _ := g.Quantile(0.99)
			wq, _ := w.Quantile(0.99)
			if gq != wq {
				t.Errorf("%s %v: p99 %v, want %v", name, k, gq, wq)
			}
		}
	}
	for k, w := range want.Hosts {
		if g := got.Hosts[k]; g == nil || g.Sent != w.Sent || g.LatencyCount() != w.LatencyCount() {
			t.Errorf("host %v: got %+v, want %+v", k, g, w)
		}
	}
}

func TestFloorTo(t *testing.T) {
	for _, c := range []struct{ t, w, want int64 }{
		{25, 10, 20}, {20, 10, 20}, {0, 10, 0}, {-1, 10, -10}, {-10, 10, -10}, {-11, 10, -20},
	} {
		if got := floorTo(c.t, c.w); got != c.want {
			t.Errorf("floorTo(%d, %d) = %d, want %d", c.t, c.w, got, c.want)
		}
	}
}
