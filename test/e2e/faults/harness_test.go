// Package faults proves meshlens's delivery guarantees with real processes
// under faults: the bus going away and coming back, a server killed with
// SIGKILL mid-burst, an agent restarted, an agent whose clock is wrong and
// an agent whose spool overflows. Each test ends by comparing, per agent,
// what the agent itself counted with what the server's exact cumulative
// counters (meshlens_rack_pair_probes_total) hold: nothing lost, nothing
// counted twice. Every host sits alone in its rack, so a rack-pair source
// is an agent.
package faults

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshlens/meshlens/internal/bus"
	"github.com/meshlens/meshlens/internal/testkit"
	"github.com/meshlens/meshlens/internal/wire"
	"github.com/meshlens/meshlens/test/e2e/e2eutil"
)

// fabric is one server and one agent per host, on loopback.
type fabric struct {
	t                  *testing.T
	bin, dir, topoFile string
	hosts, racks       []string
	// Set by the first startServer from the server's announcement (the
	// kernel picks the ports), unless a test sets natsURL (an external
	// bus, with --nats-url in serverArgs); restarts reuse them.
	httpURL, natsURL   string
	httpAddr, natsAddr string
	tls                bool // https:// and tls:// URLs
	serverArgs         []string
	httpClient         *http.Client
	// natsOpts connect the test itself to the bus (privileged creds, TLS).
	natsOpts []nats.Option
	server   *e2eutil.Process
	agents   map[string]*agentProc
}

type agentProc struct {
	host, spool, metricsURL string
	args                    []string
	p                       *e2eutil.Process
}

// newFabric generates a one-pod topology of n racks with one host each,
// addressed from base (a 127.x.y.1 address of its own per test).
func newFabric(t *testing.T, base string, n int) *fabric {
	t.Helper()
	f := &fabric{t: t, bin: e2eutil.Binary(t), dir: t.TempDir(), agents: map[string]*agentProc{}, httpClient: http.DefaultClient}
	f.topoFile = filepath.Join(f.dir, "fabric.yaml")
	// Every agent binds the responder port on its own address from base:
	// it must be known before they start (see testkit.FixedPort).
	topo := e2eutil.Topology(t, f.topoFile, f.bin, "topo", "gen", "--dcs", "1", "--pods", "1", "--racks-per-pod", strconv.Itoa(n),
		"--hosts-per-rack", "1", "--leaves-per-pod", "1", "--spines", "1", "--base-addr", base,
		"--responder-port", strconv.Itoa(testkit.FixedPort(t, base)))
	for _, h := range topo.Hosts {
		f.hosts = append(f.hosts, h.Name)
		f.racks = append(f.racks, h.Rack)
	}
	if len(f.hosts) != n {
		t.Fatalf("generated hosts %v racks %v, want %d of each", f.hosts, f.racks, n)
	}
	return f
}

// startServer starts (or restarts, on the same data dir) the server and
// waits until it is ready.
func (f *fabric) startServer() {
	f.t.Helper()
	args := []string{"--topology", f.topoFile, "--data-dir", filepath.Join(f.dir, "data"),
		"--window", "2s", "--lateness", "2s", "--probe-interval", "1s", "--probe-timeout", "500ms", "--log-level", "debug"}
	// A restart comes back where agents and the test expect it.
	if f.httpAddr != "" {
		args = append(args, "--http-addr", f.httpAddr)
	}
	if f.natsAddr != "" {
		args = append(args, "--nats-addr", f.natsAddr)
	}
	s := e2eutil.StartServer(f.t, nil, f.bin, append(args, f.serverArgs...)...)
	f.server = s.Process
	httpScheme, natsScheme := "http://", "nats://"
	if f.tls {
		httpScheme, natsScheme = "https://", "tls://"
	}
	if f.httpAddr == "" {
		f.httpAddr, f.httpURL = s.HTTPAddr, httpScheme+s.HTTPAddr
	}
	if f.natsURL == "" {
		f.natsAddr, f.natsURL = s.NATSAddr, natsScheme+s.NATSAddr
	}
	f.waitReady()
}

func (f *fabric) waitReady() {
	f.t.Helper()
	testkit.CheckFor(f.t, time.Minute, 200*time.Millisecond, func() error {
		if exited, err := f.server.Exited(); exited {
			return fmt.Errorf("server exited: %v", err)
		}
		return f.get(f.httpURL+"/readyz", nil)
	})
}

