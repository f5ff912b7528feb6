// Package api is meshlens's HTTP front door: a Prometheus-compatible query
// API over the store (so Grafana and promtool work against meshlens), a JSON
// API for meshlens's own data, /metrics, health, and role-based auth with an
// audit log of every mutating call.
//
// It reads the rest of the server only through the small interfaces of
// Sources, which the server wiring satisfies with adapters: it must never
// import the aggregator, the controller or the analyzers.
package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/meshlens/meshlens/internal/clock"
	"github.com/meshlens/meshlens/internal/pinglist"
	"github.com/meshlens/meshlens/internal/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Defaults of Config.
const (
	DefaultMaxBodyBytes         = 1 << 20
	DefaultMaxPointsPerSeries   = 11_000 // Prometheus's own cap
	DefaultMaxQueryRange        = 32 * 24 * time.Hour
	DefaultQueryTimeout         = 2 * time.Minute
	DefaultMaxConcurrentQueries = 20 // Prometheus's --query.max-concurrency
	// DefaultMaxSubquerySteps: a subquery's steps over the whole span it
	// covers, 16 MB of points per series it evaluates.
	DefaultMaxSubquerySteps = 1_000_000
	DefaultAuditRingSize    = 1000
	DefaultShutdownTimeout  = 10 * time.Second
)

// Config configures the API server. The zero value serves on nothing
// (Addr is needed by Run only) and refuses every request without a token.
type Config struct {
	// Addr is where Run listens, e.g. "127.0.0.1:9470".
	Addr string
	// Tokens are the accepted bearer tokens (see LoadTokens).
	Tokens []Token
	// AllowAnonymous is the role of a request without a token. RoleNone
	// (the zero value) requires a token everywhere; the embedded default on
	// loopback may set RoleViewer.
	AllowAnonymous Role
	// UI, when set, is served at "/" (web/, embedded), without auth: static
	// files only, the data they show comes from the API.
	UI http.Handler
	// MaxBodyBytes bounds a request body.
	MaxBodyBytes int64
	// MaxPointsPerSeries bounds (end-start)/step of a range query.
	MaxPointsPerSeries int
	// MaxQueryRange bounds end-start of a range query.
	MaxQueryRange time.Duration
	// MaxSubquerySteps bounds the steps a subquery is evaluated at over
	// the span it covers (the outer query's and its enclosing subqueries');
	// MaxPointsPerSeries bounds its range/step (checkSubqueries).
	MaxSubquerySteps int
	// QueryTimeout bounds a PromQL query; a request's ?timeout may only
	// shorten it.
	QueryTimeout time.Duration
	// MaxConcurrentQueries bounds the PromQL queries evaluated at once;
	// others wait for a slot within their timeout (MaxSamples bounds the
	// memory of each, this bounds their sum).
	MaxConcurrentQueries int
	// AuditLog receives every audit entry as a JSON line; nil keeps them in
	// memory only (GET /api/v1/audit).
	AuditLog      io.Writer
	AuditRingSize int
	// Registerer receives the API's own metrics; nil uses Sources.Registry,
	// and registers nothing when that is nil too.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Clock gives the default evaluation time of queries; nil is the wall
	// clock. The simulator passes its virtual clock.
	Clock clock.Clock
	// Version is reported by /api/v1/status/buildinfo.
	Version string
	// ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout configure
	// the http.Server of Run; zero takes safe defaults.
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// ShutdownTimeout bounds the graceful drain when Run's ctx ends.
	ShutdownTimeout time.Duration
}

