package alerting

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/meshlens/meshlens/internal/slo"
	"github.com/meshlens/meshlens/internal/store"
	"github.com/meshlens/meshlens/internal/testkit"
	"github.com/meshlens/meshlens/test/e2e/e2eutil"
)

// The SLO shapes of issue 16 as their users write them: an OpenSLO
// Timeslices SLO over a one-day window (one-minute slices, so that a slice
// ends while the test runs), a meshlens SLO over seven days whose ratio
// uses Sloth's rate({{.window}}) convention, and a Sloth service spec,
// imported with meshlens slo import, whose alerts carry Sloth's name and
// routing labels.
const (
	shapesSlicesSLO = `apiVersion: openslo/v1
kind: SLO
metadata:
  name: api-uptime-slices
spec:
  service: api
  budgetingMethod: Timeslices
  timeWindow:
    - duration: 1d
      isRolling: true
  objectives:
    - target: 0.99
      timeSliceTarget: 0.95
      timeSliceWindow: 1m
  indicator:
    metadata:
      name: api-server-errors
    spec:
      ratioMetric:
        counter: true
        bad:
          metricSource:
            type: Prometheus
            spec:
              query: sum(api_requests_total{code=~"5.."})
        total:
          metricSource:
            type: Prometheus
            spec:
              query: sum(api_requests_total)
`
	shapesWeeklySLO = `name: gateway-weekly
target: 99.5%
window: 7d
sli:
  ratio:
    bad: sum(rate(gateway_requests_total{code=~"5.."}[{{.window}}]))
    total: sum(rate(gateway_requests_total[{{.window}}]))
labels:
  team: edge
`
	shapesSloth = `version: "prometheus/v1"
service: "payments"
labels:
  owner: "payments-team"
slos:
  - name: "charge-availability"
    objective: 99.9
    description: "Charges answered without a server error."
    sli:
      events:
        error_query: sum(rate(payments_charges_total{code=~"5.."}[{{.window}}]))
        total_query: sum(rate(payments_charges_total[{{.window}}]))
    alerting:
      name: PaymentsChargeErrors
      labels:
        category: availability
      annotations:
        runbook: https://runbooks.example/payments/charges
      page_alert:
        labels:
          severity: pageteam
          routing_key: payments-oncall
      ticket_alert:
        labels:
          severity: slack
          slack_channel: "#payments-alerts"
`
)

// requestCounter is a service's request counter as its own exporter
// counts it: a series of answered requests and one of server errors
// (label code), perSecond requests of which errShare fail, and burst more
// failures in the ten seconds before the fault.
type requestCounter struct {
	job, metric, okCode, errCode string
	perSecond, errShare, burst   float64
}

// shapeCase is an SLO of the test, the counter it reads and the tiers its
// burst fires: the only ones that may fire, at any time, in meshlens or
// in Prometheus. Each burst is sized so that every tier's burn rate is a
// factor of 1.39 or more from its threshold, on one side or the other.
type shapeCase struct {
	slo     string
	counter requestCounter
	fires   []string
}

var shapeCases = []shapeCase{
	// One bad slice in a day of good ones. The 1d tiers, windows shrunk
	// by TiersFor: page-1h 14.4x over 10m and 5m burns 1/10/1% = 10x,
	// page-6h 6x over 12m and 5m burns 8.3x and 20x, ticket-1d 3x over 48m
	// 2.1x, ticket-3d 1x over 2h24m 0.7x.
	{slo: "api-uptime-slices", counter: requestCounter{"api", "api_requests_total", "200", "500", 10, 0.0005, 100}, fires: []string{"page-6h"}},
	// 1000 errors on 10 req/s at 99.5%: 14m 10.7% (21x, > 14.4x), 5m 25%;
	// 84m 2% (4x, < 6x), 5h36m 1.1x, 16h48m 0.4x.
	{slo: "gateway-weekly", counter: requestCounter{"gateway", "gateway_requests_total", "200", "503", 10, 0.0005, 1000}, fires: []string{"page-1h"}},
	// 800 errors on 10 req/s at 99.9%: 1h 2.2% (22x, > 14.4x), 5m 21%;
	// 6h 0.39% (3.9x, < 6x), 1d 1.1x, 3d 0.5x.
	{slo: "payments-charge-availability", counter: requestCounter{"payments", "payments_charges_total", "200", "500", 10, 0.0002, 800}, fires: []string{"page-1h"}},
}

