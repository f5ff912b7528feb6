package alerting

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/meshlens/meshlens/internal/aggregate"
	"github.com/meshlens/meshlens/internal/aggregate/aggregatetest"
	"github.com/meshlens/meshlens/internal/analyze"
	"github.com/meshlens/meshlens/internal/slo"
	"github.com/meshlens/meshlens/internal/store"
	"github.com/meshlens/meshlens/internal/testkit"
)

// Two SLOs: rack 1 with custom tiers, rack 3 with the SRE Workbook's
// default four, whose longest window is three days.
const rulesSLO = `
slos:
  - name: rack1-availability
    description: probes with an end in rack 1 are answered
    target: 99.9%
    window: 30d
    sli:
      probe_availability: {rack: dc1-pod1-rack1, proto: tcp}
    alerting:
      runbook: https://runbooks.example/meshlens/rack
      tiers:
        - {name: fast, burn_rate: 14.4, long: 1h, short: 5m, severity: page}
        - {name: slow, burn_rate: 6, long: 2h, short: 30m, severity: ticket}
  - name: rack3-availability
    description: probes with an end in rack 3 are answered
    target: 99.9%
    window: 30d
    sli:
      probe_availability: {rack: dc1-pod1-rack3, proto: tcp}
`

// history is how much data the test writes: the longest default tier
// window (3 days) and half a day more.
const history = 84 * time.Hour

// lossAt is the share of rack1->rack2 probes lost at ts: a 30-minute burst
// that ends, then a fault still going on at the end of the data.
func lossAt(end, ts time.Time) float64 {
	switch {
	case ts.After(end.Add(-100*time.Minute)) && !ts.After(end.Add(-70*time.Minute)):
		return 0.1
	case ts.After(end.Add(-25 * time.Minute)):
		return 0.1
	}
	return 0
}

// slowLossAt is the share of rack3->rack4 probes lost at ts (half of rack
// 3's probes): a two-hour 6% burst early on, which fires the page tiers,
// then 0.8% for the last 30 hours, which fires the ticket tiers only.
func slowLossAt(end, ts time.Time) float64 {
	switch {
	case ts.After(end.Add(-80*time.Hour)) && !ts.After(end.Add(-78*time.Hour)):
		return 0.06
	case ts.After(end.Add(-30 * time.Hour)):
		return 0.008
	}
	return 0
}

// sampleEvery is how often the test's counters are written: a minute
// (the aggregator writes every window, 10 s by default, but three and a half
// days at that rate make every meshlens evaluation read six times as much).
const sampleEvery = time.Minute

