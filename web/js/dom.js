// dom.js builds DOM nodes from code, never from HTML strings: no injection
// from names the server sends, and nothing the CSP would block.

const SVG_NS = 'http://www.w3.org/2000/svg';

function build(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.setAttribute('class', v);
    else if (k === 'text') el.textContent = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'value' && 'value' in el) el.value = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function h(tag, attrs, ...children) { return build(document.createElement(tag), attrs, children); }
export function s(tag, attrs, ...children) { return build(document.createElementNS(SVG_NS, tag), attrs, children); }

export function clear(el) { while (el.firstChild) el.firstChild.remove(); return el; }

// fill replaces el's children; null, undefined and false are skipped
// (Element.append would print them as text).
export function fill(el, ...children) {
  clear(el);
  for (const c of children.flat(Infinity)) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

// ---- keyboard focus across re-renders ------------------------------------

const FOCUSABLE = 'a[href], button, input, select, textarea, [tabindex]';

// focusKey names an element by what it is for, so that its twin in a
// re-rendered page can be found: its id, else its tag with the attributes
// that say where it leads or what it does (href, name, aria-label, data-*),
// else its tag and text.
export function focusKey(el) {
  if (el.id) return '#' + el.id;
  const data = JSON.stringify({ ...el.dataset });
  // Data attributes name what an element stands for; an aria-label may
  // describe its state (a topology node's current estimate), which a
  // refresh changes, so it counts only when there is no data attribute.
  const attrs = ['href', 'name', 'type'].map(a => el.getAttribute(a) || '');
  if (data === '{}') attrs.push(el.getAttribute('aria-label') || '');
  const key = [el.tagName, ...attrs, data].join('|');
  return attrs.some(Boolean) || data !== '{}' ? key : key + '|' + el.textContent.trim();
}

function twins(root, key) {
  if (key[0] === '#') {
    const el = document.getElementById(key.slice(1));
    return el && root.contains(el) ? [el] : [];
  }
  return [...root.querySelectorAll(FOCUSABLE)].filter(e => focusKey(e) === key);
}

// keepFocus runs render, which may rebuild root's content, and gives the
// keyboard focus back to the twin of the element that had it. Pages
// rebuild their DOM on every poll (simpler than patching it in place);
// without this a keyboard user would land on <body> every 10 s. Focus is
// only given back if nothing else took it meanwhile, and without scrolling.
export async function keepFocus(root, render) {
  const el = document.activeElement;
  if (!el || el === root || !root.contains(el)) return render();
  const key = focusKey(el);
  const nth = Math.max(0, twins(root, key).indexOf(el));
  try {
    return await render();
  } finally {
    const now = document.activeElement;
    if (!el.isConnected && (!now || now === document.body)) {
      const t = twins(root, key);
      t[Math.min(nth, t.length - 1)]?.focus({ preventScroll: true });
    }
  }
}

// stateMessage renders an empty or error state in words.
export function stateMessage(err, emptyText) {
  if (!err) return h('p', { class: 'empty' }, emptyText);
  const kind = err.kind || 'error';
  const base = err.message || String(err);
  const extra = kind === 'unavailable' ? ' It will appear here when the server provides it.' : '';
  return h('p', { class: kind === 'unavailable' ? 'empty' : 'error-state', dataset: { state: kind } }, base + extra);
}

// ---- formatting ----------------------------------------------------------

export function fmtSeconds(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  const a = Math.abs(v);
  if (a >= 1) return v.toFixed(2) + ' s';
  if (a >= 1e-3) return (v * 1e3).toFixed(a >= 0.1 ? 0 : 2) + ' ms';
  return (v * 1e6).toFixed(0) + ' µs';
}
export function fmtRatio(v, digits = 3) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  if (v === 0) return '0 %';
  const p = v * 100, a = Math.abs(p); // negative: an overspent error budget
  return (a >= 10 ? p.toFixed(1) : a >= 0.01 ? p.toPrecision(digits) : p.toExponential(1)) + ' %';
}
// fmtNines: a ratio near 1 as a percentage with the decimals that tell it
// from 100 % (an SLI of 99.968 %, a budget of 99.96 % left, not "100.0 %").
export function fmtNines(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  const p = v * 100, d = Math.min(4, Math.max(1, Math.ceil(-Math.log10(Math.abs(100 - p) || 1)) + 1));
  return p.toFixed(d).replace(/\.?0+$/, '') + ' %';
}
export function fmtNum(v, digits = 2) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  return Number.isInteger(v) ? String(v) : v.toFixed(digits);
}
export function fmtTime(d) {
  if (!d) return '–';
  return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}
// fmtWhen is a time of day (UTC, like every time the UI shows), with its
// date in front when it is not today's.
export function fmtWhen(d, now = new Date()) {
  if (!d) return '–';
  const iso = d.toISOString();
  const day = iso.slice(0, 10) === now.toISOString().slice(0, 10) ? '' : iso.slice(0, 10) + ' ';
  return day + iso.slice(11, 19) + 'Z';
}
export function fmtAgo(d, now = new Date()) {
  if (!d) return 'never';
  const s = Math.round((now - d) / 1000);
  if (s < 0) return 'just now';
  if (s < 90) return s + ' s ago';
  if (s < 5400) return Math.round(s / 60) + ' min ago';
  return Math.round(s / 3600) + ' h ago';
}
