// The architecture page's figures (Table 5-1 by stage, block arithmetic, Fig. 5-8, global average
// pooling, the CIFAR table), all from GET /api/chapter: pure builders, {data, layout}.
import { pageLayout, PAGE_COLORS as COLORS } from './theme.js';
import { int } from './format.js';

// Names of traces are long here (layers, networks): hover shows them whole.
const chapterLayout = (layout) => pageLayout({ hoverlabel: { namelength: -1 }, ...layout });

export function stagesFigure(t, family, metric) {
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
    layout: chapterLayout({
      barmode: "stack",
      height: 380,
      yaxis: { title: { text: useParams ? "parameters (millions)" : "multiply-adds (billions)" }, rangemode: "tozero" },
      legend: { orientation: "h", y: -0.18 },
      uirevision: `${family}-${key}`,
    }),
  };
}

export function blocksFigure(b) {
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
  return {
    data,
    layout: chapterLayout({
      barmode: "stack",
      height: 300,
      margin: { l: 85, r: 20, t: 30, b: 40 },
      yaxis: { title: { text: "parameters" }, tickformat: ",d" },
      annotations: [
        { x: "basic", y: b.basic_block_params, text: int(b.basic_block_params), showarrow: false, yshift: 10 },
        { x: "bottleneck", y: b.bottleneck_block_params, text: int(b.bottleneck_block_params), showarrow: false, yshift: 10 },
      ],
    }),
  };
}

export function ratiosFigure(rows) {
  return {
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
    layout: chapterLayout({
      barmode: "group",
      height: 300,
      margin: { l: 80, r: 20, t: 30, b: 50 },
      yaxis: { title: { text: `weights at ${rows[0].channels} channels` }, tickformat: ",d" },
      legend: { orientation: "h", y: -0.2 },
    }),
  };
}

const NET_COLORS = { "VGG-19": COLORS.vgg, "plain-34": COLORS.plain, "ResNet-34": COLORS.resnet };

export function layersFigure(nets) {
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
    layout: chapterLayout({
      height: 380,
      xaxis: { title: { text: "weight layer, in forward order" } },
      yaxis: { title: { text: "multiply-adds (millions)" }, rangemode: "tozero" },
      legend: { orientation: "h", y: -0.22 },
      uirevision: "layers",
    }),
  };
}

export function totalsFigure(nets, paper, key) {
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
    layout: chapterLayout({
      height: 300,
      showlegend: isMacs,
      legend: { orientation: "h", y: -0.2 },
      yaxis: { title: { text: isMacs ? "multiply-adds (billions)" : "parameters (millions)" }, rangemode: "tozero" },
    }),
  };
}

export function gapFigure(g) {
  const classes = g.averages.map((_, i) => `class ${i}`);
  return {
    data: [
      { type: "bar", name: "map average", x: classes, y: g.averages, marker: { color: COLORS.plain }, hovertemplate: "%{x}: average %{y:.3f}<extra></extra>" },
      { type: "scatter", mode: "lines+markers", name: "softmax", x: classes, y: g.softmax, yaxis: "y2", marker: { color: COLORS.paper }, hovertemplate: "%{x}: p = %{y:.3f}<extra></extra>" },
    ],
    layout: chapterLayout({
      height: 300,
      yaxis: { title: { text: "average of the 7x7 map" } },
      yaxis2: { title: { text: "softmax probability" }, overlaying: "y", side: "right", rangemode: "tozero" },
      legend: { orientation: "h", y: -0.25 },
      margin: { l: 60, r: 60, t: 30, b: 60 },
    }),
  };
}

export function cifarFigure(rows) {
  const x = rows.map((r) => r.name.replace("resnet", "ResNet-"));
  return {
    data: [
      { type: "bar", name: "computed", x, y: rows.map((r) => r.params), marker: { color: COLORS.resnet }, hovertemplate: "%{x}: %{y:,} parameters<extra></extra>" },
      { type: "scatter", mode: "markers", name: "paper", x, y: rows.map((r) => r.paper_params_m * 1e6), marker: { symbol: "diamond", size: 11, color: COLORS.paper }, hovertemplate: "%{x}: %{y:.3s} in the paper<extra></extra>" },
    ],
    layout: chapterLayout({
      height: 300,
      yaxis: { type: "log", dtick: 1, tickformat: ".2s", title: { text: "parameters (log scale)" } },
      legend: { orientation: "h", y: -0.25 },
    }),
  };
}
