// Lecture tools on the main page: under every chart, copy its embed code, download it as standalone
// HTML / PNG / SVG, or add it to the preset being composed (kept in localStorage, edited on /presets).
// The chart list (ids, titles, which element on this page) comes from GET /api/charts.

import { getJSON, pinImage } from './api.js';
import { EXPLAIN_DEFAULTS } from './charts/explain.js';

export const PRESET_KEY = 'resviz.preset.steps';
const EMBED_KEYS = ['model', 'weights', 'image', 'gates', 'bn', 'layer', 'block', 'channel', 'range'];
// Keys only some charts take (the explanations): a link carries them where the catalogue lists them.
const CHART_KEYS = ['method', 'target', 'opacity', 'samples', 'steps'];
const DEFAULTS = { gates: 'all-on', bn: 'running', range: 'common', ...EXPLAIN_DEFAULTS };

// ------------------------------------------------------------ preset steps in localStorage

export function loadSteps() {
  try {
    const steps = JSON.parse(localStorage.getItem(PRESET_KEY) || '[]');
    return Array.isArray(steps) ? steps.filter((s) => s && typeof s.chart === 'string') : [];
  } catch {
    return [];
  }
}

export function saveSteps(steps) {
  localStorage.setItem(PRESET_KEY, JSON.stringify(steps));
}

export function addStep(step) {
  const steps = loadSteps();
  steps.push(step);
  saveSteps(steps);
  pinStepImages([step]);
  return steps.length;
}

// A stored image used by an embed link or a preset is pinned: the store then never evicts it.
export function pinStepImages(steps) {
  const ids = new Set();
  for (const step of steps) {
    const id = new URLSearchParams(step.query || '').get('image');
    if (id && /^[0-9a-f]{64}$/.test(id)) ids.add(id);
  }
  return Promise.all([...ids].map(pinImage));
}

// ------------------------------------------------------------ links

// The embed parameters of the current view: defaults left out, the image only where the chart needs one.
export function embedQuery(state, chart) {
  const q = new URLSearchParams();
  const keys = [...EMBED_KEYS, ...CHART_KEYS.filter((k) => chart?.params?.includes(k))];
  for (const key of keys) {
    const v = state[key];
    if (key === 'image' && chart && chart.image === false) continue;
    if (v === null || v === undefined || v === '' || v === DEFAULTS[key]) continue;
    q.set(key, String(v));
  }
  return q.toString().replace(/%2C/g, ',');
}

export const embedUrl = (chartId, query) => `${location.origin}/embed/${chartId}${query ? `?${query}` : ''}`;
export const exportUrl = (chartId, query) => `/api/export/${chartId}.html${query ? `?${query}` : ''}`;

const escapeAttr = (s) => String(s).replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');

export function iframeCode(chart, query) {
  return `<iframe src="${escapeAttr(embedUrl(chart.id, query))}" width="800" height="450" style="border:0" loading="lazy" title="${escapeAttr(`resviz: ${chart.title}`)}"></iframe>`;
}

// ------------------------------------------------------------ downloads with title and caption

const captionOf = (el) => (el.closest('figure')?.querySelector('figcaption')?.textContent || '').trim();

// Break text into lines of at most `chars` characters (at spaces), for an SVG/PNG annotation.
export function wrapText(text, chars) {
  const lines = [];
  let line = '';
  for (const word of String(text).split(/\s+/).filter(Boolean)) {
    if (line && line.length + 1 + word.length > chars) {
      lines.push(line);
      line = word;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  if (line) lines.push(line);
  return lines;
}

const escapeText = (t) => t.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

// The drawn chart as a figure for Plotly.downloadImage, with the chart's title above it and its
// caption below it (PNG and SVG carry the same words as the page).
export function titledFigure(el, title, caption, width, height) {
  const layout = el.layout || {};
  const margin = { l: 56, r: 16, t: 28, b: 44, ...(layout.margin || {}) };
  const lines = caption ? wrapText(caption, Math.max(40, Math.floor((width - 24) / 6.4))) : [];
  const extra = lines.length ? 16 + 15 * lines.length : 0;
  const annotations = [...(layout.annotations || [])];
  if (lines.length) {
    annotations.push({
      xref: 'paper', yref: 'paper', x: 0, xanchor: 'left', yanchor: 'top', align: 'left', showarrow: false,
      y: -(margin.b + 8) / Math.max(1, height - margin.t - margin.b),
      text: lines.map(escapeText).join('<br>'), font: { size: 11, color: '#444' },
    });
  }
  return {
    data: el.data,
    layout: {
      ...layout,
      width,
      height: height + 36 + extra,
      margin: { ...margin, t: margin.t + 36, b: margin.b + extra },
      title: { text: escapeText(title), x: 0.01, xanchor: 'left', y: 0.995, yanchor: 'top', font: { size: 15 } },
      annotations,
    },
  };
}

// ------------------------------------------------------------ the buttons

function button(label, act, title) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  b.dataset.act = act;
  b.title = title;
  return b;
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    return false; // not a secure context, or no permission: the dialog shows the code instead
  }
}

