package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/meshlens/meshlens/internal/topology"
)

// Config is how `lab up` builds a lab.
type Config struct {
	Dir      string // the lab's state, logs and data
	ID       string // prefix of every namespace name
	Topology *topology.Topology
	// Binary is the meshlens executable run as server, agents, relays and
	// UI forwarder (default: this executable).
	Binary string
	// UIAddr is where the UI is forwarded to on the machine's loopback.
	UIAddr string
	// Agents starts one real agent per host namespace.
	Agents bool
	ICMP   ICMPLimits
	// ServerArgs are extra flags for `meshlens server` (e.g. --window).
	ServerArgs []string
	Out        io.Writer // progress and the kernel check's verdict
}

// Ports of the server on the management network.
const (
	mgmtHTTPPort = 9780
	mgmtNATSPort = 4222
)

// Lab is one lab directory, loaded with its plan.
type Lab struct {
	State *State
	Plan  *Plan
	out   io.Writer
}

func (l *Lab) logf(format string, args ...any) {
	if l.out != nil {
		fmt.Fprintf(l.out, format+"\n", args...)
	}
}

// Up builds the lab. A lab already up in cfg.Dir is left as it is; the
// remains of an `up` that crashed are removed first.
func Up(ctx context.Context, cfg Config) (*State, error) {
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if old, err := loadState(dir); err != nil {
		return nil, err
	} else if old != nil {
		if old.Ready && old.ID == cfg.ID && old.intact() {
			if cfg.Out != nil {
				fmt.Fprintf(cfg.Out, "lab %s is already up in %s\n", old.ID, dir)
			}
			return old, nil
		}
		// A crashed up, a lab partly gone (a reboot, a killed server) or
		// another id: what remains of it goes before the new lab is built.
		if err := teardown(old, cfg.Out); err != nil {
			return nil, err
		}
	}
	if cfg.Binary == "" {
		if cfg.Binary, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("lab: %w", err)
		}
	}
	plan, err := NewPlan(cfg.ID, cfg.Topology)
	if err != nil {
		return nil, err
	}
	l := &Lab{Plan: plan, out: cfg.Out, State: &State{ID: cfg.ID, Dir: dir, Binary: cfg.Binary, Relays: map[string]RelayState{}}}
	if err := l.up(ctx, cfg); err != nil {
		if terr := teardown(l.State, cfg.Out); terr != nil {
			err = errors.Join(err, terr)
		}
		return nil, err
	}
	return l.State, nil
}

