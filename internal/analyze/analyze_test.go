package analyze

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshlens/meshlens/internal/aggregate"
	"github.com/meshlens/meshlens/internal/localize"
	"github.com/meshlens/meshlens/internal/topology"
	"github.com/meshlens/meshlens/internal/wire"
)

const width = 10 * time.Second

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// win is the start of window i.
func win(i int) time.Time { return t0.Add(time.Duration(i) * width) }

// seen is one window as a localizer was given it.
type seen struct {
	start  time.Time
	sent   uint64 // rack-pair probes of the merged window
	traces []localize.Trace
}

// recorder is a localizer that keeps what it is given and blames nothing.
type recorder struct {
	name string
	got  []seen
}

func (r *recorder) Name() string { return r.name }
func (r *recorder) Localize(w *localize.Window) ([]localize.Suspect, error) {
	s := seen{start: w.Sealed.Start, traces: w.Traces}
	for _, rp := range w.Sealed.RackPairs {
		s.sent += rp.Sent
	}
	r.got = append(r.got, s)
	return []localize.Suspect{{Element: "x", Kind: localize.KindDevice}}, nil
}

func testIndex(t testing.TB) *localize.Index {
	t.Helper()
	topo, err := topology.Generate(topology.GenSpec{DCs: 1, Pods: 2, RacksPerPod: 2, HostsPerRack: 2, LeavesPerPod: 2, Spines: 2, BaseAddr: "127.9.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	x, err := localize.NewIndex(topo)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// newTest is an Analyzer whose first localizer is the returned recorder.
func newTest(t testing.TB, x *localize.Index, cfg Config) (*Analyzer, *recorder) {
	t.Helper()
	cfg.Window = width
	rec := &recorder{name: "recorder"}
	a, err := newAnalyzer(x, cfg, func(string, *localize.Index, localize.Config) (localize.Localizer, error) { return rec, nil })
	if err != nil {
		t.Fatal(err)
	}
	return a, rec
}

// half is a partition's half of window i with sent probes.
func half(i int, sent uint64) *aggregate.SealedWindow {
	return &aggregate.SealedWindow{Start: win(i), End: win(i + 1),
		RackPairs: map[aggregate.LocationPair]*aggregate.Rollup{{Src: "r1", Dst: "r2"}: {Sent: sent}}}
}

func TestPartitionMerge(t *testing.T) {
	type in struct {
		partition, window int
		sent              uint64
		empty             bool // the aggregator's window with nothing in it
	}
	type localized struct {
		window int
		sent   uint64
	}
	cases := []struct {
		name    string
		ingests []in
		now     time.Time // of the final Advance
		want    []localized
		dropped map[string]float64
	}{
		{
			name:    "both halves merged",
			ingests: []in{{0, 0, 3, false}, {1, 0, 4, false}},
			want:    []localized{{0, 7}},
		},
		{
			name:    "waits for the second partition",
			ingests: []in{{0, 0, 3, false}, {0, 1, 3, false}},
			want:    nil,
		},
		{
			name: "a partition that skips a window had nothing in it",
			// Partition 1 seals window 2 without window 1: window 1 is
			// partition 0's alone, in order before window 2.
			ingests: []in{{0, 0, 1, false}, {1, 0, 1, false}, {0, 1, 5, false}, {0, 2, 1, false}, {1, 2, 2, false}},
			want:    []localized{{0, 2}, {1, 5}, {2, 3}},
		},
		{
			name:    "a silent partition makes windows stale",
			ingests: []in{{0, 0, 1, false}, {0, 1, 1, false}},
			now:     win(2).Add(6 * width),
			want:    nil,
			dropped: map[string]float64{dropStale: 2},
		},
		{
			name: "an empty window says its partition passed it",
			// Partition 1 has no agents, or all of them are silent.
			ingests: []in{{0, 0, 3, false}, {1, 0, 0, true}, {1, 1, 0, true}, {0, 1, 4, false}},
			want:    []localized{{0, 3}, {1, 4}},
		},
		{
			name:    "an empty window before the other partition's half",
			ingests: []in{{1, 0, 0, true}, {0, 0, 3, false}},
			want:    []localized{{0, 3}},
		},
		{
			name:    "empty windows alone localize nothing",
			ingests: []in{{0, 0, 0, true}, {1, 0, 0, true}, {0, 1, 0, true}, {1, 1, 0, true}},
			now:     win(2).Add(6 * width),
			want:    nil,
		},
		{
			name:    "a half after its window was done is late",
			ingests: []in{{0, 0, 1, false}, {1, 0, 1, false}, {1, 0, 9, false}},
			want:    []localized{{0, 2}},
			dropped: map[string]float64{dropLate: 1},
		},
		{
			name:    "a re-sealed half replaces the first",
			ingests: []in{{0, 0, 1, false}, {0, 0, 5, false}, {1, 0, 1, false}},
			want:    []localized{{0, 6}},
		},
	}
	x := testIndex(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, rec := newTest(t, x, Config{Partitions: []int{0, 1}})
			var got []localized
			var vs []Verdict
			advance := func(now time.Time) {
				v, err := a.Advance(now)
				if err != nil {
					t.Fatal(err)
				}
				vs = append(vs, v...)
			}
			for _, i := range tc.ingests {
				w := half(i.window, i.sent)
				if i.empty {
					w = &aggregate.SealedWindow{Start: win(i.window), End: win(i.window + 1)}
				}
				a.IngestWindow(i.partition, w)
				advance(win(i.window + 1))
			}
			if !tc.now.IsZero() {
				advance(tc.now)
			}
			for _, s := range rec.got {
				got = append(got, localized{int(s.start.Sub(t0) / width), s.sent})
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("localized %v, want %v", got, tc.want)
			}
			if len(vs) != len(tc.want) {
				t.Errorf("%d verdicts, want %d", len(vs), len(tc.want))
			}
			for _, r := range []string{dropStale, dropLate, dropBehind} {
				if n := testutil.ToFloat64(a.m.windowsDropped.WithLabelValues(r)); n != tc.dropped[r] {
					t.Errorf("dropped %s: %v, want %v", r, n, tc.dropped[r])
				}
			}
		})
	}
}

func TestMaxPending(t *testing.T) {
	a, _ := newTest(t, testIndex(t), Config{Partitions: []int{0, 1}, MaxPending: 2})
	for i := range 5 {
		a.IngestWindow(0, half(i, 1))
	}
	if n := testutil.ToFloat64(a.m.windowsDropped.WithLabelValues(dropBehind)); n != 3 {
		t.Errorf("dropped behind: %v, want 3", n)
	}
	if len(a.pending) != 2 {
		t.Errorf("%d pending, want 2", len(a.pending))
	}
}

const (
	src = "dc1-pod1-rack1-h01"
	dst = "dc1-pod2-rack1-h02"
)

// path is a complete forward path src -> dst.
var path = []string{"dc1-pod1-rack1-tor", "dc1-pod1-leaf1", "dc1-spine2", "dc1-pod2-leaf1", "dc1-pod2-rack1-tor", dst}

func report(agent string, probes ...*wire.TracedProbe) []byte {
	data, err := (&wire.PathReport{Agent: agent, Probes: probes}).MarshalVT()
	if err != nil {
		panic(err)
	}
	return data
}

func traced(start time.Time, hops ...string) *wire.TracedProbe {
	return &wire.TracedProbe{Dst: dst, Protocol: wire.Protocol_PROTOCOL_TCP, StartUnixNano: start.UnixNano(),
		TracedUnixNano: start.Add(time.Second).UnixNano(), Lost: true, Hops: hops}
}

// TestLateTracesJoin: a trace joins the first window localized whose end
// is after its probe started, within the localizer's horizon.
func TestLateTracesJoin(t *testing.T) {
	a, rec := newTest(t, testIndex(t), Config{})
	at := func(i int, d time.Duration) time.Time { return win(i).Add(d) }
	ingest := func(probeStart time.Time) error {
		return a.IngestPathData(src, report(src, traced(probeStart, path...)), probeStart.Add(2*time.Second))
	}
	step := func(i int) {
		a.IngestWindow(0, half(i, 1))
		if _, err := a.Advance(win(i + 1)); err != nil {
			t.Fatal(err)
		}
	}
	// In time for window 0, and one for window 1 already.
	if err := ingest(at(0, time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := ingest(at(1, time.Second)); err != nil {
		t.Fatal(err)
	}
	step(0)
	// Window 0's trace arrives after window 0 was localized: window 1
	// takes it beside its own.
	if err := ingest(at(0, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	step(1)
	step(2)
	// Window 1 is at the edge of window 3's horizon (3 windows): still
	// joins window 3; window 0 is before it.
	if err := ingest(at(1, 2*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := ingest(at(0, 9*time.Second)); !errors.Is(err, ErrTooOld) {
		t.Fatalf("trace before the horizon: err %v, want %v", err, ErrTooOld)
	}
	step(3)
	var counts []int
	for _, s := range rec.got {
		counts = append(counts, len(s.traces))
	}
	if want := []int{1, 2, 0, 1}; !slices.Equal(counts, want) {
		t.Errorf("traces per window %v, want %v", counts, want)
	}
	if n := testutil.ToFloat64(a.m.accepted); n != 4 {
		t.Errorf("accepted %v, want 4", n)
	}
	if n := testutil.ToFloat64(a.m.rejected.WithLabelValues(reasonTooOld)); n != 1 {
		t.Errorf("rejected too_old %v, want 1", n)
	}
	if tr := rec.got[0].traces[0]; tr.Src < 0 || len(tr.Hops) != len(path) || !tr.Reached {
		t.Errorf("trace not resolved: %+v", tr)
	}
}

// TestDroppedWindowExpiresTraces: traces buffered for a window that is
// dropped join the next one if still in the horizon, else expire.
func TestDroppedWindowExpiresTraces(t *testing.T) {
	a, rec := newTest(t, testIndex(t), Config{Partitions: []int{0, 1}})
	if err := a.IngestPathData(src, report(src, traced(win(0), path...)), win(0)); err != nil {
		t.Fatal(err)
	}
	a.IngestWindow(0, half(0, 1))
	// Partition 1 never speaks; window 0 goes stale.
	for _, now := range []time.Time{win(1), win(10)} {
		if _, err := a.Advance(now); err != nil {
			t.Fatal(err)
		}
	}
	a.IngestWindow(0, half(10, 1))
	a.IngestWindow(1, half(10, 1))
	if _, err := a.Advance(win(11)); err != nil {
		t.Fatal(err)
	}
	if len(rec.got) != 1 || len(rec.got[0].traces) != 0 {
		t.Fatalf("localized %+v, want window 10 alone without the expired trace", rec.got)
	}
	if n := testutil.ToFloat64(a.m.tracesExpired); n != 1 {
		t.Errorf("expired %v, want 1", n)
	}
}

// TestRejections: every kind of bad report is counted under its reason and
// none of its traces reaches the localizer, not even its good ones.
func TestRejections(t *testing.T) {
	x := testIndex(t)
	good := traced(win(0), path...)
	tooLong := append(slices.Clone(path), "*")
	cases := []struct {
		name      string
		publisher string
		data      []byte
		reason    string
	}{
		{"not protobuf", src, []byte{0xff, 0xff, 0xff}, "malformed"},
		{"too large", src, make([]byte, wire.MaxBatchBytes+1), "too_large"},
		{"no agent", src, report(""), "invalid_field"},
		{"no hops", src, report(src, &wire.TracedProbe{Dst: dst}), "invalid_field"},
		{"speaks for another", "dc1-pod1-rack2-h01", report(src, good), reasonSubjectMismatch},
		{"unknown destination", src, report(src, good, &wire.TracedProbe{Dst: "nowhere", Hops: []string{"*"}, StartUnixNano: win(0).UnixNano()}), "unknown_host"},
		{"unknown hop", src, report(src, good, traced(win(0), "dc1-pod1-rack1-tor", "198.51.100.7")), "unknown_hop"},
		{"loop", src, report(src, traced(win(0), "dc1-pod1-rack1-tor", "dc1-pod1-leaf1", "dc1-pod1-rack1-tor")), "loop"},
		{"too long", src, report(src, traced(win(0), tooLong...)), "too_long"},
		{"not linked", src, report(src, traced(win(0), "dc1-pod1-rack1-tor", "dc1-spine2")), "not_adjacent"},
		{"reached elsewhere", src, report(src, &wire.TracedProbe{Dst: dst, Hops: []string{"dc1-pod1-rack1-tor"}, Reached: true, StartUnixNano: win(0).UnixNano()}), "wrong_endpoint"},
		{"from the future", src, report(src, good, traced(win(5), path...)), reasonFromFuture},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, rec := newTest(t, x, Config{})
			if err := a.IngestPathData(tc.publisher, tc.data, win(0)); err == nil {
				t.Fatal("accepted")
			}
			for _, r := range RejectReasons() {
				want := 0.0
				if r == tc.reason {
					want = 1
				}
				if n := testutil.ToFloat64(a.m.rejected.WithLabelValues(r)); n != want {
					t.Errorf("rejected %s: %v, want %v", r, n, want)
				}
			}
			if n := testutil.ToFloat64(a.m.accepted); n != 0 {
				t.Errorf("accepted %v", n)
			}
			a.IngestWindow(0, half(0, 1))
			if _, err := a.Advance(win(1)); err != nil {
				t.Fatal(err)
			}
			if len(rec.got) != 1 || len(rec.got[0].traces) != 0 {
				t.Errorf("the localizer was given %+v", rec.got)
			}
		})
	}
	t.Run("buffer full", func(t *testing.T) {
		a, rec := newTest(t, x, Config{MaxBufferedTraces: 2})
		if err := a.IngestPathData(src, report(src, good, good), win(0)); err != nil {
			t.Fatal(err)
		}
		if err := a.IngestPathData(src, report(src, good), win(0)); !errors.Is(err, ErrBufferFull) {
			t.Fatalf("err %v, want %v", err, ErrBufferFull)
		}
		if n := testutil.ToFloat64(a.m.rejected.WithLabelValues(reasonBufferFull)); n != 1 {
			t.Errorf("rejected buffer_full %v, want 1", n)
		}
		a.IngestWindow(0, half(0, 1))
		if _, err := a.Advance(win(1)); err != nil {
			t.Fatal(err)
		}
		if len(rec.got[0].traces) != 2 {
			t.Errorf("%d traces joined, want the 2 accepted", len(rec.got[0].traces))
		}
	})
}

func TestMetricsRegister(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := New(testIndex(t), Config{Window: width, Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	n, err := testutil.GatherAndCount(reg, "meshlens_path_reports_rejected_total")
	if err != nil {
		t.Fatal(err)
	}
	if n != len(RejectReasons()) {
		t.Errorf("%d reasons exported, want %d", n, len(RejectReasons()))
	}
}

func TestVerdictAt(t *testing.T) {
	a, _ := newTest(t, testIndex(t), Config{Keep: 3})
	if _, ok := a.VerdictAt(time.Time{}); ok {
		t.Fatal("a verdict before any window")
	}
	if v := a.SuspectsAt(time.Time{}).(Verdict); v.Suspects == nil || len(v.Suspects) != 0 {
		t.Errorf("empty verdict %+v, want empty suspects", v)
	}
	for i := range 5 {
		a.IngestWindow(0, half(i, 1))
		if _, err := a.Advance(win(i + 1)); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		at   time.Time
		want int // window
	}{
		{time.Time{}, 4},
		{win(4).Add(time.Second), 4},
		{win(3).Add(time.Second), 3},
		{win(3), 2}, // the window ending at it
		{win(0), 2}, // forgotten: the oldest kept
		{win(9), 4},
	}
	for _, tc := range cases {
		v, ok := a.VerdictAt(tc.at)
		if !ok || !v.Start.Equal(win(tc.want)) {
			t.Errorf("VerdictAt(%v) = window %v, want %v", tc.at, v.Start.Sub(t0)/width, tc.want)
		}
	}
}

// TestLocalizersSideBySide: real localizers run on the same windows, the
// first one's verdicts make the history.
func TestLocalizersSideBySide(t *testing.T) {
	a, err := New(testIndex(t), Config{Window: width, Localizers: []string{localize.NameMeshlens, localize.NameVote}})
	if err != nil {
		t.Fatal(err)
	}
	a.IngestWindow(0, half(0, 1))
	vs, err := a.Advance(win(1))
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 2 || vs[0].Localizer != localize.NameMeshlens || vs[1].Localizer != localize.NameVote {
		t.Fatalf("verdicts %+v", vs)
	}
	if v, _ := a.VerdictAt(time.Time{}); v.Localizer != localize.NameMeshlens {
		t.Errorf("history holds %s's verdict", v.Localizer)
	}
	if _, err := New(testIndex(t), Config{Window: width, Localizers: []string{"nope"}}); err == nil {
		t.Error("unknown localizer accepted")
	}
}

// TestUnvalidatedReport: a report handed over without the decoder's checks
// (a nil probe) is refused, not a crash.
func TestUnvalidatedReport(t *testing.T) {
	a, _ := newTest(t, testIndex(t), Config{})
	if err := a.IngestPathReport(src, &wire.PathReport{Agent: src, Probes: []*wire.TracedProbe{nil}}, win(0)); !errors.Is(err, wire.ErrInvalidField) {
		t.Fatalf("err %v, want %v", err, wire.ErrInvalidField)
	}
	if n := testutil.ToFloat64(a.m.rejected.WithLabelValues("invalid_field")); n != 1 {
		t.Errorf("rejected invalid_field %v, want 1", n)
	}
}

// TestLongLatenessIsNotStale: staleness counts from when a window was
// first found waiting, not from its end, so halves sealed long after the
// window ended (a long --lateness) still merge.
func TestLongLatenessIsNotStale(t *testing.T) {
	a, rec := newTest(t, testIndex(t), Config{Partitions: []int{0, 1}})
	late := 20 * width // far beyond StaleAfter (six windows)
	a.IngestWindow(0, half(0, 1))
	if _, err := a.Advance(win(1).Add(late)); err != nil {
		t.Fatal(err)
	}
	a.IngestWindow(1, half(0, 2))
	if _, err := a.Advance(win(1).Add(late + time.Second)); err != nil {
		t.Fatal(err)
	}
	if len(rec.got) != 1 || rec.got[0].sent != 3 {
		t.Errorf("localized %+v, want window 0 with both halves", rec.got)
	}
}
