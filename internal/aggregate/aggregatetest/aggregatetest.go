// Package aggregatetest writes into a store what the aggregator writes at
// a sealed window, so that tests of what reads it (the SLO engine, the
// generated Prometheus rules) can lay down days of counters in seconds
// without running an aggregator. aggregate's
// TestAggregatetestWritesWhatTheAggregatorWrites checks it against the
// real aggregator.
//
// Only rack pairs, and only probes and lost probes: the rack-pair
// counters, the per-rack counters and their hourly copies. Only tests
// import it.
package aggregatetest

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
)

// RackPair is one rack pair's cumulative counters.
type RackPair struct {
	Src, Dst, Proto string
	Probes, Lost    float64
}

// hourlyStep and hourlyPrefix are aggregate.HourlyStep and HourlyPrefix.
const (
	hourlyStep   = time.Hour
	hourlyPrefix = "meshlens_hourly_"
)

// Writer writes the windows of one aggregator that starts empty: it
// remembers which racks have hourly copies.
type Writer struct {
	// Restored: the counters counted before the first window (an
	// aggregator restarted, or a store whose older samples are past its
	// retention), so they get no 0 at their first copy.
	Restored bool
	copied   map[rack]bool
}

type rack struct{ name, proto string }

// Append appends the counters of a window of width w ending at end, after
// those of the windows before it: every rack pair's
// meshlens_rack_pair_probes_total and _probes_lost_total, every rack's
// meshlens_rack_probes_total and _probes_lost_total (the probes with
// either end in it, once) and their hourly copies, for every rack when
// the window holds the start of an hour, else for the racks seen for the
// first time, with their 0 at the window's start.
func (wr *Writer) Append(app storage.Appender, end time.Time, w time.Duration, pairs []RackPair) error {
	if wr.copied == nil {
		wr.copied = map[rack]bool{}
	}
	add := func(at time.Time, v float64, kv ...string) error {
		if _, err := app.Append(0, labels.FromStrings(kv...), at.UnixMilli(), v); err != nil {
			return fmt.Errorf("aggregatetest: %s at %s: %w", kv[1], at.Format(time.RFC3339), err)
		}
		return nil
	}
	racks := map[rack]*[2]float64{}
	for _, p := range pairs {
		if p.Probes == 0 {
			continue
		}
		for i, name := range []string{"meshlens_rack_pair_probes_total", "meshlens_rack_pair_probes_lost_total"} {
			if err := add(end, []float64{p.Probes, p.Lost}[i], "__name__", name, "src_rack", p.Src, "dst_rack", p.Dst, "proto", p.Proto); err != nil {
				return err
			}
		}
		ends := []string{p.Src}
		if p.Dst != p.Src {
			ends = append(ends, p.Dst)
		}
		for _, r := range ends {
			c := racks[rack{r, p.Proto}]
			if c == nil {
				c = &[2]float64{}
				racks[rack{r, p.Proto}] = c
			}
			c[0] += p.Probes
			c[1] += p.Lost
		}
	}
	hourly := end.UnixMilli()/hourlyStep.Milliseconds() > end.Add(-w).UnixMilli()/hourlyStep.Milliseconds()
	keys := make([]rack, 0, len(racks))
	for k := range racks {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].name+keys[i].proto < keys[j].name+keys[j].proto })
	for _, k := range keys {
		c := racks[k]
		born := !wr.copied[k]
		wr.copied[k] = true
		for i, name := range []string{"meshlens_rack_probes_total", "meshlens_rack_probes_lost_total"} {
			if err := add(end, c[i], "__name__", name, "rack", k.name, "proto", k.proto); err != nil {
				return err
			}
			copyName := hourlyPrefix + strings.TrimPrefix(name, "meshlens_")
			if born && !wr.Restored {
				if err := add(end.Add(-w), 0, "__name__", copyName, "rack", k.name, "proto", k.proto); err != nil {
					return err
				}
			}
			if born || hourly {
				if err := add(end, c[i], "__name__", copyName, "rack", k.name, "proto", k.proto); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
