// Package tsdbtest starts real Prometheus-compatible TSDBs for tests: the
// Debian builds of Prometheus and VictoriaMetrics that CI installs, on a
// loopback port of their own, with a data directory that dies with the test.
//
// Only tests import it. It imports nothing of meshlens but testkit.
package tsdbtest

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/testkit"
)

// Binaries of the Debian packages prometheus and victoria-metrics.
const (
	PrometheusBin      = "/usr/bin/prometheus"
	VictoriaMetricsBin = "/usr/bin/victoria-metrics"
)

// startTimeout bounds how long a TSDB may take to answer its readiness
// endpoint: a loaded CI machine replays nothing here, but still starts slowly.
const startTimeout = 30 * time.Second

// prometheusConfig scrapes nothing. The out-of-order window lets late
// rollups land, as the embedded store allows them, and lets a retried
// remote write re-send samples older than the series' newest one: without
// it Prometheus answers 400 to any such re-send.
const prometheusConfig = `global: {scrape_interval: 1m}
storage: {tsdb: {out_of_order_time_window: 1h}}
`

// StartPrometheus starts Prometheus with its remote-write receiver
// (/api/v1/write) and returns its base URL, http://127.0.0.1:PORT.
// extraFlags are appended to the command line.
func StartPrometheus(t testing.TB, extraFlags ...string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(prometheusConfig), 0o600); err != nil {
		t.Fatalf("tsdbtest: write prometheus config: %v", err)
	}
	addr := testkit.LoopbackAddr(t)
	args := append([]string{
		"--config.file=" + cfg,
		"--storage.tsdb.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=" + addr,
		"--web.enable-remote-write-receiver",
	}, extraFlags...)
	url := "http://" + addr
	start(t, "prometheus", PrometheusBin, args, dir, url+"/-/ready")
	return url
}

// StartVictoriaMetrics starts single-node VictoriaMetrics and returns its
// base URL, http://127.0.0.1:PORT; it takes remote writes at /api/v1/write.
// Samples are visible to queries as soon as they are written (no latency
// offset, no response cache), and any timestamp is inside retention.
func StartVictoriaMetrics(t testing.TB, extraFlags ...string) string {
	t.Helper()
	dir := t.TempDir()
	addr := testkit.LoopbackAddr(t)
	args := append([]string{
		"-storageDataPath=" + filepath.Join(dir, "data"),
		"-httpListenAddr=" + addr,
		"-retentionPeriod=100y",
		"-search.latencyOffset=0s",
		"-search.disableCache",
	}, extraFlags...)
	url := "http://" + addr
	start(t, "victoria-metrics", VictoriaMetricsBin, args, dir, url+"/health")
	return url
}

// start runs bin with its output in dir/name.log, waits until readyURL
// answers 200, and ends the process in t.Cleanup, printing the log when
// the test failed.
func start(t testing.TB, name, bin string, args []string, dir, readyURL string) {
	t.Helper()
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("tsdbtest: %s not installed (CI installs the Debian package): %v", name, err)
	}
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("tsdbtest: %v", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("tsdbtest: start %s: %v", name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		// Registered before the TempDir cleanup of dir runs (cleanups run
		// last-in first-out), so the process is gone before its files are.
		stop(t, name, cmd.Process.Pid, exited)
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("%s log:\n%s", name, b)
		}
	})
	client := &http.Client{Timeout: time.Second}
	testkit.CheckFor(t, startTimeout, 20*time.Millisecond, func() error {
		select {
		case err := <-exited:
			exited <- err // for stop
			return fmt.Errorf("%s exited before it was ready: %v", name, err)
		default:
		}
		resp, err := client.Get(readyURL)
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

// stop ends the process by its pid: SIGTERM for a clean shutdown, SIGKILL
// when it does not exit in time.
func stop(t testing.TB, name string, pid int, exited chan error) {
	_ = syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-exited:
		return
	case <-time.After(10 * time.Second):
	}
	t.Logf("tsdbtest: %s (pid %d) ignored SIGTERM; killing it", name, pid)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	<-exited
}

// FlushVictoriaMetrics makes every sample VictoriaMetrics at url has taken
// searchable now, instead of within a few seconds: a test can then read
// right after it writes, and know that what it reads is everything.
func FlushVictoriaMetrics(t testing.TB, url string) {
	t.Helper()
	resp, err := http.Get(url + "/internal/force_flush")
	if err != nil {
		t.Fatalf("tsdbtest: flush victoria-metrics: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("tsdbtest: flush victoria-metrics: %s", resp.Status)
	}
}
