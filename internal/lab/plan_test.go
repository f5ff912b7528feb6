package lab

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/topology"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// small is 1 DC, 2 pods of 2 racks of 2 hosts, 2 leaves per pod, 2 spines.
func small(t *testing.T) *Plan {
	t.Helper()
	topo, err := topology.Generate(topology.GenSpec{DCs: 1, Pods: 2, RacksPerPod: 2, HostsPerRack: 2, LeavesPerPod: 2, Spines: 2, BaseAddr: DefaultHostBase, SwitchBaseAddr: DefaultSwitchBase})
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPlan("t1", topo)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from %s:\n--- got ---\n%s\n--- want ---\n%s", name, path, got, want)
	}
}

func TestConfigBatchGolden(t *testing.T) {
	p := small(t)
	downLeafSpine, ok := p.LinkIndex("dc1-pod1-leaf1", "dc1-spine1")
	if !ok {
		t.Fatal("no leaf1--spine1 link")
	}
	for _, c := range []struct {
		name, element string
		down          map[int]bool
	}{
		{"host", "dc1-pod1-rack1-h01", nil},
		{"tor", "dc1-pod1-rack1-tor", nil},
		{"leaf", "dc1-pod1-leaf1", nil},
		{"spine", "dc1-spine1", nil},
		{"leaf_with_spine_link_down", "dc1-pod1-leaf1", map[int]bool{downLeafSpine: true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := p.ConfigBatch(c.element, c.down)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "config_"+c.name, got)
		})
	}
}

// TestRoutesFollowShortestPaths checks the routes against the fabric's
// shape independently of the golden files: every switch reaches every
// host, through neighbours one step closer to the host's ToR, at the
// neighbour's own address on the shared link.
func TestRoutesFollowShortestPaths(t *testing.T) {
	p := small(t)
	layer := func(e string) int { return p.Topo.Switch(e).Role.Layer() }
	for _, sw := range p.Topo.Switches {
		routes, err := p.Routes(sw.Name, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(routes) != len(p.Topo.Hosts) {
			t.Errorf("%s: %d routes, want one per host (%d)", sw.Name, len(routes), len(p.Topo.Hosts))
		}
		for _, r := range routes {
			host := p.Topo.HostByAddr(r.Dst.Addr())
			if host == nil {
				t.Fatalf("%s: route to %s, no host there", sw.Name, r.Dst)
			}
			tor := p.Topo.Rack(host.Rack).ToR
			rack := p.Topo.Rack(host.Rack)
			var wantHops int
			switch {
			case sw.Name == tor:
				wantHops = 1
			case sw.Role == topology.RoleToR:
				wantHops = 2 // both leaves of the pod
			case sw.Role == topology.RoleLeaf && sw.Pod == rack.Pod:
				wantHops = 1 // down to the ToR
			case sw.Role == topology.RoleLeaf:
				wantHops = 2 // up to both spines
			case sw.Role == topology.RoleSpine:
				wantHops = 2 // down to both leaves of the pod
			}
			if len(r.Hops) != wantHops {
				t.Errorf("%s -> %s: %d next hops, want %d", sw.Name, host.Name, len(r.Hops), wantHops)
			}
			for _, h := range r.Hops {
				if sw.Name == tor {
					continue
				}
				var peer string
				for _, n := range p.Topo.Neighbors(sw.Name) {
					if a, ok := p.InterfaceAddr(n, sw.Name); ok && a == h.Via {
						peer = n
					}
				}
				if peer == "" {
					t.Fatalf("%s -> %s: next hop %s is no neighbour's address", sw.Name, host.Name, h.Via)
				}
				if i, _ := p.LinkIndex(sw.Name, peer); IfName(i) != h.Dev {
					t.Errorf("%s -> %s: via %s on %s, but the link to %s is %s", sw.Name, host.Name, h.Via, h.Dev, peer, IfName(i))
				}
				if up := layer(peer) > layer(sw.Name); up && (sw.Role == topology.RoleLeaf && sw.Pod == rack.Pod) {
					t.Errorf("%s -> %s: goes up to %s though the host is below", sw.Name, host.Name, peer)
				}
			}
		}
	}
}

func TestAddressesUniqueAndInRange(t *testing.T) {
	p := small(t)
	seen := map[netip.Addr]string{}
	for i, l := range p.Topo.Links {
		for _, end := range []struct{ e, peer string }{{l.A, l.B}, {l.B, l.A}} {
			a, ok := p.InterfaceAddr(end.e, end.peer)
			if h := p.Topo.Host(end.e); h != nil {
				a, ok = h.Addr, true // a host's one address serves its link
			}
			if !ok {
				t.Fatalf("link %d: no address for %s", i, end.e)
			}
			if p.Topo.Switch(end.e) != nil && !LinkPrefix.Contains(a) {
				t.Errorf("%s facing %s: %s outside %s", end.e, end.peer, a, LinkPrefix)
			}
			if other, dup := seen[a]; dup {
				t.Errorf("%s used by %s and %s", a, other, end.e)
			}
			seen[a] = end.e
		}
	}
	for _, h := range p.Topo.Hosts {
		m := p.MgmtAddr(h.Name)
		if !MgmtPrefix.Contains(m) || m == MgmtServerAddr {
			t.Errorf("%s management address %s", h.Name, m)
		}
		if other, dup := seen[m]; dup {
			t.Errorf("%s used by %s and %s", m, other, h.Name)
		}
		seen[m] = h.Name
		if len(p.NS(h.Name)) > 64 || len(p.MgmtIfName(h.Name)) > 15 {
			t.Errorf("%s: names too long", h.Name)
		}
	}
}

func TestNewPlanRefuses(t *testing.T) {
	loop, err := topology.Generate(topology.GenSpec{DCs: 1, Pods: 1, RacksPerPod: 1, HostsPerRack: 1, LeavesPerPod: 1, Spines: 1})
	if err != nil {
		t.Fatal(err)
	}
	good, err := topology.Generate(topology.GenSpec{DCs: 1, Pods: 1, RacksPerPod: 1, HostsPerRack: 1, LeavesPerPod: 1, Spines: 1, BaseAddr: DefaultHostBase, SwitchBaseAddr: DefaultSwitchBase})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, id string
		topo     *topology.Topology
		want     string
	}{
		{"hosts outside the lab range", "ml", loop, "outside the lab's host range 198.18.0.0/16"},
		{"empty id", "", good, "want 1 to 8 characters"},
		{"long id", "abcdefghi", good, "want 1 to 8 characters"},
		{"id with a dash", "a-b", good, "lower-case letters and digits"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := NewPlan(c.id, c.topo)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to say %q", err, c.want)
			}
		})
	}
}

