package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// State is everything a lab created, written to the lab's directory
// before each creation step, so that `lab down` after a crash of `up`
// removes exactly that, and nothing else.
type State struct {
	ID     string `json:"id"`
	Dir    string `json:"dir"`
	Binary string `json:"binary"`
	// Namespaces this lab created (or was about to create), in order.
	Namespaces []string `json:"namespaces"`
	Procs      []Proc   `json:"procs"`
	Faults     []Fault  `json:"faults"`
	// Relays are the links spliced for link_latency, by link name.
	Relays map[string]RelayState `json:"relays,omitempty"`
	// Unavailable fault kinds and why, from the kernel check at up.
	Unavailable map[FaultKind]string `json:"unavailable,omitempty"`
	UIURL       string               `json:"ui_url,omitempty"`
	NATSURL     string               `json:"nats_url,omitempty"`
	Ready       bool                 `json:"ready"`
}

// Proc is a process the lab started; Marker is a string its command line
// carries (the lab's directory), checked before signalling the pid so a
// recycled pid is never signalled.
type Proc struct {
	Name   string `json:"name"`
	NS     string `json:"ns,omitempty"`
	Pid    int    `json:"pid"`
	Marker string `json:"marker"`
	Log    string `json:"log,omitempty"`
}

// RelayState is one spliced link.
type RelayState struct {
	Link int `json:"link"`
	Pid  int `json:"pid"`
}

const stateFile = "state.json"

func loadState(dir string) (*State, error) {
	data, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("lab: %s: %w", filepath.Join(dir, stateFile), err)
	}
	return &s, nil
}

// save writes the state atomically (rename), so a crash leaves the old or
// the new state, never half of one.
func (s *State) save() error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("lab: state: %w", err)
	}
	tmp := filepath.Join(s.Dir, stateFile+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("lab: state: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(s.Dir, stateFile)); err != nil {
		return fmt.Errorf("lab: state: %w", err)
	}
	return nil
}

// lockDir serializes lab commands on one directory.
func lockDir(dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lab: lock %s: %w", dir, err)
	}
	return func() { _ = unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
}

// alive says whether pid runs and is the lab's process (its command line
// holds the marker); a zombie counts as gone. A process in the middle of
// execve — every lab process is `ip netns exec … meshlens`, so two execs
// just after it starts — reads an empty command line for a moment; that
// is read again, not taken for a stranger.
func (p Proc) alive() bool {
	if p.Pid <= 0 {
		return false
	}
	for try := 0; ; try++ {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Pid))
		if err != nil {
			return false
		}
		if i := strings.LastIndexByte(string(stat), ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
			return false
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.Pid))
		if err != nil {
			return false
		}
		if len(cmdline) > 0 || try == execRereads {
			return p.Marker != "" && strings.Contains(string(cmdline), p.Marker)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// execRereads bounds how long alive waits out an exec (10 ms each): far
// longer than loading a binary takes, and an empty command line that
// lasts is a kernel thread, never the lab's.
const execRereads = 100

// stopProcs ends the lab's processes by pid: SIGTERM, then SIGKILL for
// those still running after grace.
func stopProcs(procs []Proc, grace time.Duration) {
	var live []Proc
	for _, p := range procs {
		if p.alive() {
			_ = syscall.Kill(p.Pid, syscall.SIGTERM)
			live = append(live, p)
		}
	}
	deadline := time.Now().Add(grace)
	for len(live) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		live = stillAlive(live)
	}
	for _, p := range live {
		_ = syscall.Kill(p.Pid, syscall.SIGKILL)
	}
	deadline = time.Now().Add(5 * time.Second)
	for len(live) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		live = stillAlive(live)
	}
}

func stillAlive(ps []Proc) []Proc {
	var out []Proc
	for _, p := range ps {
		if p.alive() {
			out = append(out, p)
		}
	}
	return out
}

// nsExists says whether a named namespace is mounted.
func nsExists(name string) bool {
	_, err := os.Stat(filepath.Join(netnsDir, name))
	return err == nil
}
