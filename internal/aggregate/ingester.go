package aggregate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshlens/meshlens/internal/bus"
	"github.com/meshlens/meshlens/internal/clock"
	"github.com/meshlens/meshlens/internal/wire"
)

// DefaultSealEvery is how often an idle ingester checks for windows to seal.
const DefaultSealEvery = time.Second

// IngesterConfig wires one partition's ingester.
type IngesterConfig struct {
	JetStream jetstream.JetStream
	Partition int
	// Partitions is how many there are: a batch on this partition's
	// subject from an agent that belongs to another (bus.AgentPartition
	// of its rack, or during an upgrade bus.Partition of its name) is
	// refused as wrong_partition, so that no agent is counted in two
	// partitions' windows (0: not checked).
	Partitions int
	// Aggregator must be fresh (nothing ingested): the ingester restores the
	// partition's checkpoint into it.
	Aggregator *Aggregator
	Clock      clock.Clock   // sealing clock; default clock.Real
	SealEvery  time.Duration // default DefaultSealEvery
	// CheckpointKey overrides the StateBucket key of the checkpoint
	// (default CheckpointKey(Partition)). Servers that ingest the same
	// partition side by side, each into its own TSDB, need one key each,
	// or they would overwrite each other's progress.
	CheckpointKey string
	// AgentQuota bounds the bytes of the batches one agent's subject may
	// keep in the stream over QuotaSpan (the stream's MaxAge): past it,
	// its batches are refused (over_quota) and deleted from the stream as
	// they are read, so that a flooding agent holds its quota of disk, not
	// the stream (0: no quota). Per partition. Accepted batches are never
	// deleted: replays after a crash need them.
	AgentQuota int64
	QuotaSpan  time.Duration
	// Publish, if set, hands the windows of each seal on (a partitioned
	// aggregator publishes them for the analyzer) after the TSDB took
	// them and before the checkpoint moves past them. When it fails, Run
	// returns its error: the caller restarts the partition from its
	// checkpoint, which seals and publishes the windows again, since a
	// checkpoint past an unpublished window would lose it.
	Publish func(ctx context.Context, sealed []*SealedWindow) error
	Logger  *slog.Logger
}

// Ingester consumes one partition of the results stream into an Aggregator,
// exactly once across crashes (see the package documentation). It is not
// safe to run two ingesters of the same partition at once.
type Ingester struct {
	cfg    IngesterConfig
	agg    *Aggregator
	key    string
	prefix string // subject prefix before the agent's name

	stream jetstream.Stream
	quotas *quotas

	dedup        *dedup
	countedSeq   uint64
	caughtUp     bool
	lastSeal     time.Time
	startLastSeq uint64 // the stream's last seq when Run started
	replayFrom   uint64 // where Run started consuming (0: the beginning)
	first        bool   // a message was seen since Run started

	// The current message's agent clock offset from the stream's clock,
	// when the agent sent bus.AgentClockHeader.
	clockOffset time.Duration
	hasClock    bool
}

// CheckpointKey is the StateBucket key of a partition's checkpoint.
func CheckpointKey(partition int) string { return fmt.Sprintf("aggregator.p%d", partition) }

