package aggregate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	enc "github.com/DataDog/sketches-go/ddsketch/encoding"

	"github.com/meshlens/meshlens/internal/wire"
)

// sealFullMesh runs an aggregator over one window in which every host of
// fab probes every host over tcp rounds times and over udp twice as often
// (so that rollups of a few dozen pairs hold exact RTTs for tcp and a
// sketch for udp), with some losses and SYN retransmits, and returns the
// sealed window. Sources whose index
// modulo parts is not part are left out (parts > 1: one partition's part).
func sealFullMesh(tb testing.TB, fab fabric, rounds, part, parts int) *SealedWindow {
	tb.Helper()
	w := 10 * time.Second
	t0 := aligned(w, 10*time.Minute)
	agg, err := New(Config{Window: w, Locator: fab})
	if err != nil {
		tb.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(21, 22))
	hosts := fab.hosts()
	for i, src := range hosts {
		var rs []*wire.ProbeResult
		for _, dst := range hosts {
			for range rounds {
				rs = append(rs, meshResult(rng, dst, tcp, t0), meshResult(rng, dst, udp, t0), meshResult(rng, dst, udp, t0))
			}
		}
		if i%parts != part {
			continue // drawn anyway, so every part sees the same results
		}
		if err := agg.Ingest(batch(src, 1, 1, rs...), t0); err != nil {
			tb.Fatal(err)
		}
	}
	sealed, err := agg.Advance(context.Background(), t0.Add(time.Minute))
	if err != nil || len(sealed) != 1 {
		tb.Fatalf("sealed %d windows, err %v", len(sealed), err)
	}
	return sealed[0]
}

// meshResult is one probe of a healthy fabric: mostly OK with a
// datacenter RTT, a few lost, a few SYN retransmits over tcp, and now and
// then an RTT of 0 (a sketch's zero bin).
func meshResult(rng *rand.Rand, dst string, proto wire.Protocol, t0 time.Time) *wire.ProbeResult {
	switch n := rng.IntN(100); {
	case n < 3:
		return res(dst, proto, lost, t0, 0)
	case n < 5 && proto == tcp:
		return res(dst, proto, synRtx, t0, 3*time.Second)
	case n < 6:
		return res(dst, proto, ok, t0, 0)
	}
	return res(dst, proto, ok, t0, time.Duration(20_000+rng.IntN(400_000)))
}

func roundTrip(t *testing.T, partition int, w *SealedWindow) (data []byte, back *SealedWindow) {
	t.Helper()
	data, err := EncodeWindow(partition, w, nil)
	if err != nil {
		t.Fatal(err)
	}
	gotPart, back, _, err := DecodeWindow(data)
	if err != nil {
		t.Fatal(err)
	}
	if gotPart != partition {
		t.Errorf("partition %d, want %d", gotPart, partition)
	}
	return data, back
}

// sameWindow compares what the analyzer reads of two windows.
func sameWindow(t *testing.T, got, want *SealedWindow) {
	t.Helper()
	if !got.Start.Equal(want.Start) || !got.End.Equal(want.End) {
		t.Errorf("window [%v, %v), want [%v, %v)", got.Start, got.End, want.Start, want.End)
	}
	sameRollups(t, "host", got.Hosts, want.Hosts)
	sameRollups(t, "rack pair", got.RackPairs, want.RackPairs)
	sameRollups(t, "pod pair", got.PodPairs, want.PodPairs)
	sameRollups(t, "dc pair", got.DCPairs, want.DCPairs)
	gotPairs := got.PairMap()
	if len(got.Pairs) != len(want.Pairs) || len(gotPairs) != len(want.Pairs) {
		t.Errorf("%d pairs (%d keys), want %d", len(got.Pairs), len(gotPairs), len(want.Pairs))
	}
	for _, e := range want.Pairs {
		if g := gotPairs[e.Key]; g == nil || g.Sent != e.Stats.Sent {
			t.Errorf("pair %v: got %+v, want sent %d", e.Key, g, e.Stats.Sent)
		}
	}
}

