// Command localize runs the scenario suite with meshlens's localizer and
// the 007-style voting baseline side by side, and prints per scenario the
// F1 over significant faults, false positives, median detection and
// localization time, then the pooled score of each scenario class.
//
//	go run ./bench/localize [-suite 'test/scenarios/*.yaml'] [-workers 2] [-json]
//	go run ./bench/localize -run bench/localize/scale-10k.yaml
//
// With -run it runs one scenario and prints its report as JSON with the
// process's peak resident memory: the simulator's scale benchmark.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/meshlens/meshlens/internal/sim"
)

func main() {
	suite := flag.String("suite", "test/scenarios/*.yaml", "scenario files (glob)")
	one := flag.String("run", "", "run this one scenario file and print its JSON report")
	workers := flag.Int("workers", 2, "scenarios run at once")
	asJSON := flag.Bool("json", false, "print the reports as JSON instead of a table")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *suite, *one, *workers, *asJSON); err != nil {
		fmt.Fprintln(os.Stderr, "bench-localize:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, suite, one string, workers int, asJSON bool) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if one != "" {
		sc, err := sim.Load(one)
		if err != nil {
			return err
		}
		rep, err := sim.Run(ctx, sc, sim.Options{})
		if err != nil {
			return err
		}
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
			rep.PeakRSSBytes = uint64(ru.Maxrss) * 1024 // Linux: KiB
		}
		return enc.Encode(rep)
	}
	entries, err := sim.RunSuite(ctx, suite, sim.Options{}, workers)
	if err != nil {
		return err
	}
	if asJSON {
		return enc.Encode(entries)
	}
	return sim.WriteTable(os.Stdout, entries)
}
