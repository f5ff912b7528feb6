package slo

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql/parser"
)

func TestLoadTestdata(t *testing.T) {
	slos, err := Load("testdata/fabric.yaml", "testdata/openslo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]SLO{}
	for _, s := range slos {
		byName[s.Name] = s
	}
	tests := []struct {
		name     string
		target   float64
		window   time.Duration
		calendar bool
		kind     SLIKind
		tiers    []string
		factor0  float64
		source   string
	}{
		{"dc1-availability", 0.9995, 30 * 24 * time.Hour, false, ProbeAvailability, []string{"page-1h", "page-6h", "ticket-1d", "ticket-3d"}, 14.4, "testdata/fabric.yaml:3"},
		{"rack-latency", 0.99, 7 * 24 * time.Hour, false, ProbeLatency, []string{"page-1h", "page-6h", "ticket-1d"}, 14.4, "testdata/fabric.yaml:13"},
		{"checkout-errors", 0.999, BaseWindow, true, Ratio, []string{"fast"}, 10, "testdata/fabric.yaml:21"},
		{"api-availability", 0.999, 28 * 24 * time.Hour, false, Ratio, []string{"page-1h", "page-6h", "ticket-1d", "ticket-3d"}, 14.4, "testdata/openslo.yaml:19"},
	}
	if len(slos) != len(tests) {
		t.Fatalf("got %d SLOs, want %d", len(slos), len(tests))
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, ok := byName[tc.name]
			if !ok {
				t.Fatalf("missing")
			}
			if math.Abs(s.Target-tc.target) > 1e-12 || s.Window != tc.window || s.Calendar != tc.calendar || s.SLI.Kind != tc.kind {
				t.Errorf("got target %v window %v calendar %v kind %v", s.Target, s.Window, s.Calendar, s.SLI.Kind)
			}
			var names []string
			for _, tr := range s.Tiers {
				names = append(names, tr.Name)
			}
			if strings.Join(names, ",") != strings.Join(tc.tiers, ",") {
				t.Errorf("tiers %v, want %v", names, tc.tiers)
			}
			if math.Abs(s.Tiers[0].Factor-tc.factor0) > 1e-9 {
				t.Errorf("first factor %v, want %v", s.Tiers[0].Factor, tc.factor0)
			}
			if s.Source != tc.source {
				t.Errorf("source %q, want %q", s.Source, tc.source)
			}
		})
	}
	if sev := byName["dc1-availability"].Tiers[3].Severity; sev != "info" {
		t.Errorf("severity override: %q", sev)
	}
	if byName["dc1-availability"].MinEvents != 1000 || byName["rack-latency"].MinEvents != DefaultMinEvents {
		t.Errorf("min events: %v, %v", byName["dc1-availability"].MinEvents, byName["rack-latency"].MinEvents)
	}
	if f := byName["checkout-errors"].Tiers[0].For; f != 2*time.Minute {
		t.Errorf("for = %v", f)
	}
	if got, want := byName["api-availability"].SLI.Good, `increase(api_requests_total{code!~"5.."}[{{.window}}])`; got != want {
		t.Errorf("openslo good = %q, want %q", got, want)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string // substrings, each must appear
	}{
		{"unknown field", "name: a\ntarget: 99%\nwindow: 30d\nsli: {probe_availability: {dc: dc1}}\ncolour: red\n",
			[]string{"f.yaml:5: unknown field colour (known here: alerting, apiVersion, description, kind, labels, name, sli, slos, target, window)"}},
		{"bad target", "name: a\ntarget: 100%\nwindow: 30d\nsli: {probe_availability: {}}\n",
			[]string{"f.yaml:2: target: \"100%\": must be strictly between"}},
		{"ratio above one", "name: a\ntarget: 99.9\nwindow: 30d\nsli: {probe_availability: {}}\n",
			[]string{"f.yaml:2: target: \"99.9\": a ratio must be below 1 (write 99.9% for a percentage)"}},
		{"bad window", "name: a\ntarget: 99%\nwindow: 30x\nsli: {probe_availability: {}}\n",
			[]string{"f.yaml:3: window: \"30x\": want a duration"}},
		{"two locations", "name: a\ntarget: 99%\nwindow: 30d\nsli:\n  probe_availability: {dc: dc1, rack: r1}\n",
			[]string{"f.yaml:5: sli.probe_availability: at most one of dc, pod, rack, host"}},
		{"bad proto", "name: a\ntarget: 99%\nwindow: 30d\nsli:\n  probe_availability:\n    proto: sctp\n",
			[]string{"f.yaml:6: sli.probe_availability.proto: \"sctp\": want one of tcp, udp, http, icmp"}},
		{"service target over tcp", "name: a\ntarget: 99%\nwindow: 30d\nsli:\n  probe_availability:\n    target: web\n    proto: tcp\n",
			[]string{"f.yaml:7: sli.probe_availability.proto: \"tcp\": service targets are not probed with it"}},
		{"no sli", "name: a\ntarget: 99%\nwindow: 30d\n",
			[]string{"f.yaml:1: sli: want exactly one of probe_availability, probe_latency, ratio"}},
		{"latency off bucket", "name: a\ntarget: 99%\nwindow: 30d\nsli:\n  probe_latency:\n    threshold: 3ms\n",
			[]string{"f.yaml:6: sli.probe_latency.threshold: 3ms: must be one of the aggregator's latency buckets"}},
		{"ratio without window", "name: a\ntarget: 99%\nwindow: 30d\nsli:\n  ratio:\n    good: sum(x)\n    total: sum(increase(y[{{.window}}]))\n",
			[]string{"f.yaml:6: sli.ratio.good: \"sum(x)\": the selector x is read as a gauge", "want increase(x_total[{{.window}}])"}},
		{"ratio both", "name: a\ntarget: 99%\nwindow: 30d\nsli:\n  ratio:\n    good: sum(increase(x[{{.window}}]))\n    bad: sum(increase(x[{{.window}}]))\n    total: sum(increase(y[{{.window}}]))\n",
			[]string{"f.yaml:6: sli.ratio: want exactly one of good and bad"}},
		{"ratio bad promql", "name: a\ntarget: 99%\nwindow: 30d\nsli:\n  ratio:\n    bad: sum(increase(x[{{.window}}])\n    total: sum(increase(y[{{.window}}]))\n",
			[]string{"f.yaml:6: sli.ratio.bad:"}},
		{"disable unknown tier", "name: a\ntarget: 99%\nwindow: 30d\nsli: {probe_availability: {}}\nalerting:\n  disable: [page-2h]\n",
			[]string{"f.yaml:6: alerting.disable[0]: no tier \"page-2h\""}},
		{"tier short >= long", "name: a\ntarget: 99%\nwindow: 30d\nsli: {probe_availability: {}}\nalerting:\n  tiers:\n    - {name: x, burn_rate: 2, long: 5m, short: 1h, severity: page}\n",
			[]string{"f.yaml:7: alerting.tiers[0].short: 1h0m0s: must be shorter than long"}},
		{"tier impossible", "name: a\ntarget: 90%\nwindow: 30d\nsli: {probe_availability: {}}\nalerting:\n  tiers:\n    - {name: x, burn_rate: 20, long: 1h, short: 5m, severity: page}\n",
			[]string{"alerting.tiers[0].burn_rate: 20: can never fire"}},
		{"both forms", "name: a\ntarget: 99%\nwindow: 30d\nslos:\n  - name: b\n",
			[]string{"f.yaml:5: slos: a file holds either one SLO"}},
		{"duplicate name", "slos:\n  - {name: a, target: 99%, window: 30d, sli: {probe_availability: {}}}\n  - {name: a, target: 99%, window: 30d, sli: {probe_availability: {}}}\n",
			[]string{"f.yaml:3: SLO \"a\" already defined at f.yaml:2"}},
		{"second doc keeps lines", "name: a\ntarget: 99%\nwindow: 30d\nsli: {probe_availability: {}}\n---\nname: b\ntarget: 99%\nwindow: 3\nsli: {probe_availability: {}}\n",
			[]string{"f.yaml:8: window: \"3\""}},
		{"openslo unresolved", "apiVersion: openslo/v1\nkind: SLO\nmetadata: {name: x}\nspec:\n  indicatorRef: nope\n  timeWindow: [{duration: 7d, isRolling: true}]\n  objectives: [{target: 0.99}]\n",
			[]string{"f.yaml:1: spec.indicatorRef: no openslo/v1 SLI named \"nope\""}},
		{"openslo unsupported", "apiVersion: openslo/v1\nkind: SLO\nmetadata: {name: x}\nspec:\n  indicatorRef: nope\n  budgetingMethod: Budgets\n  timeWindow: [{duration: 7d, isRolling: true}]\n  objectives: [{target: 0.99}]\n",
			[]string{"f.yaml:6: spec.budgetingMethod: \"Budgets\": want Occurrences (events), Timeslices or RatioTimeslices"}},
		{"timeslices without a slice", "apiVersion: openslo/v1\nkind: SLO\nmetadata: {name: x}\nspec:\n  indicatorRef: nope\n  budgetingMethod: Timeslices\n  timeWindow: [{duration: 7d, isRolling: true}]\n  objectives: [{target: 0.99}]\n",
			[]string{"f.yaml:8: spec.objectives[0].timeSliceWindow: missing: a Timeslices budget needs the length of a slice, e.g. timeSliceWindow: 5m",
				"f.yaml:8: spec.objectives[0].timeSliceTarget: missing: the good ratio a slice needs to be good, e.g. timeSliceTarget: 0.95"}},
		{"openslo threshold sli", "apiVersion: openslo/v1\nkind: SLI\nmetadata: {name: x}\nspec:\n  thresholdMetric:\n    metricSource: {type: Prometheus}\n",
			[]string{"f.yaml:6: spec.thresholdMetric: threshold SLIs (a value compared per data point) are not measured", "under ratioMetric"}},
		{"openslo v2", "apiVersion: openslo/v2alpha\nkind: SLO\n", []string{"only openslo/v1"}},
		{"empty", "# nothing\n", []string{"f.yaml: empty document"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(File{Name: "f.yaml", Data: []byte(tc.in)})
			if err == nil {
				t.Fatalf("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%v\ndoes not contain\n%s", err, w)
				}
			}
		})
	}
}

