// Package server wires the parts of `meshlens server` together: the
// embedded NATS server, the controller, the aggregators, the store and the
// HTTP API. It owns no data path logic of its own; cmd/meshlens only parses
// flags into a Config.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/meshlens/meshlens/internal/aggregate"
	"github.com/meshlens/meshlens/internal/analyze"
	"github.com/meshlens/meshlens/internal/api"
	"github.com/meshlens/meshlens/internal/buildinfo"
	"github.com/meshlens/meshlens/internal/bus"
	"github.com/meshlens/meshlens/internal/localize"
	"github.com/meshlens/meshlens/internal/pinglist"
	"github.com/meshlens/meshlens/internal/store"
	"github.com/meshlens/meshlens/internal/topology"
	"github.com/meshlens/meshlens/internal/wire"
)

// Config of a server process.
type Config struct {
	TopologyFile string
	DataDir      string
	HTTPAddr     string
	// NATSAddr is where the embedded NATS server listens; ignored when
	// NATSURL points at an external cluster.
	NATSAddr string
	NATSURL  string
	// ServerID names this server among those sharing an external bus
	// (NATSURL); default the host name. Each server keeps its own TSDB, a
	// full replica, so each keeps its own aggregator checkpoints, keyed
	// by partition and ServerID. Unused on the embedded bus.
	ServerID string
	// NATSOptions are extra client options (credentials, TLS).
	NATSOptions []nats.Option
	// NATSTLS makes the embedded NATS server require TLS; with a CA,
	// client certificates too (mTLS). HTTPTLS does the same for the API.
	NATSTLS bus.TLSFiles
	HTTPTLS bus.TLSFiles
	// CredsDir turns on per-agent NATS credentials for the embedded
	// server (see bus.Authority; meshlens creds issue HOST).
	CredsDir string
	// With NATSURL (an external cluster): the server's own credentials
	// file and the CA of the cluster's certificates; NATSTLS.Cert and Key
	// are then its client certificate.
	NATSCreds    string
	NATSServerCA string
	// InsecurePlaintext allows plaintext listeners off loopback.
	InsecurePlaintext bool

	Pinglists pinglist.Settings
	// Partitions this process aggregates; nil means all of them.
	Partitions []int
	// Role of this process (RoleAll, RoleAggregator, RoleAnalyzer,
	// RoleAPI; see roles.go). The roles need NATSURL and QueryURL.
	Role string
	// QueryURL is the Prometheus-compatible query API of the TSDB the
	// roles share (VictoriaMetrics, Prometheus, Mimir, Thanos); with a
	// role, it replaces the embedded TSDB, and the aggregators write to
	// RemoteWrite.URL synchronously.
	QueryURL string
	Stream   bus.StreamSettings
	// StreamAgentMaxBytes is each agent's byte quota in the results
	// stream over Stream.MaxAge (0: none); with Stream.MaxBytes set, at
	// most an eighth of it, so that one agent cannot fill the stream.
	StreamAgentMaxBytes int64
	Aggregate           aggregate.Config // Locator, Appendable, Registerer are set by the server
	Store               store.Options
	// RemoteWrite, when its URL is set, forwards every sample written to
	// the TSDB (over Store.RemoteWrite's queue settings).
	RemoteWrite RemoteWriteConfig
	HTTP        HTTPConfig
	Alerting    AlertingConfig
	// Evidence tunes evidence on demand (analyze.EvidenceConfig): the
	// analyzer's requests are published in the evidence bucket.
	Evidence analyze.EvidenceConfig

	// TopologyPoll is how often the topology file is checked for changes.
	TopologyPoll time.Duration
	Logger       *slog.Logger
	Version      string
}

