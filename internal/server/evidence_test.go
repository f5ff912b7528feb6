package server

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshlens/meshlens/internal/analyze"
	"github.com/meshlens/meshlens/internal/bus"
	"github.com/meshlens/meshlens/internal/pinglist"
)

// TestEvidencePublisher: the plan lands in the evidence bucket as one
// Boost per agent asked; a key is rewritten only when its peers change or
// half its lifetime has passed, deleted when the agent is no longer asked,
// and a new analyzer deletes what the previous one left.
func TestEvidencePublisher(t *testing.T) {
	js := startBus(t)
	ctx := context.Background()
	kv, err := js.KeyValue(ctx, bus.EvidenceBucket)
	if err != nil {
		t.Fatal(err)
	}
	const window = 10 * time.Second
	read := func() map[string]*pinglist.Boost {
		t.Helper()
		out := map[string]*pinglist.Boost{}
		keys, err := kv.ListKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for k := range keys.Keys() {
			e, err := kv.Get(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			b, err := pinglist.DecodeBoost(e.Value())
			if err != nil {
				t.Fatal(err)
			}
			out[k] = b
		}
		return out
	}
	reg := prometheus.NewRegistry()
	p := newEvidencePublisher(js, window, reg)
	puts := func() float64 { return testutil.ToFloat64(p.writes.WithLabelValues("put")) }
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	plan := analyze.Evidence{Version: 1, Probes: 2, Agents: map[string][]string{"h1": {"h2", "h3"}, "h4": {"h1"}},
		Requests: []analyze.EvidenceRequest{{Element: "leaf1--spine1"}}}
	if err := p.sync(ctx, plan, now); err != nil {
		t.Fatal(err)
	}
	got := read()
	if len(got) != 2 || !slices.Equal(got["h1"].Peers, []string{"h2", "h3"}) || got["h1"].Probes != 2 || got["h4"].Host != "h4" ||
		!got["h1"].Until.Equal(now.Add(p.lifetime)) || !slices.Equal(got["h1"].Elements, []string{"leaf1--spine1"}) {
		t.Fatalf("bucket %+v", got)
	}
	// The same plan a window later: nothing written.
	if err := p.sync(ctx, plan, now.Add(window)); err != nil || puts() != 2 {
		t.Fatalf("rewrote an unchanged plan: %v puts, %v", puts(), err)
	}
	// Past half the lifetime: renewed, so agents never see it lapse.
	later := now.Add(p.lifetime/2 + time.Second)
	if err := p.sync(ctx, plan, later); err != nil || puts() != 4 || !read()["h1"].Until.Equal(later.Add(p.lifetime)) {
		t.Fatalf("not renewed: %v puts, %v", puts(), err)
	}
	// h4 no longer asked, h1's peers changed.
	plan = analyze.Evidence{Version: 2, Probes: 2, Agents: map[string][]string{"h1": {"h2"}}}
	if err := p.sync(ctx, plan, later); err != nil {
		t.Fatal(err)
	}
	if got := read(); len(got) != 1 || !slices.Equal(got["h1"].Peers, []string{"h2"}) {
		t.Fatalf("bucket %+v", got)
	}
	// A new analyzer (lease moved) clears what the old one left.
	q := newEvidencePublisher(js, window, prometheus.NewRegistry())
	if err := q.sync(ctx, analyze.Evidence{Version: 1, Probes: 2, Agents: map[string][]string{}}, later); err != nil {
		t.Fatal(err)
	}
	if got := read(); len(got) != 0 {
		t.Fatalf("left behind %+v", got)
	}
	if n := testutil.ToFloat64(q.writes.WithLabelValues("delete")); n != 1 {
		t.Errorf("deletes %v, want 1", n)
	}
}
