// Package topology is meshlens's one model of the fabric: datacenters, pods,
// racks, hosts, switches and the links between them. It loads and validates
// topology files, generates folded-Clos fabrics with the naming convention of
// DESIGN.md, and computes the ECMP path sets probes can take.
//
// It is at the bottom of the import graph: it imports no meshlens package
// but yamlfile.
package topology

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
)

// Role is what a switch does in the fabric.
type Role string

const (
	RoleToR   Role = "tor"
	RoleLeaf  Role = "leaf"
	RoleSpine Role = "spine"
	RoleWAN   Role = "wan"
)

// Layer orders roles from the hosts up, for drawing and for blast radius.
func (r Role) Layer() int {
	switch r {
	case RoleToR:
		return 1
	case RoleLeaf:
		return 2
	case RoleSpine:
		return 3
	case RoleWAN:
		return 4
	}
	return 0
}

// DefaultResponderPort is the fleet's TCP/UDP responder port unless the
// topology file says otherwise.
const DefaultResponderPort = 7100

// Kind of a named element, as returned by Lookup.
type Kind string

const (
	KindDC     Kind = "dc"
	KindPod    Kind = "pod"
	KindRack   Kind = "rack"
	KindHost   Kind = "host"
	KindSwitch Kind = "switch"
	KindLink   Kind = "link"
)

type DC struct {
	Name   string   `json:"name"`
	Pods   []string `json:"pods"`
	Spines []string `json:"spines"`
}

type Pod struct {
	Name   string   `json:"name"`
	DC     string   `json:"dc"`
	Racks  []string `json:"racks"`
	Leaves []string `json:"leaves"`
}

type Rack struct {
	Name  string   `json:"name"`
	DC    string   `json:"dc"`
	Pod   string   `json:"pod"`
	ToR   string   `json:"tor"`
	Hosts []string `json:"hosts"`
}

type Host struct {
	Name string     `json:"name"`
	Addr netip.Addr `json:"addr"`
	DC   string     `json:"dc"`
	Pod  string     `json:"pod"`
	Rack string     `json:"rack"`
}

// Switch is any forwarding device. DC, Pod and Rack are set as far as the
// role has them (a WAN router has none).
type Switch struct {
	Name string `json:"name"`
	Role Role   `json:"role"`
	DC   string `json:"dc,omitempty"`
	Pod  string `json:"pod,omitempty"`
	Rack string `json:"rack,omitempty"`
	// Loopback is the switch's own address, not tied to a link (zero: none).
	Loopback netip.Addr `json:"loopback,omitzero"`
	// Interfaces are the addressed ends of the switch's links, at most one
	// per link, in file order (generated: link order). A link end without
	// an address is not listed.
	Interfaces []Interface `json:"interfaces,omitempty"`
}

// Interface is a switch's end of one link: the address a time-exceeded
// answer carries when a probe arrives over the link from Peer (with
// net.ipv4.icmp_errors_use_inbound_ifaddr=1 on a Linux router), so a hop
// names both the switch and the link the probe came over.
//
// Addr's prefix length says how the link is configured:
//   - shorter than the address (a /31 or /127 between two switches, or any
//     subnet): both ends are in that subnet, configured as Addr on the
//     switch's end;
//   - a single address (/32, /128) is a point-to-point address: the other
//     end is the peer's own address (its interface facing this switch, or a
//     host's addr), configured as `ip addr add ADDR/32 peer PEER-ADDR`; a
//     host uses its ToR's address facing it as its default gateway.
type Interface struct {
	Peer string       `json:"peer"`
	Addr netip.Prefix `json:"addr"`
}

// Interface returns the switch's interface facing peer.
func (s *Switch) Interface(peer string) (Interface, bool) {
	for _, i := range s.Interfaces {
		if i.Peer == peer {
			return i, true
		}
	}
	return Interface{}, false
}

