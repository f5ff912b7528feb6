package ui

// TestDemo looks at `meshlens demo` as a newcomer does: the product as
// shipped, with its fault (a leaf–spine link of pod 2 dropping 20 % of
// packets after a minute). The fault must be visible at a glance on the
// overview and in the heatmap's default view. Then every page is
// photographed in the light and the dark scheme: into
// test/e2e/artifacts/demo, or, with MESHLENS_SCREENSHOTS=DIR (what `make
// screenshots` sets), into DIR: docs/screenshots.

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/testkit"
	"github.com/meshlens/meshlens/test/e2e/e2eutil"
)

// The demo's fault (cmd/meshlens/demo.go) and where it shows.
const (
	demoLink = "dc1-pod2-leaf3--dc1-spine2"
	demoPod  = "dc1-pod2-"
)

// demoShotsAfter is how long the demo runs before the pictures for docs/.
const demoShotsAfter = 7 * time.Minute

// fabricStart is when the simulated fabric p drives started, from its
// log: a window boundary, which the faults' onsets count from.
func fabricStart(t *testing.T, p *e2eutil.Process) time.Time {
	t.Helper()
	m := regexp.MustCompile(`fabric started.*\bstart=(\S+)`).FindStringSubmatch(p.Output())
	if m == nil {
		t.Fatalf("%s did not log its fabric's start:\n%s", p.Name, p.Output())
	}
	start, err := time.Parse(time.RFC3339Nano, m[1])
	if err != nil {
		t.Fatalf("%s's start %q: %v", p.Name, m[1], err)
	}
	return start
}

func TestDemo(t *testing.T) {
	bin := e2eutil.Binary(t)
	out := os.Getenv("MESHLENS_SCREENSHOTS")
	docs := out != ""
	if !docs {
		out = filepath.Join(artifacts(t), "demo")
	}
	httpAddr, natsAddr := testkit.LoopbackAddr(t), testkit.LoopbackAddr(t)
	demo := e2eutil.Start(t, "demo", nil, bin, "demo", "--http-addr", httpAddr, "--nats-addr", natsAddr, "--data-dir", t.TempDir())
	f := &fabric{base: "http://" + httpAddr}
	e2eutil.WaitHTTP(t, f.base+"/readyz", 2*time.Minute)

	// The localizer blames the link and an incident opens: from then on
	// the fault is there to be seen.
	testkit.CheckFor(t, 5*time.Minute, time.Second, func() error {
		if done, err := demo.Exited(); done {
			t.Fatalf("the demo exited (%v):\n%s", err, demo.Output())
		}
		var body struct {
			Data []struct {
				State  string
				Blamed struct{ Element string }
			}
		}
		if err := e2eutil.GetJSON(f.base+"/api/v1/incidents", &body); err != nil {
			return err
		}
		incidents := body.Data
		for _, i := range incidents {
			if i.State == "open" && i.Blamed.Element == demoLink {
				return nil
			}
		}
		return fmt.Errorf("no open incident blames %s yet (%d incidents)", demoLink, len(incidents))
	})

	b := NewBrowser(t, Options{})
	t.Run("overview", func(t *testing.T) {
		// Is anything broken, where, since when: the first card says it,
		// and the suspects table names the link.
		page(t, b, f, "#/overview", fmt.Sprintf(`document.querySelector('#ov-verdict[data-state=broken]') && document.querySelector('#ov-suspects tr[data-element=%q]')`, demoLink), 2*time.Minute)
		first := evalT[string](t, b, `document.querySelector('main .card').id`)
		if first != "ov-card-now" {
			t.Errorf("the overview's first card is %s, want the verdict (ov-card-now)", first)
		}
		now := evalT[string](t, b, `document.getElementById('ov-card-now').innerText`)
		if !strings.Contains(now, demoLink) || !strings.Contains(now, "since") {
			t.Errorf("the verdict does not say where and since when: %q", now)
		}
	})

	t.Run("heatmap default view", func(t *testing.T) {
		// No parameters: what a newcomer clicking "Heatmap" sees.
		page(t, b, f, "#/heatmap", `document.getElementById('heatmap')?.dataset.metric === 'health' && +document.getElementById('heatmap').dataset.red > 0 && document.querySelector('#hm-worst li')`, 2*time.Minute)
		red := evalT[[]map[string]string](t, b, `[...document.querySelectorAll('#hm-worst li[data-level=red]')].map(e => ({...e.dataset}))`)
		if len(red) == 0 {
			t.Fatal("the default heatmap lists no bad pair")
		}
		for _, p := range red {
			if !strings.HasPrefix(p["src"], demoPod) && !strings.HasPrefix(p["dst"], demoPod) {
				t.Errorf("pair %s → %s is bad but has no end in pod 2, behind the lossy link", p["src"], p["dst"])
			}
		}
		if text := evalT[string](t, b, `document.getElementById('hm-legend').innerText`); !strings.Contains(text, "nobody probed") {
			t.Errorf("the legend does not say what grey means: %q", text)
		}
	})

	t.Run("agents probe", func(t *testing.T) {
		// Every agent up shows a rate above zero once two of its
		// deliveries have been seen (the rate is measured between them,
		// not between two polls that may see the same one).
		page(t, b, f, "#/agents", `document.querySelector('#agents-table tbody tr[data-state=up]')`, time.Minute)
		if err := b.WaitFor(`[...document.querySelectorAll('#agents-table tbody tr[data-state=up]')].every(r => +r.children[6].textContent > 0)`, time.Minute); err != nil {
			t.Error(err, evalT[string](t, b, `[...document.querySelectorAll('#agents-table tbody tr')].slice(0, 3).map(r => r.innerText).join(' | ')`))
		}
	})

	t.Run("slo budget", func(t *testing.T) {
		// Minutes into a week's window, a 20 % link fault spends a sliver
		// of the week's budget, not twenty budgets.
		var slos []sloStatus
		f.getJSON(t, "/api/v1/slos", &slos)
		for _, s := range slos {
			if s.Budget == nil || *s.Budget < 0 || *s.Budget > 1 {
				raw, _ := json.Marshal(s)
				t.Errorf("SLO %s: budget remaining %v minutes into its window: %s", s.Name, s.Budget, raw)
			}
		}
	})

	t.Run("screenshots", func(t *testing.T) {
		if docs {
			// The pictures in docs/ show the demo a while in: the ToR
			// uplink's added latency (at 3 min) too, and the pair view's
			// pooled intervals, a full one and more.
			start := fabricStart(t, demo)
			testkit.CheckFor(t, 10*time.Minute, 5*time.Second, func() error {
				if left := time.Until(start.Add(demoShotsAfter)); left > 0 {
					return fmt.Errorf("the demo has run %s of %s", time.Since(start).Round(time.Second), demoShotsAfter)
				}
				return nil
			})
		}
		views := demoViews(t, f)
		for _, dark := range []bool{false, true} {
			scheme := "light"
			if dark {
				scheme = "dark"
			}
			if err := b.SetDark(dark); err != nil {
				t.Fatal(err)
			}
			for _, v := range views {
				page(t, b, f, v.hash, v.ready, 2*time.Minute)
				shoot := b.Screenshot
				if v.name == "agents" { // 256 rows: the top of the page says it
					shoot = b.ScreenshotViewport
				}
				if err := shoot(filepath.Join(out, v.name+"-"+scheme+".png")); err != nil {
					t.Error(err)
				}
			}
		}
		if err := b.SetDark(false); err != nil {
			t.Fatal(err)
		}
	})

	if p := b.Problems(); len(p) > 0 {
		t.Errorf("console problems (exceptions, CSP violations):\n%s", strings.Join(p, "\n"))
	}
}

