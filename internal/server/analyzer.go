package server

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshlens/meshlens/internal/aggregate"
	"github.com/meshlens/meshlens/internal/bus"
	"github.com/meshlens/meshlens/internal/localize"
	"github.com/meshlens/meshlens/internal/topology"
	"github.com/meshlens/meshlens/internal/wire"
)

// analyzer is stage 2 of the data path: it takes every sealed window from
// the aggregators, merges the partitions' halves of one window, and asks the
// localizer which elements explain what went wrong. It keeps an hour of
// verdicts for the API and the UI.
type analyzer struct {
	logger  *slog.Logger
	windows chan *aggregate.SealedWindow
	parts   int
	lags    func() map[string]time.Duration
	topo    func() *topology.Topology
	// onVerdict, if set, hears every verdict (alerting's culprit board).
	onVerdict func(Verdict)

	mu      sync.RWMutex
	history []Verdict // oldest first, bounded
	keep    int

	window time.Duration
	pathMu sync.Mutex
	paths  map[int64][]*wire.TracedProbe // by window start, Unix ns (time.Time keys would compare locations too)
	pathsN int

	pathReports *prometheus.CounterVec

	dropped   prometheus.Counter
	duration  prometheus.Histogram
	suspectsG prometheus.Gauge
}

// Verdict is what the localizer concluded for one window.
type Verdict struct {
	Start    time.Time          `json:"start"`
	End      time.Time          `json:"end"`
	Suspects []localize.Suspect `json:"suspects"`
}

func newAnalyzer(parts int, window time.Duration, keep int, topo func() *topology.Topology, lags func() map[string]time.Duration, reg prometheus.Registerer, logger *slog.Logger) *analyzer {
	a := &analyzer{
		logger:  logger,
		windows: make(chan *aggregate.SealedWindow, 64),
		parts:   parts,
		lags:    lags,
		topo:    topo,
		keep:    keep,
		window:  window,
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_analyzer_windows_dropped_total",
			Help: "Sealed windows the analyzer could not keep up with and skipped.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "meshlens_localize_duration_seconds",
			Help:    "Time to localize one window.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		suspectsG: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshlens_localize_suspects",
			Help: "Elements blamed in the last localized window.",
		}),
	}
	a.pathReports = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshlens_path_reports_total",
		Help: "Path-discovery reports from agents, by result (accepted, or why not).",
	}, []string{"result"})
	a.paths = map[int64][]*wire.TracedProbe{}
	reg.MustRegister(a.dropped, a.duration, a.suspectsG, a.pathReports)
	return a
}

// maxBufferedPaths bounds the traced probes waiting for their window.
const maxBufferedPaths = 200_000

// onPathReport takes one agent's path discoveries off the bus. Reports are
// best effort: a bad one is counted and dropped.
func (a *analyzer) onPathReport(subject string, data []byte) {
	rep, err := wire.DecodePathReport(data)
	if err != nil {
		a.pathReports.WithLabelValues(wire.Reason(err)).Inc()
		return
	}
	// An agent may speak only for itself.
	if subject != bus.PathsSubject(rep.Agent) {
		a.pathReports.WithLabelValues("subject_mismatch").Inc()
		return
	}
	a.pathMu.Lock()
	defer a.pathMu.Unlock()
	if a.pathsN+len(rep.Probes) > maxBufferedPaths {
		a.pathReports.WithLabelValues("buffer_full").Inc()
		return
	}
	for _, p := range rep.Probes {
		start := time.Unix(0, p.StartUnixNano).Truncate(a.window).UnixNano()
		p.Hops = append([]string{rep.Agent}, p.Hops...) // the source is the reporting agent, kept first until resolved
		a.paths[start] = append(a.paths[start], p)
	}
	a.pathsN += len(rep.Probes)
	a.pathReports.WithLabelValues("accepted").Inc()
}

