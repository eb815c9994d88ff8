// Degradation lab: training curves of plain vs residual nets and the paper's Fig. 7.
import { getJSON } from "./api.js";
import { logTicks } from "./charts/gradients.js";
import { collapseTable } from "./charts/collapse.js";

const finite = (x) => typeof x === "number" && Number.isFinite(x);
// Legends sit above the plot, clear of the axis titles below it.
const LEGEND = { orientation: "h", x: 0, y: 1.02, xanchor: "left", yanchor: "bottom" };

const DEPTH_SHADE = { 20: 0.45, 32: 0.55, 44: 0.65, 56: 0.75, 110: 1.0 };
const BLUE = [38, 99, 185];
const RED = [204, 51, 51];

function colour(run) {
  const [r, g, b] = run.plain ? RED : BLUE;
  const s = DEPTH_SHADE[run.depth] ?? 0.8;
  const mix = (c) => Math.round(255 - (255 - c) * s);
  return `rgb(${mix(r)},${mix(g)},${mix(b)})`;
}

// Moving average over the last w finite values (null, NaN and inf are skipped; a window with none gives null).
function smooth(values, w = 25) {
  const out = [];
  let sum = 0;
  let n = 0;
  for (let i = 0; i < values.length; i++) {
    if (finite(values[i])) {
      sum += values[i];
      n += 1;
    }
    if (i >= w && finite(values[i - w])) {
      sum -= values[i - w];
      n -= 1;
    }
    out.push(n ? sum / n : null);
  }
  return out;
}

const label = (r) => `${r.plain ? "plain" : "ResNet"}-${r.depth}`;

function curve(runs, key, title, log) {
  const data = runs.map((r) => ({
    type: "scatter", mode: "lines", name: label(r), x: r[key].map((_, i) => i + 1), y: smooth(r[key]),
    line: { color: colour(r), dash: r.plain ? "dash" : "solid", width: 2 },
    hovertemplate: `${label(r)}<br>step %{x}<br>${title} %{y:.3f}<extra></extra>`,
  }));
  const ticks = log ? logTicks(data.flatMap((t) => t.y)) : {};
  const layout = {
    margin: { l: 64, r: 20, t: 64, b: 45 }, xaxis: { title: { text: "training step" } },
    yaxis: { title: { text: title }, type: log ? "log" : "linear", ...ticks }, legend: LEGEND,
    uirevision: key,
  };
  return { data, layout };
}

function fig7Figures(payload) {
  const data = [];
  const sorted = [];
  for (const s of payload.series) {
    const r = { plain: s.plain, depth: s.depth };
    const line = { color: colour(r), dash: s.plain ? "dash" : "solid" };
    data.push({ type: "scatter", mode: "lines+markers", name: label(r), x: s.std.map((_, i) => i + 1), y: s.std,
      text: s.layers, line, marker: { size: 4 }, hovertemplate: "%{text}<br>std %{y:.3f}<extra>" + label(r) + "</extra>" });
    const desc = s.std.filter(finite).sort((a, b) => b - a);
    sorted.push({ type: "scatter", mode: "lines", name: label(r), x: desc.map((_, i) => i + 1), y: desc, line,
      hovertemplate: "rank %{x}<br>std %{y:.3f}<extra>" + label(r) + "</extra>" });
  }
  const base = { margin: { l: 64, r: 20, t: 48, b: 45 }, legend: LEGEND, uirevision: "fig7" };
  return [
    { data, layout: { ...base, xaxis: { title: { text: "3x3 layer index (forward order)" } },
      yaxis: { title: { text: "std of response (after BN, before ReLU)" } } } },
    { data: sorted, layout: { ...base, xaxis: { title: { text: "layer, sorted by std" } }, yaxis: { title: { text: "std" } } } },
  ];
}

function fig7Caption(payload) {
  const parts = [];
  for (const depth of [20, 56, 110]) {
    const res = payload.series.find((s) => s.depth === depth && !s.plain);
    const pl = payload.series.find((s) => s.depth === depth && s.plain);
    if (!res || !pl) continue;
    const mean = (a) => {
      const v = a.filter(finite);
      return v.length ? v.reduce((x, y) => x + y, 0) / v.length : NaN;
    };
    const show = (v, digits) => (Number.isFinite(v) ? v.toFixed(digits) : 'no number (float32 overflow)');
    const [r, p] = [mean(res.std), mean(pl.std)];
    const ratio = Number.isFinite(r / p) ? `, ratio ${(r / p).toFixed(2)}` : '';
    parts.push(`${depth} layers: mean std ${show(r, 3)} (ResNet) vs ${show(p, 3)} (plain)${ratio}`);
  }
  return `Standard deviation of each 3x3 layer's output after BN and before ReLU, over ${payload.images} held-out ` +
    `images of the generated set, BN with ${payload.bn} statistics. The paper finds ResNet responses generally ` +
    `smaller than plain ones (residual functions closer to zero). Here: ${parts.join("; ")}.`;
}

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
  Plotly.react("chart-fig7", a.data, a.layout, { responsive: true });
  Plotly.react("chart-fig7-sorted", b.data, b.layout, { responsive: true });
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

function showError(err) {
  const box = document.getElementById("error");
  box.textContent = err.message;
  box.hidden = false;
  document.getElementById("status").textContent = "";
}

async function main() {
  try {
    const { runs, findings } = await getJSON("/api/lab/training");
    if (!runs.length) throw new Error("No training logs are shipped (models/weights/*.log.json); run `make weights`.");
    const loss = curve(runs, "loss", "training loss", true);
    Plotly.react("chart-loss", loss.data, loss.layout, { responsive: true });
    const acc = curve(runs, "accuracy", "training accuracy", false);
    Plotly.react("chart-acc", acc.data, acc.layout, { responsive: true });
    document.getElementById("caption-loss").textContent =
      "Training loss per step (moving average over 25 steps, log scale). Dashed: plain networks (every shortcut " +
      "off while training); solid: ResNets. Same data, steps, batch size and learning-rate schedule for all.";
    document.getElementById("findings").innerHTML = findings.map((f) => `<li>${f}</li>`).join("");
    runsTable(runs);
    document.getElementById("bn").addEventListener("change", () => loadFig7().catch(showError));
    document.getElementById("collapse-bn").addEventListener("change", () => loadCollapse().catch(showError));
    await Promise.all([loadFig7().catch(showError), loadCollapse().catch(showError)]);
  } catch (err) {
    showError(err);
  }
}

main();
