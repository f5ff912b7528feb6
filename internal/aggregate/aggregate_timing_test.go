package aggregate

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/prometheus/tsdb"

	"github.com/meshlens/meshlens/internal/wire"
)

// benchFleet is pre-encoded agent batches: agents × (peers × 2 protocols)
// results, one batch per agent per window, on a 10,000-host fabric.
type benchFleet struct {
	fab     fabric
	batches [][]byte
	results int
}

const benchPeers = 500 // × tcp, udp = 1,000 results per batch

func newBenchFleet(b *testing.B, agents int) *benchFleet {
	b.Helper()
	fab := newFabric(1, 10, 20, 50) // 10,000 hosts
	hosts := fab.hosts()
	slices.Sort(hosts)
	rng := rand.New(rand.NewPCG(9, 10))
	f := &benchFleet{fab: fab}
	base := time.Unix(1_800_000_000, 0)
	for i := 0; i < agents; i++ {
		src := hosts[rng.IntN(len(hosts))]
		var rs []*wire.ProbeResult
		for j := 0; j < benchPeers; j++ {
			dst := hosts[rng.IntN(len(hosts))]
			for _, p := range []wire.Protocol{tcp, udp} {
				outcome := ok
				if rng.IntN(1000) == 0 {
					outcome = lost
				}
				r := res(dst, p, outcome, base.Add(time.Duration(rng.IntN(9000))*time.Millisecond), time.Duration(40_000+rng.IntN(40_000)))
				r.SrcAddr, r.DstAddr = "10.1.2.3", "10.4.5.6"
				r.SrcPort, r.DstPort = uint32(30000+rng.IntN(30000)), 7
				rs = append(rs, r)
			}
		}
		data, err := wire.Encode(batch(src, 1, uint64(i+1), rs...))
		if err != nil {
			b.Fatal(err)
		}
		f.batches = append(f.batches, data)
		f.results += len(rs)
	}
	return f
}

// BenchmarkIngest measures probe results per second on one core, side by
// side: decoding alone (the floor), decode + aggregate + seal with DDSketch
// (what the aggregator does), and decode + aggregate keeping exact RTTs and
// sorting them at seal time (the baseline a sketch replaces).
func BenchmarkIngest(b *testing.B) {
	f := newBenchFleet(b, 50)
	w := 10 * time.Second
	base := time.Unix(1_800_000_000, 0)
	perBatch := f.results / len(f.batches)

	// run decodes batch i, shifts it into round i/len(batches)'s window and
	// hands it to sink; at each round's end, seal is called.
	run := func(b *testing.B, sink func(*wire.Batch, time.Time), seal func(time.Time)) {
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			round := i / len(f.batches)
			now := base.Add(time.Duration(round) * w)
			bt, err := wire.Decode(f.batches[i%len(f.batches)])
			if err != nil {
				b.Fatal(err)
			}
			shift := int64(round) * int64(w)
			for _, r := range bt.Results {
				r.StartUnixNano += shift
			}
			sink(bt, now)
			wire.Release(bt) // as the Ingester does
			if i%len(f.batches) == len(f.batches)-1 {
				seal(now.Add(w))
			}
		}
		b.ReportMetric(float64(b.N*perBatch)/b.Elapsed().Seconds(), "results/s")
	}

	b.Run("decode_only", func(b *testing.B) {
		run(b, func(*wire.Batch, time.Time) {}, func(time.Time) {})
	})
	b.Run("decode_aggregate_ddsketch", func(b *testing.B) {
		agg, err := New(Config{Window: w, Lateness: time.Nanosecond, Recent: w, Locator: f.fab})
		if err != nil {
			b.Fatal(err)
		}
		run(b, func(bt *wire.Batch, now time.Time) {
			if err := agg.Ingest(bt, now); err != nil {
				b.Fatal(err)
			}
		}, func(now time.Time) {
			if _, err := agg.Advance(context.Background(), now); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("decode_aggregate_exact_sort", func(b *testing.B) {
		type exact struct {
			sent, lost uint64
			rtts       []float64
		}
		open := map[PairKey]*exact{}
		run(b, func(bt *wire.Batch, now time.Time) {
			for _, r := range bt.Results {
				if _, _, _, ok := f.fab.Locate(r.Dst); !ok || !wire.Counts(r) {
					continue
				}
				k := PairKey{bt.Agent, r.Dst, r.Protocol}
				e := open[k]
				if e == nil {
					e = &exact{}
					open[k] = e
				}
				e.sent++
				if wire.Lost(r) {
					e.lost++
				} else if r.Outcome == ok {
					e.rtts = append(e.rtts, float64(r.RttNs)/1e9)
				}
			}
		}, func(time.Time) {
			var sink float64
			for _, e := range open {
				slices.Sort(e.rtts)
				for _, q := range Quantiles {
					if len(e.rtts) > 0 {
						sink += e.rtts[int(q*float64(len(e.rtts)-1))]
					}
				}
			}
			_ = sink
			open = map[PairKey]*exact{}
		})
	})
}

// BenchmarkSeal measures sealing (rollups at four levels) per pair.
func BenchmarkSeal(b *testing.B) {
	f := newBenchFleet(b, 20)
	w := 10 * time.Second
	base := time.Unix(1_800_000_000, 0)
	var decoded []*wire.Batch
	for _, d := range f.batches {
		bt, err := wire.Decode(d)
		if err != nil {
			b.Fatal(err)
		}
		decoded = append(decoded, bt)
	}
	b.ReportAllocs()
	var pairs int
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		agg, err := New(Config{Window: w, Lateness: time.Nanosecond, Recent: w, Locator: f.fab})
		if err != nil {
			b.Fatal(err)
		}
		for _, bt := range decoded {
			if err := agg.Ingest(bt, base); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		sealed, err := agg.Advance(context.Background(), base.Add(w+time.Second))
		if err != nil || len(sealed) != 1 {
			b.Fatal(fmt.Sprint("sealed ", len(sealed), err))
		}
		pairs += len(sealed[0].Pairs)
	}
	b.ReportMetric(float64(pairs)/b.Elapsed().Seconds(), "pairs/s")
}

// BenchmarkSealTSDB measures sealing one window into a real TSDB: the
// rollups and every cumulative counter series (with the RTT histograms,
// 16 series per location pair) in one commit.
func BenchmarkSealTSDB(b *testing.B) {
	f := newBenchFleet(b, 20)
	w := 10 * time.Second
	base := time.Unix(1_800_000_000, 0)
	db, err := tsdb.Open(b.TempDir(), nil, nil, tsdb.DefaultOptions(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	agg, err := New(Config{Window: w, Lateness: time.Nanosecond, Recent: w, Locator: f.fab, Appendable: db})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		shift := time.Duration(i) * w
		for _, d := range f.batches {
			bt, err := wire.Decode(d)
			if err != nil {
				b.Fatal(err)
			}
			for _, r := range bt.Results {
				r.StartUnixNano += int64(shift)
			}
			if err := agg.Ingest(bt, base.Add(shift)); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		sealed, err := agg.Advance(context.Background(), base.Add(shift+w+time.Second))
		if err != nil || len(sealed) != 1 {
			b.Fatal(fmt.Sprint("sealed ", len(sealed), err))
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(len(agg.Counters("rack"))), "rack-pairs")
}
