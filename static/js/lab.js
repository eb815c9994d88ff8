// Degradation lab: training curves of plain vs residual nets and the paper's Fig. 7.
import { getJSON } from "./api.js";
import { plot } from "./plot.js";
import { showError as showErrorBox } from "./status.js";
import { collapseTable } from "./charts/collapse.js";
import { curve, fig7Caption, fig7Figures, label } from "./charts/lab.js";
import { initShare } from "./share.js";
import { num } from "./charts/format.js";
import { shatteredAutocorrFigure, shatteredSpectraFigure, shatteredTracesFigure, slopeText } from "./charts/shattered.js";
import { initLandscapes } from "./landscape.js";
import { initBnClaims } from "./lab-bnclaims.js";

const finite = (x) => typeof x === "number" && Number.isFinite(x);

function chartMessage(id, text) {
  const el = document.getElementById(id);
  if (el.data) Plotly.purge(el);
  el.classList.add("placeholder");
  el.dataset.message = text;
}

async function loadFig7() {
  const bn = document.getElementById("bn").value;
  const status = document.getElementById("status");
  status.textContent = "Measuring layer responses with ONNX Runtime…";
  let payload;
  try {
    payload = await getJSON(`/api/lab/fig7?bn=${bn}`);
  } catch (err) {
    const text = `Fig. 7 failed: ${err.message}`;
    chartMessage("chart-fig7", text);
    chartMessage("chart-fig7-sorted", text);
    document.getElementById("caption-fig7").textContent = "";
    throw new Error(text);
  }
  for (const id of ["chart-fig7", "chart-fig7-sorted"]) document.getElementById(id).classList.remove("placeholder");
  const [a, b] = fig7Figures(payload);
  plot("chart-fig7", a);
  plot("chart-fig7-sorted", b);
  document.getElementById("caption-fig7").textContent = fig7Caption(payload);
  status.textContent = "";
}

function runsTable(runs) {
  const head = "<tr><th>network</th><th>steps</th><th>final training loss</th><th>final training accuracy</th>" +
    "<th>held-out accuracy</th><th>training time</th></tr>";
  const fixed = (x, d) => (finite(x) ? x.toFixed(d) : "–");
  const rows = runs.map((r) => `<tr><td>${label(r)}</td><td>${r.steps}</td><td>${fixed(r.final_train_loss, 3)}</td>` +
    `<td>${(100 * r.final_train_accuracy).toFixed(1)}%</td><td>${(100 * r.held_out_accuracy).toFixed(1)}%</td>` +
    `<td>${r.wall_time_s.toFixed(0)} s</td></tr>`);
  document.getElementById("runs").innerHTML = head + rows.join("");
}

async function loadCollapse() {
  const bn = document.getElementById("collapse-bn").value;
  const box = document.getElementById("collapse-table");
  box.textContent = "Computing the collapse table from the shipped weights…";
  const rows = [];
  let images = [];
  for (const depth of [20, 32, 44, 56, 110]) {
    let part;
    try {
      part = await getJSON(`/api/gradients/collapse?bn=${bn}&models=resnet${depth}`);
    } catch (err) {
      if (err.status === 400 && /models must be/.test(err.message)) continue; // no trained weights at this depth
      box.textContent = `The collapse table failed: ${err.message}`;
      throw new Error(`The collapse table failed: ${err.message}`);
    }
    if (bn !== document.getElementById("collapse-bn").value) return;
    rows.push(...part.rows);
    images = part.images;
    box.replaceChildren(collapseTable(rows, { bn, images, pending: 0 }));
  }
}

// ------------------------------------------------------------ shattered gradients (the shipped study)

const SHATTERED = [["traces", shatteredTracesFigure], ["autocorr", shatteredAutocorrFigure], ["spectra", shatteredSpectraFigure]];
// The share tools under these charts link the depth shown (an embed's model picks it).
const shatteredApp = { state: { model: "resnet20" }, showError: (text) => showError(new Error(text)) };

