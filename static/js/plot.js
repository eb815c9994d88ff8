// Drawing: Plotly.react for every redraw, skipped when a chart's inputs have not changed.
import { PLOT_CONFIG } from './charts/theme.js';

let revision = '';

// Zoom survives redraws (uirevision) until the model changes.
export function setRevision(name) {
  revision = name;
}

// el: the chart div; key: a string naming everything the figure depends on; build: () => {data, layout, caption}
export async function draw(el, key, build, captionEl = null) {
  if (!el) return false;
  if (el.dataset.key === key && el.classList.contains('js-plotly-plot')) return false;
  const fig = build();
  el.classList.remove('placeholder');
  el.removeAttribute('data-message');
  await Plotly.react(el, fig.data, { ...fig.layout, uirevision: `${el.id}|${revision}` }, PLOT_CONFIG);
  el.dataset.key = key;
  delete el.dataset.shapesKey;
  const cap = captionEl || captionFor(el);
  if (cap && fig.caption !== undefined) cap.textContent = fig.caption;
  return true;
}

// Move only the selection marks (layout shapes) of a drawn chart: no data is re-sent to Plotly.
export async function reshape(el, key, build) {
  if (!el || !el.classList.contains('js-plotly-plot') || el.dataset.shapesKey === key) return;
  el.dataset.shapesKey = key;
  await Plotly.relayout(el, { shapes: build() });
}

// A chart that cannot be drawn (no data yet, endpoint missing): an empty box with a message.
export function placeholder(el, message) {
  if (!el) return;
  if (el.classList.contains('js-plotly-plot')) Plotly.purge(el);
  el.dataset.key = '';
  delete el.dataset.clickBound;
  el.classList.add('placeholder');
  el.dataset.message = message;
  const cap = captionFor(el);
  if (cap) cap.textContent = '';
}

export function captionFor(el) {
  return el.closest('figure')?.querySelector('figcaption') || null;
}

// Charts drawn while their tab was hidden have the wrong size: resize them when shown.
export function resizeWithin(root) {
  for (const el of root.querySelectorAll('.js-plotly-plot')) Plotly.Plots.resize(el);
}

export function onPlotClick(el, handler) {
  if (el.dataset.clickBound) return;
  el.dataset.clickBound = '1';
  el.on?.('plotly_click', handler);
}

// Draw a figure whose layout is complete (the chapter pages and the lab): no keys, no caption.
export function plot(target, fig) {
  const el = typeof target === 'string' ? document.getElementById(target) : target;
  if (!el || typeof Plotly === 'undefined') return null;
  return Plotly.react(el, fig.data, fig.layout, PLOT_CONFIG);
}
