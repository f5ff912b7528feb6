package sim

import (
	"sort"
	"time"

	"github.com/meshlens/meshlens/internal/localize"
	"github.com/meshlens/meshlens/internal/topology"
)

// Seconds is a duration reported in seconds.
type Seconds float64

func secs(d time.Duration) Seconds { return Seconds(d.Seconds()) }

// Report is a run's outcome: the ground truth beside what each localizer
// concluded.
type Report struct {
	Scenario string  `json:"scenario"`
	File     string  `json:"file,omitempty"`
	Seed     uint64  `json:"seed"`
	Hosts    int     `json:"hosts"`
	Duration Seconds `json:"duration_seconds"`
	Interval Seconds `json:"interval_seconds"`
	Rounds   int     `json:"rounds"`
	Probes   uint64  `json:"probes"`
	// ExtraProbes of Probes were asked for by evidence on demand.
	ExtraProbes     uint64 `json:"extra_probes"`
	RejectedBatches int    `json:"rejected_batches"`
	// RejectedTraces: traced probes the analyzer's conversion refused (none
	// expected: the simulator reports only paths of its fabric).
	RejectedTraces int `json:"rejected_traces"`
	// RollupsOnly: the aggregator kept no per-pair state (Options).
	RollupsOnly bool    `json:"rollups_only,omitempty"`
	WallSeconds float64 `json:"wall_seconds"`
	// PeakRSSBytes is filled by the caller that can measure it (the command).
	PeakRSSBytes uint64             `json:"peak_rss_bytes,omitempty"`
	Results      []LocalizerResults `json:"results"`
}

// Result returns the results of the named localizer, nil if it did not run.
func (r *Report) Result(name string) *LocalizerResults {
	for i := range r.Results {
		if r.Results[i].Localizer == name {
			return &r.Results[i]
		}
	}
	return nil
}

// LocalizerResults scores one localizer on the run.
type LocalizerResults struct {
	Localizer string        `json:"localizer"`
	Faults    []FaultResult `json:"faults"`
	// FalsePositives are blamed elements that match no fault.
	FalsePositives []string `json:"false_positives"`
	Precision      float64  `json:"precision"`
	Recall         float64  `json:"recall"`
	F1             float64  `json:"f1"`
	// The same over significant faults only (≥ 1% loss, ≥ 1 ms), the
	// accuracy targets' scope.
	SignificantRecall float64 `json:"significant_recall"`
	SignificantF1     float64 `json:"significant_f1"`
	// Medians over faults detected / localized, from onset; -1 when none.
	MedianDetection    Seconds `json:"median_detection_seconds"`
	MedianLocalization Seconds `json:"median_localization_seconds"`
}

// FaultResult is one fault's ground truth and what was concluded.
type FaultResult struct {
	Kind        FaultKind `json:"kind"`
	Element     string    `json:"element"`
	Onset       Seconds   `json:"onset_seconds"`
	End         Seconds   `json:"end_seconds"`
	Significant bool      `json:"significant"`
	// FirstFlagged is when anything was first blamed at or after onset;
	// Localized when this fault's element was first blamed. Nil: never.
	FirstFlagged *Seconds `json:"first_flagged_seconds"`
	Localized    *Seconds `json:"localized_seconds"`
	// Blamed lists what was blamed while the fault was in force, with the
	// symptom, most frequent first.
	Blamed []string `json:"blamed"`
	// Lingered is how long after the fault's end its element was still
	// blamed: the last verdict blaming it, within the localizer's horizon
	// (0: none after the end). Nil when it was never localized or lasted
	// the whole run.
	Lingered *Seconds `json:"lingered_seconds,omitempty"`
}

// timeline records a localizer's suspects per window, by the time (from
// the run's start) at which the window's verdict was out.
type timeline struct {
	at       []time.Duration
	suspects [][]localize.Suspect
}

func (t *timeline) add(at time.Duration, s []localize.Suspect) {
	t.at = append(t.at, at)
	t.suspects = append(t.suspects, s)
}

// matches reports whether blaming s is right for fault f. A link is right
// in either direction's name; a host's access link and the host are the
// same thing to probes (every probe of the host crosses both directions),
// so either is right for the other. host_slow is right only as agent_slow:
// blaming the network, or the host's network, for a starved agent is wrong.
// host_down is right as any blame of the host but agent_slow, as host_nic
// is: until its agent has been silent for the stale bound
// (aggregate.AgentStaleAfter) a host that is gone and a host whose NIC
// dropped everything look alike, and either sends the operator to the
// right machine; the verdicts say which symptom it was.
func matches(s localize.Suspect, f Fault, t *topology.Topology) bool {
	isHost := func(n string) bool { return t.Host(n) != nil }
	switch f.Scope() {
	case ScopeLink:
		switch s.Kind {
		case localize.KindLink:
			a, b, _, err := topology.ParseLinkName(s.Element)
			return err == nil && ((a == f.A && b == f.B) || (a == f.B && b == f.A))
		case localize.KindHost:
			return s.Symptom != localize.SymptomAgentSlow && ((isHost(f.A) && s.Element == f.A) || (isHost(f.B) && s.Element == f.B))
		}
	case ScopeDevice:
		return s.Kind == localize.KindDevice && s.Element == f.A
	case ScopeHost:
		if f.Kind == HostSlow {
			return s.Kind == localize.KindHost && s.Element == f.A && s.Symptom == localize.SymptomAgentSlow
		}
		switch s.Kind {
		case localize.KindHost:
			return s.Element == f.A && s.Symptom != localize.SymptomAgentSlow
		case localize.KindLink:
			a, b, _, err := topology.ParseLinkName(s.Element)
			return err == nil && (a == f.A || b == f.A)
		}
	}
	return false
}

