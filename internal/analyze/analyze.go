package analyze

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshlens/meshlens/internal/aggregate"
	"github.com/meshlens/meshlens/internal/localize"
	"github.com/meshlens/meshlens/internal/wire"
)

// Defaults of Config.
const (
	// DefaultMaxBufferedTraces bounds the traced probes waiting for their
	// window: at ~200 bytes each, 40 MB.
	DefaultMaxBufferedTraces = 200_000
	// DefaultMaxPending bounds the windows waiting for a partition or for
	// Advance.
	DefaultMaxPending = 16
	// defaultHorizon is localize.Config's default Horizon.
	defaultHorizon = 3
)

// Config of an Analyzer. Zero values take defaults.
type Config struct {
	// Window is the aggregation window's width (required).
	Window time.Duration
	// Partitions are the ids of the aggregation partitions whose halves
	// make a window; default one partition, 0.
	Partitions []int
	// Localizers run side by side on every window, by localize.New name;
	// default meshlens alone. The first one's verdicts are the history.
	Localizers []string
	// Localize tunes the localizers; its Horizon also bounds how old a
	// trace may be and still join (see the package doc).
	Localize localize.Config
	// Keep is how many verdicts the history holds; default an hour of
	// windows.
	Keep int
	// MaxBufferedTraces bounds the traced probes waiting for their window.
	MaxBufferedTraces int
	// StaleAfter: a window still waiting for a partition this long after
	// an Advance first found it pending is dropped; default six windows.
	StaleAfter time.Duration
	// MaxPending windows may wait; beyond, the oldest is dropped.
	MaxPending int
	// Evidence tunes evidence on demand (evidence.go).
	Evidence EvidenceConfig
	// Registerer, if set, receives the analyzer's metrics.
	Registerer prometheus.Registerer
}

// Verdict is what one localizer concluded for one window.
type Verdict struct {
	Localizer string             `json:"localizer"`
	Start     time.Time          `json:"start"`
	End       time.Time          `json:"end"`
	Suspects  []localize.Suspect `json:"suspects"`
}

// Analyzer is the pure core of stage 2 (see the package doc). Every method
// is safe for concurrent use; Advance runs one call at a time.
type Analyzer struct {
	cfg     Config
	horizon int
	newLz   func(name string, x *localize.Index, cfg localize.Config) (localize.Localizer, error)
	m       metrics
	ev      *evidence

	// advMu serializes Advance and Reindex: the localizers are used only
	// under it, and keep state across windows.
	advMu sync.Mutex
	lzs   []localize.Localizer

	mu             sync.Mutex
	x              *localize.Index
	names          []string                 // of lzs
	pending        map[int64]*pendingWindow // by window start, Unix ns
	lastSeen       map[int]int64            // each partition's latest window start delivered
	passed         map[int]int64            // each partition's latest empty window's end: sealed through it
	localizedUntil int64                    // end of the last window localized or dropped (0: none yet)
	// traces wait for their window, by the start of the window their
	// probe started in (Unix ns): a join takes whole buckets.
	traces  map[int64][]localize.Trace
	nTraces int
	lags    map[string]time.Duration
	silent  map[string]bool

	histMu  sync.RWMutex
	history []Verdict // the first localizer's, oldest first, bounded by Keep
}

type pendingWindow struct {
	start, end int64
	halves     map[int]*aggregate.SealedWindow
	// waiting is when an Advance first found it pending (Unix ns, 0:
	// not yet): staleness counts from then, not from the window's end,
	// so a long --lateness does not make every window stale.
	waiting int64
}

// New returns an Analyzer over x (the topology's index) with nothing
// localized yet.
func New(x *localize.Index, cfg Config) (*Analyzer, error) {
	return newAnalyzer(x, cfg, localize.New)
}

// newAnalyzer is New with the localizers made by newLz (tests record what
// a localizer is given).
func newAnalyzer(x *localize.Index, cfg Config, newLz func(string, *localize.Index, localize.Config) (localize.Localizer, error)) (*Analyzer, error) {
	if cfg.Window <= 0 {
		return nil, errors.New("analyze: window width must be positive")
	}
	if err := cfg.Evidence.check(); err != nil {
		return nil, err
	}
	if x == nil {
		return nil, errors.New("analyze: no topology index")
	}
	if len(cfg.Partitions) == 0 {
		cfg.Partitions = []int{0}
	}
	if len(cfg.Localizers) == 0 {
		cfg.Localizers = []string{localize.NameMeshlens}
	}
	if cfg.Keep <= 0 {
		cfg.Keep = max(1, int(time.Hour/cfg.Window))
	}
	if cfg.MaxBufferedTraces <= 0 {
		cfg.MaxBufferedTraces = DefaultMaxBufferedTraces
	}
	if cfg.StaleAfter <= 0 {
		cfg.StaleAfter = 6 * cfg.Window
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = DefaultMaxPending
	}
	a := &Analyzer{cfg: cfg, horizon: cfg.Localize.Horizon, newLz: newLz,
		pending: map[int64]*pendingWindow{}, lastSeen: map[int]int64{}, passed: map[int]int64{}, traces: map[int64][]localize.Trace{}}
	if a.horizon <= 0 {
		a.horizon = defaultHorizon
	}
	a.m = newMetrics(cfg.Registerer)
	a.ev = newEvidence(cfg.Evidence, cfg.Window, x, cfg.Registerer)
	if err := a.Reindex(x); err != nil {
		return nil, err
	}
	return a, nil
}

