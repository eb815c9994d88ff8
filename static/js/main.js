// The controller: state (in the URL), events, requests, and which charts to redraw.
import * as api from './api.js';
import { gatesArray, gatesParam, isImageId, parseState, VIEWS, writeUrl } from './state.js';
import { clearError, showError, startTask } from './status.js';
import { buildStrip, updateStrip } from './strip.js';
import { draw, placeholder, resizeWithin, setRevision } from './plot.js';
import { predictionFigure } from './charts/prediction.js';
import { count } from './charts/format.js';
import { chosenBlock, chosenLayer } from './charts/select.js';
import * as activations from './views/activations.js';
import * as featuremaps from './views/featuremaps.js';
import * as batchnorm from './views/batchnorm.js';
import * as gradients from './views/gradients.js';
import * as residuals from './views/residuals.js';
import * as explanations from './views/explanations.js';
import { initShare } from './share.js';
import { watch as watchExports } from './exports.js';

const VIEW_MODULES = { activations, featuremaps, batchnorm, gradients, residuals, explanations };
const $ = (id) => document.getElementById(id);

const app = {
  state: parseState(location.search),
  models: [],
  samples: [],
  manifest: null,
  analysis: null,
  akey: '', // identifies the analysis on screen; chart keys start with it
  imageId: null,
  sampleIds: new Map(), // sample name -> stored image id
  results: new Map(), // request key -> Promise (analyses, gradients, feature maps)
};
// Hooks for tests and the browser bench: `renders` counts completed draws (a `resviz:rendered` event each).
const hooks = (window.__resviz = { ready: false, renders: 0, lastRenderMs: null, lastView: null, lastError: null });
hooks.state = () => ({ ...app.state });
hooks.analysisGates = () => app.analysis?.gates || null;
let analysisSeq = 0; // a newer analysis wins: older answers are dropped when they arrive
const analyses = new Map(); // request key -> Promise of the analysis JSON (the last few, ~1-2 MB each)
const KEEP_ANALYSES = 8;

// ---------------------------------------------------------------- state helpers used by the views

app.update = (patch, { push = false } = {}) => {
  app.state = { ...app.state, ...patch };
  writeUrl(app.state, push);
};

app.layers = () => app.analysis?.layers || [];

// The chosen tap and block (charts/select.js: the same rule as the embeds and exports).
app.layer = () => (app.analysis ? chosenLayer(app.analysis, app.state) : undefined);

app.block = () => {
  if (app.analysis) return chosenBlock(app.analysis, app.state);
  const blocks = app.manifest?.blocks || [];
  return blocks.find((b) => b.id === app.state.block) || blocks[0];
};

// Memoised request: the same key shares one promise; failures are forgotten so they can be retried.
app.cached = (key, label, fn) => {
  if (app.results.has(key)) return app.results.get(key);
  const finish = startTask(label);
  const p = fn().then(
    (v) => {
      finish();
      return v;
    },
    (err) => {
      finish();
      app.results.delete(key);
      throw err;
    },
  );
  app.results.set(key, p);
  if (app.results.size > 96) app.results.delete(app.results.keys().next().value);
  return p;
};

app.params = (extra = {}) => ({
  imageId: app.imageId,
  weights: app.state.weights || undefined,
  gates: app.state.gates,
  bn: app.state.bn,
  ...extra,
});

app.selectLayer = (id) => {
  if (!id || id === app.state.layer) return;
  app.update({ layer: id });
  renderView();
};

app.selectBlock = (id) => {
  const block = app.manifest?.blocks.find((b) => b.id === id);
  if (!block) return;
  app.update({ block: id, layer: block.output });
  updateStrip($('strip-blocks'), { gates: gatesArray(app.state.gates, app.manifest.blocks.length), block: id });
  renderView();
};

app.rerender = () => renderView();
app.showError = showError;

// ---------------------------------------------------------------- models, images, analysis

function modelRow(name) {
  return app.models.find((m) => m.name === name);
}

const modelOptionText = (m) => `${m.name} · ${count(m.params)} params · ${count(m.macs)} MACs${m.exported ? '' : ' · exported on first use'}`;

// Once a model is exported its entry in the list stops saying "exported on first use".
function markExported(row) {
  row.exported = true;
  const opt = [...$('model').options].find((o) => o.value === row.name);
  if (opt) opt.textContent = modelOptionText(row);
}

// While another model (or other weights) loads, no chart may show the old model's results.
function clearCharts(label) {
  for (const el of document.querySelectorAll('#app .chart')) placeholder(el, label);
  $('fm-grid')?.replaceChildren();
  const cap = $('cap-fm-grid');
  if (cap) cap.textContent = '';
}

