// One channel of one tap at full resolution, as a heatmap with a colour bar (optionally over the input).
import { baseLayout } from './theme.js';
import { num, pct } from './format.js';

// overlay: {source: data URL of the input cropped as the model sees it, opacity: 0..1} or null;
// slider: whether the page has the overlay slider the caption names (the Explore page; not an embed or export).
export function channelFigure(fm, overlay = null, { slider = true } = {}) {
  const [h, w] = fm.shape;
  const data = [
    {
      type: 'heatmap', z: fm.values, zmin: fm.vmin, zmax: fm.vmax, colorscale: 'Viridis',
      colorbar: { title: { text: 'activation', side: 'right' }, thickness: 12 },
      hovertemplate: 'row %{y}, col %{x}<br>value %{z:.4g}<extra></extra>',
    },
  ];
  const images = overlay && overlay.source && overlay.opacity > 0
    ? [{ source: overlay.source, xref: 'x', yref: 'y', x: -0.5, y: -0.5, sizex: w, sizey: h, sizing: 'stretch', opacity: overlay.opacity, layer: 'above', xanchor: 'left', yanchor: 'top' }]
    : [];
  const layout = baseLayout({
    margin: { l: 40, r: 8, t: 28, b: 32 },
    title: { text: `${fm.tap} · channel ${fm.channel} · ${h}×${w}`, font: { size: 12 }, x: 0.02 },
    xaxis: { range: [-0.5, w - 0.5], constrain: 'domain', showgrid: false, zeroline: false },
    yaxis: { range: [h - 0.5, -0.5], scaleanchor: 'x', constrain: 'domain', showgrid: false, zeroline: false },
    images,
  });
  return { data, layout, caption: channelCaption(fm, slider) };
}

function channelCaption(fm, slider) {
  const { mean, zero_fraction: zeros } = fm.summary; // computed by the server
  let text = `Channel ${fm.channel} of ${fm.tap} at full resolution (${fm.shape.join('×')}), its own colour scale ${num(fm.vmin)} to ${num(fm.vmax)}; mean ${num(mean)}, ${pct(zeros)} zeros. `;
  text += slider
    ? 'Bright pixels are where this filter responds; the overlay slider lays the input, cropped as the model sees it, on top.'
    : 'Bright pixels are where this filter responds.';
  return text;
}
