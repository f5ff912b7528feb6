// Package localize says which link, switch or server explains what the
// probes of a window saw. Its input is a sealed aggregation window (per-pair
// and per-rack-pair counts, host rollups), the agents' scheduling lag, and
// path discovery of anomalous probes as a real Paris traceroute from the
// source gets it (forward hops only, some silent, maybe stopping short:
// Trace, read as probabilities in paths.go); its output is a ranked list
// of Suspects with an estimate, a confidence and the evidence.
//
// Two localizers share that interface: "meshlens" (this package's method:
// Poisson likelihood of each candidate element's losses against the
// fabric-wide rate, with the traffic each element carried, explained
// greedily so a device beats its links and a sick server beats its ToR link)
// and "vote", a 007-style baseline (each failed flow votes 1/h for the h
// links of its path) kept so every claim is a side-by-side comparison.
//
// It imports topology, wire and aggregate's summary types; never sim.
package localize

import (
	"fmt"
	"time"

	"github.com/meshlens/meshlens/internal/aggregate"
	"github.com/meshlens/meshlens/internal/wire"
)

// Kind is what a suspect is.
type Kind string

const (
	KindLink   Kind = "link"
	KindDevice Kind = "device"
	KindHost   Kind = "host"
)

// Symptom is how a suspect misbehaves.
type Symptom string

const (
	SymptomLoss      Symptom = "loss"       // drops a rate of packets
	SymptomDown      Symptom = "down"       // drops (nearly) everything
	SymptomBlackhole Symptom = "blackhole"  // drops whole flows, chosen by hash: retransmits die too
	SymptomLatency   Symptom = "latency"    // adds delay
	SymptomAgentSlow Symptom = "agent_slow" // the measuring agent is starved: not the network
	SymptomHostDown  Symptom = "host_down"  // the host is gone: its agent silent, probes to it lost
)

// Suspect is one element blamed for a window.
type Suspect struct {
	// Element is a link direction "A->B", a link "A--B", a switch or a host.
	Element string  `json:"element"`
	Kind    Kind    `json:"kind"`
	Symptom Symptom `json:"symptom"`
	// Estimate is a drop rate in 0..1 for loss symptoms, the added latency
	// in seconds for latency, the agent's scheduling lag in seconds for
	// agent_slow.
	Estimate float64 `json:"estimate"`
	// Confidence in 0..1; Score is the log-likelihood ratio it comes from.
	Confidence float64  `json:"confidence"`
	Score      float64  `json:"score"`
	Evidence   Evidence `json:"evidence"`

	cand int32 // the meshlens localizer's candidate id
	// tracedRate is a loss suspect's rate among traced probes (Estimate
	// scales it to all probes): what its symptom and the routing model
	// were tuned on.
	tracedRate float64
}

// Evidence is what a suspect was blamed on.
type Evidence struct {
	// Probes crossed the element in the horizon (expected, from the ECMP
	// path sets); Anomalous of them were lost or slow and traced through it,
	// from Pairs distinct (src, dst) pairs.
	Probes    float64 `json:"probes"`
	Anomalous int     `json:"anomalous"`
	Pairs     int     `json:"pairs"`
	Expected  float64 `json:"expected"` // anomalies expected from the background
	// SamplePairs names up to MaxSamplePairs of those pairs ("src -> dst"),
	// in name order: who is affected, for incidents and troubleshooting.
	SamplePairs []string `json:"sample_pairs,omitempty"`
}

// MaxSamplePairs bounds Evidence.SamplePairs.
const MaxSamplePairs = 20

// Trace is path discovery of one anomalous probe, as a real agent gets it
// (see wire.TracedProbe): the forward path from Src, hop by hop, with the
// hops that did not answer unknown. Lost probes are traced, and probes whose
// RTT exceeded their pair's baseline by a margin (slow).
type Trace struct {
	Src, Dst int32 // host ids of the Index
	Proto    wire.Protocol
	Lost     bool
	// BothLost: a TCP probe whose SYN retransmission was lost too (a
	// flow-consistent drop); false when the retransmission got through.
	BothLost bool
	// Excess over the pair's baseline RTT, for slow probes.
	Excess time.Duration
	// Hops are the node ids of the Index answering TTL 1, 2, ... after
	// Src, UnknownHop where none answered; Reached says the last is Dst.
	Hops    []int32
	Reached bool
	// Reverse: the path of a lost probe's reply, traced by the probed
	// host (Src) back to the prober (Dst) on the prober's request. It
	// joins the prober's own trace of that probe by Start and Port.
	Reverse bool
	// Start is when the probe was sent (Unix ns), Port the prober's port:
	// with the hosts and Proto, they name the probe.
	Start int64
	Port  uint32
}

