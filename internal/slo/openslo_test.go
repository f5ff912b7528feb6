package slo

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// Default tiers fit every SLO window and never fire below 1x burn.
func TestTiersFitTheWindow(t *testing.T) {
	day := 24 * time.Hour
	for _, w := range []time.Duration{time.Hour, 6 * time.Hour, day, 3 * day, 7 * day, 14 * day, 28 * day, 30 * day, 90 * day} {
		tiers := TiersFor(w)
		if len(tiers) != 4 {
			t.Fatalf("%v: %d tiers", w, len(tiers))
		}
		for _, tr := range tiers {
			if tr.Factor < 1 {
				t.Errorf("window %v: tier %s fires at %vx, below 1x", w, tr.Name, tr.Factor)
			}
			if tr.Long > w {
				t.Errorf("window %v: tier %s's long window %v is longer", w, tr.Name, tr.Long)
			}
			if tr.Short < MinTierWindow || tr.Short >= tr.Long {
				t.Errorf("window %v: tier %s windows %v/%v", w, tr.Name, tr.Long, tr.Short)
			}
			// Each tier stands for the share of the budget it does on 30d
			// (2 %, 5 %, 10 %, 10 %), to within the rounding of short
			// windows to minutes and the floors.
			if w >= 7*day {
				base := DefaultTiers()
				var b Tier
				for _, x := range base {
					if x.Name == tr.Name {
						b = x
					}
				}
				share := tr.Factor * float64(tr.Long) / float64(w)
				want := b.Factor * float64(b.Long) / float64(BaseWindow)
				if share < want*0.95 || share > want*1.05 {
					t.Errorf("window %v: tier %s spends %.4f of the budget, want %.4f", w, tr.Name, share, want)
				}
			}
		}
	}
	if got := TiersFor(30 * 24 * time.Hour); got[0].Factor != 14.4 || got[0].Long != time.Hour {
		t.Errorf("30d: %+v", got[0])
	}
}

// Files as tools write them: multi-document files, a top-level list,
// Services, DataSources and alert objects beside the SLOs, an indicatorRef
// in another file.
func TestOpenSLOCorpus(t *testing.T) {
	res, err := Read("testdata/openslo/checkout.yaml", "testdata/openslo/search-list.yaml",
		"testdata/openslo/frontend-sli.yaml", "testdata/openslo/billing-calendar.yaml")
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]SLO{}
	for _, s := range res.SLOs {
		by[s.Name] = s
	}
	tests := []struct {
		name, service, source string
		window                time.Duration
		calendar              bool
		good, bad, total      string
	}{
		{"checkout-availability", "checkout", "testdata/openslo/checkout.yaml:41", 24 * time.Hour, false,
			`sum(increase(checkout_http_requests_total{code!~"5.."}[{{.window}}]))`, "", `sum(increase(checkout_http_requests_total[{{.window}}]))`},
		{"search-latency-weekly", "search", "testdata/openslo/search-list.yaml:22", 7 * 24 * time.Hour, true,
			`sum(increase(search_request_duration_seconds_bucket{le="0.25"}[{{.window}}]))`, "", `sum(increase(search_request_duration_seconds_count[{{.window}}]))`},
		{"frontend-availability", "frontend", "testdata/openslo/search-list.yaml:37", 7 * 24 * time.Hour, false,
			"", `sum(increase(frontend_requests_total{code=~"5.."}[{{.window}}]))`, `sum(increase(frontend_requests_total[{{.window}}]))`},
		{"billing-monthly", "billing", "testdata/openslo/billing-calendar.yaml:2", BaseWindow, true,
			"", `increase(billing_jobs_failed_total[{{.window}}])`, `increase(billing_jobs_total[{{.window}}])`},
	}
	if len(res.SLOs) != len(tests) {
		t.Fatalf("%d SLOs, want %d", len(res.SLOs), len(tests))
	}
	for _, tc := range tests {
		s, ok := by[tc.name]
		if !ok {
			t.Errorf("%s: missing", tc.name)
			continue
		}
		if s.Service != tc.service || s.Source != tc.source || s.Window != tc.window || s.Calendar != tc.calendar {
			t.Errorf("%s: service %q source %q window %v calendar %v", tc.name, s.Service, s.Source, s.Window, s.Calendar)
		}
		if s.SLI.Good != tc.good || s.SLI.Bad != tc.bad || s.SLI.Total != tc.total {
			t.Errorf("%s: good %q bad %q total %q", tc.name, s.SLI.Good, s.SLI.Bad, s.SLI.Total)
		}
	}
	labels := by["checkout-availability"].Labels
	if labels["app_kubernetes_io_part_of"] != "shop" || labels["cost_centre"] != "cc-1120,cc-2210" || labels["team"] != "payments" || len(labels) != 3 {
		t.Errorf("checkout labels: %v", labels)
	}
	// The AlertPolicy's burnrate condition is the tier: 14x over 1h, a
	// twelfth of it as the short window, alertAfter as for.
	want := Tier{Name: "checkout-fast-burn", Factor: 14, Long: time.Hour, Short: 5 * time.Minute, Severity: "page", For: 5 * time.Minute}
	if got := by["checkout-availability"].Tiers; len(got) != 1 || !reflect.DeepEqual(got[0], want) {
		t.Errorf("checkout tiers %+v, want [%+v]", got, want)
	}
	warns := strings.Join(res.Warnings, "\n")
	for _, w := range []string{
		`checkout.yaml:47: metadata.labels.app.kubernetes.io/part-of: "app.kubernetes.io/part-of" is not a Prometheus label name: alerts and rules carry it as app_kubernetes_io_part_of`,
		`checkout.yaml:48: metadata.labels.cost-centre:`,
		`checkout.yaml:62: spec.alertPolicies[0]: notification targets ignored`,
		`checkout.yaml:90: AlertNotificationTarget "payments-pager" ignored`,
	} {
		if !strings.Contains(warns, w) {
			t.Errorf("warnings\n%s\nlack\n%s", warns, w)
		}
	}
	if len(res.Warnings) != 4 {
		t.Errorf("%d warnings, want 4:\n%s", len(res.Warnings), warns)
	}
}

