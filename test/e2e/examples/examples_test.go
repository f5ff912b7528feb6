// Package examples checks every file under examples/ with the tool that
// reads it for real: meshlens itself (slo lint, sim run, the server
// loading the alerting and tokens files), promtool and amtool (Debian's
// prometheus and prometheus-alertmanager packages). An example that a
// tool refuses, or that no longer does what its comments say, fails here.
package examples

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/api"
	"github.com/meshlens/meshlens/internal/sim"
	"github.com/meshlens/meshlens/internal/testkit"
	"github.com/meshlens/meshlens/test/e2e/e2eutil"
)

// example is the path of a file under examples/.
func example(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(e2eutil.RepoRoot(t), "examples", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("examples/%s: %v", name, err)
	}
	return p
}

// Public example tokens (examples/tokens.yaml names them in comments).
const (
	viewerToken   = "viewer-example-token"
	operatorToken = "operator-example-token"
	adminToken    = "admin-example-token"
)

func TestSLOsLint(t *testing.T) {
	out, err := e2eutil.Run(context.Background(), e2eutil.Binary(t), "slo", "lint", example(t, "slos.yaml"))
	if err != nil {
		t.Fatalf("meshlens slo lint examples/slos.yaml: %v\n%s", err, out)
	}
	for _, name := range []string{"dc1-availability", "pod1-rack1-latency"} {
		if !strings.Contains(out, ": "+name+": ") {
			t.Errorf("slo lint did not list SLO %s:\n%s", name, out)
		}
	}
}

