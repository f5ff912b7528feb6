package slo

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"

	"github.com/meshlens/meshlens/internal/yamlfile"
)

// Importing Sloth and Pyrra SLO files: each SLO becomes an openslo/v1 SLO
// (its SLI inline, meshlens's tiers under x-meshlens-alerting) that keeps
// what the tool's Alertmanager routes match: the alert name, the labels
// the tool puts on each alert (per tier: Sloth's page and ticket labels
// and sloth_* labels, Pyrra's severity, long, short and exhaustion) and
// the annotations. What does not map is listed, each as file:line:
// field: what and why; an SLO whose SLI cannot be measured is left out.

// Formats Import reads.
const (
	FromSloth = "sloth"
	FromPyrra = "pyrra"
)

// Imported is a file converted by Import.
type Imported struct {
	// Document holds one openslo/v1 SLO document per SLO imported.
	Document []byte
	// SLOs are the imported SLOs, as meshlens reads Document.
	SLOs []SLO
	// Unmapped lists what was not carried over, and why.
	Unmapped []string
	// Skipped counts the SLOs left out (their reason is in Unmapped).
	Skipped int
}

// Import converts a Sloth (prometheus/v1) or Pyrra (pyrra.dev/v1alpha1
// ServiceLevelObjective) file into openslo/v1 documents meshlens reads.
func Import(from string, f File) (Imported, error) {
	var conv func(file string, data []byte) ([]openSLOOut, []string, int, error)
	switch from {
	case FromSloth:
		conv = importSloth
	case FromPyrra:
		conv = importPyrra
	default:
		return Imported{}, fmt.Errorf("slo: import: format %q: want %s or %s", from, FromSloth, FromPyrra)
	}
	var (
		out   Imported
		docs  []openSLOOut
		errs  []error
		names = map[string]string{}
	)
	for _, d := range splitDocuments(f.Data) {
		ds, unmapped, skipped, err := conv(f.Name, d)
		out.Unmapped = append(out.Unmapped, unmapped...)
		out.Skipped += skipped
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, o := range ds {
			if prev, dup := names[o.Metadata.Name]; dup {
				out.Unmapped = append(out.Unmapped, fmt.Sprintf("%s: SLO %s not imported: the name is taken by the SLO at %s; rename one", o.source, o.Metadata.Name, prev))
				out.Skipped++
				continue
			}
			names[o.Metadata.Name] = o.source
			docs = append(docs, o)
		}
	}
	if len(errs) > 0 {
		return out, errors.Join(errs...)
	}
	if len(docs) == 0 {
		return out, fmt.Errorf("%s: no SLO could be imported", f.Name)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Imported by meshlens slo import --from %s from %q.\n", from, f.Name)
	for i := range docs {
		if i > 0 {
			b.WriteString("---\n")
		}
		enc := yaml.NewEncoder(&b)
		enc.SetIndent(2)
		if err := enc.Encode(&docs[i]); err != nil {
			return out, fmt.Errorf("slo: import: encode %s: %w", docs[i].Metadata.Name, err)
		}
		if err := enc.Close(); err != nil {
			return out, fmt.Errorf("slo: import: encode %s: %w", docs[i].Metadata.Name, err)
		}
	}
	out.Document = b.Bytes()
	// What is written must read back: a failure here is meshlens's bug,
	// said with the imported text's own lines.
	res, err := ParseFiles(File{Name: f.Name + " (imported)", Data: out.Document})
	if err != nil {
		return out, fmt.Errorf("slo: import: the converted document does not read back (a meshlens bug; please report it with the file): %w", err)
	}
	out.SLOs = res.SLOs
	out.Unmapped = append(out.Unmapped, res.Warnings...)
	return out, nil
}

// openSLOOut is an openslo/v1 SLO as Import writes it.
type openSLOOut struct {
	// source is where the SLO was, file:line.
	source     string
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels,omitempty"`
	} `yaml:"metadata"`
	Spec struct {
		Description string `yaml:"description,omitempty"`
		Service     string `yaml:"service,omitempty"`
		Indicator   struct {
			Metadata struct {
				Name string `yaml:"name"`
			} `yaml:"metadata"`
			Spec struct {
				RatioMetric struct {
					Good  *metricOut `yaml:"good,omitempty"`
					Bad   *metricOut `yaml:"bad,omitempty"`
					Total *metricOut `yaml:"total"`
				} `yaml:"ratioMetric"`
			} `yaml:"spec"`
		} `yaml:"indicator"`
		TimeWindow []struct {
			Duration  string `yaml:"duration"`
			IsRolling bool   `yaml:"isRolling"`
		} `yaml:"timeWindow"`
		BudgetingMethod string `yaml:"budgetingMethod"`
		Objectives      []struct {
			TargetPercent float64 `yaml:"targetPercent"`
		} `yaml:"objectives"`
		Alerting importAlerting `yaml:"x-meshlens-alerting"`
	} `yaml:"spec"`
}

