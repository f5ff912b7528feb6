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
	silentThen := func(prefix []string, silent int) []string {
		out := append([]string{}, prefix...)
		for range silent {
			out = append(out, "*")
		}
		return append(out, dst)
	}
	cases := []struct {
		name    string
		hops    []string
		reached bool
		want    error
		// resolved, when set, are the hops after silent ones that can only
		// have been the destination were dropped (its answer to an earlier
		// TTL was lost; a later TTL answered).
		resolved []string
	}{
		{"complete", full, true, nil, nil},
		{"reached is inferred", full, false, nil, nil},
		{"destination by address", append(append([]string{}, full[:5]...), dstAddr), true, nil, nil},
		{"silent hops", []string{"dc1-pod1-rack1-tor", "*", "dc1-spine2", "*", "*", dst}, true, nil, nil},
		{"stopped short", []string{"dc1-pod1-rack1-tor", "dc1-pod1-leaf1", "*", "*"}, false, nil, nil},
		{"unknown hop", []string{"dc1-pod1-rack1-tor", "198.51.100.7"}, false, ErrUnknownHop, nil},
		{"zoned address", []string{"dc1-pod1-rack1-tor", "fe80::1%eth0"}, false, ErrUnknownHop, nil},
		{"loop", []string{"dc1-pod1-rack1-tor", "dc1-pod1-leaf1", "dc1-pod1-rack1-tor"}, false, ErrLoop, nil},
		{"source in path", []string{"dc1-pod1-rack1-tor", src}, false, ErrLoop, nil},
		{"too long", append(append([]string{}, full...), "*"), false, ErrTooLong, nil},
		{"not linked", []string{"dc1-pod1-rack1-tor", "dc1-spine2"}, false, ErrNotAdjacent, nil},
		{"first hop not the source's ToR", []string{"dc1-pod1-leaf1"}, false, ErrNotAdjacent, nil},
		{"reached elsewhere", []string{"dc1-pod1-rack1-tor", "dc1-pod1-leaf1"}, true, ErrWrongEndpoint, nil},
		{"the destination's first answer lost", silentThen(full[:5], 1), true, nil, full},
		{"two of its answers lost", silentThen(full[:5], 2), true, nil, full},
		{"silent hops past the diameter", silentThen(full[:4], 2), true, nil, silentThen(full[:4], 1)},
		{"silence before the destination's ToR is kept", silentThen(full[:4], 1), true, nil, nil},
		{"nothing answered", nil, false, nil, nil},
		{"nothing answered yet reached", nil, true, ErrWrongEndpoint, nil},
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
			want := tc.hops
			if tc.resolved != nil {
				want = tc.resolved
			}
			if len(tr.Hops) != len(want) {
				t.Fatalf("hops %v, want %d of them", tr.Hops, len(want))
			}
			for i, h := range want {
				if (h == wire.UnknownHop) != (tr.Hops[i] == UnknownHop) {
					t.Errorf("hop %d: %q resolved to %d", i, h, tr.Hops[i])
				}
			}
		})
	}
	if _, err := x.ResolveTrace("dc1-spine1", &wire.TracedProbe{Dst: dst, Hops: full}); !errors.Is(err, ErrUnknownHost) {
		t.Errorf("a switch as source: %v", err)
	}
	// A reverse trace names the prober by its address, and its probe by
	// the prober's port (the trace's destination port).
	srcAddr := topo.Host(src).Addr.String()
	back := []string{"dc1-pod2-rack1-tor", "dc1-pod2-leaf2", "dc1-spine1", "dc1-pod1-leaf1", "dc1-pod1-rack1-tor"}
	tr, err := x.ResolveTrace(dst, &wire.TracedProbe{Dst: srcAddr, Reverse: true, Lost: true, Protocol: wire.Protocol_PROTOCOL_UDP,
		StartUnixNano: 42, SrcPort: 7777, DstPort: 40000, Hops: back})
	if s, _ := x.Node(src); err != nil || !tr.Reverse || tr.Dst != s || tr.Port != 40000 || tr.Start != 42 || len(tr.Hops) != len(back) {
		t.Errorf("reverse trace: %+v, %v", tr, err)
	}
	if _, err := x.ResolveTrace(dst, &wire.TracedProbe{Dst: "198.51.100.7", Reverse: true, Lost: true, DstPort: 40000, Hops: back}); !errors.Is(err, ErrUnknownHost) {
		t.Errorf("a reverse trace to an address of no host: %v", err)
	}
}

