// Package store is meshlens's time-series room: an embedded Prometheus TSDB,
// a PromQL engine over it, and an optional remote-write forwarder that copies
// every committed sample to a Prometheus-compatible TSDB (scale-out mode).
//
// In scale-out roles OpenRemote gives the same Store with no local TSDB:
// aggregators commit straight to an external Prometheus-compatible TSDB
// (VictoriaMetrics, Prometheus) by remote write, and analyzers and the API
// run the embedded PromQL engine over that TSDB's HTTP query API, so every
// process reads the one shared history.
//
// Writers (aggregator rollups, localizer estimates, SLO engine, self-metrics)
// use it as a storage.Appendable; the API and the analyzers read it as a
// storage.Queryable or through the PromQL engine. It must never import the
// packages that write to it: imports point down the data path.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
)

// Defaults of Options.
const (
	DefaultRetention        = 15 * 24 * time.Hour
	DefaultOutOfOrderWindow = time.Hour
	DefaultMaxSamples       = 50_000_000 // Prometheus's own default for --query.max-samples
	DefaultQueryTimeout     = 2 * time.Minute
	DefaultLookbackDelta    = 5 * time.Minute
)

// Options configure a Store. The zero value is usable: every zero field takes
// its default.
type Options struct {
	// Retention is how long samples are kept.
	Retention time.Duration
	// OutOfOrderWindow is how far behind the newest sample of a series a
	// sample may still land. Rollups of a late batch arrive after newer ones,
	// so the window must cover the aggregator's lateness allowance.
	OutOfOrderWindow time.Duration
	// MaxSamples bounds the samples one query may hold in memory.
	MaxSamples int
	// QueryTimeout bounds one query's evaluation.
	QueryTimeout time.Duration
	// LookbackDelta is how far back an instant selector looks for a sample.
	LookbackDelta time.Duration
	// Registerer receives the TSDB's, the engine's and the store's own
	// metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Logger; nil discards.
	Logger *slog.Logger
	// RemoteWrite, when its URL is set, copies every committed sample to a
	// Prometheus-compatible TSDB. Run must then be running.
	RemoteWrite RemoteWriteConfig
}

