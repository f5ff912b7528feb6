// api.js is the UI's only door to the server. Every endpoint, field name and
// envelope shape lives here, so when the server's JSON settles (or changes)
// only this file moves. Pages receive plain, normalised objects.

const TOKEN_KEY = 'meshlens.token';
// The API is served by the same server as the UI, at the UI's root: resolve
// against this module so deep links (/some/path -> index.html) still work.
const BASE = new URL('../', import.meta.url);

export class ApiError extends Error {
  // kind: unauthorized | forbidden | conflict | unavailable | network | server | bad
  constructor(kind, status, message) {
    super(message);
    this.kind = kind;
    this.status = status;
  }
}

export function token() { return sessionStorage.getItem(TOKEN_KEY) || ''; }
export function setToken(t) {
  if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY);
}

// request fetches a same-origin URL with the bearer token and decodes JSON.
// A 404 means "this endpoint is not in this server yet": the pages show
// that in words rather than breaking.
export async function request(url, { signal, method = 'GET', json } = {}) {
  const headers = { Accept: 'application/json' };
  const t = token();
  if (t) headers.Authorization = 'Bearer ' + t;
  let reqBody;
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    reqBody = JSON.stringify(json);
  }
  let res;
  try {
    res = await fetch(new URL(url, BASE), { method, headers, body: reqBody, signal, credentials: 'same-origin' });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError('network', 0, 'The meshlens server is unreachable (' + e.message + ').');
  }
  let body = null;
  const text = await res.text();
  if (text) {
    try { body = JSON.parse(text); } catch { body = null; }
  }
  if (!res.ok) {
    const detail = body && (body.error || body.message) ? ': ' + (body.error || body.message) : '';
    switch (res.status) {
      case 401: throw new ApiError('unauthorized', 401, 'Sign in with an API token to see this' + detail + '.');
      case 403: throw new ApiError('forbidden', 403, (method === 'GET' ? 'Your token\'s role may not see this' : 'Your token\'s role may not do this') + detail + '.');
      case 409: throw new ApiError('conflict', 409, 'Not done' + detail + '.');
      case 503:
        if (body && body.errorType === 'unavailable') throw new ApiError('unavailable', 503, 'This server does not provide ' + url.split('?')[0] + detail + '.');
        throw new ApiError('server', 503, 'The server is overloaded or starting (503)' + detail + '.');
      case 404: case 501: throw new ApiError('unavailable', res.status, 'This server does not offer ' + url.split('?')[0] + ' yet.');
      default:
        if (res.status >= 500) throw new ApiError('server', res.status, 'The server failed (' + res.status + ')' + detail + '.');
        throw new ApiError('bad', res.status, 'The server refused the request (' + res.status + ')' + detail + '.');
    }
  }
  if (body === null) throw new ApiError('bad', res.status, 'The server answered ' + url.split('?')[0] + ' with something that is not JSON.');
  return body;
}

// ---- field helpers -------------------------------------------------------

function pick(o, ...names) {
  if (!o) return undefined;
  for (const n of names) if (o[n] !== undefined && o[n] !== null) return o[n];
  return undefined;
}
function num(v) {
  if (v === undefined || v === null || v === '') return null;
  const n = typeof v === 'string' ? parseFloat(v) : v;
  return Number.isFinite(n) ? n : null;
}
// seconds accepts a number of seconds or a Go duration string ("1.5ms").
function seconds(v) {
  if (typeof v === 'string' && /[a-zµ]$/i.test(v)) {
    const m = v.match(/^([0-9.]+)(ns|us|µs|ms|s|m|h)$/);
    if (!m) return null;
    const f = { ns: 1e-9, us: 1e-6, 'µs': 1e-6, ms: 1e-3, s: 1, m: 60, h: 3600 }[m[2]];
    return parseFloat(m[1]) * f;
  }
  return num(v);
}
function date(v) {
  if (v === undefined || v === null || v === '') return null;
  const d = typeof v === 'number' ? new Date(v > 1e12 ? v : v * 1000) : new Date(v);
  return isNaN(d.getTime()) || d.getUTCFullYear() < 1971 ? null : d;
}
// unwrap accepts {data: X}, {items: [...]}, {<name>: [...]} or X itself.
function unwrap(body, ...names) {
  if (Array.isArray(body)) return body;
  if (body && typeof body === 'object') {
    for (const n of ['data', 'items', ...names]) {
      if (body[n] !== undefined) return Array.isArray(body[n]) || names.length === 0 ? body[n] : unwrap(body[n], ...names);
    }
  }
  return body;
}
function list(body, ...names) {
  const v = unwrap(body, ...names);
  return Array.isArray(v) ? v : [];
}
function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') u.set(k, v);
  return u.toString();
}
function strList(v) {
  if (!v) return [];
  if (Array.isArray(v)) return v.map(x => typeof x === 'string' ? x : pick(x, 'element', 'name', 'slo', 'id')).filter(Boolean);
  if (typeof v === 'object') return [pick(v, 'element', 'name', 'id')].filter(Boolean);
  return [String(v)];
}

