package ui

// The UI's qualities, checked in the browser against the fabric of TestUI:
// keyboard focus across refreshes, contrast in both colour schemes and
// palettes, the 1280×800 layout, the past-time heatmap, the SLO page and
// the rack-pair verdict. Called from TestUI, which owns the fabric.

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// view is a page of the UI and what says it has rendered.
type view struct {
	name, hash, ready string
}

// views are the pages the quality checks visit: every page, the heatmap
// at two levels, the pair view for a host pair, a rack pair and neither,
// the incident list and one incident.
func views(t *testing.T, f *fabric) []view {
	t.Helper()
	var pairs []struct{ Src, Dst string }
	f.getJSON(t, "/api/v1/pairs?"+url.Values{"src_rack": {faultyRack}, "dst_rack": {otherRack}}.Encode(), &pairs)
	if len(pairs) == 0 {
		t.Fatalf("no host pair of %s → %s has results", faultyRack, otherRack)
	}
	var incidents []struct{ ID string }
	f.getJSON(t, "/api/v1/incidents", &incidents)
	if len(incidents) == 0 {
		t.Fatal("the server has no incident")
	}
	loaded := `![...document.querySelectorAll('main .empty')].some(e => e.textContent === 'Loading…')`
	rendered := `document.getElementById('heatmap')?.dataset.level === %q && +document.getElementById('heatmap').dataset.cells > 0`
	return []view{
		{"overview", "#/overview", loaded + ` && document.querySelector('#ov-worst')`},
		{"heatmap", "#/heatmap?level=rack&metric=loss", fmt.Sprintf(rendered, "rack")},
		{"heatmap-hosts", "#/heatmap?" + url.Values{"level": {"host"}, "a": {faultyRack}, "b": {otherRack}, "metric": {"loss"}}.Encode(), fmt.Sprintf(rendered, "host")},
		{"pair-empty", "#/pair", loaded + ` && document.querySelector('#pair-body .empty')`},
		{"pair", "#/pair?" + url.Values{"src": {pairs[0].Src}, "dst": {pairs[0].Dst}}.Encode(), loaded + ` && document.querySelector('#pair-diagnosis, #pair-body .error-state')`},
		{"rack-pair", "#/pair?" + url.Values{"src_rack": {faultyRack}, "dst_rack": {otherRack}}.Encode(), loaded + ` && document.querySelector('#pair-diagnosis')`},
		{"topology", "#/topology", `document.querySelector('#topo-svg .node.blamed')`},
		{"slos", "#/slos", loaded + ` && document.querySelector('main .card')`},
		{"incidents", "#/incidents", `document.querySelector('#incidents-table tbody tr')`},
		{"incident", "#/incidents?id=" + url.QueryEscape(incidents[0].ID), `document.querySelector('#incident-detail')`},
		{"agents", "#/agents", `document.querySelector('#agents-table tbody tr')`},
	}
}

