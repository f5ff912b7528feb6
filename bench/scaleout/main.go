// Command scaleout measures, in one run and side by side, the throughput of
// the scale-out data path over a real bus (issue 15, item 5): a
// three-node nats-server cluster with the streams replicated three times,
// and VictoriaMetrics as the shared TSDB, all on loopback.
//
//	go run ./bench/scaleout [-pods 4 -racks-per-pod 10 -hosts-per-rack 50] [-backlog 60s] [-batch 1000] [-phases 1x1,2x1,2x2] [-json]
//	go run ./bench/scaleout -report bench/scaleout/results-2026-12-06.json
//
// Each phase starts from empty streams and buckets created with its
// partition count, and:
//
//  1. publishes a backlog (the -backlog seconds of results the synthetic
//     fabric of `meshlens sim live` produces for every host, in batches of
//     -batch results in the wire format, with their subjects and
//     Nats-Msg-Id) with acks: JetStream's publish rate;
//  2. reads the whole stream back with an ordered consumer: its replay
//     rate;
//  3. starts the phase's `meshlens server --role aggregator` processes
//     (PxN: P partitions, N processes) and measures results/s from
//     meshlens_ingest_results_total until the backlog is counted, with
//     each process's VmRSS from /proc;
//  4. waits for the backlog's windows to be sealed and reads the rollups
//     published (meshlens_rollups_published_*) and the counter samples
//     remote-written per window.
//
// Everything runs on loopback, is ended by its pid and its files removed
// at the end, on failure or on a signal too.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshlens/meshlens/bench/internal/benchrun"
	"github.com/meshlens/meshlens/internal/bus"
	"github.com/meshlens/meshlens/internal/sim"
	"github.com/meshlens/meshlens/internal/wire"
)

// Metrics read from the aggregators.
const (
	ingested     = "meshlens_ingest_results_total"
	held         = "meshlens_aggregator_partitions_held"
	rollups      = "meshlens_rollups_published_total"
	rollupBytes  = "meshlens_rollups_published_bytes_total"
	pairsDropped = "meshlens_rollups_pairs_dropped_total"
	samples      = "meshlens_store_remote_write_samples_total"
	vmRSS        = "VmRSS"
)

// interval is the probing interval of the load (the pinglist default) and
// the aggregators' --window.
const interval = 10 * time.Second

// serverFlags are the aggregators' flags beyond the bus, TSDB and
// partitions: window and lateness at their defaults, no evidence on
// demand and no pair detail (rollups only), as at scale.
var serverFlags = []string{"--window", interval.String(), "--evidence=false", "--pair-detail=off"}

type rate struct {
	Seconds       float64 `json:"seconds"`
	PerSecond     float64 `json:"per_second"` // batches (publish) or messages (replay)
	ResultsPerSec float64 `json:"results_per_second"`
	MBPerSec      float64 `json:"mb_per_second"` // 10^6 bytes
}

type phase struct {
	Name       string `json:"name"`
	Partitions int    `json:"partitions"`
	Processes  int    `json:"processes"`
	Batches    int    `json:"batches"`
	Results    int    `json:"results"`
	Bytes      int64  `json:"bytes"`
	Publish    rate   `json:"publish"`
	Replay     rate   `json:"replay"`
	// Ingest: from the aggregators' start until the backlog was counted
	// (Total, with lease campaigns and consumer setup), and between 10 %
	// and 90 % of it (Steady).
	IngestTotal    rate      `json:"ingest_total"`
	IngestSteady   rate      `json:"ingest_steady"`
	FirstResultSec float64   `json:"first_result_seconds"` // start → first result counted
	PeakRSS        []float64 `json:"peak_rss_bytes"`       // per process
	Held           []float64 `json:"partitions_held"`      // per process, at the end
	// The sealed windows: rollup messages (one per partition and window),
	// their bytes, and the counter samples remote-written.
	Rollups      float64 `json:"rollups_published"`
	RollupBytes  float64 `json:"rollups_published_bytes"`
	PairsDropped float64 `json:"rollups_pairs_dropped"`
	Samples      float64 `json:"remote_write_samples"`
	SealSeconds  float64 `json:"seal_seconds"` // start → every window published
	// SeriesByMetric is what the phase wrote to the TSDB: series per
	// metric name (the samples of a window, broken down).
	SeriesByMetric map[string]float64 `json:"tsdb_series_by_metric,omitempty"`
	Note           string             `json:"note,omitempty"`
}

