// One chart filling its iframe (/embed/{chart}?...): fetch the data from the API and draw it with the
// same figure builders as the main page (static/js/charts/). The server has checked the parameters
// (templates/embed.html carries them as JSON); what can still fail here is the data request.
import * as api from './api.js';
import { PLOT_CONFIG } from './charts/theme.js';
import { depthFigure } from './charts/depth.js';
import { layerHistogramFigure } from './charts/histogram.js';
import { depthHeatmapFigure } from './charts/heatmap.js';
import { channelFigure } from './charts/featuremap.js';
import { bnFigure, bnSteps } from './charts/batchnorm.js';
import { depthSweepFigure, gradNormFigure, lesionFigure } from './charts/gradients.js';
import { ratioFigure, residualHistogramFigure, scatterFigure } from './charts/residual.js';
import { predictionFigure } from './charts/prediction.js';

const cfg = JSON.parse(document.getElementById('embed-config').textContent);
const chartEl = document.getElementById('chart');
const hooks = (window.__embed = { status: 'loading', error: null, config: cfg, ms: null });

const params = (extra = {}) => ({ imageId: cfg.image_id, weights: cfg.weights || undefined, gates: cfg.gates, bn: cfg.bn, ...extra });

// ------------------------------------------------------------ selection, as on the main page (main.js)

// The chosen tap: the link's layer, else the chosen block's output (which carries the block's id), else the first block output.
function chosenLayer(a) {
  const byId = (id) => a.layers.find((l) => l.id === id);
  return byId(cfg.layer) || (cfg.block && byId(cfg.block)) || a.layers.find((l) => l.kind === 'block') || a.layers[0];
}

// Nearest tap at or before the chosen one that satisfies pred (else the first one after it).
function nearestLayer(a, pred) {
  const i = Math.max(0, a.layers.indexOf(chosenLayer(a)));
  for (let j = i; j >= 0; j--) if (pred(a.layers[j])) return a.layers[j];
  for (let j = i + 1; j < a.layers.length; j++) if (pred(a.layers[j])) return a.layers[j];
  return null;
}

const chosenBlock = (a) => a.blocks.find((b) => b.id === cfg.block) || a.blocks[0];
// The class every gradient run and the lesion study use: the one the full residual network (every
// shortcut on) predicts, so switching shortcuts never moves the baseline (as on the main page).
const target = async () => (await api.gradients(cfg.model, params({ gates: 'all-on' }))).target[0];

// ------------------------------------------------------------ chart id -> figure (the analysis first, then what else it needs)

const BUILDERS = {
  activations: (a) => depthFigure(a, { layer: chosenLayer(a).id, block: cfg.block }),
  histogram: (a) => layerHistogramFigure(chosenLayer(a)),
  heatmap: (a) => depthHeatmapFigure(a, { range: cfg.range, layer: chosenLayer(a).id, height: Math.max(300, chartEl.clientHeight || 480) }),
  async featuremaps(a) {
    const tap = nearestLayer(a, (l) => Boolean(a.feature_maps[l.id]));
    if (!tap) throw new Error('this analysis has no feature maps');
    const channel = cfg.channel !== null && cfg.channel < tap.shape[1] ? cfg.channel : a.feature_maps[tap.id].channels[0];
    return channelFigure(await api.featureMap(cfg.model, params({ tap: tap.id, channel })));
  },
  batchnorm(a) {
    const ids = new Set(a.batchnorm.map((b) => b.id));
    const bn = a.batchnorm.find((b) => b.id === nearestLayer(a, (l) => ids.has(l.id)).id);
    const c = cfg.channel !== null && cfg.channel < bn.channels ? cfg.channel : 0;
    const input = a.layers.find((l) => l.id === bn.input);
    const output = a.layers.find((l) => l.id === bn.id);
    return bnFigure(bn, bnSteps(bn, input, output, c, { eps: bn.eps, gamma: bn.gamma[c], beta: bn.beta[c] }));
  },
  async gradients(a) {
    const wanted = { residual: 'all-on', plain: 'all-off' };
    if (!['all-on', 'all-off'].includes(cfg.gates)) wanted.current = cfg.gates;
    const t = await target();
    const entries = await Promise.all(
      Object.entries(wanted).map(async ([key, gates]) => [key, await api.gradients(cfg.model, params({ gates, target: t }))]),
    );
    return gradNormFigure(Object.fromEntries(entries), { block: cfg.block });
  },
  async lesion(a) {
    return lesionFigure(await api.lesion(cfg.model, params({ target: await target() })), { block: cfg.block, blocks: a.blocks });
  },
  residuals: (a) => ratioFigure(a, { block: chosenBlock(a).id }),
  'residual-scatter': (a) => scatterFigure(chosenBlock(a)),
  'residual-histogram': (a) => residualHistogramFigure(chosenBlock(a)),
  prediction: (a) => predictionFigure(a),
};

async function figure() {
  if (cfg.chart === 'depth-sweep') {
    return depthSweepFigure(await api.depthSweep({ bn: cfg.bn, weights: cfg.sweep_weights || undefined }));
  }
  const analysis = await api.analyze(cfg.model, params());
  return BUILDERS[cfg.chart](analysis);
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
    const fig = await figure();
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
