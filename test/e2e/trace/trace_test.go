// Package trace is the end-to-end test of the agent's Paris traceroute on
// real packets through real kernel routing: a chain of network namespaces
//
//	h1 ── r1 ── r2 ── h2
//	       └── h3
//
// (veth pairs, addresses from 198.18.0.0/15, forwarding routers answering
// time-exceeded from the interface the packet came in on, no ICMP rate
// limit), traced from inside h1 over TCP and UDP. Needs root (as CI is).
package trace

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/sys/unix"

	"github.com/meshlens/meshlens/internal/probe"
	"github.com/meshlens/meshlens/internal/testkit"
	"github.com/meshlens/meshlens/internal/wire"
	"github.com/meshlens/meshlens/test/e2e/e2eutil"
)

// The chain's addresses: each link its own /24.
var (
	h1   = netip.MustParseAddr("198.18.1.1")
	r1h1 = netip.MustParseAddr("198.18.1.2") // r1, facing h1
	r2r1 = netip.MustParseAddr("198.18.2.2") // r2, facing r1
	h2   = netip.MustParseAddr("198.18.3.2")
	h3   = netip.MustParseAddr("198.18.4.2")
	key  = []byte("trace-e2e-fleet-key-0123456789")
)

const responderPort = 7777

type chain struct {
	prefix string
	ns     map[string]string // role -> namespace name
}

// ip runs ip(8) and fails the test on error.
func run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func newChain(t testing.TB) *chain {
	t.Helper()
	e2eutil.Require(t, "ip", "nft")
	if os.Geteuid() != 0 {
		t.Fatal("this suite needs root (network namespaces, raw sockets), as CI runs it")
	}
	c := &chain{prefix: fmt.Sprintf("mlt-%d-", os.Getpid()), ns: map[string]string{}}
	for _, role := range []string{"h1", "r1", "r2", "h2", "h3"} {
		name := c.prefix + role
		run(t, "ip", "netns", "add", name)
		c.ns[role] = name
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v\n%s", name, err, out)
			}
		})
		c.exec(t, role, "ip", "link", "set", "lo", "up")
		for _, s := range []string{"net.ipv4.icmp_ratelimit=0", "net.ipv4.icmp_errors_use_inbound_ifaddr=1"} {
			c.exec(t, role, "sysctl", "-qw", s)
		}
	}
	// link: a (in role A, addr aAddr) -- b (in role B, addr bAddr), /24.
	link := func(a, aIf, aAddr, b, bIf, bAddr string) {
		run(t, "ip", "link", "add", aIf, "netns", c.ns[a], "type", "veth", "peer", "name", bIf, "netns", c.ns[b])
		c.exec(t, a, "ip", "addr", "add", aAddr+"/24", "dev", aIf)
		c.exec(t, b, "ip", "addr", "add", bAddr+"/24", "dev", bIf)
		c.exec(t, a, "ip", "link", "set", aIf, "up")
		c.exec(t, b, "ip", "link", "set", bIf, "up")
	}
	link("h1", "eth0", "198.18.1.1", "r1", "to-h1", "198.18.1.2")
	link("r1", "to-r2", "198.18.2.1", "r2", "to-r1", "198.18.2.2")
	link("r2", "to-h2", "198.18.3.1", "h2", "eth0", "198.18.3.2")
	link("r1", "to-h3", "198.18.4.1", "h3", "eth0", "198.18.4.2")
	for _, r := range []string{"r1", "r2"} {
		c.exec(t, r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	}
	c.exec(t, "h1", "ip", "route", "add", "default", "via", "198.18.1.2")
	c.exec(t, "h2", "ip", "route", "add", "default", "via", "198.18.3.1")
	c.exec(t, "h3", "ip", "route", "add", "default", "via", "198.18.4.1")
	c.exec(t, "r1", "ip", "route", "add", "198.18.3.0/24", "via", "198.18.2.2")
	c.exec(t, "r2", "ip", "route", "add", "default", "via", "198.18.2.1")
	return c
}

