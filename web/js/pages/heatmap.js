// Heatmap page: Pingmesh's matrix, DC pair → pod pair → rack pair → host
// pair. Rows are sources, columns destinations. State lives in the URL:
// level, a / b (the scopes drilled into), metric, proto, t (unix seconds,
// absent = live), pal, warn, bad. It opens on loss and p99 together
// (scale.js's health), so neither a lossy link with fast replies nor a slow
// one without loss hides behind the other.

import * as api from '../api.js';
import { h, clear, fill, stateMessage, fmtSeconds, fmtRatio, fmtTime } from '../dom.js';
import { Heatmap } from '../heatmap.js';
import { metrics, palettes, preferredPalette, applyPalette, DEFAULT_METRIC, health } from '../scale.js';

const LEVELS = ['dc', 'pod', 'rack', 'host'];
const SCRUB_SPAN_S = 3600; // the scrubber covers the last hour, window by window
const LOOKBACK = '1m'; // a window's sample is written when the window seals
const LOSS_RANGE = '1m'; // loss is pooled over a minute of probes (see api.lossQuery)

let root, ctx, hm, els, topo, protoNames = [], seq = 0, lastKey = '';

function state(params) {
  const metric = metrics[params.get('metric')] ? params.get('metric') : DEFAULT_METRIC;
  const m = metrics[metric];
  const num = k => { const v = parseFloat(params.get(k)); return Number.isFinite(v) ? v : null; };
  const t = num('t');
  return {
    level: LEVELS.includes(params.get('level')) ? params.get('level') : '',
    a: params.get('a') || '', b: params.get('b') || '',
    metric, proto: params.get('proto') || '',
    t: t === null ? null : new Date(t * 1000),
    pal: palettes[params.get('pal')] ? params.get('pal') : preferredPalette(),
    warn: num('warn') ?? m.warn, bad: num('bad') ?? m.bad,
    customThresholds: num('warn') !== null || num('bad') !== null,
  };
}

function paramsOf(st, over = {}) {
  const x = { ...st, ...over };
  const m = metrics[x.metric];
  return {
    level: x.level, a: x.a, b: x.b, metric: x.metric === DEFAULT_METRIC ? '' : x.metric, proto: x.proto,
    t: x.t ? Math.round(x.t.getTime() / 1000) : '',
    pal: x.pal === 'pingmesh' ? '' : x.pal,
    warn: x.customThresholds && x.warn !== m.warn ? x.warn : '',
    bad: x.customThresholds && x.bad !== m.bad ? x.bad : '',
  };
}

function defaultLevel(t) { return t.dcs.length > 1 ? 'dc' : 'rack'; }

// axes gives the row and column element names for a level and its scopes.
function axes(t, level, a, b) {
  const byName = (list, n) => list.find(x => x.name === n);
  switch (level) {
    case 'dc': return [t.dcs.map(d => d.name), t.dcs.map(d => d.name)];
    case 'pod': {
      const of = dc => dc ? (byName(t.dcs, dc)?.pods || []) : t.pods.map(p => p.name);
      return [of(a), of(b)];
    }
    case 'rack': {
      const of = pod => pod ? (byName(t.pods, pod)?.racks || []) : t.racks.map(r => r.name);
      return [of(a), of(b)];
    }
    default: {
      const of = rack => byName(t.racks, rack)?.hosts || [];
      return [of(a), of(b)];
    }
  }
}

function fmtValue(metric, v) {
  if (v === null || v === undefined || Number.isNaN(v)) return 'no data: nobody probed it';
  return metrics[metric].kind === 'loss' ? fmtRatio(v) : fmtSeconds(v);
}

// fmtParts says what a health cell is made of: "unreachable" when every
// probe was lost, else its loss and p99.
function fmtParts(p) {
  if (!p || (p.loss === null && p.p99 === null)) return 'no data: nobody probed it';
  if (p.loss !== null && p.loss >= 1) return 'unreachable: every probe lost';
  return `loss ${p.loss === null ? '–' : fmtRatio(p.loss)}, p99 ${p.p99 === null ? 'no reply' : fmtSeconds(p.p99)}`;
}

