package aggregate

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb"

	"github.com/meshlens/meshlens/internal/bus"
	"github.com/meshlens/meshlens/internal/bus/bustest"
	"github.com/meshlens/meshlens/internal/clock"
	"github.com/meshlens/meshlens/internal/testkit"
	"github.com/meshlens/meshlens/internal/wire"
)

// env is a real in-process NATS JetStream server, a client, a real TSDB and
// a fabric, shared by the ingesters a test starts one after the other.
type env struct {
	t   *testing.T
	js  jetstream.JetStream
	db  *tsdb.DB
	fab fabric
	// tsdbCounters: the ingesters' checkpoints point at the TSDB for the
	// counters' values (Config.Queryable) instead of holding them.
	tsdbCounters bool
	// hostRTTBuckets: Config.HostRTTBuckets (set with tsdbCounters).
	hostRTTBuckets bool
	// partitions: IngesterConfig.Partitions of the ingesters (of
	// partition 0).
	partitions int
	// quota: IngesterConfig.AgentQuota.
	quota int64
	// publishSealed: IngesterConfig.Publish.
	publishSealed func(context.Context, []*SealedWindow) error
	// expected exact counters by rack pair, from what the test published
	// and expects to be accepted.
	expected map[LocationPair]Count
	// expectedAll: every cumulative counter of every kind (levels, hosts,
	// targets, with RTT buckets).
	expectedAll map[counterKey]counter
}

// checkpointModes are the two ways a checkpoint keeps the counters.
var checkpointModes = []struct {
	name         string
	tsdbCounters bool
}{
	{"counters in checkpoint", false},
	{"counters in TSDB", true},
}