// Link joins two elements, both directions. A and B are in file order.
type Link struct {
	A string `json:"a"`
	B string `json:"b"`
}

// Name is the link's name in the outside world: "A--B".
func (l Link) Name() string { return l.A + "--" + l.B }

// DirectedLink is one direction of a link: "A->B".
type DirectedLink struct {
	From, To string
}

func (d DirectedLink) Name() string { return d.From + "->" + d.To }

// ParseLinkName splits "A--B" or "A->B". directed tells which form it was.
func ParseLinkName(s string) (a, b string, directed bool, err error) {
	if i := strings.Index(s, "->"); i > 0 {
		return s[:i], s[i+2:], true, nil
	}
	if i := strings.Index(s, "--"); i > 0 {
		return s[:i], s[i+2:], false, nil
	}
	return "", "", false, fmt.Errorf("topology: link %q is neither A--B nor A->B", s)
}

// Topology is a validated fabric. It is read-only once built and safe for
// concurrent use (the path cache locks internally).
type Topology struct {
	Name          string    `json:"name"`
	ResponderPort int       `json:"responder_port"`
	DCs           []*DC     `json:"dcs"`
	Pods          []*Pod    `json:"pods"`
	Racks         []*Rack   `json:"racks"`
	Switches      []*Switch `json:"switches"`
	Hosts         []*Host   `json:"hosts"`
	Links         []Link    `json:"links"`

	dcs      map[string]*DC
	pods     map[string]*Pod
	racks    map[string]*Rack
	hosts    map[string]*Host
	switches map[string]*Switch
	links    map[Link]bool // both orientations
	adj      map[string][]string
	byAddr   map[netip.Addr]addrOwner
	paths    pathCache
}

// addrOwner is who answers from an address: a host or switch, and for a
// switch interface the neighbour it faces.
type addrOwner struct{ element, peer string }

func (t *Topology) DC(name string) *DC         { return t.dcs[name] }
func (t *Topology) Pod(name string) *Pod       { return t.pods[name] }
func (t *Topology) Rack(name string) *Rack     { return t.racks[name] }
func (t *Topology) Host(name string) *Host     { return t.hosts[name] }
func (t *Topology) Switch(name string) *Switch { return t.switches[name] }

// Neighbors lists the elements linked to name, in link order.
func (t *Topology) Neighbors(name string) []string { return t.adj[name] }

// HasLink reports whether a and b are linked (either orientation).
func (t *Topology) HasLink(a, b string) bool { return t.links[Link{a, b}] }

// Locate gives a host's rack, pod and DC.
func (t *Topology) Locate(host string) (rack, pod, dc string, ok bool) {
	h := t.hosts[host]
	if h == nil {
		return "", "", "", false
	}
	return h.Rack, h.Pod, h.DC, true
}

// Lookup says what kind of element a name is: a DC, pod, rack, host,
// switch, or a link named A--B / A->B.
func (t *Topology) Lookup(name string) (Kind, bool) {
	switch {
	case t.hosts[name] != nil:
		return KindHost, true
	case t.switches[name] != nil:
		return KindSwitch, true
	case t.racks[name] != nil:
		return KindRack, true
	case t.pods[name] != nil:
		return KindPod, true
	case t.dcs[name] != nil:
		return KindDC, true
	}
	if a, b, _, err := ParseLinkName(name); err == nil && t.links[Link{a, b}] {
		return KindLink, true
	}
	return "", false
}

// HostByAddr finds the host with address addr (an IPv4-mapped IPv6
// address is its IPv4 address).
func (t *Topology) HostByAddr(addr netip.Addr) *Host {
	if o, ok := t.byAddr[addr.Unmap()]; ok {
		return t.hosts[o.element]
	}
	return nil
}