type importAlerting struct {
	Disabled bool       `yaml:"disabled,omitempty"`
	Tiers    []tierYAML `yaml:"tiers,omitempty"`
}

type metricOut struct {
	MetricSource struct {
		Type string `yaml:"type"`
		Spec struct {
			Query string `yaml:"query"`
		} `yaml:"spec"`
	} `yaml:"metricSource"`
}

func promMetric(q string) *metricOut {
	m := &metricOut{}
	m.MetricSource.Type = "Prometheus"
	m.MetricSource.Spec.Query = q
	return m
}

func newOpenSLO(source, name, description, service string, window time.Duration, targetPercent float64) openSLOOut {
	o := openSLOOut{source: source}
	o.APIVersion, o.Kind = "openslo/v1", "SLO"
	o.Metadata.Name = name
	o.Spec.Description, o.Spec.Service = description, service
	o.Spec.Indicator.Metadata.Name = name
	o.Spec.TimeWindow = append(o.Spec.TimeWindow, struct {
		Duration  string `yaml:"duration"`
		IsRolling bool   `yaml:"isRolling"`
	}{promDuration(window), true})
	o.Spec.BudgetingMethod = "Occurrences"
	o.Spec.Objectives = append(o.Spec.Objectives, struct {
		TargetPercent float64 `yaml:"targetPercent"`
	}{targetPercent})
	return o
}

// tierOut writes t with the alert name, labels and annotations given.
func tierOut(t Tier, alert string, lbls, ann map[string]string) tierYAML {
	y := tierYAML{
		Name: t.Name, BurnRate: t.Factor, Long: promDuration(t.Long), Short: promDuration(t.Short),
		Severity: t.Severity, Alert: alert, Labels: lbls, Annotations: ann,
	}
	if t.For > 0 {
		y.For = promDuration(t.For)
	}
	return y
}

// alertLabels splits the labels a tool puts on an alert into the tier's
// severity and labels meshlens can add, noting those it cannot.
func alertLabels(in map[string]string, severity string, w *yamlfile.Problems, path []any) (string, map[string]string) {
	if v, ok := in["severity"]; ok {
		severity = v
	}
	return severity, keep(in, w, path, func(k string) string {
		alt, reserved := reservedLabels[k]
		switch {
		case k == "severity":
			return "-"
		case k == "alertname":
			return "an alert's name is its alerting name (Sloth's alerting.name, Pyrra's spec.alerting.name)"
		case reserved:
			return fmt.Sprintf("meshlens sets %q on every alert itself; route on %s instead", k, alt)
		}
		return invalidLabel(k)
	})
}

// sloLabels keeps the labels meshlens can put on an SLO's rules and
// alerts, noting the others.
func sloLabels(in map[string]string, w *yamlfile.Problems, path []any) map[string]string {
	return keep(in, w, path, func(k string) string {
		if alt, reserved := reservedLabels[k]; reserved {
			return fmt.Sprintf("meshlens sets %q on every alert itself; call it %s", k, alt)
		}
		return invalidLabel(k)
	})
}

// annotations keeps the annotations Prometheus accepts, noting the others.
func annotations(in map[string]string, w *yamlfile.Problems, path []any) map[string]string {
	return keep(in, w, path, func(k string) string {
		if !model.LegacyValidation.IsValidLabelName(k) {
			return fmt.Sprintf("%q is not an annotation name Prometheus accepts", k)
		}
		return ""
	})
}

func invalidLabel(k string) string {
	if !model.LegacyValidation.IsValidLabelName(k) || strings.HasPrefix(k, "__") {
		return fmt.Sprintf("%q is not a label an alert can carry", k)
	}
	return ""
}

