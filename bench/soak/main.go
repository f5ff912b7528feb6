// Command soak runs a real `meshlens server` fed by `meshlens sim live`
// with 1,000 simulated agents for longer than the server's pair-detail
// window (--recent), faults coming and going, and watches the server's
// own /metrics: resident memory, goroutines, open files and TSDB head
// series must be flat once that window has filled (growth at most 10 %
// over the rest of the run), and every result the bus acknowledged must
// be counted once.
//
//	go run ./bench/soak [-duration 40m] [-recent 10m] [-sample 30s] [-hosts-per-rack 20] [-profiles DIR] [-json]
//	go run ./bench/soak -report run.json   # the report of a saved run
//	go run ./bench/soak -budget -hosts-per-rack 40 -duration 7m   # issue 15
//
// With -budget the server runs on its default --recent (an hour) and
// pair-detail budget, and the run checks that its RSS is flat and below
// -max-rss from a minute after the pair detail reached its budget.
//
// --recent is the server's own flag (pair detail kept in memory, 1 h by
// default); the soak shortens it so that a run longer than it fits in an
// afternoon. With -profiles, the server's heap profile is saved once the
// window has filled and again at the end, and the report lists what grew
// between the two (go tool pprof -diff_base). Every process runs on
// loopback and is ended by its pid.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/meshlens/meshlens/bench/internal/benchrun"
	"github.com/meshlens/meshlens/internal/topology"
)

// Watched: what must stay flat, and what is counted.
const (
	rss        = "process_resident_memory_bytes"
	goroutines = "go_goroutines"
	openFDs    = "process_open_fds"
	headSeries = "meshlens_store_head_series"
	ingested   = "meshlens_ingest_results_total"
	duplicates = "meshlens_ingest_duplicates_total"
	rejected   = "meshlens_ingest_rejected_total"
	streamed   = "meshlens_stream_bytes"
	heapGoal   = "go_memstats_next_gc_bytes" // twice the live heap at the last GC
	// The pair detail's bytes and budget (-budget).
	detailBytes   = "meshlens_aggregate_pair_detail_bytes"
	detailBudget  = "meshlens_aggregate_pair_detail_budget_bytes"
	detailTrimmed = "meshlens_aggregate_pair_detail_trimmed_total"
	// RSS split by the kernel (/proc/PID/status): anonymous memory (Go's
	// heap and stacks) and file pages mapped in (the TSDB's mmapped head
	// chunks and blocks), so that growth can be told apart.
	rssAnon = "RssAnon"
	rssFile = "RssFile"
)

var flat = []string{rss, goroutines, openFDs, headSeries}

// profiles is where the heap profiles go ("": not taken).
var profiles string

// sample is one scrape of the server.
type sample struct {
	At     float64            `json:"at_seconds"` // from the fabric's start
	Values map[string]float64 `json:"values"`
}

type outcome struct {
	Hosts    int     `json:"hosts"`
	Duration float64 `json:"duration_seconds"`
	Recent   float64 `json:"recent_seconds"`
	// Budget: the server ran on its default --recent and
	// --pair-detail-max-bytes, and the steady state starts once the pair
	// detail has reached its budget (-budget); MaxRSS bounds RSS from then.
	Budget    bool     `json:"budget,omitempty"`
	MaxRSS    float64  `json:"max_rss_bytes,omitempty"`
	Faults    int      `json:"faults"`
	Samples   []sample `json:"samples"`
	Published int      `json:"results_published"` // acknowledged by the bus
	Batches   int      `json:"batches_published"`
	Ingested  float64  `json:"results_ingested"`
	Dups      float64  `json:"duplicate_batches"`
	Rejected  float64  `json:"rejected"`
	// StreamBytes is what the results stream held at the end: every
	// batch, as none is older than --stream-max-age.
	StreamBytes float64 `json:"stream_bytes"`
	// HeapGrowth is go tool pprof's top of the live heap's growth from
	// the steady state to the end (-profiles).
	HeapGrowth string `json:"heap_growth,omitempty"`
}

