package sim

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/meshlens/meshlens/internal/topology"
)

// Drains: an operator (or meshlens's remediator) takes a switch or a
// switch-to-switch link out of service. Unlike a down element, a drain is a
// planned change: routing steers around it from the next round on, with no
// convergence delay, and the element itself still exists (draining adds no
// loss; its faults simply stop meeting traffic).

// SetDrained makes names the set of drained elements, replacing the
// previous set (nil or empty undrains everything). A name is a switch
// ("dc1-spine3") or a link between two switches ("A--B" or "A->B"; routing
// takes a link out in both directions, so a drained direction drains the
// link). Hosts and host access links cannot be drained: a host has no other
// way in or out. On an error nothing changes. The new routing applies from
// the next Step.
func (f *Fabric) SetDrained(names []string) error {
	nodes := map[int32]bool{}
	links := map[int32]bool{}
	var canon []string
	for _, name := range names {
		name, err := drainableName(f.x, name)
		if err != nil {
			return fmt.Errorf("sim: %w", err)
		}
		if n, ok := f.x.Node(name); ok {
			if !nodes[n] {
				nodes[n] = true
				canon = append(canon, name)
			}
			continue
		}
		a, b, _, _ := topology.ParseLinkName(name) // checked by drainableName
		na, _ := f.x.Node(a)
		nb, _ := f.x.Node(b)
		l, _ := f.x.Link(na, nb)
		if !links[l] {
			links[l], links[f.x.Reverse[l]] = true, true
			canon = append(canon, name)
		}
	}
	sort.Strings(canon)
	if len(nodes) == 0 && len(links) == 0 {
		f.drainNode, f.drainLink, f.drainKey, f.drained = nil, nil, "", nil
		return nil
	}
	f.drainNode, f.drainLink, f.drained = nodes, links, canon
	// The routing key changes with the drained set, so the next Step
	// recomputes routes (and only then: a no-drain run never gets here).
	var key strings.Builder
	key.WriteString("drained:")
	for _, n := range canon {
		key.WriteString(strconv.Quote(n) + ",")
	}
	f.drainKey = key.String()
	return nil
}

// Drained lists the drained elements, sorted: switches by name, links as
// "A--B".
func (f *Fabric) Drained() []string { return append([]string(nil), f.drained...) }
