// Pair view: one host pair (src, dst) or one rack pair (src_rack, dst_rack)
// over time: latency quantiles and loss per protocol, the fabric elements
// its probes can cross with their current estimates, and diagnose's verdict.

import * as api from '../api.js';
import { h, fill, stateMessage, fmtSeconds, fmtRatio, fmtNum, fmtTime, fmtWhen } from '../dom.js';
import { lineChart } from '../chart.js';
import { metrics } from '../scale.js';
import { pool, poolStep, fmtStep, MIN_PROBES } from '../pool.js';

const SPAN_MS = 3600_000;
let root, ctx, els;

// pathElements lists what a probe from host a to host b may cross in a
// folded Clos: ToRs, the pods' leaves, and the spines (or WAN) between.
export function pathElements(t, a, b) {
  const host = n => t.hosts.find(x => x.name === n);
  const rack = n => t.racks.find(x => x.name === n);
  const pod = n => t.pods.find(x => x.name === n);
  const dc = n => t.dcs.find(x => x.name === n);
  const ha = host(a), hb = host(b);
  if (!ha || !hb) return [];
  const out = [];
  const ra = rack(ha.rack), rb = rack(hb.rack);
  if (ra?.tor) out.push(ra.tor);
  if (ha.rack !== hb.rack) {
    out.push(...(pod(ha.pod)?.leaves || []));
    if (ha.pod !== hb.pod) {
      out.push(...(dc(ha.dc)?.spines || []));
      if (ha.dc !== hb.dc) {
        out.push(...t.switches.filter(s => s.role === 'wan').map(s => s.name), ...(dc(hb.dc)?.spines || []));
      }
      out.push(...(pod(hb.pod)?.leaves || []));
    }
    if (rb?.tor) out.push(rb.tor);
  }
  return [...new Set(out)];
}

function chooser(p, topo) {
  const list = h('datalist', { id: 'pair-hosts' }, (topo?.hosts || []).slice(0, 5000).map(x => h('option', { value: x.name })));
  const src = h('input', { id: 'pair-src', list: 'pair-hosts', value: p.get('src') || '', placeholder: 'source host', size: 22, 'aria-label': 'Source host' });
  const dst = h('input', { id: 'pair-dst', list: 'pair-hosts', value: p.get('dst') || '', placeholder: 'destination host', size: 22, 'aria-label': 'Destination host' });
  return h('form', { class: 'inline', onsubmit: e => { e.preventDefault(); ctx.go('pair', { src: src.value.trim(), dst: dst.value.trim() }); } },
    list, src, ' → ', dst, h('button', { type: 'submit' }, 'Show'));
}

// latencyAndLoss makes chart series of pooled intervals (pool.js).
function latencyAndLoss(intervals) {
  const protos = [...new Set(intervals.map(w => w.proto))].sort();
  const lat = [], loss = [];
  for (const pr of protos) {
    const ws = intervals.filter(w => w.proto === pr);
    for (const q of ['p50', 'p99', 'p999']) lat.push({ name: `${pr} ${metrics[q].label.replace(' latency', '')}`, points: ws.map(w => [w.end.getTime(), w[q]]) });
    loss.push({ name: pr, points: ws.map(w => [w.end.getTime(), w.lossRatio]) });
  }
  return { protos, lat, loss };
}