func newEnv(t *testing.T) *env {
	t.Helper()
	nc, err := nats.Connect(bustest.StartNATS(t, bus.EmbeddedConfig{}).ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	_, err = js.CreateStream(t.Context(), jetstream.StreamConfig{
		Name: bus.ResultsStream, Subjects: []string{bus.ResultsSubjectPrefix + ".>"},
		Retention: jetstream.LimitsPolicy, MaxAge: 24 * time.Hour, Duplicates: 2 * time.Minute, Storage: jetstream.FileStorage,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, js: js, db: openTSDB(t), fab: newFabric(1, 2, 2, 2), expected: map[LocationPair]Count{}, expectedAll: map[counterKey]counter{}}
}

// publish sends a batch on its agent's subject with its batch id, and
// returns whether JetStream took it as a duplicate.
func (e *env) publish(subjectAgent string, b *wire.Batch, msgID string) bool {
	e.t.Helper()
	data, err := wire.Encode(b)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.publishRaw(bus.ResultsSubject(0, subjectAgent), data, msgID)
}

func (e *env) publishRaw(subject string, data []byte, msgID string) bool {
	e.t.Helper()
	var opts []jetstream.PublishOpt
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	ack, err := e.js.Publish(e.t.Context(), subject, data, opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	return ack.Duplicate
}

// expect adds a batch's network measurements to the expected counters.
func (e *env) expect(b *wire.Batch) {
	for _, r := range b.Results {
		if !wire.Counts(r) {
			continue
		}
		lost := wire.Lost(r) || (r.Protocol == wire.Protocol_PROTOCOL_HTTP && r.Outcome == bad)
		bucket := -1
		if r.Outcome == ok {
			bucket = expectedBucket(r.RttNs)
		}
		add := func(k counterKey) {
			bucket := bucket
			if !e.keepsHistogram(k.kind) {
				bucket = -1
			}
			c := e.expectedAll[k]
			c.hist = true
			c.count(lost, bucket, r.RttNs)
			e.expectedAll[k] = valueOf(&c)
		}
		if r.Protocol == wire.Protocol_PROTOCOL_HTTP {
			add(counterKey{targetCounter, LocationPair{Src: r.Dst, Dst: b.Agent, Proto: r.Protocol}})
			continue
		}
		sr, sp, sd, _ := e.fab.Locate(b.Agent)
		dr, dp, dd, _ := e.fab.Locate(r.Dst)
		k := LocationPair{sr, dr, r.Protocol}
		c := e.expected[k]
		c.Probes++
		if lost {
			c.Lost++
		}
		e.expected[k] = c
		add(counterKey{rackCounter, k})
		add(counterKey{podCounter, LocationPair{sp, dp, r.Protocol}})
		add(counterKey{dcCounter, LocationPair{sd, dd, r.Protocol}})
		// Every probe with either end in an element, once.
		for lv, ends := range [numLevels][2]string{{sr, dr}, {sp, dp}, {sd, dd}} {
			add(counterKey{elementKind(level(lv)), LocationPair{Src: ends[0], Proto: r.Protocol}})
			if ends[1] != ends[0] {
				add(counterKey{elementKind(level(lv)), LocationPair{Src: ends[1], Proto: r.Protocol}})
			}
		}
		add(counterKey{hostOutCounter, LocationPair{Src: b.Agent, Proto: r.Protocol}})
		add(counterKey{hostInCounter, LocationPair{Src: r.Dst, Proto: r.Protocol}})
	}
}

// expectedBucket is the RTT bucket of an answered probe, computed apart
// from rttBucket: the first bound of LatencyBuckets at or above the RTT.
func expectedBucket(rttNs int64) int {
	for i, b := range LatencyBuckets {
		if float64(rttNs) <= b*1e9+0.5 {
			return i
		}
	}
	return len(LatencyBuckets)
}

// keepsHistogram is which counters the env's aggregators keep RTT
// histograms in, written apart from Aggregator.keepsHistogram.
func (e *env) keepsHistogram(k counterKind) bool {
	switch k {
	case hostOutCounter, hostInCounter:
		return e.hostRTTBuckets
	case rackCounter:
		return false
	}
	return true
}

// valueOf is c's counts alone, without what links it to other counters.
func valueOf(c *counter) counter {
	return counter{Count: c.Count, ok: c.ok, rttSumNs: c.rttSumNs}
}

// allCounters is every counter of a that has probes, by value.
func allCounters(a *Aggregator) map[counterKey]counter {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[counterKey]counter, len(a.counters))
	for k, c := range a.counters {
		if c.Probes > 0 {
			out[k] = valueOf(c)
		}
	}
	return out
}

// running is one ingester process.
type running struct {
	agg    *Aggregator
	cancel context.CancelFunc
	done   chan error

	mu     sync.Mutex
	sealed map[int64]*SealedWindow
}

func (e *env) start(clk clock.Clock) *running {
	e.t.Helper()
	cfg := Config{Window: 10 * time.Second, Locator: e.fab, Appendable: e.db}
	if e.tsdbCounters {
		cfg.Queryable = e.db
	}
	cfg.HostRTTBuckets = e.hostRTTBuckets
	agg, _ := newTestAggregator(e.t, cfg)
	r := &running{agg: agg, done: make(chan error, 1), sealed: map[int64]*SealedWindow{}}
	agg.Subscribe(func(sw *SealedWindow) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.sealed[sw.Start.UnixNano()] = sw
	})
	ing, err := NewIngester(IngesterConfig{JetStream: e.js, Partition: 0, Partitions: e.partitions, Aggregator: agg, Clock: clk, SealEvery: 50 * time.Millisecond, AgentQuota: e.quota, Publish: e.publishSealed})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.t.Context())
	r.cancel = cancel
	go func() { r.done <- ing.Run(ctx) }()
	return r
}

// kill stops the ingester without any clean-up chance beyond ctx.
func (r *running) kill(t *testing.T) {
	t.Helper()
	r.cancel()
	if err := <-r.done; err != nil {
		t.Fatalf("ingester Run: %v", err)
	}
}

func (r *running) window(start time.Time) *SealedWindow {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sealed[start.UnixNano()]
}

func (e *env) waitCounters(r *running) {
	e.t.Helper()
	testkit.CheckFor(e.t, 30*time.Second, 5*time.Millisecond, func() error {
		select {
		case err := <-r.done:
			e.t.Fatalf("ingester stopped while waiting for exact counters: %v", err)
		default:
		}
		return e.counterDiff(r)
	})
}

