package sim

import (
	"testing"

	"github.com/meshlens/meshlens/internal/wire"
)

// TestSmallFabricEvidence: on the real-packet lab's 12-host fabric, a
// gross fault leaves the localizer evidence to work with: every lost
// probe within the agents' budget is traced, and the routers' ICMP rate
// limits (per router and source host) still let most hops answer. A
// localizer that blames nothing there has the evidence and misreads it.
func TestSmallFabricEvidence(t *testing.T) {
	const lab = "topology: {generate: {dcs: 1, pods: 2, racks_per_pod: 2, hosts_per_rack: 3, leaves_per_pod: 2, spines: 2}}\n"
	tests := []struct{ name, fault string }{
		{"link loss", `{kind: link_loss, link: "dc1-pod1-leaf1--dc1-spine1", rate: 0.3}`},
		{"device loss", `{kind: device_loss, device: dc1-pod2-leaf2, rate: 0.2}`},
		{"spine down", `{kind: device_down, device: dc1-spine2}`},
		{"spine blackhole", `{kind: blackhole, device: dc1-spine1, fraction: 0.5}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sc := mustParse(t, "name: lab\nseed: 7\n"+lab+"probing: {interval: 1s, protocols: [tcp, udp]}\nduration: 30s\nfaults:\n  - "+tc.fault+"\n")
			f := newTestFabric(t, sc)
			var lost, traces, hops, answered int
			for r := 0; r < 30; r++ {
				perAgent := map[string]int{}
				err := f.Step(r, func(b *wire.Batch) error {
					for _, res := range b.Results {
						if wire.Lost(res) {
							perAgent[b.Agent]++
						}
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				for _, n := range perAgent {
					lost += min(n, sc.Tracing.Budget)
				}
				for _, rep := range f.PathReports() {
					for _, p := range rep.Probes {
						if !p.Lost {
							continue
						}
						traces++
						for _, h := range p.Hops {
							hops++
							if h != wire.UnknownHop {
								answered++
							}
						}
					}
				}
			}
			t.Logf("30 rounds: %d lost probes within budget, %d traced, %d hops listed, %d answered", lost, traces, hops, answered)
			if lost == 0 || traces < lost*9/10 {
				t.Errorf("%d of %d lost probes within budget traced", traces, lost)
			}
			if answered < hops/2 {
				t.Errorf("%d of %d listed hops answered", answered, hops)
			}
		})
	}
}
