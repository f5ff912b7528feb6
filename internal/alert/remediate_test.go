package alert

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/slo"
	"github.com/meshlens/meshlens/internal/topology"
)

type recordedAction struct {
	mu    sync.Mutex
	calls []string
	fail  bool
}

func (a *recordedAction) Run(_ context.Context, action, element, _ string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, action+" "+element)
	if a.fail {
		return io.ErrUnexpectedEOF
	}
	return nil
}

func fabric(t *testing.T) *topology.Topology {
	t.Helper()
	topo, err := topology.Generate(topology.GenSpec{DCs: 1, Pods: 2, RacksPerPod: 2, HostsPerRack: 2, LeavesPerPod: 2, Spines: 4})
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

func blaming(id, element, kind string, conf float64, at time.Time) Incident {
	return Incident{ID: id, State: IncidentOpen, Blamed: &Culprit{Element: element, Kind: kind, Confidence: conf, Estimate: 0.05, At: at}}
}

func TestRemediation(t *testing.T) {
	topo := fabric(t)
	type round struct {
		after     time.Duration
		incidents []Incident
		want      []string // "action element taken|dry|refused: reason-substring"
	}
	tests := []struct {
		name    string
		execute bool
		perHour int
		rounds  []round
		calls   []string
	}{
		{"dry-run by default", false, 0, []round{
			{0, []Incident{blaming("i1", "dc1-spine1", "device", 0.95, t0)}, []string{"drain dc1-spine1 dry: dry-run: would drain"}},
			{time.Minute, nil, nil},
			{11 * time.Minute, nil, []string{"undrain dc1-spine1 dry: dry-run: would undrain"}},
		}, nil},
		{"drain, cap the spine layer, undo after hold-down", true, 0, []round{
			{0, []Incident{blaming("i1", "dc1-spine1", "device", 0.95, t0)}, []string{"drain dc1-spine1 taken: drained device dc1-spine1"}},
			{10 * time.Second, []Incident{blaming("i1", "dc1-spine1", "device", 0.95, t0), blaming("i2", "dc1-spine2", "device", 0.95, t0.Add(10*time.Second))},
				[]string{"drain dc1-spine2 refused: 2 of 4 in layer dc1/spine out, above the 25% cap"}},
			{20 * time.Second, []Incident{blaming("i1", "dc1-spine1", "device", 0.95, t0), blaming("i2", "dc1-spine2", "device", 0.95, t0.Add(20*time.Second))}, nil}, // refusal audited once
			{time.Minute, nil, nil},
			{10*time.Minute + 59*time.Second, nil, nil},
			{11 * time.Minute, nil, []string{"undrain dc1-spine1 taken: undrained dc1-spine1"}},
		}, []string{"drain dc1-spine1", "undrain dc1-spine1"}},
		{"rate limit", true, 2, []round{
			{0, []Incident{
				blaming("a", "dc1-pod1-leaf1--dc1-spine1", "link", 0.9, t0),
				blaming("b", "dc1-pod2-leaf1--dc1-spine2", "link", 0.9, t0),
				blaming("c", "dc1-pod1-rack1-tor--dc1-pod1-leaf1", "link", 0.9, t0),
			}, []string{"drain dc1-pod1-leaf1--dc1-spine1 taken", "drain dc1-pod2-leaf1--dc1-spine2 taken", "drain dc1-pod1-rack1-tor--dc1-pod1-leaf1 refused: 2 actions in the last hour, the limit is 2"}},
		}, []string{"drain dc1-pod1-leaf1--dc1-spine1", "drain dc1-pod2-leaf1--dc1-spine2"}},
		{"stale evidence", true, 0, []round{
			{time.Minute, []Incident{blaming("i1", "dc1-spine1", "device", 0.95, t0)}, []string{"drain dc1-spine1 refused: evidence from"}},
		}, nil},
		{"low confidence and unknown kinds are left alone", true, 0, []round{
			{0, []Incident{blaming("i1", "dc1-spine1", "device", 0.5, t0), blaming("i2", "dc1-pod1-rack1-h01", "host", 0.99, t0)}, nil},
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			act := &recordedAction{}
			var audit bytes.Buffer
			r, err := NewRemediator(RemediatorConfig{
				Rules:   []RemediationRule{{Name: "drain-fabric", Kinds: []string{"link", "device"}, MinConfidence: 0.8, HoldDown: 10 * time.Minute, Action: act}},
				Execute: tc.execute, MaxActionsPerHour: tc.perHour, Layers: TopologyLayers(topo), Audit: &audit,
			})
			if err != nil {
				t.Fatal(err)
			}
			total := 0
			for _, rd := range tc.rounds {
				ds := r.Consider(context.Background(), t0.Add(rd.after), rd.incidents)
				total += len(ds)
				if len(ds) != len(rd.want) {
					t.Fatalf("at +%v: %d decisions %+v, want %v", rd.after, len(ds), ds, rd.want)
				}
				for i, d := range ds {
					state := "refused"
					switch {
					case d.Taken:
						state = "taken"
					case d.DryRun && strings.HasPrefix(d.Reason, "dry-run"):
						state = "dry"
					}
					got := d.Action + " " + d.Element + " " + state + ": " + d.Reason
					w := rd.want[i]
					head, sub, _ := strings.Cut(w, ": ")
					if !strings.HasPrefix(got, head) || !strings.Contains(d.Reason, sub) {
						t.Errorf("at +%v: decision %q, want %q", rd.after, got, w)
					}
				}
			}
			if strings.Join(act.calls, ",") != strings.Join(tc.calls, ",") {
				t.Errorf("actions %v, want %v", act.calls, tc.calls)
			}
			got, err := r.Decisions()
			if err != nil || len(got) != total {
				t.Errorf("audit: %d decisions, err %v; want %d", len(got), err, total)
			}
			if n := strings.Count(audit.String(), "\n"); n != total {
				t.Errorf("audit log has %d lines, want %d", n, total)
			}
		})
	}
}

func TestRemediationMitigatesIncident(t *testing.T) {
	topo := fabric(t)
	m := newManager(t, Config{Blamer: BlamerFunc(func(_ *slo.Scope, at time.Time) (Culprit, bool) {
		return Culprit{Element: "dc1-spine3", Kind: "device", Confidence: 0.97, At: at}, true
	})})
	m.Observe(t0, []Condition{cond("a", nil, 0)})
	r, err := NewRemediator(RemediatorConfig{Rules: []RemediationRule{{Name: "spines", Kinds: []string{"device"}, MinConfidence: 0.9, Action: &recordedAction{}}},
		Layers: TopologyLayers(topo), Manager: m})
	if err != nil {
		t.Fatal(err)
	}
	r.Consider(context.Background(), t0.Add(5*time.Second), m.Incidents())
	inc := m.Incidents()[0]
	last := inc.Timeline[len(inc.Timeline)-1]
	if last.Kind != EventMitigation || !strings.Contains(last.Detail, "dry-run: would drain device dc1-spine3") {
		t.Fatalf("timeline %+v", inc.Timeline)
	}
}

func TestRemediationActions(t *testing.T) {
	secret := []byte("k")
	var got []map[string]string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if !VerifySignature(secret, b, r.Header.Get(SignatureHeader)) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var m map[string]string
		_ = json.Unmarshal(b, &m)
		mu.Lock()
		got = append(got, m)
		mu.Unlock()
	}))
	defer srv.Close()
	wh, err := NewWebhook("drain", srv.URL, secret, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		a       Action
		wantErr bool
	}{
		{"webhook", WebhookAction{Hook: wh}, false},
		{"command ok", CommandAction{Argv: []string{"true"}, Timeout: 10 * time.Second}, false},
		{"command fails", CommandAction{Argv: []string{"false"}}, true},
		{"no command", CommandAction{}, true},
	}
	for _, tc := range tests {
		err := tc.a.Run(context.Background(), ActionDrain, "dc1-spine1", "device")
		if (err != nil) != tc.wantErr {
			t.Errorf("%s: err %v", tc.name, err)
		}
	}
	if len(got) != 1 || got[0]["action"] != "drain" || got[0]["element"] != "dc1-spine1" {
		t.Errorf("webhook got %v", got)
	}
}

