// Package scaleout is the end-to-end test of meshlens's roles: two
// partitioned aggregators, an analyzer and an API server on a three-node
// NATS JetStream cluster and VictoriaMetrics, beside one all-in-one server
// reading the same results stream into its embedded TSDB. Both must count
// the same probes and blame the same elements, and killing an aggregator
// mid-run must lose nothing and count nothing twice.
package scaleout

import (
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/testkit"
	"github.com/meshlens/meshlens/internal/testkit/tsdbtest"
	"github.com/meshlens/meshlens/test/e2e/e2eutil"
)

const faultyLink = "dc1-pod1-leaf2--dc1-spine1"

const slo = `name: pod1-availability
target: 99.9%
window: 1d
sli:
  probe_availability: {pod: dc1-pod1}
`

var scenario = `name: e2e-scaleout
seed: 5
topology: {generate: {dcs: 1, pods: 2, racks_per_pod: 2, hosts_per_rack: 4, leaves_per_pod: 2, spines: 2}}
probing: {interval: 2s, protocols: [tcp, udp]}
duration: 1h
background: {loss: 0.00001, latency: {base: 40us, jitter: 20us}}
faults:
  - {kind: link_loss, link: "` + faultyLink + `", rate: 0.3, at: 20s}
`

// server is one meshlens server process of the test.
type server struct {
	name string
	url  string
	p    *e2eutil.Process
}

func (s *server) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	v, err := e2eutil.Metric(s.url+"/metrics", name, labels...)
	if err != nil {
		t.Fatalf("%s: %v", s.name, err)
	}
	return v
}

