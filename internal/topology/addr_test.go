package topology

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/meshlens/meshlens/internal/yamlfile"
)

func addressed(t *testing.T) *Topology {
	t.Helper()
	topo, err := Generate(GenSpec{DCs: 2, Pods: 2, RacksPerPod: 2, HostsPerRack: 3, LeavesPerPod: 2, Spines: 2,
		BaseAddr: "198.18.0.1", SwitchBaseAddr: "198.19.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

func TestGenerateSwitchAddrs(t *testing.T) {
	topo := addressed(t)
	owner := map[netip.Addr]string{}
	own := func(a netip.Addr, who string) {
		if first, dup := owner[a]; dup {
			t.Errorf("address %s given to %s and %s", a, first, who)
		}
		owner[a] = who
	}
	for _, h := range topo.Hosts {
		own(h.Addr, h.Name)
	}
	for _, s := range topo.Switches {
		if !s.Loopback.IsValid() {
			t.Errorf("%s has no loopback", s.Name)
		}
		own(s.Loopback, s.Name)
		// Every link end of a switch has exactly one address.
		if len(s.Interfaces) != len(topo.Neighbors(s.Name)) {
			t.Errorf("%s: %d interfaces for %d links", s.Name, len(s.Interfaces), len(topo.Neighbors(s.Name)))
		}
		for _, in := range s.Interfaces {
			own(in.Addr.Addr(), s.Name+"->"+in.Peer)
			if !topo.HasLink(s.Name, in.Peer) {
				t.Errorf("%s has an interface to %s, not a neighbour", s.Name, in.Peer)
			}
			if h := topo.Host(in.Peer); h != nil {
				if in.Addr.Bits() != 32 {
					t.Errorf("%s's port to host %s is %s, want a /32 gateway", s.Name, h.Name, in.Addr)
				}
				continue
			}
			other, ok := topo.EndAddr(in.Peer, s.Name)
			if in.Addr.Bits() != 31 || !ok || other.Bits() != 31 || in.Addr.Masked() != other.Masked() || other.Addr() == in.Addr.Addr() {
				t.Errorf("link %s--%s: ends %s and %s are not one /31", s.Name, in.Peer, in.Addr, other)
			}
		}
	}
	for a, who := range owner {
		el, peer, ok := topo.ElementByAddr(a)
		got := el
		if peer != "" {
			got = el + "->" + peer
		}
		if !ok || got != who {
			t.Errorf("ElementByAddr(%s) = %q, %v; want %q", a, got, ok, who)
		}
	}
	again := addressed(t)
	a, _ := topo.MarshalYAML()
	b, _ := again.MarshalYAML()
	if !bytes.Equal(a, b) {
		t.Error("generation is not deterministic")
	}
	back, err := Parse("gen.yaml", a)
	if err != nil {
		t.Fatalf("generated file with switch addresses does not load: %v", err)
	}
	if c, _ := back.MarshalYAML(); !bytes.Equal(a, c) {
		t.Error("round trip changed the file")
	}
	if got, _, _ := back.ElementByAddr(netip.MustParseAddr("198.19.0.0")); got != topo.Switches[0].Name {
		t.Errorf("parsed first loopback belongs to %q, want %s", got, topo.Switches[0].Name)
	}
}

func TestGenerateWithoutSwitchBaseAddsNothing(t *testing.T) {
	topo := small(t)
	for _, s := range topo.Switches {
		if s.Loopback.IsValid() || len(s.Interfaces) > 0 {
			t.Fatalf("%s got addresses without --switch-base-addr", s.Name)
		}
	}
	data, _ := topo.MarshalYAML()
	if bytes.Contains(data, []byte("loopback")) || bytes.Contains(data, []byte("interfaces")) {
		t.Fatal("file mentions switch addresses without --switch-base-addr")
	}
}

func TestGenerateSwitchAddrsRejects(t *testing.T) {
	spec := GenSpec{DCs: 1, Pods: 1, RacksPerPod: 2, HostsPerRack: 4, LeavesPerPod: 2, Spines: 2, BaseAddr: "10.0.0.1"}
	for _, tc := range []struct{ base, want string }{
		{"10.0.0.3", "is host dc1-pod1-rack1-h03's"},                    // overlaps the hosts
		{"9.255.255.250", "is host dc1-pod1-rack1-h01's"},               // runs into them
		{"2001:db8::", "must be IPv4"},                                  // hosts are IPv4
		{"255.255.255.240", "255.255.255.255 is the broadcast address"}, // runs to the end
		{"223.255.255.250", "is a multicast address"},                   // into 224/4
		{"224.0.0.1", "is a multicast address"},                         // bad from the start
		{"bogus", "not an IP address"},
	} {
		s := spec
		s.SwitchBaseAddr = tc.base
		_, err := Generate(s)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("switch base %s: error %v, want %q", tc.base, err, tc.want)
		}
	}
}

func TestElementByAddr(t *testing.T) {
	topo := addressed(t)
	tor := topo.Switch("dc1-pod1-rack1-tor")
	up, _ := tor.Interface("dc1-pod1-leaf2")
	down, _ := tor.Interface("dc1-pod1-rack1-h02")
	h := topo.Host("dc1-pod1-rack1-h02")
	for _, tc := range []struct {
		addr, element, peer string
		ok                  bool
	}{
		{h.Addr.String(), h.Name, "", true},
		{"::ffff:" + h.Addr.String(), h.Name, "", true},
		{tor.Loopback.String(), tor.Name, "", true},
		{up.Addr.Addr().String(), tor.Name, "dc1-pod1-leaf2", true},
		{"::ffff:" + down.Addr.Addr().String(), tor.Name, h.Name, true},
		{"203.0.113.9", "", "", false},
		{"fe80::1%eth0", "", "", false},
	} {
		el, peer, ok := topo.ElementByAddr(netip.MustParseAddr(tc.addr))
		if el != tc.element || peer != tc.peer || ok != tc.ok {
			t.Errorf("ElementByAddr(%s) = %q, %q, %v; want %q, %q, %v", tc.addr, el, peer, ok, tc.element, tc.peer, tc.ok)
		}
	}
	if got := topo.HostByAddr(netip.MustParseAddr("::ffff:" + h.Addr.String())); got != h {
		t.Errorf("HostByAddr of the mapped address = %v", got)
	}
	if topo.HostByAddr(tor.Loopback) != nil {
		t.Error("HostByAddr found a switch")
	}
	if p, ok := topo.EndAddr(h.Name, tor.Name); !ok || p.Addr() != h.Addr || p.Bits() != 32 {
		t.Errorf("EndAddr(host, tor) = %s, %v", p, ok)
	}
	if _, ok := topo.EndAddr(h.Name, "dc1-pod1-leaf1"); ok {
		t.Error("EndAddr of a missing link")
	}
}

// addrFile is validFile with addresses on every switch end, IPv6 on the
// spine link.
const addrFile = `name: lab
dcs:
  - {name: dc1}
pods:
  - {name: dc1-pod1, dc: dc1}
racks:
  - {name: dc1-pod1-rack1, pod: dc1-pod1}
switches:
  - {name: dc1-spine1, role: spine, dc: dc1, loopback: 10.1.255.1, interfaces: [{peer: dc1-pod1-leaf1, addr: "2001:db8::1/127"}]}
  - name: dc1-pod1-leaf1
    role: leaf
    pod: dc1-pod1
    loopback: 10.1.255.2
    interfaces:
      - {peer: dc1-spine1, addr: "2001:db8::/127"}
      - {peer: dc1-pod1-rack1-tor, addr: 10.1.0.1/31}
  - name: dc1-pod1-rack1-tor
    role: tor
    rack: dc1-pod1-rack1
    interfaces:
      - {peer: dc1-pod1-leaf1, addr: 10.1.0.0/31}
      - {peer: h1, addr: 10.0.0.254/24}
      - {peer: h2, addr: 10.1.1.2}
hosts:
  - {name: h1, addr: 10.0.0.1, rack: dc1-pod1-rack1}
  - {name: h2, addr: 10.0.0.2, rack: dc1-pod1-rack1}
links:
  - h1--dc1-pod1-rack1-tor
  - h2--dc1-pod1-rack1-tor
  - dc1-pod1-rack1-tor--dc1-pod1-leaf1
  - dc1-pod1-leaf1--dc1-spine1
`

func TestParseSwitchAddrs(t *testing.T) {
	topo, err := Parse("lab.yaml", []byte(addrFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ addr, element, peer string }{
		{"2001:db8::1", "dc1-spine1", "dc1-pod1-leaf1"},
		{"2001:db8::", "dc1-pod1-leaf1", "dc1-spine1"},
		{"10.1.0.0", "dc1-pod1-rack1-tor", "dc1-pod1-leaf1"},
		{"10.0.0.254", "dc1-pod1-rack1-tor", "h1"},
		{"10.1.1.2", "dc1-pod1-rack1-tor", "h2"},
		{"10.1.255.2", "dc1-pod1-leaf1", ""},
		{"10.0.0.2", "h2", ""},
	} {
		el, peer, ok := topo.ElementByAddr(netip.MustParseAddr(tc.addr))
		if !ok || el != tc.element || peer != tc.peer {
			t.Errorf("ElementByAddr(%s) = %q, %q, %v; want %q, %q", tc.addr, el, peer, ok, tc.element, tc.peer)
		}
	}
	if p, _ := topo.EndAddr("dc1-pod1-rack1-tor", "h1"); p.String() != "10.0.0.254/24" {
		t.Errorf("ToR's port to h1 is %s, want 10.0.0.254/24", p)
	}
	out, _ := topo.MarshalYAML()
	back, err := Parse("again.yaml", out)
	if err != nil {
		t.Fatalf("marshalled file does not reload: %v\n%s", err, out)
	}
	if again, _ := back.MarshalYAML(); !bytes.Equal(out, again) {
		t.Errorf("round trip changed the file")
	}
}

func TestBadAddresses(t *testing.T) {
	for _, tc := range []struct {
		name, from, to, want string
	}{
		{"host unspecified", "addr: 10.0.0.2, rack", "addr: 0.0.0.0, rack", "lab.yaml:26: hosts[1].addr: bad address \"0.0.0.0\": is the unspecified address"},
		{"host unspecified v6", "addr: 10.0.0.2, rack", "addr: '::', rack", "lab.yaml:26: hosts[1].addr: bad address \"::\": is the unspecified address"},
		{"host this network", "addr: 10.0.0.2, rack", "addr: 0.1.2.3, rack", "lab.yaml:26: hosts[1].addr: bad address \"0.1.2.3\": is in 0.0.0.0/8"},
		{"host multicast", "addr: 10.0.0.2, rack", "addr: 224.0.0.1, rack", "lab.yaml:26: hosts[1].addr: bad address \"224.0.0.1\": is a multicast address"},
		{"host multicast v6", "addr: 10.0.0.2, rack", "addr: 'ff02::1', rack", "lab.yaml:26: hosts[1].addr: bad address \"ff02::1\": is a multicast address"},
		{"host broadcast", "addr: 10.0.0.2, rack", "addr: 255.255.255.255, rack", "lab.yaml:26: hosts[1].addr: bad address \"255.255.255.255\": is the broadcast address"},
		{"host link-local", "addr: 10.0.0.2, rack", "addr: 169.254.169.254, rack", "lab.yaml:26: hosts[1].addr: bad address \"169.254.169.254\": is link-local"},
		{"host link-local v6", "addr: 10.0.0.2, rack", "addr: 'fe80::1', rack", "lab.yaml:26: hosts[1].addr: bad address \"fe80::1\": is link-local"},
		{"host zone", "addr: 10.0.0.2, rack", "addr: 'fe80::1%eth0', rack", "lab.yaml:26: hosts[1].addr: bad address \"fe80::1%eth0\": has a zone"},
		{"host mapped duplicate", "addr: 10.0.0.2, rack", "addr: '::ffff:10.0.0.1', rack", "lab.yaml:26: hosts[1].addr: duplicate address 10.0.0.1 (also h1)"},
		{"host not an address", "addr: 10.0.0.2, rack", "addr: 10.0.0.300, rack", "lab.yaml:26: hosts[1].addr: bad address \"10.0.0.300\": not an IP address"},
		{"loopback multicast", "loopback: 10.1.255.1", "loopback: 224.0.0.1", "lab.yaml:9: switches[0].loopback: bad address \"224.0.0.1\": is a multicast address"},
		{"loopback link-local", "loopback: 10.1.255.2", "loopback: 169.254.169.254", "lab.yaml:13: switches[1].loopback: bad address \"169.254.169.254\": is link-local"},
		{"loopback is a host's", "loopback: 10.1.255.2", "loopback: '::ffff:10.0.0.2'", "lab.yaml:13: switches[1].loopback: duplicate address 10.0.0.2 (also h2)"},
		{"interface broadcast", "addr: 10.1.1.2}", "addr: 255.255.255.255}", "lab.yaml:23: switches[2].interfaces[2].addr: bad address \"255.255.255.255\": is the broadcast address"},
		{"interface zone", "addr: 10.1.1.2}", "addr: 'fe80::1%eth0'}", "lab.yaml:23: switches[2].interfaces[2].addr: bad address \"fe80::1%eth0\": has a zone"},
		{"interface unspecified", "addr: 10.1.1.2}", "addr: 0.0.0.0/32}", "lab.yaml:23: switches[2].interfaces[2].addr: bad address \"0.0.0.0/32\": is the unspecified address"},
		{"interface bad length", "addr: 10.1.1.2}", "addr: 10.1.1.2/33}", "lab.yaml:23: switches[2].interfaces[2].addr: bad address \"10.1.1.2/33\": bad prefix length /33"},
		{"interface network address", "addr: 10.1.1.2}", "addr: 10.0.0.0/24}", "lab.yaml:23: switches[2].interfaces[2].addr: bad address \"10.0.0.0/24\": is the network address of 10.0.0.0/24"},
		{"interface subnet broadcast", "addr: 10.1.1.2}", "addr: 10.0.0.255/24}", "is the broadcast address of 10.0.0.0/24"},
		{"interface is a host's", "addr: 10.1.1.2}", "addr: 10.0.0.1}", "lab.yaml:23: switches[2].interfaces[2].addr: duplicate address 10.0.0.1 (also h1)"},
		{"interface is a loopback", "addr: 10.1.1.2}", "addr: 10.1.255.1}", "lab.yaml:23: switches[2].interfaces[2].addr: duplicate address 10.1.255.1 (also dc1-spine1 (loopback))"},
		{"interface peer not linked", "{peer: h2, addr: 10.1.1.2}", "{peer: dc1-spine1, addr: 10.1.1.2}", "lab.yaml:23: switches[2].interfaces[2].peer: \"dc1-spine1\" is not linked to dc1-pod1-rack1-tor"},
		{"interface twice", "{peer: h2, addr: 10.1.1.2}", "{peer: h1, addr: 10.1.1.2}", "lab.yaml:23: switches[2].interfaces[2].peer: a second address for the link to h1 (first at switches[2].interfaces[1])"},
		{"interface without peer", "{peer: h2, addr: 10.1.1.2}", "{addr: 10.1.1.2}", "lab.yaml:23: switches[2].interfaces[2].peer: missing peer"},
		{"interface without addr", "{peer: h2, addr: 10.1.1.2}", "{peer: h2}", "lab.yaml:23: switches[2].interfaces[2].addr: missing addr"},
		{"host outside its gateway's subnet", "addr: 10.0.0.254/24", "addr: 10.9.0.254/24", "lab.yaml:22: switches[2].interfaces[1].addr: link to h1: the host's address 10.0.0.1 is not in 10.9.0.0/24"},
		{"link ends in two subnets", "addr: 10.1.0.1/31", "addr: 10.1.0.3/31", "lab.yaml:16: switches[1].interfaces[1].addr: link to dc1-pod1-rack1-tor: 10.1.0.3/31 and 10.1.0.0/31 are not in one subnet"},
		{"link ends in two families", "addr: 10.1.0.1/31", "addr: '2001:db8::9/127'", "are of different IP families"},
		{"unknown field", "{peer: h2, addr: 10.1.1.2}", "{peer: h2, addr: 10.1.1.2, mtu: 9000}", "lab.yaml:23: field mtu not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(addrFile, tc.from, tc.to, 1)
			if src == addrFile {
				t.Fatalf("test edit %q did not apply", tc.from)
			}
			_, err := Parse("lab.yaml", []byte(src))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

func TestLoadRefusesUnboundedFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	huge := filepath.Join(dir, "huge.yaml")
	f, err := os.Create(huge)
	if err != nil {
		t.Fatal(err)
	}
	// Sparse: the size is refused before a byte is read.
	if err := f.Truncate(MaxFileBytes + 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte(addrFile), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		want error
	}{
		{fifo, yamlfile.ErrNotRegular},
		{"/dev/zero", yamlfile.ErrNotRegular},
		{huge, yamlfile.ErrTooLarge},
		{good, nil},
	} {
		_, err := Load(tc.path)
		if !errors.Is(err, tc.want) {
			t.Errorf("Load(%s) = %v, want %v", tc.path, err, tc.want)
		}
		if err != nil && !strings.Contains(err.Error(), tc.path) {
			t.Errorf("error %q does not name the file", err)
		}
	}
}

func TestHostileNames(t *testing.T) {
	huge := strings.Repeat("x", 1<<20)
	for _, tc := range []struct{ name, from, to, want string }{
		{"escaped NUL in a host name", "{name: h2,", `{name: "h\0",`, `lab.yaml:26: "h\x00" holds the control character U+0000`},
		{"escaped NUL in the topology name", "name: lab", `name: "lab\0"`, `lab.yaml:1: "lab\x00" holds the control character U+0000`},
		{"1 MB host name", "{name: h2,", "{name: " + huge + ",", "lab.yaml:26: hosts[1].name: name \"xxxx"},
		{"1 MB rack", "rack: dc1-pod1-rack1}\n  - {name: h2", "rack: " + huge + "}\n  - {name: h2", "lab.yaml:25: hosts[0].rack: unknown rack \"xxx"},
		{"1 MB link", "  - h2--dc1-pod1-rack1-tor", "  - h2--" + huge, "no host or switch named \"xxx"},
		{"1 MB topology name", "name: lab", "name: " + huge, "lab.yaml:1: name: name \"xxx"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(addrFile, tc.from, tc.to, 1)
			if src == addrFile {
				t.Fatalf("test edit %q did not apply", tc.from)
			}
			_, err := Parse("lab.yaml", []byte(src))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %.300v\nwant it to contain %q", err, tc.want)
			}
			if n := len(err.Error()); n > 2000 {
				t.Fatalf("error of %d bytes echoes the value", n)
			}
		})
	}
}
