package slo

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"

	"github.com/meshlens/meshlens/internal/wire"
	"github.com/meshlens/meshlens/internal/yamlfile"
)

// File is one SLO file's name and content.
type File struct {
	Name string
	Data []byte
}

// Load reads and validates SLO files. OpenSLO SLOs may refer to SLIs in any
// of the files. Every problem of every file is reported, each as
// file:line: field: message.
func Load(paths ...string) ([]SLO, error) {
	var files []File
	for _, p := range paths {
		b, err := yamlfile.ReadFile(p, yamlfile.MaxConfigBytes)
		if err != nil {
			return nil, fmt.Errorf("slo: read %q: %w", p, err)
		}
		files = append(files, File{Name: p, Data: b})
	}
	return Parse(files...)
}

// Parse validates SLO files already in memory. A file holds one or more YAML
// documents separated by "---"; each is a meshlens SLO, a meshlens list
// (slos: [...]), or an OpenSLO openslo/v1 SLO or SLI.
func Parse(files ...File) ([]SLO, error) {
	var (
		errs   []error
		out    []SLO
		oslos  []pendingOpenSLO
		oslis  = map[string]*openSLI{}
		origin = map[string]string{}
	)
	for _, f := range files {
		for _, d := range splitDocuments(f.Data) {
			res, err := parseDocument(f.Name, d)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			out = append(out, res.slos...)
			oslos = append(oslos, res.openSLOs...)
			for _, s := range res.openSLIs {
				if prev, dup := origin["sli/"+s.name]; dup {
					errs = append(errs, fmt.Errorf("%s: SLI %q already defined at %s", s.source, s.name, prev))
					continue
				}
				origin["sli/"+s.name] = s.source
				oslis[s.name] = s
			}
		}
	}
	for _, p := range oslos {
		s, err := p.resolve(oslis)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, s)
	}
	for _, s := range out {
		if prev, dup := origin["slo/"+s.Name]; dup {
			errs = append(errs, fmt.Errorf("%s: SLO %q already defined at %s", s.Source, s.Name, prev))
			continue
		}
		origin["slo/"+s.Name] = s.Source
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(out) == 0 {
		names := make([]string, len(files))
		for i, f := range files {
			names[i] = f.Name
		}
		return nil, fmt.Errorf("slo: no SLO in %s", strings.Join(names, ", "))
	}
	return out, nil
}

var docSep = regexp.MustCompile(`^---(\s.*)?$`)

// splitDocuments cuts a multi-document YAML file into documents, each the
// size of the whole file with the other documents blanked, so that line
// numbers in errors stay those of the file.
func splitDocuments(data []byte) [][]byte {
	lines := strings.Split(string(data), "\n")
	var docs [][]byte
	start := 0
	flush := func(end int) {
		body := false
		for _, l := range lines[start:end] {
			t := strings.TrimSpace(l)
			if t != "" && !strings.HasPrefix(t, "#") {
				body = true
				break
			}
		}
		if !body {
			return
		}
		var b strings.Builder
		for i := range lines {
			if i >= start && i < end {
				b.WriteString(lines[i])
			}
			b.WriteByte('\n')
		}
		docs = append(docs, []byte(b.String()))
	}
	for i, l := range lines {
		if docSep.MatchString(strings.TrimRight(l, "\r")) {
			flush(i)
			start = i + 1
		}
	}
	flush(len(lines))
	if len(docs) == 0 {
		// Let the decoder report the empty file.
		docs = append(docs, data)
	}
	return docs
}

type docResult struct {
	slos     []SLO
	openSLOs []pendingOpenSLO
	openSLIs []*openSLI
}

