package sim

import (
	"context"
	"fmt"
	"hash/fnv"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/meshlens/meshlens/internal/localize"
	"github.com/meshlens/meshlens/internal/pinglist"
	"github.com/meshlens/meshlens/internal/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func mustParse(t testing.TB, src string) *Scenario {
	t.Helper()
	sc, err := Parse("test.yaml", []byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

func newTestFabric(t testing.TB, sc *Scenario) *Fabric {
	t.Helper()
	x, err := localize.NewIndex(sc.Topology)
	if err != nil {
		t.Fatal(err)
	}
	f, err := NewFabric(sc, x, Epoch)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// roundStats is what one round's batches said, per (src, dst) host pair.
type roundStats struct {
	sent, lost, retx map[[2]string]int
	maxRTT           map[[2]string]int64
	lag              map[string]int64
	digest           uint64
}

func step(t testing.TB, f *Fabric, r int) roundStats {
	t.Helper()
	st := roundStats{sent: map[[2]string]int{}, lost: map[[2]string]int{}, retx: map[[2]string]int{}, maxRTT: map[[2]string]int64{}, lag: map[string]int64{}}
	h := fnv.New64a()
	err := f.Step(r, func(b *wire.Batch) error {
		if err := wire.Validate(b); err != nil {
			return err
		}
		st.lag[b.Agent] = b.SchedulingLag.P99Ns
		for _, res := range b.Results {
			k := [2]string{b.Agent, res.Dst}
			st.sent[k]++
			if wire.Lost(res) {
				st.lost[k]++
			}
			if res.Outcome == wire.Outcome_OUTCOME_SYN_RETRANSMIT {
				st.retx[k]++
			}
			st.maxRTT[k] = max(st.maxRTT[k], res.RttNs)
			start := time.Unix(0, res.StartUnixNano)
			if start.Before(f.RoundStart(r)) || !start.Before(f.RoundStart(r+1)) {
				return fmt.Errorf("result of %s starts at %v, outside round %d", b.Agent, start, r)
			}
			fmt.Fprintf(h, "%s|%s|%d|%d|%d|%d|%d\n", b.Agent, res.Dst, res.Protocol, res.Outcome, res.RttNs, res.SrcPort, res.StartUnixNano)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	st.digest = h.Sum64()
	return st
}

const fabric16 = "topology: {generate: {dcs: 1, pods: 2, racks_per_pod: 2, hosts_per_rack: 4, leaves_per_pod: 2, spines: 2}}\n"

func TestFabricDeterministic(t *testing.T) {
	src := "name: det\nseed: 7\n" + fabric16 + "background: {loss: 0.01}\nfaults:\n  - {kind: blackhole, device: dc1-spine1, fraction: 0.3}\n"
	a, b := newTestFabric(t, mustParse(t, src)), newTestFabric(t, mustParse(t, src))
	for r := 0; r < 3; r++ {
		if da, db := step(t, a, r).digest, step(t, b, r).digest; da != db {
			t.Fatalf("round %d differs between two runs of one seed", r)
		}
	}
	c := newTestFabric(t, mustParse(t, "name: det\nseed: 8\n"+fabric16+"background: {loss: 0.01}\n"))
	if step(t, c, 0).digest == step(t, newTestFabric(t, mustParse(t, src)), 0).digest {
		t.Error("another seed gave the same round")
	}
}

func TestFabricFollowsPinglists(t *testing.T) {
	sc := mustParse(t, "name: pl\n"+fabric16)
	f := newTestFabric(t, sc)
	st := step(t, f, 0)
	// 3 rack-mates + 3 other racks' host k, two protocols each.
	for _, h := range sc.Topology.Hosts {
		n := 0
		for k, v := range st.sent {
			if k[0] == h.Name {
				n += v
			}
		}
		if n != 12 {
			t.Errorf("%s sent %d probes in a round, want 12", h.Name, n)
		}
	}
	for k, v := range st.lost {
		t.Errorf("healthy fabric lost %d probes of %v", v, k)
	}
}

// TestECMPSpread: a TCP pair's probes (fresh source port each) cross
// different spines; a UDP pair's (one socket) always the same path.
func TestECMPSpread(t *testing.T) {
	sc := mustParse(t, "name: ecmp\ntracing: {ideal: true}\n"+fabric16)
	f := newTestFabric(t, sc)
	src, _ := f.x.Node("dc1-pod1-rack1-h01")
	dst, _ := f.x.Node("dc1-pod2-rack1-h01")
	for _, tc := range []struct {
		proto wire.Protocol
		min   int
		max   int
	}{{wire.Protocol_PROTOCOL_TCP, 4, 64}, {wire.Protocol_PROTOCOL_UDP, 1, 1}} {
		paths := map[string]bool{}
		var r rng
		r.seed(1)
		var res wire.ProbeResult
		for i := 0; i < 64; i++ {
			f.probe(src, dst, tc.proto, 0, 0, &r, &res)
			// The forward path, as an ideal trace of the probe's 5-tuple.
			q := traceReq{src: src, dst: dst, proto: tc.proto, sport: f.lastSport, flow: f.lastFlow}
			paths[fmt.Sprint(f.traceOne(&q, &r).Hops)] = true
		}
		if len(paths) < tc.min || len(paths) > tc.max {
			t.Errorf("%v: %d distinct paths over 64 probes, want %d..%d", tc.proto, len(paths), tc.min, tc.max)
		}
	}
}

func TestFaultEffects(t *testing.T) {
	const sick, slow = "dc1-pod1-rack1-h02", "dc1-pod2-rack2-h03"
	tests := []struct {
		name   string
		faults string
		rounds []int
		check  func(t *testing.T, r int, st roundStats)
	}{
		{
			name:   "host_nic loses the host's traffic only",
			faults: "  - {kind: host_nic, host: " + sick + ", rate: 1}\n",
			rounds: []int{0},
			check: func(t *testing.T, _ int, st roundStats) {
				for k, n := range st.sent {
					involved := k[0] == sick || k[1] == sick
					if involved && st.lost[k] != n || !involved && st.lost[k] != 0 {
						t.Errorf("%v: %d of %d lost", k, st.lost[k], n)
					}
				}
			},
		},
		{
			name:   "host_down: the host publishes and sends nothing, every probe to it is lost, from onset until the end",
			faults: "  - {kind: host_down, host: " + sick + ", at: 10s, until: 30s}\n",
			rounds: []int{0, 1, 2, 3},
			check: func(t *testing.T, r int, st roundStats) {
				down := r == 1 || r == 2
				if _, ok := st.lag[sick]; ok == down {
					t.Errorf("round %d: batch of %s published: %v, want %v", r, sick, ok, !down)
				}
				for k, n := range st.sent {
					switch {
					case k[0] == sick && down:
						t.Errorf("round %d: %s, down, sent %d probes to %s", r, sick, n, k[1])
					case k[1] == sick && down:
						if st.lost[k] != n || st.retx[k] != 0 {
							t.Errorf("round %d: %v: %d of %d lost, %d retransmitted, want all lost", r, k, st.lost[k], n, st.retx[k])
						}
					case st.lost[k] != 0:
						t.Errorf("round %d: %v: %d of %d lost", r, k, st.lost[k], n)
					}
				}
			},
		},
		{
			name:   "host_slow inflates RTTs and lag, loses nothing",
			faults: "  - {kind: host_slow, host: " + slow + ", add: 5ms, lag: 40ms}\n",
			rounds: []int{0},
			check: func(t *testing.T, _ int, st roundStats) {
				if len(st.lost) != 0 {
					t.Errorf("lost %v", st.lost)
				}
				if st.lag[slow] != int64(40*time.Millisecond) || st.lag["dc1-pod1-rack1-h01"] >= int64(time.Millisecond) {
					t.Errorf("lag %v", st.lag)
				}
				for k, rtt := range st.maxRTT {
					if (k[0] == slow) != (rtt > int64(2*time.Millisecond)) {
						t.Errorf("%v: rtt %v", k, time.Duration(rtt))
					}
				}
			},
		},
		{
			name:   "device_down until routing converges, then only its own rack is cut off",
			faults: "  - {kind: device_down, device: dc1-spine1, at: 0s}\n  - {kind: device_down, device: dc1-pod2-rack1-tor, at: 0s}\n",
			rounds: []int{0, 4},
			check: func(t *testing.T, r int, st roundStats) {
				lostOther := 0
				for k := range st.sent {
					inRack := hostRack(k[0]) == "dc1-pod2-rack1" || hostRack(k[1]) == "dc1-pod2-rack1"
					if inRack && st.lost[k] != st.sent[k] {
						t.Errorf("round %d: %v behind a dead ToR: %d of %d lost", r, k, st.lost[k], st.sent[k])
					}
					if !inRack {
						lostOther += st.lost[k]
					}
				}
				if r == 0 && lostOther == 0 {
					t.Errorf("round 0: nothing lost across the dead spine before convergence")
				}
				if r == 4 && lostOther != 0 {
					t.Errorf("round 4: %d lost after convergence", lostOther)
				}
			},
		},
		{
			name:   "blackhole drops whole flows: the SYN retransmission dies too",
			faults: "  - {kind: blackhole, device: dc1-spine2, fraction: 0.5}\n",
			rounds: []int{0, 1, 2, 3},
			check: func(t *testing.T, _ int, st roundStats) {
				if len(st.retx) != 0 {
					t.Errorf("retransmissions got through a blackhole: %v", st.retx)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newTestFabric(t, mustParse(t, "name: fx\n"+fabric16+"routing: {convergence: 30s}\nfaults:\n"+tc.faults))
			for r := 0; r <= tc.rounds[len(tc.rounds)-1]; r++ {
				st := step(t, f, r)
				for _, want := range tc.rounds {
					if want == r {
						tc.check(t, r, st)
					}
				}
			}
		})
	}
}

func hostRack(h string) string { return h[:len(h)-4] }

func TestFlapAlternates(t *testing.T) {
	sc := mustParse(t, "name: flap\n"+fabric16+"probing: {interval: 1s}\nfaults:\n  - {kind: flap, link: \"dc1-pod1-rack1-tor--dc1-pod1-leaf1\", period: 4s}\n")
	f := newTestFabric(t, sc)
	var lost []int
	for r := 0; r < 8; r++ {
		st := step(t, f, r)
		n := 0
		for _, v := range st.lost {
			n += v
		}
		lost = append(lost, n)
	}
	// Down during the first half of each 4 s period.
	for r, n := range lost {
		if down := r%4 < 2; down != (n > 0) {
			t.Errorf("round %d: %d lost (per round: %v)", r, n, lost)
		}
	}
}

func TestRunScoresFaults(t *testing.T) {
	sc := mustParse(t, "name: run\nseed: 3\n"+fabric16+"duration: 2m\nfaults:\n  - {kind: host_nic, host: dc1-pod1-rack2-h03, rate: 0.3, at: 30s}\n")
	rep, err := Run(context.Background(), sc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Rounds != 12 || rep.Probes-rep.ExtraProbes != 12*16*12 || len(rep.Results) != 2 {
		t.Fatalf("report %+v", rep)
	}
	m := rep.Result(localize.NameMeshlens)
	if f := m.Faults[0]; f.Localized == nil || *f.Localized > 30 || m.F1 != 1 {
		t.Errorf("meshlens: %+v", m)
	}
	// Without pair state the localizers see the same rollups: the same
	// verdicts at the same times.
	only, err := Run(context.Background(), sc, Options{RollupsOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if !only.RollupsOnly {
		t.Error("report does not say the run was rollups-only")
	}
	if !reflect.DeepEqual(only.Results, rep.Results) {
		t.Errorf("rollups-only verdicts differ:\n%+v\n%+v", only.Results, rep.Results)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, sc, Options{}); err == nil {
		t.Error("a cancelled run completed")
	}
}

// TestFabricListsArePinglists: every synthetic agent's list is exactly its
// real pinglist (pinglist.Peers), in order, on a fabric with all three
// levels (two DCs, so representatives probe across).
func TestFabricListsArePinglists(t *testing.T) {
	sc := mustParse(t, `
name: lists
seed: 3
topology: {generate: {dcs: 2, pods: 2, racks_per_pod: 3, hosts_per_rack: 4, leaves_per_pod: 2, spines: 2}}
probing: {interval: 10s, protocols: [tcp]}
duration: 1m
`)
	f := newTestFabric(t, sc)
	want := pinglist.Peers(sc.Topology, 2)
	levels := map[int]bool{}
	for i, h := range sc.Topology.Hosts {
		var got []string
		for _, id := range f.peers[i] {
			got = append(got, f.x.Names[id])
		}
		var names []string
		for _, p := range want[h.Name] {
			names = append(names, p.Host)
			levels[p.Level] = true
		}
		if !slices.Equal(got, names) {
			t.Fatalf("%s probes %v, its pinglist is %v", h.Name, got, names)
		}
	}
	if len(levels) != 3 {
		t.Errorf("the fabric's lists have levels %v, want all three", levels)
	}
}

// TestPathReports: traces hold only what a Paris traceroute from the
// source learns, and what the faults let through.
func TestPathReports(t *testing.T) {
	const spine = "dc1-spine1"
	tests := []struct {
		name, extra string
		check       func(t *testing.T, f *Fabric, agent string, p *wire.TracedProbe)
	}{
		{"ideal traces are complete", "tracing: {ideal: true}\nfaults:\n  - {kind: device_down, device: " + spine + "}\n",
			func(t *testing.T, f *Fabric, _ string, p *wire.TracedProbe) {
				if !p.Reached || slices.Contains(p.Hops, wire.UnknownHop) || p.TracedUnixNano != p.StartUnixNano {
					t.Errorf("ideal trace %v reached %v", p.Hops, p.Reached)
				}
			}},
		{"a down switch never answers; its flows' traces stop before it", "faults:\n  - {kind: device_down, device: " + spine + "}\n",
			func(t *testing.T, f *Fabric, _ string, p *wire.TracedProbe) {
				if slices.Contains(p.Hops, spine) {
					t.Errorf("down %s answered in %v", spine, p.Hops)
				}
				if p.TracedUnixNano <= p.StartUnixNano {
					t.Errorf("traced at %d, before or at the probe %d", p.TracedUnixNano, p.StartUnixNano)
				}
			}},
		{"a blackholed flow's trace ends at the blackholing switch", "tracing: {hop_answer: 1}\nfaults:\n  - {kind: blackhole, device: " + spine + ", fraction: 1}\n",
			func(t *testing.T, f *Fabric, _ string, p *wire.TracedProbe) {
				if i := slices.Index(p.Hops, spine); i >= 0 && (i != len(p.Hops)-1 || p.Reached) {
					t.Errorf("trace %v goes past the blackhole", p.Hops)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sc := mustParse(t, "name: paths\nseed: 3\n"+fabric16+tc.extra)
			f := newTestFabric(t, sc)
			traces := 0
			for r := 0; r < 4; r++ {
				if err := f.Step(r, func(*wire.Batch) error { return nil }); err != nil {
					t.Fatal(err)
				}
				for _, rep := range f.PathReports() {
					budget := sc.Tracing.Budget
					if sc.Tracing.Ideal {
						budget = idealTraces
					}
					// The server's decoder takes every report as published.
					if data, err := proto.Marshal(rep); err != nil {
						t.Fatal(err)
					} else if _, err := wire.DecodePathReport(data); err != nil {
						t.Errorf("%s: %v", rep.Agent, err)
					}
					if len(rep.Probes) > budget {
						t.Errorf("%s traced %d probes in a round, budget %d", rep.Agent, len(rep.Probes), budget)
					}
					for _, p := range rep.Probes {
						traces++
						// The one conversion accepts every simulated trace.
						if _, err := f.Index().ResolveTrace(rep.Agent, p); err != nil {
							t.Errorf("%s: %v", rep.Agent, err)
						}
						if slices.Contains(p.Hops, rep.Agent) {
							t.Errorf("%s lists itself in %v", rep.Agent, p.Hops)
						}
						tc.check(t, f, rep.Agent, p)
					}
				}
			}
			if traces == 0 {
				t.Fatal("no traces")
			}
		})
	}
}

// TestReverseTraces: the probed agent traces a lost probe's reply back
// when the prober's trace-back request gets to it. Its reverse trace goes
// to the prober's address and port and names the probe as the prober's
// trace does. A one-way blackhole on the way there loses UDP probes and
// their requests with them (the request takes the probe's own 5-tuple):
// only replies lost on the way back are traced back.
func TestReverseTraces(t *testing.T) {
	sc := mustParse(t, "name: reverse\nseed: 3\n"+fabric16+"tracing: {hop_answer: 1}\nprobing: {interval: 10s, protocols: [udp]}\n"+
		"faults:\n  - {kind: link_loss, link: dc1-pod1-leaf1->dc1-spine1, rate: 1}\n")
	f := newTestFabric(t, sc)
	x := f.Index()
	type key struct {
		prober, probed string
		port           uint32
		start          int64
	}
	lost := map[key]*wire.TracedProbe{}
	var reverse []key
	for r := 0; r < 6; r++ {
		if err := f.Step(r, func(*wire.Batch) error { return nil }); err != nil {
			t.Fatal(err)
		}
		for _, rep := range f.PathReports() {
			for _, p := range rep.Probes {
				if _, err := x.ResolveTrace(rep.Agent, p); err != nil {
					t.Errorf("%s: %v", rep.Agent, err)
				}
				if !p.Reverse {
					if p.Lost {
						lost[key{rep.Agent, p.Dst, p.SrcPort, p.StartUnixNano}] = p
					}
					continue
				}
				prober := ""
				for _, h := range sc.Topology.Hosts {
					if h.Addr.String() == p.Dst {
						prober = h.Name
					}
				}
				if prober == "" || !p.Lost || p.SrcPort != uint32(sc.Topology.ResponderPort) {
					t.Errorf("reverse trace of %s: %+v", rep.Agent, p)
				}
				// The reply died where its trace dies: after pod1-leaf1,
				// towards spine1.
				if p.Reached || p.Hops[len(p.Hops)-1] != "dc1-pod1-leaf1" {
					t.Errorf("reverse trace %v reached %v, want it to end at dc1-pod1-leaf1", p.Hops, p.Reached)
				}
				reverse = append(reverse, key{prober, rep.Agent, p.DstPort, p.StartUnixNano})
			}
		}
	}
	if len(reverse) == 0 {
		t.Fatal("no reverse traces")
	}
	for _, k := range reverse {
		p := lost[k]
		if p == nil {
			t.Errorf("reverse trace of no lost probe the prober traced: %+v", k)
			continue
		}
		// Only probes into pod1 lose their replies; probes out of pod1
		// that crossed the blackhole died on the way there, and their
		// requests with them.
		if !strings.HasPrefix(k.probed, "dc1-pod1-") || strings.HasPrefix(k.prober, "dc1-pod1-") {
			t.Errorf("reverse trace by %s of %s's probe %v", k.probed, k.prober, p.Hops)
		}
	}
}

// TestTraceSilence: with hops that answer half the time, traces have
// silent hops, and an ideal trace of the same fabric has none.
func TestTraceSilence(t *testing.T) {
	for _, tc := range []struct {
		tracing    string
		wantSilent bool
	}{{"{hop_answer: 0.5}", true}, {"{ideal: true}", false}} {
		sc := mustParse(t, "name: silence\nseed: 5\n"+fabric16+"tracing: "+tc.tracing+"\nfaults:\n  - {kind: link_loss, link: \"dc1-pod1-leaf1--dc1-spine1\", rate: 0.2}\n")
		f := newTestFabric(t, sc)
		silent, hops := 0, 0
		for r := 0; r < 3; r++ {
			if err := f.Step(r, func(*wire.Batch) error { return nil }); err != nil {
				t.Fatal(err)
			}
			for _, rep := range f.PathReports() {
				for _, p := range rep.Probes {
					hops += len(p.Hops)
					for _, h := range p.Hops {
						if h == wire.UnknownHop {
							silent++
						}
					}
				}
			}
		}
		if hops == 0 || (silent > 0) != tc.wantSilent {
			t.Errorf("tracing %s: %d of %d hops silent", tc.tracing, silent, hops)
		}
	}
}

// TestICMPBucket: a router answers a burst, then one per second.
func TestICMPBucket(t *testing.T) {
	b := bucket{tokens: icmpPerDestBurst}
	n := 0
	for i := 0; i < 20; i++ {
		if b.take(int64(i)*int64(time.Millisecond), icmpPerDestRate, icmpPerDestBurst) {
			n++
		}
	}
	if n != int(icmpPerDestBurst) {
		t.Errorf("%d answers in 20 ms, want the burst %v", n, icmpPerDestBurst)
	}
	if !b.take(int64(1100*time.Millisecond), icmpPerDestRate, icmpPerDestBurst) || b.take(int64(1101*time.Millisecond), icmpPerDestRate, icmpPerDestBurst) {
		t.Error("not one answer a second after the burst")
	}
}