// startAgent starts (or restarts, on the same spool) host's agent.
func (f *fabric) startAgent(host string, extra ...string) *agentProc {
	f.t.Helper()
	a := f.agents[host]
	if a == nil {
		a = &agentProc{host: host, spool: filepath.Join(f.dir, "spool", host)}
		f.agents[host] = a
	}
	if extra != nil {
		a.args = extra
	}
	// The agent does not announce its metrics address: a port known in
	// advance (see testkit.FixedPort).
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", testkit.FixedPort(f.t))
	a.metricsURL = "http://" + metricsAddr + "/metrics"
	args := append([]string{"agent", "--host", host, "--nats-url", f.natsURL, "--spool-dir", a.spool,
		"--batch-max-age", "1s", "--metrics-addr", metricsAddr}, a.args...)
	a.p = e2eutil.Start(f.t, "agent "+host, nil, f.bin, args...)
	testkit.CheckFor(f.t, 30*time.Second, 100*time.Millisecond, func() error {
		if exited, err := a.p.Exited(); exited {
			return fmt.Errorf("agent %s exited: %v", host, err)
		}
		_, err := scrape(http.DefaultClient, a.metricsURL)
		return err
	})
	return a
}

func (f *fabric) startAgents() {
	for _, h := range f.hosts {
		f.startAgent(h)
	}
}

func (f *fabric) get(u string, v any) error {
	resp, err := f.httpClient.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", u, resp.Status, body)
	}
	if v == nil {
		return nil
	}
	return json.Unmarshal(body, v)
}

// sample is one line of a Prometheus text exposition.
type sample struct {
	name   string
	labels string
	value  float64
}

func scrape(c *http.Client, u string) ([]sample, error) {
	resp, err := c.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	var out []sample
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			return nil, fmt.Errorf("%s: bad line %q", u, line)
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("%s: bad line %q: %w", u, line, err)
		}
		s := sample{name: line[:sp], value: v}
		if i := strings.IndexByte(s.name, '{'); i >= 0 {
			s.name, s.labels = s.name[:i], s.name[i:]
		}
		out = append(out, s)
	}
	return out, sc.Err()
}

// sum adds the samples of name whose labels contain every one of want.
func sum(samples []sample, name string, want ...string) float64 {
	var t float64
next:
	for _, s := range samples {
		if s.name != name {
			continue
		}
		for _, w := range want {
			if !strings.Contains(s.labels, w) {
				continue next
			}
		}
		t += s.value
	}
	return t
}

// countedOutcomes are the outcomes that are network measurements
// (wire.Counts): those and only those go into the probes counters.
var countedOutcomes = []string{"OUTCOME_OK", "OUTCOME_LOST", "OUTCOME_SYN_RETRANSMIT", "OUTCOME_BAD_RESPONSE"}

// agentState is what an agent says about itself.
type agentState struct {
	counted, all                float64 // probes: network measurements, and every valid result
	spoolBytes, dropped         float64
	spooled, published, pubErrs float64
	spoolErrs                   float64 // spool writes the disk refused
}

func (f *fabric) agentState(host string) (agentState, error) {
	ss, err := scrape(http.DefaultClient, f.agents[host].metricsURL)
	if err != nil {
		return agentState{}, err
	}
	var st agentState
	for _, o := range countedOutcomes {
		st.counted += sum(ss, "meshlens_agent_probes_total", `outcome="`+o+`"`)
	}
	st.all = sum(ss, "meshlens_agent_probes_total") - sum(ss, "meshlens_agent_probes_total", `outcome="INVALID"`)
	st.spoolBytes = sum(ss, "meshlens_agent_spool_bytes")
	st.dropped = sum(ss, "meshlens_agent_spool_dropped_total")
	st.spooled = sum(ss, "meshlens_agent_batches_spooled_total")
	st.published = sum(ss, "meshlens_agent_batches_published_total")
	st.pubErrs = sum(ss, "meshlens_agent_publish_errors_total")
	st.spoolErrs = sum(ss, "meshlens_agent_spool_errors_total")
	return st, nil
}

