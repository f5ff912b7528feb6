package aggregate

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/meshlens/meshlens/internal/wire"
)

// Metric names of the rollups written to the TSDB. Pair-level detail stays
// out of the TSDB (cardinality); it lives in the recent window.
const (
	metricHostLoss    = "meshlens_host_loss_ratio"
	metricHostLatency = "meshlens_host_latency_seconds"
)

func levelMetric(lv level, suffix string) string {
	return "meshlens_" + levelNames[lv] + "_pair_" + suffix
}

var quantileLabels = func() []string {
	out := make([]string, len(Quantiles))
	for i, q := range Quantiles {
		out[i] = strconv.FormatFloat(q, 'f', -1, 64)
	}
	return out
}()

// writeTSDB writes one sealed window's rollups and the cumulative counters
// at the window's end, in one commit, with the series derived from the
// counters (elements.go): the per-element counters and, when hourlyDue,
// the hourly copies. Samples the TSDB refuses as conflicting (a window
// re-sealed after a crash with a different value) are counted and
// skipped: the first value written stays, the others still go in.
// counterSkips is how many of the counters' samples were so refused: then
// the TSDB does not hold the counters' current values at this window's
// end. Refused derived samples are counted, not in counterSkips.
func (a *Aggregator) writeTSDB(ctx context.Context, sw *SealedWindow, counters []counterSample) (counterSkips int, err error) {
	app := a.cfg.Appendable.Appender(ctx)
	ts := sw.End.UnixMilli()
	stamp := ts // of the samples add writes
	var failed error
	skipped := 0
	add := func(v float64, kv ...string) {
		if failed != nil {
			return
		}
		for name, value := range a.cfg.SeriesLabels {
			kv = append(kv, name, value)
		}
		_, err := app.Append(0, labels.FromStrings(kv...), stamp, v)
		switch {
		case err == nil:
		case errors.Is(err, storage.ErrDuplicateSampleForTimestamp):
			a.m.tsdbSkipped.WithLabelValues("duplicate").Inc()
			skipped++
		case errors.Is(err, storage.ErrOutOfOrderSample), errors.Is(err, storage.ErrTooOldSample), errors.Is(err, storage.ErrOutOfBounds):
			a.m.tsdbSkipped.WithLabelValues("out_of_order").Inc()
			skipped++
		default:
			failed = fmt.Errorf("aggregate: window %s: append %s: %w", sw.End.Format("15:04:05"), kv[1], err)
		}
	}
	levels := [numLevels]map[LocationPair]*Rollup{sw.RackPairs, sw.PodPairs, sw.DCPairs}
	for lv := level(0); lv < numLevels; lv++ {
		srcL, dstL := "src_"+levelNames[lv], "dst_"+levelNames[lv]
		lat, loss := levelMetric(lv, "latency_seconds"), levelMetric(lv, "loss_ratio")
		for k, r := range levels[lv] {
			if r.Sent == 0 {
				continue // no fake zeros
			}
			proto := k.Proto.Name()
			add(r.LossRatio(), "__name__", loss, srcL, k.Src, dstL, k.Dst, "proto", proto)
			for i, q := range Quantiles {
				if v, ok := r.Quantile(q); ok {
					add(v, "__name__", lat, srcL, k.Src, dstL, k.Dst, "proto", proto, "quantile", quantileLabels[i])
				}
			}
		}
	}
	for k, r := range sw.Hosts {
		if r.Sent == 0 {
			continue
		}
		dir := string(k.Direction)
		add(r.LossRatio(), "__name__", metricHostLoss, "host", k.Host, "direction", dir)
		for i, q := range Quantiles {
			if v, ok := r.Quantile(q); ok {
				add(v, "__name__", metricHostLatency, "host", k.Host, "direction", dir, "quantile", quantileLabels[i])
			}
		}
	}
	rollupSkips := skipped
	kv := make([]string, 0, 10)
	// put writes one counter set under cs's names, with the labels in
	// kv[2:]: probes, lost and, with hist, the histogram (its _sum and
	// _count where cs names them, then the le buckets).
	put := func(cs *counterSeries, c *counter, hist bool) {
		kv[1] = cs.probes
		add(float64(c.Probes), kv...)
		kv[1] = cs.lost
		add(float64(c.Lost), kv...)
		if !hist {
			return
		}
		if cs.rttSum != "" {
			kv[1] = cs.rttSum
			add(float64(c.rttSumNs)/1e9, kv...)
			kv[1] = cs.rttCount
			add(float64(c.answered()), kv...)
		}
		kv[1] = cs.bucket
		h := c.histogram()
		n := len(kv)
		for i, v := range h.Buckets {
			add(float64(v), append(kv[:n], "le", leLabels[i])...)
		}
	}
	// setLabels sets kv to c's labels after the name's pair.
	setLabels := func(c *counterSample) {
		cs := &seriesOf[c.key.kind]
		kv = append(kv[:0], "__name__", "", cs.srcLabel, c.key.Src)
		if cs.dstLabel != "" {
			kv = append(kv, cs.dstLabel, c.key.Dst)
		}
		switch c.key.kind {
		case hostOutCounter:
			kv = append(kv, "direction", string(Out))
		case hostInCounter:
			kv = append(kv, "direction", string(In))
		}
		if cs.proto {
			kv = append(kv, "proto", c.key.Proto.Name())
		}
	}
	for i := range counters {
		c := &counters[i]
		if c.Probes == 0 {
			continue // a pair that only saw refusals or local errors
		}
		// Every counter is written at every seal, so that increase() over
		// any range sees its samples; a restart reads them back from here.
		setLabels(c)
		put(&seriesOf[c.key.kind], &c.counter, c.hist)
	}
	counterSkips = skipped - rollupSkips
	// Derived from the counters just written, never read back: their
	// refusals (an hourly copy behind one written before a crash) do not
	// make the TSDB's counters stale, so they are not counterSkips.
	// Hourly copies: of every series when due, else of those seen for
	// the first time.
	hourly := a.hourlyDue(ts)
	var newCounters []counterKey
	// copyHourly writes the hourly copy of c under cs's names if due or
	// new, preceded, for a series born in this process, by its 0 at the
	// window's start.
	copyHourly := func(cs *counterSeries, c *counterSample, hist, isNew bool) bool {
		if !hourly && !isNew {
			return false
		}
		if isNew && c.born {
			stamp = sw.Start.UnixMilli()
			put(cs, &counter{}, hist)
			stamp = ts
		}
		put(cs, &c.counter, hist)
		return isNew
	}
	for i := range counters {
		c := &counters[i]
		if c.Probes == 0 || hourlyOf[c.key.kind].probes == "" {
			continue
		}
		setLabels(c)
		if copyHourly(&hourlyOf[c.key.kind], c, c.hist, a.hourlyNew(c.key)) {
			newCounters = append(newCounters, c.key)
		}
	}
	if failed != nil {
		if err := app.Rollback(); err != nil {
			return counterSkips, errors.Join(failed, fmt.Errorf("aggregate: window %s: rollback: %w", sw.End.Format("15:04:05"), err))
		}
		return counterSkips, failed
	}
	if err := app.Commit(); err != nil {
		return counterSkips, fmt.Errorf("aggregate: window %s: commit: %w", sw.End.Format("15:04:05"), err)
	}
	a.hourlyWritten(ts, hourly, newCounters)
	return counterSkips, nil
}

