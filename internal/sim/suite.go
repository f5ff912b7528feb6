package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"sync"
	"text/tabwriter"
)

// Scenario classes of a suite: targets differ by class.
const (
	ClassFaultFree = "fault-free"
	ClassSingle    = "single-fault"
	ClassMulti     = "multi-fault"
)

// Class of a scenario by its number of faults.
func Class(sc *Scenario) string {
	switch len(sc.Faults) {
	case 0:
		return ClassFaultFree
	case 1:
		return ClassSingle
	}
	return ClassMulti
}

// RunSuite runs every scenario file matching pattern, workers at a time
// (at least one), and returns their reports with their classes in file
// order. The first error stops the suite.
func RunSuite(ctx context.Context, pattern string, opts Options, workers int) ([]SuiteEntry, error) {
	files, err := filepath.Glob(pattern)
	if err != nil {
		return nil, fmt.Errorf("sim: suite %q: %w", pattern, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("sim: suite %q: no scenario files", pattern)
	}
	sort.Strings(files)
	scenarios := make([]*Scenario, len(files))
	for i, f := range files {
		if scenarios[i], err = Load(f); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := make([]SuiteEntry, len(files))
	errs := make([]error, len(files))
	next := make(chan int)
	var wg sync.WaitGroup
	for range max(workers, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				rep, err := Run(ctx, scenarios[i], opts)
				if err != nil {
					errs[i] = err
					cancel()
					continue
				}
				out[i] = SuiteEntry{Class: Class(scenarios[i]), Report: rep}
			}
		}()
	}
feed:
	for i := range files {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sim: suite %q: %w", pattern, err)
	}
	return out, nil
}

// SuiteEntry is one scenario's report in a suite.
type SuiteEntry struct {
	Class  string
	Report *Report
}

// ClassScore pools one localizer's results over a class of scenarios:
// faults localized and missed (significant faults only) and false
// positives are summed, so that F1 weighs every fault once.
type ClassScore struct {
	Class, Localizer string
	Scenarios        int
	Faults, Found    int
	FalsePositives   int
	F1               float64
	// MedianLocalizationIntervals is the median time to blame the right
	// element, in probe intervals of each fault's scenario; -1 when none.
	MedianLocalizationIntervals float64
	MedianLocalizationSeconds   float64
}

// Evaluate scores every class for every localizer of the entries.
func Evaluate(entries []SuiteEntry) []ClassScore {
	type key struct{ class, lz string }
	acc := map[key]*ClassScore{}
	ints := map[key][]float64{}
	secs := map[key][]float64{}
	var order []key
	for _, e := range entries {
		for _, r := range e.Report.Results {
			k := key{e.Class, r.Localizer}
			cs := acc[k]
			if cs == nil {
				cs = &ClassScore{Class: e.Class, Localizer: r.Localizer}
				acc[k] = cs
				order = append(order, k)
			}
			cs.Scenarios++
			cs.FalsePositives += len(r.FalsePositives)
			for _, f := range r.Faults {
				if !f.Significant {
					continue
				}
				cs.Faults++
				if f.Localized != nil {
					cs.Found++
					ints[k] = append(ints[k], float64(*f.Localized)/float64(e.Report.Interval))
					secs[k] = append(secs[k], float64(*f.Localized))
				}
			}
		}
	}
	sort.Slice(order, func(i, j int) bool {
		if order[i].class != order[j].class {
			return order[i].class < order[j].class
		}
		return order[i].lz < order[j].lz
	})
	var out []ClassScore
	for _, k := range order {
		cs := acc[k]
		tp, fn, fp := float64(cs.Found), float64(cs.Faults-cs.Found), float64(cs.FalsePositives)
		cs.F1 = 1
		if tp+fn+fp > 0 {
			cs.F1 = 2 * tp / (2*tp + fn + fp)
		}
		cs.MedianLocalizationIntervals = float64(median(ints[k]))
		cs.MedianLocalizationSeconds = float64(median(secs[k]))
		out = append(out, *cs)
	}
	return out
}

// WriteTable prints one line per scenario and localizer, then the class
// scores: what make bench-localize shows.
func WriteTable(w io.Writer, entries []SuiteEntry) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tHOSTS\tFAULTS\tLOCALIZER\tF1\tFP\tDETECT\tLOCALIZE\tWALL")
	for _, e := range entries {
		r := e.Report
		for _, x := range r.Results {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%.2f\t%d\t%s\t%s\t%.1fs\n", r.Scenario, r.Hosts, len(x.Faults), x.Localizer,
				x.SignificantF1, len(x.FalsePositives), fmtSecs(x.MedianDetection), fmtSecs(x.MedianLocalization), r.WallSeconds)
		}
	}
	fmt.Fprintln(tw, "\nCLASS\tLOCALIZER\tSCENARIOS\tFAULTS\tFOUND\tFP\tF1\tLOCALIZE (median)")
	for _, c := range Evaluate(entries) {
		loc := "-"
		if c.MedianLocalizationSeconds >= 0 {
			loc = fmt.Sprintf("%.0fs = %.1f intervals", c.MedianLocalizationSeconds, c.MedianLocalizationIntervals)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%.3f\t%s\n", c.Class, c.Localizer, c.Scenarios, c.Faults, c.Found, c.FalsePositives, c.F1, loc)
	}
	return tw.Flush()
}

func fmtSecs(s Seconds) string {
	if s < 0 {
		return "-"
	}
	return fmt.Sprintf("%.0fs", float64(s))
}