func TestRolesMatchOneProcess(t *testing.T) {
	bin := e2eutil.Binary(t)
	dir := t.TempDir()
	nodes := e2eutil.StartNATSCluster(t, filepath.Join(dir, "cluster"), "meshlens-scaleout", nil)
	natsURLs := e2eutil.ClusterURLs(nodes)
	vm := tsdbtest.StartVictoriaMetrics(t)

	scFile := filepath.Join(dir, "scenario.yaml")
	if err := os.WriteFile(scFile, []byte(scenario), 0o644); err != nil {
		t.Fatal(err)
	}
	sloFile := filepath.Join(dir, "slo.yaml")
	if err := os.WriteFile(sloFile, []byte(slo), 0o644); err != nil {
		t.Fatal(err)
	}
	topoFile := filepath.Join(dir, "topology.yaml")
	e2eutil.Topology(t, topoFile, bin, "sim", "topology", scFile)

	common := []string{"--topology", topoFile, "--nats-url", natsURLs, "--stream-replicas", "3", "--partitions", "2",
		"--window", "2s", "--lateness", "15s", "--evidence=false", "--log-level", "debug"}
	launch := func(name string, args ...string) *e2eutil.Server {
		a := append(slices.Clone(common), "--server-id", name, "--data-dir", filepath.Join(dir, "data-"+name))
		return e2eutil.LaunchServer(t, nil, bin, append(a, args...)...)
	}
	ready := func(name string, srv *e2eutil.Server) *server {
		srv.WaitRunning(t)
		s := &server{name: name, url: srv.HTTPURL, p: srv.Process}
		e2eutil.WaitHTTP(t, s.url+"/readyz", time.Minute)
		return s
	}
	start := func(name string, args ...string) *server { return ready(name, launch(name, args...)) }
	// The reference: everything in one process, its own TSDB.
	ref := start("ref")
	// The aggregators start at the same moment, as a deployment's do:
	// both create the rollups stream and share the partitions from zero.
	roles := []string{"--query-url", vm, "--remote-write-url", vm + "/api/v1/write"}
	aggA, aggB := launch("agg-a", append([]string{"--role", "aggregator"}, roles...)...), launch("agg-b", append([]string{"--role", "aggregator"}, roles...)...)
	aggs := []*server{ready("agg-a", aggA), ready("agg-b", aggB)}
	sloArgs := []string{"--slo", sloFile, "--slo-interval", "2s"}
	analyzer := start("analyzer", append(append([]string{"--role", "analyzer"}, roles[:2]...), sloArgs...)...)
	apiSrv := start("api", append(append([]string{"--role", "api"}, roles[:2]...), sloArgs...)...)
	sim := e2eutil.Start(t, "sim live", nil, bin, "sim", "live", scFile, "--nats-url", natsURLs, "--partitions", "2")
	simStarted := time.Now()

	// The aggregators share the partitions, one each.
	testkit.CheckFor(t, time.Minute, 500*time.Millisecond, func() error {
		for _, a := range aggs {
			if held := a.metric(t, "meshlens_aggregator_partitions_held"); held != 1 {
				return fmt.Errorf("%s holds %v partitions, want 1", a.name, held)
			}
		}
		return nil
	})

	// Both sides blame the faulty link; record what each blames meanwhile.
	blamed := map[string]map[string]int{ref.name: {}, analyzer.name: {}, apiSrv.name: {}}
	poll := func() {
		for _, s := range []*server{ref, analyzer, apiSrv} {
			for _, e := range suspects(t, s.url) {
				blamed[s.name][e]++
			}
		}
	}
	testkit.CheckFor(t, 2*time.Minute, time.Second, func() error {
		if exited, err := sim.Exited(); exited {
			t.Fatalf("sim live exited: %v", err)
		}
		poll()
		for _, s := range []*server{ref, analyzer, apiSrv} {
			if blamed[s.name][faultyLink] == 0 {
				return fmt.Errorf("%s has not blamed %s yet (blamed %v)", s.name, faultyLink, blamed[s.name])
			}
		}
		return nil
	})
	t.Logf("all sides blamed %s %v after the sim started", faultyLink, time.Since(simStarted).Round(time.Second))
	// The SLO, evaluated over the shared TSDB, on the analyzer and the API
	// alike; and the localizer's own incident.
	testkit.CheckFor(t, time.Minute, time.Second, func() error {
		for _, s := range []*server{analyzer, apiSrv} {
			if err := sloCounted(s.url, "pod1-availability"); err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
		}
		return nil
	})
	testkit.CheckFor(t, time.Minute, time.Second, func() error {
		for _, s := range []*server{analyzer, apiSrv} {
			if err := openIncident(s.url, faultyLink); err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
		}
		return nil
	})

	// SIGKILL one aggregator: the other takes its partition over.
	victim, survivor := aggs[0], aggs[1]
	atKill := sumOf(totals(t, ref.url, "meshlens_rack_pair_probes_total"))
	victim.p.Kill()
	killed := time.Now()
	testkit.CheckFor(t, time.Minute, 250*time.Millisecond, func() error {
		poll()
		if held := survivor.metric(t, "meshlens_aggregator_partitions_held"); held != 2 {
			return fmt.Errorf("%s holds %v partitions %v after the kill, want 2", survivor.name, held, time.Since(killed).Round(time.Second))
		}
		return nil
	})
	t.Logf("%s took over %s's partition %v after its SIGKILL", survivor.name, victim.name, time.Since(killed).Round(100*time.Millisecond))
	// A fixed span sampled after the takeover, not a condition awaited.
	tick := time.NewTicker(time.Second)
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); <-tick.C {
		poll()
	}
	tick.Stop()
	sim.Stop(t)

	// Once both sides have counted everything, they count the same.
	counters := []string{"meshlens_rack_pair_probes_total", "meshlens_rack_pair_probes_lost_total", "meshlens_host_probes_total", "meshlens_rack_probes_total"}
	var refTotals, roleTotals map[string]map[string]float64
	testkit.CheckFor(t, time.Minute, 2*time.Second, func() error {
		refTotals, roleTotals = map[string]map[string]float64{}, map[string]map[string]float64{}
		for _, c := range counters {
			refTotals[c] = totals(t, ref.url, c)
			roleTotals[c] = totals(t, apiSrv.url, c)
			if len(refTotals[c]) == 0 {
				return fmt.Errorf("reference has no %s", c)
			}
			if diff := diffTotals(refTotals[c], roleTotals[c]); diff != "" {
				return fmt.Errorf("%s: one process vs roles: %s", c, diff)
			}
		}
		return nil
	})
	probes := sumOf(refTotals["meshlens_rack_pair_probes_total"])
	t.Logf("both sides counted the same %v probes over %d rack pairs, %v of them after the kill", probes, len(refTotals["meshlens_rack_pair_probes_total"]), probes-atKill)
	if probes < 1.5*atKill {
		t.Errorf("%v probes counted in all, %v at the kill: the run after the kill is missing", probes, atKill)
	}

	// The same sketches: the windows' p99 per rack pair agree. A result
	// that arrives after its window was sealed is counted but not in the
	// window's sketch, and the two sides seal at their own moments: the
	// lateness bound is long enough that windows are sealed on the
	// agents' marks, when their data is in, on both sides.
	for _, s := range []*server{ref, survivor} {
		if late := s.metric(t, "meshlens_ingest_late_results_total"); late != 0 {
			t.Logf("%s counted %v late results", s.name, late)
		}
	}
	compareQuantiles(t, ref.url, apiSrv.url)

	// The same blamed elements: what each side blames steadily. Verdicts
	// of single windows may differ: a trace joins the first window
	// localized after it arrives, and each side localizes on its own
	// clock (and the roles' windows waited for the partition taken over).
	for _, other := range []*server{analyzer, apiSrv} {
		if a, b := steady(blamed[ref.name]), steady(blamed[other.name]); !slices.Equal(a, b) {
			t.Errorf("blamed repeatedly: one process %v, %s %v (all: %v vs %v)", a, other.name, b, blamed[ref.name], blamed[other.name])
		}
	}
	t.Logf("blamed (element: polls): one process %v, analyzer %v, api %v", blamed[ref.name], blamed[analyzer.name], blamed[apiSrv.name])

	// The analyzer took every partition's windows and refused none.
	if n := analyzer.metric(t, "meshlens_rollups_accepted_total"); n == 0 {
		t.Error("the analyzer accepted no rollups")
	}
	for _, reason := range []string{"not_holder", "stale_term", "duplicate", "out_of_order", "malformed", "bad_partition", "bad_header"} {
		if n := analyzer.metric(t, "meshlens_rollups_refused_total", "reason", reason); n != 0 {
			t.Errorf("the analyzer refused %v rollups as %s", n, reason)
		}
	}
}

