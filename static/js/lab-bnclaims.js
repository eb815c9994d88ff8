// The lab's batch-norm section: BN against no-BN training (GET /api/lab/bn-claims) and the normalisations side by
// side on the chosen image (POST /api/models/{name}/normalizations). Figures from charts/bnclaims.js.
import * as api from './api.js';
import { plot } from './plot.js';
import { bnGradFigure, bnLossFigure, normMethodNotes, normsChannelFigure, normsFigure, runLabel } from './charts/bnclaims.js';
import { escapeHtml, num, pct } from './charts/format.js';
import { initShare } from './share.js';

const $ = (id) => document.getElementById(id);
const finite = (x) => typeof x === 'number' && Number.isFinite(x);
const state = { imageId: null, model: 'resnet20', layers: null, controller: null };
const TALL = 680; // the two 2x2 / 2x3 grids
const hooks = (window.__labBn = { claims: null, norms: null, draws: 0 }); // what the browser tests read

function message(id, text) {
  const el = $(id);
  if (el.data) Plotly.purge(el);
  el.classList.add('placeholder');
  el.dataset.message = text;
}

function draw(id, fig, height) {
  $(id).classList.remove('placeholder');
  const layout = height ? { ...fig.layout, height } : fig.layout;
  plot(id, { data: fig.data, layout });
  const cap = $(`caption-${id.replace('chart-', '')}`);
  if (cap) cap.textContent = fig.caption || '';
}

function runsTable(claims) {
  const fixed = (x, d = 3) => (finite(x) ? x.toFixed(d) : '–');
  const percent = (x) => (finite(x) ? pct(x) : '–');
  const head = '<tr><th>network</th><th>BN</th><th>peak lr</th><th>outcome</th><th>final training loss</th>' +
    '<th>steps to loss 1.0</th><th>held-out accuracy</th><th>train − held-out</th><th>grad ratio, step 0</th>' +
    '<th>grad ratio, end</th><th>time</th></tr>';
  const rows = claims.runs.map((r) => {
    const g = r.grad_norms;
    const ratio = (i) => (g && g.first_last_ratio.length ? num(g.first_last_ratio.at(i), 3) : '–');
    const last = g && g.steps.length ? ` (step ${g.steps.at(-1)})` : '';
    const outcome = r.outcome === 'diverged' ? `diverged at step ${r.diverged_at_step}` : r.outcome;
    return `<tr><td>${runLabel(r)}</td><td>${r.norm === 'none' ? 'none' : 'batch'}</td><td>${r.peak_lr}` +
      `${r.retried ? ' (retried)' : ''}</td><td>${escapeHtml(outcome)}</td><td>${fixed(r.final_train_loss)}</td>` +
      `<td>${r.steps_to_loss_1 ?? 'never'}</td><td>${percent(r.held_out_accuracy)}</td>` +
      `<td>${finite(r.generalisation_gap) ? `${(100 * r.generalisation_gap).toFixed(1)} pt` : '–'}</td>` +
      `<td>${ratio(0)}</td><td>${ratio(-1)}${last}</td><td>${finite(r.wall_time_s) ? `${r.wall_time_s.toFixed(0)} s` : '–'}</td></tr>`;
  });
  $('bn-runs').innerHTML = head + rows.join('');
}

async function loadClaims() {
  let claims;
  try {
    claims = await api.bnClaims();
  } catch (err) {
    message('chart-bn-loss', `The batch-norm logs failed: ${err.message}`);
    message('chart-bn-grads', `The batch-norm logs failed: ${err.message}`);
    throw err;
  }
  if (!claims.runs.length) {
    message('chart-bn-loss', 'No batch-norm logs are shipped (models/weights/*-nobn.log.json); run scripts/make_bn_claims.sh.');
    return;
  }
  hooks.claims = claims;
  draw('chart-bn-loss', bnLossFigure(claims), 500);
  draw('chart-bn-grads', bnGradFigure(claims), TALL);
  $('bn-findings').innerHTML = claims.findings.map((f) => `<li>${escapeHtml(f)}</li>`).join('');
  runsTable(claims);
}

