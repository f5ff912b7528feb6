package aggregate

import (
	"strings"
	"time"

	"github.com/meshlens/meshlens/internal/wire"
)

// What the SLO engine reads (see "Cumulative counters" in the package
// doc): per-element counters (counter kinds of their own, fed through the
// location pairs' counters), and hourly copies that let a long SLO window
// read one sample an hour, derived at write time and never read back.

// HourlyStep is how far apart the hourly copies are: they are written at
// the first window whose end lies in a later clock hour than the last
// written. internal/slo keeps a copy of it (slo must not import aggregate:
// it sits after it on the data path); a test there checks they are equal.
const HourlyStep = time.Hour

// HourlyPrefix replaces "meshlens_" in the name of an hourly copy:
// meshlens_dc_pair_probes_total → meshlens_hourly_dc_pair_probes_total.
const HourlyPrefix = "meshlens_hourly_"

func hourlyName(name string) string {
	return HourlyPrefix + strings.TrimPrefix(name, "meshlens_")
}

// elementSeriesOf names the per-element counters by level:
// meshlens_rack_probes_total{rack, proto} and so on, with the histogram.
var elementSeriesOf = func() [numLevels]counterSeries {
	var out [numLevels]counterSeries
	for lv := level(0); lv < numLevels; lv++ {
		p := "meshlens_" + levelNames[lv] + "_"
		out[lv] = counterSeries{
			probes: p + "probes_total", lost: p + "probes_lost_total", bucket: p + "rtt_seconds_bucket",
			srcLabel: levelNames[lv], proto: true,
		}.withHistogram()
	}
	return out
}()

// hourlyCopy names the hourly copies of cs's probes, lost and le buckets.
// Not _sum and _count: the SLIs read only the counts and the buckets.
func hourlyCopy(cs counterSeries) counterSeries {
	cs.probes, cs.lost, cs.bucket = hourlyName(cs.probes), hourlyName(cs.lost), hourlyName(cs.bucket)
	cs.rttSum, cs.rttCount = "", ""
	return cs
}

// hourlyOf names the hourly copies by counter kind; rack and pod pairs
// have none (probes == ""): too many series for what a long window needs,
// which the element counters give.
var hourlyOf = func() [numCounterKinds]counterSeries {
	var out [numCounterKinds]counterSeries
	for _, k := range []counterKind{dcCounter, hostOutCounter, hostInCounter, targetCounter, rackElementCounter, podElementCounter, dcElementCounter} {
		out[k] = hourlyCopy(seriesOf[k])
	}
	return out
}()

// elementKey names one element: a rack, pod or DC and a protocol.
type elementKey struct {
	lv    level
	name  string
	proto wire.Protocol
}

// elementCounters sums location-pair counters by element: every probe
// with either end in the element, counted once. A pair counts for its
// source and, when it is another element, its destination. What the
// element counters hold; restores of checkpoints from before them use it.
func elementCounters(counters []counterSample) map[elementKey]*counterSample {
	out := make(map[elementKey]*counterSample)
	add := func(k elementKey, c *counterSample) {
		e := out[k]
		if e == nil {
			e = &counterSample{born: true}
			out[k] = e
		}
		e.merge(&c.counter)
		e.born = e.born && c.born // born here if all its pairs were
	}
	for i := range counters {
		c := &counters[i]
		if c.key.kind >= counterKind(numLevels) || c.Probes == 0 {
			continue
		}
		lv := level(c.key.kind)
		add(elementKey{lv, c.key.Src, c.key.Proto}, c)
		if c.key.Dst != c.key.Src {
			add(elementKey{lv, c.key.Dst, c.key.Proto}, c)
		}
	}
	return out
}

// merge adds o's counts to c's.
func (c *counter) merge(o *counter) {
	c.Probes += o.Probes
	c.Lost += o.Lost
	c.rttSumNs += o.rttSumNs
	for i, v := range o.ok {
		c.ok[i] += v
	}
}

// hourlyState is what the hourly copies hold so far: the last commit that
// wrote all of them, and the series that have a copy at all. A series
// gets its first copy in the commit it first appears in; one born in this
// process (not restored) also gets a 0 at the window's start, its value
// before. slo's counterSum reads the earliest copy in a long window when
// the counter's value at the window's start is gone (born inside it, or
// past the TSDB's retention), so a series born inside is counted whole.
type hourlyState struct {
	written  bool  // by this Aggregator value: a restart writes them at once
	hour     int64 // the clock hour of its window's end (hourOf)
	counters map[counterKey]struct{}
}

// hourOf is the clock hour of t (unix ms), floored, also before the epoch.
func hourOf(ms int64) int64 {
	return floorTo(ms, HourlyStep.Milliseconds()) / HourlyStep.Milliseconds()
}

// hourlyDue reports whether the commit at endMs (a window's end, unix ms)
// writes the hourly copies of every series: the first this Aggregator
// makes, then the first in each later clock hour. Advance's callers
// serialize writeTSDB (the Ingester's loop, the simulator), so the
// decisions here and hourlyWritten after the commit do not interleave;
// mu only keeps a misuse from being a race.
func (a *Aggregator) hourlyDue(endMs int64) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return !a.hourly.written || hourOf(endMs) > a.hourly.hour
}

// hourlyNew reports whether counter k has no hourly copy yet.
func (a *Aggregator) hourlyNew(k counterKey) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.hourly.counters[k]
	return !ok
}

// hourlyWritten records the commit at endMs: all copies when all is set,
// and those of the counters given. Only after the commit: a failed write
// leaves the next window to retry.
func (a *Aggregator) hourlyWritten(endMs int64, all bool, counters []counterKey) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.hourly.counters == nil {
		a.hourly.counters = make(map[counterKey]struct{})
	}
	for _, k := range counters {
		a.hourly.counters[k] = struct{}{}
	}
	if !all {
		return
	}
	h := hourOf(endMs)
	if a.hourly.written && a.hourly.hour > h {
		h = a.hourly.hour
	}
	a.hourly.written, a.hourly.hour = true, h
}
