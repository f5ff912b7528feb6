package aggregate

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/DataDog/sketches-go/ddsketch/mapping"
	"github.com/DataDog/sketches-go/ddsketch/store"

	"github.com/meshlens/meshlens/internal/wire"
)

// RelativeAccuracy of every latency sketch: a quantile read from a sketch is
// within 1% of the true value of some sample at that rank.
const RelativeAccuracy = 0.01

// maxSketchBins bounds a sketch's memory to 2048 float64 bins (16 KiB) in
// the worst case. Sketches use a collapsing-lowest dense store:
//   - dense: an insert is an array increment (no map, no allocation once the
//     range is covered), which the 1M results/s budget needs, and RTTs of
//     one pair or rollup span a few dozen to a few hundred bins, so dense
//     costs little memory;
//   - bounded: at 1% accuracy 2048 bins span a ratio of ~1e18 between the
//     smallest and largest value, so real RTTs (1 µs .. 1000 s is ~1400
//     bins) never reach the bound; it is there so no input can grow a sketch
//     without limit;
//   - collapsing the lowest bins if it ever is reached: the tail quantiles
//     (p99, p99.9) that SLOs and the localizer read keep their guarantee.
//
// A sketch is only created once a pair or rollup holds more than
// maxExactRTTs RTTs; below that the raw values are kept (see latency).
const maxSketchBins = 2048

// sketchMapping is immutable and shared by every sketch, so that sketches
// merge without remapping.
var sketchMapping = func() mapping.IndexMapping {
	m, err := mapping.NewLogarithmicMapping(RelativeAccuracy)
	if err != nil {
		panic(fmt.Sprintf("aggregate: sketch mapping at accuracy %v: %v", RelativeAccuracy, err))
	}
	return m
}()

// NewSketch returns an empty latency sketch of the kind every aggregate
// uses (values in seconds). It is exported so that the simulator and tests
// build comparable sketches.
func NewSketch() *ddsketch.DDSketch {
	return ddsketch.NewDDSketch(sketchMapping,
		store.NewCollapsingLowestDenseStore(maxSketchBins),
		store.NewCollapsingLowestDenseStore(maxSketchBins))
}

// Quantiles written to the TSDB for every latency rollup.
var Quantiles = []float64{0.5, 0.9, 0.99, 0.999}

// PairKey names one measured path: probes from agent Src to Dst over Proto.
type PairKey struct {
	Src, Dst string
	Proto    wire.Protocol
}

func (k PairKey) String() string {
	return fmt.Sprintf("%s->%s/%s", k.Src, k.Dst, k.Proto.Name())
}

// FiveTuple of a probe, as the agent sent it, so the localizer can infer the
// ECMP path a lost probe took.
type FiveTuple struct {
	Proto   wire.Protocol `json:"proto"`
	SrcAddr string        `json:"src_addr"`
	SrcPort uint32        `json:"src_port"`
	DstAddr string        `json:"dst_addr"`
	DstPort uint32        `json:"dst_port"`
}

// MaxLostTuples caps the 5-tuples kept per pair and window: enough for the
// localizer to see whether losses share a path, bounded against a dead peer.
const MaxLostTuples = 8

// inlineRTTs is how many RTTs a pair keeps as raw values in place. A
// Pingmesh pair is probed about once per protocol per window, so almost
// every pair window holds one or two RTTs: a sketch each (a 512-byte dense
// store, plus its merge cost) would dominate the aggregator's time and
// memory. Up to inlineRTTs values are kept exactly, which is more accurate
// than the sketch, and allocate nothing.
const inlineRTTs = 4

