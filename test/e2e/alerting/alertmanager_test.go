package alerting

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshlens/meshlens/internal/alert"
	"github.com/meshlens/meshlens/internal/slo"
	"github.com/meshlens/meshlens/internal/store"
	"github.com/meshlens/meshlens/internal/testkit"
)

const amSLO = `
name: rack1-availability
target: 99.9%
window: 30d
sli:
  probe_availability: {rack: dc1-pod1-rack1}
alerting:
  runbook: https://runbooks.example/meshlens/rack
`

// amtoolQuery returns the alerts amtool lists for the SLO.
func amtoolQuery(t *testing.T, amURL string) ([]map[string]any, error) {
	t.Helper()
	return amtoolQueryFor(t, amURL, "rack1-availability")
}

// amtoolQueryFor returns the active burn-rate alerts of an SLO, as amtool
// lists them.
func amtoolQueryFor(t *testing.T, amURL, sloName string) ([]map[string]any, error) {
	t.Helper()
	bin, err := exec.LookPath("amtool")
	if err != nil {
		t.Fatalf("amtool not found (CI installs prometheus-alertmanager): %v", err)
	}
	out, err := exec.Command(bin, "--alertmanager.url="+amURL, "-o", "json", "alert", "query", "alertname="+slo.AlertName, "slo="+sloName).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("amtool: %v: %s", err, out)
	}
	var alerts []map[string]any
	if err := json.Unmarshal(out, &alerts); err != nil {
		return nil, fmt.Errorf("amtool output %q: %w", out, err)
	}
	return alerts, nil
}

// TestAlertmanagerDelivery runs the SLO engine over a fault in a real store
// and delivers its alert through the alert manager to a real Alertmanager
// and a signed webhook: the alert arrives (amtool lists it with its
// runbook, scope and incident) and then resolves.
func TestAlertmanagerDelivery(t *testing.T) {
	amURL := startAlertmanager(t)

	// A webhook endpoint checking signatures.
	secret := []byte("webhook-secret")
	var mu sync.Mutex
	var hooks []alert.WebhookPayload
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if !alert.VerifySignature(secret, body, r.Header.Get(alert.SignatureHeader)) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var p alert.WebhookPayload
		if err := json.Unmarshal(body, &p); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		hooks = append(hooks, p)
		mu.Unlock()
	}))
	defer hook.Close()

	st, err := store.Open(t.TempDir(), store.Options{Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now().Truncate(10 * time.Second)
	// 10% of rack1->rack2 lost from 40 min ago until 5.5 min ago, through
	// the aggregator's counters.
	aggregateRackPair(t, st, "dc1-pod1-rack1", "dc1-pod1-rack2", now.Add(-2*time.Hour-10*time.Second), now, 10*time.Second, func(ts time.Time) (int, int) {
		if ts.After(now.Add(-40*time.Minute)) && ts.Before(now.Add(-5*time.Minute-30*time.Second)) {
			return 100, 10
		}
		return 100, 0
	})

	am, err := alert.NewAlertmanager("am", amURL, "http://meshlens.example/slos", nil)
	if err != nil {
		t.Fatal(err)
	}
	wh, err := alert.NewWebhook("remediation", hook.URL+"/hook", secret, nil)
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := alert.NewManager(alert.Config{Receivers: []alert.Receiver{am, wh}, Registerer: prometheus.NewRegistry(),
		Blamer: alert.BlamerFunc(func(*slo.Scope, time.Time) (alert.Culprit, bool) {
			return alert.Culprit{Element: "dc1-pod1-rack1-tor--dc1-pod1-leaf2", Kind: "link", Symptom: "loss", Estimate: 0.1, Confidence: 0.97}, true
		})})
	if err != nil {
		t.Fatal(err)
	}
	slos, err := slo.Parse(slo.File{Name: "am.yaml", Data: []byte(amSLO)})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := slo.NewEngine(slo.Config{SLOs: slos, Querier: st, OnEvaluate: mgr.ObserveSLOs, ConsumedDays: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	// 6 minutes ago the fault was on: the page tier fires.
	sts, err := eng.EvaluateAt(ctx, now.Add(-6*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if !sts[0].Tiers[0].Firing {
		t.Fatalf("page tier not firing: %+v", sts[0].Tiers[0])
	}
	testkit.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		alerts, err := amtoolQuery(t, amURL)
		if err != nil {
			return err
		}
		for _, a := range alerts {
			l, _ := a["labels"].(map[string]any)
			ann, _ := a["annotations"].(map[string]any)
			if l["tier"] == "page-1h" && l["severity"] == "page" {
				if ann["runbook_url"] != "https://runbooks.example/meshlens/rack" || ann["blamed_element"] != "dc1-pod1-rack1-tor--dc1-pod1-leaf2" || ann["incident"] == "" || ann["scope"] != "rack=dc1-pod1-rack1" {
					return fmt.Errorf("annotations %v", ann)
				}
				return nil
			}
		}
		return fmt.Errorf("page-1h alert not in Alertmanager: %v", alerts)
	})

	// Now the short window is clean: the page resolves.
	sts, err = eng.EvaluateAt(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	if sts[0].Tiers[0].Firing {
		t.Fatalf("page tier still firing: %+v", sts[0].Tiers[0])
	}
	testkit.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		alerts, err := amtoolQuery(t, amURL)
		if err != nil {
			return err
		}
		for _, a := range alerts {
			if l, _ := a["labels"].(map[string]any); l["tier"] == "page-1h" {
				return fmt.Errorf("page-1h still active in Alertmanager: %v", a)
			}
		}
		return nil
	})
	// The webhook heard the page fire and resolve, signed.
	testkit.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		var firing, resolved bool
		for _, h := range hooks {
			firing = firing || h.Status == "firing"
			for _, a := range h.Alerts {
				// The slower tiers still burn: the incident stays open,
				// the page resolves within it.
				resolved = resolved || (a.Labels["tier"] == "page-1h" && a.State == alert.StateResolved && h.Incident != nil && h.Incident.Blamed != nil)
			}
		}
		if !firing || !resolved {
			b, _ := json.Marshal(hooks)
			return fmt.Errorf("webhook got %d notifications (firing %v, resolved %v): %s", len(hooks), firing, resolved, b)
		}
		return nil
	})
}
