package agent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshlens/meshlens/internal/bus"
	"github.com/meshlens/meshlens/internal/testkit"
)

// logBuffer collects an agent's log lines (JSON) for the test to read.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// find is the first line at level or above whose message holds msg.
func (b *logBuffer) find(level slog.Level, msg string) (map[string]any, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, line := range strings.Split(b.buf.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		var l slog.Level
		if l.UnmarshalText([]byte(fmt.Sprint(rec["level"]))) == nil && l >= level && strings.Contains(fmt.Sprint(rec["msg"]), msg) {
			return rec, nil
		}
	}
	return nil, fmt.Errorf("no log line at %v or above saying %q in:\n%s", level, msg, b.buf.String())
}

func infoLogger(b *logBuffer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// TestAgentSaysBusUnreachable: with no bus at its URL, an agent says so
// at INFO or above within seconds, and /readyz's check says why.
func TestAgentSaysBusUnreachable(t *testing.T) {
	port := testkit.FixedPort(t, "127.0.0.1") // free: nothing listens there
	logs := &logBuffer{}
	a := startAgent(t, Config{Host: "lonely", NATSURL: fmt.Sprintf("nats://127.0.0.1:%d", port), SpoolDir: t.TempDir(), Logger: infoLogger(logs)})
	t0 := time.Now()
	testkit.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		rec, err := logs.find(slog.LevelInfo, "cannot reach the bus")
		if err != nil {
			return err
		}
		if !strings.Contains(fmt.Sprint(rec["url"]), fmt.Sprint(port)) || rec["err"] == nil {
			return fmt.Errorf("the log line names no URL or error: %v", rec)
		}
		return nil
	})
	t.Logf("said after %v", time.Since(t0))
	if err := a.Ready(); err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("Ready() = %v, want the bus unreachable", err)
	}
	if err := a.Live(); err != nil {
		t.Errorf("Live() = %v", err)
	}
	if got := testutil.ToFloat64(a.m.busConnected); got != 0 {
		t.Errorf("bus connected gauge %v", got)
	}
}

// TestAgentUnknownHost: a server that says the host is not in the topology
// is heard at once, with its suggestions; a pinglist arriving later (the
// topology gained the host) clears it.
func TestAgentUnknownHost(t *testing.T) {
	f := newFixture(t)
	asked := make(chan string, 10)
	// The server's side of the hello (internal/server answers it the same
	// way; test/e2e/agentfield runs the two together).
	sub, err := f.nc.Subscribe(bus.HelloSubjects, func(m *nats.Msg) {
		asked <- m.Subject
		b, _ := json.Marshal(bus.Hello{Closest: []string{"dc1-pod1-rack1-h01", "dc1-pod1-rack1-h02"}})
		_ = m.Respond(b)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	logs := &logBuffer{}
	port := testkit.FixedPort(t, "127.0.1.21")
	a := startAgent(t, Config{Host: "dc1-pod1-rack1-h1", NATSURL: f.url, SpoolDir: t.TempDir(), Logger: infoLogger(logs)})
	testkit.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		_, err := logs.find(slog.LevelError, `host "dc1-pod1-rack1-h1" is not in the server's topology`)
		return err
	})
	if s := <-asked; s != bus.HelloSubject("dc1-pod1-rack1-h1") {
		t.Errorf("hello on %s", s)
	}
	rec, _ := logs.find(slog.LevelError, "not in the server's topology")
	if !strings.Contains(fmt.Sprint(rec["msg"]), "closest names: dc1-pod1-rack1-h01, dc1-pod1-rack1-h02") {
		t.Errorf("no suggestions in %v", rec["msg"])
	}
	if err := a.Ready(); err == nil || !strings.Contains(err.Error(), "closest names") {
		t.Errorf("Ready() = %v, want the unknown host", err)
	}
	if got := testutil.ToFloat64(a.m.hostKnown.WithLabelValues()); got != 0 {
		t.Errorf("host in topology gauge %v", got)
	}
	if got := testutil.ToFloat64(a.m.busConnected); got != 1 {
		t.Errorf("bus connected gauge %v", got)
	}

	f.putPinglist(testPinglist("dc1-pod1-rack1-h1", "127.0.1.21", port, 1))
	testkit.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if err := a.Ready(); err != nil {
			return err
		}
		if _, err := logs.find(slog.LevelInfo, "host is now in the topology"); err != nil {
			return err
		}
		if got := testutil.ToFloat64(a.m.hostKnown.WithLabelValues()); got != 1 {
			return fmt.Errorf("host in topology gauge %v", got)
		}
		return nil
	})
}

// TestAgentWithoutHelloServer: a server that does not answer hellos (one
// older than the agent) leaves the agent probing and quiet about it.
func TestAgentWithoutHelloServer(t *testing.T) {
	f := newFixture(t)
	logs := &logBuffer{}
	a := startAgent(t, Config{Host: "h", NATSURL: f.url, SpoolDir: t.TempDir(), Logger: infoLogger(logs)})
	testkit.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		_, err := logs.find(slog.LevelInfo, "bus connected")
		return err
	})
	want := "no pinglist yet: waiting for the server"
	if err := a.Ready(); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Ready() = %v, want %q", err, want)
	}
	if _, err := logs.find(slog.LevelError, "topology"); err == nil {
		t.Error("an unknown host was reported with nobody to say so")
	}
	if n := testutil.CollectAndCount(a.m.hostKnown); n != 0 {
		t.Errorf("host in topology gauge present (%d series) before any answer", n)
	}
}

func TestLiveSaysAStuckProbeLoop(t *testing.T) {
	a, err := New(Config{Host: "h", NATSURL: "nats://127.0.0.1:1", SpoolDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Live(); err != nil {
		t.Fatalf("fresh agent: %v", err)
	}
	a.status.heartbeat.Store(time.Now().Add(-stallAfter - time.Second).UnixNano())
	if err := a.Live(); err == nil || !strings.Contains(err.Error(), "stuck") {
		t.Errorf("Live() = %v, want stuck", err)
	}
}

func TestLevelClass(t *testing.T) {
	for _, tc := range []struct {
		level int
		want  string
	}{{1, "intra_rack"}, {2, "intra_dc"}, {3, "inter_dc"}, {0, "other"}, {7, "other"}} {
		if got := levelClass(tc.level); got != tc.want {
			t.Errorf("levelClass(%d) = %q, want %q", tc.level, got, tc.want)
		}
	}
}
