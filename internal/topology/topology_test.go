package topology

import (
	"bytes"
	"strings"
	"testing"
)

func small(t *testing.T) *Topology {
	t.Helper()
	topo, err := Generate(GenSpec{DCs: 2, Pods: 2, RacksPerPod: 3, HostsPerRack: 4, LeavesPerPod: 2, Spines: 3})
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

func TestGenerateNamesAndCounts(t *testing.T) {
	topo := small(t)
	if got, want := len(topo.Hosts), 2*2*3*4; got != want {
		t.Fatalf("hosts = %d, want %d", got, want)
	}
	for _, name := range []string{"dc1", "dc2-pod2", "dc1-pod2-rack3", "dc2-spine3", "dc1-pod1-leaf2", "dc1-pod2-rack3-tor", "dc2-pod1-rack1-h04", "wan1", "wan2"} {
		if _, ok := topo.Lookup(name); !ok {
			t.Errorf("generated fabric has no %q", name)
		}
	}
	h := topo.Host("dc1-pod2-rack3-h04")
	if h.Rack != "dc1-pod2-rack3" || h.Pod != "dc1-pod2" || h.DC != "dc1" {
		t.Errorf("host located at %s/%s/%s", h.Rack, h.Pod, h.DC)
	}
	if first := topo.Hosts[0]; first.Addr.String() != DefaultBaseAddr {
		t.Errorf("first address %s, want %s", first.Addr, DefaultBaseAddr)
	}
	for _, k := range []string{"dc1-pod1-rack1-tor--dc1-pod1-leaf2", "dc1-pod1-leaf1--dc1-spine3", "dc2-spine1--wan2", "dc1-pod1-rack1-h01--dc1-pod1-rack1-tor"} {
		if kind, ok := topo.Lookup(k); !ok || kind != KindLink {
			t.Errorf("link %q: kind %q ok %v", k, kind, ok)
		}
	}
	// ToR links to every leaf of its pod, leaf to every spine of its DC,
	// WAN to every spine: hosts + tor*leaves + leaves*spines + wan*spines.
	want := 48 + 2*2*3*2 + 2*2*2*3 + 2*2*3
	if len(topo.Links) != want {
		t.Errorf("links = %d, want %d", len(topo.Links), want)
	}
}

func TestGenerateSkipsNetworkAndBroadcast(t *testing.T) {
	topo, err := Generate(GenSpec{DCs: 1, Pods: 1, RacksPerPod: 4, HostsPerRack: 90, LeavesPerPod: 1, Spines: 1, BaseAddr: "10.0.0.200"})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, h := range topo.Hosts {
		last := h.Addr.As4()[3]
		if last == 0 || last == 255 || seen[h.Addr.String()] {
			t.Fatalf("bad or repeated address %s", h.Addr)
		}
		seen[h.Addr.String()] = true
	}
}

func TestGenerateRejects(t *testing.T) {
	for _, spec := range []GenSpec{
		{DCs: 0, Pods: 1, RacksPerPod: 1, HostsPerRack: 1, LeavesPerPod: 1, Spines: 1},
		{DCs: 1, Pods: 1, RacksPerPod: 1, HostsPerRack: 100, LeavesPerPod: 1, Spines: 1},
		{DCs: 1, Pods: 1, RacksPerPod: 1, HostsPerRack: 1, LeavesPerPod: 1, Spines: 1, BaseAddr: "::1"},
	} {
		if _, err := Generate(spec); err == nil {
			t.Errorf("Generate(%+v) accepted", spec)
		}
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	topo := small(t)
	data, err := topo.MarshalYAML()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse("gen.yaml", data)
	if err != nil {
		t.Fatalf("generated YAML does not load: %v", err)
	}
	again, _ := back.MarshalYAML()
	if !bytes.Equal(data, again) {
		t.Fatalf("round trip changed the file")
	}
	if len(back.Hosts) != len(topo.Hosts) || back.Host("dc2-pod2-rack3-h04").Addr != topo.Host("dc2-pod2-rack3-h04").Addr {
		t.Fatalf("round trip lost hosts")
	}
}

const validFile = `name: lab
dcs:
  - {name: dc1}
pods:
  - {name: dc1-pod1, dc: dc1}
racks:
  - {name: dc1-pod1-rack1, pod: dc1-pod1}
switches:
  - {name: dc1-spine1, role: spine, dc: dc1}
  - {name: dc1-pod1-leaf1, role: leaf, pod: dc1-pod1}
  - {name: dc1-pod1-rack1-tor, role: tor, rack: dc1-pod1-rack1}
hosts:
  - {name: h1, addr: 10.0.0.1, rack: dc1-pod1-rack1}
  - {name: h2, addr: 10.0.0.2, rack: dc1-pod1-rack1}
links:
  - h1--dc1-pod1-rack1-tor
  - h2--dc1-pod1-rack1-tor
  - dc1-pod1-rack1-tor--dc1-pod1-leaf1
  - dc1-pod1-leaf1--dc1-spine1
`

func TestParseValid(t *testing.T) {
	topo, err := Parse("lab.yaml", []byte(validFile))
	if err != nil {
		t.Fatal(err)
	}
	if topo.ResponderPort != DefaultResponderPort || topo.Rack("dc1-pod1-rack1").ToR != "dc1-pod1-rack1-tor" {
		t.Fatalf("parsed %+v", topo)
	}
}

func TestParseErrorsNameFileLineField(t *testing.T) {
	for _, tc := range []struct {
		name, from, to string
		want           string
	}{
		{"unknown key", "  - {name: h1, addr: 10.0.0.1, rack: dc1-pod1-rack1}", "  - {name: h1, addr: 10.0.0.1, rack: dc1-pod1-rack1, color: red}", "lab.yaml:13: field color not found"},
		{"duplicate name", "{name: h2, addr", "{name: h1, addr", "lab.yaml:14: hosts[1].name: duplicate name \"h1\""},
		{"duplicate address", "10.0.0.2", "10.0.0.1", "lab.yaml:14: hosts[1].addr: duplicate address 10.0.0.1"},
		{"bad address", "10.0.0.2", "10.0.0.300", "lab.yaml:14: hosts[1].addr: bad address"},
		{"host without rack", "{name: h2, addr: 10.0.0.2, rack: dc1-pod1-rack1}", "{name: h2, addr: 10.0.0.2}", "lab.yaml:14: hosts[1].rack: host \"h2\" has no rack"},
		{"unknown rack", "{name: h2, addr: 10.0.0.2, rack: dc1-pod1-rack1}", "{name: h2, addr: 10.0.0.2, rack: rack9}", "lab.yaml:14: hosts[1].rack: unknown rack \"rack9\""},
		{"dangling link", "  - dc1-pod1-leaf1--dc1-spine1", "  - dc1-pod1-leaf1--dc1-spine9", "lab.yaml:19: links[3]: link \"dc1-pod1-leaf1--dc1-spine9\": no host or switch named \"dc1-spine9\""},
		{"unknown role", "role: spine", "role: core", "lab.yaml:9: switches[0].role: unknown role \"core\""},
		{"wrong type", "name: lab", "name: [lab]", "lab.yaml:1: cannot unmarshal"},
		{"host on wrong switch", "  - h2--dc1-pod1-rack1-tor", "  - h2--dc1-pod1-leaf1", "must attach to its rack's ToR"},
		{"unlinked host", "  - h2--dc1-pod1-rack1-tor\n", "", "lab.yaml:14: hosts[1].name: host \"h2\" has no link"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(validFile, tc.from, tc.to, 1)
			if src == validFile {
				t.Fatalf("test edit %q did not apply", tc.from)
			}
			_, err := Parse("lab.yaml", []byte(src))
			if err == nil {
				t.Fatalf("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

func TestPaths(t *testing.T) {
	topo := small(t) // 2 leaves per pod, 3 spines per DC, 2 WAN routers
	for _, tc := range []struct {
		src, dst string
		paths    int
		hops     int // links per path
	}{
		{"dc1-pod1-rack1-h01", "dc1-pod1-rack1-h02", 1, 2},         // via the ToR
		{"dc1-pod1-rack1-h01", "dc1-pod1-rack2-h01", 2, 4},         // via either leaf
		{"dc1-pod1-rack1-h01", "dc1-pod2-rack1-h01", 2 * 3 * 2, 6}, // leaf, spine, leaf
		{"dc1-pod1-rack1-h01", "dc2-pod1-rack1-h01", 2 * 3 * 2 * 3 * 2, 8},
	} {
		paths := topo.Paths(tc.src, tc.dst)
		if len(paths) != tc.paths {
			t.Errorf("%s -> %s: %d paths, want %d", tc.src, tc.dst, len(paths), tc.paths)
			continue
		}
		seen := map[string]bool{}
		for _, p := range paths {
			links := p.Links()
			if len(links) != tc.hops || p[0] != tc.src || p[len(p)-1] != tc.dst {
				t.Errorf("%s -> %s: bad path %v", tc.src, tc.dst, p)
			}
			for _, l := range links {
				if !topo.HasLink(l.From, l.To) {
					t.Errorf("path %v uses missing link %s", p, l.Name())
				}
			}
			key := strings.Join(p, " ")
			if seen[key] {
				t.Errorf("path %v listed twice", p)
			}
			seen[key] = true
		}
	}
	if topo.Paths("dc1-pod1-rack1-h01", "nope") != nil {
		t.Error("paths to an unknown host")
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(validFile))
	gen, _ := Generate(GenSpec{DCs: 2, Pods: 1, RacksPerPod: 1, HostsPerRack: 2, LeavesPerPod: 1, Spines: 1})
	data, _ := gen.MarshalYAML()
	f.Add(data)
	f.Add([]byte("hosts: [{name: a}]\nlinks: [a--a, x->y]"))
	// Switch addresses: a hand-written file (IPv6 /127, a rack subnet, a
	// point-to-point /32) and a generated one.
	f.Add([]byte(addrFile))
	addrGen, _ := Generate(GenSpec{DCs: 2, Pods: 1, RacksPerPod: 1, HostsPerRack: 2, LeavesPerPod: 1, Spines: 1,
		BaseAddr: "198.18.0.1", SwitchBaseAddr: "198.19.0.0"})
	data, _ = addrGen.MarshalYAML()
	f.Add(data)
	for _, bad := range []string{"'::ffff:10.0.0.1'", "'fe80::1%eth0'", "224.0.0.1", "10.0.0.0/24", "10.1.1.2/33"} {
		f.Add([]byte(strings.Replace(addrFile, "10.1.1.2", bad, 1)))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		topo, err := Parse("fuzz.yaml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.yaml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		// Whatever loads must survive a round trip and path queries.
		out, err := topo.MarshalYAML()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Parse("again.yaml", out); err != nil {
			t.Fatalf("valid topology does not reload: %v\n%s", err, out)
		}
		// Every address has one owner, and an interface names its peer.
		for _, s := range topo.Switches {
			for _, in := range s.Interfaces {
				if el, peer, ok := topo.ElementByAddr(in.Addr.Addr()); !ok || el != s.Name || peer != in.Peer || !topo.HasLink(el, peer) {
					t.Fatalf("interface %s of %s to %s owned by %q facing %q", in.Addr, s.Name, in.Peer, el, peer)
				}
			}
		}
		for _, h := range topo.Hosts {
			if el, _, ok := topo.ElementByAddr(h.Addr); !ok || el != h.Name {
				t.Fatalf("host %s's address %s owned by %q", h.Name, h.Addr, el)
			}
		}
		if len(topo.Hosts) > 1 {
			topo.Paths(topo.Hosts[0].Name, topo.Hosts[len(topo.Hosts)-1].Name)
		}
	})
}
