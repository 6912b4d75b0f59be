/* flowsweep dashboard: a static page on the REST API (no build step). Hash routes:
 *   #/                 sweeps (live over Server-Sent Events)     #/sweeps/ID   one sweep and its figures
 *   #/results?…        result rows (the API's filters)           #/points/ID   one point
 *   #/submit           sweep editor (JSON/YAML, dry run)         #/compare?…   several sweeps overlaid
 * Figures draw what GET /sweeps/{id}/curves, /summary and /phase compute on the server (the PNG plots too). */
"use strict";

// ------------------------------------------------------------------------------------------ helpers
const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "html") el.innerHTML = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

class ApiError extends Error {
  constructor(status, detail) {
    super(detailText(detail) || `HTTP ${status}`);
    this.status = status;
    this.detail = detail;
  }
}

function detailText(detail) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) return detail.map(d => (d.field ? `${d.field}: ` : "") + (d.msg || "")).join("; ");
  return detail ? JSON.stringify(detail) : "";
}

function token() { return localStorage.getItem("flowsweep.token") || ""; }

async function api(method, path, body) {
  const headers = {Accept: "application/json"};
  if (token()) headers.Authorization = `Bearer ${token()}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body)});
  if (r.status === 204) return null;
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  if (!r.ok) {
    if (r.status === 401) {
      const t = prompt("This service needs its API token (FLOWSWEEP_API_TOKEN) for changes:", token());
      if (t !== null) localStorage.setItem("flowsweep.token", t.trim());
    }
    throw new ApiError(r.status, data ? data.detail : r.statusText);
  }
  return data;
}
const get = path => api("GET", path);

function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) p.set(k, v);
  return p.toString();
}

function toast(msg, bad = false) {
  const el = h("div", {class: bad ? "bad" : ""}, msg);
  $("#toast").append(el);
  setTimeout(() => el.remove(), bad ? 8000 : 4000);
}

const num = (v, d = 4) => (v === null || v === undefined || Number.isNaN(v)) ? "—"
  : (typeof v === "number" ? (Number.isInteger(v) ? String(v) : Number(v.toPrecision(d)).toString()) : String(v));

function secs(s) {
  if (s === null || s === undefined || !isFinite(s)) return "—";
  if (s > 0 && s < 1) return "< 1s";
  s = Math.round(s);
  const hh = Math.floor(s / 3600), mm = Math.floor((s % 3600) / 60), ss = s % 60;
  return hh ? `${hh}h ${String(mm).padStart(2, "0")}m` : mm ? `${mm}m ${String(ss).padStart(2, "0")}s` : `${ss}s`;
}

function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return d.toLocaleString(undefined, {year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit"});
}

const badge = st => h("span", {class: `badge st-${st}`}, st);
const tagList = tags => (tags || []).map(t => h("a", {class: "tag", href: `#/?tag=${encodeURIComponent(t)}`}, t));

function progressBar(p, status) {
  const pct = Math.round(100 * (p || 0));
  return h("div", {class: "progress-cell"},
    h("div", {class: "bar" + (status === "done" ? " done" : ""), role: "progressbar", "aria-valuemin": 0,
              "aria-valuemax": 100, "aria-valuenow": pct, "aria-label": "progress"},
      h("span", {style: `width:${pct}%`})),
    h("span", {class: "pct"}, `${pct}%`));
}

const TERMINAL = ["done", "failed", "cancelled"];
const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const rgba = (hex, a) => `rgba(${parseInt(hex.slice(1, 3), 16)},${parseInt(hex.slice(3, 5), 16)},${parseInt(hex.slice(5, 7), 16)},${a})`;

// ------------------------------------------------------------------------------------------ router
let cleanups = [];
const onLeave = fn => cleanups.push(fn);

function hashParts() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, query] = raw.split("?");
  return {path, params: new URLSearchParams(query || "")};
}

const ROUTES = [
  [/^\/$/, pageSweeps, "sweeps"],
  [/^\/sweeps\/(\d+)$/, pageSweep, "sweeps"],
  [/^\/results$/, pageResults, "results"],
  [/^\/points\/(\d+)$/, pagePoint, "results"],
  [/^\/submit$/, pageSubmit, "submit"],
  [/^\/compare$/, pageCompare, "compare"],
];

async function route() {
  cleanups.forEach(fn => { try { fn(); } catch (e) { /* already gone */ } });
  cleanups = [];
  const {path, params} = hashParts();
  const main = $("#main");
  if (window.Plotly) $$(".js-plotly-plot", main).forEach(el => Plotly.purge(el));
  main.replaceChildren();
  for (const [re, page, nav] of ROUTES) {
    const m = path.match(re);
    if (!m) continue;
    $$("nav a[data-nav]").forEach(a => (a.dataset.nav === nav ? a.setAttribute("aria-current", "page")
                                                              : a.removeAttribute("aria-current")));
    try {
      await page(main, params, ...m.slice(1));
    } catch (e) {
      main.append(h("p", {class: "errors", role: "alert"}, e instanceof ApiError ? e.message : `error: ${e}`));
      console.error(e);
    }
    return;
  }
  main.append(h("h1", {}, "Not found"), h("p", {}, h("a", {href: "#/"}, "Back to the sweeps")));
}

// ------------------------------------------------------------------------------------------ plots
const PLOT_CONFIG = {responsive: true, displaylogo: false, modeBarButtonsToRemove: ["lasso2d", "select2d"]};

function figure(id, title, note, axes = ["y"]) {
  // Log/linear toggles are page buttons (keyboard usable), synced with the plot's layout by draw().
  const toggle = axis => h("button", {type: "button", class: "small", "data-axis": axis, "aria-pressed": "false",
    onclick: e => {
      const el = document.getElementById(id);
      const log = e.currentTarget.getAttribute("aria-pressed") !== "true";
      Plotly.relayout(el, {[`${axis}axis.type`]: log ? "log" : "linear"});
      e.currentTarget.setAttribute("aria-pressed", String(log));
    }}, `log ${axis}`);
  return h("section", {class: "figure", "aria-label": title},
    h("div", {class: "figure-head"}, h("h3", {}, title), h("div", {class: "actions"}, ...axes.map(toggle))),
    h("div", {class: "plot", id}), note ? h("p", {class: "note"}, note) : null);
}

