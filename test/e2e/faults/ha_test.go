package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshlens/meshlens/internal/slo"
	"github.com/meshlens/meshlens/internal/testkit"
	"github.com/meshlens/meshlens/test/e2e/e2eutil"
)

// handoverBound is the promise: the analyzer lease (TTL 10 s, polled
// every TTL/4) passes to a surviving server within 15 s of the leader's
// death.
const handoverBound = 15 * time.Second

const (
	haSLOName   = "ha-faulty-rack-availability"
	haFaultyToR = "dc1-pod1-rack2-tor"
)

// haServer is one `meshlens server` of a pair sharing an external bus.
type haServer struct {
	id, httpURL string
	p           *e2eutil.Process
}

// leader reads the server's meshlens_analyzer_leader gauge.
func (s *haServer) leader() (bool, error) {
	ss, err := scrape(http.DefaultClient, s.httpURL+"/metrics")
	if err != nil {
		return false, err
	}
	for _, x := range ss {
		if x.name == "meshlens_analyzer_leader" {
			return x.value == 1, nil
		}
	}
	return false, fmt.Errorf("server %s: no meshlens_analyzer_leader on /metrics", s.id)
}

// amAlert is an alert as Alertmanager's v2 API lists it.
type amAlert struct {
	Fingerprint string            `json:"fingerprint"`
	Labels      map[string]string `json:"labels"`
	UpdatedAt   time.Time         `json:"updatedAt"`
	EndsAt      time.Time         `json:"endsAt"`
	Status      struct {
		State string `json:"state"`
	} `json:"status"`
}

// sloAlerts lists every alert Alertmanager holds for meshlens SLO burns.
func sloAlerts(amURL string) ([]amAlert, error) {
	q := url.Values{"filter": {fmt.Sprintf("alertname=%q", slo.AlertName)}}
	resp, err := http.Get(amURL + "/api/v2/alerts?" + q.Encode())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("alertmanager: GET alerts: %s", resp.Status)
	}
	var out []amAlert
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("alertmanager: alerts: %w", err)
	}
	return out, nil
}

// oneActiveAlert returns the single active SLO alert, or an error if there
// is none or more than one (a duplicate under other labels).
func oneActiveAlert(amURL string) (amAlert, error) {
	alerts, err := sloAlerts(amURL)
	if err != nil {
		return amAlert{}, err
	}
	var active []amAlert
	fps := map[string]bool{}
	for _, a := range alerts {
		fps[a.Fingerprint] = true
		if a.Status.State == "active" {
			active = append(active, a)
		}
	}
	if len(fps) > 1 {
		return amAlert{}, errDuplicate{alerts}
	}
	if len(active) != 1 {
		return amAlert{}, fmt.Errorf("%d active SLO alerts in Alertmanager: %+v", len(active), alerts)
	}
	return active[0], nil
}

// errDuplicate: Alertmanager holds the one alert under several label sets.
type errDuplicate struct{ alerts []amAlert }

func (e errDuplicate) Error() string {
	return fmt.Sprintf("the SLO alert is in Alertmanager under several label sets: %+v", e.alerts)
}

