// Feature-map view: the channel grid of a tap (PNG thumbnails) and one channel at full resolution.
import * as api from '../api.js';
import { draw, placeholder } from '../plot.js';
import { channelFigure } from '../charts/featuremap.js';
import { featureMapChoice } from '../charts/select.js';
import { num } from '../charts/format.js';

const $ = (id) => document.getElementById(id);
const cropped = new Map(); // image src + crop -> data URL of the input as the model sees it

export function bind(app) {
  $('fm-tap').addEventListener('change', (e) => app.selectLayer(e.target.value));
  $('fm-grid').addEventListener('click', (e) => {
    const cell = e.target.closest('[data-channel]');
    if (!cell) return;
    app.update({ channel: Number(cell.dataset.channel) });
    app.rerender();
  });
  $('fm-channel').addEventListener('change', (e) => {
    app.update({ channel: Math.max(0, Math.round(Number(e.target.value) || 0)) });
    app.rerender();
  });
  $('fm-overlay').addEventListener('input', (e) => {
    app.update({ overlay: Number(e.target.value) });
    $('fm-overlay-value').textContent = `${Math.round(100 * Number(e.target.value))}%`;
    app.rerender();
  });
}

// The input resized (shorter side) and centre-cropped exactly as the model's preprocessing does.
function croppedInput(src, pre) {
  const key = `${src}|${pre.resize_shorter}|${pre.crop}`;
  if (cropped.has(key)) return cropped.get(key);
  const p = new Promise((resolve) => {
    const img = new Image();
    img.onload = () => {
      const scale = pre.resize_shorter / Math.min(img.naturalWidth, img.naturalHeight);
      const w = img.naturalWidth * scale;
      const h = img.naturalHeight * scale;
      const canvas = document.createElement('canvas');
      canvas.width = pre.crop;
      canvas.height = pre.crop;
      canvas.getContext('2d').drawImage(img, (pre.crop - w) / 2, (pre.crop - h) / 2, w, h);
      resolve(canvas.toDataURL('image/png'));
    };
    img.onerror = () => resolve(null);
    img.src = src;
  });
  cropped.set(key, p);
  return p;
}

function renderGrid(app, tapId, fm, channel) {
  const grid = $('fm-grid');
  const key = `${app.akey}|${tapId}`;
  if (grid.dataset.key !== key) {
    const [h, w] = fm.size;
    const cells = fm.channels.map((c, i) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'fm-cell';
      b.dataset.channel = String(c);
      b.title = `channel ${c}: click for full resolution`;
      const img = document.createElement('img');
      img.src = `data:image/png;base64,${fm.png[i]}`;
      img.alt = `${tapId} channel ${c}`;
      img.width = w;
      img.height = h;
      b.append(img, Object.assign(document.createElement('span'), { textContent: `ch ${c}` }));
      return b;
    });
    grid.replaceChildren(...cells);
    grid.dataset.key = key;
    $('fm-scale').textContent = `${num(fm.vmin)} … ${num(fm.vmax)}`;
    const layer = app.layers().find((l) => l.id === tapId);
    const inputSide = app.analysis.input.shape[2];
    $('cap-fm-grid').textContent =
      `The ${fm.channels.length} channels of ${tapId} with the largest mean activation (of ${layer.shape[1]}), ` +
      `each ${h}×${w}, on one shared ${fm.colormap} scale from ${num(fm.vmin)} to ${num(fm.vmax)}, so brightness compares across channels. ` +
      `One pixel here stands for a ${inputSide / h}×${inputSide / w} patch of the ${inputSide}×${inputSide} input; click a channel for its values.`;
  }
  for (const cell of grid.querySelectorAll('[data-channel]')) cell.classList.toggle('active', Number(cell.dataset.channel) === channel);
}

export async function render(app) {
  const a = app.analysis;
  const tapIds = a.layers.map((l) => l.id).filter((id) => a.feature_maps[id]);
  const chart = $('chart-channel');
  if (!tapIds.length) {
    $('fm-grid').replaceChildren();
    placeholder(chart, 'This analysis has no feature maps');
    return;
  }
  const { tap: tapLayer, channel } = featureMapChoice(a, app.state);
  const tapId = tapLayer.id;
  const select = $('fm-tap');
  if (select.dataset.akey !== app.akey) {
    select.replaceChildren(...tapIds.map((id) => new Option(`${id} (${a.layers.find((l) => l.id === id).shape.slice(1).join('×')})`, id)));
    select.dataset.akey = app.akey;
  }
  select.value = tapId;
  const fm = a.feature_maps[tapId];
  const channels = tapLayer.shape[1];
  const input = $('fm-channel');
  input.max = String(channels - 1);
  input.value = String(channel);
  $('fm-overlay').value = String(app.state.overlay);
  $('fm-overlay-value').textContent = `${Math.round(100 * app.state.overlay)}%`;
  renderGrid(app, tapId, fm, channel);

  const akey = app.akey;
  const s = app.state;
  let values;
  try {
    values = await app.cached(`fmap|${akey}|${tapId}|${channel}`, `Loading ${tapId} channel ${channel}`, () =>
      api.featureMap(s.model, app.params({ tap: tapId, channel })),
    );
  } catch (err) {
    placeholder(chart, `Full-resolution map unavailable: ${err.message}`);
    return;
  }
  if (akey !== app.akey) return;
  let overlay = null;
  if (app.state.overlay > 0) {
    const src = $('input-image').currentSrc || $('input-image').src;
    overlay = { source: src ? await croppedInput(src, app.manifest.preprocessing) : null, opacity: app.state.overlay };
  }
  await draw(chart, `${akey}|${tapId}|${channel}|${app.state.overlay}`, () => channelFigure(values, overlay));
}