func main() {
	duration := flag.Duration("duration", 40*time.Minute, "how long the fabric runs")
	recent := flag.Duration("recent", 10*time.Minute, "the server's --recent (pair-detail window)")
	budget := flag.Bool("budget", false, "pair detail within its memory budget (issue 15): the server on its default --recent and --pair-detail-max-bytes, flat (and under -max-rss) from a minute after the detail reached its budget")
	maxRSS := flag.Float64("max-rss", 2<<30, "with -budget: the most RSS the server may reach once the detail reached its budget (bytes)")
	every := flag.Duration("sample", 30*time.Second, "scrape interval")
	hostsPerRack := flag.Int("hosts-per-rack", 20, "hosts in each of the 5 × 10 racks")
	asJSON := flag.Bool("json", false, "print the samples as JSON")
	flag.StringVar(&profiles, "profiles", "", "save the server's heap profiles in this directory and report what grew")
	from := flag.String("report", "", "print the report of a saved -json run instead of running")
	flag.Parse()
	if *from != "" {
		var out outcome
		data, err := os.ReadFile(*from)
		if err == nil {
			err = json.Unmarshal(data, &out)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench-soak:", err)
			os.Exit(1)
		}
		report(os.Stdout, &out)
		return
	}
	if *budget {
		*recent = 0 // the server's default
	}
	if !*budget && *duration < *recent+5*time.Minute {
		fmt.Fprintln(os.Stderr, "bench-soak: -duration must exceed -recent by 5 minutes or more: the flat part is what follows the window")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	out, err := run(ctx, *hostsPerRack, *duration, *recent, *every)
	if err == nil && *budget {
		out.Budget, out.MaxRSS = true, *maxRSS
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-soak:", err)
		os.Exit(1)
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
	} else {
		report(os.Stdout, out)
	}
	if !out.passed() {
		os.Exit(1)
	}
}

func run(ctx context.Context, hostsPerRack int, duration, recent, every time.Duration) (*outcome, error) {
	dir, err := os.MkdirTemp("", "meshlens-bench-soak-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	bin, err := benchrun.Build(ctx, dir)
	if err != nil {
		return nil, err
	}
	// 5 pods × 10 racks × 20 hosts by default.
	topoFile := filepath.Join(dir, "topo.yaml")
	if err := benchrun.GenTopology(ctx, bin, topoFile, benchrun.Fabric{Pods: 5, RacksPerPod: 10, HostsPerRack: hostsPerRack, LeavesPerPod: 2, Spines: 4}); err != nil {
		return nil, err
	}
	topo, err := topology.Load(topoFile)
	if err != nil {
		return nil, err
	}
	faults := schedule(topo, duration)
	scenario := filepath.Join(dir, "soak.yaml")
	if err := benchrun.WriteScenario(scenario, "soak", topoFile, duration, faults); err != nil {
		return nil, err
	}

	addrs, err := benchrun.FreeAddrs(2)
	if err != nil {
		return nil, err
	}
	api := "http://" + addrs[0]
	args := []string{"server", "--topology", topoFile, "--data-dir", filepath.Join(dir, "data"),
		"--http-addr", addrs[0], "--nats-addr", addrs[1]}
	if recent > 0 {
		args = append(args, "--recent", recent.String())
	}
	if profiles != "" {
		// Profiles are an admin's; the server listens on loopback only.
		args = append(args, "--anonymous-role", "admin")
	}
	srv, err := benchrun.Start(bin, filepath.Join(dir, "server.log"), args...)
	if err != nil {
		return nil, err
	}
	defer srv.Stop()
	if err := benchrun.WaitReady(ctx, api); err != nil {
		return nil, fmt.Errorf("server not ready: %w\n%s", err, srv.Output())
	}
	sim, err := benchrun.Start(bin, filepath.Join(dir, "sim.log"), "sim", "live", scenario, "--nats-url", "nats://"+addrs[1])
	if err != nil {
		return nil, err
	}
	defer sim.Stop()
	var start time.Time
	startLine := regexp.MustCompile(`fabric started.*\bstart=(\S+)`)
	if err := benchrun.Poll(ctx, time.Minute, func() bool {
		m := startLine.FindSubmatch(sim.Output())
		if m == nil {
			return false
		}
		start, err = time.Parse(time.RFC3339Nano, string(m[1]))
		return err == nil
	}); err != nil {
		return nil, fmt.Errorf("the simulator did not start:\n%s", sim.Output())
	}

	out := &outcome{Hosts: len(topo.Hosts), Duration: duration.Seconds(), Recent: recent.Seconds(), Faults: len(faults)}
	names := append(append([]string{}, flat...), ingested, duplicates, rejected, streamed, heapGoal, detailBytes, detailBudget, detailTrimmed)
	scrape := func() error {
		v, err := benchrun.Scrape(api+"/metrics", names...)
		if err != nil {
			return err
		}
		if err := benchrun.ProcStatus(srv.Pid(), v, rssAnon, rssFile); err != nil {
			return err
		}
		out.Samples = append(out.Samples, sample{At: time.Since(start).Seconds(), Values: v})
		return nil
	}
	steadyProfile := ""
	tick := time.NewTicker(every)
	defer tick.Stop()
	for running := true; running; {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-sim.Done():
			running = false
		case <-srv.Done():
			return nil, fmt.Errorf("the server exited:\n%s", srv.Output())
		case <-tick.C:
			if err := scrape(); err != nil {
				return nil, fmt.Errorf("scrape: %w", err)
			}
			if profiles != "" && steadyProfile == "" && time.Since(start) >= recent+time.Minute {
				steadyProfile = filepath.Join(profiles, "heap-steady.pb.gz")
				if err := saveHeap(api, steadyProfile); err != nil {
					return nil, err
				}
			}
		}
	}
	// The simulator ran its course; the server counts what is still in
	// the stream, then the counters stop moving.
	stopped := regexp.MustCompile(`sim live: stopped.*\bbatches=(\d+) results=(\d+)`)
	m := stopped.FindSubmatch(sim.Output())
	if m == nil {
		return nil, fmt.Errorf("the simulator did not end its run:\n%s", sim.Output())
	}
	out.Batches, _ = strconv.Atoi(string(m[1]))
	out.Published, _ = strconv.Atoi(string(m[2]))
	// Done when the count has not moved for 5 s (2 minutes at most).
	for last, deadline := -1.0, time.Now().Add(2*time.Minute); time.Now().Before(deadline); {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(5 * time.Second):
		}
		v, err := benchrun.Scrape(api+"/metrics", ingested)
		if err != nil {
			continue
		}
		if v[ingested] == last {
			break
		}
		last = v[ingested]
	}
	if err := scrape(); err != nil {
		return nil, fmt.Errorf("scrape: %w", err)
	}
	final := out.Samples[len(out.Samples)-1].Values
	out.Ingested, out.Dups, out.Rejected, out.StreamBytes = final[ingested], final[duplicates], final[rejected], final[streamed]
	if steadyProfile != "" {
		end := filepath.Join(profiles, "heap-end.pb.gz")
		if err := saveHeap(api, end); err != nil {
			return nil, err
		}
		top, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-nodecount", "15", "-sample_index", "inuse_space",
			"-diff_base", steadyProfile, end).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("go tool pprof: %w\n%s", err, top)
		}
		out.HeapGrowth = string(top)
	}
	return out, nil
}

