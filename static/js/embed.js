// One chart filling its iframe (/embed/{chart}?...): fetch the answers the chart reads from the API and
// draw them with the builders of static/js/charts/ (build.js). The server has checked the parameters
// (templates/embed.html carries them as JSON); what can still fail here is a data request.
import * as api from './api.js';
import { PLOT_CONFIG } from './charts/theme.js';
import { buildFigure } from './charts/build.js';
import { featureMapChoice } from './charts/select.js';
import { explainParams, stripParams } from './charts/explain.js';
import { normLayerChoice } from './charts/bnclaims.js';

const cfg = JSON.parse(document.getElementById('embed-config').textContent);
const chartEl = document.getElementById('chart');
const hooks = (window.__embed = { status: 'loading', error: null, config: cfg, ms: null });
const EXPLAIN_KEYS = ['method', 'target', 'opacity', 'samples', 'steps', 'explain_layer']; // the explain charts' config
const sel = { layer: cfg.layer, block: cfg.block, channel: cfg.channel, range: cfg.range };
for (const key of EXPLAIN_KEYS) if (key in cfg) sel[key] = cfg[key];

const params = (extra = {}) => ({ imageId: cfg.image_id, weights: cfg.weights || undefined, gates: cfg.gates, bn: cfg.bn, ...extra });

// The class every gradient run and the lesion study use: the one the full residual network (every
// shortcut on) predicts, so switching shortcuts never moves the baseline (as on the main page).
const target = async () => (await api.gradients(cfg.model, params({ gates: 'all-on' }))).target[0];

// The explanations: the map at the chosen layer, or every layer's map with the link's gates and with every
// gate 0 (for the class the first strip explained), as the Explore page asks for them.
async function explanations() {
  const explain = (p) => api.explain(cfg.model, params(p));
  if (cfg.chart === 'explain') return { explanation: await explain(explainParams(sel)) };
  const p = stripParams(sel);
  const residual = await explain(p);
  return { strips: { residual, plain: await explain({ ...p, gates: 'all-off', target: String(residual.target) }) } };
}

// The answers a chart reads, as app/lecture/export.py gathers them for an export.
async function gather() {
  if (cfg.chart.startsWith('landscape-')) return { landscape: await api.labLandscape(cfg.model) };
  if (cfg.chart === 'depth-sweep') return { sweep: await api.depthSweep({ bn: cfg.bn, weights: cfg.sweep_weights || undefined }) };
  if (cfg.chart === 'explain' || cfg.chart === 'explain-strip') return explanations();
  if (cfg.chart.startsWith('shattered-')) return { shattered: await api.getJSON('/api/lab/shattered'), model: cfg.model };
  if (['bn-loss', 'bn-gradnorms'].includes(cfg.chart)) return { bnclaims: await api.bnClaims() };
  if (['normalizations', 'normalization-channels'].includes(cfg.chart)) {
    return { norms: await api.normalizations(cfg.model, params({ layer: normLayerChoice(sel) || undefined })) };
  }
  const analysis = await api.analyze(cfg.model, params());
  const data = { analysis };
  if (cfg.chart === 'featuremaps') {
    const choice = featureMapChoice(analysis, sel);
    if (!choice) throw new Error('this analysis has no feature maps');
    data.featuremap = await api.featureMap(cfg.model, params({ tap: choice.tap.id, channel: choice.channel }));
  } else if (cfg.chart === 'gradients') {
    const wanted = { residual: 'all-on', plain: 'all-off' };
    if (!['all-on', 'all-off'].includes(cfg.gates)) wanted.current = cfg.gates;
    const t = await target();
    const entries = await Promise.all(
      Object.entries(wanted).map(async ([key, gates]) => [key, await api.gradients(cfg.model, params({ gates, target: t }))]),
    );
    data.runs = Object.fromEntries(entries);
  } else if (cfg.chart === 'lesion') {
    data.lesion = await api.lesion(cfg.model, params({ target: await target() }));
  }
  return data;
}

function fail(err) {
  hooks.status = 'error';
  hooks.error = err.message || String(err);
  document.body.dataset.status = 'error';
  const box = document.getElementById('embed-error');
  box.querySelector('.embed-message-text').textContent = hooks.error;
  box.hidden = false;
  chartEl.hidden = true;
  document.querySelector('.embed-figure').hidden = true;
}

async function main() {
  const t0 = performance.now();
  try {
    const fig = buildFigure(cfg.chart, await gather(), sel, { height: Math.max(300, chartEl.clientHeight || 480) });
    document.getElementById('caption').textContent = fig.caption || ''; // before drawing: the chart takes the rest
    chartEl.classList.remove('placeholder');
    chartEl.removeAttribute('data-message');
    await Plotly.newPlot(chartEl, fig.data, { ...fig.layout, autosize: true }, { ...PLOT_CONFIG, responsive: true });
    hooks.ms = performance.now() - t0;
    hooks.status = 'drawn';
    document.body.dataset.status = 'drawn';
    window.dispatchEvent(new CustomEvent('resviz:embed-drawn', { detail: { chart: cfg.chart, ms: hooks.ms } }));
  } catch (err) {
    fail(err);
  }
}

main();
