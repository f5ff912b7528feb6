package slo

import (
	"bytes"
	"fmt"
	"maps"
	"sort"
	"strconv"
	"time"

	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"
)

// AlertName is the alertname of every burn-rate alert, from meshlens's
// alerting and from the generated Prometheus rules alike, so both
// de-duplicate in one Alertmanager. The slo and tier labels tell them apart.
const AlertName = "MeshlensSLOBurnRate"

// RuleFile is a Prometheus rule file (the subset GenerateRules writes).
type RuleFile struct {
	Groups []RuleGroup `yaml:"groups"`
}

// RuleGroup is one group of a RuleFile.
type RuleGroup struct {
	Name     string `yaml:"name"`
	Interval string `yaml:"interval,omitempty"`
	Rules    []Rule `yaml:"rules"`
}

// Rule is a recording (Record) or alerting (Alert) rule.
type Rule struct {
	Record      string            `yaml:"record,omitempty"`
	Alert       string            `yaml:"alert,omitempty"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty"`
	Annotations map[string]string `yaml:"annotations,omitempty"`
}

// RulesOptions tune GenerateRules.
type RulesOptions struct {
	// Interval of the rule groups; empty uses Prometheus's global
	// evaluation_interval.
	Interval time.Duration
	// DataDelay shifts every window of the SLOs that read meshlens's
	// counters back by the server's Config.DataDelay (an offset on every
	// selector), so that the rules judge the same complete windows
	// meshlens does, not a tail the aggregator has not written yet. SLOs
	// of the user's own metrics are not delayed, as in the engine.
	DataDelay time.Duration
}

// withOffset adds d to the offset of every selector of the PromQL expr,
// and of every subquery instead of the selectors inside it: a subquery
// over time slices shifted as a whole judges the slices meshlens judges
// d earlier, while shifting what it reads would cut other slices.
func withOffset(expr string, d time.Duration) (string, error) {
	if d == 0 {
		return expr, nil
	}
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return "", fmt.Errorf("slo: rules: %q: %w", expr, err)
	}
	if err := parser.Walk(offsetter(d), e, nil); err != nil {
		return "", fmt.Errorf("slo: rules: %q: %w", expr, err)
	}
	return e.String(), nil
}

type offsetter time.Duration

func (d offsetter) Visit(n parser.Node, _ []parser.Node) (parser.Visitor, error) {
	switch n := n.(type) {
	case *parser.SubqueryExpr:
		n.OriginalOffset += time.Duration(d)
		return nil, nil
	case *parser.VectorSelector:
		n.OriginalOffset += time.Duration(d)
	}
	return d, nil
}

// fmtFloat prints a number of the rules to 12 significant digits: a
// budget is computed (1 - 0.999 is 0.0010000000000000009 in binary), and
// the rules must read 0.001 as their author wrote it. SLO targets and
// factors hold far fewer digits, so nothing is lost.
func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'g', 12, 64) }

// BurnCondition is the PromQL of tier t of s: non-empty (one series, no
// labels) exactly when the tier fires, computed with the same arithmetic
// as Tier.Firing so that a Prometheus fed the same data fires at the same
// evaluations.
func (s *SLO) BurnCondition(t Tier) string {
	budget, factor := fmtFloat(s.Budget()), fmtFloat(t.Factor)
	c := fmt.Sprintf("(%s / %s > %s) and (%s / %s > %s)",
		s.BudgetErrorRatioQuery(t.Long), budget, factor,
		s.BudgetErrorRatioQuery(t.Short), budget, factor)
	if s.MinEvents > 0 {
		c += fmt.Sprintf(" and (%s >= %s)", s.TotalQuery(t.Long), fmtFloat(s.MinEvents))
	}
	return c
}

// AlertLabels are the labels of tier t's alert for s: the SLO's
// (SLOLabels), then the tier's own, then meshlens's (slo, tier, severity),
// which win.
func (s *SLO) AlertLabels(t Tier) map[string]string {
	l := map[string]string{}
	maps.Copy(l, s.SLOLabels())
	maps.Copy(l, t.Labels)
	l["slo"], l["tier"], l["severity"] = s.Name, t.Name, t.Severity
	return l
}

// SLOLabels are the labels every alert of s carries, from meshlens's
// engine (Status.Labels) and the generated rules alike: service
// (spec.service), then the SLO's labels, which win; nil if none.
func (s *SLO) SLOLabels() map[string]string {
	if s.Service == "" && len(s.Labels) == 0 {
		return nil
	}
	l := map[string]string{}
	if s.Service != "" {
		l["service"] = s.Service
	}
	maps.Copy(l, s.Labels)
	return l
}

