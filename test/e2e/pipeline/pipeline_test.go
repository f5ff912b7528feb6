// Package pipeline is the end-to-end test of the core data path with real
// processes: a meshlens server (embedded NATS, controller, aggregator,
// TSDB, API) and one real agent per host, each on its own loopback
// address, probing each other over TCP and UDP. Rollups are read back with
// Prometheus's own promtool and through the JSON API.
package pipeline

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/testkit"
	"github.com/meshlens/meshlens/test/e2e/e2eutil"
)

type fabric struct {
	bin, dir, topoFile string
	httpURL, natsURL   string // set by startServer, as the server bound them
	hosts              []string
}

func newFabric(t *testing.T, base string) *fabric {
	t.Helper()
	f := &fabric{bin: e2eutil.Binary(t), dir: t.TempDir()}
	f.topoFile = filepath.Join(f.dir, "fabric.yaml")
	// Every agent binds the responder port on its own address from base:
	// it must be known before they start (see testkit.FixedPort).
	topo := e2eutil.Topology(t, f.topoFile, f.bin, "topo", "gen", "--dcs", "1", "--pods", "2", "--racks-per-pod", "2",
		"--hosts-per-rack", "3", "--leaves-per-pod", "2", "--spines", "2", "--base-addr", base,
		"--responder-port", strconv.Itoa(testkit.FixedPort(t, base)))
	for _, h := range topo.Hosts {
		f.hosts = append(f.hosts, h.Name)
	}
	if len(f.hosts) != 12 {
		t.Fatalf("generated %d hosts, want 12", len(f.hosts))
	}
	return f
}

func (f *fabric) startServer(t *testing.T, extra ...string) *e2eutil.Server {
	s := e2eutil.StartServer(t, nil, f.bin, append([]string{"--topology", f.topoFile, "--data-dir", filepath.Join(f.dir, "data"),
		"--window", "2s", "--lateness", "2s", "--probe-interval", "1s", "--probe-timeout", "500ms", "--log-level", "debug"}, extra...)...)
	f.httpURL, f.natsURL = s.HTTPURL, s.NATSURL
	e2eutil.WaitHTTP(t, f.httpURL+"/readyz", time.Minute)
	return s
}

func (f *fabric) startAgents(t *testing.T) {
	for _, h := range f.hosts {
		e2eutil.Start(t, "agent "+h, nil, f.bin, "agent", "--host", h, "--nats-url", f.natsURL,
			"--spool-dir", filepath.Join(f.dir, "spool", h), "--batch-max-age", "1s")
	}
}

// promtool runs Prometheus's promtool against the server.
func (f *fabric) promtool(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return e2eutil.Run(context.Background(), "promtool", append([]string{"query"}, args...)...)
}