function cellText(st, info) {
  return metrics[st.metric].kind === 'health' ? fmtParts(els.parts?.get(info.src + '\n' + info.dst)) : fmtValue(st.metric, info.value);
}

function buildQuery(st, rows, cols, metric = st.metric) {
  const m = metrics[metric];
  const lv = st.level;
  const sel = [];
  if (m.kind === 'latency') sel.push(`quantile="${m.quantile}"`);
  if (st.proto) sel.push(`proto="${st.proto}"`);
  // Narrow the query to the drilled-into scopes when they are small enough
  // to spell out; otherwise fetch the level and filter here.
  if (st.a && rows.length <= 256) sel.push(`src_${lv}=~"${api.promRegexAlt(rows)}"`);
  if (st.b && cols.length <= 256) sel.push(`dst_${lv}=~"${api.promRegexAlt(cols)}"`);
  if (m.kind === 'loss') return api.lossQuery(lv, sel.join(','), LOSS_RANGE);
  return `max by (src_${lv}, dst_${lv}) (last_over_time(${api.metricNames.latency(lv)}{${sel.join(',')}}[${LOOKBACK}]))`;
}

async function fetchValues(st, rows, cols) {
  if (metrics[st.metric].kind === 'health') return fetchHealth(st, rows, cols);
  const values = new Float64Array(rows.length * cols.length).fill(NaN);
  const ri = new Map(rows.map((n, i) => [n, i])), ci = new Map(cols.map((n, i) => [n, i]));
  const put = (src, dst, v) => {
    const r = ri.get(src), c = ci.get(dst);
    if (r === undefined || c === undefined || v === null || !Number.isFinite(v)) return;
    const i = r * cols.length + c;
    values[i] = Number.isNaN(values[i]) ? v : Math.max(values[i], v);
  };
  if (st.level === 'host') {
    const cells = await api.rackPairHosts(st.a, st.b, { at: st.t || undefined, srcHosts: rows, dstHosts: cols });
    const field = metrics[st.metric].field;
    for (const p of cells) if (!st.proto || p.proto === st.proto) put(p.src, p.dst, p[field]);
    return { values, detail: cells };
  }
  const lv = st.level;
  const res = await api.promQuery(buildQuery(st, rows, cols), st.t || undefined);
  for (const r of res) put(r.labels['src_' + lv], r.labels['dst_' + lv], r.value);
  return { values, detail: null };
}

// fetchHealth asks for loss and p99 and keeps, per cell, the worse of the
// two (scale.js's health) and both parts for the tooltip and the list.
async function fetchHealth(st, rows, cols) {
  const values = new Float64Array(rows.length * cols.length).fill(NaN);
  const ri = new Map(rows.map((n, i) => [n, i])), ci = new Map(cols.map((n, i) => [n, i]));
  const parts = new Map();
  const part = (src, dst) => {
    const k = src + '\n' + dst;
    if (!parts.has(k)) parts.set(k, { loss: null, p99: null });
    return parts.get(k);
  };
  const worse = (a, b) => a === null ? b : b === null ? a : Math.max(a, b);
  let detail = null;
  if (st.level === 'host') {
    const cells = await api.rackPairHosts(st.a, st.b, { at: st.t || undefined, srcHosts: rows, dstHosts: cols });
    for (const c of cells) {
      if (st.proto && c.proto !== st.proto) continue;
      if (!ri.has(c.src) || !ci.has(c.dst)) continue;
      const p = part(c.src, c.dst);
      p.loss = worse(p.loss, Number.isFinite(c.lossRatio) ? c.lossRatio : null);
      p.p99 = worse(p.p99, c.p99);
    }
    detail = cells;
  } else {
    const lv = st.level;
    const [loss, lat] = await Promise.all([
      api.promQuery(buildQuery(st, rows, cols, 'loss'), st.t || undefined),
      api.promQuery(buildQuery(st, rows, cols, 'p99'), st.t || undefined)]);
    for (const [res, key] of [[loss, 'loss'], [lat, 'p99']]) {
      for (const r of res) {
        const src = r.labels['src_' + lv], dst = r.labels['dst_' + lv];
        // A window whose probes were all lost has no reply to time: 0.
        if (!ri.has(src) || !ci.has(dst) || !Number.isFinite(r.value) || (key === 'p99' && r.value <= 0)) continue;
        part(src, dst)[key] = r.value;
      }
    }
  }
  for (const [k, p] of parts) {
    const [src, dst] = k.split('\n');
    const v = health(p.loss, p.p99);
    if (v !== null) values[ri.get(src) * cols.length + ci.get(dst)] = v;
  }
  return { values, detail, parts };
}

