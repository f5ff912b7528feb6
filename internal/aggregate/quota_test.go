package aggregate

import (
	"testing"
	"time"
)

// TestQuotaAgesOut: an agent's bytes count for the span, slot by slot;
// a refused batch costs nothing; names outside the topology share one
// quota; no quota admits everything.
func TestQuotaAgesOut(t *testing.T) {
	q := newQuotas(1000, 24*time.Hour)
	t0 := time.Date(2026, 12, 5, 0, 30, 0, 0, time.UTC)
	steps := []struct {
		agent string
		known bool
		size  int
		at    time.Duration
		want  bool
	}{
		{"h1", true, 600, 0, true},
		{"h1", true, 600, time.Minute, false},    // 1200 > 1000
		{"h1", true, 400, 2 * time.Minute, true}, // the refused 600 cost nothing
		{"h2", true, 1000, 0, true},              // every agent has its own
		{"h1", true, 1, 3 * time.Minute, false},
		{"h1", true, 600, 23 * time.Hour, false},               // the first hour's slot still counts
		{"h1", true, 600, 24*time.Hour + 30*time.Minute, true}, // and then it does not
		{"x1", false, 700, 0, true},
		{"x2", false, 700, 0, false}, // unknown names share one quota
	}
	for i, s := range steps {
		if got := q.admit(s.agent, s.known, s.size, t0.Add(s.at)); got != s.want {
			t.Errorf("step %d: admit(%s, %d bytes at +%s) = %t, want %t", i, s.agent, s.size, s.at, got, s.want)
		}
	}
	if len(q.agents) != 3 {
		t.Errorf("%d usage entries, want 3 (h1, h2, and one for unknown names)", len(q.agents))
	}
	none := newQuotas(0, time.Hour)
	if !none.admit("h1", true, 1<<30, t0) {
		t.Error("no quota refused a batch")
	}
}
