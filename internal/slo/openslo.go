package slo

import (
	"fmt"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/meshlens/meshlens/internal/yamlfile"
)

// The OpenSLO subset meshlens measures: an SLO with one objective, an
// Occurrences, Timeslices or RatioTimeslices budget (slices.go), a rolling
// or calendar window (start time and time zone honoured), and an SLI
// (inline or by indicatorRef) that is a ratioMetric of Prometheus queries
// (a DataSource may give the type).
// Anything else is refused saying why, or, where it changes nothing that
// is measured, read with a warning.

type openMeta struct {
	Name        string                 `yaml:"name"`
	DisplayName string                 `yaml:"displayName"`
	Labels      map[string]labelValues `yaml:"labels"`
	Annotations map[string]string      `yaml:"annotations"`
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
	AlertPolicies   []yaml.Node      `yaml:"alertPolicies"`
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
	DisplayName     string       `yaml:"displayName"`
	Target          *float64     `yaml:"target"`
	TargetPercent   *float64     `yaml:"targetPercent"`
	Op              string       `yaml:"op"`
	Value           *float64     `yaml:"value"`
	TimeSliceTarget *float64     `yaml:"timeSliceTarget"`
	TimeSliceWindow string       `yaml:"timeSliceWindow"`
	Indicator       *openSLIFile `yaml:"indicator"`
	IndicatorRef    string       `yaml:"indicatorRef"`
	CompositeWeight *float64     `yaml:"compositeWeight"`
}

type openSLIFile struct {
	APIVersion string      `yaml:"apiVersion"`
	Kind       string      `yaml:"kind"`
	Metadata   openMeta    `yaml:"metadata"`
	Spec       openSLISpec `yaml:"spec"`
}

type openSLISpec struct {
	Description     string      `yaml:"description"`
	ThresholdMetric *openMetric `yaml:"thresholdMetric"`
	RatioMetric     *openRatio  `yaml:"ratioMetric"`
}

type openRatio struct {
	Counter bool        `yaml:"counter"`
	Good    *openMetric `yaml:"good"`
	Bad     *openMetric `yaml:"bad"`
	Total   *openMetric `yaml:"total"`
	RawType string      `yaml:"rawType"`
	Raw     *openMetric `yaml:"raw"`
}

type openMetric struct {
	MetricSource struct {
		MetricSourceRef string         `yaml:"metricSourceRef"`
		Type            string         `yaml:"type"`
		Spec            map[string]any `yaml:"spec"`
	} `yaml:"metricSource"`
}

type openDataSource struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Metadata   openMeta `yaml:"metadata"`
	Spec       struct {
		Description       string `yaml:"description"`
		Type              string `yaml:"type"`
		ConnectionDetails any    `yaml:"connectionDetails"`
	} `yaml:"spec"`
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
			return SLO{}, fmt.Errorf("%s: spec.indicatorRef: no openslo/v1 SLI named %q in the files given (give its file too, or write the SLI inline under indicator)", s.Source, p.ref)
		}
		s.SLI = sli.sli
	}
	return s, nil
}

func (c *parseCtx) addDataSource(o object) error {
	var f openDataSource
	doc, err := decode(o.file, o.data, &f)
	if err != nil {
		return err
	}
	p := doc.NewProblems()
	if f.Metadata.Name == "" {
		p.Addf(yamlfile.Path("metadata", "name"), "missing: SLIs name a DataSource by it (metricSourceRef)")
	}
	if f.Spec.Type == "" {
		p.Addf(yamlfile.Path("spec", "type"), "missing (e.g. Prometheus)")
	}
	if _, dup := c.dataSources[f.Metadata.Name]; dup {
		p.Addf(yamlfile.Path("metadata", "name"), "DataSource %q defined twice", f.Metadata.Name)
	}
	if err := p.Err(); err != nil {
		return err
	}
	c.dataSources[f.Metadata.Name] = f.Spec.Type
	return nil
}

