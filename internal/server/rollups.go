package server

// The rollups stream between the roles: a partitioned aggregator publishes
// each sealed window of the partitions it holds on meshlens.rollups.<p>;
// analyzers read every partition's windows and merge them.
//
// Two aggregators never both publish a partition's windows, by
// construction: each publish names the sequence of the last message on the
// partition's subject (JetStream's Nats-Expected-Last-Subject-Sequence),
// so a second writer's publish is refused by the stream itself, and each
// message carries the term of the publisher's lease (the lease revision it
// won at, which grows with every change of holder), so that a writer that
// finds a newer term on the subject knows it was replaced and stops. A new
// holder resumes after the last window on the subject: what the previous
// one published is never published twice.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshlens/meshlens/internal/aggregate"
	"github.com/meshlens/meshlens/internal/bus"
	"github.com/meshlens/meshlens/internal/wire"
)

// errFenced: another aggregator with a newer lease term publishes this
// partition now.
var errFenced = errors.New("partition taken over by a newer lease holder")

// rollupMetrics are shared by the publishers and the follower of a process.
type rollupMetrics struct {
	published    *prometheus.CounterVec
	idle         *prometheus.CounterVec
	bytes        prometheus.Counter
	skipped      prometheus.Counter
	pairsDropped prometheus.Counter
	accepted     prometheus.Counter
	refused      *prometheus.CounterVec
}

// Reasons of meshlens_rollups_refused_total.
var rollupRefusals = []string{"malformed", "too_large", "invalid_field", "other", "bad_partition", "bad_header", "not_holder", "stale_term", "duplicate", "out_of_order"}

func newRollupMetrics(reg prometheus.Registerer) *rollupMetrics {
	m := &rollupMetrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_rollups_published_total",
			Help: "Sealed windows this aggregator published on the rollups stream, by partition.",
		}, []string{"partition"}),
		idle: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_rollups_idle_published_total",
			Help: "Empty windows this aggregator published on the rollups stream, by partition: a window end its partition's seal passed with nothing of its own there (no agents, or all silent), so that analyzers need not wait for it. Not in meshlens_rollups_published_total or _bytes_total.",
		}, []string{"partition"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_rollups_published_bytes_total",
			Help: "Bytes of the sealed windows this aggregator published.",
		}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_rollups_skipped_total",
			Help: "Sealed windows not published because the partition's subject already held them (re-sealed after a takeover or restart).",
		}),
		pairsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_rollups_pairs_dropped_total",
			Help: "Sealed windows published without their host pairs' probe counts, which made them too large (evidence on demand cannot plan from that partition's window).",
		}),
		accepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_rollups_accepted_total",
			Help: "Partitions' sealed windows the analyzer took from the rollups stream.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_rollups_refused_total",
			Help: "Partitions' sealed windows the analyzer refused, by reason: the decoder's (malformed, too_large, invalid_field, other), bad_partition, bad_header, not_holder (its publisher never held the partition's lease), stale_term (an older lease than one already seen), duplicate, out_of_order.",
		}, []string{"reason"}),
	}
	for _, r := range rollupRefusals {
		m.refused.WithLabelValues(r)
	}
	reg.MustRegister(m.published, m.idle, m.bytes, m.skipped, m.pairsDropped, m.accepted, m.refused)
	return m
}

// rollupPublisher publishes one partition's sealed windows for the holder
// of its lease.
type rollupPublisher struct {
	js        jetstream.JetStream
	partition int
	holder    string
	// term returns the lease term and whether the lease is still held.
	term func() (uint64, bool)
	// agents are the partition's agents, sent with each window (nil: none).
	agents func() []aggregate.AgentStatus
	// maxBytes bounds a message: the bus's max_payload (NATS defaults to
	// 1 MiB) less room for the headers.
	maxBytes int
	m        *rollupMetrics
	log      *slog.Logger

	lastSeq    uint64 // of the last message on the subject
	lastWindow int64  // its window start, unix ns
}