// NewIngester checks the configuration; Run does the work.
func NewIngester(cfg IngesterConfig) (*Ingester, error) {
	if cfg.JetStream == nil || cfg.Aggregator == nil {
		return nil, errors.New("aggregate: ingester needs a JetStream context and an Aggregator")
	}
	if cfg.Partition < 0 {
		return nil, fmt.Errorf("aggregate: ingester partition %d is negative", cfg.Partition)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.SealEvery <= 0 {
		cfg.SealEvery = DefaultSealEvery
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	key := cfg.CheckpointKey
	if key == "" {
		key = CheckpointKey(cfg.Partition)
	}
	if cfg.AgentQuota < 0 {
		return nil, fmt.Errorf("aggregate: agent quota %d bytes is negative", cfg.AgentQuota)
	}
	return &Ingester{
		cfg:    cfg,
		agg:    cfg.Aggregator,
		key:    key,
		prefix: strings.TrimSuffix(bus.PartitionSubjects(cfg.Partition), ">"),
		quotas: newQuotas(cfg.AgentQuota, cfg.QuotaSpan),
	}, nil
}

// Run loads the checkpoint, replays the stream from it and then follows the
// stream, sealing windows on the clock, until ctx ends (then it returns nil;
// nothing needs flushing: the checkpoint and the stream are the state).
func (in *Ingester) Run(ctx context.Context) error {
	js := in.cfg.JetStream
	kv, err := stateBucket(ctx, js)
	if err != nil {
		return err
	}
	replayFrom, err := in.load(ctx, kv)
	if err != nil {
		return err
	}
	stream, err := js.Stream(ctx, bus.ResultsStream)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("aggregate: partition %d: open stream %s: %w", in.cfg.Partition, bus.ResultsStream, err)
	}
	// Whatever was in the stream when we started must be processed before
	// sealing; under sustained load the consumer may never see an empty
	// stream, so this is the other way to be caught up.
	in.stream = stream
	in.startLastSeq = stream.CachedInfo().State.LastSeq
	in.replayFrom = replayFrom
	follow, err := bus.NewFollower(js, bus.FollowConfig{
		Stream:    bus.ResultsStream,
		Filter:    bus.PartitionSubjects(in.cfg.Partition),
		StartSeq:  replayFrom,
		Name:      fmt.Sprintf("aggregate-p%d", in.cfg.Partition),
		OnRestart: func(reason string) { in.agg.m.consumerRestarts.WithLabelValues(reason).Inc() },
		Logger:    in.cfg.Logger.With("partition", in.cfg.Partition),
	})
	if err != nil {
		return fmt.Errorf("aggregate: partition %d: %w", in.cfg.Partition, err)
	}
	defer follow.Stop()
	in.cfg.Logger.Info("aggregate: ingesting", "partition", in.cfg.Partition, "replay_from_seq", replayFrom, "counted_seq", in.countedSeq)

	in.lastSeal = in.cfg.Clock.Now()
	for {
		msg, meta, err := follow.Next(ctx, in.cfg.SealEvery)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			// No consumer (the follower logs why and retries): nothing is
			// known of the stream, so this is not "caught up".
		case msg != nil:
			in.handle(msg, meta)
		default:
			// Nothing more in the stream for now.
			in.caughtUp = true
		}
		// Sealing waits until the stream is caught up: after a restart the
		// replayed windows must see every message the crashed process had
		// seen before it sealed them, so that a re-seal writes the same
		// samples and the counters written never go backwards.
		if now := in.cfg.Clock.Now(); in.caughtUp && now.Sub(in.lastSeal) >= in.cfg.SealEvery {
			in.lastSeal = now
			if err := in.seal(ctx, kv, now); err != nil {
				return err
			}
		}
	}
}

func stateBucket(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, bus.StateBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bus.StateBucket, Description: "meshlens server state"})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(ctx, bus.StateBucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("aggregate: open KV bucket %s: %w", bus.StateBucket, err)
	}
	return kv, nil
}

// load restores the checkpoint and returns where to start consuming (0:
// from the beginning of the stream).
func (in *Ingester) load(ctx context.Context, kv jetstream.KeyValue) (uint64, error) {
	e, err := kv.Get(ctx, in.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		in.dedup = newDedup(nil)
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("aggregate: load checkpoint %s/%s: %w", bus.StateBucket, in.key, err)
	}
	c, err := DecodeCheckpoint(e.Value())
	if err != nil {
		return 0, fmt.Errorf("aggregate: load checkpoint %s/%s: %w", bus.StateBucket, in.key, err)
	}
	d, err := c.dedupState()
	if err != nil {
		return 0, err
	}
	if err := in.agg.restore(c); err != nil {
		return 0, err
	}
	if c.CountersAt != 0 {
		if err := in.agg.restoreCountersFromTSDB(ctx, c.CountersAt, c.CounterSeries, c.ElementSeries); err != nil {
			return 0, fmt.Errorf("aggregate: load checkpoint %s/%s: %w", bus.StateBucket, in.key, err)
		}
	}
	in.dedup = newDedup(d)
	in.countedSeq = c.CountedSeq
	return c.ReplayFromSeq, nil
}

// handle aggregates one stream message; bad batches are counted and
// skipped.
func (in *Ingester) handle(msg jetstream.Msg, meta *jetstream.MsgMetadata) {
	seq := meta.Sequence.Stream
	if meta.NumPending == 0 || seq >= in.startLastSeq {
		in.caughtUp = true
	}
	if !in.first {
		in.first = true
		// The stream's age or size limits removed messages we needed: the
		// open windows are rebuilt without them (counters are unaffected:
		// what was counted is in the checkpoint).
		if in.replayFrom > 0 && seq > in.replayFrom && seq <= in.countedSeq {
			in.cfg.Logger.Warn("aggregate: stream no longer holds messages to replay; open windows rebuilt partially",
				"partition", in.cfg.Partition, "replay_from_seq", in.replayFrom, "first_seq", seq)
		}
	}
	in.clockOffset, in.hasClock = 0, false
	if v := msg.Headers().Get(bus.AgentClockHeader); v != "" {
		if ns, err := strconv.ParseInt(v, 10, 64); err == nil {
			in.clockOffset, in.hasClock = time.Duration(ns-meta.Timestamp.UnixNano()), true
		}
	}
	in.process(msg.Subject(), msg.Data(), seq, meta.Timestamp)
}

