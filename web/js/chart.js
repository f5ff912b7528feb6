// chart.js: a small SVG time-series chart (no library: a line chart is
// fifty lines, a charting library is hundreds of kilobytes).

import { h, s } from './dom.js';

export const seriesColors = ['#1f77b4', '#e66101', '#2ca02c', '#9467bd', '#8c564b', '#d62728', '#17becf'];

// timeTicks formats the time axis (UTC): times of day while the span stays
// within one day, dates with them once it crosses midnight, so a week's
// axis does not read "15:17:50, 03:17:50, ..." with the days left out.
export function timeTicks(t0, t1) {
  const day = t => new Date(t).toISOString().slice(0, 10);
  if (day(t0) === day(t1)) return t => new Date(t).toISOString().slice(11, 19) + 'Z';
  return t => new Date(t).toISOString().slice(5, 16).replace('T', ' ') + 'Z';
}

// lineChart returns a figure with an SVG chart and a legend.
// series: [{name, points: [[ms, value|null], ...]}]; opts: {format, title,
// thresholds: [{value, label}], yMin}.
export function lineChart(series, { format = String, title = '', thresholds = [], yMin, height = 200 } = {}) {
  const W = 1000, H = height, L = 64, R = 10, T = 8, B = 22;
  const all = series.flatMap(x => x.points).filter(p => p[1] !== null && Number.isFinite(p[1]));
  // data-points: how many samples are drawn (0: the chart says so in words).
  const fig = h('figure', { class: 'chart-fig', dataset: { points: all.length } });
  if (title) fig.append(h('figcaption', { class: 'axis-label' }, title));
  if (!all.length) {
    fig.append(h('p', { class: 'empty' }, 'No data in this time range yet.'));
    return fig;
  }
  let t0 = Math.min(...all.map(p => p[0])), t1 = Math.max(...all.map(p => p[0]));
  if (t1 === t0) { t0 -= 30e3; t1 += 30e3; }
  let y0 = yMin ?? Math.min(0, ...all.map(p => p[1]));
  let y1 = Math.max(...all.map(p => p[1]), ...thresholds.map(x => x.value));
  if (y1 === y0) y1 = y0 + 1;
  y1 *= 1.05;
  const x = t => L + (t - t0) / (t1 - t0) * (W - L - R);
  const y = v => T + (1 - (v - y0) / (y1 - y0)) * (H - T - B);
  const svg = s('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title || 'chart' });
  svg.append(s('line', { class: 'axis', x1: L, y1: H - B, x2: W - R, y2: H - B }));
  svg.append(s('line', { class: 'axis', x1: L, y1: T, x2: L, y2: H - B }));
  for (let i = 0; i <= 4; i++) {
    const v = y0 + (y1 - y0) * i / 4;
    svg.append(s('text', { x: L - 4, y: y(v) + 3, 'text-anchor': 'end' }, format(v)));
    svg.append(s('line', { class: 'axis', x1: L, y1: y(v), x2: W - R, y2: y(v), 'stroke-opacity': 0.3 }));
  }
  const tick = timeTicks(t0, t1);
  for (let i = 0; i <= 4; i++) {
    const t = t0 + (t1 - t0) * i / 4;
    svg.append(s('text', { x: x(t), y: H - 6, 'text-anchor': i === 0 ? 'start' : i === 4 ? 'end' : 'middle' }, tick(t)));
  }
  for (const th of thresholds) {
    svg.append(s('line', { class: 'threshold', x1: L, y1: y(th.value), x2: W - R, y2: y(th.value) }));
  }
  const legend = h('div', { class: 'chart-legend' });
  series.forEach((ser, i) => {
    const color = ser.color || seriesColors[i % seriesColors.length];
    let d = '', pen = false;
    const pts = ser.points;
    const ok = i => i >= 0 && i < pts.length && pts[i][1] !== null && Number.isFinite(pts[i][1]);
    pts.forEach(([t, v], i) => {
      if (!ok(i)) { pen = false; return; }
      d += (pen ? 'L' : 'M') + x(t).toFixed(1) + ' ' + y(v).toFixed(1);
      pen = true;
      // A sample with no neighbour draws no line: mark it with a dot (a
      // new series, or one with gaps, would otherwise look empty).
      if (!ok(i - 1) && !ok(i + 1)) svg.append(s('circle', { cx: x(t).toFixed(1), cy: y(v).toFixed(1), r: 4, fill: color }, s('title', {}, ser.name)));
    });
    svg.append(s('path', { d, fill: 'none', stroke: color, 'stroke-width': 1.6, 'vector-effect': 'non-scaling-stroke' },
      s('title', {}, ser.name)));
    legend.append(h('span', {}, s('svg', { width: 14, height: 4, 'aria-hidden': 'true' }, s('rect', { width: 14, height: 4, fill: color })), ' ', ser.name));
  });
  fig.append(svg, legend);
  return fig;
}
