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
	ReplayFromSeq uint64              `json:"replay_from_seq"`
	Counters      []CheckpointCounter `json:"counters"`
	// Dedup is the seen batches as of just before ReplayFromSeq, by agent
	// and epoch (decimal string: JSON keys are strings).
	Dedup map[string]map[string]*seqSet `json:"dedup"`
}

// CheckpointCounter is one exact cumulative counter.
type CheckpointCounter struct {
	Level  string `json:"level"`
	Src    string `json:"src"`
	Dst    string `json:"dst"`
	Proto  string `json:"proto"`
	Probes uint64 `json:"probes"`
	Lost   uint64 `json:"lost"`
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
	for i, cc := range c.Counters {
		if _, ok := parseLevel(cc.Level); !ok {
			return nil, fmt.Errorf("aggregate: checkpoint counter %d: level %q: %w", i, cc.Level, ErrBadCheckpoint)
		}
		if _, err := ParseProto(cc.Proto); err != nil {
			return nil, fmt.Errorf("aggregate: checkpoint counter %d: %w: %w", i, ErrBadCheckpoint, err)
		}
		if cc.Lost > cc.Probes {
			return nil, fmt.Errorf("aggregate: checkpoint counter %d: %d lost of %d probes: %w", i, cc.Lost, cc.Probes, ErrBadCheckpoint)
		}
	}
	if _, err := c.dedupState(); err != nil {
		return nil, err
	}
	return &c, nil
}

func parseLevel(s string) (level, bool) {
	for lv, n := range levelNames {
		if n == s {
			return level(lv), true
		}
	}
	return 0, false
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

// checkpoint captures the aggregator's part of a checkpoint.
func (a *Aggregator) checkpoint() (sealedUntil int64, replayFrom uint64, counters []CheckpointCounter) {
	a.mu.Lock()
	defer a.mu.Unlock()
	counters = make([]CheckpointCounter, 0, len(a.counters))
	for k, c := range a.counters {
		counters = append(counters, CheckpointCounter{
			Level: levelNames[k.level], Src: k.Src, Dst: k.Dst, Proto: ProtoName(k.Proto), Probes: c.Probes, Lost: c.Lost,
		})
	}
	return a.sealedUntil, a.replayFromLocked(), counters
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
	for _, cc := range c.Counters {
		lv, ok := parseLevel(cc.Level)
		if !ok {
			return fmt.Errorf("aggregate: checkpoint counter level %q: %w", cc.Level, ErrBadCheckpoint)
		}
		p, err := ParseProto(cc.Proto)
		if err != nil {
			return fmt.Errorf("aggregate: restore checkpoint: %w", err)
		}
		a.counters[counterKey{lv, LocationPair{cc.Src, cc.Dst, p}}] = &Count{Probes: cc.Probes, Lost: cc.Lost}
	}
	return nil
}
