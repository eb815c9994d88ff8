// Gradients view: gradient norm against depth (current switches, all on, all off) for one pinned
// target class, the depth sweep over CIFAR ResNets (drawn depth by depth as the rows arrive), the
// lesion study and the on/off collapse table. Missing endpoints show a note.
import * as api from '../api.js';
import { draw, placeholder } from '../plot.js';
import { depthSweepFigure, gradNormFigure, lesionFigure, SWEEP_DEPTHS, sweepFromRows } from '../charts/gradients.js';
import { collapseTable } from '../charts/collapse.js';

const $ = (id) => document.getElementById(id);

function unavailable(el, what, err) {
  const msg = err.status === 404 && /not found/i.test(err.message)
    ? `${what} is not available from this server yet (404).`
    : `${what} failed: ${err.message}`;
  placeholder(el, msg);
}

export function bind(app) {
  $('grad-target').addEventListener('change', (e) => {
    app.update({ target: e.target.value });
    app.rerender();
  });
}

// The target class every run of the comparison uses: the URL's choice, else the class the full
// residual network (every shortcut on) predicts. Toggling shortcuts never moves it.
function fillTargetSelect(app, predicted) {
  const select = $('grad-target');
  const names = app.manifest?.class_names || [];
  const key = `${app.manifest?.name}|${names.length}|${predicted?.index}|${predicted?.label}`;
  if (select.dataset.key !== key) {
    const first = document.createElement('option');
    first.value = '';
    first.textContent = predicted ? `${predicted.label} (class ${predicted.index}): the full ResNet's prediction` : "the full ResNet's prediction";
    const opts = names.map((n, i) => {
      const o = document.createElement('option');
      o.value = String(i);
      o.textContent = `${n} (class ${i})`;
      return o;
    });
    select.replaceChildren(first, ...opts);
    select.dataset.key = key;
  }
  select.value = app.state.target === '' || app.state.target === undefined ? '' : String(app.state.target);
}

let sweepSeq = 0;

async function renderSweep(app) {
  const s = app.state;
  const cifar = app.manifest?.family === 'cifar';
  const weights = cifar && ['init', 'trained'].includes(s.weights) ? s.weights : 'trained'; // the sweep knows these two
  const el = $('chart-sweep');
  const key = `sweep|${s.bn}|${weights}`;
  if (el.dataset.key === key && el.classList.contains('js-plotly-plot')) return;
  const seq = ++sweepSeq;
  const rows = [];
  const progress = $('sweep-progress');
  progress.hidden = false;
  for (const [i, depth] of SWEEP_DEPTHS.entries()) {
    progress.textContent = `Depth sweep: computing ResNet-${depth} (${i + 1} of ${SWEEP_DEPTHS.length})…`;
    if (!rows.length && !el.classList.contains('js-plotly-plot')) placeholder(el, progress.textContent);
    const part = await app.cached(`${key}|${depth}`, `Depth sweep: ResNet-${depth}`, () =>
      api.depthSweep({ bn: s.bn, weights, depths: depth }),
    );
    if (seq !== sweepSeq) return;
    rows.push(...part.rows);
    const sweep = sweepFromRows(rows, { bn: s.bn, weights, total: SWEEP_DEPTHS.length });
    await draw(el, rows.length === SWEEP_DEPTHS.length ? key : `${key}|${rows.length}`, () => depthSweepFigure(sweep));
  }
  progress.hidden = true;
  window.dispatchEvent(new CustomEvent('resviz:sweep'));
}

let collapseSeq = 0;

async function renderCollapse(app) {
  const box = $('collapse-table');
  const bn = app.state.bn;
  if (box.dataset.key === bn) return;
  const seq = ++collapseSeq;
  box.dataset.key = '';
  box.textContent = 'Computing the collapse table from the shipped weights…';
  const rows = [];
  for (const depth of SWEEP_DEPTHS) {
    const part = await app.cached(`collapse|${bn}|${depth}`, `Collapse table: ResNet-${depth}`, () =>
      api.getJSON(`/api/gradients/collapse?bn=${bn}&models=resnet${depth}`),
    );
    if (seq !== collapseSeq) return;
    rows.push(...part.rows);
    box.replaceChildren(collapseTable(rows, { bn, images: part.images, pending: SWEEP_DEPTHS.length - rows.length }));
  }
  box.dataset.key = bn;
}

let renderSeq = 0; // a newer render of this view wins: an older one finishing late writes nothing

export async function render(app) {
  const seq = ++renderSeq;
  const s = app.state;
  const akey = app.akey;
  const chosen = s.target === '' || s.target === undefined ? undefined : Number(s.target);
  const base = `${s.model}|${s.weights}|${app.imageId}|${s.bn}`;
  const grad = (gates, target) =>
    app.cached(`grad|${base}|${gates}|${target}`, `Gradients (${gates === s.gates ? 'current' : gates})`, () =>
      api.gradients(s.model, app.params({ gates, target })),
    );

  // The sweep and the collapse table do not depend on the image: they draw when ready and are not
  // part of the view's "rendered" signal.
  renderSweep(app).catch((err) => {
    $('sweep-progress').hidden = true;
    unavailable($('chart-sweep'), 'The depth sweep', err);
  });
  renderCollapse(app).catch((err) => {
    $('collapse-table').dataset.key = '';
    $('collapse-table').textContent = `The collapse table failed: ${err.message}`;
    $('collapse-table').classList.add('error-note');
  });

  const gradJob = (async () => {
    // The residual run first: with no chosen class it names the class the full ResNet predicts,
    // and every other run (plain, current switches, lesion) is measured against that class.
    const full = await grad('all-on', undefined);
    const predicted = { index: full.target[0], label: full.target_label[0] };
    const residual = chosen === undefined || chosen === predicted.index ? full : await grad('all-on', chosen);
    const target = residual.target[0];
    if (akey !== app.akey || seq !== renderSeq) return { target };
    fillTargetSelect(app, predicted);
    $('grad-target-note').textContent = chosen === undefined
      ? `Every curve and the lesion study measure the loss against “${predicted.label}” (class ${target}), the class the full residual network (all shortcuts on) predicts; toggling shortcuts does not move it.`
      : `Every curve and the lesion study measure the loss against your choice, “${residual.target_label[0]}” (class ${target}); the full residual network predicts “${predicted.label}”.`;
    const wanted = { plain: 'all-off' };
    if (!['all-on', 'all-off'].includes(s.gates)) wanted.current = s.gates;
    const entries = await Promise.all(Object.entries(wanted).map(async ([k, g]) => [k, await grad(g, target)]));
    if (akey !== app.akey || seq !== renderSeq) return { target };
    const runs = { residual, ...Object.fromEntries(entries) };
    await draw($('chart-grad'), `${akey}|${s.gates}|${s.block}|${target}`, () => gradNormFigure(runs, { block: s.block }));
    return { target };
  })();

  const lesionJob = gradJob
    .then(async ({ target }) => {
      const lesion = await app.cached(`lesion|${base}|${s.gates}|${target}`, 'Lesion study', () => api.lesion(s.model, app.params({ target })));
      if (akey !== app.akey || seq !== renderSeq) return;
      await draw($('chart-lesion'), `${akey}|lesion|${s.block}|${target}`, () => lesionFigure(lesion, { block: s.block, blocks: app.analysis.blocks }));
    })
    .catch((err) => unavailable($('chart-lesion'), 'The lesion endpoint', err));

  await Promise.all([gradJob.catch((err) => unavailable($('chart-grad'), 'The gradients endpoint', err)), lesionJob]);
}
