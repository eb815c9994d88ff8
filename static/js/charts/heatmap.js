// One picture of the whole network: rows = taps, columns = value bins, colour = log10 fraction.
import { axis, baseLayout, SELECTION_LINE } from './theme.js';
import { num } from './format.js';

// The chosen tap's row, outlined.
export function heatmapSelection(layers, layer) {
  const i = layers.findIndex((l) => l.id === layer);
  return i < 0 ? [] : [{ type: 'rect', xref: 'paper', yref: 'y', x0: 0, x1: 1, y0: i - 0.5, y1: i + 0.5, line: { color: SELECTION_LINE, width: 1.5 } }];
}

const log10Fraction = (k, n) => (k > 0 && n > 0 ? Math.log10(k / n) : null);

// A row of the server's common grid ({start, counts}: the non-empty run) as log10 fractions, one per bin.
function commonRow(row, bins, sampled) {
  const z = new Array(bins).fill(null);
  row.counts.forEach((k, i) => {
    z[row.start + i] = log10Fraction(k, sampled);
  });
  return z;
}

// Row labels that never overlap: every row when there is room (>= 11 px a row), else every k-th row;
// the chosen tap is always labelled, and regular labels too close to it are dropped.
export function rowTicks(n, selected, plotHeight) {
  const step = Math.max(1, Math.ceil((11 * n) / Math.max(plotHeight, 1)));
  const ticks = [];
  for (let i = 0; i < n; i += step) if (selected < 0 || Math.abs(i - selected) >= step || i === selected) ticks.push(i);
  if (selected >= 0 && !ticks.includes(selected)) ticks.push(selected);
  return ticks.sort((a, b) => a - b);
}

// Default height of the heatmap for n rows (the view sizes its box to this: ~6 px a row).
export const heatmapHeight = (n) => Math.min(1500, Math.max(480, 6 * n + 90));

export function depthHeatmapFigure(analysis, { range = 'common', layer, height = 480 } = {}) {
  const layers = analysis.layers;
  const y = layers.map((_, i) => i);
  let x;
  let z;
  let hover;
  const stats = analysis.chart_stats.heatmap;
  if (range === 'common') {
    const { lo, hi, bins } = stats;
    const step = (hi - lo) / bins;
    x = Array.from({ length: bins }, (_, j) => lo + (j + 0.5) * step);
    z = layers.map((l, i) => commonRow(stats.rows[i], bins, l.histogram.sampled));
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
  const tails = stats.tails;
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
  return { data, layout, caption: heatmapCaption(stats, range) };
}

function heatmapCaption(stats, range) {
  const { lo, hi, widest, narrowest } = stats;
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