// elementsSection lists the switches on the paths between hosts src and
// dst with the localizer's current estimates, and the links between them
// it suspects. topo and sus are settled promises.
function elementsSection(topo, sus, src, dst) {
  const out = [h('h2', {}, 'Elements on the paths')];
  if (topo.status !== 'fulfilled') return [...out, stateMessage(topo.reason)];
  const est = new Map((sus.status === 'fulfilled' ? sus.value : []).map(x => [x.element, x]));
  const elems = pathElements(topo.value, src, dst);
  const linkEst = [...est.values()].filter(x => elems.some(e => x.element.includes(e)) && !elems.includes(x.element));
  out.push(h('table', { id: 'pair-elements' },
    h('thead', {}, h('tr', {}, h('th', {}, 'element'), h('th', { class: 'num' }, 'estimate'), h('th', {}, 'evidence'))),
    h('tbody', {}, [...elems.map(e => est.get(e) || { element: e }), ...linkEst].map(x => h('tr', { class: x.estimate >= 0.01 ? 'sev-red' : x.estimate >= 0.001 ? 'sev-yellow' : '', dataset: { element: x.element } },
      h('td', {}, x.element), h('td', { class: 'num' }, x.estimate === undefined ? 'healthy' : fmtRatio(x.estimate)), h('td', {}, x.evidence || ''))))));
  if (sus.status === 'rejected') out.push(stateMessage(sus.reason));
  return out;
}

async function hostPair(src, dst, t) {
  const since = new Date((t ? t.getTime() : Date.now()) - SPAN_MS);
  const [hist, topo, sus, diag] = await Promise.allSettled([
    api.pairHistory(src, dst, { since }), api.topologyCached(), api.suspects(), api.diagnosePair(src, dst)]);
  const out = [];
  // Say when the server kept less than every window of this pair (its
  // memory budget, or no pair detail at all): the chart shows only what
  // is left, mostly the lossy windows.
  const detail = hist.status === 'fulfilled' ? hist.value.detail : null;
  if (detail && detail.mode && detail.mode !== 'full' && detail.note) {
    out.push(h('p', { id: 'pair-detail', class: 'empty', dataset: { mode: detail.mode } }, detail.note));
  }
  if (hist.status === 'rejected') {
    out.push(stateMessage(hist.reason));
    ctx.reportError(hist.reason);
  } else if (!hist.value.length && detail && detail.mode === 'off') {
    // The note above says why there is nothing.
  } else if (!hist.value.length) {
    out.push(h('p', { class: 'empty' }, `No probe results for ${src} → ${dst} in the last hour. Is the pair in the pinglists?`));
  } else {
    // Pool the 10 s windows (a probe or two each) into intervals of about
    // MIN_PROBES probes per protocol, and say so.
    const { step, probes: per } = poolStep(hist.value, ctx.windowMs);
    const ivs = pool(hist.value, step);
    const { protos, lat, loss } = latencyAndLoss(ivs);
    const last = [...ivs].sort((a, b) => b.end - a.end);
    const filling = last.length && last[0].end > Date.now() ? ' The newest interval is still filling: its probes are in the table.' : '';
    out.push(h('p', { id: 'pair-protos' }, 'Protocols probed: ', protos.join(', ') || '–'),
      h('p', { id: 'pair-pooling', class: 'axis-label', dataset: { stepMs: step, probes: per } },
        `Each point pools ${fmtStep(step)} of probes: ${per} per protocol at this pair's probing rate` +
        (per < MIN_PROBES ? ` (fewer than ${MIN_PROBES}: read single points with care)` : '') +
        '. Quantiles are pooled from those of the 10 s windows.' + filling),
      lineChart(lat, { title: `Latency quantiles per ${fmtStep(step)}`, format: fmtSeconds, thresholds: [{ value: metrics.p99.bad }] }),
      lineChart(loss, { title: `Loss ratio per ${fmtStep(step)}`, format: v => fmtRatio(v, 2), yMin: 0 }),
      h('h2', {}, 'Latest intervals'),
      h('table', { id: 'pair-windows' },
        h('thead', {}, h('tr', {}, ['interval', 'proto', 'probes', 'lost', 'loss', 'p50', 'p90', 'p99', 'p99.9'].map((x, i) => h('th', { class: i >= 2 ? 'num' : '' }, x)))),
        h('tbody', {}, last.slice(0, 12).map(w => h('tr', { dataset: { sent: w.sent } },
          h('td', {}, fmtWhen(w.start) + ' – ' + w.end.toISOString().slice(11, 19) + 'Z'), h('td', {}, w.proto), h('td', { class: 'num' }, fmtNum(w.sent)), h('td', { class: 'num' }, fmtNum(w.lost)),
          h('td', { class: 'num' }, fmtRatio(w.lossRatio)), ...['p50', 'p90', 'p99', 'p999'].map(q => h('td', { class: 'num' }, fmtSeconds(w[q]))))))));
  }
  out.push(...elementsSection(topo, sus, src, dst), h('h2', {}, 'Diagnosis'), diagnosis(diag, src, dst));
  return out;
}

