package server

import (
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/aggregate"
	"github.com/meshlens/meshlens/internal/alert"
)

// TestCulpritBoardCountsFromSeal: the aggregator seals a window lateness
// after its end (30 s by default), so a verdict is always at least that
// old when it reaches alerting. With the server's defaults a verdict on a
// window that ended 45 s ago (sealed 15 s ago) still names the culprit; one
// more than three windows past the pipeline's delay does not.
func TestCulpritBoardCountsFromSeal(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		cfg            aggregate.Config
		windowEndedAgo time.Duration
		blamed         bool
	}{
		{aggregate.Config{}, 45 * time.Second, true},
		{aggregate.Config{}, 69 * time.Second, true},
		{aggregate.Config{}, 71 * time.Second, false},
		{aggregate.Config{Window: 2 * time.Second, Lateness: 2 * time.Second}, 9 * time.Second, true},
		{aggregate.Config{Window: 2 * time.Second, Lateness: 2 * time.Second}, 11 * time.Second, false},
	} {
		b := newCulpritBoard(tc.cfg)
		b.Update([]alert.Culprit{{Element: "dc1-pod1-rack1-tor", Kind: "device", Confidence: 0.9, At: now.Add(-tc.windowEndedAgo)}})
		if _, ok := b.Blame(nil, now); ok != tc.blamed {
			t.Errorf("window %v, lateness %v, ended %v ago: blamed %v, want %v", tc.cfg.Window, tc.cfg.Lateness, tc.windowEndedAgo, ok, tc.blamed)
		}
	}
}
