package server

// Roles of the one binary on an external bus and TSDB (--role): partitioned
// aggregators, analyzers and API servers; see docs/architecture.md "Roles".

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshlens/meshlens/internal/aggregate"
	"github.com/meshlens/meshlens/internal/bus"
)

// The roles.
const (
	RoleAll        = ""           // one process: today's server
	RoleAggregator = "aggregator" // partitions of the results stream → rollups stream + TSDB
	RoleAnalyzer   = "analyzer"   // rollups stream → localization, SLOs, alerts (one leader), API
	RoleAPI        = "api"        // rollups stream → localization, API; never campaigns
)

// partitionLeaseTTL: a dead aggregator's partitions are taken over after
// at most this plus a poll (TTL/4).
const partitionLeaseTTL = 10 * time.Second

// rollupBacklogWindows: an analyzer starts that many windows back on the
// rollups stream, enough to fill the localizer's horizon.
const rollupBacklogWindows = 6

// aggregatorRole shares the results stream's partitions among the live
// aggregators: each holds about its fair share (partitions over live
// members, rounded up), one lease per partition, and runs an ingester for
// each partition it holds.
type aggregatorRole struct {
	s      *Server
	kv     jetstream.KeyValue
	n      int
	holder string
	ttl    time.Duration

	held    prometheus.Gauge
	members prometheus.Gauge
	// fair is this member's share; heldN the leases it holds. A lease
	// may be taken only below the share (LeaseConfig.May).
	fair, heldN atomic.Int64

	mu    sync.Mutex
	slots map[int]*partitionSlot
}

// partitionSlot is one partition's lease campaign and, while the lease is
// held, its ingester.
type partitionSlot struct {
	lease        *bus.Lease
	stopLease    context.CancelFunc
	leaseDone    chan struct{}
	mu           sync.Mutex
	cancelIngest context.CancelFunc
	ingestDone   chan struct{}
}

func newAggregatorRole(s *Server, kv jetstream.KeyValue) *aggregatorRole {
	r := &aggregatorRole{
		s: s, kv: kv, n: max(1, s.cfg.Pinglists.Partitions), ttl: partitionLeaseTTL,
		holder: fmt.Sprintf("%s/%d", s.cfg.ServerID, os.Getpid()),
		slots:  map[int]*partitionSlot{},
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshlens_aggregator_partitions_held",
			Help: "Partitions of the results stream whose lease this aggregator holds.",
		}),
		members: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshlens_aggregator_members",
			Help: "Live aggregators sharing the partitions, as this one sees them.",
		}),
	}
	s.registry.MustRegister(r.held, r.members)
	return r
}

