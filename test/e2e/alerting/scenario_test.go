package alerting

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshlens/meshlens/internal/aggregate"
	"github.com/meshlens/meshlens/internal/alert"
	"github.com/meshlens/meshlens/internal/analyze"
	"github.com/meshlens/meshlens/internal/localize"
	"github.com/meshlens/meshlens/internal/sim"
	"github.com/meshlens/meshlens/internal/slo"
	"github.com/meshlens/meshlens/internal/store"
	"github.com/meshlens/meshlens/internal/testkit"
)

const faultLink = "dc1-pod1-rack3-tor--dc1-pod1-leaf1"

const scenarioYAML = `
name: alerting-e2e
seed: 7
topology: {generate: {dcs: 1, pods: 1, racks_per_pod: 4, hosts_per_rack: 8, leaves_per_pod: 2, spines: 2}}
probing: {interval: 10s, protocols: [tcp]}
duration: 10m
background: {loss: 0.0001, latency: {base: 40us, jitter: 20us}}
faults:
  - {kind: link_loss, link: "` + faultLink + `", rate: 0.1, at: 2m, until: 5m}
`

// A short-window tier, so that a ten-minute scenario pages and recovers.
const scenarioSLO = `
name: rack3-availability
target: 99.9%
window: 7d
sli:
  probe_availability: {rack: dc1-pod1-rack3}
alerting:
  runbook: https://runbooks.example/meshlens/rack
  tiers:
    - {name: fast, burn_rate: 14.4, long: 5m, short: 1m, severity: page}
`

// step is one sealed window of the simulated run: when (mapped onto the
// last minutes of real time) and what the localizer blamed.
type step struct {
	at       time.Time
	culprits []alert.Culprit
}

