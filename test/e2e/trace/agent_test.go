package trace

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshlens/meshlens/internal/bus"
	"github.com/meshlens/meshlens/internal/pinglist"
	"github.com/meshlens/meshlens/internal/testkit"
	"github.com/meshlens/meshlens/internal/wire"
	"github.com/meshlens/meshlens/test/e2e/e2eutil"
)

const chainTopology = `name: trace-chain
responder_port: 7777
dcs:
  - {name: dc1}
pods:
  - {name: dc1-pod1, dc: dc1}
racks:
  - {name: dc1-pod1-rack1, pod: dc1-pod1}
  - {name: dc1-pod1-rack2, pod: dc1-pod1}
switches:
  - {name: dc1-pod1-leaf1, role: leaf, pod: dc1-pod1}
  - {name: dc1-pod1-rack1-tor, role: tor, rack: dc1-pod1-rack1}
  - {name: dc1-pod1-rack2-tor, role: tor, rack: dc1-pod1-rack2}
hosts:
  - {name: h1, addr: 198.18.1.1, rack: dc1-pod1-rack1}
  - {name: h3, addr: 198.18.4.2, rack: dc1-pod1-rack1}
  - {name: h2, addr: 198.18.3.2, rack: dc1-pod1-rack2}
links:
  - dc1-pod1-rack1-tor--dc1-pod1-leaf1
  - dc1-pod1-rack2-tor--dc1-pod1-leaf1
  - h1--dc1-pod1-rack1-tor
  - h3--dc1-pod1-rack1-tor
  - h2--dc1-pod1-rack2-tor
`