// Server is a running meshlens server.
type Server struct {
	cfg      Config
	logger   *slog.Logger
	registry *prometheus.Registry

	topo atomic.Pointer[topology.Topology]
	// topoMu serializes topology changes (file watcher, admin API); it
	// guards topoMod, the applied file's modification time.
	topoMu           sync.Mutex
	topoMod          time.Time
	topoReloads      prometheus.Counter
	topoReloadErrors prometheus.Counter
	// sloMu and remMu serialize changes of the SLOs and of the remediation
	// policy through the admin API.
	sloMu, remMu sync.Mutex
	embedded     *bus.Embedded
	nc           *nats.Conn
	js           jetstream.JetStream
	store        *store.Store
	controller   *Controller
	aggs         []*aggregate.Aggregator
	ingesters    []*aggregate.Ingester
	// With --role aggregator: the aggregators of the partitions held now
	// (partAggs, by partition) and the role's partition sharing.
	partMu   sync.Mutex
	partAggs map[int]*aggregate.Aggregator
	// rollupAgents: in an analyzer or API role, the agents as the
	// aggregators last sent them (guarded by partMu).
	rollupAgents map[string]aggregate.AgentStatus
	aggRole      *aggregatorRole
	rollupM      *rollupMetrics
	api          *api.Server
	analyzer     *analyze.Analyzer
	// leading: this server is the analyzer (alerts, evidence requests).
	leading atomic.Bool
	// evidence publishes the analyzer's evidence requests while leading.
	evidence *evidencePublisher
	// analyzeWake tells the analyzer's loop that a window half came in.
	analyzeWake chan struct{}
	alerting    *alerting
	natsURL     string
	httpTLS     *tls.Config
	authority   *bus.Authority // with --creds-dir
	ready       atomic.Bool
}

// New loads the topology and opens storage; Run starts everything.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.TopologyPoll <= 0 {
		cfg.TopologyPoll = 5 * time.Second
	}
	if cfg.DataDir == "" {
		return nil, errors.New("server: --data-dir is required")
	}
	if err := checkSecurity(cfg); err != nil {
		return nil, err
	}
	if err := checkRole(cfg); err != nil {
		return nil, err
	}
	rw, err := cfg.RemoteWrite.storeConfig(cfg.Store.RemoteWrite)
	if err != nil {
		return nil, err
	}
	cfg.Store.RemoteWrite = rw
	if cfg.Stream.MaxBytes < 0 || cfg.StreamAgentMaxBytes < 0 {
		return nil, fmt.Errorf("server: --stream-max-bytes %d, --stream-agent-max-bytes %d: want 0 (none) or a size", cfg.Stream.MaxBytes, cfg.StreamAgentMaxBytes)
	}
	if cfg.Aggregate.RollupsOnly && !cfg.Evidence.Off {
		return nil, errors.New("server: --pair-detail=off needs --evidence=off: evidence on demand plans its extra probes from the pairs of each window, which rollups-only aggregation does not keep " +
			"(localization still works: it reads the rollups and path reports; what is lost is the pair view, /api/v1/pairs, the heatmap's host level, diagnose pair's own windows and evidence on demand)")
	}
	if cfg.NATSURL != "" {
		if cfg.ServerID == "" {
			host, err := os.Hostname()
			if err != nil {
				return nil, fmt.Errorf("server: --server-id not set and no host name to default to: %w", err)
			}
			cfg.ServerID = host
		}
		if !serverIDPattern.MatchString(cfg.ServerID) {
			return nil, fmt.Errorf("server: --server-id %q: want letters, digits, '-', '_' and inner dots (it is part of a NATS KV key)", cfg.ServerID)
		}
	}
	s := &Server{cfg: cfg, logger: cfg.Logger, registry: prometheus.NewRegistry()}
	s.topoReloadErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "meshlens_topology_reload_errors_total",
		Help: "Topology changes refused because the new topology is invalid or its pinglists could not be published.",
	})
	s.topoReloads = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "meshlens_topology_reloads_total",
		Help: "Topology changes applied (from the file or the admin API).",
	})
	s.registry.MustRegister(s.topoReloadErrors, s.topoReloads)
	s.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildinfo.Collector("server", cfg.Version))

	topo, mod, err := loadTopology(cfg.TopologyFile)
	if err != nil {
		return nil, err
	}
	s.topo.Store(topo)
	s.topoMod = mod
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("server: data dir %q: %w", cfg.DataDir, err)
	}
	return s, nil
}