// connect opens the test's own connection to the bus.
func (f *fabric) connect() (*nats.Conn, jetstream.JetStream) {
	f.t.Helper()
	nc, err := nats.Connect(f.natsURL, f.natsOpts...)
	if err != nil {
		f.t.Fatalf("test connection to the bus: %v", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		f.t.Fatal(err)
	}
	return nc, js
}

// stopProbing deletes hosts' pinglists: their agents stop probing but stay
// up, seal and publish what they have, and then their own counters are
// final while they can still be read.
func (f *fabric) stopProbing(hosts ...string) map[string]agentState {
	f.t.Helper()
	nc, js := f.connect()
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, bus.PinglistBucket)
	if err != nil {
		f.t.Fatal(err)
	}
	for _, h := range hosts {
		if err := kv.Delete(ctx, h); err != nil {
			f.t.Fatalf("delete pinglist of %s: %v", h, err)
		}
	}
	final := map[string]agentState{}
	for _, h := range hosts {
		var last agentState
		stable := 0
		testkit.CheckFor(f.t, time.Minute, 500*time.Millisecond, func() error {
			st, err := f.agentState(h)
			if err != nil {
				return err
			}
			if st.counted == last.counted && st.all == last.all && st.spoolBytes == 0 {
				stable++
			} else {
				stable = 0
			}
			last = st
			// 3 s without a new result: past the batch age, so the last
			// batch is sealed; empty spool: it is acknowledged.
			if stable < 6 {
				return fmt.Errorf("agent %s still busy: %+v", h, st)
			}
			return nil
		})
		final[h] = last
	}
	return final
}

// serverProbes is the server's exact cumulative probe count per source
// rack (one host each), from its Prometheus-compatible query API.
func (f *fabric) serverProbes() (map[string]float64, error) {
	var r struct {
		Data struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	q := `sum by (src_rack) (last_over_time(meshlens_rack_pair_probes_total[1h]))`
	if err := f.get(f.httpURL+"/api/v1/query?query="+url.QueryEscape(q), &r); err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, s := range r.Data.Result {
		str, _ := s.Value[1].(string)
		v, err := strconv.ParseFloat(str, 64)
		if err != nil {
			return nil, fmt.Errorf("value %v: %w", s.Value, err)
		}
		out[s.Metric["src_rack"]] = v
	}
	return out, nil
}

func (f *fabric) rackOf(host string) string {
	for i, h := range f.hosts {
		if h == host {
			return f.racks[i]
		}
	}
	f.t.Fatalf("no host %s", host)
	return ""
}

// requireExactlyOnce waits until the server's counters reach want (per
// host) and fails at once if any goes beyond it: a double count.
func (f *fabric) requireExactlyOnce(want map[string]float64) {
	f.t.Helper()
	defer func() {
		if f.t.Failed() {
			f.dumpCounters()
		}
	}()
	var got map[string]float64
	testkit.CheckFor(f.t, time.Minute, 500*time.Millisecond, func() error {
		var err error
		if got, err = f.serverProbes(); err != nil {
			return err
		}
		var diffs []string
		for h, w := range want {
			g := got[f.rackOf(h)]
			if g > w {
				f.t.Fatalf("host %s: server counted %v probes, the agent produced %v: counted twice", h, g, w)
			}
			if g != w {
				diffs = append(diffs, fmt.Sprintf("%s: server %v, agent %v", h, g, w))
			}
		}
		if len(diffs) > 0 {
			return errors.New(strings.Join(diffs, "; "))
		}
		return nil
	})
	f.t.Logf("exactly once: %v", got)
}

// dumpCounters logs the server's ingest self-metrics and the probe
// counters' history, to tell a lost result from a double count.
func (f *fabric) dumpCounters() {
	if ss, err := scrape(f.httpClient, f.httpURL+"/metrics"); err == nil {
		var b strings.Builder
		for _, s := range ss {
			if strings.HasPrefix(s.name, "meshlens_ingest") || strings.HasPrefix(s.name, "meshlens_aggregate") {
				fmt.Fprintf(&b, "%s%s %v\n", s.name, s.labels, s.value)
			}
		}
		f.t.Logf("server self-metrics:\n%s", b.String())
	}
	q := url.Values{"query": {`sum by (src_rack) (meshlens_rack_pair_probes_total)`},
		"start": {strconv.FormatInt(time.Now().Add(-10*time.Minute).Unix(), 10)},
		"end":   {strconv.FormatInt(time.Now().Unix(), 10)}, "step": {"2"}}
	var r json.RawMessage
	if err := f.get(f.httpURL+"/api/v1/query_range?"+q.Encode(), &r); err == nil {
		f.t.Logf("probe counters over the last 10 minutes: %s", r)
	}
}

// serverMetric sums a server self-metric from its /metrics.
func (f *fabric) serverMetric(name string, labels ...string) (float64, error) {
	ss, err := scrape(f.httpClient, f.httpURL+"/metrics")
	if err != nil {
		return 0, err
	}
	return sum(ss, name, labels...), nil
}

// streamBatches reads host's batches back from the RESULTS stream: the
// distinct batch ids JetStream holds and the measurements in them.
type streamBatches struct {
	epochs  map[uint64]bool
	seqs    []uint64 // sorted, distinct
	counted float64
}

func (f *fabric) streamBatches(host string) streamBatches {
	f.t.Helper()
	nc, js := f.connect()
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, bus.ResultsStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{bus.ResultsSubjectPrefix + ".*." + host}})
	if err != nil {
		f.t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	out := streamBatches{epochs: map[uint64]bool{}}
	seen := map[string]bool{}
	for n := info.NumPending; n > 0; {
		batch, err := cons.Fetch(int(min(n, 500)), jetstream.FetchMaxWait(10*time.Second))
		if err != nil {
			f.t.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			b, err := wire.Decode(m.Data())
			if err != nil {
				f.t.Fatalf("batch in the stream: %v", err)
			}
			id := bus.BatchMsgID(b.Agent, b.Epoch, b.Seq)
			if seen[id] {
				continue
			}
			seen[id] = true
			out.epochs[b.Epoch] = true
			out.seqs = append(out.seqs, b.Seq)
			for _, r := range b.Results {
				if wire.Counts(r) {
					out.counted++
				}
			}
		}
		if err := batch.Error(); err != nil {
			f.t.Fatal(err)
		}
		if got == 0 {
			f.t.Fatalf("stream read stalled with %d batches pending", n)
		}
		n -= uint64(got)
	}
	sort.Slice(out.seqs, func(i, j int) bool { return out.seqs[i] < out.seqs[j] })
	return out
}