// PairStats is one pair's window. Once a window is sealed its PairStats are
// never modified again (late results go into a copy), so readers may keep
// and read them from any goroutine.
//
// A window holds one PairStats per probed pair (12.8 M at 10,000 hosts with
// full Pingmesh lists), several windows are alive at once, so it is kept to
// 64 bytes: 32-bit counts (a pair is probed a few times per window), the
// rare lost 5-tuples behind a pointer, up to inlineRTTs RTTs as exact
// nanoseconds.
type PairStats struct {
	// Sent counts network measurements (wire.Counts); Lost those that were
	// drops (wire.Lost). Refusals and local errors are in neither.
	Sent, Lost uint32
	// SynRetransmits counts probes whose TCP SYN was retransmitted; they are
	// also in Lost (Pingmesh treats them as drops).
	SynRetransmits uint32
	// LateResults counts results merged after the window was sealed.
	LateResults uint32
	// SchedulingLagP99 is the largest p99 timer lag the source agent reported
	// in the batches that contributed: a starved agent, not a slow network.
	SchedulingLagP99 time.Duration

	// lost holds the first MaxLostTuples lost probes' 5-tuples; nil until
	// the pair loses a probe in this window.
	lost *[]FiveTuple
	// RTTs of OK probes, in seconds.
	rtt latency
}

// LossRatio is Lost/Sent, 0 when nothing was sent.
func (p *PairStats) LossRatio() float64 { return ratio(uint64(p.Lost), uint64(p.Sent)) }

// LostTuples are the first MaxLostTuples lost probes' 5-tuples, in arrival
// order; the caller must not modify them.
func (p *PairStats) LostTuples() []FiveTuple {
	if p.lost == nil {
		return nil
	}
	return *p.lost
}

// LatencyCount is the number of OK probes, whose RTTs are the latency.
func (p *PairStats) LatencyCount() int { return int(p.rtt.count) }

// Quantile of the OK probes' RTTs in seconds; ok is false when there is none.
func (p *PairStats) Quantile(q float64) (seconds float64, ok bool) { return p.rtt.quantile(q) }

// Latency returns a new DDSketch of the OK probes' RTTs in seconds, owned
// by the caller (nil when there was none).
func (p *PairStats) Latency() *ddsketch.DDSketch { return p.rtt.newSketch() }

func (p *PairStats) clone() *PairStats {
	c := *p
	c.rtt = p.rtt.clone()
	if p.lost != nil {
		tuples := append([]FiveTuple(nil), *p.lost...)
		c.lost = &tuples
	}
	return &c
}

// add folds one result in; the caller has checked wire.Counts.
func (p *PairStats) add(r *wire.ProbeResult, lagP99 time.Duration) {
	p.Sent++
	if wire.Lost(r) {
		p.Lost++
		if p.lost == nil {
			p.lost = new([]FiveTuple)
		}
		if len(*p.lost) < MaxLostTuples {
			*p.lost = append(*p.lost, FiveTuple{
				Proto: r.Protocol, SrcAddr: r.SrcAddr, SrcPort: r.SrcPort, DstAddr: r.DstAddr, DstPort: r.DstPort,
			})
		}
	}
	if r.Outcome == wire.Outcome_OUTCOME_SYN_RETRANSMIT {
		p.SynRetransmits++
	}
	if r.Outcome == wire.Outcome_OUTCOME_OK {
		p.rtt.addNanos(r.RttNs)
	}
	if lagP99 > p.SchedulingLagP99 {
		p.SchedulingLagP99 = lagP99
	}
}

// latency is a set of RTTs in seconds, kept exactly as nanoseconds while
// there are few of them, then in a sketch:
//   - the first inlineRTTs in ns, with no allocation: almost every pair
//     window, and host rollups of a sparse mesh;
//   - up to maxExactRTTs in all, the others in over.ns: a Pingmesh
//     rack-pair rollup holds one RTT per host index and protocol, a few
//     dozen per window, and a 512-byte dense sketch each would dominate
//     the memory of a fabric with millions of rack pairs;
//   - beyond that a sketch, which then holds every RTT.
//
// An RTT that is not a whole number of nanoseconds below 2^32 (4.29 s)
// goes to the sketch at once, so the exact values are always exact.
type latency struct {
	ns    [inlineRTTs]uint32
	count uint32
	// over is nil until the inline slots are full.
	over *latencyOverflow
}

