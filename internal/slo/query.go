package slo

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// Counters the SLIs are measured on. The pair counters are written by the
// aggregator per sealed window; the host, target and latency-bucket
// counters are the ones probe SLIs need for host scopes, http targets and
// latency thresholds (see the package doc).
const (
	probesSuffix = "probes_total"
	lostSuffix   = "probes_lost_total"
	// rttBucketSuffix is a classic cumulative histogram of the RTTs of
	// answered probes, le in seconds from LatencyBuckets.
	rttBucketSuffix = "rtt_seconds_bucket"

	HostProbesMetric      = "meshlens_host_probes_total"
	HostLostMetric        = "meshlens_host_probes_lost_total"
	HostRTTBucketMetric   = "meshlens_host_rtt_seconds_bucket"
	TargetProbesMetric    = "meshlens_target_probes_total"
	TargetLostMetric      = "meshlens_target_probes_lost_total"
	TargetRTTBucketMetric = "meshlens_target_rtt_seconds_bucket"
)

// promDuration renders d the way PromQL ranges are written (5m, 1h, 30d).
func promDuration(d time.Duration) string {
	if d < time.Millisecond {
		d = time.Millisecond
	}
	return model.Duration(d.Truncate(time.Millisecond)).String()
}

// expandWindow puts window w in a user's expression (ratio SLIs). The
// result is embedded in meshlens's own queries ("sum(" + it + ")"): a
// PromQL # comment in it would run on over what follows, so an expression
// holding a # gets lines of its own.
func expandWindow(expr string, w time.Duration) string {
	e := strings.ReplaceAll(expr, WindowVar, promDuration(w))
	if strings.Contains(e, "#") {
		e = "\n" + e + "\n"
	}
	return e
}

// counterSum is the PromQL of the events of scope sc counted by the counter
// with the given pair-metric suffix (probes_total, probes_lost_total,
// rtt_seconds_bucket) over window w. extra matchers (e.g. le) are added.
func (sc Scope) counterSum(suffix string, w time.Duration, extra string) string {
	r := "[" + promDuration(w) + "]"
	var m []string
	if sc.Proto != "" {
		m = append(m, "proto="+strconv.Quote(sc.Proto))
	}
	if extra != "" {
		m = append(m, extra)
	}
	sel := func(metric string, more ...string) string {
		all := append(append([]string(nil), more...), m...)
		return metric + "{" + strings.Join(all, ",") + "}"
	}
	switch {
	case sc.Host != "":
		return "sum(increase(" + sel(hostMetric(suffix), "host="+strconv.Quote(sc.Host)) + r + "))"
	case sc.Target != "":
		return "sum(increase(" + sel(targetMetric(suffix), "target="+strconv.Quote(sc.Target)) + r + "))"
	}
	lv, v := "dc", sc.DC
	switch {
	case sc.Rack != "":
		lv, v = "rack", sc.Rack
	case sc.Pod != "":
		lv, v = "pod", sc.Pod
	}
	metric := "meshlens_" + lv + "_pair_" + suffix
	if v == "" {
		return "sum(increase(" + sel(metric) + r + "))"
	}
	// Either end in the element. "or" keeps one copy of the series that
	// both selectors match (both ends inside), so nothing is counted twice,
	// and the sum stays empty (no data) when the counter does not exist.
	return fmt.Sprintf("sum(increase(%s%s) or increase(%s%s))",
		sel(metric, "src_"+lv+"="+strconv.Quote(v)), r,
		sel(metric, "dst_"+lv+"="+strconv.Quote(v)), r)
}

func hostMetric(suffix string) string {
	switch suffix {
	case probesSuffix:
		return HostProbesMetric
	case lostSuffix:
		return HostLostMetric
	}
	return HostRTTBucketMetric
}

func targetMetric(suffix string) string {
	switch suffix {
	case probesSuffix:
		return TargetProbesMetric
	case lostSuffix:
		return TargetLostMetric
	}
	return TargetRTTBucketMetric
}

// ReadsMeshlensCounters tells whether s reads counters the aggregator
// writes (probe SLIs, or a ratio over meshlens_ metrics): those trail the
// clock by the data delay, a user's own metrics do not.
func (s *SLO) ReadsMeshlensCounters() bool {
	if s.SLI.Kind != Ratio {
		return true
	}
	for _, q := range []string{s.SLI.Good, s.SLI.Bad, s.SLI.Total} {
		if q == "" {
			continue
		}
		e, err := parser.NewParser(parser.Options{}).ParseExpr(expandWindow(q, time.Hour))
		if err != nil {
			continue
		}
		found := false
		parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
			if vs, ok := n.(*parser.VectorSelector); ok && strings.HasPrefix(selectorName(vs), "meshlens_") {
				found = true
			}
			return nil
		})
		if found {
			return true
		}
	}
	return false
}

// selectorName is the metric name a selector reads, "" when it matches
// names by a pattern.
func selectorName(vs *parser.VectorSelector) string {
	if vs.Name != "" {
		return vs.Name
	}
	for _, m := range vs.LabelMatchers {
		if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
			return m.Value
		}
	}
	return ""
}

// TotalQuery is the PromQL of the SLI's events over window w.
func (s *SLO) TotalQuery(w time.Duration) string {
	if s.SLI.Kind == ProbeLatency && s.SLI.Estimate {
		return fmt.Sprintf("sum(increase(%s{slo=%q}[%s]))", MetricEstimatedProbes, s.Name, promDuration(w))
	}
	switch s.SLI.Kind {
	case ProbeAvailability, ProbeLatency:
		return s.SLI.Scope.counterSum(probesSuffix, w, "")
	}
	return "sum(" + expandWindow(s.SLI.Total, w) + ")"
}

// BadQuery is the PromQL of the SLI's bad events over window w.
func (s *SLO) BadQuery(w time.Duration) string {
	switch s.SLI.Kind {
	case ProbeAvailability:
		return s.SLI.Scope.counterSum(lostSuffix, w, "")
	case ProbeLatency:
		if s.SLI.Estimate {
			return fmt.Sprintf("(%s - sum(increase(%s{slo=%q}[%s])))", s.TotalQuery(w), MetricEstimatedFast, s.Name, promDuration(w))
		}
		// A lost probe is not fast: bad = all probes - probes answered
		// within the threshold.
		le := "le=" + strconv.Quote(strconv.FormatFloat(s.SLI.Threshold.Seconds(), 'f', -1, 64))
		return "(" + s.TotalQuery(w) + " - " + s.SLI.Scope.counterSum(rttBucketSuffix, w, le) + ")"
	}
	if s.SLI.Bad != "" {
		return "sum(" + expandWindow(s.SLI.Bad, w) + ")"
	}
	return "(" + s.TotalQuery(w) + " - sum(" + expandWindow(s.SLI.Good, w) + "))"
}

// ErrorRatioQuery is the PromQL of the share of bad events over window w.
func (s *SLO) ErrorRatioQuery(w time.Duration) string {
	return "(" + s.BadQuery(w) + ") / (" + s.TotalQuery(w) + ")"
}
