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

// TestRemediationDrainEndsBurn closes the loop with real processes only: a
// lossy leaf–spine link burns the pod's SLO, the server blames the link,
// its remediation rule posts a signed drain to `meshlens sim live
// --drain-listen` (the network controller's stand-in), the fabric routes
// around the link, and the burn — alert and incident — ends.
//
// The server runs with the default 30 s lateness: a verdict is always at
// least that old when alerting sees it, and must still name the culprit
// and be fresh enough to act on.
func TestRemediationDrainEndsBurn(t *testing.T) {
	// The server's alerting file names the drain listener before sim live
	// (which needs the server's bus) starts: a port known in advance.
	hookAddr := fmt.Sprintf("127.0.0.1:%d", testkit.FixedPort(t))
	const link = "dc1-pod1-leaf2--dc1-spine1"
	alerting := fmt.Sprintf(`remediation:
  execute: true
  max_layer_share: 50%%
  max_evidence_age: 10s
  rules:
    - name: drain-lossy-links
      kinds: [link]
      min_confidence: 0.8
      hold_down: 10m
      webhook: {url: "http://%s/drain", secret_env: E2E_DRAIN_SECRET}
`, hookAddr)
	secret := []string{"E2E_DRAIN_SECRET=not-a-real-secret-but-long-enough"}
	l := startLive(t, map[string]string{"scenario.yaml": scenario, "slos.yaml": slos, "alerting.yaml": alerting}, secret,
		func(dir string) []string {
			return []string{"--window", "2s", "--slo", filepath.Join(dir, "slos.yaml"), "--slo-interval", "2s",
				"--alerting", filepath.Join(dir, "alerting.yaml")}
		},
		"--drain-listen", hookAddr, "--drain-secret-env", "E2E_DRAIN_SECRET")
	url, simLive, dataDir := l.url, l.sim, l.dataDir

	type incident struct {
		ID     string `json:"id"`
		State  string `json:"state"`
		Blamed *struct {
			Element string `json:"element"`
		} `json:"blamed"`
		Timeline []struct {
			Kind   string `json:"kind"`
			Detail string `json:"detail"`
		} `json:"timeline"`
	}
	var incidents struct {
		Data []incident `json:"data"`
	}
	blamesLink := func(inc incident) bool {
		return inc.Blamed != nil && strings.Contains(inc.Blamed.Element, "dc1-pod1-leaf2") && strings.Contains(inc.Blamed.Element, "dc1-spine1")
	}
	var id string
	testkit.CheckFor(t, 3*time.Minute, time.Second, func() error {
		if err := e2eutil.GetJSON(url+"/api/v1/incidents", &incidents); err != nil {
			return err
		}
		for _, inc := range incidents.Data {
			if blamesLink(inc) {
				id = inc.ID
				return nil
			}
		}
		return fmt.Errorf("no incident blames %s: %+v", link, incidents.Data)
	})

	// The rule drained it, through the signed webhook.
	var decisions struct {
		Data []struct {
			Element string `json:"element"`
			Action  string `json:"action"`
			Taken   bool   `json:"taken"`
			Reason  string `json:"reason"`
		} `json:"data"`
	}
	testkit.CheckFor(t, time.Minute, time.Second, func() error {
		if err := e2eutil.GetJSON(url+"/api/v1/remediations", &decisions); err != nil {
			return err
		}
		for _, d := range decisions.Data {
			if d.Action == "drain" && d.Taken && strings.Contains(d.Element, "dc1-pod1-leaf2") {
				return nil
			}
		}
		return fmt.Errorf("no drain taken: %+v", decisions.Data)
	})
	testkit.CheckFor(t, 30*time.Second, time.Second, func() error {
		if !strings.Contains(simLive.Output(), "routing around drained elements") || !strings.Contains(simLive.Output(), link) {
			return fmt.Errorf("sim live does not route around %s yet", link)
		}
		return nil
	})

	// With the link out of the paths, the burn stops: the incident
	// resolves, its timeline showing the mitigation.
	var inc incident
	testkit.CheckFor(t, 3*time.Minute, 2*time.Second, func() error {
		if err := e2eutil.GetJSON(url+"/api/v1/incidents/"+id, &struct{ Data *incident }{&inc}); err != nil {
			return err
		}
		if inc.State != "resolved" {
			return fmt.Errorf("incident %s is %s", id, inc.State)
		}
		return nil
	})
	var kinds []string
	for _, e := range inc.Timeline {
		kinds = append(kinds, e.Kind)
	}
	if !strings.Contains(strings.Join(kinds, ","), "mitigation") {
		t.Errorf("timeline %v has no mitigation", kinds)
	}
	audit, err := os.ReadFile(filepath.Join(dataDir, "remediation-audit.jsonl"))
	if err != nil || !strings.Contains(string(audit), `"taken":true`) {
		t.Errorf("remediation audit log: %v\n%s", err, audit)
	}
}
