package api

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
)

// /api/v1/rules, /api/v1/alerts and /api/v1/metadata, answered from what
// the server really evaluates and stores, in the shapes of Prometheus's
// web/api/v1, so that Grafana's alerting views and metric browser work.

// RuleSource gives the rule groups the server evaluates, with the alerts
// each alerting rule holds now, as Prometheus's rule manager would list
// them. Safe for concurrent use.
type RuleSource interface {
	RuleGroups() []RuleGroup
}

// RuleGroup is a group of rules evaluated together.
type RuleGroup struct {
	Name string
	// File is where the group was defined (an SLO file, or a name saying
	// where the rules come from when there is none).
	File           string
	Interval       time.Duration
	EvaluationTime time.Duration
	LastEvaluation time.Time // zero: not evaluated yet
	Rules          []Rule
}

// Rule types.
const (
	RuleAlerting  = "alerting"
	RuleRecording = "recording"
)

// Rule is an alerting or a recording rule.
type Rule struct {
	Type  string // RuleAlerting or RuleRecording
	Name  string // the alertname, or the recorded series
	Query string
	// Duration is an alerting rule's "for"; KeepFiringFor its
	// keep_firing_for.
	Duration, KeepFiringFor time.Duration
	Labels, Annotations     map[string]string
	// Alerts are an alerting rule's pending and firing alerts.
	Alerts []ActiveAlert
	// LastError, when set, makes the rule's health "err".
	LastError      string
	EvaluationTime time.Duration
	LastEvaluation time.Time // zero: health "unknown"
}

// ActiveAlert is a pending or firing alert of an alerting rule.
type ActiveAlert struct {
	Labels, Annotations map[string]string
	State               string // pending or firing
	ActiveAt            time.Time
	Value               float64
}

// MetricMetadata is what Prometheus keeps of a metric family: its type
// (counter, gauge, histogram, summary, unknown...), help and unit.
type MetricMetadata struct {
	Type string `json:"type"`
	Help string `json:"help"`
	Unit string `json:"unit"`
}

// The JSON of web/api/v1 (RuleDiscovery, RuleGroup, AlertingRule,
// RecordingRule, Alert).
type (
	promRuleDiscovery struct {
		Groups         []promRuleGroup `json:"groups"`
		GroupNextToken string          `json:"groupNextToken,omitempty"`
	}
	promRuleGroup struct {
		Name           string    `json:"name"`
		File           string    `json:"file"`
		Rules          []any     `json:"rules"`
		Interval       float64   `json:"interval"`
		Limit          int       `json:"limit"`
		EvaluationTime float64   `json:"evaluationTime"`
		LastEvaluation time.Time `json:"lastEvaluation"`
	}
	promAlertingRule struct {
		State          string            `json:"state"`
		Name           string            `json:"name"`
		Query          string            `json:"query"`
		Duration       float64           `json:"duration"`
		KeepFiringFor  float64           `json:"keepFiringFor"`
		Labels         map[string]string `json:"labels"`
		Annotations    map[string]string `json:"annotations"`
		Alerts         []promAlert       `json:"alerts"`
		Health         string            `json:"health"`
		LastError      string            `json:"lastError,omitempty"`
		EvaluationTime float64           `json:"evaluationTime"`
		LastEvaluation time.Time         `json:"lastEvaluation"`
		Type           string            `json:"type"`
	}
	promRecordingRule struct {
		Name           string            `json:"name"`
		Query          string            `json:"query"`
		Labels         map[string]string `json:"labels"`
		Health         string            `json:"health"`
		LastError      string            `json:"lastError,omitempty"`
		EvaluationTime float64           `json:"evaluationTime"`
		LastEvaluation time.Time         `json:"lastEvaluation"`
		Type           string            `json:"type"`
	}
	promAlert struct {
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
		State       string            `json:"state"`
		ActiveAt    *time.Time        `json:"activeAt,omitempty"`
		Value       string            `json:"value"`
	}
)

func (r Rule) health() string {
	switch {
	case r.LastError != "":
		return "err"
	case r.LastEvaluation.IsZero():
		return "unknown"
	}
	return "ok"
}

