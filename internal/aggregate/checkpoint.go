package aggregate

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
)

const checkpointVersion = 1

// maxCheckpointBytes refuses to parse absurd checkpoints (a KV value is
// bounded by the server's max payload anyway).
const maxCheckpointBytes = 64 << 20

// Checkpoint is an ingester's saved position in one partition; see the
// package documentation for how its fields make ingestion exactly-once.
type Checkpoint struct {
	Version int `json:"version"`
	// SealedUntil: every window ending at or before it is sealed and its
	// rollups are in the TSDB.
	SealedUntil int64 `json:"sealed_until_unix_nano"`
	// CountedSeq: every stream message ≤ it is in Counters.
	CountedSeq uint64 `json:"counted_seq"`
	// ReplayFromSeq: the smallest stream message that contributed to a window
	// not yet sealed; consumption restarts here.
	ReplayFromSeq uint64 `json:"replay_from_seq"`
	// Counters hold the cumulative counters' values, unless CountersAt is
	// set.
	Counters []CheckpointCounter `json:"counters"`
	// CountersAt (unix ms), when not 0: the counters' values are the TSDB
	// samples at exactly this time (the last seal's commit, at or before
	// SealedUntil), CounterSeries of them (counter keys with probes),
	// and ElementSeries more for the per-element counters. Checkpoints
	// from before the element counters have none, and their element
	// series are not counted (a version that predates them reads only
	// CounterSeries, so a rollback still restores).
	CountersAt    int64 `json:"counters_at_unix_milli,omitempty"`
	CounterSeries int   `json:"counter_series,omitempty"`
	ElementSeries int   `json:"element_series,omitempty"`
	// Dedup is the seen batches as of just before ReplayFromSeq, by agent
	// and epoch (decimal string: JSON keys are strings).
	Dedup map[string]map[string]*seqSet `json:"dedup"`
}

// CheckpointCounter is one exact cumulative counter set. Level is rack,
// pod or dc (Src and Dst are locations), host_out or host_in (Src is the
// host) or target (Src is the HTTP target, Proto http).
type CheckpointCounter struct {
	Level  string `json:"level"`
	Src    string `json:"src"`
	Dst    string `json:"dst"`
	Proto  string `json:"proto"`
	Probes uint64 `json:"probes"`
	Lost   uint64 `json:"lost"`
	// RTTBuckets: answered probes per RTT bucket (not cumulative), one per
	// LatencyBuckets bound and one above; absent when there are none.
	RTTBuckets []uint64 `json:"rtt_buckets,omitempty"`
	// RTTSumNs: the sum of those probes' RTTs in nanoseconds (the
	// histogram's _sum); absent in checkpoints written before it was kept.
	RTTSumNs uint64 `json:"rtt_sum_ns,omitempty"`
}

// ErrBadCheckpoint: a saved checkpoint could not be read.
var ErrBadCheckpoint = errors.New("bad checkpoint")

// EncodeCheckpoint serializes a checkpoint: gzipped JSON. The counters
// repeat rack and pod names over and over, so gzip shrinks them ~10x, which
// matters because the checkpoint must fit in one KV value (the server's
// max_payload, 1 MiB by default).
func EncodeCheckpoint(c *Checkpoint) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := json.NewEncoder(zw).Encode(c); err != nil {
		return nil, fmt.Errorf("aggregate: encode checkpoint at seq %d: %w", c.CountedSeq, err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("aggregate: compress checkpoint at seq %d: %w", c.CountedSeq, err)
	}
	return buf.Bytes(), nil
}

// DecodeCheckpoint parses and checks a saved checkpoint (gzipped JSON, or
// plain JSON for a hand-written one).
func DecodeCheckpoint(data []byte) (*Checkpoint, error) {
	if len(data) > maxCheckpointBytes {
		return nil, fmt.Errorf("aggregate: checkpoint of %d bytes: %w", len(data), ErrBadCheckpoint)
	}
	if bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("aggregate: checkpoint: %w: %v", ErrBadCheckpoint, err)
		}
		// Bounded: a small value must not inflate without limit.
		plain, err := io.ReadAll(io.LimitReader(zr, maxCheckpointBytes+1))
		if err != nil {
			return nil, fmt.Errorf("aggregate: checkpoint: %w: decompress: %v", ErrBadCheckpoint, err)
		}
		if len(plain) > maxCheckpointBytes {
			return nil, fmt.Errorf("aggregate: checkpoint inflates beyond %d bytes: %w", maxCheckpointBytes, ErrBadCheckpoint)
		}
		data = plain
	}
	var c Checkpoint
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("aggregate: checkpoint: %w: %v", ErrBadCheckpoint, err)
	}
	if c.SealedUntil < 0 {
		return nil, fmt.Errorf("aggregate: checkpoint sealed until %d: %w", c.SealedUntil, ErrBadCheckpoint)
	}
	if c.Version != checkpointVersion {
		return nil, fmt.Errorf("aggregate: checkpoint version %d, want %d: %w", c.Version, checkpointVersion, ErrBadCheckpoint)
	}
	if c.CountersAt < 0 || c.CounterSeries < 0 || c.ElementSeries < 0 || (c.CountersAt != 0 && len(c.Counters) > 0) {
		return nil, fmt.Errorf("aggregate: checkpoint counters at %d (%d series) and %d in the checkpoint: %w", c.CountersAt, c.CounterSeries, len(c.Counters), ErrBadCheckpoint)
	}
	for i := range c.Counters {
		if _, _, err := c.Counters[i].parse(); err != nil {
			return nil, fmt.Errorf("aggregate: checkpoint counter %d: %w", i, err)
		}
	}
	if _, err := c.dedupState(); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Checkpoint) dedupState() (dedupState, error) {
	d := make(dedupState, len(c.Dedup))
	for agent, epochs := range c.Dedup {
		m := make(map[uint64]*seqSet, len(epochs))
		for es, s := range epochs {
			e, err := strconv.ParseUint(es, 10, 64)
			if err != nil || s == nil {
				return nil, fmt.Errorf("aggregate: checkpoint dedup of %q: epoch %q: %w", agent, es, ErrBadCheckpoint)
			}
			for i, q := range s.Above {
				if q <= s.Contig+1 || (i > 0 && q <= s.Above[i-1]) {
					return nil, fmt.Errorf("aggregate: checkpoint dedup of %q epoch %d: unsorted seqs: %w", agent, e, ErrBadCheckpoint)
				}
			}
			m[e] = s.clone()
		}
		d[agent] = m
	}
	return d, nil
}

