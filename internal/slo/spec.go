package slo

import (
	"time"
)

// SLIKind says how an SLI counts good and bad events.
type SLIKind string

// SLI kinds.
const (
	// ProbeAvailability: share of probes not lost in a scope.
	ProbeAvailability SLIKind = "probe_availability"
	// ProbeLatency: share of probes answered faster than a threshold.
	ProbeLatency SLIKind = "probe_latency"
	// Ratio: any two PromQL expressions over the store, good/total or
	// bad/total.
	Ratio SLIKind = "ratio"
)

// Severities of the default tiers.
const (
	SeverityPage   = "page"
	SeverityTicket = "ticket"
)

// DefaultMinEvents is the default minimum of events in a tier's long window
// before it may fire (see the package doc).
const DefaultMinEvents = 100

// BaseWindow is the SLO window the default tier factors are written for.
const BaseWindow = 30 * 24 * time.Hour

// SLO is one validated objective.
type SLO struct {
	Name        string
	Description string
	// Target is the objective as a ratio in (0, 1), e.g. 0.9995.
	Target float64
	// Window is the rolling SLO window; for a calendar window it is the
	// nominal length of one period (a month is BaseWindow) and Calendar is
	// set.
	Window   time.Duration
	Calendar bool
	// Period is the calendar period of a calendar window (zero otherwise).
	Period CalendarPeriod
	// Service is the service the SLO belongs to (OpenSLO spec.service); it
	// is put on alerts and rules as the service label.
	Service string
	SLI     SLI
	// Tiers are the enabled burn-rate tiers, factors already scaled to
	// Window.
	Tiers []Tier
	// MinEvents is the minimum number of events in a tier's long window for
	// it to fire; 0 disables the rule.
	MinEvents float64
	// Runbook is a URL put on the alerts of this SLO.
	Runbook string
	// Labels are copied onto alerts and rules.
	Labels map[string]string
	// Source is where the SLO was defined ("file:line").
	Source string
	// Budgeting is what the budget counts: events (Occurrences, the zero
	// value) or time slices of TimeSlice (slices.go).
	Budgeting Budgeting
	// TimeSlice is the length of a slice of a Timeslices or
	// RatioTimeslices budget.
	TimeSlice time.Duration
	// TimeSliceTarget is the good ratio a slice of a Timeslices budget
	// needs to be good.
	TimeSliceTarget float64
}

// Budgeting is what an SLO's error budget counts (OpenSLO's
// budgetingMethod).
type Budgeting string

// Budgeting methods.
const (
	// Occurrences counts events: the budget is a share of them.
	Occurrences Budgeting = ""
	// Timeslices counts time slices: a slice is bad when its good ratio is
	// below TimeSliceTarget; the budget is a share of the slices.
	Timeslices Budgeting = "Timeslices"
	// RatioTimeslices averages the error ratios of the time slices: each
	// slice weighs the same, however many events it holds.
	RatioTimeslices Budgeting = "RatioTimeslices"
)

// Budget is the share of events allowed to be bad: 1 - Target.
func (s *SLO) Budget() float64 { return 1 - s.Target }

// SLI says what is measured.
type SLI struct {
	Kind SLIKind
	// Scope selects the probes of ProbeAvailability and ProbeLatency.
	Scope Scope
	// Threshold of ProbeLatency: a probe is good when answered within it.
	Threshold time.Duration
	// Estimate: the engine estimates ProbeLatency's fast probes from the
	// aggregator's per-window latency quantiles (see latency.go) instead of
	// reading RTT bucket counters.
	Estimate bool
	// Good, Bad and Total are the PromQL of a Ratio SLI, with {{.window}}
	// where the range goes; exactly one of Good and Bad is set.
	Good, Bad, Total string
}

// Scope selects probes by where they run. DC, Pod, Rack and Host select the
// probes with either end in that element (at most one of them is set);
// Proto narrows to one protocol; Target selects the probes of the http
// prober to one service target. The zero Scope is every probe.
type Scope struct {
	DC     string `yaml:"dc" json:"dc,omitempty"`
	Pod    string `yaml:"pod" json:"pod,omitempty"`
	Rack   string `yaml:"rack" json:"rack,omitempty"`
	Host   string `yaml:"host" json:"host,omitempty"`
	Proto  string `yaml:"proto" json:"proto,omitempty"`
	Target string `yaml:"target" json:"target,omitempty"`
}

