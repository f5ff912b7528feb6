// Package grafana checks the Grafana dashboards and provisioning under
// deploy/grafana as Grafana uses them. Grafana itself is not run: Debian
// has no package of it and its Go module is AGPL. The test does what
// Grafana's Prometheus datasource does instead: it resolves each
// dashboard's template variables with label_values against the live
// datasource, interpolates them and the built-in intervals into every
// panel's query, and sends the query (range or instant, with the
// provisioned authorization header) to a live meshlens server and to a
// real Prometheus scraping it.
package grafana

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/meshlens/meshlens/test/e2e/e2eutil"
)

// Dashboard is the part of a Grafana dashboard's JSON the checks read.
type Dashboard struct {
	file          string
	UID           string `json:"uid"`
	Title         string `json:"title"`
	SchemaVersion int    `json:"schemaVersion"`
	Time          struct {
		From string `json:"from"`
		To   string `json:"to"`
	} `json:"time"`
	Templating struct {
		List []Variable `json:"list"`
	} `json:"templating"`
	Panels []Panel `json:"panels"`
}

// Variable is a template variable.
type Variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`  // datasource, query
	Query      json.RawMessage `json:"query"` // a string, or {"query": ...}
	Datasource *DatasourceRef  `json:"datasource"`
	Current    struct {
		Value json.RawMessage `json:"value"` // a string, or a list for multi
	} `json:"current"`
	Multi      bool   `json:"multi"`
	IncludeAll bool   `json:"includeAll"`
	AllValue   string `json:"allValue"`
}

// QueryText is the variable's query: label_values(...) for a query
// variable, the datasource type for a datasource variable.
func (v Variable) QueryText() string {
	var s string
	if json.Unmarshal(v.Query, &s) == nil {
		return s
	}
	var q struct {
		Query string `json:"query"`
	}
	_ = json.Unmarshal(v.Query, &q)
	return q.Query
}

// CurrentValue is the variable's saved selection, its first value for a
// list.
func (v Variable) CurrentValue() string {
	var s string
	if json.Unmarshal(v.Current.Value, &s) == nil {
		return s
	}
	var l []string
	if json.Unmarshal(v.Current.Value, &l) == nil && len(l) > 0 {
		return l[0]
	}
	return ""
}

// Panel is a panel, or a row holding panels.
type Panel struct {
	ID         int            `json:"id"`
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	Datasource *DatasourceRef `json:"datasource"`
	GridPos    *struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets     []Target `json:"targets"`
	Panels      []Panel  `json:"panels"` // a collapsed row's
	FieldConfig struct {
		Defaults struct {
			Links []struct {
				URL string `json:"url"`
			} `json:"links"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
}

// Target is one query of a panel.
type Target struct {
	RefID      string         `json:"refId"`
	Expr       string         `json:"expr"`
	Instant    bool           `json:"instant"`
	Range      bool           `json:"range"`
	Format     string         `json:"format"`
	Datasource *DatasourceRef `json:"datasource"`
}

// DatasourceRef names a datasource, here always through a datasource
// variable: {"type": "prometheus", "uid": "${datasource}"}.
type DatasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// AllPanels is every panel of the dashboard, rows' panels included.
func (d *Dashboard) AllPanels() []Panel {
	var out []Panel
	for _, p := range d.Panels {
		out = append(out, p)
		out = append(out, p.Panels...)
	}
	return out
}

// LoadDashboards reads every dashboard in dir.
func LoadDashboards(dir string) ([]*Dashboard, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	var out []*Dashboard
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		d := &Dashboard{file: filepath.Base(f)}
		dec := json.NewDecoder(strings.NewReader(string(b)))
		if err := dec.Decode(d); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		out = append(out, d)
	}
	return out, nil
}

// Datasource is a provisioned datasource.
type Datasource struct {
	Name           string            `yaml:"name"`
	UID            string            `yaml:"uid"`
	Type           string            `yaml:"type"`
	Access         string            `yaml:"access"`
	URL            string            `yaml:"url"`
	IsDefault      bool              `yaml:"isDefault"`
	Editable       bool              `yaml:"editable"`
	JSONData       map[string]any    `yaml:"jsonData"`
	SecureJSONData map[string]string `yaml:"secureJsonData"`
}

// LoadDatasources reads a Grafana datasource provisioning file, with the
// environment variables Grafana would expand taken from env.
func LoadDatasources(path string, env map[string]string) ([]Datasource, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	expanded := os.Expand(string(b), func(k string) string { return env[k] })
	var f struct {
		APIVersion  int          `yaml:"apiVersion"`
		Datasources []Datasource `yaml:"datasources"`
	}
	dec := yaml.NewDecoder(strings.NewReader(expanded))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if f.APIVersion != 1 {
		return nil, fmt.Errorf("%s: apiVersion %d, want 1", path, f.APIVersion)
	}
	return f.Datasources, nil
}

// TimeInterval is the datasource's minimum interval (jsonData.timeInterval,
// Grafana's "scrape interval"); 15 s, Grafana's default, without one.
func (ds Datasource) TimeInterval() (time.Duration, error) {
	s, _ := ds.JSONData["timeInterval"].(string)
	if s == "" {
		return 15 * time.Second, nil
	}
	return time.ParseDuration(s)
}

// Headers are the custom HTTP headers Grafana sends with every request
// (jsonData.httpHeaderNameN, secureJsonData.httpHeaderValueN).
func (ds Datasource) Headers() http.Header {
	h := http.Header{}
	for k, v := range ds.JSONData {
		if n, ok := strings.CutPrefix(k, "httpHeaderName"); ok {
			name, _ := v.(string)
			h.Set(name, ds.SecureJSONData["httpHeaderValue"+n])
		}
	}
	return h
}

