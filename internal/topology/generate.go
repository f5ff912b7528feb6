package topology

import (
	"bytes"
	"fmt"
	"net/netip"
)

// GenSpec describes a folded-Clos fabric: each host links to its ToR, each
// ToR to every leaf of its pod, each leaf to every spine of its DC, and with
// several DCs every WAN router to every spine of every DC.
type GenSpec struct {
	Name         string
	DCs          int
	Pods         int // per DC
	RacksPerPod  int
	HostsPerRack int
	LeavesPerPod int
	Spines       int // per DC
	WANs         int // 0: two when DCs > 1
	BaseAddr     string
	// SwitchBaseAddr, when set, gives switches addresses counting up from
	// it (see assignSwitchAddrs for the scheme); it must be IPv4 and the
	// range it starts must not reach a host address.
	SwitchBaseAddr string
	ResponderPort  int
}

// DefaultBaseAddr puts generated hosts on loopback, where meshlens demo and
// tests run every agent on one machine.
const DefaultBaseAddr = "127.1.0.1"

// maxHosts keeps a typo in a generator flag from eating the machine.
const maxHosts = 1 << 20

// Generate builds a fabric from spec with the names of DESIGN.md.
func Generate(spec GenSpec) (*Topology, error) {
	if spec.BaseAddr == "" {
		spec.BaseAddr = DefaultBaseAddr
	}
	if spec.ResponderPort == 0 {
		spec.ResponderPort = DefaultResponderPort
	}
	if spec.WANs == 0 && spec.DCs > 1 {
		spec.WANs = 2
	}
	if spec.Name == "" {
		spec.Name = fmt.Sprintf("clos-%ddc-%dpod-%drack-%dhost", spec.DCs, spec.Pods, spec.RacksPerPod, spec.HostsPerRack)
	}
	for _, c := range []struct {
		name string
		v    int
	}{{"dcs", spec.DCs}, {"pods", spec.Pods}, {"racks-per-pod", spec.RacksPerPod}, {"hosts-per-rack", spec.HostsPerRack}, {"leaves-per-pod", spec.LeavesPerPod}, {"spines", spec.Spines}} {
		if c.v < 1 {
			return nil, fmt.Errorf("topology: generate: %s must be at least 1, got %d", c.name, c.v)
		}
	}
	if spec.HostsPerRack > 99 {
		return nil, fmt.Errorf("topology: generate: hosts-per-rack %d: names have two digits, at most 99", spec.HostsPerRack)
	}
	total := spec.DCs * spec.Pods * spec.RacksPerPod * spec.HostsPerRack
	if total > maxHosts {
		return nil, fmt.Errorf("topology: generate: %d hosts is more than %d", total, maxHosts)
	}
	addr, err := netip.ParseAddr(spec.BaseAddr)
	if err != nil || !addr.Is4() {
		return nil, fmt.Errorf("topology: generate: base address %q must be IPv4", spec.BaseAddr)
	}

	t := &Topology{Name: spec.Name, ResponderPort: spec.ResponderPort}
	link := func(a, b string) { t.Links = append(t.Links, Link{A: a, B: b}) }
	var wans []string
	for w := 1; w <= spec.WANs; w++ {
		name := fmt.Sprintf("wan%d", w)
		wans = append(wans, name)
		t.Switches = append(t.Switches, &Switch{Name: name, Role: RoleWAN})
	}
	for d := 1; d <= spec.DCs; d++ {
		dc := fmt.Sprintf("dc%d", d)
		t.DCs = append(t.DCs, &DC{Name: dc})
		var spines []string
		for s := 1; s <= spec.Spines; s++ {
			name := fmt.Sprintf("%s-spine%d", dc, s)
			spines = append(spines, name)
			t.Switches = append(t.Switches, &Switch{Name: name, Role: RoleSpine, DC: dc})
			for _, w := range wans {
				link(name, w)
			}
		}
		for p := 1; p <= spec.Pods; p++ {
			pod := fmt.Sprintf("%s-pod%d", dc, p)
			t.Pods = append(t.Pods, &Pod{Name: pod, DC: dc})
			var leaves []string
			for l := 1; l <= spec.LeavesPerPod; l++ {
				name := fmt.Sprintf("%s-leaf%d", pod, l)
				leaves = append(leaves, name)
				t.Switches = append(t.Switches, &Switch{Name: name, Role: RoleLeaf, Pod: pod})
				for _, s := range spines {
					link(name, s)
				}
			}
			for r := 1; r <= spec.RacksPerPod; r++ {
				rack := fmt.Sprintf("%s-rack%d", pod, r)
				tor := rack + "-tor"
				t.Racks = append(t.Racks, &Rack{Name: rack, Pod: pod})
				t.Switches = append(t.Switches, &Switch{Name: tor, Role: RoleToR, Rack: rack})
				for _, l := range leaves {
					link(tor, l)
				}
				for h := 1; h <= spec.HostsPerRack; h++ {
					name := fmt.Sprintf("%s-h%02d", rack, h)
					t.Hosts = append(t.Hosts, &Host{Name: name, Addr: addr, Rack: rack})
					link(name, tor)
					if addr, err = nextHostAddr(addr); err != nil {
						return nil, fmt.Errorf("topology: generate from %s: %w", spec.BaseAddr, err)
					}
				}
			}
		}
	}
	if spec.SwitchBaseAddr != "" {
		if err := t.assignSwitchAddrs(spec.SwitchBaseAddr); err != nil {
			return nil, fmt.Errorf("topology: generate: %w", err)
		}
	}
	t.index()
	return t, nil
}

