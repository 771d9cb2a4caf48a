// The Drover console: the runs list and a live page per run, from the same JSON API and
// Server-Sent Events the CLI uses. No framework, no build step; DOM built with textContent only.
'use strict';

const state = { csrf: null, operator: null, stream: null, tick: null, refresh: null, record: null, view: null, busy: false, shown: {} };

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
  if (id !== 'run') $('sim-banner').hidden = true;
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
  if (state.retry) { clearTimeout(state.retry); state.retry = null; }
}

/// Calls `f` at most every 250 ms while events arrive.
function soon(f) {
  if (state.refresh) return;
  state.refresh = setTimeout(() => { state.refresh = null; Promise.resolve().then(f).catch(() => {}); }, 250);
}

/// Follows an event stream. EventSource reconnects by itself (with Last-Event-ID) while the
/// server is unreachable; a stream it gives up on (an error answer, e.g. during a restart behind
/// a proxy) is opened again after a pause, and `onEvent` catches the page up.
function stream(path, onEvent) {
  if (state.stream) { state.stream.close(); state.stream = null; }
  const es = new EventSource(path);
  es.addEventListener('open', () => { setLive('live', 'on'); onEvent(); });
  es.addEventListener('error', () => {
    if (es.readyState === EventSource.CLOSED) {
      setLive('reconnecting…', 'off');
      state.retry = setTimeout(() => { state.retry = null; if (state.stream === es) stream(path, onEvent); }, 5000);
    } else {
      setLive('reconnecting…', 'off');
    }
  });
  es.addEventListener('transition', onEvent);
  es.addEventListener('changed', onEvent);
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
      el('td', {}, r.mode, r.simulated ? ' ' : '', r.simulated ? el('span', { class: 'sim' }, 'SIMULATED') : ''),
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
    const elapsed = runNow() - since;
    text = duration(elapsed);
    if (over && elapsed > target) cls = 'over';
  } else {
    text = '—';
  }
  $(valueId).textContent = text;
  $(targetId).textContent = 'target ' + duration(target) + (o.achieved_ms != null ? (o.met ? ' · met' : ' · missed') :
    (since != null && over ? ' · ' + (runNow() - since > target ? 'over by ' + duration(runNow() - since - target) : duration(target - (runNow() - since)) + ' left') : ''));
  $(box).className = 'clock ' + cls;
}

function notice(text, bad) {
  const n = $('notice');
  n.textContent = text;
  n.className = 'notice' + (bad ? ' bad' : '');
  n.hidden = !text;
}

// WebAuthn binary fields travel as base64url.
function b64u(buf) {
  const b = new Uint8Array(buf);
  let s = '';
  for (const x of b) s += String.fromCharCode(x);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}
function unb64u(s) {
  const t = atob(s.replace(/-/g, '+').replace(/_/g, '/'));
  return Uint8Array.from(t, c => c.charCodeAt(0));
}

/// Registers a passkey: the browser creates it, the server keeps it pending until the operator
/// certifies it with their SSH key (`drover passkey confirm`).
async function registerPasskey() {
  try {
    const o = await api('/api/v1/passkeys/options', { method: 'POST' });
    const cred = await navigator.credentials.create({ publicKey: {
      challenge: unb64u(o.challenge), rp: o.rp,
      user: { id: unb64u(o.user.id), name: o.user.name, displayName: o.user.displayName },
      pubKeyCredParams: o.pubKeyCredParams, attestation: o.attestation,
      authenticatorSelection: o.authenticatorSelection, timeout: o.timeout,
      excludeCredentials: o.excludeCredentials.map(c => ({ type: c.type, id: unb64u(c.id) })),
    } });
    const r = cred.response;
    const k = await api('/api/v1/passkeys', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({
      challenge: o.challenge, credential_id: b64u(cred.rawId),
      client_data_json: b64u(r.clientDataJSON), authenticator_data: b64u(r.getAuthenticatorData()),
      public_key: b64u(r.getPublicKey()), public_key_algorithm: r.getPublicKeyAlgorithm(),
    }) });
    notice(`Passkey ${k.fingerprint} registered. Make it yours with your SSH key: drover passkey confirm --server ${location.origin}`);
  } catch (e) {
    notice('The passkey was not registered: ' + e.message, true);
  }
}

