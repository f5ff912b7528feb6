package aggregate

import (
	"context"
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshlens/meshlens/internal/wire"
)

// meshBatches is one window of a full mesh: every host probes every
// other host over tcp and udp once, at start; the pairs of lossy lose
// their probe, the others answer in 100 µs. late adds, to each source's
// batch, lost probes to its next host for the window before (sealed by
// then): over udp, a pair the window holds, and over icmp, one it does
// not. Addresses are fresh strings, as decoded ones are.
func meshBatches(hosts []string, start time.Time, seq uint64, lossy map[PairKey]bool, late bool) []*wire.Batch {
	var out []*wire.Batch
	for i, src := range hosts {
		var rs []*wire.ProbeResult
		for _, dst := range hosts {
			if dst == src {
				continue
			}
			for _, proto := range []wire.Protocol{tcp, udp} {
				outcome := ok
				if lossy[PairKey{src, dst, proto}] {
					outcome = lost
				}
				r := res(dst, proto, outcome, start, 100*time.Microsecond)
				r.SrcAddr, r.DstAddr = strings.Clone(r.SrcAddr), strings.Clone(r.DstAddr)
				rs = append(rs, r)
			}
		}
		if late {
			next := hosts[(i+1)%len(hosts)]
			rs = append(rs, res(next, udp, lost, start.Add(-time.Second), 0), res(next, wire.Protocol_PROTOCOL_ICMP, lost, start.Add(-time.Second), 0))
		}
		out = append(out, batch(src, 1, seq*1000+uint64(i), rs...))
	}
	return out
}

