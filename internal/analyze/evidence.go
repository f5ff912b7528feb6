package analyze

// Evidence on demand. A gray link on a large fabric carries a few dozen
// probes a window: at 2 % loss, about one lost probe per window, minutes
// before any localizer may blame it. So while nothing is blamed but the
// evidence points somewhere (localize.Lead: anomalies that stand out from
// the background without convicting anything), the analyzer asks the
// agents whose probes may cross the lead, or the switches around it, to
// probe those peers more often (NetBouncer and 007 probe the suspect paths
// the same way), within a per-agent and a fleet-wide budget of extra
// probes per second. A request lapses when no window renews it for Hold
// windows (the suspicion cleared) and is withdrawn as soon as anything is
// blamed (confirmed: the localizer has its answer, and more probes beside
// a blamed element would mostly make the residue it could not fit look
// significant; measured in docs/benchmarks.md). The plan is pure data
// here; the server publishes it as pinglist.Boost values, the simulator
// applies it to its fabric.

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshlens/meshlens/internal/aggregate"
	"github.com/meshlens/meshlens/internal/localize"
	"github.com/meshlens/meshlens/internal/pinglist"
)

// Defaults of EvidenceConfig.
const (
	DefaultEvidenceProbes    = 4
	DefaultEvidenceAgentRate = 10.0
	DefaultEvidenceFleetRate = 1000.0
	DefaultEvidenceHold      = 3
)

// EvidenceConfig tunes evidence on demand; zero values take defaults.
type EvidenceConfig struct {
	// Off: no extra probes are ever asked for.
	Off bool
	// Probes per interval and protocol on a pair whose evidence is asked
	// for, the regular one included (default 4, at most
	// pinglist.MaxBoostProbes). With leads at MinScore/4 this names a
	// 2 % leaf-spine link in a median 27 s where 2 took 64 s; on small
	// fabrics, where extra probes mostly amplify the localizer's model
	// errors, no element a tenth of all probes cross is a lead (see
	// docs/benchmarks.md).
	Probes int
	// AgentRate bounds the extra probes per second asked of one agent
	// (default 10: a pinglist of 100 peers at tcp+udp every 10 s is 20
	// probes/s); FleetRate bounds them over all agents (default 1000).
	AgentRate, FleetRate float64
	// Hold: a request nobody renewed for this many windows has cleared
	// (default 3, the localizer's horizon).
	Hold int
}

func (c *EvidenceConfig) check() error {
	switch {
	case c.Probes > pinglist.MaxBoostProbes:
		return fmt.Errorf("analyze: evidence on demand: %d probes per interval, at most %d", c.Probes, pinglist.MaxBoostProbes)
	case c.AgentRate < 0 || c.FleetRate < 0 || c.Hold < 0:
		return errors.New("analyze: evidence on demand: negative budget or hold")
	}
	return nil
}

func (c *EvidenceConfig) setDefaults() {
	if c.Probes <= 1 {
		c.Probes = DefaultEvidenceProbes
	}
	if c.AgentRate <= 0 {
		c.AgentRate = DefaultEvidenceAgentRate
	}
	if c.FleetRate <= 0 {
		c.FleetRate = DefaultEvidenceFleetRate
	}
	if c.Hold <= 0 {
		c.Hold = DefaultEvidenceHold
	}
}

// Evidence is the current plan: which agents probe which peers Probes
// times an interval, and why.
type Evidence struct {
	// Version changes whenever Agents or Probes do.
	Version uint64 `json:"version"`
	// Probes per interval and protocol on every pair listed.
	Probes int `json:"probes"`
	// Agents maps an agent to the peers it probes harder, sorted.
	Agents map[string][]string `json:"agents"`
	// Requests are the elements evidence is gathered on, strongest first.
	Requests []EvidenceRequest `json:"requests"`
	// ExtraPerSecond is the extra probes per second the plan asks for,
	// over the fleet, from the pairs' probes in the last window.
	ExtraPerSecond float64 `json:"extra_per_second"`
	// Window is the end of the window the plan was last made on.
	Window time.Time `json:"window"`
}

// EvidenceRequest is one element evidence is gathered on.
type EvidenceRequest struct {
	Element string        `json:"element"`
	Kind    localize.Kind `json:"kind"`
	// Score is the lead's (localize.Lead) in the last window naming it.
	Score float64   `json:"score"`
	Since time.Time `json:"since"`
	// Renewed is the end of the last window that pointed at it.
	Renewed time.Time `json:"renewed"`
	// Pairs probed harder for it, and pairs that may cross it but were
	// left out by the budgets.
	Pairs      int `json:"pairs"`
	OverBudget int `json:"over_budget"`
}

// maxEvidenceShare: no evidence is asked for on an element that this
// share of all probes cross already (every switch of a small fabric).
const maxEvidenceShare = 0.1

// Outcomes of meshlens_evidence_requests_ended_total.
const (
	evidenceConfirmed = "confirmed" // something was blamed
	evidenceCleared   = "cleared"   // not pointed at for Hold windows
	evidenceReset     = "reset"     // the topology changed
)

