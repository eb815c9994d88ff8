// Residual view: ||F(x)|| / ||x|| across depth, F(x) against x, and F's histogram, for the chosen block.
import { draw, onPlotClick } from '../plot.js';
import { ratioFigure, residualHistogramFigure, scatterFigure } from '../charts/residual.js';

const $ = (id) => document.getElementById(id);

export function bind(app) {
  $('res-block').addEventListener('change', (e) => app.selectBlock(e.target.value));
}

export async function render(app) {
  const a = app.analysis;
  const block = app.block();
  const select = $('res-block');
  if (select.dataset.akey !== app.akey) {
    select.replaceChildren(...a.blocks.map((b) => new Option(`${b.id} (stage ${b.stage}, ${b.shortcut_kind})`, b.id)));
    select.dataset.akey = app.akey;
  }
  select.value = block.id;
  const key = `${app.akey}|${block.id}`;
  await Promise.all([
    draw($('chart-ratio'), key, () => ratioFigure(a, { block: block.id })),
    draw($('chart-scatter'), key, () => scatterFigure(block)),
    draw($('chart-residual-hist'), key, () => residualHistogramFigure(block)),
  ]);
  onPlotClick($('chart-ratio'), (ev) => {
    const b = a.blocks[Math.round(ev.points[0].x)];
    if (b) app.selectBlock(b.id);
  });
}