// ---- meshlens JSON API --------------------------------------------------

export async function topology(opts) {
  const t = unwrap(await request('api/v1/topology', opts));
  for (const k of ['dcs', 'pods', 'racks', 'switches', 'hosts', 'links']) t[k] = t[k] || [];
  return t;
}

// The probe protocols the server knows: its protocol table (internal/wire),
// never a copy of their names here. It does not change while the server
// runs, so one answer is kept.
let protoCache = null;
export async function protocols(opts) {
  if (!protoCache) {
    protoCache = list(await request('api/v1/protocols', opts)).map(p => ({
      name: String(p.name), peer: !!p.peer, target: !!p.target, responder: !!p.responder,
    }));
  }
  return protoCache;
}

// Agents report a cumulative probe count, which grows once per delivered
// batch (every window). The rate is measured between deliveries, by the
// server's last_seen of each, over up to RATE_SPAN_MS: measured between
// two polls instead, it read 0 whenever no batch landed in between (a page
// opened seconds after another).
const RATE_SPAN_MS = 120_000;
const probeSamples = new Map(); // host -> [{n, at}] by delivery, oldest first
export async function agents(opts) {
  return list(await request('api/v1/agents', opts), 'agents').map(a => ({
    host: pick(a, 'host', 'agent', 'name'),
    probesTotal: num(pick(a, 'probes_total', 'probes')),
    version: pick(a, 'version') ?? '',
    lastSeen: date(pick(a, 'last_seen', 'lastSeen')),
    pinglistVersion: pick(a, 'pinglist_version', 'pinglistVersion') ?? '',
    probeRate: num(pick(a, 'probe_rate', 'probes_per_second', 'probeRate')),
    schedulingLag: seconds(pick(a, 'scheduling_lag_p99_seconds', 'scheduling_lag_seconds', 'scheduling_lag', 'schedulingLag')),
    resultsRejected: num(pick(a, 'results_rejected')),
    state: String(pick(a, 'state', 'status') ?? 'unknown'),
  })).map(a => {
    if (a.probeRate === null && a.probesTotal !== null && a.lastSeen) a.probeRate = deliveryRate(a.host, a.probesTotal, a.lastSeen.getTime());
    return a;
  });
}

// deliveryRate records a delivery (n probes in total at at) and returns
// probes/s over the deliveries seen in the last RATE_SPAN_MS, or null
// until there are two.
function deliveryRate(host, n, at) {
  let ss = probeSamples.get(host) || [];
  const last = ss[ss.length - 1];
  if (last && (n < last.n || at < last.at)) ss = [{ n, at }]; // the server restarted
  else if (!last || at > last.at) ss.push({ n, at });
  while (ss.length > 2 && ss[ss.length - 1].at - ss[1].at >= RATE_SPAN_MS) ss.shift();
  probeSamples.set(host, ss);
  const first = ss[0], newest = ss[ss.length - 1];
  return newest.at > first.at ? (newest.n - first.n) / ((newest.at - first.at) / 1000) : null;
}

