package slo

import (
	"fmt"
	"strings"

	"github.com/prometheus/prometheus/promql/parser"

	"github.com/meshlens/meshlens/internal/yamlfile"
)

// The OpenSLO subset meshlens accepts: an SLO with one objective, an
// Occurrences budgeting method, a rolling or calendar-month time window, and
// an SLI (inline or by indicatorRef) that is a ratioMetric of Prometheus
// queries. Anything else is reported, not ignored.

type openMeta struct {
	Name        string            `yaml:"name"`
	DisplayName string            `yaml:"displayName"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type openSLOFile struct {
	APIVersion string      `yaml:"apiVersion"`
	Kind       string      `yaml:"kind"`
	Metadata   openMeta    `yaml:"metadata"`
	Spec       openSLOSpec `yaml:"spec"`
}

type openSLOSpec struct {
	Description     string           `yaml:"description"`
	Service         string           `yaml:"service"`
	Indicator       *openSLIFile     `yaml:"indicator"`
	IndicatorRef    string           `yaml:"indicatorRef"`
	TimeWindow      []openTimeWindow `yaml:"timeWindow"`
	BudgetingMethod string           `yaml:"budgetingMethod"`
	Objectives      []openObjective  `yaml:"objectives"`
	AlertPolicies   []any            `yaml:"alertPolicies"`
	// Meshlens carries meshlens's alerting block under an extension key.
	Meshlens *alertingYAML `yaml:"x-meshlens-alerting"`
}

type openTimeWindow struct {
	Duration  string `yaml:"duration"`
	IsRolling bool   `yaml:"isRolling"`
	Calendar  *struct {
		StartTime string `yaml:"startTime"`
		TimeZone  string `yaml:"timeZone"`
	} `yaml:"calendar"`
}

type openObjective struct {
	DisplayName   string   `yaml:"displayName"`
	Target        *float64 `yaml:"target"`
	TargetPercent *float64 `yaml:"targetPercent"`
	Op            string   `yaml:"op"`
	Value         *float64 `yaml:"value"`
}

type openSLIFile struct {
	APIVersion string      `yaml:"apiVersion"`
	Kind       string      `yaml:"kind"`
	Metadata   openMeta    `yaml:"metadata"`
	Spec       openSLISpec `yaml:"spec"`
}

type openSLISpec struct {
	Description     string     `yaml:"description"`
	ThresholdMetric any        `yaml:"thresholdMetric"`
	RatioMetric     *openRatio `yaml:"ratioMetric"`
}

type openRatio struct {
	Counter bool        `yaml:"counter"`
	Good    *openMetric `yaml:"good"`
	Bad     *openMetric `yaml:"bad"`
	Total   *openMetric `yaml:"total"`
	RawType string      `yaml:"rawType"`
	Raw     any         `yaml:"raw"`
}

type openMetric struct {
	MetricSource struct {
		MetricSourceRef string            `yaml:"metricSourceRef"`
		Type            string            `yaml:"type"`
		Spec            map[string]string `yaml:"spec"`
	} `yaml:"metricSource"`
}

// openSLI is a validated OpenSLO SLI, as a meshlens Ratio SLI.
type openSLI struct {
	name, source string
	sli          SLI
}

type pendingOpenSLO struct {
	slo    SLO
	ref    string // indicatorRef, resolved against the SLIs of all files
	inline *openSLI
}

func (p pendingOpenSLO) resolve(slis map[string]*openSLI) (SLO, error) {
	s := p.slo
	switch {
	case p.inline != nil:
		s.SLI = p.inline.sli
	default:
		sli, ok := slis[p.ref]
		if !ok {
			return SLO{}, fmt.Errorf("%s: spec.indicatorRef: no openslo/v1 SLI named %q in the files given", s.Source, p.ref)
		}
		s.SLI = sli.sli
	}
	return s, nil
}

func parseOpenSLI(file string, data []byte) (*openSLI, error) {
	var f openSLIFile
	doc, err := yamlfile.Decode(file, data, &f)
	if err != nil {
		return nil, fmt.Errorf("slo: %w", err)
	}
	p := doc.NewProblems()
	s := f.validate(doc, p, nil)
	if err := p.Err(); err != nil {
		return nil, err
	}
	return s, nil
}

func (f *openSLIFile) validate(doc *yamlfile.Doc, p *yamlfile.Problems, base []any) *openSLI {
	s := &openSLI{name: f.Metadata.Name, source: fmt.Sprintf("%s:%d", doc.File, doc.Line(base...))}
	if !nameRE.MatchString(f.Metadata.Name) {
		p.Addf(at(base, "metadata", "name"), "%q: want letters, digits, '.', '_', ':' or '-'", f.Metadata.Name)
	}
	sb := at(base, "spec")
	if f.Spec.ThresholdMetric != nil {
		p.Addf(at(sb, "thresholdMetric"), "threshold SLIs are not supported; use ratioMetric")
	}
	r := f.Spec.RatioMetric
	if r == nil {
		p.Addf(sb, "ratioMetric is required")
		return s
	}
	rb := at(sb, "ratioMetric")
	if r.Raw != nil || r.RawType != "" {
		p.Addf(at(rb, "raw"), "raw ratios are not supported; give good or bad with total")
	}
	s.sli.Kind = Ratio
	conv := func(name string, m *openMetric) string {
		if m == nil {
			return ""
		}
		mb := at(rb, name, "metricSource")
		if !strings.EqualFold(m.MetricSource.Type, "prometheus") {
			p.Addf(at(mb, "type"), "%q: only Prometheus metric sources map onto the meshlens store", m.MetricSource.Type)
			return ""
		}
		for k := range m.MetricSource.Spec {
			if k != "query" {
				p.Addf(at(mb, "spec", k), "unknown field (want query)")
			}
		}
		q := strings.TrimSpace(m.MetricSource.Spec["query"])
		if q == "" {
			p.Addf(at(mb, "spec", "query"), "missing")
			return ""
		}
		if strings.Contains(q, WindowVar) {
			return q
		}
		// A bare counter selector (counter: true) is counted over the window.
		e, err := parser.NewParser(parser.Options{}).ParseExpr(q)
		if err != nil {
			p.Addf(at(mb, "spec", "query"), "%q: %v", q, err)
			return ""
		}
		if _, ok := e.(*parser.VectorSelector); !ok || !r.Counter {
			p.Addf(at(mb, "spec", "query"), "%q: want a counter selector with counter: true, or an expression with %s", q, WindowVar)
			return ""
		}
		return "sum(increase(" + q + "[" + WindowVar + "]))"
	}
	s.sli.Good, s.sli.Bad, s.sli.Total = conv("good", r.Good), conv("bad", r.Bad), conv("total", r.Total)
	if (r.Good == nil) == (r.Bad == nil) || r.Total == nil {
		p.Addf(rb, "want exactly one of good and bad, with total")
	} else if s.sli.Good != "" || s.sli.Bad != "" {
		validateRatio(p, rb, s.sli.Good, s.sli.Bad, s.sli.Total)
	}
	return s
}

func parseOpenSLO(file string, data []byte) (pendingOpenSLO, error) {
	var f openSLOFile
	doc, err := yamlfile.Decode(file, data, &f)
	if err != nil {
		return pendingOpenSLO{}, fmt.Errorf("slo: %w", err)
	}
	p := doc.NewProblems()
	s := SLO{
		Name:        f.Metadata.Name,
		Description: f.Spec.Description,
		Labels:      f.Metadata.Labels,
		Source:      fmt.Sprintf("%s:%d", doc.File, doc.Line()),
	}
	if !nameRE.MatchString(s.Name) {
		p.Addf(yamlfile.Path("metadata", "name"), "%q: want letters, digits, '.', '_', ':' or '-'", s.Name)
	}
	for k := range s.Labels {
		if k == "slo" || k == "severity" || k == "tier" || k == "alertname" {
			p.Addf(yamlfile.Path("metadata", "labels", k), "%q is reserved", k)
		}
	}
	if s.Description == "" {
		s.Description = f.Metadata.DisplayName
	}
	if m := f.Spec.BudgetingMethod; m != "" && m != "Occurrences" {
		p.Addf(yamlfile.Path("spec", "budgetingMethod"), "%q: only Occurrences (event-weighted) budgets are supported", m)
	}
	if len(f.Spec.AlertPolicies) > 0 {
		p.Addf(yamlfile.Path("spec", "alertPolicies"), "not supported: meshlens alerts on multiwindow burn rates (x-meshlens-alerting configures them)")
	}
	switch len(f.Spec.TimeWindow) {
	case 1:
		tw := f.Spec.TimeWindow[0]
		wb := yamlfile.Path("spec", "timeWindow", 0)
		switch {
		case tw.IsRolling:
			if s.Window, _, err = parseWindow(tw.Duration); err != nil {
				p.Addf(at(wb, "duration"), "%v", err)
			}
		case tw.Calendar != nil && (tw.Duration == "1M" || tw.Duration == "1mo" || tw.Duration == "month"):
			if tz := tw.Calendar.TimeZone; tz != "" && tz != "UTC" && tz != "Etc/UTC" {
				p.Addf(at(wb, "calendar", "timeZone"), "%q: only UTC calendar months are supported", tz)
			}
			s.Window, s.Calendar = BaseWindow, true
		default:
			p.Addf(wb, "want a rolling window (isRolling: true) or a calendar month (duration: 1M with calendar)")
		}
	default:
		p.Addf(yamlfile.Path("spec", "timeWindow"), "want exactly one time window")
	}
	switch len(f.Spec.Objectives) {
	case 1:
		o := f.Spec.Objectives[0]
		ob := yamlfile.Path("spec", "objectives", 0)
		switch {
		case o.Op != "" || o.Value != nil:
			p.Addf(ob, "threshold objectives (op, value) are not supported")
		case o.Target != nil && o.TargetPercent == nil:
			if !(*o.Target > 0 && *o.Target < 1) {
				p.Addf(at(ob, "target"), "%v: must be strictly between 0 and 1", *o.Target)
			}
			s.Target = *o.Target
		case o.TargetPercent != nil && o.Target == nil:
			if !(*o.TargetPercent > 0 && *o.TargetPercent < 100) {
				p.Addf(at(ob, "targetPercent"), "%v: must be strictly between 0 and 100", *o.TargetPercent)
			}
			s.Target = *o.TargetPercent / 100
		default:
			p.Addf(ob, "want exactly one of target and targetPercent")
		}
	default:
		p.Addf(yamlfile.Path("spec", "objectives"), "want exactly one objective")
	}
	var al alertingYAML
	if f.Spec.Meshlens != nil {
		al = *f.Spec.Meshlens
	}
	al.apply(&s, p, yamlfile.Path("spec", "x-meshlens-alerting"))
	out := pendingOpenSLO{slo: s}
	switch {
	case f.Spec.Indicator != nil && f.Spec.IndicatorRef != "":
		p.Addf(yamlfile.Path("spec", "indicatorRef"), "give indicator or indicatorRef, not both")
	case f.Spec.Indicator != nil:
		out.inline = f.Spec.Indicator.validate(doc, p, yamlfile.Path("spec", "indicator"))
	case f.Spec.IndicatorRef != "":
		out.ref = f.Spec.IndicatorRef
	default:
		p.Addf(yamlfile.Path("spec"), "indicator or indicatorRef is required")
	}
	if err := p.Err(); err != nil {
		return pendingOpenSLO{}, err
	}
	return out, nil
}
