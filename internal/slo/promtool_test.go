package slo

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"

	"github.com/meshlens/meshlens/internal/store"
)

// These tests run the generated rules in Prometheus's own rule engine
// (promtool test rules) over synthetic counters, and say, per evaluation
// time, which tiers must fire: each one fails on a way an SLO was accepted
// and then alerted wrongly (issue 16).

// burnCase is one SLO fed one traffic pattern.
type burnCase struct {
	name string
	// slo is an SLO file's text, or files are paths under testdata.
	slo   string
	files []string
	// series maps a series to the counter it is.
	series map[string]counter
	// step between samples and evaluations; 0 is a minute.
	step time.Duration
	// evalEvery, when set, is the rules' evaluation interval instead of
	// step (a month of time slices is costly to judge every minute of a
	// day-long test).
	evalEvery time.Duration
	// firing maps an evaluation time to the tiers of the first SLO
	// firing then; every other alert must stay quiet.
	firing map[time.Duration][]string
	// engine: meshlens's engine, fed the same series, must fire the same
	// tiers at the same times.
	engine bool
}

// inputSeries is one series of a promtool test.
type inputSeries struct {
	Series string `yaml:"series"`
	Values string `yaml:"values"`
}

// counter rises by perMinute a minute for the given minutes, or by
// inMinute(m) in minute m (from m-1 to m), m from 1.
type counter struct {
	perMinute float64
	minutes   int
	inMinute  func(m int) float64
}

func perMinute(n float64, minutes int) counter { return counter{perMinute: n, minutes: minutes} }

func byMinute(minutes int, f func(m int) float64) counter {
	return counter{minutes: minutes, inMinute: f}
}

// values are the counter's samples in promtool's notation, every step.
func (c counter) values(step time.Duration) string {
	m := step.Minutes()
	if c.inMinute == nil {
		return fmt.Sprintf("0+%gx%d", c.perMinute*m, int(float64(c.minutes)/m))
	}
	var b strings.Builder
	v := 0.0
	for i := 0; i <= c.minutes; i++ {
		if i > 0 {
			v += c.inMinute(i)
		}
		if i%int(m) == 0 {
			fmt.Fprintf(&b, "%g ", v)
		}
	}
	return strings.TrimSpace(b.String())
}