function draw(id, traces, layout) {
  const el = document.getElementById(id);
  if (!el || !window.Plotly) return;
  const base = {margin: {l: 64, r: 16, t: 16, b: 48}, hovermode: "closest",
                legend: {orientation: "h", x: 0, y: 1.02, xanchor: "left", yanchor: "bottom", font: {size: 11}}, font: {size: 12},
                xaxis: {automargin: true}, yaxis: {automargin: true, exponentformat: "power"}};
  Plotly.newPlot(el, traces, {...base, ...layout,
    xaxis: {...base.xaxis, ...(layout.xaxis || {})}, yaxis: {...base.yaxis, ...(layout.yaxis || {})}}, PLOT_CONFIG);
  const section = el.closest(".figure");
  for (const b of section ? $$("button[data-axis]", section) : []) {
    b.setAttribute("aria-pressed", String(el.layout[`${b.dataset.axis}axis`].type === "log"));
  }
}

function emptyPlot(id, message) {
  const el = document.getElementById(id);
  if (el) el.replaceChildren(h("p", {class: "muted", style: "padding:2em 1em"}, message));
}

const groupLabel = key => Object.entries(key).map(([k, v]) => `${k}=${num(v)}`).join(", ") || "all points";
const iterations = (g) => g.t.map(t => (g.eta ? Math.round(t / g.eta) : t));

function bandTraces(x, stats, color, name, group, dash, showBand) {
  const out = [];
  if (showBand && stats.std.some(v => v !== null)) {
    const hi = stats.mean.map((m, i) => (m === null ? null : m + (stats.std[i] || 0)));
    // The lower edge stays above mean/100 so that the band still shows on a log axis (errors are > 0).
    const lo = stats.mean.map((m, i) => (m === null ? null : Math.max(m - (stats.std[i] || 0), m / 100)));
    out.push({x: x.concat([...x].reverse()), y: hi.concat([...lo].reverse()), fill: "toself", type: "scatter",
      mode: "lines", line: {width: 0}, fillcolor: rgba(color, 0.16), hoverinfo: "skip", showlegend: false,
      legendgroup: group, name: `${name} ±1 std`});
  }
  out.push({x, y: stats.mean, type: "scatter", mode: "lines", name, legendgroup: group,
    line: {color, dash: dash || "solid", width: 2},
    customdata: stats.std.map((s, i) => [s, stats.n[i]]),
    hovertemplate: `${name}<br>%{x}: %{y:.4g} (std %{customdata[0]:.2g}, n %{customdata[1]})<extra></extra>`});
  return out;
}

function errorFigure(id, groups) {
  const traces = [];
  groups.forEach((g, i) => {
    const c = COLORS[i % COLORS.length], label = groupLabel(g.key), x = iterations(g);
    traces.push(...bandTraces(x, g.error, c, `${label} · two-layer`, label, "solid", g.n > 1));
    if (g.error_linear) traces.push(...bandTraces(x, g.error_linear, c, `${label} · one-layer`, label, "dash", false));
  });
  draw(id, traces, {xaxis: {title: {text: groups[0] && groups[0].eta ? "iterations" : "t"}},
    yaxis: {title: {text: "‖Y − X(t)‖ / ‖Y‖"}, type: "log"}});
}

function singularValuesFigure(id, groups) {
  const traces = [];
  groups.forEach((g, i) => {
    if (!g.singular_values) return;
    const c = COLORS[i % COLORS.length], label = groupLabel(g.key), x = iterations(g);
    const r = g.singular_values[0] ? g.singular_values[0].length : 0;
    for (let j = 0; j < r; j++) {
      traces.push({x, y: g.singular_values.map(row => (row ? row[j] : null)), type: "scatter", mode: "lines",
        name: j === 0 ? `${label} (seed ${g.representative.seed})` : `${label} σ${j + 1}`, legendgroup: label,
        showlegend: j === 0, line: {color: c, width: 1.6},
        hovertemplate: `${label}, σ${j + 1}<br>%{x}: %{y:.4g}<extra></extra>`});
    }
  });
  draw(id, traces, {xaxis: {title: {text: "iterations"}}, yaxis: {title: {text: "singular values of X(t)"}}});
}

function regularizedFigure(id, groups) {
  const traces = [];
  groups.filter(g => g.error_regularized_fit).forEach((g, i) => {
    const c = COLORS[i % COLORS.length], label = groupLabel(g.key), x = iterations(g);
    const lam = g.lambda0_fit_mean !== null ? `, λ₀ fit ${num(g.lambda0_fit_mean)}` : "";
    traces.push(...bandTraces(x, g.error, c, `${label} · general Q₀ (13)`, label, "dash", false));
    traces.push(...bandTraces(x, g.error_regularized_fit, c, `${label} · regularized Λ=λ₀I (19)${lam}`, label, "solid", false));
  });
  draw(id, traces, {xaxis: {title: {text: "iterations"}}, yaxis: {title: {text: "‖Y − X(t)‖ / ‖Y‖"}, type: "log"}});
}

function metricFigure(id, rows, metric, x, seriesKey, reference, ytitle) {
  // rows: /summary rows; one trace per value of seriesKey, mean ± std over seeds against x.
  const series = new Map();
  for (const r of rows) {
    const key = !seriesKey ? metric : seriesKey === "sweep" ? r.sweep : `${seriesKey}=${num(r[seriesKey])}`;
    if (!series.has(key)) series.set(key, []);
    series.get(key).push(r);
  }
  const traces = [];
  let i = 0;
  for (const [name, rs] of series) {
    rs.sort((a, b) => a[x] - b[x]);
    traces.push({x: rs.map(r => r[x]), y: rs.map(r => r[`${metric}_mean`]), name, type: "scatter", mode: "lines+markers",
      error_y: {type: "data", array: rs.map(r => r[`${metric}_std`] || 0), visible: true},
      line: {color: COLORS[i++ % COLORS.length]}, customdata: rs.map(r => r.count),
      hovertemplate: `${name}<br>${x} %{x}: %{y:.4g} (n %{customdata})<extra></extra>`});
  }
  const xs = rows.map(r => r[x]).filter(v => v !== null);
  const logx = xs.length && xs.every(v => v > 0) && Math.max(...xs) / Math.min(...xs) >= 20;
  const shapes = reference === undefined ? [] : [{type: "line", xref: "paper", x0: 0, x1: 1, y0: reference, y1: reference,
    line: {dash: "dash", color: "#555", width: 1}}];
  draw(id, traces, {xaxis: {title: {text: x}, type: logx ? "log" : "linear"}, yaxis: {title: {text: ytitle || metric}},
    shapes});
}

function plateauFigure(id, groups, seriesKey) {
  // The plateau of each point's curve, mean ± std per group, computed by the server (GET /sweeps/{id}/curves).
  const rows = groups.map(g => ({...g.key, depth: g.key.depth, plateau_mean: g.plateau_mean,
    plateau_std: g.plateau_std, count: g.plateau_n}));
  metricFigure(id, rows, "plateau", "depth", seriesKey, undefined, "plateau: first t with e(t) ≤ 0.9·e(0)");
}