func loadTopology(file string) (*topology.Topology, time.Time, error) {
	if file == "" {
		return nil, time.Time{}, errors.New("server: --topology is required")
	}
	st, err := os.Stat(file)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("server: topology: %w", err)
	}
	topo, err := topology.Load(file)
	if err != nil {
		return nil, time.Time{}, err
	}
	return topo, st.ModTime(), nil
}

// serverIDPattern keeps a server id usable as the last tokens of a NATS
// KV key.
var serverIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)

// Topology is the fabric as the server currently knows it.
func (s *Server) Topology() *topology.Topology { return s.topo.Load() }

// Registry holds the server's self-metrics.
func (s *Server) Registry() *prometheus.Registry { return s.registry }

// NATSURL is the URL agents connect to.
func (s *Server) NATSURL() string { return s.natsURL }

// Run starts every part and blocks until ctx ends or a part fails; then it
// stops them all, in reverse order of the data path.
func (s *Server) Run(ctx context.Context) error {
	defer s.close()
	if err := s.start(ctx); err != nil {
		return err
	}
	// Listen before announcing: with port 0 the kernel picks the port and
	// "meshlens server running" names it (tests start servers that way, so
	// no port is chosen first and bound later by someone else).
	ln, err := net.Listen("tcp", s.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("server: listen on %q: %w", s.cfg.HTTPAddr, err)
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.store.Run(ctx) })
	for _, in := range s.ingesters {
		g.Go(func() error { return in.Run(ctx) })
	}
	g.Go(func() error { return s.watchTopology(ctx) })
	switch s.cfg.Role {
	case RoleAggregator:
		g.Go(func() error { return s.aggRole.run(ctx) })
	case RoleAnalyzer, RoleAPI:
		g.Go(func() error { return s.followRollups(ctx) })
	}
	if s.cfg.Role != RoleAggregator {
		g.Go(func() error { return s.runAnalyzer(ctx) })
	}
	switch s.cfg.Role {
	case RoleAll, RoleAnalyzer:
		g.Go(func() error { return s.runAlerting(ctx) })
	case RoleAPI:
		g.Go(func() error { return s.alerting.evaluate(ctx) })
	}
	g.Go(func() error { return s.serveAPI(ctx, ln) })
	if s.authority != nil {
		// meshlens creds revoke takes effect without a restart.
		g.Go(func() error { return s.authority.WatchRevocations(ctx, s.embedded, 2*time.Second, s.logger) })
	}
	s.ready.Store(true)
	s.logger.Info("meshlens server running", "http", ln.Addr().String(), "nats", s.natsURL, "hosts", len(s.Topology().Hosts), "role", roleName(s.cfg.Role))
	err = g.Wait()
	s.ready.Store(false)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func (s *Server) start(ctx context.Context) error {
	var err error
	s.natsURL = s.cfg.NATSURL
	connectURL, natsOpts := s.natsURL, s.cfg.NATSOptions
	if s.natsURL == "" {
		secure, ownOpts, err := s.busSecurity()
		if err != nil {
			return err
		}
		s.embedded, err = bus.StartEmbedded(bus.EmbeddedConfig{
			Addr:      s.cfg.NATSAddr,
			StoreDir:  filepath.Join(s.cfg.DataDir, "nats"),
			Logger:    s.logger,
			Configure: secure,
		})
		if err != nil {
			return err
		}
		s.natsURL = s.embedded.ClientURL()
		connectURL = s.natsURL
		if s.cfg.NATSTLS.Enabled() {
			// The server's own connection stays in memory: no TLS needed.
			var inProc nats.Option
			connectURL, inProc = bus.InProcess(s.embedded)
			ownOpts = append(ownOpts, inProc)
		}
		natsOpts = append(ownOpts, natsOpts...)
	} else {
		clientOpts, err := externalBusOptions(s.cfg)
		if err != nil {
			return err
		}
		natsOpts = append(clientOpts, natsOpts...)
	}
	if s.cfg.HTTPTLS.Enabled() {
		if s.httpTLS, err = bus.ServerTLSConfig(s.cfg.HTTPTLS); err != nil {
			return fmt.Errorf("server: --tls-cert/--tls-key: %w", err)
		}
	}
	s.nc, err = bus.Connect(connectURL, "meshlens-server", natsOpts...)
	if err != nil {
		return err
	}
	if s.js, err = jetstream.New(s.nc); err != nil {
		return fmt.Errorf("server: jetstream: %w", err)
	}
	setupCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	stream := s.cfg.Stream
	// Only the partitions agents are told to use are stored, and no batch
	// larger than the ingester would accept (docs/security.md, persona 1).
	stream.Partitions = max(1, s.cfg.Pinglists.Partitions)
	stream.MaxMsgSize = wire.MaxBatchBytes + 64<<10 // (headers)
	if s.cfg.Role != RoleAll {
		s.rollupM = newRollupMetrics(s.registry)
		// The roles agree on the partitions or refuse to start: windows
		// would be lost or never complete.
		if err := bus.CheckResultPartitions(setupCtx, s.js, stream.Partitions); err != nil {
			return err
		}
		if err := bus.EnsureRollupStream(setupCtx, s.js, bus.RollupStreamSettings{
			Partitions: stream.Partitions, MaxMsgSize: wire.MaxRollupBytes + 64<<10, Replicas: s.cfg.Stream.Replicas,
		}); err != nil {
			return err
		}
	}
	if err := bus.EnsureStreams(setupCtx, s.js, stream); err != nil {
		return err
	}
	s.registry.MustRegister(&streamUsage{js: s.js, maxBytes: stream.MaxBytes, agentQuota: s.agentQuota()})
	if err := EnsureFleetKey(setupCtx, s.js); err != nil {
		return err
	}

	if s.store, err = s.openStore(); err != nil {
		return err
	}

	pl := s.cfg.Pinglists
	if pl.Window == 0 {
		pl.Window = windowOf(s.cfg.Aggregate) // agents mark this server's window boundaries
	}
	s.controller = NewController(pl, s.registry, s.logger)
	if s.cfg.Role != RoleAggregator {
		// Aggregators leave the pinglists to the analyzers.
		if err := s.controller.Apply(setupCtx, s.js, s.Topology()); err != nil {
			return err
		}
	}

	partitions := s.cfg.Partitions
	if partitions == nil {
		n := s.cfg.Pinglists.Partitions
		if n <= 0 {
			n = 1
		}
		for p := 0; p < n; p++ {
			partitions = append(partitions, p)
		}
	}
	if s.alerting, err = s.buildAlerting(); err != nil {
		return err
	}
	x, err := localize.NewIndex(s.Topology())
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	s.analyzer, err = analyze.New(x, analyze.Config{Window: windowOf(s.cfg.Aggregate), Partitions: partitions, Evidence: s.cfg.Evidence, Registerer: s.registry})
	if err != nil {
		return err
	}
	s.evidence = newEvidencePublisher(s.js, windowOf(s.cfg.Aggregate), s.registry)
	s.analyzeWake = make(chan struct{}, 1)
	switch s.cfg.Role {
	case RoleAll:
		n := max(1, s.cfg.Pinglists.Partitions)
		for _, p := range partitions {
			// One registry can hold a metric name once: partitions share
			// the aggregator's collectors through a wrapping registerer.
			reg := prometheus.WrapRegistererWith(prometheus.Labels{"partition": fmt.Sprint(p)}, s.registry)
			agg, err := s.newPartitionAggregator(p, len(partitions), reg)
			if err != nil {
				return err
			}
			inCfg := aggregate.IngesterConfig{JetStream: s.js, Partition: p, Partitions: n, Aggregator: agg, Logger: s.logger,
				AgentQuota: s.agentQuota(), QuotaSpan: s.cfg.Stream.MaxAge}
			if s.cfg.NATSURL != "" {
				// Servers sharing an external bus each ingest every partition
				// into their own TSDB: one checkpoint per server.
				inCfg.CheckpointKey = aggregate.CheckpointKey(p) + "." + s.cfg.ServerID
			}
			in, err := aggregate.NewIngester(inCfg)
			if err != nil {
				return err
			}
			file := func(w *aggregate.SealedWindow) {
				// Filing a half is cheap; the analyzer's loop localizes.
				s.analyzer.IngestWindow(p, w)
				select {
				case s.analyzeWake <- struct{}{}:
				default:
				}
			}
			agg.Subscribe(file)
			agg.SubscribeIdle(file)
			s.aggs = append(s.aggs, agg)
			s.ingesters = append(s.ingesters, in)
		}
	case RoleAggregator:
		kv, err := s.js.KeyValue(setupCtx, bus.StateBucket)
		if err != nil {
			return fmt.Errorf("server: %w", err)
		}
		s.aggRole = newAggregatorRole(s, kv)
	}
	if err := s.registry.Register(newAgentsCollector(s)); err != nil {
		return fmt.Errorf("server: register agent metrics: %w", err)
	}
	if s.cfg.Role == RoleAggregator {
		// Path reports and hellos are the analyzers' to answer.
		s.api, err = s.buildAPI()
		return err
	}
	// Path discoveries come as best-effort core NATS messages.
	if _, err := s.nc.Subscribe(bus.PathsSubjects, func(m *nats.Msg) {
		// The publisher is the subject's agent; a refused report is
		// counted by the analyzer (best effort: no reply, no log flood).
		publisher, _ := strings.CutPrefix(m.Subject, bus.PathsSubjectPrefix+".")
		_ = s.analyzer.IngestPathData(publisher, m.Data, time.Now())
	}); err != nil {
		return fmt.Errorf("server: subscribe to path reports: %w", err)
	}
	// One server of those sharing a bus answers each agent's hello.
	if _, err := s.nc.QueueSubscribe(bus.HelloSubjects, "meshlens-hello", s.answerHello); err != nil {
		return fmt.Errorf("server: subscribe to agents' hellos: %w", err)
	}
	s.api, err = s.buildAPI()
	return err
}

