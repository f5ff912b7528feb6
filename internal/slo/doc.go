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
// A file holds one or more YAML documents separated by "---"; a document
// is an object or a top-level list of objects. An object is one SLO, a
// list of them under slos:, or an OpenSLO openslo/v1 object: SLO (one
// objective; Occurrences, Timeslices or RatioTimeslices budgeting; a
// rolling or calendar window with its start time and time zone,
// spec.service as the service label, meshlens's alerting block under
// x-meshlens-alerting), SLI (a ratioMetric of Prometheus queries),
// DataSource (gives a metricSourceRef its type), Service (a name),
// AlertPolicy and AlertCondition (an SLO's burnrate conditions become its
// tiers, alertpolicy.go); notification targets are ignored with a
// warning. References resolve across all files given.
// Unknown keys are errors; every error names file:line: field and what to
// write instead (decode.go keeps Go type names out of them). Read returns
// the warnings too. A Sloth or Pyrra file is recognised and refused with
// the import command to run instead (import.go).
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
//	  #   a tier may also name its alert and add labels and annotations:
//	  #   {..., alert: PaymentsErrors, labels: {routing_key: pay}, annotations: {runbook: ...}}
//	labels: {team: netops}
//
// A location scope (dc, pod, rack, host) selects every probe with either
// end in that element. Probe SLIs read the aggregator's cumulative
// per-element counters meshlens_{dc,pod,rack}_probes_total and
// _probes_lost_total{<level>, proto} (each probe once, one series per
// protocol, however many racks the fabric has), the whole fabric its
// meshlens_dc_pair_ ones; host
// scopes read meshlens_host_probes_total / _probes_lost_total{host}, http
// targets meshlens_target_probes_total / _probes_lost_total{target}, and
// latency SLIs the cumulative RTT histogram meshlens_<level>_rtt_seconds_bucket{le}
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
// Windows of a day or more (HourlyFrom) count the same events as the
// difference of each counter's values at the window's two ends, C(t) -
// C(t-w), which the aggregator's never-reset counters make exact, instead
// of increase() over every 10 s sample in them: one evaluation then reads
// about as much at 30 days of history as at a few hours. The value at the
// start comes from the 10 s samples, else from the counters' hourly copies
// (meshlens_hourly_…, an outage or the retention took the samples), and a
// series born inside the window counts whole (counterSum in query.go).
// The engine and the generated rules use the same expressions.
//
//	error rate     e(w)   = bad(w) / total(w)
//	burn rate      b(w)   = e(w) / (1 - target)
//	SLI            1 - e(W) over the SLO window W
//	budget left    1 - bad(W) / ((1 - target) * N(W))         (negative when overspent)
//	consumed/day   bad(day) / ((1 - target) * N(W))
//	events         N(W)   = max(total(W), max over tier windows w of total(w) * W / w)
//
// N(W) is the events the whole window holds (WindowEvents). While the
// window is younger than W (a new SLO or server) it would hold minutes of
// data, and three minutes of 2 % loss would read as a 99.9 % week's budget
// spent twenty times over; the recent rate stands in for the rest. Once
// the window is full, N(W) = total(W) at a steady probing rate.
//
// # Burn-rate tiers
//
// The default tiers are the SRE Workbook's for a 30-day SLO: page at 14.4×
// over 1h and 5m, page at 6× over 6h and 30m, ticket at 3× over 1d and 2h,
// ticket at 1× over 3d and 6h. A tier fires when both windows burn faster
// than its factor; each spends a fixed share of the budget in its long
// window (14.4× over 1h of 30d is 2%). For a longer SLO window W the
// factor is scaled by W / 30d and the windows kept. For a shorter one the
// windows shrink by W / 30d instead and the factors stay (TiersFor): the
// same share, never a factor below 1× (which would page while the budget
// outlasts the window) and never a tier longer than W. Tiers can be
// replaced (burn_rate ≥ 1, long within W), disabled one by one, and given
// other severities per SLO.
//
// # Time slices
//
// An OpenSLO Timeslices budget cuts the window into slices of
// timeSliceWindow; a slice is bad when its good ratio is below
// timeSliceTarget, and the SLO is met when at least target of the slices
// (those holding events) are good. RatioTimeslices, as the spec defines
// it, averages the slices' good ratios instead: every slice weighs the
// same, busy or quiet. Either way the units of the budget are slices (a
// bad slice counts 1, or its error ratio) and everything above holds with
// slices for events: burn rate is the bad share of the slices of a
// window over 1 - target, the tiers fire on it (the default tiers'
// windows rounded up to whole slices), and the minimum-events guard still
// counts events.
//
// Prometheus judges the slices with a subquery, (badness)[w:slice], in
// the generated rules and in the engine alike (slices.go): its steps are
// aligned to multiples of the slice since the epoch, so both judge the
// same fixed slices at any evaluation time; it reads history, so a budget
// is right from the first evaluation (recording each slice's badness
// would start empty and be wrong for a whole window after the rules are
// loaded, fall on the rule group's evaluation times rather than slice
// boundaries, and not be readable by the engine, which queries the store);
// and the data delay shifts a whole subquery, never the selectors in it.
// The range is a millisecond short of w so that Prometheus 2 (ranges
// closed on the left) and 3 (open) count the same slices. The price is
// cost: a month of 5m slices is 8,640 steps per evaluation of the budget.
//
// # Sloth and Pyrra
//
// Import (import.go; meshlens slo import --from sloth|pyrra) converts a
// Sloth prometheus/v1 service spec (or its Kubernetes
// PrometheusServiceLevel) or Pyrra ServiceLevelObjectives into
// openslo/v1 SLOs whose tiers keep what Alertmanager routes match: the
// alert name, per-tier labels (Sloth's page and ticket labels and its
// sloth_id, sloth_service, sloth_slo and sloth_severity; Pyrra's
// severity, long, short, exhaustion, pyrra.dev/ labels and the total
// metric's equality matchers) and annotations; a severity label becomes
// the tier's severity. Sloth's page and ticket alerts are the Workbook's
// four tiers over its 30-day default period; Pyrra's four are its own
// (factors 14, 7, 2, 1 over its 28-day windows scaled to the SLO window,
// with its for durations). What does not map (precomputed ratios, plugins,
// native histograms, grouping, absent-metric alerts, labels meshlens sets
// itself) is listed as file:line: field: why; an SLO whose SLI cannot be
// measured is left out and the command fails after writing the others.
//
// # Ratio queries
//
// A ratio's queries must count events, or the minimum-events guard would
// compare requests per second with a number of events. eventsExpr turns
// rate(x[{{.window}}]) into increase(x[{{.window}}]) (same ratio), reads
// queries without {{.window}} (rate(x[5m]), a counter with counter: true,
// under sum and +, -, or) as events over each window, and refuses gauges
// and other shapes.
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
// A calendar SLO measures from the start of the period holding now:
// periods of days, weeks, months or quarters from a start time in a time
// zone (calendar.go; calendar-month is UTC months from the 1st). Tiers are
// those of a rolling window of the period's nominal length (a month is
// 30d). The generated Prometheus rules cannot start a range on a date and
// use a rolling window of that length for the budget (burn-rate alerts are
// identical).
//
// # Data delay
//
// The aggregator's counters trail the clock by the data delay; the engine
// and the generated rules shift the windows of SLOs that read them
// (ReadsMeshlensCounters), never those of a user's own metrics.
//
// This package imports the store's interfaces (Prometheus storage and
// PromQL), clock and wire's protocol table, never the aggregator, localizer or alerting.
package slo
