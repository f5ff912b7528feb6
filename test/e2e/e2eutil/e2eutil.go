// Package e2eutil holds what the end-to-end suites share: building the
// real binary once, processes that are stopped with the test, the fabric
// harness's parts (a generated topology read with topology.Parse, a
// `meshlens server` on ports the kernel picked and read back from its
// announcement). Polling is internal/testkit's CheckFor; a port that must
// be known before anything binds it (the fleet's responder port, NATS
// routes) is testkit.FixedPort.
package e2eutil

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/testkit"
	"github.com/meshlens/meshlens/internal/topology"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// RepoRoot finds the module root from the test's working directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("e2e: no go.mod above the test directory")
		}
		dir = parent
	}
}

// Binary builds ./cmd/meshlens once per test process and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "meshlens-e2e-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "meshlens")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/meshlens")
		cmd.Dir = RepoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// Topology runs `meshlens topo gen` (or any subcommand printing a topology
// file, e.g. `sim topology`) with args, writes its output to path and
// returns it parsed by topology.Parse: the one reading of a topology file,
// never string splitting.
func Topology(t testing.TB, path, bin string, args ...string) *topology.Topology {
	t.Helper()
	out, err := Run(context.Background(), bin, args...)
	if err != nil {
		t.Fatalf("meshlens %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	topo, err := topology.Parse(path, []byte(out))
	if err != nil {
		t.Fatalf("meshlens %s printed no valid topology: %v", strings.Join(args, " "), err)
	}
	return topo
}

// Server is a running `meshlens server`.
type Server struct {
	*Process
	HTTPAddr, NATSAddr string // as bound, host:port
	HTTPURL, NATSURL   string // http://HTTPAddr; the URL agents are given
}

// serverRunning is the server's announcement once every part runs: it
// names the addresses it bound.
var serverRunning = regexp.MustCompile(`msg="meshlens server running" http=(\S+) nats=(\S+)`)

// StartServer runs `meshlens server` with args and waits for its
// announcement. Without --http-addr and --nats-addr (or --nats-url) in
// args it binds
// 127.0.0.1:0 and 127.0.0.1:-1: the kernel picks both ports and the
// announcement names them, so no port is chosen here and bound later by
// whoever came first. A restart passes the first run's HTTPAddr and
// NATSAddr so clients find it again (those ports were bound until the
// stop; a process taking one in between makes the restart fail loudly).
// Readiness (/readyz) is the caller's to wait for: it may need TLS.
func StartServer(t testing.TB, env []string, bin string, args ...string) *Server {
	t.Helper()
	s := LaunchServer(t, env, bin, args...)
	s.WaitRunning(t)
	return s
}

// LaunchServer is StartServer without the wait: servers launched one after
// the other start at the same moment; WaitRunning waits for each.
func LaunchServer(t testing.TB, env []string, bin string, args ...string) *Server {
	t.Helper()
	args = append([]string{"server"}, args...)
	if !slices.Contains(args, "--http-addr") {
		args = append(args, "--http-addr", "127.0.0.1:0")
	}
	if !slices.Contains(args, "--nats-addr") && !slices.Contains(args, "--nats-url") {
		args = append(args, "--nats-addr", "127.0.0.1:-1")
	}
	return &Server{Process: Start(t, "server", env, bin, args...)}
}

// WaitRunning waits for the server's announcement and reads its addresses.
func (s *Server) WaitRunning(t testing.TB) {
	t.Helper()
	testkit.CheckFor(t, 2*time.Minute, 50*time.Millisecond, func() error {
		if m := serverRunning.FindStringSubmatch(s.Output()); m != nil {
			s.HTTPAddr, s.NATSURL = m[1], m[2]
			return nil
		}
		if exited, err := s.Exited(); exited {
			t.Fatalf("server exited before it ran: %v\n%s", err, tail(s.Output(), 6000))
		}
		return errors.New("no \"meshlens server running\" line yet")
	})
	s.HTTPURL = "http://" + s.HTTPAddr
	if u, err := url.Parse(s.NATSURL); err == nil {
		s.NATSAddr = u.Host
	}
}

// Process is a child process whose output is kept for failure reports.
type Process struct {
	Name string
	Cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

// Start runs bin with args; the process is killed when the test ends, and
// its output is printed if the test failed.
func Start(t testing.TB, name string, env []string, bin string, args ...string) *Process {
	t.Helper()
	p := &Process{Name: name, out: &syncBuffer{}, done: make(chan struct{})}
	p.Cmd = exec.Command(bin, args...)
	p.Cmd.Env = append(os.Environ(), env...)
	p.Cmd.Stdout, p.Cmd.Stderr = p.out, p.out
	p.Cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = p.Cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.Stop(t)
		if t.Failed() {
			t.Logf("---- output of %s ----\n%s", name, tail(p.out.String(), 6000))
		}
	})
	return p
}

// Stop sends SIGTERM and waits (then SIGKILL after 20 s).
func (p *Process) Stop(t testing.TB) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Errorf("%s did not stop within 20s of SIGTERM", p.Name)
		_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// Kill sends SIGKILL to the process group, as a crash would.
func (p *Process) Kill() {
	_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Exited reports whether the process has ended, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Output is what the process printed so far.
func (p *Process) Output() string { return p.out.String() }

// WaitHTTP waits until url answers 200.
func WaitHTTP(t testing.TB, url string, total time.Duration) {
	t.Helper()
	testkit.CheckFor(t, total, 200*time.Millisecond, func() error {
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", url, resp.Status)
		}
		return nil
	})
}

// Run runs a command to completion with a timeout and returns its output.
func Run(ctx context.Context, bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	return string(out), err
}

// Require fails (never skips) when a tool the suite needs is missing.
func Require(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is required (install it as .ci/run does): %v", tool, err)
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[strings.IndexByte(s[len(s)-n:], '\n')+len(s)-n:]
}

// GetJSON GETs url and decodes its JSON body into v; anything but 200 is
// an error.
func GetJSON(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// PromError is a Prometheus HTTP API answer whose status is not "success".
type PromError struct {
	StatusCode int    // the HTTP status
	Type       string // errorType: bad_data, execution, ...
	Message    string
}

func (e *PromError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.StatusCode, e.Type, e.Message)
}

// DecodeProm reads a Prometheus HTTP API answer ({"status", "data"}, from
// Prometheus or meshlens) and decodes its data into out; an answer that is
// not a success is a *PromError.
func DecodeProm(resp *http.Response, out any) error {
	var body struct {
		Status    string          `json:"status"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
		Data      json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return fmt.Errorf("%s %s: %s: %w", resp.Request.Method, resp.Request.URL.Path, resp.Status, err)
	}
	if resp.StatusCode != http.StatusOK || body.Status != "success" {
		return &PromError{StatusCode: resp.StatusCode, Type: body.ErrorType, Message: body.Error}
	}
	return json.Unmarshal(body.Data, out)
}

// Metric is the value of one sample of a /metrics page: the series named
// name whose labels include the label pairs given (name, value, ...).
func Metric(metricsURL, name string, labelPairs ...string) (float64, error) {
	resp, err := http.Get(metricsURL)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: %s", metricsURL, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", metricsURL, err)
	}
	f := families[name]
	if f == nil {
		return 0, fmt.Errorf("%s: no %s", metricsURL, name)
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labelPairs); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == labelPairs[i] && l.GetValue() == labelPairs[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), nil
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), nil
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), nil
		}
	}
	return 0, fmt.Errorf("%s: no %s%v", metricsURL, name, labelPairs)
}
