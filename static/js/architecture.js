// Architecture page: Table 5-1 explorer, block arithmetic and Fig. 5-8, all from GET /api/chapter.
// DOM wiring only: the transport is api.js, the figures are built in charts/chapter.js and charts/fig3.js.

import { ask } from "./api.js";
import { el } from "./dom.js";
import { plot as draw } from "./plot.js";
import { clearError, showError } from "./status.js";
import { int } from "./charts/format.js";
import { fig3Diagram } from "./charts/fig3.js";
import { blocksFigure, cifarFigure, gapFigure, layersFigure, ratiosFigure, stagesFigure, totalsFigure } from "./charts/chapter.js";

const $ = (id) => document.getElementById(id);
const state = { figs: null, family: "imagenet", metric: "text", controller: null };

// ---------------------------------------------------------------- helpers

const giga = (v, d = 2) => `${(v / 1e9).toFixed(d)}e9`;
const mega = (v, d = 2) => `${(v / 1e6).toFixed(d)}M`;
const pct = (v, d = 1) => `${(100 * v).toFixed(d)}%`;


function setStatus(text) {
  $("status").textContent = text;
}

function fillFacts(id, pairs) {
  const dl = $(id);
  dl.replaceChildren();
  for (const [term, value] of pairs) dl.append(el("dt", { text: term }), el("dd", { text: value }));
}

function fillTable(id, head, rows) {
  const table = $(id);
  table.replaceChildren();
  const thead = el("thead", {}, el("tr", {}, head.map((h) => el("th", { scope: "col", text: h }))));
  const tbody = el("tbody");
  for (const row of rows) tbody.append(el("tr", {}, row.map((c, i) => el(i === 0 ? "th" : "td", i === 0 ? { scope: "row" } : {}, c))));
  table.append(thead, tbody);
}

// ---------------------------------------------------------------- Table 5-1

function cellValue(cell, metric) {
  if (metric === "params") return int(cell.params);
  if (metric === "macs") return int(cell.macs);
  return cell.text;
}

function renderTable51() {
  const t = state.figs.table_5_1[state.family];
  const names = t.models;
  const head = ["stage", "output", ...names.map((n) => n.replace("resnet", "ResNet-"))];
  const rows = t.stages.map((s) => [s.stage, s.output, ...names.map((n) => cellValue(s.cells[n], state.metric))]);
  const tot = t.totals;
  rows.push(["layers (conv + fc)", "", ...names.map((n) => String(tot[n].depth))]);
  rows.push(["parameters", "", ...names.map((n) => int(tot[n].params))]);
  rows.push(["multiply-adds, computed", "", ...names.map((n) => giga(tot[n].macs))]);
  if (state.family === "imagenet") {
    rows.push(["FLOPs printed in the paper", "", ...names.map((n) => `${tot[n].paper_gmacs}e9`)]);
    rows.push(["computed, stride on the first 1x1", "", ...names.map((n) => `${tot[n].paper_layout_gmacs.toFixed(2)}e9`)]);
    rows.push(["torchvision reference params", "", ...names.map((n) => int(tot[n].torchvision_params))]);
  } else {
    rows.push(["parameters in the paper", "", ...names.map((n) => `${tot[n].paper_params_m}M`)]);
  }
  fillTable("table51-table", head, rows);
  const tbody = $("table51-table").tBodies[0];
  for (let i = t.stages.length; i < tbody.rows.length; i++) tbody.rows[i].classList.add("total-row");
  $("table51-notes").replaceChildren(...state.figs.table_5_1.notes.map((n) => el("li", { text: n })));
  drawStages();
}

