package localize

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

// voteMin is the votes the most voted link needs to be blamed (with at
// least MinAnomalies flows, the floor meshlens has too).
const voteMin = 1.0

func newVote(x *Index, cfg Config) *vote {
	return &vote{x: x, cfg: cfg, ev: newEvidence(x, cfg.Horizon)}
}

func (v *vote) Name() string { return NameVote }

func (v *vote) Localize(w *Window) ([]Suspect, error) {
	v.ev.add(w)
	var out []Suspect
	for _, latency := range []bool{false, true} {
		var flows []observed
		for i := range v.ev.slots {
			s := &v.ev.slots[i]
			for j := range s.traces {
				if t := &s.traces[j]; t.Lost != latency && len(s.paths[j].fwd) > 0 {
					flows = append(flows, observed{t, &s.paths[j]})
				}
			}
		}
		out = append(out, v.blame(flows, latency)...)
	}
	if len(out) > v.cfg.MaxSuspects {
		out = out[:v.cfg.MaxSuspects]
	}
	return out, nil
}

// key is what a link direction is blamed as: itself, or its host.
func (v *vote) key(l int32) int32 {
	if h := v.x.AccessHost(l); h >= 0 {
		return -1 - h
	}
	return l
}

// blame is 007's greedy: the most voted link is blamed, the flows through
// it are removed, and the votes recounted, until no link holds voteMin
// votes from MinAnomalies flows. A flow votes for the links of its traced
// (forward) path; where hops were silent, its vote is split over the
// links the path may have taken, by their probability (paths.go), as for
// meshlens.
func (v *vote) blame(flows []observed, latency bool) []Suspect {
	var out []Suspect
	gone := make([]bool, len(flows))
	for len(out) < v.cfg.MaxSuspects {
		votes := map[int32]float64{}
		counts := map[int32]int{}
		var total float64
		for i, o := range flows {
			if gone[i] {
				continue
			}
			var sum float64
			for _, wl := range o.p.fwd {
				sum += wl.w
			}
			seen := map[int32]bool{}
			for _, wl := range o.p.fwd {
				k := v.key(wl.link)
				share := wl.w / sum
				votes[k] += share
				total += share
				if !seen[k] && wl.w >= 0.5 {
					seen[k] = true
					counts[k]++
				}
			}
		}
		best, bestVotes := int32(0), 0.0
		for k, s := range votes {
			if counts[k] >= v.cfg.MinAnomalies && (s > bestVotes || s == bestVotes && k < best) {
				best, bestVotes = k, s
			}
		}
		if bestVotes < voteMin {
			break
		}
		s := Suspect{Score: bestVotes, Confidence: bestVotes / total, Symptom: SymptomLoss}
		if latency {
			s.Symptom = SymptomLatency
		}
		if best < 0 {
			h := -1 - best
			s.Element, s.Kind = v.x.Names[h], KindHost
			s.Evidence = Evidence{Probes: v.ev.T[v.x.HostUp[h]], Anomalous: counts[best]}
		} else {
			s.Element, s.Kind = v.x.LinkName(best), KindLink
			s.Evidence = Evidence{Probes: v.ev.T[best], Anomalous: counts[best]}
		}
		if !latency && s.Evidence.Probes > 0 {
			s.Estimate = min(1, float64(counts[best])/s.Evidence.Probes)
		}
		out = append(out, s)
		for i, o := range flows {
			for _, wl := range o.p.fwd {
				if v.key(wl.link) == best {
					gone[i] = true
					break
				}
			}
		}
	}
	return out
}