// counterDiff says how the aggregator's counters differ from the expected
// ones (the first ten differences), or nil when they are exact.
func (e *env) counterDiff(r *running) error {
	got, racks := allCounters(r.agg), r.agg.Counters("rack")
	if maps.Equal(racks, e.expected) && maps.Equal(got, e.expectedAll) {
		return nil
	}
	var diffs []string
	for k, c := range e.expectedAll {
		if got[k] != c && len(diffs) < 5 {
			diffs = append(diffs, fmt.Sprintf("%s %v: %+v, want %+v", counterKindNames[k.kind], k.LocationPair, got[k], c))
		}
	}
	for k, c := range e.expected {
		if racks[k] != c && len(diffs) < 10 {
			diffs = append(diffs, fmt.Sprintf("rack %v: %+v, want %+v", k, racks[k], c))
		}
	}
	for k, c := range racks {
		if _, ok := e.expected[k]; !ok && len(diffs) < 10 {
			diffs = append(diffs, fmt.Sprintf("rack %v: %+v, not expected", k, c))
		}
	}
	return fmt.Errorf("counters not exact: %d counters, want %d; %d rack counters, want %d:\n%s",
		len(got), len(e.expectedAll), len(racks), len(e.expected), strings.Join(diffs, "\n"))
}

func (e *env) checkpoint() *Checkpoint {
	e.t.Helper()
	kv, err := e.js.KeyValue(e.t.Context(), bus.StateBucket)
	if err != nil {
		return nil
	}
	ent, err := kv.Get(e.t.Context(), CheckpointKey(0))
	if err != nil {
		return nil
	}
	c, err := DecodeCheckpoint(ent.Value())
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *env) waitSealed(until time.Time) []byte {
	e.t.Helper()
	testkit.CheckFor(e.t, 10*time.Second, 5*time.Millisecond, func() error {
		c := e.checkpoint()
		if c == nil || c.SealedUntil != until.UnixNano() {
			return fmt.Errorf("waiting for checkpoint sealed until %s", until.String())
		}
		return nil
	})
	kv, _ := e.js.KeyValue(e.t.Context(), bus.StateBucket)
	ent, err := kv.Get(e.t.Context(), CheckpointKey(0))
	if err != nil {
		e.t.Fatal(err)
	}
	return ent.Value()
}

// probeRound is one batch of agent: a probe of every other host per
// protocol, at start, with some losses.
func (e *env) probeRound(rng *rand.Rand, agent string, seq uint64, start time.Time) *wire.Batch {
	var rs []*wire.ProbeResult
	for _, dst := range e.fab.hosts() {
		if dst == agent {
			continue
		}
		for _, p := range []wire.Protocol{tcp, udp} {
			outcome := ok
			switch x := rng.IntN(100); {
			case x < 5:
				outcome = lost
			case x < 7:
				outcome = refuse
			case x < 8:
				outcome = synRtx
			}
			rs = append(rs, res(dst, p, outcome, start.Add(time.Duration(rng.IntN(9000))*time.Millisecond), time.Duration(50+rng.IntN(500))*time.Microsecond))
		}
	}
	// HTTP targets: services, not hosts; RTTs across the buckets.
	for _, target := range []string{"web-a", "web-b"} {
		outcome := ok
		if rng.IntN(4) == 0 {
			outcome = lost
		}
		rs = append(rs, res(target, wire.Protocol_PROTOCOL_HTTP, outcome, start.Add(time.Duration(rng.IntN(9000))*time.Millisecond), time.Duration(rng.IntN(2_000_000))*time.Microsecond))
	}
	return batch(agent, 7, seq, rs...)
}