// watchTopology re-reads the topology file when it changes and republishes
// the pinglists, so agents follow without restarts. A bad edit is logged
// and counted; the last good topology stays in force.
func (s *Server) watchTopology(ctx context.Context) error {
	t := time.NewTicker(s.cfg.TopologyPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		s.reloadTopologyIfChanged(ctx)
	}
}

// reloadTopologyIfChanged applies the topology file if it changed since
// the last one applied. A bad edit is refused, logged and counted; the
// last good topology stays in force.
func (s *Server) reloadTopologyIfChanged(ctx context.Context) {
	s.topoMu.Lock()
	defer s.topoMu.Unlock()
	st, err := os.Stat(s.cfg.TopologyFile)
	if err != nil || st.ModTime().Equal(s.topoMod) {
		return
	}
	topo, mod, err := loadTopology(s.cfg.TopologyFile)
	s.topoMod = st.ModTime()
	if err != nil {
		s.topoReloadErrors.Inc()
		s.logger.Error("topology change refused; keeping the previous one", "err", err)
		return
	}
	s.topoMod = mod
	if err := s.applyTopologyLocked(ctx, topo); err != nil {
		s.logger.Error("pinglists for the new topology not published", "err", err)
	}
}

// applyTopologyLocked publishes topo's pinglists and makes it current;
// the caller holds topoMu.
func (s *Server) applyTopologyLocked(ctx context.Context, topo *topology.Topology) error {
	if s.cfg.Role == RoleAggregator {
		// The analyzers publish the pinglists.
		s.topo.Store(topo)
		s.topoReloads.Inc()
		return nil
	}
	if err := s.controller.Apply(ctx, s.js, topo); err != nil {
		s.topoReloadErrors.Inc()
		return err
	}
	s.topo.Store(topo)
	s.topoReloads.Inc()
	s.logger.Info("topology applied", "hosts", len(topo.Hosts), "pinglist_version", s.controller.Version())
	return nil
}

