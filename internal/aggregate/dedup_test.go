package aggregate

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestSeqSet(t *testing.T) {
	tests := []struct {
		name   string
		adds   []uint64
		contig uint64
		above  []uint64
		gaps   uint64
	}{
		{"in order", []uint64{1, 2, 3}, 3, nil, 0},
		{"hole then filled", []uint64{1, 3, 4, 2}, 4, nil, 0},
		{"hole stays", []uint64{1, 2, 5, 7}, 2, []uint64{5, 7}, 0},
		{"starts late", []uint64{10}, 0, []uint64{10}, 0},
		{"overflow gives up the lowest hole", func() []uint64 {
			var s []uint64
			for q := uint64(3); q < 3+maxAboveContig+1; q++ {
				s = append(s, q)
			}
			return s
		}(), 3 + maxAboveContig, nil, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s seqSet
			var gaps uint64
			for _, q := range tt.adds {
				if s.has(q) {
					t.Fatalf("%d seen before it was added", q)
				}
				gaps += s.add(q)
				if !s.has(q) {
					t.Fatalf("%d not seen after add", q)
				}
			}
			if s.Contig != tt.contig || !slices.Equal(s.Above, tt.above) || gaps != tt.gaps {
				t.Errorf("got contig %d above %v gaps %d, want %d %v %d", s.Contig, s.Above, gaps, tt.contig, tt.above, tt.gaps)
			}
		})
	}
}

// TestDedupReplay: restarting from base at any replay point and replaying
// the log from there makes the same decisions as the first pass.
func TestDedupReplay(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	type msg struct {
		agent      string
		epoch, seq uint64
	}
	var stream []msg
	for i := 0; i < 2000; i++ {
		stream = append(stream, msg{[]string{"a", "b", "c"}[rng.IntN(3)], uint64(rng.IntN(6)), uint64(1 + rng.IntN(300))})
	}
	first := newDedup(nil)
	var decisions []bool
	for i, m := range stream {
		fresh, _ := first.admit(m.agent, m.epoch, m.seq, uint64(i+1))
		decisions = append(decisions, fresh)
	}
	for _, replayFrom := range []uint64{1, 2, 500, 1999, 2000, 2001} {
		d := newDedup(nil)
		for i, m := range stream {
			d.admit(m.agent, m.epoch, m.seq, uint64(i+1))
		}
		d.advanceBase(replayFrom)
		again := newDedup(d.base.clone())
		for i := replayFrom - 1; i < uint64(len(stream)); i++ {
			m := stream[i]
			fresh, _ := again.admit(m.agent, m.epoch, m.seq, i+1)
			if fresh != decisions[i] {
				t.Fatalf("replay from %d: message %d decided %v, first pass %v", replayFrom, i+1, fresh, decisions[i])
			}
		}
	}
}
