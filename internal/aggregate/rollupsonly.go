package aggregate

import (
	"math"
	"time"

	"github.com/meshlens/meshlens/internal/wire"
)

// Rollups-only mode (Config.RollupsOnly): no per-pair state. A pair's
// identity costs about 160 bytes and its window 64 more, so a fabric with
// hundreds of millions of pairs per window (50,000 hosts with full Pingmesh
// lists) does not fit in one process; its rollups (host, rack, pod and DC
// pairs) and cumulative counters do. A result then finds what it feeds
// through two tables instead of its pair:
//   - its source and destination hosts' endpoints (host rollup and
//     counter), one per host, direction and protocol;
//   - the route between their racks (rack, pod and DC rollups and
//     counters), one per rack pair and protocol;
// and goes straight into its window's rollups. The rollups and counters
// are the same as with pair detail (a test feeds both modes the same
// batches); what is lost is PairWindows and SealedWindow.Pairs.

// protoSlots bounds the protocol numbers that index the rollups-only
// tables (wire.Protocol values; validation refuses others).
const protoSlots = 5

// endpoint is one host's half of what its results feed, in one direction
// and protocol: its host rollup (out or in) and counter.
type endpoint struct {
	roll  int32
	count *counter
}

// hostEnds is what rollups-only mode knows of one host.
type hostEnds struct {
	loc  location
	rack int32 // index of loc.rack in rollupsOnly.rackIDs
	// ends by direction (0 out, 1 in) and protocol, nil until used.
	ends [2][protoSlots]*endpoint
}

// route is what the results between two racks feed, in one protocol.
type route struct {
	rollups [numLevels]int32
	counts  [numLevels]*counter
}

// rollupsOnly is the state of rollups-only mode. Its tables are slices
// indexed by small integers, not maps keyed by names: a result's route is
// found with one string lookup (its destination) and two array reads, and
// at 50,000 hosts (12.5 M rack pairs and protocols) map probing was a third
// of the run.
type rollupsOnly struct {
	hostIdx map[string]int32
	hosts   []hostEnds
	rackIDs map[string]int32
	// rows by source rack: index+1 in routes of the route to each
	// destination rack and protocol (dst rack × protoSlots + protocol).
	rows    [][]int32
	routes  []route
	targets map[[2]string]*pair // HTTP targets by (target, prober): counters only, no rollups
	// last is the source host resolved last (index in hosts, -1: none):
	// a batch is one agent's.
	last struct {
		name string
		i    int32
	}
	// scratch is the pair a result is resolved into: valid until the next.
	scratch pair
}

func newRollupsOnly() *rollupsOnly {
	ro := &rollupsOnly{
		hostIdx: make(map[string]int32),
		rackIDs: make(map[string]int32),
		targets: make(map[[2]string]*pair),
	}
	ro.last.i = -1
	return ro
}

// routeLocked resolves what a result from src (at srcLoc) to dst over
// proto feeds, as a pair whose key and id mean nothing, valid until the
// next call. Like newPairLocked it returns nil if dst is unknown, or, for a
// new HTTP target, if there are MaxTargets already (full).
func (a *Aggregator) routeLocked(src string, srcLoc location, dst string, proto wire.Protocol) (p *pair, full bool) {
	ro := a.ro
	if proto.IsTarget() {
		// An HTTP pair feeds only its target's counter for this prober
		// (see newPairLocked).
		t := ro.targets[[2]string{dst, src}]
		if t == nil {
			c := a.targetCounterLocked(dst, src)
			if c == nil {
				return nil, true
			}
			t = &pair{target: true, rollups: [numRollups]int32{-1, -1, -1, -1, -1}}
			t.counts[0] = c
			ro.targets[[2]string{dst, src}] = t
		}
		return t, false
	}
	if proto < 0 || proto >= protoSlots {
		return nil, false
	}
	if ro.last.i < 0 || ro.last.name != src {
		ro.last.name, ro.last.i = src, a.hostLocked(src, srcLoc)
	}
	to, ok := ro.hostIdx[dst]
	if !ok {
		dstLoc, known := a.locateLocked(dst)
		if !known {
			return nil, false
		}
		to = a.hostLocked(dst, dstLoc)
	}
	// Pointers only now: adding a host may have moved the slice.
	from, toEnds := &ro.hosts[ro.last.i], &ro.hosts[to]
	out, in := a.endpointLocked(from, 0, src, proto), a.endpointLocked(toEnds, 1, dst, proto)
	p = &ro.scratch
	*p = pair{rollups: [numRollups]int32{out.roll, in.roll, -1, -1, -1}}
	n := 0
	if a.cfg.Locator != nil {
		rt := a.rackRouteLocked(from, toEnds, proto)
		copy(p.rollups[rollRack:], rt.rollups[:])
		n = copy(p.counts[:], rt.counts[:])
	}
	p.counts[n], p.counts[n+1] = out.count, in.count
	return p, false
}