// state is an alerting rule's: the most advanced of its alerts'.
func (r Rule) state() string {
	state := "inactive"
	for _, a := range r.Alerts {
		switch a.State {
		case "firing":
			return "firing"
		case "pending":
			state = "pending"
		}
	}
	return state
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func toPromAlerts(as []ActiveAlert) []promAlert {
	out := make([]promAlert, 0, len(as))
	for _, a := range as {
		at := a.ActiveAt.UTC()
		out = append(out, promAlert{
			Labels: nonNil(a.Labels), Annotations: nonNil(a.Annotations), State: a.State,
			ActiveAt: &at, Value: strconv.FormatFloat(a.Value, 'e', -1, 64),
		})
	}
	return out
}

// ruleFilter is the parameters of /api/v1/rules.
type ruleFilter struct {
	alerts, recording, excludeAlerts bool
	names, groups, files             map[string]bool
	matchers                         [][]*labels.Matcher
	groupLimit                       int
	nextToken                        string
}

func (s *Server) parseRuleFilter(r *http.Request) (ruleFilter, error) {
	set := func(vs []string) map[string]bool {
		m := map[string]bool{}
		for _, v := range vs {
			m[v] = true
		}
		return m
	}
	f := ruleFilter{names: set(r.Form["rule_name[]"]), groups: set(r.Form["rule_group[]"]), files: set(r.Form["file[]"])}
	switch typ := strings.ToLower(r.Form.Get("type")); typ {
	case "":
		f.alerts, f.recording = true, true
	case "alert":
		f.alerts = true
	case "record":
		f.recording = true
	default:
		return f, fmt.Errorf("invalid parameter \"type\": not supported value %q", typ)
	}
	if v := r.Form.Get("exclude_alerts"); v != "" {
		b, err := strconv.ParseBool(strings.ToLower(v))
		if err != nil {
			return f, fmt.Errorf("invalid parameter \"exclude_alerts\": %w", err)
		}
		f.excludeAlerts = b
	}
	if ms := r.Form["match[]"]; len(ms) > 0 {
		sets, err := exprParser.ParseMetricSelectors(ms)
		if err != nil {
			return f, fmt.Errorf("invalid parameter \"match[]\": %w", err)
		}
		for _, set := range sets {
			if !slices.ContainsFunc(set, func(m *labels.Matcher) bool { return !m.Matches("") }) {
				return f, errors.New("match[] must contain at least one non-empty matcher")
			}
		}
		f.matchers = sets
	}
	f.nextToken = r.Form.Get("group_next_token")
	if v := r.Form.Get("group_limit"); v != "" {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n <= 0 {
			return f, fmt.Errorf("invalid parameter \"group_limit\": %q: want a number greater than 0", v)
		}
		f.groupLimit = int(n)
	} else if f.nextToken != "" {
		return f, errors.New("invalid parameter \"group_next_token\": group_limit needs to be present in order to paginate over the groups")
	}
	return f, nil
}

func (f ruleFilter) matchLabels(ls map[string]string) bool {
	if len(f.matchers) == 0 {
		return true
	}
	for _, set := range f.matchers {
		if !slices.ContainsFunc(set, func(m *labels.Matcher) bool { return !m.Matches(ls[m.Name]) }) {
			return true
		}
	}
	return false
}

// groupToken is the pagination token of a group, as Prometheus makes it.
func groupToken(file, name string) string {
	h := sha256.Sum256([]byte(file + ";" + name))
	return hex.EncodeToString(h[:])
}

func (s *Server) rules(w http.ResponseWriter, r *http.Request) {
	if !parseForm(w, r) {
		return
	}
	f, err := s.parseRuleFilter(r)
	if err != nil {
		writeError(w, errorBadData, err)
		return
	}
	var groups []RuleGroup
	if s.src.Rules != nil {
		groups = s.src.Rules.RuleGroups()
	}
	res := promRuleDiscovery{Groups: []promRuleGroup{}}
	found := f.nextToken == ""
	for _, g := range groups {
		if !found {
			if groupToken(g.File, g.Name) != f.nextToken {
				continue
			}
			found = true
		}
		if len(f.groups) > 0 && !f.groups[g.Name] || len(f.files) > 0 && !f.files[g.File] {
			continue
		}
		pg := promRuleGroup{
			Name: g.Name, File: g.File, Rules: []any{}, Interval: g.Interval.Seconds(),
			EvaluationTime: g.EvaluationTime.Seconds(), LastEvaluation: g.LastEvaluation.UTC(),
		}
		for _, rule := range g.Rules {
			if len(f.names) > 0 && !f.names[rule.Name] || !f.matchLabels(rule.Labels) {
				continue
			}
			switch rule.Type {
			case RuleAlerting:
				if !f.alerts {
					continue
				}
				var alerts []promAlert
				if !f.excludeAlerts {
					alerts = toPromAlerts(rule.Alerts)
				}
				pg.Rules = append(pg.Rules, promAlertingRule{
					State: rule.state(), Name: rule.Name, Query: rule.Query,
					Duration: rule.Duration.Seconds(), KeepFiringFor: rule.KeepFiringFor.Seconds(),
					Labels: nonNil(rule.Labels), Annotations: nonNil(rule.Annotations), Alerts: alerts,
					Health: rule.health(), LastError: rule.LastError,
					EvaluationTime: rule.EvaluationTime.Seconds(), LastEvaluation: rule.LastEvaluation.UTC(), Type: RuleAlerting,
				})
			case RuleRecording:
				if !f.recording {
					continue
				}
				pg.Rules = append(pg.Rules, promRecordingRule{
					Name: rule.Name, Query: rule.Query, Labels: nonNil(rule.Labels),
					Health: rule.health(), LastError: rule.LastError,
					EvaluationTime: rule.EvaluationTime.Seconds(), LastEvaluation: rule.LastEvaluation.UTC(), Type: RuleRecording,
				})
			default:
				writeError(w, errorInternal, fmt.Errorf("rule %q of group %q: unknown type %q", rule.Name, g.Name, rule.Type))
				return
			}
		}
		if len(pg.Rules) == 0 {
			continue // every rule filtered out
		}
		if f.groupLimit > 0 && len(res.Groups) == f.groupLimit {
			res.GroupNextToken = groupToken(g.File, g.Name)
			break
		}
		res.Groups = append(res.Groups, pg)
	}
	if !found {
		writeError(w, errorBadData, fmt.Errorf("invalid parameter \"group_next_token\": invalid group_next_token '%v'. were rule groups changed?", f.nextToken))
		return
	}
	writeData(w, res, nil, nil)
}

// alerts lists every pending and firing alert of every alerting rule.
func (s *Server) alerts(w http.ResponseWriter, _ *http.Request) {
	out := []promAlert{}
	if s.src.Rules != nil {
		for _, g := range s.src.Rules.RuleGroups() {
			for _, rule := range g.Rules {
				if rule.Type == RuleAlerting {
					out = append(out, toPromAlerts(rule.Alerts)...)
				}
			}
		}
	}
	writeData(w, struct {
		Alerts []promAlert `json:"alerts"`
	}{out}, nil, nil)
}

// metadata answers the metadata of the metric families the store holds,
// from Sources.Metadata. A family the store holds with no entry there is
// listed as "unknown", as Prometheus lists an untyped metric; an entry
// whose series the store does not hold (yet) is left out, as Prometheus
// knows only the metrics its targets expose.
func (s *Server) metadata(w http.ResponseWriter, r *http.Request) {
	if !parseForm(w, r) || !s.storeOr503(w) {
		return
	}
	// limit_per_metric is checked but has nothing to cut: a family has
	// one metadata here, not one per target.
	limit := -1
	for _, name := range []string{"limit", "limit_per_metric"} {
		if v := r.Form.Get(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				writeError(w, errorBadData, fmt.Errorf("%s must be a number", name))
				return
			}
			if name == "limit" {
				limit = n
			}
		}
	}
	q, err := s.src.Store.Querier(math.MinInt64, math.MaxInt64)
	if err != nil {
		writeError(w, errorExec, err)
		return
	}
	defer q.Close()
	names, _, err := q.LabelValues(r.Context(), model.MetricNameLabel, nil)
	if err != nil {
		writeError(w, queryErrorType(err), err)
		return
	}
	families := map[string]MetricMetadata{}
	for _, name := range names {
		family, md := s.familyOf(name)
		families[family] = md
	}
	want := r.Form.Get("metric")
	keys := make([]string, 0, len(families))
	for f := range families {
		if want == "" || f == want {
			keys = append(keys, f)
		}
	}
	slices.Sort(keys)
	out := map[string][]MetricMetadata{}
	for _, f := range keys {
		if limit >= 0 && len(out) >= limit {
			break
		}
		out[f] = []MetricMetadata{families[f]}
	}
	writeData(w, out, nil, nil)
}

// familyOf maps a series name to its family and metadata: a histogram's
// _bucket, _sum and _count (a summary's _sum and _count) are its family's.
func (s *Server) familyOf(name string) (string, MetricMetadata) {
	if md, ok := s.src.Metadata[name]; ok {
		return name, md
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		if md, ok := s.src.Metadata[base]; ok && (md.Type == "histogram" || md.Type == "summary" && suffix != "_bucket") {
			return base, md
		}
	}
	return name, MetricMetadata{Type: "unknown"}
}