// TestIngesterExactlyOnce publishes batches with duplicates, late results,
// garbage and forged subjects, crashes the ingester at the worst moment
// (after a TSDB commit, before the checkpoint put) and restarts it on the
// same NATS, KV and TSDB: the counters are exact and the re-sealed window
// equals the first seal.
// Both ways of keeping the counters in the checkpoint are run.
// TestIngesterPublishesIdleWindows: a partition without results (its
// racks silent, or none) still publishes, when its seal passes a window
// end, the empty window ending there, so that analyzers need not wait for
// it; after a real window, the next empty one follows it.
func TestIngesterPublishesIdleWindows(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	var got []*SealedWindow
	e.publishSealed = func(_ context.Context, ws []*SealedWindow) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, ws...)
		return nil
	}
	w := 10 * time.Second
	base := aligned(w, 3*time.Minute)
	vc := clock.NewVirtual(base)
	r := e.start(vc)
	defer r.kill(t)
	published := func(want ...string) {
		t.Helper()
		testkit.CheckFor(t, 30*time.Second, 5*time.Millisecond, func() error {
			// The ingester seals when its clock has moved since it
			// started (or last sealed): nudge it, far from any cut.
			vc.Advance(time.Millisecond)
			mu.Lock()
			defer mu.Unlock()
			var have []string
			for _, sw := range got {
				kind := "window"
				if sw.Empty() {
					kind = "empty"
				}
				have = append(have, fmt.Sprintf("%s %s", kind, sw.Start.Sub(base)))
			}
			if !slices.Equal(have, want) {
				return fmt.Errorf("published %v, want %v", have, want)
			}
			return nil
		})
	}
	// The first seal, at base, passes the window ending a lateness before.
	published("empty -40s")
	vc.Set(base.Add(w + DefaultLateness))
	published("empty -40s", "empty 0s")
	agent := "dc1-pod1-rack1-h01"
	e.publish(agent, batch(agent, 1, 1, res("dc1-pod2-rack1-h01", tcp, ok, base.Add(w+time.Second), time.Millisecond)), "")
	// Counted before the clock moves, or it would be late.
	testkit.CheckFor(t, 30*time.Second, 5*time.Millisecond, func() error {
		if n := r.agg.Counters("rack")[LocationPair{"dc1-pod1-rack1", "dc1-pod2-rack1", tcp}].Probes; n != 1 {
			return fmt.Errorf("%d probes counted", n)
		}
		return nil
	})
	vc.Set(base.Add(2*w + DefaultLateness))
	published("empty -40s", "empty 0s", "window 10s")
	vc.Set(base.Add(4*w + DefaultLateness))
	published("empty -40s", "empty 0s", "window 10s", "empty 30s")
}

func TestIngesterExactlyOnce(t *testing.T) {
	for _, mode := range checkpointModes {
		t.Run(mode.name, func(t *testing.T) { testIngesterExactlyOnce(t, mode.tsdbCounters) })
	}
}

