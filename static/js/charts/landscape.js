// The loss landscapes of the degradation lab (Li et al. 2018), from GET /api/lab/landscapes/{model}: the residual
// and plain surfaces of one depth side by side on one colour scale (contours and 3-D surfaces of log10 of the
// loss), and their 1-D slices overlaid. Every number (log10 grids, the common range, rises, minima, ratios,
// comparisons) comes from the server; these builders only draw and phrase them.
import { LAB_COLORS, LANDSCAPE_COLORSCALE, LANDSCAPE_MARKS, LEGEND_ABOVE, pageLayout } from './theme.js';
import { num, pct } from './format.js';

const KINDS = ['residual', 'plain'];
const rgb = ([r, g, b]) => `rgb(${r},${g},${b})`;
export const surfaceLabel = (s) => `${s.plain ? 'plain' : 'ResNet'}-${s.depth}`;
const halves = (pair) => KINDS.map((k) => pair[k]).filter(Boolean);
const colourOf = (s) => rgb(s.plain ? LAB_COLORS.plain : LAB_COLORS.residual);

function levels(pair) {
  const { min, max } = pair.colour;
  const lo = min ?? 0;
  const hi = max ?? 1;
  return { zmin: lo, zmax: hi, size: (hi - lo) / 24 || 0.1 };
}

// The colour bar of log10 of the loss, labelled in powers of ten.
function colourbar({ zmin, zmax }) {
  const step = Math.max(1, Math.ceil((zmax - zmin) / 8));
  const tickvals = [];
  for (let k = Math.ceil(zmin); k <= zmax; k += step) tickvals.push(k);
  return {
    title: { text: 'training loss', side: 'right' }, thickness: 14, len: 0.9, tickmode: 'array', tickvals,
    ticktext: tickvals.map((k) => `10<sup>${k}</sup>`),
  };
}

// Contours of both surfaces, side by side, one colour scale (zmin/zmax from the server's common range).
export function landscapeContourFigure(pair) {
  const range = levels(pair);
  const { zmin, zmax, size } = range;
  const data = [];
  const layout = pageLayout({
    margin: { l: 56, r: 20, t: 44, b: 50 }, showlegend: false, uirevision: `contour-${pair.model}`,
    annotations: [],
  });
  halves(pair).forEach((s, i) => {
    const ax = i === 0 ? '' : '2';
    const left = i === 0 ? 0 : 0.53;
    data.push({
      type: 'contour', name: surfaceLabel(s), x: s.coords, y: s.coords, z: s.log10_loss, zmin, zmax, zauto: false,
      autocontour: false, contours: { start: zmin, end: zmax, size, coloring: 'heatmap' }, colorscale: LANDSCAPE_COLORSCALE,
      showscale: i === halves(pair).length - 1, colorbar: colourbar(range), connectgaps: false,
      line: { width: 0.5, color: 'rgba(0,0,0,0.35)' }, xaxis: `x${ax}`, yaxis: `y${ax}`, customdata: s.loss,
      hovertemplate: `${surfaceLabel(s)}<br>a %{x:.3f}, b %{y:.3f}<br>loss %{customdata:.4g}<extra></extra>`,
    });
    const minima = s.local_minima_at || [];
    data.push({
      type: 'scatter', mode: 'markers', name: `${surfaceLabel(s)}: local minima`, x: minima.map((p) => p[0]),
      y: minima.map((p) => p[1]), marker: { symbol: 'circle-open', size: 9, color: LANDSCAPE_MARKS.minimum, line: { width: 2 } },
      xaxis: `x${ax}`, yaxis: `y${ax}`, hovertemplate: `${surfaceLabel(s)}: local minimum at (%{x:.2f}, %{y:.2f})<extra></extra>`,
    });
    data.push({
      type: 'scatter', mode: 'markers', name: `${surfaceLabel(s)}: shipped weights`, x: [0], y: [0],
      marker: { symbol: 'x-thin', size: 10, color: LANDSCAPE_MARKS.centre, line: { width: 2, color: LANDSCAPE_MARKS.centre } },
      xaxis: `x${ax}`, yaxis: `y${ax}`, hovertemplate: `${surfaceLabel(s)}: the shipped weights<br>loss ${num(s.centre_loss)}<extra></extra>`,
    });
    layout[`xaxis${ax}`] = { domain: [left, left + 0.4], title: { text: 'a (along d1)' }, zeroline: false, anchor: `y${ax}` };
    layout[`yaxis${ax}`] = { title: { text: i === 0 ? 'b (along d2)' : '' }, zeroline: false, anchor: `x${ax}`, scaleanchor: `x${ax}` };
    layout.annotations.push({ text: `<b>${surfaceLabel(s)}</b>`, xref: 'paper', yref: 'paper', x: left + 0.2, y: 1.02,
      xanchor: 'center', yanchor: 'bottom', showarrow: false });
  });
  return { data, layout, caption: landscapeCaption(pair, 'contour') };
}

