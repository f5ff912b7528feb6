package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/testkit"
	"github.com/meshlens/meshlens/internal/topology"
)

// runCommand runs `meshlens ARGS...` in this process until the test ends.
func runCommand(t *testing.T, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	root := newRootCmd()
	root.SetArgs(args)
	go func() { done <- root.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("meshlens %s: %v", args[0], err)
		}
	})
}

// scrape GETs url until it answers 200 with every one of want in it.
func scrape(t *testing.T, url string, want ...string) string {
	t.Helper()
	var body string
	testkit.CheckFor(t, 60*time.Second, 50*time.Millisecond, func() error {
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", url, resp.Status)
		}
		body = string(b)
		for _, w := range want {
			if !strings.Contains(body, w) {
				return fmt.Errorf("%s: no %q yet", url, w)
			}
		}
		return nil
	})
	return body
}

var typeLine = regexp.MustCompile(`(?m)^# TYPE (meshlens_[a-z0-9_]+) `)

// TestSelfMetrics scrapes a real server and a real agent probing through
// it: promtool check metrics finds nothing to say about either, and every
// meshlens_ family they export is in docs/metrics.md.
func TestSelfMetrics(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (CI installs the Debian prometheus package): %v", err)
	}
	dir := t.TempDir()
	topo, err := topology.Generate(topology.GenSpec{DCs: 1, Pods: 1, RacksPerPod: 2, HostsPerRack: 1, LeavesPerPod: 1, Spines: 1})
	if err != nil {
		t.Fatal(err)
	}
	data, err := topo.MarshalYAML()
	if err != nil {
		t.Fatal(err)
	}
	topoFile := filepath.Join(dir, "topology.yaml")
	if err := os.WriteFile(topoFile, data, 0o644); err != nil {
		t.Fatal(err)
	}
	httpAddr, natsAddr, agentAddr := testkit.LoopbackAddr(t), testkit.LoopbackAddr(t), testkit.LoopbackAddr(t)
	runCommand(t, "server", "--log-level=error", "--topology", topoFile, "--data-dir", filepath.Join(dir, "data"),
		"--http-addr", httpAddr, "--nats-addr", natsAddr, "--window=1s", "--lateness=2s")
	scrape(t, "http://"+httpAddr+"/readyz")
	host := topo.Hosts[0].Name
	runCommand(t, "agent", "--log-level=error", "--host", host, "--nats-url", "nats://"+natsAddr,
		"--spool-dir", filepath.Join(dir, "spool"), "--responder-addr", "127.0.0.1:0", "--metrics-addr", agentAddr, "--batch-max-age=1s")

	// The series the server wrote (the agent's probes of its peer, which
	// runs no agent, are lost) are all described by /api/v1/metadata.
	var md struct {
		Data map[string][]struct{ Type, Help string } `json:"data"`
	}
	testkit.CheckFor(t, 60*time.Second, 100*time.Millisecond, func() error {
		body := scrape(t, "http://"+httpAddr+"/api/v1/metadata")
		if err := json.Unmarshal([]byte(body), &md); err != nil {
			return err
		}
		if _, ok := md.Data["meshlens_rack_pair_probes_total"]; !ok {
			return fmt.Errorf("no rack-pair counter yet: %s", body)
		}
		return nil
	})
	for family, m := range md.Data {
		if len(m) != 1 || m[0].Type == "unknown" || m[0].Help == "" {
			t.Errorf("/api/v1/metadata: %s: %+v", family, m)
		}
	}

	docs, err := os.ReadFile(filepath.Join("..", "..", "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, url string
		want      []string // families that show the component at work
	}{
		{"agent", "http://" + agentAddr + "/metrics", []string{"meshlens_agent_probes_total{", "meshlens_agent_batches_published_total 1"}},
		{"server", "http://" + httpAddr + "/metrics", []string{"meshlens_ingest_batches_total{", `meshlens_agents{state="up"} 1`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := scrape(t, tc.url, tc.want...)
			cmd := exec.Command(promtool, "check", "metrics")
			cmd.Stdin = strings.NewReader(body)
			out, err := cmd.CombinedOutput()
			var findings []string
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				// The embedded TSDB's and PromQL engine's own series keep
				// Prometheus's names, which its linter refuses too
				// (prometheus_engine_query_duration_histogram_seconds):
				// dashboards for Prometheus read them as they are.
				if line != "" && !strings.HasPrefix(line, "prometheus_") {
					findings = append(findings, line)
				}
			}
			if len(findings) > 0 || err != nil && len(findings) == 0 && !strings.Contains(string(out), "prometheus_") {
				t.Errorf("promtool check metrics on the %s's /metrics: %v\n%s", tc.name, err, strings.Join(findings, "\n"))
			}
			var undocumented []string
			for _, m := range typeLine.FindAllStringSubmatch(body, -1) {
				if !documented(string(docs), m[1]) {
					undocumented = append(undocumented, m[1])
				}
			}
			if len(undocumented) > 0 {
				t.Errorf("the %s exports families docs/metrics.md does not list: %s", tc.name, strings.Join(undocumented, ", "))
			}
		})
	}
}

// documented: docs names the family in backquotes, alone or with one of
// its series' suffixes.
func documented(docs, family string) bool {
	for _, name := range []string{family, family + "_bucket", family + "_count", family + "_sum"} {
		if strings.Contains(docs, "`"+name+"`") {
			return true
		}
	}
	return false
}
