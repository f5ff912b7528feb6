// Package lab tests meshlens lab on real packets: it builds a fabric of
// network namespaces with the meshlens binary, sends traffic between host
// namespaces, injects every fault kind and measures what it does. Needs
// root. Everything a test creates is removed when it ends, on failure too.
package lab

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/meshlens/meshlens/internal/lab"
	"github.com/meshlens/meshlens/internal/localize"
	"github.com/meshlens/meshlens/internal/testkit"
	"github.com/meshlens/meshlens/test/e2e/e2eutil"
)

// Lab is a lab brought up by the meshlens binary for one test.
type Lab struct {
	Bin, Dir, ID string
	Status       lab.Status
	// seen are the distinct verdicts the helpers read, oldest first (the
	// last 64): what a failed wait shows of how the verdicts went.
	seen []verdict
}

// requireRoot fails (never skips): the suite is meaningless without root.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the lab suite needs root: it creates network namespaces, veth links and nftables rules")
	}
	e2eutil.Require(t, "ip", "nft")
}

// netnsWithPrefix lists the namespaces whose names start with prefix.
func netnsWithPrefix(t *testing.T, prefix string) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], prefix) {
			names = append(names, f[0])
		}
	}
	return names
}

// rootLinks lists the root namespace's interfaces: the lab must add none.
func rootLinks(t *testing.T) []string {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, i := range ifs {
		names = append(names, i.Name)
	}
	slices.Sort(names)
	return names
}

// upLab runs `meshlens lab up` with args and registers its teardown, which
// also checks that down left no namespace, process or root link behind.
func upLab(t *testing.T, args ...string) *Lab {
	t.Helper()
	requireRoot(t)
	l := &Lab{Bin: e2eutil.Binary(t), Dir: t.TempDir(), ID: fmt.Sprintf("e%d", rand.IntN(1e6))}
	if left := netnsWithPrefix(t, l.ID+"-"); len(left) > 0 {
		t.Fatalf("namespaces %v exist before the test", left)
	}
	linksBefore := rootLinks(t)
	t.Cleanup(func() {
		out, err := l.run("down")
		if err != nil {
			t.Errorf("lab down: %v\n%s", err, out)
		}
		if left := netnsWithPrefix(t, l.ID+"-"); len(left) > 0 {
			t.Errorf("lab down left namespaces %v", left)
		}
		for _, p := range l.Status.Procs {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d/cmdline", p.Pid)); err == nil {
				if cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.Pid)); strings.Contains(string(cmd), l.Dir) {
					t.Errorf("lab down left process %s (pid %d) running", p.Name, p.Pid)
				}
			}
		}
		if after := rootLinks(t); !slices.Equal(after, linksBefore) {
			t.Errorf("root namespace links changed: before %v, after %v", linksBefore, after)
		}
		if t.Failed() {
			for _, name := range []string{"server.log", "agent-dc1-pod1-rack1-h01.log"} {
				data, _ := os.ReadFile(l.Dir + "/logs/" + name)
				t.Logf("---- %s (tail) ----\n%s", name, tailOf(string(data), 3000))
			}
		}
	})
	out, err := l.run(append([]string{"up", "--id", l.ID, "--ui-addr", "127.0.0.1:0"}, args...)...)
	if err != nil {
		t.Fatalf("lab up: %v\n%s", err, out)
	}
	t.Logf("lab up:\n%s", out)
	l.refresh(t)
	return l
}