// filter adds an nftables table with one chain on hook (input, forward)
// to role's namespace, removed when the test ends, and a rule made of
// match; the table is named after prefix and this process.
func (c *chain) filter(t testing.TB, role, prefix, hook string, match ...string) {
	t.Helper()
	table := fmt.Sprintf("%s%d", prefix, os.Getpid())
	c.exec(t, role, "nft", "add", "table", "ip", table)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "exec", c.ns[role], "nft", "delete", "table", "ip", table).CombinedOutput(); err != nil {
			t.Errorf("nft delete table %s: %v\n%s", table, err, out)
		}
	})
	c.exec(t, role, "nft", "add", "chain", "ip", table, "mltchain", "{ type filter hook "+hook+" priority 0 ; policy accept ; }")
	c.exec(t, role, append([]string{"nft", "add", "rule", "ip", table, "mltchain"}, match...)...)
}

func (c *chain) exec(t testing.TB, role string, args ...string) {
	t.Helper()
	run(t, "ip", append([]string{"netns", "exec", c.ns[role]}, args...)...)
}

// in runs f on an OS thread moved into role's namespace: sockets f opens
// live there for good. The thread goes back to the test's namespace after.
func (c *chain) in(t testing.TB, role string, f func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open("/var/run/netns/" + c.ns[role])
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", role, err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// The thread stays locked and dies with this goroutine.
			errc <- fmt.Errorf("back from %s: %w", role, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// env is the chain with a tracer in h1 and a responder in h2 and h3.
type env struct {
	*chain
	tracer *probe.Tracer
	udp    *probe.UDPProber
	reg    *prometheus.Registry
	ctx    context.Context
}

func newEnv(t testing.TB, hopTimeout time.Duration) *env {
	return newEnvQueries(t, hopTimeout, 0)
}

// newEnvQueries is newEnv with the tracer sending a silent TTL up to
// queries times (0: the default).
func newEnvQueries(t testing.TB, hopTimeout time.Duration, queries int) *env {
	c := newChain(t)
	e := &env{chain: c, reg: prometheus.NewRegistry()}
	ctx, cancel := context.WithCancel(context.Background())
	e.ctx = ctx
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	start := func(f func(context.Context) error) {
		wg.Add(1)
		go func() { defer wg.Done(); f(ctx) }()
	}
	for _, role := range []string{"h2", "h3"} {
		c.in(t, role, func() error {
			r, err := probe.NewResponder(probe.ResponderConfig{Addr: fmt.Sprintf("0.0.0.0:%d", responderPort), Keys: [][]byte{key}})
			if err == nil {
				start(r.Run)
			}
			return err
		})
	}
	c.in(t, "h1", func() error {
		var err error
		if e.udp, err = probe.NewUDPProber(probe.UDPProberConfig{Key: key}); err != nil {
			return err
		}
		start(e.udp.Run)
		e.tracer, err = probe.NewTracer(probe.TracerConfig{MaxTTL: 6, HopTimeout: hopTimeout, InFlight: 3, Queries: queries, UDPEcho: e.udp, Registerer: e.reg})
		if err == nil {
			start(e.tracer.Run)
		}
		return err
	})
	return e
}

func (e *env) trace(proto wire.Protocol, srcPort uint16, dst netip.Addr, dstPort uint16) (probe.TraceResult, error) {
	return e.tracer.Trace(e.ctx, probe.TraceFlow{Protocol: proto,
		Src: netip.AddrPortFrom(netip.IPv4Unspecified(), srcPort), Dst: netip.AddrPortFrom(dst, dstPort)}, 0)
}

func (e *env) dropped(t testing.TB, reason string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "meshlens_trace_answers_dropped_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelIs(m, "reason", reason) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func labelIs(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

func hops(as ...netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = wire.UnknownHop
		if a.IsValid() {
			s[i] = a.String()
		}
	}
	return strings.Join(s, " ")
}

func check(t *testing.T, name string, got probe.TraceResult, err error, want string, reached bool) {
	t.Helper()
	if err != nil {
		t.Errorf("%s: %v", name, err)
		return
	}
	if g := strings.Join(got.HopStrings(), " "); g != want || got.Reached != reached {
		t.Errorf("%s: hops %q reached %v, want %q reached %v", name, g, got.Reached, want, reached)
	}
	if got.Src != h1 {
		t.Errorf("%s: traced from %v, want %v", name, got.Src, h1)
	}
}

func TestTraceChain(t *testing.T) {
	e := newEnv(t, time.Second)
	toH2 := hops(r1h1, r2r1, h2)
	cases := []struct {
		name    string
		proto   wire.Protocol
		dstPort uint16
		dst     netip.Addr
		want    string
	}{
		// The responder's listener answers SYN-ACK; h1's kernel resets it.
		{"tcp to the responder", wire.Protocol_PROTOCOL_TCP, responderPort, h2, toH2},
		// A closed port answers RST.
		{"tcp to a closed port", wire.Protocol_PROTOCOL_TCP, 9, h2, toH2},
		// The responder answers the signed echo that reaches it.
		{"udp echo to the responder", wire.Protocol_PROTOCOL_UDP, responderPort, h2, toH2},
		// A closed port answers ICMP port unreachable.
		{"udp to a closed port", wire.Protocol_PROTOCOL_UDP, 9, h2, toH2},
		{"tcp to the near host", wire.Protocol_PROTOCOL_TCP, responderPort, h3, hops(r1h1, h3)},
	}
	for _, c := range cases {
		res, err := e.trace(c.proto, 40001, c.dst, c.dstPort)
		check(t, c.name, res, err, c.want, true)
	}
}

// TestTraceConcurrent runs many traces at once, of the same 5-tuple and
// of others with paths of other lengths: each must see exactly its own
// path.
func TestTraceConcurrent(t *testing.T) {
	e := newEnv(t, time.Second)
	type job struct {
		proto wire.Protocol
		sport uint16
		dst   netip.Addr
		want  string
	}
	var jobs []job
	for i := range 12 {
		proto := wire.Protocol_PROTOCOL_TCP
		if i%2 == 1 {
			proto = wire.Protocol_PROTOCOL_UDP
		}
		dst, want := h2, hops(r1h1, r2r1, h2)
		if i%3 == 2 {
			dst, want = h3, hops(r1h1, h3)
		}
		// Ports repeat: several traces of one 5-tuple are in flight at once.
		jobs = append(jobs, job{proto, uint16(40000 + i%4), dst, want})
	}
	var wg sync.WaitGroup
	results := make([]probe.TraceResult, len(jobs))
	errs := make([]error, len(jobs))
	for i, j := range jobs {
		wg.Add(1)
		go func() { defer wg.Done(); results[i], errs[i] = e.trace(j.proto, j.sport, j.dst, responderPort) }()
	}
	wg.Wait()
	for i, j := range jobs {
		check(t, fmt.Sprintf("trace %d (%v %d -> %v)", i, j.proto, j.sport, j.dst), results[i], errs[i], j.want, true)
	}
	if n := e.tracer.Pending(); n != 0 {
		t.Errorf("%d trace packets still pending after every trace ended", n)
	}
}

// TestTraceQueries: h1 drops every other time-exceeded r2 sends it (an
// nftables counter), so the first query of TTL 2 goes unanswered. With one
// query per TTL the hop is silent; with the default three it is answered
// by the second, as traceroute's queries per hop answer through a lossy
// link.
func TestTraceQueries(t *testing.T) {
	for _, tc := range []struct {
		queries int
		want    string
	}{
		{1, hops(r1h1, netip.Addr{}, h2)},
		{0, hops(r1h1, r2r1, h2)}, // the default: DefaultTraceQueries
	} {
		t.Run(fmt.Sprintf("queries=%d", tc.queries), func(t *testing.T) {
			e := newEnvQueries(t, 300*time.Millisecond, tc.queries)
			e.filter(t, "h1", "mlt", "input", "ip", "saddr", r2r1.String(), "icmp", "type", "time-exceeded", "numgen", "inc", "mod", "2", "0", "drop")
			res, err := e.trace(wire.Protocol_PROTOCOL_TCP, 40077, h2, responderPort)
			check(t, "tcp through r2 answering every other time", res, err, tc.want, true)
		})
	}
}

// TestTraceDroppedForwarding: r2 drops what it should forward to h2 (an
// nftables rule); the trace goes silent after r2, the last hop that
// answers. Meanwhile r1 sprays spoofed time-exceeded packets quoting the
// traced flow with wrong sequence numbers: each is dropped and counted,
// and the trace is not fooled.
func TestTraceDroppedForwarding(t *testing.T) {
	e := newEnv(t, time.Second)
	e.filter(t, "r2", "mlt", "forward", "ip", "daddr", h2.String(), "drop")

	// The spoofer's raw socket lives in r1.
	var spoofFD int
	e.in(t, "r1", func() error {
		var err error
		spoofFD, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
		return err
	})
	t.Cleanup(func() { unix.Close(spoofFD) })

	const spoofs = 40
	for _, proto := range []wire.Protocol{wire.Protocol_PROTOCOL_TCP, wire.Protocol_PROTOCOL_UDP} {
		mismatched, unmatched := e.dropped(t, probe.DropMismatched), e.dropped(t, probe.DropUnmatched)
		type out struct {
			res probe.TraceResult
			err error
		}
		done := make(chan out, 1)
		go func() { r, err := e.trace(proto, 40123, h2, responderPort); done <- out{r, err} }()
		// TTLs 3.. wait for their timeout: spoof them meanwhile.
		testkit.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
			if e.tracer.Pending() < 2 {
				return fmt.Errorf("%d trace packets pending", e.tracer.Pending())
			}
			return nil
		})
		// A fresh tracer numbers its packets from IP ID 1: ids 1..40 cover
		// both traces' packets (in flight ones among them), and 40 packets
		// do not overflow the ICMP socket's receive buffer on a busy machine.
		for id := 1; id <= spoofs; id++ {
			pkt := spoofedTimeExceeded(proto, 40123, uint16(id))
			if err := unix.Sendto(spoofFD, pkt, 0, &unix.SockaddrInet4{Addr: h1.As4()}); err != nil {
				t.Fatalf("spoof: %v", err)
			}
		}
		o := <-done
		check(t, fmt.Sprintf("%v through the dropping r2", proto), o.res, o.err, hops(r1h1, r2r1, netip.Addr{}), false)
		// The silent tail is where the path goes dark: each TTL sent once,
		// not the queries of a gap.
		if o.res.Sent != 6 {
			t.Errorf("%v: %d trace packets sent, want 6 (TTLs 1..6 once each)", proto, o.res.Sent)
		}
		testkit.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
			m, u := e.dropped(t, probe.DropMismatched)-mismatched, e.dropped(t, probe.DropUnmatched)-unmatched
			if m < 1 || m+u < spoofs {
				return fmt.Errorf("%v: %v spoofs counted mismatched, %v unmatched; want >= 1 mismatched, %d in all", proto, m, u, spoofs)
			}
			return nil
		})
	}
}

