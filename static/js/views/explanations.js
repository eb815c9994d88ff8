// Explanations view: a class activation map (or an input attribution) laid over the input, and every
// layer's map side by side with the page's shortcut switches and with every shortcut off. Requests go out
// only while the view is shown (main.js draws the visible view alone); the opacity slider redraws the
// map from the answer on screen, without a request.
import * as api from '../api.js';
import { draw, onPlotClick, placeholder, reshape } from '../plot.js';
import {
  EXPLAIN_DEFAULTS,
  explainParams,
  isCamMethod,
  METHODS,
  overlayFigure,
  stripBoxHeight,
  stripFigure,
  stripGrid,
  STRIP_RUNS,
  stripParams,
  stripSelection,
} from '../charts/explain.js';
import { explainLayer, explainLayerIds } from '../charts/select.js';

const $ = (id) => document.getElementById(id);
let shown = null; // {key, answer, sel}: the map on screen, redrawn at once when the opacity moves
let renderSeq = 0; // a newer render of this view wins: an older one finishing late draws nothing

// The view's selection (charts/explain.js and the embeds read the same fields).
function selection(app) {
  const s = app.state;
  const ids = explainLayerIds(app.manifest);
  return {
    layer: s.layer, block: s.block, method: s.method, target: s.target, opacity: s.opacity,
    samples: s.samples, steps: s.steps, explain_layer: explainLayer(ids, s),
  };
}

function chooseLayer(app, id) {
  if (app.manifest.blocks.some((b) => b.id === id)) app.selectBlock(id);
  else app.selectLayer(id);
}

const count = (value, fallback) => Math.min(1024, Math.max(1, Math.round(Number(value) || fallback)));

export function bind(app) {
  $('cam-method').addEventListener('change', (e) => {
    app.update({ method: e.target.value });
    app.rerender();
  });
  $('cam-layer').addEventListener('change', (e) => chooseLayer(app, e.target.value));
  $('cam-target').addEventListener('change', (e) => {
    app.update({ target: e.target.value });
    app.rerender();
  });
  for (const key of ['samples', 'steps']) {
    $(`cam-${key}`).addEventListener('change', (e) => {
      app.update({ [key]: count(e.target.value, EXPLAIN_DEFAULTS[key]) });
      app.rerender();
    });
  }
  $('cam-opacity').addEventListener('input', (e) => {
    const opacity = Number(e.target.value);
    app.update({ opacity });
    $('cam-opacity-value').textContent = `${Math.round(100 * opacity)}%`;
    const current = onScreen(app);
    if (current) drawOverlay(current, opacity);
  });
}

// The map on screen, if it belongs to the analysis on screen (none while another model or image loads).
const onScreen = (app) => (shown && app.analysis && shown.key.startsWith(`${app.akey}|`) ? shown : null);

function drawOverlay({ key, answer, sel }, opacity) {
  return draw($('chart-explain'), `${key}|${opacity}`, () => overlayFigure(answer, { opacity, samples: sel.samples, steps: sel.steps }));
}

function syncControls(app, sel) {
  const m = app.manifest;
  const layerSelect = $('cam-layer');
  if (layerSelect.dataset.key !== m.name) {
    const shapes = new Map(m.taps.map((t) => [t.id, t.shape.join('×')]));
    const stages = new Map(m.blocks.map((b) => [b.id, b.stage]));
    layerSelect.replaceChildren(
      ...explainLayerIds(m).map((id) => new Option(`${id} (${stages.has(id) ? `stage ${stages.get(id)}` : 'stem'}, ${shapes.get(id)})`, id)),
    );
    layerSelect.dataset.key = m.name;
  }
  layerSelect.value = sel.explain_layer;
  const cam = isCamMethod(sel.method);
  layerSelect.disabled = !cam;
  $('cam-method').value = sel.method;
  $('cam-samples-field').hidden = sel.method !== 'smoothgrad';
  $('cam-steps-field').hidden = sel.method !== 'ig';
  $('cam-samples').value = String(sel.samples);
  $('cam-steps').value = String(sel.steps);
  $('cam-opacity').value = String(sel.opacity);
  $('cam-opacity-value').textContent = `${Math.round(100 * sel.opacity)}%`;
  const name = METHODS.find((x) => x.id === sel.method).name;
  $('cam-note').textContent = cam
    ? ''
    : `${name} attributes the class score to the input pixels, so it has no layer; the strips below show Grad-CAM at every layer.`;
}

