// Incidents: the list, and one incident's detail: timeline, evidence, the
// blamed element (with a link to it on the topology), affected SLOs and
// pairs, and the remediation audit.

import * as api from '../api.js';
import { h, clear, fill, stateMessage, fmtTime, fmtSeconds, fmtRatio } from '../dom.js';

let ctx, body;

function listView(list) {
  if (!list.length) return h('p', { class: 'empty' }, 'No incidents: nothing has burned an SLO or been localized yet.');
  return h('table', { id: 'incidents-table' },
    h('thead', {}, h('tr', {}, ['incident', 'state', 'blamed', 'started', 'resolved'].map(x => h('th', { scope: 'col' }, x)))),
    h('tbody', {}, list.map(i => h('tr', { dataset: { id: i.id, state: i.state } },
      h('td', {}, h('a', { href: '#/incidents?id=' + encodeURIComponent(i.id) }, i.title || 'incident ' + i.id)),
      h('td', { class: 'state-' + i.state }, i.state, i.acknowledged ? h('span', { class: 'badge', title: 'acknowledged by ' + i.acknowledged.by }, 'ack') : null),
      h('td', { class: 'blamed' }, i.blamed.join(', ') || 'not localized'),
      h('td', {}, fmtTime(i.startedAt)), h('td', {}, i.endedAt ? fmtTime(i.endedAt) : '–')))));
}

// ackView says who took the incident on, or offers to (the server decides
// whether this token may: operators and admins).
function ackView(i) {
  if (i.acknowledged) {
    const a = i.acknowledged;
    return h('p', { id: 'incident-ack' }, `Acknowledged by ${a.by} at ${fmtTime(a.at)}`, a.comment ? ': ' + a.comment : '.');
  }
  if (i.state !== 'open') return null;
  const comment = h('input', { type: 'text', name: 'comment', maxlength: '1000', placeholder: 'what you are doing about it', 'aria-label': 'comment' });
  const status = h('span', { role: 'status' });
  const form = h('form', { id: 'incident-ack-form', class: 'inline' }, comment, ' ', h('button', { type: 'submit' }, 'Acknowledge'), ' ', status);
  form.addEventListener('submit', async ev => {
    ev.preventDefault();
    status.textContent = 'Acknowledging…';
    try {
      await api.ackIncident(i.id, comment.value);
      await refresh(ctx.params);
    } catch (err) {
      status.textContent = err.message;
    }
  });
  return form;
}

function detailView(i) {
  const blamed = i.blamed.length
    ? h('ul', { id: 'incident-blamed' }, i.blamed.map(b => h('li', { class: 'sev-red', dataset: { element: b } }, h('strong', {}, b), ' ',
      h('a', { href: '#/topology?' + new URLSearchParams({ focus: b }) }, 'show on the topology'))))
    : h('p', { class: 'empty' }, 'The localizer has not blamed an element yet.');
  return h('article', { id: 'incident-detail', dataset: { id: i.id } },
    h('p', {}, h('a', { href: '#/incidents' }, '← all incidents')),
    h('h2', {}, i.title || 'incident ' + i.id, ' ', h('span', { class: 'badge state-' + i.state }, i.state)),
    h('dl', { class: 'kv' }, h('dt', {}, 'started'), h('dd', {}, fmtTime(i.startedAt)), h('dt', {}, 'resolved'), h('dd', {}, i.endedAt ? fmtTime(i.endedAt) : '–'),
      i.severity ? [h('dt', {}, 'severity'), h('dd', {}, i.severity)] : null),
    ackView(i),
    h('h3', {}, 'Blamed'), blamed,
    i.culprit ? h('p', {}, `${i.culprit.kind} ${i.culprit.symptom}`, i.culprit.estimate !== null ? `, estimate ${i.culprit.symptom === 'latency' ? fmtSeconds(i.culprit.estimate) : fmtRatio(i.culprit.estimate)}` : '',
      i.culprit.confidence !== null ? `, confidence ${fmtRatio(i.culprit.confidence, 2)}` : '') : null,
    h('h3', {}, 'Timeline'), i.timeline.length ? h('ol', { class: 'timeline' }, i.timeline.map(e => h('li', {}, h('time', {}, fmtTime(e.at)), e.kind ? h('span', { class: 'badge' }, e.kind.replace(/_/g, ' ')) : null, ' ', e.text))) : h('p', { class: 'empty' }, 'No events recorded.'),
    h('h3', {}, 'Evidence'), i.evidence ? h('pre', {}, typeof i.evidence === 'string' ? i.evidence : JSON.stringify(i.evidence, null, 2)) : h('p', { class: 'empty' }, 'No evidence attached.'),
    h('h3', {}, 'Affected SLOs'), i.slos.length ? h('ul', {}, i.slos.map(x => h('li', {}, h('a', { href: '#/slos?slo=' + encodeURIComponent(x.split(':')[0]) }, x)))) : h('p', { class: 'empty' }, 'None recorded.'),
    h('h3', {}, 'Affected pairs'), i.pairs.length ? h('ul', {}, i.pairs.slice(0, 50).map(x => h('li', {}, x))) : h('p', { class: 'empty' }, 'None recorded.'),
    h('h3', {}, 'Remediation audit'), i.remediation.length
      ? h('table', {}, h('thead', {}, h('tr', {}, ['time', 'rule / actor', 'action', 'result'].map(x => h('th', {}, x)))),
        h('tbody', {}, i.remediation.map(r => h('tr', {}, h('td', {}, fmtTime(r.at)), h('td', {}, r.actor), h('td', {}, r.action), h('td', {}, String(r.result))))))
      : h('p', { class: 'empty' }, 'No remediation ran.'));
}

async function refresh(p) {
  const id = p.get('id');
  try {
    if (id) {
      const [inc, rem] = await Promise.all([api.incidentDetail(id), api.remediations().catch(() => [])]);
      const decisions = rem.filter(d => d.incident === inc.id);
      if (decisions.length) {
        inc.remediation = decisions.map(d => ({ at: d.at, actor: d.rule, action: `${d.action} ${d.element}`,
          result: d.taken ? 'taken' : d.dryRun ? 'dry run' : 'not taken' + (d.reason ? ': ' + d.reason : '') }));
      }
      // The page refreshes every window: keep a comment being typed.
      const prev = body.querySelector('#incident-ack-form input');
      const typed = prev ? prev.value : '', focused = prev !== null && document.activeElement === prev;
      fill(body, detailView(inc));
      const next = body.querySelector('#incident-ack-form input');
      if (next) {
        next.value = typed;
        if (focused) next.focus();
      }
    } else {
      fill(body, listView(await api.incidents()));
    }
  } catch (err) {
    fill(body, stateMessage(err));
    ctx.reportError(err);
  }
}

export default {
  async mount(root, c) {
    ctx = c;
    body = h('div', {}, h('p', { class: 'empty' }, 'Loading…'));
    root.append(h('h1', {}, 'Incidents'), body);
    await refresh(c.params);
  },
  async update(c) { ctx = c; await refresh(c.params); },
  unmount() {},
};
