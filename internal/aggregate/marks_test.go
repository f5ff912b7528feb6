package aggregate

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshlens/meshlens/internal/wire"
)

// marked is a batch that says its agent's data ends at mark.
func marked(agent string, epoch, seq uint64, mark time.Time, rs ...*wire.ProbeResult) *wire.Batch {
	b := batch(agent, epoch, seq, rs...)
	b.CompleteBeforeUnixNano = mark.UnixNano()
	return b
}

// TestSealOnMarks: a window is sealed as soon as every live agent has
// marked its data in past the window's end, not a lateness after it; an
// agent that never marks, or a live one behind, holds it to the lateness;
// one silent for a lateness holds nothing; results arriving after an
// early seal are still counted once; marks that go back or lie in the
// future are not believed, and counted.
func TestSealOnMarks(t *testing.T) {
	w, l := 10*time.Second, 30*time.Second
	t0 := aligned(w, 10*time.Minute)
	const a, b, c, dst = "dc1-pod1-rack1-h01", "dc1-pod1-rack1-h02", "dc1-pod1-rack2-h01", "dc1-pod2-rack2-h02"
	ctx := context.Background()
	setup := func(t *testing.T, cfg Config) (*Aggregator, *[]time.Time) {
		cfg.Window, cfg.Lateness = w, l
		agg, _ := newTestAggregator(t, cfg)
		var sealed []time.Time
		agg.Subscribe(func(sw *SealedWindow) { sealed = append(sealed, sw.Start) })
		// Listen for a lateness first: every live agent has been heard.
		if _, err := agg.Advance(ctx, t0.Add(-l)); err != nil {
			t.Fatal(err)
		}
		return agg, &sealed
	}
	ingest := func(t *testing.T, agg *Aggregator, bt *wire.Batch, at time.Time) {
		t.Helper()
		if err := agg.Ingest(bt, at); err != nil {
			t.Fatal(err)
		}
	}
	advance := func(t *testing.T, agg *Aggregator, at time.Time) {
		t.Helper()
		if _, err := agg.Advance(ctx, at); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("every live agent past the end", func(t *testing.T) {
		agg, sealed := setup(t, Config{})
		ingest(t, agg, marked(a, 1, 1, t0.Add(w+time.Second), res(dst, tcp, ok, t0.Add(time.Second), time.Millisecond)), t0.Add(w+time.Second))
		ingest(t, agg, marked(b, 1, 1, t0.Add(w-time.Second), res(dst, tcp, ok, t0.Add(2*time.Second), time.Millisecond)), t0.Add(w+time.Second))
		advance(t, agg, t0.Add(w+time.Second))
		if len(*sealed) != 0 {
			t.Fatalf("sealed %v while %s is before the window's end", *sealed, b)
		}
		ingest(t, agg, marked(b, 1, 2, t0.Add(w+2*time.Second), res(dst, tcp, lost, t0.Add(9*time.Second), 0)), t0.Add(w+3*time.Second))
		advance(t, agg, t0.Add(w+3*time.Second))
		if len(*sealed) != 1 || !(*sealed)[0].Equal(t0) {
			t.Fatalf("sealed %v 3s after the window's end with every agent past it, want %v", *sealed, t0)
		}
		// A result for it after all (an agent that lied) is counted once,
		// as a late one.
		ingest(t, agg, batch(a, 1, 2, res(dst, udp, ok, t0.Add(3*time.Second), time.Millisecond)), t0.Add(w+4*time.Second))
		if got := testutil.ToFloat64(agg.m.late); got != 1 {
			t.Errorf("late results = %v, want 1", got)
		}
		if got := agg.Counters("rack")[LocationPair{"dc1-pod1-rack1", "dc1-pod2-rack2", udp}]; got.Probes != 1 {
			t.Errorf("the late result counted %d times", got.Probes)
		}
	})

	t.Run("an agent that never marks holds to the lateness", func(t *testing.T) {
		agg, sealed := setup(t, Config{})
		ingest(t, agg, marked(a, 1, 1, t0.Add(w+time.Second), res(dst, tcp, ok, t0.Add(time.Second), time.Millisecond)), t0.Add(w+time.Second))
		ingest(t, agg, batch(c, 1, 1, res(dst, tcp, ok, t0.Add(time.Second), time.Millisecond)), t0.Add(w+time.Second))
		advance(t, agg, t0.Add(w+l-time.Second))
		if len(*sealed) != 0 {
			t.Fatalf("sealed %v before the lateness with an agent that never marks", *sealed)
		}
		advance(t, agg, t0.Add(w+l))
		if len(*sealed) != 1 {
			t.Fatalf("not sealed at the lateness: %v", *sealed)
		}
	})

	t.Run("a silent agent holds nothing after a lateness", func(t *testing.T) {
		agg, sealed := setup(t, Config{})
		// c marked once long ago and went silent.
		ingest(t, agg, marked(c, 1, 1, t0.Add(-l), res(dst, tcp, ok, t0.Add(-l-time.Second), time.Millisecond)), t0.Add(-l))
		ingest(t, agg, marked(a, 1, 1, t0.Add(w+time.Second), res(dst, tcp, ok, t0.Add(time.Second), time.Millisecond)), t0.Add(w+time.Second))
		advance(t, agg, t0.Add(w+time.Second))
		if len(*sealed) == 0 || !(*sealed)[len(*sealed)-1].Equal(t0) {
			t.Fatalf("sealed %v: an agent silent for a lateness held the window", *sealed)
		}
	})

	t.Run("not before listening for a lateness", func(t *testing.T) {
		cfg := Config{Window: w, Lateness: l}
		agg, _ := newTestAggregator(t, cfg)
		var sealed int
		agg.Subscribe(func(*SealedWindow) { sealed++ })
		ingest(t, agg, marked(a, 1, 1, t0.Add(w+time.Second), res(dst, tcp, ok, t0.Add(time.Second), time.Millisecond)), t0.Add(w+time.Second))
		advance(t, agg, t0.Add(w+time.Second))
		if sealed != 0 {
			t.Fatal("a fresh aggregator sealed on the marks of the only agent it had heard")
		}
	})

	t.Run("IgnoreMarks", func(t *testing.T) {
		agg, sealed := setup(t, Config{IgnoreMarks: true})
		ingest(t, agg, marked(a, 1, 1, t0.Add(w+time.Second), res(dst, tcp, ok, t0.Add(time.Second), time.Millisecond)), t0.Add(w+time.Second))
		advance(t, agg, t0.Add(w+time.Second))
		if len(*sealed) != 0 {
			t.Fatal("sealed on marks with IgnoreMarks")
		}
	})

	t.Run("bad marks", func(t *testing.T) {
		agg, sealed := setup(t, Config{})
		at := t0.Add(w + time.Second)
		ingest(t, agg, marked(a, 1, 1, t0.Add(5*time.Second), res(dst, tcp, ok, t0.Add(time.Second), time.Millisecond)), at)
		// Backwards within the epoch: not believed, results kept.
		ingest(t, agg, marked(a, 1, 2, t0.Add(4*time.Second), res(dst, tcp, ok, t0.Add(2*time.Second), time.Millisecond)), at)
		// Far in the future: would seal windows before their data.
		ingest(t, agg, marked(a, 1, 3, at.Add(DefaultMaxFuture+time.Minute), res(dst, tcp, ok, t0.Add(3*time.Second), time.Millisecond)), at)
		for reason, want := range map[string]float64{"backwards": 1, "from_future": 1} {
			if got := testutil.ToFloat64(agg.m.marksRejected.WithLabelValues(reason)); got != want {
				t.Errorf("marks rejected as %s: %v, want %v", reason, got, want)
			}
		}
		if got := agg.Agents()[0].CompleteBefore; !got.Equal(t0.Add(5 * time.Second)) {
			t.Errorf("believed mark %v, want the first one", got)
		}
		advance(t, agg, at)
		if len(*sealed) != 0 {
			t.Fatalf("a refused mark sealed %v", *sealed)
		}
		if got := agg.Counters("rack")[LocationPair{"dc1-pod1-rack1", "dc1-pod2-rack2", tcp}]; got.Probes != 3 {
			t.Errorf("%d probes counted, want the 3 of the batches whose marks were refused", got.Probes)
		}
		// A new epoch (a wiped spool) starts its marks afresh.
		ingest(t, agg, marked(a, 2, 1, t0.Add(w), res(dst, tcp, ok, t0.Add(4*time.Second), time.Millisecond)), at)
		ingest(t, agg, marked(a, 3, 1, t0.Add(time.Second)), at)
		if got := testutil.ToFloat64(agg.m.marksRejected.WithLabelValues("backwards")); got != 1 {
			t.Errorf("a new epoch's lower mark refused")
		}
	})
}