// run shares partitions until ctx ends; then it stops every ingester and
// releases every lease, so that the others take over at once.
func (r *aggregatorRole) run(ctx context.Context) error {
	tick := time.NewTicker(r.ttl / 4)
	defer tick.Stop()
	seen := map[string]memberSeen{}
	defer func() {
		r.mu.Lock()
		slots := make([]*partitionSlot, 0, len(r.slots))
		for _, sl := range r.slots {
			slots = append(slots, sl)
		}
		r.mu.Unlock()
		for _, sl := range slots {
			sl.stop()
		}
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = r.kv.Delete(dctx, bus.AggregatorMemberKey(r.s.cfg.ServerID))
	}()
	for {
		r.share(ctx, seen)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

type memberSeen struct {
	rev   uint64
	since time.Time // monotonic: when rev was first seen
}

// share renews this aggregator's membership, keeps a lease campaign on
// every partition (watching: a dead holder is noticed whatever the share)
// and moves towards the fair share: leases are taken only below it
// (LeaseConfig.May), and one partition a round is released above it
// (another member joined).
func (r *aggregatorRole) share(ctx context.Context, seen map[string]memberSeen) {
	opCtx, cancel := context.WithTimeout(ctx, r.ttl/4)
	defer cancel()
	value, _ := json.Marshal(map[string]any{"holder": r.holder, "renewed": time.Now().UTC()})
	if _, err := r.kv.Put(opCtx, bus.AggregatorMemberKey(r.s.cfg.ServerID), value); err != nil {
		r.s.logger.Warn("aggregator: membership not renewed", "err", err)
		return
	}
	alive := r.aliveMembers(opCtx, seen)
	r.members.Set(float64(alive))
	fair := (r.n + alive - 1) / alive
	r.fair.Store(int64(fair))

	r.mu.Lock()
	defer r.mu.Unlock()
	var held []int
	for p := range r.n {
		sl := r.slots[p]
		if sl == nil {
			r.slots[p] = r.campaign(ctx, p)
			continue
		}
		if _, leader := sl.lease.Term(); leader {
			held = append(held, p)
		}
	}
	r.held.Set(float64(len(held)))
	if len(held) > fair {
		p := held[len(held)-1]
		sl := r.slots[p]
		delete(r.slots, p) // the next round campaigns (watches) again
		r.s.logger.Info("aggregator: releasing a partition to a new member", "partition", p, "held", len(held), "fair_share", fair)
		go sl.stop()
	}
}

// aliveMembers counts the aggregators whose membership key changed within
// a TTL on this process's monotonic clock (no clocks compared across
// machines), this one included.
func (r *aggregatorRole) aliveMembers(ctx context.Context, seen map[string]memberSeen) int {
	alive := 1
	keys, err := r.kv.ListKeysFiltered(ctx, bus.AggregatorMemberPrefix+"*")
	if err != nil {
		return alive
	}
	now := time.Now()
	for k := range keys.Keys() {
		if k == bus.AggregatorMemberKey(r.s.cfg.ServerID) {
			continue
		}
		e, err := r.kv.Get(ctx, k)
		if err != nil {
			continue
		}
		m, ok := seen[k]
		if !ok || m.rev != e.Revision() {
			m = memberSeen{rev: e.Revision(), since: now}
			seen[k] = m
		}
		if now.Sub(m.since) < r.ttl {
			alive++
		}
	}
	return alive
}

// campaign starts the lease of partition p; its ingester runs while the
// lease is held.
func (r *aggregatorRole) campaign(ctx context.Context, p int) *partitionSlot {
	sl := &partitionSlot{leaseDone: make(chan struct{})}
	lctx, stop := context.WithCancel(ctx)
	sl.stopLease = stop
	lease, err := bus.NewLease(bus.LeaseConfig{
		KV: r.kv, Key: bus.PartitionLeaseKey(p), Holder: r.holder, TTL: r.ttl, Logger: r.s.logger,
		May: func() bool { return r.heldN.Load() < r.fair.Load() },
		OnChange: func(leader bool) {
			if leader {
				r.heldN.Add(1)
				r.s.logger.Info("aggregator: partition lease won", "partition", p, "holder", r.holder)
				sl.startIngest(lctx, r, p)
			} else {
				r.heldN.Add(-1)
				r.s.logger.Info("aggregator: partition lease given up", "partition", p, "holder", r.holder)
				sl.stopIngest()
			}
		},
	})
	if err != nil { // only on a programming error: the config is ours
		panic(err)
	}
	sl.lease = lease
	go func() {
		defer close(sl.leaseDone)
		_ = lease.Run(lctx)
	}()
	return sl
}

// stop ends the ingester first, then the lease (released at once): the
// next holder must not find this one still publishing.
func (sl *partitionSlot) stop() {
	sl.stopIngest()
	sl.stopLease()
	<-sl.leaseDone
}

func (sl *partitionSlot) startIngest(ctx context.Context, r *aggregatorRole, p int) {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if sl.cancelIngest != nil {
		return
	}
	ictx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	sl.cancelIngest, sl.ingestDone = cancel, done
	go func() {
		defer close(done)
		r.ingest(ictx, p, sl.lease)
	}()
}

func (sl *partitionSlot) stopIngest() {
	sl.mu.Lock()
	cancel, done := sl.cancelIngest, sl.ingestDone
	sl.cancelIngest, sl.ingestDone = nil, nil
	sl.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// ingest runs partition p's ingester from its checkpoint while the lease
// is held, and again from the checkpoint after a failure to publish.
func (r *aggregatorRole) ingest(ctx context.Context, p int, lease *bus.Lease) {
	for ctx.Err() == nil {
		err := r.ingestOnce(ctx, p, lease)
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, errFenced):
			r.s.logger.Warn("aggregator: partition fenced off; stopping its ingester", "partition", p, "err", err)
			return
		case err != nil:
			r.s.logger.Error("aggregator: partition stopped; restarting from its checkpoint", "partition", p, "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (r *aggregatorRole) ingestOnce(ctx context.Context, p int, lease *bus.Lease) error {
	reg := &scopedRegisterer{Registerer: prometheus.WrapRegistererWith(prometheus.Labels{"partition": strconv.Itoa(p)}, r.s.registry)}
	defer reg.unregisterAll()
	agg, err := r.s.newPartitionAggregator(p, r.n, reg)
	if err != nil {
		return err
	}
	pub := &rollupPublisher{js: r.s.js, partition: p, holder: lease.Holder(), term: lease.Term, agents: agg.Agents,
		maxBytes: int(r.s.nc.MaxPayload()) - 64<<10, m: r.s.rollupM, log: r.s.logger}
	if err := pub.resume(ctx); err != nil {
		return err
	}
	in, err := aggregate.NewIngester(aggregate.IngesterConfig{JetStream: r.s.js, Partition: p, Partitions: r.n, Aggregator: agg, Logger: r.s.logger,
		AgentQuota: r.s.agentQuota(), QuotaSpan: r.s.cfg.Stream.MaxAge, Publish: pub.publish})
	if err != nil {
		return err
	}
	r.s.setPartitionAggregator(p, agg)
	defer r.s.setPartitionAggregator(p, nil)
	return in.Run(ctx)
}

// scopedRegisterer remembers what it registered, so that a partition's
// metrics go when its ingester stops and come back with the next one.
type scopedRegisterer struct {
	prometheus.Registerer
	mu sync.Mutex
	cs []prometheus.Collector
}

func (r *scopedRegisterer) Register(c prometheus.Collector) error {
	if err := r.Registerer.Register(c); err != nil {
		return err
	}
	r.mu.Lock()
	r.cs = append(r.cs, c)
	r.mu.Unlock()
	return nil
}

func (r *scopedRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func (r *scopedRegisterer) unregisterAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.cs {
		r.Registerer.Unregister(c)
	}
	r.cs = nil
}

// followRollups feeds the analyzer with every partition's sealed windows
// from the rollups stream, through the gate, until ctx ends.
func (s *Server) followRollups(ctx context.Context) error {
	n := max(1, s.cfg.Pinglists.Partitions)
	kv, err := s.js.KeyValue(ctx, bus.StateBucket)
	if err != nil {
		return fmt.Errorf("server: rollups: %w", err)
	}
	gate := newRollupGate(n, kv, s.rollupM)
	go func() { _ = gate.watchLeases(ctx, s.logger) }()
	st, err := s.js.Stream(ctx, bus.RollupsStream)
	if err != nil {
		return fmt.Errorf("server: rollups: %w", err)
	}
	last := st.CachedInfo().State.LastSeq
	start := last - min(last, uint64(n*rollupBacklogWindows)) + 1
	follow, err := bus.NewFollower(s.js, bus.FollowConfig{
		Stream: bus.RollupsStream, Filter: bus.RollupsSubjectPrefix + ".>", StartSeq: start,
		Name: "analyzer-rollups", Logger: s.logger,
	})
	if err != nil {
		return fmt.Errorf("server: rollups: %w", err)
	}
	defer follow.Stop()
	s.logger.Info("analyzer: following the rollups stream", "partitions", n, "from_seq", start)
	for {
		msg, _, err := follow.Next(ctx, time.Second)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil || msg == nil {
			continue
		}
		r, reason := gate.admit(ctx, msg.Subject(), msg.Headers(), msg.Data())
		if reason != "" {
			s.rollupM.refused.WithLabelValues(reason).Inc()
			s.logger.Debug("analyzer: rollup refused", "subject", msg.Subject(), "reason", reason, "holder", msg.Headers().Get(bus.RollupHolderHeader))
			continue
		}
		s.rollupM.accepted.Inc()
		s.noteRollupAgents(r.agents)
		s.analyzer.IngestWindow(r.partition, r.window)
		select {
		case s.analyzeWake <- struct{}{}:
		default:
		}
	}
}

// noteRollupAgents keeps the newest state of each agent the aggregators
// sent with their windows: the analyzer's agents, for liveness and lags.
func (s *Server) noteRollupAgents(agents []aggregate.AgentStatus) {
	s.partMu.Lock()
	defer s.partMu.Unlock()
	if s.rollupAgents == nil {
		s.rollupAgents = map[string]aggregate.AgentStatus{}
	}
	for _, a := range agents {
		if old, ok := s.rollupAgents[a.Agent]; !ok || a.LastSeen.After(old.LastSeen) {
			s.rollupAgents[a.Agent] = a
		}
	}
}

// agentStatuses are the agents this process knows: from its own
// aggregators, or in an analyzer or API role from the rollups.
func (s *Server) agentStatuses() map[string]aggregate.AgentStatus {
	out := map[string]aggregate.AgentStatus{}
	if s.cfg.Role == RoleAnalyzer || s.cfg.Role == RoleAPI {
		s.partMu.Lock()
		defer s.partMu.Unlock()
		for k, v := range s.rollupAgents {
			out[k] = v
		}
		return out
	}
	for _, agg := range s.aggregators() {
		for _, st := range agg.Agents() {
			out[st.Agent] = st
		}
	}
	return out
}

// checkRole refuses role settings that cannot work.
func checkRole(cfg Config) error {
	switch cfg.Role {
	case RoleAll:
		if cfg.QueryURL != "" {
			return errors.New("server: --query-url is for --role aggregator, analyzer or api (one process keeps its own TSDB; use --remote-write-url to copy it)")
		}
		return nil
	case RoleAggregator, RoleAnalyzer, RoleAPI:
	default:
		return fmt.Errorf("server: --role %q: want aggregator, analyzer or api (or none: everything in one process)", cfg.Role)
	}
	var missing []string
	if cfg.NATSURL == "" {
		missing = append(missing, "--nats-url (the roles share an external NATS JetStream cluster)")
	}
	if cfg.QueryURL == "" {
		missing = append(missing, "--query-url (the Prometheus-compatible TSDB the roles share)")
	}
	if cfg.Role == RoleAggregator && cfg.RemoteWrite.URL == "" {
		missing = append(missing, "--remote-write-url (where the aggregator writes its counters)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("server: --role %s needs %s", cfg.Role, strings.Join(missing, " and "))
	}
	if cfg.Partitions != nil {
		return errors.New("server: with --role the aggregators share the partitions through leases; no fixed partitions")
	}
	if len(cfg.RemoteWrite.ExternalLabels) > 0 {
		return errors.New("server: --remote-write-external-label with --role: the aggregators write one set of series together, which a label per process would split")
	}
	return nil
}