// counterMetric says what a counter series holds.
type counterMetric struct {
	kinds []counterKind // candidates; host metrics pick by direction
	field int           // fieldProbes, fieldLost or fieldBucket
}

const (
	fieldProbes = iota
	fieldLost
	fieldBucket
	fieldRTTSum
)

// counterMetrics are the series a restart reads back: a histogram's
// _count is its +Inf bucket, so it is written but never read.
var counterMetrics = func() map[string]counterMetric {
	m := make(map[string]counterMetric)
	for k := counterKind(0); k < numCounterKinds; k++ {
		cs := seriesOf[k]
		for f, name := range []string{cs.probes, cs.lost, cs.bucket, cs.rttSum} {
			cm := m[name]
			cm.kinds = append(cm.kinds, k)
			cm.field = f
			m[name] = cm
		}
	}
	return m
}()

// restoreCountersFromTSDB sets the cumulative counters to the values of
// their samples at exactly at (unix ms), the commit of the seal the
// checkpoint names; want is how many counter keys the checkpoint says it
// wrote there, wantElements how many element keys (0: not counted, a
// checkpoint from before the element counters). Series with labels beyond
// the expected ones and Config.SeriesLabels belong to another writer and
// are ignored.
func (a *Aggregator) restoreCountersFromTSDB(ctx context.Context, at int64, want, wantElements int) error {
	if a.cfg.Queryable == nil {
		return fmt.Errorf("aggregate: checkpoint keeps its counters in the TSDB at %d, but the aggregator has no Queryable", at)
	}
	q, err := a.cfg.Queryable.Querier(at, at)
	if err != nil {
		return fmt.Errorf("aggregate: restore counters at %d: open querier: %w", at, err)
	}
	defer q.Close()
	names := make([]string, 0, len(counterMetrics))
	for n := range counterMetrics {
		names = append(names, regexp.QuoteMeta(n))
	}
	sort.Strings(names)
	ms := []*labels.Matcher{labels.MustNewMatcher(labels.MatchRegexp, model.MetricNameLabel, strings.Join(names, "|"))}
	for n, v := range a.cfg.SeriesLabels {
		ms = append(ms, labels.MustNewMatcher(labels.MatchEqual, n, v))
	}

	restored := make(map[counterKey]*counter)
	ss := q.Select(ctx, false, &storage.SelectHints{Start: at, End: at}, ms...)
	var it chunkenc.Iterator
	for ss.Next() {
		s := ss.At()
		lset := s.Labels()
		k, field, bucket, ok := a.parseCounterSeries(lset)
		if !ok {
			continue
		}
		it = s.Iterator(it)
		var v float64
		found := false
		for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
			if vt != chunkenc.ValFloat {
				continue
			}
			if t, x := it.At(); t == at {
				v, found = x, true
			}
		}
		if err := it.Err(); err != nil {
			return fmt.Errorf("aggregate: restore counters at %d: read %s: %w", at, lset, err)
		}
		if !found {
			continue
		}
		if field == fieldRTTSum {
			// Nanoseconds in a uint64; beyond 2^53 ns the sum is rounded,
			// as the float sample already was.
			if !(v >= 0 && v*1e9 < math.MaxUint64) {
				return fmt.Errorf("aggregate: restore counters at %d: %s has value %v, not a sum of RTTs", at, lset, v)
			}
		} else if v < 0 || v != math.Trunc(v) || v > 1<<53 {
			return fmt.Errorf("aggregate: restore counters at %d: %s has value %v, not a count", at, lset, v)
		}
		c := restored[k]
		if c == nil {
			c = &counter{}
			restored[k] = c
		}
		switch field {
		case fieldProbes:
			c.Probes = uint64(v)
		case fieldLost:
			c.Lost = uint64(v)
		case fieldRTTSum:
			// Absent for counters written before the sum was: it starts
			// from 0 then, a new series.
			c.rttSumNs = uint64(math.Round(v * 1e9))
		default:
			c.ok[bucket] = uint64(v) // cumulative for now
		}
	}
	if err := ss.Err(); err != nil {
		return fmt.Errorf("aggregate: restore counters at %d: select: %w", at, err)
	}
	n, nElements := 0, 0
	for k, c := range restored {
		// Un-cumulate the le buckets and check the counts fit together.
		for i := numRTTBuckets; i > 0; i-- {
			if c.ok[i] < c.ok[i-1] {
				return fmt.Errorf("aggregate: restore counters at %d: %s %v: rtt bucket %s below the one before", at, counterKindNames[k.kind], k.LocationPair, leLabels[i])
			}
			c.ok[i] -= c.ok[i-1]
		}
		if c.Lost > c.Probes || c.answered() > c.Probes-c.Lost {
			return fmt.Errorf("aggregate: restore counters at %d: %s %v: %d lost and %d answered of %d probes", at, counterKindNames[k.kind], k.LocationPair, c.Lost, c.answered(), c.Probes)
		}
		switch {
		case c.Probes == 0:
		case k.kind.isElement():
			nElements++
		default:
			n++
		}
	}
	if n != want || (wantElements != 0 && nElements != wantElements) {
		return fmt.Errorf("aggregate: restore counters at %d: the TSDB holds %d counter sets and %d element ones, the checkpoint wrote %d and %d (TSDB data lost?)", at, n, nElements, want, wantElements)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, c := range restored {
		a.setCounterLocked(k, c)
	}
	a.deriveElementsLocked()
	return nil
}

