package aggregate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/storage"

	"github.com/meshlens/meshlens/internal/wire"
)

// Locator places a host in the fabric. internal/topology satisfies it; the
// aggregator only needs these four facts, so it does not import topology.
// Rack and pod names must be unique fabric-wide (e.g. "dc1-pod2-rack5"), as
// they become label values on their own. Implementations must be safe for
// concurrent use.
type Locator interface {
	Locate(host string) (rack, pod, dc string, ok bool)
}

// LocatorFunc adapts a function to Locator.
type LocatorFunc func(host string) (rack, pod, dc string, ok bool)

func (f LocatorFunc) Locate(host string) (rack, pod, dc string, ok bool) { return f(host) }

// Defaults of Config.
const (
	DefaultWindow    = 10 * time.Second
	DefaultLateness  = 30 * time.Second
	DefaultRecent    = time.Hour
	DefaultMaxFuture = 2 * time.Minute
	// DefaultMaxTargets bounds the distinct HTTP targets of an aggregator:
	// their names come from agents, not from the topology, so a
	// misconfigured fleet must not grow series and memory without limit.
	DefaultMaxTargets = 1000
)

// Errors an Ingest may return; the batch was not aggregated.
var (
	ErrUnknownHost     = errors.New("host not in topology")
	ErrSubjectMismatch = errors.New("batch agent does not match its subject")
)

// Config of an Aggregator. Zero durations take the defaults above.
type Config struct {
	// Window is the width W of event-time windows, aligned to multiples of W
	// since the Unix epoch.
	Window time.Duration
	// Lateness L: a window is sealed once the clock passes its end + L, or
	// before, as soon as every live agent has marked its data complete
	// past the window's end (wire.Batch.complete_before_unix_nano): L is
	// then only the bound for stragglers. An agent is live while it has
	// delivered within L; one that never marks holds windows to the bound.
	Lateness time.Duration
	// IgnoreMarks seals only by Lateness, as before agents marked where
	// their data ends (benchmarks compare the two).
	IgnoreMarks bool
	// Recent is how long sealed pair-level detail is kept for PairWindows;
	// results older than this (by arrival time) are rejected as too old.
	Recent time.Duration
	// MaxFuture: results that start further than this ahead of their arrival
	// are rejected as clock skew.
	MaxFuture time.Duration
	// Locator decides which hosts exist and where they are. Nil accepts every
	// host and produces only pair and host rollups (no rack/pod/DC).
	Locator Locator
	// MaxTargets caps the distinct HTTP targets (destinations of HTTP
	// probes, which are service names, not topology hosts); results for
	// more are rejected as too_many_targets. Default DefaultMaxTargets.
	MaxTargets int
	// Targets, when set, says which HTTP target names exist (the server's
	// --http-target): results for any other are refused as
	// unknown_target. Target names come from agents, so without it one
	// host could fill MaxTargets with names of its own and lock the real
	// targets out. Nil accepts any name (tests, the simulator).
	Targets func(name string) bool
	// HostRTTBuckets adds RTT histograms to the host counters
	// (meshlens_host_rtt_seconds_bucket, for host-scope latency SLIs): 14
	// more series per host, direction and protocol, written at every seal,
	// so off by default.
	HostRTTBuckets bool
	// RackPairRTTBuckets adds RTT histograms to the rack-pair counters
	// (meshlens_rack_pair_rtt_seconds_bucket, _sum and _count): 16 more
	// series per rack pair and protocol at every seal, which meshlens
	// itself does not read (rack-scope SLIs read the racks' histograms,
	// the heatmaps the rack pairs' quantiles), so off by default.
	RackPairRTTBuckets bool
	// RollupsOnly keeps no per-pair state: results go straight into their
	// windows' host, rack, pod and DC rollups and the cumulative counters,
	// which come out the same; SealedWindow.Pairs is empty and PairWindows
	// finds nothing. Memory then grows with hosts and rack pairs, not with
	// pairs: the mode for a fabric whose pairs do not fit in memory (50,000
	// hosts with full Pingmesh lists are 250 M pairs per window).
	RollupsOnly bool
	// PairDetailMaxBytes bounds the recent pair detail (an estimate of the
	// bytes it holds, see pairdetail.go): past it, the oldest windows keep
	// only the pairs with loss, those PairWindows was asked about within
	// Recent and a deterministic sample of the others, and are dropped
	// whole last. 0: no bound. Sealing, rollups, counters and
	// SealedWindow.Pairs are the same either way.
	PairDetailMaxBytes int64
	// Appendable receives every sealed window's rollups; nil writes nothing.
	Appendable storage.Appendable
	// Queryable reads back what Appendable wrote (the same store). With
	// both set, the ingester's checkpoint does not carry the cumulative
	// counters: a restart reads their values from the TSDB samples of the
	// last committed seal (see the package doc). Without it the counters
	// are in the checkpoint, which then limits the fabric's size.
	Queryable storage.Queryable
	// SeriesLabels are added to every series written, e.g. {"partition":
	// "3"}. Several aggregators (partitions) writing to one TSDB must set
	// distinct ones, or their rack-pair series collide: each writes the
	// cumulative counts of its own agents (sum them across partitions) and
	// the loss and latency of its own agents' probes.
	SeriesLabels map[string]string
	// Registerer gets the self-metrics; nil keeps them unregistered. Several
	// aggregators in one registry need distinct labels, e.g.
	// prometheus.WrapRegistererWith(prometheus.Labels{"partition": "3"}, reg).
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.Lateness == 0 {
		c.Lateness = DefaultLateness
	}
	if c.Recent == 0 {
		c.Recent = DefaultRecent
	}
	if c.MaxFuture == 0 {
		c.MaxFuture = DefaultMaxFuture
	}
	if c.MaxTargets == 0 {
		c.MaxTargets = DefaultMaxTargets
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case c.Window < time.Millisecond:
		return fmt.Errorf("aggregate: window %v is below 1ms", c.Window)
	case c.Lateness < 0:
		return fmt.Errorf("aggregate: negative lateness %v", c.Lateness)
	case c.Recent < c.Window:
		return fmt.Errorf("aggregate: recent horizon %v is shorter than the window %v", c.Recent, c.Window)
	case c.MaxFuture < 0:
		return fmt.Errorf("aggregate: negative max future %v", c.MaxFuture)
	case c.MaxTargets < 0:
		return fmt.Errorf("aggregate: negative max targets %d", c.MaxTargets)
	case c.PairDetailMaxBytes < 0:
		return fmt.Errorf("aggregate: negative pair detail budget %d", c.PairDetailMaxBytes)
	}
	return nil
}