// latencyOverflow is what does not fit inline.
type latencyOverflow struct {
	// ns are the exact RTTs after the inline ones; nil once sketch is set.
	ns []uint32
	// sorted: ns[:count] across inline and ns is in ascending order, set
	// by freeze on a sealed rollup so that readers index it directly.
	sorted bool
	// sketch, once created, holds every RTT; the exact values are then
	// stale.
	sketch *ddsketch.DDSketch
}

// maxExactRTTs is how many RTTs a latency keeps exactly before it
// switches to a sketch: 256 bytes, half a sketch's smallest dense store.
const maxExactRTTs = 64

// noIndex: the sketch bin of a value is not known (bins of values below 1
// are negative, so -1 cannot serve).
const noIndex = math.MinInt

func (l *latency) hasSketch() bool { return l.over != nil && l.over.sketch != nil }

// exact is the i-th exact RTT in nanoseconds (i < count, no sketch).
func (l *latency) exact(i uint32) uint32 {
	if i < inlineRTTs {
		return l.ns[i]
	}
	return l.over.ns[i-inlineRTTs]
}

// exactNanos returns v seconds as nanoseconds if that is exact and fits.
func exactNanos(v float64) (uint32, bool) {
	ns := math.Round(v * 1e9)
	if ns < 0 || ns > math.MaxUint32 || float64(ns)/1e9 != v {
		return 0, false
	}
	return uint32(ns), true
}

// add adds v seconds: exactly while it can, else to the sketch.
func (l *latency) add(v float64) {
	if ns, ok := exactNanos(v); ok {
		l.addExact(ns, v, noIndex)
		return
	}
	if !l.hasSketch() {
		l.spill()
	}
	// The sketch only refuses NaN or values beyond ~1e300 s, which an
	// int64 nanosecond count cannot produce.
	_ = l.over.sketch.Add(v)
	l.count++
}

// addExact adds an RTT of exactly ns nanoseconds, v in seconds, idx its
// sketch bin (noIndex: not known). Sealing feeds each pair's exact RTTs
// to its five rollups this way, converting and indexing them once.
func (l *latency) addExact(ns uint32, v float64, idx int) {
	if l.over == nil {
		if l.count < inlineRTTs {
			l.ns[l.count] = ns
			l.count++
			return
		}
		l.over = &latencyOverflow{ns: make([]uint32, 0, 16)}
	}
	o := l.over
	if o.sketch == nil {
		if l.count < maxExactRTTs {
			o.ns = append(o.ns, ns)
			o.sorted = false
			l.count++
			return
		}
		l.spill()
	}
	if idx != noIndex {
		o.sketch.GetPositiveValueStore().Add(idx)
	} else {
		_ = o.sketch.Add(v)
	}
	l.count++
}

// addNanos adds an RTT of ns nanoseconds, the wire's unit: the hot path
// of ingest, with no float round trip to check it is exact.
func (l *latency) addNanos(ns int64) {
	if ns >= 0 && ns <= math.MaxUint32 {
		l.addExact(uint32(ns), float64(ns)/1e9, noIndex)
		return
	}
	l.add(float64(ns) / 1e9)
}

// spill moves the exact RTTs into a new sketch.
func (l *latency) spill() {
	s := NewSketch()
	for i := range l.count {
		_ = s.Add(float64(l.exact(i)) / 1e9)
	}
	if l.over == nil {
		l.over = &latencyOverflow{}
	}
	l.over.ns, l.over.sorted, l.over.sketch = nil, false, s
}

