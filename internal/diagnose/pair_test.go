package diagnose

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/meshlens/meshlens/internal/alert"
	"github.com/meshlens/meshlens/internal/api"
	"github.com/meshlens/meshlens/internal/store"
	"github.com/meshlens/meshlens/internal/topology"
)

const (
	srcHost = "dc1-pod1-rack1-h01"
	dstHost = "dc1-pod2-rack1-h01"
)

// fabric is the state of the world a diagnosis looks at.
type fabric struct {
	pairLoss     float64 // src->dst loss in the last 5 minutes
	baselineLoss float64 // before that
	rackLoss     float64 // every rack pair's loss, recently
	srcHostOut   float64 // src's own loss out, recently
	perWindow    uint64  // probes per pair window; 0: 1000
	suspects     []Suspect
	agents       []api.AgentStatus // nil: the server lists none
	incidents    *alert.Manager    // nil: no incidents API
	detail       *detailFixture    // nil: the server says nothing of its pair detail
}

type agentSource []api.AgentStatus

func (a agentSource) Agents() []api.AgentStatus { return a }

// pairSource serves the src->dst and dst->src windows of a fabric.
type pairSource struct {
	f   fabric
	now time.Time
}

func (p pairSource) PairWindows(_ context.Context, q api.PairQuery) ([]api.PairWindow, error) {
	var out []api.PairWindow
	for end := p.now.Add(-time.Hour).Add(10 * time.Second); !end.After(p.now); end = end.Add(10 * time.Second) {
		if end.Before(q.Since) || end.After(q.Until) {
			continue
		}
		loss := p.f.baselineLoss
		if end.After(p.now.Add(-RecentSpan)) && q.Src == srcHost {
			loss = p.f.pairLoss
		}
		sent := p.f.perWindow
		if sent == 0 {
			sent = 1000
		}
		out = append(out, api.PairWindow{Start: end.Add(-10 * time.Second), End: end, Proto: "tcp", Sent: sent, Lost: uint64(loss * float64(sent)), LossRatio: loss, P50: new(50e-6), P90: new(80e-6), P99: new(120e-6), P999: new(300e-6)})
	}
	return out, nil
}

