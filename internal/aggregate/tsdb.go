package aggregate

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
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
// at the window's end, in one commit. Samples the TSDB refuses as conflicting
// (a window re-sealed after a crash with a different value) are counted and
// skipped: the first value written stays, the others still go in.
func (a *Aggregator) writeTSDB(ctx context.Context, sw *SealedWindow, counters []counterSample) error {
	app := a.cfg.Appendable.Appender(ctx)
	ts := sw.End.UnixMilli()
	var failed error
	add := func(v float64, kv ...string) {
		if failed != nil {
			return
		}
		for name, value := range a.cfg.SeriesLabels {
			kv = append(kv, name, value)
		}
		_, err := app.Append(0, labels.FromStrings(kv...), ts, v)
		switch {
		case err == nil:
		case errors.Is(err, storage.ErrDuplicateSampleForTimestamp):
			a.m.tsdbSkipped.WithLabelValues("duplicate").Inc()
		case errors.Is(err, storage.ErrOutOfOrderSample), errors.Is(err, storage.ErrTooOldSample), errors.Is(err, storage.ErrOutOfBounds):
			a.m.tsdbSkipped.WithLabelValues("out_of_order").Inc()
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
			proto := ProtoName(k.Proto)
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
	for _, c := range counters {
		if c.Probes == 0 {
			continue // a pair that only saw refusals or local errors
		}
		srcL, dstL := "src_"+levelNames[c.key.level], "dst_"+levelNames[c.key.level]
		proto := ProtoName(c.key.Proto)
		add(float64(c.Probes), "__name__", levelMetric(c.key.level, "probes_total"), srcL, c.key.Src, dstL, c.key.Dst, "proto", proto)
		add(float64(c.Lost), "__name__", levelMetric(c.key.level, "probes_lost_total"), srcL, c.key.Src, dstL, c.key.Dst, "proto", proto)
	}
	if failed != nil {
		if err := app.Rollback(); err != nil {
			return errors.Join(failed, fmt.Errorf("aggregate: window %s: rollback: %w", sw.End.Format("15:04:05"), err))
		}
		return failed
	}
	if err := app.Commit(); err != nil {
		return fmt.Errorf("aggregate: window %s: commit: %w", sw.End.Format("15:04:05"), err)
	}
	return nil
}
