package ui

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/meshlens/meshlens/internal/testkit"
	"github.com/meshlens/meshlens/test/e2e/e2eutil"
)

// The fabric of the test: 2 pods × 4 racks × 4 hosts, one lossy ToR.
const (
	pods, racksPerPod, hostsPerRack = 2, 4, 4
	faultyRack                      = "dc1-pod1-rack2"
	faultyToR                       = faultyRack + "-tor"
	otherRack                       = "dc1-pod1-rack1" // same pod: probed by every Pingmesh level
)

// faultAt is the fault's onset from the simulator's start: the windows
// before it are healthy, which the past-time heatmap shows.
const faultAt = 40 * time.Second

// fabric is a real meshlens server fed by the simulator with one fault.
type fabric struct {
	base  string // http://127.0.0.1:PORT
	dir   string
	onset time.Time // when the fault began: the end of the last healthy window
}

func startFabric(t *testing.T) *fabric {
	t.Helper()
	bin := e2eutil.Binary(t)
	dir := t.TempDir()
	topoPath := filepath.Join(dir, "topo.yaml")
	e2eutil.Topology(t, topoPath, bin, "topo", "gen", "--dcs", "1",
		"--pods", strconv.Itoa(pods), "--racks-per-pod", strconv.Itoa(racksPerPod),
		"--hosts-per-rack", strconv.Itoa(hostsPerRack), "--leaves-per-pod", "2", "--spines", "2")
	scenarioPath := filepath.Join(dir, "scenario.yaml")
	scenario := fmt.Sprintf(`name: ui-e2e
seed: 7
topology: {file: %q}
probing: {interval: 10s, protocols: [tcp, udp]}
duration: 1h
background: {loss: 0, latency: {base: 40us, jitter: 20us}} # no background loss: only the fault paints red
faults:
  - {kind: device_loss, device: %s, rate: 0.5, at: %s}
`, topoPath, faultyToR, faultAt)
	// An SLO on the faulty rack, so its burn opens an incident that names
	// the localizer's culprit.
	sloPath := filepath.Join(dir, "slos.yaml")
	slos := fmt.Sprintf(`name: faulty-rack-availability
target: 99.9%%
window: 7d
sli:
  probe_availability: {rack: %s}
alerting:
  min_events: 20
  tiers:
    - {name: fast, burn_rate: 14.4, long: 1m, short: 20s, severity: page}
`, faultyRack)
	for path, data := range map[string]string{scenarioPath: scenario, sloPath: slos} {
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	srv := e2eutil.StartServer(t, nil, bin, "--topology", topoPath, "--data-dir", filepath.Join(dir, "data"),
		"--lateness", "2s", "--slo", sloPath, "--slo-interval", "5s")
	server := srv.Process
	f := &fabric{base: srv.HTTPURL, dir: dir}
	e2eutil.WaitHTTP(t, f.base+"/readyz", time.Minute)
	sim := e2eutil.Start(t, "sim", nil, bin, "sim", "live", scenarioPath, "--nats-url", srv.NATSURL)
	// Wait until the fault is in the TSDB: the faulty rack pair's loss
	// rollup is there and clearly above the background.
	testkit.CheckFor(t, 4*time.Minute, time.Second, func() error {
		for _, p := range []*e2eutil.Process{server, sim} {
			if done, err := p.Exited(); done {
				t.Fatalf("%s exited early (%v):\n%s", p.Name, err, p.Output())
			}
		}
		// The heatmap's own loss query: a minute of the exact counters.
		for _, p := range [][2]string{{faultyRack, otherRack}, {otherRack, faultyRack}} {
			sel := fmt.Sprintf(`src_rack=%q,dst_rack=%q`, p[0], p[1])
			v, err := f.instant(fmt.Sprintf(`sum(increase(meshlens_rack_pair_probes_lost_total{%s}[1m])) / sum(increase(meshlens_rack_pair_probes_total{%s}[1m]))`, sel, sel))
			if err != nil {
				return err
			}
			if v < 0.05 {
				return fmt.Errorf("loss %s → %s is %g, want the fault's", p[0], p[1], v)
			}
		}
		return nil
	})
	// The fault begins faultAt after the fabric's start, on a boundary.
	f.onset = fabricStart(t, sim).Add(faultAt)
	return f
}

// getJSON decodes the data of a JSON API answer ({"status", "data"}).
func (f *fabric) getJSON(t *testing.T, path string, v any) {
	t.Helper()
	resp, err := http.Get(f.base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&struct{ Data any }{v}); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

// instant runs a PromQL query returning one sample.
func (f *fabric) instant(q string) (float64, error) {
	resp, err := http.Get(f.base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string
		Error  string
		Data   struct {
			Result []struct {
				Value [2]any
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, fmt.Errorf("query %s: %w", q, err)
	}
	if body.Status != "success" {
		return 0, fmt.Errorf("query %s: %s", q, body.Error)
	}
	if len(body.Data.Result) == 0 {
		return 0, fmt.Errorf("query %s: no data yet", q)
	}
	s, _ := body.Data.Result[0].Value[1].(string)
	return strconv.ParseFloat(s, 64)
}

func artifacts(t *testing.T) string {
	return filepath.Join(e2eutil.RepoRoot(t), "test", "e2e", "artifacts")
}

// page opens a hash route and waits for predicate.
func page(t *testing.T, b *Browser, f *fabric, hash, predicate string, timeout time.Duration) {
	t.Helper()
	// A fresh load each time: every page is opened as a deep link, and no
	// predicate can be satisfied by the previous page's DOM.
	if err := b.Navigate("about:blank"); err != nil {
		t.Fatal(err)
	}
	if err := b.Navigate(f.base + "/" + hash); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitFor(predicate, timeout); err != nil {
		shot(t, b, "FAILED-"+strings.ReplaceAll(t.Name(), "/", "-"))
		t.Fatal(err)
	}
	noJunk(t, b)
}

// noJunk fails on JavaScript values leaking into the page as text.
func noJunk(t *testing.T, b *Browser) {
	t.Helper()
	junk, err := Eval[string](b, `(document.querySelector('main').innerText.match(/\b(null|undefined|NaN)\b|\[object Object\]/) || [''])[0]`)
	if err != nil {
		t.Fatal(err)
	}
	if junk != "" {
		t.Errorf("page %s shows %q as text", evalT[string](t, b, "location.hash"), junk)
	}
}

func shot(t *testing.T, b *Browser, name string) {
	t.Helper()
	if err := b.Screenshot(filepath.Join(artifacts(t), name+".png")); err != nil {
		t.Error(err)
	}
}

func evalT[T any](t *testing.T, b *Browser, expr string) T {
	t.Helper()
	v, err := Eval[T](b, expr)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Pingmesh's red of the default palette (web/js/scale.js).
const paletteRed = "#d7301f"

// cellJS finds the centre of the heatmap cell (src, dst) in page
// coordinates and the colour of its pixel on the canvas.
const cellJS = `(() => {
  const c = document.getElementById('heatmap');
  const rows = %s, cols = %s;
  const r = rows.indexOf(%q), k = cols.indexOf(%q);
  if (r < 0 || k < 0) return null;
  const d = c.dataset, n = rows.length, m = cols.length;
  const x = +d.originX + (k + 0.5) * d.gridW / m, y = +d.originY + (r + 0.5) * d.gridH / n;
  const p = c.getContext('2d').getImageData(Math.floor(x), Math.floor(y), 1, 1).data;
  const rect = c.getBoundingClientRect();
  const hex = '#' + [p[0], p[1], p[2]].map(v => v.toString(16).padStart(2, '0')).join('');
  return { x: rect.left + x * rect.width / c.width, y: rect.top + y * rect.height / c.height, color: hex };
})()`

type cell struct {
	X, Y  float64
	Color string
}

func rackNames() []string {
	var out []string
	for p := 1; p <= pods; p++ {
		for r := 1; r <= racksPerPod; r++ {
			out = append(out, fmt.Sprintf("dc1-pod%d-rack%d", p, r))
		}
	}
	return out
}

func hostNames(rack string) []string {
	var out []string
	for h := 1; h <= hostsPerRack; h++ {
		out = append(out, fmt.Sprintf("%s-h%02d", rack, h))
	}
	return out
}

func jsList(names []string) string {
	b, _ := json.Marshal(names)
	return string(b)
}

func TestUI(t *testing.T) {
	// Screenshots of failures from an earlier run would mislead.
	stale, _ := filepath.Glob(filepath.Join(artifacts(t), "FAILED-*.png"))
	for _, p := range stale {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	f := startFabric(t)
	b := NewBrowser(t, Options{})
	notLoading := `document.querySelector('main') && ![...document.querySelectorAll('main .empty')].some(e => e.textContent === 'Loading…')`

	t.Run("overview", func(t *testing.T) {
		page(t, b, f, "#/overview", notLoading+` && document.querySelector('#ov-worst tr.sev-red')`, time.Minute)
		got := evalT[string](t, b, `document.querySelector('#ov-worst tr.sev-red').dataset.src + ' ' + document.querySelector('#ov-worst tr.sev-red').dataset.dst`)
		if !strings.Contains(got, faultyRack) {
			t.Errorf("worst rack pair %q does not involve the faulty rack %s", got, faultyRack)
		}
		if n := evalT[int](t, b, `+document.querySelector('#ov-agents .state-up').textContent`); n != pods*racksPerPod*hostsPerRack {
			t.Errorf("overview shows %d agents up, want %d", n, pods*racksPerPod*hostsPerRack)
		}
		// Is anything broken, and where: the verdict, then the localizer's
		// suspects, naming the faulty ToR.
		if err := b.WaitFor(fmt.Sprintf(`document.querySelector('#ov-verdict[data-state=broken]') && document.querySelector('#ov-suspects tr[data-element=%q]')`, faultyToR), 3*time.Minute); err != nil {
			shot(t, b, "FAILED-overview")
			t.Error(err)
		}
		shot(t, b, "overview")
	})

	racks := rackNames()
	// The heatmap as it opens, without parameters: loss and latency
	// together, so the lossy rack's pairs are red in it.
	t.Run("heatmap default view", func(t *testing.T) {
		page(t, b, f, "#/heatmap", `document.getElementById('heatmap')?.dataset.metric === 'health' && +document.getElementById('heatmap').dataset.red > 0`, time.Minute)
		for _, pair := range [][2]string{{faultyRack, otherRack}, {otherRack, faultyRack}} {
			c := evalT[*cell](t, b, fmt.Sprintf(cellJS, jsList(racks), jsList(racks), pair[0], pair[1]))
			if c == nil || c.Color != paletteRed {
				t.Errorf("default view: cell %s → %s is %+v, want %s", pair[0], pair[1], c, paletteRed)
			}
		}
		for _, p := range evalT[[]map[string]string](t, b, `[...document.querySelectorAll('#hm-worst li[data-level=red]')].map(e => ({...e.dataset}))`) {
			if p["src"] != faultyRack && p["dst"] != faultyRack {
				t.Errorf("default view: pair %s → %s is red but does not involve %s", p["src"], p["dst"], faultyRack)
			}
		}
		shot(t, b, "heatmap-default")
	})

	t.Run("heatmap", func(t *testing.T) {
		page(t, b, f, "#/heatmap?level=rack&metric=loss", `document.getElementById('heatmap')?.dataset.level === 'rack' && +document.getElementById('heatmap').dataset.red > 0`, time.Minute)
		d := evalT[map[string]string](t, b, `({...document.getElementById('heatmap').dataset})`)
		if d["rows"] != strconv.Itoa(len(racks)) || d["cols"] != strconv.Itoa(len(racks)) || d["cells"] != strconv.Itoa(len(racks)*len(racks)) {
			t.Errorf("heatmap is %s × %s = %s cells, want %d × %d", d["rows"], d["cols"], d["cells"], len(racks), len(racks))
		}
		// Every red pair involves the faulty rack, and its pair with a
		// rack of the same pod is red on the canvas itself.
		red := evalT[[]map[string]string](t, b, `[...document.querySelectorAll('#hm-worst li[data-level=red]')].map(e => ({...e.dataset}))`)
		if len(red) == 0 {
			t.Fatal("no red pair listed")
		}
		for _, p := range red {
			if p["src"] != faultyRack && p["dst"] != faultyRack {
				t.Errorf("pair %s → %s is red but does not involve %s", p["src"], p["dst"], faultyRack)
			}
		}
		for _, pair := range [][2]string{{faultyRack, otherRack}, {otherRack, faultyRack}} {
			c := evalT[*cell](t, b, fmt.Sprintf(cellJS, jsList(racks), jsList(racks), pair[0], pair[1]))
			if c == nil || c.Color != paletteRed {
				t.Errorf("cell %s → %s: pixel %+v, want %s", pair[0], pair[1], c, paletteRed)
			}
		}
		shot(t, b, "heatmap")

		// Hovering shows the numbers.
		c := evalT[*cell](t, b, fmt.Sprintf(cellJS, jsList(racks), jsList(racks), faultyRack, otherRack))
		if err := b.Do(chromedp.MouseEvent("mouseMoved", c.X, c.Y)); err != nil {
			t.Fatal(err)
		}
		if err := b.WaitFor(`!document.querySelector('.tooltip').hidden && document.querySelector('.tooltip').textContent.includes('`+faultyRack+`')`, 10*time.Second); err != nil {
			t.Error(err)
		}

		// The blue-orange scale paints the same cell in its own "bad" colour.
		page(t, b, f, "#/heatmap?level=rack&metric=loss&pal=blueorange", `document.getElementById('heatmap')?.dataset.palette === 'blueorange' && +document.getElementById('heatmap').dataset.red > 0`, time.Minute)
		if c := evalT[*cell](t, b, fmt.Sprintf(cellJS, jsList(racks), jsList(racks), faultyRack, otherRack)); c == nil || c.Color != "#d95f0e" {
			t.Errorf("blue-orange scale: cell %s → %s is %+v, want #d95f0e", faultyRack, otherRack, c)
		}
		shot(t, b, "heatmap-blueorange")

		// Chosen on the heatmap, the blue-orange scale is kept for every
		// page: the topology's (and tables', badges') bad colour follows.
		page(t, b, f, "#/heatmap?level=rack&metric=loss", `document.getElementById('hm-pal')`, time.Minute)
		evalT[bool](t, b, `(() => { const s = document.getElementById('hm-pal'); s.value = 'blueorange'; s.dispatchEvent(new Event('change')); return true; })()`)
		page(t, b, f, "#/topology", `document.querySelector('#topo-svg')`, time.Minute)
		if bad := evalT[string](t, b, `getComputedStyle(document.documentElement).getPropertyValue('--bad').trim()`); bad != "#c2410c" {
			t.Errorf("after choosing blue-orange, the topology's bad colour is %q, want #c2410c", bad)
		}
		shot(t, b, "topology-blueorange")
		evalT[bool](t, b, `(localStorage.removeItem('meshlens.palette'), true)`)
		page(t, b, f, "#/heatmap?level=rack&metric=loss&pal=blueorange", `document.getElementById('heatmap')?.dataset.palette === 'blueorange' && +document.getElementById('heatmap').dataset.red > 0`, time.Minute)

		// Keyboard: focusing the canvas puts the cursor on the first cell,
		// arrows move it, Enter drills down.
		if err := b.Do(chromedp.Focus(chromedp.CSS("#heatmap")), chromedp.KeyEvent(kb.ArrowDown), chromedp.KeyEvent(kb.Enter)); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("a=%s&b=%s", racks[1], racks[0])
		if err := b.WaitFor(`location.hash.includes('level=host') && location.hash.includes('`+want+`')`, 10*time.Second); err != nil {
			t.Error(err)
		}
	})

	t.Run("past heatmap", func(t *testing.T) { testPastHeatmap(t, b, f) })

	t.Run("drilldown", func(t *testing.T) {
		page(t, b, f, "#/heatmap?level=rack&metric=loss", `+document.getElementById('heatmap')?.dataset.red > 0`, time.Minute)
		c := evalT[*cell](t, b, fmt.Sprintf(cellJS, jsList(racks), jsList(racks), faultyRack, otherRack))
		if err := b.Do(chromedp.MouseClickXY(c.X, c.Y)); err != nil {
			t.Fatal(err)
		}
		if err := b.WaitFor(`location.hash.includes('level=host') && document.getElementById('heatmap')?.dataset.level === 'host' && +document.getElementById('heatmap').dataset.red > 0`, time.Minute); err != nil {
			shot(t, b, "FAILED-drilldown")
			t.Fatal(err)
		}
		if hash := evalT[string](t, b, `location.hash`); !strings.Contains(hash, "a="+faultyRack) || !strings.Contains(hash, "b="+otherRack) {
			t.Errorf("drill-down went to %s, want host pairs of %s → %s", hash, faultyRack, otherRack)
		}
		if n := evalT[string](t, b, `document.getElementById('heatmap').dataset.cells`); n != strconv.Itoa(hostsPerRack*hostsPerRack) {
			t.Errorf("host heatmap has %s cells, want %d", n, hostsPerRack*hostsPerRack)
		}
		if href := evalT[string](t, b, `document.getElementById('hm-rack-pair')?.getAttribute('href') || ''`); !strings.Contains(href, "src_rack="+faultyRack) {
			t.Errorf("host level links the rack pair view as %q", href)
		}
		shot(t, b, "heatmap-hosts")
		// A host cell with data (the worst one listed) opens the pair view.
		srcH, dstH := hostNames(faultyRack), hostNames(otherRack)
		worst := evalT[map[string]string](t, b, `({...document.querySelector('#hm-worst li').dataset})`)
		hc := evalT[*cell](t, b, fmt.Sprintf(cellJS, jsList(srcH), jsList(dstH), worst["src"], worst["dst"]))
		if hc == nil || hc.Color != paletteRed {
			t.Fatalf("host cell %s → %s is %+v, want red", worst["src"], worst["dst"], hc)
		}
		if err := b.Do(chromedp.MouseClickXY(hc.X, hc.Y)); err != nil {
			t.Fatal(err)
		}
		if err := b.WaitFor(`location.hash.startsWith('#/pair') && document.querySelector('#pair-windows tbody tr')`, time.Minute); err != nil {
			shot(t, b, "FAILED-pair")
			t.Fatal(err)
		}
		// One probe per protocol per 10 s window: the view pools windows
		// into intervals of about 30 probes and says how many.
		pooled := evalT[map[string]string](t, b, `({...document.getElementById('pair-pooling')?.dataset, text: document.getElementById('pair-pooling')?.textContent || '',
			most: String(Math.max(...[...document.querySelectorAll('#pair-windows tbody tr')].map(r => +r.dataset.sent))) })`)
		if step, _ := strconv.Atoi(pooled["stepMs"]); step < 60_000 || !strings.Contains(pooled["text"], "probes") {
			t.Errorf("pair view pools %s ms (%q), want intervals of a minute or more, said in words", pooled["stepMs"], pooled["text"])
		}
		if most, _ := strconv.Atoi(pooled["most"]); most < 2 {
			t.Errorf("pair view's intervals hold at most %s probes", pooled["most"])
		}
		if !evalT[bool](t, b, fmt.Sprintf(`!!document.querySelector('#pair-elements tr[data-element=%q]')`, faultyToR)) {
			t.Errorf("pair view does not list %s among the path's elements", faultyToR)
		}
		shot(t, b, "pair")
	})

	// The rack-pair view: charts, the protocols, and the faulty ToR among
	// the elements on the racks' paths, with its estimate.
	t.Run("rack pair", func(t *testing.T) {
		page(t, b, f, "#/pair?"+url.Values{"src_rack": {faultyRack}, "dst_rack": {otherRack}}.Encode(),
			fmt.Sprintf(`document.querySelector('#pair-elements tr.sev-red[data-element=%q]') && (document.getElementById('pair-protos')?.textContent || '').includes('tcp')`, faultyToR), 3*time.Minute)
		if n := evalT[int](t, b, `document.querySelectorAll('#pair-body svg').length`); n < 2 {
			t.Errorf("rack pair view draws %d charts, want latency and loss", n)
		}
		// The verdict of the pair troubleshooter on the rack pair's worst
		// host pair, said to be that pair's, with a link to it.
		if err := b.WaitFor(`document.querySelector('#pair-diagnosis strong')`, time.Minute); err != nil {
			shot(t, b, "FAILED-rack-pair")
			t.Fatal(err)
		}
		d := evalT[map[string]string](t, b, `(() => { const d = document.getElementById('pair-diagnosis');
			return { src: d.dataset.src, dst: d.dataset.dst, verdict: d.querySelector('strong').textContent,
				about: d.textContent, href: document.getElementById('pair-worst-host')?.getAttribute('href') || '' }; })()`)
		if !strings.HasPrefix(d["src"], faultyRack+"-") || !strings.HasPrefix(d["dst"], otherRack+"-") {
			t.Errorf("the verdict is for %s → %s, not a host pair of %s → %s", d["src"], d["dst"], faultyRack, otherRack)
		}
		if d["verdict"] == "" || d["verdict"] == "no verdict" {
			t.Errorf("the rack pair's verdict is %q", d["verdict"])
		}
		if !strings.Contains(d["about"], "worst host pair") || !strings.Contains(d["about"], d["src"]+" → "+d["dst"]) {
			t.Errorf("the verdict does not say whose it is: %q", d["about"])
		}
		q, err := url.ParseQuery(strings.TrimPrefix(d["href"], "#/pair?"))
		if err != nil || !strings.HasPrefix(d["href"], "#/pair?") || q.Get("src") != d["src"] || q.Get("dst") != d["dst"] {
			t.Errorf("the verdict links %q, want the pair view of %s → %s", d["href"], d["src"], d["dst"])
		}
		shot(t, b, "rack-pair")
	})

	t.Run("topology", func(t *testing.T) {
		page(t, b, f, "#/topology", `document.getElementById('topo-svg')`, time.Minute)
		n := evalT[int](t, b, `document.querySelectorAll('#topo-svg .node').length`)
		if want := 2 + pods*2 + 2*pods*racksPerPod; n != want { // spines, leaves, ToRs and rack boxes
			t.Errorf("topology draws %d devices, want %d", n, want)
		}
		// The localizer blames the faulty ToR; the drawing highlights it.
		if err := b.WaitFor(fmt.Sprintf(`document.querySelector('#topo-svg .node.blamed[data-element=%q]')`, faultyToR), 3*time.Minute); err != nil {
			shot(t, b, "FAILED-topology")
			t.Fatal(err)
		}
		shot(t, b, "topology")
	})

	t.Run("incidents", func(t *testing.T) {
		// The row of an incident that blames the ToR itself (not one of
		// its links, whose names contain the ToR's).
		row := fmt.Sprintf(`[...document.querySelectorAll('#incidents-table tbody tr')].find(r => r.querySelector('.blamed').textContent.split(', ').includes(%q))`, faultyToR)
		page(t, b, f, "#/incidents", row, 3*time.Minute)
		id := evalT[string](t, b, row+`?.dataset.id || ''`)
		if id == "" {
			shot(t, b, "FAILED-incidents")
			t.Fatalf("no incident blames %s", faultyToR)
		}
		shot(t, b, "incidents")
		page(t, b, f, "#/incidents?id="+url.QueryEscape(id), fmt.Sprintf(`document.querySelector('#incident-blamed li[data-element=%q]')`, faultyToR), time.Minute)
		shot(t, b, "incident")
		// This server has no tokens: anonymous callers are viewers. The
		// page offers to acknowledge, and the server refuses a viewer.
		if err := b.WaitFor(`document.querySelector('#incident-ack-form input')`, 30*time.Second); err != nil {
			shot(t, b, "FAILED-incident-ack")
			t.Fatal(err)
		}
		evalT[bool](t, b, `(() => { const f = document.querySelector('#incident-ack-form'); f.querySelector('input').value = 'mine'; f.requestSubmit(); return true; })()`)
		if err := b.WaitFor(`(document.querySelector('#incident-ack-form [role=status]')?.textContent || '').includes('needs role operator')`, 30*time.Second); err != nil {
			shot(t, b, "FAILED-incident-ack")
			t.Fatalf("a viewer's acknowledgement was not refused in words: %v (status %q)", err,
				evalT[string](t, b, `document.querySelector('#incident-ack-form [role=status]')?.textContent || ''`))
		}
		if evalT[bool](t, b, `!!document.querySelector('#incident-ack')`) {
			t.Error("the incident shows as acknowledged after a refused acknowledgement")
		}
	})

	t.Run("slos", func(t *testing.T) {
		testSLOs(t, b, f)
		shot(t, b, "slos")
	})

	t.Run("agents", func(t *testing.T) {
		want := pods * racksPerPod * hostsPerRack
		page(t, b, f, "#/agents", fmt.Sprintf(`document.querySelectorAll('#agents-table tbody tr[data-state=up]').length === %d`, want), time.Minute)
		// Probes/s is measured between an agent's deliveries: above zero
		// for every agent up once two were seen.
		if err := b.WaitFor(`[...document.querySelectorAll('#agents-table tbody tr[data-state=up]')].every(r => +r.children[6].textContent > 0)`, time.Minute); err != nil {
			t.Error(err)
		}
		shot(t, b, "agents")
		// A deep link under an unknown path still opens the app, filtered.
		page(t, b, f, "no/such/page#/agents?state=missing", `document.getElementById('agents-filter')?.value === 'missing'`, 30*time.Second)
		if n := evalT[int](t, b, `document.querySelectorAll('#agents-table tbody tr').length`); n != 0 {
			t.Errorf("filter missing shows %d agents, want none", n)
		}
	})

	t.Run("auth", func(t *testing.T) {
		page(t, b, f, "#/agents", `document.getElementById('token-input')`, 30*time.Second)
		if err := b.Do(chromedp.SendKeys(chromedp.CSS("#token-input"), "not-a-token"), chromedp.Click(chromedp.CSS("#login-form button[type=submit]"))); err != nil {
			t.Fatal(err)
		}
		// The server refuses the token: the UI says so instead of breaking.
		if err := b.WaitFor(`!document.getElementById('banner').hidden && document.getElementById('banner').textContent.includes('Sign in')`, 30*time.Second); err != nil {
			t.Error(err)
		}
		shot(t, b, "auth-refused")
		if err := b.Do(chromedp.Click(chromedp.CSS("#logout"))); err != nil {
			t.Fatal(err)
		}
		if err := b.WaitFor(`document.getElementById('whoami').textContent === 'anonymous viewer' && document.querySelector('#agents-table')`, 30*time.Second); err != nil {
			t.Error(err)
		}
	})

	t.Run("keeps focus", func(t *testing.T) { testKeepsFocus(t, b, f) })
	t.Run("contrast", func(t *testing.T) { testContrast(t, b, f) })
	t.Run("1280x800", func(t *testing.T) { testViewport(t, b, f) })

	t.Run("dark", func(t *testing.T) {
		d := NewBrowser(t, Options{Dark: true})
		page(t, d, f, "#/heatmap?level=rack&metric=loss", `+document.getElementById('heatmap')?.dataset.red > 0`, time.Minute)
		bg := evalT[string](t, d, `getComputedStyle(document.body).backgroundColor`)
		if bg != "rgb(21, 24, 28)" {
			t.Errorf("dark mode background is %s, want rgb(21, 24, 28)", bg)
		}
		if err := d.Screenshot(filepath.Join(artifacts(t), "heatmap-dark.png")); err != nil {
			t.Error(err)
		}
		if p := d.Problems(); len(p) > 0 {
			t.Errorf("console problems in dark mode:\n%s", strings.Join(p, "\n"))
		}
	})

	if p := b.Problems(); len(p) > 0 {
		t.Errorf("console problems (exceptions, CSP violations):\n%s", strings.Join(p, "\n"))
	}
}
