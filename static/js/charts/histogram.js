// Histogram of one tap (sampled values over the 0.1%–99.9% quantile range, with under/overflow).
import { axis, baseLayout, kindColor } from './theme.js';
import { binCentres, binWidths, count, num, pct } from './format.js';

export function histogramTrace(hist, { name, color, opacity = 1, xaxis, yaxis } = {}) {
  const c = binCentres(hist.edges);
  const w = binWidths(hist.edges);
  return {
    type: 'bar', name, x: c, y: hist.counts, width: w, xaxis, yaxis,
    marker: { color, opacity, line: { width: 0 } },
    customdata: c.map((_, i) => [hist.edges[i], hist.edges[i + 1]]),
    hovertemplate: `${name ? `${name}<br>` : ''}[%{customdata[0]:.4g}, %{customdata[1]:.4g})<br>count %{y}<extra></extra>`,
  };
}

export function flowText(hist) {
  return `${hist.underflow} below ${num(hist.edges[0])}, ${hist.overflow} above ${num(hist.edges[hist.edges.length - 1])}`;
}

export function layerHistogramFigure(layer) {
  const hist = layer.histogram;
  const data = [histogramTrace(hist, { name: layer.id, color: kindColor(layer.kind) })];
  const layout = baseLayout({
    margin: { l: 56, r: 16, t: 30, b: 44 },
    bargap: 0,
    xaxis: axis(`value of ${layer.id}`),
    yaxis: axis('count'),
    annotations: [
      {
        xref: 'paper', yref: 'paper', x: 1, y: 1.06, xanchor: 'right', showarrow: false, font: { size: 11, color: '#555' },
        text: `underflow ${hist.underflow} · overflow ${hist.overflow}`,
      },
    ],
  });
  return { data, layout, caption: histogramCaption(layer) };
}

function histogramCaption(layer) {
  const s = layer.stats;
  const h = layer.histogram;
  let text = `${layer.id} (${layer.kind}, ${layer.shape.slice(1).join('×')}): ${count(h.sampled)} sampled values, `;
  text += `binned over the 0.1%–99.9% quantile range (${flowText(h)}). `;
  text += `Whole tensor: mean ${num(s.mean)}, std ${num(s.std)}, min ${num(s.min)}, max ${num(s.max)}, ${pct(s.zero_fraction)} zeros.`;
  if (layer.kind === 'bn') text += ' A BN output: centred and scaled per channel by step 3, then shifted and scaled by γ, β (step 4).';
  else if (layer.kind === 'conv') text += ' A conv output, before BN: the chapter notes such outputs are roughly symmetric.';
  else if (s.zero_fraction > 0.05) text += ' After a ReLU: the spike at 0 holds every negative input.';
  return text;
}