function drawStages() {
  const t = state.figs.table_5_1[state.family];
  draw("chart-stages", stagesFigure(t, state.family, state.metric));
  const tot = t.totals;
  let caption;
  if (state.family === "imagenet") {
    const r50 = tot.resnet50;
    caption =
      state.metric === "params"
        ? "Parameters per stage: most sit in conv4_x and conv5_x, where the filters are widest. The diamonds are torchvision's published counts; the bars reach them exactly."
        : `Multiply-adds per stage for one 224x224 image; diamonds are the paper's FLOPs. ResNet-50 computes to ${r50.gmacs.toFixed(2)}e9 against the paper's ${r50.paper_gmacs}e9 because torchvision puts the stride on the bottleneck's 3x3; with the stride on the first 1x1 (green bars) it is ${r50.paper_layout_gmacs.toFixed(2)}e9.`;
  } else {
    caption =
      state.metric === "params"
        ? "CIFAR-10 ResNets: three stages of 16, 32 and 64 filters; parameters grow linearly with n, up to about 19.4M for ResNet-1202."
        : "Multiply-adds per stage for one 32x32 image: each stage costs the same, since halving the map and doubling the filters cancel out.";
  }
  $("caption-stages").textContent = caption;
}

// ---------------------------------------------------------------- arithmetic

function renderBlocks(f) {
  const b = f.block_params;
  fillFacts("block-facts", [
    ["basic block (two 3x3)", b.basic_formula],
    ["bottleneck (1x1, 3x3, 1x1)", b.bottleneck_formula],
    ["saving", `${b.bottleneck_reduction_text} (1 - ${int(b.bottleneck_block_params)} / ${int(b.basic_block_params)} = ${b.bottleneck_reduction.toFixed(3)})`],
  ]);
  draw("chart-blocks", blocksFigure(b));
}

function renderRatios(f) {
  const rows = f.stacked_3x3;
  draw("chart-ratios", ratiosFigure(rows));
}

function renderDemo(d) {
  const chain = $("shape-chain");
  chain.replaceChildren();
  const box = (size, label) =>
    el("div", { class: "shape", style: `--s:${Math.max(36, Math.min(96, size * 7))}px` }, [el("span", { text: `${size}x${size}` }), el("small", { text: label })]);
  const row1 = el("div", { class: "chain-row" }, [box(d.n, "input"), el("span", { class: "arrow", text: "5x5 →" }), box(d.one_5x5[0], "output")]);
  const row2 = el("div", { class: "chain-row" }, [
    box(d.n, "input"),
    el("span", { class: "arrow", text: "3x3 →" }),
    box(d.two_3x3_after_first[0], "middle"),
    el("span", { class: "arrow", text: "3x3 →" }),
    box(d.two_3x3[0], "output"),
  ]);
  chain.append(row1, row2);
  $("demo-text").textContent = `${d.text}. n - 4 = ${d.n_minus_4}. Receptive field of one output pixel: ${d.receptive_field_5x5}x${d.receptive_field_5x5} (one 5x5) and ${d.receptive_field_two_3x3}x${d.receptive_field_two_3x3} (two 3x3).`;
}

function gridTable(id, values) {
  const t = $(id);
  t.replaceChildren(...values.map((row) => el("tr", {}, row.map((v) => el("td", { text: Number.isInteger(v) ? String(v) : v.toFixed(1) })))));
}

function renderOneByOne(f) {
  const s = f.one_by_one_conv.scale;
  $("k-value").textContent = String(s.kernel);
  $("k-value-2").textContent = String(s.kernel);
  $("scale-in-shape").textContent = `(${s.input_shape.join("x")})`;
  $("scale-out-shape").textContent = `(${s.output_shape.join("x")})`;
  gridTable("scale-in", s.input);
  gridTable("scale-out", s.output);
  const c = f.one_by_one_conv.channels;
  $("channels-text").textContent = c.text;
  fillFacts("channels-facts", [
    ["input (after a 3x3 conv with 64 filters)", c.input_shape.join(" x ")],
    ["1x1 kernel", c.kernel_shape.join(" x ")],
    ["output", c.output_shape.join(" x ")],
    ["weights", `1*1*64*28 = ${int(c.params)} (${int(c.params_with_bias)} with biases)`],
    ["each output value is", c.per_pixel_dot_product ? "a dot product of one pixel's 64 channels with a filter (checked)" : "—"],
  ]);
}