// contrastJS lists the visible text whose colour has less than WCAG AA
// contrast with what is behind it: 4.5:1, 3:1 for large text (24 px, or
// 18.66 px bold). The background is every ancestor's background composited
// from the root down; SVG text is read by its fill, over the shape drawn
// before it when there is one (the topology's boxes). The heatmap's row and
// column names, drawn on its canvas at 11 px in the canvas's CSS colour over
// what is behind the canvas, are checked as text of that size. Colours go
// through a 1-pixel canvas, so any CSS colour syntax (color-mix included) is
// read as the browser paints it. Disabled controls are exempt, as WCAG says.
const contrastJS = `(() => {
  const cv = document.createElement('canvas'); cv.width = cv.height = 1;
  const g = cv.getContext('2d', { willReadFrequently: true });
  const memo = new Map();
  const rgba = c => {
    if (!memo.has(c)) {
      g.clearRect(0, 0, 1, 1); g.fillStyle = '#000'; g.fillStyle = c; g.fillRect(0, 0, 1, 1);
      const d = g.getImageData(0, 0, 1, 1).data;
      memo.set(c, [d[0], d[1], d[2], d[3] / 255]);
    }
    return memo.get(c);
  };
  const over = (top, under) => [0, 1, 2].map(i => top[i] * top[3] + under[i] * (1 - top[3])).concat(1);
  const lum = c => { const l = c.slice(0, 3).map(v => { v /= 255; return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; }); return 0.2126 * l[0] + 0.7152 * l[1] + 0.0722 * l[2]; };
  const ratio = (a, b) => { const x = lum(a), y = lum(b); return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05); };
  const background = el => {
    const chain = [];
    for (let e = el; e; e = e.parentElement) chain.unshift(e);
    let bg = [255, 255, 255, 1];
    for (const e of chain) bg = over(rgba(getComputedStyle(e).backgroundColor), bg);
    if (el instanceof SVGElement) {
      for (let s = el.previousElementSibling; s; s = s.previousElementSibling) {
        if (s.tagName === 'rect') { const st = getComputedStyle(s); const f = rgba(st.fill); f[3] *= +st.fillOpacity; bg = over(f, bg); }
      }
    }
    return bg;
  };
  const name = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (el.getAttribute('class') ? '.' + el.getAttribute('class').trim().split(/\s+/).join('.') : '');
  const path = el => { const p = []; for (let e = el; e && e !== document.body && p.length < 4; e = e.parentElement) p.unshift(name(e)); return p.join(' > '); };
  const checked = new Set(), bad = [];
  const check = (el, color, text, px) => {
    const st = getComputedStyle(el);
    if (el.closest(':disabled') || st.visibility !== 'visible') return;
    const r = el.getBoundingClientRect();
    if (r.width <= 1 || r.height <= 1) return; // visually hidden (sr-only)
    for (let e = el; e; e = e.parentElement) if (+getComputedStyle(e).opacity === 0) return;
    checked.add(el);
    const scale = el instanceof SVGElement ? Math.abs(el.getScreenCTM()?.a || 1) : 1;
    const size = (px || parseFloat(st.fontSize)) * scale, bold = !px && parseInt(st.fontWeight, 10) >= 700;
    const need = size >= 24 || (size >= 18.66 && bold) ? 3 : 4.5;
    const bg = background(el), fg = over(rgba(color), bg);
    const got = ratio(fg, bg);
    if (got < need) bad.push(path(el) + ' "' + text.trim().slice(0, 40) + '": ' + got.toFixed(2) + ':1 < ' + need + ':1, rgb(' + fg.slice(0, 3).map(Math.round) + ') on rgb(' + bg.slice(0, 3).map(Math.round) + ')');
  };
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, { acceptNode: n => n.data.trim() ? NodeFilter.FILTER_ACCEPT : NodeFilter.FILTER_REJECT });
  for (let n = walk.nextNode(); n; n = walk.nextNode()) {
    const el = n.parentElement;
    if (!el || checked.has(el) || el.closest('script, style, noscript, title, option, datalist, [hidden]')) continue;
    check(el, el instanceof SVGElement ? getComputedStyle(el).fill : getComputedStyle(el).color, n.data);
  }
  const heat = document.getElementById('heatmap');
  if (heat && !heat.closest('[hidden]')) check(heat, getComputedStyle(heat).color, 'heatmap labels (canvas)', 11);
  for (const el of document.querySelectorAll('select, input:not([type]), input[type=text], input[type=number], input[type=password], input[type=search]')) {
    if (el.closest('[hidden]')) continue;
    if (el.tagName === 'SELECT' || el.value) check(el, getComputedStyle(el).color, el.value || el.selectedOptions?.[0]?.text || '');
    else if (el.placeholder) check(el, getComputedStyle(el, '::placeholder').color, 'placeholder: ' + el.placeholder);
  }
  return { checked: checked.size, bad, canvas: checked.has(heat), tooltip: [...checked].some(e => e.closest('.tooltip')) };
})()`

type contrastResult struct {
	Checked int
	Bad     []string
	// Canvas: the heatmap's canvas labels were checked; Tooltip: text of
	// the heatmap's tooltip was.
	Canvas, Tooltip bool
}