// merge adds all of o's RTTs.
func (l *latency) merge(o *latency) {
	if !o.hasSketch() {
		for i := range o.count {
			ns := o.exact(i)
			l.addExact(ns, float64(ns)/1e9, noIndex)
		}
		return
	}
	if !l.hasSketch() {
		s := o.over.sketch.Copy()
		for i := range l.count {
			_ = s.Add(float64(l.exact(i)) / 1e9)
		}
		if l.over == nil {
			l.over = &latencyOverflow{}
		}
		l.over.ns, l.over.sorted, l.over.sketch = nil, false, s
	} else {
		// Same mapping everywhere, so merging cannot fail.
		_ = l.over.sketch.MergeWith(o.over.sketch)
	}
	l.count += o.count
}

// clone is a deep copy.
func (l *latency) clone() latency {
	c := *l
	if l.over != nil {
		o := *l.over
		if o.sketch != nil {
			o.sketch = o.sketch.Copy()
		}
		o.ns = append([]uint32(nil), o.ns...)
		c.over = &o
	}
	return c
}

// freeze sorts the exact RTTs in place, so that quantiles read them
// without a copy. Only for a latency no one else reads yet: sealing calls
// it on the rollups it has just built.
func (l *latency) freeze() {
	if l.over == nil || l.over.sketch != nil || l.over.sorted {
		return
	}
	all := l.sortedExact()
	copy(l.ns[:], all)
	copy(l.over.ns, all[inlineRTTs:])
	l.over.sorted = true
}

func (l *latency) quantile(q float64) (float64, bool) {
	if l.hasSketch() {
		return quantile(l.over.sketch, q)
	}
	if l.count == 0 {
		return 0, false
	}
	rank := uint32(q * float64(l.count-1))
	if l.over != nil && l.over.sorted {
		return float64(l.exact(rank)) / 1e9, true
	}
	if l.count <= inlineRTTs {
		v := l.ns // a copy: readers never write
		s := v[:l.count]
		slices.Sort(s)
		return float64(s[rank]) / 1e9, true
	}
	return float64(l.sortedExact()[rank]) / 1e9, true
}

// sortedExact is a sorted copy of the exact RTTs (no sketch).
func (l *latency) sortedExact() []uint32 {
	all := make([]uint32, l.count)
	for i := range l.count {
		all[i] = l.exact(i)
	}
	slices.Sort(all)
	return all
}

func (l *latency) newSketch() *ddsketch.DDSketch {
	if l.hasSketch() {
		return l.over.sketch.Copy()
	}
	if l.count == 0 {
		return nil
	}
	s := NewSketch()
	for i := range l.count {
		_ = s.Add(float64(l.exact(i)) / 1e9)
	}
	return s
}

// Rollup is the merge of many pairs' windows: sums and merged latencies.
type Rollup struct {
	Sent, Lost, SynRetransmits uint64
	rtt                        latency
}

// LossRatio is Lost/Sent, 0 when nothing was sent.
func (r *Rollup) LossRatio() float64 { return ratio(r.Lost, r.Sent) }

// LatencyCount is the number of OK probes merged.
func (r *Rollup) LatencyCount() int { return int(r.rtt.count) }

// Quantile of the merged RTTs in seconds; ok is false when there is none.
func (r *Rollup) Quantile(q float64) (seconds float64, ok bool) { return r.rtt.quantile(q) }

// Latency returns a new DDSketch of the merged RTTs, owned by the caller
// (nil when there was none), e.g. to merge further up.
func (r *Rollup) Latency() *ddsketch.DDSketch { return r.rtt.newSketch() }

// Direction of a host rollup: probes the host sent, or probes sent to it.
type Direction string

const (
	Out Direction = "out"
	In  Direction = "in"
)

// HostKey names a host rollup.
type HostKey struct {
	Host      string
	Direction Direction
}

// LocationPair names a rollup between two racks, pods or DCs.
type LocationPair struct {
	Src, Dst string
	Proto    wire.Protocol
}