function renderCounting(f) {
  const rows = Object.values(f.layer_count).map((r) => [
    r.name.replace("resnet", "ResNet-"),
    r.stages.join(", "),
    r.formula,
    String(r.arch_weight_layers),
    r.matches ? "✓" : "✗",
  ]);
  fillTable("count-table", ["model", "blocks per stage", "1 + blocks x convs + 1", "in the layer list", "agrees"], rows);
}

function renderResidual(f) {
  const w = f.worked_example_5_to_5_1;
  fillTable(
    "worked-table",
    ["mapping", `target ${w.target}`, `target ${w.new_target}`, "relative change"],
    [
      [`plain: F'(${w.x}) = H`, String(w.plain.before), String(w.plain.after), pct(w.plain.relative_change)],
      [`residual: F(${w.x}) = H - ${w.x}`, String(w.residual.before), String(w.residual.after), pct(w.residual.relative_change, 0)],
    ],
  );
  $("worked-text").textContent = `${w.text}. The residual mapping feels the same change fifty times more strongly.`;
  const s = f.shortcut_channel_example;
  fillFacts("shortcut-facts", [
    ["layer", `${s.layer} (${s.in_channels} → ${s.out_channels} channels, stride ${s.stride})`],
    ["option A: zero padding", `${s.option_a.zero_channels} zero channels, ${s.option_a.params} parameters`],
    ["option B: 1x1 projection", `${s.option_b.formula} = ${int(s.option_b.params)} parameters, ${int(s.option_b.macs)} multiply-adds`],
  ]);
  $("shortcut-correction").textContent = `Correction: ${s.correction}`;
  fillTable(
    "gradient-table",
    ["F'(x)", "H'(x) = F'(x) + 1"],
    f.residual_gradient.rows.map((r) => [String(r.F_prime), String(r.H_prime)]),
  );
}

// ---------------------------------------------------------------- Fig. 5-8

function renderFig58(f) {
  const v = f.vgg19_vs_resnet34;
  $("fig3-diagram").replaceChildren(fig3Diagram(v.networks));
  draw("chart-layers", layersFigure(v.networks));
  draw("chart-totals", totalsFigure(v.networks, v.paper_gmacs, "macs"));
  draw("chart-params", totalsFigure(v.networks, v.paper_gmacs, "params"));
  $("caption-params").textContent = `Parameters. ${v.head.text}`;
  $("fig58-notes").replaceChildren(...v.notes.map((n) => el("li", { text: n })));
  const lists = $("layer-lists");
  lists.replaceChildren();
  for (const net of v.networks) {
    const table = el("table", { class: "data compact" });
    const details = el("details", {}, [
      el("summary", { text: `${net.name}: ${net.weight_layers} weight layers (${net.depth_rule}), ${int(net.params)} parameters, ${giga(net.macs)} multiply-adds` }),
      el("div", { class: "table-wrap" }, table),
    ]);
    lists.append(details);
    const head = el("thead", {}, el("tr", {}, ["layer", "kind", "output", "channels", "params", "multiply-adds", "note"].map((h) => el("th", { text: h }))));
    const body = el("tbody");
    for (const r of net.layers) {
      body.append(
        el("tr", { class: `kind-${r.kind}` }, [
          el("th", { scope: "row", text: r.name }),
          el("td", { text: r.kind }),
          el("td", { text: `${r.out_size}x${r.out_size}` }),
          el("td", { text: String(r.channels) }),
          el("td", { text: int(r.params) }),
          el("td", { text: int(r.macs) }),
          el("td", { text: r.note }),
        ]),
      );
    }
    const foot = el("tfoot", {}, el("tr", {}, [el("th", { text: "total" }), el("td", { text: net.bn_params ? `+ ${int(net.bn_params)} BN` : "" }), el("td"), el("td"), el("td", { text: int(net.params) }), el("td", { text: int(net.macs) }), el("td")]));
    table.append(head, body, foot);
  }
}

