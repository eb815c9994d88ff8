// Activations view: statistics across depth, one layer's histogram, and the depth × value heatmap.
import { draw, onPlotClick, reshape } from '../plot.js';
import { depthFigure, selectionShapes } from '../charts/depth.js';
import { layerHistogramFigure } from '../charts/histogram.js';
import { depthHeatmapFigure, heatmapHeight, heatmapSelection } from '../charts/heatmap.js';

// The heatmap's box grows with the number of taps (~6 px a row), so deep nets keep readable rows.
function sizeHeatmap(el, rows) {
  const h = heatmapHeight(rows);
  el.style.height = `${h}px`;
  return h;
}

const $ = (id) => document.getElementById(id);

export function bind(app) {
  let pending = null;
  $('layer-slider').addEventListener('input', (e) => {
    pending = Number(e.target.value);
    requestAnimationFrame(() => {
      if (pending === null) return;
      const layer = app.layers()[pending];
      pending = null;
      if (layer) app.selectLayer(layer.id);
    });
  });
  for (const radio of document.querySelectorAll('input[name="range"]')) {
    radio.addEventListener('change', (e) => {
      app.update({ range: e.target.value });
      app.rerender();
    });
  }
}

export async function render(app) {
  const a = app.analysis;
  const s = app.state;
  const layer = app.layer();
  const index = a.layers.indexOf(layer);
  const slider = $('layer-slider');
  slider.max = String(a.layers.length - 1);
  slider.value = String(index);
  $('layer-label').textContent = `${index + 1}/${a.layers.length} · ${layer.id} (${layer.kind}, ${layer.shape.slice(1).join('×')})`;
  for (const radio of document.querySelectorAll('input[name="range"]')) radio.checked = radio.value === s.range;
  const selectAt = (i) => a.layers[i] && app.selectLayer(a.layers[i].id);
  const sel = { layer: layer.id, block: s.block };
  const depth = $('chart-depth');
  const heat = $('chart-heatmap');
  // The depth chart and the heatmap depend on the analysis only; a new layer or block moves their marks.
  await Promise.all([
    draw(depth, app.akey, () => depthFigure(a, sel)).then(() => reshape(depth, `${layer.id}|${s.block}`, () => selectionShapes(a.layers, sel))),
    draw($('chart-histogram'), `${app.akey}|${layer.id}`, () => layerHistogramFigure(layer)),
    draw(heat, `${app.akey}|${s.range}`, () => depthHeatmapFigure(a, { range: s.range, layer: layer.id, height: sizeHeatmap(heat, a.layers.length) })).then(() =>
      reshape(heat, layer.id, () => heatmapSelection(a.layers, layer.id)),
    ),
  ]);
  onPlotClick($('chart-depth'), (ev) => selectAt(Math.round(ev.points[0].x)));
  onPlotClick($('chart-heatmap'), (ev) => selectAt(Math.round(ev.points[0].y)));
}
