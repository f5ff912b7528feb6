// Overview: fabric health on one screen, in the order an operator asks:
// is anything broken now (the verdict line), where (the localizer's
// suspects and the open incidents), since when; then SLOs, the worst rack
// pairs and the agents. Each card loads on its own so one endpoint missing
// or failing leaves the others readable.

import * as api from '../api.js';
import { h, fill, stateMessage, fmtSeconds, fmtRatio, fmtNum, fmtTime, fmtAgo, fmtWhen, fmtNines } from '../dom.js';
import { metrics, level, levelNames } from '../scale.js';

let cards, ctx;

function card(id, title) {
  const body = h('div', { class: 'card-body' }, h('p', { class: 'empty' }, 'Loading…'));
  return { el: h('section', { class: 'card', id, 'aria-labelledby': id + '-h' }, h('h2', { id: id + '-h' }, title), body), body };
}

async function fillCard(c, fn, data) {
  try {
    const content = await fn(data);
    fill(c.body, content);
  } catch (err) {
    fill(c.body, stateMessage(err));
    ctx.reportError(err);
  }
}

const active = i => !/resolved|closed/i.test(i.state);

// since: an absolute time (with the date when it is not today) and how
// long ago, so "since when" needs no arithmetic.
function since(d) {
  if (!d) return '–';
  return h('time', { datetime: d.toISOString(), title: fmtTime(d) }, fmtWhen(d), ' (', fmtAgo(d), ')');
}

// nowCard answers "is anything broken now, and where" in one sentence,
// from the localizer's suspects and the open incidents; the cards below
// give the details. Either source failing is said, never taken for "fine".
async function nowCard(d) {
  const [v, inc] = await Promise.allSettled([d.verdict, d.incidents]);
  const sus = v.status === 'fulfilled' ? v.value.suspects : [];
  const open = inc.status === 'fulfilled' ? inc.value.filter(active) : [];
  const where = [...new Set([...sus.map(x => x.element), ...open.flatMap(i => i.blamed)])];
  const out = [];
  if (sus.length || open.length) {
    const first = open.map(i => i.startedAt).filter(Boolean).sort((a, b) => a - b)[0];
    out.push(h('p', { class: 'big sev-red', id: 'ov-verdict', dataset: { state: 'broken' } }, 'Something is broken'),
      h('p', {}, `${sus.length} suspect${sus.length === 1 ? '' : 's'}, ${open.length} open incident${open.length === 1 ? '' : 's'}`,
        where.length ? [': ', h('strong', { class: 'blamed' }, where.slice(0, 4).join(', ')), where.length > 4 ? ` and ${where.length - 4} more` : ''] : '',
        first ? [', since ', since(first)] : '', '.'));
  } else if (v.status === 'fulfilled' && inc.status === 'fulfilled') {
    out.push(h('p', { class: 'big sev-green', id: 'ov-verdict', dataset: { state: 'ok' } }, 'Nothing is broken now'),
      h('p', {}, v.value.end ? `The localizer suspects nothing in the window ending ${fmtWhen(v.value.end)}, and no incident is open.`
        : 'The localizer has not judged a window yet (it does every 10 s once results arrive), and no incident is open.'));
  }
  for (const r of [v, inc]) if (r.status === 'rejected') { out.push(stateMessage(r.reason)); ctx.reportError(r.reason); }
  return out;
}

async function suspectsCard(d) {
  const v = await d.verdict;
  const window = v.end ? `in the window ${fmtWhen(v.start)} – ${fmtWhen(v.end)}` : '';
  if (!v.suspects.length) {
    return h('p', { class: 'empty' }, v.end ? `No suspects ${window}: no link, switch or host explains any loss or delay.`
      : 'The localizer has not judged a window yet.');
  }
  // An incident blaming the same element says since when it has been bad.
  let open = [];
  try { open = (await d.incidents).filter(active); } catch { /* the incidents card says why */ }
  const sinceOf = el => open.filter(i => i.blamed.includes(el)).map(i => i.startedAt).filter(Boolean).sort((a, b) => a - b)[0];
  return [h('p', { class: 'axis-label' }, 'What the localizer blames ', window, '. ', h('a', { href: '#/topology' }, 'On the topology')),
    h('table', { id: 'ov-suspects' },
      h('thead', {}, h('tr', {}, h('th', {}, 'element'), h('th', {}, 'what'), h('th', { class: 'num' }, 'estimate'), h('th', { class: 'num' }, 'confidence'), h('th', {}, 'since'))),
      h('tbody', {}, v.suspects.map(x => h('tr', { class: 'sev-red', dataset: { element: x.element } },
        h('td', {}, x.element), h('td', {}, [x.kind, x.metric].filter(Boolean).join(' · ')),
        h('td', { class: 'num' }, x.metric === 'latency' || x.metric === 'agent_slow' ? fmtSeconds(x.estimate) : fmtRatio(x.estimate)),
        h('td', { class: 'num' }, x.confidence === null ? '–' : fmtNum(x.confidence)),
        h('td', {}, sinceOf(x.element) ? since(sinceOf(x.element)) : 'this window')))))];
}