func (s *Server) close() {
	if s.nc != nil {
		s.nc.Close()
	}
	if s.alerting != nil && s.alerting.remAudit != nil {
		if err := s.alerting.remAudit.Close(); err != nil {
			s.logger.Error("closing the remediation audit log", "err", err)
		}
	}
	if s.embedded != nil {
		s.embedded.Shutdown()
	}
	if s.store != nil {
		if err := s.store.Close(); err != nil {
			s.logger.Error("closing the store", "err", err)
		}
	}
}

// checkSecurity refuses plaintext off loopback unless forced, and
// settings that would silently not apply.
func checkSecurity(cfg Config) error {
	if err := bus.CheckListener("--http-addr", cfg.HTTPAddr, cfg.HTTPTLS.Enabled(), cfg.InsecurePlaintext); err != nil {
		return err
	}
	if cfg.NATSURL != "" {
		if cfg.CredsDir != "" || cfg.NATSTLS.CA != "" {
			return errors.New("server: --creds-dir and --nats-tls-client-ca configure the embedded NATS server; with --nats-url the cluster's own configuration applies (use --nats-creds, --nats-tls-ca)")
		}
		return bus.CheckURLs("--nats-url", cfg.NATSURL, cfg.NATSServerCA != "" || cfg.NATSTLS.Cert != "", cfg.InsecurePlaintext)
	}
	if cfg.NATSCreds != "" || cfg.NATSServerCA != "" {
		return errors.New("server: --nats-creds and --nats-tls-ca are for an external cluster (--nats-url)")
	}
	return bus.CheckListener("--nats-addr", cfg.NATSAddr, cfg.NATSTLS.Enabled(), cfg.InsecurePlaintext)
}

