// Package agent is the per-host runtime: it watches its pinglist on the
// bus, runs the responder and the probes, batches the results, spools
// them to disk and publishes them to JetStream exactly once. It traces
// the paths of lost and slow probes and publishes them, best effort.
//
// It imports probe, wire, bus names, pinglist and clock; nothing from the
// server side.
package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshlens/meshlens/internal/bus"
	"github.com/meshlens/meshlens/internal/clock"
	"github.com/meshlens/meshlens/internal/pinglist"
	"github.com/meshlens/meshlens/internal/probe"
	"github.com/meshlens/meshlens/internal/wire"
)

// Config configures an Agent. Zero values take the defaults.
type Config struct {
	// Host is this host's name: its pinglist key and the batches' agent.
	Host string
	// NATSURL is the bus, e.g. nats://server:4222 (comma-separated list
	// for a cluster).
	NATSURL string
	// CredsFile is a NATS credentials file (JWT + nkey), if the bus uses them.
	CredsFile string
	// TLS configures a TLS connection to the bus (CA, client certificate).
	TLS *tls.Config
	// NATSOptions are extra nats.go options (applied last).
	NATSOptions []nats.Option
	// ResponderAddr overrides where the responder listens (host:port);
	// default the pinglist's addr and responder port. Probes leave from
	// its host when that is a specific address.
	ResponderAddr string
	// SpoolDir holds unacknowledged batches, the agent's epoch and seq,
	// and the last pinglist. Required.
	SpoolDir string
	// SpoolMaxBytes bounds the spool (default 256 MiB); the oldest
	// batches are dropped first.
	SpoolMaxBytes int64
	// A batch is sealed at BatchMaxResults results (default 5,000) or
	// BatchMaxAge (default 5s), whichever comes first.
	BatchMaxResults int
	BatchMaxAge     time.Duration
	// PublishTimeout bounds the wait for one PubAck (default 5s).
	PublishTimeout time.Duration
	// Responder limits (see probe.ResponderConfig); zero takes its defaults.
	ResponderRatePerSource  float64
	ResponderBurstPerSource int
	// Path discovery: TraceRate traces per second at most (default
	// DefaultTraceRate; negative: no tracing), bursts of TraceBurst
	// (default DefaultTraceBurst); TTLs up to TraceMaxTTL (the fabric's
	// diameter in hops; default probe.DefaultTraceMaxTTL), a silent TTL
	// sent up to TraceQueries times (default probe.DefaultTraceQueries);
	// reports published every TraceFlush (default DefaultTraceFlush).
	TraceRate    float64
	TraceBurst   int
	TraceMaxTTL  int
	TraceQueries int
	TraceFlush   time.Duration
	// MaxExtraProbes bounds the extra probes per second evidence on
	// demand may add (pinglist.Boost), whatever the server asks (default
	// DefaultMaxExtraProbes; negative: none).
	MaxExtraProbes float64
	Version        string
	Logger         *slog.Logger
	Registerer     prometheus.Registerer
	Clock          clock.Clock
}

// DefaultMaxExtraProbes is Config.MaxExtraProbes's default: twice the
// server's default per-agent budget of evidence on demand.
const DefaultMaxExtraProbes = 20.0

const (
	defaultSpoolMaxBytes   = 256 << 20
	defaultBatchMaxResults = 5000
	defaultBatchMaxAge     = 5 * time.Second
	// maxBatchBytes leaves headroom under wire.MaxBatchBytes for the
	// batch's own fields.
	maxBatchBytes = wire.MaxBatchBytes - 64<<10
)

