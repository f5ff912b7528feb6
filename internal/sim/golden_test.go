package sim

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"github.com/meshlens/meshlens/internal/analyze"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/meshlens/meshlens/internal/aggregate"
	"github.com/meshlens/meshlens/internal/localize"
)

var update = flag.Bool("update", false, "rewrite the expected verdicts of testdata/verdicts/*.txt")

// goldenSep separates a case's input scenario from its expected verdicts.
const goldenSep = "----\n"

// TestVerdictsGolden runs each testdata/verdicts file's scenario (the text
// before ----) with realistic tracing unless it says otherwise, and
// compares the localizers' verdicts, window by window, with the table
// after ----: what a reviewer reads to know what the localizer does.
// go test ./internal/sim -run VerdictsGolden -update rewrites the tables.
func TestVerdictsGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "verdicts", "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			input, want, ok := strings.Cut(string(data), goldenSep)
			if !ok && !*update {
				t.Fatalf("%s: no %q line between the scenario and its verdicts", file, strings.TrimSpace(goldenSep))
			}
			sc, err := Parse(file, []byte(input), nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := verdictTable(sc)
			if err != nil {
				t.Fatal(err)
			}
			if *update {
				if err := os.WriteFile(file, []byte(input+goldenSep+got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got != want {
				t.Errorf("%s: verdicts changed (go test ./internal/sim -run VerdictsGolden -update rewrites them)\n--- want\n%s--- got\n%s", file, want, got)
			}
		})
	}
}

// verdictTable runs sc and writes, for every window in which a localizer
// blamed anything, one line per suspect, then each fault's score.
func verdictTable(sc *Scenario) (string, error) {
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "at\tlocalizer\telement\tkind\tsymptom\testimate")
	rep, err := Run(context.Background(), sc, Options{Observe: func(at time.Duration, _ *aggregate.SealedWindow, v analyze.Verdict) {
		lz := v.Localizer
		for _, s := range v.Suspects {
			est := fmt.Sprintf("%.2f", s.Estimate)
			if s.Symptom == localize.SymptomLatency || s.Symptom == localize.SymptomAgentSlow {
				est = time.Duration(s.Estimate * 1e9).Round(100 * time.Microsecond).String()
			}
			fmt.Fprintf(tw, "%v\t%s\t%s\t%s\t%s\t%s\n", at, lz, s.Element, s.Kind, s.Symptom, est)
		}
	}})
	if err != nil {
		return "", err
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "fault\telement\tlocalizer\tlocalized after\t")
	for _, r := range rep.Results {
		for _, f := range r.Faults {
			after := "never"
			if f.Localized != nil {
				after = fmt.Sprintf("%gs", float64(*f.Localized))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", f.Kind, f.Element, r.Localizer, after)
		}
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "localizer\tF1\tfalse positives\t")
	for _, r := range rep.Results {
		fmt.Fprintf(tw, "%s\t%.2f\t%s\t\n", r.Localizer, r.F1, strings.Join(r.FalsePositives, " "))
	}
	if err := tw.Flush(); err != nil {
		return "", err
	}
	return b.String(), nil
}
