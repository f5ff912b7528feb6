package alert

import (
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// SourceLocalizer is the source (ObserveSource) of the conditions a
// FaultWatch raises.
const SourceLocalizer = "localizer"

// FaultAlertName is the alertname of an element the localizer blames.
const FaultAlertName = "MeshlensFaultSuspected"

// Defaults of FaultConfig.
const (
	// DefaultFaultConfidence takes every suspect the localizer reports
	// (it reports none below 1-1/e ≈ 0.63): significance is its job, and
	// two windows running guard against a fluke.
	DefaultFaultConfidence   = 0.6
	DefaultFaultWindows      = 2
	DefaultFaultClearWindows = 3
	DefaultFaultSeverity     = "page"
	// faultGaugeKeep is how long a cleared element's gauge stays at 0
	// before its series is dropped (bounded cardinality).
	faultGaugeKeep = time.Hour
)

// FaultConfig says when the localizer's own verdicts raise an alert,
// SLOs or not.
type FaultConfig struct {
	// MinConfidence a suspect needs in a window to count.
	MinConfidence float64
	// Windows: consecutive windows an element must be blamed in before
	// it alerts (one window's verdict can be a fluke).
	Windows int
	// ClearWindows: consecutive windows without it that resolve it.
	ClearWindows int
	// Severity label of the alerts.
	Severity string
	// ElementURL links an element to the UI ("" for none).
	ElementURL func(element string) string
	// Registerer gets meshlens_fault_suspected; nil keeps it unregistered.
	Registerer prometheus.Registerer
}

// FaultWatch turns the localizer's verdicts, window by window, into
// conditions: an element blamed with MinConfidence in Windows consecutive
// windows holds a MeshlensFaultSuspected condition (labels element, kind,
// symptom, severity; the culprit its incident names) until it has been
// clean for ClearWindows windows. Observe is called once per verdict, from
// one goroutine.
type FaultWatch struct {
	cfg   FaultConfig
	gauge *prometheus.GaugeVec
	state map[string]*faultState
}

type faultState struct {
	c Culprit
	// element and symptom of the alert: those it was raised with (a
	// link's blame moves between it and its directions from window to
	// window, and an alert keeps its labels).
	element, symptom string
	streak, clean    int
	active           bool
	// gauge: the label values of its gauge series, and when it was last
	// named (for dropping the series).
	gauge     [3]string
	lastNamed time.Time
}

// NewFaultWatch checks cfg and registers the gauge.
func NewFaultWatch(cfg FaultConfig) (*FaultWatch, error) {
	switch {
	case cfg.MinConfidence < 0 || cfg.MinConfidence > 1:
		return nil, fmt.Errorf("alert: fault confidence %g is not between 0 and 1", cfg.MinConfidence)
	case cfg.Windows < 0 || cfg.ClearWindows < 0:
		return nil, fmt.Errorf("alert: fault windows %d and clear windows %d must be positive", cfg.Windows, cfg.ClearWindows)
	}
	if cfg.MinConfidence == 0 {
		cfg.MinConfidence = DefaultFaultConfidence
	}
	if cfg.Windows == 0 {
		cfg.Windows = DefaultFaultWindows
	}
	if cfg.ClearWindows == 0 {
		cfg.ClearWindows = DefaultFaultClearWindows
	}
	if cfg.Severity == "" {
		cfg.Severity = DefaultFaultSeverity
	}
	w := &FaultWatch{cfg: cfg, state: map[string]*faultState{},
		gauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshlens_fault_suspected",
			Help: "The localizer's estimate for each element it blames (drop rate, or added latency in seconds); 0 once it is no longer blamed.",
		}, []string{"element", "kind", "symptom"})}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(w.gauge); err != nil {
			return nil, fmt.Errorf("alert: register fault gauge: %w", err)
		}
	}
	return w, nil
}

