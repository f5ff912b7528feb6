package topology

import (
	"fmt"
	"net/netip"
	"regexp"

	"github.com/meshlens/meshlens/internal/yamlfile"
)

// The file format is flat: every element names its parent, so a missing or
// misspelt parent is a one-line error at the element's own line.
type fileTopology struct {
	Name          string       `yaml:"name"`
	ResponderPort int          `yaml:"responder_port"`
	DCs           []fileDC     `yaml:"dcs"`
	Pods          []filePod    `yaml:"pods"`
	Racks         []fileRack   `yaml:"racks"`
	Switches      []fileSwitch `yaml:"switches"`
	Hosts         []fileHost   `yaml:"hosts"`
	Links         []string     `yaml:"links"`
}

type fileDC struct {
	Name string `yaml:"name"`
}
type filePod struct {
	Name string `yaml:"name"`
	DC   string `yaml:"dc"`
}
type fileRack struct {
	Name string `yaml:"name"`
	Pod  string `yaml:"pod"`
}
type fileSwitch struct {
	Name       string          `yaml:"name"`
	Role       string          `yaml:"role"`
	DC         string          `yaml:"dc"`
	Pod        string          `yaml:"pod"`
	Rack       string          `yaml:"rack"`
	Loopback   string          `yaml:"loopback"`
	Interfaces []fileInterface `yaml:"interfaces"`
}
type fileInterface struct {
	Peer string `yaml:"peer"`
	Addr string `yaml:"addr"`
}
type fileHost struct {
	Name string `yaml:"name"`
	Addr string `yaml:"addr"`
	Rack string `yaml:"rack"`
}

// Names become NATS subject tokens and KV keys, so they are restricted to
// characters both accept, and may not contain the link separators.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9_]+(-[A-Za-z0-9_]+)*$`)

// MaxFileBytes bounds a topology file. A generated 300,000-host fabric
// with switch addresses is 58.6 MB (`meshlens topo gen --pods 10
// --racks-per-pod 750 --hosts-per-rack 40 --leaves-per-pod 4 --spines 8
// --base-addr 10.0.0.1 --switch-base-addr 10.128.0.0`); the limit leaves
// room for longer names and hand-written layouts.
const MaxFileBytes = 128 << 20

// Load reads and validates a topology file. It refuses anything but a
// regular file of at most MaxFileBytes (a FIFO, /dev/zero).
func Load(path string) (*Topology, error) {
	data, err := yamlfile.ReadFile(path, MaxFileBytes)
	if err != nil {
		return nil, fmt.Errorf("topology: cannot read %q: %w", path, err)
	}
	return Parse(path, data)
}

// Parse validates a topology document; file names it in errors.
func Parse(file string, data []byte) (*Topology, error) {
	var f fileTopology
	doc, err := yamlfile.Decode(file, data, &f)
	if err != nil {
		return nil, err
	}
	return f.build(doc)
}

