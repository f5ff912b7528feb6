package alert

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshlens/meshlens/internal/slo"
)

// TestLocalizerRaisesIncidents: an element blamed surely in two windows
// running opens an incident of its own, SLOs or not, naming it with its
// evidence and a link; a fluke window does not; it resolves after three
// clean windows; an SLO alert blaming the same element joins it; the
// gauge says the estimate, then 0.
func TestLocalizerRaisesIncidents(t *testing.T) {
	const tor = "dc1-pod1-rack2-tor"
	reg := prometheus.NewRegistry()
	w, err := NewFaultWatch(FaultConfig{ElementURL: UIElementURL("https://meshlens.example/"), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	board := NewBoard(0.5, 30*time.Second)
	m := newManager(t, Config{Blamer: board, GeneratorURL: "https://meshlens.example/#/incidents"})
	down := Culprit{Element: tor, Kind: "device", Symptom: "down", Estimate: 1, Confidence: 0.99,
		Evidence: "412 anomalous probes through it", Pairs: []string{"h1 -> h2", "h3 -> h4"}}
	flaky := Culprit{Element: "dc1-spine1", Kind: "device", Symptom: "loss", Estimate: 0.02, Confidence: 0.95}
	at := t0
	window := func(cs ...Culprit) {
		for i := range cs {
			cs[i].At = at
		}
		board.Update(cs)
		m.ObserveSource(at, SourceLocalizer, w.Observe(at, cs))
		at = at.Add(10 * time.Second)
	}
	window(down, flaky) // one window each: nothing yet
	if n := len(m.Incidents()); n != 0 {
		t.Fatalf("%d incidents after one window", n)
	}
	window(down) // the ToR twice running: an incident; the spine was a fluke
	incs := m.Incidents()
	if len(incs) != 1 || incs[0].Blamed == nil || incs[0].Blamed.Element != tor {
		t.Fatalf("incidents %+v, want one blaming %s", incs, tor)
	}
	a := m.Alerts()[0]
	want := map[string]string{"alertname": FaultAlertName, "element": tor, "kind": "device", "symptom": "down", "severity": "page"}
	for k, v := range want {
		if a.Labels[k] != v {
			t.Errorf("label %s=%q, want %q", k, a.Labels[k], v)
		}
	}
	if !strings.Contains(a.Annotations["summary"], tor) || a.Annotations["description"] != down.Evidence || a.Annotations["sample_pairs"] != "h1 -> h2, h3 -> h4" {
		t.Errorf("annotations %v", a.Annotations)
	}
	if link := "https://meshlens.example/#/topology?focus=" + tor; a.Annotations["element_url"] != link || a.GeneratorURL != link {
		t.Errorf("links %q, %q", a.Annotations["element_url"], a.GeneratorURL)
	}
	if got := testutil.ToFloat64(w.gauge.WithLabelValues(tor, "device", "down")); got != 1 {
		t.Errorf("gauge %v while down", got)
	}
	// An SLO on the ToR's rack burns: its alert joins the incident.
	burn := func(b float64) *float64 { return &b }
	m.ObserveSLOs(at, []slo.Status{{Name: "rack2", Scope: &slo.Scope{Rack: "dc1-pod1-rack2"}, BudgetRemaining: burn(0.9),
		Tiers: []slo.TierStatus{{Name: "fast", Severity: "page", Factor: 14.4, Long: "1m", Short: "20s", Firing: true, LongBurn: burn(30), ShortBurn: burn(40)}}}})
	if incs := m.Incidents(); len(incs) != 1 || len(incs[0].Alerts) != 2 {
		t.Fatalf("the SLO alert did not join the localizer's incident: %d incidents, %+v", len(incs), incs[0].Alerts)
	}
	// The SLO engine's next evaluation does not end the localizer's
	// alert, nor the localizer's window the SLO's.
	m.ObserveSLOs(at, nil)
	window(down)
	if n := len(m.Alerts()); n < 2 || m.Incidents()[0].State != IncidentOpen {
		t.Fatalf("one source ended the other's alert")
	}
	// Clean for two windows: still open; the third resolves it.
	window()
	window()
	if m.Incidents()[0].State != IncidentOpen {
		t.Fatal("resolved after two clean windows")
	}
	if got := testutil.ToFloat64(w.gauge.WithLabelValues(tor, "device", "down")); got != 0 {
		t.Errorf("gauge %v once clean", got)
	}
	window()
	if inc := m.Incidents()[0]; inc.State != IncidentResolved {
		t.Fatalf("state %s after three clean windows", inc.State)
	}
}

// TestFaultWatchOneLink: the localizer names a link in one window and the
// direction that failed in the next; that is two windows of one fault.
func TestFaultWatchOneLink(t *testing.T) {
	w, err := NewFaultWatch(FaultConfig{})
	if err != nil {
		t.Fatal(err)
	}
	at := t0
	for i, el := range []string{"a--b", "b->a"} {
		conds := w.Observe(at, []Culprit{{Element: el, Kind: "link", Symptom: "latency", Estimate: 0.005, Confidence: 0.99}})
		if i == 0 && len(conds) != 0 {
			t.Fatalf("conditions after one window: %v", conds)
		}
		if i == 1 && (len(conds) != 1 || conds[0].Labels["element"] != "b->a") {
			t.Fatalf("conditions after the link and its direction: %+v", conds)
		}
		at = at.Add(10 * time.Second)
	}
	// Its label stays while the blame moves back to the link.
	if conds := w.Observe(at, []Culprit{{Element: "a--b", Kind: "link", Symptom: "latency", Confidence: 0.99}}); len(conds) != 1 || conds[0].Labels["element"] != "b->a" {
		t.Fatalf("conditions %+v", conds)
	}
}

// TestFaultWatchSwitchAndItsLink: a switch named, then one of its links,
// then the switch again is no clean window for the switch: its incident
// opens at the third window (two of its own, unbroken).
func TestFaultWatchSwitchAndItsLink(t *testing.T) {
	w, err := NewFaultWatch(FaultConfig{})
	if err != nil {
		t.Fatal(err)
	}
	at := t0
	var conds []Condition
	for _, el := range []string{"dc1-pod2-leaf2", "dc1-pod2-leaf2--dc1-spine1", "dc1-pod2-leaf2"} {
		conds = w.Observe(at, []Culprit{{Element: el, Kind: "device", Symptom: "loss", Confidence: 0.7}})
		at = at.Add(10 * time.Second)
	}
	if len(conds) != 1 || conds[0].Labels["element"] != "dc1-pod2-leaf2" {
		t.Fatalf("conditions %+v, want the leaf's", conds)
	}
	// An unrelated element in between does break the streak.
	w, _ = NewFaultWatch(FaultConfig{})
	for _, el := range []string{"dc1-pod2-leaf2", "dc1-pod1-rack1-h01", "dc1-pod2-leaf2"} {
		conds = w.Observe(at, []Culprit{{Element: el, Kind: "device", Symptom: "loss", Confidence: 0.7}})
		at = at.Add(10 * time.Second)
	}
	if len(conds) != 0 {
		t.Fatalf("conditions %+v after a break", conds)
	}
}

func TestFaultConfigErrors(t *testing.T) {
	for _, cfg := range []FaultConfig{{MinConfidence: 1.5}, {MinConfidence: -0.1}, {Windows: -1}, {ClearWindows: -2}} {
		if _, err := NewFaultWatch(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}