function showCode(code) {
  let dialog = document.getElementById('embed-dialog');
  if (!dialog) {
    dialog = document.createElement('dialog');
    dialog.id = 'embed-dialog';
    dialog.className = 'embed-dialog';
    dialog.innerHTML = '<p>Copy this into your slides or web page:</p><textarea readonly rows="4"></textarea><form method="dialog"><button>Close</button></form>';
    document.body.append(dialog);
  }
  const area = dialog.querySelector('textarea');
  area.value = code;
  if (!dialog.open) dialog.showModal();
  area.select();
}

export async function initShare(app) {
  let charts;
  try {
    charts = await getJSON('/api/charts');
  } catch {
    return; // the page works without the lecture tools
  }
  const hooks = window.__resviz || {};
  for (const chart of charts) {
    const el = document.getElementById(chart.element);
    const figure = el?.closest('figure');
    if (!figure || figure.querySelector('.chart-tools')) continue;
    const tools = document.createElement('div');
    tools.className = 'chart-tools';
    tools.dataset.hideKey = 'share';
    tools.dataset.chart = chart.id;
    tools.setAttribute('role', 'group');
    tools.setAttribute('aria-label', `share: ${chart.title}`);
    const html = document.createElement('a');
    html.textContent = 'HTML';
    html.dataset.act = 'html';
    html.title = 'Download this chart as one standalone HTML file (works offline)';
    html.href = exportUrl(chart.id, '');
    html.setAttribute('download', '');
    const note = Object.assign(document.createElement('span'), { className: 'chart-tools-note' });
    note.setAttribute('aria-live', 'polite');
    tools.append(
      button('Copy embed code', 'embed', 'Copy an <iframe> that shows this chart, as it is now, in a slide or web page'),
      html,
      button('PNG', 'png', 'Download as PNG'),
      button('SVG', 'svg', 'Download as SVG'),
      button('+ Preset', 'preset', 'Add this chart, as it is now, as a step of the preset on the Lecture page'),
      note,
    );
    figure.append(tools);

    const say = (text) => {
      note.textContent = text;
      clearTimeout(note.timer);
      note.timer = setTimeout(() => (note.textContent = ''), 4000);
    };
    const ready = () => {
      if (chart.image && !app.state.image) {
        app.showError('choose an image first: the chart needs one');
        return false;
      }
      return true;
    };
    const query = () => embedQuery(app.state, chart);
    const filename = () => ['resviz', chart.id, app.state.model, chart.image ? app.state.image.slice(0, 16) : ''].filter(Boolean).join('-');

    html.addEventListener('click', (e) => {
      if (!ready()) {
        e.preventDefault();
        return;
      }
      html.href = exportUrl(chart.id, query());
      html.setAttribute('download', `${filename()}.html`);
      say('Building the HTML file…');
    });
    tools.addEventListener('click', async (e) => {
      const act = e.target.closest('button')?.dataset.act;
      if (!act || !ready()) return;
      if (act === 'embed') {
        const code = iframeCode(chart, query());
        hooks.lastEmbed = code;
        hooks.lastPin = pinImage(app.state.image);
        if (await copyText(code)) say('Embed code copied');
        else showCode(code);
      } else if (act === 'png' || act === 'svg') {
        if (!el.classList.contains('js-plotly-plot')) {
          say('Not drawn yet');
          return;
        }
        const width = Math.max(400, Math.round(el.clientWidth));
        const height = Math.max(300, Math.round(el.clientHeight));
        const title = `${chart.title} · ${app.state.model}`;
        const fig = titledFigure(el, title, captionOf(el), width, height);
        hooks.lastDownload = { title, caption: captionOf(el) };
        await Plotly.downloadImage(fig, { format: act, filename: filename(), width, height: fig.layout.height, scale: act === 'png' ? 2 : 1 });
      } else if (act === 'preset') {
        const s = app.state;
        const what = chart.image ? `${s.model}, ${s.image.length === 64 ? `${s.image.slice(0, 8)}…` : s.image}` : s.model;
        const n = addStep({ title: `${chart.title} (${what})`, chart: chart.id, mode: 'embed', query: query(), hide: '' });
        say(`Added as step ${n} of the preset`);
      }
    });
  }
}
