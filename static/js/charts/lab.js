// The degradation lab's figures: training curves of plain vs residual nets and the paper's Fig. 7, from
// GET /api/lab/training and /api/lab/fig7 (smoothing, sorting and means come from the server).
import { DEPTH_SHADE, LAB_COLORS, LEGEND_ABOVE } from './theme.js';
import { logTicks } from './gradients.js';

const LEGEND = LEGEND_ABOVE;

export function colour(run) {
  const [r, g, b] = run.plain ? LAB_COLORS.plain : LAB_COLORS.residual;
  const s = DEPTH_SHADE[run.depth] ?? 0.8;
  const mix = (c) => Math.round(255 - (255 - c) * s);
  return `rgb(${mix(r)},${mix(g)},${mix(b)})`;
}

export const label = (r) => `${r.plain ? "plain" : "ResNet"}-${r.depth}`;

// Training curves: the server sends each run's moving average (`${key}_smooth`).
export function curve(runs, key, title, log) {
  const data = runs.map((r) => ({
    type: "scatter", mode: "lines", name: label(r), x: r[key].map((_, i) => i + 1), y: r[`${key}_smooth`],
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

// Fig. 7: each 3x3 layer's response std in forward order, and sorted (the server sorts).
export function fig7Figures(payload) {
  const data = [];
  const sorted = [];
  for (const s of payload.series) {
    const r = { plain: s.plain, depth: s.depth };
    const line = { color: colour(r), dash: s.plain ? "dash" : "solid" };
    data.push({ type: "scatter", mode: "lines+markers", name: label(r), x: s.std.map((_, i) => i + 1), y: s.std,
      text: s.layers, line, marker: { size: 4 }, hovertemplate: "%{text}<br>std %{y:.3f}<extra>" + label(r) + "</extra>" });
    const desc = s.std_sorted;
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

export function fig7Caption(payload) {
  const parts = [];
  for (const depth of [20, 56, 110]) {
    const res = payload.series.find((s) => s.depth === depth && !s.plain);
    const pl = payload.series.find((s) => s.depth === depth && s.plain);
    if (!res || !pl) continue;
    const show = (v, digits) => (Number.isFinite(v) ? v.toFixed(digits) : 'no number (float32 overflow)');
    const [r, p] = [res.std_mean ?? NaN, pl.std_mean ?? NaN];
    const ratio = Number.isFinite(r / p) ? `, ratio ${(r / p).toFixed(2)}` : '';
    parts.push(`${depth} layers: mean std ${show(r, 3)} (ResNet) vs ${show(p, 3)} (plain)${ratio}`);
  }
  return `Standard deviation of each 3x3 layer's output after BN and before ReLU, over ${payload.images} held-out ` +
    `images of the generated set, BN with ${payload.bn} statistics. The paper finds ResNet responses generally ` +
    `smaller than plain ones (residual functions closer to zero). Here: ${parts.join("; ")}.`;
}
