package aggregate

import (
	"slices"
	"sort"
)

// maxAboveContig bounds the out-of-order batch seqs remembered per (agent,
// epoch). Agents publish in order and replay their spool in order, so the
// set stays tiny; the bound only stops a hostile or broken agent from
// growing it. When it overflows, the lowest missing seqs are given up on
// (counted as gaps): a batch arriving later with one of them is dropped.
const maxAboveContig = 1024

// maxEpochs per agent: a new epoch means a wiped spool, whose old batches
// are no longer in flight after a while, so old epochs are forgotten.
const maxEpochs = 4

// seqSet is the set of batch seqs seen for one (agent, epoch): every seq
// ≤ Contig, plus the sorted seqs in Above (all > Contig+1).
type seqSet struct {
	Contig uint64   `json:"contig"`
	Above  []uint64 `json:"above,omitempty"`
}

func (s *seqSet) has(q uint64) bool {
	if q <= s.Contig {
		return true
	}
	_, found := slices.BinarySearch(s.Above, q)
	return found
}

// add inserts a seq not in the set and returns how many seqs were given up
// on to keep the set bounded.
func (s *seqSet) add(q uint64) (gaps uint64) {
	if q == s.Contig+1 {
		s.Contig = q
	} else {
		i, _ := slices.BinarySearch(s.Above, q)
		s.Above = slices.Insert(s.Above, i, q)
		if len(s.Above) > maxAboveContig {
			gaps = s.Above[0] - s.Contig - 1
			s.Contig = s.Above[0]
			s.Above = s.Above[1:]
		}
	}
	for len(s.Above) > 0 && s.Above[0] == s.Contig+1 {
		s.Contig = s.Above[0]
		s.Above = s.Above[1:]
	}
	return gaps
}

func (s *seqSet) clone() *seqSet {
	return &seqSet{Contig: s.Contig, Above: slices.Clone(s.Above)}
}

// dedupState is the seen batches, per agent and epoch.
type dedupState map[string]map[uint64]*seqSet

func (d dedupState) has(agent string, epoch, seq uint64) bool {
	s := d[agent][epoch]
	return s != nil && s.has(seq)
}

// add records a batch; it must not already be in d. The result depends only
// on the order of adds, so replaying the same adds rebuilds the same state.
func (d dedupState) add(agent string, epoch, seq uint64) (gaps uint64) {
	epochs := d[agent]
	if epochs == nil {
		epochs = make(map[uint64]*seqSet)
		d[agent] = epochs
	}
	s := epochs[epoch]
	if s == nil {
		s = &seqSet{}
		epochs[epoch] = s
		if len(epochs) > maxEpochs {
			keys := make([]uint64, 0, len(epochs))
			for e := range epochs {
				keys = append(keys, e)
			}
			sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
			delete(epochs, keys[0])
		}
	}
	return s.add(seq)
}

func (d dedupState) clone() dedupState {
	c := make(dedupState, len(d))
	for a, epochs := range d {
		ce := make(map[uint64]*seqSet, len(epochs))
		for e, s := range epochs {
			ce[e] = s.clone()
		}
		c[a] = ce
	}
	return c
}

// dedup decides whether a stream message's batch was already aggregated.
//
// The checkpoint must hold the state as it was just before replay_from_seq,
// not the latest: replaying from there re-makes every decision exactly as
// the first time (a batch first seen inside the replayed range is aggregated
// again into the windows being rebuilt, a later copy of it is dropped
// again). So two states are kept: base (before the replay point, what is
// saved) and live (after the last message), with the admissions in between
// logged so base can be moved forward when the replay point does.
type dedup struct {
	base, live dedupState
	log        []admission
}

type admission struct {
	streamSeq  uint64
	agent      string
	epoch, seq uint64
}

func newDedup(base dedupState) *dedup {
	if base == nil {
		base = make(dedupState)
	}
	return &dedup{base: base, live: base.clone()}
}

// admit reports whether the batch is new, and records it if so.
func (d *dedup) admit(agent string, epoch, seq, streamSeq uint64) (fresh bool, gaps uint64) {
	if d.live.has(agent, epoch, seq) {
		return false, 0
	}
	d.log = append(d.log, admission{streamSeq, agent, epoch, seq})
	return true, d.live.add(agent, epoch, seq)
}

// advanceBase folds into base every admission from a message before
// replayFrom.
func (d *dedup) advanceBase(replayFrom uint64) {
	i := 0
	for ; i < len(d.log) && d.log[i].streamSeq < replayFrom; i++ {
		a := d.log[i]
		d.base.add(a.agent, a.epoch, a.seq)
	}
	d.log = append(d.log[:0], d.log[i:]...)
}
