// Command series counts the series meshlens writes to the TSDB a window,
// for a fabric and a partition count, side by side in one run with the
// rules before issue 15's bound (agents spread over partitions by a hash
// of their name, rack pairs writing their RTT histograms):
//
//	go run ./bench/series [-pods 10 -racks-per-pod 25 -hosts-per-rack 40] [-partitions 1,2,4] [-json]
//
// The load is the synthetic fabric of `meshlens sim live` (no faults;
// the default pinglist, tcp and udp every 10 s). Every host's results of
// three rounds go, by the rule's partition, into one rollups-only
// aggregator per partition (as --pair-detail=off; the series are the same
// with pair detail), each writing to an appender that only counts: a
// series is a distinct label set, partition label included. The table
// gives the series written at the last window's end, when no hourly copy
// is due (the first window also writes every hourly copy), by family.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"

	"github.com/meshlens/meshlens/internal/aggregate"
	"github.com/meshlens/meshlens/internal/bus"
	"github.com/meshlens/meshlens/internal/localize"
	"github.com/meshlens/meshlens/internal/sim"
	"github.com/meshlens/meshlens/internal/wire"
)

const (
	window = 10 * time.Second
	rounds = 3
)

// rule is how series were or are written.
type rule struct {
	Name string `json:"rule"`
	// byRack: agents partitioned by their rack (today), else by name.
	byRack bool
	// rackPairBuckets: rack pairs write RTT histograms (before).
	rackPairBuckets bool
}

var rules = []rule{
	{Name: "before: agents by name, rack-pair histograms", rackPairBuckets: true},
	{Name: "now: agents by rack, no rack-pair histograms", byRack: true},
}

// Result is one rule at one partition count.
type Result struct {
	Rule       string         `json:"rule"`
	Partitions int            `json:"partitions"`
	Series     int            `json:"series_per_window"`
	ByFamily   map[string]int `json:"by_family"`
}

// Run is the whole output.
type Run struct {
	Hosts, Racks, RackPairs int
	Results                 []Result
}

func main() {
	pods := flag.Int("pods", 10, "pods of the one-DC fabric")
	racksPerPod := flag.Int("racks-per-pod", 25, "racks per pod")
	hostsPerRack := flag.Int("hosts-per-rack", 40, "hosts per rack")
	parts := flag.String("partitions", "1,2,4", "partition counts")
	asJSON := flag.Bool("json", false, "print the result as JSON")
	flag.Parse()
	var counts []int
	for _, s := range strings.Split(*parts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fail(fmt.Errorf("-partitions: %q is not a count", s))
		}
		counts = append(counts, n)
	}
	run, err := measure(*pods, *racksPerPod, *hostsPerRack, counts)
	if err != nil {
		fail(err)
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(run); err != nil {
			fail(err)
		}
		return
	}
	report(run)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "series:", err)
	os.Exit(1)
}

// writer is one aggregator and what it wrote.
type writer struct {
	agg *aggregate.Aggregator
	app *countingAppendable
}

// setup is one rule at one partition count: an aggregator per partition.
type setup struct {
	rule    rule
	writers []writer
}