/// Approves or denies `step` with a passkey: the assertion's challenge is the SHA-256 of the
/// statement shown, so the signature covers exactly what was approved.
async function decide(step, decision) {
  if (state.busy) return;
  state.busy = true;
  const run = state.record.run_id;
  try {
    let reason = '';
    if (decision === 'deny') {
      reason = prompt('Why deny ' + step + '?') || '';
      if (!reason) return;
    }
    const q = new URLSearchParams({ decision });
    if (reason) q.set('reason', reason);
    const base = '/api/v1/runs/' + encodeURIComponent(run) + '/steps/' + encodeURIComponent(step);
    const st = await api(base + '/statement?' + q);
    if (!st.passkeys.length) {
      notice('You have no confirmed passkey: register one (button above), then run drover passkey confirm.', true);
      return;
    }
    // The statement as signed stays on the page, whatever re-renders it.
    state.shown[step] = st.statement;
    $('statement-' + step).textContent = st.statement;
    $('statement-' + step).hidden = false;
    const a = await navigator.credentials.get({ publicKey: {
      challenge: unb64u(st.challenge), rpId: location.hostname, userVerification: 'preferred',
      allowCredentials: st.passkeys.map(id => ({ type: 'public-key', id: unb64u(id) })),
    } });
    const r = a.response;
    const body = { statement: st.statement, decision, passkey: {
      credential_id: b64u(a.rawId), authenticator_data: b64u(r.authenticatorData),
      client_data_json: b64u(r.clientDataJSON), signature: b64u(r.signature) } };
    if (reason) body.reason = reason;
    const done = await api(base + '/decisions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    notice(`${decision === 'deny' ? 'Denied' : 'Approved'} ${step} as ${done.operator}, signed with your passkey.`);
  } catch (e) {
    notice(`Not ${decision === 'deny' ? 'denied' : 'approved'}: ${e.message}`, true);
  } finally {
    state.busy = false;
  }
}

function renderApprovals(r) {
  const list = r.approvals || [];
  $('approvals-box').hidden = !list.length;
  $('approvals').replaceChildren(...list.map(a => {
    const waiting = a.state === 'awaiting_approval';
    const approved = a.given.filter(g => g.accepted);
    const refused = a.given.filter(g => !g.accepted);
    const dl = el('dl', {},
      el('dt', {}, 'State'), el('dd', { class: 'state state-' + a.state }, a.state.replace('_', ' ')),
      el('dt', {}, 'Needs'), el('dd', {}, `${a.required} distinct approver${a.required > 1 ? 's' : ''}` +
        (a.roles.length ? ' in role ' + a.roles.join(' or ') : '') + (a.initiator_may_approve ? '' : `, not ${r.initiator} (who started the run)`)),
      el('dt', {}, 'Eligible'), el('dd', {}, !['awaiting_approval', 'pending'].includes(a.state) ? 'decided' :
        a.eligible == null ? 'anyone with the role (no roster)' : (a.eligible.join(', ') || 'nobody left')),
      el('dt', {}, 'Approved by'), el('dd', {}, approved.length ? approved.map(g => `${g.operator} (${g.signed_with || 'unsigned'}, ${g.at})`).join('; ') : 'nobody yet'),
      el('dt', {}, 'Four eyes'), el('dd', { class: a.four_eyes_satisfied ? 'four-ok' : 'four-no' },
        a.four_eyes_satisfied ? 'satisfied' : `not yet: ${approved.length} of ${a.required}`),
      ...(refused.length ? [el('dt', {}, 'Refused'), el('dd', {}, refused.map(g => `${g.operator}: ${g.reason || ''}`).join('; '))] : []),
      el('dt', {}, 'Inputs digest'), el('dd', {}, el('code', {}, a.inputs_sha256)));
    const details = el('details', {}, el('summary', {}, 'What is approved (resolved inputs of this step and the steps it gates)'),
      el('pre', {}, JSON.stringify(a.subject, null, 2)));
    const statement = el('pre', { id: 'statement-' + a.step, class: 'statement', 'aria-label': 'Statement signed' }, state.shown[a.step] || '');
    statement.hidden = !state.shown[a.step];
    const actions = waiting ? el('div', { class: 'actions' },
      Object.assign(el('button', { type: 'button', 'data-step': a.step, 'data-decision': 'approve' }, 'Approve with passkey'), { onclick: () => decide(a.step, 'approve') }),
      Object.assign(el('button', { type: 'button', class: 'secondary', 'data-step': a.step, 'data-decision': 'deny' }, 'Deny'), { onclick: () => decide(a.step, 'deny') })) : '';
    return el('article', { class: 'approval' + (waiting ? ' waiting' : ''), 'aria-label': 'Approval ' + a.step },
      el('h3', {}, a.step), dl, details, actions, statement);
  }));
}

const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text != null) e.textContent = text;
  return e;
}