type outcome struct {
	Date           string   `json:"date"`
	Hosts          int      `json:"hosts"`
	Fabric         string   `json:"fabric"`
	ResultsPerHost int      `json:"results_per_host_per_interval"`
	BacklogSeconds float64  `json:"backlog_seconds"`
	BatchResults   int      `json:"batch_results"`
	ServerFlags    []string `json:"server_flags"`
	NATS           string   `json:"nats"`
	Phases         []phase  `json:"phases"`
}

func main() {
	var fab benchrun.Fabric
	flag.IntVar(&fab.Pods, "pods", 4, "pods of the one-DC fabric")
	flag.IntVar(&fab.RacksPerPod, "racks-per-pod", 10, "racks per pod")
	flag.IntVar(&fab.HostsPerRack, "hosts-per-rack", 50, "hosts per rack")
	backlog := flag.Duration("backlog", 5*time.Minute, "the backlog preloaded in each phase: this much of every host's results (a multiple of 10s)")
	batch := flag.Int("batch", 1000, "results per batch")
	phases := flag.String("phases", "1x1,2x1,2x2", "phases, PARTITIONSxPROCESSES")
	limit := flag.Duration("phase-timeout", 4*time.Minute, "the longest the aggregators of one phase may take")
	asJSON := flag.Bool("json", false, "print the result as JSON")
	flag.BoolVar(&keep, "keep", false, "keep the run's directory (logs, stores) and say where")
	from := flag.String("report", "", "print the table of a saved -json run instead of running")
	flag.Parse()
	if *from != "" {
		var out outcome
		data, err := os.ReadFile(*from)
		if err == nil {
			err = json.Unmarshal(data, &out)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench-scaleout:", err)
			os.Exit(1)
		}
		report(os.Stdout, &out)
		return
	}
	fab.LeavesPerPod, fab.Spines = 2, 4
	var specs [][2]int
	for _, p := range strings.Split(*phases, ",") {
		a, b, ok := strings.Cut(p, "x")
		n, err1 := strconv.Atoi(a)
		k, err2 := strconv.Atoi(b)
		if !ok || err1 != nil || err2 != nil || n < 1 || k < 1 {
			fmt.Fprintf(os.Stderr, "bench-scaleout: -phases: %q is not PARTITIONSxPROCESSES\n", p)
			os.Exit(2)
		}
		specs = append(specs, [2]int{n, k})
	}
	if *backlog < interval || *backlog%interval != 0 {
		fmt.Fprintln(os.Stderr, "bench-scaleout: -backlog must be a multiple of", interval)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	out, err := run(ctx, fab, *backlog, *batch, specs, *limit)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-scaleout:", err)
		os.Exit(1)
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
	} else {
		report(os.Stdout, out)
	}
}

// env is what every phase shares: binaries, topology, the bus; and the
// TSDB of the phase running.
type env struct {
	dir, bin, topoFile string
	sc                 *sim.Scenario
	nats               *benchrun.NATSCluster
	vmURL              string
	nc                 *nats.Conn
	js                 jetstream.JetStream
}

