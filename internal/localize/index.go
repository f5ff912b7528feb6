package localize

import (
	"fmt"
	"net/netip"
	"sync"

	"github.com/meshlens/meshlens/internal/topology"
)

// Index gives every host and switch of a topology a dense integer id and
// every link direction a link id, so that per-window work runs over arrays
// instead of name maps. Hosts are ids 0..NumHosts-1, switches follow. It is
// read-only once built and safe for concurrent use.
type Index struct {
	Topo     *topology.Topology
	Names    []string // by node id
	NumHosts int

	// Directed links: From[l] -> To[l]; Reverse[l] is the other direction.
	From, To []int32
	Reverse  []int32

	// HostUp[h] is host h's link to its ToR, HostDown[h] the ToR's link to h,
	// HostToR[h] the ToR's node id.
	HostUp, HostDown, HostToR []int32
	// ToRs lists ToR node ids; ToRSlot[node] is a ToR's position in it, -1
	// for other nodes.
	ToRs    []int32
	ToRSlot []int32
	// Adj lists each switch's switch neighbours.
	Adj [][]Hop

	nodeID    map[string]int32
	linkID    map[[2]int32]int32
	addrHost  map[string]int32
	addrIface map[netip.Addr]ifaceAddr // switch addresses (see resolve.go)

	diameterOnce sync.Once
	maxHops      int
}

// Hop is one step of a route: the next node and the link to it.
type Hop struct{ Node, Link int32 }

// NewIndex indexes t. Every host must be linked to its rack's ToR.
func NewIndex(t *topology.Topology) (*Index, error) {
	x := &Index{Topo: t, NumHosts: len(t.Hosts), nodeID: make(map[string]int32), linkID: make(map[[2]int32]int32), addrHost: make(map[string]int32), addrIface: make(map[netip.Addr]ifaceAddr)}
	for i, h := range t.Hosts {
		x.Names = append(x.Names, h.Name)
		x.nodeID[h.Name] = int32(i)
		x.addrHost[h.Addr.String()] = int32(i)
	}
	for _, s := range t.Switches {
		x.nodeID[s.Name] = int32(len(x.Names))
		x.Names = append(x.Names, s.Name)
	}
	// Switch addresses: a traceroute hop answering from one names the
	// switch, and for an interface the neighbour the probe came from.
	for _, s := range t.Switches {
		node := x.nodeID[s.Name]
		if s.Loopback.IsValid() {
			x.addrIface[s.Loopback.Unmap()] = ifaceAddr{node: node, peer: -1}
		}
		for _, in := range s.Interfaces {
			peer, ok := x.nodeID[in.Peer]
			if !ok {
				return nil, fmt.Errorf("localize: switch %s: interface %s faces an unknown element %s", s.Name, in.Addr, in.Peer)
			}
			x.addrIface[in.Addr.Addr().Unmap()] = ifaceAddr{node: node, peer: peer}
		}
	}
	n := len(x.Names)
	x.ToRSlot = make([]int32, n)
	for i := range x.ToRSlot {
		x.ToRSlot[i] = -1
	}
	x.Adj = make([][]Hop, n)
	add := func(a, b int32) int32 {
		id := int32(len(x.From))
		x.From = append(x.From, a)
		x.To = append(x.To, b)
		x.linkID[[2]int32{a, b}] = id
		return id
	}
	for _, l := range t.Links {
		a, okA := x.nodeID[l.A]
		b, okB := x.nodeID[l.B]
		if !okA || !okB {
			return nil, fmt.Errorf("localize: link %s names an unknown element", l.Name())
		}
		if _, dup := x.linkID[[2]int32{a, b}]; dup {
			continue
		}
		ab, ba := add(a, b), add(b, a)
		x.Reverse = append(x.Reverse, ba, ab)
		if x.IsSwitch(a) && x.IsSwitch(b) {
			x.Adj[a] = append(x.Adj[a], Hop{b, ab})
			x.Adj[b] = append(x.Adj[b], Hop{a, ba})
		}
	}
	x.HostUp = make([]int32, x.NumHosts)
	x.HostDown = make([]int32, x.NumHosts)
	x.HostToR = make([]int32, x.NumHosts)
	for i, h := range t.Hosts {
		tor, ok := x.nodeID[t.Rack(h.Rack).ToR]
		if !ok {
			return nil, fmt.Errorf("localize: host %s: rack %s has no ToR", h.Name, h.Rack)
		}
		up, ok := x.linkID[[2]int32{int32(i), tor}]
		if !ok {
			return nil, fmt.Errorf("localize: host %s is not linked to its ToR %s", h.Name, x.Names[tor])
		}
		x.HostUp[i], x.HostDown[i], x.HostToR[i] = up, x.Reverse[up], tor
		if x.ToRSlot[tor] < 0 {
			x.ToRSlot[tor] = int32(len(x.ToRs))
			x.ToRs = append(x.ToRs, tor)
		}
	}
	return x, nil
}

// NumNodes counts hosts and switches.
func (x *Index) NumNodes() int { return len(x.Names) }

// NumLinks counts link directions.
func (x *Index) NumLinks() int { return len(x.From) }

// IsSwitch reports whether node is a switch.
func (x *Index) IsSwitch(node int32) bool { return int(node) >= x.NumHosts }