func (c *parseCtx) parseOpenSLI(file string, data []byte) (*openSLI, []string, error) {
	var f openSLIFile
	doc, err := decode(file, data, &f)
	if err != nil {
		return nil, nil, err
	}
	p, w := doc.NewProblems(), doc.NewProblems()
	s := c.validateSLI(&f, doc, p, w, nil)
	return s, warnings(w), p.Err()
}

func (c *parseCtx) validateSLI(f *openSLIFile, doc *yamlfile.Doc, p, w *yamlfile.Problems, base []any) *openSLI {
	s := &openSLI{name: f.Metadata.Name, source: fmt.Sprintf("%s:%d", doc.File, doc.Line(base...))}
	if base == nil && !nameRE.MatchString(f.Metadata.Name) {
		p.Addf(at(base, "metadata", "name"), "%q: want letters, digits, '.', '_', ':' or '-'", f.Metadata.Name)
	}
	sb := at(base, "spec")
	if f.Spec.ThresholdMetric != nil {
		p.Addf(at(sb, "thresholdMetric"), "threshold SLIs (a value compared per data point) are not measured: count good and total events instead, "+
			"e.g. for latency good: rate(x_bucket{le=\"0.25\"}[5m]), total: rate(x_count[5m]) under ratioMetric")
		return s
	}
	r := f.Spec.RatioMetric
	if r == nil {
		p.Addf(sb, "ratioMetric is required (good or bad, with total)")
		return s
	}
	rb := at(sb, "ratioMetric")
	if r.Raw != nil || r.RawType != "" {
		p.Addf(at(rb, "raw"), "raw (precomputed) ratios cannot be weighted by events: give good or bad, with total")
		return s
	}
	s.sli.Kind = Ratio
	conv := func(name string, m *openMetric) string {
		if m == nil {
			return ""
		}
		mb := at(rb, name, "metricSource")
		ms := m.MetricSource
		typ, from := ms.Type, ""
		if typ == "" && ms.MetricSourceRef != "" {
			t, ok := c.dataSources[ms.MetricSourceRef]
			if !ok {
				p.Addf(at(mb, "metricSourceRef"), "%q: no DataSource of that name in the files given (give its file, or type: Prometheus here)", ms.MetricSourceRef)
				return ""
			}
			typ, from = t, fmt.Sprintf(" (the type of DataSource %q)", ms.MetricSourceRef)
		}
		switch {
		case typ == "":
			p.Addf(mb, "type missing: want type: Prometheus, or a metricSourceRef naming a Prometheus DataSource")
			return ""
		case !strings.EqualFold(typ, "prometheus"):
			p.Addf(at(mb, "type"), "%q%s: only Prometheus queries can be measured on the meshlens store", typ, from)
			return ""
		}
		for k := range ms.Spec {
			if k != "query" && k != "promql" {
				w.Addf(at(mb, "spec", k), "ignored: only the query is read")
			}
		}
		qv := ms.Spec["query"]
		if qv == nil {
			qv = ms.Spec["promql"]
		}
		q, _ := qv.(string)
		q = strings.TrimSpace(q)
		if q == "" {
			p.Addf(at(mb, "spec", "query"), "missing: want the PromQL of the %s events", name)
			return ""
		}
		e, err := eventsExpr(q, r.Counter)
		if err != nil {
			p.Addf(at(mb, "spec", "query"), "%v", err)
			return ""
		}
		return e
	}
	if (r.Good == nil) == (r.Bad == nil) || r.Total == nil {
		p.Addf(rb, "want exactly one of good and bad, with total")
		return s
	}
	s.sli.Good, s.sli.Bad, s.sli.Total = conv("good", r.Good), conv("bad", r.Bad), conv("total", r.Total)
	return s
}

