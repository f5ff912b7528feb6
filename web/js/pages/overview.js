// Overview: fabric health on one screen. Each card loads on its own so one
// endpoint missing or failing leaves the others readable.

import * as api from '../api.js';
import { h, clear, fill, stateMessage, fmtSeconds, fmtRatio, fmtNum } from '../dom.js';
import { metrics, level, levelNames } from '../scale.js';

let cards, ctx;

function card(id, title) {
  const body = h('div', { class: 'card-body' }, h('p', { class: 'empty' }, 'Loading…'));
  return { el: h('section', { class: 'card', id, 'aria-labelledby': id + '-h' }, h('h2', { id: id + '-h' }, title), body), body };
}

async function fillCard(c, fn) {
  try {
    const content = await fn();
    fill(c.body, content);
  } catch (err) {
    fill(c.body, stateMessage(err));
    ctx.reportError(err);
  }
}

const active = i => !/resolved|closed/i.test(i.state);

async function incidentsCard() {
  const list = (await api.incidents()).filter(active);
  if (!list.length) return h('p', { class: 'empty' }, 'No active incidents.');
  return h('ul', { id: 'ov-incidents' }, list.map(i => h('li', { class: 'state-' + i.state },
    h('a', { href: '#/incidents?id=' + encodeURIComponent(i.id) }, i.title || 'incident ' + i.id),
    i.blamed.length ? [' — blamed: ', h('strong', { class: 'blamed' }, i.blamed.join(', '))] : ' — cause not localized yet')));
}

async function slosCard() {
  const list = await api.slos();
  if (!list.length) return h('p', { class: 'empty' }, 'No SLOs are defined.');
  return h('table', { id: 'ov-slos' },
    h('thead', {}, h('tr', {}, h('th', {}, 'SLO'), h('th', { class: 'num' }, 'budget left'), h('th', { class: 'num' }, 'worst burn rate'))),
    h('tbody', {}, list.map(s => {
      const burns = Object.values(s.burnRates).filter(v => v !== null);
      return h('tr', {}, h('td', {}, h('a', { href: '#/slos?slo=' + encodeURIComponent(s.name) }, s.name)),
        h('td', { class: 'num ' + (s.budgetRemaining !== null && s.budgetRemaining < 0.25 ? 'sev-red' : '') }, fmtRatio(s.budgetRemaining, 3)),
        h('td', { class: 'num' }, burns.length ? fmtNum(Math.max(...burns)) + '×' : '–'));
    })));
}

async function agentsCard() {
  const list = await api.agents();
  if (!list.length) return h('p', { class: 'empty' }, 'No agents have reported yet.');
  const n = st => list.filter(a => a.state === st).length;
  return h('div', { id: 'ov-agents' },
    h('p', { class: 'big' }, h('span', { class: 'state-up' }, n('up')), ' / ', h('span', { class: 'state-stale' }, n('stale')), ' / ', h('span', { class: 'state-missing' }, n('missing'))),
    h('p', {}, 'up / stale / missing of ', list.length, ' agents. ', h('a', { href: '#/agents' }, 'All agents')));
}

async function worstCard() {
  const loss = await api.promQuery(`topk(8, ${api.lossQuery('rack')})`);
  const lat = await api.promQuery(`topk(8, max by (src_rack, dst_rack) (last_over_time(${api.metricNames.latency('rack')}{quantile="0.99"}[1m])))`);
  if (!loss.length && !lat.length) return h('p', { class: 'empty' }, 'No rack-pair measurements yet: agents report every 10 s once the pinglists are out.');
  const table = (rows, metric, fmt) => h('table', {},
    h('thead', {}, h('tr', {}, h('th', {}, 'rack pair'), h('th', { class: 'num' }, metrics[metric].label))),
    h('tbody', {}, rows.filter(r => r.value > 0).map(r => {
      const m = metrics[metric];
      const lvl = levelNames[level(r.value, m.warn, m.bad)];
      const href = '#/heatmap?' + new URLSearchParams({ level: 'host', a: r.labels.src_rack, b: r.labels.dst_rack, metric });
      return h('tr', { class: 'sev-' + lvl, dataset: { src: r.labels.src_rack, dst: r.labels.dst_rack } },
        h('td', {}, h('a', { href }, `${r.labels.src_rack} → ${r.labels.dst_rack}`)), h('td', { class: 'num' }, fmt(r.value)));
    })));
  return h('div', { id: 'ov-worst' }, h('h3', {}, 'Loss, last minute'), table(loss, 'loss', v => fmtRatio(v)), h('h3', {}, 'p99 latency'), table(lat, 'p99', fmtSeconds));
}

function refresh() {
  return Promise.all([
    fillCard(cards.incidents, incidentsCard), fillCard(cards.slos, slosCard),
    fillCard(cards.agents, agentsCard), fillCard(cards.worst, worstCard),
  ]);
}

export default {
  async mount(root, c) {
    ctx = c;
    cards = {
      incidents: card('ov-card-incidents', 'Active incidents'), slos: card('ov-card-slos', 'SLOs'),
      agents: card('ov-card-agents', 'Agents'), worst: card('ov-card-worst', 'Worst rack pairs now'),
    };
    root.append(h('h1', {}, 'Overview'), h('div', { class: 'grid' }, Object.values(cards).map(x => x.el)));
    await refresh();
  },
  async update(c) { ctx = c; await refresh(); },
  unmount() {},
};
