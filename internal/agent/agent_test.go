package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/meshlens/meshlens/internal/bus"
	"github.com/meshlens/meshlens/internal/bus/bustest"
	"github.com/meshlens/meshlens/internal/pinglist"
	"github.com/meshlens/meshlens/internal/probe"
	"github.com/meshlens/meshlens/internal/testkit"
	"github.com/meshlens/meshlens/internal/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var fleetKey = []byte("fleet key for the agent tests, 32+")

type fixture struct {
	t     *testing.T
	srv   *bus.Embedded
	store string
	url   string // the server's, read back after the kernel picked its port
	nc    *nats.Conn
	js    jetstream.JetStream
	pls   jetstream.KeyValue
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{t: t, store: t.TempDir()}
	f.srv = bustest.StartNATS(t, bus.EmbeddedConfig{StoreDir: f.store})
	f.url = f.srv.ClientURL()
	f.connect()
	ctx := context.Background()
	if _, err := f.js.CreateStream(ctx, jetstream.StreamConfig{Name: bus.ResultsStream,
		Subjects: []string{bus.ResultsSubjectPrefix + ".>"}, Duplicates: 2 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	var err error
	if f.pls, err = f.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bus.PinglistBucket}); err != nil {
		t.Fatal(err)
	}
	fleet, err := f.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bus.FleetBucket})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fleet.Put(ctx, bus.ResponderKeyKey, fleetKey); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) connect() {
	nc, err := nats.Connect(f.url)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(nc.Close)
	f.nc = nc
	if f.js, err = jetstream.New(nc); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) stop() { f.srv.Shutdown() }

// restart brings the server back where the agents expect it: its old
// address (bound until stop, so only a process racing for that exact port
// in between could take it, and StartNATS then fails the test) and store.
func (f *fixture) restart() {
	f.srv = bustest.StartNATS(f.t, bus.EmbeddedConfig{Addr: strings.TrimPrefix(f.url, "nats://"), StoreDir: f.store})
	f.connect()
	var err error
	if f.pls, err = f.js.KeyValue(context.Background(), bus.PinglistBucket); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) putPinglist(pl *pinglist.Pinglist) {
	f.t.Helper()
	b, err := pinglist.Encode(pl)
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.pls.Put(context.Background(), pl.Host, b); err != nil {
		f.t.Fatal(err)
	}
}

// batches reads the whole results stream, in stream order.
func (f *fixture) batches() []*wire.Batch {
	f.t.Helper()
	ctx := context.Background()
	st, err := f.js.Stream(ctx, bus.ResultsStream)
	if err != nil {
		f.t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	var out []*wire.Batch
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			f.t.Fatal(err)
		}
		b, err := wire.Decode(m.Data)
		if err != nil {
			f.t.Fatal(err)
		}
		if want := bus.ResultsSubject(0, b.Agent); m.Subject != want {
			f.t.Errorf("batch on %s, want %s", m.Subject, want)
		}
		if got, want := m.Header.Get(jetstream.MsgIDHeader), bus.BatchMsgID(b.Agent, b.Epoch, b.Seq); got != want {
			f.t.Errorf("msg id %q, want %q", got, want)
		}
		out = append(out, b)
	}
	return out
}

func testPinglist(host, addr string, port int, version uint64, peers ...pinglist.Peer) *pinglist.Pinglist {
	return &pinglist.Pinglist{
		Host: host, Addr: addr, Version: version, Generated: time.Now(),
		Interval: pinglist.Duration(100 * time.Millisecond), Timeout: pinglist.Duration(500 * time.Millisecond), Window: pinglist.Duration(time.Second),
		Protocols: []string{"tcp", "udp"}, ResponderPort: port, Peers: peers,
	}
}

type runningAgent struct {
	*Agent
	reg  *prometheus.Registry
	stop func()
}

func startAgent(t *testing.T, cfg Config) *runningAgent {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	if cfg.BatchMaxAge == 0 {
		cfg.BatchMaxAge = 150 * time.Millisecond
	}
	cfg.PublishTimeout = time.Second
	cfg.Version = "test"
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var stopped bool
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent %s: %v", cfg.Host, err)
		}
	}
	t.Cleanup(stop)
	return &runningAgent{Agent: a, reg: reg, stop: stop}
}

