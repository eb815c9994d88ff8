// Batch-norm view: before/after histograms, the four steps with one channel's numbers, and
// sliders for eps, gamma and beta whose effect is recomputed here, without a request.
import { draw } from '../plot.js';
import { bnFigure, bnSteps } from '../charts/batchnorm.js';
import { bnChoice } from '../charts/select.js';
import { num } from '../charts/format.js';

const $ = (id) => document.getElementById(id);
let params = null; // slider values {eps, gamma, beta}, reset when the layer or channel changes
let paramsFor = '';

export function bind(app) {
  $('bn-layer').addEventListener('change', (e) => app.selectLayer(e.target.value));
  $('bn-channel').addEventListener('change', (e) => {
    app.update({ channel: Math.max(0, Math.round(Number(e.target.value) || 0)) });
    app.rerender();
  });
  const onSlide = () => {
    params = {
      eps: 10 ** Number($('bn-eps').value),
      gamma: Number($('bn-gamma').value),
      beta: Number($('bn-beta').value),
    };
    app.rerender();
  };
  for (const id of ['bn-eps', 'bn-gamma', 'bn-beta']) $(id).addEventListener('input', onSlide);
  $('bn-reset').addEventListener('click', () => {
    paramsFor = '';
    app.rerender();
  });
}

function setSlider(id, value, lo, hi) {
  const el = $(id);
  el.min = String(lo);
  el.max = String(hi);
  el.value = String(value);
}

function stepsHtml(st, bn, layerShape) {
  const [n, , h, w] = layerShape;
  const usedName = st.mode === 'batch' ? 'μ_B, σ_B² (batch statistics)' : 'the running mean and variance (inference)';
  const rows = st.examples
    .map((e, i) => `<tr><td>${['μ_B − σ_B', 'μ_B', 'μ_B + σ_B'][i]}</td><td>${num(e.x, 4)}</td><td>${num(e.xHat, 4)}</td><td>${num(e.y, 4)}</td></tr>`)
    .join('');
  return `
    <li><b>Mini-batch mean</b> μ_B = (1/m) Σ x_i = <output>${num(st.muB, 5)}</output>
      <small>over m = N×H×W = ${n}×${h ?? 1}×${w ?? 1} = ${st.m} values of channel ${st.channel} of ${bn.input}</small></li>
    <li><b>Mini-batch variance</b> σ_B² = (1/m) Σ (x_i − μ_B)² = <output>${num(st.varB, 5)}</output></li>
    <li><b>Normalise</b> x̂ = (x − μ) / √(σ² + ε) with ${usedName}: μ = <output>${num(st.mu, 5)}</output>,
      σ² = <output>${num(st.variance, 5)}</output>, ε = <output>${num(st.eps, 3)}</output>, so √(σ² + ε) = <output>${num(st.denom, 5)}</output></li>
    <li><b>Scale and shift</b> y = γ x̂ + β with γ = <output>${num(st.gamma, 4)}</output>, β = <output>${num(st.beta, 4)}</output>
      <table class="steps-table"><thead><tr><th>input</th><th>x</th><th>x̂</th><th>y</th></tr></thead><tbody>${rows}</tbody></table></li>`;
}

function checkText(st) {
  const lp = st.layerParams;
  const denom = Math.sqrt(st.variance + lp.eps);
  const mean = (lp.gamma * (st.muB - st.mu)) / denom + lp.beta;
  const std = (Math.abs(lp.gamma) * Math.sqrt(st.varB)) / denom;
  const moved = lp.eps !== st.eps || lp.gamma !== st.gamma || lp.beta !== st.beta;
  return (
    `Check against the network: with the layer's own γ = ${num(lp.gamma, 4)}, β = ${num(lp.beta, 4)}, ε = ${num(lp.eps, 2)}, ` +
    `the four steps predict channel ${st.channel} of the output to have mean ${num(mean, 4)} and std ${num(std, 4)}; ` +
    `the BN tap measured mean ${num(st.measuredMean, 4)} and std ${num(st.measuredStd, 4)}.` +
    (moved ? ` With the slider values instead: mean ${num(st.predictedMean, 4)}, std ${num(st.predictedStd, 4)}.` : '')
  );
}

export async function render(app) {
  const a = app.analysis;
  const { bn, channel: c } = bnChoice(a, app.state);
  const select = $('bn-layer');
  if (select.dataset.akey !== app.akey) {
    select.replaceChildren(...a.batchnorm.map((b) => new Option(`${b.id} (${b.channels} channels)`, b.id)));
    select.dataset.akey = app.akey;
  }
  select.value = bn.id;
  $('bn-channel').max = String(bn.channels - 1);
  $('bn-channel').value = String(c);
  const key = `${app.akey}|${bn.id}|${c}`;
  if (paramsFor !== key || !params) {
    params = { eps: bn.eps, gamma: bn.gamma[c], beta: bn.beta[c] };
    paramsFor = key;
    setSlider('bn-eps', Math.log10(bn.eps), -8, 1);
    $('bn-eps').step = '0.1';
    setSlider('bn-gamma', params.gamma, Math.min(-3, -2 * Math.abs(params.gamma)), Math.max(3, 2 * Math.abs(params.gamma)));
    setSlider('bn-beta', params.beta, Math.min(-3, -2 * Math.abs(params.beta)), Math.max(3, 2 * Math.abs(params.beta)));
  }
  $('bn-eps-value').textContent = num(params.eps, 2);
  $('bn-gamma-value').textContent = num(params.gamma, 3);
  $('bn-beta-value').textContent = num(params.beta, 3);
  const input = a.layers.find((l) => l.id === bn.input);
  const output = a.layers.find((l) => l.id === bn.id);
  const st = bnSteps(bn, input, output, c, params);
  $('bn-steps').innerHTML = stepsHtml(st, bn, input.shape);
  $('bn-check').textContent = checkText(st);
  await draw($('chart-bn'), `${key}|${params.eps}|${params.gamma}|${params.beta}`, () => bnFigure(bn, st));
}
