package aggregate

import (
	"time"

	"github.com/meshlens/meshlens/internal/wire"
)

// Rollups-only mode (Config.RollupsOnly): no per-pair state. A pair's
// identity costs about 160 bytes and its window 64 more, so a fabric with
// hundreds of millions of pairs per window (50,000 hosts with full Pingmesh
// lists) does not fit in one process; its rollups (host, rack, pod and DC
// pairs) and cumulative counters do. A result then finds what it feeds
// through two small caches instead of its pair:
//   - its source and destination hosts' endpoints (host rollup, host
//     counter, location), one per host, direction and protocol;
//   - the route between their racks (rack, pod and DC rollups and
//     counters), one per rack pair and protocol;
// and goes straight into its window's rollups. The rollups and counters
// are the same as with pair detail (a test feeds both modes the same
// batches); what is lost is PairWindows and SealedWindow.Pairs.

// endKey names an endpoint.
type endKey struct {
	host  string
	proto wire.Protocol
	dir   Direction
}

// endpoint is one host's half of what its results feed, in one direction
// and protocol.
type endpoint struct {
	loc   location
	rack  int32 // index of loc.rack in Aggregator.rackIDs
	roll  int32 // the host rollup (out or in)
	count *counter
}

// routeKey names the route between two racks (indexes in rackIDs).
type routeKey struct {
	src, dst int32
	proto    wire.Protocol
}

// route is what the results between two racks feed, in one protocol.
type route struct {
	rollups [numLevels]int32
	counts  [numLevels]*counter
}

// rollupsOnly is the state of rollups-only mode.
type rollupsOnly struct {
	ends    map[endKey]*endpoint
	rackIDs map[string]int32
	routes  map[routeKey]*route
	targets map[string]*pair // HTTP targets: counters only, no rollups
	// scratch is the pair a result is resolved into: valid until the next.
	scratch pair
}

func newRollupsOnly() *rollupsOnly {
	return &rollupsOnly{
		ends:    make(map[endKey]*endpoint),
		rackIDs: make(map[string]int32),
		routes:  make(map[routeKey]*route),
		targets: make(map[string]*pair),
	}
}

// routeLocked resolves what a result from src to dst over proto feeds, as
// a pair whose key and id mean nothing, valid until the next call. Like
// newPairLocked it returns nil if dst is unknown, or, for a new HTTP
// target, if there are MaxTargets already (full).
func (a *Aggregator) routeLocked(src string, srcLoc location, dst string, proto wire.Protocol) (p *pair, full bool) {
	ro := a.ro
	if proto == wire.Protocol_PROTOCOL_HTTP {
		// An HTTP pair feeds only its target's counter (see newPairLocked):
		// one route per target, not per prober.
		t := ro.targets[dst]
		if t == nil {
			c := a.targetCounterLocked(dst)
			if c == nil {
				return nil, true
			}
			t = &pair{target: true, bucketed: 1, rollups: [numRollups]int32{-1, -1, -1, -1, -1}}
			t.counts[0] = c
			ro.targets[dst] = t
		}
		return t, false
	}
	from := a.endpointLocked(src, proto, Out, srcLoc, true)
	to := ro.ends[endKey{dst, proto, In}]
	if to == nil {
		dstLoc, ok := a.locateLocked(dst)
		if !ok {
			return nil, false
		}
		to = a.endpointLocked(dst, proto, In, dstLoc, false)
	}
	p = &ro.scratch
	*p = pair{rollups: [numRollups]int32{from.roll, to.roll, -1, -1, -1}}
	n := 0
	if a.cfg.Locator != nil {
		rk := routeKey{from.rack, to.rack, proto}
		rt := ro.routes[rk]
		if rt == nil {
			rt = &route{}
			for lv := level(0); lv < numLevels; lv++ {
				loc := LocationPair{from.loc.at(lv), to.loc.at(lv), proto}
				rt.rollups[lv] = a.rollIDLocked(rollKey{kind: rollRack + int(lv), loc: loc})
				rt.counts[lv] = a.counterForLocked(counterKey{counterKind(lv), loc})
			}
			ro.routes[rk] = rt
		}
		copy(p.rollups[rollRack:], rt.rollups[:])
		n = copy(p.counts[:], rt.counts[:])
	}
	p.bucketed = int8(n)
	if a.cfg.HostRTTBuckets {
		p.bucketed += 2
	}
	p.counts[n], p.counts[n+1] = from.count, to.count
	return p, false
}

// endpointLocked returns host's endpoint in one direction and protocol,
// creating it (at loc) if needed.
func (a *Aggregator) endpointLocked(host string, proto wire.Protocol, dir Direction, loc location, lookup bool) *endpoint {
	ro := a.ro
	k := endKey{host, proto, dir}
	if lookup {
		if e := ro.ends[k]; e != nil {
			return e
		}
	}
	rack, ok := ro.rackIDs[loc.rack]
	if !ok {
		rack = int32(len(ro.rackIDs))
		ro.rackIDs[loc.rack] = rack
	}
	kind, ck := rollHostOut, hostOutCounter
	if dir == In {
		kind, ck = rollHostIn, hostInCounter
	}
	e := &endpoint{
		loc: loc, rack: rack,
		roll:  a.rollIDLocked(rollKey{kind: kind, host: host}),
		count: a.counterForLocked(counterKey{ck, LocationPair{Src: host, Proto: proto}}),
	}
	ro.ends[k] = e
	return e
}

// addRollups folds one counted result straight into the window's rollups
// that p feeds, as sealing folds a pair's window in with pair detail.
func (w *window) addRollups(p *pair, r *wire.ProbeResult, rollups int) {
	if len(w.rolls) < rollups {
		w.rolls = append(w.rolls, make([]*Rollup, rollups-len(w.rolls))...)
	}
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
		if wire.Lost(r) {
			ru.Lost++
		}
		switch r.Outcome {
		case wire.Outcome_OUTCOME_SYN_RETRANSMIT:
			ru.SynRetransmits++
		case wire.Outcome_OUTCOME_OK:
			ru.rtt.addNanos(r.RttNs)
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
	sw := &SealedWindow{
		Start:     time.Unix(0, w.start).UTC(),
		End:       time.Unix(0, w.start+a.w).UTC(),
		Hosts:     make(map[HostKey]*Rollup, kinds[rollHostOut]+kinds[rollHostIn]),
		RackPairs: make(map[LocationPair]*Rollup, kinds[rollRack]),
		PodPairs:  make(map[LocationPair]*Rollup, kinds[rollPod]),
		DCPairs:   make(map[LocationPair]*Rollup, kinds[rollDC]),
	}
	for _, rid := range w.touchedRolls {
		sw.put(a.rollKeys[rid], w.rolls[rid])
	}
	return sw
}
