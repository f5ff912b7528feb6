// Package sim is meshlens's fault-injection lab: a synthetic fabric of
// agents that follow the real pinglists, probes whose ECMP paths are chosen
// by a hash of their 5-tuple at every hop, faults with known ground truth,
// and a runner that feeds the probe results through the real aggregation
// core and the localizer on a virtual clock and scores what was blamed.
//
// Model choices, so results can be read right:
//
//   - Windows are probe rounds (the aggregator's window is the probe
//     interval) and seal 1 s after the round ends; a verdict's time is its
//     window's sealing time, so "localized after 11 s" means the first
//     window that ended after onset already blamed the right element.
//   - Path discovery: agents trace lost probes and probes whose RTT
//     exceeds their pair's lowest by max(300 µs, that RTT), as 007 traces
//     failed flows, with what a real Paris traceroute learns (see
//     Tracing): forward hops only, some silent, after the probe. The
//     fabric publishes them as wire.PathReports (Fabric.PathReports); the
//     ground truth of the probes' paths never leaves the fabric.
//   - Routing steers around a down link or device Convergence after onset,
//     at the first round boundary after that; a flap never converges.
//   - Agents behind a dead ToR still deliver their batches (spooling is not
//     modelled): their probes read as lost, as they would after the spool
//     drains.
//   - A host and its access link are one element to probes (every probe of
//     the host crosses both directions), so either name scores for the
//     other.
//   - A host that is down (host_down) is gone: its agent publishes no
//     batches and no path reports and sends no probes while it is down
//     (a round's batch, published at the round's end, is lost with it if
//     the host is down then), and every packet to it is lost. The
//     analyzer learns that its agent went silent as the server does
//     (aggregate.SilentAgents over the aggregator's last-seen).
//
// It imports topology, pinglist, wire, aggregate and localize; nothing
// imports it but cmd/ and tests.
package sim

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/meshlens/meshlens/internal/probe"
	"github.com/meshlens/meshlens/internal/topology"
	"github.com/meshlens/meshlens/internal/wire"
	"github.com/meshlens/meshlens/internal/yamlfile"
)

// FaultKind names what a fault does.
type FaultKind string

const (
	LinkLoss    FaultKind = "link_loss"    // a link drops a rate of packets
	LinkLatency FaultKind = "link_latency" // a link adds delay
	LinkDown    FaultKind = "link_down"    // a link drops everything until routing avoids it
	DeviceDown  FaultKind = "device_down"  // a switch drops everything until routing avoids it
	Blackhole   FaultKind = "blackhole"    // a switch drops a fraction of flows, chosen by flow hash
	DeviceLoss  FaultKind = "device_loss"  // a switch drops a rate of all packets
	HostNIC     FaultKind = "host_nic"     // a sick server: its own traffic suffers
	HostSlow    FaultKind = "host_slow"    // a CPU-starved agent: its RTTs and timer lag inflate
	HostDown    FaultKind = "host_down"    // the host is gone: its agent silent, nothing answers it
	Flap        FaultKind = "flap"         // a link alternating down and up
)

// Scope is what kind of element a fault names, and what the localizer must
// blame for it.
type Scope string

const (
	ScopeLink   Scope = "link"
	ScopeDevice Scope = "device"
	ScopeHost   Scope = "host"
)

var faultScope = map[FaultKind]Scope{
	LinkLoss: ScopeLink, LinkLatency: ScopeLink, LinkDown: ScopeLink, Flap: ScopeLink,
	DeviceDown: ScopeDevice, Blackhole: ScopeDevice, DeviceLoss: ScopeDevice,
	HostNIC: ScopeHost, HostSlow: ScopeHost, HostDown: ScopeHost,
}

// Defaults of a scenario's optional fields.
const (
	DefaultInterval    = 10 * time.Second
	DefaultDuration    = 10 * time.Minute
	DefaultBaseLatency = 40 * time.Microsecond
	DefaultJitter      = 20 * time.Microsecond
	DefaultConvergence = 30 * time.Second
	DefaultFlapPeriod  = 20 * time.Second
	DefaultSlowAdd     = 5 * time.Millisecond
	DefaultSlowLag     = 50 * time.Millisecond
	// Path discovery as a real agent gets it (see Tracing).
	DefaultHopAnswer = 0.9
	DefaultBudget    = 4
	maxBudget        = 1000
	maxQueries       = 10
	maxDuration      = 24 * time.Hour
)

