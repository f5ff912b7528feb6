// Package simlive is the end-to-end test of localization on the live data
// path: a real meshlens server, and `meshlens sim live` publishing a
// synthetic fabric with a lossy link over the real bus, batches and path
// reports alike. The server must blame the link through its API, and the
// SLO on the faulty pod must open an incident naming it.
package simlive

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/test/e2e/e2eutil"
)

const scenario = `name: e2e-lossy-uplink
seed: 11
topology: {generate: {dcs: 1, pods: 2, racks_per_pod: 4, hosts_per_rack: 8, leaves_per_pod: 2, spines: 2}}
probing: {interval: 2s, protocols: [tcp, udp]}
duration: 10m
background: {loss: 0.00001, latency: {base: 40us, jitter: 20us}}
faults:
  - {kind: link_loss, link: "dc1-pod1-leaf2--dc1-spine1", rate: 0.3, at: 20s}
`

const slos = `name: pod1-availability
target: 99.9%
window: 7d
sli:
  probe_availability: {pod: dc1-pod1}
alerting:
  min_events: 50
  tiers:
    - {name: fast, burn_rate: 14.4, long: 1m, short: 10s, severity: page}
`

func TestSimLiveFaultIsLocalizedAndPaged(t *testing.T) {
	bin := e2eutil.Binary(t)
	dir := t.TempDir()
	scFile := filepath.Join(dir, "scenario.yaml")
	sloFile := filepath.Join(dir, "slos.yaml")
	for f, data := range map[string]string{scFile: scenario, sloFile: slos} {
		if err := os.WriteFile(f, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	topo, err := e2eutil.Run(context.Background(), bin, "sim", "topology", scFile)
	if err != nil {
		t.Fatalf("sim topology: %v\n%s", err, topo)
	}
	topoFile := filepath.Join(dir, "topology.yaml")
	if err := os.WriteFile(topoFile, []byte(topo), 0o644); err != nil {
		t.Fatal(err)
	}
	httpAddr := fmt.Sprintf("127.0.0.1:%d", e2eutil.FreePort(t))
	natsAddr := fmt.Sprintf("127.0.0.1:%d", e2eutil.FreePort(t))
	e2eutil.Start(t, "server", nil, bin, "server", "--topology", topoFile, "--data-dir", filepath.Join(dir, "data"),
		"--http-addr", httpAddr, "--nats-addr", natsAddr, "--window", "2s", "--lateness", "2s",
		"--slo", sloFile, "--slo-interval", "2s")
	url := "http://" + httpAddr
	e2eutil.WaitHTTP(t, url+"/readyz", time.Minute)
	started := time.Now()
	e2eutil.Start(t, "sim live", nil, bin, "sim", "live", scFile, "--nats-url", "nats://"+natsAddr)

	// Before the fault: nothing blamed.
	var verdict struct {
		Data struct {
			End      time.Time `json:"end"`
			Suspects []struct {
				Element string `json:"element"`
				Symptom string `json:"symptom"`
			} `json:"suspects"`
		} `json:"data"`
	}
	e2eutil.Eventually(t, time.Minute, time.Second, func() error {
		if err := e2eutil.GetJSON(url+"/api/v1/suspects", &verdict); err != nil {
			return err
		}
		if verdict.Data.End.IsZero() {
			return fmt.Errorf("no window localized yet")
		}
		return nil
	})
	if time.Since(started) < 15*time.Second && len(verdict.Data.Suspects) > 0 {
		t.Errorf("blamed %v before any fault", verdict.Data.Suspects)
	}

	// After it: the link (either direction) is blamed.
	e2eutil.Eventually(t, 2*time.Minute, time.Second, func() error {
		if err := e2eutil.GetJSON(url+"/api/v1/suspects", &verdict); err != nil {
			return err
		}
		for _, s := range verdict.Data.Suspects {
			if strings.Contains(s.Element, "dc1-pod1-leaf2") && strings.Contains(s.Element, "dc1-spine1") {
				return nil
			}
		}
		return fmt.Errorf("suspects %+v do not name dc1-pod1-leaf2--dc1-spine1", verdict.Data.Suspects)
	})
	t.Logf("blamed %+v %v after the sim started", verdict.Data.Suspects, time.Since(started).Round(time.Second))

	// And the pod's SLO page opened an incident with that culprit.
	var incidents struct {
		Data []struct {
			ID     string `json:"id"`
			Blamed *struct {
				Element string `json:"element"`
			} `json:"blamed"`
		} `json:"data"`
	}
	e2eutil.Eventually(t, 2*time.Minute, time.Second, func() error {
		if err := e2eutil.GetJSON(url+"/api/v1/incidents", &incidents); err != nil {
			return err
		}
		for _, inc := range incidents.Data {
			if inc.Blamed != nil && strings.Contains(inc.Blamed.Element, "dc1-pod1-leaf2") {
				return nil
			}
		}
		return fmt.Errorf("incidents %+v", incidents.Data)
	})
}