// TestAgentTracesLostProbes runs the real agent binary in h1 (its bus, a
// nats-server, in h1 too: the chain has no management network), probing
// h2 while r2 drops UDP to h2's responder: the agent traces its lost UDP
// probes' 5-tuples and publishes path reports that go silent after r2.
// Then `meshlens trace` asks that agent for traces on demand.
func TestAgentTracesLostProbes(t *testing.T) {
	e2eutil.Require(t, "nats-server")
	bin := e2eutil.Binary(t)
	e := newEnv(t, time.Second)
	dir := t.TempDir()
	e.filter(t, "r2", "mlta", "forward", "ip", "daddr", h2.String(), "udp", "dport", strconv.Itoa(responderPort), "drop")

	nc, pls := e.bus(t, dir, "127.0.0.1")
	ctx := context.Background()
	pl, err := pinglist.Encode(&pinglist.Pinglist{Host: "h1", Addr: h1.String(), Version: 1, Generated: time.Now(),
		Interval: pinglist.Duration(time.Second), Timeout: pinglist.Duration(500 * time.Millisecond), Protocols: []string{"tcp", "udp"},
		ResponderPort: responderPort, Peers: []pinglist.Peer{{Host: "h2", Addr: h2.String()}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pls.Put(ctx, "h1", pl); err != nil {
		t.Fatal(err)
	}
	reports, err := nc.SubscribeSync(bus.PathsSubject("h1"))
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	e2eutil.Start(t, "agent h1", nil, "ip", "netns", "exec", e.ns["h1"], bin, "agent", "--host", "h1",
		"--nats-url", "nats://127.0.0.1:4222", "--spool-dir", filepath.Join(dir, "spool"), "--metrics-addr", "127.0.0.1:9464",
		"--trace-max-ttl", "6", "--trace-flush", "500ms", "--log-level", "debug")

	want := hops(r1h1, r2r1, netip.Addr{})
	var seen []string
	testkit.CheckFor(t, time.Minute, 10*time.Millisecond, func() error {
		m, err := reports.NextMsg(time.Second)
		if err != nil {
			return fmt.Errorf("no path report with a lost udp probe traced to %q yet (%v; seen %q)", want, err, seen)
		}
		rep, err := wire.DecodePathReport(m.Data)
		if err != nil {
			t.Fatalf("the agent published an invalid path report: %v", err)
		}
		for _, p := range rep.Probes {
			got := strings.Join(p.Hops, " ")
			seen = append(seen, fmt.Sprintf("%v lost=%v %s reached=%v", p.Protocol, p.Lost, got, p.Reached))
			if p.Protocol == wire.Protocol_PROTOCOL_UDP && p.Lost && got == want && !p.Reached && p.Dst == "h2" &&
				p.SrcPort != 0 && p.DstPort == responderPort && p.TracedUnixNano >= started.UnixNano() && p.TracedUnixNano >= p.StartUnixNano {
				return nil
			}
		}
		return fmt.Errorf("not yet: %q", seen)
	})

	// On demand, named from the topology.
	topo := filepath.Join(dir, "topo.yaml")
	if err := os.WriteFile(topo, []byte(chainTopology), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		protocol string
		want     []string
	}{
		{"tcp", []string{`(?m)^\s+1\s+\(not in the topology\)\s+198\.18\.1\.2$`, `(?m)^\s+2\s+\(not in the topology\)\s+198\.18\.2\.2$`,
			`(?m)^\s+3\s+h2\s+198\.18\.3\.2$`, `(?m)^reached$`}},
		{"udp", []string{`(?m)^\s+2\s+\(not in the topology\)\s+198\.18\.2\.2$`, `(?m)^\s+3\s+\*$`, `(?m)^not reached`}},
	} {
		out, err := e2eutil.Run(ctx, "ip", "netns", "exec", e.ns["h1"], bin, "trace", "h1", "h2", "--agent", "127.0.0.1:9464",
			"--topology", topo, "--protocol", c.protocol)
		if err != nil {
			t.Fatalf("meshlens trace --protocol %s: %v\n%s", c.protocol, err, out)
		}
		t.Logf("meshlens trace h1 h2 --protocol %s:\n%s", c.protocol, out)
		for _, re := range c.want {
			if !regexp.MustCompile(re).MatchString(out) {
				t.Errorf("meshlens trace --protocol %s: no line matching %s in\n%s", c.protocol, re, out)
			}
		}
	}

	// The counters, from the agent's /metrics.
	metrics := e.metrics(t, "h1", "127.0.0.1:9464")
	for _, re := range []string{
		`meshlens_agent_traces_started_total\{trigger="lost"\} [1-9]`,
		`meshlens_agent_traces_started_total\{trigger="on_demand"\} 2`,
		`meshlens_agent_traces_completed_total\{reached="false"\} [1-9]`,
		`meshlens_agent_traces_completed_total\{reached="true"\} [1-9]`,
		`meshlens_agent_trace_hops_total\{answered="false"\} [1-9]`,
		`meshlens_agent_trace_packets_sent_total [1-9]`,
		`meshlens_agent_path_reports_published_total [1-9]`,
		`meshlens_agent_tracing_enabled 1`,
		`meshlens_trace_answers_dropped_total\{reason="mismatched"\} 0`,
	} {
		if !regexp.MustCompile(re).MatchString(metrics) {
			t.Errorf("agent metrics: nothing matches %s", re)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", metrics)
	}
}

// bus runs a nats-server in h1 (listening on addr, port 4222) and sets
// up what agents read: the results stream, the pinglist bucket and the
// fleet key. It returns a connection dialled from h1 and the pinglists.
func (c *chain) bus(t *testing.T, dir, addr string) (*nats.Conn, jetstream.KeyValue) {
	t.Helper()
	e2eutil.Start(t, "nats-server", nil, "ip", "netns", "exec", c.ns["h1"], "nats-server", "-js", "-a", addr, "-p", "4222",
		"-sd", filepath.Join(dir, "nats"))
	var nc *nats.Conn
	testkit.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		var err error
		// Dialled on a thread inside h1: the connection lives there.
		c.in(t, "h1", func() error {
			nc, err = nats.Connect("nats://"+addr+":4222", nats.MaxReconnects(0))
			return nil
		})
		return err
	})
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: bus.ResultsStream, Subjects: []string{bus.ResultsSubjectPrefix + ".>"}}); err != nil {
		t.Fatal(err)
	}
	pls, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bus.PinglistBucket})
	if err != nil {
		t.Fatal(err)
	}
	fleet, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bus.FleetBucket})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fleet.Put(ctx, bus.ResponderKeyKey, key); err != nil {
		t.Fatal(err)
	}
	return nc, pls
}

// metrics reads an agent's /metrics from inside role's namespace.
func (c *chain) metrics(t *testing.T, role, addr string) string {
	t.Helper()
	var out string
	c.in(t, role, func() error {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		defer conn.Close()
		fmt.Fprintf(conn, "GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n", role)
		b, err := io.ReadAll(conn)
		out = string(b)
		return err
	})
	return out
}