func (c *Config) setDefaults() {
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxPointsPerSeries <= 0 {
		c.MaxPointsPerSeries = DefaultMaxPointsPerSeries
	}
	if c.MaxQueryRange <= 0 {
		c.MaxQueryRange = DefaultMaxQueryRange
	}
	if c.MaxSubquerySteps <= 0 {
		c.MaxSubquerySteps = DefaultMaxSubquerySteps
	}
	if c.QueryTimeout <= 0 {
		c.QueryTimeout = DefaultQueryTimeout
	}
	if c.MaxConcurrentQueries <= 0 {
		c.MaxConcurrentQueries = DefaultMaxConcurrentQueries
	}
	if c.AuditRingSize <= 0 {
		c.AuditRingSize = DefaultAuditRingSize
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	if c.ReadHeaderTimeout <= 0 {
		c.ReadHeaderTimeout = 10 * time.Second
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = time.Minute
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = c.QueryTimeout + 30*time.Second // a slow query still gets its answer out
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 2 * time.Minute
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
}

// Sources is what the API reads. Any field may be nil: its endpoints then
// answer 503 "unavailable". Every method must be safe for concurrent use.
type Sources struct {
	Store *store.Store
	// Topology returns the fabric model, JSON-encoded as is.
	Topology  func() any
	Pinglists PinglistSource
	Agents    AgentSource
	Pairs     PairSource
	// Suspects serves /api/v1/suspects: the localizer's verdicts.
	Suspects SuspectSource
	// Evidence serves /api/v1/evidence: what evidence on demand asks of
	// the agents now.
	Evidence EvidenceSource
	// Rules serves /api/v1/rules and /api/v1/alerts: the rules the server
	// evaluates and their alerts (none when nil).
	Rules RuleSource
	// Metadata is the type, help and unit of the metric families the
	// store may hold, by family name: /api/v1/metadata lists those the
	// store does hold.
	Metadata map[string]MetricMetadata
	// Ready reports readiness for /readyz; nil is always ready.
	Ready func() error
	// Registry is served at /metrics.
	Registry *prometheus.Registry
}

// PinglistSource gives the current pinglist of a host.
type PinglistSource interface {
	Pinglist(host string) (*pinglist.Pinglist, bool)
}

// AgentSource lists the fleet's agents and their health.
type AgentSource interface {
	Agents() []AgentStatus
}

// AgentStatus is one agent as the server sees it.
type AgentStatus struct {
	Host                    string    `json:"host"`
	Version                 string    `json:"version"`
	LastSeen                time.Time `json:"last_seen"`
	PinglistVersion         uint64    `json:"pinglist_version"`
	ProbesTotal             uint64    `json:"probes_total"`
	ResultsRejected         uint64    `json:"results_rejected"`
	SchedulingLagP99Seconds float64   `json:"scheduling_lag_p99_seconds"`
	State                   string    `json:"state"` // up, stale, missing
}

// SuspectSource gives the localizer's verdict on the window ending at or
// after at (the latest for a zero at), JSON-encoded as is: an empty
// verdict before the first. internal/analyze's Analyzer is one.
type SuspectSource interface {
	SuspectsAt(at time.Time) any
}

// EvidenceSource gives the current plan of evidence on demand,
// JSON-encoded as is (internal/analyze's Evidence).
type EvidenceSource interface {
	EvidencePlan() any
}

// PairSource answers per-pair questions from the aggregator's recent
// window (pair-level series are kept out of the TSDB).
type PairSource interface {
	PairWindows(ctx context.Context, q PairQuery) ([]PairWindow, error)
}

// RackPairSource, when the PairSource also implements it, answers
// /api/v1/pairs?src_rack=&dst_rack=: every host pair of a rack pair, for
// the host level of the heatmap.
type RackPairSource interface {
	RackPairWindows(ctx context.Context, q PairQuery) ([]PairWindow, error)
}

// PairDetailSource, when the PairSource also implements it, says what
// the pair view can still show of a query's pairs: /api/v1/pairs serves
// it as "pair_detail" beside the windows.
type PairDetailSource interface {
	PairDetail(ctx context.Context, q PairQuery) PairDetail
}

// PairDetail is what the server holds of the pairs of a query: every
// window ("full"), what a memory budget kept ("budget": before
// CompleteFrom only windows with loss, pairs looked at and a 1-in-
// SampleOneIn sample of the others), or nothing ("off": rollups-only
// aggregation). Note says it in a sentence.
type PairDetail struct {
	Mode         string     `json:"mode"`
	CompleteFrom *time.Time `json:"complete_from,omitempty"`
	SampleOneIn  int        `json:"sample_one_in,omitempty"`
	BudgetBytes  int64      `json:"budget_bytes"`
	Note         string     `json:"note"`
}

// PairQuery selects the windows of one src→dst pair, or with SrcRack and
// DstRack of every host pair between two racks. Proto empty: all.
type PairQuery struct {
	Src, Dst         string
	SrcRack, DstRack string
	Proto            string
	Since, Until     time.Time
}

// PairWindow is one aggregation window of a pair. Latencies in seconds,
// nil (absent from the JSON) when no probe of the window was answered: a
// latency is absent, never 0.
type PairWindow struct {
	// Src and Dst are set when a query covers many pairs (a rack pair).
	Src       string    `json:"src,omitempty"`
	Dst       string    `json:"dst,omitempty"`
	Start     time.Time `json:"start"`
	End       time.Time `json:"end"`
	Proto     string    `json:"proto"`
	Sent      uint64    `json:"sent"`
	Lost      uint64    `json:"lost"`
	LossRatio float64   `json:"loss_ratio"`
	P50       *float64  `json:"p50_seconds,omitempty"`
	P90       *float64  `json:"p90_seconds,omitempty"`
	P99       *float64  `json:"p99_seconds,omitempty"`
	P999      *float64  `json:"p999_seconds,omitempty"`
}

// Server is the API's handler and, with Run, its HTTP server. Handle may be
// called until the server starts serving; ServeHTTP is safe for concurrent
// use.
type Server struct {
	cfg     Config
	src     Sources
	mux     *http.ServeMux
	auth    *authenticator
	audit   *auditLog
	metrics *httpMetrics
	handler http.Handler
	// querySlots holds one token per PromQL query being evaluated.
	querySlots chan struct{}
}

// New builds the server and registers every built-in route.
func New(cfg Config, src Sources) (*Server, error) {
	cfg.setDefaults()
	for _, t := range cfg.Tokens {
		if t.Role <= RoleNone || t.Role > RoleAdmin {
			return nil, fmt.Errorf("api: token %q: invalid role %s", t.Name, t.Role)
		}
	}
	if cfg.AllowAnonymous < RoleNone || cfg.AllowAnonymous > RoleAdmin {
		return nil, fmt.Errorf("api: invalid anonymous role %s", cfg.AllowAnonymous)
	}
	reg := cfg.Registerer
	if reg == nil && src.Registry != nil {
		reg = src.Registry
	}
	m, err := newHTTPMetrics(reg)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:     cfg,
		src:     src,
		mux:     http.NewServeMux(),
		auth:    &authenticator{tokens: cfg.Tokens, anonymous: cfg.AllowAnonymous},
		audit:   newAuditLog(cfg.AuditRingSize, cfg.AuditLog),
		metrics: m,

		querySlots: make(chan struct{}, cfg.MaxConcurrentQueries),
	}
	s.handler = s.harden(s.mux)
	s.registerPrometheusAPI()
	s.registerJSONAPI()
	return s, nil
}

// Handle registers h at pattern (Go ServeMux syntax, e.g.
// "POST /api/v1/silences") for callers with at least role. Every route is
// counted, recovered from panics, authenticated, and, when the method
// changes state (anything but GET, HEAD, OPTIONS), audited.
func (s *Server) Handle(pattern string, role Role, h http.Handler) {
	s.handle(pattern, role, true, h)
}

// handle registers a route; mutating false exempts form POSTs of read-only
// endpoints (PromQL queries) from the audit log.
func (s *Server) handle(pattern string, role Role, mutating bool, h http.Handler) {
	s.mux.Handle(pattern, s.instrument(pattern, role, mutating, h))
}

// ServeHTTP serves the API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// Run listens on Config.Addr and serves until ctx ends, then drains
// in-flight requests for at most ShutdownTimeout.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("api: listen on %q: %w", s.cfg.Addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx ends. It closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	baseCtx, cancelRequests := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRequests()
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.cfg.Logger.Handler(), slog.LevelWarn),
		// Requests outlive ctx by up to ShutdownTimeout, so that in-flight
		// queries can finish; then their contexts end too.
		BaseContext: func(net.Listener) context.Context { return baseCtx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("api: serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	shutdownErr := srv.Shutdown(sctx)
	cancelRequests()
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("api: serve on %s: %w", ln.Addr(), err)
	}
	if shutdownErr != nil {
		_ = srv.Close()
		return fmt.Errorf("api: shutdown on %s: %w", ln.Addr(), shutdownErr)
	}
	return nil
}

