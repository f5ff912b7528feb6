package slo

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
)

// Latency estimates. Until the aggregator writes RTT bucket counters, a
// latency SLI with estimate: true is measured by the engine itself: at each
// evaluation it reads the windows sealed since the last one (per pair in
// scope: the cumulative probe and loss counters and the window's latency
// quantiles p50, p90, p99, p99.9), estimates each window's answered probes
// within the threshold by interpolating the threshold between the
// quantiles (linearly; below p50 from zero; at or above p99.9 all), and
// adds them to two cumulative counters it writes to the store:
//
//	meshlens_slo_latency_estimated_probes_total{slo}   every probe in scope
//	meshlens_slo_latency_estimated_fast_total{slo}     estimated answered within the threshold
//
// The SLI is then event-weighted over those counters like any other (and
// the generated rules read them, so a Prometheus needs them remote-written).
// Windows are read EstimateLag behind the evaluation, so that windows the
// aggregator seals late are not missed; after a gap longer than
// EstimateMaxGap (engine down) the missing windows are skipped. The
// position is kept in meshlens_slo_latency_estimated_until_seconds{slo}, so
// a restarted engine resumes where it stopped.
const (
	MetricEstimatedProbes = "meshlens_slo_latency_estimated_probes_total"
	MetricEstimatedFast   = "meshlens_slo_latency_estimated_fast_total"
	MetricEstimatedUntil  = "meshlens_slo_latency_estimated_until_seconds"

	EstimateLag    = time.Minute
	EstimateMaxGap = 2 * time.Hour
)

type latencyEstimate struct {
	restored     bool
	until        time.Time
	probes, fast float64
}

// fastShare estimates the share of answered probes within threshold thr
// (seconds) from a window's quantiles (quantile -> seconds).
func fastShare(qs map[float64]float64, thr float64) float64 {
	if len(qs) == 0 {
		return 0
	}
	type point struct{ q, v float64 }
	pts := []point{{0, 0}}
	for q, v := range qs {
		pts = append(pts, point{q, v})
	}
	sort.Slice(pts, func(i, j int) bool { return pts[i].q < pts[j].q })
	last := pts[len(pts)-1]
	if thr >= last.v {
		return 1
	}
	for i := 1; i < len(pts); i++ {
		a, b := pts[i-1], pts[i]
		if thr < b.v {
			if b.v <= a.v {
				return a.q
			}
			return a.q + (b.q-a.q)*(thr-a.v)/(b.v-a.v)
		}
	}
	return last.q
}

func (e *Engine) restoreEstimate(ctx context.Context, s *SLO, t time.Time, st *latencyEstimate) error {
	st.restored = true
	st.until = t.Add(-EstimateLag - 15*time.Minute)
	get := func(metric string) (float64, error) {
		return e.scalar(ctx, fmt.Sprintf("last_over_time(%s{slo=%q}[%s])", metric, s.Name, promDuration(EstimateMaxGap)), t)
	}
	until, err := get(MetricEstimatedUntil)
	if err != nil || math.IsNaN(until) {
		return err
	}
	probes, err := get(MetricEstimatedProbes)
	if err != nil {
		return err
	}
	fast, err := get(MetricEstimatedFast)
	if err != nil {
		return err
	}
	if math.IsNaN(probes) || math.IsNaN(fast) {
		return nil
	}
	st.until = time.UnixMilli(int64(until * 1000))
	st.probes, st.fast = probes, fast
	return nil
}