function phaseFigure(id, ph) {
  // Table 2 as a phase diagram: GET /sweeps/{id}/phase's cells, coloured by log2(median rate_fit / 1).
  const cells = ph.cells, ref = ph.reference;
  const ratio = cells.map(c => (c.median === null || c.median <= 0 ? null : Math.log2(c.median / ref)));
  const lim = Math.max(0.5, ...ratio.filter(v => v !== null).map(Math.abs));
  const hover = cells.map(c => [num(c.median), c.n, c.points, c.above === null ? "—" : `${Math.round(100 * c.above)}%`]);
  const traces = [{x: cells.map(c => c.sigma_min), y: cells.map(c => c.lambda0), type: "scatter", mode: "markers",
    name: `median ${ph.metric} per cell`, customdata: hover,
    marker: {symbol: "square", size: 22, color: ratio, cmin: -lim, cmax: lim, colorscale: "RdBu",  // Plotly's RdBu: blue low (slower), red high (faster)
     
      colorbar: {title: {text: `log₂(median ${ph.metric} / ${ref})`, side: "right"}, thickness: 14}},
    hovertemplate: `σ %{x:.4g}, λ₀ %{y:.4g}<br>median ${ph.metric} %{customdata[0]} (n %{customdata[1]} of %{customdata[2]})` +
      `<br>faster than ${ref}: %{customdata[3]}<extra></extra>`}];
  const mixed = cells.filter(c => c.above !== null && c.above > 0 && c.above < 1);
  if (mixed.length) traces.push({x: mixed.map(c => c.sigma_min), y: mixed.map(c => c.lambda0), type: "scatter",
    mode: "markers", name: "seeds on both sides of rate 1", hoverinfo: "skip",
    marker: {symbol: "circle-open", size: 16, color: "#000", line: {width: 1.5}}});
  const empty = cells.filter(c => c.n === 0);
  if (empty.length) traces.push({x: empty.map(c => c.sigma_min), y: empty.map(c => c.lambda0), type: "scatter",
    mode: "markers", name: `no ${ph.metric} (null)`, marker: {symbol: "x", size: 10, color: "#444"}});
  const b = ph.boundary;
  traces.push({x: b.sigma_min, y: b.lambda0, type: "scatter", mode: "lines", name: "4σ² + λ₀² = 1",
    legendgroup: "boundary", line: {color: "#000", dash: "dash", width: 1.5}, hoverinfo: "skip"});
  if (cells.some(c => c.lambda0 < 0)) traces.push({x: b.sigma_min, y: b.lambda0.map(v => -v), type: "scatter",
    mode: "lines", name: "4σ² + λ₀² = 1 (λ₀ < 0)", legendgroup: "boundary", showlegend: false,
    line: {color: "#000", dash: "dash", width: 1.5}, hoverinfo: "skip"});
  draw(id, traces, {xaxis: {title: {text: "σ = σ_min(Y)"}}, yaxis: {title: {text: "λ₀"}}});
}

// ------------------------------------------------------------------------------------------ sweeps
async function pageSweeps(main, params) {
  const name = params.get("name") || "", tag = params.get("tag") || "";
  const tbody = h("tbody");
  const count = h("span", {class: "muted"});
  const form = h("form", {class: "row", role: "search", onsubmit: e => {
    e.preventDefault();
    location.hash = "#/?" + qs({name: $("#f-name").value.trim(), tag: $("#f-tag").value.trim()});
  }},
    h("label", {}, "Name contains", h("input", {id: "f-name", type: "search", value: name, placeholder: "e.g. fig1"})),
    h("label", {}, "Tag", h("input", {id: "f-tag", type: "search", value: tag, placeholder: "e.g. paper"})),
    h("button", {type: "submit"}, "Filter"),
    (name || tag) ? h("a", {href: "#/"}, "clear") : null);
  main.append(h("h1", {}, "Sweeps ", count), form,
    h("div", {class: "table-wrap", style: "margin-top:.8em"}, h("table", {id: "sweeps"},
      h("thead", {}, h("tr", {}, h("th", {class: "num"}, "id"), h("th", {}, "name"), h("th", {}, "status"),
        h("th", {}, "progress"), h("th", {}, "ETA"), h("th", {class: "num"}, "points"),
        h("th", {class: "hide-narrow"}, "tags"), h("th", {class: "hide-narrow"}, "created"), h("th", {}, "actions"))),
      tbody)));

  function render(body) {
    count.textContent = `(${body.count})`;
    if (!body.data.length) {
      tbody.replaceChildren(h("tr", {}, h("td", {colspan: 9, class: "muted"},
        name || tag ? "No sweep matches." : "No sweeps yet: ", name || tag ? null : h("a", {href: "#/submit"}, "submit one"))));
      return;
    }
    tbody.replaceChildren(...body.data.map(s => {
      const active = !TERMINAL.includes(s.status);
      return h("tr", {"data-id": s.id},
        h("td", {class: "num"}, s.id),
        h("td", {}, h("a", {href: `#/sweeps/${s.id}`}, s.name)),
        h("td", {}, badge(s.status)),
        h("td", {}, progressBar(s.progress, s.status)),
        h("td", {}, active ? secs(s.eta_seconds) : "—"),
        h("td", {class: "num"}, s.n_points),
        h("td", {class: "hide-narrow"}, tagList(s.tags)),
        h("td", {class: "hide-narrow"}, when(s.created_at)),
        h("td", {}, h("div", {class: "actions"},
          active ? h("button", {class: "small", onclick: () => cancelSweep(s)}, "Cancel") : null,
          !active ? h("button", {class: "small danger", onclick: () => deleteSweep(s)}, "Delete") : null)));
    }));
  }

  render(await get("/sweeps?" + qs({limit: 50, name, tag})));
  const es = new EventSource("/sweeps/events?" + qs({limit: 50, name, tag}));
  es.onmessage = e => render(JSON.parse(e.data));
  onLeave(() => es.close());
}

async function cancelSweep(s) {
  try {
    await api("POST", `/sweeps/${s.id}/cancel`);
    toast(`Sweep ${s.id} cancelled`);
  } catch (e) { toast(e.message, true); }
}

async function deleteSweep(s, then) {
  if (!confirm(`Delete sweep ${s.id} "${s.name}" with its results? Other sweeps keep the points they reused.`)) return;
  try {
    await api("DELETE", `/sweeps/${s.id}`);
    toast(`Sweep ${s.id} deleted`);
    if (then) then(); else route();
  } catch (e) { toast(e.message, true); }
}

