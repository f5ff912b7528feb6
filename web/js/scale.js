// scale.js: the heatmap's metrics, thresholds and colour scales. Levels are
// discrete like Pingmesh's (good / warning / bad) so a glance is enough;
// "no data" is its own colour, never mistaken for good.

export const NODATA = 0, GOOD = 1, WARN = 2, BAD = 3;
export const levelNames = ['nodata', 'green', 'yellow', 'red'];

// Default thresholds: Pingmesh's for p99 (green < 4 ms, yellow 4–5 ms,
// red > 5 ms); the others scaled to what those quantiles look like in a
// healthy intra-DC fabric. Loss: yellow from 0.1 %, red from 1 %.
export const metrics = {
  // health: loss and p99 together, each scaled so that its own warn
  // threshold is 1 and its bad threshold 2; the worse of the two decides.
  // A pair whose probes are all lost is unreachable: loss 100 %, the worst
  // colour. Grey is left for pairs nobody probed.
  health: { label: 'loss + p99', kind: 'health', warn: 1, bad: 2 },
  p50: { label: 'p50 latency', kind: 'latency', quantile: '0.5', field: 'p50', warn: 0.001, bad: 0.002 },
  p99: { label: 'p99 latency', kind: 'latency', quantile: '0.99', field: 'p99', warn: 0.004, bad: 0.005 },
  p999: { label: 'p99.9 latency', kind: 'latency', quantile: '0.999', field: 'p999', warn: 0.008, bad: 0.010 },
  loss: { label: 'loss ratio', kind: 'loss', field: 'lossRatio', warn: 0.001, bad: 0.01 },
};

// Palettes as [nodata, good, warn, bad] CSS colours. blue-orange keeps the
// three levels apart for red-green colour blindness (deuteranopia and
// protanopia) and in greyscale.
export const palettes = {
  pingmesh: { label: 'green / yellow / red', colors: ['#8e969f', '#2e9e4f', '#f2c230', '#d7301f'] },
  blueorange: { label: 'blue / orange (colour-blind safe)', colors: ['#8e969f', '#2c7bb6', '#fdae61', '#d95f0e'] },
};

const PALETTE_KEY = 'meshlens.palette';

// preferredPalette is the palette chosen last on this browser (the
// heatmap's "Colours"), pingmesh by default.
export function preferredPalette() {
  let k = null;
  try { k = localStorage.getItem(PALETTE_KEY); } catch { /* storage off: the default */ }
  return palettes[k] ? k : 'pingmesh';
}

// applyPalette makes k the palette of every page: the heatmap's canvas,
// and the good / warning / bad colours of the topology, tables and badges
// (CSS variables switched by <html data-palette>). remember keeps it for
// the next visits.
export function applyPalette(k, { remember = false } = {}) {
  if (!palettes[k]) k = 'pingmesh';
  if (k === 'pingmesh') delete document.documentElement.dataset.palette;
  else document.documentElement.dataset.palette = k;
  if (remember) {
    try { localStorage.setItem(PALETTE_KEY, k); } catch { /* storage off: this page only */ }
  }
}

// DEFAULT_METRIC opens the heatmap: a lossy pair with fast replies and a
// slow pair without loss both show.
export const DEFAULT_METRIC = 'health';

// severity scales v so that warn maps to 1 and bad to 2 (above bad it
// keeps growing, so the worst pairs still sort first); null without data.
export function severity(v, warn, bad) {
  if (v === null || v === undefined || !Number.isFinite(v)) return null;
  if (v < warn) return warn > 0 ? v / warn : 0;
  if (v <= bad) return bad > warn ? 1 + (v - warn) / (bad - warn) : 1;
  return 2 + (bad > 0 ? (v - bad) / bad : 1);
}

// health is the pair's combined severity from its loss ratio and p99
// latency (either may be null), or null when neither was measured.
export function health(loss, p99) {
  const l = severity(loss, metrics.loss.warn, metrics.loss.bad);
  const p = severity(p99, metrics.p99.warn, metrics.p99.bad);
  if (l === null && p === null) return null;
  return Math.max(l ?? 0, p ?? 0);
}

export function level(v, warn, bad) {
  if (v === null || v === undefined || Number.isNaN(v)) return NODATA;
  if (v > bad) return BAD;
  if (v >= warn) return WARN;
  return GOOD;
}

// rgba32 packs a #rrggbb colour for a little-endian Uint32Array view of
// ImageData (ABGR in memory order).
export function rgba32(hex) {
  const n = parseInt(hex.slice(1), 16);
  const r = (n >> 16) & 255, g = (n >> 8) & 255, b = n & 255;
  return ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0;
}
