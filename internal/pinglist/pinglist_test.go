package pinglist

import (
	"reflect"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/bus"
	"github.com/meshlens/meshlens/internal/topology"
	"github.com/meshlens/meshlens/internal/wire"
)

func fixedPartition(string, string, int) int { return 0 }

func TestLevelSizes(t *testing.T) {
	for _, tc := range []struct {
		spec         topology.GenSpec
		reps         int
		l1, l2, l3   int // per ordinary host
		repL3        int // per representative
		representers int // representatives per DC
	}{
		{topology.GenSpec{DCs: 1, Pods: 2, RacksPerPod: 2, HostsPerRack: 4, LeavesPerPod: 2, Spines: 2}, 2, 3, 3, 0, 0, 0},
		{topology.GenSpec{DCs: 3, Pods: 2, RacksPerPod: 3, HostsPerRack: 5, LeavesPerPod: 1, Spines: 1}, 2, 4, 5, 0, 2 * 2, 2},
	} {
		topo, err := topology.Generate(tc.spec)
		if err != nil {
			t.Fatal(err)
		}
		peers := Peers(topo, tc.reps)
		reps := map[string]bool{}
		for _, dc := range topo.DCs {
			rs := Representatives(topo, dc.Name, tc.reps)
			if len(rs) != tc.representers && len(topo.DCs) > 1 {
				t.Fatalf("%s: %d representatives, want %d", dc.Name, len(rs), tc.representers)
			}
			for _, r := range rs {
				reps[r] = true
			}
		}
		for _, h := range topo.Hosts {
			count := map[int]int{}
			seen := map[string]bool{}
			for _, p := range peers[h.Name] {
				if p.Host == h.Name {
					t.Fatalf("%s probes itself", h.Name)
				}
				if seen[p.Host] {
					t.Fatalf("%s lists %s twice", h.Name, p.Host)
				}
				seen[p.Host] = true
				if p.Addr != topo.Host(p.Host).Addr.String() {
					t.Fatalf("%s: peer %s has address %s", h.Name, p.Host, p.Addr)
				}
				count[p.Level]++
			}
			wantL3 := tc.l3
			if reps[h.Name] {
				wantL3 = tc.repL3
			}
			if count[1] != tc.l1 || count[2] != tc.l2 || count[3] != wantL3 {
				t.Errorf("%s: levels %v, want 1:%d 2:%d 3:%d", h.Name, count, tc.l1, tc.l2, wantL3)
			}
		}
	}
}

func TestLevel2HostKToHostK(t *testing.T) {
	topo, _ := topology.Generate(topology.GenSpec{DCs: 1, Pods: 2, RacksPerPod: 2, HostsPerRack: 4, LeavesPerPod: 1, Spines: 1})
	got := []string{}
	for _, p := range Peers(topo, 2)["dc1-pod1-rack2-h03"] {
		if p.Level == LevelIntraDC {
			got = append(got, p.Host)
		}
	}
	want := []string{"dc1-pod1-rack1-h03", "dc1-pod2-rack1-h03", "dc1-pod2-rack2-h03"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("level 2 of h03 = %v, want %v", got, want)
	}
}

func TestLevel2WrapsUnevenRacks(t *testing.T) {
	const file = `dcs: [{name: dc1}]
pods: [{name: p1, dc: dc1}]
racks: [{name: r1, pod: p1}, {name: r2, pod: p1}]
switches: [{name: t1, role: tor, rack: r1}, {name: t2, role: tor, rack: r2}, {name: l1, role: leaf, pod: p1}]
hosts:
  - {name: a1, addr: 10.0.0.1, rack: r1}
  - {name: a2, addr: 10.0.0.2, rack: r1}
  - {name: a3, addr: 10.0.0.3, rack: r1}
  - {name: b1, addr: 10.0.1.1, rack: r2}
links: [a1--t1, a2--t1, a3--t1, b1--t2, t1--l1, t2--l1]
`
	topo, err := topology.Parse("uneven.yaml", []byte(file))
	if err != nil {
		t.Fatal(err)
	}
	peers := Peers(topo, 1)
	for _, h := range []string{"a1", "a2", "a3"} {
		if l := peers[h]; l[len(l)-1].Host != "b1" {
			t.Errorf("%s does not probe b1 across racks: %v", h, l)
		}
	}
	if got := len(peers["b1"]); got != 1 || peers["b1"][0].Host != "a1" {
		t.Errorf("b1 probes %v, want only a1", peers["b1"])
	}
}

func TestGenerateDeterministicAndRoundTrips(t *testing.T) {
	topo, _ := topology.Generate(topology.GenSpec{DCs: 2, Pods: 2, RacksPerPod: 2, HostsPerRack: 3, LeavesPerPod: 1, Spines: 1})
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a, err := Generate(topo, Settings{}, 7, now, fixedPartition)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Generate(topo, Settings{}, 7, now, fixedPartition)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("two generations differ")
	}
	pl := a["dc2-pod1-rack2-h03"]
	if pl.Version != 7 || time.Duration(pl.Interval) != 10*time.Second || pl.ResponderPort != topology.DefaultResponderPort || pl.Addr == "" {
		t.Fatalf("defaults not applied: %+v", pl)
	}
	data, _ := Encode(pl)
	back, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, pl) {
		t.Fatalf("round trip:\n%+v\n%+v", back, pl)
	}
}

// TestGeneratePartitionsByRack: with the production rule, every host of a
// rack gets its rack's partition.
func TestGeneratePartitionsByRack(t *testing.T) {
	topo, _ := topology.Generate(topology.GenSpec{DCs: 2, Pods: 2, RacksPerPod: 3, HostsPerRack: 4, LeavesPerPod: 1, Spines: 1})
	lists, err := Generate(topo, Settings{Partitions: 3}, 1, time.Time{}, bus.AgentPartition)
	if err != nil {
		t.Fatal(err)
	}
	used := map[int]bool{}
	for _, r := range topo.Racks {
		want := bus.Partition(r.Name, 3)
		used[want] = true
		for _, h := range r.Hosts {
			if got := lists[h].Partition; got != want {
				t.Errorf("host %s of rack %s in partition %d, its rack's is %d", h, r.Name, got, want)
			}
		}
	}
	if len(used) != 3 {
		t.Errorf("%d racks use only partitions %v of 3", len(topo.Racks), used)
	}
}

func TestGenerateRejectsBadSettings(t *testing.T) {
	topo, _ := topology.Generate(topology.GenSpec{DCs: 1, Pods: 1, RacksPerPod: 1, HostsPerRack: 2, LeavesPerPod: 1, Spines: 1})
	for _, s := range []Settings{
		{Interval: time.Second, Timeout: 2 * time.Second},
		{Interval: 3 * time.Hour, Timeout: 2 * time.Hour}, // over wire.MaxRTTNs
		{Protocols: []string{"sctp"}},
	} {
		if _, err := Generate(topo, s, 1, time.Now(), fixedPartition); err == nil {
			t.Errorf("settings %+v accepted", s)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"host":"h","interval":"10s","timeout":"1s","responder_port":7100,"protocols":["tcp"]}`))
	f.Add([]byte(`{"host":"h","interval":"-1s"}`))
	f.Add([]byte(`{"host":"h","interval":"3h","timeout":"2h","responder_port":7100,"protocols":["tcp"]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Decode(data)
		if err != nil {
			return
		}
		if p.Host == "" || p.Interval <= 0 || p.Timeout <= 0 || p.Timeout > Duration(wire.MaxRTTNs) {
			t.Fatalf("accepted invalid pinglist %+v", p)
		}
	})
}
