package aggregate

import (
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"sort"
	"time"
	"unsafe"

	"github.com/meshlens/meshlens/internal/wire"
)

// Pair detail within a memory budget (Config.PairDetailMaxBytes).
//
// The recent pair detail is what PairWindows answers from: every sealed
// window's PairStats, for Config.Recent. At 2,000 hosts (tcp and udp,
// about 390 k pair windows a window) an hour of it is about 10 GB, so the
// aggregator accounts the bytes it holds and, past the budget, trims what
// answers fewest questions first. It keeps, in every window:
//   - pairs with an anomaly (a lost probe: a timeout, a SYN retransmit, a
//     drop), which is what anyone drilling down looks for;
//   - pairs a user looked at (PairWindows marks them) within Config.Recent;
//   - a deterministic sample of the rest: a pair is in the 1-in-2^s sample
//     when the low s bits of a hash of its key are zero, so the sample of
//     a sparser level is a subset of a denser one's, and a sampled pair
//     keeps its whole history, not scattered windows.
//
// Oldest windows are trimmed first: a pass raises the oldest windows
// below the sparsest sample level in use to it, and the level only rises
// when every window has reached it, so the newest windows keep full
// detail as long as the budget allows and older ones share one sample.
// Past maxSampleLevel the oldest windows are dropped whole. The bytes
// are an estimate (below), checked after each seal (Advance); late
// results between two seals may pass the budget by what they add.
// Trimming only touches this retained history: sealing,
// the rollups, the counters and SealedWindow.Pairs (what the analyzer
// and localizer get of a fresh window) are the same with and without a
// budget.
//
// A trimmed window holds its kept pairs compactly (sorted ids beside
// their stats by value, no pointer per pair of the fabric), so trimming
// frees the window's slabs once the analyzer has let go of the window.

// maxSampleLevel is the sparsest sample kept before windows are dropped
// whole: 1 in 2^10 = 1,024 pairs.
const maxSampleLevel = 10

// Estimated bytes of the recent detail, held to the heap by
// TestPairDetailBytesMatchHeap (runtime.MemStats around sealing twelve
// windows of 8,064 pairs, one RTT each, then trimming them): a full
// window holds 72 bytes a pair window by this estimate, 73.2 measured
// (64 of PairStats in the window's slab, 8 for its slot in the window's
// pointer table); a trimmed one 68 a pair kept (the id and the stats by
// value). A lost 5-tuple adds 112 by the estimate, about 95 measured with
// 8-byte addresses (the tuple, its slice and two address strings); RTTs
// beyond the 4 inline ones add 112, a sketch about 1.5 KiB.
const (
	pairStatsBytes = int64(unsafe.Sizeof(PairStats{}))
	fiveTupleBytes = int64(unsafe.Sizeof(FiveTuple{})) + 2*16 // + two address strings
	overflowBytes  = 48 + 16*4                                // latencyOverflow and its first 16 exact RTTs
	sketchBytes    = 1536
	// recentWindowBytes: the window's struct and its entry in the map
	// of recent windows.
	recentWindowBytes = 160
	// lateEntryBytes: an entry of a window's map of late copies, beside
	// the copy itself.
	lateEntryBytes = 48
)

// extraBytes estimates the heap a PairStats holds beyond its own 64
// bytes: lost 5-tuples and RTTs beyond the inline ones.
func (p *PairStats) extraBytes() int64 {
	var n int64
	if p.lost != nil {
		n += 24 + int64(cap(*p.lost))*fiveTupleBytes
	}
	if o := p.rtt.over; o != nil {
		n += overflowBytes + int64(cap(o.ns)-min(cap(o.ns), 16))*4
		if o.sketch != nil {
			n += sketchBytes
		}
	}
	return n
}

// anomalous: the pair lost a probe in the window (a drop, a timeout, a
// retransmitted SYN). Such windows are kept whatever the budget.
func (p *PairStats) anomalous() bool { return p.Lost > 0 }

// pairSample is the hash of a pair's key that decides its place in the
// budget's sample: the same for the pair in every window and process
// (it does not depend on the order in which pairs were first seen).
func pairSample(k PairKey) uint32 {
	h := fnv.New32a()
	h.Write([]byte(k.Src))
	h.Write([]byte{0})
	h.Write([]byte(k.Dst))
	h.Write([]byte{0, byte(k.Proto)})
	return h.Sum32()
}

// sampled reports whether a pair with this hash is in the 1-in-2^level
// sample.
func sampled(hash uint32, level uint8) bool { return hash&(1<<level-1) == 0 }

// windowBytes estimates what a full (untrimmed) recent window holds: its
// pointer table, n PairStats and extra bytes beyond them.
func windowBytes(stats []*PairStats, n int, extra int64) int64 {
	return recentWindowBytes + 8*int64(cap(stats)) + int64(n)*pairStatsBytes + extra
}