// parseCounterSeries maps a counter series back to its key, its field and,
// for a bucket, its index. ok is false for series that are not exactly
// this aggregator's (other labels, unknown le).
func (a *Aggregator) parseCounterSeries(lset labels.Labels) (k counterKey, field, bucket int, ok bool) {
	cm, ok := counterMetrics[lset.Get(model.MetricNameLabel)]
	if !ok {
		return k, 0, 0, false
	}
	kind := cm.kinds[0]
	if len(cm.kinds) > 1 { // host: by direction
		switch lset.Get("direction") {
		case string(Out):
			kind = hostOutCounter
		case string(In):
			kind = hostInCounter
		default:
			return k, 0, 0, false
		}
	}
	cs := &seriesOf[kind]
	want := 2 + len(a.cfg.SeriesLabels) // name, src
	k.kind = kind
	// Present, not just counted: another label could stand in for one.
	if !lset.Has(cs.srcLabel) || (cs.dstLabel != "" && !lset.Has(cs.dstLabel)) {
		return k, 0, 0, false
	}
	k.Src = lset.Get(cs.srcLabel)
	if cs.dstLabel != "" {
		k.Dst = lset.Get(cs.dstLabel)
		want++
	}
	if len(cm.kinds) > 1 {
		want++
	}
	k.Proto = wire.Protocol_PROTOCOL_HTTP
	if cs.proto {
		p, err := wire.ParseProtocol(lset.Get("proto"))
		if err != nil {
			return k, 0, 0, false
		}
		k.Proto = p
		want++
	}
	if cm.field == fieldBucket {
		le := lset.Get("le")
		bucket = -1
		for i, l := range leLabels {
			if l == le {
				bucket = i
			}
		}
		if bucket < 0 {
			return k, 0, 0, false
		}
		want++
	}
	return k, cm.field, bucket, lset.Len() == want
}
