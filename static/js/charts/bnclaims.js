// Batch norm's claims measured on the shipped CIFAR nets (GET /api/lab/bn-claims) and the normalisations side by
// side on one conv output (POST /api/models/{name}/normalizations). Pure builders: answer -> {data, layout, caption};
// every statistic (smoothing, steps to a loss, ratios, histograms) comes from the server.
import { BN_RUN_COLORS, DEPTH_SHADE, LAB_COLORS, LEGEND_ABOVE, NORM_COLORS, NORM_DASH, axis, baseLayout } from './theme.js';
import { binCentres, binWidths, int, num } from './format.js';

const finite = (x) => typeof x === 'number' && Number.isFinite(x);
const LOSS_RANGE = [0.1, 30]; // the loss axis (log): a diverged run's 1e21 would flatten every other curve
const LOSS_TICKS = [0.1, 0.2, 0.5, 1, 2, 5, 10, 20];

export const runLabel = (r) => `${r.plain ? 'plain' : 'ResNet'}-${r.depth}`;
const normText = (norm) => (norm === 'none' ? 'no BN' : 'BN');

function runColour(r) {
  const [red, g, b] = r.plain ? LAB_COLORS.plain : LAB_COLORS.residual;
  const s = DEPTH_SHADE[r.depth] ?? 0.8;
  const mix = (c) => Math.round(255 - (255 - c) * s);
  return `rgb(${mix(red)},${mix(g)},${mix(b)})`;
}

function outcomeText(r) {
  if (r.outcome === 'diverged') return `diverged at step ${r.diverged_at_step} (peak lr ${r.peak_lr})`;
  if (r.outcome === 'stuck') return `stuck near ln 10 (peak lr ${r.peak_lr})`;
  return `peak lr ${r.peak_lr}`;
}

function attemptText(r) {
  if (!r.retried || !r.attempts.length) return '';
  const a = r.attempts[0];
  const what = a.outcome === 'diverged' ? `diverged at step ${a.diverged_at_step}` : a.outcome;
  return ` A first attempt at peak lr ${a.peak_lr} ${what === 'stuck' ? 'stayed at chance' : what}; retried once at ${r.peak_lr}.`;
}

// The loss curves of BN against no-BN, ResNet-20/56 and plain-20/56 (25-step moving averages, log scale).
export function bnLossFigure(claims) {
  const data = [];
  const clip = (v) => (finite(v) ? Math.min(Math.max(v, LOSS_RANGE[0]), LOSS_RANGE[1]) : null);
  for (const r of claims.runs) {
    const name = `${runLabel(r)} ${normText(r.norm)}`;
    const line = { color: runColour(r), dash: NORM_DASH[r.norm] || 'solid', width: 2 };
    const diverged = r.outcome === 'diverged';
    const y = diverged ? r.loss : r.loss_smooth; // a run of a few steps has no 25-step average: its raw losses
    data.push({
      type: 'scatter', mode: diverged ? 'lines+markers' : 'lines', name, x: y.map((_, i) => i), y: y.map(clip),
      customdata: y, line, marker: { size: 7 },
      hovertemplate: `${name}<br>step %{x}<br>loss %{customdata:.4g}<extra></extra>`,
    });
    if (diverged) {
      data.push({
        type: 'scatter', mode: 'markers+text', name: `${name}: diverged`, showlegend: false,
        x: [r.diverged_at_step], y: [LOSS_RANGE[1]], text: [`${runLabel(r)} no BN: NaN at step ${r.diverged_at_step}`],
        textposition: 'bottom right', marker: { symbol: 'x', size: 12, color: line.color },
        hovertemplate: `${name}<br>loss not finite at step %{x}<extra></extra>`,
      });
    }
    for (const a of r.retried ? r.attempts.slice(0, -1) : []) {
      data.push({
        type: 'scatter', mode: 'lines', name: `${name}, first attempt (lr ${a.peak_lr})`,
        x: a.loss_smooth.map((_, i) => i), y: a.loss_smooth.map(clip),
        line: { color: line.color, dash: 'dot', width: 1 }, opacity: 0.7,
        hovertemplate: `${name}, peak lr ${a.peak_lr}<br>step %{x}<br>loss %{y:.3f}<extra></extra>`,
      });
    }
  }
  data.push({
    type: 'scatter', mode: 'lines', name: 'ln 10 (chance)', x: [0, 400], y: [claims.chance_loss, claims.chance_loss],
    line: { color: '#999', dash: 'dot', width: 1 }, hoverinfo: 'skip',
  });
  const layout = baseLayout({
    margin: { l: 64, r: 20, t: 90, b: 45 }, showlegend: true, legend: LEGEND_ABOVE, uirevision: 'bn-loss',
    xaxis: axis('training step'),
    yaxis: axis('training loss (log, 25-step average)', {
      type: 'log', range: LOSS_RANGE.map(Math.log10), tickvals: LOSS_TICKS, ticktext: LOSS_TICKS.map(String),
    }),
  });
  return { data, layout, caption: bnLossCaption(claims) };
}

