// One picture of the whole network: rows = taps, columns = value bins, colour = log10 fraction.
import { axis, baseLayout, SELECTION_LINE } from './theme.js';
import { num } from './format.js';

const COMMON_BINS = 96;

// Spread a histogram's counts onto a common grid, uniformly within each source bin.
export function rebin(hist, lo, hi, bins) {
  const out = new Array(bins).fill(0);
  const step = (hi - lo) / bins;
  const e = hist.edges;
  hist.counts.forEach((k, i) => {
    if (!k) return;
    const a = e[i];
    const b = e[i + 1];
    const width = b - a;
    let j = Math.max(0, Math.floor((a - lo) / step));
    const jEnd = Math.min(bins - 1, Math.floor((b - lo) / step));
    for (; j <= jEnd; j++) {
      const overlap = Math.min(b, lo + (j + 1) * step) - Math.max(a, lo + j * step);
      if (overlap > 0) out[j] += (k * overlap) / width;
    }
  });
  return out;
}

// The chosen tap's row, outlined.
export function heatmapSelection(layers, layer) {
  const i = layers.findIndex((l) => l.id === layer);
  return i < 0 ? [] : [{ type: 'rect', xref: 'paper', yref: 'y', x0: 0, x1: 1, y0: i - 0.5, y1: i + 0.5, line: { color: SELECTION_LINE, width: 1.5 } }];
}

const log10Fraction = (k, n) => (k > 0 && n > 0 ? Math.log10(k / n) : null);

export function depthHeatmapFigure(analysis, { range = 'common', layer } = {}) {
  const layers = analysis.layers;
  const y = layers.map((_, i) => i);
  let x;
  let z;
  let hover;
  let lo = 0;
  let hi = 1;
  if (range === 'common') {
    lo = Math.min(...layers.map((l) => l.histogram.edges[0]));
    hi = Math.max(...layers.map((l) => l.histogram.edges[l.histogram.edges.length - 1]));
    const step = (hi - lo) / COMMON_BINS;
    x = Array.from({ length: COMMON_BINS }, (_, j) => lo + (j + 0.5) * step);
    z = layers.map((l) => rebin(l.histogram, lo, hi, COMMON_BINS).map((k) => log10Fraction(k, l.histogram.sampled)));
    hover = layers.map((l) => x.map((v) => `${l.id}<br>value ≈ ${num(v)}`));
  } else {
    const bins = layers[0].histogram.counts.length;
    x = Array.from({ length: bins }, (_, j) => (j + 0.5) / bins);
    z = layers.map((l) => l.histogram.counts.map((k) => log10Fraction(k, l.histogram.sampled)));
    hover = layers.map((l) => {
      const e = l.histogram.edges;
      return l.histogram.counts.map((_, j) => `${l.id}<br>[${num(e[j])}, ${num(e[j + 1])})`);
    });
  }
  const flows = layers.map((l) => [l.histogram.underflow, l.histogram.overflow].map((k) => log10Fraction(k, l.histogram.sampled)));
  const flowHover = layers.map((l) => [
    `${l.id}<br>underflow: ${l.histogram.underflow} values below ${num(l.histogram.edges[0])}`,
    `${l.id}<br>overflow: ${l.histogram.overflow} values above ${num(l.histogram.edges[l.histogram.edges.length - 1])}`,
  ]);
  const zmin = -4.3;
  const colorbar = {
    title: { text: 'fraction', side: 'right' }, thickness: 12, len: 0.9,
    tickvals: [-4, -3, -2, -1, 0], ticktext: ['1e-4', '1e-3', '0.01', '0.1', '1'],
  };
  const data = [
    {
      type: 'heatmap', x, y, z, text: hover, zmin, zmax: 0, colorscale: 'Viridis', colorbar, xaxis: 'x', yaxis: 'y',
      hovertemplate: '%{text}<br>fraction 10^%{z:.2f}<extra></extra>', hoverongaps: false,
    },
    {
      type: 'heatmap', x: ['under', 'over'], y, z: flows, text: flowHover, zmin, zmax: 0, colorscale: 'Viridis', showscale: false,
      xaxis: 'x2', yaxis: 'y', hovertemplate: '%{text}<extra></extra>', hoverongaps: false, xgap: 2,
    },
  ];
  const li = layers.findIndex((l) => l.id === layer);
  const tickStep = Math.max(1, Math.ceil(layers.length / 28));
  const ticks = y.filter((i) => i % tickStep === 0 || i === li);
  const layout = baseLayout({
    margin: { l: 120, r: 8, t: 16, b: 48 },
    xaxis: axis(range === 'common' ? 'value (one range for every tap)' : 'position in each tap’s own range (0 = its low edge, 1 = its high edge)', { domain: [0, 0.86] }),
    xaxis2: { domain: [0.88, 1], tickfont: { size: 10 }, fixedrange: true },
    yaxis: axis('', { autorange: 'reversed', tickvals: ticks, ticktext: ticks.map((i) => layers[i].id), tickfont: { size: 9 } }),
    shapes: heatmapSelection(layers, layer),
  });
  return { data, layout, caption: heatmapCaption(analysis, range, lo, hi) };
}

function heatmapCaption(analysis, range, lo, hi) {
  const spans = analysis.layers.map((l) => ({ id: l.id, span: l.histogram.edges[l.histogram.edges.length - 1] - l.histogram.edges[0] }));
  const widest = spans.reduce((a, b) => (b.span > a.span ? b : a));
  const narrowest = spans.reduce((a, b) => (b.span < a.span ? b : a));
  let text = 'Each row is one tap’s histogram, top to bottom in forward order; colour is log10 of the fraction of its sampled values per bin. ';
  if (range === 'common') {
    text += `Normalised to a common range [${num(lo)}, ${num(hi)}] for all taps, so rows compare directly: `;
  } else {
    text += 'Each row normalised to its own 0.1%–99.9% quantile range, so shapes compare but positions do not: ';
  }
  text += `the widest range is ${widest.id} (${num(widest.span)}), the narrowest ${narrowest.id} (${num(narrowest.span)}). `;
  text += 'The two right columns are each tap’s underflow and overflow (values beyond its own range).';
  return text;
}