// testContrast checks every view in light and dark mode, with each palette.
func testContrast(t *testing.T, b *Browser, f *fabric) {
	vs := views(t, f)
	defer func() {
		if err := b.SetDark(false); err != nil {
			t.Error(err)
		}
		evalT[bool](t, b, `(localStorage.removeItem('meshlens.palette'), true)`)
	}()
	for _, dark := range []bool{false, true} {
		if err := b.SetDark(dark); err != nil {
			t.Fatal(err)
		}
		for _, pal := range []string{"pingmesh", "blueorange"} {
			scheme := map[bool]string{false: "light", true: "dark"}[dark]
			for _, v := range vs {
				t.Run(scheme+"/"+pal+"/"+v.name, func(t *testing.T) {
					page(t, b, f, v.hash, v.ready, time.Minute)
					// The palette is the one this browser chose (scale.js): set, then reload.
					if evalT[string](t, b, `localStorage.getItem('meshlens.palette') || 'pingmesh'`) != pal {
						evalT[bool](t, b, fmt.Sprintf(`(localStorage.setItem('meshlens.palette', %q), true)`, pal))
						page(t, b, f, v.hash, v.ready, time.Minute)
					}
					if got := evalT[bool](t, b, `matchMedia('(prefers-color-scheme: dark)').matches`); got != dark {
						t.Fatalf("prefers-color-scheme dark is %v, want %v", got, dark)
					}
					r := evalT[contrastResult](t, b, contrastJS)
					if r.Checked < 5 {
						t.Errorf("only %d text elements checked", r.Checked)
					}
					if v.name == "heatmap" {
						if !r.Canvas {
							t.Error("the heatmap's canvas labels were not checked")
						}
						// And the tooltip, over a cell.
						racks := rackNames()
						c := evalT[*cell](t, b, fmt.Sprintf(cellJS, jsList(racks), jsList(racks), racks[0], racks[len(racks)-1]))
						if err := b.Do(chromedp.MouseEvent("mouseMoved", c.X, c.Y)); err != nil {
							t.Fatal(err)
						}
						if err := b.WaitFor(`!document.querySelector('.tooltip').hidden`, 10*time.Second); err != nil {
							t.Fatal(err)
						}
						tip := evalT[contrastResult](t, b, contrastJS)
						if !tip.Tooltip {
							t.Error("the heatmap's tooltip was not checked")
						}
						r.Bad = append(r.Bad, tip.Bad...)
					}
					for _, bad := range r.Bad {
						t.Errorf("contrast: %s", bad)
					}
					if len(r.Bad) > 0 {
						shot(t, b, "FAILED-contrast-"+scheme+"-"+pal+"-"+v.name)
					}
				})
			}
		}
	}
}

// layoutJS says what does not fit a viewport: a page wider than it (with
// the outermost elements that stick out), and nav links not fully visible
// on the first screen or covered by something else.
const layoutJS = `(() => {
  const d = document.documentElement, out = [];
  if (d.scrollWidth > d.clientWidth) {
    const wide = [...document.body.querySelectorAll('*')].filter(e => e.getBoundingClientRect().right > d.clientWidth + 0.5
      && !(e.parentElement && e.parentElement.getBoundingClientRect().right > d.clientWidth + 0.5));
    out.push('the page is ' + d.scrollWidth + ' px wide in a ' + d.clientWidth + ' px viewport; sticking out: ' +
      wide.slice(0, 5).map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + '.' + (e.getAttribute('class') || '') + ' (right ' + Math.round(e.getBoundingClientRect().right) + ')').join(', '));
  }
  const links = [...document.querySelectorAll('#nav a')];
  if (links.length < 7) out.push('the nav has ' + links.length + ' links');
  for (const a of links) {
    const r = a.getBoundingClientRect();
    const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
    if (!(r.width > 0 && r.height > 0 && r.left >= 0 && r.right <= d.clientWidth && r.top >= 0 && r.bottom <= innerHeight) || !a.contains(hit)) {
      out.push('nav link ' + a.textContent + ' is not visible: ' + JSON.stringify(r.toJSON()));
    }
  }
  return out;
})()`