// resume reads where the partition's subject ends.
func (p *rollupPublisher) resume(ctx context.Context) error {
	st, err := p.js.Stream(ctx, bus.RollupsStream)
	if err != nil {
		return fmt.Errorf("rollups: %w", err)
	}
	msg, err := st.GetLastMsgForSubject(ctx, bus.RollupSubject(p.partition))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		p.lastSeq, p.lastWindow = 0, 0
		return nil
	case err != nil:
		return fmt.Errorf("rollups: last window of partition %d: %w", p.partition, err)
	}
	term, _ := strconv.ParseUint(msg.Header.Get(bus.RollupTermHeader), 10, 64)
	if mine, _ := p.term(); term > mine {
		return fmt.Errorf("%w: term %d of %s on the subject, mine is %d", errFenced, term, msg.Header.Get(bus.RollupHolderHeader), mine)
	}
	start, err := strconv.ParseInt(msg.Header.Get(bus.RollupWindowHeader), 10, 64)
	if err != nil {
		return fmt.Errorf("rollups: partition %d: last message %d has no window start: %w", p.partition, msg.Sequence, err)
	}
	p.lastSeq, p.lastWindow = msg.Sequence, start
	return nil
}

// publish publishes the windows the subject does not hold yet, in order.
func (p *rollupPublisher) publish(ctx context.Context, sealed []*aggregate.SealedWindow) error {
	for _, w := range sealed {
		start := w.Start.UnixNano()
		if start <= p.lastWindow {
			p.m.skipped.Inc()
			continue
		}
		term, held := p.term()
		if !held {
			return fmt.Errorf("%w: lease of partition %d lost", errFenced, p.partition)
		}
		var agents []aggregate.AgentStatus
		if p.agents != nil {
			agents = p.agents()
		}
		data, err := aggregate.EncodeWindow(p.partition, w, agents)
		if errors.Is(err, wire.ErrTooLarge) || (err == nil && p.maxBytes > 0 && len(data) > p.maxBytes) {
			// The host pairs' probe counts are what grows with the
			// fabric; the rollups the localizer needs are kept.
			bare := *w
			bare.Pairs = nil
			data, err = aggregate.EncodeWindow(p.partition, &bare, agents)
			p.m.pairsDropped.Inc()
		}
		if err != nil {
			return err
		}
		msg := nats.NewMsg(bus.RollupSubject(p.partition))
		msg.Data = data
		msg.Header.Set(bus.RollupHolderHeader, p.holder)
		msg.Header.Set(bus.RollupTermHeader, strconv.FormatUint(term, 10))
		msg.Header.Set(bus.RollupWindowHeader, strconv.FormatInt(start, 10))
		ack, err := p.js.PublishMsg(ctx, msg, jetstream.WithMsgID(bus.RollupMsgID(p.partition, start)), jetstream.WithExpectLastSequencePerSubject(p.lastSeq))
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
			// Someone else wrote: a newer holder fences us; an older
			// one slipped a last window in, after which we go on.
			if err := p.resume(ctx); err != nil {
				return err
			}
			p.log.Warn("rollups: the partition's subject moved under this holder; resumed after it", "partition", p.partition, "last_seq", p.lastSeq)
			if start <= p.lastWindow {
				p.m.skipped.Inc()
				continue
			}
			ack, err = p.js.PublishMsg(ctx, msg, jetstream.WithMsgID(bus.RollupMsgID(p.partition, start)), jetstream.WithExpectLastSequencePerSubject(p.lastSeq))
		}
		if err != nil {
			return fmt.Errorf("rollups: publish window %s of partition %d: %w", w.Start.UTC().Format(time.RFC3339), p.partition, err)
		}
		if !ack.Duplicate {
			p.lastSeq = ack.Sequence
		}
		p.lastWindow = start
		if w.Empty() {
			p.m.idle.WithLabelValues(strconv.Itoa(p.partition)).Inc()
			continue
		}
		p.m.published.WithLabelValues(strconv.Itoa(p.partition)).Inc()
		p.m.bytes.Add(float64(len(data)))
	}
	return nil
}