// Every rejection names file:line and field, says what to write instead,
// and never shows a Go type or a raw decoder message.
func TestOpenSLOErrors(t *testing.T) {
	const sli = "apiVersion: openslo/v1\nkind: SLI\nmetadata: {name: s}\nspec:\n  ratioMetric:\n"
	const slo = "apiVersion: openslo/v1\nkind: SLO\nmetadata: {name: x}\nspec:\n  indicatorRef: s\n"
	ratio := func(good, total string) string {
		return sli + "    good: {metricSource: {type: Prometheus, spec: {query: '" + good + "'}}}\n" +
			"    total: {metricSource: {type: Prometheus, spec: {query: '" + total + "'}}}\n"
	}
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"list of scalars", "- a\n- b\n", []string{"f.yaml:1: [0]: each item of a top-level list is an object (a mapping: apiVersion, kind, ...), not a scalar"}},
		{"list where a mapping goes", "name: a\ntarget: 99%\nwindow: 30d\nsli: [a]\n", []string{"f.yaml:4: want a mapping (probe_availability, probe_latency, ratio) here, not a list"}},
		{"unknown objective field", slo + "  timeWindow: [{duration: 7d, isRolling: true}]\n  objectives: [{target: 0.99, colour: red}]\n", []string{"f.yaml:7: unknown field colour (known here: compositeWeight, displayName, indicator, indicatorRef, op, target, targetPercent, timeSliceTarget, timeSliceWindow, value)"}},
		{"timeslices objective", slo + "  timeWindow: [{duration: 7d, isRolling: true}]\n  objectives: [{target: 0.99, timeSliceTarget: 0.95, timeSliceWindow: 1m}]\n", []string{"f.yaml:7: spec.objectives[0]: timeSliceTarget and timeSliceWindow belong to time-slice budgets: set spec.budgetingMethod: Timeslices (or RatioTimeslices), or remove them to count events"}},
		{"slice too short", slo + "  budgetingMethod: Timeslices\n  timeWindow: [{duration: 7d, isRolling: true}]\n  objectives: [{target: 0.99, timeSliceTarget: 0.95, timeSliceWindow: 30s}]\n", []string{"f.yaml:8: spec.objectives[0].timeSliceWindow: 30s: a slice is at least 1m (increase() needs two samples in one; with a 1m scrape interval, use 5m)"}},
		{"slice too long", slo + "  budgetingMethod: Timeslices\n  timeWindow: [{duration: 1d, isRolling: true}]\n  objectives: [{target: 0.99, timeSliceTarget: 0.95, timeSliceWindow: 4h}]\n", []string{"f.yaml:8: spec.objectives[0].timeSliceWindow: 4h: the SLO window (1d) must hold at least 12 slices, so that tiers can burn on their share; use at most 2h"}},
		{"slice target out of range", slo + "  budgetingMethod: Timeslices\n  timeWindow: [{duration: 7d, isRolling: true}]\n  objectives: [{target: 0.99, timeSliceTarget: 95, timeSliceWindow: 5m}]\n", []string{"f.yaml:8: spec.objectives[0].timeSliceTarget: 95: want a ratio above 0 and at most 1 (0.95 for 95 %)"}},
		{"tier shorter than a slice", slo + "  budgetingMethod: Timeslices\n  timeWindow: [{duration: 7d, isRolling: true}]\n  objectives: [{target: 0.99, timeSliceTarget: 0.95, timeSliceWindow: 10m}]\n  x-meshlens-alerting:\n    tiers: [{name: fast, burn_rate: 10, long: 1h, short: 5m, severity: page}]\n", []string{"f.yaml:10: spec.x-meshlens-alerting.tiers[0].short: 5m: shorter than a time slice (10m); a tier's windows hold whole slices"}},
		{"tier alert name and labels", "name: a\ntarget: 99%\nwindow: 30d\nsli: {probe_availability: {}}\nalerting:\n  tiers:\n    - {name: f, burn_rate: 2, long: 1h, short: 5m, severity: page, alert: 1bad, labels: {severity: x}, annotations: {a-b: c}}\n",
			[]string{`f.yaml:7: alerting.tiers[0].alert: "1bad": an alert name is letters, digits, '_' and ':', not starting with a digit`, `alerting.tiers[0].labels.severity: "severity" is set by meshlens on every alert`, `alerting.tiers[0].annotations.a-b: "a-b" is not a Prometheus annotation name; call it a_b`}},
		{"rolling month", slo + "  timeWindow: [{duration: 1M, isRolling: true}]\n  objectives: [{target: 0.99}]\n", []string{"f.yaml:6: spec.timeWindow[0].duration: \"1M\": a rolling window is written in days or weeks"}},
		{"bad time zone", slo + "  timeWindow: [{duration: 1w, calendar: {startTime: '2024-01-01 00:00:00', timeZone: Mars/Olympus}}]\n  objectives: [{target: 0.99}]\n", []string{"spec.timeWindow[0].calendar: timeZone \"Mars/Olympus\": want an IANA time zone"}},
		{"bad start", slo + "  timeWindow: [{duration: 1M, calendar: {startTime: 'next tuesday'}}]\n  objectives: [{target: 0.99}]\n", []string{"startTime \"next tuesday\": want a date and time like 2024-01-15 00:00:00"}},
		{"calendar year", slo + "  timeWindow: [{duration: 1Y, calendar: {startTime: '2024-01-01'}}]\n  objectives: [{target: 0.99}]\n", []string{"\"1Y\": a calendar window is counted in days (d), weeks (w), months (M) or quarters (Q)"}},
		{"reserved label", "apiVersion: openslo/v1\nkind: SLO\nmetadata:\n  name: x\n  labels: {severity: high}\nspec: {indicatorRef: s, timeWindow: [{duration: 7d, isRolling: true}], objectives: [{target: 0.99}]}\n", []string{"f.yaml:5: metadata.labels.severity: \"severity\" is set by meshlens on every alert; call it priority"}},
		{"colliding labels", "apiVersion: openslo/v1\nkind: SLO\nmetadata:\n  name: x\n  labels: {cost-centre: a, cost.centre: b}\nspec: {indicatorRef: s, timeWindow: [{duration: 7d, isRolling: true}], objectives: [{target: 0.99}]}\n", []string{"\"cost-centre\" and \"cost.centre\" are both the Prometheus label cost_centre"}},
		{"gauge", ratio("up", "up"), []string{"f.yaml:6: spec.ratioMetric.good.metricSource.spec.query: \"up\": the selector up is read as a gauge"}},
		{"avg", ratio("avg(rate(x[5m]))", "sum(rate(y[5m]))"), []string{"\"avg(rate(x[5m]))\": avg does not add events up (only sum does)"}},
		{"irate over the window", ratio("sum(irate(x[{{.window}}]))", "sum(rate(y[{{.window}}]))"), []string{"irate over the window is the last two samples only"}},
		{"multiplied", ratio("sum(rate(x[5m])) * 60", "sum(rate(y[5m]))"), []string{"\"*\" between queries is not a count of events"}},
		{"unknown data source", sli + "    good: {metricSource: {metricSourceRef: prom, spec: {query: 'sum(rate(x[5m]))'}}}\n    total: {metricSource: {metricSourceRef: prom, spec: {query: 'sum(rate(y[5m]))'}}}\n",
			[]string{"f.yaml:6: spec.ratioMetric.good.metricSource.metricSourceRef: \"prom\": no DataSource of that name in the files given"}},
		{"datadog source", "apiVersion: openslo/v1\nkind: DataSource\nmetadata: {name: dd}\nspec: {type: Datadog}\n---\n" + sli + "    good: {metricSource: {metricSourceRef: dd, spec: {query: 'x'}}}\n    total: {metricSource: {metricSourceRef: dd, spec: {query: 'y'}}}\n",
			[]string{"f.yaml:11: spec.ratioMetric.good.metricSource.type: \"Datadog\" (the type of DataSource \"dd\"): only Prometheus queries"}},
		{"tier longer than window", "name: a\ntarget: 99%\nwindow: 1d\nsli: {probe_availability: {}}\nalerting:\n  tiers:\n    - {name: slow, burn_rate: 1, long: 3d, short: 6h, severity: ticket}\n", []string{"f.yaml:7: alerting.tiers[0].long: 3d: longer than the SLO window (1d)"}},
		{"tier below 1x", "name: a\ntarget: 99%\nwindow: 30d\nsli: {probe_availability: {}}\nalerting:\n  tiers:\n    - {name: slow, burn_rate: 0.5, long: 3d, short: 6h, severity: ticket}\n", []string{"alerting.tiers[0].burn_rate: 0.5: below 1 the tier fires while the budget would outlast the window"}},
		{"dotted native label", "name: a\ntarget: 99%\nwindow: 30d\nsli: {probe_availability: {}}\nlabels: {app.kubernetes.io/name: web}\n", []string{"f.yaml:5: labels.app.kubernetes.io/name: \"app.kubernetes.io/name\" is not a Prometheus label name; call it app_kubernetes_io_name"}},
		{"sloth", "version: prometheus/v1\nservice: myservice\nslos:\n  - name: requests-availability\n    objective: 99.9\n", []string{"f.yaml:1: version: a Sloth service spec, not a meshlens or OpenSLO SLO: convert it with meshlens slo import --from sloth f.yaml"}},
		{"sloth kubernetes", "apiVersion: sloth.slok.dev/v1\nkind: PrometheusServiceLevel\nmetadata: {name: x}\n", []string{"f.yaml:1: apiVersion: a Sloth PrometheusServiceLevel, not a meshlens or OpenSLO SLO: convert it with meshlens slo import --from sloth f.yaml"}},
		{"pyrra", "apiVersion: pyrra.dev/v1alpha1\nkind: ServiceLevelObjective\nmetadata: {name: x}\n", []string{"f.yaml:1: apiVersion: a Pyrra ServiceLevelObjective, not a meshlens or OpenSLO SLO: convert it with meshlens slo import --from pyrra f.yaml"}},
		{"unknown alert policy", slo + "  timeWindow: [{duration: 7d, isRolling: true}]\n  objectives: [{target: 0.99}]\n  alertPolicies: [{alertPolicyRef: nope}]\n", []string{"f.yaml:8: spec.alertPolicies[0].alertPolicyRef: \"nope\": no AlertPolicy of that name"}},
		{"threshold condition", slo + "  timeWindow: [{duration: 7d, isRolling: true}]\n  objectives: [{target: 0.99}]\n  alertPolicies:\n    - kind: AlertPolicy\n      metadata: {name: p}\n      spec:\n        conditions:\n          - kind: AlertCondition\n            metadata: {name: c}\n            spec: {condition: {kind: threshold, threshold: 3}}\n",
			[]string{"f.yaml:13: spec.alertPolicies[0].spec.conditions[0]: AlertCondition \"c\": condition kind \"threshold\": only burnrate conditions map onto meshlens's tiers"}},
		{"unused alert policy", "apiVersion: openslo/v1\nkind: AlertPolicy\nmetadata: {name: p}\nspec: {}\n", []string{"slo: no SLO in f.yaml"}},
		{"unknown kind", "apiVersion: openslo/v1\nkind: Dashboard\n", []string{"f.yaml:2: kind: \"Dashboard\": want one of SLO, SLI, Service, DataSource"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(File{Name: "f.yaml", Data: []byte(tc.in)})
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error\n%s\nlacks\n%s", msg, w)
				}
			}
			for _, leak := range []string{"slo.", "!!", "unmarshal", "[]string", "*float64"} {
				if strings.Contains(msg, leak) {
					t.Errorf("error shows %q:\n%s", leak, msg)
				}
			}
		})
	}
}

// The query shapes people write, as the events they count.
func TestEventsExpr(t *testing.T) {
	tests := []struct {
		in      string
		counter bool
		want    string
	}{
		{`http_requests_total`, true, `increase(http_requests_total[{{.window}}])`},
		{`sum(http_requests_total{code!~"5.."})`, true, `sum(increase(http_requests_total{code!~"5.."}[{{.window}}]))`},
		{`sum by (route) (x_total)`, true, `sum by (route) (increase(x_total[{{.window}}]))`},
		{`sum(rate(x_total[5m]))`, false, `sum(increase(x_total[{{.window}}]))`},
		{`sum(rate(x_total[{{.window}}]))`, false, `sum(increase(x_total[{{.window}}]))`},
		{`sum(rate(x_bucket{le="0.25"}[2m])) + sum(rate(y_total[2m]))`, false, `sum(increase(x_bucket{le="0.25"}[{{.window}}])) + sum(increase(y_total[{{.window}}]))`},
		{`sum(increase(x_total[{{.window}}])) / 2`, false, `sum(increase(x_total[{{.window}}])) / 2`},
	}
	for _, tc := range tests {
		got, err := eventsExpr(tc.in, tc.counter)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.in, got, tc.want)
		}
	}
}
