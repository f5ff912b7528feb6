// Package lab builds meshlens's real-packet lab: a Clos fabric of Linux
// network namespaces (one per host and switch, veth pairs for links, static
// ECMP routes hashed on the 5-tuple), a management network apart from the
// fabric, real faults made with nftables, link state and a userspace delay
// relay, and the server and agents running inside it.
//
// It shells out to ip(8) and nft(8); the pure parts (address plan, routes,
// nft rule sets) are functions of the topology and the faults in force, so
// they are tested without root. It imports topology and nothing of the
// server, agent or analysis: the lab is a fabric, not a part of meshlens.
package lab

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"strings"

	"github.com/meshlens/meshlens/internal/topology"
)

// The lab's address ranges, all inside 198.18.0.0/15 (RFC 2544 benchmarking):
// hosts in 198.18.0.0/16, switch addresses (the topology's) in 198.19.0.0/17, and
// the management network 198.19.128.0/17, which no fabric route covers.
var (
	HostPrefix = netip.MustParsePrefix("198.18.0.0/16")
	LinkPrefix = netip.MustParsePrefix("198.19.0.0/17")
	MgmtPrefix = netip.MustParsePrefix("198.19.128.0/17")
	// MgmtServerAddr is the server's address on the management bridge.
	MgmtServerAddr = netip.MustParseAddr("198.19.128.1")
)

// DefaultHostBase is where generated lab topologies start numbering hosts,
// DefaultSwitchBase their switch addresses (topo gen --switch-base-addr).
const (
	DefaultHostBase   = "198.18.0.1"
	DefaultSwitchBase = "198.19.0.0"
)

// maxLinks is how many /31s LinkPrefix holds.
const maxLinks = 1 << 14

// Plan is where every element of a topology lives in the lab: namespace
// names, interface names and addresses. It is a pure function of the
// topology and the lab id.
type Plan struct {
	ID    string
	Topo  *topology.Topology
	links map[[2]string]int // {a, b} and {b, a} -> index in Topo.Links
	hosts map[string]int    // host -> index in Topo.Hosts
}

// NewPlan checks that the topology fits the lab (hosts in HostPrefix, few
// enough links and hosts) and indexes it.
func NewPlan(id string, t *topology.Topology) (*Plan, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	if len(t.Links) > maxLinks {
		return nil, fmt.Errorf("lab: %d links: the lab's link range %s holds %d", len(t.Links), LinkPrefix, maxLinks)
	}
	if len(t.Hosts) > 1<<15-2 {
		return nil, fmt.Errorf("lab: %d hosts: the management range %s holds %d", len(t.Hosts), MgmtPrefix, 1<<15-2)
	}
	p := &Plan{ID: id, Topo: t, links: map[[2]string]int{}, hosts: map[string]int{}}
	for i, h := range t.Hosts {
		if !HostPrefix.Contains(h.Addr) {
			return nil, fmt.Errorf("lab: host %s address %s is outside the lab's host range %s (generate with --base-addr %s)", h.Name, h.Addr, HostPrefix, DefaultHostBase)
		}
		p.hosts[h.Name] = i
	}
	for i, l := range t.Links {
		p.links[[2]string{l.A, l.B}] = i
		p.links[[2]string{l.B, l.A}] = i
	}
	// Switches answer traceroute from their interface addresses, and the
	// server maps those back to links: they must be the topology's own.
	for _, sw := range t.Switches {
		for _, n := range t.Neighbors(sw.Name) {
			in, ok := sw.Interface(n)
			switch {
			case !ok:
				return nil, fmt.Errorf("lab: switch %s has no address facing %s: the lab needs the topology's switch addresses (generate with --switch-base-addr %s)", sw.Name, n, DefaultSwitchBase)
			case !LinkPrefix.Contains(in.Addr.Addr()):
				return nil, fmt.Errorf("lab: switch %s address %s facing %s is outside the lab's link range %s", sw.Name, in.Addr.Addr(), n, LinkPrefix)
			}
		}
	}
	return p, nil
}

// checkID keeps namespace names short and safe in file names and commands.
func checkID(id string) error {
	if id == "" || len(id) > 8 {
		return fmt.Errorf("lab: id %q: want 1 to 8 characters", id)
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return fmt.Errorf("lab: id %q: want lower-case letters and digits only", id)
		}
	}
	return nil
}

// NS is the namespace of a topology element.
func (p *Plan) NS(element string) string { return p.ID + "-" + element }

// MgmtNS holds the management bridge and the server.
func (p *Plan) MgmtNS() string { return p.ID + "-mgmt" }

// RelayNS holds the delay relays' interfaces.
func (p *Plan) RelayNS() string { return p.ID + "-relay" }

// CheckNS is the scratch namespace of the kernel feature check.
func (p *Plan) CheckNS() string { return p.ID + "-check" }

// Namespaces lists every element namespace, hosts first.
func (p *Plan) Namespaces() []string {
	var out []string
	for _, h := range p.Topo.Hosts {
		out = append(out, p.NS(h.Name))
	}
	for _, s := range p.Topo.Switches {
		out = append(out, p.NS(s.Name))
	}
	return out
}