// location of a host in the fabric.
type location struct{ rack, pod, dc string }

// level of a location rollup.
type level uint8

const (
	rackLevel level = iota
	podLevel
	dcLevel
	numLevels
)

var levelNames = [numLevels]string{"rack", "pod", "dc"}

func (l location) at(lv level) string {
	switch lv {
	case rackLevel:
		return l.rack
	case podLevel:
		return l.pod
	}
	return l.dc
}

// Count is an exact cumulative probe count.
type Count struct{ Probes, Lost uint64 }

// pair is what the aggregator remembers about a path across windows: where
// its ends are and its cumulative counters, resolved once so that the hot
// path does one map lookup per result.
type pair struct {
	key PairKey
	id  int32 // index in open windows' stats
	// sample places the pair in the memory budget's sample (pairSample).
	sample uint32
	// counts are the cumulative counters the pair's results go into, up to
	// the first nil: rack, pod and DC pairs (with a Locator), host out and
	// in; or the target's, for HTTP.
	counts [numLevels + 2]*counter
	// target: an HTTP pair, whose destination is a service (see newPairLocked).
	target bool
	// rollups this pair feeds, as indexes into Aggregator.rollKeys (-1:
	// none): resolved once so that sealing indexes slices instead of
	// hashing strings for every pair of every window.
	rollups [numRollups]int32
}

// Rollup kinds a pair feeds.
const (
	rollHostOut = iota
	rollHostIn
	rollRack
	rollPod
	rollDC
	numRollups
)

// rollKey names one rollup series.
type rollKey struct {
	kind int
	host string       // host rollups
	loc  LocationPair // rack/pod/dc rollups
}

// dstProto names a pair within its source agent's index.
type dstProto struct {
	dst   string
	proto wire.Protocol
}

// agentPairs indexes one agent's pairs: a batch is one agent's, so the hot
// lookup runs in a small map that stays in cache for the whole batch.
type agentPairs map[dstProto]*pair

// window is an open (not yet sealed) window.
type window struct {
	start int64 // unix ns
	// stats by pair id; touched lists the ids present, in arrival order.
	stats   []*PairStats
	touched []int32
	slab    []PairStats
	// minSeq is the smallest stream sequence that contributed (0: none
	// known), from which a restarted ingester must replay to rebuild it.
	minSeq uint64
	// Rollups-only mode: rollups by rollup id, the ids present, in arrival
	// order, and their slab.
	rolls        []*Rollup
	touchedRolls []int32
	rollSlab     []Rollup
}

// statsSlab is how many PairStats a window allocates at once: one
// allocation instead of one per pair. 255 × 64 bytes and the 8-byte
// header Go puts before a large object with pointers fill the 16 KiB
// size class; 256 took the next one, 18 KiB, which was 12% of the
// recent pair detail (TestPairDetailBytesMatchHeap).
const statsSlab = 255

func (w *window) newStats() *PairStats {
	if len(w.slab) == 0 {
		w.slab = make([]PairStats, statsSlab)
	}
	st := &w.slab[0]
	w.slab = w.slab[1:]
	return st
}

// recentWindow is a sealed window's pair detail kept for PairWindows.
type recentWindow struct {
	start int64
	// stats by pair id, shared with the SealedWindow: never modified; nil
	// once the memory budget trimmed the window (see pairdetail.go).
	stats []*PairStats
	// ids and kept: a trimmed window's pairs, by ascending id, and their
	// stats (level is the sample it was trimmed to, 0: not trimmed).
	ids   []int32
	kept  []PairStats
	level uint8
	// trimmedAt is when the budget first trimmed the window (the
	// aggregator's clock, Unix ns; 0: never).
	trimmedAt int64
	// late holds the pairs that received late results: private copies of
	// the sealed stats, modified in place.
	late map[int32]*PairStats
	// bytes is the estimate of what the window holds.
	bytes int64
}

func (rw *recentWindow) pair(id int32) *PairStats {
	if st := rw.late[id]; st != nil {
		return st
	}
	if rw.stats == nil {
		if i, ok := slices.BinarySearch(rw.ids, id); ok {
			return &rw.kept[i]
		}
		return nil
	}
	if int(id) < len(rw.stats) {
		return rw.stats[id]
	}
	return nil
}

