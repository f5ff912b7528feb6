package sim

import (
	"github.com/meshlens/meshlens/internal/localize"
	"github.com/meshlens/meshlens/internal/wire"
)

// PathReports turns a round's path discoveries into the reports the agents
// would publish, one per source agent with traces: the forward hops of each
// traced probe, as element names. start is the round's start (probe times
// are approximate: within the round).
func PathReports(x *localize.Index, traces []localize.Trace, startUnixNano int64) []*wire.PathReport {
	byAgent := map[int32]*wire.PathReport{}
	var order []int32
	for _, tr := range traces {
		if len(tr.Links) == 0 || !contiguous(x, tr.Links) {
			// A probe with no route stops short: real path discovery would
			// not get past the failing hop either, so there is no path to
			// report.
			continue
		}
		r := byAgent[tr.Src]
		if r == nil {
			r = &wire.PathReport{Agent: x.Names[tr.Src]}
			byAgent[tr.Src] = r
			order = append(order, tr.Src)
		}
		// Forward only: the links up to the destination.
		var hops []string
		reached := false
		for _, l := range tr.Links {
			hops = append(hops, x.Names[x.To[l]])
			if x.To[l] == tr.Dst {
				reached = true
				break
			}
		}
		r.Probes = append(r.Probes, &wire.TracedProbe{
			Dst: x.Names[tr.Dst], Protocol: tr.Proto, StartUnixNano: startUnixNano, TracedUnixNano: startUnixNano,
			Lost: tr.Lost, BothLost: tr.BothLost, ExcessNs: int64(tr.Excess), Hops: hops, Reached: reached,
		})
	}
	out := make([]*wire.PathReport, 0, len(order))
	for _, src := range order {
		out = append(out, byAgent[src])
	}
	return out
}

// contiguous reports whether each link starts where the previous one ends.
func contiguous(x *localize.Index, links []int32) bool {
	for i := 1; i < len(links); i++ {
		if x.To[links[i-1]] != x.From[links[i]] {
			return false
		}
	}
	return true
}