// LinkIndex finds the link between a and b, in either order.
func (p *Plan) LinkIndex(a, b string) (int, bool) {
	i, ok := p.links[[2]string{a, b}]
	return i, ok
}

// IfName is the interface of link i at both of its ends (the ends live in
// different namespaces, so one name serves both and stays under 15 bytes).
func IfName(i int) string { return fmt.Sprintf("l%d", i) }

// InterfaceAddr is the address of switch element's interface facing peer,
// from the topology: the switch answers traceroute from it
// (icmp_errors_use_inbound_ifaddr), and its neighbours route through it.
func (p *Plan) InterfaceAddr(element, peer string) (netip.Addr, bool) {
	sw := p.Topo.Switch(element)
	if sw == nil {
		return netip.Addr{}, false
	}
	in, ok := sw.Interface(peer)
	if !ok {
		return netip.Addr{}, false
	}
	return in.Addr.Addr(), true
}

// MgmtAddr is host's address on the management network.
func (p *Plan) MgmtAddr(host string) netip.Addr {
	i := p.hosts[host]
	a := MgmtServerAddr.As4()
	n := uint32(a[2])<<8 | uint32(a[3])
	n += uint32(i) + 1
	return netip.AddrFrom4([4]byte{a[0], a[1], byte(n >> 8), byte(n)})
}

// MgmtIfName is host's port on the management bridge (in the mgmt namespace);
// in the host's namespace the other end is called MgmtHostIf.
func (p *Plan) MgmtIfName(host string) string { return fmt.Sprintf("m%d", p.hosts[host]) }

// MgmtHostIf is the management interface inside every host namespace.
const MgmtHostIf = "mgmt0"

// MgmtBridge is the management bridge inside the mgmt namespace.
const MgmtBridge = "br0"

// HostUplink is the fabric link of a host: its index and its ToR.
func (p *Plan) HostUplink(host string) (int, string, error) {
	h := p.Topo.Host(host)
	if h == nil {
		return 0, "", fmt.Errorf("lab: host %q is not in the topology", host)
	}
	tor := p.Topo.Rack(h.Rack).ToR
	i, ok := p.LinkIndex(host, tor)
	if !ok {
		return 0, "", fmt.Errorf("lab: host %s has no link to its ToR %s", host, tor)
	}
	return i, tor, nil
}

// Route is one static route of a namespace: to Dst through one or more
// next hops (ECMP when several).
type Route struct {
	Dst  netip.Prefix
	Hops []NextHop
	Src  netip.Addr // set on hosts: probes leave from the host's address
}

// NextHop is a neighbour's interface address reached on one of our links.
// Via is unset for a directly attached host.
type NextHop struct {
	Via netip.Addr
	Dev string
}

// Routes computes the static routes of element's namespace. A switch
// reaches every host through the first hops of the topology's equal-cost
// switch paths to that host's ToR (a ToR reaches its own hosts directly);
// a host sends the whole host range to its ToR. Links in down are left
// out, as a routing protocol would withdraw them; a route with no hop left
// is omitted.
func (p *Plan) Routes(element string, down map[int]bool) ([]Route, error) {
	if h := p.Topo.Host(element); h != nil {
		i, tor, err := p.HostUplink(element)
		if err != nil {
			return nil, err
		}
		if down[i] {
			return nil, nil
		}
		gw, _ := p.InterfaceAddr(tor, element)
		return []Route{{Dst: HostPrefix, Hops: []NextHop{{Via: gw, Dev: IfName(i)}}, Src: h.Addr}}, nil
	}
	if p.Topo.Switch(element) == nil {
		return nil, fmt.Errorf("lab: %q is neither a host nor a switch of the topology", element)
	}
	var out []Route
	for _, h := range p.Topo.Hosts {
		tor := p.Topo.Rack(h.Rack).ToR
		var hops []NextHop
		if tor == element {
			i, ok := p.LinkIndex(element, h.Name)
			if ok && !down[i] {
				hops = append(hops, NextHop{Dev: IfName(i)})
			}
		} else {
			seen := map[string]bool{}
			for _, path := range p.Topo.SwitchPaths(element, tor) {
				if len(path) < 2 || seen[path[1]] {
					continue
				}
				seen[path[1]] = true
				i, _ := p.LinkIndex(element, path[1])
				if down[i] {
					continue
				}
				via, _ := p.InterfaceAddr(path[1], element)
				hops = append(hops, NextHop{Via: via, Dev: IfName(i)})
			}
		}
		if len(hops) == 0 {
			continue
		}
		slices.SortFunc(hops, func(a, b NextHop) int { return strings.Compare(a.Dev, b.Dev) })
		out = append(out, Route{Dst: netip.PrefixFrom(h.Addr, 32), Hops: hops})
	}
	return out, nil
}

