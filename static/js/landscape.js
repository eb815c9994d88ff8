// The degradation lab's loss-landscape section: the residual and plain surfaces of one depth (contours, 3-D,
// 1-D slices; builders in charts/landscape.js), the table of every shipped surface's numbers, and the lecture
// tools (embed, export, preset) under each chart. Everything drawn comes from GET /api/lab/landscapes[/{model}].
import { getJSON, labLandscape } from './api.js';
import { plot } from './plot.js';
import { initShare } from './share.js';
import { landscapeContourFigure, landscapeSliceFigure, landscapeSurfaceFigure, surfaceLabel } from './charts/landscape.js';
import { escapeHtml, num, pct } from './charts/format.js';

const FIGURES = { contour: landscapeContourFigure, surface: landscapeSurfaceFigure, slice: landscapeSliceFigure };
const $ = (id) => document.getElementById(id);
const hooks = (window.__landscape = { model: null, drawn: 0, error: null });

function message(text) {
  for (const kind of Object.keys(FIGURES)) {
    const el = $(`chart-landscape-${kind}`);
    if (el.data) Plotly.purge(el);
    el.classList.add('placeholder');
    el.dataset.message = text;
    $(`caption-landscape-${kind}`).textContent = '';
  }
}

async function draw(model) {
  hooks.model = model;
  let pair;
  try {
    pair = await labLandscape(model);
  } catch (err) {
    hooks.error = err.message;
    message(`The loss landscape could not be loaded: ${err.message}`);
    return;
  }
  if (hooks.model !== model) return; // another depth was chosen meanwhile
  const drawing = Object.entries(FIGURES).map(([kind, build]) => {
    const el = $(`chart-landscape-${kind}`);
    el.classList.remove('placeholder');
    el.removeAttribute('data-message');
    const fig = build(pair);
    $(`caption-landscape-${kind}`).textContent = fig.caption;
    return plot(el, fig);
  });
  await Promise.all(drawing);
  const notes = $('landscape-notes');
  notes.innerHTML = pair.notes.map((n) => `<li>${escapeHtml(n)}</li>`).join('');
  notes.hidden = !pair.notes.length;
  hooks.error = null;
  hooks.drawn += 1;
  window.dispatchEvent(new CustomEvent('resviz:landscape-drawn', { detail: { model } }));
}

function table(rows) {
  const rise = (r) => (r.mean === null ? 'overflow' : num(r.mean));
  const ratio = (r) => (r.eig_ratio === null ? '–' : num(r.eig_ratio, 2));
  const head = '<tr><th>network</th><th>held-out acc.</th><th>centre loss</th><th>mean rise r = 0.5</th>' +
    '<th>mean rise r = 1</th><th>local minima</th><th>eig. ratio</th><th>grid, images</th><th>time</th></tr>';
  const body = rows.map((r) => `<tr><td>${surfaceLabel(r)}</td>` +
    `<td>${r.held_out_accuracy === null ? '–' : pct(r.held_out_accuracy)}</td><td>${num(r.centre_loss)}</td>` +
    `<td>${rise(r.rise_05)}</td><td>${rise(r.rise_10)}</td><td>${r.local_minima}</td><td>${ratio(r)}</td>` +
    `<td>${r.grid}², ${r.images}</td><td>${num(r.wall_time_s, 3)} s</td></tr>`);
  $('landscape-table').innerHTML = head + body.join('');
}

export async function initLandscapes() {
  const select = $('landscape-model');
  const wanted = new URLSearchParams(location.search).get('model');
  if (wanted && [...select.options].some((o) => o.value === wanted)) select.value = wanted;
  select.addEventListener('change', () => draw(select.value));
  initShare({ state: { get model() { return select.value; } }, showError: (text) => { hooks.error = text; } });
  const [list] = await Promise.all([getJSON('/api/lab/landscapes').catch(() => null), draw(select.value)]);
  if (list) table(list.surfaces);
}