// suspects are the elements a server blames in its latest window.
func suspects(t *testing.T, base string) []string {
	t.Helper()
	var v struct {
		Data struct {
			Suspects []struct {
				Element string `json:"element"`
			} `json:"suspects"`
		} `json:"data"`
	}
	if err := e2eutil.GetJSON(base+"/api/v1/suspects", &v); err != nil {
		t.Fatalf("%s suspects: %v", base, err)
	}
	var out []string
	for _, s := range v.Data.Suspects {
		out = append(out, s.Element)
	}
	return out
}

// sloCounted checks that the server evaluates the SLO and counted events.
func sloCounted(base, name string) error {
	var v struct {
		Data []map[string]any `json:"data"`
	}
	if err := e2eutil.GetJSON(base+"/api/v1/slos", &v); err != nil {
		return err
	}
	for _, st := range v.Data {
		if st["name"] == name {
			if events, _ := st["events"].(float64); events > 0 {
				return nil
			}
			return fmt.Errorf("SLO %s counted nothing yet: %v", name, st)
		}
	}
	return fmt.Errorf("no SLO %s in %v", name, v.Data)
}

// openIncident checks that the server has an open incident blaming element.
func openIncident(base, element string) error {
	var v struct {
		Data []struct {
			ID     string `json:"id"`
			State  string `json:"state"`
			Blamed *struct {
				Element string `json:"element"`
			} `json:"blamed"`
		} `json:"data"`
	}
	if err := e2eutil.GetJSON(base+"/api/v1/incidents", &v); err != nil {
		return err
	}
	for _, inc := range v.Data {
		if inc.Blamed != nil && inc.Blamed.Element == element && inc.State == "open" {
			return nil
		}
	}
	return fmt.Errorf("no open incident blaming %s in %+v", element, v.Data)
}

// steady are the elements blamed in at least a quarter as many polls as
// the most blamed one, sorted.
func steady(polls map[string]int) []string {
	most := 0
	for _, n := range polls {
		most = max(most, n)
	}
	var out []string
	for e, n := range polls {
		if 4*n >= most {
			out = append(out, e)
		}
	}
	sort.Strings(out)
	return out
}