// Node finds a host's or switch's id.
func (x *Index) Node(name string) (int32, bool) {
	id, ok := x.nodeID[name]
	return id, ok
}

// Link finds the id of the direction a->b.
func (x *Index) Link(a, b int32) (int32, bool) {
	id, ok := x.linkID[[2]int32{a, b}]
	return id, ok
}

// HostByAddr finds a host by its address, as 5-tuples carry it.
func (x *Index) HostByAddr(addr string) (int32, bool) {
	id, ok := x.addrHost[addr]
	return id, ok
}

// LinkName is "A->B" for link direction l.
func (x *Index) LinkName(l int32) string { return x.Names[x.From[l]] + "->" + x.Names[x.To[l]] }

// PhysicalName is "A--B" for the link of which l is a direction, in the
// topology's orientation (the lower id of the pair is the first
// direction added).
func (x *Index) PhysicalName(l int32) string {
	if r := x.Reverse[l]; r < l {
		l = r
	}
	return x.Names[x.From[l]] + "--" + x.Names[x.To[l]]
}

// AccessHost reports the host of a host access link direction, or -1.
func (x *Index) AccessHost(l int32) int32 {
	if f := x.From[l]; !x.IsSwitch(f) {
		return f
	}
	if t := x.To[l]; !x.IsSwitch(t) {
		return t
	}
	return -1
}

// Routes are per-hop ECMP next hops towards every ToR: at each switch, the
// equal-cost shortest next hops, one of which a flow's hash picks.
type Routes struct {
	x    *Index
	off  []int32 // (switch-NumHosts)*len(ToRs)+slot -> start in hops; end at next
	hops []Hop
	// order[orderOff[slot]:orderOff[slot+1]] lists the switches that reach
	// the ToR in slot, nearest first.
	order    []int32
	orderOff []int32
	// dist[(switch-NumHosts)*len(ToRs)+slot]: hops to the ToR, -1: none.
	dist []int32
}

// Routes computes the next hops over the switches, leaving out nodes and
// link directions for which down returns true (routing has converged around
// them). Either func may be nil.
func (x *Index) Routes(downNode func(int32) bool, downLink func(int32) bool) *Routes {
	nodeDown := func(n int32) bool { return downNode != nil && downNode(n) }
	linkDown := func(l int32) bool { return downLink != nil && downLink(l) }
	ns := x.NumNodes() - x.NumHosts
	nt := len(x.ToRs)
	r := &Routes{x: x, off: make([]int32, ns*nt+1), orderOff: make([]int32, nt+1), dist: make([]int32, ns*nt)}
	for i := range r.dist {
		r.dist[i] = -1
	}
	dist := make([]int32, x.NumNodes())
	queue := make([]int32, 0, ns)
	// Fill by destination, then transpose to the (switch, ToR) layout.
	type span struct{ start, end int32 }
	spans := make([]span, ns*nt)
	for slot, tor := range x.ToRs {
		for i := range dist {
			dist[i] = -1
		}
		queue = queue[:0]
		if !nodeDown(tor) {
			dist[tor] = 0
			queue = append(queue, tor)
		}
		for q := 0; q < len(queue); q++ {
			n := queue[q]
			for _, h := range x.Adj[n] {
				// h.Link goes n->m; traffic towards tor uses m->n.
				if dist[h.Node] >= 0 || nodeDown(h.Node) || linkDown(h.Link) || linkDown(x.Reverse[h.Link]) {
					continue
				}
				dist[h.Node] = dist[n] + 1
				queue = append(queue, h.Node)
			}
		}
		r.order = append(r.order, queue...)
		r.orderOff[slot+1] = int32(len(r.order))
		for _, s := range queue {
			start := int32(len(r.hops))
			if s != tor {
				for _, h := range x.Adj[s] {
					if dist[h.Node] == dist[s]-1 && !nodeDown(h.Node) && !linkDown(h.Link) && !linkDown(x.Reverse[h.Link]) {
						r.hops = append(r.hops, h)
					}
				}
			}
			spans[int(s-int32(x.NumHosts))*nt+slot] = span{start, int32(len(r.hops))}
			r.dist[int(s-int32(x.NumHosts))*nt+slot] = dist[s]
		}
	}
	// Re-lay hops contiguously in (switch, ToR) order so Next is two loads.
	hops := make([]Hop, 0, len(r.hops))
	for i, sp := range spans {
		r.off[i] = int32(len(hops))
		hops = append(hops, r.hops[sp.start:sp.end]...)
	}
	r.off[len(spans)] = int32(len(hops))
	r.hops = hops
	return r
}

// Toward lists the switches with a route to the ToR in slot, nearest
// first (the ToR itself first).
func (r *Routes) Toward(slot int32) []int32 { return r.order[r.orderOff[slot]:r.orderOff[slot+1]] }

// Dist is the number of hops from switch node to the ToR in slot, -1 when
// there is no route.
func (r *Routes) Dist(node, slot int32) int32 {
	return r.dist[int(node-int32(r.x.NumHosts))*len(r.x.ToRs)+int(slot)]
}

// Next lists the next hops from switch node towards the ToR in slot; empty
// when there is no route (or node is that ToR).
func (r *Routes) Next(node, slot int32) []Hop {
	i := int(node-int32(r.x.NumHosts))*len(r.x.ToRs) + int(slot)
	return r.hops[r.off[i]:r.off[i+1]]
}