// Both surfaces in 3-D, side by side, z and colour on the same range.
export function landscapeSurfaceFigure(pair) {
  const range = levels(pair);
  const { zmin, zmax } = range;
  const data = [];
  const layout = pageLayout({ margin: { l: 0, r: 0, t: 36, b: 10 }, showlegend: false, uirevision: `surface-${pair.model}`, annotations: [] });
  halves(pair).forEach((s, i) => {
    const scene = i === 0 ? 'scene' : 'scene2';
    const left = i === 0 ? 0 : 0.5;
    data.push({
      type: 'surface', name: surfaceLabel(s), x: s.coords, y: s.coords, z: s.log10_loss, cmin: zmin, cmax: zmax,
      colorscale: LANDSCAPE_COLORSCALE, showscale: i === halves(pair).length - 1, colorbar: colourbar(range), scene,
      customdata: s.loss, hovertemplate: `${surfaceLabel(s)}<br>a %{x:.2f}, b %{y:.2f}<br>loss %{customdata:.4g}<extra></extra>`,
    });
    layout[scene] = {
      domain: { x: [left, left + 0.48], y: [0, 1] },
      xaxis: { title: { text: 'a' } }, yaxis: { title: { text: 'b' } },
      zaxis: { title: { text: 'log10 loss' }, range: [zmin, zmax] },
      camera: { eye: { x: 1.65, y: -1.65, z: 0.95 } }, aspectmode: 'cube',
    };
    layout.annotations.push({ text: `<b>${surfaceLabel(s)}</b>`, xref: 'paper', yref: 'paper', x: left + 0.24, y: 1.0,
      xanchor: 'center', yanchor: 'bottom', showarrow: false });
  });
  return { data, layout, caption: landscapeCaption(pair, 'surface') };
}

// The 1-D slices theta + a d1 of both networks overlaid (loss on a log axis; accuracy on the right, dotted).
export function landscapeSliceFigure(pair) {
  const data = [];
  for (const s of halves(pair)) {
    const color = colourOf(s);
    data.push({
      type: 'scatter', mode: 'lines+markers', name: `${surfaceLabel(s)} loss`, x: s.slice.alpha, y: s.slice.loss,
      line: { color, width: 2, dash: s.plain ? 'dash' : 'solid' }, marker: { size: 4 }, connectgaps: false,
      hovertemplate: `${surfaceLabel(s)}<br>a %{x:.3f}<br>loss %{y:.4g}<extra></extra>`,
    });
  }
  for (const s of halves(pair)) {
    data.push({
      type: 'scatter', mode: 'lines', name: `${surfaceLabel(s)} accuracy`, x: s.slice.alpha, y: s.slice.accuracy,
      yaxis: 'y2', line: { color: colourOf(s), width: 1, dash: 'dot' },
      hovertemplate: `${surfaceLabel(s)}<br>a %{x:.3f}<br>accuracy %{y:.3f}<extra></extra>`,
    });
  }
  const layout = pageLayout({
    margin: { l: 64, r: 64, t: 56, b: 48 }, legend: LEGEND_ABOVE, showlegend: true, uirevision: `slice-${pair.model}`,
    xaxis: { title: { text: 'a: theta + a d1 (the same direction d1 as the contours)' }, zeroline: false },
    yaxis: { title: { text: 'training loss (log scale)' }, type: 'log', exponentformat: 'power' },
    yaxis2: { title: { text: 'accuracy (dotted)' }, overlaying: 'y', side: 'right', range: [0, 1], showgrid: false,
      tickmode: 'array', tickvals: [0, 0.25, 0.5, 0.75, 1], ticktext: ['0', '25%', '50%', '75%', '100%'] },
  });
  return { data, layout, caption: landscapeCaption(pair, 'slice') };
}

function riseText(r) {
  return r && r.mean !== null && r.mean !== undefined ? num(r.mean) : 'no number (overflow)';
}