// evidence is the planner's state, owned by Analyzer.Advance.
type evidence struct {
	cfg      EvidenceConfig
	window   time.Duration
	x        *localize.Index
	crossing map[string]*localize.Crossing
	reqs     map[string]*EvidenceRequest
	m        evidenceMetrics

	mu   sync.Mutex // guards plan, read by Evidence
	plan Evidence
}

type evidenceMetrics struct {
	requests     prometheus.Gauge
	pairs        prometheus.Gauge
	extra        prometheus.Gauge
	ended        *prometheus.CounterVec
	refused      prometheus.Counter
	unknown      prometheus.Counter
	wellObserved prometheus.Counter
}

func newEvidence(cfg EvidenceConfig, window time.Duration, x *localize.Index, reg prometheus.Registerer) *evidence {
	cfg.setDefaults()
	e := &evidence{cfg: cfg, window: window, x: x, crossing: map[string]*localize.Crossing{}, reqs: map[string]*EvidenceRequest{},
		plan: Evidence{Probes: cfg.Probes, Agents: map[string][]string{}, Requests: []EvidenceRequest{}}}
	e.m = evidenceMetrics{
		requests: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshlens_evidence_requests",
			Help: "Elements whose evidence is being gathered on demand: agents probe the pairs that may cross them harder.",
		}),
		pairs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshlens_evidence_pairs",
			Help: "Host pairs asked to probe harder for evidence on demand.",
		}),
		extra: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshlens_evidence_extra_probes_per_second",
			Help: "Extra probes per second evidence on demand asks of the fleet (within --evidence-fleet-rate).",
		}),
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_evidence_requests_ended_total",
			Help: "Evidence requests withdrawn, by outcome: confirmed (blamed solidly), cleared (not pointed at for the hold), reset (new topology).",
		}, []string{"outcome"}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_evidence_pairs_over_budget_total",
			Help: "Pairs that may cross a suspected element left out of a plan by the per-agent or fleet budget, summed over plans.",
		}),
		wellObserved: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_evidence_leads_well_observed_total",
			Help: "Leads no evidence was asked for: a tenth of all probes or more cross them already.",
		}),
		unknown: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_evidence_unknown_elements_total",
			Help: "Suspected elements evidence could not be planned for: not an element of the topology (a bug if it grows).",
		}),
	}
	for _, o := range []string{evidenceConfirmed, evidenceCleared, evidenceReset} {
		e.m.ended.WithLabelValues(o)
	}
	if reg != nil {
		reg.MustRegister(e.m.requests, e.m.pairs, e.m.extra, e.m.ended, e.m.refused, e.m.unknown, e.m.wellObserved)
	}
	return e
}

// reindex forgets every request: element names may mean other paths now.
func (e *evidence) reindex(x *localize.Index) {
	e.m.ended.WithLabelValues(evidenceReset).Add(float64(len(e.reqs)))
	e.x = x
	clear(e.crossing)
	clear(e.reqs)
	e.publish(Evidence{Probes: e.cfg.Probes}, time.Time{})
}

// update takes one localized window: its suspects and leads (the first
// localizer's) and the pairs probed in it.
func (e *evidence) update(sw *aggregate.SealedWindow, suspects []localize.Suspect, leads []localize.Lead) {
	if e.cfg.Off {
		return
	}
	end := sw.End
	blamed := false
	for _, s := range suspects {
		// A starved agent or a host gone is no answer about the
		// network: leads still count beside them.
		blamed = blamed || (s.Symptom != localize.SymptomAgentSlow && s.Symptom != localize.SymptomHostDown)
	}
	if blamed {
		e.m.ended.WithLabelValues(evidenceConfirmed).Add(float64(len(e.reqs)))
		clear(e.reqs)
	} else {
		for _, l := range leads {
			if l.Share >= maxEvidenceShare {
				// Probed as well as probing can make it; more probes
				// would amplify the model's errors, not the evidence.
				e.m.wellObserved.Inc()
				continue
			}
			r := e.reqs[l.Element]
			if r == nil {
				r = &EvidenceRequest{Element: l.Element, Kind: l.Kind, Since: end}
				e.reqs[l.Element] = r
			}
			r.Score, r.Renewed = l.Score, end
		}
	}
	for name, r := range e.reqs {
		if end.Sub(r.Renewed) >= time.Duration(e.cfg.Hold)*e.window {
			delete(e.reqs, name)
			e.m.ended.WithLabelValues(evidenceCleared).Inc()
		}
	}
	if len(e.reqs) == 0 {
		// (the usual case: no window's pairs to read)
		e.m.requests.Set(0)
		e.m.pairs.Set(0)
		e.m.extra.Set(0)
		e.publish(Evidence{Probes: e.cfg.Probes}, end)
		return
	}
	e.allocate(e.pairsOf(sw))
}

// windowPairs are the pairs probed in a window with their probes.
type windowPairs struct {
	end   time.Time
	width time.Duration
	// regular probes per (src, dst) host id pair, all protocols
	probes map[[2]int32]uint64
}

