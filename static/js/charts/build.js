// Chart id -> figure, from the JSON answers a chart reads: the one dispatch of the embeds and the
// standalone exports (the Explore page's views call the same builders). data: {analysis, featuremap,
// runs: {residual, plain, current}, lesion, sweep, explanation, strips: {residual, plain}, shattered, model, landscape,
// bnclaims, norms}; sel: {layer, block, channel, range}, and for the explanations {method, target, opacity, samples,
// steps, explain_layer}.
import { depthFigure } from './depth.js';
import { layerHistogramFigure } from './histogram.js';
import { depthHeatmapFigure } from './heatmap.js';
import { channelFigure } from './featuremap.js';
import { bnFigure, bnSteps } from './batchnorm.js';
import { depthSweepFigure, gradNormFigure, lesionFigure } from './gradients.js';
import { ratioFigure, residualHistogramFigure, scatterFigure } from './residual.js';
import { predictionFigure } from './prediction.js';
import { overlayFigure, stripFigure } from './explain.js';
import { shatteredAutocorrFigure, shatteredDepth, shatteredSpectraFigure, shatteredTracesFigure } from './shattered.js';
import { bnChoice, chosenBlock, chosenLayer } from './select.js';
import { landscapeContourFigure, landscapeSliceFigure, landscapeSurfaceFigure } from './landscape.js';
import { bnGradFigure, bnLossFigure, normsChannelFigure, normsFigure } from './bnclaims.js';

const BUILDERS = {
  activations: ({ analysis: a }, sel) => depthFigure(a, { layer: chosenLayer(a, sel).id, block: sel.block }),
  histogram: ({ analysis: a }, sel) => layerHistogramFigure(chosenLayer(a, sel)),
  heatmap: ({ analysis: a }, sel, { height }) => depthHeatmapFigure(a, { range: sel.range, layer: chosenLayer(a, sel).id, height }),
  featuremaps: ({ featuremap }) => channelFigure(featuremap, null, { slider: false }),
  batchnorm({ analysis: a }, sel) {
    const { bn, channel: c } = bnChoice(a, sel);
    const input = a.layers.find((l) => l.id === bn.input);
    const output = a.layers.find((l) => l.id === bn.id);
    return bnFigure(bn, bnSteps(bn, input, output, c, { eps: bn.eps, gamma: bn.gamma[c], beta: bn.beta[c] }), { sliders: false });
  },
  gradients: ({ runs }, sel) => gradNormFigure(runs, { block: sel.block }),
  'depth-sweep': ({ sweep }) => depthSweepFigure(sweep),
  lesion: ({ analysis: a, lesion }, sel) => lesionFigure(lesion, { block: sel.block, blocks: a.blocks }),
  residuals: ({ analysis: a }, sel) => ratioFigure(a, { block: chosenBlock(a, sel).id }),
  'residual-scatter': ({ analysis: a }, sel) => scatterFigure(chosenBlock(a, sel)),
  'residual-histogram': ({ analysis: a }, sel) => residualHistogramFigure(chosenBlock(a, sel)),
  prediction: ({ analysis: a }) => predictionFigure(a),
  explain: ({ explanation }, sel) => overlayFigure(explanation, { opacity: sel.opacity, samples: sel.samples, steps: sel.steps }),
  'explain-strip': ({ strips }, sel) => stripFigure(strips, { layer: sel.explain_layer, method: sel.method }),
  'shattered-traces': ({ shattered: s, model }) => shatteredTracesFigure(s, shatteredDepth(s, model)),
  'shattered-autocorr': ({ shattered: s, model }) => shatteredAutocorrFigure(s, shatteredDepth(s, model)),
  'shattered-spectra': ({ shattered: s, model }) => shatteredSpectraFigure(s, shatteredDepth(s, model)),
  'landscape-contour': ({ landscape }) => landscapeContourFigure(landscape),
  'landscape-surface': ({ landscape }) => landscapeSurfaceFigure(landscape),
  'landscape-slice': ({ landscape }) => landscapeSliceFigure(landscape),
  'bn-loss': ({ bnclaims }) => bnLossFigure(bnclaims),
  'bn-gradnorms': ({ bnclaims }) => bnGradFigure(bnclaims),
  normalizations: ({ norms }) => normsFigure(norms),
  'normalization-channels': ({ norms }) => normsChannelFigure(norms),
};

export const CHART_IDS = Object.keys(BUILDERS);

// The figure {data, layout, caption} of one chart; options: {height} (the heatmap's box).
export function buildFigure(chart, data, sel, { height = 480 } = {}) {
  const build = BUILDERS[chart];
  if (!build) throw new Error(`unknown chart ${chart}`);
  return build(data, sel, { height });
}