function pairOf(claims, depth, plain) {
  return claims.pairs.find((p) => p.depth === depth && p.plain === plain);
}

function runOf(claims, depth, plain, norm) {
  return claims.runs.find((r) => r.depth === depth && r.plain === plain && r.norm === norm);
}

function lossPart(claims, depth, plain) {
  const bn = runOf(claims, depth, plain, 'batch');
  const none = runOf(claims, depth, plain, 'none');
  if (!bn && !none) return null;
  const reach = (r) => (r && r.steps_to_loss_1 !== null ? `reaches 1.0 at step ${r.steps_to_loss_1}` : 'never reaches 1.0');
  let text = `${runLabel(bn || none)}: with BN the loss ends at ${num(bn?.final_train_loss)} and ${reach(bn)}`;
  if (!none) return `${text}; no run without BN yet.`;
  if (none.outcome === 'diverged') {
    text += `; without BN the first loss is ${num(none.initial_loss, 3)} and the run ${outcomeText(none)}`;
  } else {
    text += `; without BN it ends at ${num(none.final_train_loss)} (${outcomeText(none)}) and ${reach(none)}`;
  }
  return text + '.' + attemptText(none);
}

function bnLossCaption(claims) {
  const parts = [];
  for (const depth of [20, 56]) for (const plain of [false, true]) parts.push(lossPart(claims, depth, plain));
  return 'Training loss of the shipped networks with batch norm (solid) and of the same networks with every BN ' +
    'replaced by the identity (dashed): same generated data, seed and schedule (400 steps, batch 64, SGD with ' +
    'momentum, warmup then cosine). Dotted: a first attempt that was retried at a lower peak learning rate. ' +
    parts.filter(Boolean).join(' ');
}

// Gradient norms ||dL/dW|| of every conv layer across depth at the recorded steps, BN (blue) against no-BN
// (orange, dashed), one panel per network; lighter is earlier in training.
const PANELS = [
  { depth: 20, plain: false }, { depth: 20, plain: true }, { depth: 56, plain: false }, { depth: 56, plain: true },
];
const PANEL_X = [[0, 0.46], [0.54, 1], [0, 0.46], [0.54, 1]];
const PANEL_Y = [[0.58, 1], [0.58, 1], [0, 0.42], [0, 0.42]];

function shade(norm, k, n) {
  const [r, g, b] = BN_RUN_COLORS[norm];
  const s = n > 1 ? 0.45 + 0.55 * (k / (n - 1)) : 1;
  const mix = (c) => Math.round(255 - (255 - c) * s);
  return `rgb(${mix(r)},${mix(g)},${mix(b)})`;
}

