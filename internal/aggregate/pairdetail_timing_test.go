package aggregate

import (
	"testing"
	"time"
)

// BenchmarkTrimWindow measures what the memory budget costs the
// aggregator's lock: trimming one full window of 404,100 pairs (a
// 450-host mesh over tcp and udp, about a 2,000-host Pingmesh window) to
// the 1-in-32 sample, as each new window is once the budget is reached.
func BenchmarkTrimWindow(b *testing.B) {
	w := 10 * time.Second
	fab := newFabric(1, 5, 9, 10)
	hosts := fab.hosts()
	a, err := New(Config{Locator: fab, Window: w, Lateness: time.Second, Recent: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Unix(1_800_000_000, 0)
	feedMesh(b, a, hosts, t0, w, 1, nil, false)
	full := a.recent[t0.UnixNano()]
	pairs := len(hosts) * (len(hosts) - 1) * 2
	b.ResetTimer()
	for b.Loop() {
		rw := &recentWindow{start: full.start, stats: full.stats, bytes: full.bytes}
		a.mu.Lock()
		a.trimWindowLocked(rw, 5)
		a.mu.Unlock()
	}
	b.ReportMetric(float64(pairs)*float64(b.N)/b.Elapsed().Seconds(), "pairs/s")
}