func TestNFTablesGolden(t *testing.T) {
	p := small(t)
	leafSpine := "dc1-pod1-leaf1--dc1-spine1"
	for _, c := range []struct {
		name    string
		element string
		req     []FaultRequest
	}{
		{"none", "dc1-spine1", nil},
		{"link_loss_both_a_end", "dc1-pod1-leaf1", []FaultRequest{{Kind: LinkLoss, Element: leafSpine, Rate: 0.2}}},
		{"link_loss_both_b_end", "dc1-spine1", []FaultRequest{{Kind: LinkLoss, Element: leafSpine, Rate: 0.2}}},
		{"link_loss_arrow_reversed_at_spine", "dc1-spine1", []FaultRequest{{Kind: LinkLoss, Element: "dc1-spine1->dc1-pod1-leaf1", Rate: 0.05}}},
		{"link_loss_arrow_reversed_at_leaf", "dc1-pod1-leaf1", []FaultRequest{{Kind: LinkLoss, Element: "dc1-spine1->dc1-pod1-leaf1", Rate: 0.05}}},
		{"device_loss", "dc1-spine1", []FaultRequest{{Kind: DeviceLoss, Element: "dc1-spine1", Rate: 0.3}}},
		{"device_down", "dc1-spine1", []FaultRequest{{Kind: DeviceDown, Element: "dc1-spine1"}}},
		{"blackhole", "dc1-spine1", []FaultRequest{{Kind: Blackhole, Element: "dc1-spine1", Fraction: 0.25}}},
		{"host_nic", "dc1-pod1-rack1-h01", []FaultRequest{{Kind: HostNIC, Element: "dc1-pod1-rack1-h01", Rate: 0.1}}},
		{"link_down_is_no_nft", "dc1-spine1", []FaultRequest{{Kind: LinkDown, Element: leafSpine}}},
		{"two_faults_one_switch", "dc1-spine1", []FaultRequest{
			{Kind: Blackhole, Element: "dc1-spine1", Fraction: 0.5},
			{Kind: LinkLoss, Element: leafSpine, Direction: BToA, Rate: 0.01},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var faults []Fault
			for _, r := range c.req {
				f, err := p.Resolve(r)
				if err != nil {
					t.Fatal(err)
				}
				faults = append(faults, f)
			}
			golden(t, "nft_"+c.name, p.NFTables(c.element, faults))
		})
	}
}

