package aggregate

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the aggregator's self-metrics.
type metrics struct {
	batches     prometheus.Counter
	results     prometheus.Counter
	late        prometheus.Counter
	duplicates  prometheus.Counter
	rejected    *prometheus.CounterVec
	sealed      prometheus.Counter
	openWindows prometheus.Gauge
	tsdbErrors  prometheus.Counter
	tsdbSkipped *prometheus.CounterVec
	checkpoints *prometheus.CounterVec
	dedupGaps   prometheus.Counter
	// consumerRestarts: the stream consumer re-created, by reason.
	consumerRestarts *prometheus.CounterVec
	counterFlushes   prometheus.Counter
	// marksRejected: agents' marks not believed, by reason.
	marksRejected *prometheus.CounterVec
	// sealDelay: how long after its end each window was sealed.
	sealDelay prometheus.Histogram
	// quotaDeletes: batches over their agent's quota deleted from the
	// stream, by result.
	quotaDeletes *prometheus.CounterVec
	// The recent pair detail's estimated bytes, its budget, and the pair
	// windows the budget trimmed (pairdetail.go).
	detailBytes, detailBudget prometheus.Gauge
	detailTrimmed             prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_ingest_batches_total", Help: "Agent batches aggregated.",
		}),
		results: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_ingest_results_total", Help: "Probe results accepted (including refusals and local errors, which count as neither sent nor lost).",
		}),
		late: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_ingest_late_results_total", Help: "Results for windows already sealed: merged into recent detail and counters, not into the sealed rollups.",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_ingest_duplicates_total", Help: "Batches dropped because their (agent, epoch, seq) was already aggregated.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_ingest_rejected_total",
			Help: "Rejected input. Per result for clock_skew, too_old, unknown_host of a destination, unknown_target (an HTTP target the server did not configure) and too_many_targets (HTTP targets beyond the cap); per batch for malformed, too_large, invalid_field, subject_mismatch, wrong_partition, over_quota (the agent is past its byte quota in the stream) and unknown_host of the agent.",
		}, []string{"reason"}),
		sealed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_aggregate_windows_sealed_total", Help: "Windows sealed and handed to the sinks.",
		}),
		openWindows: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshlens_aggregate_open_windows", Help: "Windows not yet sealed.",
		}),
		tsdbErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_aggregate_tsdb_write_errors_total", Help: "Sealed windows whose TSDB commit failed.",
		}),
		tsdbSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_aggregate_tsdb_samples_skipped_total", Help: "Samples the TSDB refused (e.g. a re-sealed window after a restart whose value differs).",
		}, []string{"reason"}),
		checkpoints: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_aggregate_checkpoints_total", Help: "Checkpoint saves, by result (ok, error, deferred: the TSDB does not hold the counters' current values yet).",
		}, []string{"result"}),
		dedupGaps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_ingest_dedup_gaps_total", Help: "Batch sequence numbers skipped to bound de-duplication state: a batch arriving later with one of them is dropped.",
		}),
		counterFlushes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_aggregate_unsealed_flushes_total",
			Help: "Counters written without a sealed window: late results changed them and no window was due (a backlog that arrived after the fleet went quiet).",
		}),
		marksRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_ingest_marks_rejected_total",
			Help: "Agents' marks of where their data ends that were not believed (the batch's results were kept), by reason: backwards (below the agent's last mark in its epoch), from_future (beyond the allowed clock skew).",
		}, []string{"reason"}),
		sealDelay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "meshlens_aggregate_seal_delay_seconds",
			Help:    "How long after its end a window was sealed: about a probe timeout when every agent marked its data in, the lateness when one did not.",
			Buckets: []float64{0.5, 1, 2, 3, 5, 10, 20, 30, 45, 60, 120},
		}),
		quotaDeletes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_ingest_quota_deleted_total",
			Help: "Batches refused over their agent's byte quota in the stream (--stream-agent-max-bytes) and deleted from it, by result (ok, error).",
		}, []string{"result"}),
		consumerRestarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_ingest_consumer_restarts_total",
			Help: "Stream consumer re-created from the last message aggregated, by reason: error (consumer gone, heartbeats missing, connection closed), gap (a delivery lost in flight), stalled (nothing delivered while the stream held newer batches).",
		}, []string{"reason"}),
		detailBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshlens_aggregate_pair_detail_bytes",
			Help: "Estimated bytes of the recent pair detail held in memory for the pair view (--recent), within --pair-detail-max-bytes.",
		}),
		detailBudget: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshlens_aggregate_pair_detail_budget_bytes",
			Help: "The memory budget of the recent pair detail (--pair-detail-max-bytes; 0: none).",
		}),
		detailTrimmed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_aggregate_pair_detail_trimmed_total",
			Help: "Pair windows dropped from the recent pair detail by its memory budget (pairs without loss, not looked at and not in the sample); rollups and counters keep them.",
		}),
	}
	for _, r := range []string{"error", "gap", "stalled"} {
		m.consumerRestarts.WithLabelValues(r)
	}
	for _, r := range []string{"ok", "error"} {
		m.quotaDeletes.WithLabelValues(r)
	}
	for _, r := range []string{"backwards", "from_future"} {
		m.marksRejected.WithLabelValues(r)
	}
	for _, r := range []string{"clock_skew", "too_old", "unknown_host", "too_many_targets", "unknown_target", "malformed", "too_large", "invalid_field", "subject_mismatch", "wrong_partition", "over_quota"} {
		m.rejected.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.batches, m.results, m.late, m.duplicates, m.rejected, m.sealed,
		m.openWindows, m.tsdbErrors, m.tsdbSkipped, m.checkpoints, m.dedupGaps, m.consumerRestarts, m.counterFlushes, m.marksRejected, m.sealDelay, m.quotaDeletes,
		m.detailBytes, m.detailBudget, m.detailTrimmed} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("aggregate: register self-metrics: %w", err)
		}
	}
	return m, nil
}