// canFire reports whether a burn rate can ever be reached on a target (a
// fraction): it cannot when the error rate it needs is above 100%.
func canFire(burnRate, target float64) bool { return burnRate*(1-target) <= 1 }

// Tier is one multiwindow burn-rate alert condition.
type Tier struct {
	Name string
	// Factor is the burn rate both windows must exceed, scaled to the SLO
	// window.
	Factor      float64
	Long, Short time.Duration
	Severity    string
	// For is how long the condition must hold before the alert fires
	// (pending until then).
	For time.Duration
	// Alert is the alertname of the tier's alert; empty is AlertName. An
	// SLO imported from Sloth or Pyrra keeps the names its Alertmanager
	// routes match.
	Alert string
	// Labels and Annotations are added to the tier's alert (an imported
	// SLO's per-tier routing labels, e.g. a ticket tier's channel).
	Labels, Annotations map[string]string
}

// AlertName is the alertname of t's alert.
func (t Tier) AlertName() string {
	if t.Alert != "" {
		return t.Alert
	}
	return AlertName
}

// DefaultTiers are the SRE Workbook's tiers for a 30-day SLO.
func DefaultTiers() []Tier {
	return []Tier{
		{Name: "page-1h", Factor: 14.4, Long: time.Hour, Short: 5 * time.Minute, Severity: SeverityPage},
		{Name: "page-6h", Factor: 6, Long: 6 * time.Hour, Short: 30 * time.Minute, Severity: SeverityPage},
		{Name: "ticket-1d", Factor: 3, Long: 24 * time.Hour, Short: 2 * time.Hour, Severity: SeverityTicket},
		{Name: "ticket-3d", Factor: 1, Long: 72 * time.Hour, Short: 6 * time.Hour, Severity: SeverityTicket},
	}
}

// TiersFor returns the default tiers for an SLO window w. The SRE
// Workbook's tiers are written for 30 days: each spends a fixed share of
// the budget in its long window (2 %, 5 %, 10 %, 10 %). For a longer window
// the factors are scaled up (ScaleFactor) and the windows kept. For a
// shorter window scaling the factors down would fire below 1x burn (a tier
// that pages while the budget would outlast the window) and leave the 3-day
// tier longer than the window itself; so, as Pyrra does, the windows shrink
// by w/30d instead and the factors stay: the share of budget each tier
// stands for is the same, no factor is below 1 and every tier fits inside
// w. The short windows are at least MinTierWindow (an increase needs a
// few samples; 5m is the Workbook's shortest window) and each long window at least twice its short one.
func TiersFor(w time.Duration) []Tier {
	ts := DefaultTiers()
	for i := range ts {
		if w >= BaseWindow {
			ts[i].Factor = ScaleFactor(ts[i].Factor, w)
			continue
		}
		k := float64(w) / float64(BaseWindow)
		ts[i].Short = max(time.Duration(float64(ts[i].Short)*k).Round(time.Minute), MinTierWindow)
		ts[i].Long = max(time.Duration(float64(ts[i].Long)*k).Round(time.Minute), 2*ts[i].Short)
	}
	return ts
}

// MinTierWindow is the shortest window of a default tier.
const MinTierWindow = 5 * time.Minute

// ScaleFactor turns a factor written for a 30-day window into the factor
// that spends the same share of the budget in the same long window for an
// SLO window w.
func ScaleFactor(factor float64, w time.Duration) float64 {
	return factor * float64(w) / float64(BaseWindow)
}

// Windows returns the distinct tier windows of s, shortest first.
func (s *SLO) Windows() []time.Duration {
	seen := map[time.Duration]bool{}
	var out []time.Duration
	for _, t := range s.Tiers {
		for _, w := range []time.Duration{t.Short, t.Long} {
			if !seen[w] {
				seen[w] = true
				out = append(out, w)
			}
		}
	}
	sortDurations(out)
	return out
}

func sortDurations(d []time.Duration) {
	for i := 1; i < len(d); i++ {
		for j := i; j > 0 && d[j] < d[j-1]; j-- {
			d[j], d[j-1] = d[j-1], d[j]
		}
	}
}