func (f *fileTopology) build(doc *yamlfile.Doc) (*Topology, error) {
	p := doc.NewProblems()
	at := yamlfile.Path
	t := &Topology{Name: f.Name, ResponderPort: f.ResponderPort}
	// The name is free text shown in the UI and logs; yamlfile refused
	// control characters already.
	if len(f.Name) > 200 {
		p.Addf(at("name"), "name %s is longer than 200 bytes", yamlfile.Quote(f.Name))
	}
	if t.ResponderPort == 0 {
		t.ResponderPort = DefaultResponderPort
	}
	if t.ResponderPort < 1 || t.ResponderPort > 65535 {
		p.Addf(at("responder_port"), "port %d out of range 1..65535", f.ResponderPort)
	}

	// Every element name is unique across kinds: scenarios and the API name
	// elements without saying their kind.
	seen := map[string]string{} // name -> field path where first defined
	claim := func(name string, path []any) bool {
		switch {
		case name == "":
			p.Addf(append(path, "name"), "missing name")
			return false
		case !nameRE.MatchString(name) || len(name) > 200:
			p.Addf(append(path, "name"), "name %s: use letters, digits, _ and single dashes (at most 200)", yamlfile.Quote(name))
			return false
		}
		if first, dup := seen[name]; dup {
			p.Addf(append(path, "name"), "duplicate name %s (first at %s)", yamlfile.Quote(name), first)
			return false
		}
		seen[name] = yamlfile.FieldPath(path...)
		return true
	}

	dcs := map[string]bool{}
	for i, d := range f.DCs {
		if claim(d.Name, at("dcs", i)) {
			dcs[d.Name] = true
			t.DCs = append(t.DCs, &DC{Name: d.Name})
		}
	}
	pods := map[string]bool{}
	for i, pd := range f.Pods {
		if !claim(pd.Name, at("pods", i)) {
			continue
		}
		if !dcs[pd.DC] {
			p.Addf(at("pods", i, "dc"), "unknown dc %s", yamlfile.Quote(pd.DC))
			continue
		}
		pods[pd.Name] = true
		t.Pods = append(t.Pods, &Pod{Name: pd.Name, DC: pd.DC})
	}
	racks := map[string]bool{}
	for i, r := range f.Racks {
		if !claim(r.Name, at("racks", i)) {
			continue
		}
		if !pods[r.Pod] {
			p.Addf(at("racks", i, "pod"), "unknown pod %s", yamlfile.Quote(r.Pod))
			continue
		}
		racks[r.Name] = true
		t.Racks = append(t.Racks, &Rack{Name: r.Name, Pod: r.Pod})
	}
	torOf := map[string]string{}
	switches := map[string]Role{}
	switchAt := map[string]int{} // switch -> index in the file
	for i, s := range f.Switches {
		if !claim(s.Name, at("switches", i)) {
			continue
		}
		sw := &Switch{Name: s.Name, Role: Role(s.Role)}
		ok := true
		need := func(field, value string, known map[string]bool) {
			if value == "" {
				p.Addf(at("switches", i, field), "a %s switch needs a %s", yamlfile.Quote(s.Role), field)
				ok = false
			} else if !known[value] {
				p.Addf(at("switches", i, field), "unknown %s %s", field, yamlfile.Quote(value))
				ok = false
			}
		}
		forbid := func(fields ...string) {
			for _, fv := range fields {
				var v string
				switch fv {
				case "dc":
					v = s.DC
				case "pod":
					v = s.Pod
				case "rack":
					v = s.Rack
				}
				if v != "" {
					p.Addf(at("switches", i, fv), "a %s switch takes no %s (it follows from its parent)", yamlfile.Quote(s.Role), fv)
					ok = false
				}
			}
		}
		switch sw.Role {
		case RoleToR:
			need("rack", s.Rack, racks)
			forbid("dc", "pod")
			if prev, dup := torOf[s.Rack]; dup && ok {
				p.Addf(at("switches", i, "rack"), "rack %s already has ToR %s", yamlfile.Quote(s.Rack), yamlfile.Quote(prev))
				ok = false
			}
			sw.Rack = s.Rack
			if ok {
				torOf[s.Rack] = s.Name
			}
		case RoleLeaf:
			need("pod", s.Pod, pods)
			forbid("dc", "rack")
			sw.Pod = s.Pod
		case RoleSpine:
			need("dc", s.DC, dcs)
			forbid("pod", "rack")
			sw.DC = s.DC
		case RoleWAN:
			forbid("dc", "pod", "rack")
		default:
			p.Addf(at("switches", i, "role"), "unknown role %s (want tor, leaf, spine or wan)", yamlfile.Quote(s.Role))
			ok = false
		}
		if ok {
			switches[s.Name] = sw.Role
			switchAt[s.Name] = i
			t.Switches = append(t.Switches, sw)
		}
	}
	for i, r := range t.Racks {
		if torOf[r.Name] == "" {
			p.Addf(at("racks", rackIndex(f, r.Name, i)), "rack %s has no ToR switch", yamlfile.Quote(r.Name))
		}
	}

	// Every address belongs to one element: hosts', switches' loopbacks
	// and interfaces alike (ElementByAddr must have one answer).
	addrs := map[netip.Addr]string{} // address -> owner, as "name" or "name (interface to peer)"
	claimAddr := func(a netip.Addr, owner string, path []any) bool {
		if first, dup := addrs[a]; dup {
			p.Addf(path, "duplicate address %s (also %s)", a, first)
			return false
		}
		addrs[a] = owner
		return true
	}
	hosts := map[string]string{} // host -> rack
	hostAddr := map[string]netip.Addr{}
	for i, h := range f.Hosts {
		if !claim(h.Name, at("hosts", i)) {
			continue
		}
		ok := true
		if h.Rack == "" {
			p.Addf(at("hosts", i, "rack"), "host %s has no rack", yamlfile.Quote(h.Name))
			ok = false
		} else if !racks[h.Rack] {
			p.Addf(at("hosts", i, "rack"), "unknown rack %s", yamlfile.Quote(h.Rack))
			ok = false
		}
		addr, err := checkAddr(h.Addr)
		switch {
		case h.Addr == "":
			p.Addf(at("hosts", i, "addr"), "host %s has no address", yamlfile.Quote(h.Name))
			ok = false
		case err != nil:
			p.Addf(at("hosts", i, "addr"), "bad address %s: %v", yamlfile.Quote(h.Addr), err)
			ok = false
		default:
			if !claimAddr(addr, h.Name, at("hosts", i, "addr")) {
				ok = false
			}
		}
		if ok {
			hosts[h.Name] = h.Rack
			hostAddr[h.Name] = addr
			t.Hosts = append(t.Hosts, &Host{Name: h.Name, Addr: addr, Rack: h.Rack})
		}
	}

	linked := map[string]bool{}
	pairs := map[Link]bool{}
	for i, s := range f.Links {
		a, b, directed, err := ParseLinkName(s)
		if err != nil || directed {
			p.Addf(at("links", i), "link %s: write links as A--B", yamlfile.Quote(s))
			continue
		}
		_, aHost := hosts[a]
		_, bHost := hosts[b]
		_, aSw := switches[a]
		_, bSw := switches[b]
		switch {
		case !aHost && !aSw:
			p.Addf(at("links", i), "link %s: no host or switch named %s", yamlfile.Quote(s), yamlfile.Quote(a))
			continue
		case !bHost && !bSw:
			p.Addf(at("links", i), "link %s: no host or switch named %s", yamlfile.Quote(s), yamlfile.Quote(b))
			continue
		case a == b:
			p.Addf(at("links", i), "link %s joins an element to itself", yamlfile.Quote(s))
			continue
		case aHost && bHost:
			p.Addf(at("links", i), "link %s joins two hosts; hosts attach to their ToR", yamlfile.Quote(s))
			continue
		case pairs[Link{a, b}] || pairs[Link{b, a}]:
			p.Addf(at("links", i), "duplicate link %s", yamlfile.Quote(s))
			continue
		}
		for _, end := range [][2]string{{a, b}, {b, a}} {
			if rack, isHost := hosts[end[0]]; isHost && torOf[rack] != end[1] {
				p.Addf(at("links", i), "link %s: host %s must attach to its rack's ToR %s", yamlfile.Quote(s), end[0], yamlfile.Quote(torOf[rack]))
			}
		}
		pairs[Link{a, b}] = true
		linked[a], linked[b] = true, true
		t.Links = append(t.Links, Link{A: a, B: b})
	}
	f.switchAddrs(p, t, pairs, switchAt, hostAddr, claimAddr)
	for i, h := range f.Hosts {
		if _, ok := hosts[h.Name]; ok && !linked[h.Name] {
			p.Addf(at("hosts", i, "name"), "host %s has no link (it needs one to its ToR)", yamlfile.Quote(h.Name))
		}
	}
	if len(f.Hosts) == 0 {
		p.Addf(at("hosts"), "no hosts")
	}
	if err := p.Err(); err != nil {
		return nil, err
	}
	t.index()
	return t, nil
}

