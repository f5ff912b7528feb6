package aggregate

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/meshlens/meshlens/internal/wire"
)

const http = wire.Protocol_PROTOCOL_HTTP

func TestRTTBucket(t *testing.T) {
	tests := []struct {
		rtt  time.Duration
		want int // index into LatencyBuckets; 13 is +Inf only
	}{
		{0, 0},
		{time.Nanosecond, 0},
		{100 * time.Microsecond, 0}, // le is inclusive
		{100*time.Microsecond + time.Nanosecond, 1},
		{250 * time.Microsecond, 1},
		{999 * time.Microsecond, 3},
		{time.Millisecond, 3},
		{5 * time.Millisecond, 5},
		{500 * time.Millisecond, 11},
		{time.Second, 12},
		{time.Second + time.Nanosecond, 13},
		{time.Hour, 13},
	}
	for _, tt := range tests {
		if got := rttBucket(int64(tt.rtt)); got != tt.want {
			t.Errorf("rttBucket(%v) = %d, want %d", tt.rtt, got, tt.want)
		}
		if got := expectedBucket(int64(tt.rtt)); got != tt.want {
			t.Errorf("test helper expectedBucket(%v) = %d, want %d", tt.rtt, got, tt.want)
		}
	}
	if leLabels[0] != "0.0001" || leLabels[2] != "0.0005" || leLabels[12] != "1" || leLabels[13] != "+Inf" {
		t.Errorf("le labels %q", leLabels)
	}
}

// TestCounterKinds: one batch goes into the location, host and target
// counters and the histograms exactly; refusals and local errors count
// nowhere; HTTP results never feed host or location counters.
func TestCounterKinds(t *testing.T) {
	w := 10 * time.Second
	t0 := aligned(w, time.Minute)
	const a, b, c = "dc1-pod1-rack1-h01", "dc1-pod2-rack2-h01", "dc1-pod1-rack1-h02"
	agg, _ := newTestAggregator(t, Config{Window: w})
	err := agg.Ingest(batch(a, 1, 1,
		res(b, tcp, ok, t0, 80*time.Microsecond),
		res(b, tcp, ok, t0, 100*time.Microsecond),
		res(b, tcp, ok, t0, 3*time.Millisecond),
		res(b, tcp, lost, t0, 0),
		res(b, tcp, synRtx, t0, 0),
		res(b, tcp, refuse, t0, 0),
		res(c, udp, ok, t0, 2*time.Second),
		res("web", http, ok, t0, 20*time.Millisecond),
		res("web", http, bad, t0, 20*time.Millisecond),
		res("api", http, lost, t0, 0),
	), t0)
	if err != nil {
		t.Fatal(err)
	}
	rack := agg.Counters("rack")
	if got := rack[LocationPair{"dc1-pod1-rack1", "dc1-pod2-rack2", tcp}]; got != (Count{5, 2}) {
		t.Errorf("rack tcp counters %+v, want 5 probes 2 lost", got)
	}
	if len(rack) != 2 {
		t.Errorf("rack counters %v: HTTP must not appear", rack)
	}
	h := agg.RTTHistograms("dc")[LocationPair{"dc1", "dc1", tcp}]
	want := RTTHistogram{Buckets: [14]uint64{2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3}}
	if h != want {
		t.Errorf("dc tcp histogram %v, want %v", h.Buckets, want.Buckets)
	}
	if h := agg.RTTHistograms("pod")[LocationPair{"dc1-pod1", "dc1-pod1", udp}]; h.Buckets[12] != 0 || h.Buckets[13] != 1 {
		t.Errorf("2 s RTT in histogram %v, want only in +Inf", h.Buckets)
	}
	hosts := agg.HostCounters()
	wantHosts := map[HostCounterKey]Count{
		{a, Out, tcp}: {5, 2}, {a, Out, udp}: {1, 0},
		{b, In, tcp}: {5, 2}, {c, In, udp}: {1, 0},
	}
	if !maps.Equal(hosts, wantHosts) {
		t.Errorf("host counters %v, want %v", hosts, wantHosts)
	}
	// A bad response is a failed probe of the service (wire.Lost).
	wantTargets := map[string]Count{"web": {2, 1}, "api": {1, 1}}
	if got := agg.TargetCounters(); !maps.Equal(got, wantTargets) {
		t.Errorf("target counters %v, want %v", got, wantTargets)
	}
	sw, err := agg.Advance(context.Background(), t0.Add(time.Minute))
	if err != nil || len(sw) != 1 {
		t.Fatalf("Advance = %d windows, %v", len(sw), err)
	}
	if r := sw[0].Hosts[HostKey{a, Out}]; r == nil || r.Sent != 6 {
		t.Errorf("host rollup of %s out %+v: want the 6 fabric probes, no HTTP", a, r)
	}
	if n := len(sw[0].Pairs); n != 4 {
		t.Errorf("%d pairs in the window, want 4 (HTTP pairs keep their detail)", n)
	}
}