// Agent is one host's agent. Create it with New and start it with Run.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	m     *metrics
	spool *spool

	mu    sync.Mutex
	pl    *pinglist.Pinglist
	boost *pinglist.Boost // evidence on demand, nil when none
	// refusedFor is the request whose refused peers were counted (used
	// by the probe runtime's goroutine only).
	refusedFor *pinglist.Boost
	key        []byte
	prevKey    []byte
	changed    chan struct{}
	batch      []*wire.ProbeResult
	batchSz    int
	sched      *probe.Scheduler // current runtime's, for lag and marks
	// sealWake tells the seal loop the pinglist changed (its window).
	sealWake chan struct{}
	// sealMu serializes seals; lastMark is the last mark sealed (Unix ns).
	sealMu   sync.Mutex
	lastMark int64
	paths    paths
	// partition is the last pinglist's: batches keep going there even
	// if the pinglist is deleted.
	partition int
	// status is what the agent tells an operator: bus, host, liveness.
	status *fieldStatus
	// classes is each peer's class (peerClass), by name, from the
	// pinglist being probed: the probe counters' class label.
	classes atomic.Pointer[map[string]string]
}

// New checks cfg, opens the spool and loads the last pinglist and fleet
// key from it, so Run can probe before the bus answers.
func New(cfg Config) (*Agent, error) {
	switch {
	case cfg.Host == "":
		return nil, errors.New("agent: no host name")
	case cfg.NATSURL == "":
		return nil, fmt.Errorf("agent %s: no NATS URL", cfg.Host)
	case cfg.SpoolDir == "":
		return nil, fmt.Errorf("agent %s: no spool directory", cfg.Host)
	}
	if cfg.SpoolMaxBytes <= 0 {
		cfg.SpoolMaxBytes = defaultSpoolMaxBytes
	}
	if cfg.BatchMaxResults <= 0 {
		cfg.BatchMaxResults = defaultBatchMaxResults
	}
	cfg.BatchMaxResults = min(cfg.BatchMaxResults, wire.MaxResultsPerBatch)
	if cfg.BatchMaxAge <= 0 {
		cfg.BatchMaxAge = defaultBatchMaxAge
	}
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.TraceRate == 0 {
		cfg.TraceRate = DefaultTraceRate
	}
	if cfg.MaxExtraProbes == 0 {
		cfg.MaxExtraProbes = DefaultMaxExtraProbes
	}
	if cfg.TraceBurst <= 0 {
		cfg.TraceBurst = DefaultTraceBurst
	}
	if cfg.TraceMaxTTL <= 0 {
		cfg.TraceMaxTTL = probe.DefaultTraceMaxTTL
	}
	if cfg.TraceQueries <= 0 {
		cfg.TraceQueries = probe.DefaultTraceQueries
	}
	if cfg.TraceQueries > maxTraceQueries {
		return nil, fmt.Errorf("agent %s: %d trace queries per TTL above %d", cfg.Host, cfg.TraceQueries, maxTraceQueries)
	}
	if cfg.TraceMaxTTL > wire.MaxHops {
		return nil, fmt.Errorf("agent %s: trace max TTL %d above %d", cfg.Host, cfg.TraceMaxTTL, wire.MaxHops)
	}
	if cfg.TraceFlush <= 0 {
		cfg.TraceFlush = DefaultTraceFlush
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	tm := newTraceMetrics()
	if cfg.Registerer != nil {
		for _, c := range tm.collectors() {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("agent: register metrics: %w", err)
			}
		}
	}
	sp, err := openSpool(cfg.SpoolDir, cfg.SpoolMaxBytes, m)
	if err != nil {
		return nil, err
	}
	a := &Agent{
		cfg: cfg, log: cfg.Logger.With("agent", cfg.Host), m: m, spool: sp, status: newFieldStatus(),
		changed:  make(chan struct{}, 1),
		sealWake: make(chan struct{}, 1),
	}
	now := cfg.Clock.Now()
	a.paths = paths{m: tm, queue: make(chan traceJob, traceQueueLen), maxTTL: cfg.TraceMaxTTL, queries: cfg.TraceQueries, enabled: cfg.TraceRate > 0,
		budget: probe.NewTokenBucket(cfg.TraceRate, cfg.TraceBurst, now), onDemand: probe.NewTokenBucket(onDemandRate, 5, now),
		mins: make(map[pairKey]*pairMin), held: make(map[int64]int)}
	if b, err := os.ReadFile(filepath.Join(cfg.SpoolDir, pinglistFile)); err == nil {
		if pl, err := pinglist.Decode(b); err == nil && pl.Host == cfg.Host {
			a.pl, a.partition = pl, pl.Partition
		} else {
			a.log.Warn("ignoring the cached pinglist", "err", err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(cfg.SpoolDir, fleetKeyFile)); err == nil {
		a.key = b
	}
	return a, nil
}

// Epoch is this agent's incarnation, fixed for the life of its spool.
func (a *Agent) Epoch() uint64 { return a.spool.epoch }

// Run runs the agent until ctx ends. On the way out it seals the batch
// being built into the spool, so a clean stop loses nothing.
func (a *Agent) Run(ctx context.Context) error {
	reconnected := make(chan struct{}, 1)
	opts := []nats.Option{
		nats.Name("meshlens-agent " + a.cfg.Host),
		// Start even when the bus is away: the spool and the cached
		// pinglist carry the agent until it is back.
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		// No reconnect buffer: a publish while disconnected fails at once
		// and the batch stays in the spool, instead of a hidden second
		// copy going out on reconnect.
		nats.ReconnectBufSize(-1),
	}
	opts = append(opts, a.busOptions(reconnected)...)
	if a.cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(a.cfg.CredsFile))
	}
	if a.cfg.TLS != nil {
		opts = append(opts, nats.Secure(a.cfg.TLS))
	}
	opts = append(opts, a.cfg.NATSOptions...)
	nc, err := nats.Connect(a.cfg.NATSURL, opts...)
	if err != nil {
		return fmt.Errorf("agent %s: connect to %s: %w", a.cfg.Host, a.cfg.NATSURL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("agent %s: jetstream: %w", a.cfg.Host, err)
	}

	var wg sync.WaitGroup
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watchers := newBroadcast()
	go func() {
		for {
			select {
			case <-wctx.Done():
				return
			case <-reconnected:
				watchers.fire()
			}
		}
	}()
	wg.Add(4)
	go func() { defer wg.Done(); a.watch(wctx, js, bus.PinglistBucket, a.cfg.Host, a.onPinglist, watchers) }()
	go func() { defer wg.Done(); a.watch(wctx, js, bus.EvidenceBucket, a.cfg.Host, a.onBoost, watchers) }()
	go func() {
		defer wg.Done()
		a.watch(wctx, js, bus.FleetBucket, bus.ResponderKeyKey, a.onFleetKey, watchers)
	}()
	pctx, stopPublish := context.WithCancel(context.Background())
	defer stopPublish()
	go func() { defer wg.Done(); a.publishLoop(pctx, js) }()

	sealDone := make(chan struct{})
	sctx, stopSeal := context.WithCancel(context.Background())
	go func() { defer close(sealDone); a.sealLoop(sctx) }()

	wg.Add(1)
	go func() { defer wg.Done(); a.helloLoop(wctx, nc) }()

	tctx, stopTrace := context.WithCancel(context.Background())
	traceDone := make(chan struct{})
	go func() { defer close(traceDone); a.tracePaths(tctx, nc) }()

	a.runProbes(ctx) // until ctx ends, every probe reported
	stopTrace()
	<-traceDone
	stopSeal()
	<-sealDone
	a.seal() // the partial batch, into the spool for the next start
	stopWatch()
	stopPublish()
	wg.Wait()
	return nil
}

// broadcast wakes every watcher (to re-create its watch after a reconnect).
type broadcast struct {
	mu sync.Mutex
	ch chan struct{}
}

func newBroadcast() *broadcast { return &broadcast{ch: make(chan struct{})} }

func (b *broadcast) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ch
}

