package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshlens/meshlens/internal/sim"
)

// TestDemoBannerCommands: every meshlens command the demo's banner prints
// names the binary as it was started (`make demo` runs ./bin/meshlens,
// which is not on the PATH), is a real subcommand and takes the flags it
// is given; the other commands reach the demo's address.
func TestDemoBannerCommands(t *testing.T) {
	sc, err := sim.Parse("demo-scenario.yaml", []byte(demoScenario), nil)
	if err != nil {
		t.Fatal(err)
	}
	const addr = "127.0.0.1:29780"
	banner := demoBanner("sim", len(sc.Topology.Hosts), sc, "/tmp/demo", true, addr, "nats://127.0.0.1:24222", false)
	for _, f := range sc.Faults {
		if !strings.Contains(banner, f.Element) {
			t.Errorf("the banner does not name the fault on %s:\n%s", f.Element, banner)
		}
	}
	self := os.Args[0]
	var ours, others int
	for _, line := range strings.Split(banner, "\n") {
		_, command, ok := strings.Cut(line, ":  ")
		command = strings.TrimSpace(command)
		if !ok || command == "" {
			continue
		}
		switch {
		case strings.HasPrefix(command, self+" "):
			ours++
			args := strings.Fields(strings.TrimPrefix(command, self+" "))
			root := newRootCmd()
			cmd, rest, err := root.Find(args)
			if err != nil || cmd == root {
				t.Errorf("%q: no such subcommand: %v", command, err)
				continue
			}
			if err := cmd.ParseFlags(rest); err != nil {
				t.Errorf("%q: %v", command, err)
			}
			if cmd.Flags().Lookup("server") == nil || cmd.Flags().Lookup("server").Value.String() != "http://"+addr {
				t.Errorf("%q does not ask the demo's server", command)
			}
			if err := cmd.ValidateArgs(cmd.Flags().Args()); err != nil {
				t.Errorf("%q: %v", command, err)
			}
		case strings.HasPrefix(command, "meshlens "):
			t.Errorf("%q: meshlens is not on the PATH after make demo; name the binary as started (%s)", command, self)
		case strings.HasPrefix(command, "promtool ") || strings.HasPrefix(command, "curl "):
			others++
			if !strings.Contains(command, "http://"+addr) {
				t.Errorf("%q does not reach the demo at %s", command, addr)
			}
		}
	}
	if ours < 2 || others < 2 {
		t.Errorf("found %d meshlens and %d other commands in the banner, want at least 2 of each:\n%s", ours, others, banner)
	}
}

// TestDemoLeavesItsData: a data directory the demo made is removed when it
// stops, and one it was given stays; either way it says which.
func TestDemoLeavesItsData(t *testing.T) {
	for _, tc := range []struct {
		name      string
		temporary bool
		say       string
	}{
		{"made by the demo", true, "removed its data"},
		{"given with --data-dir", false, "Its data stays in"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "demo")
			if err := os.MkdirAll(filepath.Join(dir, "server"), 0o750); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := leaveDemoData(&out, dir, tc.temporary); err != nil {
				t.Fatal(err)
			}
			_, err := os.Stat(dir)
			if gone := os.IsNotExist(err); gone != tc.temporary {
				t.Errorf("data directory gone: %v, want %v", gone, tc.temporary)
			}
			if !strings.Contains(out.String(), tc.say) || !strings.Contains(out.String(), dir) {
				t.Errorf("said %q, want %q and the directory", out.String(), tc.say)
			}
		})
	}
}