var roundTripQuantiles = []float64{0, 0.01, 0.1, 0.5, 0.9, 0.99, 0.999, 1}

func sameRollups[K comparable](t *testing.T, level string, got, want map[K]*Rollup) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d rollups, want %d", level, len(got), len(want))
	}
	for k, w := range want {
		g := got[k]
		if g == nil || g.Sent != w.Sent || g.Lost != w.Lost || g.SynRetransmits != w.SynRetransmits || g.LatencyCount() != w.LatencyCount() {
			t.Errorf("%s %v: got %+v, want %+v", level, k, g, w)
			continue
		}
		for _, q := range roundTripQuantiles {
			gq, gok := g.Quantile(q)
			wq, wok := w.Quantile(q)
			if gq != wq || gok != wok {
				t.Errorf("%s %v: q%v = %v (%v), want %v (%v)", level, k, q, gq, gok, wq, wok)
			}
		}
	}
}

// TestWindowRoundTrip: real windows, with exact and sketched rollups, both
// directions and two protocols, decode to what the analyzer reads of the
// original; the parts of two partitions merge to what the originals merge
// to.
func TestWindowRoundTrip(t *testing.T) {
	fab := newFabric(1, 2, 4, 8)
	w := sealFullMesh(t, fab, 1, 0, 1)
	data, back := roundTrip(t, 3, w)
	// 2 pods × 4 racks × 8 hosts over tcp and udp: sizes the rollups stream.
	t.Logf("window of %d hosts, %d pairs, %d host, %d rack-pair rollups: %d bytes", len(fab), len(w.Pairs), len(w.Hosts), len(w.RackPairs), len(data))
	sameWindow(t, back, w)

	var exact, sketched int
	for _, r := range w.RackPairs {
		if r.rtt.hasSketch() {
			sketched++
		} else if r.rtt.count > 0 {
			exact++
		}
	}
	if h := w.Hosts[HostKey{"dc1-pod1-rack1-h01", In}]; h == nil || !h.rtt.hasSketch() || w.Hosts[HostKey{"dc1-pod1-rack1-h01", Out}] == nil {
		t.Errorf("host rollups of both directions with sketches expected: %+v", w.Hosts)
	}
	if exact == 0 || sketched == 0 {
		t.Errorf("%d exact and %d sketched rack pairs: want both kinds", exact, sketched)
	}
	if _, ok := w.PodPairs[LocationPair{"dc1-pod1", "dc1-pod2", udp}]; !ok {
		t.Errorf("no udp pod pair in %v", w.PodPairs)
	}
	if again, _ := EncodeWindow(3, w, nil); !bytes.Equal(again, data) {
		t.Error("a window encodes to different bytes each time")
	}

	parts := []*SealedWindow{sealFullMesh(t, fab, 2, 0, 2), sealFullMesh(t, fab, 2, 1, 2)}
	var decoded []*SealedWindow
	for i, p := range parts {
		_, back := roundTrip(t, i, p)
		decoded = append(decoded, back)
	}
	sameWindow(t, MergeWindows(decoded...), MergeWindows(parts...))
}

func TestEncodeWindowRefuses(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	long := strings.Repeat("h", wire.MaxNameLen-8)
	big := &SealedWindow{Start: start, End: start.Add(10 * time.Second), Hosts: map[HostKey]*Rollup{}}
	for i := range wire.MaxRollupBytes/wire.MaxNameLen + 1 {
		big.Hosts[HostKey{fmt.Sprintf("%s%08d", long, i), Out}] = &Rollup{Sent: 1}
	}
	for _, c := range []struct {
		name      string
		partition int
		w         *SealedWindow
		reason    string
	}{
		{"over MaxRollupBytes", 0, big, "too_large"},
		{"negative partition", -1, &SealedWindow{Start: start, End: start.Add(time.Second)}, "invalid_field"},
		{"empty window", 0, &SealedWindow{Start: start, End: start}, "invalid_field"},
		{"unknown protocol", 0, &SealedWindow{Start: start, End: start.Add(time.Second),
			RackPairs: map[LocationPair]*Rollup{{"r1", "r2", 99}: {Sent: 1}}}, "invalid_field"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := EncodeWindow(c.partition, c.w, nil); wire.Reason(err) != c.reason {
				t.Errorf("error %v, want reason %s", err, c.reason)
			}
		})
	}
}