// Aggregator is the pure core of stage 1: batches in, sealed windows out.
// It has no goroutines: the Ingester drives it from JetStream on the real
// clock, the simulator calls Ingest and Advance on a virtual clock. All
// methods are safe for concurrent use; subscribers and the TSDB are called
// from Advance, without the lock held, in the caller's goroutine.
type Aggregator struct {
	cfg  Config
	w, l int64 // window and lateness in ns

	mu          sync.Mutex
	pairs       map[string]agentPairs // by source agent
	nPairs      int32
	byID        []*pair // pairs by id
	rollKeys    []rollKey
	rollIndex   map[rollKey]int32
	open        map[int64]*window
	sealedUntil int64 // windows ending at or before this are sealed (unix ns)
	// recentSince: sealed windows starting before it were sealed by an
	// earlier process and are not held in recent detail.
	recentSince int64
	recent      map[int64]*recentWindow
	// detailBytes estimates what recent holds (PairDetailMaxBytes);
	// watched are the pairs PairWindows was asked about, since when and
	// last when (clockNs: the clock of the last Advance); droppedUntil:
	// the budget dropped whole the recent windows ending at or before it.
	detailBytes  int64
	watched      map[int32]watch
	droppedUntil int64
	clockNs      int64
	counters     map[counterKey]*counter
	targetNames  map[string]int // HTTP targets: their counters, by name
	// dirty: counters changed since the last snapshot written to the TSDB.
	// snapAt (unix ms) is when the last snapshot was committed, snapOK
	// whether all its counter samples went in: together they say whether
	// the TSDB holds the counters' current values (see checkpoint).
	dirty  bool
	snapAt int64
	snapOK bool
	// flushed: Advance wrote the counters without a window (see Advance).
	flushed bool
	// idle: the empty window of the last Advance that sealed nothing
	// ending at its cut, until takeIdle.
	idle   *SealedWindow
	hourly hourlyState // the last commit with the hourly copies (elements.go)
	// restored: the counters restored from a checkpoint or the TSDB,
	// which were not 0 before this process's first commit.
	restored map[counterKey]struct{}
	agents   map[string]*AgentStatus
	// firstAdvance is the clock at the first Advance (Unix ns): marks seal
	// windows only once this process has listened for a lateness, so
	// that every live agent has been heard from (see marksCutLocked).
	firstAdvance int64
	subs         []func(*SealedWindow)
	idleSubs     []func(*SealedWindow)
	// ro is the state of rollups-only mode (Config.RollupsOnly), else nil.
	ro *rollupsOnly

	m *metrics
}

// New returns an Aggregator with nothing sealed yet.
func New(cfg Config) (*Aggregator, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	a := &Aggregator{
		cfg:         cfg,
		w:           int64(cfg.Window),
		l:           int64(cfg.Lateness),
		pairs:       make(map[string]agentPairs),
		rollIndex:   make(map[rollKey]int32),
		open:        make(map[int64]*window),
		recent:      make(map[int64]*recentWindow),
		watched:     make(map[int32]watch),
		counters:    make(map[counterKey]*counter),
		restored:    make(map[counterKey]struct{}),
		targetNames: map[string]int{},
		agents:      make(map[string]*AgentStatus),
		m:           m,
	}
	if cfg.RollupsOnly {
		a.ro = newRollupsOnly()
	}
	m.detailBudget.Set(float64(cfg.PairDetailMaxBytes))
	return a, nil
}

// Subscribe registers fn to receive every sealed window, in window order,
// synchronously from Advance. fn must not block for long and must not
// modify the window.
func (a *Aggregator) Subscribe(fn func(*SealedWindow)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.subs = append(a.subs, fn)
}

// SubscribeIdle registers fn to receive, after the sealed windows of an
// Advance, the empty window ending at its cut when nothing sealed ends
// there (SealedWindow.Empty): this aggregator has sealed everything
// before its end. Stage 2 takes it as the partition's part of that
// window, so that a partition with nothing to say does not hold the
// others back.
func (a *Aggregator) SubscribeIdle(fn func(*SealedWindow)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.idleSubs = append(a.idleSubs, fn)
}

// Ingest aggregates one decoded, validated batch that arrived at now (the
// server's clock). Results are rejected one by one (too old, clock skew,
// unknown destination) and counted; the batch as a whole is rejected only if
// its agent is unknown. Ingest does not de-duplicate: the Ingester does that
// before calling the core, and the simulator feeds each batch once.
func (a *Aggregator) Ingest(b *wire.Batch, now time.Time) error {
	return a.ingest(b, now, 0, true)
}