// serveFabric starts the real API server over a real store holding the
// fabric's rollups.
func serveFabric(t *testing.T, f fabric, now time.Time) *Client {
	t.Helper()
	topo, err := topology.Generate(topology.GenSpec{DCs: 1, Pods: 2, RacksPerPod: 2, HostsPerRack: 4, LeavesPerPod: 2, Spines: 2})
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	app := st.Appender(context.Background())
	cum := map[string][2]float64{}
	for ts := now.Add(-30 * time.Minute); !ts.After(now); ts = ts.Add(10 * time.Second) {
		recent := ts.After(now.Add(-RecentSpan))
		for _, r1 := range topo.Racks {
			for _, r2 := range topo.Racks {
				loss := 0.0
				if recent {
					loss = f.rackLoss
				}
				k := r1.Name + ">" + r2.Name
				c := cum[k]
				c[0] += 1000
				c[1] += 1000 * loss
				cum[k] = c
				for i, name := range []string{"meshlens_rack_pair_probes_total", "meshlens_rack_pair_probes_lost_total"} {
					if _, err := app.Append(0, labels.FromStrings("__name__", name, "src_rack", r1.Name, "dst_rack", r2.Name, "proto", "tcp"), ts.UnixMilli(), c[i]); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		for _, h := range topo.Hosts {
			for _, dir := range []string{"out", "in"} {
				v := 0.0
				if recent {
					v = f.rackLoss
					if h.Name == srcHost && dir == "out" {
						v = f.srcHostOut
					}
				}
				if _, err := app.Append(0, labels.FromStrings("__name__", "meshlens_host_loss_ratio", "host", h.Name, "direction", dir), ts.UnixMilli(), v); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	src := api.Sources{Store: st, Topology: func() any { return topo }, Pairs: pairSource{f, now}}
	if f.detail != nil {
		src.Pairs = detailSource{pairSource{f, now}, *f.detail}
	}
	if f.agents != nil {
		src.Agents = agentSource(f.agents)
	}
	suspects := f.suspects
	if suspects == nil {
		suspects = []Suspect{}
	}
	src.Suspects = suspectSource(suspects)
	srv, err := api.New(api.Config{AllowAnonymous: api.RoleViewer, Registerer: prometheus.NewRegistry()}, src)
	if err != nil {
		t.Fatal(err)
	}
	if m := f.incidents; m != nil {
		srv.Handle("GET /api/v1/incidents", api.RoleViewer, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": m.Incidents()})
		}))
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	c, err := NewClient(hs.URL, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDiagnosePair(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tor := Suspect{Element: "dc1-pod1-rack1-tor--dc1-pod1-leaf1", Kind: "link", Symptom: "loss", Estimate: 0.04, Confidence: 0.93}
	elsewhere := Suspect{Element: "dc1-pod2-rack2-tor--dc1-pod2-leaf2", Kind: "link", Symptom: "loss", Estimate: 0.04, Confidence: 0.93}
	tests := []struct {
		name      string
		f         fabric
		cause     string
		onPath    int
		golden    string
		inVerdict string
	}{
		{"healthy", fabric{pairLoss: 0, suspects: []Suspect{elsewhere}}, CauseHealthy, 0, "", "is healthy"},
		{"healthy despite a suspect on a path", fabric{suspects: []Suspect{tor}}, CauseHealthy, 1, "", "ECMP keeps"},
		{"sick source host", fabric{pairLoss: 0.05, srcHostOut: 0.05, rackLoss: 0.0005}, CauseHost, 0, "", "dc1-pod1-rack1-h01 is a sick host"},
		{"blamed link on the paths", fabric{pairLoss: 0.02, rackLoss: 0.01, suspects: []Suspect{elsewhere, tor}}, CauseNetwork, 1, "pair-network.txt", "link dc1-pod1-rack1-tor--dc1-pod1-leaf1, on 4 of its 8 paths, is blamed"},
		{"rack pair lossy, nothing blamed", fabric{pairLoss: 0.02, rackLoss: 0.02}, CauseNetwork, 0, "", "the whole rack pair loses"},
		{"pair alone", fabric{pairLoss: 0.02}, CauseUnknown, 0, "", "flow-specific"},
		{"too few probes", fabric{perWindow: 2, rackLoss: 0.004, suspects: []Suspect{tor}}, CauseUnknown, 1, "", "Only 60 probes"},
		// The peer's host is gone: its agent stopped delivering and every
		// probe to it is lost, its ToR's links blamed or not.
		{"peer's agent down", fabric{pairLoss: 1, rackLoss: 0.3, suspects: []Suspect{tor}, agents: []api.AgentStatus{{Host: srcHost, State: "up"}, {Host: dstHost, State: "stale"}}},
			CausePeerDown, 1, "", "the peer's agent is down (dc1-pod2-rack1-h01 is stale)"},
		{"peer's agent up", fabric{pairLoss: 0.02, rackLoss: 0.01, suspects: []Suspect{tor}, agents: []api.AgentStatus{{Host: dstHost, State: "up"}}},
			CauseNetwork, 1, "", "It is the network"},
		// What the server's pair detail holds (pairdetail_test.go): the
		// windows kept before a trim are those with loss; counted in the
		// baseline, they would hide the pair's loss now.
		{"baseline from the complete windows", fabric{pairLoss: 0.02, detail: trimmedAt(now.Add(-20*time.Minute), 0.5)},
			CauseUnknown, 0, "pair-detail-trimmed.txt", "is degraded (loss 2% against a baseline of 0%)"},
		{"recent windows trimmed", fabric{detail: trimmedAt(now, 0)},
			CauseUnknown, 0, "", "memory budget trimmed the detail of dc1-pod1-rack1-h01 -> dc1-pod2-rack1-h01 before 2026-03-01T12:00:00Z"},
		{"pair detail off", fabric{rackLoss: 0.01, detail: &detailFixture{PairDetail: api.PairDetail{Mode: "off", Note: "pair detail is off on this server"}}},
			CauseUnknown, 0, "", "keeps no pair windows (pair detail is off: rollups-only aggregation), so dc1-pod1-rack1-h01 -> dc1-pod2-rack1-h01 cannot be judged alone. Its rack pair dc1-pod1-rack1 -> dc1-pod2-rack1 loses 1%"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := serveFabric(t, tc.f, now)
			r, err := Pair(context.Background(), c, srcHost, dstHost, time.Hour, now)
			if err != nil {
				t.Fatal(err)
			}
			if r.Cause != tc.cause || len(r.OnPath) != tc.onPath || !strings.Contains(r.Verdict, tc.inVerdict) {
				t.Fatalf("cause %s, %d suspects on path, verdict %q; want %s, %d, containing %q\nevidence: %v", r.Cause, len(r.OnPath), r.Verdict, tc.cause, tc.onPath, tc.inVerdict, r.Evidence)
			}
			if tc.f.detail != nil {
				checkDetailShown(t, r, tc.f.detail.Note)
			}
			if tc.golden != "" {
				var b bytes.Buffer
				if err := WritePair(&b, r); err != nil {
					t.Fatal(err)
				}
				golden(t, tc.golden, b.Bytes())
			}
		})
	}
}

func TestDiagnosePairUnknownHost(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	c := serveFabric(t, fabric{}, now)
	if _, err := Pair(context.Background(), c, srcHost, "nope", time.Hour, now); err == nil || !strings.Contains(err.Error(), "want two different hosts") {
		t.Fatalf("err = %v", err)
	}
}

// suspectSource serves a fixed verdict as the analyzer's would be served.
type suspectSource []Suspect

func (s suspectSource) SuspectsAt(time.Time) any { return map[string]any{"suspects": []Suspect(s)} }
