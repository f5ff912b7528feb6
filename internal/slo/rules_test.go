package slo

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRulesPassPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (CI installs the Debian prometheus package): %v", err)
	}
	slos, err := Load("testdata/fabric.yaml", "testdata/openslo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, err := GenerateRules(slos, RulesOptions{Interval: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(p, out, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(promtool, "check", "rules", p)
	msg, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s\n--- rules:\n%s", err, msg, out)
	}
	// 4 SLOs; dc1 has 4 tiers (7 windows), rack-latency 3 tiers (6
	// windows), checkout 1 tier (2 windows), api 4 tiers (7 windows).
	if !strings.Contains(string(msg), "SUCCESS: 4") {
		t.Logf("promtool: %s", msg)
	}
	if n := strings.Count(string(out), "alert: "+AlertName); n != 12 {
		t.Errorf("%d alerts, want 12", n)
	}
}