function crumbs(st) {
  const trail = h('nav', { class: 'crumbs', 'aria-label': 'Drill-down' });
  const link = (label, over) => h('a', { href: '#/heatmap?' + new URLSearchParams(clean(paramsOf(st, over))) }, label);
  trail.append(link('all ' + (topo.dcs.length > 1 ? 'DCs' : 'racks'), { level: defaultLevel(topo), a: '', b: '' }));
  if (st.level !== 'dc' && topo.dcs.length > 1) trail.append(' › ', link('all pods', { level: 'pod', a: '', b: '' }));
  if (st.a || st.b) {
    trail.append(' › ', h('strong', {}, `${st.level === 'host' ? 'hosts' : st.level + 's'} of ${st.a || 'all'} → ${st.b || 'all'}`));
    if (st.level === 'host' && st.a && st.b) {
      trail.append(' (', h('a', { id: 'hm-rack-pair', href: '#/pair?' + new URLSearchParams({ src_rack: st.a, dst_rack: st.b }) }, 'rack pair over time'), ')');
    }
  } else {
    trail.append(' › ', h('strong', {}, st.level + ' pairs'));
  }
  return trail;
}

function clean(o) { return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== '' && v !== null && v !== undefined)); }

function toolbar(st) {
  const bar = h('div', { class: 'toolbar' });
  const set = over => ctx.go('heatmap', paramsOf(st, over));
  const metricSet = h('fieldset', {}, h('legend', {}, 'Metric'),
    Object.entries(metrics).map(([k, m]) => h('button', {
      type: 'button', 'aria-pressed': String(k === st.metric), dataset: { metric: k },
      onclick: () => set({ metric: k, customThresholds: false }),
    }, m.label.replace(' latency', ''))));
  const proto = h('select', { id: 'hm-proto', onchange: e => set({ proto: e.target.value }) },
    ['', ...protoNames].map(p => h('option', { value: p, selected: p === st.proto }, p || 'all')));
  const pal = h('select', { id: 'hm-pal', onchange: e => { applyPalette(e.target.value, { remember: true }); set({ pal: e.target.value }); } },
    Object.entries(palettes).map(([k, p]) => h('option', { value: k, selected: k === st.pal }, p.label)));
  const levelSet = h('fieldset', {}, h('legend', {}, 'Level'),
    [['dc', 'DC pairs'], ['pod', 'pod pairs'], ['rack', 'rack pairs']].map(([k, label]) => h('button', {
      type: 'button', 'aria-pressed': String(k === st.level && !st.a && !st.b), dataset: { level: k },
      onclick: () => set({ level: k, a: '', b: '' }),
    }, label)));
  bar.append(levelSet, metricSet,
    h('label', {}, 'Protocol ', proto),
    h('label', {}, 'Colours ', pal),
    timeControl(st, set));
  return bar;
}