async function incidentsCard(d) {
  const list = (await d.incidents).filter(active);
  if (!list.length) return h('p', { class: 'empty' }, 'No open incidents.');
  return h('ul', { id: 'ov-incidents' }, list.map(i => h('li', { class: 'state-' + i.state },
    h('a', { href: '#/incidents?id=' + encodeURIComponent(i.id) }, i.title || 'incident ' + i.id),
    i.blamed.length ? [' — blamed: ', h('strong', { class: 'blamed' }, i.blamed.join(', '))] : ' — cause not localized yet',
    i.startedAt ? [' — since ', since(i.startedAt)] : '')));
}

async function slosCard() {
  const list = await api.slos();
  if (!list.length) return h('p', { class: 'empty' }, 'No SLOs are defined.');
  return h('table', { id: 'ov-slos' },
    h('thead', {}, h('tr', {}, h('th', {}, 'SLO'), h('th', { class: 'num' }, 'budget left'), h('th', { class: 'num' }, 'worst burn rate'))),
    h('tbody', {}, list.map(s => {
      const burns = Object.values(s.burnRates).filter(v => v !== null);
      return h('tr', {}, h('td', {}, h('a', { href: '#/slos?slo=' + encodeURIComponent(s.name) }, s.name)),
        h('td', { class: 'num ' + (s.budgetRemaining !== null && s.budgetRemaining < 0.25 ? 'sev-red' : '') }, fmtNines(s.budgetRemaining)),
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
  const table = (rows, metric, fmt, none) => rows.some(r => r.value > 0) ? h('table', {},
    h('thead', {}, h('tr', {}, h('th', {}, 'rack pair'), h('th', { class: 'num' }, metrics[metric].label))),
    h('tbody', {}, rows.filter(r => r.value > 0).map(r => {
      const m = metrics[metric];
      const lvl = levelNames[level(r.value, m.warn, m.bad)];
      const href = '#/heatmap?' + new URLSearchParams({ level: 'host', a: r.labels.src_rack, b: r.labels.dst_rack, metric });
      return h('tr', { class: 'sev-' + lvl, dataset: { src: r.labels.src_rack, dst: r.labels.dst_rack } },
        h('td', {}, h('a', { href }, `${r.labels.src_rack} → ${r.labels.dst_rack}`)), h('td', { class: 'num' }, fmt(r.value)));
    }))) : h('p', { class: 'empty' }, none);
  return h('div', { id: 'ov-worst' }, h('h3', {}, 'Loss, last minute'), table(loss, 'loss', v => fmtRatio(v), 'No rack pair lost a probe in the last minute.'),
    h('h3', {}, 'p99 latency'), table(lat, 'p99', fmtSeconds, 'No rack pair has latency measurements in the last minute.'));
}

// refresh asks for the verdict and the incidents once, for the cards
// that share them (the catch marks a failure handled: each card says it).
function refresh() {
  const data = { verdict: api.verdict(), incidents: api.incidents() };
  for (const p of Object.values(data)) p.catch(() => {});
  return Promise.all(Object.entries(builders).map(([k, fn]) => fillCard(cards[k], fn, data)));
}

const builders = { now: nowCard, suspects: suspectsCard, incidents: incidentsCard, slos: slosCard, worst: worstCard, agents: agentsCard };

export default {
  async mount(root, c) {
    ctx = c;
    cards = {
      now: card('ov-card-now', 'Now'), suspects: card('ov-card-suspects', 'Suspects'),
      incidents: card('ov-card-incidents', 'Open incidents'), slos: card('ov-card-slos', 'SLOs'),
      worst: card('ov-card-worst', 'Worst rack pairs now'), agents: card('ov-card-agents', 'Agents'),
    };
    root.append(h('h1', {}, 'Overview'), h('div', { class: 'grid' }, Object.values(cards).map(x => x.el)));
    await refresh();
  },
  async update(c) { ctx = c; await refresh(); },
  unmount() {},
};
