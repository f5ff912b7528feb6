package lab

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// sleeperEnv makes this test binary, started as a child, sleep instead of
// running tests: a stand-in for a lab process that is big to exec.
const sleeperEnv = "MESHLENS_LAB_TEST_SLEEPER"

func TestMain(m *testing.M) {
	if os.Getenv(sleeperEnv) != "" {
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestAliveThroughExec starts processes the way the lab does, through a
// second exec (env(1) here, `ip netns exec` in the lab), and asks at once
// whether they are alive: the command line reads empty during an exec,
// which once made `lab fault add link_latency` report a healthy relay as
// dead ("relay-l6 did not start").
func TestAliveThroughExec(t *testing.T) {
	marker := t.TempDir()
	for i := range 20 {
		cmd := exec.Command("env", sleeperEnv+"=1", os.Args[0], "-test.run=^$", "--", marker)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		p := Proc{Name: "sleeper", Pid: cmd.Process.Pid, Marker: marker}
		alive := p.alive()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if !alive {
			t.Fatalf("start %d: a process just started reads as not alive", i)
		}
		if p.alive() {
			t.Fatalf("start %d: a process killed and reaped reads as alive", i)
		}
	}
	if (Proc{Pid: os.Getpid(), Marker: marker + "-not-this"}).alive() {
		t.Fatal("a process without the marker reads as the lab's")
	}
}
