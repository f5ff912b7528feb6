// Command agent-bench measures the agent's probing footprint beside fping.
//
// It runs three processes side by side for a bounded time: a responder on
// 0.0.0.0 answering every 127.x address, an agent probing N peers
// (127.2.x.y) every interval over tcp and/or udp through the real
// scheduler, probers and batch encoding (no NATS: publishing is measured
// elsewhere), and fping probing the same addresses at the same period.
// It reads each process's CPU (utime+stime, /proc/PID/stat) and peak RSS
// (VmHWM, /proc/PID/status) and prints a table.
//
//	go run ./bench/agent -peers 2500 -interval 10s -duration 60s
//
// Traffic stays on loopback. Linux only.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/meshlens/meshlens/internal/probe"
	"github.com/meshlens/meshlens/internal/wire"
)

var (
	role      = flag.String("role", "bench", "bench (orchestrate), responder or agent")
	peers     = flag.Int("peers", 2500, "number of peers (127.2.x.y)")
	interval  = flag.Duration("interval", 10*time.Second, "probe interval per peer and protocol")
	duration  = flag.Duration("duration", 60*time.Second, "how long to measure")
	protocols = flag.String("protocols", "tcp,udp", "agent protocols")
	port      = flag.Int("port", 17946, "responder port")
	timeout   = flag.Duration("timeout", time.Second, "probe timeout")
	withFping = flag.Bool("fping", true, "run fping beside the agent")
	cpuProf   = flag.String("cpuprofile", "", "agent role: write a CPU profile here")
	verbose   = flag.Bool("v", false, "agent role: print each batch's scheduling lag")
	slot      = flag.Duration("resolution", 0, "agent role: scheduler resolution (0: the scheduler's default)")
)

var benchKey = []byte("meshlens benchmark fleet key 0123456789")

func main() {
	flag.Parse()
	var err error
	switch *role {
	case "responder":
		err = runResponder()
	case "agent":
		err = runAgent()
	case "bench":
		err = runBench()
	default:
		err = fmt.Errorf("unknown role %q", *role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent-bench:", err)
		os.Exit(1)
	}
}

func peerAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, 2, byte(i / 250), byte(i%250 + 1)})
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
}

func runResponder() error {
	ctx, cancel := signalContext()
	defer cancel()
	r, err := probe.NewResponder(probe.ResponderConfig{
		Addr: fmt.Sprintf("0.0.0.0:%d", *port), Keys: [][]byte{benchKey},
		// One agent probes 2,500 addresses of this one responder from one
		// source address: lift the per-source limits meant for a fleet.
		RatePerSource: 1e6, BurstPerSource: 1e6, MaxConnsPerSource: 1 << 16, MaxConns: 1 << 16,
	})
	if err != nil {
		return err
	}
	return r.Run(ctx)
}

// agentReport is what the agent role prints when stopped.
type agentReport struct {
	Probes map[string]int64 `json:"probes"`
	// Errors counts the local errors (OUTCOME_ERROR) by message.
	Errors   map[string]int64  `json:"errors,omitempty"`
	RTT      map[string]string `json:"rtt_p50_p99"`
	Batches  int               `json:"batches"`
	Bytes    int               `json:"bytes"`
	LagP99Ms float64           `json:"lag_p99_ms"`
	LagMaxMs float64           `json:"lag_max_ms"`
}

