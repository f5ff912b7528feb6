// Package scenarios holds the simulator's scenario suite and the test that
// holds meshlens's localization to its targets on it. New scenarios in the
// same format are picked up by file name pattern; nothing here knows any
// scenario by name or seed.
package scenarios

import (
	"context"
	"strings"
	"testing"

	"github.com/meshlens/meshlens/internal/localize"
	"github.com/meshlens/meshlens/internal/sim"
)

// Targets of issue 3, over significant faults (≥ 1% loss, ≥ 1 ms).
const (
	targetF1Single = 0.95
	targetF1Multi  = 0.90
	// The right element blamed within three probe intervals of onset
	// (median over faults).
	targetLocalizeIntervals = 3.0
)

func TestSuiteTargets(t *testing.T) {
	// Two at a time: CI machines have two cores.
	entries, err := sim.RunSuite(context.Background(), "*.yaml", sim.Options{}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) < 30 {
		t.Errorf("suite has %d scenarios, want at least 30", len(entries))
	}
	var table strings.Builder
	if err := sim.WriteTable(&table, entries); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", table.String())

	// No false positive in any fault-free scenario.
	for _, e := range entries {
		if e.Class != sim.ClassFaultFree {
			continue
		}
		if r := e.Report.Result(localize.NameMeshlens); len(r.FalsePositives) > 0 {
			t.Errorf("%s: fault-free scenario blamed %v", e.Report.Scenario, r.FalsePositives)
		}
	}
	scores := map[string]map[string]sim.ClassScore{}
	for _, c := range sim.Evaluate(entries) {
		if scores[c.Class] == nil {
			scores[c.Class] = map[string]sim.ClassScore{}
		}
		scores[c.Class][c.Localizer] = c
	}
	for class, want := range map[string]float64{sim.ClassSingle: targetF1Single, sim.ClassMulti: targetF1Multi} {
		m, ok := scores[class][localize.NameMeshlens]
		if !ok {
			t.Errorf("no %s scenarios in the suite", class)
			continue
		}
		if m.F1 < want {
			t.Errorf("%s: meshlens F1 %.3f below the target %.2f", class, m.F1, want)
		}
		if m.MedianLocalizationIntervals < 0 || m.MedianLocalizationIntervals > targetLocalizeIntervals {
			t.Errorf("%s: median localization %.1f probe intervals, target %.0f", class, m.MedianLocalizationIntervals, targetLocalizeIntervals)
		}
	}
	// Ahead of the 007 baseline on every class: a better F1, or as good
	// and faster (fault-free: no more false positives).
	for class, byLz := range scores {
		m, v := byLz[localize.NameMeshlens], byLz[localize.NameVote]
		switch {
		case class == sim.ClassFaultFree:
			if m.FalsePositives > v.FalsePositives {
				t.Errorf("%s: meshlens %d false positives, vote %d", class, m.FalsePositives, v.FalsePositives)
			}
		case m.F1 > v.F1:
		case m.F1 == v.F1 && m.MedianLocalizationSeconds >= 0 && (v.MedianLocalizationSeconds < 0 || m.MedianLocalizationSeconds < v.MedianLocalizationSeconds):
		default:
			t.Errorf("%s: meshlens (F1 %.3f, %.0fs) not ahead of vote (F1 %.3f, %.0fs)", class, m.F1, m.MedianLocalizationSeconds, v.F1, v.MedianLocalizationSeconds)
		}
	}
}