// Reindex makes x (a new topology's index) current: the localizers start
// afresh, since element ids changed, and buffered traces (ids of the old
// index) are expired.
func (a *Analyzer) Reindex(x *localize.Index) error {
	if x == nil {
		return errors.New("analyze: no topology index")
	}
	var lzs []localize.Localizer
	for _, name := range a.cfg.Localizers {
		lz, err := a.newLz(name, x, a.cfg.Localize)
		if err != nil {
			return fmt.Errorf("analyze: %w", err)
		}
		lzs = append(lzs, lz)
	}
	a.advMu.Lock()
	defer a.advMu.Unlock()
	a.lzs = lzs
	a.ev.reindex(x)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.x = x
	a.names = a.names[:0]
	for _, lz := range lzs {
		a.names = append(a.names, lz.Name())
	}
	a.m.tracesExpired.Add(float64(a.nTraces))
	clear(a.traces)
	a.nTraces = 0
	a.m.tracesBuffered.Set(0)
	return nil
}

// Localizers are the names of the localizers run (Verdict.Localizer), in
// verdict order.
func (a *Analyzer) Localizers() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.names...)
}

// SetAgentLags records every agent's scheduling lag p99 as last reported;
// the next windows are localized with it.
func (a *Analyzer) SetAgentLags(lags map[string]time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.lags = lags
}

// SetSilentAgents records the hosts whose agents stopped delivering
// (localize.Window.Silent), for the windows localized from now on.
func (a *Analyzer) SetSilentAgents(silent map[string]bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.silent = silent
}

// IngestWindow takes one partition's half of a sealed window. It only
// files it: Advance localizes. The window must not be modified afterwards.
func (a *Analyzer) IngestWindow(partition int, w *aggregate.SealedWindow) {
	start, end := w.Start.UnixNano(), w.End.UnixNano()
	a.mu.Lock()
	defer a.mu.Unlock()
	if last, ok := a.lastSeen[partition]; !ok || start > last {
		a.lastSeen[partition] = start
	}
	if w.Empty() {
		// The partition has sealed through this window with nothing in
		// it (see aggregate.SealedWindow.Empty): that completes windows
		// waiting for it, and never opens one, so that a silent fleet
		// localizes nothing rather than empty windows that would clear
		// incidents.
		a.passed[partition] = max(a.passed[partition], end)
		return
	}
	if start < a.localizedUntil {
		a.m.windowsDropped.WithLabelValues(dropLate).Inc()
		return
	}
	p := a.pending[start]
	if p == nil {
		p = &pendingWindow{start: start, end: end, halves: map[int]*aggregate.SealedWindow{}}
		a.pending[start] = p
	}
	// A partition re-sealing a window (an ingester's restart) replaces its
	// half rather than counting twice.
	p.halves[partition] = w
	for len(a.pending) > a.cfg.MaxPending {
		oldest := a.oldestPendingLocked()
		a.dropLocked(oldest, dropBehind)
	}
}

func (a *Analyzer) oldestPendingLocked() *pendingWindow {
	var o *pendingWindow
	for _, p := range a.pending {
		if o == nil || p.start < o.start {
			o = p
		}
	}
	return o
}

func (a *Analyzer) dropLocked(p *pendingWindow, reason string) {
	delete(a.pending, p.start)
	a.localizedUntil = max(a.localizedUntil, p.end)
	a.m.windowsDropped.WithLabelValues(reason).Inc()
}

// completeLocked: every partition delivered its half or moved past it.
func (a *Analyzer) completeLocked(p *pendingWindow) bool {
	for _, part := range a.cfg.Partitions {
		if _, ok := p.halves[part]; ok {
			continue
		}
		if a.passed[part] >= p.end {
			continue
		}
		if last, ok := a.lastSeen[part]; !ok || last <= p.start {
			return false
		}
	}
	return true
}

// ready is a complete window's halves and the traces it takes.
type ready struct {
	halves []*aggregate.SealedWindow
	traces []localize.Trace
	lags   map[string]time.Duration
	silent map[string]bool
}

