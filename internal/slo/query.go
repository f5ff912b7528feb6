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

// Counters the SLIs are measured on, written by the aggregator per sealed
// window: per element (rack, pod, DC), per DC pair, per host and per http
// target, probes, lost probes and the latency buckets (see the package
// doc).
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

// HourlyStep is how often the aggregator writes the hourly copies of the
// counters SLOs read (meshlens_hourly_…): at each window that holds the
// start of an hour, and at a series' first. A copy of aggregate.HourlyStep, which this package
// must not import; a test checks the two are equal.
const HourlyStep = time.Hour

// HourlyFrom: windows at least this long are counted as the difference of
// the counter's values at their two ends instead of increase() over every
// sample in them, so that what one evaluation reads no longer grows with
// the history in the window (docs/benchmarks.md). Shorter windows keep
// increase(): Prometheus users know it, and it reads at most hours.
const HourlyFrom = 24 * time.Hour

// startLookback is how far before a long window's start its counter's
// value is looked for among the 10 s samples; past it (the server was
// down then for longer), among the hourly copies up to a day before.
const (
	startLookback       = 10 * time.Minute
	hourlyStartLookback = 24 * time.Hour
)

const hourlyPrefix = "meshlens_hourly_"

// counterSum is the PromQL of the events of scope sc counted by the counter
// with the given suffix (probes_total, probes_lost_total,
// rtt_seconds_bucket) over window w. extra matchers (e.g. le) are added.
//
// A location scope reads the per-element counters (meshlens_rack_…{rack}:
// every probe with either end in the rack, once), one series per
// protocol; the whole fabric reads the DC-pair counters.
//
// A window of HourlyFrom or more is counted exactly as C(t) - C(t-w): the
// aggregator's counters are cumulative and never reset (a restart restores
// them), so two values hold the window's events. C(t-w) is the last 10 s
// sample within startLookback before the window's start, else the last
// hourly copy within hourlyStartLookback before it. With neither, the
// series began inside the window or its start is past the TSDB's
// retention: then the earliest hourly copy in the window, which for a
// series born inside it is the 0 the aggregator writes at its birth (it
// is counted whole) and otherwise the oldest value kept (the window is
// what the TSDB holds of it, as increase() would count). A difference
// below zero is a counter that was reset (its TSDB lost): then C(t), the
// events since, as increase() counts after a reset.
func (sc Scope) counterSum(suffix string, w time.Duration, extra string) string {
	var m []string
	if sc.Proto != "" {
		m = append(m, "proto="+strconv.Quote(sc.Proto))
	}
	if extra != "" {
		m = append(m, extra)
	}
	var metric string
	switch {
	case sc.Host != "":
		metric, m = hostMetric(suffix), append([]string{"host=" + strconv.Quote(sc.Host)}, m...)
	case sc.Target != "":
		metric, m = targetMetric(suffix), append([]string{"target=" + strconv.Quote(sc.Target)}, m...)
	default:
		lv, v := sc.location()
		if v == "" {
			metric = "meshlens_dc_pair_" + suffix
		} else {
			metric, m = "meshlens_"+lv+"_"+suffix, append([]string{lv + "=" + strconv.Quote(v)}, m...)
		}
	}
	x := metric + "{" + strings.Join(m, ",") + "}"
	if w < HourlyFrom {
		return "sum(increase(" + x + "[" + promDuration(w) + "]))"
	}
	hourly := hourlyPrefix + strings.TrimPrefix(x, "meshlens_")
	at := promDuration(w)
	start := fmt.Sprintf("(last_over_time(%s[%s] offset %s) or last_over_time(%s[%s] offset %s) or min_over_time(%s[%s]))",
		x, promDuration(startLookback), at, hourly, promDuration(hourlyStartLookback), at, hourly, at)
	return fmt.Sprintf("sum((%s - %s) >= 0 or %s)", x, start, x)
}

// location is the level of a location scope and its element ("" for
// the whole fabric, at the DC level).
func (sc Scope) location() (lv, v string) {
	switch {
	case sc.Rack != "":
		return "rack", sc.Rack
	case sc.Pod != "":
		return "pod", sc.Pod
	}
	return "dc", sc.DC
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