// totals is a counter's last value per series, summed over partitions,
// keyed by its other labels.
func totals(t *testing.T, base, counter string) map[string]float64 {
	t.Helper()
	q := fmt.Sprintf(`sum without (partition) (last_over_time(%s[1h]))`, counter)
	var v struct {
		Data struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := e2eutil.GetJSON(base+"/api/v1/query?query="+url.QueryEscape(q), &v); err != nil {
		t.Fatalf("%s %s: %v", base, q, err)
	}
	out := map[string]float64{}
	for _, r := range v.Data.Result {
		var keys []string
		for k, val := range r.Metric {
			keys = append(keys, k+"="+val)
		}
		sort.Strings(keys)
		var f float64
		fmt.Sscan(fmt.Sprint(r.Value[1]), &f)
		out[strings.Join(keys, ",")] = f
	}
	return out
}

func sumOf(m map[string]float64) float64 {
	var sum float64
	for _, v := range m {
		sum += v
	}
	return sum
}

func diffTotals(a, b map[string]float64) string {
	var d []string
	for k, v := range a {
		if b[k] != v {
			d = append(d, fmt.Sprintf("%s: %v vs %v", k, v, b[k]))
		}
	}
	for k, v := range b {
		if _, ok := a[k]; !ok {
			d = append(d, fmt.Sprintf("%s: absent vs %v", k, v))
		}
	}
	sort.Strings(d)
	if len(d) > 5 {
		d = append(d[:5], fmt.Sprintf("and %d more", len(d)-5))
	}
	return strings.Join(d, "; ")
}

// compareQuantiles compares the per-window p99 of every rack pair at the
// windows both TSDBs hold: the same DDSketches, so the same values.
func compareQuantiles(t *testing.T, refURL, roleURL string) {
	t.Helper()
	q := `meshlens_rack_pair_latency_seconds{quantile="0.99"}`
	refS, roleS := rawSamples(t, refURL, q), rawSamples(t, roleURL, q)
	compared := 0
	for k, rs := range refS {
		for ts, v := range rs {
			w, ok := roleS[k][ts]
			if !ok {
				continue
			}
			compared++
			if math.Abs(v-w) > 1e-9*math.Max(1, math.Abs(v)) {
				t.Errorf("p99 of %s at %v: one process %v, roles %v", k, time.UnixMilli(ts), v, w)
			}
		}
	}
	if compared < 10 {
		sample := func(m map[string]map[int64]float64) string {
			for k, v := range m {
				for ts := range v {
					return fmt.Sprintf("%d series, e.g. %s at %d", len(m), k, ts)
				}
			}
			return "none"
		}
		t.Fatalf("only %d windows' p99 in both TSDBs: one process %s; roles %s", compared, sample(refS), sample(roleS))
	}
	t.Logf("%d windows' rack-pair p99 equal on both sides", compared)
}

// rawSamples are a selector's raw samples over the last 10 minutes, by
// series and unix millisecond. Both sides partition agents alike (a hash
// of the name), so a partition's series are the same on both.
func rawSamples(t *testing.T, base, selector string) map[string]map[int64]float64 {
	t.Helper()
	var v struct { // the data of the response (DecodeProm)
		Result []struct {
			Metric map[string]string `json:"metric"`
			Values [][2]any          `json:"values"`
		} `json:"result"`
	}
	resp, err := http.PostForm(base+"/api/v1/query", url.Values{"query": {selector + "[10m]"}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := e2eutil.DecodeProm(resp, &v); err != nil {
		t.Fatalf("%s %s: %v", base, selector, err)
	}
	out := map[string]map[int64]float64{}
	for _, r := range v.Result {
		var keys []string
		for k, val := range r.Metric {
			keys = append(keys, k+"="+val)
		}
		sort.Strings(keys)
		k := strings.Join(keys, ",")
		if out[k] == nil {
			out[k] = map[int64]float64{}
		}
		for _, p := range r.Values {
			var ts, f float64
			fmt.Sscan(fmt.Sprint(p[0]), &ts)
			fmt.Sscan(fmt.Sprint(p[1]), &f)
			out[k][int64(math.Round(ts*1000))] = f
		}
	}
	return out
}
