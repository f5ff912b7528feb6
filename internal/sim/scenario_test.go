package sim

import (
	"errors"
	"github.com/meshlens/meshlens/internal/probe"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const smallFabric = "topology: {generate: {dcs: 1, pods: 2, racks_per_pod: 2, hosts_per_rack: 4, leaves_per_pod: 2, spines: 2}}\n"

func TestParseGood(t *testing.T) {
	src := "name: gray-link\nseed: 42\n" + smallFabric + `probing: {interval: 5s, protocols: [tcp]}
duration: 3m
routing: {convergence: 10s}
background: {loss: 0.0001, latency: {base: 30us, jitter: 10us}}
faults:
  - {kind: link_loss,    link: "dc1-pod1-leaf2--dc1-spine1", rate: 0.02, at: 20s, until: 2m}
  - {kind: link_latency, link: "dc1-pod1-rack1-tor->dc1-pod1-leaf1", add: 2ms, at: 30s}
  - {kind: device_down,  device: dc1-pod2-rack2-tor, at: 1m}
  - {kind: blackhole,    device: dc1-spine2, fraction: 0.1, at: 10s}
  - {kind: host_nic,     host: dc1-pod1-rack1-h03, rate: 0.05}
  - {kind: host_slow,    host: dc1-pod1-rack1-h04, at: 1m}
  - {kind: flap,         link: "dc1-pod2-leaf1--dc1-spine2", period: 20s, at: 1m}
  - {kind: device_loss,  device: dc1-pod2-leaf2, rate: 0.5, at: 1m}
  - {kind: link_down,    link: "dc1-pod2-rack1-tor--dc1-pod2-leaf2", at: 1m, until: 2m}
  - {kind: host_down,    host: dc1-pod2-rack2-h01, at: 1m, until: 2m}
`
	sc, err := Parse("good.yaml", []byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	if sc.Name != "gray-link" || sc.Seed != 42 || sc.Interval != 5*time.Second || sc.Duration != 3*time.Minute || sc.Convergence != 10*time.Second {
		t.Errorf("scenario = %+v", sc)
	}
	if len(sc.Topology.Hosts) != 16 || len(sc.Faults) != 10 {
		t.Fatalf("%d hosts, %d faults", len(sc.Topology.Hosts), len(sc.Faults))
	}
	tests := []struct {
		i        int
		kind     FaultKind
		a, b     string
		directed bool
	}{
		{0, LinkLoss, "dc1-pod1-leaf2", "dc1-spine1", false},
		{1, LinkLatency, "dc1-pod1-rack1-tor", "dc1-pod1-leaf1", true},
		{2, DeviceDown, "dc1-pod2-rack2-tor", "", false},
		{4, HostNIC, "dc1-pod1-rack1-h03", "", false},
		{9, HostDown, "dc1-pod2-rack2-h01", "", false},
	}
	for _, tc := range tests {
		f := sc.Faults[tc.i]
		if f.Kind != tc.kind || f.A != tc.a || f.B != tc.b || f.Directed != tc.directed {
			t.Errorf("fault %d = %+v", tc.i, f)
		}
	}
	if f := sc.Faults[5]; f.Add != DefaultSlowAdd || f.Lag != DefaultSlowLag {
		t.Errorf("host_slow defaults: %+v", f)
	}
}

func TestParseBad(t *testing.T) {
	head := "name: bad\n" + smallFabric + "faults:\n"
	tests := []struct {
		name, faults string
		want         []string
	}{
		{"unknown kind", "  - {kind: link_melt, link: \"dc1-pod1-leaf1--dc1-spine1\"}\n", []string{"bad.yaml:4: faults[0].kind: unknown fault kind \"link_melt\""}},
		{"link not in topology", "  - {kind: link_loss, link: \"dc1-pod1-leaf1--dc1-spine9\", rate: 0.1}\n", []string{"bad.yaml:4: faults[0].link: link \"dc1-pod1-leaf1--dc1-spine9\" is not in the topology"}},
		{"not a link name", "  - {kind: link_loss, link: \"dc1-spine1\", rate: 0.1}\n", []string{"faults[0].link: \"dc1-spine1\" is not a link name"}},
		{"device not a switch", "  - {kind: device_down, device: dc1-pod1-rack1-h01}\n", []string{"faults[0].device: device \"dc1-pod1-rack1-h01\" is not a switch"}},
		{"host unknown", "  - {kind: host_nic, host: dc1-pod1-rack1-h99, rate: 0.1}\n", []string{"faults[0].host: host \"dc1-pod1-rack1-h99\" is not in the topology"}},
		{"rate above 1", "  - {kind: link_loss, link: \"dc1-pod1-leaf1--dc1-spine1\", rate: 1.5}\n", []string{"bad.yaml:4: faults[0].rate: rate 1.5 outside 0..1"}},
		{"negative fraction", "  - {kind: blackhole, device: dc1-spine1, fraction: -0.1}\n", []string{"faults[0].fraction: rate -0.1 outside 0..1"}},
		{"missing rate", "  - {kind: device_loss, device: dc1-spine1}\n", []string{"faults[0].rate: required"}},
		{"field of another kind", "  - {kind: device_down, device: dc1-spine1, rate: 0.5}\n", []string{"faults[0].rate: a device_down fault has no rate"}},
		{"wrong element field", "  - {kind: device_down, link: \"dc1-pod1-leaf1--dc1-spine1\"}\n", []string{"faults[0].link: a device_down fault names a device, not a link", "faults[0].device: a device_down fault needs a device"}},
		{"until before at", "  - {kind: device_down, device: dc1-spine1, at: 2m, until: 1m}\n", []string{"faults[0].until: until 1m0s is not after at 2m0s"}},
		{"bad duration", "  - {kind: device_down, device: dc1-spine1, at: soon}\n", []string{"faults[0].at: duration \"soon\""}},
		{"host_down on a switch", "  - {kind: host_down, device: dc1-spine1}\n", []string{"faults[0].device: a host_down fault names a host, not a device", "faults[0].host: a host_down fault needs a host"}},
		{"host_down has no rate", "  - {kind: host_down, host: dc1-pod1-rack1-h01, rate: 1}\n", []string{"faults[0].rate: a host_down fault has no rate"}},
		{"latency without add", "  - {kind: link_latency, link: \"dc1-pod1-leaf1--dc1-spine1\"}\n", []string{"faults[0].add: a link_latency fault needs a positive add"}},
		{"contradictory overlap", "  - {kind: link_loss, link: \"dc1-pod1-leaf1--dc1-spine1\", rate: 0.1, at: 1m}\n  - {kind: link_loss, link: \"dc1-spine1->dc1-pod1-leaf1\", rate: 0.2, at: 2m, until: 3m}\n",
			[]string{"bad.yaml:5: faults[1]: contradicts faults[0]: both set link_loss on dc1-spine1->dc1-pod1-leaf1"}},
		{"unknown key", "  - {kind: device_down, device: dc1-spine1, severity: 3}\n", []string{"bad.yaml:4:", "severity"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("bad.yaml", []byte(head+tc.faults), nil)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseTopLevel(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"no name", smallFabric, "bad.yaml:1: name: a scenario needs a name"},
		{"no topology", "name: x\n", "topology: give generate or file"},
		{"both topologies", "name: x\ntopology: {file: t.yaml, generate: {dcs: 1, pods: 1, racks_per_pod: 1, hosts_per_rack: 1, leaves_per_pod: 1, spines: 1}}\n", "give either generate or file"},
		{"bad generator", "name: x\ntopology: {generate: {dcs: 0}}\n", "bad.yaml:2: topology.generate:"},
		{"background too high", "name: x\n" + smallFabric + "background: {loss: 0.5}\n", "background.loss: background loss 0.5 above 0.01"},
		{"bad protocol", "name: x\n" + smallFabric + "probing: {protocols: [sctp]}\n", "probing.protocols[0]: unknown protocol \"sctp\" (want tcp, udp or icmp)"},
		{"protocol without flows", "name: x\n" + smallFabric + "probing: {protocols: [udp, icmp]}\n", "probing.protocols[1]: protocol \"icmp\": the simulator models probes to the responder"},
		{"protocol twice", "name: x\n" + smallFabric + "probing: {protocols: [udp, udp]}\n", "probing.protocols[1]: protocol \"udp\" listed twice"},
		{"interval too short", "name: x\n" + smallFabric + "probing: {interval: 10ms}\n", "probing.interval: duration 10ms outside"},
		{"onset after end", "name: x\n" + smallFabric + "duration: 1m\nfaults:\n  - {kind: device_down, device: dc1-spine1, at: 2m}\n", "faults[0].at: onset 2m0s is not before the end"},
		{"topology file unreadable", "name: x\ntopology: {file: none.yaml}\n", "topology.file: topology files cannot be read here"},
		{"hop_answer zero", "name: x\n" + smallFabric + "tracing: {hop_answer: 0}\n", "bad.yaml:3: tracing.hop_answer: hop_answer 0 outside (0, 1]"},
		{"hop_answer above 1", "name: x\n" + smallFabric + "tracing: {hop_answer: 1.5}\n", "tracing.hop_answer: hop_answer 1.5 outside"},
		{"budget zero", "name: x\n" + smallFabric + "tracing: {budget: 0}\n", "tracing.budget: budget 0 outside 1..1000"},
		{"ideal with knobs", "name: x\n" + smallFabric + "tracing: {ideal: true, budget: 3}\n", "tracing.ideal: ideal tracing has no hop_answer, queries or budget"},
		{"queries zero", "name: x\n" + smallFabric + "tracing: {queries: 0}\n", "tracing.queries: queries 0 outside 1..10"},
		{"unknown tracing key", "name: x\n" + smallFabric + "tracing: {retries: 3}\n", "retries"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("bad.yaml", []byte(tc.src), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestParseTracing(t *testing.T) {
	for _, tc := range []struct {
		src  string
		want Tracing
	}{
		{"", Tracing{HopAnswer: DefaultHopAnswer, Queries: probe.DefaultTraceQueries, Budget: DefaultBudget}},
		{"tracing: {hop_answer: 0.7}\n", Tracing{HopAnswer: 0.7, Queries: probe.DefaultTraceQueries, Budget: DefaultBudget}},
		{"tracing: {budget: 1}\n", Tracing{HopAnswer: DefaultHopAnswer, Queries: probe.DefaultTraceQueries, Budget: 1}},
		{"tracing: {queries: 1}\n", Tracing{HopAnswer: DefaultHopAnswer, Queries: 1, Budget: DefaultBudget}},
		{"tracing: {ideal: true}\n", Tracing{Ideal: true, HopAnswer: DefaultHopAnswer, Queries: probe.DefaultTraceQueries, Budget: DefaultBudget}},
	} {
		sc, err := Parse("t.yaml", []byte("name: x\n"+smallFabric+tc.src), nil)
		if err != nil {
			t.Fatalf("%q: %v", tc.src, err)
		}
		if sc.Tracing != tc.want {
			t.Errorf("%q: tracing %+v, want %+v", tc.src, sc.Tracing, tc.want)
		}
	}
}

func TestLoadTopologyFile(t *testing.T) {
	dir := t.TempDir()
	sc, err := Parse("gen.yaml", []byte("name: x\n"+smallFabric), nil)
	if err != nil {
		t.Fatal(err)
	}
	topo, err := sc.Topology.MarshalYAML()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "topo.yaml"), topo, 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "s.yaml")
	if err := os.WriteFile(file, []byte("name: from-file\ntopology: {file: topo.yaml}\nfaults:\n  - {kind: device_down, device: dc1-spine1}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Topology.Hosts) != 16 {
		t.Errorf("%d hosts", len(got.Topology.Hosts))
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("name: x\n" + smallFabric + "faults:\n  - {kind: link_loss, link: \"dc1-pod1-leaf1--dc1-spine1\", rate: 0.1, at: 1m}\n"))
	f.Add([]byte("name: x\n" + smallFabric + "faults:\n  - {kind: flap, link: \"dc1-pod1-leaf1->dc1-spine1\", period: 3s}\n  - {kind: host_slow, host: dc1-pod1-rack1-h01, add: 1ms, lag: 1s}\n"))
	f.Add([]byte("name: x\ntopology: {generate: {dcs: 1, pods: 1, racks_per_pod: 1, hosts_per_rack: 2, leaves_per_pod: 1, spines: 1}}\nduration: 1s\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		sc, err := Parse("fuzz.yaml", data, nil)
		if err != nil {
			return
		}
		// Whatever is accepted must be runnable: faults resolve in the
		// topology and have sane times.
		for _, ft := range sc.Faults {
			if ft.A == "" || ft.At < 0 || (ft.Until != 0 && ft.Until <= ft.At) {
				t.Fatalf("accepted fault %+v", ft)
			}
			if ft.Kind == Flap && ft.Period <= 0 {
				t.Fatalf("accepted flap without period: %+v", ft)
			}
		}
		if sc.Interval < time.Second || sc.Duration <= 0 {
			t.Fatalf("accepted interval %v duration %v", sc.Interval, sc.Duration)
		}
	})
}
