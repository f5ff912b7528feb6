package localize

import (
	"slices"
	"testing"

	"github.com/meshlens/meshlens/internal/topology"
)

// TestCrossing: the pairs that may cross an element are those whose ECMP
// path set from the source's ToR to the destination's, or back, holds it.
func TestCrossing(t *testing.T) {
	f := newFixture(t, spec)
	id := func(name string) int32 {
		n, ok := f.x.Node(name)
		if !ok {
			t.Fatalf("no node %s", name)
		}
		return n
	}
	for _, tc := range []struct {
		element  string
		src, dst string
		want     bool
	}{
		// A leaf-spine link: inter-pod pairs from either end's pod, both
		// ways (the reply may take it); not within a pod.
		{"dc1-pod1-leaf1--dc1-spine1", host(1, 1, 1), host(2, 1, 1), true},
		{"dc1-pod1-leaf1--dc1-spine1", host(2, 2, 3), host(1, 2, 2), true},
		{"dc1-pod1-leaf1--dc1-spine1", host(1, 1, 1), host(1, 2, 1), false},
		{"dc1-pod1-leaf1--dc1-spine1", host(2, 1, 1), host(2, 2, 1), false},
		// One direction: the forward path or the reply, so the same pairs.
		{"dc1-spine1->dc1-pod1-leaf1", host(1, 1, 1), host(2, 1, 1), true},
		// A ToR: its rack's pairs, its own included; nobody else's.
		{"dc1-pod1-rack1-tor", host(1, 1, 1), host(1, 1, 2), true},
		{"dc1-pod1-rack1-tor", host(2, 1, 1), host(1, 1, 3), true},
		{"dc1-pod1-rack1-tor", host(2, 1, 1), host(1, 2, 3), false},
		// A leaf: inter-rack pairs of its pod.
		{"dc1-pod1-leaf2", host(1, 1, 1), host(1, 2, 1), true},
		{"dc1-pod1-leaf2", host(1, 1, 1), host(1, 1, 2), false},
		// A host and its access link: its own pairs.
		{host(1, 2, 3), host(1, 2, 3), host(2, 1, 1), true},
		{host(1, 2, 3), host(2, 1, 1), host(1, 2, 3), true},
		{host(1, 2, 3), host(2, 1, 1), host(1, 2, 2), false},
		{"dc1-pod1-rack2-tor->" + host(1, 2, 3), host(2, 1, 1), host(1, 2, 3), true},
		{"dc1-pod1-rack2-tor->" + host(1, 2, 3), host(2, 1, 1), host(1, 2, 2), false},
	} {
		c, err := f.x.Crossing(tc.element)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Pair(id(tc.src), id(tc.dst)); got != tc.want {
			t.Errorf("%s: %s -> %s crosses: %v, want %v", tc.element, tc.src, tc.dst, got, tc.want)
		}
	}
	for _, bad := range []string{"", "nope", "dc1-pod1-leaf1--nope", "dc1-pod1-leaf1->dc1-pod2-leaf1", "dc1-spine1--dc1-spine2"} {
		if _, err := f.x.Crossing(bad); err == nil {
			t.Errorf("Crossing(%q) accepted", bad)
		}
	}
}

func TestAround(t *testing.T) {
	f := newFixture(t, spec)
	for element, want := range map[string][]string{
		"dc1-pod1-leaf1--dc1-spine1":           {"dc1-pod1-leaf1", "dc1-spine1"},
		"dc1-spine1->dc1-pod1-leaf1":           {"dc1-pod1-leaf1", "dc1-spine1"},
		host(1, 2, 3):                          {"dc1-pod1-rack2-tor"},
		"dc1-pod1-rack2-tor--" + host(1, 2, 3): {"dc1-pod1-rack2-tor"},
		"dc1-spine2":                           nil,
	} {
		if got := f.x.Around(element); !slices.Equal(got, want) {
			t.Errorf("Around(%s) = %v, want %v", element, got, want)
		}
	}
}

// TestLeads: three losses on a quiet link of a clean fabric are a lead,
// not a suspect; one loss, or losses spread over the fabric, are neither.
func TestLeads(t *testing.T) {
	// Four pods and spines: a leaf-spine link carries a few % of the
	// crossings, as on the fabrics evidence on demand is for.
	f := newFixture(t, topology.GenSpec{DCs: 1, Pods: 4, RacksPerPod: 2, HostsPerRack: 4, LeavesPerPod: 2, Spines: 4})
	via := f.via("dc1-pod1-leaf1", "dc1-spine1")
	for _, tc := range []struct {
		name   string
		traces []Trace
		lead   string
	}{
		{"three on one link", []Trace{f.trace(host(1, 1, 1), host(2, 1, 1), true, via), f.trace(host(1, 1, 2), host(2, 2, 3), true, via), f.trace(host(1, 2, 4), host(2, 2, 1), true, via)}, "dc1-pod1-leaf1->dc1-spine1"},
		{"one", []Trace{f.trace(host(1, 1, 1), host(2, 1, 1), true, via)}, ""},
		{"spread", []Trace{f.trace(host(1, 1, 1), host(2, 2, 3), true, f.via("dc1-pod1-leaf1", "dc1-spine1")), f.trace(host(2, 1, 2), host(1, 2, 4), true, f.via("dc1-pod2-leaf2", "dc1-spine2"))}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lz, err := New(NameMeshlens, f.x, Config{})
			if err != nil {
				t.Fatal(err)
			}
			sus, err := lz.Localize(&Window{Sealed: f.sw, Traces: tc.traces})
			if err != nil {
				t.Fatal(err)
			}
			if len(sus) > 0 {
				t.Fatalf("blamed %+v", sus)
			}
			leads := lz.(Leader).Leads()
			if tc.lead == "" {
				if len(leads) > 0 {
					t.Errorf("leads %+v, want none", leads)
				}
				return
			}
			if len(leads) == 0 || leads[0].Element != tc.lead || leads[0].Share <= 0 || leads[0].Share >= 0.1 || leads[0].Anomalous < 2 {
				t.Errorf("leads %+v, want %s first", leads, tc.lead)
			}
		})
	}
}
