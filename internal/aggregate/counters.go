package aggregate

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/meshlens/meshlens/internal/wire"
)

// LatencyBuckets are the upper bounds (seconds) of the cumulative RTT
// histograms the aggregator writes (…_rtt_seconds_bucket{le}, with
// …_rtt_seconds_sum and …_rtt_seconds_count beside them). They are a
// copy of slo.LatencyBuckets, kept here because aggregate must not import
// the SLO engine (it sits after aggregate on the data path); a test checks
// that the two lists are equal. Change both together.
var LatencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}

// numRTTBuckets is len(LatencyBuckets); the histograms have one more
// bucket, +Inf.
const numRTTBuckets = 13

// bucketBoundsNs are LatencyBuckets in nanoseconds: RTTs arrive as integer
// nanoseconds, and comparing integers makes "RTT ≤ le" exact.
var bucketBoundsNs = func() [numRTTBuckets]int64 {
	if len(LatencyBuckets) != numRTTBuckets {
		panic(fmt.Sprintf("aggregate: %d latency buckets, numRTTBuckets is %d", len(LatencyBuckets), numRTTBuckets))
	}
	var out [numRTTBuckets]int64
	for i, b := range LatencyBuckets {
		out[i] = int64(math.Round(b * float64(time.Second)))
	}
	return out
}()

// leLabels are the le label values: LatencyBuckets as Prometheus formats
// them, then +Inf.
var leLabels = func() [numRTTBuckets + 1]string {
	var out [numRTTBuckets + 1]string
	for i, b := range LatencyBuckets {
		out[i] = strconv.FormatFloat(b, 'f', -1, 64)
	}
	out[numRTTBuckets] = "+Inf"
	return out
}()

// rttBucket is the index of the first bucket whose bound is ≥ rtt
// (numRTTBuckets: only +Inf).
func rttBucket(rttNs int64) int {
	// A scan, not a binary search: datacenter RTTs stop at the first
	// bounds, and this runs for every answered probe.
	for i, b := range bucketBoundsNs {
		if rttNs <= b {
			return i
		}
	}
	return numRTTBuckets
}

// counterKind says which family a cumulative counter belongs to.
type counterKind uint8

const (
	rackCounter counterKind = iota // src/dst racks
	podCounter
	dcCounter
	hostOutCounter // Src is the host, which sent the probes
	hostInCounter  // Src is the host, which was probed
	targetCounter  // Src is the HTTP target's name
	// Per-element counters: every probe with either end in the rack,
	// pod or DC (Src), once; Dst is empty. Fed through the location
	// pairs' counters (counter.elems), so that they keep an RTT
	// histogram whether or not the pairs do.
	rackElementCounter
	podElementCounter
	dcElementCounter
	numCounterKinds
)

var counterKindNames = [numCounterKinds]string{"rack", "pod", "dc", "host_out", "host_in", "target", "rack_element", "pod_element", "dc_element"}

// elementKind is the counter kind of level lv's elements.
func elementKind(lv level) counterKind { return rackElementCounter + counterKind(lv) }

// isElement reports whether k is a per-element kind.
func (k counterKind) isElement() bool { return k >= rackElementCounter && k <= dcElementCounter }

func parseCounterKind(s string) (counterKind, bool) {
	for k, n := range counterKindNames {
		if n == s {
			return counterKind(k), true
		}
	}
	return 0, false
}

// counterKey names one set of cumulative counters. For location pairs Src
// and Dst are racks, pods or DCs; for hosts and targets Src is the host or
// target and Dst is empty. Targets have no protocol label (always HTTP).
type counterKey struct {
	kind counterKind
	LocationPair
}

// counter is one key's exact cumulative counts.
type counter struct {
	Count
	// ok[i] counts answered probes whose RTT is in (bound[i-1], bound[i]];
	// ok[numRTTBuckets] those above the last bound. Cumulated into le
	// buckets only when written.
	ok [numRTTBuckets + 1]uint64
	// rttSumNs is the sum of those probes' RTTs: the histogram's _sum.
	rttSumNs uint64
	// hist: this counter keeps the RTT histogram (ok, rttSumNs); set
	// when it is created, from its kind (Aggregator.keepsHistogram).
	hist bool
	// elems are the element counters a location pair's counts also go
	// into: its source's and, when another element, its destination's.
	elems [2]*counter
}