// TestScenarioAlertsAndRemediation runs a simulator scenario (a lossy ToR
// uplink) through the real aggregation (writing its counters to a real
// store) and the real stage 2 (internal/analyze), and drives the SLO
// engine, the alert manager and the remediator over it: the page reaches a
// real Alertmanager with the culprit, the remediation webhook is asked to
// drain the blamed link, the page resolves, and the link is undrained after
// the hold-down.
func TestScenarioAlertsAndRemediation(t *testing.T) {
	sc, err := sim.Parse("alerting-e2e.yaml", []byte(scenarioYAML), nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(t.TempDir(), store.Options{Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	// The run ends "now", so the alerts are current for Alertmanager. The
	// run's aggregator writes its counters to the store as the server's
	// does, and its verdicts come from the analyzer.
	base := time.Now().Truncate(10 * time.Second).Add(-sc.Duration)
	real := func(v time.Duration) time.Time { return base.Add(v) }
	var steps []step
	_, err = sim.Run(context.Background(), sc, sim.Options{
		Localizers: []string{localize.NameMeshlens},
		Start:      base,
		Appendable: st,
		Observe: func(_ time.Duration, _ *aggregate.SealedWindow, v analyze.Verdict) {
			steps = append(steps, step{at: v.End, culprits: analyze.Culprits(v)})
		},
	})
	if err != nil {
		t.Fatal(err)
	}

	// A real Alertmanager and a remediation webhook.
	amURL := startAlertmanager(t)
	secret := []byte("drain-secret")
	var mu sync.Mutex
	var actions []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if !alert.VerifySignature(secret, body, r.Header.Get(alert.SignatureHeader)) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var a map[string]string
		if err := json.Unmarshal(body, &a); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		actions = append(actions, a["action"]+" "+a["element"])
		mu.Unlock()
	}))
	defer hook.Close()

	board := analyze.NewCulpritBoard(sim.AggregateConfig(sc))
	am, err := alert.NewAlertmanager("am", amURL, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := alert.NewManager(alert.Config{Receivers: []alert.Receiver{am}, Blamer: board, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	slos, err := slo.Parse(slo.File{Name: "rack3.yaml", Data: []byte(scenarioSLO)})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := slo.NewEngine(slo.Config{SLOs: slos, Querier: st, OnEvaluate: mgr.ObserveSLOs, ConsumedDays: 1})
	if err != nil {
		t.Fatal(err)
	}
	wh, err := alert.NewWebhook("drain", hook.URL, secret, nil)
	if err != nil {
		t.Fatal(err)
	}
	rem, err := alert.NewRemediator(alert.RemediatorConfig{
		Rules:   []alert.RemediationRule{{Name: "drain-links", Kinds: []string{string(localize.KindLink)}, MinConfidence: 0.5, HoldDown: time.Minute, Action: alert.WebhookAction{Hook: wh}}},
		Execute: true, Layers: alert.TopologyLayers(sc.Topology), Manager: mgr,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	run := func(s step) {
		board.Update(s.culprits)
		if _, err := eng.EvaluateAt(ctx, s.at); err != nil {
			t.Fatal(err)
		}
		rem.Consider(ctx, s.at, mgr.Incidents())
		if err := mgr.Deliver(ctx, false); err != nil {
			t.Fatal(err)
		}
	}

	// Phase 1: up to the end of the fault.
	faultEnd := real(5 * time.Minute)
	i := 0
	for ; i < len(steps) && !steps[i].at.After(faultEnd); i++ {
		run(steps[i])
	}
	incs := mgr.Incidents()
	if len(incs) == 0 || incs[0].State != alert.IncidentOpen {
		t.Fatalf("no open incident at the end of the fault: %+v", incs)
	}
	inc := incs[0]
	if inc.Blamed == nil {
		t.Fatalf("incident without culprit: %+v", inc)
	}
	onset := real(2 * time.Minute)
	t.Logf("incident %s: first symptom %s after onset, detected %s after onset, blamed %s (%s, confidence %.2f)", inc.ID,
		inc.Start.Sub(onset), inc.Detected.Sub(onset), inc.Blamed.Element, inc.Blamed.Symptom, inc.Blamed.Confidence)
	if !strings.Contains(inc.Blamed.Element, "dc1-pod1-rack3-tor") {
		t.Errorf("blamed %s, the fault is on %s", inc.Blamed.Element, faultLink)
	}
	testkit.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		alerts, err := amtoolQueryFor(t, amURL, "rack3-availability")
		if err != nil {
			return err
		}
		for _, a := range alerts {
			if ann, _ := a["annotations"].(map[string]any); ann["blamed_element"] == inc.Blamed.Element {
				return nil
			}
		}
		return fmt.Errorf("page with the culprit not in Alertmanager: %v", alerts)
	})
	mu.Lock()
	drained := fmt.Sprint(actions)
	mu.Unlock()
	if drained != "[drain "+inc.Blamed.Element+"]" {
		t.Fatalf("remediation actions %s, want a drain of %s", drained, inc.Blamed.Element)
	}

	// Phase 2: recovery.
	for ; i < len(steps); i++ {
		run(steps[i])
	}
	inc, _ = mgr.Incident(inc.ID)
	if inc.State != alert.IncidentResolved {
		t.Fatalf("incident still %s at the end: %+v", inc.State, inc.Timeline)
	}
	var kinds []string
	for _, e := range inc.Timeline {
		kinds = append(kinds, e.Kind)
	}
	for _, k := range []string{alert.EventFirstSymptom, alert.EventDetection, alert.EventLocalization, alert.EventMitigation, alert.EventResolution} {
		if !strings.Contains(strings.Join(kinds, ","), k) {
			t.Errorf("timeline lacks %s: %v", k, kinds)
		}
	}
	if len(inc.SLOs) != 1 || inc.SLOs[0].Consumed <= 0 {
		t.Errorf("SLO burn not recorded: %+v", inc.SLOs)
	}
	testkit.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		alerts, err := amtoolQueryFor(t, amURL, "rack3-availability")
		if err != nil {
			return err
		}
		if len(alerts) > 0 {
			return fmt.Errorf("still active in Alertmanager: %v", alerts)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if want := "[drain " + inc.Blamed.Element + " undrain " + inc.Blamed.Element + "]"; fmt.Sprint(actions) != want {
		t.Errorf("remediation actions %v, want %s", actions, want)
	}
	ds, err := rem.Decisions()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		t.Logf("audit: %s %s %s taken=%v: %s", d.At.Format("15:04:05"), d.Action, d.Element, d.Taken, d.Reason)
	}
}