// saveHeap writes the server's heap profile, after a GC, to file.
func saveHeap(api, file string) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	resp, err := http.Get(api + "/debug/pprof/heap?gc=1")
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("heap profile: %s", resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("heap profile: %w", err)
	}
	return f.Close()
}

// schedule is the faults: every four minutes from the second one, a
// fault of the next kind for two, on rotating elements.
func schedule(t *topology.Topology, duration time.Duration) []string {
	var tors, spines, links []string
	for _, s := range t.Switches {
		switch s.Role {
		case topology.RoleToR:
			tors = append(tors, s.Name)
		case topology.RoleSpine:
			spines = append(spines, s.Name)
		}
	}
	for _, l := range t.Links {
		a, b := t.Switch(l.A), t.Switch(l.B)
		if a != nil && b != nil && (a.Role == topology.RoleSpine) != (b.Role == topology.RoleSpine) {
			links = append(links, l.Name())
		}
	}
	kinds := []func(i int) string{
		func(i int) string { return fmt.Sprintf("{kind: device_down, device: %s", tors[i%len(tors)]) },
		func(i int) string { return fmt.Sprintf("{kind: link_loss, link: %q, rate: 0.05", links[i%len(links)]) },
		func(i int) string {
			return fmt.Sprintf("{kind: host_nic, host: %s, rate: 0.2", t.Hosts[(i*37)%len(t.Hosts)].Name)
		},
		func(i int) string { return fmt.Sprintf("{kind: device_down, device: %s", spines[i%len(spines)]) },
		func(i int) string {
			return fmt.Sprintf("{kind: link_latency, link: %q, add: 5ms", links[(i*3)%len(links)])
		},
	}
	var out []string
	for i, at := 0, 2*time.Minute; at+2*time.Minute < duration; i, at = i+1, at+4*time.Minute {
		out = append(out, fmt.Sprintf("  - %s, at: %s, until: %s}", kinds[i%len(kinds)](i), at, at+2*time.Minute))
	}
	return out
}

