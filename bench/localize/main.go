// Command localize runs the scenario suite with meshlens's localizer and
// the 007-style voting baseline side by side, and prints per scenario the
// F1 over significant faults, false positives, median detection and
// localization time, then the pooled score of each scenario class.
//
//	go run ./bench/localize [-suite 'test/scenarios/*.yaml'] [-json]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/meshlens/meshlens/internal/sim"
)

func main() {
	suite := flag.String("suite", "test/scenarios/*.yaml", "scenario files (glob)")
	workers := flag.Int("workers", 2, "scenarios run at once")
	asJSON := flag.Bool("json", false, "print the reports as JSON instead of a table")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	entries, err := sim.RunSuite(ctx, *suite, sim.Options{}, *workers)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-localize:", err)
		os.Exit(1)
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(entries); err != nil {
			fmt.Fprintln(os.Stderr, "bench-localize:", err)
			os.Exit(1)
		}
		return
	}
	if err := sim.WriteTable(os.Stdout, entries); err != nil {
		fmt.Fprintln(os.Stderr, "bench-localize:", err)
		os.Exit(1)
	}
}
