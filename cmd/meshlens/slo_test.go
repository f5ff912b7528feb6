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
	if _, _, err := runSlo(t, "lint", bad); err == nil || !strings.Contains(err.Error(), "sloth.yaml:1: version: a Sloth service spec, not a meshlens or OpenSLO SLO: convert it with meshlens slo import --from sloth "+bad) {
		t.Errorf("a Sloth file: %v", err)
	}
	pyrra := "../../internal/slo/testdata/import/pyrra-api.yaml"
	if _, _, err := runSlo(t, "lint", pyrra); err == nil || !strings.Contains(err.Error(), "pyrra-api.yaml:4: apiVersion: a Pyrra ServiceLevelObjective, not a meshlens or OpenSLO SLO: convert it with meshlens slo import --from pyrra "+pyrra) {
		t.Errorf("a Pyrra file: %v", err)
	}
}

// slo import writes documents slo lint reads, lists on stderr what did
// not map, and fails (having written the rest) when an SLO was left out.
func TestSloImport(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		from, file string
		skipped    bool
		lint       []string
		stderr     []string
	}{
		{"pyrra", "pyrra-api.yaml", false,
			[]string{"api-errors: target 99.5% over 2w, ratio, 4 alert tiers", "api-latency: target 99% over 4w, ratio, 4 alert tiers"},
			[]string{"not mapped: ../../internal/slo/testdata/import/pyrra-api.yaml:43: spec.indicator.latency.grouping: not kept: meshlens measures one ratio per SLO", "imported api-errors: target 99.5% over 2w, 4 alert tiers"}},
		{"sloth", "sloth-payments.yaml", true,
			[]string{"payments-charge-availability: target 99.9% over 30d, ratio, 4 alert tiers", "payments-refund-latency: target 99% over 30d, ratio, 2 alert tiers"},
			[]string{"not mapped: ../../internal/slo/testdata/import/sloth-payments.yaml:57: slos[2].sli.raw: SLO payments-ledger-ratio not imported"}},
	} {
		out := filepath.Join(dir, tc.from+".yaml")
		_, errOut, err := runSlo(t, "import", "--from", tc.from, "-o", out, "../../internal/slo/testdata/import/"+tc.file)
		if (err != nil) != tc.skipped || (tc.skipped && !strings.Contains(err.Error(), "1 SLO(s) of ../../internal/slo/testdata/import/"+tc.file+" not imported")) {
			t.Errorf("import %s: %v\n%s", tc.file, err, errOut)
		}
		for _, w := range tc.stderr {
			if !strings.Contains(errOut, w) {
				t.Errorf("import %s: stderr lacks %q:\n%s", tc.file, w, errOut)
			}
		}
		lint, lintErr, err := runSlo(t, "lint", out)
		if err != nil || lintErr != "" {
			t.Fatalf("lint of the imported %s: %v\n%s", tc.file, err, lintErr)
		}
		for _, w := range tc.lint {
			if !strings.Contains(lint, w) {
				t.Errorf("lint of the imported %s lacks %q:\n%s", tc.file, w, lint)
			}
		}
	}
	if _, _, err := runSlo(t, "import", "--from", "nobl9", "x.yaml"); err == nil || !strings.Contains(err.Error(), `--from "nobl9": want sloth or pyrra`) {
		t.Errorf("an unknown format: %v", err)
	}
	// Written to stdout without -o.
	stdout, _, err := runSlo(t, "import", "--from", "pyrra", "../../internal/slo/testdata/import/pyrra-gauge.yaml")
	if err == nil || !strings.HasPrefix(stdout, "# Imported by meshlens slo import --from pyrra") || !strings.Contains(stdout, "name: prober-up") {
		t.Errorf("stdout: %v\n%s", err, stdout)
	}
}

// slo lint says what a time-slice budget counts.
func TestSloLintTimeslices(t *testing.T) {
	out, errOut, err := runSlo(t, "lint", "../../internal/slo/testdata/corpus/timeslices.yaml", "../../internal/slo/testdata/corpus/ratio-timeslices.yaml")
	if err != nil || errOut != "" {
		t.Fatalf("slo lint: %v\n%s", err, errOut)
	}
	for _, want := range []string{
		"api-uptime-slices: target 99% over 30d, ratio, 5m slices good at 95%, 4 alert tiers",
		"ledger-writes: target 99% over 4w, ratio, average of 5m slices, 4 alert tiers",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("slo lint output lacks %q:\n%s", want, out)
		}
	}
}
