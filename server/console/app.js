// The Drover console: the runs list and a live page per run, from the same JSON API and
// Server-Sent Events the CLI uses. No framework, no build step; DOM built with textContent only.
'use strict';

const state = { csrf: null, view: null, stream: null, tick: null, refresh: null, record: null };

function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c ?? '')));
  return e;
}

async function api(path, options) {
  const opts = Object.assign({ credentials: 'same-origin', headers: {} }, options || {});
  if (opts.method && opts.method !== 'GET' && state.csrf) opts.headers['x-csrf-token'] = state.csrf;
  const r = await fetch(path, opts);
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw Object.assign(new Error(body.message || r.statusText), { status: r.status, code: body.code });
  return body;
}

function setLive(text, cls) {
  const l = $('live');
  l.textContent = text;
  l.className = 'live ' + (cls || '');
}

function show(id) {
  for (const s of ['signin', 'runs', 'run']) $(s).hidden = s !== id;
}

function duration(ms) {
  const neg = ms < 0; ms = Math.abs(ms);
  const s = Math.floor(ms / 1000), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  const t = (h ? h + ':' + String(m).padStart(2, '0') : String(m)) + ':' + String(sec).padStart(2, '0');
  return (neg ? '−' : '') + t;
}

function closeStream() {
  if (state.stream) { state.stream.close(); state.stream = null; }
  if (state.tick) { clearInterval(state.tick); state.tick = null; }
}

/// Calls `f` at most every 250 ms while events arrive.
function soon(f) {
  if (state.refresh) return;
  state.refresh = setTimeout(() => { state.refresh = null; f(); }, 250);
}

function stream(path, onEvent) {
  closeStream();
  const es = new EventSource(path);
  es.addEventListener('open', () => setLive('live', 'on'));
  es.addEventListener('error', () => setLive(es.readyState === EventSource.CLOSED ? 'stopped' : 'reconnecting…', 'off'));
  es.addEventListener('transition', onEvent);
  es.addEventListener('end', () => { onEvent(); setLive('run over', ''); es.close(); });
  state.stream = es;
}

async function showRuns() {
  show('runs');
  const body = $('runs-body');
  const load = async () => {
    const { runs } = await api('/api/v1/runs');
    body.replaceChildren(...runs.map(r => el('tr', {},
      el('td', {}, el('a', { href: '#/runs/' + encodeURIComponent(r.run_id) }, r.run_id)),
      el('td', {}, r.runbook),
      el('td', {}, r.mode),
      el('td', { class: 'state state-' + r.status }, r.status),
      el('td', {}, r.started),
      el('td', {}, r.outcome || '—'))));
    if (!runs.length) body.replaceChildren(el('tr', {}, el('td', { colspan: '6' }, 'No runs yet.')));
  };
  await load();
  stream('/api/v1/events', () => soon(load));
}

function objective(box, valueId, targetId, o, since, over) {
  const target = o.target_ms;
  let text, cls = '';
  if (o.achieved_ms != null) {
    text = duration(o.achieved_ms);
    cls = o.met ? 'met' : 'over';
  } else if (since != null) {
    const elapsed = Date.now() - since;
    text = duration(elapsed);
    if (over && elapsed > target) cls = 'over';
  } else {
    text = '—';
  }
  $(valueId).textContent = text;
  $(targetId).textContent = 'target ' + duration(target) + (o.achieved_ms != null ? (o.met ? ' · met' : ' · missed') :
    (since != null && over ? ' · ' + (Date.now() - since > target ? 'over by ' + duration(Date.now() - since - target) : duration(target - (Date.now() - since)) + ' left') : ''));
  $(box).className = 'clock ' + cls;
}

function renderRun(v) {
  const r = v.record;
  state.record = r;
  $('run-title').replaceChildren(r.runbook + ' ', r.mode === 'simulated' ? el('span', { class: 'sim' }, 'SIMULATED') : '');
  $('run-meta').textContent = `run ${r.run_id} · ${r.mode} · started by ${r.initiator} · ${v.status}` +
    (v.driven_by ? ` · driven by ${v.driven_by}` : '');
  const waiting = new Map((r.waiting_on || []).map(w => [w.step, w.text]));
  $('steps-body').replaceChildren(...r.steps.map(s => el('tr', {},
    el('td', {}, s.id),
    el('td', { class: 'state state-' + s.state }, s.state.replace('_', ' ')),
    el('td', {}, s.error || waiting.get(s.id) || ''))));
  const ms = Object.entries(r.milestones || {});
  $('milestones').replaceChildren(...(ms.length ? ms.map(([k, t]) => el('li', {}, `${k} reached ${t}`)) : [el('li', {}, 'none reached yet')]));
  tickClocks();
}

function tickClocks() {
  const r = state.record;
  if (!r) return;
  const live = !r.outcome;
  const since = Date.parse(r.declared_at);
  objective('rto-box', 'rto', 'rto-target', r.rto, live ? since : null, true);
  objective('rpo-box', 'rpo', 'rpo-target', r.rpo, null, false);
}

async function showRun(id) {
  show('run');
  state.record = null;
  const load = async () => renderRun(await api('/api/v1/runs/' + encodeURIComponent(id)));
  try {
    await load();
  } catch (e) {
    $('run-title').textContent = e.status === 404 ? 'No such run' : 'Cannot show this run';
    $('run-meta').textContent = e.message;
    return;
  }
  stream('/api/v1/runs/' + encodeURIComponent(state.record.run_id) + '/events', () => soon(() => load().catch(() => {})));
  state.tick = setInterval(tickClocks, 1000);
}

async function route() {
  closeStream();
  const m = location.hash.match(/^#\/runs\/(.+)$/);
  try {
    if (m) await showRun(decodeURIComponent(m[1])); else await showRuns();
  } catch (e) {
    if (e.status === 401) { show('signin'); setLive('signed out', 'off'); }
  }
  $('main').focus({ preventScroll: true });
}

async function start() {
  const who = await fetch('/console/session', { credentials: 'same-origin' }).then(r => r.json()).catch(() => ({}));
  if (!who.operator) {
    show('signin');
    setLive('signed out', 'off');
    return;
  }
  state.csrf = who.csrf;
  $('who').textContent = 'signed in as ' + who.operator;
  window.addEventListener('hashchange', route);
  await route();
}

document.addEventListener('DOMContentLoaded', start);