func (b *broadcast) fire() {
	b.mu.Lock()
	close(b.ch)
	b.ch = make(chan struct{})
	b.mu.Unlock()
}

// watch follows one KV key, re-creating the watch when the bucket is
// missing, the watch ends, or the connection came back.
func (a *Agent) watch(ctx context.Context, js jetstream.JetStream, bucket, key string, apply func(jetstream.KeyValueEntry), restart *broadcast) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		again := restart.wait()
		err := a.watchOnce(ctx, js, bucket, key, apply, again)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			a.log.Debug("watch", "bucket", bucket, "key", key, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			case <-again:
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
	}
}

func (a *Agent) watchOnce(ctx context.Context, js jetstream.JetStream, bucket, key string, apply func(jetstream.KeyValueEntry), restart <-chan struct{}) error {
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return fmt.Errorf("agent: bucket %s: %w", bucket, err)
	}
	w, err := kv.Watch(ctx, key)
	if err != nil {
		return fmt.Errorf("agent: watch %s/%s: %w", bucket, key, err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-restart:
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("agent: watch %s/%s ended", bucket, key)
			}
			if e != nil { // nil marks the end of the initial values
				apply(e)
			}
		}
	}
}

func (a *Agent) onPinglist(e jetstream.KeyValueEntry) {
	if e.Operation() != jetstream.KeyValuePut {
		// Deleted: this host left the topology. Stop probing rather than
		// measure peers nobody asked for.
		a.mu.Lock()
		a.pl = nil
		a.mu.Unlock()
		os.Remove(filepath.Join(a.cfg.SpoolDir, pinglistFile))
		a.log.Info("pinglist deleted; probing stops")
		a.notify()
		return
	}
	pl, err := pinglist.Decode(e.Value())
	if err == nil && pl.Host != a.cfg.Host {
		err = fmt.Errorf("agent %s: pinglist is for host %q", a.cfg.Host, pl.Host)
	}
	if err != nil {
		a.m.pinglistRejected.Inc()
		a.log.Error("rejected pinglist", "revision", e.Revision(), "err", err)
		return
	}
	if err := writeFileAtomic(filepath.Join(a.cfg.SpoolDir, pinglistFile), e.Value(), 0o640); err != nil {
		a.m.spoolErrors.Inc()
		a.log.Warn("cannot cache the pinglist", "err", err)
	}
	a.mu.Lock()
	a.pl, a.partition = pl, pl.Partition
	a.mu.Unlock()
	if a.status.unknown() { // the topology gained this host
		a.setKnown(bus.Hello{Known: true})
	}
	a.log.Info("pinglist", "version", pl.Version, "peers", len(pl.Peers), "interval", time.Duration(pl.Interval))
	a.notify()
}

