package topology

import (
	"fmt"
	"net/netip"
	"os"
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
	Name string `yaml:"name"`
	Role string `yaml:"role"`
	DC   string `yaml:"dc"`
	Pod  string `yaml:"pod"`
	Rack string `yaml:"rack"`
}
type fileHost struct {
	Name string `yaml:"name"`
	Addr string `yaml:"addr"`
	Rack string `yaml:"rack"`
}

// Names become NATS subject tokens and KV keys, so they are restricted to
// characters both accept, and may not contain the link separators.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9_]+(-[A-Za-z0-9_]+)*$`)

// Load reads and validates a topology file.
func Load(path string) (*Topology, error) {
	data, err := os.ReadFile(path)
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
			p.Addf(append(path, "name"), "name %q: use letters, digits, _ and single dashes", name)
			return false
		}
		if first, dup := seen[name]; dup {
			p.Addf(append(path, "name"), "duplicate name %q (first at %s)", name, first)
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
			p.Addf(at("pods", i, "dc"), "unknown dc %q", pd.DC)
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
			p.Addf(at("racks", i, "pod"), "unknown pod %q", r.Pod)
			continue
		}
		racks[r.Name] = true
		t.Racks = append(t.Racks, &Rack{Name: r.Name, Pod: r.Pod})
	}
	torOf := map[string]string{}
	switches := map[string]Role{}
	for i, s := range f.Switches {
		if !claim(s.Name, at("switches", i)) {
			continue
		}
		sw := &Switch{Name: s.Name, Role: Role(s.Role)}
		ok := true
		need := func(field, value string, known map[string]bool) {
			if value == "" {
				p.Addf(at("switches", i, field), "a %s switch needs a %s", s.Role, field)
				ok = false
			} else if !known[value] {
				p.Addf(at("switches", i, field), "unknown %s %q", field, value)
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
					p.Addf(at("switches", i, fv), "a %s switch takes no %s (it follows from its parent)", s.Role, fv)
					ok = false
				}
			}
		}
		switch sw.Role {
		case RoleToR:
			need("rack", s.Rack, racks)
			forbid("dc", "pod")
			if prev, dup := torOf[s.Rack]; dup && ok {
				p.Addf(at("switches", i, "rack"), "rack %q already has ToR %q", s.Rack, prev)
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
			p.Addf(at("switches", i, "role"), "unknown role %q (want tor, leaf, spine or wan)", s.Role)
			ok = false
		}
		if ok {
			switches[s.Name] = sw.Role
			t.Switches = append(t.Switches, sw)
		}
	}
	for i, r := range t.Racks {
		if torOf[r.Name] == "" {
			p.Addf(at("racks", rackIndex(f, r.Name, i)), "rack %q has no ToR switch", r.Name)
		}
	}

	addrs := map[netip.Addr]string{}
	hosts := map[string]string{} // host -> rack
	for i, h := range f.Hosts {
		if !claim(h.Name, at("hosts", i)) {
			continue
		}
		ok := true
		if h.Rack == "" {
			p.Addf(at("hosts", i, "rack"), "host %q has no rack", h.Name)
			ok = false
		} else if !racks[h.Rack] {
			p.Addf(at("hosts", i, "rack"), "unknown rack %q", h.Rack)
			ok = false
		}
		addr, err := netip.ParseAddr(h.Addr)
		switch {
		case h.Addr == "":
			p.Addf(at("hosts", i, "addr"), "host %q has no address", h.Name)
			ok = false
		case err != nil:
			p.Addf(at("hosts", i, "addr"), "bad address %q", h.Addr)
			ok = false
		default:
			if first, dup := addrs[addr]; dup {
				p.Addf(at("hosts", i, "addr"), "duplicate address %s (also %s)", addr, first)
				ok = false
			}
			addrs[addr] = h.Name
		}
		if ok {
			hosts[h.Name] = h.Rack
			t.Hosts = append(t.Hosts, &Host{Name: h.Name, Addr: addr, Rack: h.Rack})
		}
	}

	linked := map[string]bool{}
	pairs := map[Link]bool{}
	for i, s := range f.Links {
		a, b, directed, err := ParseLinkName(s)
		if err != nil || directed {
			p.Addf(at("links", i), "link %q: write links as A--B", s)
			continue
		}
		_, aHost := hosts[a]
		_, bHost := hosts[b]
		_, aSw := switches[a]
		_, bSw := switches[b]
		switch {
		case !aHost && !aSw:
			p.Addf(at("links", i), "link %q: no host or switch named %q", s, a)
			continue
		case !bHost && !bSw:
			p.Addf(at("links", i), "link %q: no host or switch named %q", s, b)
			continue
		case a == b:
			p.Addf(at("links", i), "link %q joins an element to itself", s)
			continue
		case aHost && bHost:
			p.Addf(at("links", i), "link %q joins two hosts; hosts attach to their ToR", s)
			continue
		case pairs[Link{a, b}] || pairs[Link{b, a}]:
			p.Addf(at("links", i), "duplicate link %q", s)
			continue
		}
		for _, end := range [][2]string{{a, b}, {b, a}} {
			if rack, isHost := hosts[end[0]]; isHost && torOf[rack] != end[1] {
				p.Addf(at("links", i), "link %q: host %s must attach to its rack's ToR %q", s, end[0], torOf[rack])
			}
		}
		pairs[Link{a, b}] = true
		linked[a], linked[b] = true, true
		t.Links = append(t.Links, Link{A: a, B: b})
	}
	for i, h := range f.Hosts {
		if _, ok := hosts[h.Name]; ok && !linked[h.Name] {
			p.Addf(at("hosts", i, "name"), "host %q has no link (it needs one to its ToR)", h.Name)
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

func rackIndex(f *fileTopology, name string, fallback int) int {
	for i, r := range f.Racks {
		if r.Name == name {
			return i
		}
	}
	return fallback
}
