package aggregate

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshlens/meshlens/internal/wire"
)

// TestRollupsOnlyMatchesPairDetail feeds the same batches to an aggregator
// with pair detail and one in rollups-only mode: every sealed rollup
// (counts and quantiles), every cumulative counter and every rejection
// count must be the same. The batches mix outcomes, protocols, HTTP
// targets, unknown hosts, RTTs past 32-bit nanoseconds, pairs probed often
// enough to need a sketch, and late results.
func TestRollupsOnlyMatchesPairDetail(t *testing.T) {
	for _, hostBuckets := range []bool{false, true} {
		t.Run(fmt.Sprintf("host buckets %v", hostBuckets), func(t *testing.T) {
			fab := newFabric(2, 2, 2, 3)
			w := 10 * time.Second
			cfg := Config{Locator: fab, Window: w, Lateness: time.Second, Recent: time.Hour, MaxTargets: 3, HostRTTBuckets: hostBuckets}
			detail, _ := newTestAggregator(t, cfg)
			cfg.RollupsOnly = true
			only, _ := newTestAggregator(t, cfg)
			hosts := fab.hosts()
			rng := rand.New(rand.NewPCG(7, 11))
			t0 := aligned(w, 10*time.Minute)
			outcomes := []wire.Outcome{ok, ok, ok, ok, lost, synRtx, refuse, bad, lerr}
			var sealedD, sealedO []*SealedWindow
			for round := range 6 {
				start := t0.Add(time.Duration(round) * w)
				for i, src := range hosts {
					var rs []*wire.ProbeResult
					for range 40 {
						dst := hosts[rng.IntN(len(hosts))]
						proto := []wire.Protocol{tcp, udp, wire.Protocol_PROTOCOL_ICMP}[rng.IntN(3)]
						switch rng.IntN(20) {
						case 0:
							dst = "not-a-host"
						case 1, 2:
							dst, proto = fmt.Sprintf("svc-%d", rng.IntN(5)), wire.Protocol_PROTOCOL_HTTP
						}
						rtt := time.Duration(20_000 + rng.IntN(500_000))
						if rng.IntN(50) == 0 {
							rtt = 5 * time.Second // beyond 32-bit ns: straight to a sketch
						}
						rs = append(rs, res(dst, proto, outcomes[rng.IntN(len(outcomes))], start.Add(time.Duration(rng.IntN(int(w)))), rtt))
					}
					if i == 0 {
						// One pair probed 100 times in a window: past maxExactRTTs.
						for range 100 {
							rs = append(rs, res(hosts[1], tcp, ok, start.Add(time.Second), time.Duration(30_000+rng.IntN(90_000))))
						}
					}
					if round > 0 && i%5 == 0 {
						// Late: for the window sealed last round.
						rs = append(rs, res(hosts[2], udp, lost, start.Add(-w/2), 0))
					}
					b := batch(src, 1, uint64(round*100+i), rs...)
					arrival := start.Add(w)
					if err := detail.Ingest(b, arrival); err != nil {
						t.Fatal(err)
					}
					if err := only.Ingest(b, arrival); err != nil {
						t.Fatal(err)
					}
				}
				now := start.Add(w + 2*time.Second)
				d, err := detail.Advance(context.Background(), now)
				if err != nil {
					t.Fatal(err)
				}
				o, err := only.Advance(context.Background(), now)
				if err != nil {
					t.Fatal(err)
				}
				sealedD, sealedO = append(sealedD, d...), append(sealedO, o...)
			}
			if len(sealedD) != 6 || len(sealedO) != 6 {
				t.Fatalf("sealed %d and %d windows, want 6 each", len(sealedD), len(sealedO))
			}
			sketched := false
			for i := range sealedD {
				d, o := sealedD[i], sealedO[i]
				if len(o.Pairs) != 0 {
					t.Errorf("window %d: rollups-only window has %d pairs", i, len(o.Pairs))
				}
				if len(d.Pairs) == 0 {
					t.Fatalf("window %d: no pairs with pair detail", i)
				}
				sketched = compareRollups(t, fmt.Sprintf("window %d hosts", i), d.Hosts, o.Hosts) || sketched
				compareRollups(t, fmt.Sprintf("window %d racks", i), d.RackPairs, o.RackPairs)
				compareRollups(t, fmt.Sprintf("window %d pods", i), d.PodPairs, o.PodPairs)
				compareRollups(t, fmt.Sprintf("window %d dcs", i), d.DCPairs, o.DCPairs)
			}
			if !sketched {
				t.Error("no rollup needed a sketch: the test misses that path")
			}
			for _, lv := range levelNames {
				if d, o := detail.Counters(lv), only.Counters(lv); !reflect.DeepEqual(d, o) || len(d) == 0 {
					t.Errorf("%s counters differ or are empty: %d vs %d entries", lv, len(d), len(o))
				}
				if d, o := detail.RTTHistograms(lv), only.RTTHistograms(lv); !reflect.DeepEqual(d, o) {
					t.Errorf("%s histograms differ", lv)
				}
			}
			if d, o := detail.HostCounters(), only.HostCounters(); !reflect.DeepEqual(d, o) {
				t.Errorf("host counters differ: %d vs %d entries", len(d), len(o))
			}
			if d, o := detail.TargetCounters(), only.TargetCounters(); !reflect.DeepEqual(d, o) || len(d) != 3 {
				t.Errorf("target counters differ or miss the cap of 3: %v vs %v", d, o)
			}
			for _, reason := range []string{"unknown_host", "too_many_targets", "too_old", "clock_skew"} {
				d := testutil.ToFloat64(detail.m.rejected.WithLabelValues(reason))
				o := testutil.ToFloat64(only.m.rejected.WithLabelValues(reason))
				if d != o {
					t.Errorf("rejected %s: %v with detail, %v rollups-only", reason, d, o)
				}
			}
			if d, o := testutil.ToFloat64(detail.m.late), testutil.ToFloat64(only.m.late); d != o || d == 0 {
				t.Errorf("late results: %v with detail, %v rollups-only", d, o)
			}
			if got := only.PairWindows(hosts[0], hosts[1], tcp, t0, t0.Add(time.Hour)); got != nil {
				t.Errorf("rollups-only PairWindows = %v, want nothing", got)
			}
		})
	}
}

