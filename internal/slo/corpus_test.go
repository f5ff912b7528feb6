package slo

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/import")

// checkRules writes the rules of slos and has promtool check them.
func checkRules(t *testing.T, slos []SLO) {
	t.Helper()
	rules, err := GenerateRules(slos, RulesOptions{Interval: time.Minute, DataDelay: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, rules, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(lookPromtool(t), "check", "rules", path).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s\n--- rules:\n%s", err, out, rules)
	}
}

// Every document of the corpus lints clean (no error, no warning) and
// its rules pass promtool check rules.
func TestCorpusLintsClean(t *testing.T) {
	files, err := filepath.Glob("testdata/corpus/*.yaml")
	if err != nil || len(files) < 5 {
		t.Fatalf("corpus: %v %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			res, err := Read(f)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Warnings) > 0 {
				t.Errorf("warnings:\n%s", strings.Join(res.Warnings, "\n"))
			}
			checkRules(t, res.SLOs)
		})
	}
}

// What the corpus documents say is what meshlens measures.
func TestCorpusReadsAsWritten(t *testing.T) {
	res, err := Read("testdata/corpus/timeslices.yaml", "testdata/corpus/ratio-timeslices.yaml", "testdata/corpus/calendar-week-newyork.yaml")
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]SLO{}
	for _, s := range res.SLOs {
		by[s.Name] = s
	}
	if s := by["api-uptime-slices"]; s.Budgeting != Timeslices || s.TimeSlice != 5*time.Minute || s.TimeSliceTarget != 0.95 || s.Target != 0.99 {
		t.Errorf("timeslices: %+v", s)
	}
	if s := by["ledger-writes"]; s.Budgeting != RatioTimeslices || s.TimeSlice != 5*time.Minute || s.TimeSliceTarget != 0 {
		t.Errorf("ratio timeslices: %+v", s)
	}
	// The week starts on Monday at midnight in New York: 05:00 UTC in
	// winter, 04:00 UTC in summer.
	s := by["orders-week"]
	for _, tc := range []struct{ at, start string }{
		{"2026-01-14T12:00:00Z", "2026-01-12T05:00:00Z"},
		{"2026-01-12T04:59:00Z", "2026-01-05T05:00:00Z"},
		{"2026-07-15T12:00:00Z", "2026-07-13T04:00:00Z"},
		{"2026-03-09T03:00:00Z", "2026-03-02T05:00:00Z"}, // Sunday night, clocks just moved forward
		{"2026-03-09T04:00:00Z", "2026-03-09T04:00:00Z"},
	} {
		at, _ := time.Parse(time.RFC3339, tc.at)
		if got := s.Period.PeriodStart(at).UTC().Format(time.RFC3339); got != tc.start {
			t.Errorf("week holding %s starts %s, want %s", tc.at, got, tc.start)
		}
	}
	// A slice SLO's tiers hold whole slices.
	for _, tr := range by["api-uptime-slices"].Tiers {
		if tr.Short%(5*time.Minute) != 0 || tr.Long%(5*time.Minute) != 0 {
			t.Errorf("tier %s: %v/%v", tr.Name, tr.Long, tr.Short)
		}
	}
}

// Sloth and Pyrra files import into documents that lint clean and keep
// the tools' alert names, routing labels and annotations; what does not
// map is listed. The documents and lists are golden files (-update
// rewrites them).
func TestImportGolden(t *testing.T) {
	for _, tc := range []struct {
		file, from string
		skipped    int
	}{
		{"sloth-payments.yaml", FromSloth, 1},
		{"sloth-k8s.yaml", FromSloth, 0},
		{"pyrra-api.yaml", FromPyrra, 0},
		{"pyrra-gauge.yaml", FromPyrra, 1},
	} {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join("testdata/import", tc.file)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			imp, err := Import(tc.from, File{Name: path, Data: data})
			if err != nil {
				t.Fatal(err)
			}
			if imp.Skipped != tc.skipped {
				t.Errorf("%d SLOs skipped, want %d", imp.Skipped, tc.skipped)
			}
			got := string(imp.Document) + "---- not mapped:\n" + strings.Join(imp.Unmapped, "\n") + "\n"
			golden := strings.TrimSuffix(path, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("import differs from %s (go test -run TestImportGolden -update rewrites it):\n%s", golden, got)
			}
			for _, u := range imp.Unmapped {
				if !strings.HasPrefix(u, path+":") {
					t.Errorf("not file:line: %s", u)
				}
			}
			res, err := ParseFiles(File{Name: "imported.yaml", Data: imp.Document})
			if err != nil || len(res.Warnings) > 0 {
				t.Fatalf("the imported document does not lint clean: %v\n%s", err, strings.Join(res.Warnings, "\n"))
			}
			checkRules(t, res.SLOs)
		})
	}
}