// results counts results per (agent, dst, protocol, outcome) and checks
// that no (agent, epoch, seq) appears twice and seqs have no gaps.
func checkBatches(t *testing.T, bs []*wire.Batch) map[string]int {
	t.Helper()
	seen := map[string]bool{}
	last := map[string]uint64{}
	mark := map[string]int64{} // the mark sealed so far, per agent and epoch
	counts := map[string]int{}
	for _, b := range bs {
		id := bus.BatchMsgID(b.Agent, b.Epoch, b.Seq)
		if seen[id] {
			t.Errorf("batch %s twice", id)
		}
		seen[id] = true
		k := fmt.Sprintf("%s:%d", b.Agent, b.Epoch)
		if b.Seq != last[k]+1 {
			t.Errorf("batch %s follows seq %d", id, last[k])
		}
		last[k] = b.Seq
		if b.AgentVersion != "test" || b.CreatedUnixNano == 0 || b.SchedulingLag == nil {
			t.Errorf("batch %s header %v", id, b)
		}
		for _, r := range b.Results {
			counts[fmt.Sprintf("%s>%s %s %s", b.Agent, r.Dst, r.Protocol, r.Outcome)]++
			// The promise of the marks: every result started before an
			// earlier batch's mark was in that batch or before it.
			if r.StartUnixNano < mark[k] {
				t.Errorf("batch %s holds a result started at %d, before the mark %d of an earlier batch", id, r.StartUnixNano, mark[k])
			}
		}
		if m := b.CompleteBeforeUnixNano; m != 0 {
			if m < mark[k] {
				t.Errorf("batch %s marks %d, below the earlier %d", id, m, mark[k])
			}
			mark[k] = m
		}
	}
	return counts
}

func TestAgentsProbeEachOtherAndPublishOnce(t *testing.T) {
	f := newFixture(t)
	port := testkit.FixedPort(t, "127.0.1.1", "127.0.1.2", "127.0.1.3")
	peerA := pinglist.Peer{Host: "a", Addr: "127.0.1.1", Level: 1}
	peerB := pinglist.Peer{Host: "b", Addr: "127.0.1.2", Level: 1}
	f.putPinglist(testPinglist("a", "127.0.1.1", port, 1, peerB))
	f.putPinglist(testPinglist("b", "127.0.1.2", port, 1, peerA))
	a := startAgent(t, Config{Host: "a", NATSURL: f.url, SpoolDir: t.TempDir()})
	b := startAgent(t, Config{Host: "b", NATSURL: f.url, SpoolDir: t.TempDir()})

	ok := func(counts map[string]int, key string) bool { return counts[key] >= 3 }
	t0 := time.Now()
	defer func() { t.Logf("took %v", time.Since(t0)) }()
	testkit.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		c := checkBatches(t, f.batches())
		if !(ok(c, "a>b PROTOCOL_TCP OUTCOME_OK") && ok(c, "a>b PROTOCOL_UDP OUTCOME_OK") &&
			ok(c, "b>a PROTOCOL_TCP OUTCOME_OK") && ok(c, "b>a PROTOCOL_UDP OUTCOME_OK")) {
			return errors.New("waiting for both agents' tcp and udp results")
		}
		return nil
	})

	// Live update: a also probes c, a responder of the test's own.
	c, err := probe.NewResponder(probe.ResponderConfig{Addr: fmt.Sprintf("127.0.1.3:%d", port), Keys: [][]byte{fleetKey}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cdone := make(chan error, 1)
	go func() { cdone <- c.Run(ctx) }()
	defer func() { cancel(); <-cdone }()
	f.putPinglist(testPinglist("a", "127.0.1.1", port, 2, peerB, pinglist.Peer{Host: "c", Addr: "127.0.1.3"}))
	t.Logf("first results after %v", time.Since(t0))
	testkit.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		c := checkBatches(t, f.batches())
		if !(ok(c, "a>c PROTOCOL_TCP OUTCOME_OK") && ok(c, "a>c PROTOCOL_UDP OUTCOME_OK")) {
			return errors.New("waiting for a's results for c")
		}
		return nil
	})
	t.Logf("results for c after %v", time.Since(t0))
	// The probe counters tell peers apart by their pinglist level.
	for _, tc := range []struct {
		class string
		min   float64
	}{{"intra_rack", 3}, {"other", 3}, {"intra_dc", 0}} {
		got := testutil.ToFloat64(a.m.probes.WithLabelValues("PROTOCOL_TCP", "OUTCOME_OK", tc.class))
		if (tc.min > 0 && got < tc.min) || (tc.min == 0 && got != 0) {
			t.Errorf("a's tcp probes of class %s: %v, want %v", tc.class, got, tc.min)
		}
	}
	var v2 bool
	for _, bt := range f.batches() {
		v2 = v2 || (bt.Agent == "a" && bt.PinglistVersion == 2)
	}
	if !v2 {
		t.Error("no batch of a carries pinglist version 2")
	}
	if got := testutil.ToFloat64(a.m.pinglistVersion); got != 2 {
		t.Errorf("pinglist version gauge %v", got)
	}

	// An invalid pinglist is refused and counted; probing goes on.
	if _, err := f.pls.Put(context.Background(), "b", []byte(`{"host":"b","interval":"-1s"}`)); err != nil {
		t.Fatal(err)
	}
	testkit.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		if testutil.ToFloat64(b.m.pinglistRejected) != 1 {
			return errors.New("waiting for the rejection")
		}
		return nil
	})
	// Each agent marked where its data ends past every window boundary
	// it lived through (checkBatches holds them to what they promise).
	testkit.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		boundaries := map[string]map[int64]bool{}
		for _, bt := range f.batches() {
			if boundaries[bt.Agent] == nil {
				boundaries[bt.Agent] = map[int64]bool{}
			}
			if m := bt.CompleteBeforeUnixNano; m > 0 {
				boundaries[bt.Agent][m/int64(time.Second)] = true
			}
		}
		if len(boundaries["a"]) < 3 || len(boundaries["b"]) < 3 {
			return fmt.Errorf("marks past %d and %d window boundaries, want 3 each", len(boundaries["a"]), len(boundaries["b"]))
		}
		return nil
	})
	a.stop()
	b.stop()
	checkBatches(t, f.batches())
	// A clean stop seals the partial batch into the spool, for the next
	// start to publish: at most that one is left.
	if n := a.spool.pending(); n > 1 {
		t.Errorf("%d batches left unpublished", n)
	}
}