function curvature(s) {
  if (s.eig_ratio === null || s.eig_ratio === undefined) return 'no positive curvature in the fit (no bowl)';
  if (s.eig_ratio === 0) return 'eigenvalue ratio 0 (both curvatures positive: locally convex)';
  return `eigenvalue ratio ${num(s.eig_ratio, 2)} (a negative curvature: a saddle)`;
}

const heldOut = (s) => (s.held_out_accuracy === null ? '' : ` (held-out accuracy ${pct(s.held_out_accuracy)})`);

function describe(s) {
  const minima = s.local_minima === 1 ? '1 local minimum' : `${s.local_minima} local minima`;
  return `${surfaceLabel(s)}${heldOut(s)}: centre loss ${num(s.centre_loss)}, mean loss rise ${riseText(s.rise_05)} ` +
    `on the circle r = 0.5 and ${riseText(s.rise_10)} on r = 1, ${minima} on the grid, ${curvature(s)}`;
}

function describeSlice(s) {
  return `${surfaceLabel(s)}${heldOut(s)}: centre loss ${num(s.centre_loss)}, loss rise ${riseText(s.slice_rise_05)} ` +
    `at a = ±0.5 and ${riseText(s.slice_rise_10)} at a = ±1 (mean of both sides)`;
}

const times = (x) => (x === null || x === undefined ? null : `${num(x, 2)}×`);

// What the numbers show, and where our networks differ from the paper's (the server has compared them).
function verdict(pair, kind) {
  const res = pair.residual;
  const pl = pair.plain;
  if (!res || !pl) return '';
  const c = pair.comparison || {};
  const parts = [];
  const [near, far] = kind === 'slice' ? [c.slice_rise_ratio_05, c.slice_rise_ratio_10] : [c.rise_ratio_05, c.rise_ratio_10];
  if (times(near)) {
    parts.push(`The plain network's loss rises ${times(near)} as much as the ResNet's at r = 0.5` +
      (times(far) ? ` and ${times(far)} at r = 1.` : '.'));
  }
  if (kind !== 'slice') {
    if (c.more_minima === 'plain') parts.push(`Its surface has more local minima (${pl.local_minima} against ${res.local_minima}), as Li et al. find without shortcuts.`);
    else if (c.more_minima === 'residual') parts.push(`Here the ResNet's surface has more local minima (${res.local_minima} against ${pl.local_minima}).`);
    else parts.push(`Both surfaces have ${pl.local_minima} local minima on the grid.`);
  }
  if (pl.held_out_accuracy !== null && pl.held_out_accuracy < 0.5) {
    parts.push(`Unlike the paper's plain nets on CIFAR-10, our plain-${pl.depth} barely trained on the generated set ` +
      `(${pct(pl.held_out_accuracy)} held-out, centre loss ${num(pl.centre_loss)} against ${num(res.centre_loss)}): its ` +
      'surface is the one around a near-chance network, not the chaotic landscape of a trained plain net.');
  }
  for (const s of [res, pl]) {
    if (s.bn_statistics !== 're-estimated') continue;
    const n = s.bn_statistics_detail?.images;
    parts.push(`With its shipped BN running statistics ${surfaceLabel(s)} gives no finite loss (float16 overflow of ` +
      `huge variances), so they were re-estimated from ${n ? `${n} ` : ''}training images before the surface was computed.`);
  }
  return parts.join(' ');
}

const METHOD = {
  contour: 'Contours of log10 of the training loss, one colour scale for both',
  surface: 'log10 of the training loss in 3-D, the same z range and colours for both',
  slice: 'The 1-D slice theta + a d1 through the shipped weights (loss on a log axis, accuracy dotted)',
};

export function landscapeCaption(pair, kind) {
  const first = halves(pair)[0];
  if (!first) return 'No surface is shipped for this depth.';
  const where = kind === 'slice' ? `${2 * first.grid - 1} points along d1, a in [-${first.span}, ${first.span}]`
    : `a ${first.grid}×${first.grid} grid, theta + a d1 + b d2 with a, b in [-${first.span}, ${first.span}]`;
  const head = `${METHOD[kind]}: ${where}, filter-normalised random directions (Li et al. 2018), mean ` +
    `cross-entropy over ${first.images} training images, BN on running statistics.`;
  const nums = halves(pair).map(kind === 'slice' ? describeSlice : describe).join('; ');
  return `${head} ${nums}. ${verdict(pair, kind)}`.trim();
}
