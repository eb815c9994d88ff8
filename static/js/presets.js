// Lecture presets. /presets: edit the sequence of steps kept in localStorage (added from the main
// page's "+ Preset" buttons), then share it as one link. /presets/play?steps=<base64url JSON>: show one
// step at a time in an iframe (an /embed/ chart or the Explore page with hide=), ← → to move.
// A step is {title, chart, mode: 'embed' | 'page', query, hide}; the server checks shared steps.
import { iframeCode, loadSteps, pinStepImages, saveSteps } from './share.js';

const data = JSON.parse(document.getElementById('presets-data').textContent);
const charts = Object.fromEntries(data.charts.map((c) => [c.id, c]));
const $ = (id) => document.getElementById(id);
const hooks = (window.__presets = { mode: data.mode, index: 0, steps: [] });
const STEP_FIELDS = ['title', 'chart', 'mode', 'query', 'hide'];

const qs = (q) => q.toString().replace(/%2C/g, ',');

// Where a step points (the same rule as app/lecture/presets.py: step_url).
export function stepUrl(step) {
  const q = new URLSearchParams(step.query || '');
  if (step.mode === 'page') {
    const chart = charts[step.chart];
    if (chart?.view && !q.has('view')) q.set('view', chart.view);
    if (step.hide) q.set('hide', step.hide);
    q.delete('caption');
    return `${chart?.page || '/'}?${qs(q)}`;
  }
  for (const key of ['view', 'hide', 'overlay']) q.delete(key);
  return `/embed/${step.chart}?${qs(q)}`;
}