// blameKey identifies an element across a link's two names.
func blameKey(s localize.Suspect) string {
	if s.Kind == localize.KindLink {
		if a, b, _, err := topology.ParseLinkName(s.Element); err == nil {
			if b < a {
				a, b = b, a
			}
			return a + "--" + b
		}
	}
	return string(s.Kind) + ":" + s.Element
}

func score(sc *Scenario, x *localize.Index, name string, tl *timeline) LocalizerResults {
	res := LocalizerResults{Localizer: name, Faults: []FaultResult{}, FalsePositives: []string{}}
	right := map[string]bool{}
	wrong := map[string]bool{}
	var det, loc []float64
	sigFaults, sigFound := 0, 0
	for _, f := range sc.Faults {
		fr := FaultResult{Kind: f.Kind, Element: f.Element, Onset: secs(f.At), End: secs(f.End(sc.Duration)), Significant: f.Significant()}
		blamed := map[string]int{}
		end := f.End(sc.Duration)
		var lingered time.Duration
		for i, at := range tl.at {
			if at <= f.At {
				continue
			}
			// Evidence lingers for the localizer's horizon after the end;
			// a blame after that is not this fault's (the same element
			// may fail again later in the scenario).
			if at > end+time.Duration(3)*sc.Interval+batchDelay {
				break
			}
			for _, s := range tl.suspects[i] {
				if fr.FirstFlagged == nil {
					v := secs(at - f.At)
					fr.FirstFlagged = &v
				}
				if matches(s, f, sc.Topology) {
					if fr.Localized == nil {
						v := secs(at - f.At)
						fr.Localized = &v
					}
					if at > end {
						lingered = at - end
					}
				}
				blamed[s.Element+" ("+string(s.Symptom)+")"]++
			}
		}
		fr.Blamed = sortedByCount(blamed)
		if fr.Localized != nil && end < sc.Duration {
			v := secs(lingered)
			fr.Lingered = &v
		}
		if fr.FirstFlagged != nil {
			det = append(det, float64(*fr.FirstFlagged))
		}
		if fr.Localized != nil {
			loc = append(loc, float64(*fr.Localized))
		}
		if fr.Significant {
			sigFaults++
			if fr.Localized != nil {
				sigFound++
			}
		}
		res.Faults = append(res.Faults, fr)
	}
	for _, sus := range tl.suspects {
		for _, s := range sus {
			ok := false
			for _, f := range sc.Faults {
				if matches(s, f, sc.Topology) {
					ok = true
					break
				}
			}
			if ok {
				right[blameKey(s)] = true
			} else {
				wrong[blameKey(s)] = true
			}
		}
	}
	for k := range wrong {
		res.FalsePositives = append(res.FalsePositives, k)
	}
	sort.Strings(res.FalsePositives)
	found := len(loc)
	res.Precision = ratioOr(len(right), len(right)+len(wrong), 1)
	res.Recall = ratioOr(found, len(sc.Faults), 1)
	res.SignificantRecall = ratioOr(sigFound, sigFaults, 1)
	res.F1 = f1(res.Precision, res.Recall)
	res.SignificantF1 = f1(res.Precision, res.SignificantRecall)
	res.MedianDetection = median(det)
	res.MedianLocalization = median(loc)
	return res
}

func sortedByCount(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool {
		if m[out[i]] != m[out[j]] {
			return m[out[i]] > m[out[j]]
		}
		return out[i] < out[j]
	})
	if len(out) > 5 {
		out = out[:5]
	}
	return out
}

func ratioOr(num, den int, def float64) float64 {
	if den == 0 {
		return def
	}
	return float64(num) / float64(den)
}

func f1(p, r float64) float64 {
	if p+r == 0 {
		return 0
	}
	return 2 * p * r / (p + r)
}

func median(v []float64) Seconds {
	if len(v) == 0 {
		return -1
	}
	sort.Float64s(v)
	n := len(v)
	if n%2 == 1 {
		return Seconds(v[n/2])
	}
	return Seconds((v[n/2-1] + v[n/2]) / 2)
}