// demoViews are the pages photographed: every page of the navigation, the
// heatmap drilled into a bad rack pair, a host pair across the lossy link
// and one incident.
func demoViews(t *testing.T, f *fabric) []view {
	t.Helper()
	var incidents []struct {
		ID     string
		Blamed struct{ Element string }
	}
	f.getJSON(t, "/api/v1/incidents", &incidents)
	incident := ""
	for _, i := range incidents {
		if i.Blamed.Element == demoLink {
			incident = i.ID
		}
	}
	if incident == "" {
		t.Fatalf("no incident blames %s", demoLink)
	}
	// The worst rack pair now, from the heatmap's own loss query.
	var worst struct {
		Result []struct{ Metric map[string]string }
	}
	f.getJSON(t, "/api/v1/query?query="+url.QueryEscape("topk(1, sum by (src_rack, dst_rack) (increase(meshlens_rack_pair_probes_lost_total[1m])) / sum by (src_rack, dst_rack) (increase(meshlens_rack_pair_probes_total[1m])))"), &worst)
	if len(worst.Result) == 0 {
		t.Fatal("no rack pair has loss")
	}
	a, b := worst.Result[0].Metric["src_rack"], worst.Result[0].Metric["dst_rack"]
	var pairs []struct {
		Src, Dst string
		Lost     int
	}
	f.getJSON(t, "/api/v1/pairs?"+url.Values{"src_rack": {a}, "dst_rack": {b}}.Encode(), &pairs)
	src, dst := a+"-h01", b+"-h01"
	for _, p := range pairs {
		if p.Lost > 0 {
			src, dst = p.Src, p.Dst
			break
		}
	}
	loaded := `![...document.querySelectorAll('main .empty')].some(e => e.textContent === 'Loading…')`
	heat := `document.getElementById('heatmap')?.dataset.level === %q && +document.getElementById('heatmap').dataset.cells > 0`
	return []view{
		{"overview", "#/overview", loaded + ` && document.querySelector('#ov-suspects')`},
		{"heatmap", "#/heatmap", fmt.Sprintf(heat, "rack")},
		{"heatmap-hosts", "#/heatmap?" + url.Values{"level": {"host"}, "a": {a}, "b": {b}}.Encode(), fmt.Sprintf(heat, "host")},
		{"pair", "#/pair?" + url.Values{"src": {src}, "dst": {dst}}.Encode(), loaded + ` && document.querySelector('#pair-diagnosis') && document.querySelector('#pair-pooling')`},
		{"rack-pair", "#/pair?" + url.Values{"src_rack": {a}, "dst_rack": {b}}.Encode(), loaded + ` && document.querySelector('#pair-diagnosis')`},
		{"topology", "#/topology", `document.querySelector('#topo-svg .node, #topo-svg .link')`},
		{"slos", "#/slos", loaded + ` && document.querySelector('main .card figure svg')`},
		{"incidents", "#/incidents", `document.querySelector('#incidents-table tbody tr')`},
		{"incident", "#/incidents?id=" + url.QueryEscape(incident), `document.querySelector('#incident-detail')`},
		{"agents", "#/agents", `document.querySelector('#agents-table tbody tr') && ![...document.querySelectorAll('#agents-table td')].some(td => td.textContent === 'measuring…')`},
	}
}