func tailOf(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// run runs a lab subcommand on this lab's directory.
func (l *Lab) run(args ...string) (string, error) {
	args = append([]string{"lab"}, args...)
	args = append(args, "--dir", l.Dir)
	out, err := exec.Command(l.Bin, args...).CombinedOutput()
	return string(out), err
}

// refresh reads `lab status --json`.
func (l *Lab) refresh(t *testing.T) {
	t.Helper()
	out, err := l.run("status", "--json")
	if err != nil {
		t.Fatalf("lab status: %v\n%s", err, out)
	}
	if err := json.Unmarshal([]byte(out), &l.Status); err != nil {
		t.Fatalf("lab status --json: %v\n%s", err, out)
	}
}

// ServerURL is the server's HTTP API and UI, reached from the test. The
// detection tests poll ServerURL()+"api/v1/suspects" after a fault.
func (l *Lab) ServerURL() string { return l.Status.UIURL }

// NS is the namespace of a topology element.
func (l *Lab) NS(element string) string { return l.ID + "-" + element }

// Fault injects a fault through the CLI; it fails the test on error.
func (l *Lab) Fault(t *testing.T, args ...string) {
	t.Helper()
	out, err := l.run(append([]string{"fault", "add"}, args...)...)
	if err != nil {
		t.Fatalf("lab fault add %v: %v\n%s", args, err, out)
	}
}

// Clear clears the faults on element through the CLI.
func (l *Lab) Clear(t *testing.T, element string) {
	t.Helper()
	out, err := l.run("fault", "clear", element)
	if err != nil {
		t.Fatalf("lab fault clear %s: %v\n%s", element, err, out)
	}
}

// hostAddr reads a host's fabric address from its namespace (the lab's
// own view, not the plan's: the test checks what the kernel has).
func (l *Lab) hostAddr(t *testing.T, host string) netip.Addr {
	t.Helper()
	var addr netip.Addr
	err := lab.InNetns(l.NS(host), func() error {
		ifs, err := net.Interfaces()
		if err != nil {
			return err
		}
		for _, i := range ifs {
			addrs, _ := i.Addrs()
			for _, a := range addrs {
				if p, err := netip.ParsePrefix(a.String()); err == nil && lab.HostPrefix.Contains(p.Addr()) {
					addr = p.Addr()
				}
			}
		}
		return nil
	})
	if err != nil || !addr.IsValid() {
		t.Fatalf("%s: no fabric address (%v)", host, err)
	}
	return addr
}

// echoPort is where the test's UDP echo listens: 7700 & 1023 = 532, so
// replies are never in a blackhole's share of source ports (< 512 at 0.5).
const echoPort = 7700

// echo runs a UDP echo server in host's namespace until the test ends.
func (l *Lab) echo(t *testing.T, host string) netip.AddrPort {
	t.Helper()
	ap := netip.AddrPortFrom(l.hostAddr(t, host), echoPort)
	var conn *net.UDPConn
	if err := lab.InNetns(l.NS(host), func() error {
		var err error
		conn, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(ap))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = conn.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	return ap
}

// sink runs a TCP server in host's namespace that reads a stream to its
// end and answers with the byte count it read.
func (l *Lab) sink(t *testing.T, host string, port uint16) netip.AddrPort {
	t.Helper()
	ap := netip.AddrPortFrom(l.hostAddr(t, host), port)
	var ln *net.TCPListener
	if err := lab.InNetns(l.NS(host), func() error {
		var err error
		ln, err = net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(ap))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(time.Minute))
				n, _ := io.Copy(io.Discard, c)
				fmt.Fprintf(c, "%d", n)
			}()
		}
	}()
	return ap
}

// send streams size bytes from host's namespace to a sink and returns the
// count the sink read.
func (l *Lab) send(t *testing.T, host string, dst netip.AddrPort, size int) (int64, error) {
	t.Helper()
	var c *net.TCPConn
	if err := lab.InNetns(l.NS(host), func() error {
		var err error
		c, err = net.DialTCP("tcp4", nil, net.TCPAddrFromAddrPort(dst))
		return err
	}); err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	if _, err := c.Write(make([]byte, size)); err != nil {
		return 0, err
	}
	if err := c.CloseWrite(); err != nil {
		return 0, err
	}
	reply, err := io.ReadAll(c)
	if err != nil {
		return 0, err
	}
	var n int64
	_, err = fmt.Sscan(string(reply), &n)
	return n, err
}

// probeResult is one UDP round trip.
type probeResult struct {
	SrcPort  int
	Answered bool
	RTT      time.Duration
}

// probeBatch bounds the datagrams in flight at once, so that a burst
// never overflows a socket buffer: lost must mean the fault dropped it.
const probeBatch = 100