// ipLine renders a route as an `ip -batch` line. Next hops are onlink:
// interface addresses are /32s, so no prefix says the neighbour is near.
func (r Route) ipLine() string {
	var b strings.Builder
	fmt.Fprintf(&b, "route replace %s", r.Dst)
	if len(r.Hops) == 1 {
		h := r.Hops[0]
		if h.Via.IsValid() {
			fmt.Fprintf(&b, " via %s dev %s onlink", h.Via, h.Dev)
		} else {
			fmt.Fprintf(&b, " dev %s scope link", h.Dev)
		}
	} else {
		for _, h := range r.Hops {
			fmt.Fprintf(&b, " nexthop via %s dev %s onlink", h.Via, h.Dev)
		}
	}
	if r.Src.IsValid() {
		fmt.Fprintf(&b, " src %s", r.Src)
	}
	return b.String()
}

// elementLinks lists the indices of element's links, in topology order.
func (p *Plan) elementLinks(element string) []int {
	var out []int
	for i, l := range p.Topo.Links {
		if l.A == element || l.B == element {
			out = append(out, i)
		}
	}
	return out
}

// ConfigBatch is the `ip -n NS -batch` script that brings element's
// namespace to its configured state: loopback and links up (those in down
// set down), interface addresses, management address (hosts), routes. It
// only adds or replaces, so it is safe to run again after a change.
func (p *Plan) ConfigBatch(element string, down map[int]bool) (string, error) {
	var b strings.Builder
	b.WriteString("link set lo up\n")
	host := p.Topo.Host(element)
	for _, i := range p.elementLinks(element) {
		if down[i] {
			fmt.Fprintf(&b, "link set %s down\n", IfName(i))
		} else {
			fmt.Fprintf(&b, "link set %s up\n", IfName(i))
		}
		if host != nil {
			fmt.Fprintf(&b, "addr replace %s/32 dev %s\n", host.Addr, IfName(i))
			continue
		}
		l := p.Topo.Links[i]
		peer := l.A
		if peer == element {
			peer = l.B
		}
		a, _ := p.InterfaceAddr(element, peer)
		fmt.Fprintf(&b, "addr replace %s/32 dev %s\n", a, IfName(i))
	}
	if host != nil {
		fmt.Fprintf(&b, "link set %s up\n", MgmtHostIf)
		fmt.Fprintf(&b, "addr replace %s/%d dev %s\n", p.MgmtAddr(element), MgmtPrefix.Bits(), MgmtHostIf)
	}
	routes, err := p.Routes(element, down)
	if err != nil {
		return "", err
	}
	for _, r := range routes {
		b.WriteString(r.ipLine())
		b.WriteByte('\n')
	}
	return b.String(), nil
}

// Sysctls are the kernel settings of an element's namespace: switches
// route with 5-tuple ECMP, skip next hops whose link is down, answer
// traceroute from the inbound interface and rate-limit ICMP as the lab
// says; nobody filters by reverse path; IPv6 is off so that nothing but
// the lab's IPv4 traffic crosses the links.
//
// hashSeed, when not 0, is the switch's own ECMP hash seed. Without one
// every namespace hashes a flow alike, so a flow that took the first next
// hop at one tier takes the first at the next (ECMP polarization): the
// paths of a fabric collapse to a few, and links of different tiers always
// carry the same flows. Datacenter switches are given different seeds for
// that reason, and so are the lab's.
func Sysctls(isSwitch bool, icmp ICMPLimits, hashSeed uint32) []string {
	out := []string{
		"net.ipv6.conf.all.disable_ipv6=1",
		"net.ipv6.conf.default.disable_ipv6=1",
		"net.ipv4.conf.all.rp_filter=0",
		"net.ipv4.conf.default.rp_filter=0",
		fmt.Sprintf("net.ipv4.icmp_ratelimit=%d", icmp.RatelimitMS),
		fmt.Sprintf("net.ipv4.icmp_msgs_per_sec=%d", icmp.MsgsPerSec),
	}
	if isSwitch {
		out = append(out,
			"net.ipv4.ip_forward=1",
			"net.ipv4.fib_multipath_hash_policy=1",
			"net.ipv4.conf.all.ignore_routes_with_linkdown=1",
			"net.ipv4.conf.default.ignore_routes_with_linkdown=1",
			"net.ipv4.icmp_errors_use_inbound_ifaddr=1",
		)
		if hashSeed != 0 {
			out = append(out, fmt.Sprintf("%s=%d", hashSeedSysctl, hashSeed))
		}
	}
	return out
}

// hashSeedSysctl is the ECMP hash seed of a namespace (Linux 6.11 on).
const hashSeedSysctl = "net.ipv4.fib_multipath_hash_seed"

// HashSeed is switch name's ECMP hash seed: stable across runs of the lab,
// different from switch to switch, never 0 (the kernel's "no seed").
func HashSeed(name string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(name))
	return h.Sum32() | 1
}

// ICMPLimits are the kernel's ICMP rate limits in every lab namespace
// (net.ipv4.icmp_ratelimit in ms, net.ipv4.icmp_msgs_per_sec).
type ICMPLimits struct {
	RatelimitMS int
	MsgsPerSec  int
}