// ingest is Ingest with the stream position: streamSeq (0 when unknown)
// is remembered per open window for the replay checkpoint, and count is false
// for messages already in the checkpoint's cumulative counters.
func (a *Aggregator) ingest(b *wire.Batch, arrival time.Time, streamSeq uint64, count bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	src, ok := a.locateLocked(b.Agent)
	if !ok {
		if count {
			a.m.rejected.WithLabelValues("unknown_host").Inc()
		}
		return fmt.Errorf("aggregate: batch %d of agent %q: %w", b.Seq, b.Agent, ErrUnknownHost)
	}
	lag := time.Duration(b.GetSchedulingLag().GetP99Ns())
	now := arrival.UnixNano()
	oldest, newest := now-int64(a.cfg.Recent), now+int64(a.cfg.MaxFuture)

	var skew, old, unknown, unknownTarget, tooMany, late, accepted int
	var win *window
	mine := a.pairs[b.Agent]
	if mine == nil && a.ro == nil {
		mine = make(agentPairs)
		a.pairs[b.Agent] = mine
	}
	for _, r := range b.Results {
		t := r.StartUnixNano
		if t > newest {
			skew++
			continue
		}
		if t < oldest {
			old++
			continue
		}
		if r.Protocol.IsTarget() && a.cfg.Targets != nil && !a.cfg.Targets(r.Dst) {
			unknownTarget++
			continue
		}
		var p *pair
		var full bool
		if a.ro != nil {
			p, full = a.routeLocked(b.Agent, src, r.Dst, r.Protocol)
		} else if p = mine[dstProto{r.Dst, r.Protocol}]; p == nil {
			p, full = a.newPairLocked(PairKey{Src: b.Agent, Dst: r.Dst, Proto: r.Protocol}, src)
		}
		if p == nil {
			if full {
				tooMany++
			} else {
				unknown++
			}
			continue
		}
		accepted++
		if !wire.Counts(r) {
			continue
		}
		if count {
			lost, bucket := wire.Lost(r), resultBucket(r)
			// A service that answers wrongly failed its check: for a
			// target that is a lost probe, though the network delivered.
			lost = lost || (p.target && r.Outcome == wire.Outcome_OUTCOME_BAD_RESPONSE)
			for _, c := range p.counts {
				if c == nil {
					break
				}
				c.add(lost, bucket, r.RttNs)
			}
			a.dirty = true
		}
		start := floorTo(t, a.w)
		if start+a.w <= a.sealedUntil {
			late++
			if a.ro == nil {
				a.mergeLateLocked(start, p, r, lag)
			}
			continue
		}
		if win == nil || win.start != start {
			win = a.open[start]
			if win == nil {
				win = &window{start: start, stats: make([]*PairStats, a.nPairs)}
				a.open[start] = win
			}
		}
		if streamSeq != 0 && (win.minSeq == 0 || streamSeq < win.minSeq) {
			win.minSeq = streamSeq
		}
		if a.ro != nil {
			win.addRollups(p, r, len(a.rollKeys))
			continue
		}
		if int(p.id) >= len(win.stats) {
			win.stats = append(win.stats, make([]*PairStats, int(a.nPairs)-len(win.stats))...)
		}
		st := win.stats[p.id]
		if st == nil {
			st = win.newStats()
			win.stats[p.id] = st
			win.touched = append(win.touched, p.id)
		}
		st.add(r, lag)
	}

	as := a.agents[b.Agent]
	if as == nil {
		as = &AgentStatus{Agent: b.Agent}
		a.agents[b.Agent] = as
	}
	if mark := b.CompleteBeforeUnixNano; mark > 0 {
		// A mark says where the agent's data ends; one that goes back
		// within an epoch, or lies beyond the allowed skew, is not
		// believed (the results are kept): it could only seal windows
		// before their data is in.
		switch {
		case mark > newest:
			if count {
				a.m.marksRejected.WithLabelValues("from_future").Inc()
			}
		case as.Epoch == b.Epoch && as.Batches > 0 && mark < as.CompleteBefore.UnixNano():
			if count {
				a.m.marksRejected.WithLabelValues("backwards").Inc()
			}
		default:
			as.CompleteBefore = time.Unix(0, mark).UTC()
		}
	}
	as.LastSeen = arrival
	as.Version = b.AgentVersion
	as.PinglistVersion = b.PinglistVersion
	as.Epoch, as.LastBatchSeq = b.Epoch, b.Seq
	as.SchedulingLagP99 = lag
	as.Batches++
	as.Results += uint64(accepted)
	as.RejectedResults += uint64(skew + old + unknown + unknownTarget + tooMany)
	if count {
		a.m.batches.Inc()
		a.m.results.Add(float64(accepted))
		a.m.late.Add(float64(late))
		a.m.rejected.WithLabelValues("clock_skew").Add(float64(skew))
		a.m.rejected.WithLabelValues("too_old").Add(float64(old))
		a.m.rejected.WithLabelValues("unknown_host").Add(float64(unknown))
		a.m.rejected.WithLabelValues("too_many_targets").Add(float64(tooMany))
		a.m.rejected.WithLabelValues("unknown_target").Add(float64(unknownTarget))
	}
	return nil
}

func (a *Aggregator) locateLocked(host string) (location, bool) {
	if a.cfg.Locator == nil {
		return location{}, true
	}
	rack, pod, dc, ok := a.cfg.Locator.Locate(host)
	return location{rack, pod, dc}, ok
}

