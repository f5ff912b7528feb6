package aggregate

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/meshlens/meshlens/internal/wire"
)

// fabric is a test Locator over generator-style names
// dc1-pod2-rack5-h07: rack "dc1-pod2-rack5", pod "dc1-pod2", dc "dc1".
type fabric map[string]bool

func newFabric(dcs, pods, racks, hosts int) fabric {
	f := fabric{}
	for d := 1; d <= dcs; d++ {
		for p := 1; p <= pods; p++ {
			for r := 1; r <= racks; r++ {
				for h := 1; h <= hosts; h++ {
					f[fmt.Sprintf("dc%d-pod%d-rack%d-h%02d", d, p, r, h)] = true
				}
			}
		}
	}
	return f
}

func (f fabric) Locate(host string) (rack, pod, dc string, ok bool) {
	if !f[host] {
		return "", "", "", false
	}
	parts := strings.Split(host, "-")
	return strings.Join(parts[:3], "-"), strings.Join(parts[:2], "-"), parts[0], true
}

// hosts lists the fabric's hosts in name order, so that a test's seeded
// randomness gives every run the same results.
func (f fabric) hosts() []string {
	out := make([]string, 0, len(f))
	for h := range f {
		out = append(out, h)
	}
	slices.Sort(out)
	return out
}

const (
	tcp = wire.Protocol_PROTOCOL_TCP
	udp = wire.Protocol_PROTOCOL_UDP
)

// res builds a result.
func res(dst string, proto wire.Protocol, outcome wire.Outcome, start time.Time, rtt time.Duration) *wire.ProbeResult {
	return &wire.ProbeResult{
		Dst: dst, Protocol: proto, Outcome: outcome, StartUnixNano: start.UnixNano(), RttNs: int64(rtt),
		SrcAddr: "10.0.0.1", SrcPort: 40000, DstAddr: "10.0.0.2", DstPort: 7,
	}
}

func batch(agent string, epoch, seq uint64, rs ...*wire.ProbeResult) *wire.Batch {
	return &wire.Batch{Agent: agent, Epoch: epoch, Seq: seq, AgentVersion: "test", PinglistVersion: 3,
		SchedulingLag: &wire.SchedulingLag{P99Ns: int64(2 * time.Millisecond)}, Results: rs}
}

// aligned returns a window-aligned time in the recent past of the wall clock.
func aligned(w time.Duration, ago time.Duration) time.Time {
	return time.Now().Add(-ago).Truncate(w)
}