func TestResolve(t *testing.T) {
	p := small(t)
	for _, c := range []struct {
		name string
		req  FaultRequest
		want Fault
		err  string
	}{
		{"link as written", FaultRequest{Kind: LinkLoss, Element: "dc1-pod1-leaf1--dc1-spine1", Rate: 0.1},
			Fault{Kind: LinkLoss, Element: "dc1-pod1-leaf1--dc1-spine1", Direction: Both, Rate: 0.1}, ""},
		{"link reversed", FaultRequest{Kind: LinkDown, Element: "dc1-spine1--dc1-pod1-leaf1"},
			Fault{Kind: LinkDown, Element: "dc1-pod1-leaf1--dc1-spine1", Direction: Both}, ""},
		{"arrow against the file order", FaultRequest{Kind: LinkLatency, Element: "dc1-spine1->dc1-pod1-leaf1", Add: time.Millisecond},
			Fault{Kind: LinkLatency, Element: "dc1-pod1-leaf1--dc1-spine1", Direction: BToA, Add: time.Millisecond}, ""},
		{"direction flag on a reversed name", FaultRequest{Kind: LinkLoss, Element: "dc1-spine1--dc1-pod1-leaf1", Direction: AToB, Rate: 0.5},
			Fault{Kind: LinkLoss, Element: "dc1-pod1-leaf1--dc1-spine1", Direction: BToA, Rate: 0.5}, ""},
		{"unknown element", FaultRequest{Kind: DeviceDown, Element: "dc1-spine9"}, Fault{},
			`element "dc1-spine9" is not a host, switch or link`},
		{"unknown link", FaultRequest{Kind: LinkDown, Element: "dc1-spine1--dc1-spine2"}, Fault{},
			`link "dc1-spine1--dc1-spine2" is not in the topology`},
		{"switch kind on a link", FaultRequest{Kind: Blackhole, Element: "dc1-pod1-leaf1--dc1-spine1", Fraction: 0.5}, Fault{},
			`"blackhole" cannot be applied to link "dc1-pod1-leaf1--dc1-spine1"; allowed: link_loss, link_latency, link_down`},
		{"link kind on a host", FaultRequest{Kind: LinkLoss, Element: "dc1-pod1-rack1-h01", Rate: 0.5}, Fault{},
			`"link_loss" cannot be applied to host "dc1-pod1-rack1-h01"; allowed: host_nic, host_down`},
		{"host kind on a switch", FaultRequest{Kind: HostNIC, Element: "dc1-spine1", Rate: 0.5}, Fault{},
			`allowed: device_down, blackhole, device_loss`},
		{"a rack is no element to break", FaultRequest{Kind: DeviceDown, Element: "dc1-pod1-rack1"}, Fault{},
			`is not a host, switch or link`},
		{"rate missing", FaultRequest{Kind: DeviceLoss, Element: "dc1-spine1"}, Fault{}, "needs --rate in (0, 1]"},
		{"rate above one", FaultRequest{Kind: HostNIC, Element: "dc1-pod1-rack1-h01", Rate: 2}, Fault{}, "needs --rate in (0, 1]"},
		{"fraction missing", FaultRequest{Kind: Blackhole, Element: "dc1-spine1"}, Fault{}, "needs --fraction"},
		{"latency missing", FaultRequest{Kind: LinkLatency, Element: "dc1-pod1-leaf1--dc1-spine1"}, Fault{}, "needs --add"},
		{"arrow and direction", FaultRequest{Kind: LinkLoss, Element: "dc1-pod1-leaf1->dc1-spine1", Direction: BToA, Rate: 0.1}, Fault{}, "contradicts"},
		{"bad direction", FaultRequest{Kind: LinkLoss, Element: "dc1-pod1-leaf1--dc1-spine1", Direction: "up", Rate: 0.1}, Fault{}, `direction "up"`},
		{"direction on a switch", FaultRequest{Kind: DeviceLoss, Element: "dc1-spine1", Direction: AToB, Rate: 0.1}, Fault{}, "applies to links only"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := p.Resolve(c.req)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) || !errors.Is(err, ErrBadFault) {
					t.Fatalf("err = %v, want ErrBadFault saying %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

// TestHashSeeds: every switch of the fabric hashes with a seed of its own
// (no ECMP polarization), stable from run to run; hosts and the
// management namespace set none.
func TestHashSeeds(t *testing.T) {
	p := small(t)
	seen := map[uint32]string{}
	for _, sw := range p.Topo.Switches {
		seed := HashSeed(sw.Name)
		if seed == 0 {
			t.Errorf("%s: seed 0 is the kernel's own", sw.Name)
		}
		if other, dup := seen[seed]; dup {
			t.Errorf("%s and %s hash alike (seed %d)", sw.Name, other, seed)
		}
		seen[seed] = sw.Name
		if HashSeed(sw.Name) != seed {
			t.Errorf("%s: seed not stable", sw.Name)
		}
		want := fmt.Sprintf("%s=%d", hashSeedSysctl, seed)
		if got := Sysctls(true, ICMPLimits{}, seed); !slices.Contains(got, want) {
			t.Errorf("%s: sysctls %v lack %s", sw.Name, got, want)
		}
	}
	for _, s := range append(Sysctls(false, ICMPLimits{}, 0), Sysctls(true, ICMPLimits{}, 0)...) {
		if strings.HasPrefix(s, hashSeedSysctl) {
			t.Errorf("seed set without one: %s", s)
		}
	}
}