func measure(pods, racksPerPod, hostsPerRack int, counts []int) (*Run, error) {
	doc := fmt.Sprintf("name: series\nseed: 1\ntopology: {generate: {dcs: 1, pods: %d, racks_per_pod: %d, hosts_per_rack: %d, leaves_per_pod: 2, spines: 4}}\nprobing: {interval: 10s, protocols: [tcp, udp]}\nduration: %s\n",
		pods, racksPerPod, hostsPerRack, (rounds+1)*window)
	sc, err := sim.Parse("series.yaml", []byte(doc), nil)
	if err != nil {
		return nil, err
	}
	x, err := localize.NewIndex(sc.Topology)
	if err != nil {
		return nil, err
	}
	start := time.Unix(1_800_000_000, 0).UTC() // a multiple of the window
	fab, err := sim.NewFabric(sc, x, start)
	if err != nil {
		return nil, err
	}
	locate := aggregate.LocatorFunc(sc.Topology.Locate)
	var setups []*setup
	for _, r := range rules {
		for _, n := range counts {
			s := &setup{rule: r}
			for p := range n {
				cfg := aggregate.Config{Window: window, IgnoreMarks: true, RollupsOnly: true, Locator: locate, RackPairRTTBuckets: r.rackPairBuckets}
				if n > 1 {
					cfg.SeriesLabels = map[string]string{"partition": strconv.Itoa(p)}
				}
				app := &countingAppendable{at: start.Add(rounds * window).UnixMilli(), series: map[uint64]string{}, rackPairs: map[string]bool{}}
				cfg.Appendable = app
				agg, err := aggregate.New(cfg)
				if err != nil {
					return nil, err
				}
				s.writers = append(s.writers, writer{agg, app})
			}
			setups = append(setups, s)
		}
	}
	for r := range rounds {
		arrival := fab.RoundStart(r + 1)
		err := fab.Step(r, func(b *wire.Batch) error {
			rack, _, _, _ := sc.Topology.Locate(b.Agent)
			for _, s := range setups {
				n := len(s.writers)
				p := bus.Partition(b.Agent, n)
				if s.rule.byRack {
					p = bus.AgentPartition(b.Agent, rack, n)
				}
				if err := s.writers[p].agg.Ingest(b, arrival); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	run := &Run{Hosts: len(sc.Topology.Hosts)}
	racks := map[string]bool{}
	for _, h := range sc.Topology.Hosts {
		rack, _, _, _ := sc.Topology.Locate(h.Name)
		racks[rack] = true
	}
	run.Racks = len(racks)
	for _, s := range setups {
		res := Result{Rule: s.rule.Name, Partitions: len(s.writers), ByFamily: map[string]int{}}
		pairs := map[string]bool{}
		for _, w := range s.writers {
			if _, err := w.agg.Advance(context.Background(), start.Add(time.Hour)); err != nil {
				return nil, err
			}
			for _, family := range w.app.series {
				res.Series++
				res.ByFamily[family]++
			}
			for p := range w.app.rackPairs {
				pairs[p] = true
			}
		}
		if len(pairs) > run.RackPairs {
			run.RackPairs = len(pairs)
		}
		run.Results = append(run.Results, res)
	}
	return run, nil
}

// family is the group a metric name is counted in.
func family(name string) string {
	n := strings.TrimPrefix(name, "meshlens_")
	switch {
	case strings.HasPrefix(n, "hourly_"):
		return "hourly copies"
	case strings.HasPrefix(n, "rack_pair_"):
		return "rack_pair"
	case strings.HasPrefix(n, "pod_pair_"), strings.HasPrefix(n, "dc_pair_"):
		return "pod and dc pairs"
	case strings.HasPrefix(n, "host_"):
		return "hosts"
	case strings.HasPrefix(n, "rack_"), strings.HasPrefix(n, "pod_"), strings.HasPrefix(n, "dc_"):
		return "elements (racks, pods, dcs)"
	}
	return "other"
}

func report(run *Run) {
	fmt.Printf("%d hosts, %d racks, %d rack pairs probed (1 DC; tcp and udp)\n\n", run.Hosts, run.Racks, run.RackPairs)
	var fams []string
	seen := map[string]bool{}
	for _, r := range run.Results {
		for f := range r.ByFamily {
			if !seen[f] {
				seen[f] = true
				fams = append(fams, f)
			}
		}
	}
	sort.Strings(fams)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "rule\tpartitions\tseries a window\t%s\t\n", strings.Join(fams, "\t"))
	for _, r := range run.Results {
		row := []string{r.Rule, strconv.Itoa(r.Partitions), strconv.Itoa(r.Series)}
		for _, f := range fams {
			row = append(row, strconv.Itoa(r.ByFamily[f]))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	tw.Flush()
}

// countingAppendable keeps the label sets (by hash) written at one
// sample timestamp, with their family, and the rack pairs among them: it
// stores no samples.
type countingAppendable struct {
	at        int64
	series    map[uint64]string
	rackPairs map[string]bool
}

func (c *countingAppendable) Appender(context.Context) storage.Appender {
	return &countingAppender{c: c}
}

type countingAppender struct {
	storage.Appender // only Append, Commit and Rollback are called
	c                *countingAppendable
	pending          []labels.Labels
}

func (a *countingAppender) Append(_ storage.SeriesRef, l labels.Labels, t int64, _ float64) (storage.SeriesRef, error) {
	if t == a.c.at {
		a.pending = append(a.pending, l)
	}
	return 0, nil
}

func (a *countingAppender) AppendExemplar(storage.SeriesRef, labels.Labels, exemplar.Exemplar) (storage.SeriesRef, error) {
	return 0, nil
}

func (a *countingAppender) Commit() error {
	for _, l := range a.pending {
		f := family(l.Get(model.MetricNameLabel))
		a.c.series[l.Hash()] = f
		if f == "rack_pair" {
			a.c.rackPairs[l.Get("src_rack")+" "+l.Get("dst_rack")] = true
		}
	}
	a.pending = nil
	return nil
}

func (a *countingAppender) Rollback() error {
	a.pending = nil
	return nil
}
