// Residual analysis page: fit a regression on the server (POST /api/regression), draw the
// chapter's three residual plots, a Q-Q plot and the diagnostics. Drawing only: every number comes from the API,
// the figures are built in charts/regression.js.

// A failed fit reads "The data could not be analysed: …" (the server's reason).
const request = (url, options = {}) => ask(url, options, "The data could not be analysed");

import { ask } from "./api.js";
import { el } from "./dom.js";
import { plot } from "./plot.js";
import { clearError, showError } from "./status.js";
import { fitFigure, qqFigure, residualFigure } from "./charts/regression.js";

const $ = (id) => document.getElementById(id);
const MAX_BYTES = 1024 * 1024;
const state = {
  datasets: [],
  source: { kind: "dataset", name: "linear" },
  degree: 1,
  yCol: null,
  xCols: null,
  xPlot: 0,
  result: null,
  controller: null,
};

function analyse(signal) {
  const opts = { degree: state.degree, y_column: state.yCol, x_columns: state.xCols };
  if (state.source.kind === "upload") {
    const form = new FormData();
    form.append("file", state.source.file, state.source.file.name);
    form.append("degree", String(opts.degree));
    if (opts.y_column) form.append("y_column", opts.y_column);
    for (const x of opts.x_columns || []) form.append("x_column", x);
    return request("/api/regression", { method: "POST", body: form, signal });
  }
  return request("/api/regression", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ dataset: state.source.name, ...opts }),
    signal,
  });
}

// ---------------------------------------------------------------- helpers


const num = (v, d = 3) => (v === null || v === undefined ? "—" : Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(2) : v.toFixed(d));
const pval = (p) => (p === null || p === undefined ? "—" : p < 1e-4 ? "< 0.0001" : p.toFixed(4));

function setStatus(text) {
  $("status").textContent = text;
}

const draw = (id, data, layout) => plot(id, { data, layout });

// ---------------------------------------------------------------- figures (json -> traces)

// ---------------------------------------------------------------- rendering

function renderColumns(result) {
  const cols = result.columns;
  const m = result.model;
  const ySel = $("y-col");
  ySel.replaceChildren(...cols.map((c) => el("option", { value: c, text: c })));
  ySel.value = m.y_column;
  const box = $("x-cols");
  box.replaceChildren(el("legend", { text: "x columns" }));
  for (const c of cols) {
    if (c === m.y_column) continue;
    const input = el("input", { type: "checkbox", value: c });
    input.checked = m.x_columns.includes(c);
    box.append(el("label", { class: "xcol" }, [input, ` ${c}`]));
  }
  const several = m.x_columns.length > 1;
  for (const opt of $("degree").options) opt.disabled = several && opt.value !== "1";
  $("degree").value = String(m.degree);
  const xSel = $("x-plot");
  xSel.replaceChildren(...m.x_columns.map((c, i) => el("option", { value: String(i), text: c })));
  state.xPlot = Math.min(state.xPlot, m.x_columns.length - 1);
  xSel.value = String(state.xPlot);
}

