// Explanations (POST /api/models/{m}/explain): a class activation map or an input attribution laid over
// the input, and every layer's map side by side with the page's shortcut switches and with every shortcut
// off. Pure: answers -> {data, layout, caption}. The server sends maps at their layer's own resolution,
// before any upsampling or normalisation; scaling them for display happens here.
import { baseLayout, MAP_COLORSCALE, RUN_COLORS, SELECTION_LINE, SIGNED_COLORSCALE, stageColor } from './theme.js';
import { num } from './format.js';

// cam: a map at a block output (layer = stem or a block); otherwise an attribution at the input pixels.
export const METHODS = [
  { id: 'gradcam', name: 'Grad-CAM', cam: true, cite: 'Selvaraju et al. 2017' },
  { id: 'gradcampp', name: 'Grad-CAM++', cam: true, cite: 'Chattopadhay et al. 2018' },
  { id: 'hirescam', name: 'HiResCAM', cam: true, cite: 'Draelos & Carin 2020' },
  { id: 'layercam', name: 'LayerCAM', cam: true, cite: 'Jiang et al. 2021' },
  { id: 'saliency', name: 'Input-gradient saliency', cam: false, cite: 'Simonyan et al. 2014' },
  { id: 'smoothgrad', name: 'SmoothGrad', cam: false, cite: 'Smilkov et al. 2017' },
  { id: 'ig', name: 'Integrated Gradients', cam: false, cite: 'Sundararajan et al. 2017' },
];
export const EXPLAIN_DEFAULTS = Object.freeze({ method: 'gradcam', opacity: 0.5, samples: 16, steps: 32 });
const INPUT_LAYER = 'input'; // the layer an input method's map is at

const methodOf = (id) => METHODS.find((m) => m.id === id) || METHODS[0];
export const isCamMethod = (id) => methodOf(id).cam;
// The strips compare layers, so they need a method that works at a layer: the chosen CAM, else Grad-CAM.
export const stripMethod = (id) => (isCamMethod(id) ? methodOf(id).id : EXPLAIN_DEFAULTS.method);

// ------------------------------------------------------------ the requests a selection makes

// The parameters of the map request for a selection {method, explain_layer, target, samples, steps}:
// one rule for the Explore page, an embed and (as explain_options in app/lecture/catalogue.py) an export.
// An input method's map is at the input whatever layer is chosen; samples and steps matter to one method
// each, the others send the defaults: changing what a method ignores makes no new request.
export function explainParams(sel) {
  const method = methodOf(sel.method || EXPLAIN_DEFAULTS.method);
  const chosen = sel.target !== '' && sel.target !== null && sel.target !== undefined;
  return {
    method: method.id,
    layer: method.cam ? sel.explain_layer : INPUT_LAYER,
    target: chosen ? String(sel.target) : 'predicted',
    samples: method.id === 'smoothgrad' ? Number(sel.samples || EXPLAIN_DEFAULTS.samples) : EXPLAIN_DEFAULTS.samples,
    steps: method.id === 'ig' ? Number(sel.steps || EXPLAIN_DEFAULTS.steps) : EXPLAIN_DEFAULTS.steps,
    overlays: false, // the browser lays the map over the input itself
  };
}

// The strips' request: every layer (layer=all) with the strip method. The all-off strip then asks for the
// class the first strip explained (its answer's target), so both strips explain the same class.
export const stripParams = (sel) => ({ ...explainParams({ ...sel, method: stripMethod(sel.method) }), layer: 'all' });

// ------------------------------------------------------------ shared pieces

const finite = (v) => typeof v === 'number' && Number.isFinite(v);

