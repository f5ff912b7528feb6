// Package agentfield tests what an operator sees of an agent in the
// field, with the real binary against a real server and its bus: a
// mistyped --host or an unreachable bus is said within seconds, and the
// agent's /metrics, /healthz and /readyz answer a scraper.
package agentfield

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/testkit"
	"github.com/meshlens/meshlens/test/e2e/e2eutil"
)

// said is how long an agent may take to say what is wrong.
const said = 10 * time.Second

var servingRe = regexp.MustCompile(`msg="serving metrics, health and traces".* addr=(\S+)`)

// startAgent runs an agent with its metrics on a port the kernel picks,
// and returns it with its metrics URL.
func startAgent(t *testing.T, bin, name string, args ...string) (*e2eutil.Process, string) {
	t.Helper()
	args = append([]string{"agent", "--spool-dir", filepath.Join(t.TempDir(), "spool"), "--metrics-addr", "127.0.0.1:0"}, args...)
	p := e2eutil.Start(t, name, nil, bin, args...)
	var url string
	testkit.CheckFor(t, said, 20*time.Millisecond, func() error {
		if m := servingRe.FindStringSubmatch(p.Output()); m != nil {
			url = "http://" + m[1]
			return nil
		}
		if exited, err := p.Exited(); exited {
			t.Fatalf("%s exited: %v\n%s", name, err, p.Output())
		}
		return errors.New("no metrics address announced yet")
	})
	return p, url
}

func get(url string) (int, string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// waitOutput waits for every want in p's output.
func waitOutput(t *testing.T, p *e2eutil.Process, want ...string) {
	t.Helper()
	testkit.CheckFor(t, said, 20*time.Millisecond, func() error {
		for _, w := range want {
			if !strings.Contains(p.Output(), w) {
				return fmt.Errorf("%s has not said %q:\n%s", p.Name, w, p.Output())
			}
		}
		return nil
	})
}

func TestAgentInTheField(t *testing.T) {
	bin := e2eutil.Binary(t)
	topoFile := filepath.Join(t.TempDir(), "topology.yaml")
	e2eutil.Topology(t, topoFile, bin, "topo", "gen", "--pods", "1", "--racks-per-pod", "2", "--hosts-per-rack", "3")
	srv := e2eutil.StartServer(t, nil, bin, "--topology", topoFile, "--data-dir", t.TempDir())

	t.Run("unknown host", func(t *testing.T) {
		t0 := time.Now()
		a, url := startAgent(t, bin, "agent-typo", "--host", "dc1-pod1-rack1-h1", "--nats-url", srv.NATSURL)
		waitOutput(t, a, "level=ERROR", `host \"dc1-pod1-rack1-h1\" is not in the server's topology`,
			"closest names: dc1-pod1-rack1-h01, dc1-pod1-rack1-h02, dc1-pod1-rack1-h03")
		t.Logf("said after %v", time.Since(t0))
		code, body, err := get(url + "/readyz")
		if err != nil || code != http.StatusServiceUnavailable || !strings.Contains(body, "not in the server's topology") {
			t.Errorf("/readyz: %d %q %v, want 503 naming the unknown host", code, body, err)
		}
		if code, _, err := get(url + "/healthz"); err != nil || code != http.StatusOK {
			t.Errorf("/healthz: %d %v, want 200: the process is live", code, err)
		}
		_, metrics, _ := get(url + "/metrics")
		if !strings.Contains(metrics, "meshlens_agent_host_in_topology 0") {
			t.Errorf("metrics lack meshlens_agent_host_in_topology 0:\n%s", metrics)
		}
		a.Stop(t)
	})

	t.Run("bus unreachable", func(t *testing.T) {
		port := testkit.FixedPort(t, "127.0.0.1") // nothing listens there
		t0 := time.Now()
		a, url := startAgent(t, bin, "agent-nobus", "--host", "dc1-pod1-rack1-h01", "--nats-url", fmt.Sprintf("nats://127.0.0.1:%d", port))
		waitOutput(t, a, "level=WARN", "cannot reach the bus", fmt.Sprintf("url=nats://127.0.0.1:%d", port))
		t.Logf("said after %v", time.Since(t0))
		code, body, err := get(url + "/readyz")
		if err != nil || code != http.StatusServiceUnavailable || !strings.Contains(body, "bus is unreachable") {
			t.Errorf("/readyz: %d %q %v, want 503: the bus is unreachable", code, body, err)
		}
		a.Stop(t)
	})

	t.Run("known host", func(t *testing.T) {
		port := testkit.FixedPort(t, "127.0.0.1")
		a, url := startAgent(t, bin, "agent-h01", "--host", "dc1-pod1-rack1-h01", "--nats-url", srv.NATSURL,
			"--responder-addr", fmt.Sprintf("127.0.0.1:%d", port))
		waitOutput(t, a, "bus connected", "msg=pinglist")
		testkit.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
			if code, body, err := get(url + "/readyz"); err != nil || code != http.StatusOK {
				return fmt.Errorf("/readyz: %d %q %v", code, body, err)
			}
			_, metrics, err := get(url + "/metrics")
			if err != nil {
				return err
			}
			// The peers' topology addresses are not on this machine: their
			// probes fail, and are counted by the peers' class.
			for _, want := range []string{"meshlens_agent_host_in_topology 1", "meshlens_agent_bus_connected 1",
				`class="intra_rack"`, `class="intra_dc"`} {
				if !strings.Contains(metrics, want) {
					return fmt.Errorf("metrics lack %s", want)
				}
			}
			return nil
		})
		if strings.Contains(a.Output(), "not in the server's topology") {
			t.Errorf("a known host was reported unknown:\n%s", a.Output())
		}
		a.Stop(t)
	})
}