// SealedWindow is everything one window produced, handed to every sink
// when the window is sealed. It is immutable: sinks may keep it and read it
// from any goroutine, and must not modify it.
type SealedWindow struct {
	Start, End time.Time
	// Pairs holds every pair with results in the window, in no set order.
	Pairs     []PairEntry
	Hosts     map[HostKey]*Rollup
	RackPairs map[LocationPair]*Rollup
	PodPairs  map[LocationPair]*Rollup
	DCPairs   map[LocationPair]*Rollup
}

// Empty reports whether w holds nothing: no pair, host or location
// rollup. Aggregator.SubscribeIdle (and a partitioned aggregator's
// rollups) get one such window whenever its seal passes a window end with
// nothing of its own ending there: it has sealed everything before End,
// so stage 2 need not wait for it there.
func (w *SealedWindow) Empty() bool {
	return len(w.Pairs) == 0 && len(w.Hosts) == 0 && len(w.RackPairs) == 0 && len(w.PodPairs) == 0 && len(w.DCPairs) == 0
}

// PairEntry is one pair's stats in a sealed window.
type PairEntry struct {
	Key   PairKey
	Stats *PairStats
}

// PairMap indexes the window's pairs by key, in a new map the caller owns.
func (w *SealedWindow) PairMap() map[PairKey]*PairStats {
	m := make(map[PairKey]*PairStats, len(w.Pairs))
	for _, e := range w.Pairs {
		m[e.Key] = e.Stats
	}
	return m
}

// SortPairs orders the window's pairs by key, for deterministic consumers
// (the simulator, golden files). It modifies w: call it before sharing w.
func (w *SealedWindow) SortPairs() {
	sort.Slice(w.Pairs, func(i, j int) bool {
		a, b := w.Pairs[i].Key, w.Pairs[j].Key
		if a.Src != b.Src {
			return a.Src < b.Src
		}
		if a.Dst != b.Dst {
			return a.Dst < b.Dst
		}
		return a.Proto < b.Proto
	})
}

func ratio(num, den uint64) float64 {
	if den == 0 {
		return 0
	}
	return float64(num) / float64(den)
}

func quantile(s *ddsketch.DDSketch, q float64) (float64, bool) {
	if s == nil || s.IsEmpty() {
		return 0, false
	}
	v, err := s.GetValueAtQuantile(q)
	if err != nil || math.IsNaN(v) {
		return 0, false
	}
	return v, true
}

// MergeWindows joins the parts of one window sealed by several aggregators
// (one per partition) into a new window. Pairs are disjoint (a pair belongs
// to its source agent's partition) and are concatenated; rollups of the same
// key (a host probed from several partitions, a rack pair whose sources span
// partitions) are summed and their latencies merged. The parts are not
// modified and a single part is returned as is.
func MergeWindows(parts ...*SealedWindow) *SealedWindow {
	switch len(parts) {
	case 0:
		return nil
	case 1:
		return parts[0]
	}
	m := &SealedWindow{
		Start: parts[0].Start, End: parts[0].End,
		Hosts:     make(map[HostKey]*Rollup),
		RackPairs: make(map[LocationPair]*Rollup),
		PodPairs:  make(map[LocationPair]*Rollup),
		DCPairs:   make(map[LocationPair]*Rollup),
	}
	for _, p := range parts {
		m.Pairs = append(m.Pairs, p.Pairs...)
		mergeRollups(m.Hosts, p.Hosts)
		mergeRollups(m.RackPairs, p.RackPairs)
		mergeRollups(m.PodPairs, p.PodPairs)
		mergeRollups(m.DCPairs, p.DCPairs)
	}
	return m
}

func mergeRollups[K comparable](dst, src map[K]*Rollup) {
	for k, r := range src {
		d := dst[k]
		if d == nil {
			d = &Rollup{}
			dst[k] = d
		}
		d.Sent += r.Sent
		d.Lost += r.Lost
		d.SynRetransmits += r.SynRetransmits
		d.rtt.merge(&r.rtt) // copies r's sketch, never shares it
	}
}
