// Package testkit is the scaffolding every test shares: the one poll
// helper (never sleep and hope). An in-process NATS server for tests is
// bus/bustest's StartNATS; end-to-end suites add theirs in test/e2e/e2eutil.
//
// Only tests import it (production code must never), and it imports
// nothing of meshlens, so that any package's tests can use it without an
// import cycle.
package testkit

import (
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"
)

// CheckFor calls fn every sleep until it returns nil; once total has
// passed it fails the test with fn's last error. It has the shape of
// nats-server's checkFor: fn says why the condition does not hold yet, so
// a timeout reports what was last seen, not only that time ran out.
func CheckFor(t testing.TB, total, sleep time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	var err error
	for {
		if err = fn(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(sleep) // the poll interval, not a wait for an outcome
	}
	t.Fatalf("not within %v: %v", total, err)
}

// FixedPort returns a port free a moment ago for TCP and UDP on every one
// of ips, for the one thing that cannot be given port 0 and read back: a
// port that must be known before anything binds it, such as the responder
// port a pinglist names for a whole fleet, or NATS cluster routes that
// name each other. It is drawn from 20000-29999, below Linux's ephemeral
// range (32768-60999), so no socket bound to port 0 by any process can
// take it between here and the bind; what remains is a process binding
// that same port explicitly on one of ips in between, and the bind then
// fails loudly. Give ips addresses only the test uses (127.x.y.z of its
// own) and that is nobody.
func FixedPort(t testing.TB, ips ...string) int {
	t.Helper()
	if len(ips) == 0 {
		ips = []string{"127.0.0.1"}
	}
	handedMu.Lock()
	defer handedMu.Unlock()
	for range 100 {
		port := 20000 + rand.IntN(10000)
		// Never the same port twice in one test binary: a test asking for
		// several (a NATS cluster's) has not bound the first when it asks
		// for the next.
		if !handed[port] && portFree(port, ips) {
			handed[port] = true
			return port
		}
	}
	t.Fatalf("testkit: no free port in 20000-29999 on %v", ips)
	return 0
}

// LoopbackAddr is "127.0.0.1:PORT" with a FixedPort: for a process
// (meshlens, Prometheus, Alertmanager) that must be told its listen
// address and cannot report back the port :0 gave it.
func LoopbackAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FixedPort(t)))
}

var (
	handedMu sync.Mutex
	handed   = map[int]bool{}
)

func portFree(port int, ips []string) bool {
	for _, ip := range ips {
		addr := net.JoinHostPort(ip, strconv.Itoa(port))
		l, err := net.Listen("tcp4", addr)
		if err != nil {
			return false
		}
		l.Close()
		pc, err := net.ListenPacket("udp4", addr)
		if err != nil {
			return false
		}
		pc.Close()
	}
	return true
}