// timeControl: Live, the previous / next window, and a scrubber over the
// last hour. The scrubber counts seconds from the newest window boundary
// when drawn (anchor), not from a moving "now", so one arrow key is one
// window exactly and a value always names a window's end.
function timeControl(st, set) {
  const W = ctx.windowMs;
  const anchor = Math.floor(Date.now() / W) * W;
  const off = st.t ? Math.max(-SCRUB_SPAN_S, Math.min(0, Math.round((st.t.getTime() - anchor) / W) * W / 1000)) : 0;
  const at = v => v === 0 ? null : new Date(anchor + v * 1000);
  const range = h('input', {
    type: 'range', id: 'hm-time', min: -SCRUB_SPAN_S, max: 0, step: W / 1000, value: off,
    'aria-label': 'Time: seconds before now',
    'aria-valuetext': st.t ? fmtTime(st.t) : 'live',
  });
  const label = h('output', { for: 'hm-time', id: 'hm-time-label' }, st.t ? fmtTime(st.t) : 'live');
  range.addEventListener('input', () => {
    const t = at(parseInt(range.value, 10));
    label.textContent = t ? fmtTime(t) : 'live';
    range.setAttribute('aria-valuetext', label.textContent);
  });
  range.addEventListener('change', () => set({ t: at(parseInt(range.value, 10)) }));
  const step = d => {
    const t = (st.t ? st.t.getTime() : anchor) + d * W;
    set({ t: t >= anchor ? null : new Date(t) }); // the newest window is live
  };
  return h('fieldset', { class: 'time-scrub' }, h('legend', {}, 'Time'),
    h('button', { type: 'button', id: 'hm-live', 'aria-pressed': String(!st.t), onclick: () => set({ t: null }) }, 'Live'),
    h('button', { type: 'button', id: 'hm-prev', 'aria-label': 'Previous window', onclick: () => step(-1) }, '◀'),
    range,
    h('button', { type: 'button', id: 'hm-next', 'aria-label': 'Next window', disabled: !st.t, onclick: () => step(1) }, '▶'),
    label);
}

function legend(st) {
  const m = metrics[st.metric];
  const cols = palettes[st.pal].colors;
  const f = v => fmtValue(st.metric, v);
  const sw = (i, text) => h('span', {}, h('span', { class: 'swatch', dataset: { color: cols[i] } }), text);
  if (m.kind === 'health') {
    // Its thresholds are the loss and p99 ones: change them on those views.
    const l = metrics.loss, p = metrics.p99;
    const box = h('div', { class: 'legend', id: 'hm-legend' },
      sw(1, `good: loss < ${fmtRatio(l.warn)} and p99 < ${fmtSeconds(p.warn)}`),
      sw(2, 'warning: either in between'),
      sw(3, `bad: loss > ${fmtRatio(l.bad)} or p99 > ${fmtSeconds(p.bad)}, or unreachable`),
      sw(0, 'no data: nobody probed the pair'));
    for (const el of box.querySelectorAll('.swatch')) el.style.background = el.dataset.color;
    return box;
  }
  const unit = m.kind === 'loss' ? '%' : 'ms';
  const toUnit = v => m.kind === 'loss' ? +(v * 100).toPrecision(4) : +(v * 1e3).toPrecision(4);
  const fromUnit = v => m.kind === 'loss' ? v / 100 : v / 1e3;
  const thr = (id, v, key) => h('input', {
    id, type: 'number', step: 'any', min: 0, value: toUnit(v), size: 5, 'aria-label': key + ' threshold in ' + unit,
    onchange: e => {
      const x = parseFloat(e.target.value);
      if (Number.isFinite(x) && x >= 0) ctx.go('heatmap', paramsOf(st, { [key]: fromUnit(x), customThresholds: true }));
    },
  });
  const box = h('div', { class: 'legend', id: 'hm-legend' },
    sw(1, `good < ${f(st.warn)}`), sw(2, `warning ${f(st.warn)}–${f(st.bad)}`), sw(3, `bad > ${f(st.bad)}`), sw(0, 'no data: nobody probed it'),
    h('label', {}, 'warn ', thr('hm-warn', st.warn, 'warn'), ' ' + unit),
    h('label', {}, 'bad ', thr('hm-bad', st.bad, 'bad'), ' ' + unit),
    st.customThresholds ? h('button', { type: 'button', onclick: () => ctx.go('heatmap', paramsOf(st, { customThresholds: false })) }, 'Pingmesh defaults') : null);
  // Swatch colours go through CSSOM: the CSP forbids inline style attributes.
  for (const el of box.querySelectorAll('.swatch')) el.style.background = el.dataset.color;
  return box;
}