// binsBytes encodes positive-store bins by hand, as an attacker would.
func binsBytes(mode enc.SubFlag, bins ...[2]float64) []byte {
	var b []byte
	enc.EncodeFlag(&b, enc.NewFlag(enc.FlagTypePositiveStore, mode))
	enc.EncodeUvarint64(&b, uint64(len(bins)))
	last := int64(0)
	for _, bin := range bins {
		enc.EncodeVarint64(&b, int64(bin[0])-last)
		last = int64(bin[0])
		enc.EncodeVarfloat64(&b, bin[1])
	}
	return b
}

func TestDecodeWindowRefuses(t *testing.T) {
	good, err := EncodeWindow(1, sealFullMesh(t, newFabric(1, 1, 2, 2), 10, 0, 1), nil)
	if err != nil {
		t.Fatal(err)
	}
	// A rack pair with a sketch and one with exact RTTs to corrupt.
	var ref wire.WindowRollup
	if err := ref.UnmarshalVT(good); err != nil {
		t.Fatal(err)
	}
	sketched, exact := -1, -1
	for i, r := range ref.RackPairs {
		if len(r.Counts.RttSketch) > 0 {
			sketched = i
		}
	}
	for i, r := range ref.RackPairs {
		if len(r.Counts.RttNs) > 0 {
			exact = i
		}
	}
	if sketched < 0 || exact < 0 {
		t.Fatal("no sketched and exact rack pairs to corrupt")
	}
	big := float64(1 << 40)
	tests := []struct {
		name   string
		mutate func(m *wire.WindowRollup)
		reason string
	}{
		{"version", func(m *wire.WindowRollup) { m.Version = 2 }, "invalid_field"},
		{"end before start", func(m *wire.WindowRollup) { m.EndUnixNano = m.StartUnixNano }, "invalid_field"},
		{"window over an hour", func(m *wire.WindowRollup) { m.EndUnixNano = m.StartUnixNano + wire.MaxWindowNs + 1 }, "invalid_field"},
		{"window overflowing int64", func(m *wire.WindowRollup) { m.StartUnixNano, m.EndUnixNano = math.MinInt64, math.MaxInt64 }, "invalid_field"},
		{"protocol", func(m *wire.WindowRollup) { m.RackPairs[0].Protocol = 99 }, "invalid_field"},
		{"pair protocol", func(m *wire.WindowRollup) { m.Pairs[0].Protocol = 0 }, "invalid_field"},
		{"lost over sent", func(m *wire.WindowRollup) { m.DcPairs[0].Counts.Lost = m.DcPairs[0].Counts.Sent + 1 }, "invalid_field"},
		{"syn retransmits over lost", func(m *wire.WindowRollup) { c := m.PodPairs[0].Counts; c.SynRetransmits = c.Lost + 1 }, "invalid_field"},
		{"direction", func(m *wire.WindowRollup) { m.Hosts[0].Direction = 0 }, "invalid_field"},
		{"no counts", func(m *wire.WindowRollup) { m.Hosts[0].Counts = nil }, "invalid_field"},
		{"duplicate host", func(m *wire.WindowRollup) { m.Hosts = append(m.Hosts, m.Hosts[0]) }, "invalid_field"},
		{"duplicate pair", func(m *wire.WindowRollup) { m.Pairs = append(m.Pairs, m.Pairs[0]) }, "invalid_field"},
		{"duplicate pair name", func(m *wire.WindowRollup) { m.PairNames = append(m.PairNames, m.PairNames[0]) }, "invalid_field"},
		{"duplicate rack pair", func(m *wire.WindowRollup) { m.RackPairs = append(m.RackPairs, m.RackPairs[0]) }, "invalid_field"},
		{"name index", func(m *wire.WindowRollup) { m.Pairs[0].Dst = uint32(len(m.PairNames)) }, "invalid_field"},
		{"empty name", func(m *wire.WindowRollup) { m.RackPairs[0].Src = "" }, "invalid_field"},
		{"long name", func(m *wire.WindowRollup) { m.PairNames[0] = strings.Repeat("h", wire.MaxNameLen+1) }, "invalid_field"},
		{"not UTF-8", func(m *wire.WindowRollup) { m.Hosts[0].Host = "h\xff" }, "malformed"},
		{"too many exact RTTs", func(m *wire.WindowRollup) {
			c := m.RackPairs[exact].Counts
			c.RttNs, c.Sent = make([]uint32, wire.MaxExactRTTs+1), 1000
		}, "invalid_field"},
		{"exact RTTs and a sketch", func(m *wire.WindowRollup) { m.RackPairs[sketched].Counts.RttNs = []uint32{1} }, "invalid_field"},
		{"sketch over sent", func(m *wire.WindowRollup) { m.RackPairs[sketched].Counts.Sent = 1 }, "invalid_field"},
		{"sketch garbage", func(m *wire.WindowRollup) { m.RackPairs[sketched].Counts.RttSketch = []byte{0xff, 0xff, 0xff} }, "malformed"},
		{"sketch truncated", func(m *wire.WindowRollup) {
			c := m.RackPairs[sketched].Counts
			c.RttSketch = c.RttSketch[:len(c.RttSketch)-1]
		}, "malformed"},
		{"sketch too large", func(m *wire.WindowRollup) {
			m.RackPairs[sketched].Counts.RttSketch = make([]byte, wire.MaxSketchBytes+1)
		}, "too_large"},
		{"sketch index near MaxInt64", func(m *wire.WindowRollup) {
			m.RackPairs[sketched].Counts.RttSketch = binsBytes(enc.BinEncodingIndexDeltasAndCounts, [2]float64{math.MaxInt64, 1})
		}, "malformed"},
		{"sketch index below 1 ns", func(m *wire.WindowRollup) {
			m.RackPairs[sketched].Counts.RttSketch = binsBytes(enc.BinEncodingIndexDeltasAndCounts, [2]float64{-1e6, 1})
		}, "malformed"},
		{"sketch huge bin count", func(m *wire.WindowRollup) {
			m.RackPairs[sketched].Counts.Sent = math.MaxUint64
			m.RackPairs[sketched].Counts.RttSketch = binsBytes(enc.BinEncodingIndexDeltasAndCounts, [2]float64{100, big * big})
		}, "malformed"},
		{"sketch negative count", func(m *wire.WindowRollup) {
			// +1 then -1 empties a dense store, which then grows again.
			m.RackPairs[sketched].Counts.RttSketch = binsBytes(enc.BinEncodingIndexDeltasAndCounts, [2]float64{100, 1}, [2]float64{101, -1})
		}, "malformed"},
		{"sketch fractional count", func(m *wire.WindowRollup) {
			m.RackPairs[sketched].Counts.RttSketch = binsBytes(enc.BinEncodingIndexDeltasAndCounts, [2]float64{100, 0.5})
		}, "malformed"},
		{"sketch NaN count", func(m *wire.WindowRollup) {
			m.RackPairs[sketched].Counts.RttSketch = binsBytes(enc.BinEncodingIndexDeltasAndCounts, [2]float64{100, math.NaN()})
		}, "malformed"},
		{"sketch huge bin count claimed", func(m *wire.WindowRollup) {
			var b []byte
			enc.EncodeFlag(&b, enc.NewFlag(enc.FlagTypePositiveStore, enc.BinEncodingContiguousCounts))
			enc.EncodeUvarint64(&b, math.MaxUint64)
			m.RackPairs[sketched].Counts.RttSketch = b
		}, "malformed"},
		{"sketch negative RTT", func(m *wire.WindowRollup) {
			var b []byte
			enc.EncodeFlag(&b, enc.NewFlag(enc.FlagTypeNegativeStore, enc.BinEncodingIndexDeltasAndCounts))
			enc.EncodeUvarint64(&b, 1)
			enc.EncodeVarint64(&b, 100)
			enc.EncodeVarfloat64(&b, 1)
			m.RackPairs[sketched].Counts.RttSketch = b
		}, "malformed"},
		{"sketch zero bin fractional", func(m *wire.WindowRollup) {
			var b []byte
			enc.EncodeFlag(&b, enc.FlagZeroCountVarFloat)
			enc.EncodeVarfloat64(&b, 1.5)
			m.RackPairs[sketched].Counts.RttSketch = b
		}, "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := new(wire.WindowRollup)
			if err := m.UnmarshalVT(good); err != nil {
				t.Fatal(err)
			}
			tt.mutate(m)
			data, err := m.MarshalVT()
			if err != nil {
				t.Fatal(err)
			}
			if _, _, _, err := DecodeWindow(data); wire.Reason(err) != tt.reason {
				t.Errorf("error %v, want reason %s", err, tt.reason)
			}
		})
	}

	t.Run("oversize", func(t *testing.T) {
		if _, _, _, err := DecodeWindow(make([]byte, wire.MaxRollupBytes+1)); !errors.Is(err, wire.ErrTooLarge) {
			t.Errorf("error %v, want too large", err)
		}
	})
	t.Run("truncated", func(t *testing.T) {
		if _, _, _, err := DecodeWindow(good[:len(good)-1]); wire.Reason(err) != "malformed" {
			t.Errorf("error %v, want malformed", err)
		}
		for n := 0; n < len(good); n += 1 + n/8 {
			DecodeWindow(good[:n]) // no panic; some prefixes are valid windows
		}
	})
	t.Run("random", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(5, 6))
		for range 200 {
			data := make([]byte, rng.IntN(512))
			for i := range data {
				data[i] = byte(rng.Uint32())
			}
			if _, _, _, err := DecodeWindow(data); err == nil {
				t.Fatalf("random bytes %x decoded", data)
			}
		}
	})
}