// onBoost takes an evidence request: some peers probed several times an
// interval until it is withdrawn or lapses. It is not cached: after a
// restart the server asks again if it still wants it.
func (a *Agent) onBoost(e jetstream.KeyValueEntry) {
	var b *pinglist.Boost
	if e.Operation() == jetstream.KeyValuePut {
		var err error
		b, err = pinglist.DecodeBoost(e.Value())
		if err == nil && b.Host != a.cfg.Host {
			err = fmt.Errorf("agent %s: evidence request is for host %q", a.cfg.Host, b.Host)
		}
		if err != nil {
			a.m.evidenceRejected.Inc()
			a.log.Error("rejected evidence request", "revision", e.Revision(), "err", err)
			return
		}
	}
	a.mu.Lock()
	a.boost = b
	a.mu.Unlock()
	if b.Active(a.cfg.Clock.Now()) {
		a.log.Info("evidence requested", "peers", len(b.Peers), "probes_per_interval", b.Probes, "until", b.Until, "elements", b.Elements)
	} else {
		a.log.Info("evidence request withdrawn")
	}
	a.notify()
}

func (a *Agent) onFleetKey(e jetstream.KeyValueEntry) {
	if e.Operation() != jetstream.KeyValuePut {
		return // keep the last key: a deleted key must not stop probing
	}
	key := e.Value()
	if len(key) < 16 {
		a.m.pinglistRejected.Inc()
		a.log.Error("rejected fleet key", "bytes", len(key))
		return
	}
	if err := writeFileAtomic(filepath.Join(a.cfg.SpoolDir, fleetKeyFile), key, 0o600); err != nil {
		a.m.spoolErrors.Inc()
	}
	a.mu.Lock()
	if string(a.key) != string(key) {
		a.prevKey, a.key = a.key, append([]byte(nil), key...)
	}
	a.mu.Unlock()
	a.notify()
}

