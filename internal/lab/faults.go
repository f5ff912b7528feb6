package lab

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/meshlens/meshlens/internal/topology"
)

// FaultKind names what a lab fault does; the names are the simulator's.
type FaultKind string

const (
	LinkLoss    FaultKind = "link_loss"    // nft: random drop leaving a link end
	LinkLatency FaultKind = "link_latency" // a delay relay spliced into the link
	LinkDown    FaultKind = "link_down"    // both ends administratively down
	DeviceDown  FaultKind = "device_down"  // nft: the switch forwards, accepts and sends nothing
	Blackhole   FaultKind = "blackhole"    // nft: the switch drops flows whose source port matches
	DeviceLoss  FaultKind = "device_loss"  // nft: random drop of the switch's forwarded traffic
	HostNIC     FaultKind = "host_nic"     // nft: random drop on the host's fabric interface, both ways
	HostDown    FaultKind = "host_down"    // nft: the host accepts and sends nothing, management network included
)

// kindsFor is what can go wrong with each kind of element.
var kindsFor = map[topology.Kind][]FaultKind{
	topology.KindLink:   {LinkLoss, LinkLatency, LinkDown},
	topology.KindSwitch: {DeviceDown, Blackhole, DeviceLoss},
	topology.KindHost:   {HostNIC, HostDown},
}

// AllKinds lists every fault kind the lab knows.
func AllKinds() []FaultKind {
	return []FaultKind{LinkLoss, LinkLatency, LinkDown, DeviceDown, Blackhole, DeviceLoss, HostNIC, HostDown}
}

// Direction of a link fault, relative to the link as the topology writes
// it (A--B).
type Direction string

const (
	Both Direction = "both"
	AToB Direction = "a-to-b"
	BToA Direction = "b-to-a"
)

// Fault is one fault in force. Element is a host, a switch or a link as
// the topology names it (A--B); Direction says which ends of a link.
type Fault struct {
	Kind      FaultKind     `json:"kind"`
	Element   string        `json:"element"`
	Direction Direction     `json:"direction,omitempty"`
	Rate      float64       `json:"rate,omitempty"`
	Fraction  float64       `json:"fraction,omitempty"`
	Add       time.Duration `json:"add,omitempty"`
}

// String is the fault as `lab status` prints it.
func (f Fault) String() string {
	s := string(f.Kind) + " " + f.Element
	if f.Direction != "" && f.Direction != Both {
		s += " " + string(f.Direction)
	}
	switch f.Kind {
	case LinkLoss, DeviceLoss, HostNIC:
		s += fmt.Sprintf(" rate=%g", f.Rate)
	case Blackhole:
		s += fmt.Sprintf(" fraction=%g", f.Fraction)
	case LinkLatency:
		s += " add=" + f.Add.String()
	}
	return s
}

// ErrBadFault is wrapped by every refusal of a fault request.
var ErrBadFault = errors.New("bad fault")

// FaultRequest is a fault as a user asks for it: the element may be a
// link written A--B, B--A, A->B (one direction) or a node name.
type FaultRequest struct {
	Kind      FaultKind
	Element   string
	Direction Direction // "" means both, or the arrow's direction
	Rate      float64
	Fraction  float64
	Add       time.Duration
}

// Resolve checks a request against the topology and normalizes it: links
// are named as the topology writes them, with the direction relative to
// that. An unknown element or a kind that does not apply to it is refused
// with the element's allowed kinds.
func (p *Plan) Resolve(r FaultRequest) (Fault, error) {
	f := Fault{Kind: r.Kind, Rate: r.Rate, Fraction: r.Fraction, Add: r.Add}
	kind, dir := topology.Kind(""), r.Direction
	if a, b, directed, err := topology.ParseLinkName(r.Element); err == nil {
		i, ok := p.LinkIndex(a, b)
		if !ok {
			return Fault{}, fmt.Errorf("lab: %w: link %q is not in the topology", ErrBadFault, r.Element)
		}
		l := p.Topo.Links[i]
		f.Element = l.Name()
		kind = topology.KindLink
		reversed := l.A != a
		if directed {
			if dir != "" && dir != Both {
				return Fault{}, fmt.Errorf("lab: %w: link %q already has a direction; --direction %s contradicts it", ErrBadFault, r.Element, dir)
			}
			dir = AToB
		}
		if dir == "" {
			dir = Both
		}
		if reversed && dir != Both {
			dir = map[Direction]Direction{AToB: BToA, BToA: AToB}[dir]
		}
		switch dir {
		case Both, AToB, BToA:
		default:
			return Fault{}, fmt.Errorf("lab: %w: direction %q: want both, a-to-b or b-to-a", ErrBadFault, dir)
		}
		f.Direction = dir
	} else {
		k, ok := p.Topo.Lookup(r.Element)
		if !ok || (k != topology.KindHost && k != topology.KindSwitch) {
			return Fault{}, fmt.Errorf("lab: %w: element %q is not a host, switch or link of the topology (links are written A--B or A->B)", ErrBadFault, r.Element)
		}
		if dir != "" {
			return Fault{}, fmt.Errorf("lab: %w: --direction applies to links only, not %s %q", ErrBadFault, k, r.Element)
		}
		kind, f.Element = k, r.Element
	}
	allowed := kindsFor[kind]
	if !slices.Contains(allowed, r.Kind) {
		names := make([]string, len(allowed))
		for i, k := range allowed {
			names[i] = string(k)
		}
		return Fault{}, fmt.Errorf("lab: %w: %q cannot be applied to %s %q; allowed: %s", ErrBadFault, r.Kind, kind, f.Element, strings.Join(names, ", "))
	}
	switch r.Kind {
	case LinkLoss, DeviceLoss, HostNIC:
		if !(r.Rate > 0 && r.Rate <= 1) {
			return Fault{}, fmt.Errorf("lab: %w: %s on %q needs --rate in (0, 1], got %g", ErrBadFault, r.Kind, f.Element, r.Rate)
		}
	case Blackhole:
		if !(r.Fraction > 0 && r.Fraction <= 1) {
			return Fault{}, fmt.Errorf("lab: %w: blackhole on %q needs --fraction in (0, 1], got %g", ErrBadFault, f.Element, r.Fraction)
		}
	case LinkLatency:
		if r.Add <= 0 || r.Add > 10*time.Second {
			return Fault{}, fmt.Errorf("lab: %w: link_latency on %q needs --add in (0, 10s], got %s", ErrBadFault, f.Element, r.Add)
		}
	}
	return f, nil
}

