package faults

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/testkit"
)

// countedBy is every host's own count of measurements it produced.
func countedBy(final map[string]agentState) map[string]float64 {
	want := map[string]float64{}
	for h, st := range final {
		want[h] = st.counted
	}
	return want
}

// TestBusDownThenBack: the server (and with it the embedded bus) goes away
// for 30 s while the agents keep probing into their spools; when it is
// back, every result arrives exactly once in the rollups.
func TestBusDownThenBack(t *testing.T) {
	f := newFabric(t, "127.6.1.1", 4)
	f.startServer()
	f.startAgents()
	f.waitProbing(f.hosts...)

	f.server.Stop(t)
	down := time.Now()
	before := map[string]agentState{}
	for _, h := range f.hosts {
		st, err := f.agentState(h)
		if err != nil {
			t.Fatal(err)
		}
		before[h] = st
	}
	// The outage is the fault itself: it lasts 2 minutes, during which every
	// agent must keep probing and spool what it cannot publish.
	testkit.CheckFor(t, 3*time.Minute, time.Second, func() error {
		for _, h := range f.hosts {
			st, err := f.agentState(h)
			if err != nil {
				return err
			}
			if st.spoolBytes == 0 || st.counted <= before[h].counted {
				return fmt.Errorf("agent %s not probing into its spool: %+v", h, st)
			}
			if st.dropped > 0 {
				t.Fatalf("agent %s dropped %v batches with a 256 MiB spool", h, st.dropped)
			}
		}
		if d := time.Since(down); d < 2*time.Minute {
			return fmt.Errorf("bus down for %v of 2m", d.Round(time.Second))
		}
		return nil
	})

	f.startServer()
	f.waitDrained(f.hosts...)
	final := f.stopProbing(f.hosts...)
	for h, st := range final {
		if st.counted <= before[h].counted {
			t.Errorf("agent %s: no results during the outage", h)
		}
	}
	f.requireExactlyOnce(countedBy(final))
}

// TestServerKilledDuringBurst: the server is killed with SIGKILL while it
// ingests the backlog the agents spooled during an outage, and again in
// steady state; restarted on the same data dir it loses no acknowledged
// result and counts none twice.
func TestServerKilledDuringBurst(t *testing.T) {
	f := newFabric(t, "127.6.2.1", 4)
	f.startServer()
	for _, h := range f.hosts {
		f.startAgent(h, "--batch-max-age", "200ms")
	}
	f.waitProbing(f.hosts...)

	// A backlog: every agent spools some 50 batches.
	f.server.Stop(t)
	testkit.CheckFor(t, time.Minute, 500*time.Millisecond, func() error {
		for _, h := range f.hosts {
			st, err := f.agentState(h)
			if err != nil {
				return err
			}
			if st.spooled-st.published < 50 {
				return fmt.Errorf("agent %s backlog %v batches", h, st.spooled-st.published)
			}
		}
		return nil
	})
	f.startServer()
	// SIGKILL as soon as the burst is being ingested.
	testkit.CheckFor(t, time.Minute, 20*time.Millisecond, func() error {
		n, err := f.serverMetric("meshlens_ingest_batches_total")
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("no batch ingested yet")
		}
		return nil
	})
	f.server.Kill()
	var backlog float64
	for _, h := range f.hosts {
		st, err := f.agentState(h)
		if err != nil {
			t.Fatal(err)
		}
		backlog += st.spoolBytes
	}
	t.Logf("killed mid-burst with %v bytes still spooled by the agents", backlog)

	f.startServer()
	f.waitProbing(f.hosts...)
	// Once more in steady state, right after a batch was ingested.
	testkit.CheckFor(t, time.Minute, 20*time.Millisecond, func() error {
		n, err := f.serverMetric("meshlens_ingest_batches_total")
		if err != nil {
			return err
		}
		if n < 20 {
			return fmt.Errorf("%v batches ingested since the restart", n)
		}
		return nil
	})
	f.server.Kill()
	f.startServer()
	f.waitDrained(f.hosts...)

	final := f.stopProbing(f.hosts...)
	f.requireExactlyOnce(countedBy(final))
}