// trimmedBytes estimates what a trimmed window holds.
func (rw *recentWindow) trimmedBytes() int64 {
	n := recentWindowBytes + int64(cap(rw.ids))*4 + int64(cap(rw.kept))*pairStatsBytes
	for i := range rw.kept {
		n += rw.kept[i].extraBytes()
	}
	return n + rw.lateBytes()
}

func (rw *recentWindow) lateBytes() int64 {
	var n int64
	for _, st := range rw.late {
		n += lateEntryBytes + pairStatsBytes + st.extraBytes()
	}
	return n
}

// keepLocked reports whether pair id's window st stays at level.
func (a *Aggregator) keepLocked(id int32, st *PairStats, level uint8) bool {
	if st.anomalous() {
		return true
	}
	if _, ok := a.watched[id]; ok {
		return true
	}
	return sampled(a.byID[id].sample, level)
}

// watch is how long a pair has been looked at: since first, last at
// last (Unix ns of the aggregator's clock); it ends a Recent after last.
type watch struct{ first, last int64 }

// trimWindowLocked brings rw to level (above its own): it keeps only the
// pairs keepLocked says, in the compact form, and folds the late copies
// in (a late copy is the pair's window from then on).
func (a *Aggregator) trimWindowLocked(rw *recentWindow, level uint8) {
	before := rw.bytes
	var ids []int32
	var kept []PairStats
	var dropped int
	take := func(id int32, st *PairStats) {
		if late := rw.late[id]; late != nil {
			st = late
		}
		if !a.keepLocked(id, st, level) {
			dropped++
			return
		}
		ids = append(ids, id)
		kept = append(kept, *st)
	}
	if rw.stats != nil {
		for id, st := range rw.stats {
			if st != nil {
				take(int32(id), st)
			}
		}
	} else {
		for i, id := range rw.ids {
			take(id, &rw.kept[i])
		}
	}
	// Late copies of pairs the window did not hold (it had no results of
	// them when it was sealed) are pairs of their own.
	for id, st := range rw.late {
		if rw.has(id) {
			continue
		}
		if !a.keepLocked(id, st, level) {
			dropped++
			continue
		}
		ids = append(ids, id)
		kept = append(kept, *st)
	}
	// By id for lookups (they are, but for late copies of new pairs), in
	// slices of their exact size so that the trimmed window holds no
	// spare capacity.
	rw.ids, rw.kept = make([]int32, len(ids)), make([]PairStats, len(ids))
	if slices.IsSorted(ids) {
		copy(rw.ids, ids)
		copy(rw.kept, kept)
	} else {
		order := make([]int, len(ids))
		for i := range order {
			order[i] = i
		}
		sort.Slice(order, func(i, j int) bool { return ids[order[i]] < ids[order[j]] })
		for i, o := range order {
			rw.ids[i], rw.kept[i] = ids[o], kept[o]
		}
	}
	rw.stats, rw.late, rw.level = nil, nil, level
	if rw.trimmedAt == 0 {
		rw.trimmedAt = a.clockNs
	}
	rw.bytes = rw.trimmedBytes()
	a.detailBytes += rw.bytes - before
	a.m.detailTrimmed.Add(float64(dropped))
}

// has reports whether the window held pair id when it was sealed or
// trimmed (late copies aside).
func (rw *recentWindow) has(id int32) bool {
	if rw.stats != nil {
		return int(id) < len(rw.stats) && rw.stats[id] != nil
	}
	_, ok := slices.BinarySearch(rw.ids, id)
	return ok
}

// dropWindowLocked removes a recent window whole.
func (a *Aggregator) dropWindowLocked(rw *recentWindow, trimmed bool) {
	a.detailBytes -= rw.bytes
	delete(a.recent, rw.start)
	if trimmed {
		n := len(rw.ids)
		if rw.stats != nil {
			for _, st := range rw.stats {
				if st != nil {
					n++
				}
			}
		}
		a.m.detailTrimmed.Add(float64(n + len(rw.late)))
		a.droppedUntil = max(a.droppedUntil, rw.start+a.w)
	}
}

// trimLocked brings the recent detail within the budget, oldest windows
// first (see the comment at the top of this file), and forgets looks
// older than the recent horizon.
func (a *Aggregator) trimLocked(now int64) {
	for id, w := range a.watched {
		if now-w.last > int64(a.cfg.Recent) {
			delete(a.watched, id)
		}
	}
	budget := a.cfg.PairDetailMaxBytes
	defer func() { a.m.detailBytes.Set(float64(a.detailBytes)) }()
	if budget <= 0 || a.detailBytes <= budget {
		return
	}
	starts := make([]int64, 0, len(a.recent))
	from := uint8(1)
	for s, rw := range a.recent {
		starts = append(starts, s)
		from = max(from, rw.level)
	}
	slices.Sort(starts)
	// From the sparsest level in use: a new window is trimmed only once
	// every older one is at that level, so the newest keep full detail.
	for level := from; level <= maxSampleLevel && a.detailBytes > budget; level++ {
		for _, s := range starts {
			if a.detailBytes <= budget {
				return
			}
			if rw := a.recent[s]; rw.level < level {
				a.trimWindowLocked(rw, level)
			}
		}
	}
	for _, s := range starts {
		if a.detailBytes <= budget {
			return
		}
		a.dropWindowLocked(a.recent[s], true)
	}
}