// drillHref: where a cell leads, the next level down or the pair view.
function drillHref(st, cell) {
  const next = { dc: 'pod', pod: 'rack', rack: 'host' }[st.level];
  const p = next ? paramsOf(st, { level: next, a: cell.src, b: cell.dst })
    : { src: cell.src, dst: cell.dst, t: st.t ? Math.round(st.t.getTime() / 1000) : '' };
  return '#/' + (next ? 'heatmap' : 'pair') + '?' + new URLSearchParams(clean(p));
}

function drill(st, cell) { location.hash = drillHref(st, cell); }

function showTooltip(st, info, at) {
  const tip = els.tip;
  if (!info) { tip.hidden = true; return; }
  clear(tip);
  tip.append(h('div', {}, h('strong', {}, info.src), ' → ', h('strong', {}, info.dst)),
    h('div', {}, metrics[st.metric].label + ': ', h('span', { class: 'sev-' + info.level }, cellText(st, info))));
  if (els.detail) {
    const d = els.detail.filter(p => p.src === info.src && p.dst === info.dst);
    for (const p of d) {
      tip.append(h('div', {}, `${p.proto}: sent ${p.sent ?? '–'}, lost ${p.lost ?? '–'} (${fmtRatio(p.lossRatio)}), p50 ${fmtSeconds(p.p50)}, p99 ${fmtSeconds(p.p99)}, p99.9 ${fmtSeconds(p.p999)}`));
    }
  }
  tip.append(h('div', { class: 'axis-label' }, st.level === 'host' ? 'click or Enter: pair view' : 'click or Enter: drill down'));
  tip.hidden = false;
  tip.style.left = Math.min(at.x, hm.canvas.width - 40) + 'px';
  tip.style.top = at.y + 'px';
}

function worstList(st) {
  const n = hm.cols.length, cells = [];
  for (let i = 0; i < hm.values.length; i++) if (hm.levels[i] >= 2) cells.push(i);
  cells.sort((x, y) => hm.values[y] - hm.values[x]);
  const counts = hm.counts;
  const side = h('div', {},
    h('h2', {}, 'Summary'),
    h('p', { id: 'hm-counts' },
      h('span', { class: 'sev-red' }, `${counts[3]} bad`), ', ', h('span', { class: 'sev-yellow' }, `${counts[2]} warning`), ', ',
      h('span', { class: 'sev-green' }, `${counts[1]} good`), ', ', h('span', { class: 'sev-nodata' }, `${counts[0]} no data`)),
    h('h2', {}, 'Worst pairs'));
  if (!cells.length) {
    // A single-metric view says which metric it judged: loss can hide
    // behind a green latency view, and the other way round.
    const m = metrics[st.metric];
    side.append(h('p', { class: 'empty' }, !counts[1] ? 'No pair was probed at this time.'
      : m.kind === 'health' ? 'Every probed pair is within the loss and p99 thresholds.'
        : `Every probed pair is within the ${m.label} thresholds; this view shows nothing else.`));
    return side;
  }
  const ul = h('ul', { id: 'hm-worst' });
  for (const i of cells.slice(0, 25)) {
    const info = hm.cellInfo(Math.floor(i / n), i % n);
    ul.append(h('li', { class: 'sev-' + info.level, dataset: { src: info.src, dst: info.dst, level: info.level } },
      h('a', { href: drillHref(st, info) }, `${info.src} → ${info.dst}`), ': ', cellText(st, info)));
  }
  if (cells.length > 25) side.append(ul, h('p', { class: 'axis-label' }, `and ${cells.length - 25} more`));
  else side.append(ul);
  return side;
}