// pairsOf reads w's pairs of hosts (not HTTP targets), counting a pair
// the plan boosted at its regular rate.
func (e *evidence) pairsOf(w *aggregate.SealedWindow) windowPairs {
	out := windowPairs{end: w.End, width: w.End.Sub(w.Start), probes: make(map[[2]int32]uint64, len(w.Pairs)/2)}
	for _, p := range w.Pairs {
		a, okA := e.x.Node(p.Key.Src)
		b, okB := e.x.Node(p.Key.Dst)
		if !okA || !okB || e.x.IsSwitch(a) || e.x.IsSwitch(b) {
			continue
		}
		out.probes[[2]int32{a, b}] += uint64(p.Stats.Sent)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for src, peers := range e.plan.Agents {
		a, _ := e.x.Node(src)
		for _, dst := range peers {
			b, _ := e.x.Node(dst)
			if n, ok := out.probes[[2]int32{a, b}]; ok {
				out.probes[[2]int32{a, b}] = max(1, n/uint64(e.plan.Probes))
			}
		}
	}
	return out
}

// allocate turns the requests into per-agent peer lists, stronger leads
// first, a pair at a time while its agent and the fleet are within budget.
func (e *evidence) allocate(w windowPairs) {
	reqs := slices.Collect(maps.Values(e.reqs))
	sort.Slice(reqs, func(i, j int) bool {
		a, b := reqs[i], reqs[j]
		if a.Score != b.Score {
			return a.Score > b.Score
		}
		return a.Element < b.Element
	})
	pairs := slices.Collect(maps.Keys(w.probes))
	slices.SortFunc(pairs, func(a, b [2]int32) int {
		if a[0] != b[0] {
			return int(a[0] - b[0])
		}
		return int(a[1] - b[1])
	})
	secs := w.width.Seconds()
	if secs <= 0 {
		secs = e.window.Seconds()
	}
	agentRate := map[int32]float64{}
	chosen := map[[2]int32]bool{}
	var fleet float64
	out := Evidence{Probes: e.cfg.Probes, Agents: map[string][]string{}, Requests: make([]EvidenceRequest, 0, len(reqs))}
	for _, r := range reqs {
		// The element's pairs first, then those of the switches around
		// it (localize.Index.Around): a link probed harder than its
		// switch's other paths reads as worse than the switch.
		var cs []*localize.Crossing
		for _, name := range append([]string{r.Element}, e.x.Around(r.Element)...) {
			c, err := e.crossingOf(name)
			if err != nil {
				break
			}
			cs = append(cs, c)
		}
		if len(cs) == 0 {
			e.m.unknown.Inc()
			delete(e.reqs, r.Element)
			continue
		}
		r.Pairs, r.OverBudget = 0, 0
		seen := map[[2]int32]bool{}
		for _, c := range cs {
			for _, p := range pairs {
				if seen[p] || !c.Pair(p[0], p[1]) {
					continue
				}
				seen[p] = true
				if chosen[p] {
					r.Pairs++
					continue
				}
				cost := float64(w.probes[p]) * float64(e.cfg.Probes-1) / secs
				if agentRate[p[0]]+cost > e.cfg.AgentRate || fleet+cost > e.cfg.FleetRate {
					r.OverBudget++
					continue
				}
				agentRate[p[0]] += cost
				fleet += cost
				chosen[p] = true
				r.Pairs++
				src, dst := e.x.Names[p[0]], e.x.Names[p[1]]
				out.Agents[src] = append(out.Agents[src], dst)
			}
		}
		e.m.refused.Add(float64(r.OverBudget))
		out.Requests = append(out.Requests, *r)
	}
	for _, peers := range out.Agents {
		sort.Strings(peers)
	}
	out.ExtraPerSecond = fleet
	e.m.requests.Set(float64(len(out.Requests)))
	e.m.pairs.Set(float64(len(chosen)))
	e.m.extra.Set(fleet)
	e.publish(out, w.end)
}

// crossingOf is element's Crossing, made once.
func (e *evidence) crossingOf(element string) (*localize.Crossing, error) {
	if c := e.crossing[element]; c != nil {
		return c, nil
	}
	c, err := e.x.Crossing(element)
	if err != nil {
		return nil, err
	}
	e.crossing[element] = c
	return c, nil
}

// publish makes out the plan, with a new version if what agents do
// changed.
func (e *evidence) publish(out Evidence, end time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	out.Version = e.plan.Version
	if out.Probes != e.plan.Probes || !maps.EqualFunc(out.Agents, e.plan.Agents, slices.Equal) {
		out.Version++
	}
	if out.Agents == nil {
		out.Agents = map[string][]string{}
	}
	if out.Requests == nil {
		out.Requests = []EvidenceRequest{}
	}
	out.Window = end
	e.plan = out
}

// current is a copy of the plan, safe to keep.
func (e *evidence) current() Evidence {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.plan
	out.Agents = make(map[string][]string, len(e.plan.Agents))
	for a, p := range e.plan.Agents {
		out.Agents[a] = slices.Clone(p)
	}
	out.Requests = slices.Clone(e.plan.Requests)
	return out
}
