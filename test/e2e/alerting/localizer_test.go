package alerting

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/testkit"
	"github.com/meshlens/meshlens/test/e2e/e2eutil"
)

// TestLocalizerIncidentReachesAlertmanager: with no SLO at all, a ToR that
// goes down opens an incident of the localizer's own, named after it, and
// its alert reaches a real Alertmanager with the element, kind, symptom
// and severity as labels and a link to the element in the UI; the gauge
// says the estimate; the agents' liveness is exported; when the ToR is
// back the incident resolves.
func TestLocalizerIncidentReachesAlertmanager(t *testing.T) {
	const tor = "dc1-pod1-rack2-tor"
	dir := t.TempDir()
	amURL := startAlertmanager(t)
	files := map[string]string{
		filepath.Join(dir, "alerting.yaml"): fmt.Sprintf("alertmanagers: [{name: am, url: %q}]\nresend_interval: 5s\n", amURL),
		filepath.Join(dir, "scenario.yaml"): `name: tor-down-no-slo
seed: 5
topology: {generate: {dcs: 1, pods: 2, racks_per_pod: 2, hosts_per_rack: 4, leaves_per_pod: 2, spines: 2}}
probing: {interval: 2s, protocols: [tcp, udp]}
duration: 10m
faults:
  - {kind: device_down, device: ` + tor + `, at: 30s, until: 70s}
`,
	}
	for path, data := range files {
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin := e2eutil.Binary(t)
	topoFile := filepath.Join(dir, "topology.yaml")
	e2eutil.Topology(t, topoFile, bin, "sim", "topology", filepath.Join(dir, "scenario.yaml"))
	srv := e2eutil.StartServer(t, nil, bin, "--topology", topoFile, "--data-dir", filepath.Join(dir, "data"),
		"--window", "2s", "--lateness", "6s", "--alerting", filepath.Join(dir, "alerting.yaml"), "--external-url", "https://meshlens.example/")
	e2eutil.WaitHTTP(t, srv.HTTPURL+"/readyz", time.Minute)
	e2eutil.Start(t, "sim live", nil, bin, "sim", "live", filepath.Join(dir, "scenario.yaml"), "--nats-url", srv.NATSURL)

	type incident struct {
		ID     string `json:"id"`
		State  string `json:"state"`
		Blamed *struct {
			Element string `json:"element"`
		} `json:"blamed"`
		Alerts []map[string]string `json:"alerts"`
	}
	find := func() (*incident, error) {
		var incs struct{ Data []incident }
		if err := e2eutil.GetJSON(srv.HTTPURL+"/api/v1/incidents", &incs); err != nil {
			return nil, err
		}
		for i, inc := range incs.Data {
			if inc.Blamed != nil && inc.Blamed.Element == tor && len(inc.Alerts) > 0 && inc.Alerts[0]["alertname"] == "MeshlensFaultSuspected" {
				return &incs.Data[i], nil
			}
		}
		return nil, fmt.Errorf("no incident of the localizer's blames %s: %+v", tor, incs.Data)
	}
	testkit.CheckFor(t, 2*time.Minute, time.Second, func() error {
		_, err := find()
		return err
	})

	// In Alertmanager, with its labels and the link to the element.
	testkit.CheckFor(t, time.Minute, time.Second, func() error {
		var alerts []struct {
			Labels       map[string]string `json:"labels"`
			GeneratorURL string            `json:"generatorURL"`
		}
		if err := e2eutil.GetJSON(amURL+"/api/v2/alerts", &alerts); err != nil {
			return err
		}
		for _, a := range alerts {
			l := a.Labels
			if l["alertname"] == "MeshlensFaultSuspected" && l["element"] == tor && l["kind"] == "device" && l["symptom"] != "" && l["severity"] == "page" {
				if want := "https://meshlens.example/#/topology?focus=" + tor; a.GeneratorURL != want {
					return fmt.Errorf("generatorURL %q, want %q", a.GeneratorURL, want)
				}
				return nil
			}
		}
		return fmt.Errorf("Alertmanager holds %+v", alerts)
	})
	resp, err := http.Get(srv.HTTPURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`meshlens_fault_suspected{element="` + tor + `"`,
		// Every agent of the 16 delivers (sim live's agents seal at every
		// window boundary): liveness from their own deliveries.
		`meshlens_agents{state="up"} 16`, `meshlens_agents{state="missing"} 0`,
		`meshlens_agent_up{host="dc1-pod1-rack2-h01"} 1`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics has no %s", want)
		}
	}

	// The ToR is back at 70s: the incident resolves on its own.
	testkit.CheckFor(t, 3*time.Minute, time.Second, func() error {
		inc, err := find()
		if err != nil {
			return err
		}
		if inc.State != "resolved" {
			return fmt.Errorf("incident %s is %s", inc.ID, inc.State)
		}
		return nil
	})
}
