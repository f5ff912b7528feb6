package diagnose

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/alert"
	"github.com/meshlens/meshlens/internal/api"
	"github.com/meshlens/meshlens/internal/slo"
)

func TestDiagnoseHost(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	up := func(host string) []api.AgentStatus {
		return []api.AgentStatus{{Host: host, State: "up", LastSeen: now.Add(-5 * time.Second), Version: "dev", SchedulingLagP99Seconds: 0.0004}}
	}
	// An incident whose scope is the host's rack.
	mgr, err := alert.NewManager(alert.Config{})
	if err != nil {
		t.Fatal(err)
	}
	mgr.Observe(now.Add(-10*time.Minute), []alert.Condition{{Labels: map[string]string{"alertname": "X", "slo": "r1"}, Scope: &slo.Scope{Rack: "dc1-pod1-rack1"}, Annotations: map[string]string{"summary": "rack1 burns"}}})
	tests := []struct {
		name   string
		f      fabric
		want   string
		golden string
	}{
		{"missing agent", fabric{agents: []api.AgentStatus{{Host: srcHost, State: "missing"}}}, "has never reported", ""},
		{"agents not served", fabric{}, "is healthy", ""},
		{"sick", fabric{agents: up(srcHost), srcHostOut: 0.05, rackLoss: 0.001, incidents: mgr}, "is a sick host", "host-sick.txt"},
		{"upstream blamed", fabric{agents: up(srcHost), suspects: []Suspect{{Element: "dc1-pod1-rack1-tor", Kind: "device", Symptom: "loss", Confidence: 0.9}}}, "dc1-pod1-rack1-tor above it is blamed", ""},
		{"healthy", fabric{agents: up(srcHost)}, "is healthy", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := serveFabric(t, tc.f, now)
			r, err := Host(context.Background(), c, srcHost, now)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(r.Verdict, tc.want) {
				t.Fatalf("verdict %q, want %q; evidence %v", r.Verdict, tc.want, r.Evidence)
			}
			if tc.golden != "" {
				if len(r.Incidents) != 1 {
					t.Errorf("incidents %+v", r.Incidents)
				}
				var b bytes.Buffer
				if err := WriteHost(&b, r); err != nil {
					t.Fatal(err)
				}
				golden(t, tc.golden, b.Bytes())
			}
		})
	}
}

func TestDiagnoseElement(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	leafLink := Suspect{Element: "dc1-pod1-leaf2->dc1-spine1", Kind: "link", Symptom: "loss", Estimate: 0.03, Confidence: 0.91}
	mgr, err := alert.NewManager(alert.Config{Blamer: alert.BlamerFunc(func(*slo.Scope, time.Time) (alert.Culprit, bool) {
		return alert.Culprit{Element: "dc1-pod1-leaf2--dc1-spine1", Kind: "link", Confidence: 0.91}, true
	})})
	if err != nil {
		t.Fatal(err)
	}
	mgr.Observe(now.Add(-10*time.Minute), []alert.Condition{{Labels: map[string]string{"alertname": "X"}, Scope: &slo.Scope{Pod: "dc1-pod1"}}})
	c := serveFabric(t, fabric{suspects: []Suspect{leafLink}, incidents: mgr}, now)
	tests := []struct {
		element string
		healthy bool
		racks   int
		golden  string
		err     string
	}{
		{"dc1-pod1-leaf2--dc1-spine1", false, 2, "element-link.txt", ""},
		{"dc1-spine1", false, 4, "", ""}, // its link is blamed
		{"dc1-pod2-leaf1", true, 2, "", ""},
		{"dc1-pod1-rack2-tor", true, 1, "", ""},
		{"dc1-pod1-rack1-h01", false, 0, "", "not a switch or link"},
		{"dc9-spine1", false, 0, "", "not a switch or link"},
	}
	for _, tc := range tests {
		t.Run(tc.element, func(t *testing.T) {
			r, err := Element(context.Background(), c, tc.element)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Healthy != tc.healthy || len(r.Racks) != tc.racks {
				t.Fatalf("healthy %v racks %v; want %v, %d (%s)", r.Healthy, r.Racks, tc.healthy, tc.racks, r.Verdict)
			}
			if tc.golden != "" {
				if len(r.Incidents) != 1 {
					t.Errorf("incidents %+v", r.Incidents)
				}
				var b bytes.Buffer
				if err := WriteElement(&b, r); err != nil {
					t.Fatal(err)
				}
				golden(t, tc.golden, b.Bytes())
			}
		})
	}
}