// newPairLocked resolves a new path's ends and counters. It returns nil if
// dst is unknown, or, for an HTTP target, if there are MaxTargets already
// (full).
//
// HTTP probes measure a service, named by the agent's pinglist, not the
// fabric: an HTTP pair's destination is a target, not a host, whatever its
// name. It feeds only the target's counters and the pair detail, never the
// host or location rollups and counters, so that a failing service does
// not make its prober look like a sick host or rack.
func (a *Aggregator) newPairLocked(k PairKey, src location) (p *pair, full bool) {
	var dst location
	var targetCount *counter
	target := k.Proto.IsTarget()
	if target {
		if targetCount = a.targetCounterLocked(k.Dst, k.Src); targetCount == nil {
			return nil, true
		}
	} else {
		var ok bool
		if dst, ok = a.locateLocked(k.Dst); !ok {
			return nil, false
		}
	}
	p = &pair{key: k, id: a.nPairs, sample: pairSample(k)}
	a.nPairs++
	a.byID = append(a.byID, p)
	p.rollups = [numRollups]int32{-1, -1, -1, -1, -1}
	if target {
		p.target = true
		p.counts[0] = targetCount
		a.pairs[k.Src][dstProto{k.Dst, k.Proto}] = p
		return p, false
	}
	p.rollups[rollHostOut] = a.rollIDLocked(rollKey{kind: rollHostOut, host: k.Src})
	p.rollups[rollHostIn] = a.rollIDLocked(rollKey{kind: rollHostIn, host: k.Dst})
	n := 0
	if a.cfg.Locator != nil {
		for lv := level(0); lv < numLevels; lv++ {
			loc := LocationPair{src.at(lv), dst.at(lv), k.Proto}
			p.rollups[rollRack+int(lv)] = a.rollIDLocked(rollKey{kind: rollRack + int(lv), loc: loc})
			p.counts[n] = a.counterForLocked(counterKey{counterKind(lv), loc})
			n++
		}
	}
	p.counts[n] = a.counterForLocked(counterKey{hostOutCounter, LocationPair{Src: k.Src, Proto: k.Proto}})
	p.counts[n+1] = a.counterForLocked(counterKey{hostInCounter, LocationPair{Src: k.Dst, Proto: k.Proto}})
	a.pairs[k.Src][dstProto{k.Dst, k.Proto}] = p
	return p, false
}

// targetCounterLocked returns the counter of an HTTP target as host probes
// it, or nil if the target is new and there are MaxTargets already. Each
// prober has its own series ({target, host}): which hosts see a service
// fail says whether it is the service or their network.
func (a *Aggregator) targetCounterLocked(target, host string) *counter {
	k := counterKey{targetCounter, LocationPair{Src: target, Dst: host, Proto: wire.Protocol_PROTOCOL_HTTP}}
	if c := a.counters[k]; c != nil {
		return c
	}
	if a.targetNames[target] == 0 && len(a.targetNames) >= a.cfg.MaxTargets {
		return nil
	}
	a.targetNames[target]++
	return a.counterForLocked(k)
}

func (a *Aggregator) rollIDLocked(k rollKey) int32 {
	id, ok := a.rollIndex[k]
	if !ok {
		id = int32(len(a.rollKeys))
		a.rollKeys = append(a.rollKeys, k)
		a.rollIndex[k] = id
	}
	return id
}

// mergeLateLocked folds a result for an already sealed window into its
// recent detail, if this process holds that window.
func (a *Aggregator) mergeLateLocked(start int64, p *pair, r *wire.ProbeResult, lag time.Duration) {
	if start < a.recentSince {
		return
	}
	rw := a.recent[start]
	if rw == nil {
		if start+a.w <= a.droppedUntil {
			return // the memory budget dropped the window
		}
		rw = &recentWindow{start: start, bytes: recentWindowBytes}
		a.recent[start] = rw
		a.detailBytes += rw.bytes
	}
	st := rw.late[p.id]
	if st == nil {
		sealed := rw.pair(p.id)
		if sealed == nil && rw.level > 0 && !wire.Lost(r) && !a.keepLocked(p.id, &PairStats{}, rw.level) {
			return // the memory budget trimmed the pair from this window
		}
		if rw.late == nil {
			rw.late = make(map[int32]*PairStats)
		}
		if sealed != nil {
			st = sealed.clone() // the sealed original belongs to subscribers
		} else {
			st = &PairStats{}
		}
		rw.late[p.id] = st
		a.growDetailLocked(rw, lateEntryBytes+pairStatsBytes+st.extraBytes())
	}
	before := st.extraBytes()
	st.add(r, lag)
	st.LateResults++
	a.growDetailLocked(rw, st.extraBytes()-before)
}