// nextHostAddr skips .0 and .255 so no host gets a network or broadcast
// address even where the range is a real subnet.
func nextHostAddr(a netip.Addr) (netip.Addr, error) {
	for {
		a = a.Next()
		if !a.IsValid() || !a.Is4() {
			return a, fmt.Errorf("ran out of IPv4 addresses")
		}
		if last := a.As4()[3]; last != 0 && last != 255 {
			return a, nil
		}
	}
}

// MarshalYAML renders the topology in the file format Load reads, one
// element per line.
func (t *Topology) MarshalYAML() ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "name: %s\nresponder_port: %d\n", quote(t.Name), t.ResponderPort)
	b.WriteString("dcs:\n")
	for _, d := range t.DCs {
		fmt.Fprintf(&b, "  - {name: %s}\n", d.Name)
	}
	b.WriteString("pods:\n")
	for _, p := range t.Pods {
		fmt.Fprintf(&b, "  - {name: %s, dc: %s}\n", p.Name, p.DC)
	}
	b.WriteString("racks:\n")
	for _, r := range t.Racks {
		fmt.Fprintf(&b, "  - {name: %s, pod: %s}\n", r.Name, r.Pod)
	}
	b.WriteString("switches:\n")
	for _, s := range t.Switches {
		switch s.Role {
		case RoleToR:
			fmt.Fprintf(&b, "  - {name: %s, role: tor, rack: %s", s.Name, s.Rack)
		case RoleLeaf:
			fmt.Fprintf(&b, "  - {name: %s, role: leaf, pod: %s", s.Name, s.Pod)
		case RoleSpine:
			fmt.Fprintf(&b, "  - {name: %s, role: spine, dc: %s", s.Name, s.DC)
		default:
			fmt.Fprintf(&b, "  - {name: %s, role: %s", s.Name, s.Role)
		}
		if s.Loopback.IsValid() {
			fmt.Fprintf(&b, ", loopback: %s", s.Loopback)
		}
		if len(s.Interfaces) > 0 {
			b.WriteString(", interfaces: [")
			for i, in := range s.Interfaces {
				if i > 0 {
					b.WriteString(", ")
				}
				fmt.Fprintf(&b, "{peer: %s, addr: %s}", in.Peer, in.Addr)
			}
			b.WriteString("]")
		}
		b.WriteString("}\n")
	}
	b.WriteString("hosts:\n")
	for _, h := range t.Hosts {
		fmt.Fprintf(&b, "  - {name: %s, addr: %s, rack: %s}\n", h.Name, h.Addr, h.Rack)
	}
	b.WriteString("links:\n")
	for _, l := range t.Links {
		fmt.Fprintf(&b, "  - %s\n", l.Name())
	}
	return b.Bytes(), nil
}

func quote(s string) string {
	if nameRE.MatchString(s) {
		return s
	}
	return fmt.Sprintf("%q", s)
}