// Scenario is a validated scenario file.
type Scenario struct {
	File     string
	Name     string
	Seed     uint64
	Topology *topology.Topology
	Interval time.Duration
	// Protocols are the peer protocols every agent probes with; the
	// simulator models those answered by the responder (flows with ports,
	// hashed by ECMP on the 5-tuple).
	Protocols []wire.Protocol
	Duration  time.Duration
	// Convergence is how long routing takes to steer around a down link or
	// device (see Fault).
	Convergence    time.Duration
	BackgroundLoss float64
	BaseLatency    time.Duration // per link and direction
	Jitter         time.Duration // per link and direction, uniform 0..Jitter
	Tracing        Tracing
	Faults         []Fault
}

// Tracing is how the simulated agents discover the paths of their
// anomalous probes. By default as a real agent does: a Paris traceroute of
// the probe's 5-tuple from the source, run after the probe was found lost
// (1–2 s later) or slow (0.1–0.2 s later), through the fabric's state at
// that time; each of its TTL probes meets the faults like any packet, and
// a switch answers with probability HopAnswer, within the ICMP rate limits
// of Linux routers (a token bucket per router and destination: 1 per second,
// burst 6; and per router: 1000 per second, burst 50); the destination
// answers when the trace reaches it. A silent TTL before one that
// answered is sent again, up to Queries times in all, a hop timeout apart
// (the agent's --trace-queries). An agent traces at most Budget anomalous probes per
// probe round, the first it sees.
//
// Ideal, for comparison only, is what no agent can have: every hop of the
// forward path known at the probe's own time, at most 16 traces per agent
// and round.
type Tracing struct {
	Ideal     bool
	HopAnswer float64
	Queries   int
	Budget    int
}

// Fault is one injected fault with its ground truth.
//
// Down links and devices: a Pingmesh-era fabric keeps hashing flows onto a
// dead element until routing converges, so for Convergence after At every
// flow whose hash picks it is lost; after that, routing avoids it (where an
// alternative exists; a dead ToR still cuts its rack off). A flap changes
// state faster than routing converges (damping), so routing never avoids a
// flapping link: it is down for the first half of every Period.
type Fault struct {
	Kind FaultKind
	// Element is the name in the topology: a link as "A--B" (both
	// directions) or "A->B" (one), a switch, or a host.
	Element  string
	A, B     string // link ends; B empty for devices and hosts
	Directed bool
	Rate     float64       // link_loss, device_loss, host_nic
	Fraction float64       // blackhole
	Add      time.Duration // link_latency, host_slow (RTT inflation)
	Lag      time.Duration // host_slow: scheduling lag p99
	Period   time.Duration // flap
	At       time.Duration // onset, from the scenario start
	Until    time.Duration // end; 0: to the end of the run
}

// Scope is what the fault's element is.
func (f Fault) Scope() Scope { return faultScope[f.Kind] }

// ActiveAt reports whether the fault is in force at offset t.
func (f Fault) ActiveAt(t time.Duration) bool {
	return t >= f.At && (f.Until == 0 || t < f.Until)
}

// End is the fault's end, d when it lasts to the end of a run of d.
func (f Fault) End(d time.Duration) time.Duration {
	if f.Until == 0 || f.Until > d {
		return d
	}
	return f.Until
}

// Significant reports whether the fault is above the accuracy targets'
// floor (≥ 1% loss or ≥ 1 ms added latency; downs, flaps and sick agents
// always are).
func (f Fault) Significant() bool {
	switch f.Kind {
	case LinkLoss, DeviceLoss, HostNIC:
		return f.Rate >= 0.01
	case Blackhole:
		return f.Fraction >= 0.01
	case LinkLatency:
		return f.Add >= time.Millisecond
	}
	return true
}

// The file format, as written. Durations and rates are kept raw so that a
// bad one is reported at its field with the file's line.
type fileScenario struct {
	Name       string         `yaml:"name"`
	Seed       *uint64        `yaml:"seed"`
	Topology   fileTopology   `yaml:"topology"`
	Probing    fileProbing    `yaml:"probing"`
	Duration   string         `yaml:"duration"`
	Routing    fileRouting    `yaml:"routing"`
	Background fileBackground `yaml:"background"`
	Tracing    fileTracing    `yaml:"tracing"`
	Faults     []fileFault    `yaml:"faults"`
}

type fileTracing struct {
	Ideal     bool     `yaml:"ideal"`
	HopAnswer *float64 `yaml:"hop_answer"`
	Queries   *int     `yaml:"queries"`
	Budget    *int     `yaml:"budget"`
}

type fileTopology struct {
	Generate *fileGenerate `yaml:"generate"`
	File     string        `yaml:"file"`
}

