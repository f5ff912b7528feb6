package analyze

import (
	"fmt"
	"time"

	"github.com/meshlens/meshlens/internal/aggregate"
	"github.com/meshlens/meshlens/internal/alert"
	"github.com/meshlens/meshlens/internal/localize"
)

// Culprits are a verdict's suspects as the incidents' culprit board takes
// them. agent_slow suspects are left out: a starved agent explains its own
// measurements, nothing in the network.
func Culprits(v Verdict) []alert.Culprit {
	culprits := make([]alert.Culprit, 0, len(v.Suspects))
	for _, s := range v.Suspects {
		if s.Symptom == localize.SymptomAgentSlow {
			continue
		}
		culprits = append(culprits, alert.Culprit{
			Element: s.Element, Kind: string(s.Kind), Symptom: string(s.Symptom),
			Estimate: s.Estimate, Confidence: s.Confidence, At: v.End, Pairs: s.Evidence.SamplePairs,
			Evidence: fmt.Sprintf("%d anomalous probes through it from %d pairs (%.0f probes crossed it, %.1f anomalies expected)",
				s.Evidence.Anomalous, s.Evidence.Pairs, s.Evidence.Probes, s.Evidence.Expected),
		})
	}
	return culprits
}

// EvidenceDelay is how long after a window ends the localizer's verdict on
// it can reach alerting: the aggregator seals it lateness after its end,
// and sealing cadence and the merge of partitions take up to a window more.
// Ages of evidence are counted from then, so that "three windows old" means
// the same whatever --lateness is.
func EvidenceDelay(c aggregate.Config) time.Duration {
	lateness := c.Lateness
	if lateness <= 0 {
		lateness = aggregate.DefaultLateness
	}
	return lateness + windowOf(c)
}

// NewCulpritBoard is the incidents' culprit board for windows of c: a
// suspect of confidence 0.5 or more names a culprit until its verdict is
// more than three windows past EvidenceDelay.
func NewCulpritBoard(c aggregate.Config) *alert.Board {
	b := alert.NewBoard(0.5, 3*windowOf(c))
	b.Delay = EvidenceDelay(c)
	return b
}

func windowOf(c aggregate.Config) time.Duration {
	if c.Window > 0 {
		return c.Window
	}
	return aggregate.DefaultWindow
}