// keep copies the entries of in whose key why does not refuse, noting the
// refused ones at path ("-": left out without a note); nil when none is
// kept.
func keep(in map[string]string, w *yamlfile.Problems, path []any, why func(k string) string) map[string]string {
	out := map[string]string{}
	for _, k := range slices.Sorted(maps.Keys(in)) {
		switch reason := why(k); reason {
		case "":
			out[k] = in[k]
		case "-":
		default:
			w.Addf(at(path, k), "not kept: %s", reason)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// Sloth's prometheus/v1 service spec (a service, its labels, its SLOs),
// or the same under the spec of its Kubernetes PrometheusServiceLevel
// (sloth.slok.dev/v1).

type slothSpec struct {
	Version      string `yaml:"version"`
	slothService `yaml:",inline"`
}

type slothService struct {
	Service string            `yaml:"service"`
	Labels  map[string]string `yaml:"labels"`
	SLOs    []slothSLO        `yaml:"slos"`
}

type slothCRD struct {
	APIVersion string       `yaml:"apiVersion"`
	Kind       string       `yaml:"kind"`
	Metadata   k8sMeta      `yaml:"metadata"`
	Spec       slothService `yaml:"spec"`
	Status     any          `yaml:"status"`
}

// k8sMeta is a Kubernetes object's metadata.
type k8sMeta struct {
	Name        string            `yaml:"name"`
	Namespace   string            `yaml:"namespace"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
	// The rest (uid, creationTimestamp, ...) says nothing about the SLO.
	Rest map[string]any `yaml:",inline"`
}

// ignoreK8s notes the parts of a Kubernetes object that are not the SLO.
func ignoreK8s(m k8sMeta, status any, w *yamlfile.Problems) {
	for _, k := range slices.Sorted(maps.Keys(m.Rest)) {
		w.Addf(yamlfile.Path("metadata", k), "ignored: Kubernetes bookkeeping, not part of the SLO")
	}
	if status != nil {
		w.Addf(yamlfile.Path("status"), "ignored: written by the Kubernetes operator")
	}
}

// percent is a percentage written as a number or, as Kubernetes objects
// carry it, a string of one.
type percent float64

func (p *percent) UnmarshalYAML(n *yaml.Node) error {
	f, err := strconv.ParseFloat(strings.TrimSpace(n.Value), 64)
	if n.Kind != yaml.ScalarNode || err != nil {
		return fmt.Errorf("line %d: want a percentage like 99.9", n.Line)
	}
	*p = percent(f)
	return nil
}

type slothSLO struct {
	Name        string            `yaml:"name"`
	Objective   percent           `yaml:"objective"`
	Description string            `yaml:"description"`
	Labels      map[string]string `yaml:"labels"`
	SLI         struct {
		Raw *struct {
			ErrorRatioQuery string `yaml:"error_ratio_query"`
		} `yaml:"raw"`
		Events *struct {
			ErrorQuery string `yaml:"error_query"`
			TotalQuery string `yaml:"total_query"`
		} `yaml:"events"`
		Plugin *struct {
			ID      string            `yaml:"id"`
			Options map[string]string `yaml:"options"`
		} `yaml:"plugin"`
	} `yaml:"sli"`
	Alerting struct {
		Name        string            `yaml:"name"`
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
		PageAlert   slothAlert        `yaml:"page_alert"`
		TicketAlert slothAlert        `yaml:"ticket_alert"`
	} `yaml:"alerting"`
}

type slothAlert struct {
	Disable     bool              `yaml:"disable"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// slothPeriod is the SLO period Sloth uses unless told otherwise on its
// command line (its spec has no field for it).
const slothPeriod = 30 * 24 * time.Hour

func importSloth(file string, data []byte) ([]openSLOOut, []string, int, error) {
	var (
		spec slothService
		doc  *yamlfile.Doc
		err  error
		base []any // where the service spec is
	)
	if o := newObject(file, data); strings.HasPrefix(o.apiVersion, "pyrra.dev/") {
		return nil, nil, 0, fmt.Errorf("%s:%d: apiVersion: a Pyrra %s: import it with --from pyrra", file, keyLine(data, "apiVersion"), o.kind)
	} else if o.apiVersion != "" || o.kind != "" {
		var crd slothCRD
		if doc, err = decode(file, data, &crd); err != nil {
			return nil, nil, 0, err
		}
		p := doc.NewProblems()
		if crd.APIVersion != "sloth.slok.dev/v1" || crd.Kind != "PrometheusServiceLevel" {
			p.Addf(yamlfile.Path("apiVersion"), "%q %q: want a prometheus/v1 service spec or a sloth.slok.dev/v1 PrometheusServiceLevel", crd.APIVersion, crd.Kind)
			return nil, nil, 0, p.Err()
		}
		spec, base = crd.Spec, yamlfile.Path("spec")
		w := doc.NewProblems()
		ignoreK8s(crd.Metadata, crd.Status, w)
		for _, k := range slices.Sorted(maps.Keys(crd.Metadata.Labels)) {
			w.Addf(yamlfile.Path("metadata", "labels", k), "not kept: Sloth puts spec.labels on its alerts, not the object's labels")
		}
		if crd.Metadata.Namespace != "" {
			w.Addf(yamlfile.Path("metadata", "namespace"), "ignored: not part of Sloth's rules")
		}
		return convertSloth(spec, doc, base, w)
	}
	var v slothSpec
	if doc, err = decode(file, data, &v); err != nil {
		return nil, nil, 0, err
	}
	if v.Version != "prometheus/v1" {
		p := doc.NewProblems()
		p.Addf(yamlfile.Path("version"), "%q: want prometheus/v1 (Sloth's OpenSLO specs: give them to meshlens directly)", v.Version)
		return nil, nil, 0, p.Err()
	}
	return convertSloth(v.slothService, doc, nil, doc.NewProblems())
}

// convertSloth imports a Sloth service spec found at base of doc.
func convertSloth(spec slothService, doc *yamlfile.Doc, base []any, w *yamlfile.Problems) ([]openSLOOut, []string, int, error) {
	p := doc.NewProblems()
	if spec.Service == "" {
		p.Addf(at(base, "service"), "missing: Sloth names its SLOs <service>-<name>")
	}
	if len(spec.SLOs) == 0 {
		p.Addf(at(base, "slos"), "no SLO to import")
	}
	if err := p.Err(); err != nil {
		return nil, nil, 0, err
	}
	w.Addf(at(base, "service"), "note: Sloth's SLO period is set on its command line, not in the file: imported as %s (its default); edit timeWindow if you run Sloth with --default-slo-period", promDuration(slothPeriod))
	var out []openSLOOut
	skipped := 0
	common := sloLabels(spec.Labels, w, at(base, "labels"))
	for i, s := range spec.SLOs {
		base := at(base, "slos", i)
		o, ok := s.convert(spec, common, doc, w, base)
		if !ok {
			skipped++
			continue
		}
		out = append(out, o)
	}
	return out, warnings(w), skipped, nil
}

func (s *slothSLO) convert(spec slothService, common map[string]string, doc *yamlfile.Doc, w *yamlfile.Problems, base []any) (openSLOOut, bool) {
	id := spec.Service + "-" + s.Name
	skip := func(path []any, format string, args ...any) (openSLOOut, bool) {
		w.Addf(path, "SLO %s not imported: "+format, append([]any{id}, args...)...)
		return openSLOOut{}, false
	}
	if !nameRE.MatchString(id) {
		return skip(at(base, "name"), "%q: a name is letters, digits, '.', '_', ':' or '-'", id)
	}
	if !(s.Objective > 0 && s.Objective < 100) || math.IsNaN(float64(s.Objective)) {
		return skip(at(base, "objective"), "%v: meshlens wants an objective strictly between 0 and 100 (100 leaves no error budget to burn)", s.Objective)
	}
	switch {
	case s.SLI.Raw != nil:
		return skip(at(base, "sli", "raw"), "a precomputed error ratio cannot be weighted by events; write it as sli.events (error_query and total_query counting events over {{.window}})")
	case s.SLI.Plugin != nil:
		return skip(at(base, "sli", "plugin"), "plugin %q is Sloth code meshlens cannot run; write the queries it generates as sli.events (error_query, total_query)", s.SLI.Plugin.ID)
	case s.SLI.Events == nil:
		return skip(at(base, "sli"), "want sli.events with error_query and total_query")
	}
	bad, err := eventsExpr(s.SLI.Events.ErrorQuery, false)
	if err != nil {
		return skip(at(base, "sli", "events", "error_query"), "%v", err)
	}
	total, err := eventsExpr(s.SLI.Events.TotalQuery, false)
	if err != nil {
		return skip(at(base, "sli", "events", "total_query"), "%v", err)
	}
	o := newOpenSLO(fmt.Sprintf("%s:%d", doc.File, doc.Line(base...)), id, s.Description, spec.Service, slothPeriod, float64(s.Objective))
	o.Metadata.Labels = merge(common, sloLabels(s.Labels, w, at(base, "labels")))
	o.Spec.Indicator.Spec.RatioMetric.Bad = promMetric(bad)
	o.Spec.Indicator.Spec.RatioMetric.Total = promMetric(total)
	al := s.Alerting
	ab := at(base, "alerting")
	alert := al.Name
	if alert == "" {
		w.Addf(at(ab, "name"), "missing: the alerts are named %s", AlertName)
	} else if !model.LegacyValidation.IsValidMetricName(alert) {
		w.Addf(at(ab, "name"), "%q is not an alert name Prometheus accepts: the alerts are named %s", alert, AlertName)
		alert = ""
	}
	// The labels Sloth's alerts carry from its recording rules.
	own := map[string]string{"sloth_id": id, "sloth_service": spec.Service, "sloth_slo": s.Name}
	// Sloth's page alert is the Workbook's two fast tiers, its ticket
	// alert the two slow ones; each keeps its labels and annotations.
	type routing struct {
		severity string
		labels   map[string]string
		ann      map[string]string
		disable  bool
	}
	kinds := map[string]routing{}
	sevAll, all := alertLabels(al.Labels, "", w, at(ab, "labels"))
	allAnn := annotations(al.Annotations, w, at(ab, "annotations"))
	for kind, a := range map[string]slothAlert{SeverityPage: al.PageAlert, SeverityTicket: al.TicketAlert} {
		sev, lbls := alertLabels(a.Labels, orDefault(sevAll, kind), w, at(ab, kind+"_alert", "labels"))
		ann := merge(allAnn, annotations(a.Annotations, w, at(ab, kind+"_alert", "annotations")))
		kinds[kind] = routing{sev, merge(own, map[string]string{"sloth_severity": kind}, all, lbls), ann, a.Disable}
	}
	for _, t := range TiersFor(slothPeriod) {
		r := kinds[t.Severity]
		if r.disable {
			continue
		}
		if !canFire(t.Factor, float64(s.Objective)/100) {
			w.Addf(ab, "not kept: Sloth's %vx %s tier can never fire on a %v%% objective (an error rate above 100%% would be needed)", t.Factor, t.Severity, s.Objective)
			continue
		}
		t.Severity = r.severity
		o.Spec.Alerting.Tiers = append(o.Spec.Alerting.Tiers, tierOut(t, alert, r.labels, r.ann))
	}
	if len(o.Spec.Alerting.Tiers) == 0 {
		o.Spec.Alerting.Disabled = true
	}
	return o, true
}

// Pyrra's ServiceLevelObjective (pyrra.dev/v1alpha1).

type pyrraSLO struct {
	APIVersion string  `yaml:"apiVersion"`
	Kind       string  `yaml:"kind"`
	Metadata   k8sMeta `yaml:"metadata"`
	Spec       struct {
		Description string `yaml:"description"`
		Target      string `yaml:"target"`
		Window      string `yaml:"window"`
		Indicator   struct {
			Ratio *struct {
				Errors   pyrraQuery `yaml:"errors"`
				Total    pyrraQuery `yaml:"total"`
				Grouping []string   `yaml:"grouping"`
			} `yaml:"ratio"`
			Latency *struct {
				Success  pyrraQuery `yaml:"success"`
				Total    pyrraQuery `yaml:"total"`
				Grouping []string   `yaml:"grouping"`
			} `yaml:"latency"`
			LatencyNative *struct {
				Total    pyrraQuery `yaml:"total"`
				Latency  string     `yaml:"latency"`
				Grouping []string   `yaml:"grouping"`
			} `yaml:"latencyNative"`
			BoolGauge *struct {
				Metric   string   `yaml:"metric"`
				Grouping []string `yaml:"grouping"`
			} `yaml:"bool_gauge"`
		} `yaml:"indicator"`
		Alerting struct {
			Disabled   *bool  `yaml:"disabled"`
			Burnrates  *bool  `yaml:"burnrates"`
			Absent     *bool  `yaml:"absent"`
			Name       string `yaml:"name"`
			AbsentName string `yaml:"absentName"`
		} `yaml:"alerting"`
		PartialResponseStrategy string `yaml:"partial_response_strategy"`
	} `yaml:"spec"`
	Status any `yaml:"status"`
}

type pyrraQuery struct {
	Metric string `yaml:"metric"`
}

// pyrraPrefix marks the labels and annotations of a Pyrra object that
// Pyrra copies, without it, onto its rules and alerts.
const pyrraPrefix = "pyrra.dev/"

// pyrraAlertName is the name of Pyrra's burn-rate alerts unless
// spec.alerting.name says otherwise.
const pyrraAlertName = "ErrorBudgetBurn"

// pyrraTiers are Pyrra's four burn-rate alerts for an SLO window w: its
// windows are those of 28 days scaled to w (rounded to the minute), its
// factors fixed (14, 7, 2, 1), each with a for of half its short window.
func pyrraTiers(w time.Duration) []Tier {
	r := func(d time.Duration) time.Duration { return d.Round(time.Minute) }
	base := 28 * 24 * time.Hour
	scale := func(d time.Duration) time.Duration { return r(time.Duration(float64(d) * float64(w) / float64(base))) }
	ts := []Tier{
		{Factor: 14, Long: scale(time.Hour), Short: scale(5 * time.Minute), For: scale(2 * time.Minute), Severity: "critical"},
		{Factor: 7, Long: scale(6 * time.Hour), Short: scale(30 * time.Minute), For: scale(15 * time.Minute), Severity: "critical"},
		{Factor: 2, Long: scale(24 * time.Hour), Short: scale(2 * time.Hour), For: scale(time.Hour), Severity: "warning"},
		{Factor: 1, Long: scale(4 * 24 * time.Hour), Short: scale(6 * time.Hour), For: scale(3 * time.Hour), Severity: "warning"},
	}
	for i := range ts {
		ts[i].Name = ts[i].Severity + "-" + promDuration(ts[i].Long)
	}
	return ts
}

func importPyrra(file string, data []byte) ([]openSLOOut, []string, int, error) {
	if o := newObject(file, data); strings.HasPrefix(o.apiVersion, "sloth.slok.dev/") || isSloth(data) {
		return nil, nil, 0, fmt.Errorf("%s:%d: a Sloth SLO spec: import it with --from sloth", file, firstLine(data))
	}
	var y pyrraSLO
	doc, err := decode(file, data, &y)
	if err != nil {
		return nil, nil, 0, err
	}
	p, w := doc.NewProblems(), doc.NewProblems()
	if y.APIVersion != "pyrra.dev/v1alpha1" {
		p.Addf(yamlfile.Path("apiVersion"), "%q: want pyrra.dev/v1alpha1", y.APIVersion)
	}
	if y.Kind != "ServiceLevelObjective" {
		p.Addf(yamlfile.Path("kind"), "%q: want ServiceLevelObjective", y.Kind)
	}
	name := y.Metadata.Name
	if !nameRE.MatchString(name) {
		p.Addf(yamlfile.Path("metadata", "name"), "%q: want letters, digits, '.', '_', ':' or '-'", name)
	}
	target, err := strconv.ParseFloat(strings.TrimSpace(y.Spec.Target), 64)
	switch {
	case err != nil:
		p.Addf(yamlfile.Path("spec", "target"), "%q: want a percentage like \"99.5\"", y.Spec.Target)
	case target > 0 && target < 1:
		p.Addf(yamlfile.Path("spec", "target"), "%v: Pyrra reads the target in percent (0-100): did you mean %v?", target, target*100)
	case !(target > 0 && target < 100):
		p.Addf(yamlfile.Path("spec", "target"), "%v: want a percentage strictly between 0 and 100 (100 leaves no error budget to burn)", target)
	}
	md, err := model.ParseDuration(y.Spec.Window)
	window := time.Duration(md)
	if err == nil {
		err = checkRolling(window)
	}
	if err != nil {
		p.Addf(yamlfile.Path("spec", "window"), "%q: want a rolling window between 1h and 90d, like 28d or 2w", y.Spec.Window)
	}
	if err := p.Err(); err != nil {
		return nil, nil, 0, err
	}
	ignoreK8s(y.Metadata, y.Status, w)
	if y.Metadata.Namespace != "" {
		w.Addf(yamlfile.Path("metadata", "namespace"), "ignored: Pyrra does not put it on its alerts")
	}
	if y.Spec.PartialResponseStrategy != "" {
		w.Addf(yamlfile.Path("spec", "partial_response_strategy"), "ignored: a Thanos Ruler setting; meshlens evaluates on its own store")
	}
	// Pyrra copies pyrra.dev/ labels and annotations, without the prefix,
	// onto its rules and alerts; the object's other labels select it in
	// Kubernetes.
	common, ann := map[string]string{}, map[string]string{}
	for _, k := range slices.Sorted(maps.Keys(y.Metadata.Labels)) {
		if n, ok := strings.CutPrefix(k, pyrraPrefix); ok {
			common[n] = y.Metadata.Labels[k]
			continue
		}
		w.Addf(yamlfile.Path("metadata", "labels", k), "not kept: Pyrra leaves labels without the %s prefix off its alerts", pyrraPrefix)
	}
	for _, k := range slices.Sorted(maps.Keys(y.Metadata.Annotations)) {
		if n, ok := strings.CutPrefix(k, pyrraPrefix); ok {
			ann[n] = y.Metadata.Annotations[k]
			continue
		}
		w.Addf(yamlfile.Path("metadata", "annotations", k), "not kept: Pyrra leaves annotations without the %s prefix off its alerts", pyrraPrefix)
	}
	ann = annotations(ann, w, yamlfile.Path("metadata", "annotations"))
	skip := func(path []any, format string, args ...any) ([]openSLOOut, []string, int, error) {
		w.Addf(path, "SLO %s not imported: "+format, append([]any{name}, args...)...)
		return nil, warnings(w), 1, nil
	}
	ind := y.Spec.Indicator
	ib := yamlfile.Path("spec", "indicator")
	var (
		good, bad, total string
		grouping         []string
		gb               []any
		matchers         string // the total metric's selector, whose equality matchers Pyrra puts on alerts
	)
	switch {
	case ind.Ratio != nil && ind.Latency != nil:
		return skip(ib, "ratio and latency both given: Pyrra reads one indicator")
	case ind.Ratio != nil, ind.Latency != nil:
		// Errors over total, or successes (fast requests) over total.
		var (
			kind, field string
			num, tot    pyrraQuery
			grp         []string
		)
		if r := ind.Ratio; r != nil {
			kind, field, num, tot, grp = "ratio", "errors", r.Errors, r.Total, r.Grouping
		} else {
			l := ind.Latency
			kind, field, num, tot, grp = "latency", "success", l.Success, l.Total, l.Grouping
		}
		gb, grouping, matchers = at(ib, kind, "grouping"), grp, tot.Metric
		n, err := pyrraCounter(num.Metric)
		if err != nil {
			return skip(at(ib, kind, field, "metric"), "%v", err)
		}
		if total, err = pyrraCounter(tot.Metric); err != nil {
			return skip(at(ib, kind, "total", "metric"), "%v", err)
		}
		if kind == "ratio" {
			bad = n
		} else {
			good = n
		}
	case ind.LatencyNative != nil:
		return skip(at(ib, "latencyNative"), "native histograms are not read; use indicator.latency with a classic histogram's _bucket{le=...} (success) and _count (total)")
	case ind.BoolGauge != nil:
		gb = at(ib, "bool_gauge", "grouping")
		grouping, matchers = ind.BoolGauge.Grouping, ind.BoolGauge.Metric
		sel, err := pyrraSelector(ind.BoolGauge.Metric)
		if err != nil {
			return skip(at(ib, "bool_gauge", "metric"), "%v", err)
		}
		// As Pyrra counts it: each sample is an event, good when 1.
		good = "sum(sum_over_time(" + sel + "[" + WindowVar + "]))"
		total = "sum(count_over_time(" + sel + "[" + WindowVar + "]))"
		w.Addf(at(ib, "bool_gauge"), "note: every sample of the gauge is one event, good when it is 1, as Pyrra counts it")
	default:
		return skip(ib, "want one of ratio, latency, latencyNative or bool_gauge")
	}
	if len(grouping) > 0 {
		w.Addf(gb, "not kept: meshlens measures one ratio per SLO; %v are summed over (write one SLO per group to keep them apart)", grouping)
	}
	o := newOpenSLO(fmt.Sprintf("%s:%d", doc.File, doc.Line()), name, y.Spec.Description, "", window, target)
	o.Metadata.Labels = sloLabels(common, w, yamlfile.Path("metadata", "labels"))
	if good != "" {
		o.Spec.Indicator.Spec.RatioMetric.Good = promMetric(good)
	} else {
		o.Spec.Indicator.Spec.RatioMetric.Bad = promMetric(bad)
	}
	o.Spec.Indicator.Spec.RatioMetric.Total = promMetric(total)

	al := y.Spec.Alerting
	ab := yamlfile.Path("spec", "alerting")
	if (al.Disabled != nil && *al.Disabled) || (al.Burnrates != nil && !*al.Burnrates) {
		o.Spec.Alerting.Disabled = true
	}
	if al.Absent == nil || *al.Absent {
		w.Addf(at(ab, "absent"), "not kept: meshlens has no alert on a missing metric (%s); an SLO without data shows no SLI, never an empty budget", orDefault(al.AbsentName, "SLOMetricAbsent"))
	}
	alert := orDefault(al.Name, pyrraAlertName)
	if !model.LegacyValidation.IsValidMetricName(alert) {
		w.Addf(at(ab, "name"), "%q is not an alert name Prometheus accepts: the alerts are named %s", alert, AlertName)
		alert = ""
	}
	// The equality matchers of the total metric, which Pyrra copies onto
	// its alerts (grouped labels excepted).
	fromMatchers := map[string]string{}
	if vs, err := parser.NewParser(parser.Options{}).ParseMetricSelector(matchers); err == nil {
		grouped := map[string]bool{}
		for _, g := range grouping {
			grouped[g] = true
		}
		for _, m := range vs {
			if m.Type == labels.MatchEqual && m.Name != model.MetricNameLabel && m.Name != model.BucketLabel && !grouped[m.Name] {
				fromMatchers[m.Name] = m.Value
			}
		}
	}
	_, fromMatchers = alertLabels(fromMatchers, "", w, at(ib))
	if !o.Spec.Alerting.Disabled {
		for _, t := range pyrraTiers(window) {
			tb := ab
			if t.Short < time.Minute || t.Short >= t.Long {
				w.Addf(tb, "not kept: Pyrra's %s tier over %s/%s is too short for a %s window to alert on", t.Severity, promDuration(t.Long), promDuration(t.Short), promDuration(window))
				continue
			}
			if !canFire(t.Factor, target/100) {
				w.Addf(tb, "not kept: Pyrra's %vx tier can never fire on a %v%% target (an error rate above 100%% would be needed)", t.Factor, target)
				continue
			}
			lbls := merge(fromMatchers, map[string]string{
				"long": promDuration(t.Long), "short": promDuration(t.Short),
				"exhaustion": promDuration(time.Duration(math.Round(float64(window) / t.Factor))),
			})
			o.Spec.Alerting.Tiers = append(o.Spec.Alerting.Tiers, tierOut(t, alert, lbls, merge(ann)))
		}
		if len(o.Spec.Alerting.Tiers) == 0 {
			o.Spec.Alerting.Disabled = true
		}
	}
	return []openSLOOut{o}, warnings(w), 0, nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// pyrraSelector checks that a Pyrra metric is a plain selector, as Pyrra
// requires.
func pyrraSelector(metric string) (string, error) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(metric)
	if err != nil {
		return "", fmt.Errorf("%q: not a PromQL selector: %v", metric, err)
	}
	vs, ok := e.(*parser.VectorSelector)
	if !ok {
		return "", fmt.Errorf("%q: Pyrra reads a metric selector here, like http_requests_total{job=\"api\"}", metric)
	}
	return vs.String(), nil
}

// pyrraCounter is a Pyrra counter selector as events over the window.
func pyrraCounter(metric string) (string, error) {
	sel, err := pyrraSelector(metric)
	if err != nil {
		return "", err
	}
	return eventsExpr("sum(increase("+sel+"["+WindowVar+"]))", false)
}
