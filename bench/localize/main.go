// Command localize runs the scenario suite with meshlens's localizer and
// the 007-style voting baseline side by side, and prints per scenario the
// F1 over significant faults, false positives, median detection and
// localization time, then the pooled score of each scenario class.
//
//	go run ./bench/localize [-suite 'test/scenarios/*.yaml'] [-workers 2] [-json] [-tracing ideal|hop_answer=0.7,queries=1,budget=1]
//	go run ./bench/localize -run bench/localize/scale-10k.yaml
//	go run ./bench/localize -run bench/localize/scale-50k.yaml -rollups-only
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
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/meshlens/meshlens/internal/aggregate"
	"github.com/meshlens/meshlens/internal/analyze"
	"github.com/meshlens/meshlens/internal/localize"

	"github.com/meshlens/meshlens/internal/probe"
	"github.com/meshlens/meshlens/internal/sim"
)

func main() {
	suite := flag.String("suite", "test/scenarios/*.yaml", "scenario files (glob)")
	one := flag.String("run", "", "run this one scenario file and print its JSON report")
	workers := flag.Int("workers", 2, "scenarios run at once")
	asJSON := flag.Bool("json", false, "print the reports as JSON instead of a table")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the run to this file")
	memProfile := flag.String("memprofile", "", "write a heap profile (in use at the peak window) to this file")
	rollupsOnly := flag.Bool("rollups-only", false, "with -run: aggregate without per-pair state (50,000 hosts fit in memory)")
	evidence := flag.Bool("evidence", true, "evidence on demand, as the server's default (false: a fixed probe rate)")
	tracing := flag.String("tracing", "", "replace every scenario's tracing: \"ideal\", or hop_answer=F,queries=N,budget=N (unset fields take the defaults)")
	flag.Parse()
	tr, err := parseTracing(*tracing)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-localize:", err)
		os.Exit(2)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench-localize: cpu profile:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *suite, *one, *workers, *asJSON, *memProfile, *rollupsOnly, tr, analyze.EvidenceConfig{Off: !*evidence}); err != nil {
		fmt.Fprintln(os.Stderr, "bench-localize:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func run(ctx context.Context, suite, one string, workers int, asJSON bool, memProfile string, rollupsOnly bool, tr *sim.Tracing, ev analyze.EvidenceConfig) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if one != "" {
		sc, err := sim.Load(one)
		if err != nil {
			return err
		}
		opts := sim.Options{RollupsOnly: rollupsOnly, Tracing: tr, Evidence: ev}
		var heapErr error
		start := time.Now()
		opts.Observe = func(at time.Duration, _ *aggregate.SealedWindow, v analyze.Verdict) {
			if v.Localizer != localize.NameMeshlens {
				return
			}
			// Progress on stderr: a large fabric takes minutes a window.
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			fmt.Fprintf(os.Stderr, "virtual %v: wall %.1fs, heap %d MiB, GC %.0f%% of CPU\n",
				at, time.Since(start).Seconds(), ms.HeapAlloc>>20, ms.GCCPUFraction*100)
			if memProfile != "" && heapErr == nil {
				// The heap right after a window's first verdict, while the
				// window, the recent ones and the localizers' state are all
				// alive: rewritten every window, so the file ends with the
				// last (steady-state) one.
				heapErr = writeHeapProfile(memProfile)
			}
		}
		rep, err := sim.Run(ctx, sc, opts)
		if err != nil {
			return err
		}
		if heapErr != nil {
			return fmt.Errorf("heap profile: %w", heapErr)
		}
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
			rep.PeakRSSBytes = uint64(ru.Maxrss) * 1024 // Linux: KiB
		}
		return enc.Encode(rep)
	}
	entries, err := sim.RunSuite(ctx, suite, sim.Options{Tracing: tr, Evidence: ev}, workers)
	if err != nil {
		return err
	}
	if asJSON {
		return enc.Encode(entries)
	}
	return sim.WriteTable(os.Stdout, entries)
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC() // the profile shows what is live, not garbage
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// parseTracing reads the -tracing flag; nil when empty.
func parseTracing(s string) (*sim.Tracing, error) {
	if s == "" {
		return nil, nil
	}
	tr := &sim.Tracing{HopAnswer: sim.DefaultHopAnswer, Queries: probe.DefaultTraceQueries, Budget: sim.DefaultBudget}
	if s == "ideal" {
		tr.Ideal = true
		return tr, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "hop_answer":
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || !(f > 0 && f <= 1) {
				return nil, fmt.Errorf("-tracing: hop_answer %q: want a number in (0, 1]", v)
			}
			tr.HopAnswer = f
		case "queries":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 10 {
				return nil, fmt.Errorf("-tracing: queries %q: want 1..10", v)
			}
			tr.Queries = n
		case "budget":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1000 {
				return nil, fmt.Errorf("-tracing: budget %q: want 1..1000", v)
			}
			tr.Budget = n
		default:
			return nil, fmt.Errorf("-tracing: unknown %q (want ideal, hop_answer=F, queries=N, budget=N)", kv)
		}
	}
	return tr, nil
}