func parseDocument(file string, data []byte) (docResult, error) {
	var head struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
	}
	// A lenient look at the header only; the strict decode follows.
	_ = yaml.Unmarshal(data, &head)
	var res docResult
	switch {
	case strings.HasPrefix(head.APIVersion, "openslo/"):
		if head.APIVersion != "openslo/v1" {
			return res, fmt.Errorf("%s: apiVersion %q: only openslo/v1 is supported", file, head.APIVersion)
		}
		switch head.Kind {
		case "SLO":
			p, err := parseOpenSLO(file, data)
			if err != nil {
				return res, err
			}
			res.openSLOs = append(res.openSLOs, p)
		case "SLI":
			s, err := parseOpenSLI(file, data)
			if err != nil {
				return res, err
			}
			res.openSLIs = append(res.openSLIs, s)
		default:
			return res, fmt.Errorf("%s: kind %q: only openslo/v1 SLO and SLI are supported", file, head.Kind)
		}
		return res, nil
	default:
		slos, err := parseNative(file, data)
		res.slos = slos
		return res, err
	}
}

// nativeFile is a meshlens SLO document: one SLO at the top level, or a
// list under slos.
type nativeFile struct {
	APIVersion string    `yaml:"apiVersion"`
	Kind       string    `yaml:"kind"`
	SLOs       []sloYAML `yaml:"slos"`
	sloYAML    `yaml:",inline"`
}

type sloYAML struct {
	Name        string            `yaml:"name"`
	Description string            `yaml:"description"`
	Target      string            `yaml:"target"`
	Window      string            `yaml:"window"`
	SLI         sliYAML           `yaml:"sli"`
	Alerting    alertingYAML      `yaml:"alerting"`
	Labels      map[string]string `yaml:"labels"`
}

type sliYAML struct {
	ProbeAvailability *Scope       `yaml:"probe_availability"`
	ProbeLatency      *latencyYAML `yaml:"probe_latency"`
	Ratio             *ratioYAML   `yaml:"ratio"`
}

type latencyYAML struct {
	Scope     `yaml:",inline"`
	Threshold string `yaml:"threshold"`
	Estimate  bool   `yaml:"estimate"`
}

type ratioYAML struct {
	Good  string `yaml:"good"`
	Bad   string `yaml:"bad"`
	Total string `yaml:"total"`
}

type alertingYAML struct {
	// Disabled turns every alert of the SLO off (it is still measured).
	Disabled  bool     `yaml:"disabled"`
	MinEvents *float64 `yaml:"min_events"`
	Runbook   string   `yaml:"runbook"`
	// Tiers replace the default tiers; their burn_rate is used as written.
	Tiers []tierYAML `yaml:"tiers"`
	// Disable names tiers to drop.
	Disable []string `yaml:"disable"`
	// Severities overrides the severity of tiers by name.
	Severities map[string]string `yaml:"severities"`
}

type tierYAML struct {
	Name     string  `yaml:"name"`
	BurnRate float64 `yaml:"burn_rate"`
	Long     string  `yaml:"long"`
	Short    string  `yaml:"short"`
	Severity string  `yaml:"severity"`
	For      string  `yaml:"for"`
}