// Files that cannot be imported say where and why, in the user's words.
func TestImportErrors(t *testing.T) {
	for _, tc := range []struct {
		from, data string
		want       []string
	}{
		{FromSloth, "version: prometheus/v1\nservice: api\nslos:\n  - name: x\n    objective: 99\n    sli: {events: {error_query: a, total_query: b}}\n    alerting: {nmae: X}\n",
			[]string{"f.yaml:7: unknown field nmae (known here: annotations, labels, name, page_alert, ticket_alert)"}},
		{FromSloth, "version: prometheus/v2\nservice: api\nslos: []\n",
			[]string{`f.yaml:1: version: "prometheus/v2": want prometheus/v1`}},
		{FromSloth, "version: prometheus/v1\nservice: api\nslos: []\n", []string{"f.yaml:3: slos: no SLO to import"}},
		{FromSloth, "apiVersion: sloth.slok.dev/v1\nkind: PrometheusServiceLevel\nmetadata: {name: x}\nspec:\n  service: api\n  slos:\n    - {name: a, objective: 'ninety', sli: {events: {error_query: a, total_query: b}}}\n",
			[]string{"f.yaml:7: want a percentage like 99.9"}},
		{FromSloth, "apiVersion: pyrra.dev/v1alpha1\nkind: ServiceLevelObjective\nmetadata: {name: x}\nspec: {}\n",
			[]string{"f.yaml:1: apiVersion: a Pyrra ServiceLevelObjective: import it with --from pyrra"}},
		{FromPyrra, "version: prometheus/v1\nservice: api\nslos: []\n", []string{"f.yaml:1: a Sloth SLO spec: import it with --from sloth"}},
		{FromSloth, "version: prometheus/v1\nservice: api\nslos:\n  - name: x\n    objective: 100\n    sli: {events: {error_query: a, total_query: b}}\n",
			[]string{"f.yaml:5: slos[0].objective: SLO api-x not imported: 100: meshlens wants an objective strictly between 0 and 100", "no SLO could be imported"}},
		{FromSloth, "version: prometheus/v1\nservice: api\nslos:\n  - name: x\n    objective: 99\n    sli:\n      events:\n        error_query: sum(up)\n        total_query: sum(rate(x[{{.window}}]))\n",
			[]string{"f.yaml:8: slos[0].sli.events.error_query: SLO api-x not imported: \"sum(up)\": the selector up is read as a gauge"}},
		{FromPyrra, "apiVersion: pyrra.dev/v1alpha1\nkind: ServiceLevelObjective\nmetadata: {name: a}\nspec:\n  target: '0.99'\n  window: 4w\n  indicator: {ratio: {errors: {metric: x}, total: {metric: y}}}\n",
			[]string{"f.yaml:5: spec.target: 0.99: Pyrra reads the target in percent (0-100): did you mean 99?"}},
		{FromPyrra, "apiVersion: pyrra.dev/v1alpha1\nkind: ServiceLevelObjective\nmetadata: {name: a}\nspec:\n  target: '99'\n  window: 4w\n  indicator: {ratio: {errors: {metric: 'sum(rate(x[5m]))'}, total: {metric: y}}}\n",
			[]string{"f.yaml:7: spec.indicator.ratio.errors.metric: SLO a not imported: \"sum(rate(x[5m]))\": Pyrra reads a metric selector here"}},
		{FromPyrra, "apiVersion: pyrra.dev/v1alpha1\nkind: ServiceLevelObjective\nmetadata: {name: a}\nspec:\n  target: 99\n  window: 4w\n  indicator: {ratio: {errors: [x], total: {metric: y}}}\n",
			[]string{"f.yaml:7: want a mapping (metric) here, not a list"}},
		{"nobl9", "x: 1\n", []string{`format "nobl9": want sloth or pyrra`}},
		// Metadata's other keys are taken by an inlined map: not listed.
		{FromSloth, "apiVersion: sloth.slok.dev/v1\nkind: PrometheusServiceLevel\nmetadata: 0\n",
			[]string{`f.yaml:3: want a mapping (annotations, labels, name, namespace) here, not the number "0"`}},
		// At a 1% objective no tier of the Workbook can ever fire.
		{FromSloth, "version: prometheus/v1\nservice: api\nslos:\n  - name: x\n    objective: 1\n    sli: {events: {error_query: 'sum(rate(e[{{.window}}]))', total_query: 'sum(rate(t[{{.window}}]))'}}\n    alerting: {name: X}\n",
			[]string{"f.yaml:7: slos[0].alerting: not kept: Sloth's 14.4x page tier can never fire on a 1% objective", "f.yaml:7: slos[0].alerting: not kept: Sloth's 3x ticket tier can never fire on a 1% objective"}},
		{FromSloth, "version: prometheus/v1\nservice: api\nslos:\n  - name: x\n    objective: 99\n    sli: {events: {error_query: 'sum(rate(e[{{.window}}]))', total_query: 'sum(rate(t[{{.window}}]))'}}\n    alerting:\n      name: X\n      annotations: {runbook-url: 'https://rb'}\n      page_alert: {labels: {alertname: Y}}\n",
			[]string{`f.yaml:9: slos[0].alerting.annotations.runbook-url: not kept: "runbook-url" is not an annotation name Prometheus accepts`,
				`f.yaml:10: slos[0].alerting.page_alert.labels.alertname: not kept: an alert's name is its alerting name (Sloth's alerting.name, Pyrra's spec.alerting.name)`}},
		{FromPyrra, "apiVersion: pyrra.dev/v1alpha1\nkind: ServiceLevelObjective\nmetadata: {name: a}\nspec: {target: '99', window: 4w, indicator: {ratio: {errors: {metric: x}, total: {metric: y}}}}\n---\n" +
			"apiVersion: pyrra.dev/v1alpha1\nkind: ServiceLevelObjective\nmetadata: {name: a}\nspec: {target: '99', window: 4w, indicator: {ratio: {errors: {metric: x}, total: {metric: y}}}}\n",
			[]string{"f.yaml:6: SLO a not imported: the name is taken by the SLO at f.yaml:1; rename one"}},
	} {
		imp, err := Import(tc.from, File{Name: "f.yaml", Data: []byte(tc.data)})
		msg := strings.Join(imp.Unmapped, "\n")
		if err != nil {
			msg += "\n" + err.Error()
		}
		for _, w := range tc.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s import of\n%s\nsays\n%s\nwant %q", tc.from, tc.data, msg, w)
			}
		}
		if strings.Contains(msg, "slo.") || strings.Contains(msg, "!!") {
			t.Errorf("a Go type or a raw decoder message reaches the user:\n%s", msg)
		}
	}
}

