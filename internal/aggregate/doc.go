// Package aggregate is stage 1 of the data path: agent batches in, per-pair
// windows and mergeable rollups out.
//
// # The core
//
// An Aggregator puts every probe result in an event-time window (the probe's
// start, windows of width W aligned to the Unix epoch) of its pair (source
// agent, destination, protocol): sent and lost counts (wire.Counts,
// wire.Lost), a DDSketch of OK RTTs with 1% relative accuracy, SYN
// retransmits, the first few lost 5-tuples and the agent's scheduling lag. A
// window is sealed as soon as every live agent has marked its data in past
// the window's end (wire.Batch.complete_before_unix_nano; see
// Config.Lateness), and at the latest when the clock passes its end plus
// the allowed lateness L; sealing builds the host, rack-pair, pod-pair and
// DC-pair rollups by summing counts and merging sketches, writes them and
// the exact cumulative counters
// to the TSDB (one commit per window, at the window's end), keeps the pair
// detail for PairWindows for the recent horizon (within
// Config.PairDetailMaxBytes, see pairdetail.go), and hands the SealedWindow
// to subscribers (analyzer, localizer, simulator). The core has no
// goroutines: Ingest(batch, now) and Advance(ctx, now) are all the simulator
// needs on a virtual clock.
//
// Results for a window already sealed are not dropped: they go into the
// recent pair detail and the cumulative counters (meshlens_ingest_late_
// results_total), not into rollups already written.
//
// # Cumulative counters
//
// Counted exactly at ingest (never from a sketch) and written, all of them,
// at every sealed window's end in that window's commit, so that the SLO
// engine's increase() sees a sample of each in any range:
//
//   - meshlens_{rack,pod,dc}_pair_probes_total / _probes_lost_total
//     {src_<level>, dst_<level>, proto}: probes sent and lost;
//   - meshlens_{pod,dc}_pair_rtt_seconds_bucket{..., le}: answered
//     (OK) probes with RTT ≤ le, le from LatencyBuckets (slo's list) and
//     +Inf, a classic Prometheus histogram: _rtt_seconds_sum (the RTTs'
//     sum, restored from the TSDB on restart like the buckets) and
//     _rtt_seconds_count (the +Inf bucket) beside it; the rack pairs'
//     only with Config.RackPairRTTBuckets (16 series per rack pair and
//     protocol, most of what a window would write, read by nothing here);
//   - per-element counters, meshlens_{rack,pod,dc}_probes_total /
//     _probes_lost_total / _rtt_seconds_{bucket,sum,count} {<level>, proto
//     [, le]}: every probe with either end in the element, counted once
//     (a pair inside it once). Each location pair's counter feeds its
//     two elements' as results come in (counter.elems), so the racks
//     keep their histograms while the rack pairs keep none. An SLO of a
//     rack reads one series per protocol instead of every rack pair with
//     the rack at either end (1,249 per protocol in a 625-rack mesh).
//     Checkpoints written before these counters restore them as the sums
//     of their pairs;
//   - meshlens_host_probes_total / _probes_lost_total {host, direction,
//     proto}: direction "out" when the host sent the probe, "in" when it
//     was probed; the _rtt_seconds histogram too with Config.HostRTTBuckets;
//   - meshlens_target_probes_total / _probes_lost_total and the
//     _rtt_seconds histogram {target, host}: HTTP probes of a service
//     target, by probing host.
//
// One kind of series is derived from those at write time, in the same
// commit, for the SLO engine; a restart does not read it back (it follows
// from the counters it restores):
//
//   - hourly copies, HourlyPrefix + the name without "meshlens_" (e.g.
//     meshlens_hourly_dc_pair_probes_total), same labels and values, of
//     the element, host, target and DC-pair counters' probes, lost and
//     le buckets (not _sum and _count, not rack or pod pairs), written at
//     the first window this Aggregator writes (after a start or a
//     restore), at the first window ending in each later clock hour
//     (HourlyStep; with epoch-aligned windows, the one ending on the
//     hour), and in the commit a series first appears in; a series born
//     in this process (not restored) also gets a 0 at that window's
//     start, its value before. An SLO window of a day or more is counted
//     as the difference of the counter's values at its two ends (see
//     internal/slo's counterSum); when the 10 s sample at its start is
//     gone (an outage, the retention) the hourly copies give that value,
//     reading 24 samples a day instead of 8,640, and the birth's 0 makes
//     a series born inside the window count whole. A failed write leaves
//     the next window to write them; their refused samples (a window
//     re-sealed after a crash, behind copies already written) are counted
//     but do not defer the checkpoint.
//
// HTTP probes measure services named in the pinglist, not the fabric: their
// destination is a target, whatever its name. They feed only the target
// counters and the pair detail, never host or location rollups or counters
// (a failing service must not make its prober look like a sick host), and a
// bad response counts as lost for the target, in one series per target and
// probing host. Target names come from agents, so only those of
// Config.Targets (the server's --http-target) are counted, others rejected
// as unknown_target, and Config.MaxTargets bounds them; results beyond are
// rejected as too_many_targets.
//
// # Exactly once from JetStream
//
// The Ingester reads one partition of the RESULTS stream as a log, with an
// ordered consumer, strictly in stream order, and never acknowledges
// anything: its own checkpoint, saved in the KV bucket bus.StateBucket under
// CheckpointKey(p) after each seal's TSDB commit, is the only progress
// marker. The checkpoint holds
//
//   - sealed_until: windows ending at or before it are sealed and in the TSDB;
//   - counted_seq: every stream message ≤ it is in the cumulative counters,
//     whose values are either in the checkpoint or, with Config.Queryable,
//     in the TSDB at counters_at (below);
//   - replay_from_seq: the smallest stream seq that contributed to a window
//     not yet sealed;
//   - the (agent, epoch) → seen batch seqs de-duplication state, as it was
//     just before replay_from_seq.
//
// On start the ingester restores the counters and sealed_until and consumes
// from replay_from_seq. Replaying from there with the dedup state of that
// point re-makes every de-duplication decision exactly as the first pass
// did, so the open windows are rebuilt exactly; a message adds to the
// counters only if its seq is above counted_seq, and to windows only if the
// window is after sealed_until. Hence a crash at any point (before, during
// or after a TSDB commit, before or after the checkpoint put) loses nothing
// that is in the stream and counts nothing twice: everything after the
// last saved checkpoint is simply done again from the stream. Lateness, skew
// and age are judged against the message's stream timestamp, not the
// ingester's clock, so a replay or a catch-up after downtime decides the
// same way as the first pass. Sealing is held back until the consumer has
// caught up with the stream, so a window re-sealed after a crash sees the
// same messages as before and rewrites identical samples (the TSDB accepts
// identical duplicates; a differing one is refused, counted in
// meshlens_aggregate_tsdb_samples_skipped_total, and the first value stays).
//
// Duplicates come from agents re-publishing a spooled batch after
// JetStream's duplicate window; they are dropped by (agent, epoch, seq)
// (meshlens_ingest_duplicates_total). A batch whose agent differs from its
// subject's last token, or that does not decode, or whose agent is not in
// the topology, is counted in meshlens_ingest_rejected_total and skipped:
// one bad batch never stops the others.
//
// # Counters in the TSDB, not in the checkpoint
//
// A checkpoint must fit in one KV value (1 MiB max_payload by default), and
// a 10,000-host fabric has ~800k rack-pair counter sets of 16 numbers each:
// far too many to save every second. So, with Config.Queryable (the store
// the Appendable writes to), the checkpoint holds no counters: it is saved
// right after a seal's commit, when the counters equal the samples that
// commit wrote, and records that commit's timestamp (counters_at) and how
// many counter sets it wrote. A restart reads the samples at exactly
// counters_at back (matching Config.SeriesLabels, ignoring series with
// other labels) and checks their number; then replay proceeds as above.
// Two cases would break "the TSDB holds the counters' values at
// counters_at", and then the checkpoint is not saved (counted as
// meshlens_aggregate_checkpoints_total{result="deferred"}; the previous one
// stays valid and the next clean seal saves): a counter changed between
// the seal's snapshot and the save, or the TSDB refused some counter
// samples of the commit (a window re-sealed after a crash whose first
// values differ). A checkpoint pointing at samples the TSDB no longer has
// (TSDB wiped) stops the ingester with an error rather than counting from
// zero; delete the partition's key to start afresh. Without a Queryable
// the counters are in the checkpoint (gzipped JSON, ~7 bytes a number),
// which limits that mode to small fabrics; old checkpoints of that form
// load either way.
//
// Known limits: the recent pair detail is in memory; a restarted ingester
// holds detail only for windows it seals itself. Every counter series is
// written at every seal: 14 series per rack pair a window with tcp and
// udp (probes, lost, loss ratio and 4 quantiles each), which at 250 racks
// (10,000 hosts) is about 875k, the bulk of what a window writes
// (bench/series, docs/operations.md). Several partitions sharing one TSDB need
// Config.SeriesLabels (see there); the fleet-wide rollups of a window are
// MergeWindows of the partitions' parts.
//
// This package imports wire, bus and clock, never topology or the stages
// after it: they import its SealedWindow.
package aggregate
