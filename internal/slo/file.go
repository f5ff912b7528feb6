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
// file:line: field: message. Warnings (what was read but not used) are
// dropped: Read returns them.
func Load(paths ...string) ([]SLO, error) {
	r, err := Read(paths...)
	return r.SLOs, err
}

// Parse is Load of files already in memory.
func Parse(files ...File) ([]SLO, error) {
	r, err := ParseFiles(files...)
	return r.SLOs, err
}

// Result is what a set of SLO files defines.
type Result struct {
	SLOs []SLO
	// Warnings are what was read and not used, or used differently from
	// how it was written (a label renamed), each as file:line: field: what.
	Warnings []string
}

// Read is Load with the warnings.
func Read(paths ...string) (Result, error) {
	var files []File
	for _, p := range paths {
		b, err := yamlfile.ReadFile(p, yamlfile.MaxConfigBytes)
		if err != nil {
			return Result{}, fmt.Errorf("slo: read %q: %w", p, err)
		}
		files = append(files, File{Name: p, Data: b})
	}
	return ParseFiles(files...)
}

// ParseFiles validates SLO files already in memory. A file holds one or
// more YAML documents separated by "---"; a document is an object or a
// list of objects. An object is a meshlens SLO, a meshlens list (slos:
// [...]), or an OpenSLO openslo/v1 object: SLOs and SLIs are read,
// DataSources give a metricSourceRef its type, Services are known names,
// alert policies, conditions and notification targets are ignored with a
// warning.
func ParseFiles(files ...File) (Result, error) {
	var (
		errs   []error
		res    Result
		objs   []object
		oslos  []pendingOpenSLO
		oslis  = map[string]*openSLI{}
		origin = map[string]string{}
	)
	for _, f := range files {
		for _, d := range splitDocuments(f.Data) {
			o, err := splitList(f.Name, d)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			objs = append(objs, o...)
		}
	}
	// DataSources first: an SLI anywhere may name one.
	ctx := &parseCtx{dataSources: map[string]string{}, alertPolicies: map[string]*namedObject{}, alertConditions: map[string]*namedObject{}}
	var alertObjs []*namedObject
	for _, o := range objs {
		switch {
		case o.isOpenSLO("DataSource"):
			if err := ctx.addDataSource(o); err != nil {
				errs = append(errs, err)
			}
		case o.isOpenSLO("AlertPolicy"), o.isOpenSLO("AlertCondition"):
			no := &namedObject{o: o}
			alertObjs = append(alertObjs, no)
			m := ctx.alertPolicies
			if o.kind == "AlertCondition" {
				m = ctx.alertConditions
			}
			if n := rawName(o.data); n != "" {
				m[n] = no
			}
		}
	}
	for _, o := range objs {
		if o.isOpenSLO("DataSource") {
			continue
		}
		dr, err := ctx.parseObject(o)
		res.Warnings = append(res.Warnings, dr.warnings...)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		res.SLOs = append(res.SLOs, dr.slos...)
		oslos = append(oslos, dr.openSLOs...)
		for _, s := range dr.openSLIs {
			if prev, dup := origin["sli/"+s.name]; dup {
				errs = append(errs, fmt.Errorf("%s: SLI %q already defined at %s", s.source, s.name, prev))
				continue
			}
			origin["sli/"+s.name] = s.source
			oslis[s.name] = s
		}
	}
	for _, no := range alertObjs {
		if !no.used {
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s:%d: %s %s ignored: no SLO refers to it (spec.alertPolicies)", no.o.file, firstLine(no.o.data), no.o.kind, objectName(no.o.data)))
		}
	}
	for _, p := range oslos {
		s, err := p.resolve(oslis)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		res.SLOs = append(res.SLOs, s)
	}
	for _, s := range res.SLOs {
		if prev, dup := origin["slo/"+s.Name]; dup {
			errs = append(errs, fmt.Errorf("%s: SLO %q already defined at %s", s.Source, s.Name, prev))
			continue
		}
		origin["slo/"+s.Name] = s.Source
	}
	if len(errs) > 0 {
		return Result{Warnings: res.Warnings}, errors.Join(errs...)
	}
	if len(res.SLOs) == 0 {
		names := make([]string, len(files))
		for i, f := range files {
			names[i] = f.Name
		}
		return Result{Warnings: res.Warnings}, fmt.Errorf("slo: no SLO in %s", strings.Join(names, ", "))
	}
	return res, nil
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
		if !hasBody(lines[start:end]) {
			return
		}
		docs = append(docs, blankOutside(lines, start, end))
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

func hasBody(lines []string) bool {
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t != "" && !strings.HasPrefix(t, "#") {
			return true
		}
	}
	return false
}

