//go:build linux

package probe

import (
	"bufio"
	"context"
	"errors"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/meshlens/meshlens/internal/testkit"
	"github.com/meshlens/meshlens/internal/wire"
)

// fullListener is a listening socket with a backlog of 0 that never
// accepts: once one connection waits in its queue, the kernel drops every
// further SYN, as a congested or black-holing path would.
type fullListener struct {
	fd   int
	addr netip.AddrPort
}

func newFullListener(t *testing.T, ip string) *fullListener {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: netip.MustParseAddr(ip).As4()}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	l := &fullListener{fd: fd, addr: addrPortOf(sa)}
	// Fill the queue.
	p := startTCPProber(t, TCPProberConfig{})
	if r := p.Probe(context.Background(), Target{Name: "fill", Protocol: wire.Protocol_PROTOCOL_TCP, Addr: l.addr, Timeout: time.Second}); r.Outcome != wire.Outcome_OUTCOME_OK {
		t.Fatalf("filling the accept queue: %v %s", r.Outcome, r.Error)
	}
	return l
}

// acceptOne frees the queue.
func (l *fullListener) acceptOne(t *testing.T) {
	nfd, _, err := unix.Accept(l.fd)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(nfd)
}

// listenDrops reads the kernel's count of SYNs dropped on full queues.
func listenDrops(t *testing.T) int64 {
	f, err := os.Open("/proc/net/netstat")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		names := strings.Fields(sc.Text())
		if !sc.Scan() {
			break
		}
		values := strings.Fields(sc.Text())
		for i, n := range names {
			if n == "ListenOverflows" && i < len(values) {
				v, _ := strconv.ParseInt(values[i], 10, 64)
				return v
			}
		}
	}
	t.Fatal("no ListenOverflows in /proc/net/netstat")
	return 0
}

// startTCPProber runs a tcp prober until the test ends.
func startTCPProber(t *testing.T, cfg TCPProberConfig) *TCPProber {
	t.Helper()
	p, err := NewTCPProber(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("tcp prober Run: %v", err)
		}
	})
	return p
}

func TestTCPProbeOutcomes(t *testing.T) {
	r, _ := startResponder(t, ResponderConfig{Addr: "127.0.0.41:0"})
	closedPort := func() netip.AddrPort {
		// A port where nothing listens: bind a socket, note it, close it.
		fd, _ := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 42}})
		sa, _ := unix.Getsockname(fd)
		unix.Close(fd)
		return addrPortOf(sa)
	}()
	tests := []struct {
		name  string
		local string
		addr  func(t *testing.T) netip.AddrPort
		want  wire.Outcome
	}{
		{"ok", "127.0.0.43", func(*testing.T) netip.AddrPort { return r.Addr() }, wire.Outcome_OUTCOME_OK},
		{"ok unbound source", "", func(*testing.T) netip.AddrPort { return r.Addr() }, wire.Outcome_OUTCOME_OK},
		{"refused", "127.0.0.43", func(*testing.T) netip.AddrPort { return closedPort }, wire.Outcome_OUTCOME_REFUSED},
		{"syn dropped until timeout", "127.0.0.43", func(t *testing.T) netip.AddrPort { return newFullListener(t, "127.0.0.44").addr }, wire.Outcome_OUTCOME_LOST},
		{"local error", "192.0.2.1", func(*testing.T) netip.AddrPort { return r.Addr() }, wire.Outcome_OUTCOME_ERROR},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := TCPProberConfig{}
			if tc.local != "" {
				cfg.Local = netip.MustParseAddr(tc.local)
			}
			p := startTCPProber(t, cfg)
			addr := tc.addr(t)
			res := p.Probe(context.Background(), Target{Name: "peer", Protocol: wire.Protocol_PROTOCOL_TCP, Addr: addr, Timeout: 200 * time.Millisecond})
			if res.Outcome != tc.want {
				t.Fatalf("outcome %v (%s), want %v", res.Outcome, res.Error, tc.want)
			}
			if res.Dst != "peer" || res.DstAddr != addr.Addr().String() || res.DstPort != uint32(addr.Port()) {
				t.Errorf("dst %s %s:%d", res.Dst, res.DstAddr, res.DstPort)
			}
			if tc.want == wire.Outcome_OUTCOME_ERROR {
				return
			}
			// The source port is known even for a lost probe.
			if res.SrcPort == 0 || (tc.local != "" && res.SrcAddr != tc.local) {
				t.Errorf("src %s:%d", res.SrcAddr, res.SrcPort)
			}
			if tc.want == wire.Outcome_OUTCOME_OK && res.RttNs <= 0 {
				t.Errorf("rtt %d", res.RttNs)
			}
		})
	}
}

func TestTCPFreshSourcePortEachProbe(t *testing.T) {
	r, _ := startResponder(t, ResponderConfig{Addr: "127.0.0.45:0"})
	p := startTCPProber(t, TCPProberConfig{Local: netip.MustParseAddr("127.0.0.46")})
	ports := map[uint32]bool{}
	for range 20 {
		res := p.Probe(context.Background(), Target{Name: "peer", Protocol: wire.Protocol_PROTOCOL_TCP, Addr: r.Addr(), Timeout: time.Second})
		if res.Outcome != wire.Outcome_OUTCOME_OK {
			t.Fatalf("%v %s", res.Outcome, res.Error)
		}
		ports[res.SrcPort] = true
	}
	if len(ports) < 2 {
		t.Errorf("20 probes used %d source port(s)", len(ports))
	}
}

// TestTCPSynRetransmit drops the first SYN (full accept queue), frees the
// queue once the kernel has counted the drop, and lets the retransmitted
// SYN (after the 1 s initial RTO) complete the connect.
func TestTCPSynRetransmit(t *testing.T) {
	l := newFullListener(t, "127.0.0.47")
	before := listenDrops(t)
	done := make(chan *wire.ProbeResult, 1)
	p := startTCPProber(t, TCPProberConfig{})
	go func() {
		done <- p.Probe(context.Background(), Target{Name: "peer", Protocol: wire.Protocol_PROTOCOL_TCP, Addr: l.addr, Timeout: 5 * time.Second})
	}()
	testkit.CheckFor(t, 30*time.Second, 5*time.Millisecond, func() error {
		if listenDrops(t) <= before {
			return errors.New("waiting for the first SYN to be dropped")
		}
		return nil
	})
	l.acceptOne(t)
	res := <-done
	if res.Outcome != wire.Outcome_OUTCOME_SYN_RETRANSMIT || res.RttNs < int64(time.Second) {
		t.Fatalf("outcome %v rtt %v (%s), want a SYN retransmit after ≥ 1s", res.Outcome, time.Duration(res.RttNs), res.Error)
	}
}