// externalBusOptions are the server's client TLS and credentials for an
// external cluster.
func externalBusOptions(cfg Config) ([]nats.Option, error) {
	var opts []nats.Option
	if cfg.NATSServerCA != "" || cfg.NATSTLS.Cert != "" || cfg.NATSTLS.Key != "" {
		tc, err := bus.ClientTLSConfig(bus.TLSFiles{CA: cfg.NATSServerCA, Cert: cfg.NATSTLS.Cert, Key: cfg.NATSTLS.Key})
		if err != nil {
			return nil, fmt.Errorf("server: --nats-tls-*: %w", err)
		}
		opts = append(opts, nats.Secure(tc))
	}
	if cfg.NATSCreds != "" {
		opts = append(opts, nats.UserCredentials(cfg.NATSCreds))
	}
	return opts, nil
}

// busSecurity is the embedded server's TLS and credentials setup and the
// options of the server's own, privileged, connection.
func (s *Server) busSecurity() (func(*natsserver.Options), []nats.Option, error) {
	var auth *bus.Authority
	var own []nats.Option
	if s.cfg.CredsDir != "" {
		var err error
		if auth, err = bus.OpenAuthority(s.cfg.CredsDir); err != nil {
			return nil, nil, err
		}
		s.authority = auth
		priv, err := auth.PrivilegedOption("meshlens-server")
		if err != nil {
			return nil, nil, err
		}
		own = append(own, priv)
	}
	var tc *tls.Config
	if s.cfg.NATSTLS.Enabled() {
		var err error
		if tc, err = bus.ServerTLSConfig(s.cfg.NATSTLS); err != nil {
			return nil, nil, fmt.Errorf("server: --nats-tls-*: %w", err)
		}
	}
	return bus.SecureEmbedded(auth, tc), own, nil
}

// serveAPI serves the API on ln (HTTPAddr), over TLS when configured.
func (s *Server) serveAPI(ctx context.Context, ln net.Listener) error {
	if s.httpTLS == nil {
		return s.api.Serve(ctx, ln)
	}
	return s.api.Serve(ctx, tls.NewListener(ln, s.httpTLS))
}

