// The clickagg status page: polls /status, /api/top and /api/url and draws
// them. Every value from the server is set as text (textContent), never as
// HTML: URLs are whatever the click events carried.
'use strict';

const REFRESH_MS = 2000;
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
  const d = await getJSON(`/api/url?url=${encodeURIComponent(selectedURL)}&window=${encodeURIComponent(w)}&limit=60`);
  if (d.url !== selectedURL) return; // NB: another URL was selected meanwhile
  setText('chart-title', d.url);
  setText('chart-window', `${w} windows · ${num(d.total)} clicks in total`);
  drawChart(d.windows);
}

function drawChart(rows) {
  const W = 600, H = 170, left = 44, bottom = 22, top = 8;
  const s = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'clicks per window' });
  const max = Math.max(1, ...rows.map((r) => r.clicks));
  const plotW = W - left - 4, plotH = H - top - bottom;
  s.append(svg('line', { class: 'axis', x1: left, y1: top + plotH, x2: W - 4, y2: top + plotH }));
  s.append(svg('line', { class: 'axis', x1: left, y1: top, x2: left, y2: top + plotH }));
  const yMax = svg('text', { x: left - 4, y: top + 8, 'text-anchor': 'end' });
  yMax.textContent = num(max);
  const y0 = svg('text', { x: left - 4, y: top + plotH, 'text-anchor': 'end' });
  y0.textContent = '0';
  s.append(yMax, y0);
  if (rows.length === 0) {
    const t = svg('text', { x: left + plotW / 2, y: top + plotH / 2, 'text-anchor': 'middle' });
    t.textContent = 'no windows of this size yet';
    s.append(t);
  }
  const step = plotW / Math.max(rows.length, 1);
  rows.forEach((r, i) => {
    const h = Math.max(1, (r.clicks / max) * plotH);
    const bar = svg('rect', {
      class: 'bar' + (r.final ? '' : ' partial'), x: left + i * step + 1, y: top + plotH - h,
      width: Math.max(1, step - 2), height: h,
    });
    const tip = svg('title');
    tip.textContent = `${utc(r.start)} UTC: ${num(r.clicks)} clicks${r.final ? '' : ' (open)'}`;
    bar.append(tip);
    s.append(bar);
  });
  if (rows.length > 0) {
    const first = svg('text', { x: left, y: H - 6 });
    first.textContent = utc(rows[0].start).slice(11, 16);
    const last = svg('text', { x: W - 4, y: H - 6, 'text-anchor': 'end' });
    last.textContent = utc(rows[rows.length - 1].start).slice(11, 16);
    s.append(first, last);
  }
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