// ------------------------------------------------------------------------------------------ one sweep
async function pageSweep(main, params, id) {
  let sweep = await get(`/sweeps/${id}`);
  const head = h("div");
  const figs = h("div", {class: "grid", id: "figures"});
  main.append(head, h("h2", {}, "Figures"), h("p", {class: "muted"},
    "Mean over seeds with a ±1 std band (two-layer solid, one-layer dashed). Click a legend entry to hide a group, " +
    "double-click to show it alone; “log x/y” switch an axis between linear and log."), figs);

  function renderHead(s) {
    const active = !TERMINAL.includes(s.status);
    const c = s.counts;
    const started = s.started_at ? new Date(s.started_at) : null, finished = s.finished_at ? new Date(s.finished_at) : null;
    head.replaceChildren(
      h("h1", {}, s.name, badge(s.status)),
      h("div", {class: "row"}, h("div", {style: "flex:1 1 260px"}, progressBar(s.progress, s.status)),
        active ? h("span", {}, `ETA ${secs(s.eta_seconds)}`) : null,
        h("div", {class: "actions"},
          active ? h("button", {class: "danger", id: "cancel", onclick: () => cancelSweep(s)}, "Cancel sweep") : null,
          !active ? h("button", {class: "danger", onclick: () => deleteSweep(s, () => { location.hash = "#/"; })}, "Delete") : null,
          h("a", {href: `#/results?sweep_id=${s.id}`}, "Results table"),
          h("a", {href: `/results?${qs({sweep_id: s.id, format: "csv"})}`, download: `sweep-${s.id}.csv`}, "CSV"),
          h("a", {href: `/results?${qs({sweep_id: s.id, format: "parquet"})}`, download: `sweep-${s.id}.parquet`}, "Parquet"),
          h("a", {href: `#/compare?ids=${s.id}`}, "Compare"))),
      h("div", {class: "cards", style: "margin-top:1em"},
        h("div", {class: "card"}, h("h2", {style: "margin-top:0"}, "Points"), h("dl", {class: "kv", id: "counts"},
          h("dt", {}, "total"), h("dd", {}, s.n_points),
          ...["done", "cached", "running", "pending", "failed", "diverged"].flatMap(k => [h("dt", {}, k), h("dd", {"data-count": k}, c[k])]))),
        h("div", {class: "card"}, h("h2", {style: "margin-top:0"}, "Timing"), h("dl", {class: "kv"},
          h("dt", {}, "created"), h("dd", {}, when(s.created_at)),
          h("dt", {}, "started"), h("dd", {}, when(s.started_at)),
          h("dt", {}, "finished"), h("dd", {}, when(s.finished_at)),
          h("dt", {}, "duration"), h("dd", {}, started ? secs(((finished || new Date()) - started) / 1000) : "—"),
          s.error ? h("dt", {}, "error") : null, s.error ? h("dd", {class: "errors"}, s.error) : null)),
        labelsCard(s)),
      h("details", {style: "margin-top:1em"}, h("summary", {}, "Spec"), h("pre", {id: "spec"}, JSON.stringify(s.spec, null, 2))));
  }

  renderHead(sweep);
  await drawSweepFigures(figs, sweep);
  if (!TERMINAL.includes(sweep.status)) {
    const es = new EventSource(`/sweeps/${id}/events`);
    es.onmessage = e => {
      const s = JSON.parse(e.data);
      const focused = document.activeElement && document.activeElement.id;
      // Keep what the user is typing in the labels card.
      if (!head.contains(document.activeElement) || focused === "cancel") renderHead(s);
      sweep = s;
    };
    es.addEventListener("end", async e => {
      es.close();
      const s = JSON.parse(e.data);
      if (!s.deleted) { renderHead(s); await drawSweepFigures(figs, s); }
    });
    onLeave(() => es.close());
  }
}

function labelsCard(s) {
  const status = h("span", {class: "muted", role: "status"});
  return h("form", {class: "card", onsubmit: async e => {
    e.preventDefault();
    const body = {name: $("#s-name").value.trim(), notes: $("#s-notes").value,
                  tags: $("#s-tags").value.split(",").map(t => t.trim()).filter(Boolean)};
    try {
      await api("PATCH", `/sweeps/${s.id}`, body);
      status.textContent = "saved";
      toast("Saved");
    } catch (err) { status.textContent = err.message; }
  }},
    h("h2", {style: "margin-top:0"}, "Labels"),
    h("label", {}, "Name", h("input", {id: "s-name", value: s.name, required: true, maxlength: 200})),
    h("label", {}, "Tags (comma separated)", h("input", {id: "s-tags", value: (s.tags || []).join(", ")})),
    h("label", {}, "Notes", h("textarea", {id: "s-notes", rows: 2}, s.notes || "")),
    h("div", {class: "row", style: "margin-top:.4em"}, h("button", {type: "submit"}, "Save"), status));
}

function varying(spec) {
  // Axes with more than one value (besides seed), in the paper's order.
  const axes = spec.axes || {};
  const n = v => Array.isArray(v) ? v.length : v && typeof v === "object" ? (v.range ? v.range[1] - v.range[0] : (v.linspace || v.logspace || [0, 0, 1])[2]) : 1;
  return Object.keys(axes).filter(a => a !== "seed" && n(axes[a]) > 1);
}

