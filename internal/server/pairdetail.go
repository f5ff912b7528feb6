package server

import (
	"bufio"
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/meshlens/meshlens/internal/aggregate"
	"github.com/meshlens/meshlens/internal/api"
	"github.com/meshlens/meshlens/internal/wire"
)

// pairSpan is what a pair query covers: its protocols (all when it names
// none) and the end of its span (an hour ahead when it gives none).
func pairSpan(q api.PairQuery) ([]wire.Protocol, time.Time, error) {
	var protos []wire.Protocol
	if q.Proto == "" {
		for _, r := range wire.Protocols() {
			protos = append(protos, r.Protocol)
		}
	} else if pr, err := wire.ParseProtocol(q.Proto); err == nil {
		protos = []wire.Protocol{pr}
	} else {
		return nil, time.Time{}, err
	}
	until := q.Until
	if until.IsZero() {
		until = time.Now().Add(time.Hour)
	}
	return protos, until, nil
}

// PairDetail says what the aggregators' recent detail holds of the
// query's pairs (one pair, or every host pair of a rack pair): the
// pair_detail of /api/v1/pairs.
func (p pairSource) PairDetail(_ context.Context, q api.PairQuery) api.PairDetail {
	var d aggregate.PairDetail
	protos, until, err := pairSpan(q)
	if err != nil {
		return api.PairDetail{Mode: aggregate.DetailFull, Note: err.Error()}
	}
	pairs := [][2]string{{q.Src, q.Dst}}
	if q.SrcRack != "" {
		pairs = nil
		topo := p.s.Topology()
		if src, dst := topo.Rack(q.SrcRack), topo.Rack(q.DstRack); src != nil && dst != nil {
			for _, a := range src.Hosts {
				for _, b := range dst.Hosts {
					if a != b {
						pairs = append(pairs, [2]string{a, b})
					}
				}
			}
		}
	}
	for _, agg := range p.s.aggregators() {
		for _, pr := range protos {
			for _, pair := range pairs {
				d.Merge(agg.PairDetail(pair[0], pair[1], pr, q.Since, until))
			}
		}
	}
	if d.Mode == "" {
		d.Mode = aggregate.DetailFull
	}
	out := api.PairDetail{Mode: d.Mode, SampleOneIn: d.SampleOneIn, BudgetBytes: d.BudgetBytes, Note: d.Note()}
	switch d.Mode {
	case aggregate.DetailBudget:
		out.CompleteFrom = &d.CompleteFrom
	case aggregate.DetailOff:
		out.Note += " (--pair-detail=off)"
	}
	return out
}

// Bounds of the default pair-detail budget.
const (
	minPairDetailBytes = 32 << 20
	maxPairDetailBytes = 256 << 20
)

// DefaultPairDetailMaxBytes is the default of --pair-detail-max-bytes: a
// sixteenth of the memory this process may use (its cgroup's limit, else
// the machine's), within 32 MiB and 256 MiB. Pair detail is a drill-down
// aid whose worth is in the newest windows and in the anomalies, which
// the budget keeps first; the rest of the server (TSDB head, open
// windows, the analyzer, JetStream) needs the memory more, and Go's heap
// may take about twice what is live. The ceiling keeps a 2,000-host
// server (390 k pair windows a window, 28 MB each in full) under 2 GB of
// RSS, as issue 15 asks of default flags: 256 MiB hold its newest minute
// and a half in full, and for the hour the windows with loss, the pairs
// looked at and a 1-in-64 sample of the others.
func DefaultPairDetailMaxBytes() int64 {
	mem := memoryLimit()
	if mem <= 0 {
		return maxPairDetailBytes
	}
	return min(max(mem/16, minPairDetailBytes), maxPairDetailBytes)
}

// memoryLimit is the cgroup's memory limit (v2, then v1) when there is
// one, else the machine's memory; 0 when neither can be read.
func memoryLimit() int64 {
	for _, f := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// "max" (v2) or a huge number (v1) mean no limit.
		if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && n > 0 && n < 1<<50 {
			return n
		}
	}
	n, err := memTotal("/proc/meminfo")
	if err != nil {
		return 0
	}
	return n
}

// memTotal reads MemTotal from a /proc/meminfo file, in bytes.
func memTotal(file string) (int64, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, err
			}
			return kb << 10, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no MemTotal")
}