func TestRulesFireWhereTheBudgetBurns(t *testing.T) {
	promtool := lookPromtool(t)
	const (
		errs  = `http_requests_total{code="500"}`
		oks   = `http_requests_total{code="200"}`
		ratio = `
sli:
  ratio:
    bad: sum(rate(http_requests_total{code=~"5.."}[{{.window}}]))
    total: sum(rate(http_requests_total[{{.window}}]))
`
	)
	day := 24 * 60
	tests := []burnCase{
		{
			// rate() over the window gave requests per second: below
			// 100 req/s the minimum of 100 events was never reached.
			name:   "rate over the window at 10 req/s, half failing",
			slo:    "name: web\ntarget: 99.9%\nwindow: 30d\n" + ratio,
			series: map[string]counter{errs: perMinute(300, 180), oks: perMinute(300, 180)},
			firing: map[time.Duration][]string{
				65 * time.Minute: {"page-1h", "page-6h", "ticket-1d", "ticket-3d"},
			},
		},
		{
			name:   "rate over the window at 1 req/s, a tenth failing",
			slo:    "name: web\ntarget: 99.9%\nwindow: 30d\n" + ratio,
			series: map[string]counter{errs: perMinute(6, 180), oks: perMinute(54, 180)},
			firing: map[time.Duration][]string{
				// 1h holds 3,600 events: well over the minimum.
				65 * time.Minute: {"page-1h", "page-6h", "ticket-1d", "ticket-3d"},
			},
		},
		{
			name:   "1 req/s, all good",
			slo:    "name: web\ntarget: 99.9%\nwindow: 30d\n" + ratio,
			series: map[string]counter{errs: perMinute(0, 180), oks: perMinute(60, 180)},
			firing: map[time.Duration][]string{65 * time.Minute: nil, 170 * time.Minute: nil},
		},
		{
			// The 1d SLO's factors were scaled to 0.48x ... 0.033x: it
			// paged at 0.6x, with the budget lasting the whole day.
			name:   "1d window burning at 0.6x",
			slo:    "name: web\ntarget: 99%\nwindow: 1d\n" + ratio,
			series: map[string]counter{errs: perMinute(6, 3*day), oks: perMinute(994, 3*day)},
			step:   5 * time.Minute,
			firing: map[time.Duration][]string{
				3 * time.Hour: nil, 30 * time.Hour: nil, 71 * time.Hour: nil,
			},
		},
		{
			name:   "1d window burning at 20x",
			slo:    "name: web\ntarget: 99%\nwindow: 1d\n" + ratio,
			series: map[string]counter{errs: perMinute(200, 4*60), oks: perMinute(800, 4*60)},
			firing: map[time.Duration][]string{
				3 * time.Hour: {"page-1h", "page-6h", "ticket-1d", "ticket-3d"},
			},
		},
		{
			// On 7d the 3-day tier fired at 0.23x and was longer than
			// 2 days of a 2-week window; now it is 16h48m at 1x.
			name:   "7d window burning at 0.9x",
			slo:    "name: web\ntarget: 99%\nwindow: 7d\n" + ratio,
			series: map[string]counter{errs: perMinute(9, 2*day), oks: perMinute(991, 2*day)},
			step:   5 * time.Minute,
			firing: map[time.Duration][]string{20 * time.Hour: nil, 47 * time.Hour: nil},
		},
		{
			name:   "7d window burning at 1.5x: the ticket tier only",
			slo:    "name: web\ntarget: 99%\nwindow: 7d\n" + ratio,
			series: map[string]counter{errs: perMinute(15, 2*day), oks: perMinute(985, 2*day)},
			step:   5 * time.Minute,
			firing: map[time.Duration][]string{20 * time.Hour: {"ticket-3d"}, 47 * time.Hour: {"ticket-3d"}},
		},
		{
			// Dotted and dashed label keys broke the generated rules; the
			// service was dropped. The 1d SLO burns at 20x.
			name:  "OpenSLO labels and service on the alerts",
			files: []string{"testdata/openslo/checkout.yaml"},
			series: map[string]counter{
				`checkout_http_requests_total{code="503"}`: perMinute(200, 4*60),
				`checkout_http_requests_total{code="200"}`: perMinute(800, 4*60),
			},
			// Its AlertPolicy's condition is its one tier: 14x over 1h.
			firing: map[time.Duration][]string{3 * time.Hour: {"checkout-fast-burn"}},
		},
		{
			// A weekly calendar window alerts on 7d tiers; histogram
			// buckets over a 5m rate are counted over each window.
			name:  "calendar week over a latency histogram",
			files: []string{"testdata/openslo/search-list.yaml", "testdata/openslo/frontend-sli.yaml"},
			series: map[string]counter{
				`search_request_duration_seconds_bucket{le="0.25"}`: perMinute(900, 4*60),
				`search_request_duration_seconds_count`:             perMinute(1000, 4*60),
				`frontend_requests_total{code="200"}`:               perMinute(1000, 4*60),
			},
			firing: map[time.Duration][]string{3 * time.Hour: {"page-1h", "page-6h", "ticket-1d", "ticket-3d"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { runBurnCase(t, promtool, tc) })
	}
}

func lookPromtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (CI installs the Debian prometheus package): %v", err)
	}
	return p
}