// tracesFor hands over the traced probes of the window starting at start,
// as link ids of x, and forgets them and anything older.
func (a *analyzer) tracesFor(start time.Time, x *localize.Index) []localize.Trace {
	a.pathMu.Lock()
	probes := a.paths[start.UnixNano()]
	for t, ps := range a.paths {
		if t <= start.UnixNano() {
			a.pathsN -= len(ps)
			delete(a.paths, t)
		}
	}
	a.pathMu.Unlock()
	var out []localize.Trace
	for _, p := range probes {
		src := p.Hops[0]
		p.Hops = p.Hops[1:]
		t, err := x.ResolveTrace(src, p)
		if err != nil {
			a.pathReports.WithLabelValues(localize.Reason(err)).Inc()
			continue
		}
		out = append(out, t)
	}
	return out
}

// offer is the aggregators' subscription: it must not block them.
func (a *analyzer) offer(w *aggregate.SealedWindow) {
	select {
	case a.windows <- w:
	default:
		a.dropped.Inc()
	}
}

func (a *analyzer) Run(ctx context.Context) error {
	var (
		topo    *topology.Topology
		x       *localize.Index
		lz      localize.Localizer
		pending = map[int64][]*aggregate.SealedWindow{}
	)
	for {
		var w *aggregate.SealedWindow
		select {
		case <-ctx.Done():
			return nil
		case w = <-a.windows:
		}
		// A new topology means new element ids: start the localizer afresh.
		if t := a.topo(); t != topo {
			nx, err := localize.NewIndex(t)
			if err != nil {
				a.logger.Error("analyzer: cannot index the topology; localization paused", "err", err)
				continue
			}
			topo, x = t, nx
			lz, _ = localize.New(localize.NameMeshlens, x, localize.Config{})
		}
		key := w.Start.UnixNano()
		pending[key] = append(pending[key], w)
		if len(pending[key]) < a.parts {
			continue
		}
		merged := aggregate.MergeWindows(pending[key]...)
		delete(pending, key)
		for start := range pending { // a partition that skipped a window
			if start < key-int64(time.Hour) {
				delete(pending, start)
			}
		}
		began := time.Now()
		sus, err := lz.Localize(&localize.Window{Sealed: merged, AgentLag: a.lags(), Traces: a.tracesFor(merged.Start, x)})
		a.duration.Observe(time.Since(began).Seconds())
		if err != nil {
			a.logger.Error("analyzer: localize", "window", merged.Start, "err", err)
			continue
		}
		a.suspectsG.Set(float64(len(sus)))
		v := Verdict{Start: merged.Start, End: merged.End, Suspects: sus}
		a.record(v)
		if a.onVerdict != nil {
			a.onVerdict(v)
		}
	}
}

func (a *analyzer) record(v Verdict) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.history = append(a.history, v)
	if len(a.history) > a.keep {
		a.history = a.history[len(a.history)-a.keep:]
	}
}

// at returns the verdict of the window containing t (zero t: the latest).
func (a *analyzer) at(t time.Time) (Verdict, bool) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if len(a.history) == 0 {
		return Verdict{}, false
	}
	if t.IsZero() {
		return a.history[len(a.history)-1], true
	}
	i := sort.Search(len(a.history), func(i int) bool { return !a.history[i].End.Before(t) })
	if i == len(a.history) {
		return a.history[len(a.history)-1], true
	}
	return a.history[i], true
}

// serveSuspects answers GET /api/v1/suspects[?at=RFC3339].
func (a *analyzer) serveSuspects(w http.ResponseWriter, r *http.Request) {
	var t time.Time
	if s := r.URL.Query().Get("at"); s != "" {
		var err error
		if t, err = time.Parse(time.RFC3339, s); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"status": "error", "errorType": "bad_data", "error": "at: want an RFC3339 time: " + err.Error()})
			return
		}
	}
	v, ok := a.at(t)
	if !ok {
		v = Verdict{Suspects: []localize.Suspect{}}
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "success", "data": v})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
