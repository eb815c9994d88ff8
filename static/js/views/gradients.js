// Gradients view: gradient norm against depth (current switches, all on, all off), the depth sweep
// over CIFAR ResNets, and the lesion study (residual branches removed). Missing endpoints show a note.
import * as api from '../api.js';
import { draw, placeholder } from '../plot.js';
import { depthSweepFigure, gradNormFigure, lesionFigure } from '../charts/gradients.js';

const $ = (id) => document.getElementById(id);

function unavailable(el, what, err) {
  const msg = err.status === 404 && /not found/i.test(err.message)
    ? `${what} is not available from this server yet (404).`
    : `${what} failed: ${err.message}`;
  placeholder(el, msg);
}

export async function render(app) {
  const a = app.analysis;
  const s = app.state;
  const akey = app.akey;
  const target = a.prediction[0].top[0].index; // the same class for every run, so they compare
  const base = `${s.model}|${s.weights}|${app.imageId}|${s.bn}|${target}`;
  const grad = (gates) =>
    app.cached(`grad|${base}|${gates}`, `Gradients (${gates === s.gates ? 'current' : gates})`, () =>
      api.gradients(s.model, app.params({ gates, target })),
    );
  const wanted = { residual: 'all-on', plain: 'all-off' };
  if (!['all-on', 'all-off'].includes(s.gates)) wanted.current = s.gates;

  const gradJob = (async () => {
    const entries = await Promise.all(Object.entries(wanted).map(async ([k, g]) => [k, await grad(g)]));
    if (akey !== app.akey) return;
    const runs = Object.fromEntries(entries);
    await draw($('chart-grad'), `${akey}|${s.gates}|${s.block}`, () => gradNormFigure(runs, { block: s.block }));
  })().catch((err) => unavailable($('chart-grad'), 'The gradients endpoint', err));

  // The sweep does not depend on the image and is slow the first time (it may export five CIFAR
  // models), so it draws when ready and is not part of the view's "rendered" signal.
  const cifar = app.manifest?.family === 'cifar';
  const sweepWeights = cifar && ['init', 'trained'].includes(s.weights) ? s.weights : undefined; // the sweep knows these two
  const sweepEl = $('chart-sweep');
  if (!sweepEl.classList.contains('js-plotly-plot')) placeholder(sweepEl, 'Computing the depth sweep (the first time exports the CIFAR models)…');
  app
    .cached(`sweep|${s.bn}|${sweepWeights}`, 'Depth sweep (first time: exports the CIFAR models)', () => api.depthSweep({ bn: s.bn, weights: sweepWeights }))
    .then((sweep) => draw($('chart-sweep'), `sweep|${s.bn}|${sweepWeights}`, () => depthSweepFigure(sweep)))
    .then(() => window.dispatchEvent(new CustomEvent('resviz:sweep')))
    .catch((err) => unavailable($('chart-sweep'), 'The depth sweep', err));

  const lesionJob = (async () => {
    const lesion = await app.cached(`lesion|${base}|${s.gates}`, 'Lesion study', () => api.lesion(s.model, app.params({ target })));
    if (akey !== app.akey) return;
    await draw($('chart-lesion'), `${akey}|lesion|${s.block}`, () => lesionFigure(lesion, { block: s.block, blocks: a.blocks }));
  })().catch((err) => unavailable($('chart-lesion'), 'The lesion endpoint', err));

  await Promise.all([gradJob, lesionJob]);
}
