// The clickagg status page: polls /status, /api/top and /api/url and draws
// them. Every value from the server is set as text (textContent), never as
// HTML: URLs are whatever the click events carried.
'use strict';

const REFRESH_MS = 2000;
const CHART_SLOTS = 60; // windows in the chart (the /api/url limit)
const SVG = 'http://www.w3.org/2000/svg';
const $ = (id) => document.getElementById(id);

let windows = [];       // configured window sizes, from /status
let selectedURL = null; // the charted URL

async function getJSON(path) {
  const resp = await fetch(path, { cache: 'no-store' });
  let body;
  try {
    body = await resp.json();
  } catch (e) {
    body = { error: resp.status + ' ' + resp.statusText };
  }
  if (!resp.ok) {
    throw new Error(body.error || resp.statusText);
  }
  return body;
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  return e;
}

function num(n) {
  return n === null || n === undefined ? '—' : Number(n).toLocaleString('en-US');
}

function dur(s) {
  if (s === null || s === undefined) return '—';
  const a = Math.abs(s);
  if (a < 1) return Math.round(s * 1000) + ' ms';
  if (a < 120) return s.toFixed(1) + ' s';
  if (a < 7200) return (s / 60).toFixed(1) + ' min';
  return (s / 3600).toFixed(1) + ' h';
}

function utc(t) {
  return t ? t.replace('T', ' ').replace(/\.\d+/, '').replace('Z', '') : '—';
}

function setText(id, v) {
  $(id).textContent = v;
}

