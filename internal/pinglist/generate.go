package pinglist

import (
	"fmt"
	"time"

	"github.com/meshlens/meshlens/internal/topology"
	"github.com/meshlens/meshlens/internal/wire"
)

// Settings are the fleet-wide knobs of pinglist generation.
type Settings struct {
	Interval  time.Duration // default 10s
	Timeout   time.Duration // default 3s: long enough to see a SYN retransmission (1s) complete
	Protocols []string      // default tcp, udp
	// InterDCRepresentatives is how many hosts per DC probe the other DCs'
	// representatives (level 3). Default 2.
	InterDCRepresentatives int
	// Partitions of the results stream; an agent's partition is a hash of
	// its rack's name (see PartitionFunc), shared by the whole rack.
	Partitions  int
	HTTPTargets []HTTPTarget
	// Window is the servers' aggregation window: agents mark where their
	// data ends at its boundaries, so windows seal as soon as it is in.
	// 0: not said (agents then mark only on their regular seals).
	Window time.Duration
}

func (s Settings) withDefaults() Settings {
	if s.Interval <= 0 {
		s.Interval = 10 * time.Second
	}
	if s.Timeout <= 0 {
		s.Timeout = 3 * time.Second
	}
	if len(s.Protocols) == 0 {
		s.Protocols = wire.DefaultPeerProtocols()
	}
	if s.InterDCRepresentatives <= 0 {
		s.InterDCRepresentatives = 2
	}
	if s.Partitions <= 0 {
		s.Partitions = 1
	}
	return s
}

// PartitionFunc maps an agent, given its rack, to its results partition
// among n; the bus package's AgentPartition is the one used in
// production (every host of a rack in its rack's partition).
type PartitionFunc func(agent, rack string, n int) int

// Generate computes every host's pinglist, keyed by host name. The result
// depends only on the topology and settings (not on map order or time,
// except the Generated stamp), so two controllers agree.
func Generate(t *topology.Topology, s Settings, version uint64, now time.Time, partition PartitionFunc) (map[string]*Pinglist, error) {
	s = s.withDefaults()
	if s.Timeout >= s.Interval {
		return nil, fmt.Errorf("pinglist: timeout %v must be shorter than the interval %v", s.Timeout, s.Interval)
	}
	if s.Timeout > time.Duration(wire.MaxRTTNs) {
		return nil, fmt.Errorf("pinglist: timeout %v is over %v, the longest RTT the server accepts", s.Timeout, time.Duration(wire.MaxRTTNs))
	}
	for _, p := range s.Protocols {
		if _, err := wire.ParsePeerProtocol(p); err != nil {
			return nil, fmt.Errorf("pinglist: %w", err)
		}
	}
	peers := Peers(t, s.InterDCRepresentatives)
	out := make(map[string]*Pinglist, len(t.Hosts))
	for _, h := range t.Hosts {
		out[h.Name] = &Pinglist{
			Host:          h.Name,
			Addr:          h.Addr.String(),
			Version:       version,
			Generated:     now.UTC(),
			Partition:     partition(h.Name, h.Rack, s.Partitions),
			Interval:      Duration(s.Interval),
			Timeout:       Duration(s.Timeout),
			Window:        Duration(s.Window),
			Protocols:     append([]string(nil), s.Protocols...),
			ResponderPort: t.ResponderPort,
			Peers:         peers[h.Name],
			HTTPTargets:   append([]HTTPTarget(nil), s.HTTPTargets...),
		}
	}
	return out, nil
}

// Peers computes the three Pingmesh levels for every host.
func Peers(t *topology.Topology, representatives int) map[string][]Peer {
	out := make(map[string][]Peer, len(t.Hosts))
	// One address string per host, shared by every list that names it: at
	// tens of thousands of hosts a string per peer entry is gigabytes.
	addrs := make(map[string]string, len(t.Hosts))
	for _, h := range t.Hosts {
		addrs[h.Name] = h.Addr.String()
	}
	EachPeer(t, representatives, func(src, dst string, level int) {
		out[src] = append(out[src], Peer{Host: dst, Addr: addrs[dst], Level: level})
	})
	return out
}

// EachPeer calls fn for every entry of every host's pinglist: level 1 for
// all hosts, then level 2, then level 3, so each host's entries come in its
// list's order. It is Peers without holding every list at once, which at
// 50,000 hosts (250 M entries) is gigabytes: the simulator keeps only
// host indexes.
func EachPeer(t *topology.Topology, representatives int, fn func(src, dst string, level int)) {
	add := func(src, dst string, level int) {
		if src != dst {
			fn(src, dst, level)
		}
	}
	// Level 1: full mesh under each ToR.
	for _, r := range t.Racks {
		for _, a := range r.Hosts {
			for _, b := range r.Hosts {
				add(a, b, LevelIntraRack)
			}
		}
	}
	// Level 2: the ToR-level mesh of each DC, host k to host k.
	for _, dc := range t.DCs {
		racks := racksOf(t, dc)
		for _, ri := range racks {
			for k, a := range ri.Hosts {
				for _, rj := range racks {
					if rj == ri || len(rj.Hosts) == 0 {
						continue
					}
					add(a, rj.Hosts[k%len(rj.Hosts)], LevelIntraDC)
				}
			}
		}
	}
	// Level 3: representatives of each DC probe the others'.
	if len(t.DCs) > 1 {
		reps := map[string][]string{}
		for _, dc := range t.DCs {
			reps[dc.Name] = Representatives(t, dc.Name, representatives)
		}
		for _, a := range t.DCs {
			for _, b := range t.DCs {
				if a == b {
					continue
				}
				for _, src := range reps[a.Name] {
					for _, dst := range reps[b.Name] {
						add(src, dst, LevelInterDC)
					}
				}
			}
		}
	}
}

func racksOf(t *topology.Topology, dc *topology.DC) []*topology.Rack {
	var racks []*topology.Rack
	for _, p := range dc.Pods {
		for _, r := range t.Pod(p).Racks {
			racks = append(racks, t.Rack(r))
		}
	}
	return racks
}

// Representatives picks n hosts of a DC for inter-DC probing: the first
// host of racks spread evenly over the DC, so one bad rack or pod does not
// take every representative with it.
func Representatives(t *topology.Topology, dc string, n int) []string {
	d := t.DC(dc)
	if d == nil {
		return nil
	}
	var racks []*topology.Rack
	for _, r := range racksOf(t, d) {
		if len(r.Hosts) > 0 {
			racks = append(racks, r)
		}
	}
	if n > len(racks) {
		n = len(racks)
	}
	out := make([]string, 0, n)
	for j := 0; j < n; j++ {
		out = append(out, racks[j*len(racks)/n].Hosts[0])
	}
	return out
}