func (l *Lab) up(ctx context.Context, cfg Config) error {
	s, p := l.State, l.Plan
	if err := s.save(); err != nil {
		return err
	}
	topoData, err := p.Topo.MarshalYAML()
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	topoFile := filepath.Join(s.Dir, "topology.yaml")
	if err := os.WriteFile(topoFile, topoData, 0o644); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	all := append(p.Namespaces(), p.MgmtNS())
	for _, ns := range append(all, p.CheckNS()) {
		if nsExists(ns) {
			return fmt.Errorf("lab: namespace %s exists and is not this lab's (another lab with id %q?); choose another --id", ns, s.ID)
		}
	}

	// What can this kernel do?
	if s.Unavailable, err = l.checkKernel(ctx); err != nil {
		return err
	}
	if len(s.Unavailable) == 0 {
		l.logf("kernel check: all fault kinds available")
	}
	for _, k := range AllKinds() {
		if why, ok := s.Unavailable[k]; ok {
			l.logf("kernel check: %s unavailable: %s", k, why)
		}
	}

	// Namespaces, recorded before they exist.
	s.Namespaces = append(s.Namespaces, all...)
	if err := s.save(); err != nil {
		return err
	}
	var batch strings.Builder
	for _, ns := range all {
		fmt.Fprintf(&batch, "netns add %s\n", ns)
	}
	if err := ipBatch(ctx, "", batch.String()); err != nil {
		return err
	}
	for _, h := range p.Topo.Hosts {
		if err := writeSysctls(p.NS(h.Name), Sysctls(false, cfg.ICMP, 0)); err != nil {
			return err
		}
	}
	seeds := true
	if _, err := os.Stat("/proc/sys/" + strings.ReplaceAll(hashSeedSysctl, ".", "/")); err != nil {
		seeds = false
		l.logf("kernel check: no %s (Linux before 6.11): every switch hashes flows alike, so ECMP choices of successive tiers are correlated (polarized) and fewer paths are used", hashSeedSysctl)
	}
	for _, sw := range p.Topo.Switches {
		var seed uint32
		if seeds {
			seed = HashSeed(sw.Name)
		}
		if err := writeSysctls(p.NS(sw.Name), Sysctls(true, cfg.ICMP, seed)); err != nil {
			return err
		}
	}
	if err := writeSysctls(p.MgmtNS(), Sysctls(false, cfg.ICMP, 0)); err != nil {
		return err
	}

	// Links live inside namespaces only: they go when the namespaces go.
	batch.Reset()
	for i, link := range p.Topo.Links {
		fmt.Fprintf(&batch, "link add name %s netns %s type veth peer name %s netns %s\n", IfName(i), p.NS(link.A), IfName(i), p.NS(link.B))
	}
	mgmt := fmt.Sprintf("link add %s type bridge\nlink set %s up\naddr replace %s/%d dev %s\nlink set lo up\n",
		MgmtBridge, MgmtBridge, MgmtServerAddr, MgmtPrefix.Bits(), MgmtBridge)
	if err := ipBatch(ctx, p.MgmtNS(), mgmt); err != nil {
		return err
	}
	for _, h := range p.Topo.Hosts {
		fmt.Fprintf(&batch, "link add name %s netns %s type veth peer name %s netns %s\n", MgmtHostIf, p.NS(h.Name), p.MgmtIfName(h.Name), p.MgmtNS())
	}
	if err := ipBatch(ctx, "", batch.String()); err != nil {
		return err
	}
	batch.Reset()
	for _, h := range p.Topo.Hosts {
		fmt.Fprintf(&batch, "link set %s master %s\nlink set %s up\n", p.MgmtIfName(h.Name), MgmtBridge, p.MgmtIfName(h.Name))
	}
	if err := ipBatch(ctx, p.MgmtNS(), batch.String()); err != nil {
		return err
	}
	for _, e := range p.elements() {
		if err := l.configure(ctx, e); err != nil {
			return err
		}
	}
	l.logf("fabric up: %d namespaces, %d links", len(all), len(p.Topo.Links))

	// The server on the management network, its UI forwarded to loopback.
	mgmtHTTP := netip.AddrPortFrom(MgmtServerAddr, mgmtHTTPPort).String()
	s.NATSURL = "nats://" + netip.AddrPortFrom(MgmtServerAddr, mgmtNATSPort).String()
	// The management network is a bridge inside the lab that only the
	// lab's namespaces reach, hence plaintext on it.
	args := append([]string{"server", "--insecure-plaintext", "--topology", topoFile, "--data-dir", filepath.Join(s.Dir, "server"),
		"--http-addr", mgmtHTTP, "--nats-addr", netip.AddrPortFrom(MgmtServerAddr, mgmtNATSPort).String()}, cfg.ServerArgs...)
	if err := l.start("server", p.MgmtNS(), args...); err != nil {
		return err
	}
	if err := l.start("ui-forward", "", "lab", "forward", "--dir", s.Dir, "--netns", p.MgmtNS(), "--listen", cfg.UIAddr, "--to", mgmtHTTP); err != nil {
		return err
	}
	forward := s.Procs[len(s.Procs)-1]
	line, err := waitLogLine(ctx, forward, forwardingPrefix, 30*time.Second)
	if err != nil {
		return err
	}
	s.UIURL = "http://" + strings.TrimPrefix(line, forwardingPrefix) + "/"
	server := s.Procs[len(s.Procs)-2]
	if err := waitHTTP(ctx, s.UIURL+"readyz", time.Minute, func() bool { return server.alive() && forward.alive() }); err != nil {
		return fmt.Errorf("lab: server not ready through %s: %w (logs: %s, %s)", s.UIURL, err, server.Log, forward.Log)
	}
	if cfg.Agents {
		for _, h := range p.Topo.Hosts {
			if err := l.start("agent-"+h.Name, p.NS(h.Name), "agent", "--insecure-plaintext", "--host", h.Name, "--nats-url", s.NATSURL,
				"--spool-dir", filepath.Join(s.Dir, "spool", h.Name)); err != nil {
				return err
			}
		}
	}
	s.Ready = true
	return s.save()
}