func encodeDedup(d dedupState) map[string]map[string]*seqSet {
	out := make(map[string]map[string]*seqSet, len(d))
	for agent, epochs := range d {
		m := make(map[string]*seqSet, len(epochs))
		for e, s := range epochs {
			m[strconv.FormatUint(e, 10)] = s
		}
		out[agent] = m
	}
	return out
}

// errCountersNotInTSDB: the counters' current values are not all in the
// TSDB, so a checkpoint that points there cannot be saved now.
var errCountersNotInTSDB = errors.New("counters changed since the last seal, or its commit refused some of their samples")

// checkpoint captures the aggregator's part of a checkpoint: sealed_until,
// and either the counters themselves or, with a Queryable, where in the
// TSDB their values are.
func (a *Aggregator) checkpoint(c *Checkpoint) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	c.SealedUntil = a.sealedUntil
	c.ReplayFromSeq = a.replayFromLocked()
	if a.cfg.Queryable != nil && a.cfg.Appendable != nil {
		if a.dirty || !a.snapOK {
			return fmt.Errorf("aggregate: checkpoint at sealed_until %d: %w", a.sealedUntil, errCountersNotInTSDB)
		}
		c.CountersAt = a.snapAt
		c.CounterSeries, c.ElementSeries = 0, 0
		for k, cn := range a.counters {
			switch {
			case cn.Probes == 0:
			case k.kind.isElement():
				c.ElementSeries++
			default:
				c.CounterSeries++
			}
		}
		return nil
	}
	c.Counters = make([]CheckpointCounter, 0, len(a.counters))
	for k, cn := range a.counters {
		c.Counters = append(c.Counters, checkpointCounter(k, cn))
	}
	return nil
}

// restore loads a checkpoint into a fresh aggregator.
func (a *Aggregator) restore(c *Checkpoint) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.pairs) != 0 || len(a.open) != 0 || a.sealedUntil != 0 {
		return fmt.Errorf("aggregate: restore checkpoint into an aggregator that already holds data")
	}
	a.sealedUntil = c.SealedUntil
	a.recentSince = a.sealedUntil
	for i := range c.Counters {
		k, cn, err := c.Counters[i].parse()
		if err != nil {
			return fmt.Errorf("aggregate: restore checkpoint counter %d: %w", i, err)
		}
		a.setCounterLocked(k, cn)
	}
	a.deriveElementsLocked()
	return nil
}

// setCounterLocked installs a restored counter's value.
func (a *Aggregator) setCounterLocked(k counterKey, c *counter) {
	a.restored[k] = struct{}{}
	if k.kind == targetCounter && a.counters[k] == nil {
		a.targetNames[k.Src]++
	}
	a.counterForLocked(k).setValue(c)
}

// deriveElementsLocked, after a restore that found no element counters,
// sets them to the sums of the restored location pairs: what the
// aggregator wrote as the elements' series before it kept element
// counters. Only a checkpoint of that time holding its counters inline
// lacks them; one pointing into the TSDB finds the series it wrote.
func (a *Aggregator) deriveElementsLocked() {
	var pairs []counterSample
	for k, c := range a.counters {
		if _, ok := a.restored[k]; !ok {
			continue
		}
		if k.kind.isElement() {
			return
		}
		if k.kind < counterKind(numLevels) {
			pairs = append(pairs, counterSample{key: k, counter: *c})
		}
	}
	for ek, sum := range elementCounters(pairs) {
		a.setCounterLocked(counterKey{elementKind(ek.lv), LocationPair{Src: ek.name, Proto: ek.proto}}, &sum.counter)
	}
}
