package server

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshlens/meshlens/internal/aggregate"
	"github.com/meshlens/meshlens/internal/bus"
	"github.com/meshlens/meshlens/internal/bus/bustest"
)

// rollupBus is an embedded JetStream with the rollups stream of n
// partitions and the state bucket.
func rollupBus(t *testing.T, n int) (jetstream.JetStream, jetstream.KeyValue) {
	t.Helper()
	js := bustest.JetStream(t)
	ctx := t.Context()
	if err := bus.EnsureRollupStream(ctx, js, bus.RollupStreamSettings{Partitions: n}); err != nil {
		t.Fatal(err)
	}
	if err := bus.EnsureStreams(ctx, js, bus.StreamSettings{Partitions: n}); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, bus.StateBucket)
	if err != nil {
		t.Fatal(err)
	}
	return js, kv
}

var t0 = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

// window is an empty sealed window starting i windows after t0.
func window(i int) *aggregate.SealedWindow {
	start := t0.Add(time.Duration(i) * 10 * time.Second)
	return &aggregate.SealedWindow{Start: start, End: start.Add(10 * time.Second),
		Hosts: map[aggregate.HostKey]*aggregate.Rollup{}, RackPairs: map[aggregate.LocationPair]*aggregate.Rollup{},
		PodPairs: map[aggregate.LocationPair]*aggregate.Rollup{}, DCPairs: map[aggregate.LocationPair]*aggregate.Rollup{}}
}

func publisher(js jetstream.JetStream, m *rollupMetrics, holder string, term uint64) *rollupPublisher {
	return &rollupPublisher{js: js, partition: 0, holder: holder, term: func() (uint64, bool) { return term, true }, m: m, log: slog.New(slog.DiscardHandler)}
}

// TestTwoWritersOnePartition: a holder that was replaced cannot publish
// beside its successor, whatever it believes of its lease; the stream
// keeps the windows in order, each once.
func TestTwoWritersOnePartition(t *testing.T) {
	js, _ := rollupBus(t, 1)
	ctx := t.Context()
	m := newRollupMetrics(prometheus.NewRegistry())
	old, next := publisher(js, m, "a/1", 5), publisher(js, m, "b/2", 7)

	if err := old.resume(ctx); err != nil {
		t.Fatal(err)
	}
	if err := old.publish(ctx, []*aggregate.SealedWindow{window(0), window(1)}); err != nil {
		t.Fatal(err)
	}
	// The successor resumes after the last window on the subject and
	// re-seals from an older checkpoint: window 1 is not published twice.
	if err := next.resume(ctx); err != nil {
		t.Fatal(err)
	}
	if err := next.publish(ctx, []*aggregate.SealedWindow{window(1), window(2)}); err != nil {
		t.Fatal(err)
	}
	// The old holder, still thinking it holds the lease, is refused by
	// the stream and learns of the newer term.
	err := old.publish(ctx, []*aggregate.SealedWindow{window(2), window(3)})
	if !errors.Is(err, errFenced) {
		t.Fatalf("the replaced holder's publish: %v, want errFenced", err)
	}
	if err := next.publish(ctx, []*aggregate.SealedWindow{window(3)}); err != nil {
		t.Fatalf("the holder's next publish: %v", err)
	}

	got := subjectWindows(t, js, 0)
	want := []string{"a/1@5 0", "a/1@5 1", "b/2@7 2", "b/2@7 3"}
	if len(got) != len(want) {
		t.Fatalf("stream holds %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("stream holds %v, want %v", got, want)
		}
	}
	if n := testutil.ToFloat64(m.skipped); n != 1 {
		t.Errorf("skipped %v re-sealed windows, want 1", n)
	}
}

// subjectWindows lists partition p's messages as "holder@term window".
func subjectWindows(t *testing.T, js jetstream.JetStream, p int) []string {
	t.Helper()
	ctx := t.Context()
	c, err := js.OrderedConsumer(ctx, bus.RollupsStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{bus.RollupSubject(p)}})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for {
		msg, err := c.Next(jetstream.FetchMaxWait(500 * time.Millisecond))
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		_, w, _, err := aggregate.DecodeWindow(msg.Data())
		if err != nil {
			t.Fatal(err)
		}
		i := int(w.Start.Sub(t0) / (10 * time.Second))
		out = append(out, msg.Headers().Get(bus.RollupHolderHeader)+"@"+msg.Headers().Get(bus.RollupTermHeader)+" "+string(rune('0'+i)))
	}
}

// TestRollupGate: the analyzer takes a partition's windows from a lease
// holder, once each, in order, and refuses and counts the rest.
func TestRollupGate(t *testing.T) {
	_, kv := rollupBus(t, 2)
	ctx := t.Context()
	lease := func(p int, holder string) uint64 {
		v, _ := json.Marshal(map[string]any{"holder": holder, "renewed": time.Now()})
		rev, err := kv.Put(ctx, bus.PartitionLeaseKey(p), v)
		if err != nil {
			t.Fatal(err)
		}
		return rev
	}
	g := newRollupGate(2, kv, newRollupMetrics(prometheus.NewRegistry()))
	msg := func(p int, holder string, term uint64, w *aggregate.SealedWindow) (string, nats.Header, []byte) {
		data, err := aggregate.EncodeWindow(p, w, nil)
		if err != nil {
			t.Fatal(err)
		}
		h := nats.Header{}
		h.Set(bus.RollupHolderHeader, holder)
		if term > 0 {
			h.Set(bus.RollupTermHeader, jsonNumber(term))
		}
		return bus.RollupSubject(p), h, data
	}
	termA := lease(0, "a/1")
	for _, c := range []struct {
		name   string
		p      int
		holder string
		term   uint64
		w      int
		want   string
	}{
		{"first window", 0, "a/1", termA, 1, ""},
		{"next window", 0, "a/1", termA, 2, ""},
		{"again", 0, "a/1", termA, 2, "duplicate"},
		{"older", 0, "a/1", termA, 1, "out_of_order"},
		{"never held the lease", 0, "rogue/9", termA + 100, 3, "not_holder"},
		{"no term", 0, "a/1", 0, 3, "bad_header"},
		{"partition the other holds", 1, "a/1", termA, 3, "not_holder"},
	} {
		subject, h, data := msg(c.p, c.holder, c.term, window(c.w))
		if _, got := g.admit(ctx, subject, h, data); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
	// A new holder takes over: its term is newer; the old one's later
	// windows are stale from then on.
	termB := lease(0, "b/2")
	subject, h, data := msg(0, "b/2", termB, window(3))
	if _, got := g.admit(ctx, subject, h, data); got != "" {
		t.Errorf("new holder: %q", got)
	}
	subject, h, data = msg(0, "a/1", termA, window(4))
	if _, got := g.admit(ctx, subject, h, data); got != "stale_term" {
		t.Errorf("replaced holder: %q, want stale_term", got)
	}
	// Bad bytes and bad subjects.
	if _, got := g.admit(ctx, bus.RollupSubject(0), h, []byte("not a window")); got == "" {
		t.Error("garbage admitted")
	}
	if _, got := g.admit(ctx, bus.RollupSubject(7), h, data); got != "bad_partition" {
		t.Errorf("partition 7 of 2: %q", got)
	}
}

func jsonNumber(n uint64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