// blankOutside keeps lines [start, end) and blanks the others.
func blankOutside(lines []string, start, end int) []byte {
	var b strings.Builder
	for i := range lines {
		if i >= start && i < end {
			b.WriteString(lines[i])
		}
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

// object is one YAML object of a file, the file's other lines blanked.
type object struct {
	file       string
	data       []byte
	apiVersion string
	kind       string
}

func (o object) isOpenSLO(kind string) bool {
	return strings.HasPrefix(o.apiVersion, "openslo/") && o.kind == kind
}

// splitList returns the objects of a document: itself, or the items of a
// top-level list (as tools that emit OpenSLO write them), each item
// dedented in place so that lines stay those of the file.
func splitList(file string, doc []byte) ([]object, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(doc, &root); err != nil || len(root.Content) != 1 || root.Content[0].Kind != yaml.SequenceNode {
		// Not a list: the strict decode reports what is wrong.
		return []object{newObject(file, doc)}, nil
	}
	seq := root.Content[0]
	lines := strings.Split(string(doc), "\n")
	var out []object
	for i, item := range seq.Content {
		if item.Kind != yaml.MappingNode {
			return nil, fmt.Errorf("%s:%d: [%d]: each item of a top-level list is an object (a mapping: apiVersion, kind, ...), not a %s", file, item.Line, i, nodeKind(item))
		}
		start, end := item.Line-1, len(lines)
		if i+1 < len(seq.Content) {
			end = seq.Content[i+1].Line - 1
		}
		own := append([]string(nil), lines...)
		// The item's dash, and a next item's dash alone on a line.
		own[start] = strings.Repeat(" ", item.Column-1) + own[start][min(item.Column-1, len(own[start])):]
		for j := start + 1; j < end; j++ {
			if strings.TrimSpace(own[j]) == "-" {
				own[j] = ""
			}
		}
		out = append(out, newObject(file, blankOutside(own, start, end)))
	}
	return out, nil
}

func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		return "scalar"
	}
	return "mapping"
}

// newObject reads the header of an object leniently; the strict decode
// follows.
func newObject(file string, data []byte) object {
	var head struct {
		APIVersion any `yaml:"apiVersion"`
		Kind       any `yaml:"kind"`
	}
	_ = yaml.Unmarshal(data, &head)
	s := func(v any) string {
		if v == nil {
			return ""
		}
		return fmt.Sprint(v)
	}
	return object{file: file, data: data, apiVersion: s(head.APIVersion), kind: s(head.Kind)}
}

type docResult struct {
	slos     []SLO
	openSLOs []pendingOpenSLO
	openSLIs []*openSLI
	warnings []string
}

// parseCtx is what every object may refer to.
type parseCtx struct {
	// dataSources maps OpenSLO DataSource names to their type.
	dataSources map[string]string
	// alertPolicies and alertConditions by name.
	alertPolicies, alertConditions map[string]*namedObject
}

