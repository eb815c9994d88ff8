// Architecture page: Table 5-1 explorer, block arithmetic and Fig. 5-8, all from GET /api/chapter.
// Transport (getJSON), pure figure builders (*Figure) and DOM wiring are kept apart.

import { request } from "./api.js";
import { el } from "./dom.js";
import { fig3Diagram } from "./charts/fig3.js";

const $ = (id) => document.getElementById(id);
const PLOT_CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] };
const COLORS = {
  vgg: "#8c6d31",
  plain: "#7f7f7f",
  resnet: "#1f77b4",
  paper: "#d62728",
  accent: "#2ca02c",
  stages: ["#9ecae1", "#6baed6", "#4292c6", "#2171b5", "#08519c", "#fd8d3c"],
};
const BASE_LAYOUT = {
  margin: { l: 60, r: 20, t: 30, b: 50 },
  font: { family: "system-ui, sans-serif", size: 12 },
  paper_bgcolor: "rgba(0,0,0,0)",
  plot_bgcolor: "rgba(0,0,0,0)",
  hoverlabel: { namelength: -1 },
};

const state = { figs: null, family: "imagenet", metric: "text", controller: null };

// ---------------------------------------------------------------- transport

async function getJSON(url, signal) {
  try {
    return await request(url, { signal, headers: { Accept: "application/json" } });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new Error(err.status ? `The server refused the request: ${err.message}` : `Could not reach the server: ${err.message}`);
  }
}

// ---------------------------------------------------------------- helpers

const int = (v) => Math.round(v).toLocaleString("en-US");
const giga = (v, d = 2) => `${(v / 1e9).toFixed(d)}e9`;
const mega = (v, d = 2) => `${(v / 1e6).toFixed(d)}M`;
const pct = (v, d = 1) => `${(100 * v).toFixed(d)}%`;


function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function setStatus(text) {
  $("status").textContent = text;
}