async function drawSweepFigures(figs, s) {
  if (window.Plotly) $$(".js-plotly-plot", figs).forEach(el => Plotly.purge(el));
  const vary = varying(s.spec);
  const fit = !!s.spec.fit_lambda0;
  const old = document.getElementById("figure-notes");
  if (old) old.remove();
  const notes = h("p", {class: "muted", id: "figure-notes"});
  const done = s.counts.done + s.counts.cached;
  if (!done) {
    figs.replaceChildren(h("p", {class: "muted"}, "No finished points yet: the figures appear when the sweep has results."));
    return;
  }
  // Only the figures this sweep can make; the others are named in one line below them.
  const curves = await get(`/sweeps/${s.id}/curves`);
  const x = vary.find(a => a !== "k") || vary[0] || "init_scale";
  const other = vary.filter(a => a !== x)[0];
  const speed = await get(`/sweeps/${s.id}/summary?` + qs({by: [x, other].filter(Boolean).join(",")}));
  const hasReg = curves.groups.some(g => g.error_regularized_fit);
  const hasSpeed = speed.data.some(r => r.speedup_mean !== null);
  // The deep model: time to tolerance and plateau against depth, one series per other varying axis.
  const deep = s.spec.model === "deep";
  const depthOther = vary.filter(a => a !== "depth")[0];
  const depthRows = deep ? (await get(`/sweeps/${s.id}/summary?` + qs({by: ["depth", depthOther].filter(Boolean).join(",")}))).data : [];
  const byDepth = !deep ? null : curves.by.includes("depth") ? curves
    : await get(`/sweeps/${s.id}/curves?` + qs({by: ["depth", ...curves.by].join(",")}));
  // Table 2: λ₀ varies and σ_min(Y) is known (a fixed spectrum, or data_scale as an axis).
  const phase = vary.includes("lambda0") && (s.spec.y_singular_values || vary.includes("data_scale"))
    ? await get(`/sweeps/${s.id}/phase`) : null;
  const missing = [];
  figs.replaceChildren();
  if (curves.groups.length) {
    figs.append(figure("fig-error", "Fig. 1 · reconstruction error", "two-layer mean ± std over seeds (solid), one-layer model (dashed)"),
                figure("fig-sv", "Fig. 1 · singular values of X(t)", "one seed per group (the lowest)"));
  } else missing.push("no done point has curves");
  if (hasReg) figs.append(figure("fig-regularized", "Fig. 2 · regularized fit", "general flow (13), dashed, against the regularized flow (19) at the fitted λ₀, solid"));
  else missing.push("Fig. 2 and λ₀ against k need \"fit_lambda0\": true");
  if (fit) figs.append(figure("fig-lambda0", "λ₀ fit against k", "mean ± std over seeds", ["x"]));
  if (hasSpeed) figs.append(figure("fig-speedup", "Speedup over the one-layer model", "time_to_tol_linear / time_to_tol; 1 (dashed) = no acceleration", ["x", "y"]));
  else missing.push("speedup is null: no point reached tol within the horizon");
  if (phase && phase.cells.length) figs.append(figure("fig-phase", "Table 2 · phase diagram over (σ, λ₀)",
    `median ${phase.metric} over seeds per cell against the one-layer rate ${phase.reference} (red faster, blue slower); ` +
    "dashed: 4σ² + λ₀² = 1, eq. (16)", ["x"]));
  if (deep) figs.append(figure("fig-depth", "Time to tolerance against depth", "time_to_tol, mean ± std over seeds (L = 1 is the one-layer model)", ["y"]),
                        figure("fig-plateau", "Plateau against depth", "first t with e(t) ≤ 0.9·e(0) of each point's curve, mean ± std over seeds", ["y"]));
  notes.textContent = missing.length ? "Not shown: " + missing.join("; ") + "." : "";
  figs.after(notes);
  onLeave(() => notes.remove());
  if (curves.groups.length) {
    errorFigure("fig-error", curves.groups);
    singularValuesFigure("fig-sv", curves.groups);
  }
  if (hasReg) regularizedFigure("fig-regularized", curves.groups);
  if (hasSpeed) metricFigure("fig-speedup", speed.data, "speedup", x, other, 1);
  if (phase && phase.cells.length) phaseFigure("fig-phase", phase);
  if (deep) {
    metricFigure("fig-depth", depthRows, "time_to_tol", "depth", depthOther);
    plateauFigure("fig-plateau", byDepth.groups, depthOther);
  }
  if (fit) {
    const others = vary.filter(a => a !== "k");
    const lam = await get(`/sweeps/${s.id}/summary?` + qs({by: ["k", ...others.slice(0, 1)].join(",")}));
    // The paper's Fig. 2 values compare with the positive branch, when the service reports it.
    const metric = lam.data.length && "lambda0_fit_pos_mean" in lam.data[0] ? "lambda0_fit_pos" : "lambda0_fit";
    metricFigure("fig-lambda0", lam.data, metric, "k", others[0]);
  }
}

// ------------------------------------------------------------------------------------------ results
const RESULT_COLUMNS = ["point_id", "sweep_id", "status", "init", "init_scale", "k", "lambda0", "seed", "final_error",
  "final_error_linear", "speedup", "time_to_tol", "q0_norm", "rate_fit", "rate_pred", "lambda0_fit", "closed_form_error"];
const FILTERS = [["sweep_id", "sweep id"], ["tag", "tag"], ["k", "k"], ["init_scale", "init_scale"], ["lambda0", "λ₀"], ["seed", "seed"]];

async function pageResults(main, params) {
  const p = Object.fromEntries(params.entries());
  const limit = Math.max(1, Math.min(1000, +(p.limit || 50))), offset = Math.max(0, +(p.offset || 0));
  const order = p.order_by || "";
  const extra = p.extra || "";
  const query = {...p};
  delete query.extra;
  for (const pair of extra.split("&")) {
    const [k, v] = pair.split("=");
    if (k && v !== undefined) query[k.trim()] = v.trim();
  }
  const apply = changes => {
    const next = {...p, ...changes};
    for (const k of Object.keys(next)) if (next[k] === "" || next[k] === null) delete next[k];
    location.hash = "#/results?" + qs(next);
  };
  const errBox = h("p", {class: "errors", role: "alert", id: "results-error"});
  const form = h("form", {class: "row", onsubmit: e => {
    e.preventDefault();
    const changes = {offset: 0};
    for (const [k] of FILTERS) changes[k] = $(`#r-${k}`).value.trim();
    changes.status = $("#r-status").value;
    changes.extra = $("#r-extra").value.trim();
    apply(changes);
  }},
    ...FILTERS.map(([k, label]) => h("label", {}, label, h("input", {id: `r-${k}`, name: k, value: p[k] || "", size: 8,
      "aria-describedby": `err-${k}`}), h("span", {class: "field-error", id: `err-${k}`}))),
    h("label", {}, "status", h("select", {id: "r-status"}, ...["", "done", "diverged", "failed"].map(v =>
      h("option", {value: v, selected: (p.status || "") === v}, v || "any")))),
    h("label", {style: "flex:1 1 220px"}, "more filters (key=value&…)", h("input", {id: "r-extra", value: extra,
      placeholder: "k_min=50&final_error_max=0.01", "aria-describedby": "err-extra"}), h("span", {class: "field-error", id: "err-extra"})),
    h("button", {type: "submit", class: "primary"}, "Apply"),
    h("a", {href: "#/results"}, "clear"));
  main.append(h("h1", {}, "Results"), form, errBox);
  let body;
  try {
    body = await get("/results?" + qs({...query, limit, offset}));
  } catch (e) {
    if (e.status === 422 && Array.isArray(e.detail)) {
      for (const d of e.detail) {
        // Next to the filter's own box, or to "more filters" where it was typed.
        const slot = (d.field && document.getElementById(`err-${d.field}`)) || $("#err-extra");
        slot.textContent = `${d.field}: ${d.msg}`;
        const input = $(`#r-${d.field}`);
        if (input) input.setAttribute("aria-invalid", "true");
      }
      errBox.textContent = "The filters are not valid: " + e.message;
      return;
    }
    throw e;
  }
  const fileQuery = {...query};
  delete fileQuery.limit; delete fileQuery.offset;
  const sortHeader = col => {
    const dir = order === col ? "ascending" : order === `-${col}` ? "descending" : null;
    const next = order === col ? `-${col}` : col;
    return h("th", {class: ["status", "init"].includes(col) ? "" : "num", "aria-sort": dir || "none"},
      h("button", {type: "button", onclick: () => apply({order_by: next, offset: 0}), title: `sort by ${col}`},
        col, dir === "ascending" ? " ▲" : dir === "descending" ? " ▼" : ""));
  };
  main.append(
    h("div", {class: "pager"},
      h("span", {id: "results-count"}, body.count ? `rows ${offset + 1}–${offset + body.data.length} of ${body.count}` : "no rows"),
      h("button", {type: "button", disabled: offset === 0, onclick: () => apply({offset: Math.max(0, offset - limit)})}, "← previous"),
      h("button", {type: "button", disabled: offset + body.data.length >= body.count, onclick: () => apply({offset: offset + limit})}, "next →"),
      h("label", {class: "inline"}, "per page", h("select", {onchange: e => apply({limit: e.target.value, offset: 0})},
        ...[25, 50, 100, 500].map(n => h("option", {value: n, selected: n === limit}, n)))),
      h("span", {style: "flex:1"}),
      h("a", {id: "download-csv", href: "/results?" + qs({...fileQuery, format: "csv"}), download: "results.csv"}, "Download CSV"),
      h("a", {id: "download-parquet", href: "/results?" + qs({...fileQuery, format: "parquet"}), download: "results.parquet"}, "Parquet")),
    h("div", {class: "table-wrap"}, h("table", {id: "results"},
      h("thead", {}, h("tr", {}, ...RESULT_COLUMNS.map(sortHeader))),
      h("tbody", {}, ...body.data.map(r => h("tr", {},
        ...RESULT_COLUMNS.map(c => h("td", {class: ["status", "init"].includes(c) ? "" : "num"},
          c === "point_id" ? h("a", {href: `#/points/${r.point_id}`}, r.point_id)
            : c === "sweep_id" ? h("a", {href: `#/sweeps/${r.sweep_id}`}, r.sweep_id)
            : c === "status" ? badge(r.status) : num(r[c])))))))));
}

