// twinflow dashboard: plain JavaScript, no libraries, nothing fetched from
// outside this server (plant networks are often air-gapped). Charts are
// drawn on <canvas>, the coil and the pipeline graph are inline SVG.
'use strict';

(function () {
  // ---- error hook -------------------------------------------------------
  // Installed first, so that anything going wrong later is both shown to the
  // operator and readable by the browser tests (window.__twinflow.errors).
  const T = (window.__twinflow = { errors: [], ready: false, events: 0 });

  function recordError(text) {
    T.errors.push(String(text));
    toast(String(text), 8000);
  }

  window.addEventListener('error', (e) => {
    const t = e.target;
    if (t && t !== window && (t.src || t.href)) {
      recordError('failed to load ' + (t.src || t.href));
    } else {
      recordError((e.message || 'error') + (e.filename ? ' at ' + e.filename + ':' + e.lineno : ''));
    }
  }, true);
  window.addEventListener('unhandledrejection', (e) => {
    const r = e.reason;
    recordError('unhandled rejection: ' + (r && r.message ? r.message : r));
  });
  document.addEventListener('securitypolicyviolation', (e) => {
    recordError('blocked by the content security policy: ' + e.blockedURI + ' (' + e.violatedDirective + ')');
  });
  const consoleError = console.error.bind(console);
  console.error = function (...args) {
    T.errors.push(args.map(String).join(' '));
    consoleError(...args);
  };

  // ---- constants ----------------------------------------------------------
  const INPUTS = ['UCWIT', 'UCAIT', 'UCWF', 'UCAIH', 'AMBT', 'UCTSP'];
  const INPUT_UNITS = { UCWIT: '°C', UCAIT: '°C', UCWF: 'L/min', UCAIH: '%', AMBT: '°C', UCTSP: '°C' };
  const EXAMPLE = { UCWIT: 7.5, UCAIT: 25, UCWF: 15, UCAIH: 50, AMBT: 22, UCTSP: 21 };
  const LIVE_WINDOW_MS = 5 * 60 * 1000;
  const MAX_POINTS = 8000;
  // Specific heat of water, kJ/(kg K), and 1 kg per litre: Q from a
  // measured water outlet temperature, as the engine computes it.
  const CP_W = 4.186;

  const CHARTS = [
    { id: 'aot', title: 'Air outlet temperature', tag: 'UCAOT', unit: '°C', digits: 2, series: [
      { key: 'UCAOT_p', label: 'predicted', color: '--pred' },
      { key: 'UCAOT_m', label: 'measured', color: '--meas', thin: true }] },
    { id: 'wot', title: 'Water outlet temperature', tag: 'UCWOT', unit: '°C', digits: 2, series: [
      { key: 'UCWOT_p', label: 'predicted', color: '--pred' },
      { key: 'UCWOT_m', label: 'measured', color: '--meas', thin: true }] },
    { id: 'af', title: 'Air flow', tag: 'UCAF', unit: 'm³/h', digits: 0, series: [
      { key: 'UCAF_p', label: 'predicted', color: '--pred' },
      { key: 'UCAF_m', label: 'measured', color: '--meas', thin: true }] },
    { id: 'q', title: 'Thermal power', tag: 'Q', unit: 'kW', digits: 2, series: [
      { key: 'Q_p', label: 'predicted', color: '--pred' },
      { key: 'Q_m', label: 'from measured UCWOT', color: '--meas', thin: true }] },
    { id: 'tin', title: 'Inlet temperatures', tag: '', unit: '°C', digits: 2, series: [
      { key: 'UCWIT', label: 'UCWIT water', color: '#0ea5e9' },
      { key: 'UCAIT', label: 'UCAIT air', color: '#ef4444' },
      { key: 'AMBT', label: 'AMBT ambient', color: '#a855f7' },
      { key: 'UCTSP', label: 'UCTSP setpoint', color: '#64748b', dash: true }] },
    { id: 'flow', title: 'Water flow and humidity', tag: '', unit: 'L/min · %RH', digits: 1, series: [
      { key: 'UCWF', label: 'UCWF L/min', color: '#06b6d4' },
      { key: 'UCAIH', label: 'UCAIH %RH', color: '#10b981' }] },
  ];

  // ---- small helpers ------------------------------------------------------
  const $ = (id) => document.getElementById(id);
  const SVG = 'http://www.w3.org/2000/svg';

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }

  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== null && v !== undefined) e.setAttribute(k, v);
    }
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function num(v) {
    return typeof v === 'number' && Number.isFinite(v);
  }

  function fmt(v, digits) {
    if (!num(v)) return '–';
    return v.toLocaleString(undefined, { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }

  function signed(v, digits) {
    if (!num(v)) return '–';
    return (v > 0 ? '+' : v < 0 ? '−' : '±') + fmt(Math.abs(v), digits);
  }

  function cssVar(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function color(c) {
    return c.startsWith('--') ? cssVar(c) : c;
  }

  function clock(t) {
    return new Date(t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  }

  function qFromWater(ucwit, ucwot, ucwf) {
    return num(ucwit) && num(ucwot) && num(ucwf) ? (ucwf / 60) * CP_W * (ucwot - ucwit) : null;
  }

  let toastTimer = 0;
  function toast(text, ms) {
    const t = $('toast');
    if (!t) return;
    t.textContent = text;
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.hidden = true; }, ms || 5000);
  }

  async function getJSON(url, opts) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), 15000);
    try {
      const res = await fetch(url, Object.assign({ signal: ctl.signal, cache: 'no-store' }, opts || {}));
      let body = null;
      const text = await res.text();
      try { body = text ? JSON.parse(text) : null; } catch (_) { body = { error: text }; }
      return { status: res.status, ok: res.ok, body };
    } finally {
      clearTimeout(timer);
    }
  }

  // Network trouble is operational, not a bug in the page: it is shown, but
  // not recorded as an error.
  async function poll(url) {
    try {
      const r = await getJSON(url);
      if (!r.ok) throw new Error(url + ': HTTP ' + r.status + (r.body && r.body.error ? ' — ' + r.body.error : ''));
      return r.body;
    } catch (e) {
      toast('Cannot reach the engine: ' + (e.message || e), 4000);
      return null;
    }
  }

  // ---- points -------------------------------------------------------------
  // One moment of a unit as chart points, from a prediction event or from a
  // history row (the same columns under other names).
  function pointsFromPrediction(p) {
    const m = p.measured || {};
    const i = p.inputs || {};
    return {
      t: Date.parse(p.ts),
      UCAOT_p: p.UCAOT, UCAOT_m: m.UCAOT,
      UCWOT_p: p.UCWOT, UCWOT_m: m.UCWOT,
      UCAF_p: p.UCAF, UCAF_m: m.UCAF,
      Q_p: p.Q_thermal, Q_m: qFromWater(i.UCWIT, m.UCWOT, i.UCWF),
      UCWIT: i.UCWIT, UCAIT: i.UCAIT, UCWF: i.UCWF, UCAIH: i.UCAIH, AMBT: i.AMBT, UCTSP: i.UCTSP,
    };
  }

  function pointsFromRow(r) {
    return {
      t: Date.parse(r.ts),
      UCAOT_p: r.UCAOT_predicted, UCAOT_m: r.UCAOT_measured,
      UCWOT_p: r.UCWOT_predicted, UCWOT_m: r.UCWOT_measured,
      UCAF_p: r.UCAF_predicted, UCAF_m: r.UCAF_measured,
      Q_p: r.Q_thermal_predicted, Q_m: qFromWater(r.UCWIT, r.UCWOT_measured, r.UCWF),
      UCWIT: r.UCWIT, UCAIT: r.UCAIT, UCWF: r.UCWF, UCAIH: r.UCAIH, AMBT: r.AMBT, UCTSP: r.UCTSP,
    };
  }

  // ---- charts -------------------------------------------------------------
  const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400]
    .map((s) => s * 1000);

  function niceStep(span, ticks) {
    const raw = span / Math.max(1, ticks);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * mag >= raw) return m * mag;
    return 10 * mag;
  }

  function lowerBound(arr, t) {
    let lo = 0, hi = arr.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (arr[mid].t < t) lo = mid + 1; else hi = mid;
    }
    return lo;
  }

  class Chart {
    constructor(spec, parent, windowMs) {
      this.spec = spec;
      this.windowMs = windowMs;
      this.points = [];
      this.hoverX = null;
      this.pending = false;
      const legend = el('div', { class: 'legend-row' });
      for (const s of spec.series) {
        const sw = el('i', { class: s.dash ? 'dash' : s.thin ? 'thin' : '' });
        if (s.dash) sw.style.borderTopColor = color(s.color); else sw.style.background = color(s.color);
        legend.append(el('span', {}, sw, s.label));
      }
      this.canvas = el('canvas', { 'aria-label': spec.title, role: 'img' });
      this.tip = el('div', { class: 'tip', hidden: true });
      this.root = el('div', { class: 'chart', id: 'chart-' + spec.id },
        el('div', { class: 'chart-head' },
          el('span', { class: 'chart-title', text: spec.title + (spec.tag ? ' · ' + spec.tag : '') }),
          el('span', { class: 'chart-unit', text: spec.unit })),
        legend, this.canvas, this.tip);
      parent.append(this.root);
      this.canvas.addEventListener('mousemove', (e) => {
        const r = this.canvas.getBoundingClientRect();
        this.hoverX = e.clientX - r.left;
        this.invalidate();
      });
      this.canvas.addEventListener('mouseleave', () => { this.hoverX = null; this.tip.hidden = true; this.invalidate(); });
      new ResizeObserver(() => this.invalidate()).observe(this.canvas);
    }

    setPoints(points) {
      this.points = points;
      this.invalidate();
    }

    invalidate() {
      if (this.pending) return;
      this.pending = true;
      requestAnimationFrame(() => { this.pending = false; this.draw(); });
    }

    draw() {
      const c = this.canvas;
      const w = c.clientWidth, h = c.clientHeight;
      if (!w || !h) return;
      const dpr = window.devicePixelRatio || 1;
      if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
        c.width = Math.round(w * dpr);
        c.height = Math.round(h * dpr);
      }
      const ctx = c.getContext('2d');
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.clearRect(0, 0, w, h);
      const font = getComputedStyle(document.body).fontFamily;
      const muted = cssVar('--muted'), gridColor = cssVar('--grid'), line = cssVar('--line');
      const pts = this.points;
      const keys = this.spec.series.map((s) => s.key);
      // Live: the last minutes up to the newest point (message time, which
      // need not be this browser's clock), no wider than the data so far
      // but at least a minute, so a fresh chart is not squeezed to the edge.
      let x1 = pts.length ? pts[pts.length - 1].t : Date.now();
      let x0 = pts.length ? pts[0].t : x1 - 60000;
      if (this.windowMs) x0 = Math.max(x0, x1 - this.windowMs);
      if (x1 - x0 < (this.windowMs ? 60000 : 1000)) x0 = x1 - (this.windowMs ? 60000 : 1000);
      const from = this.windowMs ? lowerBound(pts, x0) : 0;
      let lo = Infinity, hi = -Infinity;
      for (let i = from; i < pts.length; i++) {
        for (const k of keys) {
          const v = pts[i][k];
          if (num(v)) { if (v < lo) lo = v; if (v > hi) hi = v; }
        }
      }
      const L = 48, R = 10, Tp = 8, B = 22;
      const pw = w - L - R, ph = h - Tp - B;
      ctx.font = '11px ' + font;
      if (lo === Infinity) {
        ctx.fillStyle = muted;
        ctx.textAlign = 'center';
        ctx.fillText('no data yet', w / 2, h / 2);
        return;
      }
      if (hi - lo < 1e-9) { lo -= 0.5; hi += 0.5; }
      const pad = (hi - lo) * 0.08;
      lo -= pad; hi += pad;
      const step = niceStep(hi - lo, Math.max(2, Math.floor(ph / 36)));
      lo = Math.floor(lo / step) * step;
      hi = Math.ceil(hi / step) * step;
      const X = (t) => L + ((t - x0) / (x1 - x0)) * pw;
      const Y = (v) => Tp + (1 - (v - lo) / (hi - lo)) * ph;
      let decimals = 0;
      while (decimals < 4 && Math.abs(Math.round(step * 10 ** decimals) - step * 10 ** decimals) > 1e-6) decimals++;

      // grid and axes
      ctx.lineWidth = 1;
      ctx.strokeStyle = gridColor;
      ctx.fillStyle = muted;
      ctx.textAlign = 'right';
      ctx.textBaseline = 'middle';
      for (let v = lo; v <= hi + step / 2; v += step) {
        const y = Math.round(Y(v)) + 0.5;
        ctx.beginPath(); ctx.moveTo(L, y); ctx.lineTo(L + pw, y); ctx.stroke();
        ctx.fillText(fmt(v, decimals), L - 6, y);
      }
      const span = x1 - x0;
      const tstep = TIME_STEPS.find((s) => span / s <= Math.max(2, Math.floor(pw / 90))) || 86400000;
      ctx.textAlign = 'center';
      ctx.textBaseline = 'top';
      const tzOffset = new Date(x0).getTimezoneOffset() * 60000;
      for (let t = Math.ceil((x0 - tzOffset) / tstep) * tstep + tzOffset; t <= x1; t += tstep) {
        const x = Math.round(X(t)) + 0.5;
        ctx.strokeStyle = gridColor;
        ctx.beginPath(); ctx.moveTo(x, Tp); ctx.lineTo(x, Tp + ph); ctx.stroke();
        const d = new Date(t);
        const label = tstep >= 86400000
          ? d.toLocaleDateString([], { month: 'short', day: 'numeric' })
          : tstep >= 60000
            ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
            : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
        const half = ctx.measureText(label).width / 2;
        ctx.fillText(label, Math.min(Math.max(x, L + half), w - R - half), Tp + ph + 5);
      }
      ctx.strokeStyle = line;
      ctx.beginPath(); ctx.moveTo(L, Tp + ph + 0.5); ctx.lineTo(L + pw, Tp + ph + 0.5); ctx.stroke();

      // series; a gap in time is a gap in the line
      const gap = Math.max(10000, span / 40);
      ctx.save();
      ctx.beginPath(); ctx.rect(L, Tp - 2, pw, ph + 4); ctx.clip();
      // Measurements first and thin: the model's line stays readable on top.
      const order = this.spec.series.filter((s) => s.thin).concat(this.spec.series.filter((s) => !s.thin));
      for (const s of order) {
        ctx.strokeStyle = color(s.color);
        ctx.globalAlpha = s.thin ? 0.8 : 1;
        ctx.lineWidth = s.thin ? 1.25 : s.dash ? 1.5 : 2;
        ctx.setLineDash(s.dash ? [5, 4] : []);
        ctx.lineJoin = 'round';
        ctx.beginPath();
        let prevT = null;
        for (let i = Math.max(0, from - 1); i < pts.length; i++) {
          const p = pts[i], v = p[s.key];
          if (!num(v)) { prevT = null; continue; }
          if (prevT === null || p.t - prevT > gap) ctx.moveTo(X(p.t), Y(v)); else ctx.lineTo(X(p.t), Y(v));
          prevT = p.t;
        }
        ctx.stroke();
      }
      ctx.globalAlpha = 1;
      ctx.restore();
      ctx.setLineDash([]);

      // hover: the nearest moment, its values in a tooltip
      if (this.hoverX !== null && this.hoverX >= L && this.hoverX <= L + pw && pts.length) {
        const t = x0 + ((this.hoverX - L) / pw) * (x1 - x0);
        let i = lowerBound(pts, t);
        if (i >= pts.length || (i > 0 && t - pts[i - 1].t < pts[i].t - t)) i -= 1;
        const p = pts[Math.max(0, i)];
        const x = X(p.t);
        ctx.strokeStyle = muted;
        ctx.beginPath(); ctx.moveTo(x, Tp); ctx.lineTo(x, Tp + ph); ctx.stroke();
        this.tip.replaceChildren(el('b', { text: clock(p.t) }));
        for (const s of this.spec.series) {
          const v = p[s.key];
          if (!num(v)) continue;
          ctx.fillStyle = color(s.color);
          ctx.beginPath(); ctx.arc(x, Y(v), 3.5, 0, Math.PI * 2); ctx.fill();
          this.tip.append(el('br'), s.label + ': ' + fmt(v, this.spec.digits));
        }
        this.tip.hidden = false;
        const left = Math.min(x + 14, w - this.tip.offsetWidth);
        this.tip.style.left = Math.max(0, left) + 'px';
        this.tip.style.top = '34px';
      }
    }
  }

  // ---- state ---------------------------------------------------------------
  const store = new Map(); // unit -> { points: [], last: prediction, alerts: n, drift: report }
  let selected = null;
  let liveCharts = [];
  let historyCharts = [];
  let unitsInfo = [];
  let alertsState = { active: [], recent: [], counts: {} };
  const eventTimes = [];

  function unitStore(u) {
    let s = store.get(u);
    if (!s) {
      s = { points: [], last: null, drift: null, seeded: false };
      store.set(u, s);
      renderChips();
    }
    return s;
  }

  function addPoint(s, p) {
    const pts = s.points;
    if (pts.length && p.t < pts[pts.length - 1].t) {
      pts.splice(lowerBound(pts, p.t), 0, p);
    } else {
      pts.push(p);
    }
    const cutoff = pts[pts.length - 1].t - LIVE_WINDOW_MS * 1.2;
    let drop = 0;
    while (drop < pts.length && pts[drop].t < cutoff) drop++;
    if (pts.length - drop > MAX_POINTS) drop = pts.length - MAX_POINTS;
    if (drop) pts.splice(0, drop);
  }

  // ---- live view -----------------------------------------------------------
  function renderChips() {
    const box = $('unit-chips');
    const names = [...new Set([...unitsInfo.map((u) => u.unit), ...store.keys()])].sort();
    box.replaceChildren(...names.map((u) => {
      const info = unitsInfo.find((x) => x.unit === u) || {};
      const s = store.get(u);
      const drift = s && s.drift ? s.drift.summary.overall_status : info.drift_status;
      const alerting = alertsState.active.some((a) => a.unit === u);
      const dot = el('span', { class: 'dot ' + (alerting ? 'alert' : drift || '') });
      return el('button', {
        type: 'button', class: 'chip', 'data-unit': u, 'aria-pressed': String(u === selected),
        title: alerting ? 'active alerts' : drift ? 'drift ' + drift : '',
        onclick: () => select(u),
      }, dot, u);
    }));
    $('live-empty').hidden = names.length > 0;
    $('kpis').hidden = names.length === 0;
    const hu = $('h-unit');
    const current = hu.value;
    hu.replaceChildren(...names.map((u) => el('option', { value: u, text: u })));
    if (names.includes(current)) hu.value = current;
    else if (selected) hu.value = selected;
  }

  function select(u) {
    selected = u;
    renderChips();
    const s = unitStore(u);
    for (const c of liveCharts) c.setPoints(s.points);
    renderKpis();
    renderDrift();
    if (!s.seeded) seed(u);
  }

  // The last minutes from the server's history, so the charts start full;
  // events that arrived meanwhile are kept.
  async function seed(u) {
    const s = unitStore(u);
    s.seeded = true;
    const info = unitsInfo.find((x) => x.unit === u);
    const lastTs = info && info.prediction ? Date.parse(info.prediction.ts) : Date.now();
    const from = new Date(lastTs - LIVE_WINDOW_MS).toISOString();
    const h = await poll('/api/history?unit=' + encodeURIComponent(u) + '&from=' + encodeURIComponent(from) + '&max_points=1500');
    if (!h) { s.seeded = false; return; }
    const first = s.points.length ? s.points[0].t : Infinity;
    const older = h.rows.map(pointsFromRow).filter((p) => p.t < first);
    s.points.unshift(...older);
    if (u === selected) for (const c of liveCharts) c.setPoints(s.points);
  }

  let kpiDirty = false;
  function renderKpis() {
    kpiDirty = false;
    const s = selected && store.get(selected);
    const p = s && s.last;
    const outs = [['UCAOT', 2, 1], ['UCWOT', 2, 1], ['UCAF', 0, 150], ['Q_thermal', 2, null]];
    for (const [k, d, tol] of outs) {
      const box = $('kpi-' + k);
      const pred = box.querySelector('.pred');
      const meas = box.querySelector('.meas');
      const v = p ? p[k] : null;
      pred.textContent = fmt(v, d);
      pred.dataset.value = num(v) ? String(v) : '';
      if (!p) { meas.textContent = 'measured –'; continue; }
      if (k === 'Q_thermal') {
        const qm = qFromWater(p.inputs.UCWIT, (p.measured || {}).UCWOT, p.inputs.UCWF);
        meas.replaceChildren(num(qm) ? 'from measured ' + fmt(qm, 2) : 'model ' + p.model);
        continue;
      }
      const m = (p.measured || {})[k];
      if (!num(m)) { meas.textContent = 'not measured'; continue; }
      const delta = m - v;
      meas.replaceChildren('measured ' + fmt(m, d) + ' · ',
        el('span', { class: 'delta ' + (Math.abs(delta) > tol ? 'bad' : 'good'), text: 'Δ ' + signed(delta, d) }));
    }
    for (const k of INPUTS) {
      const v = p ? p.inputs[k] : null;
      $('in-' + k).textContent = num(v) ? fmt(v, k === 'UCWF' || k === 'UCAIH' ? 1 : 2) + ' ' + INPUT_UNITS[k] : '–';
    }
    const now = Date.now();
    while (eventTimes.length && now - eventTimes[0] > 10000) eventTimes.shift();
    const span = Math.min(10, Math.max(1, (now - (eventTimes[0] || now)) / 1000));
    const rate = eventTimes.length / span;
    $('live-meta').textContent = p
      ? `${selected} · ${clock(Date.parse(p.ts))} · model ${p.model} · ${fmt(rate, 1)} events/s`
      : '';
  }

  function severityRank(s) {
    return { critical: 4, error: 3, warning: 2, info: 1 }[s] || 0;
  }

  function alertItem(a, compact) {
    const cls = (a.state === 'resolved' ? 'resolved ' : '') + a.severity;
    return el('li', { class: cls },
      el('div', { class: 'a-head' },
        el('span', { class: 'a-code', text: a.code + (a.key ? ' · ' + a.key : '') }),
        el('span', { text: (a.unit || '') + ' · ' + clock(Date.parse(a.ts)) })),
      el('div', { class: 'a-msg', text: (compact && a.state === 'resolved' ? 'resolved: ' : '') + a.message }));
  }

  function renderAlerts() {
    const act = $('alerts-active');
    const list = alertsState.active.slice().sort((a, b) => severityRank(b.severity) - severityRank(a.severity));
    act.replaceChildren(...(list.length ? list.map((a) => alertItem(a, false))
      : [el('li', { class: 'none', text: 'No active alerts' })]));
    $('alerts-recent').replaceChildren(...alertsState.recent.slice(0, 25).map((a) => alertItem(a, true)));
    const counts = $('alert-counts');
    counts.replaceChildren(...['critical', 'error', 'warning', 'info']
      .filter((s) => (alertsState.counts || {})[s] > 0)
      .map((s) => el('span', { class: 'badge ' + s, text: alertsState.counts[s] + ' ' + s })));
    renderChips();
  }

  let alertsTimer = 0;
  function refreshAlertsSoon() {
    clearTimeout(alertsTimer);
    alertsTimer = setTimeout(refreshAlerts, 250);
  }

  async function refreshAlerts() {
    const a = await poll('/api/alerts');
    if (a) { alertsState = a; renderAlerts(); }
  }

  function renderDrift() {
    const body = $('drift-body');
    const s = selected && store.get(selected);
    const r = s && s.drift;
    const badge = $('drift-overall');
    if (!r) {
      badge.className = 'badge';
      badge.textContent = '–';
      body.replaceChildren(el('p', { class: 'muted small', text: selected
        ? 'No drift report for ' + selected + ' yet. Reports come from a drift_monitor node wired to the api node.'
        : 'No unit selected.' }));
      return;
    }
    badge.className = 'badge ' + r.summary.overall_status;
    badge.textContent = r.summary.overall_status;
    const rows = Object.entries(r.features).map(([name, f]) => {
      const bar = el('i', { class: f.status });
      bar.style.width = Math.min(100, (num(f.psi) ? f.psi : 0) / 0.5 * 100) + '%';
      return el('tr', {},
        el('td', { text: name }),
        el('td', {}, el('div', { class: 'psi-bar', title: 'PSI ' + fmt(f.psi, 3) }, bar)),
        el('td', { class: 'num', text: fmt(f.psi, 3) }),
        el('td', { class: 'num', text: fmt(f.ks_statistic, 2) }),
        el('td', {}, el('span', { class: 'badge ' + f.status, text: f.status })));
    });
    body.replaceChildren(
      el('table', { class: 'drift' },
        el('thead', {}, el('tr', {}, el('th', { text: 'Feature' }), el('th', { text: 'PSI' }), el('th', { class: 'num', text: '' }),
          el('th', { class: 'num', text: 'KS' }), el('th', { text: 'Status' }))),
        el('tbody', {}, ...rows)),
      el('div', { class: 'drift-meta', text: `window ${r.window_size} samples · ${clock(Date.parse(r.ts))} · ${fmt(r.summary.drift_percentage, 0)} % of features drifting` }));
  }

  // ---- events --------------------------------------------------------------
  let source = null;
  function setConn(state, text) {
    const c = $('conn');
    c.className = 'conn ' + state;
    $('conn-text').textContent = text;
  }

  function connect() {
    if (source) source.close();
    setConn('', 'connecting');
    source = new EventSource('/api/events');
    source.addEventListener('hello', () => setConn('live', 'live'));
    source.addEventListener('prediction', (e) => {
      const p = JSON.parse(e.data);
      T.events++;
      eventTimes.push(Date.now());
      const s = unitStore(p.unit);
      s.last = p;
      addPoint(s, pointsFromPrediction(p));
      if (p.unit === selected) {
        kpiDirty = true;
        for (const c of liveCharts) c.invalidate();
      } else if (!selected) {
        select(p.unit);
      }
    });
    source.addEventListener('alert', () => refreshAlertsSoon());
    source.addEventListener('drift', (e) => {
      const r = JSON.parse(e.data);
      unitStore(r.unit).drift = r;
      if (r.unit === selected) renderDrift();
    });
    source.addEventListener('lagged', (e) => {
      const n = JSON.parse(e.data).skipped;
      $('live-meta').textContent = `skipped ${n} events to keep up`;
    });
    source.onerror = () => {
      // EventSource reconnects by itself while the server answers; after a
      // refusal it gives up, so try again later.
      if (source.readyState === EventSource.CLOSED) {
        setConn('down', 'offline');
        setTimeout(connect, 3000);
      } else {
        setConn('down', 'reconnecting');
      }
    };
  }

  // ---- header --------------------------------------------------------------
  async function refreshHealth() {
    const r = await getJSON('/health').catch(() => null);
    const pill = $('health');
    if (!r || !r.body) {
      pill.className = 'pill failing';
      pill.textContent = 'unreachable';
      return;
    }
    const h = r.body;
    pill.className = 'pill ' + h.status;
    pill.textContent = h.status;
    const up = h.uptime_seconds;
    const upText = up > 86400 ? fmt(up / 86400, 1) + ' d' : up > 3600 ? fmt(up / 3600, 1) + ' h' : fmt(up / 60, 0) + ' min';
    pill.title = `twinflow ${h.version}, up ${upText}` + (h.failure ? ` — ${h.failure}` : '');
    $('pipeline-name').textContent = `${h.pipeline} · v${h.version}`;
  }

  async function refreshUnits() {
    const u = await poll('/api/units');
    if (!u) return;
    unitsInfo = u.units;
    for (const info of unitsInfo) {
      const s = unitStore(info.unit);
      if (!s.last && info.prediction) s.last = info.prediction;
    }
    renderChips();
    if (!selected && unitsInfo.length) select(unitsInfo[0].unit);
  }

  // ---- what-if -------------------------------------------------------------
  let token = sessionStorage.getItem('twinflow-token') || '';

  function fillForm(values) {
    for (const k of INPUTS) $('f-' + k).value = num(values[k]) ? String(values[k]) : '';
  }

  function clearFieldErrors() {
    for (const e of document.querySelectorAll('#predict-form .err')) e.textContent = '';
    for (const f of document.querySelectorAll('#predict-form .field')) f.classList.remove('invalid');
    $('predict-errors').hidden = true;
  }

  function formBody() {
    const body = {};
    for (const k of INPUTS) {
      const raw = $('f-' + k).value.trim();
      if (raw === '') continue;
      const n = Number(raw.replace(',', '.'));
      // Not a number: sent as typed, so the engine's own check names it.
      body[k] = Number.isFinite(n) ? n : raw;
    }
    return body;
  }

  async function predict(ev) {
    if (ev) ev.preventDefault();
    const btn = $('predict-btn');
    btn.disabled = true;
    clearFieldErrors();
    // Until an answer for these inputs comes, the shown one is for others.
    $('result').classList.add('stale');
    try {
      const headers = { 'Content-Type': 'application/json' };
      if (token) headers.Authorization = 'Bearer ' + token;
      const r = await getJSON('/predict', { method: 'POST', headers, body: JSON.stringify(formBody()) });
      if (r.status === 401) {
        $('token-row').hidden = false;
        showFormError(token ? 'The token was refused.' : 'This engine needs an API token for predictions.');
        return;
      }
      if (r.status === 422 && r.body && r.body.fields) {
        for (const f of r.body.fields) {
          const slot = document.querySelector(`#predict-form .err[data-for="${f.field}"]`);
          if (slot) {
            slot.textContent = f.message;
            slot.closest('.field').classList.add('invalid');
          } else {
            showFormError((f.field ? f.field + ': ' : '') + f.message);
          }
        }
        return;
      }
      if (!r.ok) {
        showFormError('HTTP ' + r.status + (r.body && r.body.error ? ': ' + r.body.error : ''));
        return;
      }
      showPrediction(r.body);
    } catch (e) {
      showFormError('The engine did not answer: ' + (e.message || e));
    } finally {
      btn.disabled = false;
    }
  }

  function showFormError(text) {
    const box = $('predict-errors');
    box.textContent = text;
    box.hidden = false;
  }

  function showPrediction(p) {
    $('result').classList.remove('stale');
    const digits = { UCAOT: 2, UCWOT: 2, UCAF: 0, Q_thermal: 2 };
    for (const k of Object.keys(digits)) {
      const o = $('out-' + k);
      o.textContent = fmt(p[k], digits[k]);
      o.dataset.value = String(p[k]);
    }
    $('predict-model').textContent = 'model ' + p.model;
    const i = p.inputs;
    $('d-UCAIT').textContent = fmt(i.UCAIT, 1) + ' °C';
    $('d-UCAIH').textContent = fmt(i.UCAIH, 0) + ' %RH';
    $('d-UCAOT').textContent = fmt(p.UCAOT, 1) + ' °C';
    $('d-UCAF').textContent = fmt(p.UCAF, 0) + ' m³/h';
    $('d-UCWIT').textContent = fmt(i.UCWIT, 1) + ' °C';
    $('d-UCWOT').textContent = fmt(p.UCWOT, 1) + ' °C';
    $('d-Q').textContent = fmt(p.Q_thermal, 2) + ' kW';
    const coil = p.coil;
    const regime = $('regime');
    if (coil) {
      const wet = coil.regime === 'wet';
      regime.className = 'badge ' + (wet ? 'wet' : 'dry');
      regime.textContent = wet ? 'wet coil' : 'dry coil';
      regime.title = coil.regime === 'dry_max'
        ? 'The fins are below the dew point, but a dry coil removes more heat: no condensation counted.'
        : wet ? 'The coil condenses moisture from the air.' : 'The fins stay above the dew point.';
      $('drops').hidden = !(wet && coil.condensate_kg_h > 0);
      $('d-split').textContent = `sensible ${fmt(coil.q_sensible, 2)} kW · latent ${fmt(coil.q_latent, 2)} kW` +
        (coil.condensate_kg_h > 0 ? ` · condensate ${fmt(coil.condensate_kg_h, 2)} kg/h` : '') +
        ` · fan ${fmt(coil.fan_fraction * 100, 0)} %`;
    } else {
      regime.className = 'badge';
      regime.textContent = p.model;
      $('drops').hidden = true;
      $('d-split').textContent = (p.flags || []).length
        ? 'outside the training range: ' + p.flags.map((f) => f.feature).join(', ') : '';
    }
    $('predict-raw').textContent = JSON.stringify(p, null, 2);
  }

  // ---- history -------------------------------------------------------------
  function localInput(t) {
    const d = new Date(t - new Date(t).getTimezoneOffset() * 60000);
    return d.toISOString().slice(0, 19);
  }

  function historyParams(withThinning) {
    const q = new URLSearchParams();
    const u = $('h-unit').value;
    if (u) q.set('unit', u);
    const f = $('h-from').value, t = $('h-to').value;
    if (f) q.set('from', new Date(f).toISOString());
    if (t) q.set('to', new Date(t).toISOString());
    if (withThinning) q.set('max_points', '2000');
    return q;
  }

  function applyPreset(minutes) {
    for (const b of document.querySelectorAll('#h-presets button')) b.classList.toggle('on', Number(b.dataset.min) === minutes);
    if (!minutes) {
      $('h-from').value = '';
      $('h-to').value = '';
    } else {
      const s = store.get($('h-unit').value);
      const end = s && s.points.length ? s.points[s.points.length - 1].t : Date.now();
      $('h-from').value = localInput(end - minutes * 60000);
      $('h-to').value = localInput(end + 1000);
    }
    loadHistory();
  }

  function updateCsvLink() {
    const q = historyParams(false);
    q.set('format', 'csv');
    $('h-csv').href = '/api/history?' + q.toString();
  }

  async function loadHistory() {
    updateCsvLink();
    if (!$('h-unit').value) {
      $('h-meta').textContent = 'No unit has reported yet.';
      return;
    }
    const h = await poll('/api/history?' + historyParams(true).toString());
    if (!h) return;
    const pts = h.rows.map(pointsFromRow);
    for (const c of historyCharts) c.setPoints(pts);
    $('h-meta').textContent = h.matched
      ? `${h.matched.toLocaleString()} rows` + (h.count < h.matched ? `, drawn as ${h.count}` : '') +
        ` · ${new Date(pts[0].t).toLocaleString()} → ${new Date(pts[pts.length - 1].t).toLocaleString()}`
      : 'No rows in this range.';
    const stats = [['UCAOT', 'UCAOT_m', 'UCAOT_p', 2], ['UCWOT', 'UCWOT_m', 'UCWOT_p', 2], ['UCAF', 'UCAF_m', 'UCAF_p', 0], ['Q', 'Q_m', 'Q_p', 2]];
    const tbody = $('h-stats').querySelector('tbody');
    tbody.replaceChildren(...stats.map(([name, mk, pk, d]) => {
      let n = 0, sum = 0, abs = 0, max = 0;
      for (const p of pts) {
        if (!num(p[mk]) || !num(p[pk])) continue;
        const r = p[mk] - p[pk];
        n++; sum += r; abs += Math.abs(r); max = Math.max(max, Math.abs(r));
      }
      return el('tr', {}, el('td', { text: name }), el('td', { class: 'num', text: String(n) }),
        el('td', { class: 'num', text: n ? fmt(abs / n, d + 1) : '–' }),
        el('td', { class: 'num', text: n ? signed(sum / n, d + 1) : '–' }),
        el('td', { class: 'num', text: n ? fmt(max, d + 1) : '–' }));
    }));
  }

  // ---- pipeline ------------------------------------------------------------
  const NODE_W = 190, NODE_H = 88, COL_GAP = 84, ROW_GAP = 28, PAD = 20, LANE = 22;

  // Layered layout: a node's column is its longest path from a source.
  // Edges between neighbouring columns are drawn straight across; longer
  // ones arc below the nodes, each in a lane of its own where they overlap.
  function layout(p) {
    const ids = p.nodes.map((n) => n.id);
    const real = p.edges.filter((e) => !e.dead_letter);
    const depth = Object.fromEntries(ids.map((id) => [id, 0]));
    for (let k = 0; k < ids.length; k++) {
      for (const e of real) depth[e.to] = Math.max(depth[e.to], depth[e.from] + 1);
    }
    const cols = [];
    for (const id of ids) (cols[depth[id]] = cols[depth[id]] || []).push(id);
    const row = {};
    cols.forEach((col, ci) => {
      if (ci > 0) {
        // Order by the mean row of the inputs: fewer crossing edges.
        const bary = (id) => {
          const ins = real.filter((e) => e.to === id).map((e) => row[e.from]).filter((r) => r !== undefined);
          return ins.length ? ins.reduce((a, b) => a + b, 0) / ins.length : 0;
        };
        col.sort((a, b) => bary(a) - bary(b));
      }
      col.forEach((id, ri) => { row[id] = ri; });
    });
    const tallest = Math.max(...cols.map((c) => c.length));
    const pos = {};
    cols.forEach((col, ci) => {
      const offset = ((tallest - col.length) * (NODE_H + ROW_GAP)) / 2;
      col.forEach((id, ri) => {
        pos[id] = { x: PAD + ci * (NODE_W + COL_GAP), y: PAD + offset + ri * (NODE_H + ROW_GAP), col: ci };
      });
    });
    const long = p.edges
      .filter((e) => pos[e.from] && pos[e.to] && (e.dead_letter || depth[e.to] - depth[e.from] !== 1))
      .sort((a, b) => (depth[a.to] - depth[a.from]) - (depth[b.to] - depth[b.from]));
    const lanes = [];
    const lane = new Map();
    for (const e of long) {
      const a = Math.min(depth[e.from], depth[e.to]), b = Math.max(depth[e.from], depth[e.to]);
      let l = 0;
      while ((lanes[l] || []).some(([x, y]) => a < y && x < b)) l++;
      (lanes[l] = lanes[l] || []).push([a, b]);
      lane.set(e, l);
    }
    const nodesHeight = tallest * NODE_H + (tallest - 1) * ROW_GAP;
    return {
      pos,
      lane,
      width: PAD * 2 + cols.length * NODE_W + (cols.length - 1) * COL_GAP,
      height: PAD * 2 + nodesHeight + (lanes.length ? 30 + lanes.length * LANE : 0),
    };
  }

  function rateText(r) {
    return num(r) ? (r >= 100 ? fmt(r, 0) : fmt(r, 1)) + '/s' : '…';
  }

  function renderPipeline(p) {
    $('p-name').textContent = p.name + (p.failure ? ' — ' + p.failure : '');
    const showDead = $('p-dead').checked;
    const edges = p.edges.filter((e) => showDead || !e.dead_letter);
    const { pos, lane, width, height } = layout({ nodes: p.nodes, edges });
    const g = $('p-graph');
    g.setAttribute('viewBox', `0 0 ${width} ${height}`);
    g.style.maxWidth = width + 'px';
    const parts = [];
    const defs = svg('defs');
    const marker = svg('marker', { id: 'p-arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerUnits: 'userSpaceOnUse', markerWidth: 11, markerHeight: 11, orient: 'auto' });
    marker.append(svg('path', { d: 'M0 0L10 5L0 10z', class: 'arrowhead' }));
    defs.append(marker);
    parts.push(defs);
    const labels = [];
    // Where arcs leave and reach a node's bottom edge, spread out.
    const slots = new Map();
    const slot = (id, side) => {
      const k = id + side;
      const n = slots.get(k) || 0;
      slots.set(k, n + 1);
      return n;
    };
    for (const e of edges) {
      const a = pos[e.from], b = pos[e.to];
      if (!a || !b) continue;
      const fill = e.capacity ? e.depth / e.capacity : 0;
      const cls = e.dead_letter ? 'dl' : fill >= 0.9 ? 'bad' : fill >= 0.5 ? 'warn' : 'ok';
      const w = e.dead_letter ? 1.2 : 1.5 + Math.min(5, Math.log10(1 + (e.rate || 0)) * 1.6);
      let d, lx, ly;
      if (lane.has(e)) {
        const bottom = Math.max(a.y, b.y) + NODE_H;
        const sx = a.x + NODE_W - 24 - slot(e.from, 'out') * 16, sy = a.y + NODE_H;
        const tx = b.x + 24 + slot(e.to, 'in') * 16, ty = b.y + NODE_H + 2;
        const dip = bottom + 24 + lane.get(e) * LANE;
        d = `M${sx} ${sy}C${sx} ${dip} ${sx} ${dip} ${(sx + tx) / 2} ${dip}S${tx} ${dip} ${tx} ${ty}`;
        lx = (sx + tx) / 2;
        ly = dip - 7;
      } else {
        const x1 = a.x + NODE_W, y1 = a.y + NODE_H / 2, x2 = b.x - 2, y2 = b.y + NODE_H / 2;
        const dx = Math.max(30, (x2 - x1) / 2);
        d = `M${x1} ${y1}C${x1 + dx} ${y1} ${x2 - dx} ${y2} ${x2} ${y2}`;
        lx = (x1 + x2) / 2;
        ly = (y1 + y2) / 2 - 12;
      }
      parts.push(svg('path', { d, class: 'edge ' + cls, 'stroke-width': w.toFixed(1), 'marker-end': 'url(#p-arrow)' }));
      if (!e.dead_letter) {
        const text = `${e.depth}/${e.capacity} · ${rateText(e.rate)}` + (e.discarded ? ` · ${e.discarded} dropped` : '');
        labels.push({ x: lx, y: ly, text });
      }
    }
    for (const l of labels) {
      const w = l.text.length * 6.1 + 10;
      parts.push(svg('rect', { x: l.x - w / 2, y: l.y - 9, width: w, height: 16, rx: 4, class: 'e-label-bg' }));
      parts.push(svg('text', { x: l.x, y: l.y + 3, 'text-anchor': 'middle', class: 'e-label' }, l.text));
    }
    for (const n of p.nodes) {
      const at = pos[n.id];
      const grp = svg('g', { class: 'node ' + n.kind, transform: `translate(${at.x},${at.y})`, 'data-node': n.id });
      grp.append(svg('rect', { width: NODE_W, height: NODE_H, rx: 10 }));
      grp.append(svg('rect', { width: 5, height: NODE_H - 16, x: 0, y: 8, rx: 2, class: 'kind-bar' }));
      grp.append(svg('text', { x: 16, y: 22, class: 'n-id' }, n.id));
      grp.append(svg('text', { x: 16, y: 40, class: 'n-type' }, `${n.type} · ${n.kind}`));
      grp.append(svg('circle', { cx: NODE_W - 16, cy: 17, r: 5, class: 'state ' + n.state }));
      grp.append(svg('text', { x: NODE_W - 26, y: 21, 'text-anchor': 'end', class: 'n-type' }, n.state));
      const io = n.kind === 'source' ? `out ${rateText(n.rate_out)}`
        : n.kind === 'sink' ? `in ${rateText(n.rate_in)}`
          : `in ${rateText(n.rate_in)} · out ${rateText(n.rate_out)}`;
      grp.append(svg('text', { x: 16, y: 60, class: 'n-rate' }, io));
      const trouble = [n.errors ? n.errors + ' errors' : '', n.dead_letters ? n.dead_letters + ' dead' : '', n.restarts ? n.restarts + ' restarts' : '']
        .filter(Boolean).join(' · ');
      if (trouble) grp.append(svg('text', { x: 16, y: 78, class: 'n-err' }, trouble));
      parts.push(grp);
    }
    g.replaceChildren(...parts);
    $('p-table').querySelector('tbody').replaceChildren(...p.nodes.map((n) => el('tr', {},
      el('td', { text: n.id }), el('td', { text: n.type }), el('td', {}, el('span', { class: 'badge ' + (n.state === 'running' ? 'ok' : 'warning'), text: n.state })),
      el('td', { class: 'num', text: rateText(n.rate_in) }), el('td', { class: 'num', text: rateText(n.rate_out) }),
      el('td', { class: 'num', text: n.received.toLocaleString() }), el('td', { class: 'num', text: n.sent.toLocaleString() }),
      el('td', { class: 'num', text: String(n.errors) }), el('td', { class: 'num', text: String(n.dead_letters) }),
      el('td', { class: 'num', text: String(n.restarts) }))));
  }

  let lastPipeline = null;
  async function refreshPipeline() {
    const p = await poll('/api/pipeline');
    if (p) { lastPipeline = p; renderPipeline(p); }
  }

  // ---- tabs ----------------------------------------------------------------
  let tab = 'live';
  let historyLoaded = false;
  function show(name) {
    if (!['live', 'predict', 'history', 'pipeline'].includes(name)) name = 'live';
    tab = name;
    for (const b of document.querySelectorAll('.tab-btn')) b.setAttribute('aria-selected', String(b.dataset.tab === name));
    for (const v of document.querySelectorAll('.view')) v.hidden = v.id !== 'view-' + name;
    if (name === 'live') for (const c of liveCharts) c.invalidate();
    if (name === 'history') {
      if (!historyLoaded) { historyLoaded = true; applyPreset(15); } else for (const c of historyCharts) c.invalidate();
    }
    if (name === 'pipeline') refreshPipeline();
    if (location.hash !== '#' + name) history.replaceState(null, '', '#' + name);
  }

  // ---- start ---------------------------------------------------------------
  async function init() {
    liveCharts = CHARTS.map((s) => new Chart(s, $('live-charts'), LIVE_WINDOW_MS));
    historyCharts = CHARTS.filter((s) => s.id !== 'flow').map((s) => new Chart(s, $('history-charts'), null));
    for (const b of document.querySelectorAll('.tab-btn')) b.addEventListener('click', () => show(b.dataset.tab));
    window.addEventListener('hashchange', () => show(location.hash.slice(1)));
    $('predict-form').addEventListener('submit', predict);
    $('example-btn').addEventListener('click', () => { fillForm(EXAMPLE); predict(); });
    $('copy-live-btn').addEventListener('click', () => {
      const s = selected && store.get(selected);
      if (s && s.last) { fillForm(s.last.inputs); predict(); } else toast('No live values yet.', 3000);
    });
    $('f-token').value = token;
    $('f-token').addEventListener('change', (e) => {
      token = e.target.value.trim();
      sessionStorage.setItem('twinflow-token', token);
    });
    for (const b of document.querySelectorAll('#h-presets button')) b.addEventListener('click', () => applyPreset(Number(b.dataset.min)));
    $('h-load').addEventListener('click', () => {
      for (const b of document.querySelectorAll('#h-presets button')) b.classList.remove('on');
      loadHistory();
    });
    $('h-unit').addEventListener('change', loadHistory);
    for (const id of ['h-from', 'h-to']) $(id).addEventListener('change', updateCsvLink);
    $('p-dead').addEventListener('change', () => { if (lastPipeline) renderPipeline(lastPipeline); });

    fillForm(EXAMPLE);
    show(location.hash.slice(1) || 'live');
    connect();
    await Promise.all([refreshHealth(), refreshUnits(), refreshAlerts(), (async () => {
      const d = await poll('/api/drift');
      if (d) for (const r of d.reports) unitStore(r.unit).drift = r;
      renderDrift();
    })(), predict()]);
    renderChips();
    setInterval(() => { if (kpiDirty && tab === 'live') renderKpis(); }, 250);
    setInterval(refreshHealth, 5000);
    setInterval(refreshUnits, 10000);
    setInterval(refreshAlerts, 15000);
    setInterval(() => { if (tab === 'pipeline' && !document.hidden) refreshPipeline(); }, 2000);
    T.ready = true;
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