// Imported SLOs alert under their tool's alert names and routing labels,
// per tier, in Prometheus and in meshlens's engine, at 1 req/s.
func TestImportedAlertsKeepTheirRoutes(t *testing.T) {
	promtool := lookPromtool(t)
	imported := func(from, file string) string {
		t.Helper()
		path := filepath.Join("testdata/import", file)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		imp, err := Import(from, File{Name: path, Data: data})
		if err != nil {
			t.Fatal(err)
		}
		return string(imp.Document)
	}
	sloth, pyrra := imported(FromSloth, "sloth-payments.yaml"), imported(FromPyrra, "pyrra-api.yaml")
	// The rules carry the tools' names, routing labels and annotations.
	for _, want := range []struct {
		doc, slo, tier, alert string
		labels, ann           map[string]string
	}{
		{sloth, "payments-charge-availability", "page-6h", "PaymentsChargeErrors",
			map[string]string{"severity": "pageteam", "routing_key": "payments-oncall", "sloth_severity": "page", "sloth_slo": "charge-availability", "category": "availability", "owner": "payments-team"},
			map[string]string{"runbook": "https://runbooks.example/payments/charges"}},
		{sloth, "payments-charge-availability", "ticket-3d", "PaymentsChargeErrors",
			map[string]string{"severity": "slack", "slack_channel": "#payments-alerts", "sloth_severity": "ticket"},
			map[string]string{"summary": "charge errors eat the monthly budget"}},
		{pyrra, "api-errors", "critical-30m", "APIErrorBudgetBurn",
			map[string]string{"severity": "critical", "long": "30m", "short": "3m", "exhaustion": "1d", "team": "platform", "job": "api"},
			map[string]string{"runbook_url": "https://runbooks.example/api-errors"}},
		{pyrra, "api-latency", "warning-4d", "ErrorBudgetBurn",
			map[string]string{"severity": "warning", "long": "4d", "short": "6h", "exhaustion": "4w", "team": "platform", "job": "api"}, nil},
	} {
		slos, err := Parse(File{Name: "imported.yaml", Data: []byte(want.doc)})
		if err != nil {
			t.Fatal(err)
		}
		f, err := Rules(slos, RulesOptions{})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, g := range f.Groups {
			for _, r := range g.Rules {
				if r.Alert == "" || r.Labels["slo"] != want.slo || r.Labels["tier"] != want.tier {
					continue
				}
				found = true
				if r.Alert != want.alert {
					t.Errorf("%s/%s: alert %s, want %s", want.slo, want.tier, r.Alert, want.alert)
				}
				for k, v := range want.labels {
					if r.Labels[k] != v {
						t.Errorf("%s/%s: label %s=%q, want %q", want.slo, want.tier, k, r.Labels[k], v)
					}
				}
				for k, v := range want.ann {
					if r.Annotations[k] != v {
						t.Errorf("%s/%s: annotation %s=%q, want %q", want.slo, want.tier, k, r.Annotations[k], v)
					}
				}
			}
		}
		if !found {
			t.Errorf("no alert rule for %s/%s", want.slo, want.tier)
		}
	}
	for _, tc := range []burnCase{
		{
			name: "sloth at 1 req/s, a tenth failing: page and ticket",
			slo:  sloth,
			series: map[string]counter{
				`payments_charges_total{code="500"}`: perMinute(6, 180),
				`payments_charges_total{code="200"}`: perMinute(54, 180),
			},
			firing: map[time.Duration][]string{65 * time.Minute: {"page-1h", "page-6h", "ticket-1d", "ticket-3d"}},
			engine: true,
		},
		{
			name: "sloth at 1 req/s, all good: quiet",
			slo:  sloth,
			series: map[string]counter{
				`payments_charges_total{code="500"}`: perMinute(0, 180),
				`payments_charges_total{code="200"}`: perMinute(60, 180),
			},
			firing: map[time.Duration][]string{65 * time.Minute: nil, 170 * time.Minute: nil},
			engine: true,
		},
		{
			// 0.2 % errors on 99.5 % is 0.4x: nothing; at 170m Pyrra's
			// for durations (up to 1h30m) have passed.
			name: "pyrra at 1 req/s under budget: quiet",
			slo:  pyrra,
			series: map[string]counter{
				`http_requests_total{job="api",code="500"}`: perMinute(0.12, 180),
				`http_requests_total{job="api",code="200"}`: perMinute(59.88, 180),
			},
			firing: map[time.Duration][]string{170 * time.Minute: nil},
			engine: true,
		},
		{
			name: "pyrra at 1 req/s, a tenth failing: critical and warning",
			slo:  pyrra,
			series: map[string]counter{
				`http_requests_total{job="api",code="500"}`: perMinute(6, 180),
				`http_requests_total{job="api",code="200"}`: perMinute(54, 180),
			},
			firing: map[time.Duration][]string{170 * time.Minute: {"critical-30m", "critical-3h", "warning-12h", "warning-2d"}},
			engine: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) { runBurnCase(t, promtool, tc) })
	}
}

