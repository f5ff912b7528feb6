package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/lab"
	"github.com/meshlens/meshlens/internal/testkit"
	"github.com/meshlens/meshlens/internal/topology"
	"github.com/meshlens/meshlens/test/e2e/e2eutil"
)

// The fabric of the suite: 2 spines, 2 pods of 2 leaves, 4 racks of 3
// hosts, with the server and an agent per host.
var fabric = []string{"--dcs", "1", "--pods", "2", "--leaves-per-pod", "2", "--spines", "2", "--racks-per-pod", "2", "--hosts-per-rack", "3",
	"--server-arg=--probe-interval=2s", "--server-arg=--probe-timeout=1s",
	// Every time-exceeded answered: the traceroute test counts on it.
	"--icmp-ratelimit", "0"}

const (
	h1     = "dc1-pod1-rack1-h01" // the source of most measurements
	tor1   = "dc1-pod1-rack1-tor"
	far    = "dc1-pod2-rack1-h01" // in the other pod: every flow crosses a spine
	spine1 = "dc1-spine1"
	spine2 = "dc1-spine2"
)

// n is the probes of a loss measurement: at 400 a binomial share's
// standard deviation is at most 0.025, and the bounds below are 4σ wide.
const n = 400

func TestLab(t *testing.T) {
	l := upLab(t, fabric...)

	t.Run("server and agents run", func(t *testing.T) {
		e2eutil.WaitHTTP(t, l.ServerURL()+"readyz", 30*time.Second)
		want := []string{"server", "ui-forward"}
		for i := range 12 {
			want = append(want, fmt.Sprintf("agent-dc1-pod%d-rack%d-h%02d", i/6+1, i/3%2+1, i%3+1))
		}
		var got []string
		for _, p := range l.Status.Procs {
			if !p.Running {
				t.Errorf("%s (pid %d) is not running", p.Name, p.Pid)
			}
			got = append(got, p.Name)
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("processes %v, want %v", got, want)
		}
		// The agents' results reach the server over the management network.
		testkit.CheckFor(t, 60*time.Second, time.Second, func() error {
			resp, err := http.Get(l.ServerURL() + "metrics")
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				return err
			}
			for _, line := range strings.Split(string(body), "\n") {
				if f := strings.Fields(line); len(f) == 2 && strings.HasPrefix(f[0], "meshlens_ingest_results_total") && f[1] != "0" {
					t.Logf("server: %s", line)
					return nil
				}
			}
			return errors.New("no probe results ingested yet")
		})
		if len(l.Status.Namespaces) != 12+10+1 {
			t.Errorf("%d namespaces, want 23 (12 hosts, 10 switches, management)", len(l.Status.Namespaces))
		}
	})

	t.Run("up twice changes nothing", func(t *testing.T) {
		before := l.Status
		out, err := l.run(append([]string{"up", "--id", l.ID}, fabric...)...)
		if err != nil || !strings.Contains(out, "already up") {
			t.Fatalf("second up: %v\n%s", err, out)
		}
		l.refresh(t)
		if fmt.Sprint(l.Status.Procs) != fmt.Sprint(before.Procs) {
			t.Errorf("processes changed: %v -> %v", before.Procs, l.Status.Procs)
		}
	})

	t.Run("every host reaches every other host", func(t *testing.T) {
		var hosts []string
		for p := 1; p <= 2; p++ {
			for r := 1; r <= 2; r++ {
				for h := 1; h <= 3; h++ {
					hosts = append(hosts, fmt.Sprintf("dc1-pod%d-rack%d-h%02d", p, r, h))
				}
			}
		}
		for _, dst := range hosts {
			ap := l.echo(t, dst)
			for _, src := range hosts {
				if src == dst {
					continue
				}
				if rs := l.probe(t, src, ap, make([]int, 4), time.Second); lossOf(rs) > 0 {
					t.Errorf("%s -> %s: %.0f%% of 4 probes lost", src, dst, 100*lossOf(rs))
				}
			}
		}
	})

	dst := l.echo(t, far)
	sinkAddr := l.sink(t, far, 7701)

	t.Run("flows of one pair take both spines", func(t *testing.T) {
		counts := l.spineCounters(t, []string{spine1, spine2})
		rs := l.probe(t, h1, dst, ports(20000, 64), time.Second)
		if loss := lossOf(rs); loss > 0 {
			t.Fatalf("loss %.3f without faults", loss)
		}
		got := counts()
		t.Logf("64 flows %s -> %s: %v", h1, far, got)
		if got[spine1]+got[spine2] != 64 {
			t.Errorf("spines counted %d probes, want 64 (each crosses exactly one spine)", got[spine1]+got[spine2])
		}
		if got[spine1] < 10 || got[spine2] < 10 {
			t.Errorf("flows not spread over the spines: %v", got)
		}
	})

	// Every switch hashes with a seed of its own: a flow's leaf does not
	// decide its spine (no ECMP polarization), so the traced flows of one
	// pair use every leaf-spine pair of the source's pod.
	t.Run("traceroute names the interface each probe arrived on; tiers hash independently", func(t *testing.T) {
		plan := l.plan(t)
		combos := map[[2]string]int{}
		for _, sport := range ports(40000, 16) {
			path := []string{h1}
			for ttl := 1; ttl <= 5; ttl++ {
				addr := l.hop(t, h1, dst, sport, ttl)
				prev := path[len(path)-1]
				var at string
				for _, n := range plan.Topo.Neighbors(prev) {
					if a, ok := plan.InterfaceAddr(n, prev); ok && a == addr {
						at = n
					}
				}
				if at == "" {
					t.Fatalf("sport %d TTL %d: answer from %v, which is no interface of a neighbour of %s facing it (path so far %v)", sport, ttl, addr, prev, path)
				}
				path = append(path, at)
			}
			t.Logf("sport %d: %s", sport, strings.Join(path, " > "))
			if path[1] != tor1 || path[5] != "dc1-pod2-rack1-tor" || !strings.HasPrefix(path[3], "dc1-spine") {
				t.Errorf("sport %d: path %v is not h1 > its ToR > a leaf > a spine > a leaf > the far ToR", sport, path)
			}
			combos[[2]string{path[2], path[3]}]++
		}
		t.Logf("16 flows by (leaf, spine): %v", combos)
		// Polarized, a leaf decides the spine: 2 pairs. Independent, 16
		// flows miss two of the 4 with odds of 1 in 10,000.
		if len(combos) < 3 {
			t.Errorf("16 flows took %d of the 4 leaf-spine pairs: %v (the tiers hash alike: polarized)", len(combos), combos)
		}
	})

	between := func(lo, hi float64) func(float64) bool {
		return func(x float64) bool { return x >= lo && x <= hi }
	}
	healthy := func(t *testing.T) {
		t.Helper()
		l.eventuallyLoss(t, "after clear", h1, dst, 100, func(x float64) bool { return x == 0 })
	}
	measure := func(t *testing.T, what string, lo, hi float64) {
		t.Helper()
		rs := l.probe(t, h1, dst, make([]int, n), time.Second)
		loss := lossOf(rs)
		t.Logf("%s: loss %.3f of %d probes (want %.2f..%.2f)", what, loss, n, lo, hi)
		if !between(lo, hi)(loss) {
			t.Errorf("%s: loss %.3f outside %.2f..%.2f", what, loss, lo, hi)
		}
	}
	hostLink := h1 + "--" + tor1

	faults := []struct {
		name   string
		args   []string
		clear  string
		lo, hi float64
	}{
		// One direction: only the probe's way out is hit.
		{"link_loss one direction", []string{"link_loss", h1 + "->" + tor1, "--rate", "0.3"}, hostLink, 0.2, 0.4},
		// Both directions: a round trip survives with 0.7², lost 0.51.
		{"link_loss both directions", []string{"link_loss", hostLink, "--rate", "0.3"}, hostLink, 0.41, 0.61},
		{"link_down host link", []string{"link_down", hostLink}, hostLink, 1, 1},
		// A leaf–spine link down: the routes skip the dead next hop.
		{"link_down leaf-spine link, routed around", []string{"link_down", "dc1-pod1-leaf1--" + spine1}, "dc1-pod1-leaf1--" + spine1, 0, 0},
		// Half the flows cross spine1 out, half back, independently: 0.75.
		{"device_down spine", []string{"device_down", spine1}, spine1, 0.6, 0.9},
		// Each way crosses spine1 with 0.5 and is dropped there with 0.5.
		{"device_loss spine", []string{"device_loss", spine1, "--rate", "0.5"}, spine1, 0.32, 0.56},
		{"host_nic", []string{"host_nic", h1, "--rate", "0.3"}, h1, 0.41, 0.61},
	}
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			healthy(t)
			l.Fault(t, f.args...)
			measure(t, f.name, f.lo, f.hi)
			l.Clear(t, f.clear)
			healthy(t)
		})
	}

	t.Run("blackhole drops exactly the flows of its source ports", func(t *testing.T) {
		healthy(t)
		l.Fault(t, "blackhole", spine1, "--fraction", "0.5")
		rs := l.probe(t, h1, dst, ports(30000, n), time.Second)
		var in, inLost, out, outLost int
		for _, r := range rs {
			if r.SrcPort&1023 < 512 {
				in++
				if !r.Answered {
					inLost++
				}
			} else {
				out++
				if !r.Answered {
					outLost++
				}
			}
		}
		t.Logf("blackhole: %d/%d flows with matching source ports lost, %d/%d others", inLost, in, outLost, out)
		if outLost != 0 {
			t.Errorf("%d flows outside the blackholed ports lost", outLost)
		}
		// Matching flows die when their way out crosses spine1: half.
		if share := float64(inLost) / float64(in); share < 0.3 || share > 0.7 {
			t.Errorf("%.3f of matching flows lost, want about 0.5", share)
		}
		l.Clear(t, spine1)
		healthy(t)
	})

	t.Run("link_latency delays both ways through the relay", func(t *testing.T) {
		healthy(t)
		l.Fault(t, "link_latency", hostLink, "--add", "20ms")
		var rs []probeResult
		testkit.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error {
			rs = l.probe(t, h1, dst, make([]int, 100), time.Second)
			if loss := lossOf(rs); loss > 0 {
				return fmt.Errorf("loss %.3f through the relay", loss)
			}
			return nil
		})
		// The round above may have waited for ARP across the new relay;
		// this one measures the delay alone.
		rs = l.probe(t, h1, dst, make([]int, 100), time.Second)
		rtts := make([]time.Duration, 0, len(rs))
		for _, r := range rs {
			if r.Answered {
				rtts = append(rtts, r.RTT)
			}
		}
		slices.Sort(rtts)
		if len(rtts) < 95 {
			t.Fatalf("only %d of 100 answered through the relay", len(rtts))
		}
		t.Logf("link_latency 20ms: %d/100 round trips answered, RTT min %v, median %v, max %v", len(rtts), rtts[0], rtts[len(rtts)/2], rtts[len(rtts)-1])
		if rtts[0] < 40*time.Millisecond {
			t.Errorf("RTT %v: the relay adds 20ms each way, so at least 40ms", rtts[0])
		}
		// A TCP stream crosses the relay whole: the host's stack hands it
		// segmentation-offloaded frames larger than the MTU, which the relay
		// must pass on as such.
		const size = 8 << 20
		if got, err := l.send(t, h1, sinkAddr, size); err != nil || got != size {
			t.Errorf("TCP stream of %d bytes through the relay: sink read %d (%v)", size, got, err)
		}
		l.refresh(t)
		if len(l.Status.Procs) == 0 || !strings.HasPrefix(l.Status.Procs[len(l.Status.Procs)-1].Name, "relay ") || !l.Status.Procs[len(l.Status.Procs)-1].Running {
			t.Errorf("no running relay in status: %+v", l.Status.Procs)
		}
		l.Clear(t, hostLink)
		healthy(t)
		// The link is one veth pair again, its ends in h1's and the ToR's
		// namespaces (RTTs are not compared: on a loaded machine they say
		// more about the scheduler than about the link).
		i, _, err := l.plan(t).HostUplink(h1)
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("ip", "-n", l.NS(h1), "-d", "link", "show", lab.IfName(i)).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "link-netns "+l.NS(tor1)) {
			t.Errorf("after clear, %s of %s is not paired with %s: %v\n%s", lab.IfName(i), h1, tor1, err, out)
		}
		l.refresh(t)
		for _, p := range l.Status.Procs {
			if strings.HasPrefix(p.Name, "relay ") {
				t.Errorf("relay still in state after clear: %+v", p)
			}
		}
	})

	t.Run("bad requests name the element and change nothing", func(t *testing.T) {
		before := nftRuleset(t, l.NS(spine1))
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"device_down", "dc1-spine9"}, `"dc1-spine9" is not a host, switch or link`},
			{[]string{"blackhole", hostLink, "--fraction", "0.5"}, `cannot be applied to link "` + hostLink + `"; allowed: link_loss, link_latency, link_down`},
			{[]string{"link_loss", spine1, "--rate", "0.5"}, `cannot be applied to switch "dc1-spine1"; allowed: device_down, blackhole, device_loss`},
			{[]string{"no_such_kind", spine1}, "unknown fault kind"},
		} {
			out, err := l.run(append([]string{"fault", "add"}, c.args...)...)
			if err == nil || !strings.Contains(out, c.want) {
				t.Errorf("fault add %v: err %v, output %q; want it to say %q", c.args, err, out, c.want)
			}
		}
		l.refresh(t)
		if len(l.Status.Faults) != 0 {
			t.Errorf("faults in force after refused requests: %v", l.Status.Faults)
		}
		if after := nftRuleset(t, l.NS(spine1)); after != before {
			t.Errorf("spine1 ruleset changed:\n%s\n->\n%s", before, after)
		}
	})
}