// probe sends one UDP datagram per source port from host's namespace to
// dst (each its own flow, so ECMP spreads them) and waits up to timeout
// for each echo. Port 0 means an ephemeral port.
func (l *Lab) probe(t *testing.T, host string, dst netip.AddrPort, ports []int, timeout time.Duration) []probeResult {
	t.Helper()
	var out []probeResult
	for len(ports) > 0 {
		n := min(len(ports), probeBatch)
		out = append(out, l.probeOnce(t, host, dst, ports[:n], timeout)...)
		ports = ports[n:]
	}
	return out
}

func (l *Lab) probeOnce(t *testing.T, host string, dst netip.AddrPort, ports []int, timeout time.Duration) []probeResult {
	t.Helper()
	src := l.hostAddr(t, host)
	conns := make([]*net.UDPConn, 0, len(ports))
	if err := lab.InNetns(l.NS(host), func() error {
		for _, p := range ports {
			c, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, uint16(p))), net.UDPAddrFromAddrPort(dst))
			if errors.Is(err, syscall.ENETUNREACH) {
				c = nil // no route (a link down): the probe is lost
			} else if err != nil {
				for _, c := range conns {
					c.Close()
				}
				return err
			}
			conns = append(conns, c)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	out := make([]probeResult, len(ports))
	sent := make([]time.Time, len(ports))
	for i, c := range conns {
		if c == nil {
			out[i].SrcPort = ports[i]
			continue
		}
		defer c.Close()
		out[i].SrcPort = c.LocalAddr().(*net.UDPAddr).Port
		sent[i] = time.Now()
		if _, err := c.Write([]byte(fmt.Sprintf("probe %d", i))); err != nil {
			continue // e.g. no route while a link is down: lost
		}
	}
	// Each echo is awaited on its own, so that a lost one does not hold
	// up reading the others past the deadline.
	deadline := time.Now().Add(timeout)
	var wg sync.WaitGroup
	for i, c := range conns {
		if c == nil {
			continue
		}
		wg.Go(func() {
			buf := make([]byte, 64)
			_ = c.SetReadDeadline(deadline)
			if n, err := c.Read(buf); err == nil && string(buf[:n]) == fmt.Sprintf("probe %d", i) {
				out[i].Answered, out[i].RTT = true, time.Since(sent[i])
			}
		})
	}
	wg.Wait()
	return out
}

// lossOf is the share of unanswered probes.
func lossOf(rs []probeResult) float64 {
	lost := 0
	for _, r := range rs {
		if !r.Answered {
			lost++
		}
	}
	return float64(lost) / float64(len(rs))
}

// ports returns n source ports starting at first.
func ports(first, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = first + i
	}
	return out
}

// spineCounters installs a test table in each spine counting the test's
// probes (UDP to echoPort) and returns a reader of the counts.
func (l *Lab) spineCounters(t *testing.T, spines []string) func() map[string]int {
	t.Helper()
	script := fmt.Sprintf("table inet meshlens_test {\n\tchain forward {\n\t\ttype filter hook forward priority -10; policy accept;\n\t\tudp dport %d counter\n\t}\n}\n", echoPort)
	for _, s := range spines {
		cmd := exec.Command("ip", "netns", "exec", l.NS(s), "nft", "-f", "-")
		cmd.Stdin = strings.NewReader(script)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: nft: %v: %s", s, err, out)
		}
		t.Cleanup(func() {
			_ = exec.Command("ip", "netns", "exec", l.NS(s), "nft", "delete", "table", "inet", "meshlens_test").Run()
		})
	}
	return func() map[string]int {
		out := map[string]int{}
		for _, s := range spines {
			data, err := exec.Command("ip", "netns", "exec", l.NS(s), "nft", "-j", "list", "table", "inet", "meshlens_test").Output()
			if err != nil {
				t.Fatalf("%s: nft list: %v", s, err)
			}
			var doc struct {
				Nftables []struct {
					Rule *struct {
						Expr []map[string]json.RawMessage `json:"expr"`
					} `json:"rule"`
				} `json:"nftables"`
			}
			if err := json.Unmarshal(data, &doc); err != nil {
				t.Fatal(err)
			}
			for _, item := range doc.Nftables {
				if item.Rule == nil {
					continue
				}
				for _, e := range item.Rule.Expr {
					if c, ok := e["counter"]; ok {
						var counter struct{ Packets int }
						_ = json.Unmarshal(c, &counter)
						out[s] += counter.Packets
					}
				}
			}
		}
		return out
	}
}

