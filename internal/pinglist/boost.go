package pinglist

import (
	"encoding/json"
	"fmt"
	"time"
)

// Limits of a Boost an agent accepts.
const (
	// MaxBoostProbes bounds Boost.Probes: probes per interval per protocol
	// of a boosted peer.
	MaxBoostProbes = 16
	// MaxBoostPeers bounds Boost.Peers (a pinglist holds a few hundred).
	MaxBoostPeers = 4096
)

// Boost is evidence on demand: the analyzer suspects an element whose
// evidence is thin and asks the agents whose flows cross it to probe those
// peers more often for a while (NetBouncer's and 007's "probe the suspect
// paths"). It is published in the evidence KV bucket under the host's
// name, beside the pinglist, and withdrawn by deleting the key or by a
// boost without peers. It only adds probes to peers already in the
// pinglist; Until bounds it even if nobody withdraws it (a server gone).
type Boost struct {
	Host    string    `json:"host"`
	Version uint64    `json:"version"`
	Until   time.Time `json:"until"`
	// Probes per interval and protocol to each of Peers, 2..MaxBoostProbes;
	// the regular probe is one of them. The extra ones rotate over the
	// source ports as all probes do, so they spread over the ECMP paths.
	Probes int      `json:"probes"`
	Peers  []string `json:"peers"`
	// Elements are what the analyzer suspects: why, for logs and people.
	Elements []string `json:"elements,omitempty"`
}

// Active reports whether b asks for extra probes at now.
func (b *Boost) Active(now time.Time) bool {
	return b != nil && len(b.Peers) > 0 && b.Probes > 1 && now.Before(b.Until)
}

// EncodeBoost is the KV value of a boost.
func EncodeBoost(b *Boost) ([]byte, error) { return json.Marshal(b) }

// DecodeBoost parses and checks a KV value.
func DecodeBoost(data []byte) (*Boost, error) {
	var b Boost
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("boost: decode: %w", err)
	}
	switch {
	case b.Host == "":
		return nil, fmt.Errorf("boost: no host")
	case len(b.Peers) > MaxBoostPeers:
		return nil, fmt.Errorf("boost of %s: %d peers, at most %d", b.Host, len(b.Peers), MaxBoostPeers)
	case len(b.Peers) > 0 && (b.Probes < 2 || b.Probes > MaxBoostProbes):
		return nil, fmt.Errorf("boost of %s: %d probes per interval, want 2..%d", b.Host, b.Probes, MaxBoostProbes)
	case len(b.Peers) > 0 && b.Until.IsZero():
		return nil, fmt.Errorf("boost of %s: no end", b.Host)
	case len(b.Elements) > MaxBoostPeers:
		return nil, fmt.Errorf("boost of %s: %d elements, at most %d", b.Host, len(b.Elements), MaxBoostPeers)
	}
	for _, p := range b.Peers {
		if p == "" {
			return nil, fmt.Errorf("boost of %s: empty peer name", b.Host)
		}
	}
	return &b, nil
}