function renderSummary(result) {
  const m = result.model;
  $("equation").textContent = m.equation;
  const facts = [
    ["rows", String(result.n)],
    ["R²", num(m.r2, 4)],
    ["adjusted R²", num(m.adj_r2, 4)],
    ["residual standard error", num(m.sigma, 4)],
    ["F-test of the fit", `F = ${num(m.f_statistic, 2)}, p ${m.f_p_value < 1e-4 ? "< 0.0001" : `= ${m.f_p_value.toFixed(4)}`}`],
  ];
  const dl = $("fit-facts");
  dl.replaceChildren(...facts.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
  $("summary").hidden = false; // visible before drawing, so Plotly measures the real width
  const fit = result.plots.fit;
  $("fit-figure").hidden = !fit;
  if (fit) {
    const f = fitFigure(fit, m, result.plots.rows);
    draw("chart-fit", f.data, f.layout);
  }
}

function renderDiagnostics(result) {
  const table = $("diag-table");
  const head = el("thead", {}, el("tr", {}, ["question", "test", "statistic", "p-value", "verdict"].map((h) => el("th", { scope: "col", text: h }))));
  const body = el("tbody");
  for (const d of Object.values(result.diagnostics)) {
    const df = Array.isArray(d.df) ? ` (df ${d.df.join(", ")})` : d.df ? ` (df ${d.df})` : "";
    body.append(
      el("tr", { class: d.flag ? "flag" : "ok" }, [
        el("th", { scope: "row" }, [el("span", { class: "badge", text: d.flag ? "problem" : "fine" }), ` ${d.title}`]),
        el("td", { text: d.test }),
        el("td", { class: "num", text: `${num(d.statistic, 3)}${df}` }),
        el("td", { class: "num", text: pval(d.p_value) }),
        el("td", { text: d.verdict }),
      ]),
    );
  }
  table.replaceChildren(head, body);
  $("diagnostics").hidden = false;
}

function renderPlots(result) {
  $("plots").hidden = false; // visible before drawing, so Plotly measures the real width
  const p = result.plots;
  const d = result.diagnostics;
  const e = p.order.y;
  const curvy = d.curvature.flag || d.constant_variance.flag;
  let f = residualFigure(p.fitted.x, e, "fitted value", curvy, p.rows);
  draw("chart-fitted", f.data, f.layout);
  const xi = p.x[state.xPlot] || p.x[0];
  f = residualFigure(xi.x, xi.y, xi.name, curvy, p.rows);
  draw("chart-x", f.data, f.layout);
  f = residualFigure(p.order.x, e, "observation order (row)", d.independence.flag, p.rows);
  f.data[0].mode = "lines+markers";
  f.data[0].line = { width: 1, color: "rgba(31,119,180,0.35)" };
  draw("chart-order", f.data, f.layout);
  f = qqFigure(p.qq);
  draw("chart-qq", f.data, f.layout);
  $("plots-note").textContent =
    p.shown < p.total ? `Showing ${p.shown.toLocaleString("en-US")} evenly spaced rows of ${p.total.toLocaleString("en-US")}; the tests use every row.` : "";
}

function render(result) {
  state.result = result;
  renderColumns(result);
  renderSummary(result);
  renderDiagnostics(result);
  renderPlots(result);
  const problems = result.problems.map((k) => result.diagnostics[k].title.toLowerCase());
  const src = result.source.kind === "upload" ? `your file ${result.source.name}` : `the generated "${result.source.name}" set`;
  setStatus(problems.length ? `Fitted ${src}: ${problems.length} problem(s) found. See the diagnostics.` : `Fitted ${src}: no problem found at the 5% level.`);
}

// ---------------------------------------------------------------- wiring

let runTimer = null;

function scheduleRun() {
  clearTimeout(runTimer);
  runTimer = setTimeout(run, 120);
}

async function run() {
  if (state.controller) state.controller.abort();
  const controller = new AbortController();
  state.controller = controller;
  setStatus("Fitting…");
  try {
    const result = await analyse(controller.signal);
    if (controller !== state.controller) return;
    clearError();
    render(result);
    writeURL();
  } catch (err) {
    if (err.name === "AbortError") return;
    showError(err);
    setStatus("");
  }
}

function describeDataset() {
  if (state.source.kind === "upload") {
    $("dataset-desc").textContent = `Your file: ${state.source.file.name} (${Math.ceil(state.source.file.size / 1024)} KB).`;
    return;
  }
  const d = state.datasets.find((x) => x.name === state.source.name);
  $("dataset-desc").textContent = d ? d.description : "";
}

function writeURL() {
  const q = new URLSearchParams();
  if (state.source.kind === "dataset") q.set("dataset", state.source.name);
  q.set("degree", String(state.degree));
  history.replaceState(null, "", `${location.pathname}?${q}`);
}

function readURL() {
  const q = new URLSearchParams(location.search);
  const name = q.get("dataset");
  if (name && state.datasets.some((d) => d.name === name)) state.source = { kind: "dataset", name };
  const deg = Number(q.get("degree"));
  if (Number.isInteger(deg) && deg >= 1 && deg <= 5) state.degree = deg;
}

function fillDatasets() {
  const sel = $("dataset");
  const opts = state.datasets.map((d) => el("option", { value: d.name, text: `${d.name}${d.shows !== "none" ? ` (shows: ${d.shows.replace("_", " ")})` : " (a good fit)"}` }));
  if (state.source.kind === "upload") opts.push(el("option", { value: "__upload__", text: `your file: ${state.source.file.name}` }));
  sel.replaceChildren(...opts);
  sel.value = state.source.kind === "upload" ? "__upload__" : state.source.name;
}

async function init() {
  $("dataset").addEventListener("change", (e) => {
    if (e.target.value === "__upload__") return;
    state.source = { kind: "dataset", name: e.target.value };
    state.yCol = null;
    state.xCols = null;
    fillDatasets();
    describeDataset();
    scheduleRun();
  });
  $("csv-file").addEventListener("change", (e) => {
    const file = e.target.files && e.target.files[0];
    if (!file) return;
    if (file.size > MAX_BYTES) {
      showError(`Too large: ${file.name} is ${(file.size / 2 ** 20).toFixed(1)} MB; the limit for a CSV upload is 1 MB. Upload a sample of the rows instead.`);
      e.target.value = "";
      return;
    }
    state.source = { kind: "upload", file };
    state.yCol = null;
    state.xCols = null;
    state.xPlot = 0;
    fillDatasets();
    describeDataset();
    scheduleRun();
  });
  $("degree").addEventListener("change", (e) => {
    state.degree = Number(e.target.value);
    scheduleRun();
  });
  $("y-col").addEventListener("change", (e) => {
    state.yCol = e.target.value;
    state.xCols = state.xCols ? state.xCols.filter((c) => c !== state.yCol) : null;
    if (state.xCols && !state.xCols.length) state.xCols = null;
    scheduleRun();
  });
  $("x-cols").addEventListener("change", () => {
    const checked = [...$("x-cols").querySelectorAll("input:checked")].map((i) => i.value);
    if (!checked.length) {
      showError("Choose at least one x column.");
      return;
    }
    state.xCols = checked;
    state.yCol = $("y-col").value || state.yCol;
    if (checked.length > 1 && state.degree !== 1) state.degree = 1;
    scheduleRun();
  });
  $("x-plot").addEventListener("change", (e) => {
    state.xPlot = Number(e.target.value);
    if (state.result) renderPlots(state.result);
  });
  if (typeof Plotly === "undefined") showError("Plotly did not load (/static/vendor/plotly.min.js): the plots cannot be drawn, the numbers still can.");
  try {
    state.datasets = await request("/api/regression/datasets");
  } catch (err) {
    showError(err);
    return;
  }
  readURL();
  fillDatasets();
  describeDataset();
  $("degree").value = String(state.degree);
  run();
}

init();