function draw(id, fig) {
  const node = $(id);
  if (!node || typeof Plotly === "undefined") return;
  Plotly.react(node, fig.data, { ...BASE_LAYOUT, ...fig.layout }, PLOT_CONFIG);
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

function stagesFigure(t, family, metric) {
  const useParams = metric === "params";
  const key = useParams ? "params" : "macs";
  const scale = useParams ? 1e6 : 1e9;
  const unit = useParams ? "M parameters" : "e9 multiply-adds";
  const x = t.models.map((n) => n.replace("resnet", "ResNet-"));
  const data = t.stages.map((s, i) => ({
    type: "bar",
    name: s.stage,
    x,
    y: t.models.map((n) => s.cells[n][key] / scale),
    customdata: t.models.map((n) => [s.cells[n].text, int(s.cells[n][key])]),
    hovertemplate: `%{x} ${s.stage}<br>%{customdata[0]}<br>%{customdata[1]} ${useParams ? "parameters" : "multiply-adds"}<extra></extra>`,
    marker: { color: COLORS.stages[i % COLORS.stages.length] },
  }));
  if (family === "imagenet") {
    const ref = useParams
      ? { name: "torchvision reference", y: t.models.map((n) => t.totals[n].torchvision_params / 1e6) }
      : { name: "paper's FLOPs", y: t.models.map((n) => t.totals[n].paper_gmacs) };
    data.push({
      type: "scatter",
      mode: "markers",
      name: ref.name,
      x,
      y: ref.y,
      marker: { symbol: "diamond", size: 11, color: COLORS.paper, line: { color: "white", width: 1 } },
      hovertemplate: `%{x}: %{y:.3g}${unit} (${ref.name})<extra></extra>`,
    });
    if (!useParams) {
      data.push({
        type: "scatter",
        mode: "markers",
        name: "computed, stride on first 1x1",
        x,
        y: t.models.map((n) => t.totals[n].paper_layout_gmacs),
        marker: { symbol: "line-ew-open", size: 18, color: COLORS.accent, line: { width: 3 } },
        hovertemplate: "%{x}: %{y:.3f}e9 with the stride on the first 1x1<extra></extra>",
      });
    }
  } else if (useParams) {
    data.push({
      type: "scatter",
      mode: "markers",
      name: "paper",
      x,
      y: t.models.map((n) => t.totals[n].paper_params_m),
      marker: { symbol: "diamond", size: 11, color: COLORS.paper },
      hovertemplate: "%{x}: %{y}M in the paper<extra></extra>",
    });
  }
  return {
    data,
    layout: {
      barmode: "stack",
      height: 380,
      yaxis: { title: { text: useParams ? "parameters (millions)" : "multiply-adds (billions)" }, rangemode: "tozero" },
      legend: { orientation: "h", y: -0.18 },
      uirevision: `${family}-${key}`,
    },
  };
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
  const layers = [
    ...b.basic_layers.map((l) => ({ block: "basic", ...l })),
    ...b.bottleneck_layers.map((l) => ({ block: "bottleneck", ...l })),
  ];
  const data = layers.map((l) => ({
    type: "bar",
    name: `${l.block}: ${l.kernel}x${l.kernel}, ${l.in_channels}→${l.out_channels}`,
    x: [l.block],
    y: [l.params],
    hovertemplate: `${l.id}<br>${l.kernel}x${l.kernel}x${l.in_channels}x${l.out_channels} = %{y:,} weights<extra></extra>`,
    showlegend: false,
  }));
  draw("chart-blocks", {
    data,
    layout: {
      barmode: "stack",
      height: 300,
      margin: { l: 85, r: 20, t: 30, b: 40 },
      yaxis: { title: { text: "parameters" }, tickformat: ",d" },
      annotations: [
        { x: "basic", y: b.basic_block_params, text: int(b.basic_block_params), showarrow: false, yshift: 10 },
        { x: "bottleneck", y: b.bottleneck_block_params, text: int(b.bottleneck_block_params), showarrow: false, yshift: 10 },
      ],
    },
  });
}

function renderRatios(f) {
  const rows = f.stacked_3x3;
  draw("chart-ratios", {
    data: [
      {
        type: "bar",
        name: "stacked 3x3",
        x: rows.map((r) => `${r.stack} vs ${r.single}`),
        y: rows.map((r) => r.stacked_params),
        marker: { color: COLORS.resnet },
        hovertemplate: "%{x}: stacked 3x3 %{y:,} weights<extra></extra>",
      },
      {
        type: "bar",
        name: "one big kernel",
        x: rows.map((r) => `${r.stack} vs ${r.single}`),
        y: rows.map((r) => r.single_params),
        marker: { color: COLORS.vgg },
        customdata: rows.map((r) => r.text),
        hovertemplate: "%{x}: one big kernel %{y:,} weights<br>ratio %{customdata}<extra></extra>",
      },
    ],
    layout: {
      barmode: "group",
      height: 300,
      margin: { l: 80, r: 20, t: 30, b: 50 },
      yaxis: { title: { text: `weights at ${rows[0].channels} channels` }, tickformat: ",d" },
      legend: { orientation: "h", y: -0.2 },
    },
  });
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

const NET_COLORS = { "VGG-19": COLORS.vgg, "plain-34": COLORS.plain, "ResNet-34": COLORS.resnet };

function layersFigure(nets) {
  const data = nets.map((net) => {
    const rows = net.layers.filter((r) => r.kind !== "pool");
    return {
      type: "scatter",
      mode: "lines+markers",
      line: { shape: "hv", color: NET_COLORS[net.name], width: net.name === "plain-34" ? 4 : 2 },
      marker: { size: 5, symbol: rows.map((r) => (r.kind === "shortcut" ? "star" : "circle")) },
      name: net.name,
      x: rows.map((_, i) => i + 1),
      y: rows.map((r) => r.macs / 1e6),
      customdata: rows.map((r) => [r.name, `${r.out_size}x${r.out_size}x${r.channels}`, int(r.params), r.note]),
      hovertemplate: `${net.name} %{customdata[0]}<br>output %{customdata[1]}<br>%{y:.1f}M multiply-adds, %{customdata[2]} params<br>%{customdata[3]}<extra></extra>`,
    };
  });
  return {
    data,
    layout: {
      height: 380,
      xaxis: { title: { text: "weight layer, in forward order" } },
      yaxis: { title: { text: "multiply-adds (millions)" }, rangemode: "tozero" },
      legend: { orientation: "h", y: -0.22 },
      uirevision: "layers",
    },
  };
}

function totalsFigure(nets, paper, key) {
  const names = nets.map((n) => n.name);
  const isMacs = key === "macs";
  const data = [
    {
      type: "bar",
      name: "computed",
      x: names,
      y: nets.map((n) => n[key] / (isMacs ? 1e9 : 1e6)),
      marker: { color: names.map((n) => NET_COLORS[n]) },
      text: nets.map((n) => (isMacs ? (n.macs / 1e9).toFixed(2) : (n.params / 1e6).toFixed(1))),
      textposition: "outside",
      hovertemplate: isMacs ? "%{x}: %{y:.3f}e9 multiply-adds<extra></extra>" : "%{x}: %{y:.2f}M parameters<extra></extra>",
    },
  ];
  if (isMacs) {
    data.push({
      type: "scatter",
      mode: "markers",
      name: "paper",
      x: names,
      y: names.map((n) => paper[n]),
      marker: { symbol: "diamond", size: 12, color: COLORS.paper },
      hovertemplate: "%{x}: %{y}e9 in the paper<extra></extra>",
    });
  }
  return {
    data,
    layout: {
      height: 300,
      showlegend: isMacs,
      legend: { orientation: "h", y: -0.2 },
      yaxis: { title: { text: isMacs ? "multiply-adds (billions)" : "parameters (millions)" }, rangemode: "tozero" },
    },
  };
}

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
  draw("chart-gap", {
    data: [
      { type: "bar", name: "map average", x: classes, y: g.averages, marker: { color: COLORS.plain }, hovertemplate: "%{x}: average %{y:.3f}<extra></extra>" },
      { type: "scatter", mode: "lines+markers", name: "softmax", x: classes, y: g.softmax, yaxis: "y2", marker: { color: COLORS.paper }, hovertemplate: "%{x}: p = %{y:.3f}<extra></extra>" },
    ],
    layout: {
      height: 300,
      yaxis: { title: { text: "average of the 7x7 map" } },
      yaxis2: { title: { text: "softmax probability" }, overlaying: "y", side: "right", rangemode: "tozero" },
      legend: { orientation: "h", y: -0.25 },
      margin: { l: 60, r: 60, t: 30, b: 60 },
    },
  });
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
  draw("chart-cifar", {
    data: [
      { type: "bar", name: "computed", x, y: rows.map((r) => r.params), marker: { color: COLORS.resnet }, hovertemplate: "%{x}: %{y:,} parameters<extra></extra>" },
      { type: "scatter", mode: "markers", name: "paper", x, y: rows.map((r) => r.paper_params_m * 1e6), marker: { symbol: "diamond", size: 11, color: COLORS.paper }, hovertemplate: "%{x}: %{y:.3s} in the paper<extra></extra>" },
    ],
    layout: {
      height: 300,
      yaxis: { type: "log", dtick: 1, tickformat: ".2s", title: { text: "parameters (log scale)" } },
      legend: { orientation: "h", y: -0.25 },
    },
  });
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
    const figs = await getJSON(`/api/chapter?n=${encodeURIComponent(n)}`, state.controller.signal);
    showError("");
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
    showError(err.message);
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