// testViewport opens every view at 1280×800.
func testViewport(t *testing.T, b *Browser, f *fabric) {
	if err := b.SetViewport(1280, 800); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := b.SetViewport(0, 0); err != nil {
			t.Error(err)
		}
	}()
	for _, v := range views(t, f) {
		t.Run(v.name, func(t *testing.T) {
			page(t, b, f, v.hash, v.ready, time.Minute)
			if w := evalT[[]int](t, b, `[innerWidth, innerHeight]`); w[0] != 1280 || w[1] != 800 {
				t.Fatalf("viewport is %d×%d, want 1280×800", w[0], w[1])
			}
			for _, p := range evalT[[]string](t, b, layoutJS) {
				t.Error(p)
			}
		})
	}
	// The heatmap's tooltip on the last column stays inside the page.
	t.Run("heatmap tooltip", func(t *testing.T) {
		racks := rackNames()
		page(t, b, f, "#/heatmap?level=rack&metric=loss", `+document.getElementById('heatmap')?.dataset.cells > 0`, time.Minute)
		c := evalT[*cell](t, b, fmt.Sprintf(cellJS, jsList(racks), jsList(racks), racks[len(racks)-1], racks[len(racks)-1]))
		if err := b.Do(chromedp.MouseEvent("mouseMoved", c.X, c.Y)); err != nil {
			t.Fatal(err)
		}
		if err := b.WaitFor(`!document.querySelector('.tooltip').hidden`, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		for _, p := range evalT[[]string](t, b, layoutJS) {
			t.Error(p)
		}
	})
}

// testKeepsFocus focuses an element that a refresh rebuilds, on each page
// that rebuilds its content, refreshes the way the poll timer does (the
// shell's poll, run at once when the tab becomes visible), and checks the
// focus is on the element's twin afterwards.
func testKeepsFocus(t *testing.T, b *Browser, f *fabric) {
	host := hostNames(faultyRack)[0]
	var incidents []struct{ ID string }
	f.getJSON(t, "/api/v1/incidents", &incidents)
	if len(incidents) == 0 {
		t.Fatal("the server has no incident")
	}
	for _, tc := range []struct{ name, hash, sel string }{
		{"overview", "#/overview", `#ov-agents a[href="#/agents"]`},
		{"heatmap", "#/heatmap?level=rack&metric=loss", `#hm-worst li a`},
		{"rack pair", "#/pair?" + url.Values{"src_rack": {faultyRack}, "dst_rack": {otherRack}}.Encode(), `#pair-body a[href^="#/heatmap"]`},
		{"topology", "#/topology", fmt.Sprintf(`#topo-svg .node[data-element=%q]`, faultyToR)},
		{"slos", "#/slos", `main .card h2 a`},
		{"incidents", "#/incidents", `#incidents-table tbody a`},
		{"incident", "#/incidents?id=" + url.QueryEscape(incidents[0].ID), `#incident-detail a[href="#/incidents"]`},
		{"agents", "#/agents", fmt.Sprintf(`#agents-table tr[data-host=%q] a`, host)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			page(t, b, f, tc.hash, fmt.Sprintf(`document.querySelector(%q)`, tc.sel), 3*time.Minute)
			// Focus the element as Tab would, and remember what it is: its
			// tag and where it leads (or which element it draws).
			before := evalT[string](t, b, fmt.Sprintf(`(() => { const e = document.querySelector(%q); e.focus(); window.focusedBefore = e;
				return document.activeElement === e ? %s : ''; })()`, tc.sel, identityJS("e")))
			if before == "" {
				t.Fatalf("%s does not take the focus", tc.sel)
			}
			n := evalT[int](t, b, `+(document.getElementById('main').dataset.refreshed || 0)`)
			evalT[bool](t, b, `(document.dispatchEvent(new Event('visibilitychange')), true)`)
			if err := b.WaitFor(fmt.Sprintf(`+document.getElementById('main').dataset.refreshed > %d`, n), time.Minute); err != nil {
				t.Fatal(err)
			}
			after := evalT[string](t, b, `(() => { const e = document.activeElement; return e && e !== document.body ? `+identityJS("e")+` : 'nothing (body)'; })()`)
			if after != before {
				t.Errorf("after a refresh the focus is on %s, want %s", after, before)
			}
			t.Logf("re-rendered: %v", evalT[bool](t, b, `document.activeElement !== window.focusedBefore`))
		})
	}
}

// identityJS names element e by what a refresh keeps: its tag and its id,
// link or drawn element (an aria-label may carry a changing estimate).
func identityJS(e string) string {
	return fmt.Sprintf(`%[1]s.tagName + ' ' + (%[1]s.id || %[1]s.getAttribute('href') || %[1]s.dataset.element || '?')`, e)
}