// diagnosis shows the verdict of `meshlens diagnose pair` for src → dst
// (diag: a settled promise), over the last hour whatever the time shown.
// about, if set, says which pair it is and links to it (the rack-pair view
// shows its worst host pair's).
function diagnosis(diag, src, dst, about = null) {
  if (diag.status !== 'fulfilled') return stateMessage(diag.reason);
  const d = diag.value;
  return h('div', { id: 'pair-diagnosis', dataset: { src, dst } }, about,
    h('p', {}, h('strong', {}, d.verdict || 'no verdict')), d.detail ? h('p', {}, d.detail) : null,
    d.elements.length ? h('ul', {}, d.elements.map(e => h('li', {}, e.element, e.estimate !== null && e.estimate !== undefined ? ': ' + fmtRatio(e.estimate) : ''))) : null);
}

// worstHostPair is the host pair of a rack pair with the most loss, then
// the highest p99, in the minute to t (or now); null when none has data.
async function worstHostPair(a, b, t, topo) {
  // The hosts let api.js ask pair by pair if the server lacks the rack form.
  const hosts = r => topo.status === 'fulfilled' ? topo.value.racks.find(x => x.name === r)?.hosts || [] : [];
  const cells = await api.rackPairHosts(a, b, { at: t || undefined, srcHosts: hosts(a), dstHosts: hosts(b) });
  const score = c => [c.lossRatio ?? -1, c.p99 ?? -1];
  let worst = null;
  for (const c of cells) {
    if (!c.src || !c.dst || c.src === c.dst) continue;
    const [l, p] = score(c), w = worst && score(worst);
    if (!worst || l > w[0] || (l === w[0] && p > w[1])) worst = c;
  }
  return worst;
}