export function encodeSteps(steps) {
  const keep = steps.map((s) => Object.fromEntries(STEP_FIELDS.filter((k) => s[k]).map((k) => [k, s[k]])));
  const bytes = new TextEncoder().encode(JSON.stringify(keep));
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

const playUrl = (steps) => `${location.origin}/presets/play?steps=${encodeSteps(steps)}`;

// ------------------------------------------------------------ editor

function editor() {
  let steps = loadSteps().filter((s) => charts[s.chart]);
  if (data.steps) {
    const incoming = data.steps.map((s) => Object.fromEntries(STEP_FIELDS.map((k) => [k, s[k] || ''])));
    const same = JSON.stringify(incoming) === JSON.stringify(steps);
    if (!same && (!steps.length || window.confirm(`Replace the ${steps.length} steps kept in this browser with the ${incoming.length} of this link?`))) {
      steps = incoming;
      saveSteps(steps);
    }
    history.replaceState(null, '', '/presets');
  }
  const list = $('steps');
  const template = $('step-template');
  const note = (text) => {
    $('presets-note').textContent = text;
  };

  const commit = () => {
    saveSteps(steps);
    render();
  };

  function render() {
    hooks.steps = steps;
    $('empty').hidden = steps.length > 0;
    $('share-box').hidden = true;
    for (const id of ['share', 'play', 'clear']) $(id).disabled = steps.length === 0;
    list.replaceChildren(
      ...steps.map((step, i) => {
        const li = template.content.firstElementChild.cloneNode(true);
        li.dataset.index = String(i);
        li.querySelector('.step-number').textContent = `${i + 1}.`;
        const title = li.querySelector('.step-title');
        title.value = step.title || charts[step.chart].title;
        title.addEventListener('change', () => {
          step.title = title.value.trim();
          commit();
        });
        const mode = li.querySelector('.step-mode');
        mode.value = step.mode === 'page' ? 'page' : 'embed';
        mode.addEventListener('change', () => {
          step.mode = mode.value;
          if (step.mode === 'page' && !step.hide) step.hide = 'nav,controls,strip,share';
          commit();
        });
        const hide = li.querySelector('.step-hide');
        hide.value = step.hide || '';
        hide.hidden = step.mode !== 'page';
        hide.addEventListener('change', () => {
          step.hide = hide.value.replace(/\s+/g, '');
          commit();
        });
        li.querySelector('[data-act=up]').disabled = i === 0;
        li.querySelector('[data-act=down]').disabled = i === steps.length - 1;
        const url = stepUrl(step);
        const link = li.querySelector('.step-url');
        link.href = url;
        link.textContent = `${location.origin}${url}`;
        const exportLink = li.querySelector('.step-export');
        exportLink.href = `/api/export/${step.chart}.html${step.query ? `?${step.query}` : ''}`;
        return li;
      }),
    );
  }

  list.addEventListener('click', async (e) => {
    const button = e.target.closest('button[data-act]');
    if (!button) return;
    const i = Number(button.closest('li').dataset.index);
    const act = button.dataset.act;
    if (act === 'up' && i > 0) [steps[i - 1], steps[i]] = [steps[i], steps[i - 1]];
    else if (act === 'down' && i < steps.length - 1) [steps[i + 1], steps[i]] = [steps[i], steps[i + 1]];
    else if (act === 'remove') steps.splice(i, 1);
    else if (act === 'copy-embed') {
      const step = { ...steps[i], mode: 'embed' };
      const code = iframeCode(charts[step.chart], new URLSearchParams(step.query || '').toString().replace(/%2C/g, ','));
      pinStepImages([step]);
      try {
        await navigator.clipboard.writeText(code);
        note(`Embed code of step ${i + 1} copied`);
      } catch {
        window.prompt('Embed code', code);
      }
      return;
    }
    commit();
  });

  $('share').addEventListener('click', async () => {
    const url = playUrl(steps);
    pinStepImages(steps);
    $('share-url').value = url;
    $('open-share').href = url;
    $('share-box').hidden = false;
    $('share-url').select();
    try {
      await navigator.clipboard.writeText(url);
      note('Link copied');
    } catch {
      note('Copy the link below');
    }
  });
  $('copy-share').addEventListener('click', async () => {
    $('share-url').select();
    try {
      await navigator.clipboard.writeText($('share-url').value);
      note('Link copied');
    } catch {
      note('Select the link and copy it');
    }
  });
  $('play').addEventListener('click', () => {
    location.href = playUrl(steps);
  });
  $('load-example').addEventListener('click', () => {
    steps = steps.concat(data.example.map((s) => Object.fromEntries(STEP_FIELDS.map((k) => [k, s[k] || '']))));
    commit();
    note(`${data.example.length} example steps added`);
  });
  $('clear').addEventListener('click', () => {
    if (!window.confirm(`Remove all ${steps.length} steps?`)) return;
    steps = [];
    commit();
  });
  render();
}

// ------------------------------------------------------------ player

function player() {
  const steps = data.steps;
  hooks.steps = steps;
  const stage = $('stage');
  const fromHash = () => {
    const n = Number(location.hash.slice(1));
    return Number.isInteger(n) && n >= 1 && n <= steps.length ? n - 1 : 0;
  };
  let index = -1;

  function show(i) {
    i = Math.max(0, Math.min(steps.length - 1, i));
    if (i === index) return;
    index = i;
    hooks.index = i;
    const step = steps[i];
    stage.src = step.url;
    stage.title = step.title;
    $('step-title').textContent = step.title;
    $('step-index').textContent = String(i + 1);
    $('step-open').href = step.url;
    $('prev').disabled = i === 0;
    $('next').disabled = i === steps.length - 1;
    history.replaceState(null, '', `${location.pathname}${location.search}#${i + 1}`);
    document.title = `${i + 1}/${steps.length} · ${step.title} · resviz`;
  }

  function onKey(e) {
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    if (e.target.closest?.('input, select, textarea')) return;
    const moves = { ArrowRight: 1, PageDown: 1, ArrowLeft: -1, PageUp: -1 };
    if (e.key in moves) show(index + moves[e.key]);
    else if (e.key === 'Home') show(0);
    else if (e.key === 'End') show(steps.length - 1);
    else return;
    e.preventDefault();
  }

  document.addEventListener('keydown', onKey);
  // Keys pressed while the (same-origin) step has the focus move the sequence too.
  stage.addEventListener('load', () => {
    try {
      stage.contentWindow.document.addEventListener('keydown', onKey);
    } catch {
      /* not same-origin: only keys outside the frame work */
    }
  });
  $('prev').addEventListener('click', () => show(index - 1));
  $('next').addEventListener('click', () => show(index + 1));
  $('fullscreen').addEventListener('click', () => $('player').requestFullscreen?.());
  $('edit-link').href = `/presets${location.search}`;
  window.addEventListener('hashchange', () => show(fromHash()));
  show(fromHash());
}

if (data.mode === 'play') {
  if (data.steps) player();
} else {
  editor();
}