// ------------------------------------------------------------------------------------------ one point
async function pagePoint(main, params, id) {
  const row = await get(`/points/${id}`);
  main.append(h("h1", {}, `Point ${row.point_id}`, badge(row.status)),
    h("p", {}, "of sweep ", h("a", {href: `#/sweeps/${row.sweep_id}`}, row.sweep_id), " · ",
      h("a", {href: `/points/${id}/state`, download: `point-${id}-state.json`, id: "download-state"}, "initial state (Y, U₀, V₀) as JSON"),
      " · ", h("a", {href: `/points/${id}/curves`, download: `point-${id}-curves.json`}, "curves as JSON")));
  const grid = h("div", {class: "grid"});
  main.append(grid);
  grid.append(figure("fig-point-error", "Error against iterations", null), figure("fig-point-sv", "Singular values of X(t)", null));
  let curves = null;
  try { curves = await get(`/points/${id}/curves`); } catch (e) {
    emptyPlot("fig-point-error", e.message); emptyPlot("fig-point-sv", e.message);
  }
  if (curves) {
    const x = curves.t.map(t => Math.round(t / row.eta));
    const traces = [
      {x, y: curves.error, name: "two-layer (simulated)", mode: "lines", line: {color: COLORS[0], width: 2}},
      {x, y: curves.error_linear, name: "one-layer (simulated)", mode: "lines", line: {color: "#222", dash: "dash"}}];
    const e0 = curves.error_linear && curves.error_linear[0];
    if (e0 !== null && e0 !== undefined && row.model !== "sigmoid") {
      // Eq. (4): the one-layer error decays exactly as e0 (1 − η)^i for gd, e0 e^{−t} for the flow.
      const closed = x.map((i, j) => row.integrator === "gd" ? e0 * Math.pow(1 - row.eta, i) : e0 * Math.exp(-curves.t[j]));
      traces.push({x, y: closed, name: "one-layer closed form, eq. (4)", mode: "lines", line: {color: "#999", dash: "dot", width: 3}});
    }
    if (curves.error_regularized_fit) traces.push({x, y: curves.error_regularized_fit, name: `regularized flow (19), λ₀ = ${num(row.lambda0_fit)}`,
      mode: "lines", line: {color: COLORS[3]}});
    draw("fig-point-error", traces, {xaxis: {title: {text: "iterations"}}, yaxis: {title: {text: "‖Y − X(t)‖ / ‖Y‖"}, type: "log"},
      annotations: row.closed_form_error !== null ? [{xref: "paper", yref: "paper", x: 1, y: 1.08, showarrow: false, xanchor: "right",
        text: `closed form vs simulation: max ${num(row.closed_form_error, 3)}`, font: {size: 11}}] : []});
    const sv = curves.singular_values || [];
    const r = sv[0] ? sv[0].length : 0;
    draw("fig-point-sv", [...Array(r).keys()].map(j => ({x, y: sv.map(rw => rw[j]), name: `σ${j + 1}`, mode: "lines",
      line: {color: COLORS[j % COLORS.length]}})), {xaxis: {title: {text: "iterations"}}, yaxis: {title: {text: "singular values of X(t)"}}});
  }
  const keys = Object.keys(row);
  main.append(h("h2", {}, "Every field"), h("div", {class: "card"}, h("dl", {class: "kv", id: "point-fields"},
    ...keys.flatMap(k => [h("dt", {}, k), h("dd", {}, typeof row[k] === "number" ? String(row[k]) : row[k] === null ? "null" : String(row[k]))]))));
}

// ------------------------------------------------------------------------------------------ submit
let specSchema = null;
async function sweepSchema() {
  if (!specSchema) {
    const doc = await get("/openapi.json");
    specSchema = doc.paths["/sweeps"].post.requestBody.content["application/json"].schema;
  }
  return specSchema;
}

function propInfo(prop) {
  const alts = prop.anyOf || [prop];
  const real = alts.find(a => a.type !== "null") || alts[0];
  return {type: real.type, enum: real.enum || (real.const !== undefined ? [real.const] : null),
          nullable: alts.some(a => a.type === "null"), description: prop.description || real.description || ""};
}