func (o *Options) setDefaults() {
	if o.Retention <= 0 {
		o.Retention = DefaultRetention
	}
	if o.OutOfOrderWindow <= 0 {
		o.OutOfOrderWindow = DefaultOutOfOrderWindow
	}
	if o.MaxSamples <= 0 {
		o.MaxSamples = DefaultMaxSamples
	}
	if o.QueryTimeout <= 0 {
		o.QueryTimeout = DefaultQueryTimeout
	}
	if o.LookbackDelta <= 0 {
		o.LookbackDelta = DefaultLookbackDelta
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Store is the embedded TSDB with its PromQL engine. It is safe for
// concurrent use: each Appender belongs to one goroutine, but any number of
// goroutines may open appenders, queriers and queries at once.
type Store struct {
	db *tsdb.DB // nil for a remote store (OpenRemote)
	// queryable and appendable are db, or the remote TSDB's query API and
	// remote write for a remote store.
	queryable  storage.Queryable
	appendable storage.Appendable
	engine     *promql.Engine
	parser     parser.Parser
	opts       Options
	remote     *RemoteWriter // nil without remote write
	metrics    *storeMetrics
}

// The Store is what writers and readers of the data path see.
var (
	_ storage.Appendable = (*Store)(nil)
	_ storage.Queryable  = (*Store)(nil)
)

// Open opens (or creates) the TSDB in dir. Reopening the same dir keeps the
// history: the WAL is replayed.
func Open(dir string, opts Options) (*Store, error) {
	opts.setDefaults()
	if dir == "" {
		return nil, errors.New("store: open: empty directory")
	}
	topts := tsdb.DefaultOptions()
	topts.RetentionDuration = opts.Retention.Milliseconds()
	topts.OutOfOrderTimeWindow = opts.OutOfOrderWindow.Milliseconds()
	// Compacted blocks grow up to a tenth of retention (at most 31d), as
	// Prometheus sizes them: few blocks to query, and retention still
	// deletes data in steps of at most 10%.
	topts.MaxBlockDuration = min(max(topts.RetentionDuration/10, topts.MinBlockDuration), (31 * 24 * time.Hour).Milliseconds())

	s := &Store{opts: opts, parser: newParser()}
	// Our own metrics register first: the TSDB and the engine panic on a
	// registry that already has theirs (a second store on one registry),
	// and ours failing first turns that into an error.
	var err error
	s.metrics, err = newStoreMetrics(opts.Registerer, s)
	if err != nil {
		return nil, err
	}
	if opts.RemoteWrite.URL != "" {
		s.remote, err = NewRemoteWriter(opts.RemoteWrite, opts.Registerer, opts.Logger.With("component", "remote-write"))
		if err != nil {
			s.metrics.unregister()
			return nil, err
		}
	}
	db, err := tsdb.Open(dir, opts.Logger.With("component", "tsdb"), opts.Registerer, topts, nil)
	if err != nil {
		s.metrics.unregister()
		if s.remote != nil {
			s.remote.unregister()
		}
		return nil, fmt.Errorf("store: open tsdb in %q: %w", dir, err)
	}
	s.db, s.queryable, s.appendable = db, db, db
	s.engine = newEngine(opts, s.parser)
	return s, nil
}

func newParser() parser.Parser { return parser.NewParser(parser.Options{}) }

func newEngine(opts Options, p parser.Parser) *promql.Engine {
	return promql.NewEngine(promql.EngineOpts{
		Logger:               opts.Logger.With("component", "promql"),
		Reg:                  opts.Registerer,
		MaxSamples:           opts.MaxSamples,
		Timeout:              opts.QueryTimeout,
		LookbackDelta:        opts.LookbackDelta,
		EnableAtModifier:     true,
		EnableNegativeOffset: true,
		Parser:               p,
		// Subqueries without a step use the default evaluation interval of
		// Prometheus's global config (1m).
		NoStepSubqueryIntervalFn: func(int64) int64 { return time.Minute.Milliseconds() },
	})
}

// Close flushes and closes the TSDB. Appenders must not be used afterwards.
func (s *Store) Close() error {
	if s.db == nil {
		return nil
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: close tsdb in %q: %w", s.db.Dir(), err)
	}
	return nil
}

// Run runs the store's background work, the remote-write forwarder when one
// is configured, until ctx ends. Without remote write it just waits.
func (s *Store) Run(ctx context.Context) error {
	if s.remote == nil {
		<-ctx.Done()
		return nil
	}
	return s.remote.Run(ctx)
}

// RemoteWriter is the forwarder, nil when remote write is not configured.
func (s *Store) RemoteWriter() *RemoteWriter { return s.remote }

// Appender opens a transaction. Samples become visible to queries at Commit;
// with remote write configured, committed float samples are also queued for
// the remote TSDB. An Appender is used by one goroutine only.
func (s *Store) Appender(ctx context.Context) storage.Appender {
	return &countingAppender{Appender: s.appendable.Appender(ctx), metrics: s.metrics, remote: s.remote}
}

// Querier opens a querier over [mint, maxt] (milliseconds, inclusive).
func (s *Store) Querier(mint, maxt int64) (storage.Querier, error) {
	if s.db != nil {
		return newNarrowQuerier(s.db, mint, maxt), nil
	}
	q, err := s.queryable.Querier(mint, maxt)
	if err != nil {
		return nil, fmt.Errorf("store: querier [%d, %d]: %w", mint, maxt, err)
	}
	return q, nil
}

// Engine is the PromQL engine over this store.
func (s *Store) Engine() *promql.Engine { return s.engine }

// Parser is the PromQL parser the engine uses, for match[] selectors.
func (s *Store) Parser() parser.Parser { return s.parser }

// LookbackDelta is the engine's lookback, for callers building QueryOpts.
func (s *Store) LookbackDelta() time.Duration { return s.opts.LookbackDelta }

// Compact moves what the head holds beyond its last few hours into
// blocks now, as the TSDB does on its own within a minute: for benchmarks
// that write days of history in seconds and must then read it as a
// server that lived through those days would.
func (s *Store) Compact(ctx context.Context) error {
	if s.db == nil {
		return nil // the remote TSDB compacts on its own
	}
	if err := s.db.Compact(ctx); err != nil {
		return fmt.Errorf("store: compact %q: %w", s.db.Dir(), err)
	}
	return nil
}

// HeadSeries is the number of series in the in-memory head block.
// A remote store has no head: 0.
func (s *Store) HeadSeries() uint64 {
	if s.db == nil {
		return 0
	}
	return s.db.Head().NumSeries()
}

// Query evaluates expr at t. Warnings and info annotations are returned in
// res.Warnings; res.Err is returned as err.
func (s *Store) Query(ctx context.Context, expr string, t time.Time) (*promql.Result, error) {
	q, err := s.engine.NewInstantQuery(ctx, s, nil, expr, t)
	if err != nil {
		return nil, fmt.Errorf("store: instant query %q: %w", expr, err)
	}
	return s.exec(ctx, q, "instant", expr)
}

// QueryRange evaluates expr at every step from start to end inclusive.
func (s *Store) QueryRange(ctx context.Context, expr string, start, end time.Time, step time.Duration) (*promql.Result, error) {
	if step <= 0 {
		return nil, fmt.Errorf("store: range query %q: step %s must be positive", expr, step)
	}
	if end.Before(start) {
		return nil, fmt.Errorf("store: range query %q: end %s before start %s", expr, end, start)
	}
	q, err := s.engine.NewRangeQuery(ctx, s, nil, expr, start, end, step)
	if err != nil {
		return nil, fmt.Errorf("store: range query %q: %w", expr, err)
	}
	return s.exec(ctx, q, "range", expr)
}

func (s *Store) exec(ctx context.Context, q promql.Query, kind, expr string) (*promql.Result, error) {
	defer q.Close()
	start := time.Now()
	res := q.Exec(ctx)
	s.metrics.queryDuration.WithLabelValues(kind).Observe(time.Since(start).Seconds())
	if res.Err != nil {
		return nil, fmt.Errorf("store: %s query %q: %w", kind, expr, res.Err)
	}
	// Close returns the result's point slices to the engine's pools: hand
	// the caller a copy it owns.
	out := &promql.Result{Value: copyValue(res.Value), Warnings: res.Warnings}
	return out, nil
}

// copyValue detaches a result from the engine's pools.
func copyValue(v any) parser.Value {
	switch v := v.(type) {
	case promql.Matrix:
		m := make(promql.Matrix, len(v))
		for i, s := range v {
			m[i] = promql.Series{Metric: s.Metric, Floats: append([]promql.FPoint(nil), s.Floats...), Histograms: append([]promql.HPoint(nil), s.Histograms...)}
		}
		return m
	case promql.Vector:
		return append(promql.Vector(nil), v...)
	case parser.Value:
		return v
	}
	return nil
}
