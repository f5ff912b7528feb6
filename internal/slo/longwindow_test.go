package slo

import (
	"context"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/aggregate/aggregatetest"
)

// TestLongWindowCounts: a window of HourlyFrom or more is counted from
// the counter's values at its two ends, exactly, whatever the series went
// through: steady, born inside the window, the server down at the window's
// start (the hourly copy stands in), reset.
func TestLongWindowCounts(t *testing.T) {
	const per = 100 // probes per 10 s window
	at := t0.Add(40*24*time.Hour + 15*time.Minute)
	w := 24 * time.Hour
	windows := func(d time.Duration) float64 { return float64(d / (10 * time.Second) * per) }
	tests := []struct {
		name string
		from time.Time // the series' first window ends 10 s after
		// down: no window is written in (down[0], down[1]]; the
		// counter keeps counting (the results wait in the stream).
		down  [2]time.Time
		reset time.Time // the counter starts again from 0 after it
		// kept: the store holds the series from there on, its older
		// samples past the retention (0: all of it).
		kept time.Time
		want float64
	}{
		{name: "steady", from: at.Add(-3 * w), want: windows(w)},
		{name: "born inside", from: at.Add(-5 * time.Hour), want: windows(5 * time.Hour)},
		{name: "down at the start", from: at.Add(-3 * w), down: [2]time.Time{at.Add(-w - 30*time.Minute), at.Add(-w + 20*time.Minute)},
			// From the last hourly copy before the outage: the hour
			// before the one it began in, 1h15m before the start.
			want: windows(w + 75*time.Minute)},
		{name: "reset", from: at.Add(-3 * w), reset: at.Add(-2 * time.Hour), want: windows(2 * time.Hour)},
		// From the oldest hourly copy kept, here the first window's.
		{name: "start past the retention", from: at.Add(-3 * w), kept: at.Add(-w + 3*time.Hour + 5*time.Minute),
			want: windows(w - 3*time.Hour - 5*time.Minute)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t)
			pair := []aggregatetest.RackPair{{Src: "dc1-pod1-rack1", Dst: "dc1-pod1-rack2", Proto: "tcp"}}
			wr := aggregatetest.Writer{Restored: !tc.kept.IsZero()}
			app := s.Appender(context.Background())
			for ts := tc.from.Add(10 * time.Second); !ts.After(at); ts = ts.Add(10 * time.Second) {
				pair[0].Probes += per
				if !tc.reset.IsZero() && ts.Equal(tc.reset.Add(10*time.Second)) {
					pair[0].Probes = per
				}
				if ts.After(tc.down[0]) && !ts.After(tc.down[1]) || ts.Before(tc.kept) {
					continue
				}
				if err := wr.Append(app, ts, 10*time.Second, pair); err != nil {
					t.Fatal(err)
				}
			}
			if err := app.Commit(); err != nil {
				t.Fatal(err)
			}
			sc := Scope{Rack: "dc1-pod1-rack1"}
			e, err := NewEngine(Config{Querier: s})
			if err != nil {
				t.Fatal(err)
			}
			q := sc.counterSum(probesSuffix, w, "")
			if got, err := e.scalar(context.Background(), q, at); err != nil || got != tc.want {
				t.Errorf("%s = %v, %v; want %v", q, got, err, tc.want)
			}
		})
	}
}