func testIngesterExactlyOnce(t *testing.T, tsdbCounters bool) {
	e := newEnv(t)
	e.tsdbCounters, e.hostRTTBuckets = tsdbCounters, tsdbCounters
	rng := rand.New(rand.NewPCG(3, 4))
	w := 10 * time.Second
	base := aligned(w, 3*time.Minute)
	vc := clock.NewVirtual(base)
	agents := []string{"dc1-pod1-rack1-h01", "dc1-pod1-rack2-h02", "dc1-pod2-rack1-h01", "dc1-pod2-rack2-h02"}
	pub := func(agent string, seq uint64, start time.Time) *wire.Batch {
		b := e.probeRound(rng, agent, seq, start)
		if e.publish(agent, b, bus.BatchMsgID(agent, b.Epoch, b.Seq)) {
			t.Fatalf("first publish of %s/%d taken as duplicate", agent, seq)
		}
		e.expect(b)
		return b
	}

	// Phase 1: windows A and B.
	var first []*wire.Batch
	for _, a := range agents {
		first = append(first, pub(a, 1, base))
		pub(a, 2, base.Add(w))
	}
	ing1 := e.start(vc)
	e.waitCounters(ing1)
	vc.Set(base.Add(w + DefaultLateness)) // seals A
	e.waitSealed(base.Add(w))
	cpA := e.checkpoint()
	cpABytes, err := EncodeCheckpoint(cpA)
	if err != nil {
		t.Fatal(err)
	}

	// Phase 2: more of B and C, and everything that must not count.
	for _, a := range agents {
		pub(a, 3, base.Add(w))
		pub(a, 4, base.Add(2*w))
	}
	// The same batch id again: JetStream drops it.
	d, _ := wire.Encode(first[0])
	if !e.publishRaw(bus.ResultsSubject(0, agents[0]), d, bus.BatchMsgID(agents[0], 7, 1)) {
		t.Error("JetStream did not de-duplicate a re-published batch id")
	}
	// The same batch after JetStream's duplicate window (no id here): ours.
	e.publishRaw(bus.ResultsSubject(0, agents[0]), d, "")
	// Random bytes, a forged subject, an agent not in the topology.
	junk := make([]byte, 300)
	for i := range junk {
		junk[i] = byte(rng.Uint32())
	}
	e.publishRaw(bus.ResultsSubject(0, agents[1]), junk, "")
	e.publish(agents[2], e.probeRound(rng, agents[1], 99, base.Add(w)), "")
	e.publish("intruder", batch("intruder", 1, 1, res(agents[0], tcp, ok, base.Add(w), time.Millisecond)), "")
	// Late: window A is sealed, these still count.
	late := pub(agents[3], 5, base)
	e.waitCounters(ing1)
	vc.Set(base.Add(2*w + DefaultLateness)) // seals B
	e.waitSealed(base.Add(2 * w))
	sealedB1 := ing1.window(base.Add(w))
	if sealedB1 == nil {
		t.Fatal("ing1 did not hand out window B")
	}
	m1 := ing1.agg.m
	for _, c := range []struct {
		name string
		got  float64
		want float64
	}{
		{"duplicates", testutil.ToFloat64(m1.duplicates), 1},
		{"malformed", testutil.ToFloat64(m1.rejected.WithLabelValues("malformed")), 1},
		{"subject_mismatch", testutil.ToFloat64(m1.rejected.WithLabelValues("subject_mismatch")), 1},
		{"unknown agent", testutil.ToFloat64(m1.rejected.WithLabelValues("unknown_host")), 1},
		{"late", testutil.ToFloat64(m1.late), float64(len(late.Results))},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}

	// Crash between B's TSDB commit and its checkpoint put: the KV still
	// holds the checkpoint after A.
	kv, err := e.js.KeyValue(t.Context(), bus.StateBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), CheckpointKey(0), cpABytes); err != nil {
		t.Fatal(err)
	}
	ing1.kill(t)

	// Phase 3: the agents go on while the aggregator is down.
	for _, a := range agents {
		pub(a, 6, base.Add(2*w))
	}
	ing2 := e.start(vc)
	e.waitCounters(ing2)
	vc.Advance(time.Second) // let it seal B again
	testkit.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if ing2.window(base.Add(w)) == nil {
			return errors.New("waiting for B re-sealed")
		}
		return nil
	})
	sealedB2 := ing2.window(base.Add(w))
	if len(sealedB2.Pairs) != len(sealedB1.Pairs) {
		t.Fatalf("re-sealed B has %d pairs, first seal %d", len(sealedB2.Pairs), len(sealedB1.Pairs))
	}
	b2 := sealedB2.PairMap()
	for _, e := range sealedB1.Pairs {
		k, p1 := e.Key, e.Stats
		p2 := b2[k]
		if p2 == nil || p2.Sent != p1.Sent || p2.Lost != p1.Lost || sketchCount(p2) != sketchCount(p1) {
			t.Errorf("pair %v: re-sealed %+v, first %+v", k, p2, p1)
		}
	}
	// The rollups written again are identical (only the counters, which
	// moved on, may be refused at B's timestamp).
	if n := testutil.ToFloat64(ing2.agg.m.tsdbErrors); n != 0 {
		t.Errorf("%v TSDB write errors on re-seal", n)
	}
	endB := base.Add(2 * w).UnixMilli()
	for k, r := range sealedB2.RackPairs {
		series := querySeries(t, e.db, "meshlens_rack_pair_loss_ratio", "src_rack", k.Src, "dst_rack", k.Dst, "proto", k.Proto.Name())
		for _, ss := range series {
			for _, s := range ss {
				if s.ts == endB && s.v != r.LossRatio() {
					t.Errorf("rack pair %v: TSDB holds loss %v at B, re-seal computed %v", k, s.v, r.LossRatio())
				}
			}
		}
	}
	t.Logf("samples skipped on re-seal: %v duplicate", testutil.ToFloat64(ing2.agg.m.tsdbSkipped.WithLabelValues("duplicate")))
	if tsdbCounters {
		// B's counters at B's end were written by ing1 before the crash;
		// ing2's differ (phase 3 counted before the re-seal) and are
		// refused, so the TSDB does not hold ing2's values: its checkpoint
		// must wait for a clean seal.
		testkit.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
			if testutil.ToFloat64(ing2.agg.m.checkpoints.WithLabelValues("deferred")) <= 0 {
				return errors.New("waiting for a deferred checkpoint")
			}
			return nil
		})
	}

	// Seal everything; the TSDB's counters equal what the agents produced.
	vc.Set(base.Add(10 * time.Minute))
	e.waitSealed(base.Add(10*time.Minute - DefaultLateness).Truncate(w))
	ing2.kill(t)
	totals := func(m map[LocationPair]Count) (p, l uint64) {
		for _, c := range m {
			p += c.Probes
			l += c.Lost
		}
		return
	}
	wantP, wantL := totals(e.expected)
	if p := lastSum(querySeries(t, e.db, "meshlens_rack_pair_probes_total")); p != float64(wantP) {
		t.Errorf("TSDB rack probes_total sums to %v, want %d", p, wantP)
	}
	if l := lastSum(querySeries(t, e.db, "meshlens_rack_pair_probes_lost_total")); l != float64(wantL) {
		t.Errorf("TSDB rack probes_lost_total sums to %v, want %d", l, wantL)
	}
	e.checkTSDBCounters(base.Add(10*time.Minute - DefaultLateness).Truncate(w))
	if cp := e.checkpoint(); tsdbCounters != (cp.CountersAt != 0) || tsdbCounters == (len(cp.Counters) > 0) {
		t.Errorf("checkpoint with tsdbCounters=%v holds %d counters, counters_at %d", tsdbCounters, len(cp.Counters), cp.CountersAt)
	}
	if p := lastSum(querySeries(t, e.db, "meshlens_dc_pair_probes_total")); p != float64(wantP) {
		t.Errorf("TSDB dc probes_total sums to %v, want %d", p, wantP)
	}
	// agents[0] published seqs 1-4 and 6 (5 was another agent's late batch).
	if s := e.checkpoint().Dedup[agents[0]]["7"]; s == nil || s.Contig != 4 || len(s.Above) != 1 || s.Above[0] != 6 {
		t.Errorf("checkpoint dedup state of %s = %+v, want contig 4 and [6]", agents[0], s)
	}
}