export function bnGradFigure(claims) {
  const data = [];
  const allSteps = [...new Set(claims.runs.flatMap((r) => (r.grad_norms ? r.grad_norms.steps : [])))].sort((a, b) => a - b);
  const layout = baseLayout({
    margin: { l: 64, r: 20, t: 100, b: 45 }, showlegend: true, legend: { ...LEGEND_ABOVE, traceorder: 'normal' },
    uirevision: 'bn-grads',
    annotations: [],
  });
  PANELS.forEach((p, i) => {
    const k = i === 0 ? '' : String(i + 1);
    layout[`xaxis${k}`] = axis(i >= 2 ? 'conv layer (input → output)' : '', { domain: PANEL_X[i], anchor: `y${k}` });
    layout[`yaxis${k}`] = axis(i % 2 === 0 ? '‖∂L/∂W‖ (log)' : '', { domain: PANEL_Y[i], anchor: `x${k}`, type: 'log', dtick: 1 });
    layout.annotations.push({
      text: `<b>${runLabel(p)}</b>`, xref: 'paper', yref: 'paper', x: (PANEL_X[i][0] + PANEL_X[i][1]) / 2,
      y: PANEL_Y[i][1], yanchor: 'bottom', showarrow: false, font: { size: 12 },
    });
    for (const norm of ['batch', 'none']) {
      const r = runOf(claims, p.depth, p.plain, norm);
      const g = r?.grad_norms;
      if (!g) continue;
      g.steps.forEach((step, j) => {
        const name = `${normText(norm)}, step ${step}`;
        data.push({
          type: 'scatter', mode: 'lines', name, legendgroup: name, showlegend: !legendShown(data, name),
          legendrank: (norm === 'none' ? 2000 : 1000) + step,
          x: g.layers.map((_, l) => l + 1), y: g.norms[j], text: g.layers, xaxis: `x${k}`, yaxis: `y${k}`,
          line: { color: shade(norm, allSteps.indexOf(step), allSteps.length), dash: NORM_DASH[norm], width: 1.6 },
          hovertemplate: `${runLabel(p)} ${normText(norm)}, step ${step}<br>%{text}<br>‖∂L/∂W‖ %{y:.3g}<extra></extra>`,
        });
      });
    }
  });
  return { data, layout, caption: bnGradCaption(claims) };
}

function legendShown(data, name) {
  return data.some((t) => t.name === name && t.showlegend);
}

function gradPart(claims, depth, plain) {
  const pair = pairOf(claims, depth, plain);
  const logged = ['batch', 'none'].some((norm) => runOf(claims, depth, plain, norm)?.grad_norms);
  if (!pair || !logged) return null;
  const s = pair.summary;
  const r0 = s.ratio_step0;
  const r1 = s.ratio_end;
  const end = s.ratio_end_step;
  const ratio = (v) => (finite(v) ? num(v, 3) : 'n/a');
  const [f0, l0] = [s.first_norm_step0, s.last_norm_step0];
  const state = (w) => (w ? `, ${w}` : '');
  const g = s.gradient_step0;
  let text = `${runLabel(pair)} at step 0: ${ratio(f0.bn)} / ${ratio(l0.bn)} (ratio ${ratio(r0.bn)}${state(g.bn)}) ` +
    `with BN, ${ratio(f0.nobn)} / ${ratio(l0.nobn)} (ratio ${ratio(r0.nobn)}${state(g.nobn)}) without`;
  text += `; ${ratio(r1.bn)} with BN at step ${end.bn ?? '–'}`;
  text += end.nobn === 0 ? ' (the run without BN has only step 0)' : `, ${ratio(r1.nobn)} without at step ${end.nobn ?? '–'}`;
  return text + '.';
}