// openStore opens the embedded TSDB, or with a role the shared external
// one: queried through its Prometheus API, written (by aggregators) with
// synchronous remote writes, so that a checkpoint is saved only once its
// counters are in the TSDB the next holder of the partition restores from.
func (s *Server) openStore() (*store.Store, error) {
	if s.cfg.Role == RoleAll {
		opts := s.cfg.Store
		opts.Registerer = s.registry
		opts.Logger = s.logger
		return store.Open(filepath.Join(s.cfg.DataDir, "tsdb"), opts)
	}
	ro := store.RemoteOptions{
		QueryURL:      s.cfg.QueryURL,
		LookbackDelta: s.cfg.Store.LookbackDelta,
		Registerer:    s.registry,
		Logger:        s.logger,
	}
	// The remote-write flags' credentials and headers (New turned them
	// into the store's settings) serve the queries too: one TSDB.
	rw := s.cfg.Store.RemoteWrite
	ro.BearerToken, ro.Headers, ro.Client = rw.BearerToken, rw.Headers, rw.Client
	if s.cfg.Role == RoleAggregator {
		ro.WriteURL = rw.URL
	}
	return store.OpenRemote(ro)
}

// newPartitionAggregator is partition p's aggregator; with more than one
// partition in the TSDB its series carry a partition label.
func (s *Server) newPartitionAggregator(p, partitions int, reg prometheus.Registerer) (*aggregate.Aggregator, error) {
	// Only the targets this server configured are counted: their names
	// come from agents (docs/security.md, persona 1).
	targets := map[string]bool{}
	for _, t := range s.cfg.Pinglists.HTTPTargets {
		targets[t.Name] = true
	}
	cfg := s.cfg.Aggregate
	cfg.Targets = func(name string) bool { return targets[name] }
	cfg.Locator = aggregate.LocatorFunc(func(host string) (string, string, string, bool) {
		return s.Topology().Locate(host)
	})
	cfg.Appendable = s.store
	// Counters are restored from the TSDB, which keeps the checkpoint
	// small at any fabric size.
	cfg.Queryable = s.store
	if partitions > 1 {
		// Partitions share the TSDB: keep their rollup series apart.
		cfg.SeriesLabels = map[string]string{"partition": fmt.Sprint(p)}
	}
	cfg.Registerer = reg
	cfg.Logger = s.logger
	return aggregate.New(cfg)
}

// setPartitionAggregator records (or with nil forgets) the aggregator of
// a partition this aggregator-role process holds.
func (s *Server) setPartitionAggregator(p int, agg *aggregate.Aggregator) {
	s.partMu.Lock()
	defer s.partMu.Unlock()
	if s.partAggs == nil {
		s.partAggs = map[int]*aggregate.Aggregator{}
	}
	if agg == nil {
		delete(s.partAggs, p)
		return
	}
	s.partAggs[p] = agg
}

// aggregators are this process's aggregators now.
func (s *Server) aggregators() []*aggregate.Aggregator {
	if s.cfg.Role != RoleAggregator {
		return s.aggs
	}
	s.partMu.Lock()
	defer s.partMu.Unlock()
	out := make([]*aggregate.Aggregator, 0, len(s.partAggs))
	for _, agg := range s.partAggs {
		out = append(out, agg)
	}
	return out
}

func roleName(r string) string {
	if r == RoleAll {
		return "all"
	}
	return r
}

func windowOf(c aggregate.Config) time.Duration {
	if c.Window > 0 {
		return c.Window
	}
	return aggregate.DefaultWindow
}

