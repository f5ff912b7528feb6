package server

import "github.com/meshlens/meshlens/internal/api"

// tsdbMetadata is the type, help and unit of every metric family the
// aggregator and the SLO engine write to the TSDB (docs/metrics.md, "Data
// series in the TSDB"): /api/v1/metadata serves those the store holds.
// TestTSDBMetadataIsDocumented and cmd/meshlens's TestSelfMetrics keep
// it complete.
var tsdbMetadata = func() map[string]api.MetricMetadata {
	m := map[string]api.MetricMetadata{}
	add := func(name, typ, unit, help string) { m[name] = api.MetricMetadata{Type: typ, Help: help, Unit: unit} }
	for _, lv := range []string{"rack", "pod", "dc"} {
		p := "meshlens_" + lv + "_pair_"
		add(p+"latency_seconds", "gauge", "seconds", "RTT quantiles (label quantile) of the probes answered between two "+lv+"s in the window, from merged DDSketches (<= 1% relative error).")
		add(p+"loss_ratio", "gauge", "ratio", "Lost over sent probes between two "+lv+"s in the window.")
		add(p+"probes_total", "counter", "", "Probes sent between two "+lv+"s, late results included.")
		add(p+"probes_lost_total", "counter", "", "Probes lost between two "+lv+"s, late results included.")
		add(p+"rtt_seconds", "histogram", "seconds", "Answered probes between two "+lv+"s by RTT, cumulative, with _sum and _count.")
	}
	add("meshlens_host_loss_ratio", "gauge", "ratio", "A host's loss in the window: probes it sent (direction=out) or that were sent to it (direction=in).")
	add("meshlens_host_latency_seconds", "gauge", "seconds", "RTT quantiles (label quantile) of a host's answered probes in the window, by direction.")
	add("meshlens_host_probes_total", "counter", "", "Probes a host sent (direction=out) or was sent (direction=in).")
	add("meshlens_host_probes_lost_total", "counter", "", "Lost probes a host sent (direction=out) or was sent (direction=in).")
	add("meshlens_host_rtt_seconds", "histogram", "seconds", "A host's answered probes by RTT, cumulative, with _sum and _count.")
	add("meshlens_target_probes_total", "counter", "", "Probes of an HTTP service target by a host.")
	add("meshlens_target_probes_lost_total", "counter", "", "Probes of an HTTP service target by a host that failed (no answer, a bad status or body).")
	add("meshlens_target_rtt_seconds", "histogram", "seconds", "Answered probes of an HTTP service target by RTT, cumulative, with _sum and _count.")
	// Derived by the aggregator from the counters above (see
	// internal/aggregate's doc, "Cumulative counters").
	for _, lv := range []string{"rack", "pod", "dc"} {
		p := "meshlens_" + lv + "_"
		add(p+"probes_total", "counter", "", "Probes with either end in a "+lv+", each counted once, late results included.")
		add(p+"probes_lost_total", "counter", "", "Lost probes with either end in a "+lv+", each counted once, late results included.")
		add(p+"rtt_seconds", "histogram", "seconds", "Answered probes with either end in a "+lv+" by RTT, cumulative, with _sum and _count.")
	}
	// Hourly copies (written at the first window of each hour, and with a
	// 0 before when a series is born) of the
	// counts and buckets of some of the counters, for long SLO windows.
	// Their _bucket series have no _sum or _count beside them: each is a
	// counter of its own.
	for _, f := range []string{"rack", "pod", "dc", "dc_pair", "host", "target"} {
		p := "meshlens_hourly_" + f + "_"
		of := "meshlens_" + f + "_"
		add(p+"probes_total", "counter", "", "Hourly copy of "+of+"probes_total, written at the first window of each hour and when the series first appears.")
		add(p+"probes_lost_total", "counter", "", "Hourly copy of "+of+"probes_lost_total, written at the first window of each hour and when the series first appears.")
		add(p+"rtt_seconds_bucket", "counter", "", "Hourly copy of "+of+"rtt_seconds_bucket (answered probes with RTT <= le, cumulative), written at the first window of each hour and when the series first appears.")
	}
	add("meshlens_slo_sli_ratio", "gauge", "ratio", "An SLO's SLI over its window.")
	add("meshlens_slo_error_budget_remaining_ratio", "gauge", "ratio", "An SLO's error budget left over its window, negative when overspent.")
	add("meshlens_slo_burn_rate", "gauge", "", "An SLO's burn rate over each of its alerting windows (label window).")
	add("meshlens_slo_latency_estimated_probes_total", "counter", "", "Probes in the scope of an estimated latency SLO.")
	add("meshlens_slo_latency_estimated_fast_total", "counter", "", "Probes of an estimated latency SLO estimated to be answered within its threshold.")
	add("meshlens_slo_latency_estimated_until_seconds", "gauge", "seconds", "Unix time up to which an estimated latency SLO's counters are written.")
	return m
}()