// feedMesh ingests one mesh window at start and advances past it.
func feedMesh(t testing.TB, a *Aggregator, hosts []string, start time.Time, w time.Duration, seq uint64, lossy map[PairKey]bool, late bool) []*SealedWindow {
	t.Helper()
	for _, b := range meshBatches(hosts, start, seq, lossy, late) {
		if err := a.Ingest(b, start.Add(w)); err != nil {
			t.Fatal(err)
		}
	}
	sealed, err := a.Advance(context.Background(), start.Add(w+2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return sealed
}

// recount checks the byte accounting against the windows as they are:
// every window's estimate recomputed from scratch, and their sum.
func recount(t *testing.T, a *Aggregator) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	var sum int64
	for s, rw := range a.recent {
		want := rw.trimmedBytes()
		if rw.stats != nil {
			n, extra := 0, int64(0)
			for _, st := range rw.stats {
				if st != nil {
					n++
					extra += st.extraBytes()
				}
			}
			want = windowBytes(rw.stats, n, extra) + rw.lateBytes()
		}
		if rw.bytes != want {
			t.Errorf("window %v: accounted %d bytes, holds %d", time.Unix(0, s).UTC(), rw.bytes, want)
		}
		sum += rw.bytes
	}
	if sum != a.detailBytes {
		t.Errorf("windows hold %d bytes, the aggregator accounts %d", sum, a.detailBytes)
	}
}

// pairWhere is the first pair of the mesh, in name order, whose sample
// hash satisfies fn.
func pairWhere(t *testing.T, hosts []string, fn func(hash uint32) bool) PairKey {
	t.Helper()
	for _, src := range hosts {
		for _, dst := range hosts {
			if k := (PairKey{src, dst, tcp}); src != dst && fn(pairSample(k)) {
				return k
			}
		}
	}
	t.Fatal("no pair of the mesh fits")
	return PairKey{}
}

// TestPairDetailBudget runs 40 windows of a 32-host mesh (1,984 pairs a
// window) under a budget of about four windows' full detail: after every
// seal the bytes accounted stay within the budget (and match what the
// windows hold); windows with loss are all kept, so are those of a pair
// looked at, from the look on; a pair outside the sample has its detail
// from a point on, which PairDetail names.
func TestPairDetailBudget(t *testing.T) {
	w := 10 * time.Second
	fab := newFabric(1, 2, 4, 4)
	hosts := fab.hosts()
	const rounds = 40
	budget := int64(1_200_000)
	a, _ := newTestAggregator(t, Config{Locator: fab, Window: w, Lateness: time.Second, Recent: time.Hour, PairDetailMaxBytes: budget})
	t0 := aligned(w, time.Hour)
	lossy := map[PairKey]bool{}
	for i, src := range hosts {
		lossy[PairKey{src, hosts[(i+7)%len(hosts)], udp}] = true
	}
	// Neither pair is in any sample: only a look or a loss keeps them.
	notSampled := func(h uint32) bool { return h&1 == 1 }
	looked := pairWhere(t, hosts, notSampled)
	other := pairWhere(t, hosts, func(h uint32) bool { return notSampled(h) && h != pairSample(looked) })
	const lookAt = 10
	for r := range rounds {
		start := t0.Add(time.Duration(r) * w)
		if r == lookAt {
			a.PairWindows(looked.Src, looked.Dst, looked.Proto, t0, start)
		}
		if got := feedMesh(t, a, hosts, start, w, uint64(r+1), lossy, false); len(got) != 1 {
			t.Fatalf("round %d sealed %d windows, want 1", r, len(got))
		}
		if held := testutil.ToFloat64(a.m.detailBytes); held > float64(budget) || held != float64(a.detailBytes) || held == 0 {
			t.Fatalf("round %d: meshlens_aggregate_pair_detail_bytes %v, accounted %d, budget %d", r, held, a.detailBytes, budget)
		}
		recount(t, a)
	}
	if got := testutil.ToFloat64(a.m.detailBudget); got != float64(budget) {
		t.Errorf("budget gauge %v, want %d", got, budget)
	}
	if testutil.ToFloat64(a.m.detailTrimmed) == 0 {
		t.Fatal("nothing trimmed: the budget did not bite")
	}
	end := t0.Add(rounds * w)
	for k := range lossy {
		if got := a.PairWindows(k.Src, k.Dst, k.Proto, t0, end); len(got) != rounds {
			t.Errorf("lossy pair %v: %d windows kept, want all %d", k, len(got), rounds)
		}
	}
	// Complete, as PairDetail says, from the look on at the latest.
	ld := a.PairDetail(looked.Src, looked.Dst, looked.Proto, t0, end)
	if ld.Mode == DetailBudget && ld.CompleteFrom.After(t0.Add(lookAt*w)) {
		t.Errorf("PairDetail(%v) = %+v: the pair was looked at from %v", looked, ld, t0.Add(lookAt*w))
	}
	got := a.PairWindows(looked.Src, looked.Dst, looked.Proto, t0, end)
	if ld.Mode == DetailBudget && len(got) != int(end.Sub(ld.CompleteFrom)/w) {
		t.Errorf("looked-at pair %v: %d windows, PairDetail says complete from %v", looked, len(got), ld.CompleteFrom)
	}
	if len(got) < rounds-lookAt || !got[len(got)-1].Start.Equal(end.Add(-w)) {
		t.Errorf("looked-at pair %v: %d windows kept, want at least the %d since the look", looked, len(got), rounds-lookAt)
	}
	for i := range rounds - lookAt {
		if want := t0.Add(time.Duration(lookAt+i) * w); !slices.ContainsFunc(got, func(pw PairWindow) bool { return pw.Start.Equal(want) }) {
			t.Errorf("looked-at pair %v: window %v trimmed after the look", looked, want)
		}
	}

	d := a.PairDetail(other.Src, other.Dst, other.Proto, t0, end)
	if d.Mode != DetailBudget || !d.CompleteFrom.After(t0) || !d.CompleteFrom.Before(end) || d.SampleOneIn < 2 || d.BudgetBytes != budget {
		t.Fatalf("PairDetail(%v) = %+v: want trimmed, complete from within the span", other, d)
	}
	kept := a.PairWindows(other.Src, other.Dst, other.Proto, t0, end)
	if want := int(end.Sub(d.CompleteFrom) / w); len(kept) != want || !kept[0].Start.Equal(d.CompleteFrom) {
		t.Errorf("pair %v: %d windows from %v, PairDetail says complete from %v (%d windows)", other, len(kept), kept[0].Start, d.CompleteFrom, want)
	}
	if note := d.Note(); !strings.Contains(note, "trimmed by the memory budget (1 MiB) before "+d.CompleteFrom.Format(time.RFC3339)) ||
		!strings.Contains(note, fmt.Sprintf("1-in-%d sample", d.SampleOneIn)) {
		t.Errorf("note %q", note)
	}
	// A span after the trimmed windows is complete.
	if d := a.PairDetail(other.Src, other.Dst, other.Proto, d.CompleteFrom, end); d.Mode != DetailFull {
		t.Errorf("PairDetail after the trimmed windows = %+v, want full", d)
	}
}

// TestPairDetailSampleDeterministic feeds two aggregators the same mesh,
// one with its hosts in reverse order (so every pair gets another id):
// the budget keeps the same pair windows in both, and exactly those its
// rule says (lossy or in the sample of the window's level).
func TestPairDetailSampleDeterministic(t *testing.T) {
	w := 10 * time.Second
	fab := newFabric(1, 2, 2, 4)
	hosts := fab.hosts()
	reversed := slices.Clone(hosts)
	slices.Reverse(reversed)
	lossy := map[PairKey]bool{{hosts[0], hosts[5], tcp}: true, {hosts[9], hosts[3], udp}: true}
	t0 := aligned(w, time.Hour)
	kept := func(order []string) map[string]bool {
		a, _ := newTestAggregator(t, Config{Locator: fab, Window: w, Lateness: time.Second, Recent: time.Hour, PairDetailMaxBytes: 60_000})
		for r := range 20 {
			feedMesh(t, a, order, t0.Add(time.Duration(r)*w), w, uint64(r+1), lossy, false)
		}
		out := map[string]bool{}
		trimmed := false
		for s, rw := range a.recent {
			trimmed = trimmed || rw.level > 0
			for _, p := range a.byID {
				st := rw.pair(p.id)
				if st == nil {
					continue
				}
				if rw.level > 0 && !lossy[p.key] && !sampled(p.sample, rw.level) {
					t.Errorf("window %v (1 in %d): %v kept, neither lossy nor in the sample", time.Unix(0, s).UTC(), 1<<rw.level, p.key)
				}
				out[fmt.Sprintf("%d %v", s, p.key)] = true
			}
		}
		if !trimmed {
			t.Fatal("no window trimmed")
		}
		return out
	}
	a, b := kept(hosts), kept(reversed)
	if !reflect.DeepEqual(a, b) {
		t.Errorf("the budget kept %d pair windows in one order, %d in the other", len(a), len(b))
	}
}

// TestPairDetailBudgetKeepsRollups feeds the same batches (with late
// results) to an aggregator with a tight budget and one without: the
// sealed windows (rollups and pairs) and the counters are the same.
func TestPairDetailBudgetKeepsRollups(t *testing.T) {
	w := 10 * time.Second
	fab := newFabric(1, 2, 2, 4)
	hosts := fab.hosts()
	lossy := map[PairKey]bool{{hosts[1], hosts[2], tcp}: true}
	t0 := aligned(w, time.Hour)
	free, _ := newTestAggregator(t, Config{Locator: fab, Window: w, Lateness: time.Second, Recent: time.Hour})
	tight, _ := newTestAggregator(t, Config{Locator: fab, Window: w, Lateness: time.Second, Recent: time.Hour, PairDetailMaxBytes: 20_000})
	for r := range 20 {
		start := t0.Add(time.Duration(r) * w)
		f := feedMesh(t, free, hosts, start, w, uint64(r+1), lossy, r > 0)
		g := feedMesh(t, tight, hosts, start, w, uint64(r+1), lossy, r > 0)
		if len(f) != 1 || len(g) != 1 {
			t.Fatalf("round %d: sealed %d and %d windows", r, len(f), len(g))
		}
		if len(f[0].Pairs) != len(g[0].Pairs) {
			t.Errorf("round %d: %d pairs without a budget, %d with", r, len(f[0].Pairs), len(g[0].Pairs))
		}
		compareRollups(t, fmt.Sprintf("round %d hosts", r), f[0].Hosts, g[0].Hosts)
		compareRollups(t, fmt.Sprintf("round %d racks", r), f[0].RackPairs, g[0].RackPairs)
		compareRollups(t, fmt.Sprintf("round %d pods", r), f[0].PodPairs, g[0].PodPairs)
		compareRollups(t, fmt.Sprintf("round %d dcs", r), f[0].DCPairs, g[0].DCPairs)
		recount(t, tight)
	}
	if testutil.ToFloat64(tight.m.detailTrimmed) == 0 {
		t.Fatal("nothing trimmed: the budget did not bite")
	}
	for _, lv := range levelNames {
		if f, g := free.Counters(lv), tight.Counters(lv); !reflect.DeepEqual(f, g) || len(f) == 0 {
			t.Errorf("%s counters differ or are empty", lv)
		}
		if f, g := free.RTTHistograms(lv), tight.RTTHistograms(lv); !reflect.DeepEqual(f, g) {
			t.Errorf("%s histograms differ", lv)
		}
	}
	if f, g := free.HostCounters(), tight.HostCounters(); !reflect.DeepEqual(f, g) {
		t.Error("host counters differ")
	}
	if f, g := testutil.ToFloat64(free.m.late), testutil.ToFloat64(tight.m.late); f != g || f == 0 {
		t.Errorf("late results: %v without a budget, %v with", f, g)
	}
	// Late results alone make a pair's windows (all but the last window
	// got some); lossy, the budget keeps them in every window it holds.
	held := 0
	for s := range tight.recent {
		if s < t0.Add(19*w).UnixNano() {
			held++
		}
	}
	if got := tight.PairWindows(hosts[0], hosts[1], wire.Protocol_PROTOCOL_ICMP, t0, t0.Add(time.Hour)); len(got) != held || held == 0 {
		t.Errorf("late icmp pair: %d windows kept, want the %d the budget holds", len(got), held)
	}
}

// TestPairDetailBytesMatchHeap holds the estimate to the heap: windows of
// a 64-host mesh (8,064 pairs) sealed and kept, then trimmed, with Go's
// live heap measured (runtime.MemStats after a GC) beside the bytes
// accounted. Without loss a full window holds about 72 bytes a pair
// window, a trimmed one 68; every pair losing its probe adds the lost
// 5-tuple's ~110 (see pairdetail.go).
func TestPairDetailBytesMatchHeap(t *testing.T) {
	w := 10 * time.Second
	fab := newFabric(1, 2, 4, 8)
	hosts := fab.hosts()
	t0 := aligned(w, time.Hour)
	for _, withLoss := range []bool{false, true} {
		t.Run(fmt.Sprintf("loss %v", withLoss), func(t *testing.T) {
			lossy := map[PairKey]bool{}
			if withLoss {
				for _, s := range hosts {
					for _, d := range hosts {
						lossy[PairKey{s, d, tcp}], lossy[PairKey{s, d, udp}] = true, true
					}
				}
			}
			a, _ := newTestAggregator(t, Config{Locator: fab, Window: w, Lateness: time.Second, Recent: time.Hour})
			// The first window makes the pairs; measure from the second.
			feedMesh(t, a, hosts, t0, w, 1, lossy, false)
			const windows = 12
			heap := func() int64 {
				runtime.GC()
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				return int64(ms.HeapAlloc)
			}
			h0, b0 := heap(), a.detailBytes
			for r := 1; r <= windows; r++ {
				feedMesh(t, a, hosts, t0.Add(time.Duration(r)*w), w, uint64(r+1), lossy, false)
			}
			h1, b1 := heap(), a.detailBytes
			entries := float64(windows * len(hosts) * (len(hosts) - 1) * 2)
			measured, accounted := float64(h1-h0)/entries, float64(b1-b0)/entries
			t.Logf("full windows: %.1f bytes a pair window on the heap, %.1f accounted", measured, accounted)
			if accounted < 0.85*measured || accounted > 1.2*measured {
				t.Errorf("full windows: %.1f bytes a pair window accounted, %.1f on the heap", accounted, measured)
			}
			// Trim every window to the 1-in-2 sample (with loss, all kept).
			a.mu.Lock()
			for _, rw := range a.recent {
				a.trimWindowLocked(rw, 1)
			}
			a.mu.Unlock()
			h2, b2 := heap(), a.detailBytes
			t.Logf("trimmed windows: %.1f bytes a pair window on the heap, %.1f accounted", float64(h2-h0)/entries, float64(b2-b0)/entries)
			if kept, held := float64(b2-b0), float64(h2-h0); kept < 0.85*held || kept > 1.2*held {
				t.Errorf("trimmed windows: %.0f bytes accounted, %.0f on the heap", kept, held)
			}
		})
	}
}

// TestTrimKeepsLateCopiesInOrder: a window holding pair B, trimmed after
// a late result made it a copy of pair A (an older pair, with a smaller
// id), still finds both: both lost a probe, so the deepest sample keeps
// them.
func TestTrimKeepsLateCopiesInOrder(t *testing.T) {
	w := 10 * time.Second
	a, _ := newTestAggregator(t, Config{Window: w, Lateness: time.Second, Recent: time.Hour})
	const src, pA, pB = "dc1-pod1-rack1-h01", "dc1-pod1-rack2-h01", "dc1-pod2-rack1-h01"
	t0 := aligned(w, time.Hour)
	step := func(seq uint64, at time.Time, rs ...*wire.ProbeResult) {
		t.Helper()
		if err := a.Ingest(batch(src, 1, seq, rs...), at.Add(w)); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Advance(context.Background(), at.Add(w+2*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	step(1, t0, res(pA, tcp, ok, t0, time.Millisecond), res(pB, tcp, ok, t0, time.Millisecond)) // A gets id 0, B id 1
	step(2, t0.Add(w), res(pB, tcp, lost, t0.Add(w), 0))                                        // window 1 holds B only
	step(3, t0.Add(2*w), res(pA, tcp, lost, t0.Add(w), 0))                                      // late: A in window 1
	a.mu.Lock()
	rw := a.recent[t0.Add(w).UnixNano()]
	a.trimWindowLocked(rw, maxSampleLevel)
	a.mu.Unlock()
	recount(t, a)
	if got := a.PairWindows(src, pA, tcp, t0.Add(w), t0.Add(2*w)); len(got) != 1 || got[0].Lost != 1 || got[0].LateResults != 1 {
		t.Errorf("late copy of A after the trim: %+v", got)
	}
	if got := a.PairWindows(src, pB, tcp, t0.Add(w), t0.Add(2*w)); len(got) != 1 || got[0].Lost != 1 {
		t.Errorf("B after the trim: %+v", got)
	}
}