func (s *Server) registerJSONAPI() {
	s.handle("GET /api/v1/topology", RoleViewer, false, http.HandlerFunc(s.topology))
	s.handle("GET /api/v1/pinglists/{host}", RoleViewer, false, http.HandlerFunc(s.pinglist))
	s.handle("GET /api/v1/agents", RoleViewer, false, http.HandlerFunc(s.agents))
	s.handle("GET /api/v1/pairs", RoleViewer, false, http.HandlerFunc(s.pairs))
	s.handle("GET /api/v1/suspects", RoleViewer, false, http.HandlerFunc(s.suspects))
	s.handle("GET /api/v1/evidence", RoleViewer, false, http.HandlerFunc(s.evidence))
	s.handle("GET /api/v1/protocols", RoleViewer, false, http.HandlerFunc(s.protocols))
	s.handle("GET /api/v1/audit", RoleAdmin, false, http.HandlerFunc(s.auditEntries))
	// Go's runtime profiles, for an admin chasing the server's memory or
	// CPU (bench/soak diffs two heap profiles): they show code and data
	// shapes, not telemetry, and a CPU profile costs the server while it runs.
	s.handle("GET /debug/pprof/", RoleAdmin, false, http.HandlerFunc(pprof.Index))
	s.handle("GET /debug/pprof/cmdline", RoleAdmin, false, http.HandlerFunc(pprof.Cmdline))
	s.handle("GET /debug/pprof/profile", RoleAdmin, false, http.HandlerFunc(pprof.Profile))
	s.handle("GET /debug/pprof/symbol", RoleAdmin, false, http.HandlerFunc(pprof.Symbol))
	s.handle("GET /debug/pprof/trace", RoleAdmin, false, http.HandlerFunc(pprof.Trace))
	// Health endpoints answer without a token: load balancers and
	// orchestrators probe them.
	s.mux.Handle("GET /healthz", s.instrumentPublic("/healthz", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})))
	s.mux.Handle("GET /readyz", s.instrumentPublic("/readyz", http.HandlerFunc(s.readyz)))
	if s.src.Registry != nil {
		s.handle("GET /metrics", RoleViewer, false, promhttp.HandlerFor(s.src.Registry, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.cfg.Logger.Handler(), slog.LevelError)}))
	}
	// The UI's static files hold no data and a browser cannot attach a
	// bearer token to a page load: they are public. Its data comes from the
	// API, which is not.
	ui := s.cfg.UI
	if ui == nil {
		ui = http.NotFoundHandler()
	}
	s.mux.Handle("/", s.instrumentPublic("/", ui))
	// Unknown API paths get the API's JSON error, not the UI's page.
	s.mux.Handle("/api/", s.instrumentPublic("/api/", http.HandlerFunc(s.apiNotFound)))
}

// apiNotFound answers API paths no route matched: 405 when the path exists
// for other methods (the catch-all hides the mux's own 405), else 404.
func (s *Server) apiNotFound(w http.ResponseWriter, r *http.Request) {
	var allowed []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := s.mux.Handler(probe); pattern != "/api/" && pattern != "" {
			allowed = append(allowed, m)
		}
	}
	if len(allowed) > 0 {
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		writeError(w, errorType{"bad_data", http.StatusMethodNotAllowed}, fmt.Errorf("method %s not allowed on %s", r.Method, r.URL.Path))
		return
	}
	writeError(w, errorNotFound, fmt.Errorf("no API endpoint %s %s", r.Method, r.URL.Path))
}
