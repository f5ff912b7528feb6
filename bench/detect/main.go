// Command detect measures, live, how long meshlens takes from a fault's
// onset to naming the faulty element: a real `meshlens server` fed over
// its real bus by `meshlens sim live`, /api/v1/suspects polled every
// second, faults started at random phases of the window. Each kind runs
// with the server's defaults and, side by side in the same run, with
// --ignore-agent-marks (windows sealed only after --lateness, the
// behaviour before agents marked where their data ends); `sim run` of the
// same scenario gives the simulator's own time per fault, so that the
// pipeline's overhead is live minus sim.
//
//	go run ./bench/detect [-onsets 10] [-kinds tor_down,link_down,spine_down,leaf_spine_loss] [-modes evidence,fixed-rate,lateness] [-parallel 8] [-json]
//	go run ./bench/detect -report results.json   # the table of a saved run
//
// The fabric is the one of issue 12: 2 pods × 4 racks × 8 hosts, 2 leaves
// per pod, 4 spines, 10 s probes over tcp and udp. Every process runs on
// loopback and is ended by its pid when the run ends.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/meshlens/meshlens/bench/internal/benchrun"
	"github.com/meshlens/meshlens/internal/topology"
)

// kind is one kind of fault the benchmark starts.
type kind struct {
	name string
	// fault is the scenario line of the fault on element e.
	fault func(e string) string
	// elements it rotates over, from the topology.
	elements func(t *topology.Topology) []string
	// hold is how long each fault lasts, gap the clean time after it.
	hold, gap time.Duration
}

func switches(role topology.Role) func(*topology.Topology) []string {
	return func(t *topology.Topology) []string {
		var out []string
		for _, s := range t.Switches {
			if s.Role == role {
				out = append(out, s.Name)
			}
		}
		return out
	}
}

func leafSpineLinks(t *topology.Topology) []string {
	var out []string
	for _, l := range t.Links {
		a, b := t.Switch(l.A), t.Switch(l.B)
		if a != nil && b != nil && (a.Role == topology.RoleSpine) != (b.Role == topology.RoleSpine) {
			out = append(out, l.Name())
		}
	}
	return out
}

var kinds = []kind{
	{"tor_down", func(e string) string { return fmt.Sprintf("{kind: device_down, device: %s", e) }, switches(topology.RoleToR), 40 * time.Second, 40 * time.Second},
	{"link_down", func(e string) string { return fmt.Sprintf("{kind: link_down, link: %q", e) }, leafSpineLinks, 40 * time.Second, 40 * time.Second},
	{"spine_down", func(e string) string { return fmt.Sprintf("{kind: device_down, device: %s", e) }, switches(topology.RoleSpine), 40 * time.Second, 40 * time.Second},
	{"leaf_spine_loss", func(e string) string { return fmt.Sprintf("{kind: link_loss, link: %q, rate: 0.02", e) }, leafSpineLinks, 120 * time.Second, 30 * time.Second},
}

// Modes a kind runs in, side by side: the server's defaults; without
// evidence on demand (a fixed probe rate); and without agents' marks
// either (windows sealed after --lateness), the behaviour before issue 12.
const (
	modeEvidence = "evidence"
	modeFixed    = "fixed-rate"
	modeLateness = "lateness"
)

var modes = []string{modeEvidence, modeFixed, modeLateness}

var simOnly bool

// warmup is the clean time before the first fault: longer than the
// default lateness, which a new server listens for before it seals on
// the agents' marks.
const warmup = 60 * time.Second

type onset struct {
	Element string  `json:"element"`
	At      float64 `json:"at_seconds"` // from the fabric's start
	Phase   float64 `json:"phase_seconds"`
	Live    float64 `json:"live_seconds"` // onset → first named; -1: never
	Sim     float64 `json:"sim_seconds"`  // the same fault in sim run; -1: never
	// SimLingered: how long after the fault's end sim run still blamed
	// it (sim.FaultResult.Lingered); nil: never named, or a run saved
	// before it was measured.
	SimLingered *float64 `json:"sim_lingered_seconds,omitempty"`
}

