package sim

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshlens/meshlens/internal/aggregate"
	"github.com/meshlens/meshlens/internal/analyze"
	"github.com/meshlens/meshlens/internal/localize"
)

// TestRunGoesThroughStage2: a run's path reports reach the analyzer in
// wire form and are all paths of the fabric (none refused), its windows
// and verdicts come from the analyzer, every localizer's in order.
func TestRunGoesThroughStage2(t *testing.T) {
	sc, err := Parse("run.yaml", []byte(`
name: run-stage2
seed: 3
topology: {generate: {dcs: 1, pods: 1, racks_per_pod: 4, hosts_per_rack: 4, leaves_per_pod: 2, spines: 2}}
probing: {interval: 10s, protocols: [tcp]}
duration: 2m
background: {loss: 0.0001, latency: {base: 40us, jitter: 20us}}
faults:
  - {kind: link_loss, link: "dc1-pod1-rack2-tor--dc1-pod1-leaf1", rate: 0.2, at: 30s}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	var verdicts []analyze.Verdict
	rep, err := Run(context.Background(), sc, Options{Registerer: reg,
		Observe: func(_ time.Duration, w *aggregate.SealedWindow, v analyze.Verdict) {
			if w == nil || !w.Start.Equal(v.Start) {
				t.Errorf("verdict on %v observed with window %+v", v.Start, w)
			}
			verdicts = append(verdicts, v)
		}})
	if err != nil {
		t.Fatal(err)
	}
	if len(verdicts) != 2*rep.Rounds {
		t.Errorf("%d verdicts over %d rounds, want one per localizer and window", len(verdicts), rep.Rounds)
	}
	for i := 0; i+1 < len(verdicts); i += 2 {
		if verdicts[i].Localizer != "meshlens" || verdicts[i+1].Localizer != "vote" || !verdicts[i].Start.Equal(verdicts[i+1].Start) {
			t.Fatalf("verdicts %d, %d: %s on %v, %s on %v", i, i+1, verdicts[i].Localizer, verdicts[i].Start, verdicts[i+1].Localizer, verdicts[i+1].Start)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var accepted, rejected float64
	var reasons []string
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "meshlens_path_reports_accepted_total":
				accepted += m.GetCounter().GetValue()
			case "meshlens_path_reports_rejected_total":
				if v := m.GetCounter().GetValue(); v > 0 {
					rejected += v
					reasons = append(reasons, m.GetLabel()[0].GetValue())
				}
			}
		}
	}
	if accepted == 0 || rejected != 0 {
		t.Errorf("path reports: %v accepted, %v refused (%s); want some, none refused", accepted, rejected, strings.Join(reasons, ", "))
	}
}

// TestLossEstimateFromASample: an agent traces a budget of its lost probes,
// not all of them, yet a suspect's estimate is a drop rate of probes: each
// explained trace stands for the lost probes of its source it was drawn
// from. With one trace per agent and round, far fewer than the probes a
// 30% uplink loss loses, the estimate stays near 0.3 (read off the traces
// alone it was 0.19 here).
func TestLossEstimateFromASample(t *testing.T) {
	for _, tracing := range []string{"{budget: 1}", "{ideal: true}"} {
		t.Run(tracing, func(t *testing.T) {
			sc, err := Parse("estimate.yaml", []byte(`name: estimate
seed: 4
topology: {generate: {dcs: 1, pods: 2, racks_per_pod: 2, hosts_per_rack: 3, leaves_per_pod: 2, spines: 2}}
probing: {interval: 2s, protocols: [tcp, udp]}
tracing: `+tracing+`
duration: 60s
faults:
  - {kind: link_loss, link: "dc1-pod1-rack1-tor--dc1-pod1-leaf2", rate: 0.3, at: 10s}
`), nil)
			if err != nil {
				t.Fatal(err)
			}
			var est []float64
			_, err = Run(context.Background(), sc, Options{Localizers: []string{localize.NameMeshlens},
				Observe: func(at time.Duration, _ *aggregate.SealedWindow, v analyze.Verdict) {
					for _, s := range v.Suspects {
						if strings.HasPrefix(s.Element, "dc1-pod1-rack1-tor--dc1-pod1-leaf2") || s.Element == "dc1-pod1-rack1-tor->dc1-pod1-leaf2" || s.Element == "dc1-pod1-leaf2->dc1-pod1-rack1-tor" {
							est = append(est, s.Estimate)
						}
					}
				}})
			if err != nil {
				t.Fatal(err)
			}
			if len(est) < 5 {
				t.Fatalf("the lossy uplink was blamed in %d windows", len(est))
			}
			sort.Float64s(est)
			med := est[len(est)/2]
			t.Logf("%d windows blame the uplink, median estimate %.3f (range %.3f..%.3f)", len(est), med, est[0], est[len(est)-1])
			if med < 0.22 || med > 0.4 {
				t.Errorf("median estimate %.3f for a 0.3 loss", med)
			}
		})
	}
}

// TestHeavyLossOfASmallToR: a ToR of 4 hosts dropping a share of all it
// forwards is the ToR, not one of its uplinks. Each uplink carries most of
// its hosts' probes, so "an uplink and a host" once passed for two faults
// (their probes were subtracted from the ToR's twice, leaving it nothing
// of its own), and the incidents of TestUI blamed an uplink.
func TestHeavyLossOfASmallToR(t *testing.T) {
	for _, rate := range []string{"0.2", "0.5"} {
		t.Run(rate, func(t *testing.T) {
			sc, err := Parse("tor.yaml", []byte(`name: tor
seed: 7
topology: {generate: {dcs: 1, pods: 2, racks_per_pod: 4, hosts_per_rack: 4, leaves_per_pod: 2, spines: 2}}
probing: {interval: 10s, protocols: [tcp, udp]}
duration: 6m
background: {loss: 0, latency: {base: 40us, jitter: 20us}}
faults:
  - {kind: device_loss, device: dc1-pod1-rack2-tor, rate: `+rate+`, at: 40s}
`), nil)
			if err != nil {
				t.Fatal(err)
			}
			var windows, tor int
			_, err = Run(context.Background(), sc, Options{Localizers: []string{localize.NameMeshlens},
				Observe: func(at time.Duration, _ *aggregate.SealedWindow, v analyze.Verdict) {
					if at < 70*time.Second { // the first windows of the fault are its onset
						return
					}
					windows++
					if len(v.Suspects) > 0 && v.Suspects[0].Element == "dc1-pod1-rack2-tor" {
						tor++
					}
				}})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("the ToR is the first suspect in %d of %d windows", tor, windows)
			if tor < windows*3/4 {
				t.Errorf("the ToR is the first suspect in %d of %d windows, want three in four", tor, windows)
			}
		})
	}
}

// TestLossyUplinkOfAToR is the lab's link_loss case (test/e2e/lab): a
// ToR's uplink losing 30 % both ways must be told from the ToR's other
// uplink. A probe lost on its way back has a certain forward path, over
// the healthy uplink as often as not; when every UDP probe of a pair was
// one flow (one socket), the pairs whose flow went up the healthy uplink
// and came back over the lossy one lost probes that all pointed at the
// healthy one, and with unlucky hashing that was most of the evidence: the
// lab blamed the healthy uplink for 30 s, and 6 of these 60 seeds failed
// the test below (seed 28 blamed it in 21 of 36 windows). Each seed hashes
// the flows anew; the UDP probes now rotate over probe.DefaultUDPPorts.
func TestLossyUplinkOfAToR(t *testing.T) {
	const lossy, healthy = "dc1-pod1-rack1-tor--dc1-pod1-leaf2", "dc1-pod1-rack1-tor--dc1-pod1-leaf1"
	var windows, right, wrong int
	for seed := 1; seed <= 60; seed++ {
		sc, err := Parse("uplink.yaml", []byte(fmt.Sprintf(`name: uplink
seed: %d
topology: {generate: {dcs: 1, pods: 2, racks_per_pod: 2, hosts_per_rack: 3, leaves_per_pod: 2, spines: 2}}
probing: {interval: 2s, protocols: [tcp, udp]}
duration: 100s
routing: {convergence: 10m}
faults:
  - {kind: link_loss, link: "%s", rate: 0.3, at: 10s}
`, seed, lossy)), nil)
		if err != nil {
			t.Fatal(err)
		}
		var n, r, w int
		_, err = Run(context.Background(), sc, Options{Localizers: []string{localize.NameMeshlens},
			Observe: func(at time.Duration, _ *aggregate.SealedWindow, v analyze.Verdict) {
				if at < 30*time.Second { // the onset's windows
					return
				}
				n++
				var isR, isW bool
				for _, s := range v.Suspects {
					isR = isR || strings.Contains(s.Element, "rack1-tor") && strings.Contains(s.Element, "leaf2")
					isW = isW || strings.Contains(s.Element, "rack1-tor") && strings.Contains(s.Element, "leaf1")
				}
				if isR {
					r++
				}
				if isW {
					w++
				}
			}})
		if err != nil {
			t.Fatal(err)
		}
		if r < n*2/3 || w > n/4 {
			t.Errorf("seed %d: %s (or a direction) blamed in %d of %d windows (want 2 in 3), %s in %d (want at most 1 in 4)", seed, lossy, r, n, healthy, w)
		}
		windows, right, wrong = windows+n, right+r, wrong+w
	}
	t.Logf("%d windows: %s (or a direction of it) blamed in %d, %s in %d", windows, lossy, right, healthy, wrong)
	if right < windows*9/10 || wrong > windows/15 {
		t.Errorf("%d windows: %s blamed in %d (want 9 in 10), %s in %d (want at most 1 in 15)", windows, lossy, right, healthy, wrong)
	}
}

// TestEvidenceFindsAGrayLinkSooner: 2 % loss on a leaf-spine link of the
// issue's 64-host fabric, the same 20 seeds with evidence on demand and at
// a fixed probe rate: with it, as many faults or more are named, and
// sooner (the median onset to named counts "never" as never), and healthy
// elements are blamed in at most one fault in ten. (Since reverse traces,
// the fixed rate names all 20 too; over 80 seeds evidence on demand blamed
// a healthy element 3 times, the fixed rate once: more probes beside a
// suspect amplify the model's errors a little, see docs/benchmarks.md.)
func TestEvidenceFindsAGrayLinkSooner(t *testing.T) {
	type outcome struct {
		named, blamedWrong int
		times              []float64 // onset to named, +Inf for never
		extra, probes      uint64
	}
	run := func(off bool) outcome {
		var o outcome
		for seed := 1; seed <= 20; seed++ {
			sc, err := Parse("gray.yaml", []byte(fmt.Sprintf(`name: gray
seed: %d
topology: {generate: {dcs: 1, pods: 2, racks_per_pod: 4, hosts_per_rack: 8, leaves_per_pod: 2, spines: 4}}
probing: {interval: 10s, protocols: [tcp, udp]}
duration: 4m
faults:
  - {kind: link_loss, link: "dc1-pod%d-leaf%d--dc1-spine%d", rate: 0.02, at: %ds}
`, seed, 1+seed%2, 1+seed/2%2, 1+seed%4, 60+seed)), nil)
			if err != nil {
				t.Fatal(err)
			}
			rep, err := Run(context.Background(), sc, Options{Localizers: []string{localize.NameMeshlens}, Evidence: analyze.EvidenceConfig{Off: off}})
			if err != nil {
				t.Fatal(err)
			}
			o.extra += rep.ExtraProbes
			o.probes += rep.Probes
			o.times = append(o.times, math.Inf(1))
			if f := rep.Results[0].Faults[0]; f.Localized != nil {
				o.named++
				o.times[len(o.times)-1] = float64(*f.Localized)
			}
			o.blamedWrong += len(rep.Results[0].FalsePositives)
		}
		sort.Float64s(o.times)
		return o
	}
	median := func(v []float64) float64 { return v[len(v)/2] }
	with, without := run(false), run(true)
	t.Logf("evidence on demand: named %d of 20, median onset to named %.0fs, %d wrong elements blamed, %d extra probes of %d", with.named, median(with.times), with.blamedWrong, with.extra, with.probes)
	t.Logf("fixed probe rate:   named %d of 20, median onset to named %.0fs, %d wrong elements blamed", without.named, median(without.times), without.blamedWrong)
	if without.extra != 0 || with.extra == 0 {
		t.Errorf("extra probes %d with evidence, %d without", with.extra, without.extra)
	}
	if with.named < without.named || median(with.times) >= median(without.times) || with.blamedWrong > 2 {
		t.Error("evidence on demand did not name the gray link as often and sooner, blaming a healthy element in at most 2 of 20")
	}
}
