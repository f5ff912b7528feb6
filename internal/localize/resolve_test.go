package localize

import (
	"errors"
	"testing"

	"github.com/meshlens/meshlens/internal/topology"
	"github.com/meshlens/meshlens/internal/wire"
)

func TestResolveTrace(t *testing.T) {
	topo, err := topology.Generate(topology.GenSpec{DCs: 1, Pods: 2, RacksPerPod: 2, HostsPerRack: 2, LeavesPerPod: 2, Spines: 2, BaseAddr: "127.9.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	x, err := NewIndex(topo)
	if err != nil {
		t.Fatal(err)
	}
	const src, dst = "dc1-pod1-rack1-h01", "dc1-pod2-rack1-h02"
	full := []string{"dc1-pod1-rack1-tor", "dc1-pod1-leaf1", "dc1-spine2", "dc1-pod2-leaf1", "dc1-pod2-rack1-tor", dst}
	if got := x.MaxHops(); got != len(full) {
		t.Fatalf("MaxHops = %d, want %d", got, len(full))
	}
	dstAddr := topo.Host(dst).Addr.String()
	cases := []struct {
		name    string
		hops    []string
		reached bool
		want    error
	}{
		{"complete", full, true, nil},
		{"reached is inferred", full, false, nil},
		{"destination by address", append(append([]string{}, full[:5]...), dstAddr), true, nil},
		{"silent hops", []string{"dc1-pod1-rack1-tor", "*", "dc1-spine2", "*", "*", dst}, true, nil},
		{"stopped short", []string{"dc1-pod1-rack1-tor", "dc1-pod1-leaf1", "*", "*"}, false, nil},
		{"unknown hop", []string{"dc1-pod1-rack1-tor", "198.51.100.7"}, false, ErrUnknownHop},
		{"zoned address", []string{"dc1-pod1-rack1-tor", "fe80::1%eth0"}, false, ErrUnknownHop},
		{"loop", []string{"dc1-pod1-rack1-tor", "dc1-pod1-leaf1", "dc1-pod1-rack1-tor"}, false, ErrLoop},
		{"source in path", []string{"dc1-pod1-rack1-tor", src}, false, ErrLoop},
		{"too long", append(append([]string{}, full...), "*"), false, ErrTooLong},
		{"not linked", []string{"dc1-pod1-rack1-tor", "dc1-spine2"}, false, ErrNotAdjacent},
		{"first hop not the source's ToR", []string{"dc1-pod1-leaf1"}, false, ErrNotAdjacent},
		{"reached elsewhere", []string{"dc1-pod1-rack1-tor", "dc1-pod1-leaf1"}, true, ErrWrongEndpoint},
		{"nothing answered", nil, false, nil},
		{"nothing answered yet reached", nil, true, ErrWrongEndpoint},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := x.ResolveTrace(src, &wire.TracedProbe{Dst: dst, Lost: true, Hops: tc.hops, Reached: tc.reached})
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if err != nil {
				if Reason(err) == "invalid" {
					t.Errorf("no reason for %v", err)
				}
				return
			}
			if len(tr.Hops) != len(tc.hops) {
				t.Fatalf("hops %v", tr.Hops)
			}
			for i, h := range tc.hops {
				if (h == wire.UnknownHop) != (tr.Hops[i] == UnknownHop) {
					t.Errorf("hop %d: %q resolved to %d", i, h, tr.Hops[i])
				}
			}
		})
	}
	if _, err := x.ResolveTrace("dc1-spine1", &wire.TracedProbe{Dst: dst, Hops: full}); !errors.Is(err, ErrUnknownHost) {
		t.Errorf("a switch as source: %v", err)
	}
}