func runAgent() error {
	ctx, cancel := signalContext()
	defer cancel()
	if *cpuProf != "" {
		f, err := os.Create(*cpuProf)
		if err != nil {
			return err
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	udp, err := probe.NewUDPProber(probe.UDPProberConfig{Key: benchKey})
	if err != nil {
		return err
	}
	tcp, err := probe.NewTCPProber(probe.TCPProberConfig{})
	if err != nil {
		return err
	}
	var (
		mu     sync.Mutex
		batch  []*wire.ProbeResult
		counts = map[string]*atomic.Int64{}
		// rttByProto keeps every OK probe's rtt: bounded by the run.
		rttByProto = map[string][]time.Duration{}
		report     agentReport
		targets    []probe.Target
	)
	for _, o := range wire.Outcome_name {
		counts[o] = new(atomic.Int64)
	}
	sched := probe.NewScheduler(probe.SchedulerConfig{
		Resolution: *slot,
		Probers:    map[wire.Protocol]probe.Prober{wire.Protocol_PROTOCOL_TCP: tcp, wire.Protocol_PROTOCOL_UDP: udp},
		Report: func(r *wire.ProbeResult) {
			counts[r.Outcome.String()].Add(1)
			mu.Lock()
			batch = append(batch, r)
			if r.Outcome == wire.Outcome_OUTCOME_ERROR {
				if report.Errors == nil {
					report.Errors = map[string]int64{}
				}
				report.Errors[r.Error]++
			}
			if r.Outcome == wire.Outcome_OUTCOME_OK {
				rttByProto[r.Protocol.String()] = append(rttByProto[r.Protocol.String()], time.Duration(r.RttNs))
			}
			mu.Unlock()
		},
	})
	for i := range *peers {
		for _, p := range strings.Split(*protocols, ",") {
			t := probe.Target{Name: fmt.Sprintf("peer%04d", i), Addr: netip.AddrPortFrom(peerAddr(i), uint16(*port)), Timeout: *timeout}
			switch p {
			case "tcp":
				t.Protocol = wire.Protocol_PROTOCOL_TCP
			case "udp":
				t.Protocol = wire.Protocol_PROTOCOL_UDP
			default:
				return fmt.Errorf("protocol %q", p)
			}
			targets = append(targets, t)
		}
	}
	sched.SetTargets(targets, *interval)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); udp.Run(ctx) }()
	go func() { defer wg.Done(); tcp.Run(ctx) }()
	go func() { defer wg.Done(); sched.Run(ctx) }()
	// Seal a batch every 5 s as the agent does, encoding it for real.
	seal := func() {
		mu.Lock()
		b := batch
		batch = nil
		mu.Unlock()
		if len(b) == 0 {
			return
		}
		lag := sched.TakeLag()
		if *verbose {
			fmt.Fprintf(os.Stderr, "batch %d: %d results, lag p50 %v p99 %v max %v\n", report.Batches+1, len(b),
				time.Duration(lag.P50Ns), time.Duration(lag.P99Ns), time.Duration(lag.MaxNs))
		}
		report.Batches++
		report.LagP99Ms = max(report.LagP99Ms, float64(lag.P99Ns)/1e6)
		report.LagMaxMs = max(report.LagMaxMs, float64(lag.MaxNs)/1e6)
		for len(b) > 0 {
			n := min(len(b), 5000)
			data, err := wire.Encode(&wire.Batch{Agent: "bench", Epoch: 1, Seq: uint64(report.Batches), Results: b[:n], SchedulingLag: lag})
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
			}
			report.Bytes += len(data)
			b = b[n:]
		}
	}
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
			seal()
		}
	}
	wg.Wait()
	seal()
	report.RTT = map[string]string{}
	for proto, rtts := range rttByProto {
		slices.Sort(rtts)
		if len(rtts) > 0 {
			report.RTT[proto] = fmt.Sprintf("%v / %v", rtts[len(rtts)/2], rtts[len(rtts)*99/100])
		}
	}
	report.Probes = map[string]int64{}
	for o, c := range counts {
		if n := c.Load(); n > 0 {
			report.Probes[o] = n
		}
	}
	return json.NewEncoder(os.Stdout).Encode(report)
}

// procStat is one process's CPU and memory so far.
type procStat struct {
	cpu   time.Duration // utime + stime
	hwmKB int64
}

func readProc(pid int) (procStat, error) {
	var st procStat
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return st, err
	}
	// Fields after the command name, which may contain spaces.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	stt, _ := strconv.ParseInt(f[12], 10, 64)
	const clkTck = 100 // USER_HZ on every Linux architecture we run on
	st.cpu = time.Duration(ut+stt) * time.Second / clkTck
	s, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return st, err
	}
	sc := bufio.NewScanner(strings.NewReader(string(s)))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			st.hwmKB, _ = strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	return st, nil
}

type child struct {
	name string
	cmd  *exec.Cmd
	out  strings.Builder
	err  strings.Builder
}

func start(name string, args ...string) (*child, error) {
	c := &child{name: name, cmd: exec.Command(args[0], args[1:]...)}
	c.cmd.Stdout, c.cmd.Stderr = &c.out, &c.err
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return c, nil
}

func (c *child) stop(sig syscall.Signal) error {
	c.cmd.Process.Signal(sig)
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		c.cmd.Process.Kill()
		<-done
		return fmt.Errorf("%s did not stop in 20s; killed", c.name)
	}
}