// eventuallyLoss polls until a fresh probe round's loss satisfies ok.
func (l *Lab) eventuallyLoss(t *testing.T, what string, host string, dst netip.AddrPort, n int, ok func(float64) bool) float64 {
	t.Helper()
	var loss float64
	testkit.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		loss = lossOf(l.probe(t, host, dst, make([]int, n), time.Second))
		if !ok(loss) {
			return fmt.Errorf("%s: loss %.3f", what, loss)
		}
		return nil
	})
	return loss
}

// suspects reads the server's latest verdict.
func (l *Lab) suspects() (verdict, error) {
	var doc struct {
		Data verdict `json:"data"`
	}
	err := e2eutil.GetJSON(l.ServerURL()+"api/v1/suspects", &doc)
	if err == nil && !doc.Data.End.IsZero() && (len(l.seen) == 0 || !l.seen[len(l.seen)-1].End.Equal(doc.Data.End)) {
		if l.seen = append(l.seen, doc.Data); len(l.seen) > 64 {
			l.seen = l.seen[1:]
		}
	}
	return doc.Data, err
}

// LogVerdicts logs the verdicts read since since (shown with -v or when
// t fails).
func (l *Lab) LogVerdicts(t *testing.T, since time.Time) {
	t.Helper()
	var b strings.Builder
	for _, v := range l.seen {
		if !v.End.Before(since) {
			fmt.Fprintf(&b, "\n\t%v", v)
		}
	}
	t.Logf("verdicts read since %s:%s", since.Format(time.TimeOnly), b.String())
}

// verdict is what /api/v1/suspects serves.
type verdict struct {
	Start, End time.Time
	Suspects   []localize.Suspect
}

// blamed lists the verdict's suspects that blame the network or a host,
// not an agent starved of CPU.
func (v verdict) blamed() []localize.Suspect {
	var out []localize.Suspect
	for _, s := range v.Suspects {
		if s.Symptom != localize.SymptomAgentSlow {
			out = append(out, s)
		}
	}
	return out
}

func (v verdict) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "window %s..%s:", v.Start.Format(time.TimeOnly), v.End.Format(time.TimeOnly))
	for _, s := range v.Suspects {
		fmt.Fprintf(&b, " %s (%s %s %.3g, %d anomalies)", s.Element, s.Kind, s.Symptom, s.Estimate, s.Evidence.Anomalous)
	}
	if len(v.Suspects) == 0 {
		b.WriteString(" nothing blamed")
	}
	return b.String()
}

// WaitBlamed polls the server's verdicts until one blames any of elements
// and returns that suspect.
func (l *Lab) WaitBlamed(t *testing.T, elements []string, within time.Duration) localize.Suspect {
	t.Helper()
	return l.WaitBlamedAs(t, elements, "", within)
}

// WaitBlamedAs is WaitBlamed for a blame with the given symptom ("": any).
func (l *Lab) WaitBlamedAs(t *testing.T, elements []string, symptom localize.Symptom, within time.Duration) localize.Suspect {
	t.Helper()
	var got localize.Suspect
	testkit.CheckFor(t, within, time.Second, func() error {
		v, err := l.suspects()
		if err != nil {
			return err
		}
		for _, s := range v.blamed() {
			if slices.Contains(elements, s.Element) && (symptom == "" || s.Symptom == symptom) {
				got = s
				return nil
			}
		}
		return fmt.Errorf("none of %v blamed %s yet; latest %v", elements, cmp.Or(string(symptom), "at all"), v)
	})
	return got
}