// plan is the lab's address plan, from the topology it was built with.
func (l *Lab) plan(t *testing.T) *lab.Plan {
	t.Helper()
	topo, err := topology.Load(filepath.Join(l.Dir, "topology.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := lab.NewPlan(l.ID, topo)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func nftRuleset(t *testing.T, ns string) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "ruleset").CombinedOutput()
	if err != nil {
		t.Fatalf("%s: nft list ruleset: %v: %s", ns, err, out)
	}
	return string(out)
}

// TestDownAfterCrash plays a crash of `up` after it recorded and created
// some namespaces: down removes exactly those, not a namespace of the same
// prefix that the state does not list, and down on nothing is safe.
func TestDownAfterCrash(t *testing.T) {
	requireRoot(t)
	bin := e2eutil.Binary(t)
	dir := t.TempDir()
	id := fmt.Sprintf("c%d", time.Now().UnixNano()%1e6)
	mine := []string{id + "-dc1-spine1", id + "-mgmt"}
	stranger := id + "-notmine"
	recorded := append(slices.Clone(mine), id+"-never-created")
	for _, ns := range append(slices.Clone(mine), stranger) {
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add %s: %v: %s", ns, err, out)
		}
	}
	t.Cleanup(func() {
		for _, ns := range netnsWithPrefix(t, id+"-") {
			_ = exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	state, _ := json.Marshal(map[string]any{"id": id, "dir": dir, "namespaces": recorded, "ready": false})
	if err := os.WriteFile(filepath.Join(dir, "state.json"), state, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "lab", "down", "--dir", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("lab down: %v\n%s", err, out)
	}
	if left := netnsWithPrefix(t, id+"-"); !slices.Equal(left, []string{stranger}) {
		t.Errorf("after down: namespaces %v, want only %s (not the lab's)", left, stranger)
	}
	out, err = exec.Command(bin, "lab", "down", "--dir", dir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "nothing to remove") {
		t.Errorf("second down: %v\n%s", err, out)
	}
}