function drawShattered(payload) {
  const depth = Number(document.getElementById("shattered-depth").value);
  shatteredApp.state.model = `resnet${depth}`;
  for (const [key, build] of SHATTERED) {
    const fig = build(payload, depth);
    document.getElementById(`chart-shattered-${key}`).classList.remove("placeholder");
    plot(`chart-shattered-${key}`, fig);
    document.getElementById(`caption-shattered-${key}`).textContent = fig.caption;
  }
}

function shatteredTable(payload) {
  const head = "<tr><th>depth</th><th>weights</th><th>ResNet slope</th><th>plain slope</th><th>ResNet lag-1</th>" +
    "<th>plain lag-1</th><th>ResNet slope, one pixel</th><th>plain slope, one pixel</th></tr>";
  const rows = payload.summary.map((r) => `<tr><td>${r.depth}</td><td>${r.weights === "init" ? "He init" : "trained"}</td>` +
    [r.residual_slope, r.plain_slope].map((v) => `<td>${slopeText(v)}</td>`).join("") +
    [r.residual_lag1, r.plain_lag1].map((v) => `<td>${num(v, 3)}</td>`).join("") +
    [r.residual_pixel_slope, r.plain_pixel_slope].map((v) => `<td>${slopeText(v)}</td>`).join("") + "</tr>");
  document.getElementById("shattered-table").innerHTML = head + rows.join("");
  // Each run's first note says why it has no trace (the rest follow from it).
  const runName = (r) => `${r.net === "residual" ? "ResNet" : "plain"}-${r.depth}, ${r.weights === "init" ? "He init" : "trained"}`;
  const notes = [...payload.notes, ...payload.runs.filter((r) => r.notes.length).map((r) => `${runName(r)}: ${r.notes[0]}`)];
  document.getElementById("shattered-notes").replaceChildren(
    ...notes.map((n) => Object.assign(document.createElement("li"), { textContent: n })),
  );
}

async function loadShattered() {
  let payload;
  try {
    payload = await getJSON("/api/lab/shattered");
  } catch (err) {
    const text = `Shattered gradients failed: ${err.message}`;
    for (const [key] of SHATTERED) {
      chartMessage(`chart-shattered-${key}`, text);
      document.getElementById(`caption-shattered-${key}`).textContent = "";
    }
    throw new Error(text);
  }
  const select = document.getElementById("shattered-depth");
  select.replaceChildren(...payload.depths.map((d) => new Option(`${d} layers`, String(d))));
  select.addEventListener("change", () => drawShattered(payload));
  drawShattered(payload);
  shatteredTable(payload);
  await initShare(shatteredApp);
}

function showError(err) {
  showErrorBox(err);
  document.getElementById("status").textContent = "";
}

async function main() {
  try {
    const { runs, findings } = await getJSON("/api/lab/training");
    if (!runs.length) throw new Error("No training logs are shipped (models/weights/*.log.json); run `make weights`.");
    const loss = curve(runs, "loss", "training loss", true);
    plot("chart-loss", loss);
    const acc = curve(runs, "accuracy", "training accuracy", false);
    plot("chart-acc", acc);
    document.getElementById("caption-loss").textContent =
      "Training loss per step (moving average over 25 steps, log scale). Dashed: plain networks (every shortcut " +
      "off while training); solid: ResNets. Same data, steps, batch size and learning-rate schedule for all.";
    document.getElementById("findings").innerHTML = findings.map((f) => `<li>${f}</li>`).join("");
    runsTable(runs);
    document.getElementById("bn").addEventListener("change", () => loadFig7().catch(showError));
    document.getElementById("collapse-bn").addEventListener("change", () => loadCollapse().catch(showError));
    await Promise.all([
      loadFig7().catch(showError),
      loadCollapse().catch(showError),
      loadShattered().catch(showError),
      initLandscapes().catch(showError),
    ]);
  } catch (err) {
    showError(err);
  }
}

main();
initBnClaims(); // the batch-norm section draws by itself and keeps its errors to itself