// rateScale is the resolution of random drops: numgen draws from 0..9999.
const rateScale = 10000

// portScale is how finely a blackhole picks source ports: the low 10 bits.
const portScale = 1024

// NFTables renders the nftables script of element's namespace under the
// faults in force: one table, replaced atomically (created empty, deleted
// and recreated in one transaction, so applying it twice is safe). Empty
// when no fault acts through nftables here; then the table is deleted.
func (p *Plan) NFTables(element string, faults []Fault) string {
	var post, pre, fwd, in, out []string
	drop := func(rate float64) string {
		return fmt.Sprintf("numgen random mod %d < %d", rateScale, int(rate*rateScale+0.5))
	}
	for _, f := range faults {
		switch f.Kind {
		case LinkLoss:
			a, b, _, _ := topology.ParseLinkName(f.Element)
			i, _ := p.LinkIndex(a, b)
			if element == a && f.Direction != BToA || element == b && f.Direction != AToB {
				post = append(post, fmt.Sprintf("oifname %q %s counter drop comment %q", IfName(i), drop(f.Rate), f.String()))
			}
		case HostNIC:
			if f.Element != element {
				continue
			}
			i, _, err := p.HostUplink(element)
			if err != nil {
				continue
			}
			post = append(post, fmt.Sprintf("oifname %q %s counter drop comment %q", IfName(i), drop(f.Rate), f.String()))
			pre = append(pre, fmt.Sprintf("iifname %q %s counter drop comment %q", IfName(i), drop(f.Rate), f.String()))
		case DeviceLoss:
			if f.Element == element {
				fwd = append(fwd, fmt.Sprintf("%s counter drop comment %q", drop(f.Rate), f.String()))
			}
		case Blackhole:
			// A flow is its 5-tuple; its source port picks it, so a fixed
			// share of flows is lost entirely and the rest not at all.
			if f.Element == element {
				fwd = append(fwd, fmt.Sprintf("meta l4proto { tcp, udp } th sport & %d < %d counter drop comment %q",
					portScale-1, int(f.Fraction*portScale+0.5), f.String()))
			}
		case DeviceDown:
			if f.Element == element {
				for _, c := range []*[]string{&fwd, &in, &out} {
					*c = append(*c, fmt.Sprintf("counter drop comment %q", f.String()))
				}
			}
		case HostDown:
			// A powered-off server: nothing in or out on any interface,
			// the management network's too, so its agent is silent and its
			// responder and kernel answer nobody. The agent process keeps
			// running and spools; it delivers its backlog once cleared.
			if f.Element == element {
				for _, c := range []*[]string{&in, &out} {
					*c = append(*c, fmt.Sprintf("counter drop comment %q", f.String()))
				}
			}
		}
	}
	if len(post)+len(pre)+len(fwd)+len(in)+len(out) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("table inet meshlens {}\ndelete table inet meshlens\ntable inet meshlens {\n")
	for _, c := range []struct {
		name  string
		rules []string
	}{{"prerouting", pre}, {"input", in}, {"forward", fwd}, {"output", out}, {"postrouting", post}} {
		if len(c.rules) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\tchain %s {\n\t\ttype filter hook %s priority 0; policy accept;\n", c.name, c.name)
		for _, r := range c.rules {
			fmt.Fprintf(&b, "\t\t%s\n", r)
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// NFTDelete removes the lab's fault table from a namespace; it fails
// harmlessly when there is none (the caller creates it first).
const NFTDelete = "table inet meshlens {}\ndelete table inet meshlens\n"

// Touches lists the elements whose namespaces a fault changes.
func (p *Plan) Touches(f Fault) []string {
	if a, b, _, err := topology.ParseLinkName(f.Element); err == nil {
		return []string{a, b}
	}
	return []string{f.Element}
}

// downLinks is the set of links the faults take down: link_down's link.
func (p *Plan) downLinks(faults []Fault) map[int]bool {
	out := map[int]bool{}
	for _, f := range faults {
		if f.Kind == LinkDown {
			a, b, _, _ := topology.ParseLinkName(f.Element)
			if i, ok := p.LinkIndex(a, b); ok {
				out[i] = true
			}
		}
	}
	return out
}