// ElementByAddr finds the host or switch that owns address a: a host's
// addr, a switch's loopback or one of its interfaces. For an interface,
// peer is the neighbour it faces, so a time-exceeded answer from it means
// the probe arrived over the link peer->element; peer is "" otherwise. An
// IPv4-mapped IPv6 address is its IPv4 address; an address with a zone
// belongs to no element.
func (t *Topology) ElementByAddr(a netip.Addr) (element, peer string, ok bool) {
	o, ok := t.byAddr[a.Unmap()]
	return o.element, o.peer, ok
}

// EndAddr is the address of element's end of its link to peer: a switch's
// interface facing peer, or a host's own address as a single-address
// prefix. ok is false when that end has no address or there is no such
// link.
func (t *Topology) EndAddr(element, peer string) (netip.Prefix, bool) {
	if !t.HasLink(element, peer) {
		return netip.Prefix{}, false
	}
	if h := t.hosts[element]; h != nil {
		return netip.PrefixFrom(h.Addr, h.Addr.BitLen()), true
	}
	if s := t.switches[element]; s != nil {
		if i, ok := s.Interface(peer); ok {
			return i.Addr, true
		}
	}
	return netip.Prefix{}, false
}

// index builds the look-up maps and derived lists. It assumes validate has
// passed on the raw file, or that the generator built a consistent fabric.
func (t *Topology) index() {
	t.dcs = make(map[string]*DC, len(t.DCs))
	t.pods = make(map[string]*Pod, len(t.Pods))
	t.racks = make(map[string]*Rack, len(t.Racks))
	t.hosts = make(map[string]*Host, len(t.Hosts))
	t.switches = make(map[string]*Switch, len(t.Switches))
	t.links = make(map[Link]bool, 2*len(t.Links))
	t.adj = make(map[string][]string)
	t.byAddr = make(map[netip.Addr]addrOwner, len(t.Hosts))
	for _, d := range t.DCs {
		d.Pods, d.Spines = nil, nil
		t.dcs[d.Name] = d
	}
	for _, p := range t.Pods {
		p.Racks, p.Leaves = nil, nil
		t.pods[p.Name] = p
		t.dcs[p.DC].Pods = append(t.dcs[p.DC].Pods, p.Name)
	}
	for _, r := range t.Racks {
		r.Hosts, r.ToR = nil, ""
		r.DC = t.pods[r.Pod].DC
		t.racks[r.Name] = r
		t.pods[r.Pod].Racks = append(t.pods[r.Pod].Racks, r.Name)
	}
	for _, s := range t.Switches {
		t.switches[s.Name] = s
		if s.Loopback.IsValid() {
			t.byAddr[s.Loopback] = addrOwner{element: s.Name}
		}
		for _, i := range s.Interfaces {
			t.byAddr[i.Addr.Addr()] = addrOwner{element: s.Name, peer: i.Peer}
		}
		switch s.Role {
		case RoleToR:
			r := t.racks[s.Rack]
			s.Pod, s.DC = r.Pod, r.DC
			r.ToR = s.Name
		case RoleLeaf:
			p := t.pods[s.Pod]
			s.DC = p.DC
			p.Leaves = append(p.Leaves, s.Name)
		case RoleSpine:
			t.dcs[s.DC].Spines = append(t.dcs[s.DC].Spines, s.Name)
		}
	}
	for _, h := range t.Hosts {
		r := t.racks[h.Rack]
		h.Pod, h.DC = r.Pod, r.DC
		t.hosts[h.Name] = h
		t.byAddr[h.Addr] = addrOwner{element: h.Name}
		r.Hosts = append(r.Hosts, h.Name)
	}
	for _, l := range t.Links {
		t.links[l] = true
		t.links[Link{l.B, l.A}] = true
		t.adj[l.A] = append(t.adj[l.A], l.B)
		t.adj[l.B] = append(t.adj[l.B], l.A)
	}
	t.paths = pathCache{m: make(map[[2]string][][]string)}
}

type pathCache struct {
	mu sync.Mutex
	m  map[[2]string][][]string
}