// TestAgentTracesRepliesBack runs real agents in h1 and h2, h1 probing h2
// over UDP while r2 drops h2's replies (UDP from its responder port): h1's
// probes are lost on the way back, where h1's own traces cannot look. h1
// asks h2 to trace the replies back (a trace-back request to h2's
// responder), and h2's agent publishes reverse traces: from h2 to h1's
// probe port, silent after r2, naming the lost probe by its port and
// start, as h1 reported them.
func TestAgentTracesRepliesBack(t *testing.T) {
	e2eutil.Require(t, "nats-server")
	bin := e2eutil.Binary(t)
	c := newChain(t)
	dir := t.TempDir()
	c.filter(t, "r2", "mltb", "forward", "ip", "saddr", h2.String(), "udp", "sport", strconv.Itoa(responderPort), "drop")
	nc, pls := c.bus(t, dir, h1.String())
	ctx := context.Background()
	for _, pl := range []*pinglist.Pinglist{
		{Host: "h1", Addr: h1.String(), Protocols: []string{"udp"}, Peers: []pinglist.Peer{{Host: "h2", Addr: h2.String()}}},
		{Host: "h2", Addr: h2.String(), Protocols: []string{"tcp"}, Peers: []pinglist.Peer{{Host: "h1", Addr: h1.String()}}},
	} {
		pl.Version, pl.Generated, pl.ResponderPort = 1, time.Now(), responderPort
		pl.Interval, pl.Timeout = pinglist.Duration(time.Second), pinglist.Duration(500*time.Millisecond)
		b, err := pinglist.Encode(pl)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pls.Put(ctx, pl.Host, b); err != nil {
			t.Fatal(err)
		}
	}
	lost, err := nc.SubscribeSync(bus.PathsSubject("h1"))
	if err != nil {
		t.Fatal(err)
	}
	back, err := nc.SubscribeSync(bus.PathsSubject("h2"))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"h1", "h2"} {
		// The chain has no management network: the bus is on h1's
		// address, plaintext inside the test's namespaces.
		e2eutil.Start(t, "agent "+h, nil, "ip", "netns", "exec", c.ns[h], bin, "agent", "--host", h,
			"--nats-url", "nats://"+h1.String()+":4222", "--insecure-plaintext", "--spool-dir", filepath.Join(dir, "spool-"+h),
			"--metrics-addr", "127.0.0.1:9464", "--trace-max-ttl", "6", "--trace-flush", "500ms", "--log-level", "debug")
	}

	// h1's lost probes, by the key a reverse trace names them with.
	type probeKey struct {
		port  uint32
		start int64
	}
	probes := map[probeKey]bool{}
	var seen []string
	testkit.CheckFor(t, time.Minute, 10*time.Millisecond, func() error {
		for {
			m, err := lost.NextMsg(10 * time.Millisecond)
			if err != nil {
				break
			}
			rep, err := wire.DecodePathReport(m.Data)
			if err != nil {
				t.Fatalf("h1 published an invalid path report: %v", err)
			}
			for _, p := range rep.Probes {
				if p.Lost && !p.Reverse {
					probes[probeKey{p.SrcPort, p.StartUnixNano}] = true
				}
			}
		}
		m, err := back.NextMsg(time.Second)
		if err != nil {
			return fmt.Errorf("no reverse trace from h2 yet (%v; seen %q)", err, seen)
		}
		rep, err := wire.DecodePathReport(m.Data)
		if err != nil {
			t.Fatalf("h2 published an invalid path report: %v", err)
		}
		want := hops(netip.MustParseAddr("198.18.3.1"), netip.Addr{})
		for _, p := range rep.Probes {
			got := strings.Join(p.Hops, " ")
			seen = append(seen, fmt.Sprintf("%s %v reverse=%v lost=%v %d->%d %s reached=%v", p.Dst, p.Protocol, p.Reverse, p.Lost, p.SrcPort, p.DstPort, got, p.Reached))
			if p.Reverse && p.Lost && p.Dst == h1.String() && p.Protocol == wire.Protocol_PROTOCOL_UDP && p.SrcPort == responderPort &&
				got == want && !p.Reached && probes[probeKey{p.DstPort, p.StartUnixNano}] {
				return nil
			}
		}
		return fmt.Errorf("not yet: %q (h1's lost probes: %d)", seen, len(probes))
	})
	for role, res := range map[string][]string{
		"h1": {`meshlens_agent_trace_backs_requested_total [1-9]`, `meshlens_agent_trace_back_errors_total 0`},
		"h2": {`meshlens_responder_trace_backs_total [1-9]`, `meshlens_agent_traces_started_total\{trigger="reverse"\} [1-9]`},
	} {
		m := c.metrics(t, role, "127.0.0.1:9464")
		for _, re := range res {
			if !regexp.MustCompile(re).MatchString(m) {
				t.Errorf("%s's metrics: nothing matches %s", role, re)
			}
		}
	}
}

