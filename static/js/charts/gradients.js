// Gradients: norm against depth (residual vs plain vs current gates), the depth sweep, the lesion study.
import { axis, baseLayout, RUN_COLORS, SELECTION_COLOR, stageColor } from './theme.js';
import { num } from './format.js';

const RUNS = [
  { key: 'residual', name: 'all shortcuts on (residual)', dash: 'solid' },
  { key: 'plain', name: 'all shortcuts off (plain)', dash: 'dash' },
  { key: 'current', name: 'current switches', dash: 'dot' },
];

function blockHighlight(ids, block) {
  const i = ids.indexOf(block);
  if (i < 0) return [];
  return [{ type: 'rect', xref: 'x', yref: 'paper', x0: i - 0.5, x1: i + 0.5, y0: 0, y1: 1, fillcolor: SELECTION_COLOR, line: { width: 0 }, layer: 'below' }];
}

// Log-axis ticks at 1, 2, 5 x 10^k (only 10^k over more than two decades), labelled plainly.
export function logTicks(values) {
  const v = values.filter((x) => x > 0 && Number.isFinite(x));
  if (!v.length) return {};
  const lo = Math.log10(Math.min(...v));
  const hi = Math.log10(Math.max(...v));
  const steps = hi - lo > 2 ? [1] : hi - lo > 0.7 ? [1, 2, 5] : [1, 1.5, 2, 3, 5, 7];
  const tickvals = [];
  for (let k = Math.floor(lo); k <= Math.ceil(hi); k++) {
    for (const m of steps) {
      const t = m * 10 ** k;
      if (Math.log10(t) >= lo - 0.15 && Math.log10(t) <= hi + 0.15) tickvals.push(t);
    }
  }
  return { tickvals, ticktext: tickvals.map((t) => num(t, steps.length === 1 ? 1 : 2)) };
}

const finite = (x) => typeof x === 'number' && Number.isFinite(x);

export const SWEEP_DEPTHS = [20, 32, 44, 56, 110];

// The sweep answer from rows that arrived one depth at a time (sorted by depth; missing ones left out).
export function sweepFromRows(rows, { bn, weights, total = rows.length } = {}) {
  const sorted = [...rows].sort((a, b) => a.depth - b.depth);
  return {
    bn,
    weights,
    layer: "first block's first conv (dL/dW norm)",
    depths: sorted.map((r) => r.depth),
    residual: sorted.map((r) => r.residual.first_grad),
    plain: sorted.map((r) => r.plain.first_grad),
    fallbacks: sorted.filter((r) => r.fallback).map((r) => r.depth),
    rows: sorted,
    pending: Math.max(0, total - sorted.length),
  };
}

// runs: {residual, plain, current} gradient JSONs (current may be null when it equals one of the others)
export function gradNormFigure(runs, { block } = {}) {
  const base = runs.residual || runs.plain || runs.current;
  const ids = base.blocks.map((b) => b.id);
  const data = RUNS.filter((r) => runs[r.key]).map((r) => ({
    type: 'scatter', mode: 'lines+markers', name: r.name, x: ids.map((_, i) => i), y: runs[r.key].blocks.map((b) => b.grad_norm_in),
    line: { color: RUN_COLORS[r.key], dash: r.dash, width: 2 }, marker: { size: 6 },
    text: ids, hovertemplate: `%{text}<br>‖∂L/∂x‖ = %{y:.3e}<extra>${r.name}</extra>`,
  }));
  const layout = baseLayout({
    showlegend: true,
    xaxis: axis('block input, forward order', { tickvals: ids.map((_, i) => i), ticktext: ids.map((id) => id.replace(/^layer/, '')), tickangle: -45 }),
    yaxis: axis('‖∂L/∂x‖ (log)', { type: 'log', ...logTicks(data.flatMap((t) => t.y)) }),
    shapes: blockHighlight(ids, block),
  });
  return { data, layout, caption: gradCaption(runs, ids) };
}

