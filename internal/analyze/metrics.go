package analyze

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshlens/meshlens/internal/localize"
	"github.com/meshlens/meshlens/internal/wire"
)

// Reasons of meshlens_path_reports_rejected_total besides wire.Reason's and
// localize.Reason's.
const (
	reasonSubjectMismatch = "subject_mismatch"
	reasonBufferFull      = "buffer_full"
	reasonTooOld          = "too_old"
	reasonFromFuture      = "from_future"
)

// Reasons of meshlens_analyzer_windows_dropped_total.
const (
	dropStale  = "stale"  // a partition never delivered nor moved past it
	dropLate   = "late"   // a half for a window already localized or dropped
	dropBehind = "behind" // more than MaxPending windows waited
)

// RejectReasons are every reason label of
// meshlens_path_reports_rejected_total, for documentation and tests.
func RejectReasons() []string {
	var out []string
	for _, err := range []error{wire.ErrMalformed, wire.ErrTooLarge, wire.ErrInvalidField, errOther} {
		out = append(out, wire.Reason(err))
	}
	out = append(out, reasonSubjectMismatch)
	for _, err := range []error{localize.ErrUnknownHost, localize.ErrUnknownHop, localize.ErrLoop, localize.ErrTooLong,
		localize.ErrNotAdjacent, localize.ErrWrongEndpoint, errOther} {
		out = append(out, localize.Reason(err))
	}
	return append(out, reasonTooOld, reasonFromFuture, reasonBufferFull)
}

var errOther = errorString("other")

type errorString string

func (e errorString) Error() string { return string(e) }

type metrics struct {
	accepted       prometheus.Counter
	rejected       *prometheus.CounterVec
	tracesBuffered prometheus.Gauge
	tracesExpired  prometheus.Counter
	windowsDropped *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	suspects       prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) metrics {
	m := metrics{
		accepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_path_reports_accepted_total",
			Help: "Agents' path reports taken: every traced probe resolved to a path of the fabric and waits for its window.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_path_reports_rejected_total",
			Help: "Agents' path reports refused whole, never given to a localizer, by reason.",
		}, []string{"reason"}),
		tracesBuffered: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshlens_path_traces_buffered",
			Help: "Traced probes of accepted reports waiting for the window they join.",
		}),
		tracesExpired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_path_traces_expired_total",
			Help: "Traced probes of accepted reports that joined no window: past the localizer's horizon when their window was dropped, or the topology changed.",
		}),
		windowsDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_analyzer_windows_dropped_total",
			Help: "Sealed windows not localized, by reason: stale (a partition never delivered), late (a half after the window was done), behind (too many waiting).",
		}, []string{"reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "meshlens_localize_duration_seconds",
			Help:    "Time to localize one window, by localizer.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}, []string{"localizer"}),
		suspects: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshlens_localize_suspects",
			Help: "Elements blamed in the last localized window (the first localizer's verdict).",
		}),
	}
	for _, r := range RejectReasons() {
		m.rejected.WithLabelValues(r)
	}
	for _, r := range []string{dropStale, dropLate, dropBehind} {
		m.windowsDropped.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.accepted, m.rejected, m.tracesBuffered, m.tracesExpired, m.windowsDropped, m.duration, m.suspects)
	}
	return m
}

func (m metrics) reject(reason string) { m.rejected.WithLabelValues(reason).Inc() }