func runBench() error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	common := []string{fmt.Sprintf("-port=%d", *port), fmt.Sprintf("-peers=%d", *peers)}
	resp, err := start("responder", append([]string{self, "-role=responder"}, common...)...)
	if err != nil {
		return err
	}
	defer resp.stop(syscall.SIGTERM)
	// Wait for the responder to listen.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.2.0.1:%d", *port))
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("responder not listening: %v: %s", err, resp.err.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	children := []*child{}
	agent, err := start("meshlens agent ("+*protocols+")", append([]string{self, "-role=agent",
		"-interval=" + interval.String(), "-protocols=" + *protocols, "-resolution=" + slot.String(), "-timeout=" + timeout.String()}, common...)...)
	if err != nil {
		return err
	}
	children = append(children, agent)
	var fp *child
	if *withFping {
		list := filepath.Join(os.TempDir(), fmt.Sprintf("agent-bench-targets-%d", os.Getpid()))
		var sb strings.Builder
		for i := range *peers {
			fmt.Fprintln(&sb, peerAddr(i))
		}
		if err := os.WriteFile(list, []byte(sb.String()), 0o600); err != nil {
			return err
		}
		defer os.Remove(list)
		// -i: gap between any two pings; small enough that a round of all
		// targets fits well inside the period.
		gap := max(1, int(interval.Milliseconds())/(*peers)/2)
		fp, err = start("fping (icmp)", "fping", "-l", "-q", "-p", strconv.FormatInt(interval.Milliseconds(), 10),
			"-i", strconv.Itoa(gap), "-t", strconv.FormatInt(timeout.Milliseconds(), 10), "-f", list)
		if err != nil {
			return err
		}
		children = append(children, fp)
	}
	began := time.Now()
	fmt.Fprintf(os.Stderr, "measuring %d peers every %v for %v ...\n", *peers, *interval, *duration)
	time.Sleep(*duration)
	elapsed := time.Since(began)
	stats := map[*child]procStat{}
	for _, c := range append(children, resp) {
		st, err := readProc(c.cmd.Process.Pid)
		if err != nil {
			return fmt.Errorf("%s: %w (stderr: %s)", c.name, err, c.err.String())
		}
		stats[c] = st
	}
	for _, c := range children {
		if err := c.stop(syscall.SIGINT); err != nil && c == agent {
			return fmt.Errorf("agent: %w (stderr: %s)", err, c.err.String())
		}
	}
	var rep agentReport
	if err := json.Unmarshal([]byte(agent.out.String()), &rep); err != nil {
		return fmt.Errorf("agent report %q: %w (stderr: %s)", agent.out.String(), err, agent.err.String())
	}
	var agentProbes int64
	for _, n := range rep.Probes {
		agentProbes += n
	}
	probes := map[*child]float64{agent: float64(agentProbes)}
	if fp != nil {
		probes[fp] = fpingSent(fp.err.String())
		if probes[fp] == 0 {
			// No summary: count what fping was asked to send.
			probes[fp] = float64(*peers) * elapsed.Seconds() / interval.Seconds()
		}
	}
	probes[resp] = float64(agentProbes) // answered on the other side

	fmt.Printf("%d peers, every %v, %v measured, %d cores\n\n", *peers, *interval, elapsed.Round(time.Second), numCPU())
	fmt.Printf("| %-26s | %8s | %10s | %12s | %12s |\n", "tool", "probes/s", "CPU % core", "CPU µs/probe", "peak RSS MB")
	fmt.Printf("|%s|%s|%s|%s|%s|\n", strings.Repeat("-", 28), strings.Repeat("-", 10), strings.Repeat("-", 12), strings.Repeat("-", 14), strings.Repeat("-", 14))
	for _, c := range append(children, resp) {
		st := stats[c]
		name := c.name
		if c == resp {
			name = "meshlens responder"
		}
		n := probes[c]
		fmt.Printf("| %-26s | %8.1f | %10.2f | %12.1f | %12.1f |\n", name, n/elapsed.Seconds(),
			100*st.cpu.Seconds()/elapsed.Seconds(), float64(st.cpu.Microseconds())/max(n, 1), float64(st.hwmKB)/1024)
	}
	fmt.Printf("\nagent rtt p50 / p99 %v\n", rep.RTT)
	fmt.Printf("agent outcomes %v, %d batches (%d bytes encoded), scheduling lag p99 %.2f ms, max %.2f ms\n",
		rep.Probes, rep.Batches, rep.Bytes, rep.LagP99Ms, rep.LagMaxMs)
	for msg, n := range rep.Errors {
		fmt.Printf("agent local error %q: %d\n", msg, n)
	}
	return nil
}

// fpingSent sums xmt over fping's per-target summary ("addr : xmt/rcv/%loss = 6/6/0%").
func fpingSent(stderr string) float64 {
	var total float64
	for _, line := range strings.Split(stderr, "\n") {
		_, rest, ok := strings.Cut(line, "xmt/rcv/%loss = ")
		if !ok {
			continue
		}
		xmt, _, _ := strings.Cut(rest, "/")
		n, _ := strconv.Atoi(strings.TrimSpace(xmt))
		total += float64(n)
	}
	return total
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}
