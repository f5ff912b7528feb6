package localize

import (
	"sort"
)

// vote is the 007 baseline (Arzani et al., NSDI'18): every traced failed
// (or slow) flow gives each of the h links on its path a vote of 1/h, and
// the links with the most votes are blamed. 007 blames links only; a host
// access link is reported as its host, as meshlens does, so the two are
// scored alike. It has no model of traffic: a busy link collects votes from
// the background, and a device's fault spreads over its links.
type vote struct {
	x   *Index
	cfg Config
	ev  *evidence
}

// Voting thresholds: a link is blamed when it holds at least voteMin votes
// and voteShare of all votes of the horizon, from at least MinAnomalies
// flows (007 reports the top-voted links; the floors keep it quiet on a
// healthy fabric, as meshlens's own floor does).
const (
	voteMin   = 1.0
	voteShare = 0.1
)

func newVote(x *Index, cfg Config) *vote {
	return &vote{x: x, cfg: cfg, ev: newEvidence(x, cfg.Horizon)}
}

func (v *vote) Name() string { return NameVote }

func (v *vote) Localize(w *Window) ([]Suspect, error) {
	v.ev.add(w)
	var out []Suspect
	for _, latency := range []bool{false, true} {
		votes := map[int32]float64{}
		counts := map[int32]int{}
		var total float64
		for i := range v.ev.slots {
			for _, t := range v.ev.slots[i].traces {
				if t.Lost == latency || len(t.Links) == 0 {
					continue
				}
				share := 1 / float64(len(t.Links))
				seen := map[int32]bool{}
				for _, l := range t.Links {
					key := l
					if h := v.x.AccessHost(l); h >= 0 {
						key = -1 - h // the host
					}
					votes[key] += share
					total += share
					if !seen[key] {
						seen[key] = true
						counts[key]++
					}
				}
			}
		}
		keys := make([]int32, 0, len(votes))
		for k, s := range votes {
			if s >= voteMin && s >= voteShare*total && counts[k] >= v.cfg.MinAnomalies {
				keys = append(keys, k)
			}
		}
		sort.Slice(keys, func(i, j int) bool {
			if votes[keys[i]] != votes[keys[j]] {
				return votes[keys[i]] > votes[keys[j]]
			}
			return keys[i] < keys[j]
		})
		for _, k := range keys {
			s := Suspect{Score: votes[k], Confidence: votes[k] / total, Symptom: SymptomLoss}
			if latency {
				s.Symptom = SymptomLatency
			}
			if k < 0 {
				h := -1 - k
				s.Element, s.Kind = v.x.Names[h], KindHost
				s.Evidence = Evidence{Probes: v.ev.T[v.x.HostUp[h]], Anomalous: counts[k]}
			} else {
				s.Element, s.Kind = v.x.LinkName(k), KindLink
				s.Evidence = Evidence{Probes: v.ev.T[k], Anomalous: counts[k]}
			}
			if !latency && s.Evidence.Probes > 0 {
				s.Estimate = min(1, float64(counts[k])/s.Evidence.Probes)
			}
			out = append(out, s)
		}
	}
	if len(out) > v.cfg.MaxSuspects {
		out = out[:v.cfg.MaxSuspects]
	}
	return out, nil
}
