package analyze

import (
	"math"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshlens/meshlens/internal/aggregate"
	"github.com/meshlens/meshlens/internal/localize"
	"github.com/meshlens/meshlens/internal/wire"
)

// scripted is a localizer that says, window by window, what it is told.
type scripted struct {
	suspects [][]localize.Suspect
	leads    [][]localize.Lead
	n        int
	last     []localize.Lead
}

func (s *scripted) Name() string { return "scripted" }
func (s *scripted) Localize(*localize.Window) ([]localize.Suspect, error) {
	i := s.n
	s.n++
	s.last = nil
	if i < len(s.leads) {
		s.last = s.leads[i]
	}
	if i < len(s.suspects) {
		return s.suspects[i], nil
	}
	return nil, nil
}
func (s *scripted) Leads() []localize.Lead { return s.last }

// meshWindow is window i with every host pair of x probed once per
// protocol (tcp, udp), probes more on the pairs in boosted.
func meshWindow(x *localize.Index, i int, boosted map[[2]string]uint32) *aggregate.SealedWindow {
	w := &aggregate.SealedWindow{Start: win(i), End: win(i + 1)}
	for a := range x.NumHosts {
		for b := range x.NumHosts {
			if a == b {
				continue
			}
			src, dst := x.Names[a], x.Names[b]
			for _, p := range []wire.Protocol{wire.Protocol_PROTOCOL_TCP, wire.Protocol_PROTOCOL_UDP} {
				sent := max(1, boosted[[2]string{src, dst}])
				w.Pairs = append(w.Pairs, aggregate.PairEntry{Key: aggregate.PairKey{Src: src, Dst: dst, Proto: p}, Stats: &aggregate.PairStats{Sent: sent}})
			}
		}
	}
	return w
}