/// The Gantt: one row per node, its attempts and approval waits against time since the
/// disaster was declared, the RTO target and now.
/// Now, on the run's clock: the wall clock, or a live tabletop's exercise time.
function runNow() {
  const p = state.pace;
  return p ? p.v + (Date.now() - p.real) * p.rate : Date.now();
}

function renderGantt(r) {
  const nodes = r.graph || [];
  const t0 = Date.parse(r.declared_at);
  const now = runNow();
  const ends = nodes.flatMap(n => [n.done_ms, n.gave_up_ms, ...(n.attempts || []).map(a => a.end_ms || now)]).filter(x => x);
  // The span: a finished run's own length; a live run's time so far, and the RTO target when it
  // is near enough to matter.
  const target = r.rto.target_ms || 0;
  const elapsed = (r.outcome ? Math.max(...ends, t0) : now) - t0;
  const span = Math.max(1000, r.outcome ? elapsed * 1.05 :
    Math.max(elapsed * 1.2, Math.min(target * 1.05, Math.max(elapsed * 3, 300000))));
  const t1 = t0 + span;
  const labelW = 190, w = 900, rowH = 22, top = 24;
  const g = $('gantt');
  g.setAttribute('viewBox', `0 0 ${w} ${top + nodes.length * rowH + 8}`);
  const x = t => labelW + (w - labelW - 10) * Math.max(0, (t - t0)) / (t1 - t0);
  const kids = [svg('line', { class: 'axis', x1: labelW, y1: top - 4, x2: w - 10, y2: top - 4 })];
  for (let i = 0; i <= 4; i++) {
    const t = t0 + (t1 - t0) * i / 4;
    kids.push(svg('text', { x: x(t), y: 12, 'text-anchor': i === 0 ? 'start' : i === 4 ? 'end' : 'middle' }, duration(t - t0)));
  }
  nodes.forEach((n, i) => {
    const y = top + i * rowH;
    const row = svg('g', {});
    row.append(svg('title', {}, `${n.id} (${n.label})` + (n.after.length ? ' — after ' + n.after.join(', ') : '')));
    row.append(svg('text', { x: 4, y: y + 15 }, n.id.length > 26 ? n.id.slice(0, 25) + '…' : n.id));
    if (n.approval_requested_ms) {
      const end = n.done_ms || n.gave_up_ms || (r.outcome ? n.approval_requested_ms : now);
      row.append(svg('rect', { class: 'bar-wait', x: x(n.approval_requested_ms), y: y + 4, width: Math.max(2, x(end) - x(n.approval_requested_ms)), height: rowH - 8 }));
    }
    for (const a of n.attempts || []) {
      const end = a.end_ms || (r.outcome ? a.start_ms : now);
      row.append(svg('rect', { class: 'bar-' + a.outcome, x: x(a.start_ms), y: y + 4, width: Math.max(2, x(end) - x(a.start_ms)), height: rowH - 8 }));
    }
    if (n.kind === 'milestone' && n.done_ms) {
      const cx = x(n.done_ms), cy = y + rowH / 2;
      row.append(svg('polygon', { class: 'bar-milestone', points: `${cx},${cy - 7} ${cx + 7},${cy} ${cx},${cy + 7} ${cx - 7},${cy}` }));
    }
    kids.push(row);
  });
  const bottom = top + nodes.length * rowH;
  if (target && target <= span) {
    kids.push(svg('line', { class: 'target', x1: x(t0 + target), y1: top - 4, x2: x(t0 + target), y2: bottom }));
    kids.push(svg('text', { x: x(t0 + target) - 4, y: bottom, 'text-anchor': 'end' }, 'RTO target'));
  }
  if (!r.outcome) kids.push(svg('line', { class: 'now', x1: x(now), y1: top - 4, x2: x(now), y2: bottom }));
  g.replaceChildren(g.querySelector('desc'), ...kids);
}

