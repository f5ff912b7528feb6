package store

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
)

type storeMetrics struct {
	appended      *prometheus.CounterVec // result: committed, rejected, rolled_back
	queryDuration *prometheus.HistogramVec
	reg           prometheus.Registerer
	collectors    []prometheus.Collector
}

func newStoreMetrics(reg prometheus.Registerer, s *Store) (*storeMetrics, error) {
	m := &storeMetrics{
		reg: reg,
		appended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_store_appended_samples_total",
			Help: "Samples handed to the store, by outcome: committed, rejected (by the TSDB at append), rolled_back.",
		}, []string{"result"}),
		queryDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "meshlens_store_query_duration_seconds",
			Help:    "Duration of PromQL queries run through the store's Query helpers, by kind (instant, range).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"kind"}),
	}
	for _, r := range []string{"committed", "rejected", "rolled_back"} {
		m.appended.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	headSeries := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "meshlens_store_head_series",
		Help: "Series in the TSDB's in-memory head block.",
	}, func() float64 {
		if s.db == nil {
			return 0
		}
		return float64(s.db.Head().NumSeries())
	})
	for _, c := range []prometheus.Collector{m.appended, m.queryDuration, headSeries} {
		if err := reg.Register(c); err != nil {
			m.unregister()
			return nil, fmt.Errorf("store: register metrics (one store per registry): %w", err)
		}
		m.collectors = append(m.collectors, c)
	}
	return m, nil
}

func (m *storeMetrics) unregister() {
	for _, c := range m.collectors {
		m.reg.Unregister(c)
	}
	m.collectors = nil
}

// countingAppender counts float samples by outcome and, with remote write, keeps
// the float samples of the transaction so that Commit can queue exactly what
// the TSDB accepted: nothing of a rolled-back or failed transaction is
// forwarded. Native histograms, exemplars and metadata pass through to the
// TSDB uncounted and are not remote-written: meshlens writes none today.
type countingAppender struct {
	storage.Appender
	metrics *storeMetrics
	remote  *RemoteWriter
	pending int
	batch   []pendingSample
}

type pendingSample struct {
	lset labels.Labels
	t    int64
	v    float64
}

func (a *countingAppender) Append(ref storage.SeriesRef, l labels.Labels, t int64, v float64) (storage.SeriesRef, error) {
	ref, err := a.Appender.Append(ref, l, t, v)
	if err != nil {
		a.metrics.appended.WithLabelValues("rejected").Inc()
		return ref, fmt.Errorf("store: append %s @%d: %w", l, t, err)
	}
	a.pending++
	if a.remote != nil {
		a.batch = append(a.batch, pendingSample{lset: l, t: t, v: v})
	}
	return ref, nil
}

func (a *countingAppender) Commit() error {
	n, batch := a.pending, a.batch
	a.pending, a.batch = 0, nil
	if err := a.Appender.Commit(); err != nil {
		a.metrics.appended.WithLabelValues("rolled_back").Add(float64(n))
		return fmt.Errorf("store: commit %d samples: %w", n, err)
	}
	a.metrics.appended.WithLabelValues("committed").Add(float64(n))
	if a.remote != nil && len(batch) > 0 {
		a.remote.enqueue(batch)
	}
	return nil
}

func (a *countingAppender) Rollback() error {
	n := a.pending
	a.pending, a.batch = 0, nil
	a.metrics.appended.WithLabelValues("rolled_back").Add(float64(n))
	if err := a.Appender.Rollback(); err != nil {
		return fmt.Errorf("store: rollback %d samples: %w", n, err)
	}
	return nil
}