// The corpus's short and calendar windows alert per tier at 1 req/s, in
// Prometheus and in meshlens's engine: each tier where the budget burns
// at its rate, none where it does not.
func TestCorpusFiresPerTier(t *testing.T) {
	promtool := lookPromtool(t)
	at1rps := func(metric, bad, good string, share float64) map[string]counter {
		return map[string]counter{
			metric + bad:  perMinute(60*share, 180),
			metric + good: perMinute(60*(1-share), 180),
		}
	}
	batch := func(share float64) map[string]counter {
		return map[string]counter{
			"batch_jobs_failed_total": perMinute(60*share, 180),
			"batch_jobs_total":        perMinute(60, 180),
		}
	}
	all := []string{"page-1h", "page-6h", "ticket-1d", "ticket-3d"}
	for _, tc := range []burnCase{
		// 1d, 99 %: the tiers shrink to 10m/5m ... 2h24m/12m, factors kept.
		{name: "1d at 20x: every tier", files: []string{"testdata/corpus/rolling-1d.yaml"}, series: batch(0.2),
			firing: map[time.Duration][]string{3 * time.Hour: all}, engine: true},
		{name: "1d at 2x: the 1x tier only", files: []string{"testdata/corpus/rolling-1d.yaml"}, series: batch(0.02),
			firing: map[time.Duration][]string{3 * time.Hour: {"ticket-3d"}}, engine: true},
		{name: "1d at 0.5x: quiet", files: []string{"testdata/corpus/rolling-1d.yaml"}, series: batch(0.005),
			firing: map[time.Duration][]string{3 * time.Hour: nil}, engine: true},
		// 7d, 99.5 %: 14.4x over 14m/5m, 6x over 1h24m/7m, 3x over
		// 5h36m/28m, 1x over 16h48m/1h24m.
		{name: "7d at 10x: all but the 14.4x page", files: []string{"testdata/corpus/rolling-7d.yaml"},
			series: at1rps("gateway_requests_total", `{code="503"}`, `{code="200"}`, 0.05),
			firing: map[time.Duration][]string{170 * time.Minute: {"page-6h", "ticket-1d", "ticket-3d"}}, engine: true},
		{name: "7d at 1.2x: the 1x tier only", files: []string{"testdata/corpus/rolling-7d.yaml"},
			series: at1rps("gateway_requests_total", `{code="503"}`, `{code="200"}`, 0.006),
			firing: map[time.Duration][]string{170 * time.Minute: {"ticket-3d"}}, engine: true},
		// A calendar week in New York alerts on the tiers of 7 days.
		{name: "calendar week at 10x", files: []string{"testdata/corpus/calendar-week-newyork.yaml"},
			series: at1rps("orders_placed_total", `{outcome="error"}`, `{outcome="ok"}`, 0.01),
			firing: map[time.Duration][]string{170 * time.Minute: {"page-6h", "ticket-1d", "ticket-3d"}}, engine: true},
		{name: "calendar week at 20x", files: []string{"testdata/corpus/calendar-week-newyork.yaml"},
			series: at1rps("orders_placed_total", `{outcome="error"}`, `{outcome="ok"}`, 0.02),
			firing: map[time.Duration][]string{170 * time.Minute: all}, engine: true},
		{name: "calendar week under budget", files: []string{"testdata/corpus/calendar-week-newyork.yaml"},
			series: at1rps("orders_placed_total", `{outcome="error"}`, `{outcome="ok"}`, 0.0005),
			firing: map[time.Duration][]string{170 * time.Minute: nil}, engine: true},
	} {
		t.Run(tc.name, func(t *testing.T) { runBurnCase(t, promtool, tc) })
	}
}

func FuzzImport(f *testing.F) {
	for _, p := range []string{"testdata/import/sloth-payments.yaml", "testdata/import/pyrra-api.yaml", "testdata/import/pyrra-gauge.yaml"} {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(strings.HasPrefix(filepath.Base(p), "sloth"), data)
	}
	f.Fuzz(func(t *testing.T, sloth bool, data []byte) {
		from := FromPyrra
		if sloth {
			from = FromSloth
		}
		imp, err := Import(from, File{Name: "fuzz.yaml", Data: data})
		if err != nil {
			if strings.Contains(err.Error(), "does not read back") {
				t.Fatalf("imported a document meshlens cannot read: %v\n%s", err, imp.Document)
			}
			return
		}
		if len(imp.SLOs) == 0 {
			t.Fatal("imported nothing without an error")
		}
	})
}
