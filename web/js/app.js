// app.js: the shell. Hash routing (#/page?key=value) so every view is a deep
// link and the server only ever serves index.html; token login; one poll
// loop at the aggregation window's cadence that refreshes the visible page.
// A refresh keeps the keyboard focus where it was (dom.keepFocus), and
// main's data-refreshed counts the refreshes that landed, so scripts and
// tests can tell when one has.

import * as api from './api.js';
import { clear, keepFocus } from './dom.js';
import { applyPalette, preferredPalette } from './scale.js';
import overview from './pages/overview.js';
import heatmap from './pages/heatmap.js';
import pair from './pages/pair.js';
import topology from './pages/topology.js';
import slos from './pages/slos.js';
import incidents from './pages/incidents.js';
import agents from './pages/agents.js';

const pages = { overview, heatmap, pair, topology, slos, incidents, agents };
export const WINDOW_MS = 10_000; // the aggregator's window: data changes no faster

let current = null; // { name, page, params }
let pollTimer = null;
let polling = false;
let generation = 0;

export function parseHash(hash = location.hash) {
  const m = hash.replace(/^#\/?/, '').match(/^([^?]*)\??(.*)$/);
  const name = pages[m[1]] ? m[1] : 'overview';
  return { name, params: new URLSearchParams(m[2]) };
}

// go navigates; params with empty values are dropped so links stay short.
export function go(name, params = {}, { replace = false } = {}) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') p.set(k, v);
  const q = p.toString();
  const hash = '#/' + name + (q ? '?' + q : '');
  if (replace) { history.replaceState(null, '', hash); route(); } else location.hash = hash;
}

export function banner(text, kind = 'info') {
  const b = document.getElementById('banner');
  b.textContent = text || '';
  b.className = 'banner ' + kind;
  b.hidden = !text;
}

// reportError is what pages call with API errors that concern the whole app.
let errorReported = false;

export function reportError(err) {
  if (!err) return;
  if (err.kind === 'unauthorized' || err.kind === 'network') errorReported = true;
  if (err.kind === 'unauthorized') {
    banner(err.message, 'error');
    showLogin(true, true);
  } else if (err.kind === 'network') {
    banner(err.message + ' Retrying every ' + WINDOW_MS / 1000 + ' s.', 'error');
  }
}

// showLogin shows the token form when there is no token, or when the
// server refused the one we have (force).
function showLogin(focus, force = false) {
  const form = document.getElementById('login-form');
  form.hidden = !!api.token() && !force;
  document.getElementById('logout').hidden = !api.token();
  document.getElementById('whoami').textContent = api.token() ? (force ? 'token refused' : 'signed in with a token') : 'anonymous viewer';
  if (focus && !form.hidden) document.getElementById('token-input').focus();
}

function ctxFor(params) {
  return { params, go, reportError, windowMs: WINDOW_MS, signal: undefined };
}

async function route() {
  const { name, params } = parseHash();
  const gen = ++generation;
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.page === name) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  const main = document.getElementById('main');
  if (!current || current.name !== name) {
    if (current && current.page.unmount) current.page.unmount();
    clear(main);
    current = { name, page: pages[name], params };
    document.title = 'meshlens · ' + name;
    await runStep(() => current.page.mount(main, ctxFor(params)), gen);
    // The new page takes the focus (screen readers announce it), unless
    // the user already moved into its content while it was loading.
    if (!main.contains(document.activeElement)) main.focus({ preventScroll: true });
  } else {
    current.params = params;
    await runStep(() => keepFocus(main, () => current.page.update(ctxFor(params), { poll: false })), gen);
  }
}

async function runStep(fn, gen) {
  errorReported = false;
  try {
    await fn();
    if (gen === generation && !errorReported) {
      document.getElementById('status-line').textContent = 'Updated ' + new Date().toISOString().slice(11, 19) + 'Z';
      const b = document.getElementById('banner');
      if (b.classList.contains('error') && !b.dataset.sticky) banner('');
    }
  } catch (err) {
    if (err && err.name === 'AbortError') return;
    reportError(err);
    console.error('meshlens:', err);
  }
}

// poll refreshes the visible page: from the timer every window, and at
// once when a hidden tab (which polls skip) comes back into view. One at a
// time: a refresh still in flight is as fresh as a new one.
async function poll() {
  clearTimeout(pollTimer);
  if (polling) return;
  polling = true;
  try {
    if (current && !document.hidden) {
      const gen = generation;
      const main = document.getElementById('main');
      await runStep(() => keepFocus(main, () => current.page.update(ctxFor(current.params), { poll: true })), gen);
      main.dataset.refreshed = +(main.dataset.refreshed || 0) + 1;
    }
  } finally {
    polling = false;
    pollTimer = setTimeout(poll, WINDOW_MS);
  }
}

function init() {
  applyPalette(preferredPalette());
  const form = document.getElementById('login-form');
  form.addEventListener('submit', e => {
    e.preventDefault();
    const input = document.getElementById('token-input');
    api.setToken(input.value.trim());
    input.value = '';
    showLogin(false);
    banner('');
    current = null;
    route();
  });
  document.getElementById('logout').addEventListener('click', () => {
    api.setToken('');
    showLogin(false);
    current = null;
    route();
  });
  window.addEventListener('hashchange', route);
  document.addEventListener('visibilitychange', () => { if (!document.hidden) poll(); });
  showLogin(false);
  route();
  clearTimeout(pollTimer);
  pollTimer = setTimeout(poll, WINDOW_MS);
}

init();