func TestAgentsToRollups(t *testing.T) {
	e2eutil.Require(t, "promtool")
	f := newFabric(t, "127.3.0.1")
	// A service every agent probes with GET: one series per prober.
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") }))
	t.Cleanup(web.Close)
	server := f.startServer(t, "--http-target", "web="+web.URL+"/")
	f.startAgents(t)

	// 4 racks: every ordered rack pair (4 within a rack, 12 across) is
	// probed over tcp and udp, so 32 rack-pair loss series must appear.
	var lastOut string
	testkit.CheckFor(t, 2*time.Minute, time.Second, func() error {
		out, err := f.promtool(t, "instant", f.httpURL, `count(meshlens_rack_pair_loss_ratio)`)
		lastOut = out
		if err != nil {
			return fmt.Errorf("promtool: %v: %s", err, out)
		}
		if !strings.Contains(out, "=> 32 @") {
			return fmt.Errorf("rack-pair loss series: %s", out)
		}
		return nil
	})
	t.Logf("promtool: %s", lastOut)

	// Loopback loses nothing once every agent's responder is up (probes
	// sent before a peer started are rightly lost), and answers in well
	// under 100 ms at p99.
	testkit.CheckFor(t, time.Minute, time.Second, func() error {
		out, err := f.promtool(t, "instant", f.httpURL, `max(meshlens_rack_pair_loss_ratio)`)
		if err != nil || !strings.Contains(out, "=> 0 @") {
			return fmt.Errorf("loss on loopback: %v %s", err, out)
		}
		return nil
	})
	var out string
	var err error
	out, err = f.promtool(t, "instant", f.httpURL, `max(meshlens_rack_pair_latency_seconds{quantile="0.99"}) < 0.1`)
	if err != nil || !strings.Contains(out, "=>") {
		t.Errorf("p99 latency on loopback not below 100ms: %v %s", err, out)
	}
	testkit.CheckFor(t, time.Minute, time.Second, func() error {
		out, err := f.promtool(t, "instant", f.httpURL, `count(meshlens_target_probes_total{target="web",host=~".+"})`)
		if err != nil || !strings.Contains(out, fmt.Sprintf("=> %d @", len(f.hosts))) {
			return fmt.Errorf("target series, want one per host: %v %s", err, out)
		}
		return nil
	})
	for _, q := range []string{`count(meshlens_pod_pair_loss_ratio)`, `count(meshlens_dc_pair_latency_seconds{quantile="0.999"})`, `count(meshlens_host_loss_ratio)`} {
		out, err := f.promtool(t, "instant", f.httpURL, q)
		if err != nil || !strings.Contains(out, "=>") || strings.Contains(out, "=> 0 @") {
			t.Errorf("%s: %v %s", q, err, out)
		}
	}

	// The JSON API has the pair detail and every agent up.
	var pairs struct {
		Data []struct {
			Proto     string  `json:"proto"`
			Sent      uint64  `json:"sent"`
			Lost      uint64  `json:"lost"`
			P99       float64 `json:"p99_seconds"`
			LossRatio float64 `json:"loss_ratio"`
		} `json:"data"`
	}
	// Windows are sealed as soon as every agent has marked them, so the
	// rack pairs above can all be in before this one host pair has been
	// probed over both protocols in a sealed window: wait for it.
	src, dst := f.hosts[0], f.hosts[1]
	testkit.CheckFor(t, time.Minute, time.Second, func() error {
		if err := e2eutil.GetJSON(f.httpURL+"/api/v1/pairs?src="+src+"&dst="+dst, &pairs); err != nil {
			return err
		}
		seen := map[string]uint64{}
		for _, w := range pairs.Data {
			seen[w.Proto] += w.Sent
		}
		if seen["tcp"] == 0 || seen["udp"] == 0 {
			return fmt.Errorf("pair %s->%s: probes per protocol %v", src, dst, seen)
		}
		return nil
	})
	// A window whose probes were all lost has no latency (a peer's
	// responder may start a moment after the first probe to it).
	for _, w := range pairs.Data {
		if w.Sent > w.Lost && (w.P99 <= 0 || w.P99 > 0.1) {
			t.Errorf("pair window %+v: implausible p99", w)
		}
	}
	var agents struct {
		Data []struct {
			Host   string `json:"host"`
			State  string `json:"state"`
			Probes uint64 `json:"probes_total"`
		} `json:"data"`
	}
	if err := e2eutil.GetJSON(f.httpURL+"/api/v1/agents", &agents); err != nil {
		t.Fatal(err)
	}
	if len(agents.Data) != len(f.hosts) {
		t.Fatalf("%d agents listed, want %d", len(agents.Data), len(f.hosts))
	}
	for _, a := range agents.Data {
		if a.State != "up" || a.Probes == 0 {
			t.Errorf("agent %+v", a)
		}
	}

	// A restart on the same data dir keeps the history.
	rangeQuery := func() (string, error) {
		return f.promtool(t, "range", "--start", strconv.FormatInt(time.Now().Add(-5*time.Minute).Unix(), 10),
			"--end", strconv.FormatInt(time.Now().Unix(), 10), "--step", "2s", f.httpURL, `count(meshlens_rack_pair_loss_ratio)`)
	}
	var before string
	testkit.CheckFor(t, time.Minute, time.Second, func() error {
		before, err = rangeQuery()
		if err != nil {
			return fmt.Errorf("range query: %v %s", err, before)
		}
		if n := strings.Count(before, "@["); n < 5 {
			return fmt.Errorf("range query has %d points, want 5", n)
		}
		return nil
	})
	server.Stop(t)
	if exited, err := server.Exited(); !exited || err != nil {
		t.Fatalf("server did not exit cleanly on SIGTERM: exited=%v err=%v", exited, err)
	}
	f.startServer(t, "--http-target", "web="+web.URL+"/")
	testkit.CheckFor(t, time.Minute, time.Second, func() error {
		after, err := rangeQuery()
		if err != nil {
			return fmt.Errorf("%v %s", err, after)
		}
		// Every point seen before the restart is still there.
		for _, line := range strings.Split(before, "\n") {
			if strings.Contains(line, "@[") && !strings.Contains(after, strings.TrimSpace(line)) {
				return fmt.Errorf("history point %q lost across restart", line)
			}
		}
		return nil
	})
}
