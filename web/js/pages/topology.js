// Topology: the Clos fabric by layer (WAN, spines, leaves, ToRs, and hosts
// collapsed per rack), devices and links coloured by the localizer's
// estimates, blamed elements highlighted, drained ones marked.

import * as api from '../api.js';
import { h, s, clear, fill, stateMessage, fmtRatio, fmtSeconds } from '../dom.js';

let root, ctx, els;

const BOX_W = 64, BOX_H = 20, GAP = 8;

function severity(sus) {
  if (!sus || sus.estimate === null) return '';
  if (/latency|agent_slow/i.test(sus.metric)) return sus.estimate > 0.001 ? 'bad' : sus.estimate > 0.0002 ? 'warn' : '';
  if (/down|blackhole/i.test(sus.metric)) return 'bad';
  return sus.estimate >= 0.01 ? 'bad' : sus.estimate >= 0.001 ? 'warn' : '';
}

function fmtEstimate(sus) {
  if (!sus || sus.estimate === null) return 'healthy';
  if (/agent_slow/i.test(sus.metric)) return 'agent starved: lag ' + fmtSeconds(sus.estimate);
  return /latency/i.test(sus.metric) ? '+' + fmtSeconds(sus.estimate) : fmtRatio(sus.estimate) + ' ' + (sus.metric || 'loss');
}

// layout places every drawn element: one column block per DC, racks
// spread evenly, each upper layer centred over what it serves.
function layout(t) {
  const pos = new Map();
  const layers = t.switches.some(x => x.role === 'wan') ? ['wan', 'spine', 'leaf', 'tor', 'rack'] : ['spine', 'leaf', 'tor', 'rack'];
  const y = Object.fromEntries(layers.map((l, i) => [l, 24 + i * 70]));
  let x = 70;
  for (const dc of t.dcs) {
    const dcStart = x;
    for (const podName of dc.pods) {
      const pod = t.pods.find(p => p.name === podName);
      const podStart = x;
      for (const rackName of pod.racks) {
        const rack = t.racks.find(r => r.name === rackName);
        if (rack.tor) pos.set(rack.tor, [x, y.tor]);
        pos.set('rack:' + rack.name, [x, y.rack]);
        x += BOX_W + GAP;
      }
      spread(pod.leaves, podStart, x - GAP, y.leaf, pos);
      x += GAP * 3;
    }
    spread(dc.spines, dcStart, x - GAP * 4, y.spine, pos);
    x += GAP * 6;
  }
  const wan = t.switches.filter(w => w.role === 'wan').map(w => w.name);
  if (wan.length) spread(wan, 70, x, y.wan, pos);
  return { pos, width: Math.max(x, 400), height: y.rack + BOX_H + 24, y };
}

function spread(names, x0, x1, y, pos) {
  if (!names.length) return;
  const step = Math.max(BOX_W + GAP, (x1 - x0) / names.length);
  const total = step * names.length - GAP;
  let x = x0 + Math.max(0, (x1 - x0 - total) / 2);
  for (const n of names) { pos.set(n, [x, y]); x += step; }
}

function draw(t, sus, blamed, drained, focus) {
  const { pos, width, height, y } = layout(t);
  const svg = s('svg', { class: 'topo', id: 'topo-svg', viewBox: `0 0 ${width} ${height}`, role: 'group', 'aria-label': `Fabric ${t.name || ''}` });
  for (const [layer, yy] of Object.entries(y)) {
    svg.append(s('text', { class: 'layer-label', x: 4, y: yy + 14 }, layer === 'rack' ? 'hosts' : layer === 'tor' ? 'ToRs' : layer === 'leaf' ? 'leaves' : layer + 's'));
  }
  const centre = n => { const p = pos.get(n); return p && [p[0] + BOX_W / 2, p[1] + BOX_H / 2]; };
  const links = s('g', { class: 'links' });
  for (const l of t.links) {
    const a = centre(l.a), b = centre(l.b);
    if (!a || !b) continue; // host links are collapsed into the rack box
    const names = [`${l.a}--${l.b}`, `${l.b}--${l.a}`, `${l.a}->${l.b}`, `${l.b}->${l.a}`];
    const est = names.map(n => sus.get(n)).find(Boolean);
    const isBlamed = names.some(n => blamed.has(n));
    const cls = ['link', severity(est), isBlamed ? 'blamed' : '', names.some(n => drained.has(n)) ? 'drained' : ''].filter(Boolean).join(' ');
    links.append(s('line', { class: cls, x1: a[0], y1: a[1], x2: b[0], y2: b[1], dataset: { element: names[0] } },
      s('title', {}, `${names[0]}: ${fmtEstimate(est)}${isBlamed ? ' (blamed)' : ''}`)));
  }
  svg.append(links);
  const nodes = s('g', { class: 'nodes' });
  const node = (name, label, title, est, isBlamed, isDrained) => {
    const p = pos.get(name);
    const cls = ['node', severity(est), isBlamed ? 'blamed' : '', isDrained ? 'drained' : '', focus === label ? 'focus' : ''].filter(Boolean).join(' ');
    const g = s('g', { class: cls, tabindex: 0, role: 'button', dataset: { element: label }, 'aria-label': title });
    g.append(s('title', {}, title), s('rect', { x: p[0], y: p[1], width: BOX_W, height: BOX_H, rx: 3 }),
      s('text', { x: p[0] + 4, y: p[1] + 13 }, short(label)));
    const select = () => showDetail(label, est, isBlamed, isDrained);
    g.addEventListener('click', select);
    g.addEventListener('keydown', e => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); select(); } });
    nodes.append(g);
  };
  for (const sw of t.switches) {
    if (!pos.has(sw.name)) continue;
    const est = sus.get(sw.name), b = blamed.has(sw.name), d = drained.has(sw.name) || !!sw.drained;
    node(sw.name, sw.name, `${sw.role} ${sw.name}: ${fmtEstimate(est)}${b ? ', blamed' : ''}${d ? ', drained' : ''}`, est, b, d);
  }
  for (const r of t.racks) {
    const hostSus = r.hosts.map(n => sus.get(n)).filter(Boolean);
    const worst = hostSus.sort((a, b) => (b.estimate || 0) - (a.estimate || 0))[0];
    const b = r.hosts.some(n => blamed.has(n));
    node('rack:' + r.name, r.name, `${r.hosts.length} hosts of ${r.name}${worst ? ', worst host ' + worst.element + ': ' + fmtEstimate(worst) : ''}${b ? ', a host is blamed' : ''}`, worst, b, false);
  }
  svg.append(nodes);
  // Width in CSS pixels: at least readable boxes, scrolled if the fabric is wide.
  svg.setAttribute('width', width);
  svg.setAttribute('height', height);
  return svg;
}