func TestQueries(t *testing.T) {
	tests := []struct {
		name       string
		sli        SLI
		bad, total string
	}{
		{"fabric", SLI{Kind: ProbeAvailability},
			`sum(increase(meshlens_dc_pair_probes_lost_total{}[1h]))`,
			`sum(increase(meshlens_dc_pair_probes_total{}[1h]))`},
		{"rack either end", SLI{Kind: ProbeAvailability, Scope: Scope{Rack: "dc1-pod1-rack2", Proto: "udp"}},
			`sum(increase(meshlens_rack_probes_lost_total{rack="dc1-pod1-rack2",proto="udp"}[1h]))`,
			`sum(increase(meshlens_rack_probes_total{rack="dc1-pod1-rack2",proto="udp"}[1h]))`},
		{"host", SLI{Kind: ProbeAvailability, Scope: Scope{Host: "h1"}},
			`sum(increase(meshlens_host_probes_lost_total{host="h1"}[1h]))`,
			`sum(increase(meshlens_host_probes_total{host="h1"}[1h]))`},
		{"latency", SLI{Kind: ProbeLatency, Scope: Scope{Pod: "dc1-pod1"}, Threshold: 5 * time.Millisecond},
			`(sum(increase(meshlens_pod_probes_total{pod="dc1-pod1"}[1h])) - sum(increase(meshlens_pod_rtt_seconds_bucket{pod="dc1-pod1",le="0.005"}[1h])))`,
			`sum(increase(meshlens_pod_probes_total{pod="dc1-pod1"}[1h]))`},
		{"ratio good", SLI{Kind: Ratio, Good: `sum(increase(ok[{{.window}}]))`, Total: `sum(increase(all[{{.window}}]))`},
			`(sum(sum(increase(all[1h]))) - sum(sum(increase(ok[1h]))))`,
			`sum(sum(increase(all[1h])))`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := SLO{SLI: tc.sli}
			if got := s.BadQuery(time.Hour); got != tc.bad {
				t.Errorf("bad\n got %s\nwant %s", got, tc.bad)
			}
			if got := s.TotalQuery(time.Hour); got != tc.total {
				t.Errorf("total\n got %s\nwant %s", got, tc.total)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, p := range []string{"testdata/fabric.yaml", "testdata/openslo.yaml"} {
		files, err := Load(p)
		if err != nil && files != nil {
			f.Fatal(err)
		}
	}
	f.Add([]byte("name: a\ntarget: 99%\nwindow: 30d\nsli: {probe_availability: {dc: dc1}}\n"))
	f.Add([]byte("slos:\n  - {name: a, target: 0.9, window: 7d, sli: {ratio: {bad: 'sum(increase(x[{{.window}}]))', total: 'sum(increase(y[{{.window}}]))'}}}\n---\napiVersion: openslo/v1\nkind: SLI\n"))
	f.Add([]byte("apiVersion: openslo/v1\nkind: SLO\nmetadata: {name: x}\nspec: {indicatorRef: y, timeWindow: [{duration: 1M, calendar: {startTime: '2020-01-01'}}], objectives: [{targetPercent: 99}]}\n"))
	f.Add([]byte("- apiVersion: openslo/v1\n  kind: SLI\n  metadata: {name: s}\n  spec: {ratioMetric: {counter: true, good: {metricSource: {type: Prometheus, spec: {query: a}}}, total: {metricSource: {type: Prometheus, spec: {query: b}}}}}\n-\n  apiVersion: openslo/v1\n  kind: SLO\n  metadata: {name: x, labels: {a.b: [c, d]}}\n  spec: {indicatorRef: s, timeWindow: [{duration: 1w, calendar: {timeZone: America/New_York}}], objectives: [{target: 0.9}]}\n"))
	f.Add([]byte("apiVersion: openslo/v1\nkind: SLO\nmetadata: {name: x}\nspec:\n  budgetingMethod: Timeslices\n  timeWindow: [{duration: 7d, isRolling: true}]\n  objectives: [{target: 0.99, timeSliceTarget: 0.9, timeSliceWindow: 5m}]\n  indicator: {spec: {ratioMetric: {counter: true, bad: {metricSource: {type: Prometheus, spec: {query: a}}}, total: {metricSource: {type: Prometheus, spec: {query: b}}}}}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		slos, err := Parse(File{Name: "fuzz.yaml", Data: data})
		if err != nil {
			return
		}
		for _, s := range slos {
			if !(s.Target > 0 && s.Target < 1) || s.Window <= 0 {
				t.Fatalf("accepted invalid SLO %+v", s)
			}
			// Every accepted SLO must yield PromQL that parses.
			for _, q := range []string{s.BadQuery(time.Hour), s.TotalQuery(time.Hour), s.BudgetBadQuery(time.Hour), s.BudgetTotalQuery(time.Hour), s.BudgetErrorRatioQuery(time.Hour)} {
				if err := checkExpr(q); err != nil {
					t.Fatalf("SLO %s: %v", s.Name, err)
				}
			}
		}
	})
}

func checkExpr(q string) error {
	_, err := parser.NewParser(parser.Options{}).ParseExpr(q)
	return err
}