// Observe takes one window's culprits (what analyze.Culprits makes of a
// verdict) at time at and returns the conditions that hold now.
func (w *FaultWatch) Observe(at time.Time, culprits []Culprit) []Condition {
	// By element, a link and its directions as one: the localizer may
	// name the link in one window and the direction that failed in the
	// next.
	named := map[string]Culprit{}
	for _, c := range culprits {
		k := faultKey(c.Element)
		if prev, ok := named[k]; !ok || c.Confidence > prev.Confidence {
			named[k] = c
		}
	}
	for k, c := range named {
		st := w.state[k]
		if st == nil {
			st = &faultState{}
			w.state[k] = st
		}
		if g := [3]string{c.Element, c.Kind, c.Symptom}; st.gauge != g {
			if st.gauge[0] != "" {
				w.gauge.DeleteLabelValues(st.gauge[:]...)
			}
			st.gauge = g
		}
		w.gauge.WithLabelValues(st.gauge[:]...).Set(c.Estimate)
		st.lastNamed = at
		if c.Confidence < w.cfg.MinConfidence {
			// Named, but not surely: it neither builds a streak nor
			// clears one.
			st.streak = 0
			continue
		}
		st.c, st.clean = c, 0
		st.streak++
		if !st.active && st.streak >= w.cfg.Windows {
			st.active, st.element, st.symptom = true, c.Element, c.Symptom
		}
	}
	for k, st := range w.state {
		if _, ok := named[k]; ok {
			continue
		}
		if relatedNamed(st.c.Element, named) {
			// The localizer names a switch in one window and one of its
			// links in the next as its evidence firms up: not a clean
			// window for either, nor a break in their streaks.
			continue
		}
		st.streak = 0
		if st.gauge[0] != "" {
			w.gauge.WithLabelValues(st.gauge[:]...).Set(0)
		}
		if st.active {
			if st.clean++; st.clean >= w.cfg.ClearWindows {
				st.active = false
			}
		}
		if !st.active && at.Sub(st.lastNamed) > faultGaugeKeep {
			w.gauge.DeleteLabelValues(st.gauge[:]...)
			delete(w.state, k)
		}
	}
	var out []Condition
	for _, st := range w.state {
		if !st.active {
			continue
		}
		el, c := st.element, st.c
		c.Pairs = append([]string(nil), st.c.Pairs...)
		ann := map[string]string{
			"summary": fmt.Sprintf("meshlens blames %s %s: %s (%s, confidence %.2f)", c.Kind, c.Element, c.Symptom, describeEstimate(c), c.Confidence),
		}
		if c.Evidence != "" {
			ann["description"] = c.Evidence
		}
		if len(c.Pairs) > 0 {
			ann["sample_pairs"] = strings.Join(c.Pairs[:min(len(c.Pairs), 5)], ", ")
		}
		var link string
		if w.cfg.ElementURL != nil {
			link = w.cfg.ElementURL(el)
			ann["element_url"] = link
		}
		out = append(out, Condition{
			Labels:      map[string]string{"alertname": FaultAlertName, "element": el, "kind": c.Kind, "symptom": st.symptom, "severity": w.cfg.Severity},
			Annotations: ann, Value: c.Estimate, Culprit: &c, GeneratorURL: link,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Labels["element"] < out[j].Labels["element"] })
	return out
}

// relatedNamed says whether a culprit named now holds element or is held
// by it (a switch and its links, a host and its link).
func relatedNamed(element string, named map[string]Culprit) bool {
	if element == "" {
		return false
	}
	for _, c := range named {
		if contains(c.Element, element) || contains(element, c.Element) {
			return true
		}
	}
	return false
}

// faultKey is element, or for a link ("A--B", "A->B") its two ends in
// order: one key for the link and both its directions.
func faultKey(element string) string {
	ends := splitLink(element)
	if len(ends) != 2 {
		return element
	}
	a, b := ends[0], ends[1]
	if b < a {
		a, b = b, a
	}
	return a + "--" + b
}

func describeEstimate(c Culprit) string {
	if c.Symptom == "latency" {
		return fmt.Sprintf("%s added", time.Duration(c.Estimate*float64(time.Second)).Round(time.Microsecond))
	}
	return fmt.Sprintf("estimate %.3g%% dropped", 100*c.Estimate)
}

// UIElementURL links element to the topology page of the UI at base
// (the server's external URL).
func UIElementURL(base string) func(string) string {
	base = strings.TrimRight(base, "/")
	return func(element string) string { return base + "/#/topology?focus=" + url.QueryEscape(element) }
}
