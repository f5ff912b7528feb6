// pool.js pools a pair's aggregation windows into intervals that hold
// enough probes to mean something. A host pair sends one probe per
// protocol per 10 s window: plotted window by window, its loss jumps
// between 0 % and 100 % and p50 = p99. Pooled over a minute or more, loss
// is a ratio of tens of probes and the quantiles describe a distribution.

// MIN_PROBES is what a point should hold per protocol: with 30 probes a
// 100 %-lossy pair still reads 100 %, and one lost probe reads 3 %, not 100 %.
export const MIN_PROBES = 30;

// STEPS_MS are the interval lengths tried, shortest first; the longest
// still leaves a dozen points in the pair view's hour.
const STEPS_MS = [10e3, 30e3, 60e3, 120e3, 300e3];

// poolStep is the shortest interval (a multiple of windowMs) over which
// the typical window's probes add up to MIN_PROBES per protocol, and the
// probes a full interval then holds.
export function poolStep(windows, windowMs = 10e3) {
  const sent = windows.map(w => w.sent).filter(n => Number.isFinite(n) && n > 0).sort((a, b) => a - b);
  const longest = STEPS_MS[STEPS_MS.length - 1];
  if (!sent.length) return { step: longest, probes: 0 };
  const typical = sent[Math.floor(sent.length / 2)];
  const step = STEPS_MS.find(s => s >= windowMs && typical * s / windowMs >= MIN_PROBES) ?? longest;
  return { step, probes: Math.round(typical * step / windowMs) };
}

// Each window's latency distribution is known only by its quantiles; it
// is pooled as point masses at them (exact when a window holds one reply,
// whose p50 = p99 = its round trip).
const MASSES = [['p50', 0.5], ['p90', 0.4], ['p99', 0.09], ['p999', 0.01]];

function quantile(points, q) {
  const total = points.reduce((t, [, w]) => t + w, 0);
  if (!(total > 0)) return null;
  let acc = 0;
  for (const [v, w] of points) {
    acc += w;
    if (acc >= q * total) return v;
  }
  return points[points.length - 1][0];
}

// pool merges windows ({proto, end: Date, sent, lost, p50, p90, p99, p999})
// into intervals of stepMs ending on multiples of it, one per protocol and
// interval: sent and lost summed, loss their ratio, quantiles from the
// replies' windows.
export function pool(windows, stepMs) {
  const groups = new Map();
  for (const w of windows) {
    if (!w.end) continue;
    const end = Math.ceil(w.end.getTime() / stepMs) * stepMs;
    const k = w.proto + '\n' + end;
    if (!groups.has(k)) groups.set(k, { proto: w.proto, start: new Date(end - stepMs), end: new Date(end), windows: 0, sent: 0, lost: 0, masses: [] });
    const g = groups.get(k);
    g.windows++;
    g.sent += w.sent ?? 0;
    g.lost += w.lost ?? 0;
    const replies = (w.sent ?? 0) - (w.lost ?? 0);
    if (replies > 0) for (const [q, m] of MASSES) if (w[q] !== null && w[q] !== undefined) g.masses.push([w[q], m * replies]);
  }
  return [...groups.values()].map(g => {
    g.masses.sort((a, b) => a[0] - b[0]);
    const out = { proto: g.proto, start: g.start, end: g.end, windows: g.windows, sent: g.sent, lost: g.lost,
      lossRatio: g.sent > 0 ? g.lost / g.sent : null };
    for (const [q, x] of [['p50', 0.5], ['p90', 0.9], ['p99', 0.99], ['p999', 0.999]]) out[q] = quantile(g.masses, x);
    return out;
  }).sort((a, b) => a.end - b.end || a.proto.localeCompare(b.proto));
}

// fmtStep names an interval length ("10 s", "2 min").
export function fmtStep(ms) {
  return ms < 60e3 ? ms / 1000 + ' s' : ms / 60e3 + ' min';
}