type fileGenerate struct {
	DCs          int `yaml:"dcs"`
	Pods         int `yaml:"pods"`
	RacksPerPod  int `yaml:"racks_per_pod"`
	HostsPerRack int `yaml:"hosts_per_rack"`
	LeavesPerPod int `yaml:"leaves_per_pod"`
	Spines       int `yaml:"spines"`
	WANs         int `yaml:"wans"`
}

type fileProbing struct {
	Interval  string   `yaml:"interval"`
	Protocols []string `yaml:"protocols"`
}

type fileRouting struct {
	Convergence string `yaml:"convergence"`
}

type fileBackground struct {
	Loss    *float64    `yaml:"loss"`
	Latency fileLatency `yaml:"latency"`
}

type fileLatency struct {
	Base   string `yaml:"base"`
	Jitter string `yaml:"jitter"`
}

type fileFault struct {
	Kind     string   `yaml:"kind"`
	Link     string   `yaml:"link"`
	Device   string   `yaml:"device"`
	Host     string   `yaml:"host"`
	Rate     *float64 `yaml:"rate"`
	Fraction *float64 `yaml:"fraction"`
	Add      string   `yaml:"add"`
	Lag      string   `yaml:"lag"`
	Period   string   `yaml:"period"`
	At       string   `yaml:"at"`
	Until    string   `yaml:"until"`
}

// Load reads and validates a scenario file. A topology file it names is
// read relative to the scenario's directory.
func Load(path string) (*Scenario, error) {
	data, err := yamlfile.ReadFile(path, yamlfile.MaxConfigBytes)
	if err != nil {
		return nil, fmt.Errorf("sim: cannot read scenario %q: %w", path, err)
	}
	return Parse(path, data, func(name string) ([]byte, error) {
		if !filepath.IsAbs(name) {
			name = filepath.Join(filepath.Dir(path), name)
		}
		return yamlfile.ReadFile(name, topology.MaxFileBytes)
	})
}

// ReadFunc reads a file a scenario refers to (its topology).
type ReadFunc func(name string) ([]byte, error)

// Parse validates a scenario document. file names it in errors; read
// fetches a topology file (nil refuses topology files).
func Parse(file string, data []byte, read ReadFunc) (*Scenario, error) {
	var f fileScenario
	doc, err := yamlfile.Decode(file, data, &f)
	if err != nil {
		return nil, fmt.Errorf("sim: scenario: %w", err)
	}
	s, err := f.build(doc, file, read)
	if err != nil {
		return nil, fmt.Errorf("sim: scenario: %w", err)
	}
	return s, nil
}

// maxSimHosts bounds generated fabrics: beyond it a run would not fit in
// memory with full pinglists.
const maxSimHosts = 200_000

