package localize

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/meshlens/meshlens/internal/wire"
)

// Why a traced probe is refused; Reason names them for counters.
var (
	ErrUnknownHost   = errors.New("source or destination is not a host of the topology")
	ErrUnknownHop    = errors.New("hop is not in the topology")
	ErrLoop          = errors.New("path visits an element twice")
	ErrTooLong       = errors.New("more hops than the fabric's diameter allows")
	ErrNotAdjacent   = errors.New("consecutive hops are not linked")
	ErrWrongEndpoint = errors.New("a reached path does not end at its destination")
)

// Reason is a short label for a ResolveTrace error, for counters.
func Reason(err error) string {
	switch {
	case errors.Is(err, ErrUnknownHost):
		return "unknown_host"
	case errors.Is(err, ErrUnknownHop):
		return "unknown_hop"
	case errors.Is(err, ErrLoop):
		return "loop"
	case errors.Is(err, ErrTooLong):
		return "too_long"
	case errors.Is(err, ErrNotAdjacent):
		return "not_adjacent"
	case errors.Is(err, ErrWrongEndpoint):
		return "wrong_endpoint"
	}
	return "invalid"
}

// MaxHops is the most hops a forward path between two hosts has: the
// longest ToR-to-ToR shortest path plus the first (the source's ToR) and
// last (the destination host) hops. A trace longer than that is not a path
// of this fabric.
func (x *Index) MaxHops() int {
	x.diameterOnce.Do(func() {
		r := x.Routes(nil, nil)
		d := int32(0)
		for _, tor := range x.ToRs {
			for slot := range x.ToRs {
				if v := r.dist[(tor-int32(x.NumHosts))*int32(len(x.ToRs))+int32(slot)]; v > d {
					d = v
				}
			}
		}
		x.maxHops = int(d) + 2
	})
	return x.maxHops
}

// resolveHop maps one hop of a wire trace to a node: an element name, or
// an address of a host or of a switch (an interface, which also names the
// neighbour the probe came from, or a loopback: peer -1).
func (x *Index) resolveHop(s string) (node, peer int32, ok bool) {
	if id, ok := x.nodeID[s]; ok {
		return id, -1, true
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return 0, -1, false
	}
	a = a.Unmap()
	if id, ok := x.addrHost[a.String()]; ok {
		return id, -1, true
	}
	if ia, ok := x.addrIface[a]; ok {
		return ia.node, ia.peer, true
	}
	return 0, -1, false
}

// ifaceAddr is what an address of a switch names: the switch, and the
// neighbour its interface faces (-1 for a loopback).
type ifaceAddr struct{ node, peer int32 }

// collapseBeforeDst drops the silent hops just before a destination that
// answered, where they can only have been the destination itself: a TTL
// that reached it but whose answer was lost (the tracer sends several TTLs
// at once, so a later one answers instead). That is so when the hop before
// them is the destination's ToR (a host has no other neighbour), and for as
// many as make the trace longer than any path of the fabric.
func (x *Index) collapseBeforeDst(d int32, hops []string) []string {
	n := len(hops)
	if n < 2 || hops[n-1] == wire.UnknownHop {
		return hops
	}
	if last, _, ok := x.resolveHop(hops[n-1]); !ok || last != d {
		return hops
	}
	i := n - 1 // the silent run before the destination is hops[i:n-1]
	for i > 0 && hops[i-1] == wire.UnknownHop {
		i--
	}
	if i == n-1 {
		return hops
	}
	out := append(make([]string, 0, n), hops[:n-1]...)
	if i > 0 {
		if prev, _, ok := x.resolveHop(hops[i-1]); ok && prev == x.HostToR[d] {
			out = out[:i] // the ToR answered: every silent hop after it was the destination
		}
	}
	for len(out)+1 > x.MaxHops() && len(out) > i {
		out = out[:len(out)-1]
	}
	return append(out, hops[n-1])
}