// switchAddrs checks the switches' loopbacks and interfaces (links and
// host addresses known) and sets them on t's switches. pairs holds the
// links in file orientation.
func (f *fileTopology) switchAddrs(p *yamlfile.Problems, t *Topology, pairs map[Link]bool, switchAt map[string]int,
	hostAddr map[string]netip.Addr, claimAddr func(netip.Addr, string, []any) bool) {
	at := yamlfile.Path
	linked := func(a, b string) bool { return pairs[Link{a, b}] || pairs[Link{b, a}] }
	type end struct {
		sw, peer string
		addr     netip.Prefix
		path     []any
	}
	var ends []end
	endOf := map[Link]int{} // (switch, peer) -> index in ends
	for _, sw := range t.Switches {
		i := switchAt[sw.Name]
		s := f.Switches[i]
		if s.Loopback != "" {
			a, err := checkAddr(s.Loopback)
			if err != nil {
				p.Addf(at("switches", i, "loopback"), "bad address %s: %v", yamlfile.Quote(s.Loopback), err)
			} else if claimAddr(a, sw.Name+" (loopback)", at("switches", i, "loopback")) {
				sw.Loopback = a
			}
		}
		for j, in := range s.Interfaces {
			path := at("switches", i, "interfaces", j)
			if in.Peer == "" {
				p.Addf(append(path, "peer"), "missing peer (the neighbour this interface faces)")
				continue
			}
			if !linked(sw.Name, in.Peer) {
				p.Addf(append(path, "peer"), "%s is not linked to %s", yamlfile.Quote(in.Peer), sw.Name)
				continue
			}
			if k, dup := endOf[Link{sw.Name, in.Peer}]; dup {
				p.Addf(append(path, "peer"), "a second address for the link to %s (first at %s)", in.Peer,
					yamlfile.FieldPath(ends[k].path...))
				continue
			}
			if in.Addr == "" {
				p.Addf(append(path, "addr"), "missing addr")
				continue
			}
			a, err := parseIfaceAddr(in.Addr)
			if err != nil {
				p.Addf(append(path, "addr"), "bad address %s: %v", yamlfile.Quote(in.Addr), err)
				continue
			}
			if !claimAddr(a.Addr(), sw.Name+" (interface to "+in.Peer+")", append(path, "addr")) {
				continue
			}
			endOf[Link{sw.Name, in.Peer}] = len(ends)
			ends = append(ends, end{sw.Name, in.Peer, a, path})
			sw.Interfaces = append(sw.Interfaces, Interface{Peer: in.Peer, Addr: a})
		}
	}
	// The two ends of a link must be configurable together.
	for _, e := range ends {
		if h, isHost := hostAddr[e.peer]; isHost {
			if why := hostEndAgrees(e.addr, h); why != "" {
				p.Addf(append(e.path, "addr"), "link to %s: %s", e.peer, why)
			}
			continue
		}
		k, ok := endOf[Link{e.peer, e.sw}]
		if !ok || e.sw > e.peer {
			continue // the other end has no address, or reports it
		}
		if why := linkEndsAgree(e.addr, ends[k].addr); why != "" {
			p.Addf(append(e.path, "addr"), "link to %s: %s", e.peer, why)
		}
	}
}

func rackIndex(f *fileTopology, name string, fallback int) int {
	for i, r := range f.Racks {
		if r.Name == name {
			return i
		}
	}
	return fallback
}