// rollupGate decides which rollups an analyzer takes: from a holder of
// the partition's lease, in lease terms that never go back, each window
// once and in order.
type rollupGate struct {
	partitions int
	kv         jetstream.KeyValue
	m          *rollupMetrics

	mu         sync.Mutex
	holders    map[int]map[string]uint64 // partition -> holder -> highest lease revision seen
	lastTerm   map[int]uint64
	lastWindow map[int]int64
}

func newRollupGate(partitions int, kv jetstream.KeyValue, m *rollupMetrics) *rollupGate {
	return &rollupGate{partitions: partitions, kv: kv, m: m, holders: map[int]map[string]uint64{}, lastTerm: map[int]uint64{}, lastWindow: map[int]int64{}}
}

// watchLeases records every holder of every partition lease as it
// changes, until ctx ends.
func (g *rollupGate) watchLeases(ctx context.Context, log *slog.Logger) error {
	for ctx.Err() == nil {
		w, err := g.kv.Watch(ctx, "lease.partition.*")
		if err != nil {
			log.Warn("rollups: watch partition leases; retrying", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		for e := range w.Updates() {
			if e != nil {
				g.noteLease(e.Key(), e.Value(), e.Revision())
			}
		}
		_ = w.Stop()
	}
	return nil
}

func (g *rollupGate) noteLease(key string, value []byte, rev uint64) {
	var p int
	if _, err := fmt.Sscanf(key, "lease.partition.%d", &p); err != nil {
		return
	}
	holder := bus.LeaseHolderOf(value)
	if holder == "" {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.holders[p] == nil {
		g.holders[p] = map[string]uint64{}
	}
	g.holders[p][holder] = max(g.holders[p][holder], rev)
}

// heldBy reports whether holder held partition's lease at term or later.
func (g *rollupGate) heldBy(ctx context.Context, partition int, holder string, term uint64) bool {
	g.mu.Lock()
	rev, ok := g.holders[partition][holder]
	g.mu.Unlock()
	if ok && rev >= term {
		return true
	}
	// The watch may lag the stream: ask the bucket.
	e, err := g.kv.Get(ctx, bus.PartitionLeaseKey(partition))
	if err != nil {
		return false
	}
	g.noteLease(e.Key(), e.Value(), e.Revision())
	return bus.LeaseHolderOf(e.Value()) == holder && e.Revision() >= term
}

// admittedRollup is a partition's window the analyzer takes.
type admittedRollup struct {
	partition int
	window    *aggregate.SealedWindow
	agents    []aggregate.AgentStatus
}

// admit checks a rollup message and decodes it; the reason is "" when it
// is taken.
func (g *rollupGate) admit(ctx context.Context, subject string, hdr nats.Header, data []byte) (admittedRollup, string) {
	var p int
	if _, err := fmt.Sscanf(subject, bus.RollupsSubjectPrefix+".%d", &p); err != nil || p < 0 || p >= g.partitions {
		return admittedRollup{}, "bad_partition"
	}
	holder := hdr.Get(bus.RollupHolderHeader)
	term, err := strconv.ParseUint(hdr.Get(bus.RollupTermHeader), 10, 64)
	if holder == "" || err != nil || term == 0 {
		return admittedRollup{}, "bad_header"
	}
	dp, w, agents, err := aggregate.DecodeWindow(data)
	if err != nil {
		return admittedRollup{}, wire.Reason(err)
	}
	if dp != p {
		return admittedRollup{}, "bad_partition"
	}
	g.mu.Lock()
	lastTerm, lastWindow := g.lastTerm[p], g.lastWindow[p]
	g.mu.Unlock()
	start := w.Start.UnixNano()
	switch {
	case term < lastTerm:
		return admittedRollup{}, "stale_term"
	case start == lastWindow:
		return admittedRollup{}, "duplicate"
	case start < lastWindow:
		return admittedRollup{}, "out_of_order"
	case !g.heldBy(ctx, p, holder, term):
		return admittedRollup{}, "not_holder"
	}
	g.mu.Lock()
	g.lastTerm[p], g.lastWindow[p] = term, start
	g.mu.Unlock()
	return admittedRollup{partition: p, window: w, agents: agents}, ""
}