// estimateLatency advances s's estimate to t - EstimateLag and writes its
// counters at t.
func (e *Engine) estimateLatency(ctx context.Context, s *SLO, t time.Time) error {
	st := e.estimates[s.Name]
	if st == nil {
		st = &latencyEstimate{}
		e.estimates[s.Name] = st
	}
	if !st.restored {
		if err := e.restoreEstimate(ctx, s, t, st); err != nil {
			return fmt.Errorf("slo %s: restore latency estimate: %w", s.Name, err)
		}
	}
	to := t.Add(-EstimateLag)
	if !to.After(st.until) {
		return nil
	}
	if to.Sub(st.until) > EstimateMaxGap {
		st.until = to.Add(-EstimateMaxGap)
	}
	// One extra window back for the counters' previous values.
	span := to.Sub(st.until) + 30*time.Second
	sc := s.SLI.Scope
	lv, v := sc.location()
	var sels []string
	proto := ""
	if sc.Proto != "" {
		proto = ",proto=" + strconv.Quote(sc.Proto)
	}
	if v == "" {
		sels = []string{"{" + proto[min(1, len(proto)):] + "}"}
	} else {
		sels = []string{"{src_" + lv + "=" + strconv.Quote(v) + proto + "}", "{dst_" + lv + "=" + strconv.Quote(v) + proto + "}"}
	}
	type series struct {
		lbls labels.Labels
		pts  []promql.FPoint
	}
	fetch := func(metric string) (map[string]series, error) {
		out := map[string]series{}
		for _, sel := range sels {
			res, err := e.cfg.Querier.Query(ctx, "meshlens_"+lv+"_pair_"+metric+sel+"["+promDuration(span)+"]", to)
			if err != nil {
				e.m.queryErrors.Inc()
				return nil, err
			}
			m, ok := res.Value.(promql.Matrix)
			if !ok {
				return nil, fmt.Errorf("range selector of %s: result of type %T", metric, res.Value)
			}
			for _, ser := range m {
				out[ser.Metric.String()] = series{ser.Metric, ser.Floats}
			}
		}
		return out, nil
	}
	probes, err := fetch(probesSuffix)
	if err != nil {
		return fmt.Errorf("slo %s: latency estimate: %w", s.Name, err)
	}
	lost, err := fetch(lostSuffix)
	if err != nil {
		return fmt.Errorf("slo %s: latency estimate: %w", s.Name, err)
	}
	quant, err := fetch("latency_seconds")
	if err != nil {
		return fmt.Errorf("slo %s: latency estimate: %w", s.Name, err)
	}
	pairKey := func(l labels.Labels) string {
		return labels.NewBuilder(l).Del(model.MetricNameLabel, "quantile").Labels().String()
	}
	// pair -> window end (ms) -> quantile -> seconds
	qs := map[string]map[int64]map[float64]float64{}
	for _, ser := range quant {
		q, err := strconv.ParseFloat(ser.lbls.Get("quantile"), 64)
		if err != nil {
			continue // not a quantile series
		}
		k := pairKey(ser.lbls)
		if qs[k] == nil {
			qs[k] = map[int64]map[float64]float64{}
		}
		for _, p := range ser.pts {
			if qs[k][p.T] == nil {
				qs[k][p.T] = map[float64]float64{}
			}
			qs[k][p.T][q] = p.F
		}
	}
	lostBy := map[string]map[int64]float64{}
	for _, ser := range lost {
		k := pairKey(ser.lbls)
		lostBy[k] = map[int64]float64{}
		for _, p := range ser.pts {
			lostBy[k][p.T] = p.F
		}
	}
	from, until := st.until.UnixMilli(), to.UnixMilli()
	thr := s.SLI.Threshold.Seconds()
	for _, ser := range probes {
		k := pairKey(ser.lbls)
		for i := 1; i < len(ser.pts); i++ {
			prev, cur := ser.pts[i-1], ser.pts[i]
			if cur.T <= from || cur.T > until {
				continue
			}
			dp := cur.F - prev.F
			if dp < 0 { // counter reset
				dp = cur.F
			}
			dl := lostBy[k][cur.T] - lostBy[k][prev.T]
			if dl < 0 {
				dl = lostBy[k][cur.T]
			}
			ok := math.Max(dp-dl, 0)
			st.probes += dp
			st.fast += ok * fastShare(qs[k][cur.T], thr)
		}
	}
	st.until = to
	app := e.cfg.Appendable.Appender(ctx)
	ts := t.UnixMilli()
	for _, smp := range []struct {
		name string
		v    float64
	}{{MetricEstimatedProbes, st.probes}, {MetricEstimatedFast, st.fast}, {MetricEstimatedUntil, float64(st.until.UnixMilli()) / 1000}} {
		if _, err := app.Append(0, labels.FromStrings(model.MetricNameLabel, smp.name, "slo", s.Name), ts, smp.v); err != nil {
			err = fmt.Errorf("slo %s: write latency estimate: %w", s.Name, err)
			if rerr := app.Rollback(); rerr != nil {
				err = errors.Join(err, fmt.Errorf("slo %s: rollback: %w", s.Name, rerr))
			}
			return err
		}
	}
	if err := app.Commit(); err != nil {
		return fmt.Errorf("slo %s: write latency estimate: %w", s.Name, err)
	}
	return nil
}