function fillModelSelect() {
  const select = $('model');
  select.replaceChildren();
  const groups = [
    ['imagenet', 'ImageNet (224×224, 1000 classes, Table 5-1)'],
    ['cifar', 'CIFAR-10 (32×32, 10 classes, 6n+2 layers)'],
  ];
  for (const [family, label] of groups) {
    const group = document.createElement('optgroup');
    group.label = label;
    for (const m of app.models.filter((row) => row.family === family)) {
      const opt = document.createElement('option');
      opt.value = m.name;
      opt.textContent = modelOptionText(m);
      group.append(opt);
    }
    select.append(group);
  }
}

function fillWeightsSelect(row) {
  const select = $('weights');
  select.replaceChildren(
    ...row.weights.map((w, i) => {
      const opt = document.createElement('option');
      opt.value = w;
      opt.textContent = i === 0 ? `${w} (default)` : w;
      return opt;
    }),
  );
  select.value = app.state.weights || row.weights[0];
}

function fillSamples() {
  const box = $('sample-list');
  box.replaceChildren(
    ...app.samples.map((s) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'sample';
      b.dataset.sample = s.name;
      b.title = `${s.title} (${s.size}×${s.size})`;
      const img = document.createElement('img');
      img.src = api.sampleUrl(s.file);
      img.alt = s.title;
      img.width = 48;
      img.height = 48;
      b.append(img, Object.assign(document.createElement('span'), { textContent: s.name }));
      return b;
    }),
  );
}

async function loadModel() {
  let row = modelRow(app.state.model);
  if (!row) {
    showError(`unknown model “${app.state.model}” in the link; showing ${app.models[0].name} instead`);
    row = app.models[0];
    app.update({ model: row.name, weights: '' });
  }
  $('model').value = row.name;
  if (app.state.weights && !row.weights.includes(app.state.weights)) {
    showError(`${row.name} has no weights “${app.state.weights}”; using ${row.weights[0]}`);
    app.update({ weights: '' });
  }
  fillWeightsSelect(row);
  $('model-info').textContent = `${row.depth} layers · ${row.blocks} ${row.block} blocks (${row.stages.join('-')}) · ${row.input_size}×${row.input_size} input · shortcut option ${row.shortcut}`;
  const label = row.exported ? `Loading ${row.name}` : `Exporting ${row.name} on first use (can take a while)`;
  const manifest = await app.cached(`manifest|${row.name}|${app.state.weights}`, label, () => api.getManifest(row.name, app.state.weights || undefined));
  markExported(row);
  app.manifest = manifest;
  setRevision(`${row.name}|${app.state.weights}`);
  const n = manifest.blocks.length;
  const gates = gatesArray(app.state.gates, n);
  if (gatesParam(gates) !== app.state.gates && !['all-on', 'all-off'].includes(app.state.gates)) app.update({ gates: gatesParam(gates) });
  if (app.state.block && !manifest.blocks.some((b) => b.id === app.state.block)) app.update({ block: '' });
  buildStrip($('strip-blocks'), manifest, { select: app.selectBlock, gate: setGate });
  updateStrip($('strip-blocks'), { gates, block: app.state.block });
}

async function resolveImage() {
  const image = app.state.image;
  if (isImageId(image)) return image;
  const sample = app.samples.find((s) => s.name === image);
  if (!sample) throw new Error(`unknown image “${image}”: neither a stored image id nor a built-in sample`);
  if (!app.sampleIds.has(image)) {
    const blob = await api.fetchSample(sample.file);
    const stored = await api.uploadImage(blob, sample.file);
    app.sampleIds.set(image, stored.id);
  }
  return app.sampleIds.get(image);
}

function showInput() {
  const img = $('input-image');
  const image = app.state.image;
  const sample = app.samples.find((s) => s.name === image);
  const src = sample ? api.sampleUrl(sample.file) : isImageId(image) ? api.imageUrl(image) : '';
  if (!src) {
    img.removeAttribute('src');
    $('input-caption').textContent = 'No image yet: drop one, choose a file or pick a sample.';
    return;
  }
  if (img.getAttribute('src') !== src) img.src = src;
  const pre = app.manifest?.preprocessing;
  const how = pre ? `resized (shorter side ${pre.resize_shorter}) and centre-cropped to ${pre.crop}×${pre.crop}, then normalised per channel` : '';
  $('input-caption').textContent = `${sample ? `Sample “${sample.title}”` : `Uploaded image ${image.slice(0, 10)}…`}; the model sees it ${how}.`;
}