// feedRequests writes the counters into st in time order, 5 s past every
// minute from start and past every 10 s over the three hours before fault
// and on to end (two samples in every one-minute slice the tiers read,
// none on a slice boundary, where Prometheus 2 and 3 differ); the bursts
// land in the sample at fault. It returns the samples per series.
func feedRequests(t *testing.T, st *store.Store, cs []requestCounter, start, fault, end time.Time) int {
	t.Helper()
	fine := fault.Add(-3 * time.Hour)
	cum := make([][2]float64, len(cs))
	app := st.Appender(context.Background())
	n := 0
	prev := start
	for ts := start.Add(5 * time.Second); !ts.After(end); {
		dt := ts.Sub(prev).Seconds()
		for i, c := range cs {
			cum[i][0] += c.perSecond * dt * (1 - c.errShare)
			cum[i][1] += c.perSecond * dt * c.errShare
			if prev.Before(fault) && !ts.Before(fault) {
				cum[i][1] += c.burst
			}
			for j, code := range []string{c.okCode, c.errCode} {
				if _, err := app.Append(0, labels.FromStrings("__name__", c.metric, "job", c.job, "code", code), ts.UnixMilli(), cum[i][j]); err != nil {
					t.Fatal(err)
				}
			}
		}
		n++
		if n%500 == 0 {
			if err := app.Commit(); err != nil {
				t.Fatal(err)
			}
			app = st.Appender(context.Background())
		}
		prev = ts
		if ts.Before(fine) {
			ts = ts.Add(time.Minute)
		} else {
			ts = ts.Add(10 * time.Second)
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	return n
}

// firingTiers are the tiers firing, as "slo/tier", with their alerts'
// labels.
type firingTiers map[string]map[string]string

func (f firingTiers) names() []string { return slices.Sorted(maps.Keys(f)) }

// prometheusFiring lists the alerts firing in Prometheus.
func prometheusFiring(promURL string) (firingTiers, error) {
	var res struct {
		Alerts []struct {
			Labels map[string]string `json:"labels"`
			State  string            `json:"state"`
		} `json:"alerts"`
	}
	if err := promAPI(promURL, "/api/v1/alerts", nil, &res); err != nil {
		return nil, err
	}
	out := firingTiers{}
	for _, a := range res.Alerts {
		if a.State == "firing" {
			out[a.Labels["slo"]+"/"+a.Labels["tier"]] = a.Labels
		}
	}
	return out, nil
}

// alertmanagerActive lists the active alerts an Alertmanager holds.
func alertmanagerActive(amURL string) (firingTiers, error) {
	var alerts []struct {
		Labels map[string]string `json:"labels"`
		Status struct {
			State string `json:"state"`
		} `json:"status"`
	}
	if err := e2eutil.GetJSON(amURL+"/api/v2/alerts", &alerts); err != nil {
		return nil, err
	}
	out := firingTiers{}
	for _, a := range alerts {
		if a.Status.State == "active" {
			out[a.Labels["slo"]+"/"+a.Labels["tier"]] = a.Labels
		}
	}
	return out, nil
}

// meshlensEvaluation is one evaluation of the server's SLO engine.
type meshlensEvaluation struct {
	at     time.Time
	firing []string // "slo/tier"
}

// TestSLOShapesFireWithMeshlens is issue 16's proof that meshlens's own
// evaluation and the generated rules agree on the shapes people write: a
// Timeslices SLO over one day, a seven-day SLO written with Sloth's
// rate({{.window}}), and a Sloth spec imported by the real meshlens slo
// import. The same series, written once to a meshlens store that
// remote-writes them, are read by a real meshlens server (its SLO engine,
// --slo) and by a real Prometheus running meshlens slo rules. The series
// run a minute or so into the future, so that both evaluate them as they
// come in: a healthy stretch in which neither fires anything, then a burst
// of errors per service, after which both fire exactly the tiers the
// arithmetic in shapeCases says (no other tier at any time), and the
// alerts meshlens delivers to a real Alertmanager carry the labels of
// Prometheus's alerts, the Sloth alert's name and routing labels among
// them.
func TestSLOShapesFireWithMeshlens(t *testing.T) {
	bin := e2eutil.Binary(t)
	dir := t.TempDir()
	files := map[string]string{"slices.yaml": shapesSlicesSLO, "weekly.yaml": shapesWeeklySLO, "sloth.yaml": shapesSloth}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	imported := filepath.Join(dir, "payments.yaml")
	if out, err := e2eutil.Run(ctx, bin, "slo", "import", "--from", "sloth", filepath.Join(dir, "sloth.yaml"), "-o", imported); err != nil {
		t.Fatalf("meshlens slo import: %v\n%s", err, out)
	}
	sloFiles := []string{filepath.Join(dir, "slices.yaml"), filepath.Join(dir, "weekly.yaml"), imported}
	rulesFile := filepath.Join(dir, "rules.yaml")
	if out, err := e2eutil.Run(ctx, bin, append([]string{"slo", "rules", "--interval", "1s", "-o", rulesFile}, sloFiles...)...); err != nil {
		t.Fatalf("meshlens slo rules: %v\n%s", err, out)
	}
	slos, err := slo.Load(sloFiles...)
	if err != nil {
		t.Fatal(err)
	}
	want := firingTiers{}
	var counters []requestCounter
	for _, c := range shapeCases {
		i := slices.IndexFunc(slos, func(s slo.SLO) bool { return s.Name == c.slo })
		if i < 0 {
			t.Fatalf("no SLO %s in %v", c.slo, sloFiles)
		}
		for _, tier := range c.fires {
			j := slices.IndexFunc(slos[i].Tiers, func(t slo.Tier) bool { return t.Name == tier })
			if j < 0 {
				t.Fatalf("SLO %s has no tier %s", c.slo, tier)
			}
			l := slos[i].AlertLabels(slos[i].Tiers[j])
			l["alertname"] = slos[i].Tiers[j].AlertName()
			want[c.slo+"/"+tier] = l
		}
		counters = append(counters, c.counter)
	}

	prom := startPrometheus(t)
	amURL := startAlertmanager(t)
	alerting := filepath.Join(dir, "alerting.yaml")
	if err := os.WriteFile(alerting, []byte(fmt.Sprintf("alertmanagers: [{name: am, url: %q}]\n", amURL)), 0o600); err != nil {
		t.Fatal(err)
	}
	topo := filepath.Join(dir, "topology.yaml")
	e2eutil.Topology(t, topo, bin, "topo", "gen", "--dcs", "1", "--pods", "1", "--racks-per-pod", "2",
		"--hosts-per-rack", "1", "--leaves-per-pod", "2", "--spines", "2")

	// The fault is 5 s before a minute boundary, so that the burst spoils
	// the one-minute slice ending there, and at least 15 s from now: time
	// to hand the data over (a second) and start the server before it.
	t0 := time.Now()
	sliceEnd := t0.Add(20 * time.Second).Truncate(time.Minute).Add(time.Minute)
	fault := sliceEnd.Add(-5 * time.Second)
	end := sliceEnd.Add(3 * time.Minute)
	// The server's store: written here, then opened by the server.
	data := filepath.Join(dir, "meshlens")
	st, stop := prom.remoteWritingStore(t, filepath.Join(data, "tsdb"))
	n := feedRequests(t, st, counters, sliceEnd.Add(-84*time.Hour), fault, end)
	prom.waitForSamples(t, `count_over_time({__name__=~"api_requests_total|gateway_requests_total|payments_charges_total"}[4d])`, end, 2*len(counters), n)
	stop()
	t.Logf("%d samples per series in Prometheus and the server's store after %v; the fault is in %v", n, time.Since(t0), time.Until(fault))
	prom.loadRules(t, rulesFile)
	rulesAt := time.Now()
	if lead := fault.Sub(rulesAt); lead < 5*time.Second {
		t.Fatalf("the rules were loaded %v before the fault: the setup took too long to see a healthy stretch", lead)
	}

	args := []string{"--topology", topo, "--data-dir", data, "--alerting", alerting, "--slo-interval", "1s"}
	for _, f := range sloFiles {
		args = append(args, "--slo", f)
	}
	srv := e2eutil.StartServer(t, nil, bin, args...)
	t.Logf("server running %v before the fault", time.Until(fault))

	// Until both fire what they should, from the slice's end on (the
	// Timeslices SLO sees its bad slice only once it has ended).
	var evals []meshlensEvaluation
	var theirs, delivered firingTiers
	testkit.CheckFor(t, time.Until(sliceEnd.Add(45*time.Second)), 200*time.Millisecond, func() error {
		if exited, err := srv.Exited(); exited {
			t.Fatalf("meshlens server exited: %v", err)
		}
		var res []slo.Status
		if err := e2eutil.GetJSON(srv.HTTPURL+"/api/v1/slos", &struct {
			Data *[]slo.Status `json:"data"`
		}{&res}); err != nil {
			return err
		}
		if len(res) == 0 {
			return fmt.Errorf("meshlens has not evaluated its SLOs yet")
		}
		at := res[0].At
		mine := firingTiers{}
		for _, s := range res {
			if s.Error != "" {
				t.Fatalf("meshlens evaluation of %s at %s: %s", s.Name, at.Format(time.RFC3339Nano), s.Error)
			}
			for _, tier := range s.Tiers {
				if tier.Firing {
					mine[s.Name+"/"+tier.Name] = nil
				}
			}
		}
		if len(evals) == 0 || !evals[len(evals)-1].at.Equal(at) {
			evals = append(evals, meshlensEvaluation{at: at, firing: mine.names()})
		}
		if at.Before(sliceEnd) || !slices.Equal(mine.names(), want.names()) {
			return fmt.Errorf("meshlens fires %v at %s, want %v from %s on", mine.names(), at.Format(time.TimeOnly), want.names(), sliceEnd.Format(time.TimeOnly))
		}
		var err error
		if theirs, err = prometheusFiring(prom.URL); err != nil {
			return err
		}
		if !slices.Equal(theirs.names(), want.names()) {
			return fmt.Errorf("Prometheus fires %v, want %v", theirs.names(), want.names())
		}
		if delivered, err = alertmanagerActive(amURL); err != nil {
			return err
		}
		if !slices.Equal(delivered.names(), want.names()) {
			return fmt.Errorf("Alertmanager holds %v from meshlens, want %v", delivered.names(), want.names())
		}
		return nil
	})
	t.Logf("both fire %v, %v after the fault", want.names(), time.Since(fault))

	// The healthy stretch: meshlens and Prometheus evaluated several times
	// before the fault and fired nothing.
	quiet := 0
	for _, e := range evals {
		if e.at.Before(fault) {
			quiet++
			if len(e.firing) > 0 {
				t.Errorf("meshlens fired %v at %s, %v before the fault", e.firing, e.at.Format(time.TimeOnly), fault.Sub(e.at))
			}
		}
	}
	if quiet < 3 {
		t.Errorf("meshlens evaluated %d times before the fault, want 3 or more (the server started too late to see the healthy stretch)", quiet)
	}
	before := fault.Add(-time.Millisecond)
	healthy := strconv.Itoa(int(before.Sub(rulesAt).Seconds())) + "s"
	evaluated, err := promVector(prom.URL, "count_over_time(slo:objective:ratio["+healthy+"])", before)
	if err != nil {
		t.Fatal(err)
	}
	if len(evaluated) != len(shapeCases) {
		t.Errorf("Prometheus evaluated the rules of %d of the %d SLOs in the %s before the fault", len(evaluated), len(shapeCases), healthy)
	}
	for _, c := range evaluated {
		if v, _ := strconv.Atoi(c.Value[1].(string)); v < 3 {
			t.Errorf("Prometheus evaluated the rules of %s %d times before the fault, want 3 or more", c.Metric["slo"], v)
		}
	}
	active, err := promVector(prom.URL, "count_over_time(ALERTS["+healthy+"])", before)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range active {
		t.Errorf("Prometheus had %v active before the fault", c.Metric)
	}

	// No other tier at any time, in either.
	ever := map[string]bool{}
	for _, e := range evals {
		for _, f := range e.firing {
			ever[f] = true
		}
	}
	if got := slices.Sorted(maps.Keys(ever)); !slices.Equal(got, want.names()) {
		t.Errorf("meshlens fired %v during the test, want only %v", got, want.names())
	}
	run := strconv.Itoa(int(time.Since(rulesAt).Seconds())+1) + "s"
	fired, err := promVector(prom.URL, `count by (slo, tier) (count_over_time(ALERTS{alertstate="firing"}[`+run+`]))`, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var promEver []string
	for _, c := range fired {
		promEver = append(promEver, c.Metric["slo"]+"/"+c.Metric["tier"])
	}
	if slices.Sort(promEver); !slices.Equal(promEver, want.names()) {
		t.Errorf("Prometheus fired %v during the test, want only %v", promEver, want.names())
	}

	// The same alerts: what meshlens delivered is what Prometheus fires,
	// label for label, and the imported SLO's are Sloth's.
	for _, name := range want.names() {
		if !maps.Equal(delivered[name], theirs[name]) {
			t.Errorf("%s: meshlens delivered labels\n%v\nPrometheus fires\n%v", name, delivered[name], theirs[name])
		}
		if !maps.Equal(theirs[name], want[name]) {
			t.Errorf("%s: Prometheus fires\n%v\nthe SLO files say\n%v", name, theirs[name], want[name])
		}
	}
	sloth := theirs["payments-charge-availability/page-1h"]
	for k, v := range map[string]string{"alertname": "PaymentsChargeErrors", "routing_key": "payments-oncall", "severity": "pageteam",
		"sloth_severity": "page", "sloth_service": "payments", "sloth_slo": "charge-availability", "owner": "payments-team", "category": "availability"} {
		if sloth[k] != v {
			t.Errorf("the imported Sloth SLO's page alert has %s=%q, want %q (all: %v)", k, sloth[k], v, sloth)
		}
	}
	if t.Failed() {
		var lines []string
		for _, e := range evals {
			lines = append(lines, fmt.Sprintf("%s %v", e.at.Format(time.TimeOnly), e.firing))
		}
		t.Logf("fault at %s; meshlens evaluations:\n%s", fault.Format(time.TimeOnly), strings.Join(lines, "\n"))
	}
}