function renderGap(f) {
  const g = f.global_average_pooling;
  const classes = g.averages.map((_, i) => `class ${i}`);
  draw("chart-gap", gapFigure(g));
  $("caption-gap").textContent = `${g.text}. No weights are needed to turn the maps into class scores.`;
  const h = f.vgg19_vs_resnet34.head;
  $("head-text").textContent =
    `With ${g.averages.length} classes the last conv layer makes ${g.averages.length} maps; global average pooling turns each into one number and softmax turns those into probabilities. ` +
    `The real networks keep one small fc layer after the pooling: ResNet-34's has ${int(h.resnet34_fc_params)} parameters, VGG-19's three fc layers ${int(h.vgg19_fc_params)} (${h.ratio.toFixed(0)}x more).`;
}

function renderCifar(f) {
  const rows = f.cifar_table;
  fillTable(
    "cifar-table",
    ["model", "6n+2", "params (computed)", "paper", "difference"],
    rows.map((r) => [r.name.replace("resnet", "ResNet-"), r.formula, int(r.params), `${r.paper_params_m}M`, `${(100 * r.relative_difference).toFixed(1)}%`]),
  );
  const x = rows.map((r) => r.name.replace("resnet", "ResNet-"));
  draw("chart-cifar", cifarFigure(rows));
}

function fillInline(f) {
  for (const span of document.querySelectorAll("[data-fig]")) {
    const v = f[span.dataset.fig];
    span.textContent = typeof v === "number" ? v.toFixed(Number(span.dataset.fmt || 3)) : String(v);
  }
}

function renderAll() {
  const f = state.figs;
  fillInline(f);
  renderTable51();
  renderBlocks(f);
  renderRatios(f);
  renderDemo(f.output_size_demo);
  renderOneByOne(f);
  renderCounting(f);
  renderResidual(f);
  renderFig58(f);
  renderGap(f);
  renderCifar(f);
}

// ---------------------------------------------------------------- wiring

async function load(n) {
  if (state.controller) state.controller.abort();
  state.controller = new AbortController();
  setStatus(state.figs ? "Recomputing…" : "Loading the figures…");
  try {
    const figs = await ask(`/api/chapter?n=${encodeURIComponent(n)}`, { signal: state.controller.signal });
    clearError();
    if (!state.figs) {
      state.figs = figs;
      renderAll();
    } else {
      state.figs = figs;
      renderDemo(figs.output_size_demo);
    }
    setStatus("All figures computed by the server from layer descriptions.");
  } catch (err) {
    if (err.name === "AbortError") return;
    showError(err);
    setStatus("");
  }
}

function readURL() {
  const q = new URLSearchParams(location.search);
  if (["imagenet", "cifar"].includes(q.get("family"))) state.family = q.get("family");
  if (["text", "params", "macs"].includes(q.get("metric"))) state.metric = q.get("metric");
  const n = Number(q.get("n"));
  if (Number.isInteger(n) && n >= 5 && n <= 64) $("demo-n").value = String(n);
  $("family").value = state.family;
  $("metric").value = state.metric;
}

function writeURL() {
  const q = new URLSearchParams({ family: state.family, metric: state.metric, n: $("demo-n").value });
  history.replaceState(null, "", `${location.pathname}?${q}`);
}

let demoTimer = null;

function init() {
  readURL();
  $("family").addEventListener("change", (e) => {
    state.family = e.target.value;
    writeURL();
    if (state.figs) renderTable51();
  });
  $("metric").addEventListener("change", (e) => {
    state.metric = e.target.value;
    writeURL();
    if (state.figs) renderTable51();
  });
  $("demo-n").addEventListener("input", (e) => {
    clearTimeout(demoTimer);
    const n = Number(e.target.value);
    if (!Number.isInteger(n) || n < 5 || n > 64) {
      showError("The input side n must be a whole number from 5 to 64.");
      return;
    }
    demoTimer = setTimeout(() => {
      writeURL();
      load(n);
    }, 250);
  });
  if (typeof Plotly === "undefined") showError("Plotly did not load (/static/vendor/plotly.min.js); the charts cannot be drawn, the tables still can.");
  load($("demo-n").value);
}

init();
