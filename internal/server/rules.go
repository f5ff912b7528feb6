package server

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/model"

	"github.com/meshlens/meshlens/internal/alert"
	"github.com/meshlens/meshlens/internal/api"
	"github.com/meshlens/meshlens/internal/slo"
)

// The rules the server evaluates, as /api/v1/rules lists them: the SLOs'
// recording and alerting rules exactly as `meshlens slo rules` writes them
// for a Prometheus (same groups, names, expressions, labels), whose state
// and alerts are meshlens's own evaluation, and the localizer's alert.

// LocalizerRuleGroup names the group of the localizer's alerting rule.
const LocalizerRuleGroup = "meshlens-localizer"

// evalRecord is when an evaluation ran and how long it took.
type evalRecord struct {
	mu       sync.Mutex
	at       time.Time
	duration time.Duration
}

func (e *evalRecord) set(at time.Time, d time.Duration) {
	e.mu.Lock()
	e.at, e.duration = at, d
	e.mu.Unlock()
}

func (e *evalRecord) get() (time.Time, time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.at, e.duration
}

// RuleGroups implements api.RuleSource.
func (a *alerting) RuleGroups() []api.RuleGroup {
	active := a.activeAlerts()
	var out []api.RuleGroup
	if a.engine != nil {
		groups, err := a.sloRuleGroups(active)
		if err != nil {
			// The SLOs were validated when loaded: this is a bug, shown
			// as the rules' health rather than hidden.
			out = append(out, api.RuleGroup{Name: "meshlens-slo", File: "meshlens", Rules: []api.Rule{{Type: api.RuleRecording, Name: "slo:rules", LastError: err.Error()}}})
		}
		out = append(out, groups...)
	}
	return append(out, a.localizerRuleGroup(active))
}

// activeAlerts are the pending and firing alerts by alertname.
func (a *alerting) activeAlerts() map[string][]alert.Alert {
	out := map[string][]alert.Alert{}
	for _, al := range a.mgr.Alerts() {
		if al.State == alert.StatePending || al.State == alert.StateFiring {
			out[al.Labels["alertname"]] = append(out[al.Labels["alertname"]], al)
		}
	}
	return out
}

func toActive(al alert.Alert) api.ActiveAlert {
	return api.ActiveAlert{Labels: al.Labels, Annotations: al.Annotations, State: string(al.State), ActiveAt: al.ActiveAt, Value: al.Value}
}

func (a *alerting) sloRuleGroups(active map[string][]alert.Alert) ([]api.RuleGroup, error) {
	slos := a.engine.SLOs()
	f, err := slo.Rules(slos, slo.RulesOptions{Interval: a.sloInterval, DataDelay: a.sloDataDelay})
	if err != nil {
		return nil, err
	}
	files, errs := map[string]string{}, map[string]string{}
	for _, s := range slos {
		// Source is "file:line"; an SLO set through the API has its own.
		file := s.Source
		if i := strings.LastIndexByte(file, ':'); i > 0 {
			file = file[:i]
		}
		files[s.Name] = file
	}
	for _, st := range a.engine.Statuses() {
		if st.Error != "" {
			errs[st.Name] = st.Error
		}
	}
	lastAt, took := a.sloEval.get()
	out := make([]api.RuleGroup, 0, len(f.Groups))
	for _, g := range f.Groups {
		// Every rule of an SLO's group has its slo label.
		var name string
		if len(g.Rules) > 0 {
			name = g.Rules[0].Labels["slo"]
		}
		rg := api.RuleGroup{Name: g.Name, File: files[name], Interval: a.sloInterval, EvaluationTime: took, LastEvaluation: lastAt}
		for _, r := range g.Rules {
			rule := api.Rule{Type: api.RuleRecording, Name: r.Record, Query: r.Expr, Labels: r.Labels,
				LastError: errs[name], EvaluationTime: took, LastEvaluation: lastAt}
			if r.Alert != "" {
				rule.Type, rule.Name, rule.Annotations = api.RuleAlerting, r.Alert, r.Annotations
				if r.For != "" {
					d, err := model.ParseDuration(r.For)
					if err != nil {
						return nil, fmt.Errorf("server: generated SLO rule %s of %s: for %q: %w", r.Alert, g.Name, r.For, err)
					}
					rule.Duration = time.Duration(d)
				}
				for _, al := range active[r.Alert] {
					if labelsInclude(al.Labels, r.Labels) {
						rule.Alerts = append(rule.Alerts, toActive(al))
					}
				}
			}
			rg.Rules = append(rg.Rules, rule)
		}
		out = append(out, rg)
	}
	return out, nil
}

// labelsInclude: every label of sub is in ls with the same value.
func labelsInclude(ls, sub map[string]string) bool {
	for k, v := range sub {
		if ls[k] != v {
			return false
		}
	}
	return true
}

// localizerRuleGroup is the localizer's own alert as a rule: its query is
// what a Prometheus scraping this server would alert on (the gauge of
// blamed elements), and the description says what meshlens adds to it.
func (a *alerting) localizerRuleGroup(active map[string][]alert.Alert) api.RuleGroup {
	at, took := a.faultEval.get()
	fc := a.faultCfg
	rule := api.Rule{
		Type: api.RuleAlerting, Name: alert.FaultAlertName, Query: "meshlens_fault_suspected > 0",
		Labels: map[string]string{"severity": fc.Severity},
		Annotations: map[string]string{
			"summary": "The localizer blames a fabric element",
			"description": fmt.Sprintf("An element blamed with confidence >= %g in %d consecutive windows of %s; resolved after %d windows without it.",
				fc.MinConfidence, fc.Windows, a.window, fc.ClearWindows),
		},
		EvaluationTime: took, LastEvaluation: at,
	}
	for _, al := range active[alert.FaultAlertName] {
		rule.Alerts = append(rule.Alerts, toActive(al))
	}
	return api.RuleGroup{Name: LocalizerRuleGroup, File: "meshlens (localizer)", Interval: a.window,
		EvaluationTime: took, LastEvaluation: at, Rules: []api.Rule{rule}}
}

// faultDefaults fills a FaultConfig's zero fields as alert.NewFaultWatch
// does, so that the rule says what is in force.
func faultDefaults(fc alert.FaultConfig) alert.FaultConfig {
	if fc.MinConfidence == 0 {
		fc.MinConfidence = alert.DefaultFaultConfidence
	}
	if fc.Windows == 0 {
		fc.Windows = alert.DefaultFaultWindows
	}
	if fc.ClearWindows == 0 {
		fc.ClearWindows = alert.DefaultFaultClearWindows
	}
	if fc.Severity == "" {
		fc.Severity = alert.DefaultFaultSeverity
	}
	fc.Registerer, fc.ElementURL = nil, nil
	return fc
}
