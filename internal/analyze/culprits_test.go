package analyze

import (
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/aggregate"
	"github.com/meshlens/meshlens/internal/alert"
	"github.com/meshlens/meshlens/internal/localize"
)

func TestCulprits(t *testing.T) {
	end := win(1)
	cases := []struct {
		name     string
		suspects []localize.Suspect
		want     []string
	}{
		{"none", nil, nil},
		{"network suspects kept", []localize.Suspect{
			{Element: "a--b", Kind: localize.KindLink, Symptom: localize.SymptomLoss, Confidence: 0.9},
			{Element: "dc1-spine1", Kind: localize.KindDevice, Symptom: localize.SymptomDown, Confidence: 0.8},
		}, []string{"a--b", "dc1-spine1"}},
		{"agent_slow left out", []localize.Suspect{
			{Element: "dc1-pod1-rack1-h01", Kind: localize.KindHost, Symptom: localize.SymptomAgentSlow, Confidence: 1},
			{Element: "dc1-pod1-rack1-h02", Kind: localize.KindHost, Symptom: localize.SymptomLoss, Confidence: 0.7},
		}, []string{"dc1-pod1-rack1-h02"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cs := Culprits(Verdict{End: end, Suspects: tc.suspects})
			var got []string
			for _, c := range cs {
				got = append(got, c.Element)
				if !c.At.Equal(end) || c.Evidence == "" {
					t.Errorf("culprit %+v: want At the window's end and evidence", c)
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("culprits %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("culprits %v, want %v", got, tc.want)
				}
			}
		})
	}
}

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
		b := NewCulpritBoard(tc.cfg)
		b.Update([]alert.Culprit{{Element: "dc1-pod1-rack1-tor", Kind: "device", Confidence: 0.9, At: now.Add(-tc.windowEndedAgo)}})
		if _, ok := b.Blame(nil, now); ok != tc.blamed {
			t.Errorf("window %v, lateness %v, ended %v ago: blamed %v, want %v", tc.cfg.Window, tc.cfg.Lateness, tc.windowEndedAgo, ok, tc.blamed)
		}
	}
}
