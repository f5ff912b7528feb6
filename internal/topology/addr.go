package topology

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// thisNetwork is 0.0.0.0/8 (RFC 1122): "this host on this network", never
// a destination.
var thisNetwork = netip.MustParsePrefix("0.0.0.0/8")

// checkAddr parses the address a host or switch is reached at and refuses
// what cannot be one element's address: probes and traceroute answers
// would go nowhere, to a group, or to whichever machine is on the local
// link. An IPv4-mapped IPv6 address is returned as its IPv4 address, so
// that ::ffff:10.0.0.1 and 10.0.0.1 are one address.
func checkAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, errors.New("not an IP address")
	}
	if a.Zone() != "" {
		return netip.Addr{}, errors.New("has a zone (%...): a fabric address is the same on every machine")
	}
	a = a.Unmap()
	if why := badAddr(a); why != "" {
		return netip.Addr{}, errors.New(why)
	}
	return a, nil
}

// badAddr says why a parsed address cannot belong to an element, "" if it
// can. Loopback addresses are allowed: the demo runs every agent on one
// machine.
func badAddr(a netip.Addr) string {
	switch {
	case a.IsUnspecified():
		return "is the unspecified address"
	case a.Is4() && thisNetwork.Contains(a):
		return "is in 0.0.0.0/8 (this network)"
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "is the broadcast address"
	case a.IsMulticast():
		return "is a multicast address"
	case a.IsLinkLocalUnicast():
		return "is link-local: it names a different machine on every link"
	}
	return ""
}

// parseIfaceAddr parses an interface address, ADDR or ADDR/LEN; a bare
// address is a single-address (point-to-point) prefix. The address itself
// is kept (not masked).
func parseIfaceAddr(s string) (netip.Prefix, error) {
	addrPart, bitsPart, hasBits := strings.Cut(s, "/")
	a, err := checkAddr(addrPart)
	if err != nil {
		return netip.Prefix{}, err
	}
	if !hasBits {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	raw, err := netip.ParseAddr(addrPart)
	if err != nil {
		return netip.Prefix{}, errors.New("not an IP address")
	}
	p, err := netip.ParsePrefix(raw.String() + "/" + bitsPart)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad prefix length /%s", bitsPart)
	}
	bits := p.Bits()
	if raw.Is4In6() {
		if bits < 96 {
			return netip.Prefix{}, fmt.Errorf("prefix /%d of an IPv4-mapped address is shorter than /96", bits)
		}
		bits -= 96
	}
	if bits == 0 {
		return netip.Prefix{}, errors.New("prefix length /0 is the whole address space")
	}
	p = netip.PrefixFrom(a, bits)
	// A subnet with room for a network and a broadcast address (IPv4 /30
	// and shorter) cannot give either to an interface; /31 has neither
	// (RFC 3021).
	if a.Is4() && bits <= 30 {
		if a == p.Masked().Addr() {
			return netip.Prefix{}, fmt.Errorf("is the network address of %s", p.Masked())
		}
		if a == lastAddr(p) {
			return netip.Prefix{}, fmt.Errorf("is the broadcast address of %s", p.Masked())
		}
	}
	return p, nil
}

// lastAddr is the highest address of p's subnet.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// isSingle reports whether p is one address (a point-to-point address).
func isSingle(p netip.Prefix) bool { return p.Bits() == p.Addr().BitLen() }

// linkEndsAgree says why two ends of one link cannot be configured
// together, "" if they can: both in one family, and when either names a
// subnet, the other end's address is in it with the same length.
func linkEndsAgree(a, b netip.Prefix) string {
	if a.Addr().Is4() != b.Addr().Is4() {
		return fmt.Sprintf("%s and %s are of different IP families", a, b)
	}
	if isSingle(a) && isSingle(b) {
		return ""
	}
	if a.Bits() != b.Bits() || !a.Masked().Contains(b.Addr()) {
		return fmt.Sprintf("%s and %s are not in one subnet", a, b)
	}
	return ""
}

// hostEndAgrees says why a switch interface cannot face a host with
// address h, "" if it can.
func hostEndAgrees(iface netip.Prefix, h netip.Addr) string {
	if iface.Addr().Is4() != h.Is4() {
		return fmt.Sprintf("%s and the host's %s are of different IP families", iface, h)
	}
	if !isSingle(iface) && !iface.Masked().Contains(h) {
		return fmt.Sprintf("the host's address %s is not in %s", h, iface.Masked())
	}
	return ""
}

// assignSwitchAddrs gives every switch of a generated fabric a loopback and
// every switch end of a link an address, counting up from base:
//
//  1. one loopback (/32) per switch, in switch order;
//  2. one /31 per switch-to-switch link, in link order, starting at the
//     next even address: the link's first-named end gets the even address,
//     the other the odd one;
//  3. one point-to-point address (/32) per host link, in link order, for
//     the ToR's end; the host's end is the host's own addr, and the host's
//     default gateway is this address.
//
// Every address is checked like a file's, and none may be a host's.
func (t *Topology) assignSwitchAddrs(base string) error {
	next, err := checkAddr(base)
	if err != nil {
		return fmt.Errorf("switch base address %q %w", base, err)
	}
	if !next.Is4() {
		return fmt.Errorf("switch base address %q must be IPv4, like the generated hosts", base)
	}
	hosts := make(map[netip.Addr]string, len(t.Hosts))
	for _, h := range t.Hosts {
		hosts[h.Addr] = h.Name
	}
	var failed error
	take := func() netip.Addr {
		a := next
		switch {
		case failed != nil:
		case !a.IsValid() || !a.Is4():
			failed = fmt.Errorf("switch addresses from %s run out of IPv4 addresses", base)
		case badAddr(a) != "":
			failed = fmt.Errorf("switch address %s %s: choose another --switch-base-addr", a, badAddr(a))
		case hosts[a] != "":
			failed = fmt.Errorf("switch address %s is host %s's: choose a --switch-base-addr outside the hosts' range", a, hosts[a])
		}
		next = next.Next()
		return a
	}
	sw := make(map[string]*Switch, len(t.Switches))
	for _, s := range t.Switches {
		sw[s.Name] = s
		s.Loopback = take()
	}
	if next.IsValid() && next.As4()[3]%2 == 1 {
		next = next.Next()
	}
	for _, l := range t.Links {
		a, b := sw[l.A], sw[l.B]
		if a == nil || b == nil {
			continue
		}
		a.Interfaces = append(a.Interfaces, Interface{Peer: b.Name, Addr: netip.PrefixFrom(take(), 31)})
		b.Interfaces = append(b.Interfaces, Interface{Peer: a.Name, Addr: netip.PrefixFrom(take(), 31)})
	}
	for _, l := range t.Links {
		s, peer := sw[l.A], l.B
		if s == nil {
			s, peer = sw[l.B], l.A
		}
		if s == nil || sw[peer] != nil {
			continue
		}
		s.Interfaces = append(s.Interfaces, Interface{Peer: peer, Addr: netip.PrefixFrom(take(), 32)})
	}
	return failed
}
