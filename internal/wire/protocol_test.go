package wire

import (
	"slices"
	"strings"
	"testing"
)

// The table names every value of the generated enum except UNSPECIFIED
// exactly once, in enum order, and names round-trip: a protocol added to
// meshlens.proto without a row here fails this test.
func TestProtocolTableMatchesEnum(t *testing.T) {
	var enum []Protocol
	for v := range Protocol_name {
		if Protocol(v) != Protocol_PROTOCOL_UNSPECIFIED {
			enum = append(enum, Protocol(v))
		}
	}
	slices.Sort(enum)
	var table []Protocol
	seen := map[string]bool{}
	for _, r := range Protocols() {
		table = append(table, r.Protocol)
		if seen[r.Name] {
			t.Errorf("name %q used twice", r.Name)
		}
		seen[r.Name] = true
		// The name is the enum's own, lower-case, so the table cannot
		// swap two rows' names unnoticed.
		if want := strings.ToLower(strings.TrimPrefix(r.Protocol.String(), "PROTOCOL_")); r.Name != want {
			t.Errorf("%v named %q, want %q", r.Protocol, r.Name, want)
		}
		back, err := ParseProtocol(r.Name)
		if err != nil || back != r.Protocol {
			t.Errorf("ParseProtocol(%q) = %v, %v; want %v", r.Name, back, err, r.Protocol)
		}
		if r.Protocol.Name() != r.Name || !r.Protocol.Known() {
			t.Errorf("%v: Name() = %q, Known() = %v", r.Protocol, r.Protocol.Name(), r.Protocol.Known())
		}
		if r.Peer == r.Target {
			t.Errorf("%s: a protocol probes either peers or targets (peer %v, target %v)", r.Name, r.Peer, r.Target)
		}
		if r.Responder && !r.Peer {
			t.Errorf("%s: only peer protocols are answered by the responder", r.Name)
		}
	}
	if !slices.Equal(table, enum) {
		t.Errorf("table protocols %v, enum values %v", table, enum)
	}
	for _, n := range DefaultPeerProtocols() {
		if _, err := ParsePeerProtocol(n); err != nil {
			t.Errorf("default peer protocol: %v", err)
		}
	}
}

func TestParseProtocolRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		peer       bool
	}{
		{"", "unknown protocol", false},
		{"TCP", "unknown protocol", false},
		{"sctp", "want tcp, udp, http or icmp", false},
		{"unspecified", "unknown protocol", false},
		{"http", "want tcp, udp or icmp", true},
		{"sctp", "unknown protocol", true},
	} {
		parse := ParseProtocol
		if tc.peer {
			parse = ParsePeerProtocol
		}
		if p, err := parse(tc.name); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parse(%q, peer %v) = %v, %v; want an error with %q", tc.name, tc.peer, p, err, tc.want)
		}
	}
	for _, p := range []Protocol{Protocol_PROTOCOL_UNSPECIFIED, Protocol(99), Protocol(-1)} {
		if p.Known() || p.Name() != "unspecified" || p.IsPeer() || p.IsTarget() || p.NeedsResponder() {
			t.Errorf("%d: known %v, name %q", p, p.Known(), p.Name())
		}
	}
}