// feedCounters writes the aggregator's rack-pair counters, and the
// per-rack counters and hourly copies it derives from them, every
// sampleEvery in (start, end] into app, in time order: 100 probes per pair
// per 10 s.
func feedCounters(t *testing.T, s *store.Store, start, end time.Time) int {
	t.Helper()
	type pair struct{ src, dst string }
	pairs := []pair{{"dc1-pod1-rack1", "dc1-pod1-rack2"}, {"dc1-pod1-rack3", "dc1-pod1-rack1"}, {"dc1-pod1-rack3", "dc1-pod1-rack4"}}
	cum := make([]aggregatetest.RackPair, len(pairs))
	for i, p := range pairs {
		cum[i] = aggregatetest.RackPair{Src: p.src, Dst: p.dst, Proto: "tcp"}
	}
	var wr aggregatetest.Writer
	n := 0
	app := s.Appender(context.Background())
	per := 100 * float64(sampleEvery/(10*time.Second))
	for ts := start.Add(sampleEvery); !ts.After(end); ts = ts.Add(sampleEvery) {
		for i := range cum {
			cum[i].Probes += per
			switch i {
			case 0:
				cum[i].Lost += per * lossAt(end, ts)
			case 2:
				cum[i].Lost += per * slowLossAt(end, ts)
			}
		}
		if err := wr.Append(app, ts, sampleEvery, cum); err != nil {
			t.Fatal(err)
		}
		n++
		if n%500 == 0 {
			if err := app.Commit(); err != nil {
				t.Fatal(err)
			}
			app = s.Appender(context.Background())
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRulesFireWithMeshlens loads the generated rules into a real
// Prometheus fed the same counters (remote write from the meshlens store)
// and checks that every tier's condition holds at the same instants in both,
// over three and a half days of history, with the server's default data
// delay, and that the alert is firing in Prometheus now as it is in
// meshlens.
func TestRulesFireWithMeshlens(t *testing.T) {
	dir := t.TempDir()
	sloFile := filepath.Join(dir, "slo.yaml")
	if err := os.WriteFile(sloFile, []byte(rulesSLO), 0o600); err != nil {
		t.Fatal(err)
	}
	slos, err := slo.Load(sloFile)
	if err != nil {
		t.Fatal(err)
	}
	// The server's default data delay: the rules end every window that far
	// back, as the meshlens engine does.
	delay := analyze.EvidenceDelay(aggregate.Config{})
	rules, err := slo.GenerateRules(slos, slo.RulesOptions{Interval: time.Second, DataDelay: delay})
	if err != nil {
		t.Fatal(err)
	}
	var generated struct {
		Groups []struct {
			Rules []struct {
				Alert  string            `yaml:"alert"`
				Expr   string            `yaml:"expr"`
				Labels map[string]string `yaml:"labels"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(rules, &generated); err != nil {
		t.Fatal(err)
	}
	// alertExpr is the generated alert's expression for a tier of an SLO.
	alertExpr := func(name, tier string) string {
		for _, g := range generated.Groups {
			for _, r := range g.Rules {
				if r.Alert == slo.AlertName && r.Labels["slo"] == name && r.Labels["tier"] == tier {
					return r.Expr
				}
			}
		}
		t.Fatalf("no generated alert for tier %s of %s", tier, name)
		return ""
	}
	rulesFile := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rulesFile, rules, 0o600); err != nil {
		t.Fatal(err)
	}
	prom := startPrometheus(t)
	promURL := prom.URL
	st, _ := prom.remoteWritingStore(t, t.TempDir())

	end := time.Now().Truncate(sampleEvery)
	start := end.Add(-history)
	t0 := time.Now()
	n := feedCounters(t, st, start, end)
	t.Logf("fed %d instants in %v", n, time.Since(t0))
	prom.waitForSamples(t, `count_over_time(meshlens_rack_pair_probes_lost_total[4d])`, end, 3, n)
	t.Logf("in Prometheus after %v", time.Since(t0))
	prom.loadRules(t, rulesFile)

	eng, err := slo.NewEngine(slo.Config{SLOs: slos, Querier: st, ConsumedDays: 1, DataDelay: delay})
	if err != nil {
		t.Fatal(err)
	}
	// Prometheus evaluates the loaded rules in real time: the fault is on,
	// the fast tier must be firing there, as it is in meshlens. Checked
	// first: the data ends when the test started, and windows ending now
	// slide past it.
	s := slos[0]
	sts, err := eng.EvaluateAt(context.Background(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !sts[0].Tiers[0].Firing {
		t.Fatalf("meshlens fast tier not firing now: %+v", sts[0].Tiers[0])
	}
	testkit.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		var res struct {
			Alerts []struct {
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
				State       string            `json:"state"`
			} `json:"alerts"`
		}
		if err := promAPI(promURL, "/api/v1/alerts", nil, &res); err != nil {
			return err
		}
		for _, a := range res.Alerts {
			if a.Labels["alertname"] == slo.AlertName && a.Labels["tier"] == "fast" && a.Labels["slo"] == s.Name && a.State == "firing" {
				if a.Annotations["runbook_url"] != s.Runbook {
					return fmt.Errorf("runbook_url %q", a.Annotations["runbook_url"])
				}
				return nil
			}
		}
		return fmt.Errorf("no firing fast-tier alert in Prometheus yet: %+v", res.Alerts)
	})

	// Instants between samples (5 s after the sample grid, and 35 s before
	// it once the data delay is taken off): Prometheus 2 selects ranges
	// closed on the left, 3 open; off the grid both see the same samples.
	from, to, step := start.Add(10*time.Minute+5*time.Second), end.Add(-5*time.Second), 10*time.Minute
	ours := map[int64][]slo.Status{} // meshlens's verdicts, per instant
	for at := from; !at.After(to); at = at.Add(step) {
		sts, err := eng.EvaluateAt(context.Background(), at)
		if err != nil {
			t.Fatal(err)
		}
		ours[at.Unix()] = sts
	}
	t.Logf("meshlens evaluated %d instants after %v", len(ours), time.Since(t0))
	tiers := 0
	for si, s := range slos {
		for _, tier := range s.Tiers {
			tiers++
			t.Run(s.Name+"/"+tier.Name, func(t *testing.T) {
				var data struct {
					Result []struct {
						Values [][2]any `json:"values"`
					} `json:"result"`
				}
				q := url.Values{"query": {alertExpr(s.Name, tier.Name)}, "start": {strconv.FormatInt(from.Unix(), 10)}, "end": {strconv.FormatInt(to.Unix(), 10)}, "step": {strconv.Itoa(int(step.Seconds()))}}
				if err := promAPI(promURL, "/api/v1/query_range", q, &data); err != nil {
					t.Fatal(err)
				}
				promFiring := map[int64]bool{}
				for _, r := range data.Result {
					for _, v := range r.Values {
						promFiring[int64(v[0].(float64))] = true
					}
				}
				var mineAt, theirsAt []string
				fired, quiet := 0, 0
				for at := from; !at.After(to); at = at.Add(step) {
					var mine bool
					for _, ts := range ours[at.Unix()][si].Tiers {
						if ts.Name == tier.Name {
							mine = ts.Firing
						}
					}
					if mine {
						fired++
					} else {
						quiet++
					}
					rel := at.Sub(end).Truncate(time.Second).String()
					if mine {
						mineAt = append(mineAt, rel)
					}
					if promFiring[at.Unix()] {
						theirsAt = append(theirsAt, rel)
					}
					if mine != promFiring[at.Unix()] {
						t.Errorf("at end%s: meshlens firing %v, Prometheus %v", rel, mine, promFiring[at.Unix()])
					}
				}
				if fired == 0 || quiet == 0 {
					t.Errorf("the scenario should make %s both fire and not fire: fired %d, quiet %d", tier.Name, fired, quiet)
				}
				if t.Failed() {
					t.Logf("meshlens fired at %v\nPrometheus at %v", mineAt, theirsAt)
				}
				t.Logf("%s fires at %d of %d instants in both", tier.Name, fired, fired+quiet)
			})
		}
	}
	if tiers != 6 {
		t.Errorf("%d tiers compared, want 2 custom and 4 default", tiers)
	}
}