function gradCaption(runs, ids) {
  const run = runs.residual || runs.current || runs.plain;
  let text = `L2 norm of the loss gradient at each block's input (one backward pass, cross-entropy against ${classText(run.target, run.target_label)}). `;
  const parts = [];
  for (const r of RUNS) {
    const run = runs[r.key];
    if (!run) continue;
    const s = run.spread; // first block's input norm / last block's, computed by the server
    if (finite(s)) parts.push(`${num(s, 3)} (${r.key === 'current' ? 'current switches' : r.key})`);
  }
  if (parts.length) text += `Norm at ${ids[0]} divided by the norm at ${ids[ids.length - 1]}: ${parts.join(', ')}. `;
  text += `The chapter’s argument: with the shortcut on, H′(x) = F′(x) + 1, so the gradient reaching ${ids[0]} does not have to shrink with every block’s F′.`;
  return text;
}

function classText(target, label) {
  const t = [].concat(target);
  const l = label === undefined ? [] : [].concat(label);
  return `class ${t.map((v, i) => (l[i] ? `${v} (${l[i]})` : v)).join(', ')}`;
}

export function depthSweepFigure(sweep) {
  const rows = sweep.rows || [];
  const weightsAt = (key, i) => rows[i]?.[key]?.weights || sweep.weights || '';
  const data = [
    { key: 'residual', name: 'residual', dash: 'solid' },
    { key: 'plain', name: 'plain (shortcuts off)', dash: 'dash' },
  ].map((r) => ({
    type: 'scatter', mode: 'lines+markers', name: r.name, x: sweep.depths, y: sweep[r.key], connectgaps: false,
    line: { color: RUN_COLORS[r.key], dash: r.dash, width: 2 },
    marker: { size: 8, symbol: sweep.depths.map((_, i) => (rows[i]?.fallback ? 'x' : 'circle')) },
    customdata: sweep.depths.map((_, i) => weightsAt(r.key, i)),
    hovertemplate: `depth %{x}<br>first-layer ‖∂L/∂W‖ = %{y:.3e}<br>weights: %{customdata}<extra>${r.name}</extra>`,
  }));
  const annotations = rows
    .filter((row) => row.fallback)
    .map((row) => ({
      x: row.depth, y: 1, yref: 'paper', yanchor: 'bottom', showarrow: false, font: { size: 10, color: '#a33' },
      text: `${row.residual.weights} weights`,
    }));
  for (const row of rows) {
    for (const key of ['residual', 'plain']) {
      if (!finite(row[key]?.first_grad)) {
        annotations.push({
          x: row.depth, y: key === 'plain' ? 0.06 : 0.14, yref: 'paper', showarrow: false, font: { size: 10, color: RUN_COLORS[key] },
          text: `${key}: no number<br>(float32 overflow)`,
        });
      }
    }
  }
  if (sweep.pending) {
    annotations.push({
      xref: 'paper', yref: 'paper', x: 1, y: 0, xanchor: 'right', yanchor: 'bottom', showarrow: false,
      font: { size: 11, color: '#555' }, text: `computing ${sweep.pending} more depth${sweep.pending > 1 ? 's' : ''}…`,
    });
  }
  const layout = baseLayout({
    showlegend: true,
    margin: { l: 64, r: 16, t: 48, b: 44 },
    xaxis: axis('depth (CIFAR ResNet-6n+2)', { tickvals: SWEEP_DEPTHS, range: [10, 120] }),
    yaxis: axis('first-layer gradient norm (log)', { type: 'log', ...logTicks(data.flatMap((t) => t.y)) }),
    annotations,
  });
  return { data, layout, caption: sweepCaption(sweep) };
}

const changeText = (c) => (c >= 1 ? `grows ${num(c, 3)}×` : `shrinks to ${num(c, 3)}×`);

