// Drives web/js/heatmap.js with synthetic Pingmesh-like data: mostly
// healthy rack pairs, a few warnings, one bad ToR (a red row and column)
// and a sprinkle of pairs without data.
import { Heatmap } from '/js/heatmap.js';
import { palettes, metrics } from '/js/scale.js';

let hm;

window.benchSetup = n => {
  const names = Array.from({ length: n }, (_, i) => 'dc1-pod' + (1 + Math.floor(i / 20)) + '-rack' + (1 + i % 20));
  const v = new Float64Array(n * n);
  let seed = 42;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 4294967296);
  const bad = Math.floor(n / 3);
  for (let r = 0; r < n; r++) {
    for (let c = 0; c < n; c++) {
      const x = rnd();
      v[r * n + c] = x < 0.002 ? NaN : r === bad || c === bad ? 0.007 : x < 0.01 ? 0.0045 : 0.0005 + x * 0.002;
    }
  }
  hm = new Heatmap(document.getElementById('heatmap'), { maxPx: 720 });
  const m = metrics.p99;
  hm.setData({ rows: names, cols: names, values: v, warn: m.warn, bad: m.bad, colors: palettes.pingmesh.colors });
  return n * n;
};

// benchRender renders once; render is the synchronous draw, frame the time
// until the next animation frame (the browser has painted it).
window.benchRender = () => new Promise(resolve => {
  const t0 = performance.now();
  const render = hm.render();
  requestAnimationFrame(() => resolve({ render, frame: performance.now() - t0 }));
});