// TestWindowAgents: the partition's agents travel with the window, and an
// agent listed twice is refused.
func TestWindowAgents(t *testing.T) {
	start := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	w := &SealedWindow{Start: start, End: start.Add(10 * time.Second)}
	agents := []AgentStatus{
		{Agent: "h1", LastSeen: start.Add(9 * time.Second), Version: "v1.2", PinglistVersion: 7, Results: 1234, RejectedResults: 2, SchedulingLagP99: 3 * time.Millisecond},
		{Agent: "h2", LastSeen: start.Add(-time.Minute)},
	}
	data, err := EncodeWindow(0, w, agents)
	if err != nil {
		t.Fatal(err)
	}
	_, _, got, err := DecodeWindow(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(agents) {
		t.Fatalf("agents %+v, want %+v", got, agents)
	}
	for i := range agents {
		if got[i] != agents[i] {
			t.Errorf("agent %d: %+v, want %+v", i, got[i], agents[i])
		}
	}
	twice := append(agents, agents[0])
	if data, err = EncodeWindow(0, w, twice); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := DecodeWindow(data); wire.Reason(err) != "invalid_field" {
		t.Errorf("an agent listed twice: %v", err)
	}
	if _, err := EncodeWindow(0, w, []AgentStatus{{Agent: "h3", SchedulingLagP99: -time.Second}}); wire.Reason(err) != "invalid_field" {
		t.Errorf("a negative lag: %v", err)
	}
}