// TestAgentSurvivesBusOutageAndRestart: the bus goes away; the agent
// spools; it is restarted while the bus is still away and probes from its
// cached pinglist; the bus comes back; every batch arrives once, in order,
// with seqs continuing across the restart.
func TestAgentSurvivesBusOutageAndRestart(t *testing.T) {
	f := newFixture(t)
	port := testkit.FixedPort(t, "127.0.1.11", "127.0.1.12")
	r, err := probe.NewResponder(probe.ResponderConfig{Addr: fmt.Sprintf("127.0.1.12:%d", port), Keys: [][]byte{fleetKey}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rdone := make(chan error, 1)
	go func() { rdone <- r.Run(ctx) }()
	defer func() { cancel(); <-rdone }()
	f.putPinglist(testPinglist("h1", "127.0.1.11", port, 1, pinglist.Peer{Host: "h2", Addr: "127.0.1.12"}))
	spoolDir := t.TempDir()
	cfg := Config{Host: "h1", NATSURL: f.url, SpoolDir: spoolDir}
	a := startAgent(t, cfg)
	testkit.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		if len(f.batches()) < 2 {
			return errors.New("waiting for first batches")
		}
		return nil
	})
	epoch := a.Epoch()

	f.stop()
	testkit.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		if a.spool.pending() < 3 {
			return errors.New("waiting for batches to pile up in the spool")
		}
		return nil
	})
	a.stop()
	a2 := startAgent(t, cfg)
	if a2.Epoch() != epoch {
		t.Fatalf("epoch changed across restart: %d -> %d", epoch, a2.Epoch())
	}
	before := a2.spool.pending()
	testkit.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		if a2.spool.pending() < before+3 {
			return errors.New("waiting for the restarted agent to probe from its cached pinglist")
		}
		return nil
	})
	if testutil.ToFloat64(a2.m.spoolBytes) <= 0 {
		t.Error("spool bytes gauge is zero")
	}

	f.restart()
	testkit.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		if a2.spool.pending() != 0 || testutil.ToFloat64(a2.m.batchesPublished) == 0 {
			return errors.New("waiting for the spool to drain")
		}
		return nil
	})
	// The pinglist watch came back with the bus: a new version applies.
	f.putPinglist(testPinglist("h1", "127.0.1.11", port, 2, pinglist.Peer{Host: "h2", Addr: "127.0.1.12"}))
	testkit.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		if testutil.ToFloat64(a2.m.pinglistVersion) != 2 {
			return errors.New("waiting for pinglist version 2")
		}
		return nil
	})
	a2.stop()
	bs := f.batches()
	counts := checkBatches(t, bs)
	for _, b := range bs {
		if b.Epoch != epoch {
			t.Errorf("batch %d of epoch %d", b.Seq, b.Epoch)
		}
	}
	if counts["h1>h2 PROTOCOL_TCP OUTCOME_OK"] == 0 || counts["h1>h2 PROTOCOL_UDP OUTCOME_OK"] == 0 {
		t.Errorf("results %v", counts)
	}
	// Every sealed seq is in the stream or still in the spool (the stop
	// sealed a last partial batch, and may have cut a publish short
	// after the server stored it: the next start publishes it again and
	// JetStream drops the copy).
	have := map[uint64]bool{}
	for _, b := range bs {
		have[b.Seq] = true
	}
	a2.spool.mu.Lock()
	for _, e := range a2.spool.entries {
		have[e.seq] = true
	}
	a2.spool.mu.Unlock()
	for seq := uint64(1); seq <= a2.spool.lastSeq; seq++ {
		if !have[seq] {
			t.Errorf("batch %d lost", seq)
		}
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	corrupt := t.TempDir()
	if err := os.WriteFile(filepath.Join(corrupt, stateFile), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no host", Config{NATSURL: "nats://x", SpoolDir: dir}},
		{"no url", Config{Host: "h", SpoolDir: dir}},
		{"no spool", Config{Host: "h", NATSURL: "nats://x"}},
		{"corrupt state", Config{Host: "h", NATSURL: "nats://x", SpoolDir: corrupt}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

func TestAgentICMPAndHTTPTargets(t *testing.T) {
	f := newFixture(t)
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) }))
	defer svc.Close()
	port := testkit.FixedPort(t, "127.0.1.21")
	pl := testPinglist("h", "127.0.1.21", port, 1, pinglist.Peer{Host: "lo", Addr: "127.0.1.22"})
	pl.Protocols = []string{"icmp"}
	pl.HTTPTargets = []pinglist.HTTPTarget{{Name: "svc", URL: svc.URL, ExpectBody: "ok"}}
	f.putPinglist(pl)
	a := startAgent(t, Config{Host: "h", NATSURL: f.url, SpoolDir: t.TempDir()})
	testkit.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		c := checkBatches(t, f.batches())
		if c["h>lo PROTOCOL_ICMP OUTCOME_OK"] < 2 || c["h>svc PROTOCOL_HTTP OUTCOME_OK"] < 2 {
			return errors.New("waiting for icmp and http results")
		}
		return nil
	})
	// Deleting the pinglist stops probing.
	if err := f.pls.Delete(context.Background(), "h"); err != nil {
		t.Fatal(err)
	}
	testkit.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.pl != nil || a.sched != nil {
			return errors.New("waiting for probing to stop")
		}
		return nil
	})
}