// Advance localizes every complete window, oldest first, with every
// localizer, and returns the verdicts (window by window, localizers in
// Config order); windows still waiting StaleAfter after an Advance first
// found them pending are dropped. An error names the windows a localizer
// failed on; the others' verdicts are returned and recorded.
func (a *Analyzer) Advance(now time.Time) ([]Verdict, error) {
	a.advMu.Lock()
	defer a.advMu.Unlock()
	todo := a.takeReady(now)
	var out []Verdict
	var errs []error
	for _, r := range todo {
		// Merged outside the ingest lock: at 10,000 hosts it is not free.
		w := aggregate.MergeWindows(r.halves...)
		for i, lz := range a.lzs {
			began := time.Now()
			sus, err := lz.Localize(&localize.Window{Sealed: w, AgentLag: r.lags, Traces: r.traces, Silent: r.silent})
			a.m.duration.WithLabelValues(lz.Name()).Observe(time.Since(began).Seconds())
			if err != nil {
				errs = append(errs, fmt.Errorf("analyze: window %s: %s: %w", w.Start.UTC().Format(time.RFC3339), lz.Name(), err))
				continue
			}
			v := Verdict{Localizer: lz.Name(), Start: w.Start, End: w.End, Suspects: sus}
			if i == 0 {
				a.m.suspects.Set(float64(len(sus)))
				a.record(v)
				var leads []localize.Lead
				if l, ok := lz.(localize.Leader); ok {
					leads = l.Leads()
				}
				a.ev.update(w, sus, leads)
			}
			out = append(out, v)
		}
	}
	return out, errors.Join(errs...)
}

// takeReady takes the complete windows' halves, in order, and the traces
// that join each (see the package doc).
func (a *Analyzer) takeReady(now time.Time) []ready {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, p := range a.pending {
		if p.waiting == 0 {
			p.waiting = now.UnixNano()
		}
	}
	var todo []ready
	for len(a.pending) > 0 {
		p := a.oldestPendingLocked()
		if !a.completeLocked(p) {
			if now.UnixNano()-p.waiting >= int64(a.cfg.StaleAfter) {
				a.dropLocked(p, dropStale)
				continue
			}
			break
		}
		delete(a.pending, p.start)
		a.localizedUntil = p.end
		parts := make([]int, 0, len(p.halves))
		for part := range p.halves {
			parts = append(parts, part)
		}
		sort.Ints(parts)
		halves := make([]*aggregate.SealedWindow, len(parts))
		for i, part := range parts {
			halves[i] = p.halves[part]
		}
		todo = append(todo, ready{halves: halves, traces: a.joinLocked(p), lags: a.lags, silent: a.silent})
	}
	return todo
}

// joinLocked takes the buffered traces whose probe started before p's end
// and within the horizon; older ones expire. Windows are aligned to the
// Unix epoch (the aggregator's), so whole buckets join or expire.
func (a *Analyzer) joinLocked(p *pendingWindow) []localize.Trace {
	oldest := p.start - int64(a.horizon-1)*int64(a.cfg.Window)
	var starts []int64
	for k, ts := range a.traces {
		switch {
		case k >= p.end:
			continue
		case k < oldest:
			a.m.tracesExpired.Add(float64(len(ts)))
			a.nTraces -= len(ts)
			delete(a.traces, k)
		default:
			starts = append(starts, k)
		}
	}
	sort.Slice(starts, func(i, j int) bool { return starts[i] < starts[j] })
	var joined []localize.Trace
	if len(starts) == 1 {
		joined = a.traces[starts[0]] // the usual case: no copy
	} else {
		n := 0
		for _, k := range starts {
			n += len(a.traces[k])
		}
		joined = make([]localize.Trace, 0, n)
		for _, k := range starts {
			joined = append(joined, a.traces[k]...)
		}
	}
	for _, k := range starts {
		a.nTraces -= len(a.traces[k])
		delete(a.traces, k)
	}
	a.m.tracesBuffered.Set(float64(a.nTraces))
	return joined
}

// IngestPathData takes one path report as it arrived on the bus: data is
// the encoded wire.PathReport, publisher the agent whose subject it came
// on. A report refused (see the package doc) is counted and its error
// returned; it never reaches a localizer.
func (a *Analyzer) IngestPathData(publisher string, data []byte, now time.Time) error {
	rep, err := wire.DecodePathReport(data)
	if err != nil {
		a.m.reject(wire.Reason(err))
		return fmt.Errorf("analyze: path report from %q: %w", publisher, err)
	}
	return a.IngestPathReport(publisher, rep, now)
}