// add counts one result that wire.Counts, here and in c's elements;
// bucket is rttBucket of an answered probe, -1 for a lost one or one
// without an RTT; rttNs is its RTT.
func (c *counter) add(lost bool, bucket int, rttNs int64) {
	c.count(lost, bucket, rttNs)
	for _, e := range c.elems {
		if e == nil {
			break
		}
		e.count(lost, bucket, rttNs)
	}
}

func (c *counter) count(lost bool, bucket int, rttNs int64) {
	c.Probes++
	if lost {
		c.Lost++
	}
	if bucket >= 0 && c.hist {
		c.ok[bucket]++
		c.rttSumNs += uint64(max(rttNs, 0))
	}
}

// setValue sets c's counts to v's, keeping what c is (hist, elems).
func (c *counter) setValue(v *counter) {
	c.Count, c.ok, c.rttSumNs = v.Count, v.ok, v.rttSumNs
}

// answered is the number of probes in the histogram.
func (c *counter) answered() uint64 {
	var n uint64
	for _, v := range c.ok {
		n += v
	}
	return n
}

// counterForLocked returns key's counter, creating it: a location pair's
// linked to its elements' counters.
func (a *Aggregator) counterForLocked(k counterKey) *counter {
	c := a.counters[k]
	if c != nil {
		return c
	}
	c = &counter{hist: a.keepsHistogram(k.kind)}
	a.counters[k] = c
	if k.kind < counterKind(numLevels) {
		ek := elementKind(level(k.kind))
		c.elems[0] = a.counterForLocked(counterKey{ek, LocationPair{Src: k.Src, Proto: k.Proto}})
		if k.Dst != k.Src {
			c.elems[1] = a.counterForLocked(counterKey{ek, LocationPair{Src: k.Dst, Proto: k.Proto}})
		}
	}
	return c
}

// keepsHistogram says whether counters of kind k keep an RTT histogram.
// Rack pairs do only with Config.RackPairRTTBuckets: their 16 histogram
// series per rack pair and protocol were most of what a window writes
// (docs/operations.md), and what reads latency reads the racks' own
// histograms (rack elements) or the rack pairs' quantiles. Host counters
// only with Config.HostRTTBuckets.
func (a *Aggregator) keepsHistogram(k counterKind) bool {
	switch k {
	case rackCounter:
		return a.cfg.RackPairRTTBuckets
	case hostOutCounter, hostInCounter:
		return a.cfg.HostRTTBuckets
	}
	return true
}

// series names of a counter kind: probes, lost, the rtt histogram's
// bucket, sum and count metric names, and the label names of Src and Dst
// ("" for none).
type counterSeries struct {
	probes, lost             string
	bucket, rttSum, rttCount string
	srcLabel, dstLabel       string
	proto                    bool // has a proto label
}

// withHistogram names the _sum and _count series of cs's histogram
// beside its _bucket.
func (cs counterSeries) withHistogram() counterSeries {
	base := strings.TrimSuffix(cs.bucket, "_bucket")
	cs.rttSum, cs.rttCount = base+"_sum", base+"_count"
	return cs
}

var seriesOf = func() [numCounterKinds]counterSeries {
	var out [numCounterKinds]counterSeries
	for lv := level(0); lv < numLevels; lv++ {
		out[lv] = counterSeries{
			probes: levelMetric(lv, "probes_total"), lost: levelMetric(lv, "probes_lost_total"), bucket: levelMetric(lv, "rtt_seconds_bucket"),
			srcLabel: "src_" + levelNames[lv], dstLabel: "dst_" + levelNames[lv], proto: true,
		}.withHistogram()
	}
	host := counterSeries{probes: metricHostProbes, lost: metricHostLost, bucket: metricHostRTTBucket, srcLabel: "host", proto: true}.withHistogram()
	out[hostOutCounter], out[hostInCounter] = host, host
	out[targetCounter] = counterSeries{probes: metricTargetProbes, lost: metricTargetLost, bucket: metricTargetRTTBucket, srcLabel: "target", dstLabel: "host"}.withHistogram()
	for lv := level(0); lv < numLevels; lv++ {
		out[elementKind(lv)] = elementSeriesOf[lv]
	}
	return out
}()