func (c *parseCtx) parseOpenSLO(file string, data []byte) (pendingOpenSLO, []string, error) {
	var f openSLOFile
	doc, err := decode(file, data, &f)
	if err != nil {
		return pendingOpenSLO{}, nil, err
	}
	p, w := doc.NewProblems(), doc.NewProblems()
	s := SLO{
		Name:        f.Metadata.Name,
		Description: f.Spec.Description,
		Service:     f.Spec.Service,
		Labels:      openLabels(f.Metadata.Labels, p, w, yamlfile.Path("metadata", "labels")),
		Source:      fmt.Sprintf("%s:%d", doc.File, doc.Line()),
	}
	if !nameRE.MatchString(s.Name) {
		p.Addf(yamlfile.Path("metadata", "name"), "%q: want letters, digits, '.', '_', ':' or '-'", s.Name)
	}
	if s.Description == "" {
		s.Description = f.Metadata.DisplayName
	}
	switch m := f.Spec.BudgetingMethod; {
	case m == "", strings.EqualFold(m, "Occurrences"):
	case strings.EqualFold(m, string(Timeslices)):
		s.Budgeting = Timeslices
	case strings.EqualFold(m, string(RatioTimeslices)):
		s.Budgeting = RatioTimeslices
	default:
		p.Addf(yamlfile.Path("spec", "budgetingMethod"), "%q: want Occurrences (events), Timeslices or RatioTimeslices", m)
	}
	parseOpenWindow(&s, f.Spec.TimeWindow, p)
	switch len(f.Spec.Objectives) {
	case 1:
		o := f.Spec.Objectives[0]
		ob := yamlfile.Path("spec", "objectives", 0)
		parseTimeSlices(&s, o, p, w, ob)
		switch {
		case o.Op != "" || o.Value != nil:
			p.Addf(ob, "threshold objectives (op, value) are not measured: count good and total events with a ratioMetric SLI")
		case o.Indicator != nil || o.IndicatorRef != "" || o.CompositeWeight != nil:
			p.Addf(ob, "composite SLOs (an indicator per objective) are not measured: give the SLI under spec")
		case o.Target != nil && o.TargetPercent == nil:
			if !(*o.Target > 0 && *o.Target < 1) {
				p.Addf(at(ob, "target"), "%v: must be strictly between 0 and 1 (or use targetPercent)", *o.Target)
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
		p.Addf(yamlfile.Path("spec", "objectives"), "want exactly one objective (write one SLO per objective)")
	}
	var al alertingYAML
	if f.Spec.Meshlens != nil {
		al = *f.Spec.Meshlens
	}
	al.apply(&s, p, yamlfile.Path("spec", "x-meshlens-alerting"))
	if len(f.Spec.AlertPolicies) > 0 {
		switch {
		case len(al.Tiers) > 0 || al.Disabled:
			w.Addf(yamlfile.Path("spec", "alertPolicies"), "ignored: x-meshlens-alerting sets this SLO's tiers")
		default:
			if tiers := c.policyTiers(f.Spec.AlertPolicies, p, w); len(tiers) > 0 {
				for _, t := range tiers {
					if s.Window > 0 && t.Long > s.Window {
						p.Addf(yamlfile.Path("spec", "alertPolicies"), "AlertCondition %q: lookbackWindow %s is longer than the SLO window (%s)", t.Name, promDuration(t.Long), promDuration(s.Window))
					}
					if s.TimeSlice > 0 && t.Short < s.TimeSlice {
						p.Addf(yamlfile.Path("spec", "alertPolicies"), "AlertCondition %q: its short window (%s, a twelfth of lookbackWindow) holds no whole %s time slice; use a lookbackWindow of at least %s",
							t.Name, promDuration(t.Short), promDuration(s.TimeSlice), promDuration(12*s.TimeSlice))
					}
				}
				s.Tiers = tiers
			}
		}
	}
	out := pendingOpenSLO{slo: s}
	switch {
	case f.Spec.Indicator != nil && f.Spec.IndicatorRef != "":
		p.Addf(yamlfile.Path("spec", "indicatorRef"), "give indicator or indicatorRef, not both")
	case f.Spec.Indicator != nil:
		out.inline = c.validateSLI(f.Spec.Indicator, doc, p, w, yamlfile.Path("spec", "indicator"))
	case f.Spec.IndicatorRef != "":
		out.ref = f.Spec.IndicatorRef
	default:
		p.Addf(yamlfile.Path("spec"), "indicator or indicatorRef is required")
	}
	if err := p.Err(); err != nil {
		return pendingOpenSLO{}, warnings(w), err
	}
	return out, warnings(w), nil
}

// parseTimeSlices reads an objective's timeSliceTarget and timeSliceWindow
// into s, after its budgeting method and window.
func parseTimeSlices(s *SLO, o openObjective, p, w *yamlfile.Problems, ob []any) {
	if s.Budgeting == Occurrences {
		if o.TimeSliceTarget != nil || o.TimeSliceWindow != "" {
			p.Addf(ob, "timeSliceTarget and timeSliceWindow belong to time-slice budgets: set spec.budgetingMethod: Timeslices (or RatioTimeslices), or remove them to count events")
		}
		return
	}
	switch {
	case o.TimeSliceWindow == "":
		p.Addf(at(ob, "timeSliceWindow"), "missing: a %s budget needs the length of a slice, e.g. timeSliceWindow: 5m", s.Budgeting)
	default:
		d, err := parseDuration(o.TimeSliceWindow)
		if err == nil {
			err = checkTimeSlice(d, s.Window)
		}
		if err != nil {
			p.Addf(at(ob, "timeSliceWindow"), "%v", err)
			break
		}
		s.TimeSlice = d
	}
	switch tst := o.TimeSliceTarget; {
	case s.Budgeting == RatioTimeslices && tst != nil:
		w.Addf(at(ob, "timeSliceTarget"), "ignored: RatioTimeslices averages the slices' good ratios; a threshold per slice is Timeslices")
	case s.Budgeting == RatioTimeslices:
	case tst == nil:
		p.Addf(at(ob, "timeSliceTarget"), "missing: the good ratio a slice needs to be good, e.g. timeSliceTarget: 0.95")
	case !(*tst > 0 && *tst <= 1):
		p.Addf(at(ob, "timeSliceTarget"), "%v: want a ratio above 0 and at most 1 (0.95 for 95 %%)", *tst)
	default:
		s.TimeSliceTarget = *tst
	}
}

// parseOpenWindow reads spec.timeWindow into s.
func parseOpenWindow(s *SLO, tws []openTimeWindow, p *yamlfile.Problems) {
	if len(tws) != 1 {
		p.Addf(yamlfile.Path("spec", "timeWindow"), "want exactly one time window")
		return
	}
	tw := tws[0]
	wb := yamlfile.Path("spec", "timeWindow", 0)
	switch {
	case tw.IsRolling && tw.Calendar != nil:
		p.Addf(wb, "a window is rolling (isRolling: true) or calendar (calendar: {startTime, timeZone}), not both")
	case tw.IsRolling:
		n, unit, err := parseOpenDuration(tw.Duration)
		if err != nil {
			p.Addf(at(wb, "duration"), "%v", err)
			return
		}
		if unit == 'M' || unit == 'Q' || unit == 'Y' {
			p.Addf(at(wb, "duration"), "%q: a rolling window is written in days or weeks (e.g. 28d, 30d, 4w); months are calendar windows", tw.Duration)
			return
		}
		d := map[byte]time.Duration{'m': time.Minute, 'h': time.Hour, 'd': 24 * time.Hour, 'w': 7 * 24 * time.Hour}[unit] * time.Duration(n)
		if err := checkRolling(d); err != nil {
			p.Addf(at(wb, "duration"), "%q: %v", tw.Duration, err)
			return
		}
		s.Window = d
	case tw.Calendar != nil:
		per, err := parseCalendarPeriod(tw.Duration)
		if err != nil {
			p.Addf(at(wb, "duration"), "%v", err)
			return
		}
		per.Start, err = parseCalendarStart(tw.Calendar.StartTime, tw.Calendar.TimeZone)
		if err != nil {
			p.Addf(at(wb, "calendar"), "%v", err)
			return
		}
		s.Window, s.Calendar, s.Period = per.nominal(), true, per
	default:
		p.Addf(wb, "want a rolling window (duration: 28d, isRolling: true) or a calendar one (duration: 1M, calendar: {startTime: 2024-01-01 00:00:00, timeZone: UTC})")
	}
}