// Advance seals every window whose end + lateness is at or before now: it
// builds the rollups, keeps the pair detail for PairWindows, writes the
// rollups and cumulative counters to the Appendable (one commit per window)
// and hands each window to the subscribers. It returns the windows sealed,
// oldest first. An error means the TSDB write failed; the windows are sealed
// anyway (subscribers got them) and the failure is counted.
//
// When a window boundary passes with no window to seal but late results
// have changed the counters, the counters alone are written at that
// boundary: otherwise a backlog that arrives after the fleet went quiet
// (a stalled consumer, a bus outage) would never reach the TSDB.
func (a *Aggregator) Advance(ctx context.Context, now time.Time) ([]*SealedWindow, error) {
	a.mu.Lock()
	nowNs := now.UnixNano()
	cut := floorTo(nowNs-a.l, a.w)
	if marks, ok := a.marksCutLocked(nowNs); ok && marks > cut {
		cut = marks
	}
	var sealed []*SealedWindow
	var idle *SealedWindow
	var snap []counterSample
	writeCounters := false // this call commits a counter snapshot
	if cut > a.sealedUntil {
		a.sealedUntil = cut
		var starts []int64
		for s := range a.open {
			if s+a.w <= cut {
				starts = append(starts, s)
			}
		}
		sort.Slice(starts, func(i, j int) bool { return starts[i] < starts[j] })
		for _, s := range starts {
			sealed = append(sealed, a.sealLocked(a.open[s]))
			delete(a.open, s)
			a.m.sealDelay.Observe(float64(nowNs-(s+a.w)) / 1e9)
		}
		if len(sealed) == 0 || sealed[len(sealed)-1].End.UnixNano() != cut {
			// Nothing of this partition's ends at the cut: say that it has
			// passed it (SubscribeIdle, takeIdle), or stage 2 would wait
			// for a part that never comes (a partition whose racks are
			// all silent, or that has none).
			idle = &SealedWindow{Start: time.Unix(0, cut-a.w).UTC(), End: time.Unix(0, cut).UTC()}
			a.idle = idle
		}
		if writeCounters = (len(sealed) > 0 || a.dirty) && a.cfg.Appendable != nil; writeCounters {
			snap = a.counterSnapshotLocked()
			a.dirty = false
			a.snapOK = false // until committed
		}
	}
	horizon := nowNs - int64(a.cfg.Recent)
	for s, rw := range a.recent {
		if s+a.w < horizon {
			a.dropWindowLocked(rw, false)
		}
	}
	a.clockNs = max(a.clockNs, nowNs)
	a.trimLocked(a.clockNs)
	subs, idleSubs := a.subs, a.idleSubs
	a.m.openWindows.Set(float64(len(a.open)))
	a.mu.Unlock()

	// What goes to the TSDB: the sealed windows, or, when late results
	// changed the counters and no window is due, the counters alone at
	// the boundary just passed (an empty window writes no rollup).
	writes := sealed
	flush := writeCounters && len(sealed) == 0
	if flush {
		writes = []*SealedWindow{{Start: time.Unix(0, cut-a.w).UTC(), End: time.Unix(0, cut).UTC()}}
		a.m.counterFlushes.Inc()
	}
	var errs []error
	// clean: the last commit holds every counter's value.
	clean := false
	for _, sw := range writes {
		if a.cfg.Appendable != nil {
			skipped, err := a.writeTSDB(ctx, sw, snap)
			if err != nil {
				a.m.tsdbErrors.Inc()
				errs = append(errs, err)
			}
			clean = err == nil && skipped == 0
		}
		if flush {
			continue
		}
		a.m.sealed.Inc()
		for _, fn := range subs {
			fn(sw)
		}
	}
	if writeCounters {
		a.mu.Lock()
		a.snapOK, a.snapAt, a.flushed = clean, writes[len(writes)-1].End.UnixMilli(), flush
		a.mu.Unlock()
	}
	if idle != nil {
		for _, fn := range idleSubs {
			fn(idle)
		}
	}
	return sealed, errors.Join(errs...)
}

// takeIdle returns the window Advance last found nothing to seal at the
// end of (see SealedWindow.Empty), once, or nil: what a partitioned
// aggregator publishes so that the analyzers see it has passed that far.
func (a *Aggregator) takeIdle() *SealedWindow {
	a.mu.Lock()
	defer a.mu.Unlock()
	w := a.idle
	a.idle = nil
	return w
}

// marksCutLocked is how far the agents' marks let windows be sealed at
// now: the least mark of the live agents (heard from within the
// lateness), floored to a window boundary and never past now. Not ok —
// wait for the lateness — until this process has listened for a
// lateness (an agent not yet heard from would be left out), when no
// agent is live, or when a live agent has never marked (an older agent).
func (a *Aggregator) marksCutLocked(now int64) (int64, bool) {
	if a.firstAdvance == 0 {
		a.firstAdvance = now
	}
	if a.cfg.IgnoreMarks || now-a.firstAdvance < a.l {
		return 0, false
	}
	least, live := now, 0
	for _, as := range a.agents {
		if now-as.LastSeen.UnixNano() > a.l {
			continue // silent for a lateness: it no longer holds windows
		}
		if as.CompleteBefore.IsZero() {
			return 0, false
		}
		live++
		least = min(least, as.CompleteBefore.UnixNano())
	}
	if live == 0 {
		return 0, false
	}
	return floorTo(least, a.w), true
}

// takeFlushed reports whether Advance wrote the counters alone since the
// last call (the ingester then saves a checkpoint, as after a seal).
func (a *Aggregator) takeFlushed() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	f := a.flushed
	a.flushed = false
	return f
}