// AlertAnnotations are the annotations of tier t's alert for s: meshlens's
// summary, description and runbook_url, then the tier's own, which win.
func (s *SLO) AlertAnnotations(t Tier) map[string]string {
	what := "error ratio"
	if s.Budgeting != Occurrences {
		what = "share of bad " + promDuration(s.TimeSlice) + " time slices"
	}
	ann := map[string]string{
		"summary":     s.Summary(t),
		"description": fmt.Sprintf("Both the %s and the %s %s exceed %s times the budget (1 - %s).", promDuration(t.Long), promDuration(t.Short), what, fmtFloat(t.Factor), fmtFloat(s.Target)),
	}
	if s.Runbook != "" {
		ann["runbook_url"] = s.Runbook
	}
	for k, v := range t.Annotations {
		ann[k] = v
	}
	return ann
}

// Summary is the one-line summary of tier t's alert.
func (s *SLO) Summary(t Tier) string {
	return fmt.Sprintf("SLO %s is burning its error budget faster than %sx over %s and %s", s.Name, strconv.FormatFloat(t.Factor, 'f', -1, 64), promDuration(t.Long), promDuration(t.Short))
}

// GenerateRules writes Prometheus recording and alerting rules equivalent to
// meshlens's evaluation of slos: one group per SLO with the error ratio of
// each tier window, the events of each long window, the budget left, and one
// alert per tier. The alert expressions are self-contained (they do not
// read the recorded series) so they can also be evaluated over history.
func GenerateRules(slos []SLO, opt RulesOptions) ([]byte, error) {
	f, err := Rules(slos, opt)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteString("# Generated by meshlens slo rules. Equivalent to meshlens's own SLO evaluation.\n")
	if opt.DataDelay > 0 {
		fmt.Fprintf(&b, "# The windows of SLOs over meshlens counters end %s back: the data delay of the meshlens server writing them.\n", promDuration(opt.DataDelay))
	}
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(f); err != nil {
		return nil, fmt.Errorf("slo: encode rules: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("slo: encode rules: %w", err)
	}
	return b.Bytes(), nil
}

// Rules is what GenerateRules writes, as values (the server lists its own
// evaluation as these rules).
func Rules(slos []SLO, opt RulesOptions) (RuleFile, error) {
	if opt.DataDelay < 0 {
		return RuleFile{}, fmt.Errorf("slo: rules: negative data delay %v", opt.DataDelay)
	}
	var f RuleFile
	for i := range slos {
		s := &slos[i]
		g := RuleGroup{Name: "meshlens-slo-" + s.Name}
		if opt.Interval > 0 {
			g.Interval = promDuration(opt.Interval)
		}
		sl := map[string]string{"slo": s.Name}
		if s.Service != "" {
			sl["service"] = s.Service
		}
		for _, w := range s.Windows() {
			g.Rules = append(g.Rules, Rule{Record: "slo:sli_error:ratio_rate" + promDuration(w), Expr: s.BudgetErrorRatioQuery(w), Labels: sl})
		}
		g.Rules = append(g.Rules,
			Rule{Record: "slo:objective:ratio", Expr: "vector(" + fmtFloat(s.Target) + ")", Labels: sl},
			Rule{Record: "slo:error_budget_remaining:ratio", Expr: fmt.Sprintf("1 - (%s) / %s", s.BudgetErrorRatioQuery(s.Window), fmtFloat(s.Budget())), Labels: sl},
		)
		for _, t := range s.Tiers {
			r := Rule{Alert: t.AlertName(), Expr: s.BurnCondition(t), Labels: s.AlertLabels(t), Annotations: s.AlertAnnotations(t)}
			if t.For > 0 {
				r.For = promDuration(t.For)
			}
			g.Rules = append(g.Rules, r)
		}
		delay := time.Duration(0)
		if s.ReadsMeshlensCounters() {
			delay = opt.DataDelay
		}
		for j := range g.Rules {
			var err error
			if g.Rules[j].Expr, err = withOffset(g.Rules[j].Expr, delay); err != nil {
				return RuleFile{}, err
			}
		}
		f.Groups = append(f.Groups, g)
	}
	sort.SliceStable(f.Groups, func(i, j int) bool { return f.Groups[i].Name < f.Groups[j].Name })
	return f, nil
}
