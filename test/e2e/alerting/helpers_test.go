// Package alerting holds the end-to-end tests of meshlens's SLO alerting:
// generated Prometheus rules against a real Prometheus, and alert delivery
// to a real Alertmanager (Debian's prometheus and prometheus-alertmanager
// packages, on loopback ports).
package alerting

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshlens/meshlens/internal/store"
	"github.com/meshlens/meshlens/internal/testkit"
	"github.com/meshlens/meshlens/test/e2e/e2eutil"
)

// startProcess runs a real server binary until the test ends, logging to a
// file shown when the test fails, and waits until url answers 200.
func startProcess(t *testing.T, name, readyURL string, args ...string) {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found (CI installs the Debian package): %v", name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, args...)
	logf, err := os.Create(filepath.Join(t.TempDir(), name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("%s log:\n%s", name, b)
		}
		logf.Close()
	})
	testkit.CheckFor(t, 60*time.Second, 50*time.Millisecond, func() error {
		resp, err := http.Get(readyURL)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", readyURL, resp.Status)
		}
		return nil
	})
}

// promAPI gets a Prometheus HTTP API path and decodes data into out.
func promAPI(base, path string, q url.Values, out any) error {
	resp, err := http.Get(base + path + "?" + q.Encode())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := e2eutil.DecodeProm(resp, out); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// startAlertmanager runs a real Alertmanager (routing every alert to a
// receiver that drops it: tests read its API) and returns its URL.
func startAlertmanager(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfg, []byte("route: {receiver: blackhole, group_wait: 1s}\nreceivers: [{name: blackhole}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := testkit.LoopbackAddr(t)
	startProcess(t, "prometheus-alertmanager", "http://"+addr+"/-/ready",
		"--config.file="+cfg, "--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--cluster.listen-address=")
	return "http://" + addr
}

// promServer is a real Prometheus on a loopback port that takes remote
// write and, once loadRules gave it some, evaluates rules every second.
type promServer struct {
	URL string // http://127.0.0.1:PORT
	cfg string // its configuration file, which loadRules rewrites
}

const promGlobalConfig = "global: {evaluation_interval: 1s}\n"

func startPrometheus(t *testing.T) *promServer {
	t.Helper()
	dir := t.TempDir()
	p := &promServer{cfg: filepath.Join(dir, "prometheus.yml")}
	if err := os.WriteFile(p.cfg, []byte(promGlobalConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := testkit.LoopbackAddr(t)
	p.URL = "http://" + addr
	startProcess(t, "prometheus", p.URL+"/-/ready",
		"--config.file="+p.cfg,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--web.enable-remote-write-receiver",
		"--web.enable-lifecycle",
	)
	return p
}

// remoteWritingStore opens a meshlens store in dir that also sends every
// sample to Prometheus by remote write. stop ends the sending and closes
// the store (the test's end does too): a meshlens server can then open
// dir.
func (p *promServer) remoteWritingStore(t *testing.T, dir string) (st *store.Store, stop func()) {
	t.Helper()
	st, err := store.Open(dir, store.Options{
		Registerer:  prometheus.NewRegistry(),
		RemoteWrite: store.RemoteWriteConfig{URL: p.URL + "/api/v1/write", FlushInterval: 20 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- st.Run(ctx) }()
	stop = sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("store Run: %v", err)
		}
		if err := st.Close(); err != nil {
			t.Errorf("store Close: %v", err)
		}
	})
	t.Cleanup(stop)
	return st, stop
}

// waitForSamples waits until Prometheus answers query, a count_over_time
// evaluated at at, with series series of samples samples each: the
// history written to the remote-writing store has all arrived.
func (p *promServer) waitForSamples(t *testing.T, query string, at time.Time, series, samples int) {
	t.Helper()
	testkit.CheckFor(t, 60*time.Second, 50*time.Millisecond, func() error {
		res, err := promVector(p.URL, query, at)
		if err != nil {
			return err
		}
		if len(res) != series {
			return fmt.Errorf("%d series in Prometheus, want %d", len(res), series)
		}
		for _, r := range res {
			if r.Value[1] != strconv.Itoa(samples) {
				return fmt.Errorf("a series has %v samples, want %d", r.Value[1], samples)
			}
		}
		return nil
	})
}

// loadRules gives Prometheus rule files and reloads it. Only once the
// history is in: a rule's first evaluation puts a sample at "now" in the
// head, after which Prometheus refuses samples older than an hour.
func (p *promServer) loadRules(t *testing.T, files ...string) {
	t.Helper()
	quoted := make([]string, len(files))
	for i, f := range files {
		quoted[i] = strconv.Quote(f)
	}
	if err := os.WriteFile(p.cfg, []byte(promGlobalConfig+"rule_files: ["+strings.Join(quoted, ", ")+"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(p.URL+"/-/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("reload: %s", resp.Status)
	}
}

// promSample is a sample of an instant query's answer.
type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"` // time, "value"
}

// promVector runs an instant query at at, or now if at is zero.
func promVector(base, query string, at time.Time) ([]promSample, error) {
	q := url.Values{"query": {query}}
	if !at.IsZero() {
		q.Set("time", promTime(at))
	}
	var data struct {
		Result []promSample `json:"result"`
	}
	err := promAPI(base, "/api/v1/query", q, &data)
	return data.Result, err
}

// promTime is t as the Prometheus API takes it, to the millisecond.
func promTime(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64)
}
