package server

import (
	"slices"
	"testing"

	"github.com/meshlens/meshlens/internal/topology"
)

func TestHello(t *testing.T) {
	topo, err := topology.Generate(topology.GenSpec{DCs: 1, Pods: 2, RacksPerPod: 2, HostsPerRack: 3, LeavesPerPod: 1, Spines: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		host    string
		known   bool
		closest []string
	}{
		{"dc1-pod1-rack1-h01", true, nil},
		{"dc1-pod1-rack1-h1", false, []string{"dc1-pod1-rack1-h01", "dc1-pod1-rack1-h02", "dc1-pod1-rack1-h03"}},
		{"DC1-POD2-RACK2-H03", false, []string{"dc1-pod2-rack2-h03", "dc1-pod1-rack2-h03", "dc1-pod2-rack1-h03"}},
		{"web-42.example.com", false, nil},
		{"", false, nil},
	} {
		got := hello(topo, tc.host)
		if got.Known != tc.known || !slices.Equal(got.Closest, tc.closest) {
			t.Errorf("hello(%q) = %+v, want known=%v closest=%q", tc.host, got, tc.known, tc.closest)
		}
	}
}