function fillRows(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function renderStatus(s) {
  const phase = $('phase');
  if (s.phase === 'starting') {
    phase.textContent = 'starting';
    phase.className = 'badge starting';
  } else {
    phase.textContent = s.ready ? 'ready' : 'not ready';
    phase.className = 'badge ' + (s.ready ? 'ready' : 'not-ready');
  }
  const p = s.process;
  setText('process', `${p.name} · ${p.version} · group ${p.group} · topic ${p.topic}` +
    (p.instance_id ? ` · instance ${p.instance_id}` : ''));
  setText('updated', 'updated ' + new Date().toLocaleTimeString());
  setText('owner-note', `owned by this process (${p.name})`);

  const reasons = $('not-ready');
  fillRows(reasons, s.not_ready.map((r) => el('li', r.detail)));
  reasons.hidden = s.not_ready.length === 0;

  setText('rate', s.rates.records_per_second === null ? '—' : num(s.rates.records_per_second));
  setText('consumed', num(s.counters.consumed));
  setText('lag', num(s.lag_records));
  setText('event-lag', dur(s.event_time_lag_seconds));
  const c = s.checkpoint;
  setText('ckpt-age', c.age_seconds === null ? 'none yet' : dur(c.age_seconds) + ' ago');
  setText('ckpt-sub', `${num(c.total)} checkpoints · ${num(c.rows_written)} rows`);
  setText('ckpt-took', dur(c.duration_seconds));
  setText('ckpt-mean', c.mean_duration_seconds === null ? '' : 'mean ' + dur(c.mean_duration_seconds));

  fillRows($('partitions').tBodies[0], s.partitions.length === 0
    ? [rowOf([el('td', s.phase === 'starting' ? 'starting…' : 'no partitions owned', 'muted')], 6)]
    : s.partitions.map((q) => {
      const tr = rowOf([
        el('td', q.partition, 'num'),
        el('td', q.owner),
        el('td', q.restoring ? 'restoring' : 'live'),
        el('td', num(q.lag_records), 'num'),
        el('td', utc(q.watermark)),
        el('td', dur(q.event_time_lag_seconds), 'num'),
      ]);
      tr.dataset.partition = q.partition;
      return tr;
    }));

  const k = s.counters;
  const counters = [
    ['accepted', k.accepted], ['rejected', k.rejected], ['late', k.late], ['duplicates', k.duplicates],
    ['filtered', k.filtered], ['dead letters', k.dead_letters], ['lost (retention)', k.lost],
    ['replayed (restores)', k.replayed],
  ];
  const rows = counters.map(([name, v]) => {
    const tr = rowOf([el('td', name), el('td', num(v), 'num')]);
    tr.dataset.counter = name;
    return tr;
  });
  for (const [reason, v] of Object.entries(k.rejected_by_reason).sort()) {
    rows.push(rowOf([el('td', '  rejected: ' + reason, 'muted'), el('td', num(v), 'num')]));
  }
  fillRows($('counters').tBodies[0], rows);

  if (windows.join() !== s.windows.join()) {
    windows = s.windows;
    const sel = $('window');
    const keep = sel.value;
    sel.replaceChildren(...windows.map((w) => {
      const o = el('option', w);
      o.value = w;
      return o;
    }));
    if (windows.includes(keep)) sel.value = keep;
  }
}

function rowOf(cells, span) {
  const tr = document.createElement('tr');
  if (span) cells[0].colSpan = span;
  tr.replaceChildren(...cells);
  return tr;
}

async function refreshTop() {
  const w = $('window').value;
  if (!w) return;
  const t = await getJSON(`/api/top?window=${encodeURIComponent(w)}&limit=10`);
  setText('top-window', t.start ? `newest window ${utc(t.start)} – ${utc(t.end)} UTC` : `no ${w} window yet`);
  fillRows($('top').tBodies[0], t.urls.map((u, i) => {
    const tr = rowOf([
      el('td', i + 1, 'num'), el('td', num(u.clicks), 'num'), el('td', num(u.late_clicks), 'num'),
      el('td', u.final ? 'yes' : 'open'), el('td', u.url, 'url'),
    ]);
    tr.dataset.url = u.url;
    tr.title = u.url;
    if (u.url === selectedURL) tr.classList.add('selected');
    tr.addEventListener('click', () => select(u.url));
    return tr;
  }));
}

function select(url) {
  selectedURL = url;
  for (const tr of $('top').tBodies[0].rows) {
    tr.classList.toggle('selected', tr.dataset.url === url);
  }
  refreshChart().catch(showError);
}

async function refreshChart() {
  if (selectedURL === null) return;
  const w = $('window').value;
  const d = await getJSON(`/api/url?url=${encodeURIComponent(selectedURL)}&window=${encodeURIComponent(w)}&limit=${CHART_SLOTS}`);
  if (d.url !== selectedURL) return; // NB: another URL was selected meanwhile
  setText('chart-title', d.url);
  setText('chart-window', `${w} windows · ${num(d.total)} clicks in all`);
  drawChart(d.windows);
}

// drawChart draws one bar per window over the CHART_SLOTS windows up to the
// newest one with clicks, placed by time: a window without clicks is a gap.
function drawChart(rows) {
  const W = 600, H = 170, left = 44, bottom = 22, top = 8;
  const s = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'clicks per window' });
  const max = Math.max(1, ...rows.map((r) => r.clicks));
  const plotW = W - left - 4, plotH = H - top - bottom;
  s.append(svg('line', { class: 'axis', x1: left, y1: top + plotH, x2: W - 4, y2: top + plotH }));
  s.append(svg('line', { class: 'axis', x1: left, y1: top, x2: left, y2: top + plotH }));
  const label = (x, y, text, anchor) => {
    const t = svg('text', { x, y, 'text-anchor': anchor });
    t.textContent = text;
    s.append(t);
  };
  label(left - 4, top + 8, num(max), 'end');
  label(left - 4, top + plotH, '0', 'end');
  if (rows.length === 0) {
    label(left + plotW / 2, top + plotH / 2, 'no windows of this size yet', 'middle');
    $('chart').replaceChildren(s);
    return;
  }
  const size = Date.parse(rows[0].end) - Date.parse(rows[0].start);
  const last = Date.parse(rows[rows.length - 1].start);
  const first = last - (CHART_SLOTS - 1) * size;
  const step = plotW / CHART_SLOTS;
  for (const r of rows) {
    const i = Math.round((Date.parse(r.start) - first) / size);
    if (i < 0) continue;
    const h = Math.max(1, (r.clicks / max) * plotH);
    const bar = svg('rect', {
      class: 'bar' + (r.final ? '' : ' partial'), x: left + i * step + 0.5, y: top + plotH - h,
      width: Math.max(1, step - 1), height: h,
    });
    const tip = svg('title');
    tip.textContent = `${utc(r.start)} UTC: ${num(r.clicks)} clicks${r.final ? '' : ' (open)'}`;
    bar.append(tip);
    s.append(bar);
  }
  // NB: times of day for short windows, dates too from an hour on.
  const when = (ms) => new Date(ms).toISOString().slice(size >= 3600e3 ? 5 : 11, 16).replace('T', ' ');
  label(left, H - 6, when(first), 'start');
  label(W - 4, H - 6, when(last) + ' UTC', 'end');
  $('chart').replaceChildren(s);
}

function showError(err) {
  const e = $('error');
  e.textContent = String(err.message || err);
  e.hidden = false;
}

async function refresh() {
  try {
    renderStatus(await getJSON('/status'));
    $('error').hidden = true;
    await refreshTop();
    await refreshChart();
  } catch (err) {
    showError(err);
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

document.addEventListener('DOMContentLoaded', () => {
  $('window').addEventListener('change', () => {
    refreshTop().then(refreshChart).catch(showError);
  });
  refresh();
});