// sealLocked turns an open window into its SealedWindow and recent detail.
func (a *Aggregator) sealLocked(w *window) *SealedWindow {
	if a.ro != nil {
		return a.sealRollupsLocked(w)
	}
	pairs := a.byID
	rollups := make([]*Rollup, len(a.rollKeys))
	var used []int32
	var slab []Rollup
	var kinds [numRollups]int
	var extra int64 // the pairs' heap beyond their PairStats
	var idx [maxExactRTTs]int
	var vals [maxExactRTTs]float64
	var exact [maxExactRTTs]uint32
	sw := &SealedWindow{
		Start: time.Unix(0, w.start).UTC(),
		End:   time.Unix(0, w.start+a.w).UTC(),
		Pairs: make([]PairEntry, 0, len(w.touched)),
	}
	for _, id := range w.touched {
		p, st := pairs[id], w.stats[id]
		sw.Pairs = append(sw.Pairs, PairEntry{p.key, st})
		extra += st.extraBytes()
		// The pair's exact RTTs go into up to five rollups: map each to
		// its sketch bin once, not once per rollup.
		n := 0
		if !st.rtt.hasSketch() {
			for i := range st.rtt.count {
				ns := st.rtt.exact(i)
				v := float64(ns) / 1e9
				exact[i], vals[i] = ns, v
				idx[i] = noIndex // zero RTT: let the sketch file it
				if v > sketchMapping.MinIndexableValue() {
					idx[i] = sketchMapping.Index(v)
				}
				n++
			}
		}
		for _, rid := range p.rollups {
			if rid < 0 {
				continue
			}
			r := rollups[rid]
			if r == nil {
				if len(slab) == 0 {
					slab = make([]Rollup, statsSlab)
				}
				r, slab = &slab[0], slab[1:]
				rollups[rid] = r
				used = append(used, rid)
				kinds[a.rollKeys[rid].kind]++
			}
			r.Sent += uint64(st.Sent)
			r.Lost += uint64(st.Lost)
			r.SynRetransmits += uint64(st.SynRetransmits)
			if st.rtt.hasSketch() {
				r.rtt.merge(&st.rtt)
				continue
			}
			for i, v := range vals[:n] {
				r.rtt.addExact(exact[i], v, idx[i])
			}
		}
	}
	sw.makeRollupMaps(kinds)
	for _, rid := range used {
		sw.put(a.rollKeys[rid], rollups[rid])
	}
	if w.start >= a.recentSince {
		rw := &recentWindow{start: w.start, stats: w.stats, bytes: windowBytes(w.stats, len(w.touched), extra)}
		a.recent[w.start] = rw
		a.detailBytes += rw.bytes
	}
	return sw
}

// makeRollupMaps makes the window's rollup maps, sized by the number of
// rollups of each kind.
func (sw *SealedWindow) makeRollupMaps(kinds [numRollups]int) {
	sw.Hosts = make(map[HostKey]*Rollup, kinds[rollHostOut]+kinds[rollHostIn])
	sw.RackPairs = make(map[LocationPair]*Rollup, kinds[rollRack])
	sw.PodPairs = make(map[LocationPair]*Rollup, kinds[rollPod])
	sw.DCPairs = make(map[LocationPair]*Rollup, kinds[rollDC])
}

// put files a rollup the window has just built under its key, sorting its
// exact RTTs first (the window is not shared yet).
func (sw *SealedWindow) put(k rollKey, r *Rollup) {
	r.rtt.freeze()
	switch k.kind {
	case rollHostOut:
		sw.Hosts[HostKey{k.host, Out}] = r
	case rollHostIn:
		sw.Hosts[HostKey{k.host, In}] = r
	case rollRack:
		sw.RackPairs[k.loc] = r
	case rollPod:
		sw.PodPairs[k.loc] = r
	case rollDC:
		sw.DCPairs[k.loc] = r
	}
}

// PairWindow is one sealed window of one pair, as the JSON API serves it.
type PairWindow struct {
	Start            time.Time     `json:"start"`
	End              time.Time     `json:"end"`
	Sent             uint64        `json:"sent"`
	Lost             uint64        `json:"lost"`
	LossRatio        float64       `json:"loss_ratio"`
	SynRetransmits   uint64        `json:"syn_retransmits"`
	LateResults      uint64        `json:"late_results"`
	LatencySeconds   []Quantile    `json:"latency_seconds,omitempty"`
	LostTuples       []FiveTuple   `json:"lost_tuples,omitempty"`
	SchedulingLagP99 time.Duration `json:"scheduling_lag_p99_ns"`
}

// Quantile of a latency distribution.
type Quantile struct {
	Q     float64 `json:"q"`
	Value float64 `json:"value"`
}

// PairWindows returns the sealed windows of one pair that start in
// [since, until), oldest first, from the recent detail (including late
// results merged after sealing).
func (a *Aggregator) PairWindows(src, dst string, proto wire.Protocol, since, until time.Time) []PairWindow {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := a.pairs[src][dstProto{dst, proto}]
	if p == nil {
		return nil
	}
	// Someone looks at this pair: the memory budget keeps its windows.
	w := a.watched[p.id]
	if w.first == 0 {
		w.first = a.clockNs
	}
	w.last = a.clockNs
	a.watched[p.id] = w
	lo, hi := since.UnixNano(), until.UnixNano()
	var out []PairWindow
	for s, rw := range a.recent {
		if s < lo || s >= hi {
			continue
		}
		st := rw.pair(p.id)
		if st == nil {
			continue
		}
		pw := PairWindow{
			Start: time.Unix(0, s).UTC(), End: time.Unix(0, s+a.w).UTC(),
			Sent: uint64(st.Sent), Lost: uint64(st.Lost), LossRatio: st.LossRatio(), SynRetransmits: uint64(st.SynRetransmits),
			LateResults: uint64(st.LateResults), LostTuples: append([]FiveTuple(nil), st.LostTuples()...),
			SchedulingLagP99: st.SchedulingLagP99,
		}
		for _, q := range Quantiles {
			if v, ok := st.Quantile(q); ok {
				pw.LatencySeconds = append(pw.LatencySeconds, Quantile{q, v})
			}
		}
		out = append(out, pw)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

// AgentStatus is what the aggregator knows of one agent, for the API.
type AgentStatus struct {
	Agent           string    `json:"agent"`
	LastSeen        time.Time `json:"last_seen"`
	Version         string    `json:"version"`
	PinglistVersion uint64    `json:"pinglist_version"`
	Epoch           uint64    `json:"epoch"`
	LastBatchSeq    uint64    `json:"last_batch_seq"`
	Batches         uint64    `json:"batches"`
	Results         uint64    `json:"results"`
	// RejectedResults: too old, clock skew or unknown destination.
	RejectedResults uint64 `json:"rejected_results"`
	// RejectedBatches: subject mismatch (whole batch refused).
	RejectedBatches  uint64        `json:"rejected_batches"`
	SchedulingLagP99 time.Duration `json:"scheduling_lag_p99_ns"`
	// CompleteBefore is the agent's last believed mark: every probe it
	// started before then is in (zero: it never said).
	CompleteBefore time.Time `json:"complete_before"`
}

// Agents returns every known agent's status, sorted by name.
func (a *Aggregator) Agents() []AgentStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]AgentStatus, 0, len(a.agents))
	for _, as := range a.agents {
		out = append(out, *as)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Agent < out[j].Agent })
	return out
}