type result struct {
	Kind   string  `json:"kind"`
	Mode   string  `json:"mode"`
	Onsets []onset `json:"onsets"`
	Err    string  `json:"error,omitempty"`
}

func main() {
	n := flag.Int("onsets", 10, "faults per kind, at random phases of the window")
	kindList := flag.String("kinds", "tor_down,link_down,spine_down,leaf_spine_loss", "kinds of fault")
	modeList := flag.String("modes", strings.Join(modes, ","), "modes each kind runs in, side by side")
	parallel := flag.Int("parallel", 8, "runs at once (a server and a simulator each)")
	seed := flag.Uint64("seed", 1, "seed of the phases")
	asJSON := flag.Bool("json", false, "print the onsets as JSON")
	flag.BoolVar(&simOnly, "sim-only", false, "only sim run, in each mode: no live server")
	from := flag.String("report", "", "print the table of a saved -json run instead of running")
	flag.Parse()
	if *from != "" {
		if err := reportFile(*from); err != nil {
			fmt.Fprintln(os.Stderr, "bench-detect:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	modes = strings.Split(*modeList, ",")
	for _, m := range modes {
		if !slices.Contains([]string{modeEvidence, modeFixed, modeLateness}, m) {
			fmt.Fprintf(os.Stderr, "bench-detect: unknown mode %q (want %s, %s or %s)\n", m, modeEvidence, modeFixed, modeLateness)
			os.Exit(2)
		}
	}
	if err := run(ctx, *n, strings.Split(*kindList, ","), *parallel, *seed, *asJSON); err != nil {
		fmt.Fprintln(os.Stderr, "bench-detect:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, n int, names []string, parallel int, seed uint64, asJSON bool) error {
	dir, err := os.MkdirTemp("", "meshlens-bench-detect-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin, err := benchrun.Build(ctx, dir)
	if err != nil {
		return err
	}
	topoFile := filepath.Join(dir, "topo.yaml")
	gen := exec.CommandContext(ctx, bin, "topo", "gen", "--dcs", "1", "--pods", "2", "--racks-per-pod", "4", "--hosts-per-rack", "8", "--leaves-per-pod", "2", "--spines", "4")
	data, err := gen.Output()
	if err != nil {
		return fmt.Errorf("topo gen: %w", err)
	}
	if err := os.WriteFile(topoFile, data, 0o644); err != nil {
		return err
	}
	topo, err := topology.Load(topoFile)
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(seed, 0x6d65736c656e73))
	type job struct {
		k        kind
		scenario string
		onsets   []onset
		mode     string
	}
	var jobs []job
	for _, name := range names {
		i := slices.IndexFunc(kinds, func(k kind) bool { return k.name == name })
		if i < 0 {
			return fmt.Errorf("unknown kind %q", name)
		}
		k := kinds[i]
		els := k.elements(topo)
		var faults []string
		var ons []onset
		at := warmup
		for j := range n {
			phase := time.Duration(rng.Int64N(int64(10 * time.Second)))
			start := (at + phase).Truncate(time.Millisecond)
			e := els[j%len(els)]
			faults = append(faults, fmt.Sprintf("  - %s, at: %s, until: %s}", k.fault(e), start, start+k.hold))
			ons = append(ons, onset{Element: e, At: start.Seconds(), Phase: phase.Seconds()})
			at += k.hold + k.gap
			at = at.Truncate(10 * time.Second)
		}
		scenario := filepath.Join(dir, k.name+".yaml")
		text := fmt.Sprintf("name: detect-%s\nseed: %d\ntopology: {file: %q}\nprobing: {interval: 10s, protocols: [tcp, udp]}\nduration: %s\nfaults:\n%s\n",
			k.name, seed, topoFile, at+30*time.Second, strings.Join(faults, "\n"))
		if err := os.WriteFile(scenario, []byte(text), 0o644); err != nil {
			return err
		}
		for _, mode := range modes {
			sims, lingered, err := simTimes(ctx, bin, scenario, ons, mode != modeEvidence)
			if err != nil {
				return fmt.Errorf("%s: %w", k.name, err)
			}
			mine := slices.Clone(ons)
			for j := range mine {
				mine[j].Sim, mine[j].SimLingered = sims[j], lingered[j]
				mine[j].Live = -1
			}
			jobs = append(jobs, job{k, scenario, mine, mode})
		}
	}
	results := make([]result, len(jobs))
	sem := make(chan struct{}, max(1, parallel))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			r := result{Kind: j.k.name, Mode: j.mode, Onsets: j.onsets}
			if simOnly {
				results[i] = r
				return
			}
			if err := live(ctx, bin, filepath.Join(dir, fmt.Sprintf("%s-%s", j.k.name, j.mode)), topoFile, j.scenario, j.mode, j.k.hold+namedWithin, r.Onsets); err != nil {
				r.Err = err.Error()
			}
			results[i] = r
		}()
	}
	wg.Wait()
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(results)
	}
	report(os.Stdout, results)
	return nil
}

// simTimes runs the scenario through `sim run` and reads each fault's
// localization time (its LOCALIZED column) and how long it lingered after
// its end (LINGERED).
func simTimes(ctx context.Context, bin, scenario string, ons []onset, fixed bool) (times []float64, lingered []*float64, err error) {
	out, err := exec.CommandContext(ctx, bin, "sim", "run", scenario, "--json", fmt.Sprintf("--evidence=%t", !fixed)).Output()
	if err != nil {
		return nil, nil, fmt.Errorf("sim run: %w", err)
	}
	var rep struct {
		Results []struct {
			Localizer string `json:"localizer"`
			Faults    []struct {
				Onset        float64  `json:"onset_seconds"`
				Localization *float64 `json:"localized_seconds"`
				Lingered     *float64 `json:"lingered_seconds"`
			} `json:"faults"`
		} `json:"results"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		return nil, nil, fmt.Errorf("sim run: %w", err)
	}
	times, lingered = make([]float64, len(ons)), make([]*float64, len(ons))
	for i := range times {
		times[i] = -1
	}
	for _, r := range rep.Results {
		if r.Localizer != "meshlens" {
			continue
		}
		for _, f := range r.Faults {
			for i := range ons {
				if f.Localization != nil && abs(f.Onset-ons[i].At) < 0.5 {
					times[i] = *f.Localization
					lingered[i] = f.Lingered
				}
			}
		}
	}
	return times, lingered, nil
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// namedWithin is how long after a fault's end a naming still counts for
// it, as the simulator's scorer counts it: the localizer's horizon (three
// 10 s windows) and a window's sealing. Elements rotate, so a later fault
// on the same element must not count for this one.
const namedWithin = 35 * time.Second

// live runs one server and one simulator and fills each onset's Live:
// the first naming of its element within limit of the onset.
func live(ctx context.Context, bin, dir, topoFile, scenario, mode string, limit time.Duration, ons []onset) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	addrs, err := benchrun.FreeAddrs(2)
	if err != nil {
		return err
	}
	httpAddr, natsAddr := addrs[0], addrs[1]
	args := []string{"server", "--topology", topoFile, "--data-dir", filepath.Join(dir, "data"), "--http-addr", httpAddr, "--nats-addr", natsAddr}
	switch mode {
	case modeFixed:
		args = append(args, "--evidence=false")
	case modeLateness:
		args = append(args, "--evidence=false", "--ignore-agent-marks")
	}
	srv, err := benchrun.Start(bin, filepath.Join(dir, "server.log"), args...)
	if err != nil {
		return err
	}
	defer srv.Stop()
	api := "http://" + httpAddr
	if err := benchrun.WaitReady(ctx, api); err != nil {
		return fmt.Errorf("server not ready: %w (log %s)", err, srv.Log)
	}
	sim, err := benchrun.Start(bin, filepath.Join(dir, "sim.log"), "sim", "live", scenario, "--nats-url", "nats://"+natsAddr)
	if err != nil {
		return err
	}
	defer sim.Stop()
	var fabricStart time.Time
	startLine := regexp.MustCompile(`fabric started.*\bstart=(\S+)`)
	if err := benchrun.Poll(ctx, time.Minute, func() bool {
		m := startLine.FindSubmatch(sim.Output())
		if m == nil {
			return false
		}
		fabricStart, err = time.Parse(time.RFC3339Nano, string(m[1]))
		return err == nil
	}); err != nil {
		return fmt.Errorf("the simulator did not start (log %s)", sim.Log)
	}
	for i := range ons {
		ons[i].Live = -1
	}
	last := ons[len(ons)-1]
	end := fabricStart.Add(time.Duration((last.At + 200) * float64(time.Second)))
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for time.Now().Before(end) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		now := time.Now()
		named, err := suspects(api)
		if err != nil {
			continue
		}
		for i := range ons {
			at := fabricStart.Add(time.Duration(ons[i].At * float64(time.Second)))
			if ons[i].Live >= 0 || now.Before(at) || now.After(at.Add(limit)) {
				continue
			}
			if names(named, ons[i].Element) {
				ons[i].Live = now.Sub(at).Seconds()
			}
		}
		if !slices.ContainsFunc(ons, func(o onset) bool { return o.Live < 0 }) {
			break
		}
	}
	return nil
}

// names says whether the suspects name element: itself, or for a link
// either of its directions.
func names(suspects []string, element string) bool {
	for _, s := range suspects {
		if s == element {
			return true
		}
		if a, b, ok := strings.Cut(element, "--"); ok && (s == a+"->"+b || s == b+"->"+a || s == b+"--"+a) {
			return true
		}
	}
	return false
}

func suspects(api string) ([]string, error) {
	resp, err := http.Get(api + "/api/v1/suspects")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Data struct {
			Suspects []struct {
				Element string `json:"element"`
			} `json:"suspects"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	var out []string
	for _, s := range body.Data.Suspects {
		out = append(out, s.Element)
	}
	return out, nil
}

// reportFile prints the table of a run saved with -json.
func reportFile(name string) error {
	data, err := os.ReadFile(name)
	if err != nil {
		return err
	}
	var results []result
	if err := json.Unmarshal(data, &results); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	report(os.Stdout, results)
	return nil
}

// report prints per kind and mode the onsets found, the median and p95
// from onset to blame, and the median overhead over sim run.
func report(w io.Writer, results []result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tMODE\tNAMED\tMEDIAN\tP95\tSIM RUN NAMED\tSIM RUN MEDIAN\tSIM RUN P95\tOVERHEAD (median live - sim)\tSIM RUN LINGERED (median)")
	for _, r := range results {
		if r.Err != "" {
			fmt.Fprintf(tw, "%s\t%s\terror: %s\n", r.Kind, r.Mode, r.Err)
			continue
		}
		var live, sim, over, lingered []float64
		for _, o := range r.Onsets {
			if o.SimLingered != nil {
				lingered = append(lingered, *o.SimLingered)
			}
			if o.Live >= 0 {
				live = append(live, o.Live)
			}
			if o.Sim >= 0 {
				sim = append(sim, o.Sim)
			}
			if o.Live >= 0 && o.Sim >= 0 {
				over = append(over, o.Live-o.Sim)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%s\t%d/%d\t%s\t%s\t%s\t%s\n", r.Kind, r.Mode, len(live), len(r.Onsets),
			secs(quantile(live, 0.5)), secs(quantile(live, 0.95)), len(sim), len(r.Onsets), secs(quantile(sim, 0.5)), secs(quantile(sim, 0.95)), secs(quantile(over, 0.5)), secs(quantile(lingered, 0.5)))
	}
	tw.Flush()
}

func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return -1
	}
	s := slices.Clone(v)
	sort.Float64s(s)
	i := int(q*float64(len(s)-1) + 0.5)
	return s[i]
}

func secs(v float64) string {
	if v < 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fs", v)
}