async function pageSubmit(main) {
  const [schema, examples] = await Promise.all([sweepSchema(), get("/dashboard/examples.json").catch(() => [])]);
  const props = schema.properties;
  let spec = examples.length ? structuredClone(examples[0].spec) : {model: "asymmetric", m: 5, n: 10, eta: 0.001, steps: 4000};
  let mode = "form";
  let timer = null;
  const estimate = h("div", {class: "estimate", id: "estimate", role: "status", "aria-live": "polite"}, "…");
  const generalErrors = h("ul", {class: "errors", id: "general-errors"});
  const formArea = h("div");
  const textArea = h("div", {hidden: true});
  const editor = h("textarea", {id: "spec-text", rows: 22, spellcheck: "false", "aria-label": "sweep spec"});
  const fmtSel = h("select", {id: "spec-format", "aria-label": "text format"}, h("option", {value: "json"}, "JSON"), h("option", {value: "yaml"}, "YAML"));
  textArea.append(h("div", {class: "row"}, h("label", {class: "inline"}, "format", fmtSel),
    h("span", {class: "muted"}, "The API takes JSON; YAML is converted here before sending.")), editor);

  const axisNames = Object.keys((props.axes && (props.axes.properties || (props.axes.anyOf || [])[0]?.properties)) || {init_scale: 1, k: 1, lambda0: 1, seed: 1});

  function field(name, prop) {
    const info = propInfo(prop);
    const v = spec[name];
    const id = `in-${name}`;
    let input;
    if (info.enum) {
      input = h("select", {id}, info.nullable || !(schema.required || []).includes(name) ? h("option", {value: ""}, "(default)") : null,
        ...info.enum.map(o => h("option", {value: o, selected: v === o}, o)));
      if (v === undefined) input.value = "";
    } else if (info.type === "boolean") {
      input = h("input", {id, type: "checkbox", checked: !!v});
    } else if (info.type === "array") {
      input = h("input", {id, value: Array.isArray(v) ? v.join(", ") : "", placeholder: "comma separated"});
    } else {
      input = h("input", {id, value: v === undefined || v === null ? "" : String(v), inputmode: ["integer", "number"].includes(info.type) ? "decimal" : null});
    }
    input.dataset.field = name;
    input.setAttribute("aria-describedby", `err-${name}`);
    input.addEventListener(info.type === "boolean" || info.enum ? "change" : "input", () => {
      const raw = info.type === "boolean" ? input.checked : input.value.trim();
      if (raw === "" || raw === false && !(name in spec)) delete spec[name];
      else if (info.type === "integer" || info.type === "number") spec[name] = isNaN(Number(raw)) ? raw : Number(raw);
      else if (info.type === "array") spec[name] = raw.split(",").map(t => t.trim()).filter(Boolean);
      else spec[name] = raw;
      schedule();
    });
    const label = h("label", {for: id, title: info.description}, name, input, h("span", {class: "field-error", id: `err-${name}`}));
    if (info.type === "boolean") label.className = "inline";
    return label;
  }

  function axisField(name) {
    const v = (spec.axes || {})[name];
    const id = `in-axes-${name}`;
    const input = h("input", {id, value: v === undefined ? "" : JSON.stringify(v), placeholder: "[…] or {\"range\": [0, 10]}",
      "aria-describedby": `err-axes.${name}`});
    input.dataset.field = `axes.${name}`;
    input.addEventListener("input", () => {
      const raw = input.value.trim();
      const slot = document.getElementById(`err-axes.${name}`);
      spec.axes = spec.axes || {};
      if (!raw) { delete spec.axes[name]; slot.textContent = ""; input.removeAttribute("aria-invalid"); schedule(); return; }
      try {
        spec.axes[name] = JSON.parse(raw);
        slot.textContent = ""; input.removeAttribute("aria-invalid");
        schedule();
      } catch (e) {
        slot.textContent = "not valid JSON (a list like [0.1, 1] or {\"range\": [0, 10]})";
        input.setAttribute("aria-invalid", "true");
      }
    });
    return h("label", {for: id}, `axes.${name}`, input, h("span", {class: "field-error", id: `err-axes.${name}`}));
  }

  function renderForm() {
    const names = Object.keys(props).filter(n => n !== "axes");
    formArea.replaceChildren(h("div", {class: "form-grid"}, ...names.map(n => field(n, props[n]))),
      h("h2", {}, "Axes ", h("span", {class: "muted", style: "font-weight:normal;font-size:.85em"},
        "— the sweep is their Cartesian product; leave empty for the default")),
      h("div", {class: "form-grid"}, ...axisNames.map(axisField)));
  }

  function toText() {
    editor.value = fmtSel.value === "yaml" ? jsyaml.dump(spec, {flowLevel: 2, lineWidth: 100}) : JSON.stringify(spec, null, 2);
  }
  function fromText() {
    const parsed = fmtSel.value === "yaml" ? jsyaml.load(editor.value) : JSON.parse(editor.value);
    if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) throw new Error("the text must hold one sweep (an object)");
    spec = parsed;
  }

  function clearErrors() {
    $$(".field-error", main).forEach(el => { el.textContent = ""; });
    $$("[aria-invalid]", main).forEach(el => el.removeAttribute("aria-invalid"));
    generalErrors.replaceChildren();
  }

  function showErrors(detail) {
    clearErrors();
    const items = Array.isArray(detail) ? detail : [{field: "", msg: detailText(detail)}];
    for (const d of items) {
      const f = String(d.field || "");
      const slot = mode === "form" && (document.getElementById(`err-${f}`) ||
        document.getElementById(`err-${f.split(".").slice(0, 2).join(".")}`));
      const input = mode === "form" && main.querySelector(`[data-field="${CSS.escape(f)}"]`);
      if (slot) {
        slot.textContent = d.msg;
        if (input) input.setAttribute("aria-invalid", "true");
      } else {
        generalErrors.append(h("li", {}, f && f !== "body" ? h("strong", {}, `${f}: `) : null, d.msg));
      }
    }
  }

  async function dryRun() {
    if (mode === "text") {
      try { fromText(); } catch (e) { estimate.className = "estimate invalid"; estimate.textContent = `Cannot read the text: ${e.message}`; return; }
    }
    try {
      const r = await api("POST", "/sweeps?dry_run=true", spec);
      clearErrors();
      const est = r.estimate;
      estimate.className = "estimate";
      estimate.replaceChildren(h("strong", {id: "n-points"}, `${r.n_points} points`),
        r.n_cached ? ` (${r.n_cached} reused from earlier sweeps, ${r.n_new} to run)` : " to run",
        ` · about ${secs(est.cpu_seconds)} of CPU, ${secs(est.wall_seconds)} on ${est.cpus} CPU${est.cpus > 1 ? "s" : ""}` +
        (est.peak_bytes_per_point ? `, up to ${(est.peak_bytes_per_point / 1e6).toPrecision(2)} MB per point` : ""),
        h("span", {class: "muted"}, " (the budget's estimate, on the high side)"));
    } catch (e) {
      estimate.className = "estimate invalid";
      estimate.textContent = e.status === 422 ? "Not valid yet: see the messages next to the fields." : e.message;
      if (e.status === 422) showErrors(e.detail);
    }
  }
  function schedule() { clearTimeout(timer); timer = setTimeout(dryRun, 350); }

  async function submit(e) {
    e.preventDefault();
    if (mode === "text") {
      try { fromText(); } catch (err) { showErrors([{field: "", msg: `Cannot read the text: ${err.message}`}]); return; }
    }
    const button = $("#submit-button");
    button.disabled = true;
    try {
      const r = await api("POST", "/sweeps", spec);
      toast(`Submitted sweep ${r.id}: ${r.n_points} points`);
      location.hash = `#/sweeps/${r.id}`;
    } catch (err) {
      if (err.status === 422) showErrors(err.detail);
      else showErrors([{field: "", msg: err.message}]);
      estimate.className = "estimate invalid";
      estimate.textContent = "The service rejected the sweep: see the messages next to the fields.";
    } finally { button.disabled = false; }
  }

  const exampleSel = h("select", {id: "example", onchange: () => {
    spec = structuredClone(examples[+exampleSel.value].spec);
    renderForm(); if (mode === "text") toText(); schedule();
  }}, ...examples.map((x, i) => h("option", {value: i}, x.label)));
  const tabs = h("div", {class: "tabs", role: "tablist"},
    h("button", {type: "button", role: "tab", id: "tab-form", "aria-selected": "true", onclick: () => setMode("form")}, "Form"),
    h("button", {type: "button", role: "tab", id: "tab-text", "aria-selected": "false", onclick: () => setMode("text")}, "JSON / YAML"));
  function setMode(m) {
    if (m === mode) return;
    if (m === "form") {
      try { fromText(); } catch (e) { showErrors([{field: "", msg: `Cannot read the text: ${e.message}`}]); return; }
      renderForm();
    } else toText();
    mode = m;
    formArea.hidden = m !== "form"; textArea.hidden = m !== "text";
    $("#tab-form").setAttribute("aria-selected", String(m === "form"));
    $("#tab-text").setAttribute("aria-selected", String(m === "text"));
    schedule();
  }
  fmtSel.addEventListener("change", () => {
    const other = fmtSel.value === "yaml" ? "json" : "yaml";
    try {
      spec = other === "yaml" ? jsyaml.load(editor.value) : JSON.parse(editor.value);
      toText();
    } catch (e) { showErrors([{field: "", msg: `Cannot read the text as ${other.toUpperCase()}: ${e.message}`}]); fmtSel.value = other; }
  });
  editor.addEventListener("input", schedule);

  main.append(h("h1", {}, "Submit a sweep"),
    h("form", {id: "submit-form", onsubmit: submit},
      h("div", {class: "row"}, h("label", {}, "Start from an example", exampleSel)),
      tabs, formArea, textArea, generalErrors,
      h("div", {class: "row", style: "margin-top:1em"}, estimate),
      h("div", {class: "row", style: "margin-top:.8em"}, h("button", {type: "submit", class: "primary", id: "submit-button"}, "Submit sweep"),
        h("a", {href: "/docs#/sweeps/create_sweep_sweeps_post"}, "field reference (API docs)"))));
  renderForm();
  dryRun();
  onLeave(() => clearTimeout(timer));
}

