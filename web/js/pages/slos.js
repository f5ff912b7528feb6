// SLOs: each SLO's SLI, budget remaining, burn rate per window, budget over
// time, and its alert tiers.

import * as api from '../api.js';
import { h, fill, stateMessage, fmtRatio, fmtNum, fmtNines } from '../dom.js';
import { lineChart } from '../chart.js';

let ctx, body;

function budgetBar(v) {
  const bar = h('div', { class: 'bar' + (v !== null && v < 0.25 ? ' low' : ''), role: 'meter', 'aria-valuemin': 0, 'aria-valuemax': 1, 'aria-valuenow': v ?? 0, 'aria-label': 'error budget remaining' }, h('span'));
  bar.firstChild.style.width = Math.max(0, Math.min(1, v ?? 0)) * 100 + '%';
  return bar;
}

// budgetChart: the budget remaining over the last 6 h, a sample a minute.
async function budgetChart(name) {
  const end = new Date(), start = new Date(end.getTime() - 6 * 3600_000);
  try {
    const res = await api.promRange(`${api.metricNames.budget}{slo="${name.replace(/["\\]/g, '\\$&')}"}`, start, end, 60);
    const fig = lineChart(res.map(r => ({ name: 'budget remaining', points: r.points })), { title: 'Error budget remaining, last 6 h', format: v => fmtRatio(v, 2) });
    fig.dataset.chart = 'budget';
    return fig;
  } catch (err) {
    return stateMessage(err);
  }
}

// Burn-rate windows in time order ("20s", "1m", "1h", "7d"), not the
// alphabetical order of the server's JSON map.
const UNIT_S = { ms: 1e-3, s: 1, m: 60, h: 3600, d: 86400, w: 604800, y: 31536000 };
function windowSeconds(w) {
  let t = 0;
  for (const [, n, u] of String(w).matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)/g)) t += n * UNIT_S[u];
  return t || Infinity;
}

const burn = v => v === null || v === undefined ? '–' : fmtNum(v) + '×';

function card(s, p, chart) {
  const burns = Object.entries(s.burnRates).sort(([a], [b]) => windowSeconds(a) - windowSeconds(b));
  return h('section', { class: 'card', id: 'slo-' + s.name, dataset: { slo: s.name, state: s.alerts.some(a => a.state === 'firing') ? 'firing' : 'ok' } },
    // The heading is the SLO's permalink.
    h('h2', {}, h('a', { href: '#/slos?' + new URLSearchParams({ slo: s.name }) }, s.name)), s.description ? h('p', {}, s.description) : null,
    s.error ? h('p', { class: 'error-state' }, 'Evaluation failed: ' + s.error) : null,
    h('dl', { class: 'kv' },
      h('dt', {}, 'objective'), h('dd', {}, fmtNines(s.objective), s.window ? ' over ' + s.window : ''),
      s.events !== null ? [h('dt', {}, 'events'), h('dd', {}, `${fmtNum(s.badEvents)} bad of ${fmtNum(s.events)}`)] : null,
      h('dt', {}, 'SLI now'), h('dd', { dataset: { field: 'sli' }, class: s.sli !== null && s.objective !== null && s.sli < s.objective ? 'sev-red' : '' },
        s.sli === null ? 'no events in the window yet' : fmtNines(s.sli)),
      h('dt', {}, 'budget remaining'), h('dd', { dataset: { field: 'budget' } },
        s.budgetRemaining === null ? 'no events in the window yet' : fmtNines(s.budgetRemaining), budgetBar(s.budgetRemaining))),
    burns.length ? h('table', { class: 'slo-burns' }, h('thead', {}, h('tr', {}, h('th', {}, 'window'), h('th', { class: 'num' }, 'burn rate'))),
      h('tbody', {}, burns.map(([w, v]) => h('tr', { dataset: { window: w } }, h('td', {}, w), h('td', { class: 'num' + (v > 1 ? ' sev-red' : '') }, burn(v))))))
      : h('p', { class: 'empty' }, 'No burn rates yet: the SLO has not been evaluated.'),
    s.alerts.length ? h('table', { class: 'slo-alerts' }, h('thead', {}, h('tr', {}, h('th', {}, 'alert tier'), h('th', {}, 'windows'), h('th', { class: 'num' }, 'threshold'), h('th', { class: 'num' }, 'burn now'), h('th', {}, 'state'))),
      h('tbody', {}, s.alerts.map(a => h('tr', { dataset: { tier: a.name, state: a.state } }, h('td', {}, a.name), h('td', {}, String(a.windows)), h('td', { class: 'num' }, burn(a.threshold)),
        h('td', { class: 'num' }, a.burn.filter(x => x !== null).map(burn).join(' / ') || '–'), h('td', { class: 'state-' + a.state }, a.state)))))
      : h('p', { class: 'empty' }, 'No alert tiers: this SLO never pages.'),
    s.perDay.length ? lineChart([{ name: 'budget consumed per day', points: s.perDay.map(([d, v]) => [d.getTime(), v]) }], { title: 'Error budget consumed per day', format: v => fmtRatio(v, 2), yMin: 0 }) : null,
    /^https?:\/\//.test(s.runbook) ? h('p', {}, h('a', { href: s.runbook, rel: 'noopener noreferrer' }, 'Runbook')) : null,
    chart ?? h('p', {}, h('a', { href: '#/slos?' + new URLSearchParams({ slo: s.name }) }, 'Budget over time')));
}

async function refresh(p, { poll = false } = {}) {
  let list;
  try { list = await api.slos(); } catch (err) { fill(body, stateMessage(err)); ctx.reportError(err); return; }
  if (!list.length) { fill(body, h('p', { class: 'empty' }, 'No SLOs are defined. Add them to the server\'s SLO file.')); return; }
  // Budget charts for the SLO asked for, or for all of a few.
  const charts = await Promise.all(list.map(s => p.get('slo') === s.name || list.length <= 4 ? budgetChart(s.name) : null));
  fill(body, h('div', { class: 'grid' }, list.map((s, i) => card(s, p, charts[i]))));
  // A deep link scrolls to its SLO once; a poll leaves the reader where
  // they scrolled to.
  const want = p.get('slo');
  if (want && !poll) document.getElementById('slo-' + want)?.scrollIntoView();
}

export default {
  async mount(root, c) {
    ctx = c;
    body = h('div', {}, h('p', { class: 'empty' }, 'Loading…'));
    root.append(h('h1', {}, 'SLOs'), body);
    await refresh(c.params);
  },
  async update(c, { poll }) { ctx = c; await refresh(c.params, { poll }); },
  unmount() {},
};