// testPastHeatmap goes back in time on the heatmap with the keyboard, one
// window per arrow key on the scrubber, to the last window before the
// fault: the URL holds that time, the heatmap has data and no red cell;
// the deep link opens the same; End on the scrubber goes back to live,
// which is red again.
func testPastHeatmap(t *testing.T, b *Browser, f *fabric) {
	canvas := `document.getElementById('heatmap')`
	page(t, b, f, "#/heatmap?level=rack&metric=loss", canvas+`?.dataset.t === 'live' && +`+canvas+`.dataset.red > 0`, time.Minute)
	target := f.onset.Unix()
	if err := b.Do(chromedp.Focus(chromedp.CSS("#hm-time"))); err != nil {
		t.Fatal(err)
	}
	hashT := func() int64 {
		v, _ := strconv.ParseInt(evalT[string](t, b, `new URLSearchParams(location.hash.split('?')[1] || '').get('t') || '0'`), 10, 64)
		return v
	}
	prev := int64(0)
	for range 360 { // at most the scrubber's hour
		if err := b.Do(chromedp.KeyEvent(kb.ArrowLeft)); err != nil {
			t.Fatal(err)
		}
		// Each key is a navigation that redraws the toolbar and the
		// heatmap: the new scrubber must have the focus for the next key.
		if err := b.WaitFor(fmt.Sprintf(`(() => { const t = new URLSearchParams(location.hash.split('?')[1] || '').get('t');
			return t && +t !== %d && %s?.dataset.t === t && document.activeElement === document.getElementById('hm-time'); })()`, prev, canvas), 30*time.Second); err != nil {
			t.Fatalf("after ArrowLeft at t=%d: %v (focus on %s)", prev, err, evalT[string](t, b, `document.activeElement?.id || document.activeElement?.tagName`))
		}
		got := hashT()
		if prev != 0 && got != prev-10 {
			t.Errorf("one ArrowLeft went from t=%d to t=%d, want one window (10 s) back", prev, got)
		}
		prev = got
		if got <= target {
			break
		}
	}
	if prev != target {
		t.Fatalf("the scrubber stopped at t=%d, want the fault's onset %d (%s)", prev, target, f.onset.UTC().Format(time.RFC3339))
	}
	past := fmt.Sprintf(`%s?.dataset.t === '%d'`, canvas, target)
	check := func(how string) {
		t.Helper()
		if err := b.WaitFor(past, time.Minute); err != nil {
			t.Fatalf("%s: %v", how, err)
		}
		d := evalT[map[string]string](t, b, `({...document.getElementById('heatmap').dataset})`)
		cells, _ := strconv.Atoi(d["cells"])
		nodata, _ := strconv.Atoi(d["nodata"])
		if d["red"] != "0" {
			t.Errorf("%s: the window before the fault has %s red cells", how, d["red"])
		}
		if nodata >= cells {
			t.Errorf("%s: the window before the fault has no data (%d of %d cells empty)", how, nodata, cells)
		}
		if label := evalT[string](t, b, `document.getElementById('hm-time-label').textContent`); !strings.Contains(label, f.onset.UTC().Format("15:04:05")) {
			t.Errorf("%s: the time label says %q, want %s", how, label, f.onset.UTC().Format("15:04:05"))
		}
	}
	check("scrubbed")
	shot(t, b, "heatmap-past")
	// The deep link opens the same window.
	hash := evalT[string](t, b, `location.hash`)
	page(t, b, f, hash, past, time.Minute)
	check("deep link")
	// End is live again, and live is red.
	if err := b.Do(chromedp.Focus(chromedp.CSS("#hm-time")), chromedp.KeyEvent(kb.End)); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitFor(`!location.hash.includes('t=') && `+canvas+`?.dataset.t === 'live' && +`+canvas+`.dataset.red > 0`, time.Minute); err != nil {
		t.Error(err)
	}
}

// sloStatus is what the test server says of an SLO (internal/slo.Status).
type sloStatus struct {
	Name      string
	SLI       *float64                          `json:"sli"`
	Budget    *float64                          `json:"error_budget_remaining"`
	BurnRates map[string]float64                `json:"burn_rates"`
	Tiers     []struct{ Name, Severity string } `json:"tiers"`
}