// Analyse the current image with the current model, weights, gates and BN mode, then draw.
async function analyzeNow({ force = false } = {}) {
  if (!app.state.image) {
    showInput();
    return;
  }
  const seq = ++analysisSeq;
  const t0 = performance.now();
  const s = app.state;
  const finish = startTask(`Analysing with ${s.model}`);
  $('status-notes').hidden = true;
  showInput();
  try {
    const imageId = await resolveImage();
    const key = ['analysis', s.model, s.weights, imageId, s.gates, s.bn].join('|');
    if (force) analyses.delete(key);
    const params = { imageId, weights: s.weights || undefined, gates: s.gates, bn: s.bn };
    let p = analyses.get(key);
    if (!p) {
      // The first answer holds what the default view draws; the rest of the same analysis follows
      // (the server is already computing it when the first answer arrives).
      const first = api.analyze(s.model, { ...params, sections: 'summary' });
      p = { first, all: first.then(() => api.analyze(s.model, params)) };
      analyses.set(key, p);
      p.all.catch(() => analyses.delete(key));
      if (analyses.size > KEEP_ANALYSES) analyses.delete(analyses.keys().next().value);
    }
    const show = async (analysis) => {
      app.imageId = imageId;
      app.analysis = analysis;
      app.akey = force ? `${key}#${seq}` : key; // Analyze redraws every chart even for the same answer
      clearError();
      await renderAll();
    };
    const first = await p.first;
    if (seq !== analysisSeq) return;
    if (first.notes?.length) showNotes(first.notes);
    if (SUMMARY_VIEWS.has(app.state.view)) await show(first);
    const analysis = await p.all;
    if (seq !== analysisSeq) return;
    await show(analysis);
    if (analysis.notes?.length) showNotes(analysis.notes);
    const ms = performance.now() - t0;
    const server = analysis.timings_ms?.total;
    hooks.serverMs = server ?? null;
    finish(`${s.model}: drawn in ${(ms / 1000).toFixed(2)} s${server ? ` (server analysis ${Math.round(server)} ms)` : ''}`);
    announce(ms, 'analysis');
  } catch (err) {
    finish();
    if (seq !== analysisSeq) return;
    hooks.lastError = err.message;
    showError(err);
  }
}

// Views drawn from the first answer alone; the others wait for the whole analysis. The explanations
// view reads no analysis at all (its own requests need only the stored image).
const SUMMARY_VIEWS = new Set(['activations', 'explanations']);

function showNotes(notes) {
  const box = $('status-notes');
  box.hidden = false;
  box.textContent = notes.join(' ');
}

function announce(ms, reason) {
  hooks.renders += 1;
  hooks.lastRenderMs = ms;
  hooks.lastView = app.state.view;
  window.dispatchEvent(new CustomEvent('resviz:rendered', { detail: { ms, view: app.state.view, reason, renders: hooks.renders } }));
}

// ---------------------------------------------------------------- drawing

async function renderAll() {
  const a = app.analysis;
  if (!a) return;
  updateStrip($('strip-blocks'), { gates: gatesArray(app.state.gates, app.manifest.blocks.length), block: app.state.block });
  await Promise.all([draw($('chart-prediction'), app.akey, () => predictionFigure(a)), renderView()]);
}

// Only the visible view is drawn; a hidden one is drawn when its tab is opened.
async function renderView() {
  const view = app.state.view;
  for (const b of document.querySelectorAll('#tabs [data-view]')) b.setAttribute('aria-selected', String(b.dataset.view === view));
  for (const p of document.querySelectorAll('section.view')) p.hidden = p.dataset.view !== view;
  if (!app.analysis) {
    for (const el of document.querySelectorAll(`section.view[data-view="${view}"] .chart, #chart-prediction`)) {
      if (!el.classList.contains('js-plotly-plot')) placeholder(el, 'Choose an image to analyse');
    }
    return;
  }
  if (app.analysis.sections === 'summary' && !SUMMARY_VIEWS.has(view)) {
    for (const el of document.querySelectorAll(`section.view[data-view="${view}"] .chart`)) placeholder(el, 'Loading the rest of the analysis…');
    return; // drawn when the whole analysis arrives
  }
  try {
    await VIEW_MODULES[view].render(app);
  } catch (err) {
    showError(err);
  }
}

async function showView(view) {
  if (!VIEWS.includes(view)) return;
  app.update({ view }, { push: true });
  const t0 = performance.now();
  await renderView();
  resizeWithin($(`view-${view}`));
  if (app.analysis) announce(performance.now() - t0, 'view');
}

// ---------------------------------------------------------------- events

function setGate(index, on) {
  const gates = gatesArray(app.state.gates, app.manifest.blocks.length);
  gates[index] = on ? 1 : 0;
  setGates(gates);
}

function setGates(gates) {
  app.update({ gates: gatesParam(gates) });
  updateStrip($('strip-blocks'), { gates, block: app.state.block });
  analyzeNow();
}

async function changeModel(name) {
  app.update({ model: name, weights: '', gates: 'all-on', layer: '', block: '', channel: null, target: '' }, { push: true });
  app.analysis = null;
  analysisSeq += 1; // an analysis of the old model still in flight must not draw
  const row = modelRow(name);
  clearCharts(row && !row.exported ? `Exporting ${name} on first use…` : `Loading ${name}…`);
  try {
    await loadModel();
    await analyzeNow();
  } catch (err) {
    showError(err);
  }
}