// elements lists every host and switch.
func (p *Plan) elements() []string {
	var out []string
	for _, h := range p.Topo.Hosts {
		out = append(out, h.Name)
	}
	for _, s := range p.Topo.Switches {
		out = append(out, s.Name)
	}
	return out
}

// configure brings one element's namespace to the state its faults ask
// for: links, addresses, routes and nftables.
func (l *Lab) configure(ctx context.Context, element string) error {
	down := l.Plan.downLinks(l.State.Faults)
	script, err := l.Plan.ConfigBatch(element, down)
	if err != nil {
		return err
	}
	ns := l.Plan.NS(element)
	if err := ipBatch(ctx, ns, script); err != nil {
		return err
	}
	nft := l.Plan.NFTables(element, l.State.Faults)
	if nft == "" {
		nft = NFTDelete
	}
	return runIn(ctx, nft, "ip", "netns", "exec", ns, "nft", "-f", "-")
}

// start runs the meshlens binary detached (its own session, so a Ctrl-C
// of `lab up` does not reach it), inside ns unless ns is empty, and
// records its pid at once.
func (l *Lab) start(name, ns string, args ...string) error {
	s := l.State
	logDir := filepath.Join(s.Dir, "logs")
	if err := os.MkdirAll(logDir, 0o750); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	logFile := filepath.Join(logDir, name+".log")
	f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	defer f.Close()
	argv := append([]string{s.Binary}, args...)
	if ns != "" {
		argv = append([]string{"ip", "netns", "exec", ns}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("lab: start %s: %w", name, err)
	}
	// `ip netns exec` execs the program, so this pid is meshlens's own.
	s.Procs = append(s.Procs, Proc{Name: name, NS: ns, Pid: cmd.Process.Pid, Marker: s.Dir, Log: logFile})
	go func() { _ = cmd.Wait() }() // reap it if it dies while we run
	return s.save()
}

// intact says whether every namespace and process of the lab is there.
func (s *State) intact() bool {
	for _, ns := range s.Namespaces {
		if !nsExists(ns) {
			return false
		}
	}
	for _, p := range s.Procs {
		if !p.alive() {
			return false
		}
	}
	return true
}

// Down removes what the lab in dir created: its processes (by pid), then
// its namespaces (with their links and nft tables). Nothing to remove is
// no error.
func Down(dir string, out io.Writer) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return err
	}
	defer unlock()
	s, err := loadState(dir)
	if err != nil {
		return err
	}
	if s == nil {
		if out != nil {
			fmt.Fprintf(out, "no lab in %s: nothing to remove\n", dir)
		}
		return nil
	}
	return teardown(s, out)
}