// A real agent's trace names hops by the interface address each
// time-exceeded came from; each also names the link the probe arrived
// over, which fills in a silent hop before it.
func TestResolveTraceSwitchAddresses(t *testing.T) {
	topo, err := topology.Generate(topology.GenSpec{DCs: 1, Pods: 2, RacksPerPod: 2, HostsPerRack: 2, LeavesPerPod: 2, Spines: 2,
		BaseAddr: "198.18.0.1", SwitchBaseAddr: "198.19.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	x, err := NewIndex(topo)
	if err != nil {
		t.Fatal(err)
	}
	const src, dst = "dc1-pod1-rack1-h01", "dc1-pod2-rack1-h02"
	path := []string{src, "dc1-pod1-rack1-tor", "dc1-pod1-leaf2", "dc1-spine1", "dc1-pod2-leaf1", "dc1-pod2-rack1-tor", dst}
	// ingress is the address of path[i]'s interface facing path[i-1].
	ingress := func(i int) string {
		in, ok := topo.Switch(path[i]).Interface(path[i-1])
		if !ok {
			t.Fatalf("%s has no interface to %s", path[i], path[i-1])
		}
		return in.Addr.Addr().String()
	}
	ids := func(names ...string) []int32 {
		var out []int32
		for _, n := range names {
			if n == "*" {
				out = append(out, UnknownHop)
				continue
			}
			id, ok := x.Node(n)
			if !ok {
				t.Fatalf("no node %s", n)
			}
			out = append(out, id)
		}
		return out
	}
	dstAddr := topo.Host(dst).Addr.String()
	for _, tc := range []struct {
		name string
		hops []string
		want []int32
		err  error
	}{
		{"every hop by interface", []string{ingress(1), ingress(2), ingress(3), ingress(4), ingress(5), dstAddr},
			ids(path[1:]...), nil},
		// A loopback names the switch only: the hop before it stays unknown.
		{"IPv4-mapped and loopbacks", []string{"::ffff:" + ingress(1), topo.Switch("dc1-pod1-leaf2").Loopback.String(), ingress(3), "*", topo.Switch(path[5]).Loopback.String(), dstAddr},
			ids("dc1-pod1-rack1-tor", "dc1-pod1-leaf2", "dc1-spine1", "*", "dc1-pod2-rack1-tor", dst), nil},
		// The spine and the far leaf did not answer; the far leaf is known
		// from the interface the far ToR answered from (it faces it).
		{"silent hop filled from the ingress interface", []string{ingress(1), ingress(2), "*", "*", ingress(5), dstAddr},
			ids("dc1-pod1-rack1-tor", "dc1-pod1-leaf2", "*", "dc1-pod2-leaf1", "dc1-pod2-rack1-tor", dst), nil},
		// The first leaf's answer says the probe came from the ToR, which
		// did not answer.
		{"silent first hop", []string{"*", ingress(2)}, ids("dc1-pod1-rack1-tor", "dc1-pod1-leaf2"), nil},
		// An interface facing leaf1 answered right after leaf2: the probe
		// cannot have come that way.
		{"ingress contradicts the previous hop", []string{ingress(1), ingress(2), func() string {
			in, _ := topo.Switch("dc1-spine1").Interface("dc1-pod1-leaf1")
			return in.Addr.Addr().String()
		}()}, nil, ErrNotAdjacent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := x.ResolveTrace(src, &wire.TracedProbe{Dst: dst, Lost: true, Hops: tc.hops})
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			if len(tr.Hops) != len(tc.want) {
				t.Fatalf("hops %v, want %v", tr.Hops, tc.want)
			}
			for i := range tc.want {
				if tr.Hops[i] != tc.want[i] {
					t.Errorf("hop %d = %d, want %d (%v)", i+1, tr.Hops[i], tc.want[i], tc.hops)
				}
			}
		})
	}
}