// PairDetail says what the recent detail holds of one pair over a span:
// whether the budget trimmed it, from when it is complete, and what was
// kept before. The server's pair view and `meshlens diagnose pair` show
// it beside the windows.
type PairDetail struct {
	// Mode: "full" (every window of the span), "budget" (the memory
	// budget trimmed some windows of the span for this pair), "off"
	// (rollups-only aggregation: no pair detail at all).
	Mode string
	// BudgetBytes is the budget (0: none).
	BudgetBytes int64
	// CompleteFrom: with Mode "budget", windows starting at or after it
	// hold every window of the pair; before it only those kept (Kept).
	CompleteFrom time.Time
	// SampleOneIn is the sparsest sample of the trimmed windows of the
	// span: 1 in SampleOneIn pairs kept beside the anomalous and the
	// looked-at ones.
	SampleOneIn int
	// Dropped: some windows of the span were dropped whole (the
	// anomalous and looked-at pairs alone were over the budget).
	Dropped bool
	// Recent is the horizon of looks (Config.Recent).
	Recent time.Duration
}

// Detail modes.
const (
	DetailFull   = "full"
	DetailBudget = "budget"
	DetailOff    = "off"
)

// PairDetail describes what PairWindows can show of src→dst over proto
// in [since, until).
func (a *Aggregator) PairDetail(src, dst string, proto wire.Protocol, since, until time.Time) PairDetail {
	a.mu.Lock()
	defer a.mu.Unlock()
	d := PairDetail{Mode: DetailFull, BudgetBytes: a.cfg.PairDetailMaxBytes, Recent: a.cfg.Recent}
	if a.ro != nil {
		d.Mode = DetailOff
		return d
	}
	lo, hi := since.UnixNano(), until.UnixNano()
	hash := pairSample(PairKey{src, dst, proto})
	// A pair looked at since before a window was trimmed kept all of it.
	watchedSince := int64(math.MaxInt64)
	if p := a.pairs[src][dstProto{dst, proto}]; p != nil {
		if w, ok := a.watched[p.id]; ok {
			watchedSince = w.first
		}
	}
	var from int64
	for s, rw := range a.recent {
		if s < lo || s >= hi || rw.level == 0 || sampled(hash, rw.level) || watchedSince < rw.trimmedAt {
			continue
		}
		from = max(from, s+a.w)
		d.SampleOneIn = max(d.SampleOneIn, 1<<rw.level)
	}
	if a.droppedUntil > lo {
		from = max(from, min(a.droppedUntil, hi))
		d.Dropped = true
	}
	if from > 0 {
		d.Mode, d.CompleteFrom = DetailBudget, time.Unix(0, from).UTC()
	}
	return d
}

// Merge folds o (another protocol, pair or partition of one query) into d.
func (d *PairDetail) Merge(o PairDetail) {
	switch {
	case d.Mode == "":
		*d = o
		return
	case o.Mode == DetailOff:
		d.Mode = DetailOff
	case o.Mode == DetailBudget && d.Mode != DetailOff:
		d.Mode = DetailBudget
	}
	if o.CompleteFrom.After(d.CompleteFrom) {
		d.CompleteFrom = o.CompleteFrom
	}
	d.SampleOneIn = max(d.SampleOneIn, o.SampleOneIn)
	d.Dropped = d.Dropped || o.Dropped
	d.BudgetBytes = max(d.BudgetBytes, o.BudgetBytes)
}

// Note says in a sentence what the pair view can show.
func (d PairDetail) Note() string {
	switch d.Mode {
	case DetailOff:
		return "pair detail is off on this server (rollups-only aggregation): no pair windows; the rack-pair, pod-pair and host rollups are in the TSDB"
	case DetailBudget:
		kept := "windows with loss, pairs looked at within " + d.Recent.String()
		if d.SampleOneIn > 0 {
			kept += fmt.Sprintf(" and a 1-in-%d sample of the other pairs", d.SampleOneIn)
		}
		budget := fmt.Sprintf("%d MiB", d.BudgetBytes>>20)
		if d.BudgetBytes < 1<<20 {
			budget = fmt.Sprintf("%d bytes", d.BudgetBytes)
		}
		s := fmt.Sprintf("detail for this pair trimmed by the memory budget (%s) before %s; kept before then: %s",
			budget, d.CompleteFrom.Format(time.RFC3339), kept)
		if d.Dropped {
			s += "; the oldest windows were dropped whole"
		}
		return s
	}
	return "every window of the span is in the detail"
}

// growDetailLocked accounts n more bytes held by recent window rw.
func (a *Aggregator) growDetailLocked(rw *recentWindow, n int64) {
	rw.bytes += n
	a.detailBytes += n
}