// spoolState reads an agent's epoch and last sealed seq from its spool.
func spoolState(t *testing.T, dir string) (epoch, seq uint64) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct{ Epoch, Seq uint64 }
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("spool state %s: %v", b, err)
	}
	return st.Epoch, st.Seq
}

// waitProbing waits until every agent has results acknowledged.
func (f *fabric) waitProbing(hosts ...string) {
	f.t.Helper()
	for _, h := range hosts {
		testkit.CheckFor(f.t, time.Minute, 500*time.Millisecond, func() error {
			st, err := f.agentState(h)
			if err != nil {
				return err
			}
			if st.published < 2 || st.counted == 0 {
				return fmt.Errorf("agent %s not publishing yet: %+v", h, st)
			}
			return nil
		})
	}
}

// waitDrained waits until every agent has emptied its spool into the bus
// and published fresh batches after that: the backlog is in, and what
// follows is in time. (Results that arrive late count in the server's
// cumulative counters, which reach the TSDB at the next window boundary,
// with a sealed window or alone.)
func (f *fabric) waitDrained(hosts ...string) {
	f.t.Helper()
	for _, h := range hosts {
		var drainedAt float64 = -1
		testkit.CheckFor(f.t, 2*time.Minute, 250*time.Millisecond, func() error {
			st, err := f.agentState(h)
			if err != nil {
				return err
			}
			if st.spoolBytes > 0 {
				drainedAt = -1
				return fmt.Errorf("agent %s: %v bytes still spooled", h, st.spoolBytes)
			}
			if drainedAt < 0 {
				drainedAt = st.published
			}
			if st.published < drainedAt+3 {
				return fmt.Errorf("agent %s: %v fresh batches since its spool drained", h, st.published-drainedAt)
			}
			return nil
		})
	}
}

// tlsClient is an HTTP client for a server with --tls-cert.
func tlsClient(t *testing.T, c *tls.Config) *http.Client {
	t.Helper()
	return &http.Client{Transport: &http.Transport{TLSClientConfig: c}, Timeout: 30 * time.Second}
}