func run(ctx context.Context, fab benchrun.Fabric, backlog time.Duration, batch int, specs [][2]int, limit time.Duration) (*outcome, error) {
	dir, err := os.MkdirTemp("", "meshlens-bench-scaleout-")
	if err != nil {
		return nil, err
	}
	if keep {
		fmt.Fprintln(os.Stderr, "bench-scaleout: keeping", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	e := &env{dir: dir, topoFile: filepath.Join(dir, "topo.yaml")}
	if e.bin, err = benchrun.Build(ctx, dir); err != nil {
		return nil, err
	}
	natsBin, err := benchrun.BuildNATSServer(ctx, dir)
	if err != nil {
		return nil, err
	}
	if err := benchrun.GenTopology(ctx, e.bin, e.topoFile, fab); err != nil {
		return nil, err
	}
	// The scenario is the load only: no faults, rounds enough for every
	// phase's backlog.
	scFile := filepath.Join(dir, "load.yaml")
	if err := benchrun.WriteScenario(scFile, "scaleout", e.topoFile, backlog, nil); err != nil {
		return nil, err
	}
	if e.sc, err = sim.Load(scFile); err != nil {
		return nil, err
	}
	const maxPayload = "8MB"
	if e.nats, err = benchrun.StartNATSCluster(ctx, natsBin, filepath.Join(dir, "nats"), maxPayload); err != nil {
		return nil, err
	}
	defer e.nats.Stop()
	if e.nc, err = nats.Connect(e.nats.URL(), nats.Name("bench-scaleout"), nats.MaxReconnects(-1)); err != nil {
		return nil, err
	}
	defer e.nc.Close()
	if e.js, err = jetstream.New(e.nc, jetstream.WithPublishAsyncMaxPending(512)); err != nil {
		return nil, err
	}
	out := &outcome{Date: time.Now().UTC().Format(time.DateOnly), Hosts: fab.Hosts(),
		Fabric:         fmt.Sprintf("1 DC, %d pods × %d racks × %d hosts", fab.Pods, fab.RacksPerPod, fab.HostsPerRack),
		BacklogSeconds: backlog.Seconds(), BatchResults: batch, ServerFlags: serverFlags,
		NATS: "3 nodes, max_payload " + maxPayload + ", streams R3"}
	for i, sp := range specs {
		p, err := e.phase(ctx, i, sp[0], sp[1], backlog, batch, limit)
		if err != nil {
			return nil, fmt.Errorf("phase %dx%d: %w", sp[0], sp[1], err)
		}
		if out.ResultsPerHost == 0 {
			out.ResultsPerHost = p.Results / out.Hosts / int(backlog/interval)
		}
		out.Phases = append(out.Phases, *p)
		fmt.Fprintf(os.Stderr, "bench-scaleout: phase %s: publish %.0f results/s, replay %.0f msg/s, ingest %.0f results/s (steady %.0f)\n",
			p.Name, p.Publish.ResultsPerSec, p.Replay.PerSecond, p.IngestTotal.ResultsPerSec, p.IngestSteady.ResultsPerSec)
	}
	return out, nil
}

// reset empties the bus: the streams and buckets go, and the results
// stream and buckets come back as the server makes them, with partitions
// subjects and three replicas, with the rollups stream.
func (e *env) reset(ctx context.Context, partitions int) error {
	for _, s := range []string{bus.ResultsStream, bus.RollupsStream} {
		if err := e.js.DeleteStream(ctx, s); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("delete stream %s: %w", s, err)
		}
	}
	for _, b := range []string{bus.PinglistBucket, bus.EvidenceBucket, bus.FleetBucket, bus.StateBucket} {
		if err := e.js.DeleteKeyValue(ctx, b); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("delete bucket %s: %w", b, err)
		}
	}
	if err := bus.EnsureStreams(ctx, e.js, bus.StreamSettings{Partitions: partitions, MaxMsgSize: wire.MaxBatchBytes + 64<<10, Replicas: 3}); err != nil {
		return err
	}
	// The rollups stream too, as the aggregators would: two aggregators
	// started at once on a fresh cluster both wait on their create of it
	// until their setup times out (reported with issue 15's run).
	return bus.EnsureRollupStream(ctx, e.js, bus.RollupStreamSettings{Partitions: partitions, MaxMsgSize: wire.MaxRollupBytes + 64<<10, Replicas: 3})
}

