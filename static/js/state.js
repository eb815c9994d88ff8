// The whole page state lives in the query string, so a reload or a shared link restores the view.
//
//   model=resnet20  weights=init  image=<64-hex id>|<sample name>  gates=all-on|all-off|1,0,1,...
//   bn=running|batch  layer=<tap id>  block=<block id>  channel=<int>  view=<one of VIEWS>
//   target=<class index> (gradients view: default the class the full ResNet predicts; explanations view:
//          default the class predicted with the current switches)
//   range=common|own (depth heatmap)  overlay=<0..1> (feature-map opacity over the input)
//   method=gradcam|gradcampp|hirescam|layercam|saliency|smoothgrad|ig  opacity=<0..1> (the map over the input)
//   samples=<n> (SmoothGrad)  steps=<m> (Integrated Gradients)   (explanations view)
//   hide=controls,upload,strip,...  (any element with data-hide-key="<key>" is hidden: lecturer presets)
import { EXPLAIN_DEFAULTS, METHODS } from './charts/explain.js';

export const VIEWS = ['activations', 'featuremaps', 'batchnorm', 'gradients', 'residuals', 'explanations'];

export const DEFAULTS = Object.freeze({
  model: 'resnet20',
  weights: '',
  image: '',
  gates: 'all-on',
  bn: 'running',
  layer: '',
  block: '',
  channel: null,
  target: '',
  view: 'activations',
  range: 'common',
  overlay: 0,
  method: EXPLAIN_DEFAULTS.method,
  opacity: EXPLAIN_DEFAULTS.opacity,
  samples: EXPLAIN_DEFAULTS.samples,
  steps: EXPLAIN_DEFAULTS.steps,
  hide: [],
});

const ORDER = [
  'model', 'weights', 'image', 'gates', 'bn', 'view', 'layer', 'block', 'channel', 'target', 'range', 'overlay',
  'method', 'opacity', 'samples', 'steps', 'hide',
];
const MAX_COUNT = 1024; // samples and steps: the server names its own limit
const IMAGE_ID = /^[0-9a-f]{64}$/;

export const isImageId = (s) => IMAGE_ID.test(s || '');

function clampNumber(text, lo, hi, fallback) {
  const x = Number(text);
  return Number.isFinite(x) ? Math.min(hi, Math.max(lo, x)) : fallback;
}

export function parseState(search) {
  const q = new URLSearchParams(search);
  const s = { ...DEFAULTS, hide: [] };
  for (const key of ['model', 'weights', 'image', 'layer', 'block']) if (q.get(key)) s[key] = q.get(key);
  if (q.get('gates')) s.gates = normaliseGates(q.get('gates'));
  if (['running', 'batch'].includes(q.get('bn'))) s.bn = q.get('bn');
  if (VIEWS.includes(q.get('view'))) s.view = q.get('view');
  if (['common', 'own'].includes(q.get('range'))) s.range = q.get('range');
  if (q.get('channel') !== null && /^\d+$/.test(q.get('channel'))) s.channel = Number(q.get('channel'));
  if (q.get('target') !== null && /^\d+$/.test(q.get('target'))) s.target = q.get('target');
  if (q.get('overlay') !== null) s.overlay = clampNumber(q.get('overlay'), 0, 1, 0);
  if (METHODS.some((m) => m.id === q.get('method'))) s.method = q.get('method');
  if (q.get('opacity') !== null) s.opacity = clampNumber(q.get('opacity'), 0, 1, EXPLAIN_DEFAULTS.opacity);
  for (const key of ['samples', 'steps']) {
    if (/^\d+$/.test(q.get(key) || '')) s[key] = Math.round(clampNumber(q.get(key), 1, MAX_COUNT, EXPLAIN_DEFAULTS[key]));
  }
  s.hide = q
    .getAll('hide')
    .flatMap((v) => v.split(','))
    .map((v) => v.trim())
    .filter(Boolean);
  return s;
}

export function toQuery(state) {
  const q = new URLSearchParams();
  for (const key of ORDER) {
    const v = state[key];
    if (key === 'hide') {
      if (v.length) q.set('hide', v.join(','));
    } else if (v !== null && v !== undefined && v !== '' && v !== DEFAULTS[key]) {
      q.set(key, String(v));
    }
  }
  return q.toString().replace(/%2C/g, ',');
}

// push: a new history entry (model, image, view); otherwise the current entry is replaced.
export function writeUrl(state, push = false) {
  const qs = toQuery(state);
  const url = `${location.pathname}${qs ? `?${qs}` : ''}`;
  if (url === `${location.pathname}${location.search}`) return;
  history[push ? 'pushState' : 'replaceState'](null, '', url);
}

function normaliseGates(text) {
  if (text === 'all-on' || text === 'all-off') return text;
  const parts = text.split(',').map((p) => Number(p));
  if (!parts.length || parts.some((x) => !Number.isFinite(x))) return DEFAULTS.gates;
  return parts.map((x) => String(Math.min(1, Math.max(0, x)))).join(',');
}

// Gate vector of length n from the URL form (a short or malformed list falls back to all on).
export function gatesArray(gates, n) {
  if (gates === 'all-off') return new Array(n).fill(0);
  if (gates === 'all-on') return new Array(n).fill(1);
  const v = gates.split(',').map(Number);
  return v.length === n ? v : new Array(n).fill(1);
}

export function gatesParam(values) {
  if (values.every((g) => g === 1)) return 'all-on';
  if (values.every((g) => g === 0)) return 'all-off';
  return values.map((g) => String(g)).join(',');
}