// TestAgentWithoutRawSockets: the agent binary run without CAP_NET_RAW
// (root with the capability dropped from its bounding set) says once, at
// INFO, that it cannot trace, counts the probes it would have traced, and
// keeps probing. Loopback only: the agent probes 127.0.0.2, where nothing
// answers UDP, from its cached pinglist (no bus needed).
func TestAgentWithoutRawSockets(t *testing.T) {
	e2eutil.Require(t, "setpriv")
	bin := e2eutil.Binary(t)
	spool := filepath.Join(t.TempDir(), "spool")
	if err := os.MkdirAll(spool, 0o755); err != nil {
		t.Fatal(err)
	}
	port := testkit.FixedPort(t)
	pl, err := pinglist.Encode(&pinglist.Pinglist{Host: "h1", Addr: "127.0.0.1", Version: 1, Generated: time.Now(),
		Interval: pinglist.Duration(200 * time.Millisecond), Timeout: pinglist.Duration(100 * time.Millisecond), Protocols: []string{"udp"},
		ResponderPort: port, Peers: []pinglist.Peer{{Host: "h2", Addr: "127.0.0.2"}}})
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"pinglist.json": pl, "fleet.key": key} {
		if err := os.WriteFile(filepath.Join(spool, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", testkit.FixedPort(t))
	agent := e2eutil.Start(t, "agent h1 without CAP_NET_RAW", nil, "setpriv", "--bounding-set=-net_raw", "--inh-caps=-net_raw", "--",
		bin, "agent", "--host", "h1", "--nats-url", fmt.Sprintf("nats://127.0.0.1:%d", testkit.FixedPort(t)),
		"--spool-dir", spool, "--metrics-addr", metricsAddr)
	e2eutil.WaitHTTP(t, "http://"+metricsAddr+"/metrics", 30*time.Second)
	var metrics string
	testkit.CheckFor(t, 30*time.Second, 200*time.Millisecond, func() error {
		out, err := e2eutil.Run(context.Background(), "curl", "-sf", "http://"+metricsAddr+"/metrics")
		if err != nil {
			return err
		}
		metrics = out
		for _, re := range []string{
			`meshlens_agent_probes_total\{class="[a-z_]+",outcome="OUTCOME_LOST",protocol="PROTOCOL_UDP"\} ([3-9]|\d\d)`,
			`meshlens_agent_traces_skipped_total\{reason="no_privilege"\} ([3-9]|\d\d)`,
			`meshlens_agent_tracing_enabled 0`,
			`meshlens_agent_traces_started_total`,
		} {
			if re == `meshlens_agent_traces_started_total` {
				if regexp.MustCompile(re + `\{[^}]*\} [1-9]`).MatchString(out) {
					t.Fatalf("an agent without raw sockets started traces:\n%s", out)
				}
				continue
			}
			if !regexp.MustCompile(re).MatchString(out) {
				return fmt.Errorf("no %s yet", re)
			}
		}
		return nil
	})
	out, _ := e2eutil.Run(context.Background(), "curl", "-s", "-w", "%{http_code}", "http://"+metricsAddr+"/trace?dst=127.0.0.2")
	if !strings.HasSuffix(out, "503") || !strings.Contains(out, "path discovery is off") {
		t.Errorf("/trace without raw sockets: %q, want 503 saying path discovery is off", out)
	}
	agent.Stop(t)
	logs := agent.Output()
	if n := strings.Count(logs, "path discovery off: no raw sockets"); n != 1 || !strings.Contains(logs, "level=INFO msg=\"path discovery off") {
		t.Errorf("the agent said %d times at INFO that it cannot trace, want once:\n%s", n, logs)
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", metrics)
	}
}
