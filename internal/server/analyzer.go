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
	"github.com/meshlens/meshlens/internal/localize"
	"github.com/meshlens/meshlens/internal/topology"
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

func newAnalyzer(parts int, keep int, topo func() *topology.Topology, lags func() map[string]time.Duration, reg prometheus.Registerer, logger *slog.Logger) *analyzer {
	a := &analyzer{
		logger:  logger,
		windows: make(chan *aggregate.SealedWindow, 64),
		parts:   parts,
		lags:    lags,
		topo:    topo,
		keep:    keep,
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
	reg.MustRegister(a.dropped, a.duration, a.suspectsG)
	return a
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
		lz      localize.Localizer
		pending = map[time.Time][]*aggregate.SealedWindow{}
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
			x, err := localize.NewIndex(t)
			if err != nil {
				a.logger.Error("analyzer: cannot index the topology; localization paused", "err", err)
				continue
			}
			topo = t
			lz, _ = localize.New(localize.NameMeshlens, x, localize.Config{})
		}
		pending[w.Start] = append(pending[w.Start], w)
		if len(pending[w.Start]) < a.parts {
			continue
		}
		merged := aggregate.MergeWindows(pending[w.Start]...)
		delete(pending, w.Start)
		for start := range pending { // a partition that skipped a window
			if start.Before(w.Start.Add(-time.Hour)) {
				delete(pending, start)
			}
		}
		began := time.Now()
		sus, err := lz.Localize(&localize.Window{Sealed: merged, AgentLag: a.lags()})
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