// runAnalyzer drives stage 2 on the real clock: it localizes each window
// once its partitions' halves are in (woken by the aggregators, and every
// window in case a partition fell silent), with the topology and the
// agents' lags current, and hands the verdicts to alerting.
func (s *Server) runAnalyzer(ctx context.Context) error {
	tick := time.NewTicker(windowOf(s.cfg.Aggregate))
	defer tick.Stop()
	topo := s.Topology()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.analyzeWake:
		case <-tick.C:
		}
		// A new topology means new element ids: the localizer starts afresh.
		if t := s.Topology(); t != topo {
			x, err := localize.NewIndex(t)
			if err == nil {
				err = s.analyzer.Reindex(x)
			}
			if err != nil {
				s.logger.Error("analyzer: cannot index the new topology; localizing with the previous one", "err", err)
			}
			topo = t
		}
		s.analyzer.SetAgentLags(s.agentLags())
		s.analyzer.SetSilentAgents(agentSource{s}.silentAgents())
		verdicts, err := s.analyzer.Advance(time.Now())
		if err != nil {
			s.logger.Error("analyzer: localize", "err", err)
		}
		if s.leading.Load() {
			if err := s.evidence.sync(ctx, s.analyzer.Evidence(), time.Now()); err != nil {
				s.logger.Warn("analyzer: evidence requests not published; retried next window", "err", err)
			}
		}
		for _, v := range verdicts {
			s.alerting.blame(v)
		}
	}
}

// agentLags is every agent's last reported scheduling lag, which tells a
// starved agent from a slow network.
func (s *Server) agentLags() map[string]time.Duration {
	out := map[string]time.Duration{}
	for _, a := range s.agentStatuses() {
		out[a.Agent] = a.SchedulingLagP99
	}
	return out
}

// analyzerLeaseKey names the lease that elects the one server which
// evaluates SLOs and sends alerts when several share an external bus.
const analyzerLeaseKey = "lease.analyzer"

// runAlerting runs SLO evaluation and alert delivery: both always on the
// embedded bus (one server); on an external one every server evaluates
// (its API shows SLOs and incidents) but only the holder of the analyzer
// lease delivers alerts and remediates, so two servers never page twice.
// A server that loses the lease stops delivering at once; the next leader
// re-sends what is firing, and Alertmanager merges identical alerts.
func (s *Server) runAlerting(ctx context.Context) error {
	leaderGauge := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "meshlens_analyzer_leader",
		Help: "1 while this server is the analyzer (evaluates SLOs and sends alerts), else 0.",
	})
	s.registry.MustRegister(leaderGauge)
	if s.cfg.NATSURL == "" {
		leaderGauge.Set(1)
		s.leading.Store(true)
		return s.alerting.Run(ctx)
	}
	kv, err := s.js.KeyValue(ctx, bus.StateBucket)
	if err != nil {
		return fmt.Errorf("server: analyzer lease: %w", err)
	}
	changes := make(chan bool, 4)
	lease, err := bus.NewLease(bus.LeaseConfig{
		KV: kv, Key: analyzerLeaseKey, Holder: fmt.Sprintf("%s/%d", s.cfg.ServerID, os.Getpid()),
		OnChange: func(leader bool) { changes <- leader }, Logger: s.logger,
	})
	if err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return lease.Run(ctx) })
	// Every server evaluates the SLOs; the leader alone delivers.
	g.Go(func() error { return s.alerting.evaluate(ctx) })
	g.Go(func() error {
		var stop context.CancelFunc
		done := make(chan error, 1)
		for {
			select {
			case <-ctx.Done():
				if stop != nil {
					stop()
					<-done
				}
				return nil
			case err := <-done:
				stop = nil
				if err != nil {
					return err
				}
			case leader := <-changes:
				switch {
				case leader && stop == nil:
					var lctx context.Context
					lctx, stop = context.WithCancel(ctx)
					leaderGauge.Set(1)
					s.leading.Store(true)
					s.logger.Info("analyzer lease won: sending alerts", "server_id", s.cfg.ServerID)
					go func() { done <- s.alerting.deliver(lctx) }()
				case !leader && stop != nil:
					leaderGauge.Set(0)
					s.leading.Store(false)
					s.logger.Warn("analyzer lease lost: alert delivery stopped", "server_id", s.cfg.ServerID)
					stop()
					if err := <-done; err != nil {
						return err
					}
					stop = nil
				}
			}
		}
	})
	return g.Wait()
}