async function uploadFile(file) {
  if (!file) return;
  const finish = startTask(`Uploading ${file.name}`);
  try {
    const stored = await api.uploadImage(file, file.name);
    finish();
    clearError();
    app.update({ image: stored.id }, { push: true });
    await analyzeNow();
  } catch (err) {
    finish();
    hooks.lastError = err.message;
    showError(new Error(`${file.name}: ${err.message}`));
  }
}

function bindEvents() {
  $('model').addEventListener('change', (e) => changeModel(e.target.value));
  $('weights').addEventListener('change', async (e) => {
    const row = modelRow(app.state.model);
    app.update({ weights: e.target.value === row.weights[0] ? '' : e.target.value, target: '' });
    app.analysis = null;
    analysisSeq += 1;
    clearCharts(`Loading ${row.name} with ${e.target.value} weights…`);
    try {
      await loadModel();
      await analyzeNow();
    } catch (err) {
      showError(err);
    }
  });
  for (const radio of document.querySelectorAll('input[name="bn"], input[name="bn2"]')) {
    radio.addEventListener('change', (e) => {
      app.update({ bn: e.target.value });
      syncControls();
      analyzeNow();
    });
  }
  $('analyze').addEventListener('click', () => {
    if (!app.state.image) showError('choose an image first: drop one, pick a file or click a sample');
    else analyzeNow({ force: true });
  });
  $('sample-list').addEventListener('click', (e) => {
    const b = e.target.closest('[data-sample]');
    if (!b) return;
    app.update({ image: b.dataset.sample }, { push: true });
    syncControls();
    analyzeNow();
  });
  $('file').addEventListener('change', (e) => {
    uploadFile(e.target.files[0]);
    e.target.value = '';
  });
  const drop = $('upload');
  drop.addEventListener('dragover', (e) => {
    e.preventDefault();
    drop.classList.add('dragging');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('dragging'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('dragging');
    uploadFile(e.dataTransfer.files[0]);
  });
  $('gates-on').addEventListener('click', () => setGates(new Array(app.manifest.blocks.length).fill(1)));
  $('gates-off').addEventListener('click', () => setGates(new Array(app.manifest.blocks.length).fill(0)));
  for (const b of document.querySelectorAll('#tabs [data-view]')) b.addEventListener('click', () => showView(b.dataset.view));
  $('error').querySelector('button').addEventListener('click', () => ($('error').hidden = true));
  window.addEventListener('popstate', restoreFromUrl);
  for (const m of Object.values(VIEW_MODULES)) m.bind?.(app);
}

function syncControls() {
  for (const radio of document.querySelectorAll('input[name="bn"], input[name="bn2"]')) radio.checked = radio.value === app.state.bn;
  for (const b of document.querySelectorAll('#sample-list [data-sample]')) b.classList.toggle('active', b.dataset.sample === app.state.image);
}

// hide=controls,upload,strip,...: every element with a matching data-hide-key disappears.
function applyHidden() {
  for (const key of app.state.hide) {
    for (const el of document.querySelectorAll(`[data-hide-key~="${CSS.escape(key)}"]`)) el.hidden = true;
  }
  const visible = VIEWS.filter((v) => !app.state.hide.includes(v));
  if (visible.length && !visible.includes(app.state.view)) app.update({ view: visible[0] });
}

async function restoreFromUrl() {
  const before = app.state;
  app.state = parseState(location.search);
  syncControls();
  try {
    if (before.model !== app.state.model || before.weights !== app.state.weights) await loadModel();
    const same = ['image', 'gates', 'bn', 'model', 'weights'].every((k) => before[k] === app.state[k]);
    if (same) {
      updateStrip($('strip-blocks'), { gates: gatesArray(app.state.gates, app.manifest.blocks.length), block: app.state.block });
      await renderView();
    } else {
      await analyzeNow();
    }
  } catch (err) {
    showError(err);
  }
}

async function boot() {
  applyHidden();
  watchExports(); // exports running on the server (say the defaults after a fresh start) show with progress
  bindEvents();
  initShare(app).then(applyHidden); // lecture tools under every chart (hide=share hides them)
  syncControls();
  renderView();
  const finish = startTask('Loading models');
  try {
    [app.models, app.samples] = await Promise.all([api.listModels(), api.listSamples().catch(() => [])]);
    finish();
    fillModelSelect();
    fillSamples();
    syncControls();
    await loadModel();
    hooks.ready = true;
    if (app.state.image) await analyzeNow();
    else showInput();
  } catch (err) {
    finish();
    hooks.ready = true;
    showError(err);
  }
}

boot();