// A map divided by its largest value (its largest |value| when it has negative values), nulls kept;
// zero: the map has no positive value to scale by (drawn as 0 everywhere). The scale is the sent map's own
// extreme (the answer's `range` is that of the unrounded map, a few parts in a million away).
export function scaledMap(map) {
  let lo = 0;
  let hi = 0;
  for (const row of map) {
    for (const v of row) {
      if (!finite(v)) continue;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  const signed = lo < 0;
  const s = signed ? Math.max(-lo, Math.abs(hi)) : hi;
  const z = map.map((row) => row.map((v) => (finite(v) ? (s > 0 ? v / s : 0) : null)));
  return { z, signed, zero: !(s > 0) };
}

const countMissing = (map) => map.reduce((n, row) => n + row.filter((v) => !finite(v)).length, 0);
const shortId = (id) => id.replace(/^layer/, '');
const shape = (s) => s.join('×');

function classText(ex) {
  const cls = `class “${ex.target_label}” (${ex.target})`;
  const p = `p = ${num(ex.probability, 3)}`;
  return ex.target_source === 'chosen' ? `${cls}, your choice (${p})` : `${cls}, the predicted top-1 class (${p})`;
}

function gatesText(gates) {
  const off = (gates || []).filter((g) => g !== 1).length;
  if (!off) return '';
  return off === gates.length ? 'Every shortcut is off. ' : `${off} of ${gates.length} shortcuts are off. `;
}

// ------------------------------------------------------------ the map over the input

// The single map of an answer (its top-level fields; else its one `layers` entry).
function singleMap(ex) {
  if (ex.map) return { layer: ex.layer, map: ex.map, map_shape: ex.map_shape, range: ex.range };
  const entry = (ex.layers || [])[0];
  if (!entry) throw new Error('this explanation has no map');
  return entry;
}

// opacity: the map's opacity over the input (0..1).
export function overlayFigure(ex, { opacity = EXPLAIN_DEFAULTS.opacity, samples, steps } = {}) {
  const [H, W] = ex.input_shape;
  const m = singleMap(ex);
  const [h, w] = m.map_shape;
  const { z, signed } = scaledMap(m.map);
  const method = methodOf(ex.method);
  const data = [
    { type: 'image', name: 'input', source: ex.input_png, x0: 0, y0: 0, dx: 1, dy: 1, hoverinfo: 'skip' },
    {
      type: 'heatmap', name: method.name, z, customdata: m.map,
      // the h×w cells stretched over the H×W input: cell centres at (j + 0.5) W/w - 0.5 in pixel coordinates
      x0: W / (2 * w) - 0.5, dx: W / w, y0: H / (2 * h) - 0.5, dy: H / h,
      zmin: signed ? -1 : 0, zmax: 1, zsmooth: 'best', opacity: Math.min(1, Math.max(0, Number(opacity))),
      colorscale: signed ? SIGNED_COLORSCALE : MAP_COLORSCALE, hoverongaps: false,
      colorbar: { title: { text: signed ? 'share of the largest |value|' : 'share of the map’s max', side: 'right' }, thickness: 12, tickformat: '.0%' },
      hovertemplate: `value %{customdata:.4g}<br>%{z:.0%} of the ${signed ? 'largest |value|' : 'max'}<extra>${m.layer}</extra>`,
    },
  ];
  const noTicks = { showgrid: false, zeroline: false, showticklabels: false, ticks: '', constrain: 'domain' };
  const where = m.layer === 'input' ? `input ${shape([H, W])}` : `${m.layer} · ${shape([h, w])}`;
  const layout = baseLayout({
    margin: { l: 8, r: 8, t: 28, b: 8 },
    title: { text: `${method.name} · ${where} · “${ex.target_label}”`, font: { size: 12 }, x: 0.02 },
    xaxis: { range: [-0.5, W - 0.5], ...noTicks },
    yaxis: { range: [H - 0.5, -0.5], scaleanchor: 'x', ...noTicks },
  });
  return { data, layout, caption: overlayCaption(ex, m, { samples, steps }) };
}

// What each method's map is, in one clause after "<name> (<paper>) at <where> for <class>: ".
const MEANS = {
  gradcam: () =>
    'each channel of the block output weighted by the spatial mean of the class score’s gradient, summed, then a ReLU: where raising the activations would most raise the class score (before the softmax)',
  gradcampp: () =>
    'like Grad-CAM, but each channel’s weight sums only the positive gradients, weighted by higher-order terms, so that several separate parts or instances of the class can light up at once',
  hirescam: () =>
    'the gradient of the class score (before the softmax) times the activation at every position, summed over channels, with no spatial averaging of the gradient, so each cell shows what its own activations add to the score; at the last block, where global average pooling and one linear layer follow, the gradient is the same at every position and HiResCAM equals Grad-CAM',
  layercam: () =>
    'the positive part of the class score’s gradient times the activation at every position, summed over channels; it keeps more detail than Grad-CAM at the shallow, high-resolution layers',
  saliency: () =>
    'the size of the gradient of the class score (before the softmax) with respect to each input pixel, the largest over its colour channels: which pixels a small change would most move the score',
  smoothgrad: ({ samples, params }) =>
    `that saliency averaged over n = ${samples} copies of the image with Gaussian noise added${finite(params.sigma_fraction) ? ` (standard deviation ${num(100 * params.sigma_fraction)}% of the input’s range)` : ''}, which removes much of the plain gradient’s speckle`,
  ig: ({ steps, params }) => {
    const from = params.baseline ? `a ${params.baseline} image` : 'a baseline image';
    const c = params.completeness || {};
    const check = finite(c.attribution_sum) && finite(c.score_difference)
      ? ` (here they add up to ${num(c.attribution_sum)} for a change of ${num(c.score_difference)})`
      : '';
    return `the class score’s gradient averaged along the straight path from ${from} to the input (m = ${steps} steps), times the difference between the input and that image; the map shows the size of these attributions, summed over colour channels, and the attributions themselves add up to the change of the score from ${from} to the input${check}`;
  },
};

function overlayCaption(ex, m, sel) {
  const method = methodOf(ex.method);
  const [H, W] = ex.input_shape;
  const [h, w] = m.map_shape;
  const params = ex.params || {};
  const counts = {
    samples: params.samples ?? sel.samples ?? EXPLAIN_DEFAULTS.samples,
    steps: params.steps ?? sel.steps ?? EXPLAIN_DEFAULTS.steps,
    params,
  };
  const where = method.cam ? `at ${m.layer}` : 'at the input';
  let text = `${method.name} (${method.cite}) ${where} for ${classText(ex)}: ${MEANS[method.id](counts)}. `;
  if (method.cam && h === H && w === W) {
    text += `The map is ${shape([h, w])}, the input’s own resolution. `;
  } else if (method.cam) {
    text += `The map is ${shape([h, w])}, upsampled (bilinear) over the ${shape([H, W])} input, so each cell covers ${num(H / h)}×${num(W / w)} pixels`;
    text += h * 4 <= H ? '; at this resolution a deep layer can only point at coarse regions. ' : '. ';
  } else {
    text += `One value per input pixel (${shape([H, W])}). `;
  }
  const { signed, zero } = scaledMap(m.map);
  if (zero) text += 'The map is zero everywhere: nothing at this layer raises the class score. ';
  else if (signed) text += 'Red raises the class score, blue lowers it; colours are shares of the largest |value|. ';
  else text += `Colours are shares of the map’s largest value (${num(m.range[1])}). `;
  text += `It is not a segmentation and not a causal proof: it shows where the class score is sensitive to ${method.cam ? 'the layer’s activations' : 'the pixels'}, not what the network “looks at”. `;
  text += gatesText(ex.gates);
  if (ex.bn === 'batch') text += 'BN uses batch statistics. ';
  const missing = countMissing(m.map);
  if (missing) text += `${missing} cell${missing > 1 ? 's' : ''} had no finite value and ${missing > 1 ? 'are' : 'is'} left blank. `;
  if (ex.notes?.length) text += ex.notes.join(' ');
  return text.trim();
}

// ------------------------------------------------------------ every layer, shortcuts on and off

export const STRIP_RUNS = ['residual', 'plain']; // the page's switches, then every shortcut off
const MAX_TILE = 32; // larger maps (ImageNet's 56×56) are averaged down to a tile of at most this many cells a side

// Where each layer's tile goes: the stem and the blocks in forward order, in one row for up to 24 layers,
// else one row per stage (the stem leads the first). Units are mosaic cells; one strip spans `height` rows.
export function stripGrid(layers) {
  let T = Math.max(...layers.map((l) => Math.max(...l.map_shape)));
  while (T > MAX_TILE && T % 2 === 0) T /= 2;
  const gap = Math.max(1, Math.round(T / 8));
  const stageGap = 3 * gap;
  const band = Math.ceil(T * 0.32); // room above a row of tiles (stage labels) and below it (tile labels)
  const title = Math.ceil(T * 0.4);
  const rows = [];
  if (layers.length <= 24) rows.push(layers);
  else {
    for (const l of layers) {
      const stage = Math.max(1, l.stage);
      if (!rows[stage - 1]) rows[stage - 1] = [];
      rows[stage - 1].push(l);
    }
  }
  const tiles = [];
  let width = 0;
  rows.filter(Boolean).forEach((row, r) => {
    let x = 0;
    row.forEach((l, i) => {
      if (i > 0) x += l.stage !== row[i - 1].stage ? stageGap : gap;
      tiles.push({ layer: l.layer, stage: l.stage, row: r, x0: x, y0: title + band + r * (T + 2 * band), size: T });
      x += T;
    });
    width = Math.max(width, x);
  });
  const nRows = rows.filter(Boolean).length;
  return { tiles, tile: T, band, title, width, height: title + nRows * (T + 2 * band), rows: nRows };
}

// One layer's map as a T×T tile: each cell the mean of the map's cells it covers (a larger map) or the
// one map cell it lies in (a smaller one, drawn as blocks: the layer's own resolution stays visible).
export function tileOf(z, T) {
  const h = z.length;
  const w = z[0].length;
  const out = [];
  for (let i = 0; i < T; i++) {
    const row = new Array(T);
    for (let j = 0; j < T; j++) {
      const r0 = Math.floor((i * h) / T);
      const r1 = Math.max(r0 + 1, Math.floor(((i + 1) * h) / T));
      const c0 = Math.floor((j * w) / T);
      const c1 = Math.max(c0 + 1, Math.floor(((j + 1) * w) / T));
      let sum = 0;
      let n = 0;
      for (let a = r0; a < r1; a++) {
        for (let b = c0; b < c1; b++) {
          if (z[a][b] === null) continue;
          sum += z[a][b];
          n += 1;
        }
      }
      row[j] = n ? sum / n : null;
    }
    out.push(row);
  }
  return out;
}

function runTitle(key, ex) {
  const gates = ex.gates || [];
  const off = gates.filter((g) => g !== 1).length;
  if (key === 'plain') return { text: 'every shortcut off (the same weights)', color: RUN_COLORS.plain };
  if (!off) return { text: 'all shortcuts on (residual)', color: RUN_COLORS.residual };
  if (off === gates.length) return { text: 'the page’s switches: every shortcut off', color: RUN_COLORS.plain };
  return { text: `the page’s switches: ${off} of ${gates.length} shortcuts off`, color: RUN_COLORS.current };
}

// The outline of the chosen layer's tile in every strip.
export function stripSelection(grid, runs, layer) {
  const tile = grid.tiles.find((t) => t.layer === layer);
  if (!tile) return [];
  return runs.map((_, k) => {
    const y = k * (grid.height + grid.title) + tile.y0;
    return { type: 'rect', xref: 'x', yref: 'y', x0: tile.x0 - 1, x1: tile.x0 + tile.size, y0: y - 1, y1: y + tile.size, line: { color: SELECTION_LINE, width: 2 } };
  });
}

// strips: {residual, plain}: answers of layer=all (the page's gates; every gate 0). layer: the chosen layer,
// outlined; method: the page's method (the strips show Grad-CAM when it is an input method).
export function stripFigure(strips, { layer, method } = {}) {
  const runs = STRIP_RUNS.filter((k) => strips[k]);
  if (!runs.length) throw new Error('no strips to draw');
  const base = strips[runs[0]];
  const grid = stripGrid(base.layers);
  const cols = grid.width;
  const annotations = [];
  const data = runs.map((key, k) => {
    const ex = strips[key];
    const y0 = k * (grid.height + grid.title);
    const z = Array.from({ length: grid.height }, () => new Array(cols).fill(null));
    const text = Array.from({ length: grid.height }, () => new Array(cols).fill(null));
    const byId = new Map(ex.layers.map((l) => [l.layer, l]));
    for (const t of grid.tiles) {
      const l = byId.get(t.layer);
      if (!l) continue;
      const { z: scaled, zero } = scaledMap(l.map);
      const tile = tileOf(scaled, t.size);
      const label = `${t.layer} (${t.stage ? `stage ${t.stage}` : 'stem'}, ${shape(l.map_shape)})<br>max ${num(l.range?.[1])}`;
      for (let i = 0; i < t.size; i++) {
        for (let j = 0; j < t.size; j++) {
          z[t.y0 + i][t.x0 + j] = tile[i][j];
          text[t.y0 + i][t.x0 + j] = label;
        }
      }
      const below = t.stage ? shortId(t.layer) : 'stem';
      annotations.push({
        x: t.x0 + t.size / 2, y: y0 + t.y0 + t.size, yanchor: 'top', xanchor: 'center', showarrow: false,
        text: zero ? `${below} (0)` : below, font: { size: 9, color: zero ? '#a33' : '#444' },
      });
    }
    const title = runTitle(key, ex);
    annotations.push({
      x: 0, y: y0 + grid.title * 0.2, xanchor: 'left', yanchor: 'top', showarrow: false, align: 'left',
      text: `<b>${title.text}</b> · p(“${ex.target_label}”) = ${num(ex.probability, 3)}`, font: { size: 12, color: title.color },
    });
    return {
      type: 'heatmap', name: key, z, text, x0: 0, dx: 1, y0, dy: 1, zmin: 0, zmax: 1, zsmooth: false,
      colorscale: MAP_COLORSCALE, hoverongaps: false, showscale: k === 0,
      colorbar: { title: { text: 'share of the layer’s own max', side: 'right' }, thickness: 12, tickformat: '.0%', len: 0.8 },
      hovertemplate: `%{text}<br>%{z:.0%} of its max<extra>${title.text}</extra>`,
      meta: { run: key, tile: grid.tile, tiles: grid.tiles.map(({ layer: id, x0, y0: ty }) => ({ layer: id, x0, y0: y0 + ty })) },
    };
  });
  // Stage labels above the first tile of each stage in each row of both strips (the stem's only where
  // there is room: in one long row its tile is as wide as the others, in a row per stage it is narrow).
  runs.forEach((_, k) => {
    const y0 = k * (grid.height + grid.title);
    grid.tiles.forEach((t, i) => {
      const prev = grid.tiles[i - 1];
      if (prev && prev.stage === t.stage && prev.row === t.row) return;
      if (!t.stage && grid.rows > 1) return;
      const l = base.layers.find((x) => x.layer === t.layer);
      annotations.push({
        x: t.x0, y: y0 + t.y0, xanchor: 'left', yanchor: 'bottom', showarrow: false,
        text: t.stage ? `stage ${t.stage} · ${shape(l.map_shape)}` : `stem · ${shape(l.map_shape)}`, font: { size: 10, color: stageColor(t.stage) },
      });
    });
  });
  const height = runs.length * grid.height + (runs.length - 1) * grid.title;
  const noTicks = { showgrid: false, zeroline: false, showticklabels: false, ticks: '', constrain: 'domain', fixedrange: true };
  const layout = baseLayout({
    margin: { l: 8, r: 8, t: 8, b: 8 },
    xaxis: { range: [-1.5, cols + 0.5], ...noTicks },
    yaxis: { range: [height + 0.5, -0.5], scaleanchor: 'x', ...noTicks },
    annotations,
    shapes: stripSelection(grid, runs, layer),
  });
  return { data, layout, caption: stripCaption(strips, runs, grid, method) };
}

// A box height (px) that fits the strips' mosaic at a given width, for the Explore page's chart.
export function stripBoxHeight(layers, width, runs = 2) {
  const grid = stripGrid(layers);
  const rows = runs * grid.height + (runs - 1) * grid.title;
  return Math.round(Math.min(1400, Math.max(240, 16 + ((width - 90) * rows) / (grid.width + 2))));
}

function stripCaption(strips, runs, grid, pageMethod) {
  const first = strips[runs[0]];
  const method = methodOf(first.method);
  const sizes = [...new Set(first.layers.map((l) => shape(l.map_shape)))];
  let text = `Every layer’s ${method.name} map (${method.cite}) for ${classText(first)}: the stem, then each block in forward order, grouped by stage. `;
  if (pageMethod && !isCamMethod(pageMethod)) {
    text += `The strips show ${method.name} because ${methodOf(pageMethod).name} works at the input, not at a layer. `;
  }
  const T = grid.tile;
  const larger = sizes.filter((sz) => first.layers.some((l) => shape(l.map_shape) === sz && Math.max(...l.map_shape) > T));
  text += `Each tile is scaled to its own maximum, so it shows where a layer’s evidence for the class lies, not how strong it is, and keeps its layer’s resolution (${sizes.join(', ')}; drawn as blocks`;
  text += larger.length ? `, the ${larger.join(', ')} maps averaged to ${T}×${T}). ` : '). ';
  if (runs.length === 2) {
    const [a, b] = runs.map((k) => strips[k]);
    text += `Top: ${runTitle(runs[0], a).text} (p = ${num(a.probability, 3)}); bottom: the same weights with every shortcut off, explaining the same class (p = ${num(b.probability, 3)}). `;
    text += 'Where the rows differ is what the shortcuts change. ';
    if ((a.gates || []).every((g) => g === 0)) text += 'The page’s switches are all off, so both rows show the same network. ';
  }
  const zeros = runs.map((k) => strips[k].layers.filter((l) => scaledMap(l.map).zero).map((l) => l.layer));
  const listed = (ids) => `${ids.slice(0, 4).join(', ')}${ids.length > 4 ? ', …' : ''}`;
  const where = zeros.map((ids, i) => (ids.length ? `${listed(ids)} ${i ? 'in the bottom row' : 'in the top row'}` : '')).filter(Boolean);
  if (where.length) text += `Marked (0): maps that are zero everywhere, no part of the layer raises the class score (${where.join('; ')}). `;
  const blank = runs.some((k) => strips[k].layers.some((l) => countMissing(l.map)));
  if (blank) text += 'Blank cells had no finite value. ';
  text += `Deep tiles are coarse (the smallest is ${sizes[sizes.length - 1]}): they can only point at regions. Not a segmentation, not a causal proof.`;
  if (grid.rows > 1) text += ' One row per stage.';
  return text;
}