// UnknownHop marks a hop of Trace.Hops that did not answer.
const UnknownHop int32 = -1

// Window is one sealed window as the localizer reads it.
type Window struct {
	Sealed *aggregate.SealedWindow
	// AgentLag is each agent's scheduling lag p99 as last reported.
	AgentLag map[string]time.Duration
	// Traces of the window's anomalous probes; may be empty when no path
	// discovery runs (then only host-level conclusions are possible).
	Traces []Trace
	// Silent are the hosts whose agents stopped delivering (stale or
	// missing). A probe lost on its way to one is no evidence against the
	// network: the host itself is likely gone (its responder runs in its
	// agent, and a live host without them refuses, it does not drop).
	Silent map[string]bool
}

// Lead is an element the window's evidence points at without convicting
// it: its anomalies stand out from the background, but are fewer or less
// significant than a suspect needs. It is where more probes would settle
// the question (evidence on demand, internal/analyze).
type Lead struct {
	Element   string  `json:"element"`
	Kind      Kind    `json:"kind"`
	Score     float64 `json:"score"`
	Anomalous float64 `json:"anomalous"` // traced anomalies that crossed it, weighted by how surely
	// Share is the share of the horizon's probes that crossed it (or
	// their replies): how well observed it already is.
	Share float64 `json:"share"`
}

// Leader is a Localizer that also names leads: those of the last Localize
// call, strongest first.
type Leader interface {
	Leads() []Lead
}

// MaxLeads bounds what Leader.Leads returns.
const MaxLeads = 4

// Localizer turns windows into suspects. It keeps state across windows
// (it is fed every window in order) and is not safe for concurrent use.
type Localizer interface {
	Name() string
	Localize(w *Window) ([]Suspect, error)
}

// Names of the localizers New knows.
const (
	NameMeshlens = "meshlens"
	NameVote     = "vote"
)

// Config tunes a localizer; zero values take defaults.
type Config struct {
	// Horizon is how many windows of evidence are pooled (default 3): short
	// enough to blame within three probe intervals, long enough that a 1%
	// loss on a quiet link shows.
	Horizon int
	// MinScore is the log-likelihood ratio a suspect needs (default 14):
	// with tens of thousands of candidates per window and windows every
	// 10 s, a chance Poisson excursion must be rarer than ~1e-6.
	MinScore float64
	// MinAnomalies a suspect needs (default 3).
	MinAnomalies int
	// AgentSlowLag: an agent reporting a scheduling lag p99 above it is
	// flagged agent_slow and its slow probes are not held against the
	// network (default 10ms).
	AgentSlowLag time.Duration
	// MaxSuspects per window (default 8).
	MaxSuspects int
	// LeadScore and LeadAnomalies are what a lead needs (defaults
	// MinScore/4 and 2): two anomalies on a quiet element of a clean
	// fabric qualify, a busy element's share of the background does not.
	// A lead only asks for evidence (probes), never blames: the bar is
	// low so that the probes start a window or two sooner, which is what
	// names a 2 % link within 30 s (docs/benchmarks.md).
	LeadScore     float64
	LeadAnomalies float64
}

func (c *Config) setDefaults() {
	if c.Horizon <= 0 {
		c.Horizon = 3
	}
	if c.MinScore <= 0 {
		c.MinScore = 14
	}
	if c.MinAnomalies <= 0 {
		c.MinAnomalies = 3
	}
	if c.AgentSlowLag <= 0 {
		c.AgentSlowLag = 10 * time.Millisecond
	}
	if c.MaxSuspects <= 0 {
		c.MaxSuspects = 8
	}
	if c.LeadScore <= 0 {
		c.LeadScore = c.MinScore / 4
	}
	if c.LeadAnomalies <= 0 {
		c.LeadAnomalies = 2
	}
}

// New returns the named localizer over x.
func New(name string, x *Index, cfg Config) (Localizer, error) {
	cfg.setDefaults()
	switch name {
	case NameMeshlens, "":
		return newMeshlens(x, cfg), nil
	case NameVote:
		return newVote(x, cfg), nil
	}
	return nil, fmt.Errorf("localize: unknown localizer %q (want %s or %s)", name, NameMeshlens, NameVote)
}