// process aggregates one message's payload. Bad batches are counted and
// skipped, never returned: one must not stop the others.
func (in *Ingester) process(subject string, data []byte, seq uint64, stored time.Time) {
	// Messages ≤ countedSeq are being replayed to rebuild open windows; they
	// are already in the checkpoint's counters and self-metrics.
	count := seq > in.countedSeq
	if count {
		in.countedSeq = seq
	}
	subjectAgent := strings.TrimPrefix(subject, in.prefix)
	// Before anything is decoded: the quota is of what the subject put on
	// disk, garbage included, and a flood must cost as little as it can.
	if !in.quotas.admit(subjectAgent, in.agg.knownHost(subjectAgent), len(data), stored) {
		in.agg.noteRejectedBatch(subjectAgent, "over_quota", count)
		in.deleteRefused(subject, seq, count)
		return
	}
	b, err := wire.Decode(data)
	if err != nil {
		in.agg.noteRejectedBatch(subjectAgent, wire.Reason(err), count)
		in.logReject(count, "undecodable batch", seq, subject, err)
		return
	}
	// Nothing below keeps a pointer into the batch (the aggregator copies
	// what it keeps), so its results are reused by the next decode.
	defer wire.Release(b)
	if b.Agent != subjectAgent {
		in.agg.noteRejectedBatch(subjectAgent, "subject_mismatch", count)
		in.logReject(count, "batch from another agent", seq, subject,
			fmt.Errorf("aggregate: batch %d names agent %q: %w", b.Seq, b.Agent, ErrSubjectMismatch))
		return
	}
	// An agent's partition is its rack's. Its partition by the rule before
	// racks (the hash of its own name) is accepted too, for a rolling
	// upgrade: agents still on an older controller's pinglist publish
	// there, and the stream holds batches published there before the
	// change, which a restart replays from its checkpoint. Each batch is on
	// one subject (one republished elsewhere is dropped by its
	// Nats-Msg-Id), so it is still counted once; only an agent's batches
	// around its switch are split between the two partitions.
	if in.cfg.Partitions > 0 {
		if want, legacy := in.agg.agentPartitions(b.Agent, in.cfg.Partitions); want != in.cfg.Partition && legacy != in.cfg.Partition {
			in.agg.noteRejectedBatch(subjectAgent, "wrong_partition", count)
			in.logReject(count, "batch on another partition than its agent's", seq, subject,
				fmt.Errorf("aggregate: batch %d of %s on partition %d, its agent's is %d (its rack's; %d by the rule before racks)", b.Seq, b.Agent, in.cfg.Partition, want, legacy))
			return
		}
	}
	// Unknown agents are refused before de-duplication, so that their names
	// never enter the dedup state.
	if !in.agg.knownHost(b.Agent) {
		in.agg.noteRejectedBatch("", "unknown_host", count)
		in.logReject(count, "batch from an agent not in the topology", seq, subject, ErrUnknownHost)
		return
	}
	fresh, gaps := in.dedup.admit(b.Agent, b.Epoch, b.Seq, seq)
	if gaps > 0 {
		in.agg.m.dedupGaps.Add(float64(gaps))
	}
	if !fresh {
		if count {
			in.agg.m.duplicates.Inc()
		}
		return
	}
	// The agent said what its clock read when it published: off by more
	// than MaxFuture either way, none of its probe times can be trusted,
	// even for a batch replayed from its spool long after sealing.
	if in.hasClock && (in.clockOffset > in.agg.cfg.MaxFuture || -in.clockOffset > in.agg.cfg.MaxFuture) {
		in.agg.rejectSkewedBatch(b, count)
		in.logReject(count, "batch from an agent whose clock is off", seq, subject,
			fmt.Errorf("aggregate: agent %q clock is %v off the stream's", b.Agent, in.clockOffset))
		return
	}
	// Arrival is the time the stream stored the message, not now, so that a
	// replay, or a catch-up after downtime, judges lateness and skew the
	// same way the first pass did.
	if err := in.agg.ingest(b, stored, seq, count); err != nil {
		in.logReject(count, "batch refused", seq, subject, err)
	}
}