// TestIngesterRestartEveryStep kills and restarts the ingester after every
// published batch, sealing as it goes: nothing lost, nothing counted twice.
func TestIngesterRestartEveryStep(t *testing.T) {
	for _, mode := range checkpointModes {
		t.Run(mode.name, func(t *testing.T) { testIngesterRestartEveryStep(t, mode.tsdbCounters) })
	}
}

func testIngesterRestartEveryStep(t *testing.T, tsdbCounters bool) {
	e := newEnv(t)
	e.tsdbCounters, e.hostRTTBuckets = tsdbCounters, tsdbCounters
	rng := rand.New(rand.NewPCG(5, 6))
	w := 10 * time.Second
	base := aligned(w, 5*time.Minute)
	vc := clock.NewVirtual(base)
	agents := []string{"dc1-pod1-rack1-h01", "dc1-pod2-rack2-h02"}
	for step := 0; step < 12; step++ {
		r := e.start(vc)
		a := agents[step%2]
		b := e.probeRound(rng, a, uint64(step/2+1), base.Add(time.Duration(step/2)*w))
		e.publish(a, b, bus.BatchMsgID(a, b.Epoch, b.Seq))
		e.expect(b)
		if step%3 == 0 { // and a duplicate beyond JetStream's window now and then
			e.publish(a, b, "")
		}
		e.waitCounters(r)
		vc.Advance(7 * time.Second)
		want := vc.Now().Add(-DefaultLateness).Truncate(w)
		if want.After(base) {
			e.waitSealed(want)
		}
		r.kill(t)
	}
	r := e.start(vc)
	e.waitCounters(r)
	// Seal the last window. The clock moves on while polling: the
	// ingester may take its first reading of it only after this starts.
	until := vc.Now().Add(time.Minute - DefaultLateness).Truncate(w)
	testkit.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		vc.Advance(time.Second)
		if got := r.agg.SealedUntil(); got.Before(until) {
			return fmt.Errorf("sealed until %v, waiting for %v", got, until)
		}
		return nil
	})
	r.kill(t)
	e.checkTSDBCounters(r.agg.SealedUntil())
}