async function load(st, { poll }) {
  const my = ++seq;
  if (poll && st.t) return; // a past window does not change
  try {
    [topo, protoNames] = await Promise.all([api.topologyCached(), api.protocols().then(ps => ps.map(p => p.name))]);
  } catch (err) {
    fill(els.body, stateMessage(err));
    ctx.reportError(err);
    return;
  }
  if (!st.level) st.level = defaultLevel(topo);
  const key = JSON.stringify(paramsOf(st));
  if (!poll || key !== lastKey) {
    fill(els.toolbar, toolbar(st), legend(st));
    fill(els.crumbs, crumbs(st));
  }
  lastKey = key;
  const [rows, cols] = axes(topo, st.level, st.a, st.b);
  if (!rows.length || !cols.length) {
    fill(els.body, h('p', { class: 'empty' }, topo.racks.length
      ? `Nothing to show: ${st.a || '?'} → ${st.b || '?'} is not in the topology.`
      : 'The topology has no racks yet.'));
    return;
  }
  let data;
  try {
    data = await fetchValues(st, rows, cols);
  } catch (err) {
    if (my !== seq) return;
    els.caption.textContent = '';
    fill(els.body, stateMessage(err));
    ctx.reportError(err);
    return;
  }
  if (my !== seq) return;
  els.detail = data.detail;
  els.parts = data.parts || null;
  if (!els.body.contains(hm.canvas)) fill(els.body, els.wrap);
  hm.setData({ rows, cols, values: data.values, warn: st.warn, bad: st.bad, colors: palettes[st.pal].colors });
  hm.canvas.dataset.level = st.level;
  hm.canvas.dataset.metric = st.metric;
  hm.canvas.dataset.palette = st.pal;
  hm.canvas.dataset.t = st.t ? Math.round(st.t.getTime() / 1000) : 'live'; // the time drawn
  hm.canvas.setAttribute('aria-label',
    `${metrics[st.metric].label} heatmap, ${rows.length} source ${st.level}s by ${cols.length} destination ${st.level}s. Arrow keys move, Enter drills down.`);
  hm.render();
  fill(els.side, worstList(st));
  els.caption.textContent = `${rows.length} × ${cols.length} ${st.level} pairs · rows: source, columns: destination · ` +
    { loss: 'loss over the minute to ', health: 'loss over the minute and p99 of the window to ', latency: 'latency of the window ending ' }[metrics[st.metric].kind] +
    (st.t ? fmtTime(st.t) : 'now (live, refreshed every ' + ctx.windowMs / 1000 + ' s)') +
    (st.proto ? '' : metrics[st.metric].kind === 'latency' ? ' · worst protocol' : ' · all protocols pooled');
}

export default {
  async mount(el, c) {
    root = el; ctx = c; lastKey = '';
    els = {
      toolbar: h('div'), crumbs: h('div'), body: h('div'), side: h('aside', { class: 'heat-side', 'aria-label': 'Worst pairs' }),
      tip: h('div', { class: 'tooltip', role: 'tooltip', hidden: true }),
      caption: h('p', { class: 'axis-label', id: 'hm-caption' }),
    };
    const canvas = h('canvas', { class: 'heat-canvas', id: 'heatmap' });
    let st = state(c.params);
    hm = new Heatmap(canvas, {
      onHover: (info, at) => showTooltip(st, info, at),
      onActivate: info => drill(st, info),
    });
    els.wrap = h('div', { class: 'heat-wrap' }, h('div', { class: 'heat-main' }, canvas, els.tip), els.side);
    els.setState = x => { st = x; };
    root.append(h('h1', {}, 'Heatmap'), els.toolbar, els.crumbs, els.caption, els.body);
    fill(els.body, h('p', { class: 'empty' }, 'Loading…'));
    await load(st, { poll: false });
  },
  async update(c, { poll }) {
    ctx = c;
    const st = state(c.params);
    els.setState(st);
    els.tip.hidden = true;
    await load(st, { poll });
  },
  unmount() { seq++; },
};