func parseNative(file string, data []byte) ([]SLO, error) {
	var nf nativeFile
	doc, err := yamlfile.Decode(file, data, &nf)
	if err != nil {
		return nil, fmt.Errorf("slo: %w", err)
	}
	p := doc.NewProblems()
	if nf.APIVersion != "" && nf.APIVersion != "meshlens/v1" {
		p.Addf(yamlfile.Path("apiVersion"), "%q: want meshlens/v1 or openslo/v1", nf.APIVersion)
	}
	if nf.Kind != "" && nf.Kind != "SLO" && nf.Kind != "SLOList" {
		p.Addf(yamlfile.Path("kind"), "%q: want SLO or SLOList", nf.Kind)
	}
	var out []SLO
	single := nf.sloYAML.Name != "" || nf.sloYAML.Target != "" || nf.sloYAML.Window != ""
	switch {
	case len(nf.SLOs) > 0 && single:
		p.Addf(yamlfile.Path("slos"), "a file holds either one SLO at the top level or a list under slos, not both")
	case len(nf.SLOs) > 0:
		for i := range nf.SLOs {
			s := nf.SLOs[i].validate(doc, p, yamlfile.Path("slos", i))
			out = append(out, s)
		}
	default:
		out = append(out, nf.sloYAML.validate(doc, p, nil))
	}
	if err := p.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

func at(base []any, more ...any) []any {
	return append(append([]any(nil), base...), more...)
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._:-]{0,126}[A-Za-z0-9])?$`)

func (y *sloYAML) validate(doc *yamlfile.Doc, p *yamlfile.Problems, base []any) SLO {
	s := SLO{
		Name:        y.Name,
		Description: y.Description,
		Labels:      y.Labels,
		Source:      fmt.Sprintf("%s:%d", doc.File, doc.Line(base...)),
	}
	if !nameRE.MatchString(y.Name) {
		p.Addf(at(base, "name"), "%q: want letters, digits, '.', '_', ':' or '-', at most 128", y.Name)
	}
	for k := range y.Labels {
		if !model.LegacyValidation.IsValidLabelName(k) || k == "slo" || k == "severity" || k == "tier" || k == "alertname" {
			p.Addf(at(base, "labels", k), "%q is not a usable label name", k)
		}
	}
	t, err := parseTarget(y.Target)
	if err != nil {
		p.Addf(at(base, "target"), "%v", err)
	}
	s.Target = t
	s.Window, s.Calendar, err = parseWindow(y.Window)
	if err != nil {
		p.Addf(at(base, "window"), "%v", err)
	}
	s.SLI = y.SLI.validate(p, at(base, "sli"))
	y.Alerting.apply(&s, p, at(base, "alerting"))
	return s
}

// parseTarget reads "99.95%" or 0.9995.
func parseTarget(v string) (float64, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, errors.New("missing (e.g. 99.95%)")
	}
	pct := strings.HasSuffix(v, "%")
	f, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(v, "%")), 64)
	if err != nil {
		return 0, fmt.Errorf("%q: want a percentage like 99.95%% or a ratio like 0.9995", v)
	}
	if pct {
		f /= 100
	} else if f >= 1 {
		return 0, fmt.Errorf("%q: a ratio must be below 1 (write %s%% for a percentage)", v, v)
	}
	if !(f > 0 && f < 1) || math.IsNaN(f) {
		return 0, fmt.Errorf("%q: must be strictly between 0%% and 100%%", v)
	}
	return f, nil
}

// parseWindow reads a rolling window (7d, 28d, 30d, ...) or calendar-month.
func parseWindow(v string) (time.Duration, bool, error) {
	switch v {
	case "":
		return 0, false, errors.New("missing (e.g. 30d, 28d, 7d or calendar-month)")
	case "calendar-month", "month":
		return BaseWindow, true, nil
	}
	d, err := parseDuration(v)
	if err != nil {
		return 0, false, err
	}
	if d < time.Hour || d > 90*24*time.Hour {
		return 0, false, fmt.Errorf("%q: a rolling window must be between 1h and 90d", v)
	}
	return d, false, nil
}

func parseDuration(v string) (time.Duration, error) {
	d, err := model.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%q: want a duration like 5m, 1h, 30d", v)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q: must be positive", v)
	}
	return time.Duration(d), nil
}

var scopeValueRE = regexp.MustCompile(`^[A-Za-z0-9._:/-]+$`)

func (sc Scope) validate(p *yamlfile.Problems, base []any) {
	n := 0
	for _, f := range []struct{ name, v string }{{"dc", sc.DC}, {"pod", sc.Pod}, {"rack", sc.Rack}, {"host", sc.Host}} {
		if f.v == "" {
			continue
		}
		n++
		if !scopeValueRE.MatchString(f.v) {
			p.Addf(at(base, f.name), "%q is not an element name", f.v)
		}
	}
	if n > 1 {
		p.Addf(base, "at most one of dc, pod, rack, host (the scope is every probe with an end in that element)")
	}
	if sc.Target != "" && n > 0 {
		p.Addf(at(base, "target"), "a service target is not combined with dc, pod, rack or host")
	}
	if sc.Target != "" && strings.ContainsAny(sc.Target, "\"\\\n") {
		p.Addf(at(base, "target"), "%q: quotes, backslashes and newlines are not allowed", sc.Target)
	}
	if sc.Proto != "" {
		if proto, err := wire.ParseProtocol(sc.Proto); err != nil {
			p.Addf(at(base, "proto"), "%q: want one of %s", sc.Proto, strings.Join(wire.ProtocolNames(), ", "))
		} else if sc.Target != "" && !proto.IsTarget() {
			p.Addf(at(base, "proto"), "%q: service targets are not probed with it", sc.Proto)
		}
	}
}

func (y sliYAML) validate(p *yamlfile.Problems, base []any) SLI {
	var s SLI
	n := 0
	if y.ProbeAvailability != nil {
		n++
		s.Kind = ProbeAvailability
		s.Scope = *y.ProbeAvailability
		s.Scope.validate(p, at(base, "probe_availability"))
	}
	if y.ProbeLatency != nil {
		n++
		s.Kind = ProbeLatency
		s.Scope = y.ProbeLatency.Scope
		lb := at(base, "probe_latency")
		s.Scope.validate(p, lb)
		s.Estimate = y.ProbeLatency.Estimate
		if s.Estimate && (s.Scope.Host != "" || s.Scope.Target != "") {
			p.Addf(at(lb, "estimate"), "estimates need the pair counters and quantiles: dc, pod or rack scopes only")
		}
		if y.ProbeLatency.Threshold == "" {
			p.Addf(at(lb, "threshold"), "missing (one of %s)", bucketList())
		} else if d, err := time.ParseDuration(y.ProbeLatency.Threshold); err != nil || d <= 0 {
			p.Addf(at(lb, "threshold"), "%q: want a positive duration like 5ms", y.ProbeLatency.Threshold)
		} else if !s.Estimate && !isLatencyBucket(d) {
			p.Addf(at(lb, "threshold"), "%s: must be one of the aggregator's latency buckets: %s (or set estimate: true)", d, bucketList())
		} else {
			s.Threshold = d
		}
	}
	if y.Ratio != nil {
		n++
		s.Kind = Ratio
		rb := at(base, "ratio")
		s.Good, s.Bad, s.Total = y.Ratio.Good, y.Ratio.Bad, y.Ratio.Total
		validateRatio(p, rb, s.Good, s.Bad, s.Total)
	}
	if n != 1 {
		p.Addf(base, "want exactly one of probe_availability, probe_latency, ratio")
	}
	return s
}

func validateRatio(p *yamlfile.Problems, base []any, good, bad, total string) {
	if (good == "") == (bad == "") {
		p.Addf(base, "want exactly one of good and bad, with total")
	}
	if total == "" {
		p.Addf(at(base, "total"), "missing")
	}
	for _, q := range []struct{ name, expr string }{{"good", good}, {"bad", bad}, {"total", total}} {
		if q.expr == "" {
			continue
		}
		if err := checkWindowExpr(q.expr); err != nil {
			p.Addf(at(base, q.name), "%v", err)
		}
	}
}

// WindowVar is where a Ratio SLI's range goes.
const WindowVar = "{{.window}}"

func checkWindowExpr(expr string) error {
	if !strings.Contains(expr, WindowVar) {
		return fmt.Errorf("%q: must contain %s where the range goes, e.g. sum(increase(x_total[%s]))", expr, WindowVar, WindowVar)
	}
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expandWindow(expr, 5*time.Minute))
	if err != nil {
		return fmt.Errorf("%q: %w", expr, err)
	}
	if e.Type() != parser.ValueTypeVector {
		return fmt.Errorf("%q: must be an instant vector, not a %s", expr, e.Type())
	}
	return nil
}

func (y *alertingYAML) apply(s *SLO, p *yamlfile.Problems, base []any) {
	s.Runbook = y.Runbook
	s.MinEvents = DefaultMinEvents
	if y.MinEvents != nil {
		if *y.MinEvents < 0 || math.IsNaN(*y.MinEvents) || math.IsInf(*y.MinEvents, 0) {
			p.Addf(at(base, "min_events"), "%v: must be 0 (off) or more", *y.MinEvents)
		}
		s.MinEvents = *y.MinEvents
	}
	if y.Runbook != "" && !strings.HasPrefix(y.Runbook, "http://") && !strings.HasPrefix(y.Runbook, "https://") {
		p.Addf(at(base, "runbook"), "%q: want an http(s) URL", y.Runbook)
	}
	if y.Disabled {
		return
	}
	var tiers []Tier
	if len(y.Tiers) == 0 {
		for _, t := range DefaultTiers() {
			if s.Window > 0 {
				t.Factor = ScaleFactor(t.Factor, s.Window)
			}
			tiers = append(tiers, t)
		}
	}
	names := map[string]bool{}
	for i, ty := range y.Tiers {
		tb := at(base, "tiers", i)
		t := Tier{Name: ty.Name, Factor: ty.BurnRate, Severity: ty.Severity}
		if !nameRE.MatchString(ty.Name) {
			p.Addf(at(tb, "name"), "%q: want a name like page-1h", ty.Name)
		}
		if names[ty.Name] {
			p.Addf(at(tb, "name"), "%q: duplicate tier", ty.Name)
		}
		names[ty.Name] = true
		if !(ty.BurnRate > 0) || math.IsInf(ty.BurnRate, 0) {
			p.Addf(at(tb, "burn_rate"), "%v: must be positive", ty.BurnRate)
		} else if s.Target > 0 && ty.BurnRate*(1-s.Target) > 1 {
			p.Addf(at(tb, "burn_rate"), "%v: can never fire: an error rate above 100%% would be needed", ty.BurnRate)
		}
		var err error
		if t.Long, err = parseDuration(ty.Long); err != nil {
			p.Addf(at(tb, "long"), "%v", err)
		}
		if t.Short, err = parseDuration(ty.Short); err != nil {
			p.Addf(at(tb, "short"), "%v", err)
		}
		if t.Long > 0 && t.Short > 0 && t.Short >= t.Long {
			p.Addf(at(tb, "short"), "%s: must be shorter than long (%s)", t.Short, t.Long)
		}
		if ty.For != "" {
			if t.For, err = parseDuration(ty.For); err != nil {
				p.Addf(at(tb, "for"), "%v", err)
			}
		}
		if t.Severity == "" {
			p.Addf(at(tb, "severity"), "missing (e.g. page, ticket)")
		}
		tiers = append(tiers, t)
	}
	byName := map[string]int{}
	for i, t := range tiers {
		byName[t.Name] = i
	}
	for name, sev := range y.Severities {
		if _, ok := byName[name]; !ok {
			p.Addf(at(base, "severities", name), "no tier %q (tiers: %s)", name, tierNames(tiers))
			continue
		}
		if !model.LabelValue(sev).IsValid() || sev == "" {
			p.Addf(at(base, "severities", name), "%q: not a usable severity", sev)
		}
		tiers[byName[name]].Severity = sev
	}
	drop := map[string]bool{}
	for i, name := range y.Disable {
		if _, ok := byName[name]; !ok {
			p.Addf(at(base, "disable", i), "no tier %q (tiers: %s)", name, tierNames(tiers))
		}
		drop[name] = true
	}
	for _, t := range tiers {
		if !drop[t.Name] {
			s.Tiers = append(s.Tiers, t)
		}
	}
}

func tierNames(ts []Tier) string {
	n := make([]string, len(ts))
	for i, t := range ts {
		n[i] = t.Name
	}
	return strings.Join(n, ", ")
}

// LatencyBuckets are the RTT bounds (seconds) of the aggregator's latency
// counters; a latency SLI's threshold must be one of them.
var LatencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}

func isLatencyBucket(d time.Duration) bool {
	for _, b := range LatencyBuckets {
		if math.Abs(d.Seconds()-b) < 1e-12 {
			return true
		}
	}
	return false
}

func bucketList() string {
	s := make([]string, len(LatencyBuckets))
	for i, b := range LatencyBuckets {
		s[i] = time.Duration(b * float64(time.Second)).String()
	}
	return strings.Join(s, ", ")
}