// rtt reads a latency quantile: absent when the window had no reply to
// measure (internal/api omits it); 0, which servers before that sent,
// means the same, never a real round trip.
function rtt(v) {
  const x = seconds(v);
  return x === null || x <= 0 ? null : x;
}

function pairWindow(w) {
  return {
    src: pick(w, 'src', 'src_host'), dst: pick(w, 'dst', 'dst_host'),
    proto: pick(w, 'proto', 'protocol') ?? '',
    end: date(pick(w, 'end', 'window_end', 'time', 'at', 'window')),
    sent: num(pick(w, 'sent', 'probes')), lost: num(pick(w, 'lost')),
    lossRatio: num(pick(w, 'loss_ratio', 'lossRatio', 'loss')),
    p50: rtt(pick(w, 'p50', 'p50_seconds')), p90: rtt(pick(w, 'p90', 'p90_seconds')),
    p99: rtt(pick(w, 'p99', 'p99_seconds')), p999: rtt(pick(w, 'p999', 'p99_9', 'p999_seconds')),
    path: strList(pick(w, 'path', 'elements')),
  };
}

// pairHistory: per-window results of one host pair.
export async function pairHistory(src, dst, { proto, since, signal } = {}) {
  const body = await request('api/v1/pairs?' + qs({ src, dst, proto, since: since && since.toISOString() }), { signal });
  const out = list(body, 'windows', 'pairs').map(pairWindow).map(w => ({ ...w, src: w.src || src, dst: w.dst || dst }));
  // What the server's pair detail still holds (trimmed by its memory
  // budget, or off): { mode, note, ... }, or null from older servers.
  out.detail = (body && typeof body === 'object' && body.pair_detail) || null;
  return out;
}

// rackPairHosts: the host pairs within one rack pair for one window.
// Servers without the rack-pair form of /api/v1/pairs get one request per
// host pair instead, as long as that stays reasonable (FALLBACK_PAIRS).
const FALLBACK_PAIRS = 1024;
export async function rackPairHosts(srcRack, dstRack, { at, signal, srcHosts = [], dstHosts = [] } = {}) {
  try {
    const body = await request('api/v1/pairs?' + qs({ src_rack: srcRack, dst_rack: dstRack, at: at && at.toISOString() }), { signal });
    return list(body, 'pairs', 'windows').map(pairWindow);
  } catch (err) {
    const pairs = srcHosts.flatMap(a => dstHosts.filter(b => b !== a).map(b => [a, b]));
    if (!(err instanceof ApiError) || !['bad', 'unavailable'].includes(err.kind) || !pairs.length || pairs.length > FALLBACK_PAIRS) throw err;
    return latestWindows(pairs, at, signal);
  }
}