func (e *env) phase(ctx context.Context, i, partitions, procs int, backlog time.Duration, batch int, limit time.Duration) (*phase, error) {
	p := &phase{Name: fmt.Sprintf("%dx%d", partitions, procs), Partitions: partitions, Processes: procs}
	if err := e.reset(ctx, partitions); err != nil {
		return nil, err
	}
	// The backlog is the last -backlog of probing, as if the aggregators
	// had been away for it.
	rounds := int(backlog / interval)
	start := time.Now().Truncate(interval).Add(-backlog)
	batches, err := benchrun.Backlog(benchrun.BacklogConfig{Scenario: e.sc, Start: start, Rounds: rounds,
		BatchResults: batch, Partitions: partitions, Epoch: uint64(time.Now().UnixNano())})
	if err != nil {
		return nil, err
	}
	for _, b := range batches {
		p.Batches++
		p.Results += b.Results
		p.Bytes += int64(len(b.Data))
	}
	if p.Publish, err = e.publish(ctx, batches); err != nil {
		return nil, err
	}
	batches = nil
	if p.Replay, err = e.replay(ctx, p.Batches, p.Results); err != nil {
		return nil, err
	}
	// A fresh TSDB per phase: --remote-write-external-label does not
	// reach the remote store of the roles (reported), so the phases'
	// series would be mixed in one.
	vmDir := filepath.Join(e.dir, "vm-"+p.Name)
	if err := os.MkdirAll(vmDir, 0o755); err != nil {
		return nil, err
	}
	vm, vmURL, err := benchrun.StartVictoriaMetrics(ctx, vmDir)
	if err != nil {
		return nil, err
	}
	defer vm.Stop()
	e.vmURL = vmURL
	return p, e.aggregate(ctx, i, p, limit)
}