// TestAgentRestart: an agent stopped, or killed, mid-batch and started
// again on its spool keeps its epoch, resumes its seq without a gap, and
// nothing it sealed is lost or counted twice. Stopped, it seals the partial
// batch, which the next incarnation delivers; killed, it loses only that
// partial batch, which never had a seq.
func TestAgentRestart(t *testing.T) {
	t.Run("stopped", func(t *testing.T) {
		agentRestart(t, "127.6.3.1", func(a *agentProc) { a.p.Stop(t) })
	})
	t.Run("killed", func(t *testing.T) {
		agentRestart(t, "127.6.11.1", func(a *agentProc) { a.p.Kill() })
	})
}

func agentRestart(t *testing.T, base string, end func(*agentProc)) {
	f := newFabric(t, base, 3)
	f.startServer()
	f.startAgents()
	f.waitProbing(f.hosts...)

	h := f.hosts[0]
	a := f.agents[h]
	end(a)
	epoch1, seq1 := spoolState(t, a.spool)
	f.startAgent(h)
	testkit.CheckFor(t, time.Minute, 500*time.Millisecond, func() error {
		st, err := f.agentState(h)
		if err != nil {
			return err
		}
		if st.published < 3 {
			return fmt.Errorf("restarted agent published %v batches", st.published)
		}
		return nil
	})
	epoch2, _ := spoolState(t, a.spool)
	if epoch2 != epoch1 {
		t.Fatalf("epoch changed across a restart: %d -> %d", epoch1, epoch2)
	}

	final := f.stopProbing(f.hosts...)
	_, lastSeq := spoolState(t, a.spool)
	sb := f.streamBatches(h)
	if len(sb.epochs) != 1 || !sb.epochs[epoch1] {
		t.Errorf("batches in the stream carry epochs %v, want only %d", sb.epochs, epoch1)
	}
	for i, s := range sb.seqs {
		if s != uint64(i+1) {
			t.Fatalf("batch seqs in the stream have a gap or a repeat at %d: %v", i, sb.seqs)
		}
	}
	if n := uint64(len(sb.seqs)); n != lastSeq || n <= seq1 {
		t.Errorf("stream holds seqs 1..%d; the agent sealed up to %d, %d before the restart", n, lastSeq, seq1)
	}
	// The restarted agent's own counter covers only its second life; the
	// stream holds both.
	want := countedBy(final)
	if sb.counted <= final[h].counted {
		t.Errorf("stream holds %v measurements of %s, its second life alone produced %v", sb.counted, h, final[h].counted)
	}
	want[h] = sb.counted
	f.requireExactlyOnce(want)
}

// TestAgentClockSkew: an agent whose clock is 10 minutes ahead has all its
// results refused and counted as clock_skew, never placed in any window;
// everybody else's counts are untouched.
func TestAgentClockSkew(t *testing.T) {
	f := newFabric(t, "127.6.4.1", 4)
	f.startServer()
	// One agent's clock runs ten minutes ahead, one's ten minutes behind:
	// behind, its probes would pass for late data and land in past windows
	// unless the server notices the clock itself.
	ahead, behind := f.hosts[0], f.hosts[1]
	f.startAgent(ahead, "--clock-offset=10m")
	f.startAgent(behind, "--clock-offset=-10m")
	for _, h := range f.hosts[2:] {
		f.startAgent(h)
	}
	f.waitProbing(f.hosts...)

	final := f.stopProbing(f.hosts...)
	for _, h := range []string{ahead, behind} {
		if final[h].all == 0 {
			t.Fatalf("the skewed agent %s produced nothing", h)
		}
	}
	want := countedBy(final)
	want[ahead], want[behind] = 0, 0 // nothing of theirs in any rollup
	f.requireExactlyOnce(want)
	testkit.CheckFor(t, 30*time.Second, 500*time.Millisecond, func() error {
		n, err := f.serverMetric("meshlens_ingest_rejected_total", `reason="clock_skew"`)
		if err != nil {
			return err
		}
		if produced := final[ahead].all + final[behind].all; n != produced {
			return fmt.Errorf("server rejected %v results for clock skew, the skewed agents produced %v", n, produced)
		}
		return nil
	})
}

