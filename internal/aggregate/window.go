package aggregate

import (
	"fmt"
	"math"
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
// the worst case. At 1% accuracy 2048 bins span a ratio of ~1e18 between the
// smallest and largest value, so real RTTs (1 ns .. 1000 s is only ~1400
// bins) never reach the bound; it is there so that no input can make a
// sketch grow without limit. A dense store gives O(1) inserts (an array
// index, no map), which is what the 1M results/s budget needs, and a pair's
// RTTs usually span a few hundred bins, so dense costs little memory. If the
// bound is ever hit, the *lowest* bins are collapsed: the tail quantiles
// (p99, p99.9) that SLOs and the localizer read keep their guarantee.
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
	return fmt.Sprintf("%s->%s/%s", k.Src, k.Dst, ProtoName(k.Proto))
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

// PairStats is one pair's window. Once a window is sealed its PairStats are
// never modified again (late results go into a copy), so readers may keep
// and read them from any goroutine.
type PairStats struct {
	// Sent counts network measurements (wire.Counts); Lost those that were
	// drops (wire.Lost). Refusals and local errors are in neither.
	Sent, Lost uint64
	// SynRetransmits counts probes whose TCP SYN was retransmitted; they are
	// also in Lost (Pingmesh treats them as drops).
	SynRetransmits uint64
	// Latency holds the RTTs in seconds of OK probes; nil when there were none.
	Latency *ddsketch.DDSketch
	// LostTuples holds the first MaxLostTuples lost probes' 5-tuples.
	LostTuples []FiveTuple
	// SchedulingLagP99 is the largest p99 timer lag the source agent reported
	// in the batches that contributed: a starved agent, not a slow network.
	SchedulingLagP99 time.Duration
	// LateResults counts results merged after the window was sealed.
	LateResults uint64
}

// LossRatio is Lost/Sent, 0 when nothing was sent.
func (p *PairStats) LossRatio() float64 { return ratio(p.Lost, p.Sent) }

// Quantile reads the latency sketch; ok is false when there is no sample.
func (p *PairStats) Quantile(q float64) (seconds float64, ok bool) {
	return quantile(p.Latency, q)
}

func (p *PairStats) clone() *PairStats {
	c := *p
	if p.Latency != nil {
		c.Latency = p.Latency.Copy()
	}
	c.LostTuples = append([]FiveTuple(nil), p.LostTuples...)
	return &c
}

// add folds one result in; the caller has checked wire.Counts.
func (p *PairStats) add(r *wire.ProbeResult, lagP99 time.Duration) {
	p.Sent++
	if wire.Lost(r) {
		p.Lost++
		if len(p.LostTuples) < MaxLostTuples {
			p.LostTuples = append(p.LostTuples, FiveTuple{
				Proto: r.Protocol, SrcAddr: r.SrcAddr, SrcPort: r.SrcPort, DstAddr: r.DstAddr, DstPort: r.DstPort,
			})
		}
	}
	if r.Outcome == wire.Outcome_OUTCOME_SYN_RETRANSMIT {
		p.SynRetransmits++
	}
	if r.Outcome == wire.Outcome_OUTCOME_OK {
		if p.Latency == nil {
			p.Latency = NewSketch()
		}
		// The sketch only refuses NaN or values beyond ~1e300 s, which an
		// int64 nanosecond count cannot produce.
		_ = p.Latency.Add(float64(r.RttNs) / 1e9)
	}
	if lagP99 > p.SchedulingLagP99 {
		p.SchedulingLagP99 = lagP99
	}
}

// Rollup is the merge of many pairs' windows: sums and a merged sketch.
type Rollup struct {
	Sent, Lost, SynRetransmits uint64
	Latency                    *ddsketch.DDSketch // nil when no OK probe
}

// LossRatio is Lost/Sent, 0 when nothing was sent.
func (r *Rollup) LossRatio() float64 { return ratio(r.Lost, r.Sent) }

// Quantile reads the merged sketch; ok is false when there is no sample.
func (r *Rollup) Quantile(q float64) (seconds float64, ok bool) { return quantile(r.Latency, q) }

func (r *Rollup) merge(p *PairStats) {
	r.Sent += p.Sent
	r.Lost += p.Lost
	r.SynRetransmits += p.SynRetransmits
	if p.Latency != nil {
		if r.Latency == nil {
			r.Latency = NewSketch()
		}
		// Same mapping everywhere, so merging cannot fail.
		_ = r.Latency.MergeWith(p.Latency)
	}
}

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
	Pairs      map[PairKey]*PairStats
	Hosts      map[HostKey]*Rollup
	RackPairs  map[LocationPair]*Rollup
	PodPairs   map[LocationPair]*Rollup
	DCPairs    map[LocationPair]*Rollup
}

// SortedPairs returns the window's pair keys in a stable order, for
// deterministic consumers (the simulator, golden files).
func (w *SealedWindow) SortedPairs() []PairKey {
	keys := make([]PairKey, 0, len(w.Pairs))
	for k := range w.Pairs {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.Src != b.Src {
			return a.Src < b.Src
		}
		if a.Dst != b.Dst {
			return a.Dst < b.Dst
		}
		return a.Proto < b.Proto
	})
	return keys
}

// ProtoName is the label value of a protocol: tcp, udp, http, icmp.
func ProtoName(p wire.Protocol) string {
	switch p {
	case wire.Protocol_PROTOCOL_TCP:
		return "tcp"
	case wire.Protocol_PROTOCOL_UDP:
		return "udp"
	case wire.Protocol_PROTOCOL_HTTP:
		return "http"
	case wire.Protocol_PROTOCOL_ICMP:
		return "icmp"
	}
	return "unspecified"
}

// ParseProto is the inverse of ProtoName.
func ParseProto(s string) (wire.Protocol, error) {
	for _, p := range []wire.Protocol{wire.Protocol_PROTOCOL_TCP, wire.Protocol_PROTOCOL_UDP, wire.Protocol_PROTOCOL_HTTP, wire.Protocol_PROTOCOL_ICMP} {
		if ProtoName(p) == s {
			return p, nil
		}
	}
	return 0, fmt.Errorf("aggregate: unknown protocol %q (want tcp, udp, http or icmp)", s)
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