// publish sends every batch with its id and waits for every ack, with at
// most window batches unacknowledged (as the agents' publishers wait).
func (e *env) publish(ctx context.Context, batches []Batch) (rate, error) {
	const window = 256
	wait := func(a jetstream.PubAckFuture) error {
		select {
		case ack := <-a.Ok():
			if ack.Duplicate {
				return fmt.Errorf("publish: batch %s taken for a duplicate", a.Msg().Header.Get(jetstream.MsgIDHeader))
			}
			return nil
		case err := <-a.Err():
			return fmt.Errorf("publish: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	t0 := time.Now()
	var bytes int64
	results := 0
	var inflight []jetstream.PubAckFuture
	for _, b := range batches {
		if len(inflight) == window {
			if err := wait(inflight[0]); err != nil {
				return rate{}, err
			}
			inflight = inflight[1:]
		}
		a, err := e.js.PublishAsync(b.Subject, b.Data, jetstream.WithMsgID(b.MsgID))
		if err != nil {
			return rate{}, fmt.Errorf("publish: %w", err)
		}
		inflight = append(inflight, a)
		bytes += int64(len(b.Data))
		results += b.Results
	}
	for _, a := range inflight {
		if err := wait(a); err != nil {
			return rate{}, err
		}
	}
	s := time.Since(t0).Seconds()
	return rate{Seconds: s, PerSecond: float64(len(batches)) / s, ResultsPerSec: float64(results) / s, MBPerSec: float64(bytes) / s / 1e6}, nil
}

// Batch is the load generator's.
type Batch = benchrun.Batch

// replay reads the whole results stream with an ordered consumer.
func (e *env) replay(ctx context.Context, msgs, results int) (rate, error) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	t0 := time.Now()
	c, err := e.js.OrderedConsumer(rctx, bus.ResultsStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return rate{}, fmt.Errorf("replay: %w", err)
	}
	it, err := c.Messages(jetstream.PullMaxMessages(1024))
	if err != nil {
		return rate{}, fmt.Errorf("replay: %w", err)
	}
	defer it.Stop()
	var bytes int64
	for n := 0; n < msgs; n++ {
		m, err := it.Next(jetstream.NextContext(rctx))
		if err != nil {
			return rate{}, fmt.Errorf("replay: message %d of %d: %w", n+1, msgs, err)
		}
		bytes += int64(len(m.Data()))
	}
	s := time.Since(t0).Seconds()
	return rate{Seconds: s, PerSecond: float64(msgs) / s, ResultsPerSec: float64(results) / s, MBPerSec: float64(bytes) / s / 1e6}, nil
}

var runningLine = regexp.MustCompile(`meshlens server running.*\bhttp=(\S+)`)

// aggregate starts the phase's aggregators on the preloaded stream and
// watches them count it and seal its windows.
func (e *env) aggregate(ctx context.Context, i int, p *phase, limit time.Duration) error {
	t0 := time.Now()
	var servers []*benchrun.Proc
	defer func() {
		for _, s := range servers {
			s.Stop()
		}
	}()
	for k := range p.Processes {
		id := fmt.Sprintf("agg%d-%d", i, k)
		args := append([]string{"server", "--role", "aggregator", "--server-id", id,
			"--nats-url", e.nats.URL(), "--stream-replicas", "3", "--partitions", strconv.Itoa(p.Partitions),
			"--query-url", e.vmURL, "--remote-write-url", e.vmURL + "/api/v1/write",
			"--topology", e.topoFile, "--data-dir", filepath.Join(e.dir, id), "--http-addr", "127.0.0.1:0"}, serverFlags...)
		s, err := benchrun.Start(e.bin, filepath.Join(e.dir, id+".log"), args...)
		if err != nil {
			return err
		}
		servers = append(servers, s)
	}
	var metricsURLs []string
	for _, s := range servers {
		var url string
		if err := benchrun.Poll(ctx, time.Minute, func() bool {
			if m := runningLine.FindSubmatch(s.Output()); m != nil {
				url = "http://" + string(m[1]) + "/metrics"
			}
			return url != ""
		}); err != nil {
			s.DumpGoroutines()
			return fmt.Errorf("aggregator did not start: %w (goroutines in %s)\n%s", err, s.Log, tail(s.Output()))
		}
		metricsURLs = append(metricsURLs, url)
	}
	p.PeakRSS = make([]float64, len(servers))
	type point struct{ at, v float64 }
	var points []point
	last := map[string]float64{}
	scrape := func() error {
		sum := map[string]float64{}
		for k, s := range servers {
			select {
			case <-s.Done():
				return fmt.Errorf("aggregator %d: %w:\n%s", k, errExited, tail(s.Output()))
			default:
			}
			v, err := benchrun.Scrape(metricsURLs[k], ingested, held, rollups, rollupBytes, pairsDropped, samples)
			if err != nil {
				return err
			}
			if err := benchrun.ProcStatus(s.Pid(), v, vmRSS); err == nil {
				p.PeakRSS[k] = max(p.PeakRSS[k], v[vmRSS])
			}
			for n, x := range v {
				sum[n] += x
			}
			if len(p.Held) < len(servers) {
				p.Held = append(p.Held, 0)
			}
			p.Held[k] = v[held]
		}
		last = sum
		points = append(points, point{time.Since(t0).Seconds(), sum[ingested]})
		return nil
	}
	total := float64(p.Results)
	var exited error
	err := benchrun.Poll(ctx, limit, func() bool {
		if err := scrape(); err != nil {
			if errors.Is(err, errExited) {
				exited = err
				return true
			}
			fmt.Fprintln(os.Stderr, "bench-scaleout: scrape:", err)
			return false
		}
		return last[ingested] >= total
	})
	if exited != nil {
		return exited
	}
	if err != nil {
		return fmt.Errorf("the backlog was not counted (%.0f of %.0f results): %w\n%s", last[ingested], total, err, tail(servers[0].Output()))
	}
	if last[ingested] > total {
		p.Note = fmt.Sprintf("counted %.0f results of %.0f published", last[ingested], total)
	}
	end := points[len(points)-1].at
	p.IngestTotal = rate{Seconds: end, ResultsPerSec: total / end}
	var first, at10, at90 point
	for _, pt := range points {
		if first.at == 0 && pt.v > 0 {
			first = pt
		}
		if at10.at == 0 && pt.v >= 0.1*total {
			at10 = pt
		}
		if at90.at == 0 && pt.v >= 0.9*total {
			at90 = pt
		}
	}
	p.FirstResultSec = first.at
	if at90.at > at10.at {
		p.IngestSteady = rate{Seconds: at90.at - at10.at, ResultsPerSec: (at90.v - at10.v) / (at90.at - at10.at)}
	}
	// Every window of the backlog is sealed and published once every
	// agent's mark is past it (and a new aggregator has listened for
	// --lateness).
	want := float64(p.Partitions) * (e.sc.Duration.Seconds() / interval.Seconds())
	if err := benchrun.Poll(ctx, 2*time.Minute, func() bool {
		if err := scrape(); err != nil {
			return false
		}
		return last[rollups] >= want
	}); err != nil {
		p.Note = strings.TrimSpace(p.Note + fmt.Sprintf(" only %.0f of %.0f windows published", last[rollups], want))
	}
	p.SealSeconds = time.Since(t0).Seconds()
	// The counters of the last seal are written with it; one more scrape
	// a few seconds on takes any write in flight.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(3 * time.Second):
	}
	if err := scrape(); err != nil {
		return err
	}
	p.Rollups, p.RollupBytes, p.PairsDropped, p.Samples = last[rollups], last[rollupBytes], last[pairsDropped], last[samples]
	p.SeriesByMetric, err = seriesByMetric(ctx, e.vmURL)
	if err != nil {
		return fmt.Errorf("tsdb series: %w", err)
	}
	return nil
}

// seriesByMetric counts the series in VictoriaMetrics (the phase's own:
// each phase has a fresh one), per metric name.
func seriesByMetric(ctx context.Context, vmURL string) (map[string]float64, error) {
	q := `count by (__name__) (last_over_time({__name__=~"meshlens_.+"}[1h]))`
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, vmURL+"/api/v1/query?query="+url.QueryEscape(q), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("query %s: %s", q, body.Status)
	}
	out := map[string]float64{}
	for _, r := range body.Data.Result {
		v, _ := r.Value[1].(string)
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return nil, err
		}
		out[r.Metric["__name__"]] = n
	}
	return out, nil
}