// steady is the first sample after the pair-detail window has filled,
// with a minute for the last window to seal; with -budget, a minute after
// the detail first reached 95 % of its budget. Growth is measured from it.
func (o *outcome) steady() int {
	full := o.Recent
	if o.Budget {
		full = o.budgetReached()
	}
	for i, s := range o.Samples {
		if s.At >= full+60 {
			return i
		}
	}
	return len(o.Samples) - 1
}

// budgetReached is when the pair detail first held 95 % of its budget
// (seconds from the fabric's start; +Inf: never).
func (o *outcome) budgetReached() float64 {
	for _, s := range o.Samples {
		if b := s.Values[detailBudget]; b > 0 && s.Values[detailBytes] >= 0.95*b {
			return s.At
		}
	}
	return math.Inf(1)
}

// peakRSS is the most RSS from the steady state on.
func (o *outcome) peakRSS() float64 {
	peak := 0.0
	for _, s := range o.Samples[o.steady():] {
		peak = max(peak, s.Values[rss])
	}
	return peak
}

func (o *outcome) growth(name string) float64 { return o.growthFrom(o.steady(), name) }

// late is the first sample 21 minutes in: the first run grew from minute
// 11 to 20 with a 10-minute window and was flat after, so the report also
// says what grows past minute 21.
func (o *outcome) late() int {
	for i, s := range o.Samples {
		if s.At >= 120*10+60 {
			return i
		}
	}
	return -1
}

func (o *outcome) growthFrom(i int, name string) float64 {
	if len(o.Samples) == 0 {
		return 0
	}
	from := o.Samples[i].Values[name]
	// The end of the fabric's run, before the drain's final scrape.
	to := o.Samples[len(o.Samples)-1].Values[name]
	if len(o.Samples) > 1 {
		to = o.Samples[len(o.Samples)-2].Values[name]
	}
	if from == 0 {
		return 0
	}
	return to/from - 1
}

func (o *outcome) exactlyOnce() bool {
	return o.Published > 0 && o.Ingested == float64(o.Published) && o.Rejected == 0
}