function bnGradCaption(claims) {
  const any = claims.runs.find((r) => r.grad_norms);
  const steps = any ? any.grad_norms.steps.join(', ') : '–';
  const parts = [];
  for (const depth of [20, 56]) for (const plain of [false, true]) parts.push(gradPart(claims, depth, plain));
  const reruns = claims.runs.filter((r) => r.norm === 'batch' && r.reproduces);
  const same = reruns.filter((r) => r.reproduces.equal).length;
  const rerun = reruns.length ? ` The BN norms come from a rerun with the same seed; ${same} of ${reruns.length} reruns ` +
    'reproduce the shipped loss curve exactly.' : '';
  return `‖∂L/∂W‖ of every conv layer, after the backward pass of the recorded steps (${steps}), with BN (blue, ` +
    `solid) and without (orange, dashed); lighter is earlier. Quoted: the norms of the first block's first conv ` +
    `and the last block's last conv (the collapse table's two layers, e.g. layer1.0.conv1 and layer3.8.conv2 in ` +
    `ResNet-56) and their ratio, called exploding above 100, vanishing when both are below 0.02 and lopsided when ` +
    `they differ by over 100x. ${parts.filter(Boolean).join(' ')}` + rerun;
}

// The normalisations side by side: one histogram per method on the bins they share, titled with the axes it
// averages over and how many values one statistic pools.
const GRID_X = [[0, 0.28], [0.36, 0.64], [0.72, 1]];
const GRID_Y = [[0.58, 0.9], [0, 0.32]];

export function normsFigure(norms) {
  const centres = binCentres(norms.edges);
  const widths = binWidths(norms.edges);
  const data = [];
  const layout = baseLayout({ margin: { l: 56, r: 16, t: 40, b: 44 }, bargap: 0, annotations: [], uirevision: 'norms' });
  norms.methods.forEach((m, i) => {
    const k = i === 0 ? '' : String(i + 1);
    const [col, row] = [i % 3, Math.floor(i / 3)];
    const xd = GRID_X[col];
    const yd = GRID_Y[row] || GRID_Y[1];
    layout[`xaxis${k}`] = axis(row === 1 ? 'normalised value' : '', {
      domain: xd, anchor: `y${k}`, range: [norms.edges[0], norms.edges[norms.edges.length - 1]],
    });
    layout[`yaxis${k}`] = axis(col === 0 ? 'count' : '', { domain: yd, anchor: `x${k}` });
    const pooled = m.pooled === null ? 'mean and variance from training' : `${int(m.pooled)} values per statistic`;
    layout.annotations.push({
      text: `<b>${m.name}</b><br>averages over ${m.axes}<br>${pooled}`, xref: 'paper', yref: 'paper',
      x: (xd[0] + xd[1]) / 2, y: yd[1], yanchor: 'bottom', showarrow: false, font: { size: 11 },
    });
    data.push({
      type: 'bar', name: m.name, x: centres, y: m.histogram.counts, width: widths, xaxis: `x${k}`, yaxis: `y${k}`,
      marker: { color: NORM_COLORS[m.id] || '#777', line: { width: 0 } },
      hovertemplate: `${m.name}<br>value %{x:.3g}<br>count %{y}<extra></extra>`,
    });
  });
  return { data, layout, caption: normsCaption(norms) };
}

// A number where float64 rounding (1e-17 for a mean set to 0) reads as 0.
const show = (x, digits = 3) => (finite(x) && Math.abs(x) < 1e-9 ? '0' : num(x, digits));

function range(pair, digits = 2) {
  if (!pair || !finite(pair[0])) return 'n/a';
  const [a, b] = [show(pair[0], digits), show(pair[1], digits)];
  return a === b ? a : `${a} to ${b}`;
}