func TestIngesterConfig(t *testing.T) {
	if _, err := NewIngester(IngesterConfig{}); err == nil {
		t.Error("NewIngester without JetStream accepted")
	}
	agg, _ := newTestAggregator(t, Config{})
	e := newEnv(t)
	if _, err := NewIngester(IngesterConfig{JetStream: e.js, Aggregator: agg, Partition: -1}); err == nil {
		t.Error("negative partition accepted")
	}
	// A corrupt checkpoint stops Run with a clear error rather than
	// counting from zero.
	kv, err := stateBucket(t.Context(), e.js)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), CheckpointKey(0), []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	ing, err := NewIngester(IngesterConfig{JetStream: e.js, Aggregator: agg})
	if err != nil {
		t.Fatal(err)
	}
	if err := ing.Run(t.Context()); !errors.Is(err, ErrBadCheckpoint) {
		t.Errorf("Run with a corrupt checkpoint = %v, want ErrBadCheckpoint", err)
	}
	// A checkpoint whose counters are in the TSDB needs a Queryable, and
	// the TSDB must hold them: otherwise Run stops rather than count from 0.
	for _, tt := range []struct {
		name string
		cfg  Config
	}{
		{"no queryable", Config{}},
		{"empty TSDB", Config{Appendable: e.db, Queryable: e.db}},
	} {
		data, err := EncodeCheckpoint(&Checkpoint{Version: checkpointVersion, SealedUntil: 20e9, CountedSeq: 3, ReplayFromSeq: 4, CountersAt: 10e3, CounterSeries: 2})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(t.Context(), CheckpointKey(0), data); err != nil {
			t.Fatal(err)
		}
		agg, _ := newTestAggregator(t, tt.cfg)
		ing, err := NewIngester(IngesterConfig{JetStream: e.js, Aggregator: agg})
		if err != nil {
			t.Fatal(err)
		}
		if err := ing.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "counters") {
			t.Errorf("%s: Run = %v, want an error about the counters", tt.name, err)
		}
	}
}

func sketchCount(p *PairStats) int { return p.LatencyCount() }

// checkTSDBCounters checks that the newest sample, at or before until, of
// every counter series in the TSDB is the expected exact count: probes,
// lost, each le bucket, for every kind.
func (e *env) checkTSDBCounters(until time.Time) {
	e.t.Helper()
	want := map[string]float64{}
	for k, c := range e.expectedAll {
		cs := seriesOf[k.kind]
		kv := []string{cs.srcLabel, k.Src}
		if cs.dstLabel != "" {
			kv = append(kv, cs.dstLabel, k.Dst)
		}
		switch k.kind {
		case hostOutCounter:
			kv = append(kv, "direction", "out")
		case hostInCounter:
			kv = append(kv, "direction", "in")
		}
		if cs.proto {
			kv = append(kv, "proto", k.Proto.Name())
		}
		name := func(metric string, more ...string) string {
			return labels.FromStrings(append(append([]string{"__name__", metric}, kv...), more...)...).String()
		}
		want[name(cs.probes)] = float64(c.Probes)
		want[name(cs.lost)] = float64(c.Lost)
		if !e.keepsHistogram(k.kind) {
			continue
		}
		var cum uint64
		for i, v := range c.ok {
			cum += v
			want[name(cs.bucket, "le", leLabels[i])] = float64(cum)
		}
		want[name(cs.rttSum)] = float64(c.rttSumNs) / 1e9
	}
	got := map[string]float64{}
	for metric := range counterMetrics {
		for series, samples := range querySeries(e.t, e.db, metric) {
			for _, s := range samples {
				if s.ts <= until.UnixMilli() {
					got[series] = s.v
				}
			}
		}
	}
	if len(got) != len(want) {
		e.t.Errorf("TSDB holds %d counter series, want %d", len(got), len(want))
	}
	for series, v := range want {
		if got[series] != v {
			e.t.Errorf("TSDB %s = %v, want %v", series, got[series], v)
		}
	}
}