// deleteRefused removes a batch refused over its agent's quota from the
// stream. Only refused batches: a replay must find every accepted one. A
// crash before the delete leaves it to be judged again on replay, by a
// quota that starts afresh (a restart forgets usage).
func (in *Ingester) deleteRefused(subject string, seq uint64, count bool) {
	if in.stream == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := in.stream.DeleteMsg(ctx, seq)
	switch {
	case err == nil:
		in.agg.m.quotaDeletes.WithLabelValues("ok").Inc()
	case errors.Is(err, jetstream.ErrMsgNotFound):
		// Another server of the same bus deleted it first.
	default:
		in.agg.m.quotaDeletes.WithLabelValues("error").Inc()
		if count {
			in.cfg.Logger.Warn("aggregate: a batch over its agent's quota could not be deleted", "partition", in.cfg.Partition, "subject", subject, "stream_seq", seq, "err", err)
		}
	}
}

func (in *Ingester) logReject(count bool, what string, seq uint64, subject string, err error) {
	if count {
		in.cfg.Logger.Warn("aggregate: "+what, "partition", in.cfg.Partition, "stream_seq", seq, "subject", subject, "err", err)
	}
}

// seal seals what is due and, if the TSDB took it (and Publish, if set),
// saves the checkpoint. Only a failed Publish is returned.
func (in *Ingester) seal(ctx context.Context, kv jetstream.KeyValue, now time.Time) error {
	sealed, err := in.agg.Advance(ctx, now)
	flushed := in.agg.takeFlushed() // the counters alone were written
	if idle := in.agg.takeIdle(); idle != nil && in.cfg.Publish != nil && err == nil {
		if len(sealed) == 0 && !flushed {
			// Only that the partition has passed the idle window's end.
			if err := in.cfg.Publish(ctx, []*SealedWindow{idle}); err != nil {
				return fmt.Errorf("aggregate: partition %d: publish the idle window: %w", in.cfg.Partition, err)
			}
			return nil
		}
		// Published after the sealed windows, before their checkpoint.
		sealed = append(sealed[:len(sealed):len(sealed)], idle)
	}
	if len(sealed) == 0 && !flushed {
		return nil
	}
	if err != nil {
		// Keep the old checkpoint: a restart replays and writes these
		// windows (or counters) again.
		in.cfg.Logger.Error("aggregate: TSDB write of sealed windows failed", "partition", in.cfg.Partition, "windows", len(sealed), "counters_only", flushed, "err", err)
		return nil
	}
	if in.cfg.Publish != nil && len(sealed) > 0 {
		if err := in.cfg.Publish(ctx, sealed); err != nil {
			return fmt.Errorf("aggregate: partition %d: publish %d sealed windows: %w", in.cfg.Partition, len(sealed), err)
		}
	}
	if err := in.saveCheckpoint(ctx, kv); errors.Is(err, errCountersNotInTSDB) {
		// Keep the old checkpoint, which stays valid (its counters are
		// at an earlier time in the TSDB); the next clean seal saves.
		in.agg.m.checkpoints.WithLabelValues("deferred").Inc()
		in.cfg.Logger.Warn("aggregate: checkpoint deferred to the next seal", "partition", in.cfg.Partition, "err", err)
		return nil
	} else if err != nil {
		in.agg.m.checkpoints.WithLabelValues("error").Inc()
		in.cfg.Logger.Error("aggregate: checkpoint not saved; a restart will replay further", "partition", in.cfg.Partition, "err", err)
		return nil
	}
	in.agg.m.checkpoints.WithLabelValues("ok").Inc()
	return nil
}

func (in *Ingester) saveCheckpoint(ctx context.Context, kv jetstream.KeyValue) error {
	c := Checkpoint{Version: checkpointVersion, CountedSeq: in.countedSeq}
	if err := in.agg.checkpoint(&c); err != nil {
		return err
	}
	if c.ReplayFromSeq == 0 {
		c.ReplayFromSeq = in.countedSeq + 1
	}
	in.dedup.advanceBase(c.ReplayFromSeq)
	c.Dedup = encodeDedup(in.dedup.base)
	data, err := EncodeCheckpoint(&c)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, in.key, data); err != nil {
		return fmt.Errorf("aggregate: save checkpoint %s/%s (%d bytes) at seq %d: %w", bus.StateBucket, in.key, len(data), in.countedSeq, err)
	}
	return nil
}