func (o *outcome) passed() bool {
	if o.Budget && (math.IsInf(o.budgetReached(), 1) || o.peakRSS() > o.MaxRSS) {
		return false
	}
	for _, n := range flat {
		if o.growth(n) > 0.10 {
			return false
		}
	}
	return o.exactlyOnce()
}

func report(w io.Writer, o *outcome) {
	if o.Budget {
		fmt.Fprintf(w, "%d hosts, %s run, default --recent and --pair-detail-max-bytes, %d faults\n\n", o.Hosts, time.Duration(o.Duration)*time.Second, o.Faults)
	} else {
		fmt.Fprintf(w, "%d hosts, %s run, --recent %s, %d faults\n\n", o.Hosts, time.Duration(o.Duration)*time.Second,
			time.Duration(o.Recent)*time.Second, o.Faults)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	s := o.steady()
	end := max(s, len(o.Samples)-2)
	fmt.Fprintf(tw, "METRIC\tAT %.0fs\tMAX AFTER\tAT %.0fs (END)\tGROWTH\n", o.Samples[s].At, o.Samples[end].At)
	for _, n := range flat {
		peak := 0.0
		for _, x := range o.Samples[s : end+1] {
			peak = max(peak, x.Values[n])
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%+.1f%%\n", n, human(n, o.Samples[s].Values[n]), human(n, peak),
			human(n, o.Samples[end].Values[n]), 100*o.growth(n))
	}
	tw.Flush()
	if i := o.late(); i >= 0 && i < end {
		fmt.Fprintf(w, "\nfrom %.0fs: RSS %+.1f%%", o.Samples[i].At, 100*o.growthFrom(i, rss))
		if g := o.Samples[i].Values[heapGoal]; g > 0 {
			fmt.Fprintf(w, ", Go's heap goal (twice the live heap) %s → %s", human(rss, g), human(rss, o.Samples[end].Values[heapGoal]))
		}
		fmt.Fprintln(w)
	}
	if a := o.Samples[s].Values[rssAnon]; a > 0 {
		fmt.Fprintf(w, "RSS by kind (/proc): anonymous %s → %s, file-backed (mmapped TSDB chunks) %s → %s\n",
			human(rss, a), human(rss, o.Samples[end].Values[rssAnon]), human(rss, o.Samples[s].Values[rssFile]), human(rss, o.Samples[end].Values[rssFile]))
	}
	fmt.Fprintf(w, "\nresults acknowledged by the bus %d (%d batches), counted by the server %.0f, duplicate batches dropped %.0f, rejected %.0f: exactly once %t\n",
		o.Published, o.Batches, o.Ingested, o.Dups, o.Rejected, o.exactlyOnce())
	if o.Published > 0 {
		fmt.Fprintf(w, "the stream holds %.0f MiB: %.1f bytes per result\n", o.StreamBytes/(1<<20), o.StreamBytes/float64(o.Published))
	}
	if o.Budget {
		last := o.Samples[end].Values
		fmt.Fprintf(w, "\npair detail reached 95 %% of its budget at %.0fs; at the end %s of %s, %.0f pair windows trimmed; RSS at most %s from %.0fs (limit %s): %t\n",
			o.budgetReached(), human(rss, last[detailBytes]), human(rss, last[detailBudget]), last[detailTrimmed], human(rss, o.peakRSS()), o.Samples[s].At,
			human(rss, o.MaxRSS), o.peakRSS() <= o.MaxRSS)
	}
	if o.HeapGrowth != "" {
		fmt.Fprintf(w, "\nthe live heap's growth from the steady state to the end (go tool pprof -diff_base):\n%s", o.HeapGrowth)
	}
	fmt.Fprintf(w, "flat within 10 %% and exactly once: %t\n", o.passed())
}

func human(name string, v float64) string {
	if name == rss {
		return fmt.Sprintf("%.0f MiB", v/(1<<20))
	}
	return fmt.Sprintf("%.0f", v)
}