// noteRejectedBatch counts a whole batch refused before aggregation.
func (a *Aggregator) noteRejectedBatch(agent, reason string, count bool) {
	if count {
		a.m.rejected.WithLabelValues(reason).Inc()
	}
	if agent == "" {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	// Only agents of the topology get a status entry: names from a bad batch
	// must not grow the map.
	if as := a.agents[agent]; as != nil {
		as.RejectedBatches++
	}
}

// rejectSkewedBatch refuses a whole batch whose agent's clock is off,
// counting each of its results as clock_skew.
func (a *Aggregator) rejectSkewedBatch(b *wire.Batch, count bool) {
	if !count {
		return
	}
	a.m.rejected.WithLabelValues("clock_skew").Add(float64(len(b.Results)))
	a.mu.Lock()
	defer a.mu.Unlock()
	if as := a.agents[b.Agent]; as != nil {
		as.RejectedResults += uint64(len(b.Results))
	}
}

// Counters returns the exact cumulative probe counts of one level ("rack",
// "pod" or "dc") by location pair.
func (a *Aggregator) Counters(levelName string) map[LocationPair]Count {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[LocationPair]Count)
	for k, c := range a.counters {
		// A pair whose results so far were all refusals or local errors
		// has a counter but nothing counted: it is not listed.
		if k.kind < counterKind(numLevels) && levelNames[k.kind] == levelName && c.Probes > 0 {
			out[k.LocationPair] = c.Count
		}
	}
	return out
}

// RTTHistogram is a location pair's exact cumulative RTT histogram:
// Buckets[i] answered probes with RTT ≤ LatencyBuckets[i], the last one
// (+Inf) all answered probes.
type RTTHistogram struct {
	Buckets [numRTTBuckets + 1]uint64
}

// RTTHistograms returns the exact cumulative RTT histograms of one level
// ("rack", "pod" or "dc") by location pair, as written to the TSDB.
func (a *Aggregator) RTTHistograms(levelName string) map[LocationPair]RTTHistogram {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[LocationPair]RTTHistogram)
	for k, c := range a.counters {
		if k.kind < counterKind(numLevels) && levelNames[k.kind] == levelName {
			out[k.LocationPair] = c.histogram()
		}
	}
	return out
}

// HostCounters returns the exact cumulative probe counts of hosts, by host,
// direction and protocol.
func (a *Aggregator) HostCounters() map[HostCounterKey]Count {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[HostCounterKey]Count)
	for k, c := range a.counters {
		switch k.kind {
		case hostOutCounter:
			out[HostCounterKey{k.Src, Out, k.Proto}] = c.Count
		case hostInCounter:
			out[HostCounterKey{k.Src, In, k.Proto}] = c.Count
		}
	}
	return out
}

// HostCounterKey names a host's counters.
type HostCounterKey struct {
	Host      string
	Direction Direction
	Proto     wire.Protocol
}

// TargetCounters returns the exact cumulative probe counts of HTTP targets
// by target name, summed over the hosts probing them.
func (a *Aggregator) TargetCounters() map[string]Count {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]Count)
	for k, c := range a.counters {
		if k.kind == targetCounter {
			sum := out[k.Src]
			sum.Probes += c.Count.Probes
			sum.Lost += c.Count.Lost
			out[k.Src] = sum
		}
	}
	return out
}

// SealedUntil is the end of the last sealed window.
func (a *Aggregator) SealedUntil() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return time.Unix(0, a.sealedUntil).UTC()
}

type counterSample struct {
	key counterKey
	counter
	// born: created by this process's ingest, not restored, so it was 0
	// before its first commit (its hourly copy starts with that 0).
	born bool
}

func (a *Aggregator) counterSnapshotLocked() []counterSample {
	out := make([]counterSample, 0, len(a.counters))
	for k, c := range a.counters {
		_, restored := a.restored[k]
		out = append(out, counterSample{k, *c, !restored})
	}
	return out
}

// replayFromLocked is the smallest stream sequence contributing to an open
// window, or 0 if none is known.
func (a *Aggregator) replayFromLocked() uint64 {
	var min uint64
	for _, w := range a.open {
		if w.minSeq != 0 && (min == 0 || w.minSeq < min) {
			min = w.minSeq
		}
	}
	return min
}

// knownHost reports whether the Locator knows host (always, without one).
func (a *Aggregator) knownHost(host string) bool {
	_, ok := a.locateLocked(host) // reads only the immutable config
	return ok
}

// floorTo rounds t down to a multiple of w, also before the epoch.
func floorTo(t, w int64) int64 {
	r := t % w
	if r < 0 {
		r += w
	}
	return t - r
}
