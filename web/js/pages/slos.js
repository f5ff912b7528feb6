// SLOs: each SLO's SLI, budget remaining, burn rate per window, budget over
// time, and its alert tiers.

import * as api from '../api.js';
import { h, clear, fill, stateMessage, fmtRatio, fmtNum } from '../dom.js';
import { lineChart } from '../chart.js';

let ctx, body;

function budgetBar(v) {
  const bar = h('div', { class: 'bar' + (v !== null && v < 0.25 ? ' low' : ''), role: 'meter', 'aria-valuemin': 0, 'aria-valuemax': 1, 'aria-valuenow': v ?? 0, 'aria-label': 'error budget remaining' }, h('span'));
  bar.firstChild.style.width = Math.max(0, Math.min(1, v ?? 0)) * 100 + '%';
  return bar;
}

async function budgetChart(name) {
  const end = new Date(), start = new Date(end.getTime() - 6 * 3600_000);
  try {
    const res = await api.promRange(`${api.metricNames.budget}{slo="${name.replace(/"/g, '\\"')}"}`, start, end, 60);
    return lineChart(res.map(r => ({ name: 'budget remaining', points: r.points })), { title: 'Error budget remaining, last 6 h', format: v => fmtRatio(v, 2) });
  } catch (err) {
    return stateMessage(err);
  }
}

async function refresh(p) {
  let list;
  try { list = await api.slos(); } catch (err) { fill(body, stateMessage(err)); ctx.reportError(err); return; }
  if (!list.length) { fill(body, h('p', { class: 'empty' }, 'No SLOs are defined. Add them to the server\'s SLO file.')); return; }
  const sections = await Promise.all(list.map(async s => h('section', { class: 'card', id: 'slo-' + s.name, dataset: { slo: s.name, state: s.alerts.some(a => a.state === 'firing') ? 'firing' : 'ok' } },
    h('h2', {}, s.name), s.description ? h('p', {}, s.description) : null,
    s.error ? h('p', { class: 'error-state' }, 'Evaluation failed: ' + s.error) : null,
    h('dl', { class: 'kv' },
      h('dt', {}, 'objective'), h('dd', {}, fmtRatio(s.objective, 5), s.window ? ' over ' + s.window : ''),
      s.events !== null ? [h('dt', {}, 'events'), h('dd', {}, `${fmtNum(s.badEvents)} bad of ${fmtNum(s.events)}`)] : null,
      h('dt', {}, 'SLI now'), h('dd', { class: s.sli !== null && s.objective !== null && s.sli < s.objective ? 'sev-red' : '' }, fmtRatio(s.sli, 5)),
      h('dt', {}, 'budget remaining'), h('dd', {}, fmtRatio(s.budgetRemaining, 3), budgetBar(s.budgetRemaining))),
    h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'window'), h('th', { class: 'num' }, 'burn rate'))),
      h('tbody', {}, Object.entries(s.burnRates).map(([w, v]) => h('tr', {}, h('td', {}, w), h('td', { class: 'num' + (v > 1 ? ' sev-red' : '') }, fmtNum(v) + '×'))))),
    s.alerts.length ? h('table', { class: 'slo-alerts' }, h('thead', {}, h('tr', {}, h('th', {}, 'alert tier'), h('th', {}, 'windows'), h('th', { class: 'num' }, 'threshold'), h('th', { class: 'num' }, 'burn now'), h('th', {}, 'state'))),
      h('tbody', {}, s.alerts.map(a => h('tr', { dataset: { tier: a.name, state: a.state } }, h('td', {}, a.name), h('td', {}, String(a.windows)), h('td', { class: 'num' }, fmtNum(a.threshold) + '×'),
        h('td', { class: 'num' }, a.burn.filter(x => x !== null).map(x => fmtNum(x) + '×').join(' / ') || '–'), h('td', { class: 'state-' + a.state }, a.state))))) : null,
    s.perDay.length ? lineChart([{ name: 'budget consumed per day', points: s.perDay.map(([d, v]) => [d.getTime(), v]) }], { title: 'Error budget consumed per day', format: v => fmtRatio(v, 2), yMin: 0 }) : null,
    /^https?:\/\//.test(s.runbook) ? h('p', {}, h('a', { href: s.runbook, rel: 'noopener noreferrer' }, 'Runbook')) : null,
    p.get('slo') === s.name || list.length <= 4 ? await budgetChart(s.name) : null)));
  fill(body, h('div', { class: 'grid' }, sections));
  const want = p.get('slo');
  if (want) document.getElementById('slo-' + want)?.scrollIntoView();
}

export default {
  async mount(root, c) {
    ctx = c;
    body = h('div', {}, h('p', { class: 'empty' }, 'Loading…'));
    root.append(h('h1', {}, 'SLOs'), body);
    await refresh(c.params);
  },
  async update(c) { ctx = c; await refresh(c.params); },
  unmount() {},
};