// Reasons a path report is refused besides decode and resolve errors.
var (
	ErrSubjectMismatch = errors.New("report's agent is not its publisher")
	ErrBufferFull      = errors.New("too many traced probes wait for their window")
	ErrTooOld          = errors.New("probe started before the localizer's horizon")
	ErrFromFuture      = errors.New("probe started more than a window in the future")
)

// IngestPathReport takes one decoded, validated report (wire.DecodePathReport)
// from publisher; see IngestPathData.
func (a *Analyzer) IngestPathReport(publisher string, rep *wire.PathReport, now time.Time) error {
	if rep.Agent != publisher {
		a.m.reject(reasonSubjectMismatch)
		return fmt.Errorf("analyze: path report of %q published by %q: %w", rep.Agent, publisher, ErrSubjectMismatch)
	}
	a.mu.Lock()
	x, until := a.x, a.localizedUntil
	a.mu.Unlock()
	oldest := until - int64(a.horizon-1)*int64(a.cfg.Window)
	future := now.UnixNano() + int64(a.cfg.Window)
	batch := make([]localize.Trace, 0, len(rep.Probes))
	starts := make([]int64, 0, len(rep.Probes))
	for i, p := range rep.Probes {
		var reason string
		var err error
		switch {
		case p == nil:
			reason, err = wire.Reason(wire.ErrInvalidField), wire.ErrInvalidField
		case until > 0 && p.StartUnixNano < oldest:
			reason, err = reasonTooOld, ErrTooOld
		case p.StartUnixNano > future:
			reason, err = reasonFromFuture, ErrFromFuture
		}
		if err != nil {
			a.m.reject(reason)
			return fmt.Errorf("analyze: path report of %q: probe %d: %w", rep.Agent, i, err)
		}
		tr, err := x.ResolveTrace(rep.Agent, p)
		if err != nil {
			a.m.reject(localize.Reason(err))
			return fmt.Errorf("analyze: path report of %q: probe %d: %w", rep.Agent, i, err)
		}
		batch = append(batch, tr)
		starts = append(starts, floorTo(p.StartUnixNano, int64(a.cfg.Window)))
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.x != x { // reindexed meanwhile: the ids are stale
		a.m.tracesExpired.Add(float64(len(batch)))
		return nil
	}
	if a.nTraces+len(batch) > a.cfg.MaxBufferedTraces {
		a.m.reject(reasonBufferFull)
		return fmt.Errorf("analyze: path report of %q: %d traced probes wait: %w", rep.Agent, a.nTraces, ErrBufferFull)
	}
	for i, tr := range batch {
		a.traces[starts[i]] = append(a.traces[starts[i]], tr)
	}
	a.nTraces += len(batch)
	a.m.accepted.Inc()
	a.m.tracesBuffered.Set(float64(a.nTraces))
	return nil
}

func (a *Analyzer) record(v Verdict) {
	a.histMu.Lock()
	defer a.histMu.Unlock()
	a.history = append(a.history, v)
	if len(a.history) > a.cfg.Keep {
		a.history = append(a.history[:0:0], a.history[len(a.history)-a.cfg.Keep:]...)
	}
}

// VerdictAt returns the first localizer's verdict on the window ending at
// or after t (the latest for a zero t, or a t after it); false before the
// first verdict.
func (a *Analyzer) VerdictAt(t time.Time) (Verdict, bool) {
	a.histMu.RLock()
	defer a.histMu.RUnlock()
	if len(a.history) == 0 {
		return Verdict{}, false
	}
	if t.IsZero() {
		return a.history[len(a.history)-1], true
	}
	i := sort.Search(len(a.history), func(i int) bool { return !a.history[i].End.Before(t) })
	if i == len(a.history) {
		i--
	}
	return a.history[i], true
}

// Evidence is the current plan of evidence on demand (evidence.go).
func (a *Analyzer) Evidence() Evidence { return a.ev.current() }

// EvidencePlan is what /api/v1/evidence serves (api.EvidenceSource).
func (a *Analyzer) EvidencePlan() any { return a.Evidence() }

// SuspectsAt is what /api/v1/suspects serves (api.SuspectSource): the
// verdict of VerdictAt, or an empty one before the first.
func (a *Analyzer) SuspectsAt(t time.Time) any {
	v, ok := a.VerdictAt(t)
	if !ok {
		v = Verdict{Localizer: a.Localizers()[0]}
	}
	if v.Suspects == nil {
		v.Suspects = []localize.Suspect{}
	}
	return v
}

// floorTo is the start of the window of width w holding t (Unix ns),
// windows aligned to the epoch as the aggregator's are.
func floorTo(t, w int64) int64 {
	f := t - t%w
	if t < 0 && t%w != 0 {
		f -= w
	}
	return f
}
