package ui

import (
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/alert"
	"github.com/meshlens/meshlens/internal/analyze"
	"github.com/meshlens/meshlens/internal/api"
	"github.com/meshlens/meshlens/internal/localize"
	"github.com/meshlens/meshlens/internal/slo"
	"github.com/meshlens/meshlens/internal/topology"
	"github.com/meshlens/meshlens/internal/wire"
	"github.com/meshlens/meshlens/web"
)

// TestAPIContract feeds web/js/api.js the server's own Go types, encoded
// the way internal/api encodes them, and checks what the pages receive.
// A renamed JSON field on either side fails here, not in front of a user.
func TestAPIContract(t *testing.T) {
	topo, err := topology.Generate(topology.GenSpec{DCs: 1, Pods: 1, RacksPerPod: 2, HostsPerRack: 2, LeavesPerPod: 1, Spines: 1})
	if err != nil {
		t.Fatal(err)
	}
	seen := time.Date(2026, 11, 24, 4, 0, 0, 0, time.UTC)
	end := seen.Add(10 * time.Second)
	agents := []api.AgentStatus{{Host: "dc1-pod1-rack1-h01", Version: "v1.2.3", LastSeen: seen, PinglistVersion: 7,
		ProbesTotal: 1200, ResultsRejected: 1, SchedulingLagP99Seconds: 0.0025, State: "stale"}}
	windows := []api.PairWindow{{Start: seen, End: end, Proto: "udp", Sent: 60, Lost: 3, LossRatio: 0.05,
		P50: new(0.0001), P90: new(0.0002), P99: new(0.004), P999: new(0.009)}}
	const tor = "dc1-pod1-rack1-tor"
	verdict := map[string]any{"start": seen, "end": end, "suspects": []localize.Suspect{{
		Element: tor, Kind: localize.KindDevice, Symptom: localize.SymptomLoss, Estimate: 0.3, Confidence: 0.97,
		Evidence: localize.Evidence{Probes: 1200, Anomalous: 360, Pairs: 12, Expected: 0.1},
	}}}
	incidents := []alert.Incident{{
		ID: "inc-7", Title: "loss in dc1-pod1", State: alert.IncidentOpen, Start: seen, Detected: end,
		Blamed:   &alert.Culprit{Element: tor, Kind: "device", Symptom: "loss", Estimate: 0.3, Confidence: 0.97, Evidence: "360 of 1200 probes through it lost"},
		SLOs:     []alert.SLOBurn{{SLO: "intra-pod-loss", Consumed: 0.02, PeakBurnRate: 14.4}},
		Timeline: []alert.Event{{At: seen, Kind: "opened", Detail: "alert intra-pod-loss page fired"}},
	}, {
		ID: "inc-8", Title: "loss in dc1-pod2", State: alert.IncidentOpen, Start: seen, Detected: end,
		Acknowledged: &alert.Ack{By: "alice", At: end, Comment: "draining the ToR"},
		Timeline:     []alert.Event{{At: end, Kind: alert.EventAcknowledged, Detail: "acknowledged by alice: draining the ToR"}},
	}}
	sli, budget, long, short := 0.9971, 0.12, 15.2, 16.0
	slos := []slo.Status{{
		Name: "intra-pod-loss", Description: "probes within a pod answered", Target: 0.999, Window: "28d", At: end,
		Events: 10000, BadEvents: 29, SLI: &sli, BudgetRemaining: &budget,
		BurnRates: map[string]float64{"5m": 16, "1h": 15.2},
		Tiers:     []slo.TierStatus{{Name: "page", Severity: "critical", Factor: 14.4, Long: "1h", Short: "5m", LongBurn: &long, ShortBurn: &short, Firing: true}},
	}}
	envelope := func(v any) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			if err := json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": v}); err != nil {
				t.Error(err)
			}
		}
	}
	mux := http.NewServeMux()
	mux.Handle("GET /api/v1/topology", envelope(topo))
	mux.Handle("GET /api/v1/agents", envelope(agents))
	mux.Handle("GET /api/v1/pairs", envelope(windows))
	mux.Handle("GET /api/v1/protocols", envelope(wire.Protocols()))
	mux.Handle("GET /api/v1/suspects", envelope(verdict))
	mux.Handle("GET /api/v1/evidence", envelope(analyze.Evidence{Version: 3, Probes: 2, ExtraPerSecond: 12.8, Window: end,
		Agents:   map[string][]string{"dc1-pod1-rack1-h01": {"dc1-pod2-rack1-h01"}},
		Requests: []analyze.EvidenceRequest{{Element: "dc1-pod2-leaf1--dc1-spine1", Kind: localize.KindLink, Score: 9, Since: seen, Renewed: end, Pairs: 64, OverBudget: 2}}}))
	mux.Handle("GET /api/v1/slos", envelope(slos))
	mux.Handle("GET /api/v1/remediations", envelope([]alert.Decision{
		{At: seen, Rule: "drain-lossy-tor", Incident: "inc-7", Element: tor, Kind: "device", Action: "drain", Taken: true},
	}))
	mux.Handle("GET /api/v1/incidents", envelope(incidents))
	mux.Handle("GET /api/v1/incidents/{id}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, inc := range incidents {
			if inc.ID == r.PathValue("id") {
				envelope(inc)(w, r)
				return
			}
		}
		http.NotFound(w, r)
	}))
	mux.HandleFunc("/api/", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"status":"error","errorType":"not_found","error":"no API endpoint"}`))
	})
	mux.Handle("/", web.Handler())
	srv := httptest.NewServer(mux)
	defer srv.Close()

	b := NewBrowser(t, Options{})
	if err := b.Navigate(srv.URL + "/#/agents"); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitFor(`document.querySelector('#agents-table')`, 30*time.Second); err != nil {
		t.Fatal(err)
	}

	t.Run("topology", func(t *testing.T) {
		got, err := Eval[map[string]int](b, `import('/js/api.js').then(async m => { const t = await m.topology();
			return {racks: t.racks.length, hosts: t.hosts.length, switches: t.switches.length, links: t.links.length, rackHosts: t.racks[0].hosts.length}; })`)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]int{"racks": len(topo.Racks), "hosts": len(topo.Hosts), "switches": len(topo.Switches), "links": len(topo.Links), "rackHosts": 2}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: %d, want %d", k, got[k], v)
			}
		}
	})

	t.Run("agents", func(t *testing.T) {
		type agent struct {
			Host, Version, State         string
			LastSeen                     string
			PinglistVersion, ProbesTotal float64
			SchedulingLag                float64
		}
		got, err := Eval[[]agent](b, `import('/js/api.js').then(async m => (await m.agents()).map(a => ({...a, lastSeen: a.lastSeen.toISOString()})))`)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 {
			t.Fatalf("%d agents, want 1", len(got))
		}
		a, w := got[0], agents[0]
		if a.Host != w.Host || a.Version != w.Version || a.State != w.State || a.PinglistVersion != float64(w.PinglistVersion) ||
			a.ProbesTotal != float64(w.ProbesTotal) || a.SchedulingLag != w.SchedulingLagP99Seconds || a.LastSeen != "2026-11-24T04:00:00.000Z" {
			t.Errorf("agent %+v from %+v", a, w)
		}
	})

	t.Run("pairs", func(t *testing.T) {
		type window struct {
			Proto                          string
			End                            string
			Sent, Lost                     float64
			LossRatio, P50, P90, P99, P999 float64
		}
		got, err := Eval[[]window](b, `import('/js/api.js').then(async m => (await m.pairHistory('a', 'b')).map(w => ({...w, end: w.end.toISOString()})))`)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 {
			t.Fatalf("%d windows, want 1", len(got))
		}
		g, w := got[0], windows[0]
		near := func(a, b float64) bool { return math.Abs(a-b) < 1e-12 }
		if g.Proto != w.Proto || g.End != "2026-11-24T04:00:10.000Z" || g.Sent != 60 || g.Lost != 3 || !near(g.LossRatio, w.LossRatio) ||
			!near(g.P50, *w.P50) || !near(g.P90, *w.P90) || !near(g.P99, *w.P99) || !near(g.P999, *w.P999) {
			t.Errorf("window %+v from %+v", g, w)
		}
	})

	// The heatmap's protocol choice is the server's protocol table.
	t.Run("protocols", func(t *testing.T) {
		if err := b.Navigate(srv.URL + "/#/heatmap"); err != nil {
			t.Fatal(err)
		}
		if err := b.WaitFor(`document.querySelectorAll('#hm-proto option').length > 1`, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		got, err := Eval[[]string](b, `[...document.querySelectorAll('#hm-proto option')].map(o => o.value)`)
		if err != nil {
			t.Fatal(err)
		}
		if want := append([]string{""}, wire.ProtocolNames()...); !slices.Equal(got, want) {
			t.Errorf("heatmap protocol options %q, want %q", got, want)
		}
	})

	t.Run("localizer and incidents", func(t *testing.T) {
		for _, tc := range []struct{ hash, sel string }{
			{"#/topology", `#topo-svg .node.blamed[data-element="` + tor + `"]`},
			{"#/incidents", `#incidents-table tr[data-id="inc-7"] .blamed`},
			{"#/incidents?id=inc-7", `#incident-blamed li[data-element="` + tor + `"]`},
			{"#/incidents?id=inc-7", `#incident-detail table`}, // remediation audit: "drain <tor>"
			{"#/topology", `#topo-svg .node.drained[data-element="` + tor + `"]`},
			{"#/overview", `#ov-incidents .blamed`},
			{"#/overview", `#ov-suspects tr[data-element="` + tor + `"]`},
			{"#/overview", `#ov-card-now .blamed`},
		} {
			if err := b.Navigate("about:blank"); err != nil {
				t.Fatal(err)
			}
			if err := b.Navigate(srv.URL + "/" + tc.hash); err != nil {
				t.Fatal(err)
			}
			if err := b.WaitFor(`document.querySelector('`+tc.sel+`')?.textContent.includes('`+tor+`')`, 30*time.Second); err != nil {
				t.Errorf("%s: %v", tc.hash, err)
			}
			noJunk(t, b)
			shot(t, b, "contract-"+strings.Trim(strings.NewReplacer("#/", "", "?", "-", "=", "-").Replace(tc.hash), "-"))
		}
		// An acknowledged incident says who took it on, and offers no form.
		if err := b.Navigate(srv.URL + "/#/incidents?id=inc-8"); err != nil {
			t.Fatal(err)
		}
		if err := b.WaitFor(`(document.querySelector('#incident-ack')?.textContent || '').includes('Acknowledged by alice')`, 30*time.Second); err != nil {
			t.Errorf("acknowledged incident: %v", err)
		} else if evalT[bool](t, b, `!!document.querySelector('#incident-ack-form')`) {
			t.Error("an acknowledged incident still offers to acknowledge")
		}
		// Evidence on demand is on the topology page, with its cost.
		if err := b.Navigate(srv.URL + "/#/topology"); err != nil {
			t.Fatal(err)
		}
		if err := b.WaitFor(`(document.querySelector('#topo-evidence li[data-element="dc1-pod2-leaf1--dc1-spine1"]')?.textContent || '').includes('64 pairs, 2 left out by the budget') && document.querySelector('#topo-evidence').textContent.includes('12.8 extra probes/s')`, 30*time.Second); err != nil {
			t.Errorf("evidence on demand: %v", err)
		}
		got, err := Eval[string](b, `import('/js/api.js').then(async m => (await m.suspects())[0].evidence)`)
		if err != nil || !strings.Contains(got, "360 anomalous") {
			t.Errorf("suspect evidence %q (%v), want the localizer's counts", got, err)
		}
		// The window judged: the overview says "in the window … – …".
		window, err := Eval[string](b, `import('/js/api.js').then(async m => { const v = await m.verdict(); return v.start.toISOString() + ' ' + v.end.toISOString(); })`)
		if err != nil || window != "2026-11-24T04:00:00.000Z 2026-11-24T04:00:10.000Z" {
			t.Errorf("verdict window %q (%v), want the localizer's start and end", window, err)
		}
	})

	t.Run("slos", func(t *testing.T) {
		if err := b.Navigate("about:blank"); err != nil {
			t.Fatal(err)
		}
		if err := b.Navigate(srv.URL + "/#/slos"); err != nil {
			t.Fatal(err)
		}
		sel := `#slo-intra-pod-loss[data-state=firing] tr[data-tier="page / critical"][data-state=firing]`
		if err := b.WaitFor(`document.querySelector('`+sel+`')`, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		shot(t, b, "contract-slos")
		text, err := Eval[string](b, `document.getElementById('slo-intra-pod-loss').textContent`)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"99.9 %", "over 28d", "29 bad of 10000", "budget remaining12 %", "14.40×", "15.20× / 16×"} {
			if !strings.Contains(text, want) {
				t.Errorf("SLO card lacks %q: %s", want, text)
			}
		}
	})

	t.Run("missing endpoint", func(t *testing.T) {
		kind, err := Eval[string](b, `import('/js/api.js').then(m => m.diagnosePair('a', 'b').then(() => 'ok', e => e.kind))`)
		if err != nil {
			t.Fatal(err)
		}
		if kind != "unavailable" {
			t.Errorf("a 404 endpoint gives error kind %q, want unavailable", kind)
		}
	})

	// Every page renders with the endpoints that exist and explains the
	// ones that do not, without an exception or a CSP violation.
	t.Run("pages", func(t *testing.T) {
		for _, p := range []string{"overview", "heatmap", "pair", "topology", "slos", "incidents", "agents"} {
			if err := b.Navigate("about:blank"); err != nil {
				t.Fatal(err)
			}
			if err := b.Navigate(srv.URL + "/#/" + p); err != nil {
				t.Fatal(err)
			}
			if err := b.WaitFor(`document.querySelector('main h1') && ![...document.querySelectorAll('main .empty')].some(e => e.textContent === 'Loading…')`, 30*time.Second); err != nil {
				t.Errorf("page %s: %v", p, err)
			}
			noJunk(t, b)
		}
		if p := b.Problems(); len(p) > 0 {
			t.Errorf("console problems: %v", p)
		}
	})
}