func TestTopologyLayers(t *testing.T) {
	layers := TopologyLayers(fabric(t))
	tests := []struct {
		element, layer string
		size           int
	}{
		{"dc1-spine2", "dc1/spine", 4},
		{"dc1-pod1-leaf2", "dc1-pod1/leaf", 2},
		{"dc1-pod1-leaf2--dc1-spine3", "link:dc1-pod1/leaf-spine", 8},
		{"dc1-spine3->dc1-pod1-leaf2", "link:dc1-pod1/leaf-spine", 8},
		{"dc1-pod1-rack1-tor--dc1-pod1-leaf1", "link:dc1-pod1/tor-leaf", 4},
		{"dc1-pod2-rack1-h01", "dc1-pod2-rack1/hosts", 2},
		{"nope", "", 0},
	}
	for _, tc := range tests {
		l, n := layers(tc.element, "")
		if l != tc.layer || n != tc.size {
			t.Errorf("%s: layer %q size %d, want %q %d", tc.element, l, n, tc.layer, tc.size)
		}
	}
}

// TestRemediationEvidenceDelay: evidence is as fresh as the pipeline
// allows for EvidenceDelay after its window ends (the aggregator's
// lateness), and only then starts to age: with a 40 s delay and two 10 s
// windows allowed, a verdict on a window that ended 55 s ago is acted on,
// one on a window that ended 65 s ago is not.
func TestRemediationEvidenceDelay(t *testing.T) {
	topo := fabric(t)
	for _, tc := range []struct {
		windowEndedAgo time.Duration
		want           string
	}{
		{55 * time.Second, "dry-run: would drain"},
		{65 * time.Second, "refused: evidence from the window ending"},
	} {
		r, err := NewRemediator(RemediatorConfig{
			Rules:          []RemediationRule{{Name: "drain", Kinds: []string{"device"}, MinConfidence: 0.8, HoldDown: time.Minute, Action: &recordedAction{}}},
			MaxEvidenceAge: 20 * time.Second, EvidenceDelay: 40 * time.Second, Layers: TopologyLayers(topo),
		})
		if err != nil {
			t.Fatal(err)
		}
		now := t0.Add(tc.windowEndedAgo)
		ds := r.Consider(context.Background(), now, []Incident{blaming("i1", "dc1-spine1", "device", 0.95, t0)})
		if len(ds) != 1 || !strings.Contains(ds[0].Reason, tc.want) {
			t.Errorf("window ended %v ago: decisions %+v, want one %q", tc.windowEndedAgo, ds, tc.want)
		}
	}
}