// WaitClean polls until the verdict of a window that starts at since or
// later blames nothing (a window sealed early may still be one from
// before a fault was cleared).
func (l *Lab) WaitClean(t *testing.T, since time.Time, within time.Duration) {
	t.Helper()
	testkit.CheckFor(t, within, time.Second, func() error {
		v, err := l.suspects()
		if err != nil {
			return err
		}
		if v.End.IsZero() || v.Start.Before(since) {
			return fmt.Errorf("no window since %s localized yet; latest %v", since.Format(time.TimeOnly), v)
		}
		if b := v.blamed(); len(b) > 0 {
			return fmt.Errorf("still blamed: %v", v)
		}
		return nil
	})
}

// incident is what /api/v1/incidents serves of one incident.
type incident struct {
	ID     string `json:"id"`
	State  string `json:"state"`
	Blamed *struct {
		Element string `json:"element"`
	} `json:"blamed"`
	Alerts []map[string]string `json:"alerts"`
}

// WaitIncident polls until the localizer's own incident (no SLO in the
// lab) on any of elements is in state (open, resolved), and returns it;
// only incidents detected after since count.
func (l *Lab) WaitIncident(t *testing.T, elements []string, state string, since time.Time, within time.Duration) incident {
	t.Helper()
	var got incident
	testkit.CheckFor(t, within, time.Second, func() error {
		var doc struct {
			Data []struct {
				incident
				Detected time.Time `json:"detected"`
			} `json:"data"`
		}
		if err := e2eutil.GetJSON(l.ServerURL()+"api/v1/incidents", &doc); err != nil {
			return err
		}
		for _, inc := range doc.Data {
			if inc.Blamed != nil && slices.Contains(elements, inc.Blamed.Element) && !inc.Detected.Before(since) &&
				len(inc.Alerts) > 0 && inc.Alerts[0]["alertname"] == "MeshlensFaultSuspected" {
				if inc.State != state {
					return fmt.Errorf("incident %s on %s is %s, want %s", inc.ID, inc.Blamed.Element, inc.State, state)
				}
				got = inc.incident
				return nil
			}
		}
		return fmt.Errorf("no incident of the localizer's on %v since %s", elements, since.Format(time.TimeOnly))
	})
	return got
}

// hop sends one UDP datagram from host to dst with the given source port
// and TTL, and returns the address that answered time-exceeded (read from
// the socket's error queue, as a Paris traceroute does), or an invalid
// address when none answered within a second.
func (l *Lab) hop(t *testing.T, host string, dst netip.AddrPort, sport, ttl int) netip.Addr {
	t.Helper()
	src := l.hostAddr(t, host)
	var fd int
	if err := lab.InNetns(l.NS(host), func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	for _, o := range [][2]int{{unix.IP_RECVERR, 1}, {unix.IP_TTL, ttl}} {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, o[0], o[1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: src.As4(), Port: sport}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Sendto(fd, []byte("hop"), 0, &unix.SockaddrInet4{Addr: dst.Addr().As4(), Port: int(dst.Port())}); err != nil {
		t.Fatal(err)
	}
	var from netip.Addr
	deadline := time.Now().Add(time.Second)
	buf, oob := make([]byte, 512), make([]byte, 512)
	for !from.IsValid() && time.Now().Before(deadline) {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLERR}}
		if n, _ := unix.Poll(pfd, 100); n <= 0 {
			continue
		}
		_, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
		if err != nil {
			continue
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			// sock_extended_err (16 bytes: errno, origin, type, code, pad,
			// info, data), then the offender's sockaddr_in.
			if m.Header.Level != unix.IPPROTO_IP || m.Header.Type != unix.IP_RECVERR || len(m.Data) < 16+8 {
				continue
			}
			origin, icmpType := m.Data[4], m.Data[5]
			if origin == unix.SO_EE_ORIGIN_ICMP && icmpType == 11 {
				from = netip.AddrFrom4([4]byte(m.Data[16+4 : 16+8]))
			}
		}
	}
	return from
}