function fillSelect(el, values, chosen, text = (v) => v) {
  el.innerHTML = values.map((v) => `<option value="${escapeHtml(v)}"${String(v) === String(chosen) ? ' selected' : ''}>` +
    `${escapeHtml(text(v))}</option>`).join('');
}

function divisors(c) {
  return Array.from({ length: c }, (_, i) => i + 1).filter((d) => c % d === 0);
}

async function loadNorms() {
  if (state.controller) state.controller.abort();
  const controller = (state.controller = new AbortController());
  const layer = $('norm-layer').value || undefined;
  const groups = $('norm-groups').value || undefined;
  $('norm-status').textContent = 'Normalising the conv output five ways…';
  let norms;
  try {
    norms = await api.normalizations(state.model, { imageId: state.imageId, weights: 'trained', layer, groups }, controller.signal);
  } catch (err) {
    if (err.name === 'AbortError') return;
    $('norm-status').textContent = '';
    message('chart-norms', `The normalisations failed: ${err.message}`);
    throw err;
  }
  if (controller !== state.controller) return;
  if (!state.layers) {
    state.layers = norms.layers;
    fillSelect($('norm-layer'), norms.layers, norms.layer);
  }
  fillSelect($('norm-groups'), divisors(norms.shape[1]), norms.groups, (g) => `G = ${g}`);
  hooks.norms = norms;
  draw('chart-norms', normsFigure(norms), TALL);
  draw('chart-norm-channels', normsChannelFigure(norms), 520);
  $('norm-notes').innerHTML = normMethodNotes(norms)
    .map((n) => `<li><b>${escapeHtml(n.name)}</b> ${escapeHtml(n.text)}</li>`).join('');
  $('norm-status').textContent = '';
  hooks.draws += 1;
}

async function chooseSample(file) {
  const blob = await api.fetchSample(file);
  const { id } = await api.uploadImage(blob, file);
  state.imageId = id;
}

async function initNorms() {
  const samples = (await api.listSamples()).filter((s) => s.size === 32);
  const first = samples.find((s) => s.name === 'set-ring') || samples[0];
  fillSelect($('norm-sample'), samples.map((s) => s.file), first.file, (f) => samples.find((s) => s.file === f).title);
  await chooseSample(first.file);
  const redo = () => loadNorms().catch(showNormError);
  $('norm-sample').addEventListener('change', async () => {
    await chooseSample($('norm-sample').value).catch(showNormError);
    redo();
  });
  $('norm-upload').addEventListener('change', async (e) => {
    const f = e.target.files[0];
    if (!f) return;
    try {
      state.imageId = (await api.uploadImage(f, f.name)).id;
    } catch (err) {
      showNormError(err);
      return;
    }
    redo();
  });
  $('norm-model').addEventListener('change', () => {
    state.model = $('norm-model').value;
    state.layers = null;
    $('norm-layer').innerHTML = '';
    $('norm-groups').innerHTML = '';
    redo();
  });
  $('norm-layer').addEventListener('change', () => {
    $('norm-groups').innerHTML = ''; // the new layer's channel count picks its own default
    redo();
  });
  $('norm-groups').addEventListener('change', redo);
  await loadNorms();
}

function showNormError(err) {
  $('norm-status').textContent = `Error: ${err.message}`;
}

// What the lecture tools under each chart link to: the section's network, image and conv layer.
const shareApp = {
  get state() {
    return { model: state.model, weights: 'trained', image: state.imageId, layer: $('norm-layer').value || '' };
  },
  showError: (text) => {
    $('norm-status').textContent = text;
  },
};

// Draw the section; errors stay inside it (the rest of the lab carries on).
export async function initBnClaims() {
  initShare(shareApp);
  await Promise.all([loadClaims().catch((err) => { $('bn-status').textContent = `Error: ${err.message}`; }),
    initNorms().catch(showNormError)]);
}