func runBurnCase(t *testing.T, promtool string, tc burnCase) {
	var (
		slos []SLO
		err  error
	)
	if tc.slo != "" {
		slos, err = Parse(File{Name: "slo.yaml", Data: []byte(tc.slo)})
	} else {
		slos, err = Load(tc.files...)
	}
	if err != nil {
		t.Fatal(err)
	}
	rules, err := GenerateRules(slos, RulesOptions{Interval: max(tc.step, tc.evalEvery, time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	var rf RuleFile
	if err := yaml.Unmarshal(rules, &rf); err != nil {
		t.Fatal(err)
	}
	alerts := map[string]Rule{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				alerts[r.Labels["slo"]+"/"+r.Labels["tier"]] = r
			}
		}
	}
	type expAlert struct {
		Labels      map[string]string `yaml:"exp_labels"`
		Annotations map[string]string `yaml:"exp_annotations"`
	}
	type alertTest struct {
		EvalTime  string     `yaml:"eval_time"`
		AlertName string     `yaml:"alertname"`
		ExpAlerts []expAlert `yaml:"exp_alerts"`
	}
	type series = inputSeries
	step := tc.step
	if step == 0 {
		step = time.Minute
	}
	var in []series
	for s, c := range tc.series {
		in = append(in, series{s, c.values(step)})
	}
	sort.Slice(in, func(i, j int) bool { return in[i].Series < in[j].Series })
	// One check per evaluation time and alert name (an imported SLO's
	// tiers may have names of their own).
	names := map[string]bool{}
	for _, r := range alerts {
		names[r.Alert] = true
	}
	var checks []alertTest
	for at, tiers := range tc.firing {
		exp := map[string][]expAlert{}
		for _, tier := range tiers {
			r, ok := alerts[slos[0].Name+"/"+tier]
			if !ok {
				t.Fatalf("SLO %s has no tier %s", slos[0].Name, tier)
			}
			exp[r.Alert] = append(exp[r.Alert], expAlert{r.Labels, r.Annotations})
		}
		for name := range names {
			checks = append(checks, alertTest{EvalTime: promDuration(at), AlertName: name, ExpAlerts: append([]expAlert{}, exp[name]...)})
		}
	}
	test := map[string]any{
		"rule_files":          []string{"rules.yaml"},
		"evaluation_interval": promDuration(max(step, tc.evalEvery)),
		"tests": []any{map[string]any{
			"interval":        promDuration(step),
			"input_series":    in,
			"alert_rule_test": checks,
		}},
	}
	tb, err := yaml.Marshal(test)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), rules, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "test.yaml"), tb, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "check", "rules", filepath.Join(dir, "rules.yaml")).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s\n--- rules:\n%s", err, out, rules)
	}
	cmd := exec.Command(promtool, "test", "rules", "test.yaml")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool test rules: %v\n%s", err, out)
	}
	if len(alerts) == 0 {
		t.Fatal("no alert rule generated")
	}
	if tc.engine {
		checkEngineAgrees(t, slos, in, step, tc.firing)
	}
}

// checkEngineAgrees feeds the input series of a burn case to a store and
// has meshlens's engine evaluate the SLOs at each evaluation time: the
// tiers firing must be those promtool saw fire.
func checkEngineAgrees(t *testing.T, slos []SLO, in []inputSeries, step time.Duration, firing map[time.Duration][]string) {
	t.Helper()
	e, err := NewEngine(Config{SLOs: slos, Querier: feedSeries(t, in, step)})
	if err != nil {
		t.Fatal(err)
	}
	for at, want := range firing {
		sts, err := e.EvaluateAt(context.Background(), time.UnixMilli(at.Milliseconds()))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for i, s := range sts {
			for _, tier := range s.Tiers {
				if tier.Firing {
					got = append(got, fmt.Sprintf("%d/%s", i, tier.Name))
				}
			}
		}
		var exp []string
		for _, tier := range want {
			exp = append(exp, "0/"+tier)
		}
		sort.Strings(got)
		sort.Strings(exp)
		if strings.Join(got, " ") != strings.Join(exp, " ") {
			t.Errorf("at %s meshlens's engine fires %v, want %v (as promtool checks of the rules)", promDuration(at), got, exp)
		}
	}
}

// feedSeries writes promtool's input series to a store, sample i at
// i*step from the epoch, as promtool does.
func feedSeries(t *testing.T, in []inputSeries, step time.Duration) *store.Store {
	t.Helper()
	st := openStore(t)
	app := st.Appender(context.Background())
	for _, s := range in {
		lbls, vals, err := parser.NewParser(parser.Options{}).ParseSeriesDesc(s.Series + " " + s.Values)
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range vals {
			if _, err := app.Append(0, lbls, int64(i)*step.Milliseconds(), v.Value); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	return st
}
