// Agents: every agent's health as the server sees it.

import * as api from '../api.js';
import { h, fill, stateMessage, fmtSeconds, fmtNum, fmtTime, fmtAgo } from '../dom.js';

let body, ctx, filter = '';

async function refresh() {
  let list;
  try {
    list = await api.agents();
  } catch (err) {
    fill(body, stateMessage(err));
    ctx.reportError(err);
    return;
  }
  if (!list.length) { fill(body, h('p', { class: 'empty' }, 'No agents have reported yet. Start `meshlens agent` on the hosts of the topology.')); return; }
  const order = { missing: 0, stale: 1 };
  list.sort((a, b) => (order[a.state] ?? 2) - (order[b.state] ?? 2) || String(a.host).localeCompare(b.host));
  const shown = filter ? list.filter(a => a.state === filter) : list;
  const count = st => list.filter(a => a.state === st).length;
  fill(body, 
    h('p', { id: 'agents-summary' }, `${list.length} agents: `, h('span', { class: 'state-up' }, count('up') + ' up'), ', ',
      h('span', { class: 'state-stale' }, count('stale') + ' stale'), ', ', h('span', { class: 'state-missing' }, count('missing') + ' missing')),
    h('table', { id: 'agents-table' },
      h('thead', {}, h('tr', {}, ['host', 'state', 'version', 'last seen', 'pinglist', 'probes sent', 'probes/s', 'scheduling lag p99'].map((t, i) => h('th', { class: i >= 5 ? 'num' : '', scope: 'col' }, t)))),
      h('tbody', {}, shown.map(a => h('tr', { dataset: { host: a.host, state: a.state } },
        // The host opens the pair view with it as the source.
        h('td', {}, h('a', { href: '#/pair?' + new URLSearchParams({ src: a.host }), title: 'pairs from ' + a.host }, a.host)),
        h('td', { class: 'state-' + a.state }, a.state), h('td', {}, a.version),
        h('td', { title: fmtTime(a.lastSeen) }, fmtAgo(a.lastSeen)), h('td', {}, String(a.pinglistVersion)),
        h('td', { class: 'num' }, fmtNum(a.probesTotal)), h('td', { class: 'num' }, a.probeRate === null ? 'measuring…' : fmtNum(a.probeRate, 1)), h('td', { class: 'num' }, fmtSeconds(a.schedulingLag)))))));
}

export default {
  async mount(root, c) {
    ctx = c;
    filter = c.params.get('state') || '';
    body = h('div', {}, h('p', { class: 'empty' }, 'Loading…'));
    const sel = h('select', { id: 'agents-filter', onchange: e => c.go('agents', { state: e.target.value }) },
      ['', 'up', 'stale', 'missing'].map(s => h('option', { value: s, selected: s === filter }, s || 'all')));
    root.append(h('h1', {}, 'Agents'), h('div', { class: 'toolbar' }, h('label', {}, 'Show ', sel)), body);
    await refresh();
  },
  async update(c) { ctx = c; filter = c.params.get('state') || ''; await refresh(); },
  unmount() {},
};