func TestMaxTargets(t *testing.T) {
	w := 10 * time.Second
	t0 := aligned(w, time.Minute)
	const a = "dc1-pod1-rack1-h01"
	agg, _ := newTestAggregator(t, Config{Window: w, MaxTargets: 2})
	send := func(seq uint64, targets ...string) {
		var rs []*wire.ProbeResult
		for _, tg := range targets {
			rs = append(rs, res(tg, http, ok, t0, time.Millisecond))
		}
		if err := agg.Ingest(batch(a, 1, seq, rs...), t0); err != nil {
			t.Fatal(err)
		}
	}
	send(1, "t1", "t2", "t3", "t1")
	send(2, "t4", "t2")
	if got := testutil.ToFloat64(agg.m.rejected.WithLabelValues("too_many_targets")); got != 2 {
		t.Errorf("too_many_targets = %v, want 2", got)
	}
	want := map[string]Count{"t1": {2, 0}, "t2": {2, 0}}
	if got := agg.TargetCounters(); !maps.Equal(got, want) {
		t.Errorf("targets %v, want %v", got, want)
	}
	// The cap survives a restart: the restored targets fill it.
	var c Checkpoint
	if err := agg.checkpoint(&c); err != nil {
		t.Fatal(err)
	}
	agg2, _ := newTestAggregator(t, Config{Window: w, MaxTargets: 2})
	if err := agg2.restore(&c); err != nil {
		t.Fatal(err)
	}
	if err := agg2.Ingest(batch(a, 1, 3, res("t5", http, ok, t0, 1), res("t2", http, ok, t0, 1)), t0); err != nil {
		t.Fatal(err)
	}
	if got := agg2.TargetCounters(); len(got) != 2 || got["t2"].Probes != 3 {
		t.Errorf("restored targets %v, want t1 and t2 (3 probes) only", got)
	}
}

// TestCheckpointCounterRoundTrip: every counter kind, with histograms,
// survives encode, decode and restore.
func TestCheckpointCounterRoundTrip(t *testing.T) {
	w := 10 * time.Second
	t0 := aligned(w, time.Minute)
	agg, _ := newTestAggregator(t, Config{Window: w})
	var rs []*wire.ProbeResult
	for i, dst := range []string{"dc1-pod2-rack2-h01", "dc1-pod1-rack2-h02", "web"} {
		proto := []wire.Protocol{tcp, udp, http}[i]
		for j := 0; j < 20; j++ {
			outcome := ok
			if j%7 == 0 {
				outcome = lost
			}
			rs = append(rs, res(dst, proto, outcome, t0, time.Duration(j*j*j)*30*time.Microsecond))
		}
	}
	if err := agg.Ingest(batch("dc1-pod1-rack1-h01", 1, 1, rs...), t0); err != nil {
		t.Fatal(err)
	}
	c := Checkpoint{Version: checkpointVersion}
	if err := agg.checkpoint(&c); err != nil {
		t.Fatal(err)
	}
	data, err := EncodeCheckpoint(&c)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := DecodeCheckpoint(data)
	if err != nil {
		t.Fatal(err)
	}
	agg2, _ := newTestAggregator(t, Config{Window: w})
	if err := agg2.restore(c2); err != nil {
		t.Fatal(err)
	}
	if got, want := allCounters(agg2), allCounters(agg); !maps.Equal(got, want) || len(want) != 20 {
		t.Errorf("restored %d counters %v\nwant %d: %v", len(got), got, len(want), want)
	}
}

// TestCheckpointBeforeElementCounters: a checkpoint holding its counters
// inline, from before the element counters (none among them, rack pairs
// with histograms), restores the elements as the sums of their pairs.
func TestCheckpointBeforeElementCounters(t *testing.T) {
	w := 10 * time.Second
	t0 := aligned(w, time.Minute)
	agg, _ := newTestAggregator(t, Config{Window: w, RackPairRTTBuckets: true})
	var rs []*wire.ProbeResult
	for i, dst := range []string{"dc1-pod2-rack2-h01", "dc1-pod1-rack2-h02", "dc1-pod1-rack1-h02"} {
		for j := 0; j < 12; j++ {
			outcome := ok
			if j%5 == 0 {
				outcome = lost
			}
			rs = append(rs, res(dst, []wire.Protocol{tcp, udp}[(i+j)%2], outcome, t0, time.Duration(j*j)*70*time.Microsecond))
		}
	}
	if err := agg.Ingest(batch("dc1-pod1-rack1-h01", 1, 1, rs...), t0); err != nil {
		t.Fatal(err)
	}
	var c Checkpoint
	if err := agg.checkpoint(&c); err != nil {
		t.Fatal(err)
	}
	old := c.Counters[:0]
	for _, cc := range c.Counters {
		if !strings.HasSuffix(cc.Level, "_element") {
			old = append(old, cc)
		}
	}
	c.Counters = old
	agg2, _ := newTestAggregator(t, Config{Window: w})
	if err := agg2.restore(&c); err != nil {
		t.Fatal(err)
	}
	// The rack pairs' histograms are restored too, then no longer grow
	// (this aggregator keeps none): only the elements' sums need them.
	if got, want := allCounters(agg2), allCounters(agg); !maps.Equal(got, want) || len(want) != 32 {
		t.Errorf("restored %d counters %v\nwant %d: %v", len(got), got, len(want), want)
	}
}