func teardown(s *State, out io.Writer) error {
	procs := slices.Clone(s.Procs)
	for _, r := range s.Relays {
		procs = append(procs, Proc{Pid: r.Pid, Marker: s.Dir})
	}
	stopProcs(procs, 10*time.Second)
	var errs []error
	removed := 0
	for _, ns := range slices.Backward(s.Namespaces) {
		if !nsExists(ns) {
			continue
		}
		if err := runIn(context.Background(), "", "ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
			continue
		}
		removed++
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, name := range []string{stateFile, "topology.yaml", "server", "spool"} {
		if err := os.RemoveAll(filepath.Join(s.Dir, name)); err != nil {
			return fmt.Errorf("lab: %w", err)
		}
	}
	if out != nil {
		fmt.Fprintf(out, "lab %s down: %d processes ended, %d namespaces removed (logs kept in %s)\n",
			s.ID, len(procs), removed, filepath.Join(s.Dir, "logs"))
	}
	return nil
}

// Open loads the lab in dir for a fault or status command; release ends
// the command's hold on the directory.
func Open(dir string, out io.Writer) (l *Lab, release func(), err error) {
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("lab: %w", err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, nil, err
	}
	s, err := loadState(dir)
	if err == nil && (s == nil || !s.Ready) {
		err = fmt.Errorf("lab: no lab is up in %s (run meshlens lab up)", dir)
	}
	if err != nil {
		unlock()
		return nil, nil, err
	}
	t, err := topology.Load(filepath.Join(dir, "topology.yaml"))
	if err != nil {
		unlock()
		return nil, nil, fmt.Errorf("lab: %w", err)
	}
	p, err := NewPlan(s.ID, t)
	if err != nil {
		unlock()
		return nil, nil, err
	}
	if s.Relays == nil {
		s.Relays = map[string]RelayState{}
	}
	return &Lab{State: s, Plan: p, out: out}, unlock, nil
}

// AddFault injects a fault (replacing one of the same kind on the same
// element). A refused request changes nothing.
func (l *Lab) AddFault(ctx context.Context, r FaultRequest) (Fault, error) {
	f, err := l.Plan.Resolve(r)
	if err != nil {
		return Fault{}, err
	}
	if why, ok := l.State.Unavailable[f.Kind]; ok {
		return Fault{}, fmt.Errorf("lab: %w: %s is unavailable on this kernel: %s", ErrBadFault, f.Kind, why)
	}
	old := slices.Clone(l.State.Faults)
	l.State.Faults = slices.DeleteFunc(l.State.Faults, func(g Fault) bool { return g.Kind == f.Kind && g.Element == f.Element })
	replacedLatency := len(l.State.Faults) < len(old) && f.Kind == LinkLatency
	l.State.Faults = append(l.State.Faults, f)
	if err := l.State.save(); err != nil {
		return Fault{}, err
	}
	if replacedLatency {
		if err := l.unsplice(ctx, f.Element); err != nil {
			return Fault{}, err
		}
	}
	if err := l.apply(ctx, f); err != nil {
		l.State.Faults = old
		return Fault{}, errors.Join(err, l.State.save(), l.apply(ctx, f))
	}
	return f, l.State.save()
}

// apply brings the namespaces a fault touches to the state of the faults
// in force (adding or removing it alike).
func (l *Lab) apply(ctx context.Context, f Fault) error {
	if f.Kind == LinkLatency {
		if slices.ContainsFunc(l.State.Faults, func(g Fault) bool { return g.Kind == LinkLatency && g.Element == f.Element }) {
			return l.splice(ctx, f)
		}
		return l.unsplice(ctx, f.Element)
	}
	for _, e := range l.Plan.Touches(f) {
		if err := l.configure(ctx, e); err != nil {
			return err
		}
	}
	return nil
}

// ClearFaults removes the faults on element (all faults when element is
// empty) and returns them.
func (l *Lab) ClearFaults(ctx context.Context, element string) ([]Fault, error) {
	if element != "" {
		if a, b, _, err := topology.ParseLinkName(element); err == nil {
			i, ok := l.Plan.LinkIndex(a, b)
			if !ok {
				return nil, fmt.Errorf("lab: %w: link %q is not in the topology", ErrBadFault, element)
			}
			element = l.Plan.Topo.Links[i].Name()
		} else if _, ok := l.Plan.Topo.Lookup(element); !ok {
			return nil, fmt.Errorf("lab: %w: element %q is not in the topology", ErrBadFault, element)
		}
	}
	var cleared []Fault
	l.State.Faults = slices.DeleteFunc(l.State.Faults, func(f Fault) bool {
		if element == "" || f.Element == element {
			cleared = append(cleared, f)
			return true
		}
		return false
	})
	if err := l.State.save(); err != nil {
		return nil, err
	}
	var errs []error
	for _, f := range cleared {
		errs = append(errs, l.apply(ctx, f))
	}
	return cleared, errors.Join(errs...)
}

// splice puts a delay relay into a link: the veth pair A|B becomes A|ra
// and rb|B with ra and rb in the relay namespace, and `meshlens lab relay`
// copies frames between ra and rb after the delay. The outer ends keep
// their names and addresses, and routes are put back.
func (l *Lab) splice(ctx context.Context, f Fault) error {
	p, s := l.Plan, l.State
	a, b, _, _ := topology.ParseLinkName(f.Element)
	i, _ := p.LinkIndex(a, b)
	if _, ok := s.Relays[f.Element]; !ok {
		if !nsExists(p.RelayNS()) {
			if !slices.Contains(s.Namespaces, p.RelayNS()) {
				s.Namespaces = append(s.Namespaces, p.RelayNS())
				if err := s.save(); err != nil {
					return err
				}
			}
			if err := ipBatch(ctx, "", "netns add "+p.RelayNS()+"\n"); err != nil {
				return err
			}
			if err := writeSysctls(p.RelayNS(), []string{"net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"}); err != nil {
				return err
			}
		}
		if err := ipBatch(ctx, p.NS(a), "link del "+IfName(i)+"\n"); err != nil {
			return err
		}
		ra, rb := relayIf(i, "a"), relayIf(i, "b")
		if err := ipBatch(ctx, "", fmt.Sprintf("link add name %s netns %s type veth peer name %s netns %s\nlink add name %s netns %s type veth peer name %s netns %s\n",
			IfName(i), p.NS(a), ra, p.RelayNS(), IfName(i), p.NS(b), rb, p.RelayNS())); err != nil {
			return err
		}
		if err := ipBatch(ctx, p.RelayNS(), fmt.Sprintf("link set %s up\nlink set %s up\n", ra, rb)); err != nil {
			return err
		}
	} else {
		// A new delay on a spliced link: a new relay process.
		stopProcs([]Proc{{Pid: s.Relays[f.Element].Pid, Marker: s.Dir}}, 5*time.Second)
		delete(s.Relays, f.Element)
	}
	ab, ba := f.Add, f.Add
	switch f.Direction {
	case AToB:
		ba = 0
	case BToA:
		ab = 0
	}
	n := len(s.Procs)
	if err := l.start("relay-"+IfName(i), p.RelayNS(), "lab", "relay", "--dir", s.Dir, "--a", relayIf(i, "a"), "--b", relayIf(i, "b"),
		"--delay-ab", ab.String(), "--delay-ba", ba.String()); err != nil {
		return err
	}
	// Relays are kept apart from the lab's standing processes.
	relay := s.Procs[n]
	s.Relays[f.Element] = RelayState{Link: i, Pid: relay.Pid}
	s.Procs = s.Procs[:n]
	if err := s.save(); err != nil {
		return err
	}
	if _, err := waitLogLine(ctx, relay, relayReady, 10*time.Second); err != nil {
		return err
	}
	for _, e := range []string{a, b} {
		if err := l.configure(ctx, e); err != nil {
			return err
		}
	}
	return nil
}

// unsplice ends a link's relay and joins its ends again.
func (l *Lab) unsplice(ctx context.Context, link string) error {
	p, s := l.Plan, l.State
	r, ok := s.Relays[link]
	if !ok {
		return nil
	}
	stopProcs([]Proc{{Pid: r.Pid, Marker: s.Dir}}, 5*time.Second)
	a, b, _, _ := topology.ParseLinkName(link)
	i := r.Link
	for _, e := range []string{a, b} {
		if err := ipBatch(ctx, p.NS(e), "link del "+IfName(i)+"\n"); err != nil {
			return err
		}
	}
	if err := ipBatch(ctx, "", fmt.Sprintf("link add name %s netns %s type veth peer name %s netns %s\n", IfName(i), p.NS(a), IfName(i), p.NS(b))); err != nil {
		return err
	}
	delete(s.Relays, link)
	if err := s.save(); err != nil {
		return err
	}
	for _, e := range []string{a, b} {
		if err := l.configure(ctx, e); err != nil {
			return err
		}
	}
	return nil
}

// waitLogLine polls a started process's log until a line starts with
// prefix, and returns that line.
func waitLogLine(ctx context.Context, p Proc, prefix string, total time.Duration) (string, error) {
	deadline := time.Now().Add(total)
	for {
		data, _ := os.ReadFile(p.Log)
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(line, prefix) {
				return line, nil
			}
		}
		if !p.alive() {
			return "", fmt.Errorf("lab: %s exited before it was ready: %s", p.Name, bytes.TrimSpace(data))
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("lab: %s not ready after %s: %s", p.Name, total, bytes.TrimSpace(data))
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func relayIf(i int, end string) string { return fmt.Sprintf("r%d%s", i, end) }

// ipBatch runs an ip(8) batch script, in namespace ns unless it is empty.
func ipBatch(ctx context.Context, ns, script string) error {
	if script == "" {
		return nil
	}
	args := []string{"-batch", "-"}
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	return runIn(ctx, script, "ip", args...)
}

func runIn(ctx context.Context, stdin string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("lab: %s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// writeSysctls sets sysctls inside ns by writing /proc/sys from a thread
// in that namespace (net.* entries are per namespace).
func writeSysctls(ns string, kv []string) error {
	return InNetns(ns, func() error {
		for _, s := range kv {
			k, v, _ := strings.Cut(s, "=")
			path := "/proc/sys/" + strings.ReplaceAll(k, ".", "/")
			if err := os.WriteFile(path, []byte(v), 0o644); err != nil {
				return fmt.Errorf("lab: %s: sysctl %s: %w", ns, s, err)
			}
		}
		return nil
	})
}

// checkKernel tries, in a scratch namespace, what each fault kind needs.
func (l *Lab) checkKernel(ctx context.Context) (map[FaultKind]string, error) {
	ns := l.Plan.CheckNS()
	l.State.Namespaces = append(l.State.Namespaces, ns)
	if err := l.State.save(); err != nil {
		return nil, err
	}
	if err := ipBatch(ctx, "", "netns add "+ns+"\n"); err != nil {
		return nil, err
	}
	out := map[FaultKind]string{}
	nft := func(kinds []FaultKind, what, rule string) {
		script := "table inet meshlens_check {\n\tchain forward {\n\t\ttype filter hook forward priority 0; policy accept;\n\t\t" + rule + "\n\t}\n}\n"
		if err := runIn(ctx, script, "ip", "netns", "exec", ns, "nft", "-f", "-"); err != nil {
			for _, k := range kinds {
				out[k] = what + ": " + err.Error()
			}
		}
	}
	nft([]FaultKind{LinkLoss, DeviceLoss, HostNIC}, "nftables numgen random", "numgen random mod 10000 < 5000 counter drop")
	nft([]FaultKind{Blackhole}, "nftables source-port mask", "meta l4proto { tcp, udp } th sport & 1023 < 512 counter drop")
	nft([]FaultKind{DeviceDown}, "nftables drop", "counter drop")
	if err := ipBatch(ctx, ns, "link add c0 type veth peer name c1\nlink set c0 down\nlink set c0 up\n"); err != nil {
		out[LinkDown] = "veth link state: " + err.Error()
		out[LinkLatency] = "veth: " + err.Error()
	}
	if err := InNetns(ns, CheckPacketSockets); err != nil {
		out[LinkLatency] = "delay relay: " + err.Error()
	}
	if err := runIn(ctx, "", "ip", "netns", "del", ns); err != nil {
		return nil, err
	}
	l.State.Namespaces = slices.DeleteFunc(l.State.Namespaces, func(n string) bool { return n == ns })
	return out, l.State.save()
}

// waitHTTP polls url until it answers 200, giving up early when the
// process behind it has exited.
func waitHTTP(ctx context.Context, url string, total time.Duration, running func() bool) error {
	deadline := time.Now().Add(total)
	client := &http.Client{Timeout: 2 * time.Second}
	var last error
	for time.Now().Before(deadline) {
		if !running() {
			return errors.New("the server or the UI forwarder exited")
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return last
}

// ProcStatus is a process of the lab and whether it still runs.
type ProcStatus struct {
	Proc
	Running bool `json:"running"`
}

// Status is what `lab status` shows.
type Status struct {
	ID          string               `json:"id"`
	Dir         string               `json:"dir"`
	UIURL       string               `json:"ui_url"`
	NATSURL     string               `json:"nats_url"`
	Namespaces  []string             `json:"namespaces"`
	Procs       []ProcStatus         `json:"processes"`
	Faults      []Fault              `json:"faults"`
	Unavailable map[FaultKind]string `json:"unavailable_fault_kinds,omitempty"`
}

// Status reports the lab as it is now.
func (l *Lab) Status() Status {
	s := l.State
	st := Status{ID: s.ID, Dir: s.Dir, UIURL: s.UIURL, NATSURL: s.NATSURL, Faults: s.Faults, Unavailable: s.Unavailable, Namespaces: []string{}}
	for _, ns := range s.Namespaces {
		if nsExists(ns) {
			st.Namespaces = append(st.Namespaces, ns)
		}
	}
	for _, p := range s.Procs {
		st.Procs = append(st.Procs, ProcStatus{Proc: p, Running: p.alive()})
	}
	for name, r := range s.Relays {
		p := Proc{Name: "relay " + name, NS: l.Plan.RelayNS(), Pid: r.Pid, Marker: s.Dir}
		st.Procs = append(st.Procs, ProcStatus{Proc: p, Running: p.alive()})
	}
	if st.Faults == nil {
		st.Faults = []Fault{}
	}
	return st
}