function normsCaption(norms) {
  const [n, c, h, w] = norms.shape;
  const by = Object.fromEntries(norms.methods.map((m) => [m.id, m]));
  const b = by.batch;
  const inst = by.instance;
  let text = `${norms.layer} of ${norms.model} (${norms.weights}): its ${c} channels of ${h}×${w}, for a batch of ${n} ` +
    `images (the image shown, then ${norms.batch.samples.length} built-in samples); histograms of the shown image's ` +
    `normalised values on shared bins, no affine parameters. Before normalisation its channel means run ` +
    `${range(norms.before.channel_mean_range)} and stds ${range(norms.before.channel_std_range)}. `;
  if (b && inst) {
    text += `Batch norm sets each channel to mean 0 over the batch, so this image's channel means stay ` +
      `${range(b.channel_mean_range)}; instance norm sets every one to ${range(inst.channel_mean_range)} with std ` +
      `${range(inst.channel_std_range, 3)} — ` +
      `the two differ by up to ${num(norms.batch_vs_instance_max_abs)} here. `;
  }
  if (by.lrn) text += `Local response norm subtracts nothing: mean ${show(by.lrn.mean)}, std ${show(by.lrn.std)}. `;
  return text + 'Weight normalisation (Salimans & Kingma 2016) rescales the weights, not the activations, so it has ' +
    'no histogram here.' + (norms.notes.length ? ` ${norms.notes.join(' ')}` : '');
}

// Per-channel mean and std of the shown image after each normalisation.
export function normsChannelFigure(norms) {
  const data = [];
  const x = norms.before.channel_mean.map((_, i) => i);
  for (const m of norms.methods) {
    const color = NORM_COLORS[m.id] || '#777';
    data.push({
      type: 'scatter', mode: 'lines+markers', name: m.name, x, y: m.channel_mean, legendgroup: m.id,
      line: { color, width: 1.5 }, marker: { size: 4 },
      hovertemplate: `${m.name}<br>channel %{x}<br>mean %{y:.3f}<extra></extra>`,
    });
    data.push({
      type: 'scatter', mode: 'lines+markers', name: `${m.name} std`, x, y: m.channel_std, legendgroup: m.id,
      showlegend: false, xaxis: 'x2', yaxis: 'y2', line: { color, width: 1.5, dash: 'dot' }, marker: { size: 4 },
      hovertemplate: `${m.name}<br>channel %{x}<br>std %{y:.3f}<extra></extra>`,
    });
  }
  const layout = baseLayout({
    margin: { l: 64, r: 20, t: 80, b: 45 }, showlegend: true, legend: LEGEND_ABOVE, uirevision: 'norm-channels',
    xaxis: axis('', { domain: [0, 1], anchor: 'y' }), yaxis: axis('channel mean', { domain: [0.58, 1] }),
    xaxis2: axis('channel', { domain: [0, 1], anchor: 'y2' }), yaxis2: axis('channel std', { domain: [0, 0.42] }),
  });
  return { data, layout, caption: channelsCaption(norms) };
}

function channelsCaption(norms) {
  const parts = norms.methods.map((m) => `${m.name}: means ${range(m.channel_mean_range)}, stds ${range(m.channel_std_range)}`);
  return `Per-channel mean (top) and std (bottom) over ${norms.shape[2]}×${norms.shape[3]} positions of the shown image ` +
    `after each normalisation of ${norms.layer}. ${parts.join('; ')}.`;
}

// One sentence per method for the lab's list under the histograms: what it averages over and what that did here.
export function normMethodNotes(norms) {
  return norms.methods.map((m) => {
    const pooled = m.pooled === null ? 'the running mean and variance of training' : `${int(m.pooled)} values per statistic, ${int(m.statistics)} statistics in the batch`;
    return {
      id: m.id,
      name: m.name,
      text: `averages ${m.axes_words} (${m.axes}; ${pooled}). ${m.about} Here: overall mean ${show(m.mean)}, ` +
        `std ${show(m.std)}; channel means ${range(m.channel_mean_range)}.`,
    };
  });
}

// The conv layer a normalisations link shows: its `layer`, else its block's first conv, else the server's default.
export function normLayerChoice(sel) {
  if (sel.layer) return sel.layer;
  return sel.block ? `${sel.block}.conv1` : '';
}