// TestSpoolFull: with the bus away and a tiny spool, the agent drops its
// oldest batches and counts them; what it kept is delivered exactly once,
// and the batch ids missing from the stream are exactly the dropped ones.
func TestSpoolFull(t *testing.T) {
	const spoolMax = 4000
	f := newFabric(t, "127.6.5.1", 2)
	f.startServer()
	for _, h := range f.hosts {
		f.startAgent(h, "--spool-max-bytes", fmt.Sprint(spoolMax), "--batch-max-age", "200ms")
	}
	f.waitProbing(f.hosts...)

	f.server.Stop(t)
	testkit.CheckFor(t, time.Minute, 500*time.Millisecond, func() error {
		for _, h := range f.hosts {
			st, err := f.agentState(h)
			if err != nil {
				return err
			}
			if st.spoolBytes > spoolMax {
				t.Fatalf("agent %s spool at %v bytes, over its %d cap", h, st.spoolBytes, spoolMax)
			}
			if st.dropped < 3 {
				return fmt.Errorf("agent %s dropped %v batches so far", h, st.dropped)
			}
		}
		return nil
	})
	final, stream := f.restartAndAccountSpools()
	want := map[string]float64{}
	for _, h := range f.hosts {
		if sb := stream[h]; sb.counted >= final[h].counted {
			t.Errorf("agent %s: stream holds %v measurements, the agent produced %v: nothing was dropped?", h, sb.counted, final[h].counted)
		}
		want[h] = stream[h].counted
	}
	f.requireExactlyOnce(want)
}

// restartAndAccountSpools brings the server back after an outage, waits
// for the agents' spools to drain, stops probing, and checks that every
// batch an agent sealed is in the stream or counted as dropped. It returns
// the agents' final state and what the stream holds of each.
func (f *fabric) restartAndAccountSpools() (map[string]agentState, map[string]streamBatches) {
	f.t.Helper()
	f.startServer()
	f.waitDrained(f.hosts...)
	final := f.stopProbing(f.hosts...)
	stream := map[string]streamBatches{}
	for _, h := range f.hosts {
		_, lastSeq := spoolState(f.t, f.agents[h].spool)
		sb := f.streamBatches(h)
		if got := uint64(len(sb.seqs)) + uint64(final[h].dropped); got != lastSeq {
			f.t.Errorf("agent %s: %d batches in the stream + %v dropped, want %d sealed", h, len(sb.seqs), final[h].dropped, lastSeq)
		}
		stream[h] = sb
	}
	return final, stream
}

// TestSpoolDiskFull: the spool's disk (a 64 KiB tmpfs of its own) fills
// up while the bus is away. The agent counts the writes the disk refuses,
// keeps those batches in memory within --spool-max-bytes, never exceeds
// it, and when the bus is back every batch it kept arrives exactly once;
// what it had to drop, oldest first, is counted.
func TestSpoolDiskFull(t *testing.T) {
	const spoolMax = 256 << 10
	f := newFabric(t, "127.6.8.1", 2)
	mnt := filepath.Join(f.dir, "small-disk")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	// A real full disk: ENOSPC from the kernel, not a size cap (needs root,
	// as CI is).
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount a 64 KiB tmpfs: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", mnt, err, out)
		}
	})
	f.startServer()
	for _, h := range f.hosts {
		f.agents[h] = &agentProc{host: h, spool: filepath.Join(mnt, h)}
		f.startAgent(h, "--spool-max-bytes", fmt.Sprint(spoolMax), "--batch-max-age", "200ms")
	}
	f.waitProbing(f.hosts...)

	f.server.Stop(t)
	testkit.CheckFor(t, 2*time.Minute, 500*time.Millisecond, func() error {
		for _, h := range f.hosts {
			st, err := f.agentState(h)
			if err != nil {
				return err
			}
			if exited, err := f.agents[h].p.Exited(); exited {
				t.Fatalf("agent %s died on a full disk: %v", h, err)
			}
			if st.spoolErrs < 3 {
				return fmt.Errorf("agent %s: %v spool writes refused so far", h, st.spoolErrs)
			}
		}
		return nil
	})
	_, stream := f.restartAndAccountSpools()
	want := map[string]float64{}
	for h, sb := range stream {
		want[h] = sb.counted
	}
	f.requireExactlyOnce(want)
}