// hostLocked returns the index of host's entry, creating it at loc.
func (a *Aggregator) hostLocked(host string, loc location) int32 {
	ro := a.ro
	if i, ok := ro.hostIdx[host]; ok {
		return i
	}
	rack, ok := ro.rackIDs[loc.rack]
	if !ok {
		rack = int32(len(ro.rackIDs))
		ro.rackIDs[loc.rack] = rack
	}
	i := int32(len(ro.hosts))
	ro.hostIdx[host] = i
	ro.hosts = append(ro.hosts, hostEnds{loc: loc, rack: rack})
	return i
}

// endpointLocked returns h's endpoint in direction dir (0 out, 1 in) and
// protocol, creating it.
func (a *Aggregator) endpointLocked(h *hostEnds, dir int, host string, proto wire.Protocol) *endpoint {
	if e := h.ends[dir][proto]; e != nil {
		return e
	}
	kind, ck := rollHostOut, hostOutCounter
	if dir == 1 {
		kind, ck = rollHostIn, hostInCounter
	}
	e := &endpoint{
		roll:  a.rollIDLocked(rollKey{kind: kind, host: host}),
		count: a.counterForLocked(counterKey{ck, LocationPair{Src: host, Proto: proto}}),
	}
	h.ends[dir][proto] = e
	return e
}

// rackRouteLocked returns the route from's rack to to's, creating it.
func (a *Aggregator) rackRouteLocked(from, to *hostEnds, proto wire.Protocol) *route {
	ro := a.ro
	for int(from.rack) >= len(ro.rows) {
		ro.rows = append(ro.rows, nil)
	}
	row := ro.rows[from.rack]
	i := int(to.rack)*protoSlots + int(proto)
	if i >= len(row) {
		// Room for every rack known so far, so a row grows a few times.
		row = append(row, make([]int32, max(i+1, len(ro.rackIDs)*protoSlots)-len(row))...)
		ro.rows[from.rack] = row
	}
	if row[i] == 0 {
		rt := route{}
		for lv := level(0); lv < numLevels; lv++ {
			loc := LocationPair{from.loc.at(lv), to.loc.at(lv), proto}
			rt.rollups[lv] = a.rollIDLocked(rollKey{kind: rollRack + int(lv), loc: loc})
			rt.counts[lv] = a.counterForLocked(counterKey{counterKind(lv), loc})
		}
		ro.routes = append(ro.routes, rt)
		row[i] = int32(len(ro.routes))
	}
	return &ro.routes[row[i]-1]
}

// addRollups folds one counted result straight into the window's rollups
// that p feeds, as sealing folds a pair's window in with pair detail.
func (w *window) addRollups(p *pair, r *wire.ProbeResult, rollups int) {
	if len(w.rolls) < rollups {
		w.rolls = append(w.rolls, make([]*Rollup, rollups-len(w.rolls))...)
	}
	lost := wire.Lost(r)
	syn := r.Outcome == wire.Outcome_OUTCOME_SYN_RETRANSMIT
	answered := r.Outcome == wire.Outcome_OUTCOME_OK
	// An exact RTT is converted once, and mapped to its sketch bin at most
	// once, for its five rollups (most of which hold sketches): a logarithm
	// per rollup was a tenth of the run at 50,000 hosts.
	exact := answered && r.RttNs >= 0 && r.RttNs <= math.MaxUint32
	ns, v, idx := uint32(r.RttNs), float64(r.RttNs)/1e9, noIndex
	for _, rid := range p.rollups {
		if rid < 0 {
			continue
		}
		ru := w.rolls[rid]
		if ru == nil {
			if len(w.rollSlab) == 0 {
				w.rollSlab = make([]Rollup, statsSlab)
			}
			ru, w.rollSlab = &w.rollSlab[0], w.rollSlab[1:]
			w.rolls[rid] = ru
			w.touchedRolls = append(w.touchedRolls, rid)
		}
		ru.Sent++
		if lost {
			ru.Lost++
		}
		if syn {
			ru.SynRetransmits++
		}
		switch {
		case !answered:
		case !exact:
			ru.rtt.addNanos(r.RttNs)
		default:
			if idx == noIndex && ru.rtt.hasSketch() && v > sketchMapping.MinIndexableValue() {
				idx = sketchMapping.Index(v)
			}
			ru.rtt.addExact(ns, v, idx)
		}
	}
}

// sealRollupsLocked is sealLocked in rollups-only mode: the rollups are
// already built.
func (a *Aggregator) sealRollupsLocked(w *window) *SealedWindow {
	var kinds [numRollups]int
	for _, rid := range w.touchedRolls {
		kinds[a.rollKeys[rid].kind]++
	}
	sw := &SealedWindow{Start: time.Unix(0, w.start).UTC(), End: time.Unix(0, w.start+a.w).UTC()}
	sw.makeRollupMaps(kinds)
	for _, rid := range w.touchedRolls {
		sw.put(a.rollKeys[rid], w.rolls[rid])
	}
	return sw
}
