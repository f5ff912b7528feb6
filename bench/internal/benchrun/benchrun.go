// Package benchrun holds what the live benchmarks share: the meshlens
// binary built once, free loopback addresses, processes ended by their
// pid, one poll helper, and a scrape of a server's /metrics.
package benchrun

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Build builds ./cmd/meshlens into dir and returns the binary's path.
func Build(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "meshlens")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/meshlens").CombinedOutput(); err != nil {
		return "", fmt.Errorf("build: %v: %s", err, out)
	}
	return bin, nil
}

// FreeAddrs returns n loopback TCP addresses nobody listens on now.
func FreeAddrs(n int) ([]string, error) {
	var addrs []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		addrs = append(addrs, l.Addr().String())
		l.Close()
	}
	return addrs, nil
}

// Poll calls ok every 200 ms until it says true, total passes or ctx ends.
func Poll(ctx context.Context, total time.Duration, ok func() bool) error {
	deadline := time.Now().Add(total)
	for !ok() {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil
}

// WaitReady polls api's /readyz for up to a minute.
func WaitReady(ctx context.Context, api string) error {
	return Poll(ctx, time.Minute, func() bool {
		resp, err := http.Get(api + "/readyz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
}

// Proc is a started process with its output in a log file.
type Proc struct {
	cmd  *exec.Cmd
	Log  string
	done chan struct{}
}

// Start starts bin with args, its stdout and stderr in logFile.
func Start(bin, logFile string, args ...string) (*Proc, error) {
	f, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	p := &Proc{cmd: cmd, Log: logFile, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	return p, nil
}

// Pid is the process's id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Output is what the process wrote so far.
func (p *Proc) Output() []byte {
	data, _ := os.ReadFile(p.Log)
	return data
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Stop ends the process by its pid: SIGTERM, SIGKILL after 10 s.
func (p *Proc) Stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Scrape reads url (a /metrics page) and returns each named gauge's or
// counter's value summed over its series; names not exported are absent.
func Scrape(url string, names ...string) (map[string]float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	out := map[string]float64{}
	for _, name := range names {
		f, ok := families[name]
		if !ok {
			continue
		}
		var sum float64
		for _, m := range f.GetMetric() {
			switch {
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Untyped != nil:
				sum += m.GetUntyped().GetValue()
			}
		}
		out[name] = sum
	}
	return out, nil
}

// DumpGoroutines asks a Go process for its goroutines' stacks (SIGQUIT,
// which also ends it) and waits up to 5 s for it to write them to its log.
func (p *Proc) DumpGoroutines() {
	_ = p.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
}