// TestAnalyzerHandover: two servers (a and b) share an external three-node
// JetStream cluster, each ingesting into its own TSDB; one holds the
// analyzer lease and pages Alertmanager about a lossy ToR fed by `meshlens
// sim live`. SIGKILL of that leader hands the lease to the other within
// 15 s, and Alertmanager keeps exactly one alert, active throughout, now
// refreshed by the survivor.
func TestAnalyzerHandover(t *testing.T) {
	bin := e2eutil.Binary(t)
	dir := t.TempDir()

	// Alertmanager.
	amConf := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(amConf, []byte("route: {receiver: blackhole, group_wait: 1s}\nreceivers: [{name: blackhole}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Alertmanager does not announce its address: a port known in advance
	// (see testkit.FixedPort).
	amAddr := fmt.Sprintf("127.0.0.1:%d", testkit.FixedPort(t))
	amURL := "http://" + amAddr
	e2eutil.Require(t, "prometheus-alertmanager")
	e2eutil.Start(t, "alertmanager", nil, "prometheus-alertmanager", "--config.file="+amConf,
		"--storage.path="+filepath.Join(dir, "am"), "--web.listen-address="+amAddr, "--cluster.listen-address=")
	e2eutil.WaitHTTP(t, amURL+"/-/ready", time.Minute)

	nodes := e2eutil.StartNATSCluster(t, filepath.Join(dir, "cluster"), "meshlens-ha", nil)
	natsURLs := e2eutil.ClusterURLs(nodes)

	// Fabric, fault, SLO and alerting files.
	topoYAML, err := e2eutil.Run(t.Context(), bin, "topo", "gen", "--dcs", "1", "--pods", "1", "--racks-per-pod", "4",
		"--hosts-per-rack", "4", "--leaves-per-pod", "2", "--spines", "2")
	if err != nil {
		t.Fatalf("meshlens topo gen: %v\n%s", err, topoYAML)
	}
	topoPath := filepath.Join(dir, "topo.yaml")
	scenarioPath := filepath.Join(dir, "scenario.yaml")
	sloPath := filepath.Join(dir, "slo.yaml")
	alertingPath := filepath.Join(dir, "alerting.yaml")
	files := map[string]string{
		topoPath: topoYAML,
		scenarioPath: fmt.Sprintf(`name: ha-e2e
seed: 7
topology: {file: %q}
probing: {interval: 10s, protocols: [tcp]}
duration: 1h
background: {loss: 0, latency: {base: 40us, jitter: 20us}}
faults:
  - {kind: device_loss, device: %s, rate: 0.5}
`, topoPath, haFaultyToR),
		sloPath: fmt.Sprintf(`name: %s
target: 99.9%%
window: 7d
sli:
  probe_availability: {rack: %s}
alerting:
  min_events: 20
  tiers:
    - {name: fast, burn_rate: 14.4, long: 1m, short: 30s, severity: page}
`, haSLOName, strings.TrimSuffix(haFaultyToR, "-tor")),
		// Alertmanager keeps a firing alert for 4 resend intervals (40 s)
		// after its last refresh: longer than a handover plus the new
		// leader's first evaluation, so the page never lapses, and short
		// enough that the test sees the survivor refresh it.
		alertingPath: fmt.Sprintf("alertmanagers:\n  - {name: am, url: %q}\nresend_interval: 10s\n", amURL),
	}
	for path, data := range files {
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	servers := map[string]*haServer{}
	for _, id := range []string{"a", "b"} {
		s := &haServer{id: id}
		srv := e2eutil.StartServer(t, nil, bin, "--topology", topoPath,
			"--data-dir", filepath.Join(dir, "data-"+id),
			"--nats-url", natsURLs, "--server-id", id, "--stream-replicas", "3",
			"--window", "2s", "--lateness", "2s", "--slo", sloPath, "--slo-interval", "2s", "--alerting", alertingPath, "--log-level", "debug")
		s.p, s.httpURL = srv.Process, srv.HTTPURL
		servers[id] = s
		testkit.CheckFor(t, time.Minute, 200*time.Millisecond, func() error {
			if exited, err := s.p.Exited(); exited {
				t.Fatalf("server %s exited: %v", id, err)
			}
			return (&fabric{httpClient: http.DefaultClient}).get(s.httpURL+"/readyz", nil)
		})
	}
	sim := e2eutil.Start(t, "sim live", nil, bin, "sim", "live", scenarioPath, "--nats-url", natsURLs)

	// Each server keeps its own aggregator checkpoint on the shared bus.
	nc, err := nats.Connect(natsURLs)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	testkit.CheckFor(t, 2*time.Minute, time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		kv, err := js.KeyValue(ctx, "meshlens-state")
		if err != nil {
			return err
		}
		for _, id := range []string{"a", "b"} {
			if _, err := kv.Get(ctx, "aggregator.p0."+id); err != nil {
				return fmt.Errorf("checkpoint of server %s: %w", id, err)
			}
		}
		if _, err := kv.Get(ctx, "aggregator.p0"); err == nil {
			return fmt.Errorf("a checkpoint under the shared key aggregator.p0: servers would overwrite each other")
		}
		return nil
	})

	// The page reaches Alertmanager, once.
	var before amAlert
	testkit.CheckFor(t, 4*time.Minute, time.Second, func() error {
		for _, p := range []*e2eutil.Process{servers["a"].p, servers["b"].p, sim} {
			if exited, err := p.Exited(); exited {
				t.Fatalf("%s exited early: %v", p.Name, err)
			}
		}
		a, err := oneActiveAlert(amURL)
		if dup, ok := err.(errDuplicate); ok {
			t.Fatal(dup)
		}
		before = a
		return err
	})
	if before.Labels["slo"] != haSLOName || before.Labels["tier"] != "fast" {
		t.Fatalf("unexpected alert labels %v", before.Labels)
	}
	t.Logf("alert in Alertmanager: %v (fingerprint %s)", before.Labels, before.Fingerprint)

	// Exactly one leader.
	var leader, survivor *haServer
	testkit.CheckFor(t, 30*time.Second, 250*time.Millisecond, func() error {
		var leaders []string
		leader, survivor = nil, nil
		for _, id := range []string{"a", "b"} {
			l, err := servers[id].leader()
			if err != nil {
				return err
			}
			if l {
				leaders = append(leaders, id)
				leader = servers[id]
			} else {
				survivor = servers[id]
			}
		}
		if len(leaders) != 1 {
			return fmt.Errorf("analyzer leaders %v, want exactly one", leaders)
		}
		return nil
	})
	if !strings.Contains(leader.p.Output(), "analyzer lease won") {
		t.Fatalf("leader %s did not log winning the lease", leader.id)
	}

	// SIGKILL the leader: no clean release, the lease must expire.
	killedAt := time.Now()
	leader.p.Kill()
	t.Logf("killed server %s, the analyzer leader", leader.id)
	var handover time.Duration
	staleChecks := 0
	testkit.CheckFor(t, handoverBound, 100*time.Millisecond, func() error {
		// Meanwhile the alert stays active, one of it, same labels.
		if a, err := oneActiveAlert(amURL); err != nil {
			t.Fatalf("during the handover: %v", err)
		} else if a.Fingerprint != before.Fingerprint {
			t.Fatalf("during the handover the alert changed: %v, was %v", a.Labels, before.Labels)
		}
		staleChecks++
		l, err := survivor.leader()
		if err != nil {
			return err
		}
		if !l {
			return fmt.Errorf("server %s not leader %v after the kill", survivor.id, time.Since(killedAt))
		}
		handover = time.Since(killedAt)
		return nil
	})
	t.Logf("analyzer handover from %s to %s: %v after SIGKILL (bound %v; alert checked active %d times meanwhile)",
		leader.id, survivor.id, handover.Round(10*time.Millisecond), handoverBound, staleChecks)
	if !strings.Contains(survivor.p.Output(), "analyzer lease won") {
		t.Fatalf("survivor %s did not log winning the lease", survivor.id)
	}

	// On failure from here on, show what the survivor thinks.
	defer func() {
		if !t.Failed() {
			return
		}
		if ss, err := scrape(http.DefaultClient, survivor.httpURL+"/metrics"); err == nil {
			var b strings.Builder
			for _, x := range ss {
				if strings.HasPrefix(x.name, "meshlens_slo") || strings.HasPrefix(x.name, "meshlens_alert") || strings.HasPrefix(x.name, "meshlens_incident") {
					fmt.Fprintf(&b, "%s%s %v\n", x.name, x.labels, x.value)
				}
			}
			t.Logf("survivor %s alerting metrics:\n%s", survivor.id, b.String())
		}
	}()

	// The survivor now refreshes the very same alert.
	tookOver := killedAt.Add(handover)
	testkit.CheckFor(t, time.Minute, 250*time.Millisecond, func() error {
		a, err := oneActiveAlert(amURL)
		if err != nil {
			t.Fatalf("after the handover: %v", err)
		}
		if a.Fingerprint != before.Fingerprint {
			t.Fatalf("after the handover the alert changed: %v, was %v", a.Labels, before.Labels)
		}
		if !a.UpdatedAt.After(tookOver) {
			return fmt.Errorf("alert last updated %v, before the survivor took over at %v", a.UpdatedAt, tookOver)
		}
		return nil
	})
	// And keeps doing so: still one alert, still active, a few resends on.
	deadline := time.Now().Add(10 * time.Second)
	testkit.CheckFor(t, 30*time.Second, 500*time.Millisecond, func() error {
		a, err := oneActiveAlert(amURL)
		if err != nil {
			t.Fatalf("after the handover: %v", err)
		}
		if a.Fingerprint != before.Fingerprint {
			t.Fatalf("after the handover the alert changed: %v, was %v", a.Labels, before.Labels)
		}
		if time.Now().Before(deadline) {
			return fmt.Errorf("watching the alert until %v", deadline)
		}
		return nil
	})
	alerts, err := sloAlerts(amURL)
	if err != nil {
		t.Fatal(err)
	}
	var fps []string
	for _, a := range alerts {
		fps = append(fps, a.Fingerprint)
	}
	sort.Strings(fps)
	t.Logf("alerts in Alertmanager at the end: %d (%v)", len(alerts), fps)
}
