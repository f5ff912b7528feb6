// heatmap.js draws a rows × cols matrix of measurements on a canvas.
//
// Small matrices are drawn cell by cell with gaps and labels. Large ones
// (Pingmesh-sized: 1,000 × 1,000 racks and more) are written into an
// ImageData one pixel per cell through a Uint32Array view and scaled with
// smoothing off; when there are more cells than pixels, each pixel shows the
// WORST level of the cells it covers, so one failing ToR row never vanishes
// in the downsampling.

import { levelNames, rgba32, NODATA, GOOD, WARN, BAD } from './scale.js';

const LABEL_MAX = 64; // beyond this many rows/cols, names are for the tooltip only

export class Heatmap {
  constructor(canvas, { maxPx = 720, onHover, onActivate } = {}) {
    this.canvas = canvas;
    this.maxPx = maxPx;
    this.onHover = onHover || (() => {});
    this.onActivate = onActivate || (() => {});
    this.rows = []; this.cols = [];
    this.values = new Float64Array(0);
    this.levels = new Uint8Array(0);
    this.cursor = null; // [r, c] of the keyboard cursor
    this.base = null; // offscreen canvas with the grid drawn, for cheap cursor moves
    canvas.tabIndex = 0;
    canvas.setAttribute('role', 'grid');
    canvas.addEventListener('mousemove', e => this._pointer(e, false));
    canvas.addEventListener('mouseleave', () => this.onHover(null));
    canvas.addEventListener('click', e => this._pointer(e, true));
    canvas.addEventListener('keydown', e => this._key(e));
    canvas.addEventListener('focus', () => { if (!this.cursor && this.rows.length) this.moveCursor(0, 0); });
    canvas.addEventListener('blur', () => this.onHover(null));
  }

  // setData replaces the matrix. values: Float64Array of rows*cols, row
  // major, NaN where there is no data. colors: [nodata, good, warn, bad].
  setData({ rows, cols, values, warn, bad, colors }) {
    this.rows = rows; this.cols = cols; this.values = values;
    this.warn = warn; this.bad = bad; this.colors = colors;
    if (this.cursor && (this.cursor[0] >= rows.length || this.cursor[1] >= cols.length)) this.cursor = null;
  }

  // render draws everything and returns the milliseconds it took.
  render() {
    const t0 = performance.now();
    const n = this.rows.length, m = this.cols.length;
    const levels = this.levels.length === n * m ? this.levels : new Uint8Array(n * m);
    const counts = [0, 0, 0, 0];
    const v = this.values, warn = this.warn, bad = this.bad;
    // Inline of scale.level: this loop runs once per cell (6.25 M at 2,500 racks).
    for (let i = 0, len = n * m; i < len; i++) {
      const x = v[i];
      const l = x !== x ? NODATA : x > bad ? BAD : x >= warn ? WARN : GOOD;
      levels[i] = l;
      counts[l]++;
    }
    this.levels = levels;
    this.counts = counts;
    this._layout(n, m);
    const g = this.geom;
    const base = this.base && this.base.width === g.width && this.base.height === g.height
      ? this.base : new OffscreenCanvas(g.width, g.height);
    const ctx = base.getContext('2d');
    ctx.clearRect(0, 0, g.width, g.height);
    if (g.block === 1 && g.cell >= 4 && n * m <= 4096) this._drawCells(ctx, n, m);
    else this._drawImage(ctx, n, m);
    if (g.labels) this._drawLabels(ctx);
    this.base = base;
    this._blit();
    const ms = performance.now() - t0;
    const d = this.canvas.dataset;
    d.rows = n; d.cols = m; d.cells = n * m;
    d.red = counts[BAD]; d.nodata = counts[NODATA];
    d.originX = g.left; d.originY = g.top; d.gridW = g.gridW; d.gridH = g.gridH;
    d.renderMs = ms.toFixed(2);
    this.canvas.setAttribute('aria-rowcount', n);
    this.canvas.setAttribute('aria-colcount', m);
    return ms;
  }

  _layout(n, m) {
    const big = Math.max(n, m, 1);
    const labels = n <= LABEL_MAX && m <= LABEL_MAX;
    // Column labels lean right at 60°: keep room for the last ones.
    const left = labels ? 118 : 0, top = labels ? 84 : 0, right = labels ? 44 : 0;
    const room = this.maxPx - (labels ? Math.max(left + right, top) : 0);
    let cell = Math.floor(room / big), block = 1;
    if (cell < 1) { block = Math.ceil(big / room); cell = 1; }
    cell = Math.min(cell, 48);
    const gridW = block === 1 ? m * cell : Math.ceil(m / block);
    const gridH = block === 1 ? n * cell : Math.ceil(n / block);
    this.geom = { left, top, cell, block, gridW, gridH, labels, width: left + gridW + right, height: top + gridH };
    if (this.canvas.width !== this.geom.width) this.canvas.width = this.geom.width;
    if (this.canvas.height !== this.geom.height) this.canvas.height = this.geom.height;
  }

  _drawCells(ctx, n, m) {
    const { left, top, cell } = this.geom;
    const gap = cell >= 6 ? 1 : 0;
    for (let l = 0; l < 4; l++) {
      ctx.fillStyle = this.colors[l];
      for (let r = 0; r < n; r++) {
        const row = r * m;
        for (let c = 0; c < m; c++) {
          if (this.levels[row + c] === l) ctx.fillRect(left + c * cell, top + r * cell, cell - gap, cell - gap);
        }
      }
    }
  }