func TestDecodeCheckpointCounters(t *testing.T) {
	buckets := func(v ...uint64) string {
		b := make([]uint64, numRTTBuckets+1)
		copy(b, v)
		return fmt.Sprint(`,"rtt_buckets":[`, joinUints(b), `]`)
	}
	tests := []struct {
		name    string
		counter string
		ok      bool
	}{
		{"plain", `{"level":"rack","src":"a","dst":"b","proto":"tcp","probes":3,"lost":1}`, true},
		{"host", `{"level":"host_out","src":"h","proto":"udp","probes":3,"lost":1` + buckets(1, 1) + `}`, true},
		{"target", `{"level":"target","src":"web","proto":"http","probes":3,"lost":0` + buckets(0, 0, 3) + `}`, true},
		{"unknown level", `{"level":"row","src":"a","dst":"b","proto":"tcp","probes":3,"lost":1}`, false},
		{"lost above probes", `{"level":"dc","src":"a","dst":"b","proto":"tcp","probes":3,"lost":4}`, false},
		{"more answered than not lost", `{"level":"dc","src":"a","dst":"b","proto":"tcp","probes":3,"lost":1` + buckets(1, 1, 1) + `}`, false},
		{"short buckets", `{"level":"dc","src":"a","dst":"b","proto":"tcp","probes":3,"lost":1,"rtt_buckets":[1]}`, false},
		{"overflowing buckets", `{"level":"dc","src":"a","dst":"b","proto":"tcp","probes":3,"lost":0` + buckets(18446744073709551615, 4) + `}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeCheckpoint([]byte(`{"version":1,"counters":[` + tt.counter + `]}`))
			if (err == nil) != tt.ok {
				t.Errorf("DecodeCheckpoint = %v, want ok %v", err, tt.ok)
			}
		})
	}
	if _, err := DecodeCheckpoint([]byte(`{"version":1,"counters_at_unix_milli":5,"counters":[{"level":"rack","src":"a","dst":"b","proto":"tcp","probes":3,"lost":1}]}`)); err == nil {
		t.Error("checkpoint with both counters and counters_at accepted")
	}
}

func joinUints(v []uint64) string {
	s := ""
	for i, x := range v {
		if i > 0 {
			s += ","
		}
		s += fmt.Sprint(x)
	}
	return s
}

// TestOnlyConfiguredTargets: target names come from agents, so one host
// once filled the target cap with names of its own and every host's
// results for the real targets were refused from then on, restarts
// included. With the server's targets configured, invented names are
// refused and counted, the real ones never, and each prober has its own
// series.
func TestOnlyConfiguredTargets(t *testing.T) {
	w := 10 * time.Second
	t0 := aligned(w, time.Minute)
	const rogue, honest = "dc1-pod1-rack1-h01", "dc1-pod1-rack1-h02"
	db := openTSDB(t)
	agg, _ := newTestAggregator(t, Config{Window: w, MaxTargets: 2, Appendable: db,
		Targets: func(name string) bool { return name == "web" || name == "db" }})
	var junk []*wire.ProbeResult
	for i := range 1000 {
		junk = append(junk, res(fmt.Sprintf("junk%d", i), http, ok, t0, time.Millisecond))
	}
	if err := agg.Ingest(batch(rogue, 1, 1, junk...), t0); err != nil {
		t.Fatal(err)
	}
	if err := agg.Ingest(batch(honest, 1, 1, res("web", http, ok, t0, 1), res("db", http, ok, t0, 1)), t0); err != nil {
		t.Fatal(err)
	}
	if err := agg.Ingest(batch(rogue, 1, 2, res("web", http, ok, t0, 1)), t0); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(agg.m.rejected.WithLabelValues("unknown_target")); got != 1000 {
		t.Errorf("unknown_target = %v, want 1000", got)
	}
	if got := testutil.ToFloat64(agg.m.rejected.WithLabelValues("too_many_targets")); got != 0 {
		t.Errorf("too_many_targets = %v, want 0", got)
	}
	want := map[string]Count{"web": {2, 0}, "db": {1, 0}}
	if got := agg.TargetCounters(); !maps.Equal(got, want) {
		t.Errorf("targets %v, want %v", got, want)
	}
	if _, err := agg.Advance(t.Context(), t0.Add(w+time.Minute)); err != nil {
		t.Fatal(err)
	}
	// One series per target and prober.
	q, err := db.Querier(0, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	set := q.Select(t.Context(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "meshlens_target_probes_total"))
	var got []string
	for set.Next() {
		l := set.At().Labels()
		got = append(got, l.Get("target")+"@"+l.Get("host"))
	}
	slices.Sort(got)
	if w := []string{"db@" + honest, "web@" + rogue, "web@" + honest}; !slices.Equal(got, w) {
		t.Errorf("target series %v, want %v", got, w)
	}
}