// ------------------------------------------------------------------------------------------ compare
const COMPARE_METRICS = ["speedup", "final_error", "time_to_tol", "rate_fit", "rate_pred", "q0_norm", "lambda0_fit",
  "regularized_error", "conservation_drift", "wall_seconds"];
const COMPARE_X = ["init_scale", "k", "lambda0", "seed", "eta", "steps", "m", "n"];

async function pageCompare(main, params) {
  const ids = (params.get("ids") || "").split(",").map(s => parseInt(s, 10)).filter(n => n > 0);
  const mode = params.get("mode") || "metric";
  const metric = params.get("metric") || "speedup";
  const x = params.get("x") || "init_scale";
  const list = await get("/sweeps?limit=200");
  const apply = next => { location.hash = "#/compare?" + qs({ids: ids.join(","), mode, metric, x, ...next}); };
  const boxes = h("fieldset", {class: "card", style: "max-height:14em;overflow:auto"},
    h("legend", {}, "Sweeps"), ...list.data.map(s => h("label", {class: "inline"},
      h("input", {type: "checkbox", value: s.id, checked: ids.includes(s.id), name: "sweep"}),
      `${s.id} · ${s.name}`, ...tagList(s.tags))));
  const form = h("form", {onsubmit: e => {
    e.preventDefault();
    apply({ids: $$("input[name=sweep]:checked", boxes).map(b => b.value).join(","), mode: $("#c-mode").value,
           metric: $("#c-metric").value, x: $("#c-x").value});
  }}, boxes,
    h("div", {class: "row", style: "margin-top:.6em"},
      h("label", {}, "overlay", h("select", {id: "c-mode"}, h("option", {value: "metric", selected: mode === "metric"}, "a metric against a parameter"),
        h("option", {value: "curve", selected: mode === "curve"}, "the error curves"))),
      h("label", {}, "metric", h("select", {id: "c-metric"}, ...COMPARE_METRICS.map(m => h("option", {value: m, selected: m === metric}, m)))),
      h("label", {}, "against", h("select", {id: "c-x"}, ...COMPARE_X.map(m => h("option", {value: m, selected: m === x}, m)))),
      h("button", {type: "submit", class: "primary"}, "Compare")));
  main.append(h("h1", {}, "Compare sweeps"), form, h("div", {style: "margin-top:1em"}, figure("fig-compare", "Overlay", null, ["x", "y"])));
  if (!ids.length) { emptyPlot("fig-compare", "Choose two or more sweeps, then Compare."); return; }
  const sweeps = await Promise.all(ids.map(i => get(`/sweeps/${i}`)));
  const traces = [];
  if (mode === "curve") {
    for (const [i, s] of sweeps.entries()) {
      const c = await get(`/sweeps/${s.id}/curves`);
      c.groups.forEach((g, j) => {
        const color = COLORS[(i * 3 + j) % COLORS.length], label = `${s.name}: ${groupLabel(g.key)}`;
        traces.push(...bandTraces(iterations(g), g.error, color, label, label, i % 2 ? "dot" : "solid", g.n > 1));
      });
    }
    draw("fig-compare", traces, {xaxis: {title: {text: "iterations"}}, yaxis: {title: {text: "‖Y − X(t)‖ / ‖Y‖"}, type: "log"}});
    return;
  }
  const rows = [];
  for (const s of sweeps) {
    const sm = await get(`/sweeps/${s.id}/summary?` + qs({by: x}));
    sm.data.forEach(r => rows.push({...r, sweep: `${s.id} · ${s.name}`}));
  }
  metricFigure("fig-compare", rows, metric, x, "sweep", metric === "speedup" ? 1 : undefined);
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", route);
