package lab

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/topology"
)

// FuzzResolve: any fault request is refused with ErrBadFault or becomes a
// fault on an element of the topology, of a kind that applies to it, that
// renders to nftables without panicking.
func FuzzResolve(f *testing.F) {
	for _, s := range []struct {
		kind, element, dir string
		rate               float64
	}{
		{"link_loss", "dc1-pod1-leaf1--dc1-spine1", "", 0.1},
		{"link_loss", "dc1-spine1->dc1-pod1-leaf1", "", 0.5},
		{"blackhole", "dc1-spine1", "", 0.5},
		{"host_nic", "dc1-pod1-rack1-h01", "", 1},
		{"link_latency", "dc1-pod1-rack1-h01--dc1-pod1-rack1-tor", "b-to-a", 0.002},
		{"device_down", "--", "", 0},
		{"link_down", "->dc1-spine1", "both", 0},
	} {
		f.Add(s.kind, s.element, s.dir, s.rate)
	}
	topo, err := topology.Generate(topology.GenSpec{DCs: 1, Pods: 2, RacksPerPod: 2, HostsPerRack: 2, LeavesPerPod: 2, Spines: 2, BaseAddr: DefaultHostBase, SwitchBaseAddr: DefaultSwitchBase})
	if err != nil {
		f.Fatal(err)
	}
	p, err := NewPlan("fz", topo)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, kind, element, dir string, x float64) {
		r := FaultRequest{Kind: FaultKind(kind), Element: element, Direction: Direction(dir), Rate: x, Fraction: x, Add: time.Duration(x * float64(time.Second))}
		fault, err := p.Resolve(r)
		if err != nil {
			if !errors.Is(err, ErrBadFault) {
				t.Fatalf("refusal %v does not wrap ErrBadFault", err)
			}
			return
		}
		var k topology.Kind
		if a, b, _, err := topology.ParseLinkName(fault.Element); err == nil {
			if _, ok := p.LinkIndex(a, b); !ok {
				t.Fatalf("accepted link %q is not in the topology", fault.Element)
			}
			k = topology.KindLink
		} else if k, _ = topo.Lookup(fault.Element); k == "" {
			t.Fatalf("accepted element %q is not in the topology", fault.Element)
		}
		if !slices.Contains(kindsFor[k], fault.Kind) {
			t.Fatalf("accepted %s on %s %q", fault.Kind, k, fault.Element)
		}
		for _, e := range p.Touches(fault) {
			_ = p.NFTables(e, []Fault{fault})
		}
	})
}