// Metric names of the host and target counters (the location-pair ones are
// levelMetric(lv, "probes_total") etc.).
const (
	metricHostProbes      = "meshlens_host_probes_total"
	metricHostLost        = "meshlens_host_probes_lost_total"
	metricHostRTTBucket   = "meshlens_host_rtt_seconds_bucket"
	metricTargetProbes    = "meshlens_target_probes_total"
	metricTargetLost      = "meshlens_target_probes_lost_total"
	metricTargetRTTBucket = "meshlens_target_rtt_seconds_bucket"
)

// checkpointCounter converts one counter to its checkpoint form.
func checkpointCounter(k counterKey, c *counter) CheckpointCounter {
	cc := CheckpointCounter{
		Level: counterKindNames[k.kind], Src: k.Src, Dst: k.Dst, Proto: k.Proto.Name(),
		Probes: c.Probes, Lost: c.Lost,
	}
	if c.answered() > 0 {
		cc.RTTBuckets = append([]uint64(nil), c.ok[:]...)
		cc.RTTSumNs = c.rttSumNs
	}
	return cc
}

// parse checks a checkpoint counter and returns its key and value.
func (cc *CheckpointCounter) parse() (counterKey, *counter, error) {
	kind, ok := parseCounterKind(cc.Level)
	if !ok {
		return counterKey{}, nil, fmt.Errorf("level %q: %w", cc.Level, ErrBadCheckpoint)
	}
	p, err := wire.ParseProtocol(cc.Proto)
	if err != nil {
		return counterKey{}, nil, fmt.Errorf("%w: %w", ErrBadCheckpoint, err)
	}
	if cc.Lost > cc.Probes {
		return counterKey{}, nil, fmt.Errorf("%d lost of %d probes: %w", cc.Lost, cc.Probes, ErrBadCheckpoint)
	}
	c := &counter{Count: Count{Probes: cc.Probes, Lost: cc.Lost}, rttSumNs: cc.RTTSumNs}
	switch len(cc.RTTBuckets) {
	case 0:
		if cc.RTTSumNs != 0 {
			return counterKey{}, nil, fmt.Errorf("an rtt sum of %d ns without rtt buckets: %w", cc.RTTSumNs, ErrBadCheckpoint)
		}
	case numRTTBuckets + 1:
		copy(c.ok[:], cc.RTTBuckets)
		// Answered probes are neither lost nor more than were sent;
		// subtracting bucket by bucket cannot overflow as a sum could.
		left := cc.Probes - cc.Lost
		for _, v := range c.ok {
			if v > left {
				return counterKey{}, nil, fmt.Errorf("more answered probes in rtt buckets than the %d probes minus %d lost: %w", cc.Probes, cc.Lost, ErrBadCheckpoint)
			}
			left -= v
		}
	default:
		return counterKey{}, nil, fmt.Errorf("%d rtt buckets, want %d: %w", len(cc.RTTBuckets), numRTTBuckets+1, ErrBadCheckpoint)
	}
	return counterKey{kind, LocationPair{cc.Src, cc.Dst, p}}, c, nil
}

// resultBucket is the RTT bucket of a counted result, -1 if not answered.
func resultBucket(r *wire.ProbeResult) int {
	if r.Outcome != wire.Outcome_OUTCOME_OK {
		return -1
	}
	return rttBucket(r.RttNs)
}

// histogram cumulates the counter's RTT buckets.
func (c *counter) histogram() RTTHistogram {
	var h RTTHistogram
	var sum uint64
	for i, v := range c.ok {
		sum += v
		h.Buckets[i] = sum
	}
	return h
}