func (a *Agent) notify() {
	for _, c := range []chan struct{}{a.changed, a.sealWake} {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

func (a *Agent) plChanged() <-chan struct{} { return a.sealWake }

// probeRuntime is one incarnation of responder + probers + scheduler,
// rebuilt when the addresses they bind change.
type probeRuntime struct {
	respAddr string
	source   netip.Addr
	// icmp: whether an icmp socket is open. A raw one sees every echo
	// reply of the host, so it is opened only when the pinglist asks.
	icmp   bool
	resp   *probe.Responder
	udp    *probe.UDPProber
	sched  *probe.Scheduler
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (rt *probeRuntime) stop() {
	rt.cancel()
	rt.wg.Wait()
}

// runProbes keeps the probe runtime in line with the pinglist and key
// until ctx ends.
func (a *Agent) runProbes(ctx context.Context) {
	var rt *probeRuntime
	defer func() {
		if rt != nil {
			a.setTracer(nil, nil, netip.Addr{})
			rt.stop()
		}
	}()
	retry := time.NewTicker(reconcileEvery)
	defer retry.Stop()
	for {
		a.status.heartbeat.Store(time.Now().UnixNano())
		rt = a.reconcile(ctx, rt)
		// An evidence request lapses at its end unless renewed.
		var lapse <-chan time.Time
		a.mu.Lock()
		b := a.boost
		a.mu.Unlock()
		if now := a.cfg.Clock.Now(); b.Active(now) {
			lapse = a.cfg.Clock.After(b.Until.Sub(now))
		}
		select {
		case <-ctx.Done():
			return
		case <-a.changed:
		case <-retry.C:
		case <-lapse:
		}
	}
}

func (a *Agent) reconcile(ctx context.Context, rt *probeRuntime) *probeRuntime {
	a.mu.Lock()
	pl, key, prevKey, boost := a.pl, a.key, a.prevKey, a.boost
	a.mu.Unlock()
	if pl == nil {
		if rt != nil {
			a.setTracer(nil, nil, netip.Addr{})
			rt.stop()
		}
		a.setSched(nil)
		return nil
	}
	respAddr := a.cfg.ResponderAddr
	if respAddr == "" {
		respAddr = net.JoinHostPort(pl.Addr, strconv.Itoa(pl.ResponderPort))
	}
	var source netip.Addr
	if host, _, err := net.SplitHostPort(respAddr); err == nil {
		if ip, err := netip.ParseAddr(host); err == nil && !ip.IsUnspecified() {
			source = ip
		}
	}
	icmp := slices.Contains(pl.Protocols, wire.Protocol_PROTOCOL_ICMP.Name())
	if rt != nil && (rt.respAddr != respAddr || rt.source != source || rt.icmp != icmp) {
		a.setTracer(nil, nil, netip.Addr{})
		rt.stop()
		rt = nil
	}
	if rt == nil {
		var err error
		if rt, err = a.startRuntime(ctx, respAddr, source, icmp); err != nil {
			a.log.Error("cannot start probing", "err", err)
			return nil
		}
	}
	keys := [][]byte{}
	for _, k := range [][]byte{key, prevKey} {
		if len(k) >= 16 {
			keys = append(keys, k)
		}
	}
	if rt.resp == nil {
		rt.resp = a.startResponder(ctx, rt, respAddr, keys)
	} else if err := rt.resp.SetKeys(keys); err != nil {
		a.log.Error("responder keys", "err", err)
	}
	if len(key) >= 16 {
		if err := rt.udp.SetKey(key); err != nil {
			a.log.Error("udp prober key", "err", err)
		}
	}
	targets := a.boosted(a.targets(pl), pl, boost)
	rt.sched.SetTargets(targets, time.Duration(pl.Interval))
	a.m.pinglistVersion.Set(float64(pl.Version))
	return rt
}

func (a *Agent) startRuntime(ctx context.Context, respAddr string, source netip.Addr, icmp bool) (*probeRuntime, error) {
	rctx, cancel := context.WithCancel(ctx)
	rt := &probeRuntime{respAddr: respAddr, source: source, icmp: icmp, cancel: cancel}
	udp, err := probe.NewUDPProber(probe.UDPProberConfig{Local: source, Clock: a.cfg.Clock, Registerer: a.cfg.Registerer})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("agent %s: %w", a.cfg.Host, err)
	}
	rt.udp = udp
	if tr := a.startTracer(udp); tr != nil {
		rt.wg.Add(1)
		go func() { defer rt.wg.Done(); tr.Run(rctx) }()
		a.setTracer(tr, udp, source)
	}
	tcp, err := probe.NewTCPProber(probe.TCPProberConfig{Local: source, Clock: a.cfg.Clock})
	if err != nil {
		a.setTracer(nil, nil, netip.Addr{})
		cancel()
		return nil, fmt.Errorf("agent %s: %w", a.cfg.Host, err)
	}
	rt.wg.Add(1)
	go func() {
		defer rt.wg.Done()
		if err := tcp.Run(rctx); err != nil {
			a.log.Error("tcp prober", "err", err)
		}
	}()
	probers := map[wire.Protocol]probe.Prober{
		wire.Protocol_PROTOCOL_TCP:  tcp,
		wire.Protocol_PROTOCOL_UDP:  udp,
		wire.Protocol_PROTOCOL_HTTP: probe.NewBlocking(&probe.HTTPProber{Clock: a.cfg.Clock}, 64),
	}
	if icmp {
		p, err := probe.NewICMPProber(probe.ICMPProberConfig{Local: source, Clock: a.cfg.Clock})
		if err != nil {
			// The scheduler reports each icmp probe as a local error, so
			// the missing capability shows in the data, not only in a log.
			a.log.Error("icmp probes disabled", "err", err)
		} else {
			probers[wire.Protocol_PROTOCOL_ICMP] = probe.NewBlocking(p, 512)
			rt.wg.Add(1)
			go func() { defer rt.wg.Done(); p.Run(rctx) }()
		}
	}
	rt.sched = probe.NewScheduler(probe.SchedulerConfig{Clock: a.cfg.Clock, Probers: probers, Report: a.report, Registerer: a.cfg.Registerer})
	a.setSched(rt.sched)
	rt.wg.Add(2)
	go func() {
		defer rt.wg.Done()
		if err := udp.Run(rctx); err != nil {
			a.log.Error("udp prober", "err", err)
		}
	}()
	go func() { defer rt.wg.Done(); rt.sched.Run(rctx) }()
	return rt, nil
}

func (a *Agent) startResponder(ctx context.Context, rt *probeRuntime, addr string, keys [][]byte) *probe.Responder {
	var traceBack func(from, local netip.Addr, port uint16, tb probe.TraceBack)
	if a.paths.enabled {
		traceBack = a.onTraceBack
	}
	resp, err := probe.NewResponder(probe.ResponderConfig{
		Addr: addr, Keys: keys, Clock: a.cfg.Clock, Registerer: a.cfg.Registerer, Logger: a.log, TraceBack: traceBack,
		RatePerSource: a.cfg.ResponderRatePerSource, BurstPerSource: a.cfg.ResponderBurstPerSource,
	})
	if err != nil {
		// Keep probing: peers will see this host refuse or drop, which is
		// the truth; retried every 10 s.
		a.m.responderErrors.Inc()
		a.log.Error("responder", "err", err)
		return nil
	}
	rctx, cancel := context.WithCancel(ctx)
	prev := rt.cancel
	rt.cancel = func() { cancel(); prev() }
	rt.wg.Add(1)
	go func() {
		defer rt.wg.Done()
		if err := resp.Run(rctx); err != nil {
			a.m.responderErrors.Inc()
			a.log.Error("responder stopped", "err", err)
		}
	}()
	return resp
}

func (a *Agent) setSched(s *probe.Scheduler) {
	a.mu.Lock()
	a.sched = s
	a.mu.Unlock()
}

// boosted adds the extra probes of an active evidence request to targets:
// Probes-1 copies of each listed peer's targets, peers taken in the
// request's order while the extra probes stay within MaxExtraProbes.
func (a *Agent) boosted(targets []probe.Target, pl *pinglist.Pinglist, b *pinglist.Boost) []probe.Target {
	now := a.cfg.Clock.Now()
	if !b.Active(now) || a.cfg.MaxExtraProbes < 0 {
		a.m.evidencePeers.Set(0)
		return targets
	}
	byPeer := map[string][]probe.Target{}
	for _, t := range targets {
		if t.Protocol != wire.Protocol_PROTOCOL_HTTP {
			byPeer[t.Name] = append(byPeer[t.Name], t)
		}
	}
	probes := min(b.Probes, pinglist.MaxBoostProbes)
	perPeer := float64(probes-1) / time.Duration(pl.Interval).Seconds()
	var rate float64
	var peers, refused int
	for _, p := range b.Peers {
		ts := byPeer[p]
		cost := perPeer * float64(len(ts))
		if len(ts) == 0 || rate+cost > a.cfg.MaxExtraProbes {
			refused++
			continue
		}
		delete(byPeer, p) // (a peer listed twice counts once)
		rate += cost
		peers++
		for _, t := range ts {
			for c := 1; c < probes; c++ {
				t.Copy, t.Copies = uint8(c), uint8(probes)
				targets = append(targets, t)
			}
		}
	}
	a.m.evidencePeers.Set(float64(peers))
	if a.refusedFor != b { // (reconciled again and again: count once)
		a.refusedFor = b
		a.m.evidenceRefused.Add(float64(refused))
	}
	return targets
}

// Peer classes, the probe counters' class label: a peer's pinglist level,
// so an operator sees at a glance whether loss is within racks, across
// racks or across DCs.
const (
	classIntraRack = "intra_rack"
	classIntraDC   = "intra_dc"
	classInterDC   = "inter_dc"
	classHTTP      = "http"  // the pinglist's service targets
	classOther     = "other" // a level this agent does not know, or a peer no longer listed
)

func levelClass(level int) string {
	switch level {
	case pinglist.LevelIntraRack:
		return classIntraRack
	case pinglist.LevelIntraDC:
		return classIntraDC
	case pinglist.LevelInterDC:
		return classInterDC
	}
	return classOther
}

// peerClass is the class of a result's peer in the pinglist being probed.
func (a *Agent) peerClass(r *wire.ProbeResult) string {
	if r.Protocol == wire.Protocol_PROTOCOL_HTTP {
		return classHTTP
	}
	if m := a.classes.Load(); m != nil {
		if c, ok := (*m)[r.Dst]; ok {
			return c
		}
	}
	return classOther
}

// targets expands a pinglist into what the scheduler probes, and records
// each peer's class.
func (a *Agent) targets(pl *pinglist.Pinglist) []probe.Target {
	var out []probe.Target
	timeout := time.Duration(pl.Timeout)
	classes := make(map[string]string, len(pl.Peers))
	defer a.classes.Store(&classes)
	for _, p := range pl.Peers {
		if p.Host == a.cfg.Host {
			continue
		}
		if _, ok := classes[p.Host]; !ok { // (listed twice: the first level)
			classes[p.Host] = levelClass(p.Level)
		}
		ip, err := netip.ParseAddr(p.Addr)
		if err != nil {
			a.m.pinglistRejected.Inc()
			a.log.Error("pinglist peer with a bad address", "peer", p.Host, "addr", p.Addr)
			continue
		}
		for _, proto := range pl.Protocols {
			pr, err := wire.ParsePeerProtocol(proto)
			if err != nil {
				continue // pinglist.Validate refused it already
			}
			// Only the responder listens on a port; the kernel answers
			// the others (icmp echo) at the bare address.
			var port uint16
			if pr.NeedsResponder() {
				port = uint16(pl.ResponderPort)
			}
			out = append(out, probe.Target{Name: p.Host, Protocol: pr, Addr: netip.AddrPortFrom(ip.Unmap(), port), Timeout: timeout})
		}
	}
	for _, h := range pl.HTTPTargets {
		out = append(out, probe.Target{Name: h.Name, Protocol: wire.Protocol_PROTOCOL_HTTP, Timeout: timeout,
			HTTP: probe.HTTPCheck{URL: h.URL, ExpectStatus: h.ExpectStatus, ExpectBody: h.ExpectBody}})
	}
	return out
}