// Client queries one datasource as Grafana's Prometheus datasource does.
type Client struct {
	DS           Datasource
	Interval     time.Duration // the datasource's timeInterval
	RateInterval time.Duration // Grafana's $__rate_interval for it
}

// NewClient derives Grafana's intervals for a dashboard's time range: the
// step is the datasource's minimum interval (a range of an hour or six
// over about a thousand points asks for less), and $__rate_interval,
// max(step + interval, 4 × interval), is then four intervals.
func NewClient(ds Datasource) (*Client, error) {
	iv, err := ds.TimeInterval()
	if err != nil {
		return nil, fmt.Errorf("datasource %s: timeInterval: %w", ds.Name, err)
	}
	return &Client{DS: ds, Interval: iv, RateInterval: 4 * iv}, nil
}

func (c *Client) get(method, path string, form url.Values, out any) error {
	u := strings.TrimSuffix(c.DS.URL, "/") + path
	var req *http.Request
	var err error
	if method == http.MethodPost {
		req, err = http.NewRequest(method, u, strings.NewReader(form.Encode()))
		if err == nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
	} else {
		req, err = http.NewRequest(method, u+"?"+form.Encode(), nil)
	}
	if err != nil {
		return err
	}
	for k, v := range c.DS.Headers() {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return e2eutil.DecodeProm(resp, out)
}

// labelValuesQuery is a query variable's label_values(selector, label).
var labelValuesQuery = regexp.MustCompile(`^label_values\((?:(.*),\s*)?([a-zA-Z_][a-zA-Z0-9_]*)\)$`)

// LabelValues answers a label_values() variable query over [start, end]
// with the labels API, as Grafana does.
func (c *Client) LabelValues(query string, start, end time.Time) ([]string, error) {
	m := labelValuesQuery.FindStringSubmatch(strings.TrimSpace(query))
	if m == nil {
		return nil, fmt.Errorf("variable query %q: only label_values(selector, label) is understood here", query)
	}
	form := url.Values{"start": {unix(start)}, "end": {unix(end)}}
	if m[1] != "" {
		form.Set("match[]", m[1])
	}
	var values []string
	if err := c.get(http.MethodGet, "/api/v1/label/"+m[2]+"/values", form, &values); err != nil {
		return nil, fmt.Errorf("label_values %q: %w", query, err)
	}
	sort.Strings(values)
	return values, nil
}

// Query runs a panel's target: an instant query at end, or a range query
// over [start, end] at the datasource's step. It returns how many series
// hold at least one number (NaN is no data).
func (c *Client) Query(expr string, instant bool, start, end time.Time) (int, error) {
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if instant {
		if err := c.get(http.MethodPost, "/api/v1/query", url.Values{"query": {expr}, "time": {unix(end)}}, &data); err != nil {
			return 0, err
		}
	} else {
		form := url.Values{"query": {expr}, "start": {unix(start)}, "end": {unix(end)}, "step": {fmt.Sprint(c.Interval.Seconds())}}
		if err := c.get(http.MethodPost, "/api/v1/query_range", form, &data); err != nil {
			return 0, err
		}
	}
	var series []struct {
		Value  [2]any   `json:"value"`
		Values [][2]any `json:"values"`
	}
	switch data.ResultType {
	case "vector", "matrix":
		if err := json.Unmarshal(data.Result, &series); err != nil {
			return 0, err
		}
	default:
		return 0, fmt.Errorf("result type %q, want a vector or a matrix", data.ResultType)
	}
	n := 0
	for _, s := range series {
		points := s.Values
		if s.Value[1] != nil {
			points = append(points, s.Value)
		}
		if slices.ContainsFunc(points, func(p [2]any) bool { v, _ := p[1].(string); return v != "NaN" }) {
			n++
		}
	}
	return n, nil
}

func unix(t time.Time) string { return fmt.Sprintf("%.3f", float64(t.UnixMilli())/1000) }

// regexEscape escapes a value for a regex matcher, as Grafana does for a
// multi-value or "All" variable.
var regexSpecial = regexp.MustCompile(`[\\^$*+?.()|{}\[\]]`)

func regexEscape(s string) string { return regexSpecial.ReplaceAllString(s, `\\$0`) }

// Interpolate substitutes variables into expr as Grafana writes them:
// $name, ${name} and [[name]], longest names first.
func Interpolate(expr string, vars map[string]string) string {
	names := make([]string, 0, len(vars))
	for n := range vars {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return len(names[i]) > len(names[j]) })
	for _, n := range names {
		expr = strings.NewReplacer("${"+n+"}", vars[n], "[["+n+"]]", vars[n], "$"+n, vars[n]).Replace(expr)
	}
	return expr
}

// Builtins are Grafana's global variables for a range and a datasource.
func Builtins(c *Client, rng time.Duration) map[string]string {
	s := func(d time.Duration) string { return fmt.Sprintf("%ds", int(d.Seconds())) }
	return map[string]string{
		"__rate_interval": s(c.RateInterval),
		"__interval":      s(c.Interval),
		"__interval_ms":   fmt.Sprint(c.Interval.Milliseconds()),
		"__range":         s(rng),
		"__range_s":       fmt.Sprint(int(rng.Seconds())),
		"__range_ms":      fmt.Sprint(rng.Milliseconds()),
	}
}

// ParseRelative reads a dashboard's "now-1h" time.from as a duration.
func ParseRelative(from string) (time.Duration, error) {
	s, ok := strings.CutPrefix(from, "now-")
	if !ok {
		return 0, fmt.Errorf("time.from %q: want now-DURATION", from)
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		if _, err := fmt.Sscan(days, &n); err != nil {
			return 0, fmt.Errorf("time.from %q: %w", from, err)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}