// TestAgentPublishesBatchesLeftByACrash: batches sealed by a run that died
// before their PubAck (here: sealed straight into the spool, as the dead
// process left them) are published by the next start, once each, before
// its own, in seq order; one already stored is not stored twice.
func TestAgentPublishesBatchesLeftByACrash(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	m, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := openSpool(dir, 1<<20, m)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := sp.seal(func(epoch, seq uint64) ([]byte, error) {
			return wire.Encode(&wire.Batch{Agent: "h", Epoch: epoch, Seq: seq, AgentVersion: "test", CreatedUnixNano: 1, SchedulingLag: &wire.SchedulingLag{},
				Results: []*wire.ProbeResult{{Dst: "p", Protocol: wire.Protocol_PROTOCOL_TCP, Outcome: wire.Outcome_OUTCOME_OK, RttNs: 1}}})
		}); err != nil {
			t.Fatal(err)
		}
	}
	// The dead run got batch 1 stored but died before its PubAck.
	_, data, _ := sp.oldest()
	if _, err := f.js.Publish(context.Background(), bus.ResultsSubject(0, "h"), data, jetstream.WithMsgID(bus.BatchMsgID("h", sp.epoch, 1))); err != nil {
		t.Fatal(err)
	}
	port := testkit.FixedPort(t, "127.0.1.31")
	f.putPinglist(testPinglist("h", "127.0.1.31", port, 1, pinglist.Peer{Host: "p", Addr: "127.0.1.32"}))
	a := startAgent(t, Config{Host: "h", NATSURL: f.url, SpoolDir: dir})
	testkit.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		if len(f.batches()) < 5 {
			return errors.New("waiting for the crashed run's batches and new ones")
		}
		return nil
	})
	a.stop()
	bs := f.batches()
	checkBatches(t, bs)
	for i, b := range bs[:3] {
		if b.Seq != uint64(i+1) || b.Epoch != sp.epoch {
			t.Errorf("stream position %d holds %d/%d", i, b.Epoch, b.Seq)
		}
	}
	if got := testutil.ToFloat64(a.m.probes.WithLabelValues("PROTOCOL_TCP", "OUTCOME_REFUSED", "other")); got == 0 {
		t.Error("no refused tcp probes counted (nothing listens on the peer)")
	}
}
