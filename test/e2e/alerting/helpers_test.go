// Package alerting holds the end-to-end tests of meshlens's SLO alerting:
// generated Prometheus rules against a real Prometheus, and alert delivery
// to a real Alertmanager (Debian's prometheus and prometheus-alertmanager
// packages, on loopback ports).
package alerting

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/testkit"
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
	var body struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if body.Status != "success" {
		return fmt.Errorf("%s: %s", path, body.Error)
	}
	return json.Unmarshal(body.Data, out)
}