// ResolveTrace turns one traced probe, as agent src published it, into a
// Trace of this index, or says why it cannot be one of this fabric's
// paths. A hop that answered from an interface address also names the
// neighbour it came from, which fills in an unanswered hop before it.
func (x *Index) ResolveTrace(src string, p *wire.TracedProbe) (Trace, error) {
	s, ok1 := x.nodeID[src]
	d, ok2 := x.nodeID[p.Dst]
	if !ok2 {
		// A reverse trace names the prober by the address its trace-back
		// request came from: the probed agent knows no more of it.
		var peer int32
		d, peer, ok2 = x.resolveHop(p.Dst)
		ok2 = ok2 && peer < 0
	}
	if !ok1 || !ok2 || x.IsSwitch(s) || x.IsSwitch(d) || s == d {
		return Trace{}, fmt.Errorf("localize: trace %s -> %s: %w", src, p.Dst, ErrUnknownHost)
	}
	hops := x.collapseBeforeDst(d, p.Hops)
	if len(hops) > x.MaxHops() {
		return Trace{}, fmt.Errorf("localize: trace %s -> %s: %d hops, at most %d: %w", src, p.Dst, len(hops), x.MaxHops(), ErrTooLong)
	}
	t := Trace{Src: s, Dst: d, Proto: p.Protocol, Lost: p.Lost, BothLost: p.BothLost, Excess: time.Duration(p.ExcessNs),
		Hops: make([]int32, len(hops)), Reached: p.Reached, Reverse: p.Reverse, Start: p.StartUnixNano, Port: p.SrcPort}
	if p.Reverse {
		t.Port = p.DstPort
	}
	for i, h := range hops {
		if h == wire.UnknownHop {
			t.Hops[i] = UnknownHop
			continue
		}
		n, peer, ok := x.resolveHop(h)
		if !ok {
			return Trace{}, fmt.Errorf("localize: trace %s -> %s: hop %d %q: %w", src, p.Dst, i+1, h, ErrUnknownHop)
		}
		t.Hops[i] = n
		if peer >= 0 {
			prev := &s
			if i > 0 {
				prev = &t.Hops[i-1]
			}
			switch {
			case *prev == UnknownHop:
				*prev = peer
			case *prev != peer:
				return Trace{}, fmt.Errorf("localize: trace %s -> %s: hop %d %q came from %s, not hop %d: %w", src, p.Dst, i+1, h, x.Names[peer], i, ErrNotAdjacent)
			}
		}
	}
	seen := map[int32]bool{s: true}
	prev := s
	for i, n := range t.Hops {
		if n == UnknownHop {
			prev = UnknownHop
			continue
		}
		if seen[n] {
			return Trace{}, fmt.Errorf("localize: trace %s -> %s: hop %d %s: %w", src, p.Dst, i+1, x.Names[n], ErrLoop)
		}
		seen[n] = true
		if prev != UnknownHop {
			if _, ok := x.Link(prev, n); !ok {
				return Trace{}, fmt.Errorf("localize: trace %s -> %s: hop %d %s after %s: %w", src, p.Dst, i+1, x.Names[n], x.Names[prev], ErrNotAdjacent)
			}
		}
		prev = n
	}
	// No hop at all answered: the trace died at the source's own link or
	// first switch, which says something too.
	if len(t.Hops) == 0 {
		if t.Reached {
			return Trace{}, fmt.Errorf("localize: trace %s -> %s: no hops: %w", src, p.Dst, ErrWrongEndpoint)
		}
		return t, nil
	}
	last := t.Hops[len(t.Hops)-1]
	if last == d {
		t.Reached = true
	} else if t.Reached {
		return Trace{}, fmt.Errorf("localize: trace %s -> %s: %w", src, p.Dst, ErrWrongEndpoint)
	}
	for i, n := range t.Hops[:len(t.Hops)-1] {
		if n == d {
			return Trace{}, fmt.Errorf("localize: trace %s -> %s: hop %d is the destination before the end: %w", src, p.Dst, i+1, ErrLoop)
		}
	}
	return t, nil
}