// compareRollups reports differences between two sets of rollups and
// whether any of them holds a sketch.
func compareRollups[K comparable](t *testing.T, what string, d, o map[K]*Rollup) (sketched bool) {
	t.Helper()
	if len(d) != len(o) || len(d) == 0 {
		t.Errorf("%s: %d rollups with detail, %d rollups-only", what, len(d), len(o))
	}
	for k, rd := range d {
		ro := o[k]
		if ro == nil {
			t.Errorf("%s: %v missing in rollups-only", what, k)
			continue
		}
		sketched = sketched || rd.rtt.hasSketch()
		if rd.Sent != ro.Sent || rd.Lost != ro.Lost || rd.SynRetransmits != ro.SynRetransmits || rd.LatencyCount() != ro.LatencyCount() {
			t.Errorf("%s %v: detail %d/%d/%d/%d, rollups-only %d/%d/%d/%d (sent/lost/syn/rtts)", what, k,
				rd.Sent, rd.Lost, rd.SynRetransmits, rd.LatencyCount(), ro.Sent, ro.Lost, ro.SynRetransmits, ro.LatencyCount())
		}
		for _, q := range append([]float64{0, 1}, Quantiles...) {
			vd, okD := rd.Quantile(q)
			vo, okO := ro.Quantile(q)
			if vd != vo || okD != okO {
				t.Errorf("%s %v q%v: %v with detail, %v rollups-only", what, k, q, vd, vo)
			}
		}
	}
	return sketched
}