func evidenceAnalyzer(t *testing.T, x *localize.Index, lz *scripted, cfg EvidenceConfig, reg prometheus.Registerer) *Analyzer {
	t.Helper()
	a, err := newAnalyzer(x, Config{Window: width, Evidence: cfg, Registerer: reg}, func(string, *localize.Index, localize.Config) (localize.Localizer, error) { return lz, nil })
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func step(t *testing.T, a *Analyzer, x *localize.Index, i int, boosted map[[2]string]uint32) Evidence {
	t.Helper()
	a.IngestWindow(0, meshWindow(x, i, boosted))
	if _, err := a.Advance(win(i + 1)); err != nil {
		t.Fatal(err)
	}
	return a.Evidence()
}

func boostedPairs(ev Evidence) map[[2]string]bool {
	out := map[[2]string]bool{}
	for src, peers := range ev.Agents {
		for _, dst := range peers {
			out[[2]string{src, dst}] = true
		}
	}
	return out
}

// TestEvidenceOnDemand: a lead on a quiet link, while nothing is blamed,
// asks the pairs that may cross it or the switches around it for more
// probes; they are withdrawn once something is blamed, and lapse when the
// lead goes away.
func TestEvidenceOnDemand(t *testing.T) {
	x := testIndex(t)
	const link = "dc1-pod1-leaf1--dc1-spine1"
	lead := []localize.Lead{{Element: link, Kind: localize.KindLink, Score: 9, Anomalous: 2, Share: 0.05}}
	blamed := []localize.Suspect{{Element: link, Kind: localize.KindLink, Symptom: localize.SymptomLoss, Confidence: 0.8}}
	lz := &scripted{
		leads:    [][]localize.Lead{lead, lead, lead, nil, nil, lead, nil, nil, nil},
		suspects: [][]localize.Suspect{nil, nil, blamed, nil, nil, nil, nil, nil, nil},
	}
	reg := prometheus.NewRegistry()
	a := evidenceAnalyzer(t, x, lz, EvidenceConfig{}, reg)

	ev := step(t, a, x, 0, nil)
	got := boostedPairs(ev)
	if ev.Probes != DefaultEvidenceProbes || len(ev.Requests) != 1 || ev.Requests[0].Element != link || ev.Version == 0 {
		t.Fatalf("plan after a lead: %+v", ev)
	}
	cross, err := x.Crossing(link)
	if err != nil {
		t.Fatal(err)
	}
	around := map[string]*localize.Crossing{}
	for _, n := range x.Around(link) {
		if around[n], err = x.Crossing(n); err != nil {
			t.Fatal(err)
		}
	}
	if len(around) != 2 || around["dc1-pod1-leaf1"] == nil || around["dc1-spine1"] == nil {
		t.Fatalf("around %s: %v", link, x.Around(link))
	}
	for a := range int32(x.NumHosts) {
		for b := range int32(x.NumHosts) {
			if a == b {
				continue
			}
			want := cross.Pair(a, b) || around["dc1-pod1-leaf1"].Pair(a, b) || around["dc1-spine1"].Pair(a, b)
			if got[[2]string{x.Names[a], x.Names[b]}] != want {
				t.Errorf("%s -> %s boosted %v, want %v", x.Names[a], x.Names[b], !want, want)
			}
		}
	}
	// Within a rack nothing crosses a leaf: those pairs stay as they are.
	if got[[2]string{"dc1-pod1-rack1-h01", "dc1-pod1-rack1-h02"}] || !got[[2]string{"dc1-pod1-rack1-h01", "dc1-pod2-rack1-h01"}] {
		t.Errorf("boosted %v", got)
	}
	// Each boosted pair sends 2 probes (tcp, udp) a window: one more each.
	if want := float64(len(got)) * 2 * float64(DefaultEvidenceProbes-1) / width.Seconds(); math.Abs(ev.ExtraPerSecond-want) > 1e-9 {
		t.Errorf("extra %v probes/s, want %v", ev.ExtraPerSecond, want)
	}

	// The boosted pairs probe twice as often: the next plan reads them
	// at their regular rate, and is the same plan (same version).
	doubled := map[[2]string]uint32{}
	for p := range got {
		doubled[p] = uint32(DefaultEvidenceProbes)
	}
	if ev2 := step(t, a, x, 1, doubled); ev2.Version != ev.Version || math.Abs(ev2.ExtraPerSecond-ev.ExtraPerSecond) > 1e-9 {
		t.Errorf("renewed plan %+v, want version %d and %v probes/s", ev2, ev.Version, ev.ExtraPerSecond)
	}
	// Blamed: withdrawn at once, beside the lead.
	if ev3 := step(t, a, x, 2, doubled); len(ev3.Agents) != 0 || len(ev3.Requests) != 0 || ev3.Version == ev.Version {
		t.Errorf("after blame: %+v", ev3)
	}
	if n := testutil.ToFloat64(a.ev.m.ended.WithLabelValues(evidenceConfirmed)); n != 1 {
		t.Errorf("confirmed %v, want 1", n)
	}
	step(t, a, x, 3, nil)
	step(t, a, x, 4, nil)
	// The lead again, then not for Hold windows: it lapses on the third.
	if ev := step(t, a, x, 5, nil); len(ev.Requests) != 1 {
		t.Fatalf("lead again: %+v", ev)
	}
	for i := 6; i < 6+DefaultEvidenceHold; i++ {
		ev := step(t, a, x, i, nil)
		if lapsed := len(ev.Requests) == 0; lapsed != (i == 5+DefaultEvidenceHold) {
			t.Errorf("window %d: requests %+v", i, ev.Requests)
		}
	}
	if n := testutil.ToFloat64(a.ev.m.ended.WithLabelValues(evidenceCleared)); n != 1 {
		t.Errorf("cleared %v, want 1", n)
	}
}

// TestEvidenceBudgets: no agent is asked for more than AgentRate extra
// probes per second, nor the fleet for more than FleetRate; what is left
// out is counted.
func TestEvidenceBudgets(t *testing.T) {
	x := testIndex(t)
	lead := []localize.Lead{{Element: "dc1-spine1", Kind: localize.KindDevice, Score: 9, Anomalous: 3, Share: 0.05}}
	// A pair asked for evidence probes Probes-1 more times an interval
	// (10 s) in each of its two protocols.
	perPair := float64(DefaultEvidenceProbes-1) * 2 / 10
	for _, tc := range []struct {
		name                 string
		agentRate, fleetRate float64
	}{
		{"agent", 2.25 * perPair, 1000}, // two pairs an agent
		{"fleet", 10, 5 * perPair},      // five pairs in all
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := evidenceAnalyzer(t, x, &scripted{leads: [][]localize.Lead{lead}}, EvidenceConfig{AgentRate: tc.agentRate, FleetRate: tc.fleetRate}, nil)
			ev := step(t, a, x, 0, nil)
			var fleet float64
			for agent, peers := range ev.Agents {
				rate := float64(len(peers)) * perPair
				if rate > tc.agentRate+1e-9 {
					t.Errorf("%s asked for %v probes/s, budget %v", agent, rate, tc.agentRate)
				}
				fleet += rate
			}
			if fleet > tc.fleetRate+1e-9 || fleet == 0 || math.Abs(ev.ExtraPerSecond-fleet) > 1e-9 {
				t.Errorf("fleet asked for %v probes/s (plan says %v), budget %v", fleet, ev.ExtraPerSecond, tc.fleetRate)
			}
			r := ev.Requests[0]
			if r.OverBudget == 0 || testutil.ToFloat64(a.ev.m.refused) != float64(r.OverBudget) {
				t.Errorf("request %+v: nothing counted over budget", r)
			}
		})
	}
}

