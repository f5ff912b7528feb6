package wire

import (
	"fmt"
	"strings"
)

// ProtocolInfo is one row of the protocol table: what every package needs
// to know about a probe protocol besides how to send it (the prober) and
// how to answer it (the responder). Adding a protocol means a value in the
// Protocol enum (meshlens.proto), a row here, a prober and, if Responder,
// the responder's side; pinglists, SLO files, label values, the pairs API
// and the UI's protocol list follow from this table.
type ProtocolInfo struct {
	Protocol Protocol `json:"-"`
	// Name is the protocol's name everywhere outside the wire: config
	// files (pinglist, SLO, scenario), the `proto` label of every metric,
	// API parameters and the UI.
	Name string `json:"name"`
	// Peer: agents probe one another with it (pinglist peers), so it can
	// be listed in a pinglist's protocols.
	Peer bool `json:"peer"`
	// Target: agents probe configured service targets with it (a URL, not
	// a peer agent).
	Target bool `json:"target"`
	// Responder: a peer answers it with the meshlens responder, so the
	// probe goes to the responder port; without it the kernel answers
	// (ICMP echo) and the target address has no port.
	Responder bool `json:"responder"`
}

// protocolTable lists every probe protocol once, in enum order.
var protocolTable = []ProtocolInfo{
	{Protocol: Protocol_PROTOCOL_TCP, Name: "tcp", Peer: true, Responder: true},
	{Protocol: Protocol_PROTOCOL_UDP, Name: "udp", Peer: true, Responder: true},
	{Protocol: Protocol_PROTOCOL_HTTP, Name: "http", Target: true},
	{Protocol: Protocol_PROTOCOL_ICMP, Name: "icmp", Peer: true},
}

// Protocols returns the protocol table in enum order (a copy).
func Protocols() []ProtocolInfo { return append([]ProtocolInfo(nil), protocolTable...) }

// Info returns p's row of the table; ok is false for PROTOCOL_UNSPECIFIED
// and values no row names (a newer agent's, or garbage).
func (p Protocol) Info() (info ProtocolInfo, ok bool) {
	for _, r := range protocolTable {
		if r.Protocol == p {
			return r, true
		}
	}
	return ProtocolInfo{}, false
}

// Known reports whether p is a protocol of the table.
func (p Protocol) Known() bool { _, ok := p.Info(); return ok }

// Name is p's name ("tcp", "udp", ...), or "unspecified" for a value not
// in the table.
func (p Protocol) Name() string {
	if r, ok := p.Info(); ok {
		return r.Name
	}
	return "unspecified"
}

// IsPeer reports whether agents probe their peers with p.
func (p Protocol) IsPeer() bool { r, _ := p.Info(); return r.Peer }

// IsTarget reports whether agents probe configured service targets with p.
func (p Protocol) IsTarget() bool { r, _ := p.Info(); return r.Target }

// NeedsResponder reports whether p's probes go to the peer's responder
// port (and so carry a destination port).
func (p Protocol) NeedsResponder() bool { r, _ := p.Info(); return r.Responder }

// ParseProtocol is the inverse of Name: the protocol named s, or an error
// that lists the valid names.
func ParseProtocol(s string) (Protocol, error) {
	for _, r := range protocolTable {
		if r.Name == s {
			return r.Protocol, nil
		}
	}
	return Protocol_PROTOCOL_UNSPECIFIED, fmt.Errorf("wire: unknown protocol %q (want %s)", s, namesList(ProtocolNames()))
}

// ParsePeerProtocol is ParseProtocol restricted to peer protocols: what a
// pinglist or a scenario may ask agents to probe each other with.
func ParsePeerProtocol(s string) (Protocol, error) {
	p, err := ParseProtocol(s)
	switch {
	case err != nil:
		return Protocol_PROTOCOL_UNSPECIFIED, fmt.Errorf("wire: unknown protocol %q (want %s)", s, namesList(PeerProtocolNames()))
	case !p.IsPeer():
		return Protocol_PROTOCOL_UNSPECIFIED, fmt.Errorf("wire: protocol %q is not probed between agents (want %s)", s, namesList(PeerProtocolNames()))
	}
	return p, nil
}

// ProtocolNames returns every protocol's name, in enum order.
func ProtocolNames() []string { return names(func(ProtocolInfo) bool { return true }) }

// PeerProtocolNames returns the names of the peer protocols, in enum order.
func PeerProtocolNames() []string { return names(func(r ProtocolInfo) bool { return r.Peer }) }

// DefaultPeerProtocols are what agents probe each other with when a
// pinglist setting or a scenario names none: the two that need nothing but
// the responder (icmp needs a raw-socket capability).
func DefaultPeerProtocols() []string {
	return []string{Protocol_PROTOCOL_TCP.Name(), Protocol_PROTOCOL_UDP.Name()}
}

func names(keep func(ProtocolInfo) bool) []string {
	var out []string
	for _, r := range protocolTable {
		if keep(r) {
			out = append(out, r.Name)
		}
	}
	return out
}

// namesList joins names for an error message: "tcp, udp or icmp".
func namesList(n []string) string {
	if len(n) <= 1 {
		return strings.Join(n, "")
	}
	return strings.Join(n[:len(n)-1], ", ") + " or " + n[len(n)-1]
}
