package aggregate

import (
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/wire"
)

// TestCheckpointScale: on a 10,000-host fabric (10 pods × 62-63 racks × 16
// hosts: 625 racks, every rack pair probed over tcp and udp, 781,250
// rack-pair counter sets, each 16 series with its histogram) the checkpoint
// no longer grows with the counters: with a Queryable it holds only the
// position, the counters' timestamp and the de-duplication state of the
// 10,000 agents, and fits the default 1 MiB KV max payload.
func TestCheckpointScale(t *testing.T) {
	const racks, hostsPerRack = 625, 16
	names := make([]string, racks)
	for i := range names {
		names[i] = fmt.Sprintf("dc1-pod%d-rack%d", i/63+1, i%63+1)
	}
	rackName := func(i int) string { return names[i] }
	agg, _ := newTestAggregator(t, Config{Appendable: openTSDB(t), Queryable: openTSDB(t)})
	agg.mu.Lock()
	for i := 0; i < racks; i++ {
		for j := 0; j < racks; j++ {
			for _, p := range []wire.Protocol{tcp, udp} {
				c := &counter{Count: Count{Probes: 100_000 + uint64(i*j), Lost: uint64(j % 5)}}
				c.ok[(i+j)%14] = 90_000
				agg.counters[counterKey{rackCounter, LocationPair{rackName(i), rackName(j), p}}] = c
			}
		}
	}
	for h := 0; h < racks*hostsPerRack; h++ {
		for _, kind := range []counterKind{hostOutCounter, hostInCounter} {
			for _, p := range []wire.Protocol{tcp, udp} {
				agg.counters[counterKey{kind, LocationPair{Src: fmt.Sprintf("%s-h%02d", rackName(h/hostsPerRack), h%hostsPerRack+1), Proto: p}}] = &counter{Count: Count{Probes: 5}}
			}
		}
	}
	// As after a clean seal's commit (TestCheckpointRestoreFromTSDB runs
	// that part against a real TSDB).
	agg.sealedUntil, agg.snapAt, agg.snapOK = 1_800_000_000e9, 1_800_000_000e3, true
	agg.mu.Unlock()

	// Every agent has published a while, with a few batches missing.
	d := newDedup(nil)
	stream := uint64(0)
	for h := 0; h < racks*hostsPerRack; h++ {
		agent := fmt.Sprintf("%s-h%02d", rackName(h/hostsPerRack), h%hostsPerRack+1)
		for seq := uint64(1); seq <= 40; seq++ {
			if seq%17 != 0 {
				stream++
				d.admit(agent, 1_700_000_000, seq, stream)
			}
		}
	}
	d.advanceBase(stream + 1)
	c := Checkpoint{Version: checkpointVersion, CountedSeq: stream, Dedup: encodeDedup(d.base)}
	if err := agg.checkpoint(&c); err != nil {
		t.Fatal(err)
	}
	data, err := EncodeCheckpoint(&c)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d counter sets (%d with probes), checkpoint %d bytes", len(agg.counters), c.CounterSeries, len(data))
	if want := racks*racks*2 + racks*hostsPerRack*4; c.CounterSeries != want {
		t.Errorf("checkpoint counts %d counter sets, want %d", c.CounterSeries, want)
	}
	if len(data) > 1<<20 {
		t.Errorf("checkpoint of %d bytes exceeds the 1 MiB default max payload", len(data))
	}
	if len(c.Counters) != 0 {
		t.Errorf("checkpoint with a Queryable holds %d counters", len(c.Counters))
	}
	if _, err := DecodeCheckpoint(data); err != nil {
		t.Fatal(err)
	}
}

// TestCheckpointRestoreFromTSDB writes a large synthetic counter set (all
// kinds, with histograms) through a real seal into a real TSDB, and a new
// aggregator restores it exactly from there, ignoring series of another
// partition and of other label sets. Its size is bounded for the race
// detector on a shared machine; the restore is linear in the series count
// (see the package doc for numbers).
func TestCheckpointRestoreFromTSDB(t *testing.T) {
	const keys = 8_000
	w := 10 * time.Second
	t0 := aligned(w, 10*time.Minute)
	db := openTSDB(t)
	cfg := func(partition string) Config {
		return Config{Window: w, Appendable: db, Queryable: db, HostRTTBuckets: true, SeriesLabels: map[string]string{"partition": partition}}
	}
	agg, _ := newTestAggregator(t, cfg("1"))
	agg.mu.Lock()
	for n := 0; n < keys; n++ {
		kind := counterKind(n % int(numCounterKinds))
		c := &counter{Count: Count{Probes: uint64(1000 + n), Lost: uint64(n % 7)}, hist: agg.keepsHistogram(kind)}
		if c.hist {
			c.ok[n%14] = uint64(500 + n%100)
			c.ok[(n+3)%14] = 7
		}
		k := counterKey{kind, LocationPair{Src: fmt.Sprintf("a%d", n), Proto: []wire.Protocol{tcp, udp}[n%2]}}
		switch kind {
		case rackCounter, podCounter, dcCounter:
			k.Dst = fmt.Sprintf("b%d", n)
		case targetCounter:
			k.Dst = fmt.Sprintf("h%d", n) // the probing host
			k.Proto = wire.Protocol_PROTOCOL_HTTP
		}
		agg.counters[k] = c
	}
	agg.mu.Unlock()
	seal := func(agg *Aggregator, at time.Time) {
		t.Helper()
		if err := agg.Ingest(batch("dc1-pod1-rack1-h01", 1, 1, res("dc1-pod2-rack2-h01", tcp, ok, at, time.Millisecond)), at); err != nil {
			t.Fatal(err)
		}
		if _, err := agg.Advance(t.Context(), at.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	seal(agg, t0)
	c := Checkpoint{Version: checkpointVersion}
	if err := agg.checkpoint(&c); err != nil {
		t.Fatal(err)
	}
	want := allCounters(agg)
	// Another partition's counters, and a later seal of ours (after the
	// checkpoint: a crash before its put), must not be read.
	other, _ := newTestAggregator(t, cfg("2"))
	seal(other, t0)
	seal(agg, t0.Add(w))

	agg2, _ := newTestAggregator(t, cfg("1"))
	if err := agg2.restoreCountersFromTSDB(t.Context(), c.CountersAt, c.CounterSeries, c.ElementSeries); err != nil {
		t.Fatal(err)
	}
	if got := allCounters(agg2); !maps.Equal(got, want) {
		t.Errorf("restored %d counter sets, want %d", len(got), len(want))
	}
	// One from before the element counters does not count theirs.
	agg4, _ := newTestAggregator(t, cfg("1"))
	if err := agg4.restoreCountersFromTSDB(t.Context(), c.CountersAt, c.CounterSeries, 0); err != nil {
		t.Fatal(err)
	}
	if got := allCounters(agg4); !maps.Equal(got, want) {
		t.Errorf("restored %d counter sets without their element count, want %d", len(got), len(want))
	}
	// Element series missing from the TSDB are noticed.
	agg5, _ := newTestAggregator(t, cfg("1"))
	if err := agg5.restoreCountersFromTSDB(t.Context(), c.CountersAt, c.CounterSeries, c.ElementSeries+1); err == nil {
		t.Error("restore with an element series missing succeeded")
	}
	// A checkpoint whose counters the TSDB does not hold is refused.
	agg3, _ := newTestAggregator(t, cfg("3"))
	if err := agg3.restoreCountersFromTSDB(t.Context(), c.CountersAt, c.CounterSeries, c.ElementSeries); err == nil {
		t.Error("restore of counters absent from the TSDB succeeded")
	}
}
