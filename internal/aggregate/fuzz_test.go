package aggregate

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/meshlens/meshlens/internal/bus"
	"github.com/meshlens/meshlens/internal/wire"
)

// FuzzIngest feeds random bytes through the ingest path an ingester runs
// for each stream message: decode, subject check, de-duplication,
// aggregation, then sealing. Nothing may panic, and a later good batch must
// still be aggregated.
func FuzzIngest(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	good, err := wire.Encode(batch("dc1-pod1-rack1-h01", 1, 1,
		res("dc1-pod1-rack2-h01", tcp, ok, now, time.Millisecond),
		res("dc1-pod1-rack2-h01", tcp, lost, now, 0)))
	if err != nil {
		f.Fatal(err)
	}
	f.Add("dc1-pod1-rack1-h01", good)
	f.Add("dc1-pod1-rack1-h02", good)
	f.Add("x", []byte{0x0a, 0x02, 'h', 'i'})
	f.Add("dc1-pod1-rack1-h01", []byte{0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, agent string, data []byte) {
		agg, err := New(Config{Locator: newFabric(1, 1, 2, 2)})
		if err != nil {
			t.Fatal(err)
		}
		in, err := NewIngester(IngesterConfig{JetStream: nilJetStream{}, Aggregator: agg})
		if err != nil {
			t.Fatal(err)
		}
		in.dedup = newDedup(nil)
		prefix := bus.ResultsSubject(0, "")
		in.process(prefix+agent, data, 1, now)
		in.process(prefix+"dc1-pod1-rack1-h01", good, 2, now)
		if _, err := agg.Advance(context.Background(), now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		// Unless the fuzz input was that very batch (then it is a duplicate).
		if c := agg.Counters("dc"); c[LocationPair{"dc1", "dc1", tcp}].Probes < 2 && testutil.ToFloat64(agg.m.duplicates) == 0 {
			t.Fatalf("good batch after fuzz input not counted: %v", c)
		}
	})
}

// FuzzDecodeCheckpoint: any bytes in the KV are refused cleanly or restore.
func FuzzDecodeCheckpoint(f *testing.F) {
	c := Checkpoint{Version: checkpointVersion, SealedUntil: 10, CountedSeq: 5, ReplayFromSeq: 3,
		Counters: []CheckpointCounter{{Level: "rack", Src: "a", Dst: "b", Proto: "tcp", Probes: 3, Lost: 1},
			{Level: "target", Src: "web", Proto: "http", Probes: 3, Lost: 1, RTTBuckets: []uint64{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}}},
		Dedup: map[string]map[string]*seqSet{"h": {"1": {Contig: 4, Above: []uint64{6, 9}}}}}
	data, _ := json.Marshal(&c)
	f.Add(data)
	zdata, err := EncodeCheckpoint(&c)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(zdata)
	f.Add([]byte(`{"version":1,"dedup":{"h":{"x":null}}}`))
	f.Add([]byte(`{"version":1,"counters_at_unix_milli":5,"counter_series":3}`))
	f.Add([]byte(`{"version":1,"dedup":{"h":{"1":{"contig":3,"above":[2]}}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := DecodeCheckpoint(data)
		if err != nil {
			return
		}
		agg, err := New(Config{})
		if err != nil {
			t.Fatal(err)
		}
		if err := agg.restore(c); err != nil {
			t.Fatalf("decoded checkpoint does not restore: %v", err)
		}
		d, err := c.dedupState()
		if err != nil {
			t.Fatal(err)
		}
		dd := newDedup(d)
		dd.admit("h", 1, 5, 10)
		dd.advanceBase(11)
	})
}

// nilJetStream satisfies NewIngester for tests that call process directly;
// any real use panics.
type nilJetStream struct{ jetstream.JetStream }

// FuzzCounterSeries: any label set read back from the TSDB is either
// refused or parsed into a counter key whose series, written again, is
// that same label set.
func FuzzCounterSeries(f *testing.F) {
	f.Add("meshlens_rack_pair_rtt_seconds_bucket", "src_rack", "r1", "dst_rack", "r2", "proto", "tcp", "le", "0.001")
	f.Add("meshlens_host_probes_total", "host", "h1", "direction", "in", "proto", "udp", "", "")
	f.Add("meshlens_target_probes_lost_total", "target", "web", "", "", "", "", "", "")
	f.Add("meshlens_host_rtt_seconds_bucket", "host", "h1", "direction", "sideways", "proto", "udp", "le", "+Inf")
	f.Fuzz(func(t *testing.T, name, l1, v1, l2, v2, l3, v3, l4, v4 string) {
		kv := []string{"__name__", name}
		for _, p := range [][2]string{{l1, v1}, {l2, v2}, {l3, v3}, {l4, v4}} {
			if p[0] != "" {
				kv = append(kv, p[0], p[1])
			}
		}
		lset := labels.FromStrings(kv...)
		agg, err := New(Config{})
		if err != nil {
			t.Fatal(err)
		}
		k, field, bucket, ok := agg.parseCounterSeries(lset)
		if !ok {
			return
		}
		cs := seriesOf[k.kind]
		back := []string{"__name__", []string{cs.probes, cs.lost, cs.bucket}[field], cs.srcLabel, k.Src}
		if cs.dstLabel != "" {
			back = append(back, cs.dstLabel, k.Dst)
		}
		switch k.kind {
		case hostOutCounter:
			back = append(back, "direction", "out")
		case hostInCounter:
			back = append(back, "direction", "in")
		}
		if cs.proto {
			back = append(back, "proto", k.Proto.Name())
		}
		if field == fieldBucket {
			back = append(back, "le", leLabels[bucket])
		}
		if got := labels.FromStrings(back...); !labels.Equal(got, lset) {
			t.Fatalf("%s parsed as %v, written back as %s", lset, k, got)
		}
	})
}

// FuzzDecodeWindow: any bytes on the rollups stream are refused with a
// labelled reason or decode to a window that reads, merges and encodes
// again to a window that decodes the same. The seeds are small (the
// minimizer is quadratic in an input's size): a real window of two hosts,
// and one rollup each of exact RTTs and of a sketch with a zero bin.
func FuzzDecodeWindow(f *testing.F) {
	aggregated, err := EncodeWindow(2, sealFullMesh(f, newFabric(1, 1, 2, 1), 1, 0, 1), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(aggregated)
	start := time.Unix(1_800_000_000, 0)
	sketched, exact := &Rollup{Sent: 80}, &Rollup{Sent: 3, Lost: 1}
	for i := range 70 {
		sketched.rtt.addNanos(int64(i * 1000))
	}
	exact.rtt.addNanos(2000)
	exact.rtt.addNanos(1000)
	small, err := EncodeWindow(1, &SealedWindow{Start: start, End: start.Add(10 * time.Second),
		Hosts:   map[HostKey]*Rollup{{"h1", In}: exact},
		DCPairs: map[LocationPair]*Rollup{{"dc1", "dc1", udp}: sketched},
		Pairs:   []PairEntry{{Key: PairKey{"h1", "h2", tcp}, Stats: &PairStats{Sent: 3}}}}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(small)
	f.Add([]byte{})
	f.Add([]byte{0x08, 0x01, 0x18, 0x01, 0x20, 0x02})
	f.Fuzz(func(t *testing.T, data []byte) {
		partition, w, _, err := DecodeWindow(data)
		if err != nil {
			if wire.Reason(err) == "other" {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		merged := MergeWindows(w, w)
		for _, r := range merged.DCPairs {
			r.Quantile(0.99)
		}
		again, err := EncodeWindow(partition, w, nil)
		if err != nil {
			t.Fatalf("decoded window does not encode: %v", err)
		}
		_, back, _, err := DecodeWindow(again)
		if err != nil {
			t.Fatalf("re-encoded window does not decode: %v", err)
		}
		sameWindow(t, back, w)
	})
}