// sloCardJS reads an SLO card: the SLI and budget as shown, the burn rate
// per window, the budget chart's samples and marks, and the tiers' states.
const sloCardJS = `(() => {
  const c = document.getElementById('slo-' + %q);
  if (!c) return null;
  const text = sel => c.querySelector(sel)?.textContent.trim() || '';
  const fig = c.querySelector('figure[data-chart=budget]');
  return {
    sli: text('[data-field=sli]'), budget: text('[data-field=budget]'),
    meter: c.querySelector('[data-field=budget] [role=meter]')?.getAttribute('aria-valuenow') || '',
    burns: Object.fromEntries([...c.querySelectorAll('.slo-burns tr[data-window]')].map(r => [r.dataset.window, r.cells[1].textContent])),
    chartPoints: +(fig?.dataset.points || 0),
    chartMarks: fig ? [...fig.querySelectorAll('svg path, svg circle')].filter(e => e.tagName === 'circle' || /[ML]/.test(e.getAttribute('d') || '')).length : 0,
    tiers: [...c.querySelectorAll('.slo-alerts tr[data-tier]')].map(r => ({ tier: r.dataset.tier, state: r.dataset.state, shown: r.cells[4].textContent })),
  };
})()`

type sloCard struct {
	SLI, Budget, Meter      string
	Burns                   map[string]string
	ChartPoints, ChartMarks int
	Tiers                   []struct{ Tier, State, Shown string }
}

func testSLOs(t *testing.T, b *Browser, f *fabric) {
	var slos []sloStatus
	f.getJSON(t, "/api/v1/slos", &slos)
	if len(slos) == 0 {
		t.Fatal("the test server has no SLO")
	}
	for _, s := range slos {
		if s.SLI == nil || s.Budget == nil || len(s.BurnRates) == 0 || len(s.Tiers) == 0 {
			raw, _ := json.Marshal(s)
			t.Fatalf("SLO %s is not evaluated yet: %s", s.Name, raw)
		}
	}
	page(t, b, f, "#/slos", `![...document.querySelectorAll('main .empty')].some(e => e.textContent === 'Loading…') && document.querySelector('main .card')`, time.Minute)
	if bad := evalT[string](t, b, `[...document.querySelectorAll('main .error-state')].map(e => e.textContent).join('; ')`); bad != "" {
		t.Errorf("SLO page shows errors: %s", bad)
	}
	percent := func(s string) bool { return strings.HasSuffix(s, " %") && strings.ContainsAny(s, "0123456789") }
	for _, s := range slos {
		var c *sloCard
		raw := evalT[json.RawMessage](t, b, fmt.Sprintf(sloCardJS, s.Name))
		if err := json.Unmarshal(raw, &c); err != nil || c == nil {
			t.Errorf("SLO %s is not on the page (%v)", s.Name, err)
			continue
		}
		if !percent(c.SLI) {
			t.Errorf("SLO %s: SLI shown as %q, want a percentage (the server says %g)", s.Name, c.SLI, *s.SLI)
		}
		if !percent(c.Budget) {
			t.Errorf("SLO %s: budget remaining shown as %q, want a percentage (the server says %g)", s.Name, c.Budget, *s.Budget)
		}
		if _, err := strconv.ParseFloat(c.Meter, 64); err != nil {
			t.Errorf("SLO %s: the budget meter's value is %q", s.Name, c.Meter)
		}
		for w := range s.BurnRates {
			if v, ok := c.Burns[w]; !ok || !strings.HasSuffix(v, "×") {
				t.Errorf("SLO %s: burn rate over %s shown as %q (present: %v), want a rate", s.Name, w, v, ok)
			}
		}
		if len(c.Burns) != len(s.BurnRates) {
			t.Errorf("SLO %s: %d burn-rate windows shown, the server has %d", s.Name, len(c.Burns), len(s.BurnRates))
		}
		if c.ChartPoints == 0 || c.ChartMarks == 0 {
			t.Errorf("SLO %s: the budget-over-time chart has %d samples and %d marks drawn", s.Name, c.ChartPoints, c.ChartMarks)
		}
		if len(c.Tiers) != len(s.Tiers) {
			t.Errorf("SLO %s: %d alert tiers shown, the server has %d", s.Name, len(c.Tiers), len(s.Tiers))
		}
		for _, tier := range c.Tiers {
			if (tier.State != "firing" && tier.State != "ok") || tier.Shown != tier.State {
				t.Errorf("SLO %s: tier %s shows state %q (data-state %q)", s.Name, tier.Tier, tier.Shown, tier.State)
			}
		}
	}
}