func (f *fileScenario) build(doc *yamlfile.Doc, file string, read ReadFunc) (*Scenario, error) {
	p := doc.NewProblems()
	at := yamlfile.Path
	s := &Scenario{File: file, Name: f.Name}
	if f.Name == "" {
		p.Addf(at("name"), "a scenario needs a name")
	}
	if f.Seed != nil {
		s.Seed = *f.Seed
	}
	dur := func(path []any, v string, def time.Duration, min time.Duration) time.Duration {
		if v == "" {
			return def
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			p.Addf(path, "duration %q: want e.g. 10s, 2m, 40us", v)
			return def
		}
		if d < min || d > maxDuration {
			p.Addf(path, "duration %v outside %v..%v", d, min, maxDuration)
			return def
		}
		return d
	}
	rate := func(path []any, v *float64, required bool) float64 {
		if v == nil {
			if required {
				p.Addf(path, "required")
			}
			return 0
		}
		if !(*v >= 0 && *v <= 1) { // also refuses NaN
			p.Addf(path, "rate %v outside 0..1", *v)
			return 0
		}
		return *v
	}

	// Topology.
	switch g, tf := f.Topology.Generate, f.Topology.File; {
	case g != nil && tf != "":
		p.Addf(at("topology"), "give either generate or file, not both")
	case g != nil:
		hosts := g.DCs * g.Pods * g.RacksPerPod * g.HostsPerRack
		if g.DCs > 0 && g.Pods > 0 && g.RacksPerPod > 0 && g.HostsPerRack > 0 && (hosts > maxSimHosts || hosts < 0) {
			p.Addf(at("topology", "generate"), "%d hosts is more than the simulator's %d", hosts, maxSimHosts)
			break
		}
		t, err := topology.Generate(topology.GenSpec{
			Name: f.Name, DCs: g.DCs, Pods: g.Pods, RacksPerPod: g.RacksPerPod, HostsPerRack: g.HostsPerRack,
			LeavesPerPod: g.LeavesPerPod, Spines: g.Spines, WANs: g.WANs,
		})
		if err != nil {
			p.Addf(at("topology", "generate"), "%v", err)
			break
		}
		s.Topology = t
	case tf != "":
		if read == nil {
			p.Addf(at("topology", "file"), "topology files cannot be read here")
			break
		}
		data, err := read(tf)
		if err != nil {
			p.Addf(at("topology", "file"), "cannot read %q: %v", tf, err)
			break
		}
		t, err := topology.Parse(tf, data)
		if err != nil {
			p.Addf(at("topology", "file"), "%v", err)
			break
		}
		s.Topology = t
	default:
		p.Addf(at("topology"), "give generate or file")
	}

	// Probing, routing and background.
	s.Interval = dur(at("probing", "interval"), f.Probing.Interval, DefaultInterval, time.Second)
	if s.Interval > time.Minute {
		p.Addf(at("probing", "interval"), "interval %v is longer than 1m", s.Interval)
	}
	names := f.Probing.Protocols
	if len(names) == 0 {
		names = wire.DefaultPeerProtocols()
	}
	seen := map[wire.Protocol]bool{}
	for i, name := range names {
		proto, err := wire.ParsePeerProtocol(name)
		switch {
		case err != nil:
			p.Addf(at("probing", "protocols", i), "%s", strings.TrimPrefix(err.Error(), "wire: "))
		case !proto.NeedsResponder():
			p.Addf(at("probing", "protocols", i), "protocol %q: the simulator models probes to the responder (flows with ports), not %s", name, name)
		case seen[proto]:
			p.Addf(at("probing", "protocols", i), "protocol %q listed twice", name)
		default:
			seen[proto] = true
			s.Protocols = append(s.Protocols, proto)
		}
	}
	s.Duration = dur(at("duration"), f.Duration, DefaultDuration, time.Second)
	s.Convergence = dur(at("routing", "convergence"), f.Routing.Convergence, DefaultConvergence, 0)
	s.BackgroundLoss = rate(at("background", "loss"), f.Background.Loss, false)
	if s.BackgroundLoss > 0.01 {
		p.Addf(at("background", "loss"), "background loss %v above 0.01: that is a fault, not a background", s.BackgroundLoss)
	}
	s.BaseLatency = dur(at("background", "latency", "base"), f.Background.Latency.Base, DefaultBaseLatency, 0)
	s.Jitter = dur(at("background", "latency", "jitter"), f.Background.Latency.Jitter, DefaultJitter, 0)

	// Tracing.
	s.Tracing = Tracing{Ideal: f.Tracing.Ideal, HopAnswer: DefaultHopAnswer, Queries: probe.DefaultTraceQueries, Budget: DefaultBudget}
	if f.Tracing.Ideal && (f.Tracing.HopAnswer != nil || f.Tracing.Budget != nil || f.Tracing.Queries != nil) {
		p.Addf(at("tracing", "ideal"), "ideal tracing has no hop_answer, queries or budget")
	}
	if v := f.Tracing.Queries; v != nil {
		if *v < 1 || *v > maxQueries {
			p.Addf(at("tracing", "queries"), "queries %d outside 1..%d sends of a silent TTL", *v, maxQueries)
		} else {
			s.Tracing.Queries = *v
		}
	}
	if v := f.Tracing.HopAnswer; v != nil {
		if !(*v > 0 && *v <= 1) { // also refuses NaN
			p.Addf(at("tracing", "hop_answer"), "hop_answer %v outside (0, 1]", *v)
		} else {
			s.Tracing.HopAnswer = *v
		}
	}
	if v := f.Tracing.Budget; v != nil {
		if *v < 1 || *v > maxBudget {
			p.Addf(at("tracing", "budget"), "budget %d outside 1..%d traces per agent and round", *v, maxBudget)
		} else {
			s.Tracing.Budget = *v
		}
	}

	// Faults.
	for i, ff := range f.Faults {
		path := func(field string) []any { return at("faults", i, field) }
		ft := Fault{Kind: FaultKind(ff.Kind)}
		scope, ok := faultScope[ft.Kind]
		if !ok {
			p.Addf(path("kind"), "unknown fault kind %q (want one of %s)", ff.Kind, kindList())
			continue
		}
		// Exactly the element field of the fault's scope.
		fields := map[Scope]string{ScopeLink: ff.Link, ScopeDevice: ff.Device, ScopeHost: ff.Host}
		for sc, v := range fields {
			if sc != scope && v != "" {
				p.Addf(path(string(sc)), "a %s fault names a %s, not a %s", ft.Kind, scope, sc)
			}
		}
		ft.Element = fields[scope]
		if ft.Element == "" {
			p.Addf(path(string(scope)), "a %s fault needs a %s", ft.Kind, scope)
		} else if s.Topology != nil {
			checkElement(p, path(string(scope)), s.Topology, scope, &ft)
		}
		ft.At = dur(path("at"), ff.At, 0, 0)
		ft.Until = dur(path("until"), ff.Until, 0, 0)
		if ff.Until != "" && ft.Until <= ft.At {
			p.Addf(path("until"), "until %v is not after at %v", ft.Until, ft.At)
		}
		if ft.At >= s.Duration {
			p.Addf(path("at"), "onset %v is not before the end of the run (%v)", ft.At, s.Duration)
		}
		allowed := map[string]bool{}
		switch ft.Kind {
		case LinkLoss, DeviceLoss, HostNIC:
			ft.Rate = rate(path("rate"), ff.Rate, true)
			allowed["rate"] = true
		case Blackhole:
			ft.Fraction = rate(path("fraction"), ff.Fraction, true)
			allowed["fraction"] = true
		case LinkLatency:
			ft.Add = dur(path("add"), ff.Add, 0, 0)
			if ft.Add <= 0 {
				p.Addf(path("add"), "a link_latency fault needs a positive add")
			}
			allowed["add"] = true
		case HostSlow:
			ft.Add = dur(path("add"), ff.Add, DefaultSlowAdd, 0)
			ft.Lag = dur(path("lag"), ff.Lag, DefaultSlowLag, 0)
			allowed["add"], allowed["lag"] = true, true
		case Flap:
			ft.Period = dur(path("period"), ff.Period, DefaultFlapPeriod, 2*time.Second)
			allowed["period"] = true
		}
		for name, set := range map[string]bool{"rate": ff.Rate != nil, "fraction": ff.Fraction != nil, "add": ff.Add != "", "lag": ff.Lag != "", "period": ff.Period != ""} {
			if set && !allowed[name] {
				p.Addf(path(name), "a %s fault has no %s", ft.Kind, name)
			}
		}
		s.Faults = append(s.Faults, ft)
	}
	checkOverlaps(p, s.Faults, s.Duration)
	if err := p.Err(); err != nil {
		return nil, err
	}
	return s, nil
}

