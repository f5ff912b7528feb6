// Package pinglist turns a topology into per-host pinglists, Pingmesh
// style, in three levels (within a rack, across racks of a DC, across DCs),
// and versions them. It imports only topology, and wire for the protocol table.
package pinglist

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/meshlens/meshlens/internal/wire"
)

// Levels of the Pingmesh design.
const (
	LevelIntraRack = 1 // every host probes every other host under its ToR
	LevelIntraDC   = 2 // host k of rack i probes host k of rack j
	LevelInterDC   = 3 // representatives probe other DCs' representatives
)

// Peer is one host to probe.
type Peer struct {
	Host  string `json:"host"`
	Addr  string `json:"addr"`
	Level int    `json:"level"`
}

// HTTPTarget is a service endpoint the agent probes with GET.
type HTTPTarget struct {
	Name         string `json:"name"`
	URL          string `json:"url"`
	ExpectStatus int    `json:"expect_status,omitempty"` // 0: any 2xx
	ExpectBody   string `json:"expect_body,omitempty"`   // substring; empty: no check
}

// Pinglist is what one agent probes, as published in the KV bucket under
// the host's name.
type Pinglist struct {
	Host string `json:"host"`
	// Addr is the host's own address from the topology: where its responder
	// listens unless the agent is told otherwise.
	Addr      string    `json:"addr"`
	Version   uint64    `json:"version"` // increases with every change of the fleet's lists
	Generated time.Time `json:"generated"`
	// Partition of the results stream this agent publishes to.
	Partition int `json:"partition"`
	// Interval between two probes of the same peer and protocol.
	Interval Duration `json:"interval"`
	// Timeout after which an unanswered probe is lost.
	Timeout Duration `json:"timeout"`
	// Window is the servers' aggregation window, whose boundaries the
	// agent marks in its batches (wire.Batch.complete_before_unix_nano);
	// absent from lists of older servers.
	Window Duration `json:"window,omitempty"`
	// Protocols run against every peer: tcp, udp, icmp.
	Protocols []string `json:"protocols"`
	// ResponderPort is the fleet's TCP and UDP responder port.
	ResponderPort int          `json:"responder_port"`
	Peers         []Peer       `json:"peers"`
	HTTPTargets   []HTTPTarget `json:"http_targets,omitempty"`
}

// Duration is a time.Duration that reads and writes as "10s" in JSON.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("pinglist: duration must be a string like \"10s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("pinglist: duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// Encode is the KV value of a pinglist.
func Encode(p *Pinglist) ([]byte, error) { return json.Marshal(p) }

// Decode parses and checks a KV value.
func Decode(b []byte) (*Pinglist, error) {
	var p Pinglist
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("pinglist: decode: %w", err)
	}
	switch {
	case p.Host == "":
		return nil, fmt.Errorf("pinglist: no host")
	case p.Interval <= 0:
		return nil, fmt.Errorf("pinglist of %s: interval %v must be positive", p.Host, time.Duration(p.Interval))
	case p.Timeout <= 0 || p.Timeout > Duration(wire.MaxRTTNs):
		return nil, fmt.Errorf("pinglist of %s: timeout %v must be positive and at most %v", p.Host, time.Duration(p.Timeout), time.Duration(wire.MaxRTTNs))
	case p.Window < 0 || (p.Window > 0 && time.Duration(p.Window) < time.Second):
		return nil, fmt.Errorf("pinglist of %s: window %v must be at least 1s", p.Host, time.Duration(p.Window))
	case p.ResponderPort <= 0 || p.ResponderPort > 65535:
		return nil, fmt.Errorf("pinglist of %s: responder port %d out of range", p.Host, p.ResponderPort)
	}
	for _, proto := range p.Protocols {
		if _, err := wire.ParsePeerProtocol(proto); err != nil {
			return nil, fmt.Errorf("pinglist of %s: %w", p.Host, err)
		}
	}
	return &p, nil
}