// TestPrometheusConfig checks prometheus.yml as the README uses it: next
// to the rules `meshlens slo rules` writes for examples/slos.yaml and the
// viewer token file it names.
func TestPrometheusConfig(t *testing.T) {
	e2eutil.Require(t, "promtool")
	dir := t.TempDir()
	for _, name := range []string{"prometheus.yml", "meshlens-viewer.token"} {
		copyFile(t, example(t, name), filepath.Join(dir, name))
	}
	rules, err := e2eutil.Run(context.Background(), e2eutil.Binary(t), "slo", "rules", example(t, "slos.yaml"))
	if err != nil {
		t.Fatalf("meshlens slo rules examples/slos.yaml: %v\n%s", err, rules)
	}
	if err := os.WriteFile(filepath.Join(dir, "meshlens-slo-rules.yaml"), []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := e2eutil.Run(context.Background(), "promtool", "check", "config", filepath.Join(dir, "prometheus.yml"))
	if err != nil {
		t.Fatalf("promtool check config examples/prometheus.yml: %v\n%s", err, out)
	}
	// The generated rules were found and checked, not skipped by the glob.
	if !strings.Contains(out, "1 rule files found") {
		t.Errorf("promtool did not check the SLO rules beside prometheus.yml:\n%s", out)
	}
}

// TestPrometheusTokenIsAViewer: the token Prometheus scrapes the server
// with is one the example tokens file gives the viewer role.
func TestPrometheusTokenIsAViewer(t *testing.T) {
	b, err := os.ReadFile(example(t, "meshlens-viewer.token"))
	if err != nil {
		t.Fatal(err)
	}
	// Prometheus trims surrounding whitespace from credentials files.
	secret := strings.TrimSpace(string(b))
	tokens, err := api.LoadTokens(example(t, "tokens.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range tokens {
		if fmt.Sprintf("%x", tok.SHA256) == api.HashToken(secret) {
			if tok.Role != api.RoleViewer {
				t.Errorf("meshlens-viewer.token is token %q of role %s, want viewer", tok.Name, tok.Role)
			}
			return
		}
	}
	t.Errorf("meshlens-viewer.token is none of examples/tokens.yaml's tokens")
}

func TestAlertmanagerConfig(t *testing.T) {
	e2eutil.Require(t, "amtool")
	cfg := example(t, "alertmanager.yml")
	out, err := e2eutil.Run(context.Background(), "amtool", "check-config", cfg)
	if err != nil {
		t.Fatalf("amtool check-config examples/alertmanager.yml: %v\n%s", err, out)
	}
	// The labels meshlens's two alerts carry, and where each must go.
	routes := []struct {
		labels   []string
		receiver string
	}{
		{[]string{"alertname=MeshlensFaultSuspected", "element=dc1-spine1", "kind=device", "symptom=loss", "severity=page"}, "netops-pager"},
		{[]string{"alertname=MeshlensFaultSuspected", "element=dc1-spine1", "kind=device", "symptom=loss", "severity=ticket"}, "netops-tickets"},
		{[]string{"alertname=MeshlensSLOBurnRate", "slo=dc1-availability", "tier=page-1h", "severity=page", "team=netops"}, "netops-pager"},
		{[]string{"alertname=MeshlensSLOBurnRate", "slo=dc1-availability", "tier=ticket-1d", "severity=info", "team=netops"}, "netops-tickets"},
		{[]string{"alertname=HostDown", "severity=page"}, "default"},
	}
	for _, r := range routes {
		args := append([]string{"config", "routes", "test", "--config.file", cfg, "--verify.receivers", r.receiver}, r.labels...)
		if out, err := e2eutil.Run(context.Background(), "amtool", args...); err != nil {
			t.Errorf("alert %v: want receiver %s: %v\n%s", r.labels, r.receiver, err, out)
		}
	}
}

// TestScenario runs the example scenario through the simulator and holds
// it to what its comments promise: both faults found and blamed, nothing
// else blamed.
func TestScenario(t *testing.T) {
	out, err := e2eutil.Run(context.Background(), e2eutil.Binary(t), "sim", "run", example(t, "scenario.yaml"), "--json")
	if err != nil {
		t.Fatalf("meshlens sim run examples/scenario.yaml: %v\n%s", err, out)
	}
	var rep sim.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("sim run --json: %v\n%s", err, out)
	}
	res := rep.Result("meshlens")
	if res == nil {
		t.Fatalf("no meshlens results in the report:\n%s", out)
	}
	if len(res.Faults) != 2 {
		t.Fatalf("report has %d faults, the scenario 2", len(res.Faults))
	}
	for _, f := range res.Faults {
		if f.Localized == nil {
			t.Errorf("%s on %s never localized (blamed: %v)", f.Kind, f.Element, f.Blamed)
		}
	}
	if len(res.FalsePositives) > 0 {
		t.Errorf("false positives: %v", res.FalsePositives)
	}
}

// TestServerLoadsExamples starts `meshlens server` with the example SLO,
// alerting and tokens files and checks each is in force: the SLOs are
// evaluated, the alerting file's remediation policy is the one served,
// and every route answers each token as its role allows.
func TestServerLoadsExamples(t *testing.T) {
	bin := e2eutil.Binary(t)
	dir := t.TempDir()
	topo := filepath.Join(dir, "fabric.yaml")
	// The README's "Try it by hand" fabric.
	e2eutil.Topology(t, topo, bin, "topo", "gen", "--dcs", "1", "--pods", "2", "--racks-per-pod", "2",
		"--hosts-per-rack", "2", "--leaves-per-pod", "2", "--spines", "2", "--base-addr", "127.1.0.1")
	args := []string{"--topology", topo, "--slo-interval", "1s",
		"--slo", example(t, "slos.yaml"), "--alerting", example(t, "alerting.yaml"), "--tokens-file", example(t, "tokens.yaml")}

	t.Run("secrets missing", func(t *testing.T) {
		// The alerting file names its secrets by variable: unset, the
		// server must refuse to start and say which.
		p := e2eutil.Start(t, "server", []string{"OPS_HOOK_SECRET=", "DRAIN_SECRET="}, bin,
			append([]string{"server", "--http-addr", "127.0.0.1:0", "--nats-addr", "127.0.0.1:-1", "--data-dir", filepath.Join(dir, "data-nosecret")}, args...)...)
		testkit.CheckFor(t, time.Minute, 50*time.Millisecond, func() error {
			if exited, _ := p.Exited(); !exited {
				return fmt.Errorf("server still running without its secrets")
			}
			return nil
		})
		for _, want := range []string{"alerting.yaml", "$OPS_HOOK_SECRET is empty or unset", "$DRAIN_SECRET is empty or unset"} {
			if !strings.Contains(p.Output(), want) {
				t.Errorf("server's refusal does not say %q:\n%s", want, p.Output())
			}
		}
	})

	s := e2eutil.StartServer(t, []string{"OPS_HOOK_SECRET=ops-secret", "DRAIN_SECRET=drain-secret"}, bin,
		append([]string{"--data-dir", filepath.Join(dir, "data")}, args...)...)
	e2eutil.WaitHTTP(t, s.HTTPURL+"/readyz", time.Minute)

	t.Run("tokens", func(t *testing.T) {
		for _, tc := range []struct {
			token, method, path string
			want                int
		}{
			{"", "GET", "/api/v1/topology", http.StatusUnauthorized}, // a tokens file closes anonymous access
			{"not-a-token", "GET", "/api/v1/topology", http.StatusUnauthorized},
			{viewerToken, "GET", "/api/v1/topology", http.StatusOK},
			{viewerToken, "GET", "/metrics", http.StatusOK},
			{viewerToken, "POST", "/api/v1/incidents/none/ack", http.StatusForbidden},
			{operatorToken, "POST", "/api/v1/incidents/none/ack", http.StatusNotFound}, // allowed; no such incident
			{operatorToken, "GET", "/api/v1/audit", http.StatusForbidden},
			{adminToken, "GET", "/api/v1/audit", http.StatusOK},
			{"", "GET", "/healthz", http.StatusOK},
		} {
			if got := do(t, tc.method, s.HTTPURL+tc.path, tc.token, nil); got != tc.want {
				t.Errorf("%s %s with token %q: %d, want %d", tc.method, tc.path, tc.token, got, tc.want)
			}
		}
	})

	t.Run("alerting", func(t *testing.T) {
		var policy struct {
			Source  string `json:"source"`
			Execute bool   `json:"execute"`
			Rules   []struct {
				Name  string   `json:"name"`
				Kinds []string `json:"kinds"`
			} `json:"rules"`
		}
		if got := do(t, "GET", s.HTTPURL+"/api/v1/config/remediation", viewerToken, &policy); got != http.StatusOK {
			t.Fatalf("GET /api/v1/config/remediation: %d", got)
		}
		if policy.Source != "alerting file" || policy.Execute || len(policy.Rules) != 1 ||
			policy.Rules[0].Name != "drain-links" || !slices.Equal(policy.Rules[0].Kinds, []string{"link"}) {
			t.Errorf("remediation policy in force is not alerting.yaml's (dry-run, drain-links on links): %+v", policy)
		}
	})

	t.Run("slos", func(t *testing.T) {
		testkit.CheckFor(t, time.Minute, 200*time.Millisecond, func() error {
			var slos []struct {
				Name string `json:"name"`
			}
			if got := do(t, "GET", s.HTTPURL+"/api/v1/slos", viewerToken, &slos); got != http.StatusOK {
				return fmt.Errorf("GET /api/v1/slos: %d", got)
			}
			var names []string
			for _, x := range slos {
				names = append(names, x.Name)
			}
			slices.Sort(names)
			if !slices.Equal(names, []string{"dc1-availability", "pod1-rack1-latency"}) {
				return fmt.Errorf("SLOs evaluated: %v, want examples/slos.yaml's two", names)
			}
			return nil
		})
	})
}

// do sends a request with a bearer token (none when empty) and returns the
// status; on 200 it decodes the envelope's data into out, when given.
func do(t *testing.T, method, url, token string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	if out != nil && resp.StatusCode == http.StatusOK {
		var env struct {
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(body, &env); err != nil {
			t.Fatalf("%s %s: %v\n%s", method, url, err, body)
		}
		if err := json.Unmarshal(env.Data, out); err != nil {
			t.Fatalf("%s %s: data: %v\n%s", method, url, err, body)
		}
	}
	return resp.StatusCode
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