func (c *parseCtx) parseObject(o object) (docResult, error) {
	var res docResult
	file, data := o.file, o.data
	switch {
	case strings.HasPrefix(o.apiVersion, "openslo/"):
		if o.apiVersion != "openslo/v1" {
			return res, fmt.Errorf("%s:%d: apiVersion: %q: only openslo/v1 is supported (v1alpha and v2alpha documents: convert them with the oslo tool)", file, keyLine(data, "apiVersion"), o.apiVersion)
		}
		switch o.kind {
		case "SLO":
			p, warn, err := c.parseOpenSLO(file, data)
			res.warnings = warn
			if err != nil {
				return res, err
			}
			res.openSLOs = append(res.openSLOs, p)
		case "SLI":
			s, warn, err := c.parseOpenSLI(file, data)
			res.warnings = warn
			if err != nil {
				return res, err
			}
			res.openSLIs = append(res.openSLIs, s)
		case "Service":
			// A name SLOs give as spec.service; nothing to measure.
			return res, nil
		case "AlertPolicy", "AlertCondition":
			// Read where an SLO refers to them (alertpolicy.go).
			return res, nil
		case "AlertNotificationTarget":
			res.warnings = append(res.warnings, fmt.Sprintf("%s:%d: %s %s ignored: Alertmanager routes meshlens's alerts on their labels (slo, tier, severity, service)", file, firstLine(data), o.kind, objectName(data)))
			return res, nil
		default:
			return res, fmt.Errorf("%s:%d: kind: %q: want one of SLO, SLI, Service, DataSource, AlertPolicy, AlertCondition, AlertNotificationTarget", file, keyLine(data, "kind"), o.kind)
		}
		return res, nil
	case strings.HasPrefix(o.apiVersion, "pyrra.dev/"):
		return res, fmt.Errorf("%s:%d: apiVersion: a Pyrra ServiceLevelObjective, not a meshlens or OpenSLO SLO: convert it with meshlens slo import --from pyrra %s (its alert names, labels and annotations are kept)", file, keyLine(data, "apiVersion"), file)
	case strings.HasPrefix(o.apiVersion, "sloth.slok.dev/"):
		return res, fmt.Errorf("%s:%d: apiVersion: a Sloth %s, not a meshlens or OpenSLO SLO: convert it with meshlens slo import --from sloth %s (its alert names, labels and annotations are kept)", file, keyLine(data, "apiVersion"), o.kind, file)
	case isSloth(data):
		return res, fmt.Errorf("%s:%d: version: a Sloth service spec, not a meshlens or OpenSLO SLO: convert it with meshlens slo import --from sloth %s (its alert names, labels and annotations are kept)", file, keyLine(data, "version"), file)
	default:
		slos, err := parseNative(file, data)
		res.slos = slos
		return res, err
	}
}

// isSloth tells a Sloth prometheus/v1 spec (version, service, slos with
// objective and sli.events) from a meshlens list.
func isSloth(data []byte) bool {
	var head struct {
		Version any `yaml:"version"`
	}
	_ = yaml.Unmarshal(data, &head)
	v, _ := head.Version.(string)
	return strings.HasPrefix(v, "prometheus/")
}

// firstLine is the first line of an object's own text.
func firstLine(data []byte) int {
	for i, l := range strings.Split(string(data), "\n") {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
			return i + 1
		}
	}
	return 1
}

// keyLine is the line of an object's top-level key, or its first line.
func keyLine(data []byte, key string) int {
	var root yaml.Node
	if yaml.Unmarshal(data, &root) == nil && len(root.Content) == 1 && root.Content[0].Kind == yaml.MappingNode {
		m := root.Content[0]
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == key {
				return m.Content[i].Line
			}
		}
	}
	return firstLine(data)
}

// objectName is an OpenSLO object's metadata.name, quoted, for messages.
func objectName(data []byte) string {
	if n := rawName(data); n != "" {
		return yamlfile.Quote(n)
	}
	return "(unnamed)"
}

// rawName is an OpenSLO object's metadata.name, "" if it has none.
func rawName(data []byte) string {
	var o struct {
		Metadata struct {
			Name any `yaml:"name"`
		} `yaml:"metadata"`
	}
	_ = yaml.Unmarshal(data, &o)
	if o.Metadata.Name == nil {
		return ""
	}
	return fmt.Sprint(o.Metadata.Name)
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
	For      string  `yaml:"for,omitempty"`
	// Alert, Labels and Annotations are the tier's alert's own name,
	// labels and annotations (what routes match: an imported SLO keeps
	// its tool's).
	Alert       string            `yaml:"alert,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty"`
	Annotations map[string]string `yaml:"annotations,omitempty"`
}