func kindList() string {
	var ks []string
	for k := range faultScope {
		ks = append(ks, string(k))
	}
	sort.Strings(ks)
	return fmt.Sprint(ks)
}

// checkElement resolves a fault's element in the topology.
func checkElement(p *yamlfile.Problems, path []any, t *topology.Topology, scope Scope, f *Fault) {
	switch scope {
	case ScopeLink:
		a, b, directed, err := topology.ParseLinkName(f.Element)
		if err != nil {
			p.Addf(path, "%q is not a link name (A--B or A->B)", f.Element)
			return
		}
		if !t.HasLink(a, b) {
			p.Addf(path, "link %q is not in the topology", f.Element)
			return
		}
		f.A, f.B, f.Directed = a, b, directed
	case ScopeDevice:
		if t.Switch(f.Element) == nil {
			p.Addf(path, "device %q is not a switch of the topology", f.Element)
			return
		}
		f.A = f.Element
	case ScopeHost:
		if t.Host(f.Element) == nil {
			p.Addf(path, "host %q is not in the topology", f.Element)
			return
		}
		f.A = f.Element
	}
}

// checkOverlaps refuses contradictory settings: two faults of the same kind
// on the same element (or on the same link in overlapping directions) in
// force at the same time would each claim a different rate or delay.
func checkOverlaps(p *yamlfile.Problems, faults []Fault, d time.Duration) {
	for i := range faults {
		for j := 0; j < i; j++ {
			a, b := faults[i], faults[j]
			if a.Kind != b.Kind || a.A == "" || b.A == "" {
				continue
			}
			if !sameElement(a, b) {
				continue
			}
			if a.At < b.End(d) && b.At < a.End(d) {
				p.Addf(yamlfile.Path("faults", i), "contradicts faults[%d]: both set %s on %s from %v", j, a.Kind, a.Element, max(a.At, b.At))
			}
		}
	}
}

func sameElement(a, b Fault) bool {
	if a.Scope() != ScopeLink {
		return a.A == b.A
	}
	dirs := func(f Fault) [][2]string {
		if f.Directed {
			return [][2]string{{f.A, f.B}}
		}
		return [][2]string{{f.A, f.B}, {f.B, f.A}}
	}
	for _, x := range dirs(a) {
		for _, y := range dirs(b) {
			if x == y {
				return true
			}
		}
	}
	return false
}