function sweepCaption(sweep) {
  const n = sweep.depths.length - 1;
  const rows = sweep.rows || [];
  const used = sweep.weights === 'trained' ? ' (trained weights; the plain curve uses the plain twins)' : sweep.weights ? ` (${sweep.weights} weights)` : '';
  const layer = sweep.layer ? `the ${sweep.layer}` : 'the first layer';
  let text = `Gradient norm at ${layer} of CIFAR ResNets of depth ${sweep.depths.join(', ')}${used}, with all shortcuts on and all off, for one probe image. `;
  const ratio = (v) => (finite(v[0]) && finite(v[n]) && v[0] > 0 ? v[n] / v[0] : null);
  const r = ratio(sweep.residual);
  const p = ratio(sweep.plain);
  if (n > 0 && r !== null && p !== null) {
    text += `From depth ${sweep.depths[0]} to ${sweep.depths[n]} it ${changeText(r)} with shortcuts and ${changeText(p)} without. `;
  }
  const fallback = rows.filter((row) => row.fallback);
  if (fallback.length) {
    text += `Not every depth has ${sweep.weights} weights: ${fallback.map((row) => `depth ${row.depth} (${row.note})`).join('; ')}; those points are drawn as ×. `;
  } else if (sweep.weights === 'trained' && rows.length) {
    text += 'Every depth uses its own trained weights: the residual nets trained with shortcuts, the plain ones trained without. ';
  }
  const missing = rows.filter((row) => !finite(row.residual.first_grad) || !finite(row.plain.first_grad));
  if (missing.length) text += `No number for depth ${missing.map((row) => row.depth).join(', ')}: the gradient overflowed float32 and is left out. `;
  if (sweep.bn === 'running' && rows.length && rows.every((row) => row.residual.weights === 'init')) {
    text += 'These are untrained weights whose running statistics are mean 0, variance 1, so BN does not rescale anything here; compare batch statistics.';
  }
  return text;
}

export function lesionFigure(lesion, { block, blocks } = {}) {
  const stageOf = new Map((blocks || []).map((b) => [b.id, b.stage]));
  const ids = lesion.blocks.map((b) => b.id);
  const data = [
    {
      type: 'bar', x: ids.map((_, i) => i), y: lesion.blocks.map((b) => b.delta),
      marker: { color: ids.map((id) => stageColor(stageOf.get(id) || 1)), line: { color: ids.map((id) => (id === block ? '#000' : 'rgba(0,0,0,0)')), width: 2 } },
      customdata: lesion.blocks.map((b) => [b.id, b.probability]),
      hovertemplate: '%{customdata[0]} lesioned<br>p = %{customdata[1]:.4f}<br>Δp = %{y:.4f}<extra></extra>',
    },
  ];
  const layout = baseLayout({
    xaxis: axis('lesioned block', { tickvals: ids.map((_, i) => i), ticktext: ids.map((id) => id.replace(/^layer/, '')), tickangle: -45 }),
    yaxis: axis('Δ probability of the target class', { zeroline: true, zerolinecolor: '#999' }),
    shapes: blockHighlight(ids, block),
  });
  return { data, layout, caption: lesionCaption(lesion) };
}

function lesionCaption(lesion) {
  const ok = lesion.blocks.filter((b) => finite(b.delta));
  const worst = ok.reduce((a, b) => (b.delta < a.delta ? b : a), ok[0] || { delta: 0 });
  const best = ok.reduce((a, b) => (b.delta > a.delta ? b : a), ok[0] || { delta: 0 });
  let text = `Each bar removes one block's residual branch F (its shortcut stays, as in Veit et al. 2016) and shows the change in the probability of ${classText(lesion.target, lesion.target_label)} (base p = ${num(lesion.base_probability, 3)}). `;
  if (worst.delta < 0) text += `The largest drop is ${worst.id} (Δp = ${num(worst.delta, 3)}). `;
  if (best.delta > 0) text += `The largest rise is ${best.id} (Δp = +${num(best.delta, 3)}). `;
  text += 'Small bars mean the network falls back on the shortcut when that block goes; large ones, that the block is needed.';
  return text;
}