// TestIngesterRefusesOtherPartitionsAgents: on partition 0 of two, a
// batch from an agent whose rack is in partition 0 is aggregated, even if
// its name alone would hash to partition 1; one from an agent of a rack of
// partition 1 whose name hashes to 0 (the rule before racks, accepted for
// rolling upgrades) is aggregated too; one from an agent of partition 1 by
// both rules is refused as wrong_partition (it would be counted in both
// partitions' windows if that agent published to both).
func TestIngesterRefusesOtherPartitionsAgents(t *testing.T) {
	e := newEnv(t)
	e.partitions = 2
	r := e.start(clock.Real{})
	defer r.kill(t)
	rng := rand.New(rand.NewPCG(3, 4))
	var rackOnly, legacyOnly, theirs []string
	for _, a := range e.fab.hosts() {
		rack, _, _, _ := e.fab.Locate(a)
		switch byRack, byName := bus.Partition(rack, 2), bus.Partition(a, 2); {
		case byRack == 0 && byName != 0:
			rackOnly = append(rackOnly, a)
		case byRack != 0 && byName == 0:
			legacyOnly = append(legacyOnly, a)
		case byRack != 0 && byName != 0:
			theirs = append(theirs, a)
		}
	}
	if len(rackOnly) == 0 || len(legacyOnly) == 0 || len(theirs) == 0 {
		t.Fatalf("partitions of %v: by rack only %v, by name only %v, neither %v", e.fab.hosts(), rackOnly, legacyOnly, theirs)
	}
	now := time.Now().Add(-5 * time.Second)
	for _, a := range []string{rackOnly[0], legacyOnly[0]} {
		good := e.probeRound(rng, a, 1, now)
		e.publish(a, good, "")
		e.expect(good)
	}
	e.publish(theirs[0], e.probeRound(rng, theirs[0], 1, now), "")
	e.waitCounters(r)
	testkit.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if n := testutil.ToFloat64(r.agg.m.rejected.WithLabelValues("wrong_partition")); n != 1 {
			return fmt.Errorf("wrong_partition %v, want 1", n)
		}
		return nil
	})
}

// TestIngesterAgentQuota: an agent that floods its subject is refused past
// its byte quota (over_quota) and its refused batches deleted from the
// stream, while another agent's batches are all counted and all kept, and
// a restart over the stream as it is then counts the same.
func TestIngesterAgentQuota(t *testing.T) {
	e := newEnv(t)
	e.quota = 16 << 10
	r := e.start(clock.Real{})
	defer func() { r.kill(t) }() // r is the restarted one by then
	rng := rand.New(rand.NewPCG(5, 6))
	hosts := e.fab.hosts()
	honest, flooder := hosts[0], hosts[1]
	now := time.Now().Add(-5 * time.Second)
	var used int64
	refused := 0
	const floods = 60
	for seq := uint64(1); seq <= floods; seq++ {
		if seq <= 5 {
			b := e.probeRound(rng, honest, seq, now)
			e.publish(honest, b, "")
			e.expect(b)
		}
		b := e.probeRound(rng, flooder, seq, now)
		data, err := wire.Encode(b)
		if err != nil {
			t.Fatal(err)
		}
		// The quota's rule: a batch is taken while the agent's bytes
		// stay within it; a refused one is not counted against it.
		if used+int64(len(data)) <= e.quota {
			used += int64(len(data))
			e.expect(b)
		} else {
			refused++
		}
		e.publishRaw(bus.ResultsSubject(0, flooder), data, "")
	}
	if refused < floods/2 {
		t.Fatalf("only %d of %d batches over a %d-byte quota: the test floods too little", refused, floods, e.quota)
	}
	e.waitCounters(r)
	testkit.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if n := testutil.ToFloat64(r.agg.m.rejected.WithLabelValues("over_quota")); n != float64(refused) {
			return fmt.Errorf("over_quota %v, want %d", n, refused)
		}
		if n := testutil.ToFloat64(r.agg.m.quotaDeletes.WithLabelValues("ok")); n != float64(refused) {
			return fmt.Errorf("%v refused batches deleted, want %d", n, refused)
		}
		return nil
	})
	st, err := e.js.Stream(t.Context(), bus.ResultsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(t.Context(), jetstream.WithSubjectFilter(bus.ResultsSubjectPrefix+".>"))
	if err != nil {
		t.Fatal(err)
	}
	if kept := info.State.Subjects[bus.ResultsSubject(0, flooder)]; kept != uint64(floods-refused) {
		t.Errorf("the flooder's subject holds %d of its %d batches, %d refused", kept, floods, refused)
	}
	if kept := info.State.Subjects[bus.ResultsSubject(0, honest)]; kept != 5 {
		t.Errorf("the honest agent's subject holds %d of its 5 batches", kept)
	}
	// A restart replays from its checkpoint over the purged stream: the
	// counters stay exact.
	r.kill(t)
	r = e.start(clock.Real{})
	e.waitCounters(r)
}