// TestEvidenceNotAsked: no request while something is blamed, for a lead
// a tenth of all probes cross already, or with evidence off.
func TestEvidenceNotAsked(t *testing.T) {
	x := testIndex(t)
	quiet := localize.Lead{Element: "dc1-spine1", Kind: localize.KindDevice, Score: 9, Anomalous: 3, Share: 0.05}
	busy := quiet
	busy.Share = maxEvidenceShare
	blamed := []localize.Suspect{{Element: "dc1-pod2-rack1-tor", Kind: localize.KindDevice, Symptom: localize.SymptomDown, Confidence: 1}}
	starved := []localize.Suspect{{Element: "dc1-pod2-rack1-h01", Kind: localize.KindHost, Symptom: localize.SymptomAgentSlow, Confidence: 1}}
	for _, tc := range []struct {
		name     string
		lz       *scripted
		cfg      EvidenceConfig
		requests int
	}{
		{"blamed", &scripted{leads: [][]localize.Lead{{quiet}}, suspects: [][]localize.Suspect{blamed}}, EvidenceConfig{}, 0},
		{"well observed", &scripted{leads: [][]localize.Lead{{busy}}}, EvidenceConfig{}, 0},
		{"off", &scripted{leads: [][]localize.Lead{{quiet}}}, EvidenceConfig{Off: true}, 0},
		// A starved agent is no answer about the network.
		{"beside a starved agent", &scripted{leads: [][]localize.Lead{{quiet}}, suspects: [][]localize.Suspect{starved}}, EvidenceConfig{}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := evidenceAnalyzer(t, x, tc.lz, tc.cfg, nil)
			if ev := step(t, a, x, 0, nil); len(ev.Requests) != tc.requests || (tc.requests == 0) != (len(ev.Agents) == 0) {
				t.Errorf("plan %+v, want %d requests", ev, tc.requests)
			}
		})
	}
}

func TestEvidenceConfigRefused(t *testing.T) {
	for _, cfg := range []EvidenceConfig{{Probes: 17}, {AgentRate: -1}, {FleetRate: -1}, {Hold: -1}} {
		if _, err := New(testIndex(t), Config{Window: width, Evidence: cfg}); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}

// TestEvidenceReindex: a new topology forgets every request.
func TestEvidenceReindex(t *testing.T) {
	x := testIndex(t)
	lead := []localize.Lead{{Element: "dc1-spine1", Kind: localize.KindDevice, Score: 9, Anomalous: 3, Share: 0.05}}
	a := evidenceAnalyzer(t, x, &scripted{leads: [][]localize.Lead{lead}}, EvidenceConfig{}, nil)
	before := step(t, a, x, 0, nil)
	if len(before.Agents) == 0 {
		t.Fatal("no plan")
	}
	if err := a.Reindex(testIndex(t)); err != nil {
		t.Fatal(err)
	}
	if after := a.Evidence(); len(after.Agents) != 0 || after.Version == before.Version || !slices.Equal(after.Requests, []EvidenceRequest{}) {
		t.Errorf("after reindex: %+v", after)
	}
}