async function rackPair(a, b, t) {
  const end = t || new Date(), start = new Date(end.getTime() - SPAN_MS);
  const sel = `src_rack="${a}",dst_rack="${b}"`;
  const [lat, loss, topo, sus, probes] = await Promise.allSettled([
    api.promRange(`max by (quantile) (${api.metricNames.latency('rack')}{${sel}})`, start, end, 10),
    // Loss from the exact probe counters over a minute, not per window.
    api.promRange(api.lossQuery('rack', sel, '1m', 'proto'), start, end, 10),
    api.topologyCached(), api.suspects(),
    api.promQuery(api.probesQuery('rack', sel, '1m', 'proto'), t || undefined)]);
  const out = [];
  if (lat.status === 'rejected' || loss.status === 'rejected') {
    const err = lat.status === 'rejected' ? lat.reason : loss.reason;
    out.push(stateMessage(err));
    ctx.reportError(err);
  } else if (!lat.value.length && !loss.value.length) {
    out.push(h('p', { class: 'empty' }, `No rollups for ${a} → ${b} in the last hour. Do the racks probe each other?`));
  } else {
    const qn = { '0.5': 'p50', '0.9': 'p90', '0.99': 'p99', '0.999': 'p99.9' };
    const protos = [...new Set(loss.value.map(x => x.labels.proto).filter(Boolean))].sort();
    out.push(h('p', { id: 'pair-protos' }, 'Protocols probed: ', protos.join(', ') || '–'),
      lineChart(lat.value.map(x => ({ name: qn[x.labels.quantile] || x.labels.quantile, points: x.points })), { title: 'Latency quantiles (worst protocol)', format: fmtSeconds, thresholds: [{ value: metrics.p99.bad }] }),
      h('p', { id: 'pair-pooling', class: 'axis-label' }, 'Each loss point pools the minute of probes before it' +
        (probes.status === 'fulfilled' && probes.value.length ? ': ' + probes.value.map(x => `${Math.round(x.value)} ${x.labels.proto || ''} probes`).join(', ') + ' in the last minute' : '') +
        '. Latency: the worst protocol\'s quantiles of each 10 s window, over every host pair of the racks.'),
      lineChart(loss.value.map(x => ({ name: x.labels.proto || 'all', points: x.points })), { title: 'Loss ratio (per minute)', format: v => fmtRatio(v, 2), yMin: 0 }));
  }
  // The racks' paths are any of their hosts' paths, without the hosts.
  const someHost = r => topo.status === 'fulfilled' ? topo.value.hosts.find(x => x.rack === r)?.name : undefined;
  out.push(...elementsSection(topo, sus, someHost(a), someHost(b)), h('h2', {}, 'Diagnosis'));
  // The pair troubleshooter works on host pairs: ask it about the worst
  // one, and say that it is that pair's verdict.
  try {
    const w = await worstHostPair(a, b, t, topo);
    if (!w) {
      out.push(h('p', { class: 'empty' }, `No host pair of ${a} → ${b} has results in the minute to ${t ? fmtTime(t) : 'now'}: nothing to diagnose.`));
    } else {
      const diag = await Promise.allSettled([api.diagnosePair(w.src, w.dst)]);
      const href = '#/pair?' + new URLSearchParams({ src: w.src, dst: w.dst });
      out.push(diagnosis(diag[0], w.src, w.dst, h('p', {}, 'Verdict for the worst host pair of this rack pair, ',
        h('a', { href, id: 'pair-worst-host' }, `${w.src} → ${w.dst}`), ` (loss ${fmtRatio(w.lossRatio)}, p99 ${fmtSeconds(w.p99)}):`)));
    }
  } catch (err) {
    out.push(stateMessage(err));
  }
  out.push(h('p', {}, h('a', { href: '#/heatmap?' + new URLSearchParams({ level: 'host', a, b }) }, 'All host pairs of this rack pair')));
  return out;
}

async function refresh(p, { poll = false } = {}) {
  const tRaw = parseFloat(p.get('t'));
  const t = Number.isFinite(tRaw) ? new Date(tRaw * 1000) : null;
  const src = p.get('src'), dst = p.get('dst'), sr = p.get('src_rack'), dr = p.get('dst_rack');
  let topo = null;
  try { topo = await api.topologyCached(); } catch (err) { ctx.reportError(err); }
  // A poll leaves the chooser alone: hosts being typed, and the keyboard
  // focus, stay where they are.
  if (!poll || !els.chooser.firstChild) fill(els.chooser, chooser(p, topo));
  let content;
  if (src && dst) {
    els.title.textContent = `Pair ${src} → ${dst}`;
    content = await hostPair(src, dst, t);
  } else if (sr && dr) {
    els.title.textContent = `Rack pair ${sr} → ${dr}`;
    content = await rackPair(sr, dr, t);
  } else {
    els.title.textContent = 'Pair';
    content = [h('p', { class: 'empty' }, 'Choose a source and a destination host, or click a cell of the heatmap.')];
  }
  fill(els.body, ...content);
}

export default {
  async mount(el, c) {
    root = el; ctx = c;
    els = { title: h('h1', {}, 'Pair'), chooser: h('div'), body: h('div', { id: 'pair-body' }, h('p', { class: 'empty' }, 'Loading…')) };
    root.append(els.title, els.chooser, els.body);
    await refresh(c.params);
  },
  async update(c, { poll }) {
    ctx = c;
    if (poll && c.params.get('t')) return;
    await refresh(c.params, { poll });
  },
  unmount() {},
};