func parseNative(file string, data []byte) ([]SLO, error) {
	var nf nativeFile
	doc, err := decode(file, data, &nf)
	if err != nil {
		return nil, err
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
	checkNativeLabels(y.Labels, p, at(base, "labels"))
	t, err := parseTarget(y.Target)
	if err != nil {
		p.Addf(at(base, "target"), "%v", err)
	}
	s.Target = t
	s.Window, s.Period, err = parseWindow(y.Window)
	s.Calendar = s.Period.Months > 0
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

// maxWindow bounds SLO windows: a budget is counted over the store's
// recent history.
const maxWindow = 90 * 24 * time.Hour

// parseWindow reads a rolling window (7d, 28d, 30d, ...) or calendar-month
// (UTC months).
func parseWindow(v string) (time.Duration, CalendarPeriod, error) {
	switch v {
	case "":
		return 0, CalendarPeriod{}, errors.New("missing (e.g. 30d, 28d, 7d or calendar-month)")
	case "calendar-month", "month":
		return BaseWindow, CalendarPeriod{Months: 1, Start: calendarEpoch}, nil
	}
	d, err := parseDuration(v)
	if err != nil {
		return 0, CalendarPeriod{}, err
	}
	if err := checkRolling(d); err != nil {
		return 0, CalendarPeriod{}, fmt.Errorf("%q: %v", v, err)
	}
	return d, CalendarPeriod{}, nil
}

func checkRolling(d time.Duration) error {
	if d < time.Hour || d > maxWindow {
		return errors.New("a rolling window must be between 1h and 90d")
	}
	return nil
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
		s.Good, s.Bad, s.Total = validateRatio(p, rb, y.Ratio.Good, y.Ratio.Bad, y.Ratio.Total)
	}
	if n != 1 {
		p.Addf(base, "want exactly one of probe_availability, probe_latency, ratio")
	}
	return s
}

// validateRatio checks a ratio SLI's queries and returns them as event
// counts over WindowVar (see eventsExpr).
func validateRatio(p *yamlfile.Problems, base []any, good, bad, total string) (g, b, t string) {
	if (good == "") == (bad == "") {
		p.Addf(base, "want exactly one of good and bad, with total")
	}
	if total == "" {
		p.Addf(at(base, "total"), "missing")
	}
	out := map[string]string{}
	for _, q := range []struct{ name, expr string }{{"good", good}, {"bad", bad}, {"total", total}} {
		if q.expr == "" {
			continue
		}
		e, err := eventsExpr(q.expr, false)
		if err != nil {
			p.Addf(at(base, q.name), "%v", err)
			continue
		}
		out[q.name] = e
	}
	return out["good"], out["bad"], out["total"]
}

// WindowVar is where a Ratio SLI's range goes.
const WindowVar = "{{.window}}"

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
	if len(y.Tiers) == 0 && s.Window > 0 {
		tiers = TiersFor(s.Window)
		if s.TimeSlice > 0 {
			fitSlices(tiers, s.TimeSlice)
		}
	}
	names := map[string]bool{}
	for i, ty := range y.Tiers {
		tb := at(base, "tiers", i)
		t := Tier{Name: ty.Name, Factor: ty.BurnRate, Severity: ty.Severity, Alert: ty.Alert, Labels: ty.Labels, Annotations: ty.Annotations}
		if ty.Alert != "" && !model.LegacyValidation.IsValidMetricName(ty.Alert) {
			p.Addf(at(tb, "alert"), "%q: an alert name is letters, digits, '_' and ':', not starting with a digit", ty.Alert)
		}
		checkNativeLabels(ty.Labels, p, at(tb, "labels"))
		for k := range ty.Annotations {
			if !model.LegacyValidation.IsValidLabelName(k) {
				p.Addf(at(tb, "annotations", k), "%q is not a Prometheus annotation name; call it %s", k, promLabelName(k))
			}
		}
		if !nameRE.MatchString(ty.Name) {
			p.Addf(at(tb, "name"), "%q: want a name like page-1h", ty.Name)
		}
		if names[ty.Name] {
			p.Addf(at(tb, "name"), "%q: duplicate tier", ty.Name)
		}
		names[ty.Name] = true
		if !(ty.BurnRate > 0) || math.IsInf(ty.BurnRate, 0) {
			p.Addf(at(tb, "burn_rate"), "%v: must be positive", ty.BurnRate)
		} else if ty.BurnRate < 1 {
			p.Addf(at(tb, "burn_rate"), "%v: below 1 the tier fires while the budget would outlast the window; want 1 or more", ty.BurnRate)
		} else if s.Target > 0 && !canFire(ty.BurnRate, s.Target) {
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
		if s.TimeSlice > 0 && t.Short > 0 && t.Short < s.TimeSlice {
			p.Addf(at(tb, "short"), "%s: shorter than a time slice (%s); a tier's windows hold whole slices", promDuration(t.Short), promDuration(s.TimeSlice))
		}
		if s.Window > 0 && t.Long > s.Window {
			p.Addf(at(tb, "long"), "%s: longer than the SLO window (%s); a tier's windows fit inside it", promDuration(t.Long), promDuration(s.Window))
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