function short(name) {
  const m = name.match(/(spine\d+|leaf\d+|rack\d+-tor|rack\d+|wan\d+)$/);
  return m ? m[1].replace('-tor', ' tor') : name.slice(-10);
}

function showDetail(name, est, isBlamed, isDrained) {
  fill(els.detail, h('h2', {}, name), h('dl', { class: 'kv' },
    h('dt', {}, 'estimate'), h('dd', {}, fmtEstimate(est)),
    h('dt', {}, 'confidence'), h('dd', {}, est && est.confidence !== null ? fmtRatio(est.confidence, 2) : '–'),
    h('dt', {}, 'blamed'), h('dd', {}, isBlamed ? 'yes' : 'no'),
    h('dt', {}, 'drained'), h('dd', {}, isDrained ? 'yes' : 'no'),
    h('dt', {}, 'evidence'), h('dd', {}, est?.evidence ? String(est.evidence) : '–')));
}

async function refresh(p) {
  let t;
  try { t = await api.topologyCached(); } catch (err) { fill(els.body, stateMessage(err)); ctx.reportError(err); return; }
  if (!t.switches.length) { fill(els.body, h('p', { class: 'empty' }, 'The topology is empty.')); return; }
  const [susR, incR, remR, evR] = await Promise.allSettled([api.suspects(), api.incidents(), api.remediations(), api.evidence()]);
  const list = susR.status === 'fulfilled' ? susR.value : [];
  const sus = new Map(list.map(x => [x.element, x]));
  const blamed = new Set(list.filter(x => x.confidence === null || x.confidence >= 0.5).map(x => x.element));
  if (incR.status === 'fulfilled') for (const i of incR.value) if (!/resolved|closed/i.test(i.state)) i.blamed.forEach(b => blamed.add(b));
  const drained = new Set(list.filter(x => x.drained).map(x => x.element));
  if (remR.status === 'fulfilled') api.drainedElements(remR.value).forEach(e => drained.add(e));
  const notes = [];
  if (susR.status === 'rejected') notes.push(stateMessage(susR.reason));
  fill(els.body, 
    h('div', { class: 'legend' }, 'Colour: localizer estimate (loss ≥ 1 % or added latency ≥ 1 ms is bad). Thick outline in the bad colour: blamed. Dashed: drained. Hosts collapsed per rack.'),
    ...notes,
    h('div', { class: 'topo-scroll' }, draw(t, sus, blamed, drained, p.get('focus'))),
    drained.size ? h('p', { id: 'topo-drained' }, 'Drained: ', [...drained].join(', ')) : null,
    h('h2', {}, 'Blamed elements'),
    blamed.size ? h('ul', { id: 'topo-blamed' }, [...blamed].map(b => h('li', { class: 'sev-red', dataset: { element: b } }, b, ': ', fmtEstimate(sus.get(b)))))
      : h('p', { class: 'empty', id: 'topo-blamed' }, 'Nothing is blamed: the localizer sees no faulty element.'),
    evidenceSection(evR));
}

// evidenceSection says where evidence on demand is probing harder, and
// what it costs: the extra probes are the fleet's, they should be seen.
function evidenceSection(r) {
  if (r.status === 'rejected') return stateMessage(r.reason);
  const ev = r.value;
  if (!ev.requests.length) return h('p', { class: 'empty', id: 'topo-evidence' }, 'No evidence is being gathered on demand: the probe rate is the pinglists\' own.');
  return h('div', { id: 'topo-evidence' },
    h('h2', {}, 'Gathering evidence'),
    h('p', {}, `${ev.agents} agents probe ${ev.probes}× as often on the pairs around these elements: ${ev.extraPerSecond.toFixed(1)} extra probes/s over the fleet.`),
    h('ul', {}, ev.requests.map(q => h('li', { dataset: { element: q.element } }, q.element,
      ` (${q.kind}): ${q.pairs} pairs`, q.overBudget ? `, ${q.overBudget} left out by the budget` : '',
      q.since ? `, since ${q.since.toLocaleTimeString()}` : ''))));
}

export default {
  async mount(el, c) {
    root = el; ctx = c;
    els = { body: h('div', {}, h('p', { class: 'empty' }, 'Loading…')), detail: h('aside', { id: 'topo-detail', 'aria-live': 'polite' }) };
    root.append(h('h1', {}, 'Topology'), els.body, els.detail);
    await refresh(c.params);
  },
  async update(c) { ctx = c; await refresh(c.params); },
  unmount() {},
};
