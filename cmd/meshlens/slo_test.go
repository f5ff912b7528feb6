package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runSlo runs `meshlens slo ARGS...` in-process.
func runSlo(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := newSloCmd()
	var o, e bytes.Buffer
	cmd.SetOut(&o)
	cmd.SetErr(&e)
	cmd.SetArgs(args)
	err = cmd.Execute()
	return o.String(), e.String(), err
}

func TestSloLintAndRules(t *testing.T) {
	corpus, err := filepath.Glob("../../internal/slo/testdata/openslo/*.yaml")
	if err != nil || len(corpus) == 0 {
		t.Fatalf("corpus: %v %v", corpus, err)
	}
	out, errOut, err := runSlo(t, append([]string{"lint"}, corpus...)...)
	if err != nil {
		t.Fatalf("slo lint: %v\n%s", err, errOut)
	}
	for _, want := range []string{
		"billing-monthly: target 99.5% over calendar 1M from 2024-01-15 00:00 UTC, ratio, 4 alert tiers",
		"search-latency-weekly: target 99.5% over calendar 1w from 2024-01-01 00:00 EST, ratio, 4 alert tiers",
		"checkout-availability: target 99% over 1d, ratio, 1 alert tiers",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("slo lint output lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(errOut, "warning: "); n != 4 || !strings.Contains(errOut, `AlertNotificationTarget "payments-pager" ignored`) {
		t.Errorf("%d warnings on stderr:\n%s", n, errOut)
	}

	// slo lint passing means promtool check rules passes.
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	if _, errOut, err := runSlo(t, append([]string{"rules", "-o", rules, "--interval", "1m"}, corpus...)...); err != nil {
		t.Fatalf("slo rules: %v\n%s", err, errOut)
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (CI installs the Debian prometheus package): %v", err)
	}
	if msg, err := exec.Command(promtool, "check", "rules", rules).CombinedOutput(); err != nil {
		b, _ := os.ReadFile(rules)
		t.Fatalf("promtool check rules: %v\n%s\n%s", err, msg, b)
	}

	bad := filepath.Join(t.TempDir(), "sloth.yaml")
	if err := os.WriteFile(bad, []byte("version: prometheus/v1\nservice: api\nslos: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runSlo(t, "lint", bad); err == nil || !strings.Contains(err.Error(), "sloth.yaml:1: a Sloth SLO spec") {
		t.Errorf("a Sloth file: %v", err)
	}
}
