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
const finite = (x) => typeof x === 'number' && Number.isFinite(x);

// Row labels that never overlap: every row when there is room (>= 11 px a row), else every k-th row;
// the chosen tap is always labelled, and regular labels too close to it are dropped.
export function rowTicks(n, selected, plotHeight) {
  const step = Math.max(1, Math.ceil((11 * n) / Math.max(plotHeight, 1)));
  const ticks = [];
  for (let i = 0; i < n; i += step) if (selected < 0 || Math.abs(i - selected) >= step || i === selected) ticks.push(i);
  if (selected >= 0 && !ticks.includes(selected)) ticks.push(selected);
  return ticks.sort((a, b) => a - b);
}

// How far each tap's values reach beyond its histogram range, in units of that range's width:
// left bars for the low tail (min below the low edge), right bars for the high tail.
export function tailExtents(layers) {
  return layers.map((l) => {
    const e = l.histogram.edges;
    const span = e[e.length - 1] - e[0] || 1;
    const s = l.stats || {};
    return {
      low: finite(s.min) ? Math.max(0, (e[0] - s.min) / span) : null,
      high: finite(s.max) ? Math.max(0, (s.max - e[e.length - 1]) / span) : null,
    };
  });
}

// Default height of the heatmap for n rows (the view sizes its box to this: ~6 px a row).
export const heatmapHeight = (n) => Math.min(1500, Math.max(480, 6 * n + 90));

export function depthHeatmapFigure(analysis, { range = 'common', layer, height = 480 } = {}) {
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
  const tails = tailExtents(layers);
  const tailHover = (side) => layers.map((l, i) => {
    const h = l.histogram;
    const e = h.edges;
    return side === 'low'
      ? `${l.id}<br>underflow: ${h.underflow} values below ${num(e[0])}<br>min ${num(l.stats?.min)}: ${num(tails[i].low, 2)}× the range width below it`
      : `${l.id}<br>overflow: ${h.overflow} values above ${num(e[e.length - 1])}<br>max ${num(l.stats?.max)}: ${num(tails[i].high, 2)}× the range width above it`;
  });
  const zmin = -4.3;
  const colorbar = {
    title: { text: 'fraction', side: 'right' }, thickness: 12, len: 0.9, x: 1.0, xanchor: 'left',
    tickvals: [-4, -3, -2, -1, 0], ticktext: ['1e-4', '1e-3', '0.01', '0.1', '1'],
  };
  const data = [
    {
      type: 'heatmap', x, y, z, text: hover, zmin, zmax: 0, colorscale: 'Viridis', colorbar, xaxis: 'x', yaxis: 'y',
      hovertemplate: '%{text}<br>fraction 10^%{z:.2f}<extra></extra>', hoverongaps: false,
    },
    {
      type: 'bar', orientation: 'h', name: 'low tail', y, x: tails.map((t) => (t.low === null ? null : -t.low)), hovertext: tailHover('low'), textposition: 'none',
      marker: { color: '#6a51a3' }, xaxis: 'x2', yaxis: 'y', hovertemplate: '%{hovertext}<extra></extra>', showlegend: false,
    },
    {
      type: 'bar', orientation: 'h', name: 'high tail', y, x: tails.map((t) => t.high), hovertext: tailHover('high'), textposition: 'none',
      marker: { color: '#d6404e' }, xaxis: 'x2', yaxis: 'y', hovertemplate: '%{hovertext}<extra></extra>', showlegend: false,
    },
  ];
  const li = layers.findIndex((l) => l.id === layer);
  const ticks = rowTicks(layers.length, li, height - 64);
  const layout = baseLayout({
    height,
    margin: { l: 120, r: 8, t: 16, b: 48 },
    barmode: 'overlay',
    bargap: 0.15,
    xaxis: axis(range === 'common' ? 'value (one range for every tap)' : 'position in each tap’s own range (0 = its low edge, 1 = its high edge)', { domain: [0, 0.8] }),
    xaxis2: axis('tails beyond the range<br>(× its width)', { domain: [0.83, 0.95], tickfont: { size: 9 }, fixedrange: true, zeroline: true, zerolinecolor: '#999', title: { text: 'tails beyond the range<br>(× its width)', font: { size: 10 } } }),
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
  text += 'Right: how far each tap’s values reach beyond its histogram range (the 0.1%–99.9% quantiles, so about 0.1% of the values on each side lie out there), left bars below its low edge, right bars above its high edge, in units of the range’s width; hover for the counts.';
  return text;
}
