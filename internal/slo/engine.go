package slo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"reflect"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"

	"github.com/meshlens/meshlens/internal/clock"
)

// Metrics the engine writes to the store.
const (
	MetricSLIRatio        = "meshlens_slo_sli_ratio"
	MetricBudgetRemaining = "meshlens_slo_error_budget_remaining_ratio"
	MetricBurnRate        = "meshlens_slo_burn_rate"
)

// Defaults of Config.
const (
	DefaultInterval     = 30 * time.Second
	DefaultConsumedDays = 7
)

// Querier evaluates PromQL at an instant; *store.Store is one. It must be
// safe for concurrent use.
type Querier interface {
	Query(ctx context.Context, expr string, t time.Time) (*promql.Result, error)
}

// Config of an Engine.
type Config struct {
	SLOs    []SLO
	Querier Querier
	// Appendable receives the SLI, budget and burn-rate samples; nil writes
	// nothing.
	Appendable storage.Appendable
	// Clock drives Run; nil is the real clock.
	Clock clock.Clock
	// Interval between evaluations of Run.
	Interval time.Duration
	// ConsumedDays is how many past days of budget consumption a status
	// lists (capped at the SLO window).
	ConsumedDays int
	// DataDelay is how far behind the clock the store's data is complete:
	// the aggregator writes a window's counters when it seals it, lateness
	// after the window ends. An evaluation at t measures the SLI windows
	// ending at t - DataDelay, so that a short window (5 m, or less) holds
	// whole data rather than a tail not yet written. Statuses and the
	// samples written keep t. Only SLOs that read meshlens's counters are
	// delayed: a ratio of the user's own metrics ends at t.
	DataDelay time.Duration
	// OnEvaluate, when set, receives every evaluation's statuses (the
	// alerting stage), from the evaluating goroutine.
	OnEvaluate func(at time.Time, statuses []Status)
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Status is one SLO's state at an evaluation, as the JSON API shows it.
// Ratios are nil when the window has no events.
type Status struct {
	Name        string  `json:"name"`
	Description string  `json:"description,omitempty"`
	Target      float64 `json:"target"`
	Window      string  `json:"window"`
	Calendar    bool    `json:"calendar,omitempty"`
	Kind        SLIKind `json:"kind"`
	// Estimated: a latency SLI estimated from window quantiles.
	Estimated bool      `json:"estimated,omitempty"`
	Scope     *Scope    `json:"scope,omitempty"`
	Runbook   string    `json:"runbook,omitempty"`
	At        time.Time `json:"at"`
	// Budgeting is what the budget counts: empty for events, Timeslices
	// or RatioTimeslices for time slices.
	Budgeting Budgeting `json:"budgeting,omitempty"`
	// Events and BadEvents over the whole SLO window: the units the budget
	// counts (for a time-slice budget, the slices holding events and the
	// sum of their badness).
	Events          float64  `json:"events"`
	BadEvents       float64  `json:"bad_events"`
	SLI             *float64 `json:"sli"`
	BudgetRemaining *float64 `json:"error_budget_remaining"`
	// BurnRates by window (5m, 1h, ..., and the SLO window).
	BurnRates      map[string]float64 `json:"burn_rates"`
	Tiers          []TierStatus       `json:"tiers"`
	ConsumedPerDay []DayConsumption   `json:"budget_consumed_per_day"`
	// Labels are the SLO's SLOLabels, which its alerts carry.
	Labels map[string]string `json:"labels,omitempty"`
	// Error says why the evaluation failed, if it did.
	Error string `json:"error,omitempty"`
}

// TierStatus is a burn-rate tier at an evaluation.
type TierStatus struct {
	Name      string   `json:"name"`
	Severity  string   `json:"severity"`
	Factor    float64  `json:"factor"`
	Long      string   `json:"long"`
	Short     string   `json:"short"`
	For       string   `json:"for,omitempty"`
	LongBurn  *float64 `json:"long_burn_rate"`
	ShortBurn *float64 `json:"short_burn_rate"`
	// LongEvents are the events (never slices) in the long window, what
	// the minimum-events guard counts.
	LongEvents float64 `json:"long_events"`
	Firing     bool    `json:"firing"`
	// Alert, Labels and Annotations are the tier's own (an imported SLO's
	// alert name and routing labels); empty for meshlens's defaults.
	Alert       string            `json:"alert,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// DayConsumption is the share of the SLO window's budget spent in the day
// ending at End.
type DayConsumption struct {
	End      time.Time `json:"end"`
	Consumed *float64  `json:"consumed"`
}

// Engine evaluates SLOs over the store. EvaluateAt and Statuses are safe
// for concurrent use; evaluations are serialized.
type Engine struct {
	cfg  Config
	m    *engineMetrics
	eval sync.Mutex

	mu   sync.Mutex
	last []Status

	// estimates of latency SLIs, by SLO; guarded by eval.
	estimates map[string]*latencyEstimate
}

type engineMetrics struct {
	evaluations *prometheus.CounterVec
	queryErrors prometheus.Counter
	writeErrors prometheus.Counter
}

// NewEngine checks cfg and registers the engine's metrics.
func NewEngine(cfg Config) (*Engine, error) {
	if cfg.Querier == nil {
		return nil, errors.New("slo: engine: nil Querier")
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.ConsumedDays <= 0 {
		cfg.ConsumedDays = DefaultConsumedDays
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m := &engineMetrics{
		evaluations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_slo_evaluations_total",
			Help: "SLO evaluations, by result (ok, error).",
		}, []string{"result"}),
		queryErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_slo_query_errors_total",
			Help: "PromQL queries of SLIs that failed.",
		}),
		writeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_slo_write_errors_total",
			Help: "Evaluations whose samples the store refused.",
		}),
	}
	m.evaluations.WithLabelValues("ok")
	m.evaluations.WithLabelValues("error")
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{m.evaluations, m.queryErrors, m.writeErrors} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("slo: register metrics: %w", err)
			}
		}
	}
	for _, s := range cfg.SLOs {
		if s.SLI.Kind == ProbeLatency && s.SLI.Estimate && cfg.Appendable == nil {
			return nil, fmt.Errorf("slo: engine: SLO %s estimates latency and needs an Appendable to keep its counters", s.Name)
		}
	}
	return &Engine{cfg: cfg, m: m, estimates: map[string]*latencyEstimate{}}, nil
}

// Run evaluates every Interval until ctx ends. A failed evaluation is
// logged and counted; the next one runs anyway.
func (e *Engine) Run(ctx context.Context) error {
	t := e.cfg.Clock.NewTicker(e.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
			if _, err := e.EvaluateAt(ctx, e.cfg.Clock.Now()); err != nil && ctx.Err() == nil {
				e.cfg.Logger.Warn("slo evaluation failed", "err", err)
			}
		}
	}
}

// Statuses returns the statuses of the last evaluation, in SLO order.
func (e *Engine) Statuses() []Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Status(nil), e.last...)
}

// SLOs returns the SLOs the engine evaluates.
func (e *Engine) SLOs() []SLO {
	e.eval.Lock()
	defer e.eval.Unlock()
	return append([]SLO(nil), e.cfg.SLOs...)
}

// SetSLOs replaces the SLOs, from the next evaluation on (Statuses keeps
// the last evaluation's until then).
func (e *Engine) SetSLOs(slos []SLO) error {
	next := map[string]*SLO{}
	for i, s := range slos {
		if s.SLI.Kind == ProbeLatency && s.SLI.Estimate && e.cfg.Appendable == nil {
			return fmt.Errorf("slo: engine: SLO %s estimates latency and needs an Appendable to keep its counters", s.Name)
		}
		next[s.Name] = &slos[i]
	}
	e.eval.Lock()
	defer e.eval.Unlock()
	// A latency estimate is kept only for an SLO that did not change.
	for i := range e.cfg.SLOs {
		old := &e.cfg.SLOs[i]
		if n := next[old.Name]; n == nil || !reflect.DeepEqual(*n, *old) {
			delete(e.estimates, old.Name)
		}
	}
	e.cfg.SLOs = append([]SLO(nil), slos...)
	return nil
}

// EvaluateAt evaluates every SLO at t (the simulator's virtual time or the
// wall clock), writes the results to the store, records them for Statuses
// and hands them to OnEvaluate. An SLO whose queries fail gets a Status with
// Error set; the error returned joins all failures.
func (e *Engine) EvaluateAt(ctx context.Context, t time.Time) ([]Status, error) {
	e.eval.Lock()
	defer e.eval.Unlock()
	var errs []error
	out := make([]Status, 0, len(e.cfg.SLOs))
	for i := range e.cfg.SLOs {
		st, err := e.evaluate(ctx, &e.cfg.SLOs[i], t)
		if err != nil {
			st.Error = err.Error()
			errs = append(errs, err)
		}
		out = append(out, st)
	}
	if err := e.write(ctx, t, out); err != nil {
		e.m.writeErrors.Inc()
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		e.m.evaluations.WithLabelValues("error").Inc()
	} else {
		e.m.evaluations.WithLabelValues("ok").Inc()
	}
	e.mu.Lock()
	e.last = out
	e.mu.Unlock()
	if e.cfg.OnEvaluate != nil {
		e.cfg.OnEvaluate(t, append([]Status(nil), out...))
	}
	return out, errors.Join(errs...)
}

// SLOWindow is the window of s evaluated at t: the rolling window, or the
// time since the start of t's calendar period (in the period's time zone,
// from its start time).
func (s *SLO) SLOWindow(t time.Time) time.Duration {
	if !s.Calendar {
		return s.Window
	}
	if d := t.Sub(s.Period.PeriodStart(t)); d >= time.Millisecond {
		return d
	}
	return time.Millisecond
}

// CountsAt queries the bad and total units the budget of s counts
// (events, or time slices) over window w ending at t.
func (e *Engine) CountsAt(ctx context.Context, s *SLO, w time.Duration, t time.Time) (Counts, error) {
	bad, err := e.scalar(ctx, s.BudgetBadQuery(w), t)
	if err != nil {
		return Counts{}, fmt.Errorf("slo %s: bad events over %s: %w", s.Name, promDuration(w), err)
	}
	total, err := e.scalar(ctx, s.BudgetTotalQuery(w), t)
	if err != nil {
		return Counts{}, fmt.Errorf("slo %s: events over %s: %w", s.Name, promDuration(w), err)
	}
	if math.IsNaN(total) {
		return Counts{Bad: math.NaN(), Total: 0}, nil
	}
	if math.IsNaN(bad) && s.countsBadEvents() {
		// A counter of bad events with no series yet: nothing bad happened.
		// (A missing count of good events stays unknown, never "all bad".)
		bad = 0
	}
	return Counts{Bad: bad, Total: total}, nil
}

// scalar runs a query whose result is one sample (or none: NaN).
func (e *Engine) scalar(ctx context.Context, expr string, t time.Time) (float64, error) {
	res, err := e.cfg.Querier.Query(ctx, expr, t)
	if err != nil {
		e.m.queryErrors.Inc()
		return 0, err
	}
	switch v := res.Value.(type) {
	case promql.Vector:
		switch len(v) {
		case 0:
			return math.NaN(), nil
		case 1:
			return v[0].F, nil
		}
		e.m.queryErrors.Inc()
		return 0, fmt.Errorf("query %q: %d series, want one", expr, len(v))
	case promql.Scalar:
		return v.V, nil
	}
	e.m.queryErrors.Inc()
	return 0, fmt.Errorf("query %q: result of type %T, want a vector", expr, res.Value)
}

func num(f float64) *float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil
	}
	return &f
}

func (e *Engine) evaluate(ctx context.Context, s *SLO, at time.Time) (Status, error) {
	t := at // the SLI windows end here
	if s.ReadsMeshlensCounters() {
		t = at.Add(-e.cfg.DataDelay)
	}
	st := Status{
		Name: s.Name, Description: s.Description, Target: s.Target,
		Window: promDuration(s.Window), Calendar: s.Calendar, Kind: s.SLI.Kind,
		Runbook: s.Runbook, At: at, BurnRates: map[string]float64{}, Labels: s.SLOLabels(),
		Budgeting: s.Budgeting,
	}
	if s.Calendar {
		st.Window = windowLabel(s, t)
	}
	if s.SLI.Kind != Ratio {
		sc := s.SLI.Scope
		st.Scope = &sc
	}
	if s.SLI.Kind == ProbeLatency && s.SLI.Estimate {
		st.Estimated = true
		if err := e.estimateLatency(ctx, s, t); err != nil {
			return st, err
		}
	}
	win := s.SLOWindow(t)
	whole, err := e.CountsAt(ctx, s, win, t)
	if err != nil {
		return st, err
	}
	st.Events, st.BadEvents = whole.Total, whole.Bad
	if math.IsNaN(st.BadEvents) {
		st.Events, st.BadEvents = 0, 0
	}
	if r := whole.ErrorRatio(); !math.IsNaN(r) {
		st.SLI = num(1 - r)
	}
	if b := BurnRate(whole, s.Target); !math.IsNaN(b) {
		st.BurnRates[windowLabel(s, t)] = b
	}
	counts := map[time.Duration]Counts{}
	for _, w := range s.Windows() {
		c, err := e.CountsAt(ctx, s, w, t)
		if err != nil {
			return st, err
		}
		counts[w] = c
		if b := BurnRate(c, s.Target); !math.IsNaN(b) {
			st.BurnRates[promDuration(w)] = b
		}
	}
	// The budget is the window's: a window younger than its length is
	// judged against the events it will hold, not those it holds so far.
	windowEvents := WindowEvents(whole, win, counts)
	if whole.Total > 0 {
		st.BudgetRemaining = num(1 - BudgetConsumed(whole.Bad, windowEvents, s.Target))
	}
	for _, tier := range s.Tiers {
		long, short := counts[tier.Long], counts[tier.Short]
		events := long.Total
		if s.Budgeting != Occurrences {
			// The guard counts events, not slices.
			if events, err = e.scalar(ctx, s.TotalQuery(tier.Long), t); err != nil {
				return st, fmt.Errorf("slo %s: events over %s: %w", s.Name, promDuration(tier.Long), err)
			}
			if math.IsNaN(events) {
				events = 0
			}
		}
		ts := TierStatus{
			Name: tier.Name, Severity: tier.Severity, Factor: tier.Factor,
			Long: promDuration(tier.Long), Short: promDuration(tier.Short),
			LongBurn: num(BurnRate(long, s.Target)), ShortBurn: num(BurnRate(short, s.Target)),
			LongEvents: events,
			Firing:     tier.Burning(long, short, s.Target) && events >= s.MinEvents,
			Alert:      tier.Alert, Labels: tier.Labels, Annotations: tier.Annotations,
		}
		if tier.For > 0 {
			ts.For = promDuration(tier.For)
		}
		st.Tiers = append(st.Tiers, ts)
	}
	days := e.cfg.ConsumedDays
	if d := int(win / (24 * time.Hour)); d < days {
		days = max(d, 1)
	}
	for k := range days {
		end := t.Add(-time.Duration(k) * 24 * time.Hour)
		bad, err := e.scalar(ctx, s.BudgetBadQuery(24*time.Hour), end)
		if err != nil {
			return st, fmt.Errorf("slo %s: bad events of day ending %s: %w", s.Name, end.Format(time.RFC3339), err)
		}
		if math.IsNaN(bad) && whole.Total > 0 {
			bad = 0
		}
		st.ConsumedPerDay = append(st.ConsumedPerDay, DayConsumption{End: end, Consumed: num(BudgetConsumed(bad, windowEvents, s.Target))})
	}
	return st, nil
}

func windowLabel(s *SLO, t time.Time) string {
	switch {
	case s.Calendar && s.Period.Months == 1:
		return "calendar-month"
	case s.Calendar:
		return "calendar-" + s.Period.String()
	}
	return promDuration(s.Window)
}

// write appends the statuses as samples at t, in one commit.
func (e *Engine) write(ctx context.Context, t time.Time, sts []Status) error {
	if e.cfg.Appendable == nil {
		return nil
	}
	app := e.cfg.Appendable.Appender(ctx)
	ts := t.UnixMilli()
	var errs []error
	add := func(v float64, kv ...string) {
		if _, err := app.Append(0, labels.FromStrings(kv...), ts, v); err != nil {
			errs = append(errs, fmt.Errorf("slo: append %s{slo=%q}: %w", kv[1], kv[3], err))
		}
	}
	for _, st := range sts {
		if st.SLI != nil {
			add(*st.SLI, "__name__", MetricSLIRatio, "slo", st.Name)
		}
		if st.BudgetRemaining != nil {
			add(*st.BudgetRemaining, "__name__", MetricBudgetRemaining, "slo", st.Name)
		}
		windows := make([]string, 0, len(st.BurnRates))
		for w := range st.BurnRates {
			windows = append(windows, w)
		}
		sort.Strings(windows)
		for _, w := range windows {
			add(st.BurnRates[w], "__name__", MetricBurnRate, "slo", st.Name, "window", w)
		}
	}
	if len(errs) > 0 {
		if err := app.Rollback(); err != nil {
			errs = append(errs, fmt.Errorf("slo: rollback: %w", err))
		}
		return errors.Join(errs...)
	}
	if err := app.Commit(); err != nil {
		return fmt.Errorf("slo: commit evaluation at %s: %w", t.Format(time.RFC3339), err)
	}
	return nil
}
