// Package simlive is the end-to-end test of localization on the live data
// path: a real meshlens server, and `meshlens sim live` publishing a
// synthetic fabric with a lossy link over the real bus, batches and path
// reports alike. The server must blame the link through its API, and the
// SLO on the faulty pod must open an incident naming it.
package simlive

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/testkit"
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

// live is a real server on a scenario's topology, fed by `meshlens sim
// live` over the real bus.
type live struct {
	url, dir, dataDir string
	sim               *e2eutil.Process
}

// startLive writes files (scenario.yaml and the rest) into a new directory,
// starts the server on the scenario's topology with serverArgs (paths
// relative to that directory are the caller's to join) and then sim live
// with simArgs; env is given to both.
func startLive(t *testing.T, files map[string]string, env []string, serverArgs func(dir string) []string, simArgs ...string) *live {
	t.Helper()
	bin := e2eutil.Binary(t)
	l := &live{dir: t.TempDir()}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(l.dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	scFile := filepath.Join(l.dir, "scenario.yaml")
	topoFile := filepath.Join(l.dir, "topology.yaml")
	e2eutil.Topology(t, topoFile, bin, "sim", "topology", scFile)
	l.dataDir = filepath.Join(l.dir, "data")
	args := append([]string{"--topology", topoFile, "--data-dir", l.dataDir}, serverArgs(l.dir)...)
	srv := e2eutil.StartServer(t, env, bin, args...)
	l.url = srv.HTTPURL
	e2eutil.WaitHTTP(t, l.url+"/readyz", time.Minute)
	l.sim = e2eutil.Start(t, "sim live", env, bin, append([]string{"sim", "live", scFile, "--nats-url", srv.NATSURL}, simArgs...)...)
	return l
}

func TestSimLiveFaultIsLocalizedAndPaged(t *testing.T) {
	l := startLive(t, map[string]string{"scenario.yaml": scenario, "slos.yaml": slos}, nil, func(dir string) []string {
		return []string{"--window", "2s", "--lateness", "2s", "--slo", filepath.Join(dir, "slos.yaml"), "--slo-interval", "2s"}
	})
	url := l.url
	started := time.Now()

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
	testkit.CheckFor(t, time.Minute, time.Second, func() error {
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
	testkit.CheckFor(t, 2*time.Minute, time.Second, func() error {
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
	testkit.CheckFor(t, 2*time.Minute, time.Second, func() error {
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