// spoofedTimeExceeded is an ICMP time-exceeded (ICMP part only: the
// kernel adds the IP header) quoting a packet of the traced flow
// h1:sport -> h2:responderPort with IP ID id and a TCP sequence number or
// UDP checksum no trace packet had.
func spoofedTimeExceeded(proto wire.Protocol, sport, id uint16) []byte {
	m := make([]byte, 8+20+8)
	m[0] = 11
	q := m[8:]
	q[0] = 0x45
	binary.BigEndian.PutUint16(q[2:4], 28)
	binary.BigEndian.PutUint16(q[4:6], id)
	q[8] = 1
	q[9] = 6
	if proto == wire.Protocol_PROTOCOL_UDP {
		q[9] = 17
	}
	copy(q[12:16], h1.AsSlice())
	copy(q[16:20], h2.AsSlice())
	binary.BigEndian.PutUint16(q[20:22], sport)
	binary.BigEndian.PutUint16(q[22:24], responderPort)
	binary.BigEndian.PutUint32(q[24:28], 0xdeadbeef)
	var sum uint32
	for i := 0; i < len(m); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(m[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(m[2:4], ^uint16(sum))
	return m
}

// BenchmarkTrace measures what one trace costs the tracing host: CPU
// (user+system of this process, which also runs h2's responder: an upper
// bound) and packets, tracing h1 -> h2 (3 hops, reached) over TCP and UDP.
func BenchmarkTrace(b *testing.B) {
	e := newEnv(b, time.Second)
	for _, proto := range []wire.Protocol{wire.Protocol_PROTOCOL_TCP, wire.Protocol_PROTOCOL_UDP} {
		b.Run(strings.ToLower(strings.TrimPrefix(proto.String(), "PROTOCOL_")), func(b *testing.B) {
			var ru0, ru1 unix.Rusage
			unix.Getrusage(unix.RUSAGE_SELF, &ru0)
			packets := 0
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				res, err := e.trace(proto, uint16(40000+i%1000), h2, responderPort)
				if err != nil || !res.Reached {
					b.Fatalf("trace: %v reached=%v", err, res.Reached)
				}
				packets += res.Sent
			}
			b.StopTimer()
			unix.Getrusage(unix.RUSAGE_SELF, &ru1)
			cpu := time.Duration(ru1.Utime.Nano()-ru0.Utime.Nano()) + time.Duration(ru1.Stime.Nano()-ru0.Stime.Nano())
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/trace")
			b.ReportMetric(float64(packets)/float64(b.N), "packets/trace")
		})
	}
}