  _drawImage(ctx, n, m) {
    const { left, top, block, gridW, gridH } = this.geom;
    const w = block === 1 ? m : gridW, hgt = block === 1 ? n : gridH;
    const img = new ImageData(w, hgt);
    const px = new Uint32Array(img.data.buffer);
    const pal = this.colors.map(rgba32);
    const lv = this.levels;
    if (block === 1) {
      for (let i = 0; i < n * m; i++) px[i] = pal[lv[i]];
    } else {
      // Worst level per block; "no data" only if the whole block has none.
      const worst = new Uint8Array(w * hgt);
      const colBlock = new Int32Array(m);
      for (let c = 0; c < m; c++) colBlock[c] = (c / block) | 0;
      for (let r = 0; r < n; r++) {
        const br = ((r / block) | 0) * w, row = r * m;
        for (let c = 0; c < m; c++) {
          const l = lv[row + c], b = br + colBlock[c];
          if (l > worst[b]) worst[b] = l;
        }
      }
      for (let i = 0; i < worst.length; i++) px[i] = pal[worst[i]];
    }
    if (block === 1 && this.geom.cell > 1) {
      const tmp = new OffscreenCanvas(w, hgt);
      tmp.getContext('2d').putImageData(img, 0, 0);
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(tmp, left, top, gridW, gridH);
    } else {
      ctx.putImageData(img, left, top);
    }
  }

  _drawLabels(ctx) {
    const { left, top, cell } = this.geom;
    const style = getComputedStyle(this.canvas);
    ctx.fillStyle = style.color || '#000';
    ctx.font = '11px system-ui, sans-serif';
    const short = shortener(this.rows.concat(this.cols));
    ctx.textAlign = 'right'; ctx.textBaseline = 'middle';
    this.rows.forEach((name, r) => ctx.fillText(short(name), left - 4, top + r * cell + cell / 2, left - 6));
    ctx.save();
    ctx.textAlign = 'left';
    this.cols.forEach((name, c) => {
      ctx.save();
      ctx.translate(left + c * cell + cell / 2, top - 4);
      ctx.rotate(-Math.PI / 3);
      ctx.fillText(short(name), 0, 0, top * 1.1);
      ctx.restore();
    });
    ctx.restore();
  }

  _blit() {
    const ctx = this.canvas.getContext('2d');
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    ctx.drawImage(this.base, 0, 0);
    if (this.cursor) {
      const [x, y, w, hgt] = this.cellRect(...this.cursor);
      ctx.lineWidth = 2;
      ctx.strokeStyle = getComputedStyle(this.canvas).getPropertyValue('--focus') || '#c25400';
      ctx.strokeRect(x - 1, y - 1, Math.max(w, 2) + 2, Math.max(hgt, 2) + 2);
    }
  }

  // cellRect is the canvas rectangle of cell (r, c).
  cellRect(r, c) {
    const g = this.geom, n = this.rows.length, m = this.cols.length;
    const cw = g.gridW / m, ch = g.gridH / n;
    return [g.left + c * cw, g.top + r * ch, cw, ch];
  }

  cellAt(x, y) {
    const g = this.geom;
    if (!g) return null;
    const c = Math.floor((x - g.left) * this.cols.length / g.gridW);
    const r = Math.floor((y - g.top) * this.rows.length / g.gridH);
    if (r < 0 || c < 0 || r >= this.rows.length || c >= this.cols.length) return null;
    return [r, c];
  }

  cellInfo(r, c) {
    const i = r * this.cols.length + c;
    return { r, c, src: this.rows[r], dst: this.cols[c], value: this.values[i], level: levelNames[this.levels[i]] };
  }

  moveCursor(r, c) {
    r = Math.max(0, Math.min(this.rows.length - 1, r));
    c = Math.max(0, Math.min(this.cols.length - 1, c));
    this.cursor = [r, c];
    this._blit();
    const [x, y, w, hgt] = this.cellRect(r, c);
    this.onHover(this.cellInfo(r, c), { x: x + w, y: y + hgt });
  }

  _pointer(e, click) {
    const rect = this.canvas.getBoundingClientRect();
    const sx = this.canvas.width / rect.width, sy = this.canvas.height / rect.height;
    const x = (e.clientX - rect.left) * sx, y = (e.clientY - rect.top) * sy;
    const cell = this.cellAt(x, y);
    if (!cell) { this.onHover(null); return; }
    const info = this.cellInfo(...cell);
    if (click) this.onActivate(info);
    else this.onHover(info, { x: x + 12, y: y + 12 });
  }

  _key(e) {
    if (!this.rows.length) return;
    const [r, c] = this.cursor || [0, 0];
    const step = e.shiftKey ? 10 : 1;
    const moves = { ArrowUp: [-step, 0], ArrowDown: [step, 0], ArrowLeft: [0, -step], ArrowRight: [0, step] };
    if (moves[e.key]) {
      e.preventDefault();
      this.moveCursor(r + moves[e.key][0], c + moves[e.key][1]);
    } else if (e.key === 'Home') {
      e.preventDefault(); this.moveCursor(r, 0);
    } else if (e.key === 'End') {
      e.preventDefault(); this.moveCursor(r, this.cols.length - 1);
    } else if ((e.key === 'Enter' || e.key === ' ') && this.cursor) {
      e.preventDefault(); this.onActivate(this.cellInfo(r, c));
    }
  }
}

// shortener drops the prefix all names share ("dc1-pod2-rack3" and
// "dc1-pod2-rack7" become "rack3" and "rack7").
export function shortener(names) {
  if (names.length < 2) return x => x;
  let p = names[0];
  for (const n of names) while (p && !n.startsWith(p)) p = p.slice(0, -1);
  const cut = p.lastIndexOf('-') + 1;
  return cut > 0 ? x => x.slice(cut) : x => x;
}
