package localize

import (
	"fmt"
	"slices"
	"strings"
)

// Crossing says which host pairs' probes may cross one element (a name as
// Suspect.Element and Lead.Element give it): those whose forward path or
// reply may take it, over the ECMP path set from the source's ToR to the
// destination's and back. Evidence on demand probes exactly those pairs.
// Not safe for concurrent use (it remembers ToR pairs it has answered).
type Crossing struct {
	x      *Index
	routes *Routes
	hosts  map[int32]bool // a host, or a host access link: its own pairs
	nodes  map[int32]bool // switches
	links  map[int32]bool // switch-to-switch link directions
	memo   map[[2]int32]bool
}

// Crossing parses element: a host, a switch, a link "A--B" (both
// directions) or a direction "A->B".
func (x *Index) Crossing(element string) (*Crossing, error) {
	c := &Crossing{x: x, hosts: map[int32]bool{}, nodes: map[int32]bool{}, links: map[int32]bool{}, memo: map[[2]int32]bool{}}
	link := func(a, b string) error {
		na, okA := x.Node(a)
		nb, okB := x.Node(b)
		if !okA || !okB {
			return fmt.Errorf("localize: %q: no such link", element)
		}
		l, ok := x.Link(na, nb)
		if !ok {
			return fmt.Errorf("localize: %q: no such link", element)
		}
		if h := x.AccessHost(l); h >= 0 {
			c.hosts[h] = true
		} else {
			c.links[l] = true
		}
		return nil
	}
	switch {
	case strings.Contains(element, "->"):
		a, b, _ := strings.Cut(element, "->")
		if err := link(a, b); err != nil {
			return nil, err
		}
	case strings.Contains(element, "--"):
		a, b, _ := strings.Cut(element, "--")
		if err := link(a, b); err != nil {
			return nil, err
		}
		if err := link(b, a); err != nil {
			return nil, err
		}
	default:
		n, ok := x.Node(element)
		if !ok {
			return nil, fmt.Errorf("localize: %q: no such host or switch", element)
		}
		if x.IsSwitch(n) {
			c.nodes[n] = true
		} else {
			c.hosts[n] = true
		}
	}
	if len(c.nodes)+len(c.links) > 0 {
		c.routes = x.Routes(nil, nil)
	}
	return c, nil
}

// Pair reports whether probes from host src to host dst (or their
// replies) may cross the element.
func (c *Crossing) Pair(src, dst int32) bool {
	if c.hosts[src] || c.hosts[dst] {
		return true
	}
	if c.routes == nil {
		return false
	}
	a, b := c.x.HostToR[src], c.x.HostToR[dst]
	k := [2]int32{a, b}
	if v, ok := c.memo[k]; ok {
		return v
	}
	v := c.towards(a, b) || c.towards(b, a)
	c.memo[k] = v
	return v
}

// towards walks the ECMP path set from ToR a to ToR b.
func (c *Crossing) towards(a, b int32) bool {
	slot := c.x.ToRSlot[b]
	seen := map[int32]bool{a: true}
	queue := []int32{a}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		if c.nodes[n] {
			return true
		}
		for _, h := range c.routes.Next(n, slot) {
			if c.links[h.Link] {
				return true
			}
			if !seen[h.Node] {
				seen[h.Node] = true
				queue = append(queue, h.Node)
			}
		}
	}
	return false
}

// Around are the switches a fault of element must be told from: a link's
// switch ends, a host's (or its access link's) ToR; none for a switch.
// Evidence on demand probes their pairs too, so that what decides between
// an element and the switch around it was probed as hard as the element.
func (x *Index) Around(element string) []string {
	var ends []string
	switch {
	case strings.Contains(element, "->"):
		a, b, _ := strings.Cut(element, "->")
		ends = []string{a, b}
	case strings.Contains(element, "--"):
		a, b, _ := strings.Cut(element, "--")
		ends = []string{a, b}
	default:
		ends = []string{element}
	}
	var out []string
	for _, e := range ends {
		n, ok := x.Node(e)
		switch {
		case !ok:
		case !x.IsSwitch(n):
			out = append(out, x.Names[x.HostToR[n]])
		case e != element:
			out = append(out, e)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