/// A tabletop's pace, its injects, and the facilitator's controls (for the facilitator only).
function renderTabletop(t) {
  $('tabletop-box').hidden = !t;
  // A live tabletop's clocks run on the exercise's time, not the wall clock's.
  state.pace = t && t.driven_here && t.virtual_now ?
    { v: Date.parse(t.virtual_now), real: Date.now(), rate: t.paused ? 0 : t.speed } : null;
  if (!t) return;
  if (t.speed && [...$('tt-speed').options].some(o => Number(o.value) === t.speed)) $('tt-speed').value = String(t.speed);
  $('tabletop-pace').textContent = `Facilitated by ${t.facilitator}` + (t.driven_here ?
    ` · ${t.paused ? 'PAUSED' : 'running at ' + t.speed + '×'} · exercise time ${t.virtual_now}` : ' · over');
  $('facilitator').hidden = !(t.driven_here && t.facilitator === state.operator);
  $('injects').replaceChildren(...(t.injects.length ? t.injects.map(i => el('li', { class: 'inject' }, `${i.at} — ${i.text}`, i.by === 'scenario' ? '' : ` (added by ${i.by})`)) :
    [el('li', {}, 'none yet')]));
}

async function facilitate(body, path) {
  const run = state.record.run_id;
  try {
    await api('/api/v1/runs/' + encodeURIComponent(run) + (path || '/tabletop'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    notice('');
  } catch (e) {
    notice('Not done: ' + e.message, true);
  }
}

function renderRun(v) {
  const r = v.record;
  state.record = r;
  state.view = v;
  $('run-title').replaceChildren(r.runbook + ' ', r.simulated ? el('span', { class: 'sim' }, 'SIMULATED') : '');
  $('sim-banner').hidden = !r.simulated;
  renderTabletop(v.tabletop);
  $('run-meta').textContent = `run ${r.run_id} · ${r.mode} · started by ${r.initiator} · ${v.status}` +
    (v.driven_by ? ` · driven by ${v.driven_by}` : '');
  const waiting = new Map((r.waiting_on || []).map(w => [w.step, w.text]));
  const graph = new Map((r.graph || []).map(n => [n.id, n]));
  $('steps-body').replaceChildren(...r.steps.map(s => el('tr', {},
    el('td', {}, s.id),
    el('td', { class: 'state state-' + s.state }, s.state.replace('_', ' ')),
    el('td', {}, String((graph.get(s.id)?.attempts || []).length)),
    el('td', {}, s.error || waiting.get(s.id) || ''))));
  const p = v.prediction;
  $('prediction').textContent = p && p.p50_ms != null ?
    `Simulator's prediction for this plan: RTO p50 ${duration(p.p50_ms)}, p95 ${duration(p.p95_ms)} (${p.trials} trials)` : '';
  renderApprovals(r);
  renderGantt(r);
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
  if (live) renderGantt(r);
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
  state.operator = who.operator;
  $('who').textContent = 'signed in as ' + who.operator;
  $('tt-pause').addEventListener('click', () => facilitate({ action: 'pause' }));
  $('tt-resume').addEventListener('click', () => facilitate({ action: 'resume' }));
  $('tt-speed').addEventListener('change', e => facilitate({ action: 'speed', speed: Number(e.target.value) }));
  $('facilitator').addEventListener('submit', e => {
    e.preventDefault();
    const text = $('tt-inject').value.trim();
    if (text) facilitate({ text }, '/injects').then(() => { $('tt-inject').value = ''; });
  });
  if (window.PublicKeyCredential) {
    const b = $('passkey-register');
    b.hidden = false;
    b.addEventListener('click', registerPasskey);
  }
  window.addEventListener('hashchange', route);
  await route();
}

document.addEventListener('DOMContentLoaded', start);
