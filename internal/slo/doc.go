// Package slo is meshlens's room for service-level objectives: SLO files
// (meshlens YAML and the OpenSLO openslo/v1 subset that maps onto it), the
// PromQL that measures each SLI over the store, error-budget and burn-rate
// math, the multiwindow multi-burn-rate alert conditions of the SRE Workbook,
// the Engine that evaluates them continuously and writes the results back to
// the store, and the equivalent Prometheus rules for teams that keep their
// own Prometheus.
//
// # Files
//
// A file holds one or more YAML documents separated by "---". A document is
// one SLO, a list of them under slos:, or an OpenSLO openslo/v1 SLO or SLI
// (ratioMetric of Prometheus queries, Occurrences budgeting, one objective,
// a rolling or UTC calendar-month window; an SLO may refer to an SLI of
// any file given, and may carry meshlens's alerting block under
// x-meshlens-alerting). Unknown keys are errors; every error names
// file:line: field.
//
//	name: dc1-availability
//	description: probes inside dc1 are answered
//	target: 99.95%              # or 0.9995
//	window: 30d                 # 7d, 28d, 30d, ... or calendar-month
//	sli:
//	  probe_availability: {dc: dc1, proto: tcp}     # or pod, rack, host; or target (http prober)
//	  # probe_latency: {rack: dc1-pod1-rack1, threshold: 5ms}   # estimate: true reads window quantiles instead
//	  # ratio: {good: 'sum(increase(ok_total[{{.window}}]))', total: 'sum(increase(all_total[{{.window}}]))'}
//	alerting:
//	  runbook: https://runbooks.example/dc1
//	  min_events: 100           # 0 turns the minimum-events rule off
//	  disable: [ticket-3d]      # drop default tiers by name
//	  severities: {ticket-1d: info}
//	  # tiers: [{name: fast, burn_rate: 14.4, long: 1h, short: 5m, severity: page, for: 2m}]  # replace the defaults
//	labels: {team: netops}
//
// A location scope (dc, pod, rack, host) selects every probe with either
// end in that element. Probe SLIs read the aggregator's cumulative counters
// meshlens_{dc,pod,rack}_pair_probes_total and _probes_lost_total; host
// scopes read meshlens_host_probes_total / _probes_lost_total{host}, http
// targets meshlens_target_probes_total / _probes_lost_total{target}, and
// latency SLIs the cumulative RTT histogram meshlens_<level>_pair_rtt_seconds_bucket{le}
// (answered probes at most le seconds; le one of LatencyBuckets): until the
// aggregator writes those, such SLOs have no data (never "all bad"), or,
// with estimate: true, are estimated by the engine from the per-window
// latency quantiles (latency.go).
//
// # Event-weighted budgets
//
// Every SLI is a ratio of event counts over a window, computed as
// sum(increase(bad[w])) / sum(increase(total[w])) over the cumulative
// counters the aggregator writes. A window's SLI is therefore weighted by
// events: a busy hour counts for more than a quiet one, and the budget is
// never an average of short ratios.
//
//	error rate     e(w)   = bad(w) / total(w)
//	burn rate      b(w)   = e(w) / (1 - target)
//	SLI            1 - e(W) over the SLO window W
//	budget left    1 - bad(W) / ((1 - target) * total(W))     (negative when overspent)
//	consumed/day   bad(day) / ((1 - target) * total(W))
//
// # Burn-rate tiers
//
// The default tiers are the SRE Workbook's for a 30-day SLO: page at 14.4×
// over 1h and 5m, page at 6× over 6h and 30m, ticket at 3× over 1d and 2h,
// ticket at 1× over 3d and 6h. A tier fires when both windows burn faster
// than its factor. For another SLO window W the factor is scaled by
// W / 30d, so a tier still means "this share of the whole budget is gone in
// the long window" (14.4× over 1h on 30d is 2% of the budget; on 7d the same
// 2% is spent at 3.36×). Windows are kept as written. Tiers can be replaced,
// disabled one by one, and given other severities per SLO.
//
// # Minimum events
//
// A scope with little traffic would page on a single lost probe: one loss in
// 20 probes is a 5% error rate, a 100× burn on a 99.95% target. A tier
// therefore fires only when its long window holds at least MinEvents events
// (default DefaultMinEvents, settable per SLO with min_events; 0 turns the
// rule off). The same guard is in the generated Prometheus rules.
//
// # Calendar windows
//
// A calendar-month SLO measures from the first instant of the current UTC
// month; burn-rate factors are scaled as for a 30-day window. The generated
// Prometheus rules cannot follow calendar months and use a rolling 30d
// window for the budget (burn-rate alerts are identical).
//
// This package imports the store's interfaces (Prometheus storage and
// PromQL), clock and wire's protocol table, never the aggregator, localizer or alerting.
package slo
