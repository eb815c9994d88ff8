// A standalone export (/api/export/{chart}.html): the answers the chart reads travel in the document
// (#resviz-data) and app/lecture/standalone.py inlines this module with the builders it imports, so the file
// draws exactly what the app draws, with no request at all.
import { PLOT_CONFIG } from './charts/theme.js';
import { buildFigure } from './charts/build.js';

const doc = JSON.parse(document.getElementById('resviz-data').textContent);
const chartEl = document.getElementById('chart');
const hooks = (window.__export = { status: 'loading', error: null, chart: doc.chart });

try {
  const build = () => buildFigure(doc.chart, doc.data, doc.sel, { height: Math.max(300, chartEl.clientHeight || 480) });
  document.getElementById('caption').textContent = build().caption || '';
  const fig = build(); // sized to the box the caption leaves
  const config = { ...PLOT_CONFIG, toImageButtonOptions: { ...PLOT_CONFIG.toImageButtonOptions, filename: doc.filename || 'resviz' } };
  Plotly.newPlot(chartEl, fig.data, { ...fig.layout, autosize: true }, config).then(() => {
    hooks.status = 'drawn';
    document.body.dataset.status = 'drawn';
  });
} catch (err) {
  hooks.status = 'error';
  hooks.error = err.message || String(err);
  document.body.dataset.status = 'error';
  document.getElementById('caption').textContent = `This chart could not be drawn: ${hooks.error}`;
}