// "predicted" names the class once an answer has said which one it is.
function fillTargetSelect(app, answer) {
  const select = $('cam-target');
  const names = app.manifest.class_names || [];
  const predicted = answer && answer.target_source !== 'chosen' ? answer : null;
  const key = `${app.manifest.name}|${names.length}|${predicted ? predicted.target : ''}`;
  if (select.dataset.key !== key) {
    const first = new Option(
      predicted ? `${predicted.target_label} (class ${predicted.target}), the prediction` : 'the predicted class',
      '',
    );
    select.replaceChildren(first, ...names.map((n, i) => new Option(`${n} (class ${i})`, String(i))));
    select.dataset.key = key;
  }
  select.value = app.state.target === '' || app.state.target === undefined ? '' : String(app.state.target);
}

function unavailable(el, what, err) {
  const msg = err.status === 404 && /not found/i.test(err.message)
    ? `${what} is not available from this server yet (404).`
    : `${what} failed: ${err.message}`;
  placeholder(el, msg);
}

// A click on a tile of the strips shows that layer's map above.
function tileAt(ev) {
  const pt = ev.points?.[0];
  const meta = pt?.data?.meta;
  if (!meta) return null;
  const t = meta.tiles.find((tile) => pt.x >= tile.x0 && pt.x < tile.x0 + meta.tile && pt.y >= tile.y0 && pt.y < tile.y0 + meta.tile);
  return t ? t.layer : null;
}

export async function render(app) {
  const seq = ++renderSeq;
  const s = app.state;
  const sel = selection(app);
  syncControls(app, sel);
  fillTargetSelect(app, onScreen(app)?.answer);
  const akey = app.akey;
  const stale = () => akey !== app.akey || seq !== renderSeq;
  const base = `${s.model}|${s.weights}|${app.imageId}|${s.bn}`;
  const ask = (params, gates, label) =>
    app.cached(`explain|${base}|${gates}|${JSON.stringify(params)}`, label, () => api.explain(s.model, app.params({ ...params, gates })));

  const overlayJob = (async () => {
    const params = explainParams(sel);
    const answer = await ask(params, s.gates, `Explaining: ${METHODS.find((m) => m.id === params.method).name}`);
    if (stale()) return;
    shown = { key: `${akey}|${s.gates}|${JSON.stringify(params)}`, answer, sel };
    fillTargetSelect(app, answer);
    await drawOverlay(shown, sel.opacity);
  })().catch((err) => unavailable($('chart-explain'), 'The explanation', err));

  const stripJob = (async () => {
    const params = stripParams(sel);
    const residual = await ask(params, s.gates, 'Every layer’s map (current switches)');
    // The all-off strip explains the class the first one explained, so the two compare.
    const plain = await ask({ ...params, target: String(residual.target) }, 'all-off', 'Every layer’s map (every shortcut off)');
    if (stale()) return;
    const el = $('chart-explain-strip');
    el.style.height = `${stripBoxHeight(residual.layers, el.clientWidth || 1000)}px`;
    const strips = { residual, plain };
    await draw(el, `${akey}|${s.gates}|${JSON.stringify(params)}|${s.method}`, () => stripFigure(strips, { layer: sel.explain_layer, method: s.method }));
    await reshape(el, sel.explain_layer, () => stripSelection(stripGrid(residual.layers), STRIP_RUNS, sel.explain_layer));
    onPlotClick(el, (ev) => {
      const id = tileAt(ev);
      if (id) chooseLayer(app, id);
    });
  })().catch((err) => unavailable($('chart-explain-strip'), 'The per-layer maps', err));

  await Promise.all([overlayJob, stripJob]);
}