// keep: the run's directory stays (-keep).
var keep bool

var errExited = errors.New("aggregator exited")

func tail(b []byte) string {
	const n = 4000
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func report(w io.Writer, o *outcome) {
	fmt.Fprintf(w, "%d hosts (%s), %d results per host per %s, backlog %.0fs of results in batches of %d; NATS %s; aggregators %s\n\n",
		o.Hosts, o.Fabric, o.ResultsPerHost, interval, o.BacklogSeconds, o.BatchResults, o.NATS, strings.Join(o.ServerFlags, " "))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "PHASE\tBATCHES\tRESULTS\tMB\tPUBLISH batch/s\tresults/s\tMB/s\tREPLAY msg/s\tMB/s\tAGGREGATE results/s\tsteady\tper process\tfirst result s\tpeak RSS MiB\t")
	for _, p := range o.Phases {
		rss := make([]string, len(p.PeakRSS))
		for k, r := range p.PeakRSS {
			rss[k] = fmt.Sprintf("%.0f", r/(1<<20))
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f\t%.0f\t%.0f\t%.1f\t%.0f\t%.1f\t%.0f\t%.0f\t%.0f\t%.1f\t%s\t\n", p.Name, p.Batches, p.Results, float64(p.Bytes)/1e6,
			p.Publish.PerSecond, p.Publish.ResultsPerSec, p.Publish.MBPerSec, p.Replay.PerSecond, p.Replay.MBPerSec,
			p.IngestTotal.ResultsPerSec, p.IngestSteady.ResultsPerSec, p.IngestTotal.ResultsPerSec/float64(p.Processes), p.FirstResultSec, strings.Join(rss, "+"))
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "PHASE\tROLLUPS\tBYTES/ROLLUP\tBYTES/WINDOW (all partitions)\tSAMPLES/WINDOW\tPAIRS DROPPED\tHELD\tSEALED AFTER s\t")
	for _, p := range o.Phases {
		windows := p.Rollups / float64(p.Partitions)
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%v\t%.0f\t\n", p.Name, p.Rollups, div(p.RollupBytes, p.Rollups), div(p.RollupBytes, windows),
			div(p.Samples, windows), p.PairsDropped, p.Held, p.SealSeconds)
	}
	tw.Flush()
	if len(o.Phases) > 0 && len(o.Phases[0].SeriesByMetric) > 0 {
		p := o.Phases[0]
		names := make([]string, 0, len(p.SeriesByMetric))
		for n := range p.SeriesByMetric {
			names = append(names, n)
		}
		sort.Slice(names, func(i, j int) bool { return p.SeriesByMetric[names[i]] > p.SeriesByMetric[names[j]] })
		fmt.Fprintf(w, "\nTSDB series written in phase %s, by metric (each written at every seal):\n", p.Name)
		for _, n := range names {
			fmt.Fprintf(w, "  %8.0f  %s\n", p.SeriesByMetric[n], n)
		}
	}
	for _, p := range o.Phases {
		if p.Note != "" {
			fmt.Fprintf(w, "%s: %s\n", p.Name, p.Note)
		}
	}
}

func div(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