// latestWindows asks for each pair's windows of the minute before at (or
// now), eight requests at a time, and merges them per protocol: sent and
// lost summed (the loss ratio over the minute, as at the rack level),
// latency quantiles of the newest window.
async function latestWindows(pairs, at, signal) {
  const until = at || new Date();
  const since = new Date(until.getTime() - 60_000);
  const out = [];
  let next = 0;
  const worker = async () => {
    while (next < pairs.length) {
      const [a, b] = pairs[next++];
      const ws = (await pairHistory(a, b, { since, signal })).filter(w => !w.end || w.end <= until);
      const merged = new Map();
      for (const w of ws) {
        const m = merged.get(w.proto);
        if (!m) { merged.set(w.proto, { ...w }); continue; }
        const newer = w.end > m.end;
        const sum = { sent: (m.sent ?? 0) + (w.sent ?? 0), lost: (m.lost ?? 0) + (w.lost ?? 0) };
        merged.set(w.proto, { ...(newer ? w : m), ...sum });
      }
      for (const m of merged.values()) {
        if (m.sent) m.lossRatio = m.lost / m.sent;
        out.push(m);
      }
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  return out;
}

function evidenceText(e) {
  if (!e) return '';
  if (typeof e === 'string') return e;
  if (e.anomalous !== undefined) {
    return `${e.anomalous} anomalous of ${Math.round(e.probes ?? 0)} probes crossing it, from ${e.pairs ?? '?'} pairs (background expects ${(e.expected ?? 0).toFixed(1)})`;
  }
  return JSON.stringify(e);
}

export async function suspects(opts) {
  return (await verdict(opts)).suspects;
}

// verdict is the localizer's latest verdict: the window it judged (start,
// end) and its suspects, worst first.
export async function verdict(opts) {
  const body = await request('api/v1/suspects', opts);
  const d = unwrap(body) || {};
  return {
    start: date(pick(d, 'start')), end: date(pick(d, 'end')),
    suspects: list(body, 'suspects').map(suspect),
  };
}

function suspect(s) {
  return ({
    element: pick(s, 'element', 'name'),
    kind: pick(s, 'kind', 'type') ?? '',
    // symptom: loss, down, blackhole (estimate: drop rate), latency,
    // agent_slow (estimate: seconds).
    metric: pick(s, 'symptom', 'metric') ?? '',
    estimate: num(pick(s, 'estimate', 'loss', 'value')),
    confidence: num(pick(s, 'confidence')),
    evidence: evidenceText(pick(s, 'evidence', 'reason')),
    drained: !!pick(s, 'drained'),
  });
}

// evidence is internal/analyze's Evidence: the elements whose evidence is
// thin and gathered on demand, and what it costs.
export async function evidence(opts) {
  const d = unwrap(await request('api/v1/evidence', opts)) || {};
  const agents = d.agents && typeof d.agents === 'object' ? d.agents : {};
  return {
    probes: num(d.probes),
    extraPerSecond: num(d.extra_per_second) ?? 0,
    agents: Object.keys(agents).length,
    requests: (Array.isArray(d.requests) ? d.requests : []).map(r => ({
      element: r.element, kind: r.kind ?? '', since: r.since ? new Date(r.since) : null,
      pairs: num(r.pairs) ?? 0, overBudget: num(r.over_budget) ?? 0,
    })),
  };
}

// slos accepts internal/slo's Status: target, window, sli and
// error_budget_remaining (null without events), burn_rates by window, and
// multiwindow tiers (long/short window, factor, firing).
export async function slos(opts) {
  return list(await request('api/v1/slos', opts), 'slos').map(s => {
    let burn = pick(s, 'burn_rates', 'burn_rate', 'burnRates') || {};
    if (Array.isArray(burn)) burn = Object.fromEntries(burn.map(b => [pick(b, 'window', 'name'), num(pick(b, 'rate', 'value', 'burn_rate'))]));
    return {
      name: pick(s, 'name', 'slo', 'id'),
      description: pick(s, 'description', 'summary') ?? '',
      objective: num(pick(s, 'target', 'objective')),
      window: pick(s, 'window') ?? '',
      sli: num(pick(s, 'sli', 'sli_ratio', 'current')),
      budgetRemaining: num(pick(s, 'error_budget_remaining', 'budget_remaining', 'error_budget_remaining_ratio', 'budgetRemaining')),
      events: num(pick(s, 'events')), badEvents: num(pick(s, 'bad_events')),
      burnRates: Object.fromEntries(Object.entries(burn).map(([k, v]) => [k, num(v)])),
      alerts: (pick(s, 'tiers', 'alerts') || []).map(a => ({
        name: [pick(a, 'name', 'tier'), pick(a, 'severity')].filter(Boolean).join(' / '),
        windows: a.long !== undefined ? `${a.long} & ${a.short}` : (pick(a, 'windows', 'window') ?? ''),
        threshold: num(pick(a, 'factor', 'threshold', 'burn_rate')),
        burn: [num(a.long_burn_rate), num(a.short_burn_rate)],
        state: a.firing !== undefined ? (a.firing ? 'firing' : 'ok') : String(pick(a, 'state', 'status') ?? 'inactive'),
      })),
      perDay: (pick(s, 'budget_consumed_per_day') || []).map(d => [date(d.end), num(d.consumed)]).filter(([d]) => d),
      runbook: pick(s, 'runbook') ?? '',
      error: pick(s, 'error') ?? '',
    };
  });
}

// incident accepts internal/alert's Incident: blamed is one culprit
// object, slos are budget burns, timeline events have kind and detail.
function incident(i) {
  const blamed = pick(i, 'blamed', 'blamed_elements', 'element', 'suspects');
  const sloBurns = (pick(i, 'slos', 'affected_slos') || []).map(x => typeof x === 'string' ? x
    : `${pick(x, 'slo', 'name')}${x.consumed !== undefined ? `: ${(x.consumed * 100).toFixed(2)} % of the budget consumed` : ''}${x.peak_burn_rate ? `, peak burn ${(+x.peak_burn_rate).toFixed(1)}×` : ''}`);
  return {
    id: String(pick(i, 'id', 'key') ?? ''),
    title: pick(i, 'title', 'summary', 'name') ?? '',
    state: String(pick(i, 'state', 'status') ?? ''),
    severity: pick(i, 'severity') ?? '',
    blamed: strList(blamed),
    culprit: blamed && typeof blamed === 'object' && !Array.isArray(blamed) ? {
      element: blamed.element, kind: blamed.kind ?? '', symptom: blamed.symptom ?? '',
      estimate: num(blamed.estimate), confidence: num(blamed.confidence),
    } : null,
    acknowledged: i.acknowledged ? { by: i.acknowledged.by ?? '', at: date(i.acknowledged.at), comment: i.acknowledged.comment ?? '' } : null,
    startedAt: date(pick(i, 'started_at', 'start', 'opened_at', 'startedAt')),
    detectedAt: date(pick(i, 'detected', 'detected_at')),
    endedAt: date(pick(i, 'resolved_at', 'ended_at', 'end', 'endedAt')),
    timeline: (pick(i, 'timeline', 'events') || []).map(e => ({
      at: date(pick(e, 'at', 'time', 'ts')), kind: pick(e, 'kind') ?? '',
      text: pick(e, 'detail', 'text', 'message', 'event', 'what') ?? '',
    })),
    evidence: pick(i, 'evidence') ?? (blamed && typeof blamed === 'object' ? pick(blamed, 'evidence') : '') ?? '',
    slos: sloBurns,
    pairs: strList(pick(i, 'affected_pairs', 'pairs')).concat(blamed && blamed.pairs && !pick(i, 'affected_pairs') ? blamed.pairs : []),
    // The remediation audit: an explicit list if the server sends one,
    // else the timeline's mitigation events (internal/alert's kind).
    remediation: (pick(i, 'remediation', 'remediations', 'audit')
      || (pick(i, 'timeline') || []).filter(e => /mitigation|remediat|drain/i.test(e.kind || ''))).map(r => ({
      at: date(pick(r, 'at', 'time')), actor: pick(r, 'actor', 'by', 'user') ?? '',
      action: pick(r, 'action', 'hook', 'name', 'detail') ?? '', result: pick(r, 'result', 'status', 'outcome') ?? '',
    })),
  };
}

// remediations: internal/alert's Decision audit (drain, undrain, ...).
export async function remediations(opts) {
  return list(await request('api/v1/remediations', opts), 'decisions', 'remediations').map(d => ({
    at: date(pick(d, 'at', 'time')), rule: pick(d, 'rule') ?? '', incident: pick(d, 'incident') ?? '',
    element: pick(d, 'element') ?? '', kind: pick(d, 'kind') ?? '', action: pick(d, 'action') ?? '',
    taken: !!pick(d, 'taken'), dryRun: !!pick(d, 'dry_run'), reason: pick(d, 'reason') ?? '',
  }));
}

// drainedElements: elements whose latest taken decision is a drain.
export function drainedElements(decisions) {
  const last = new Map();
  for (const d of [...decisions].filter(x => x.taken).sort((a, b) => (a.at || 0) - (b.at || 0))) last.set(d.element, d.action);
  return new Set([...last].filter(([, a]) => /^drain/i.test(a)).map(([e]) => e));
}

export async function incidents(opts) {
  return list(await request('api/v1/incidents', opts), 'incidents').map(incident);
}
export async function incidentDetail(id, opts) {
  return incident(unwrap(await request('api/v1/incidents/' + encodeURIComponent(id), opts), 'incident'));
}
// ackIncident takes an open incident on (operator role or above).
export async function ackIncident(id, comment, opts = {}) {
  return incident(unwrap(await request('api/v1/incidents/' + encodeURIComponent(id) + '/ack',
    { ...opts, method: 'POST', json: { comment } }), 'incident'));
}

export async function diagnosePair(src, dst, opts) {
  const d = unwrap(await request('api/v1/diagnose/pair?' + qs({ src, dst }), opts));
  // internal/diagnose's PairReport: verdict, cause, evidence lines, and
  // the localizer's suspects on the pair's paths.
  const ev = pick(d, 'evidence');
  return {
    verdict: pick(d, 'verdict', 'summary', 'conclusion') ?? '',
    detail: [pick(d, 'cause', 'detail', 'explanation'), ...(Array.isArray(ev) ? ev : ev ? [ev] : [])].filter(Boolean).join(' · '),
    elements: (pick(d, 'suspects_on_path', 'suspects') || []).map(e => typeof e === 'string' ? { element: e } : {
      element: pick(e, 'element', 'name'), estimate: num(pick(e, 'estimate', 'loss')), kind: pick(e, 'kind') ?? '',
    }),
    raw: d,
  };
}

// ---- Prometheus-compatible API ------------------------------------------

function promData(body) {
  if (!body || body.status !== 'success' || !body.data) {
    throw new ApiError('bad', 200, 'Query failed: ' + ((body && body.error) || 'unexpected answer'));
  }
  return body.data;
}

// promQuery runs an instant query; at undefined means now.
export async function promQuery(query, at, opts) {
  const d = promData(await request('api/v1/query?' + qs({ query, time: at ? at.getTime() / 1000 : undefined }), opts));
  if (d.resultType !== 'vector') return [];
  return d.result.map(r => ({ labels: r.metric, t: r.value[0] * 1000, value: parseFloat(r.value[1]) }));
}

// promRange returns [{labels, points: [[ms, value], ...]}].
export async function promRange(query, start, end, stepSeconds, opts) {
  const d = promData(await request('api/v1/query_range?' + qs({
    query, start: start.getTime() / 1000, end: end.getTime() / 1000, step: stepSeconds,
  }), opts));
  return d.result.map(r => ({ labels: r.metric, points: r.values.map(([t, v]) => [t * 1000, parseFloat(v)]) }));
}

// lossQuery is a level's loss ratio over range from the exact cumulative
// probe counters: one 10 s window holds only a few probes per pair, too few
// for a ratio to mean much; a minute of them does.
// Grouped by the level's pairs, or by the labels in group ("proto").
export function lossQuery(level, sel = '', range = '1m', group = `src_${level}, dst_${level}`) {
  return `sum by (${group}) (increase(meshlens_${level}_pair_probes_lost_total{${sel}}[${range}])) / ` +
    probesQuery(level, sel, range, group);
}

// probesQuery is how many probes a level's pairs sent over range.
export function probesQuery(level, sel = '', range = '1m', group = `src_${level}, dst_${level}`) {
  return `sum by (${group}) (increase(meshlens_${level}_pair_probes_total{${sel}}[${range}]))`;
}

// Metric names of the rollups (see internal/aggregate/tsdb.go).
export const metricNames = {
  latency: level => `meshlens_${level}_pair_latency_seconds`,
  loss: level => `meshlens_${level}_pair_loss_ratio`,
  hostLoss: 'meshlens_host_loss_ratio',
  sli: 'meshlens_slo_sli_ratio',
  budget: 'meshlens_slo_error_budget_remaining_ratio',
  burn: 'meshlens_slo_burn_rate',
};

// The topology changes rarely; pages share one copy for a minute.
let topoCache = null, topoAt = 0;
export async function topologyCached(opts) {
  if (topoCache && Date.now() - topoAt < 60_000) return topoCache;
  topoCache = await topology(opts);
  topoAt = Date.now();
  return topoCache;
}

// promRegexAlt builds `a|b|c` for a =~ matcher from literal names.
export function promRegexAlt(names) {
  return names.map(n => n.replace(/[\\.^$|?*+()[\]{}]/g, '\\$&')).join('|');
}
