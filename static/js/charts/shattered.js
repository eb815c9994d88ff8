// Shattered gradients (Balduzzi et al. 2017) of the shipped CIFAR nets, from GET /api/lab/shattered:
// the input gradient g(t) = d(class score)/dx . u along a line of inputs, its autocorrelation and its power
// spectrum, for one depth: ResNet and plain twin, He-init and trained. Pure builders: answer -> figure.
// The slopes, lag-1 autocorrelations and noise references come from the server (payload.summary, .reference).
import { LEGEND_ABOVE, PAGE_COLORS, RUN_COLORS, axis, baseLayout } from './theme.js';
import { logTicks } from './gradients.js';
import { num } from './format.js';

const finite = (x) => typeof x === 'number' && Number.isFinite(x);
const NETS = ['residual', 'plain'];
const WEIGHTS = ['init', 'trained'];
const WEIGHT_TEXT = { init: 'He init', trained: 'trained' };
const DASH = { init: 'dot', trained: 'solid' };
const REFERENCE_COLOR = PAGE_COLORS.zero;

export const netLabel = (net, depth) => `${net === 'residual' ? 'ResNet' : 'plain'}-${depth}`;
const runLabel = (run) => `${netLabel(run.net, run.depth)}, ${WEIGHT_TEXT[run.weights]}`;
export const slopeText = (s) => (finite(s) ? s.toFixed(2).replace('-', '−') : 'no number');

// The depth a chart link's model names (resnet56 -> 56), checked against the study's depths.
export function shatteredDepth(payload, model) {
  const depth = Number(String(model || '').replace(/^resnet/, ''));
  if (!payload.depths.includes(depth)) {
    throw new Error(`the shattered-gradients study has ResNet-${payload.depths.join(', ')}; not ${model}`);
  }
  return depth;
}

function runsAt(payload, depth) {
  const runs = payload.runs.filter((r) => r.depth === depth);
  return WEIGHTS.flatMap((w) => NETS.map((n) => runs.find((r) => r.net === n && r.weights === w)).filter(Boolean));
}

const rowAt = (payload, depth, weights) => payload.summary.find((r) => r.depth === depth && r.weights === weights);

function lineStyle(run, width = 1.6) {
  return { color: RUN_COLORS[run.net], dash: DASH[run.weights], width };
}

// The numbers every caption shares: slopes of this depth, and what ideal white and brown noise read.
function slopesSentence(payload, depth) {
  const parts = WEIGHTS.map((w) => {
    const row = rowAt(payload, depth, w);
    if (!row) return null;
    return `${WEIGHT_TEXT[w]}: ${netLabel('residual', depth)} ${slopeText(row.residual_slope)}, ` +
      `${netLabel('plain', depth)} ${slopeText(row.plain_slope)}`;
  }).filter(Boolean);
  const { white, brown } = payload.reference;
  return `Spectrum slopes, ${parts.join('; ')}. With the same estimator ${payload.reference.seeds} numpy signals of ` +
    `${payload.points} points read ${slopeText(white.mean)} ± ${num(white.std, 2)} (white noise) and ` +
    `${slopeText(brown.mean)} ± ${num(brown.std, 2)} (brown noise, the cumulative sum).`;
}

// Where a run has no trace to draw: the first note of that run says why.
const missing = (runs) => runs.filter((r) => !finite(r.direction.std) || r.direction.std === 0);

function missingSentence(runs) {
  const gone = missing(runs);
  if (!gone.length) return '';
  return ' ' + gone.map((r) => `${runLabel(r)}: no trace (${r.notes[0] || 'no finite gradient'}).`).join(' ');
}

// Each slope against the references: within two standard deviations of white or brown noise, or between them.
function verdict(payload, depth) {
  const { white, brown } = payload.reference;
  const words = (s) => {
    if (Math.abs(s - white.mean) <= 2 * white.std) return 'like white noise (shattered)';
    if (Math.abs(s - brown.mean) <= 2 * brown.std) return 'like brown noise';
    return `between white and brown noise`;
  };
  const out = [];
  for (const w of WEIGHTS) {
    const row = rowAt(payload, depth, w);
    if (!row) continue;
    for (const net of NETS) {
      const s = row[`${net}_slope`];
      if (finite(s)) out.push(`${netLabel(net, depth)} ${WEIGHT_TEXT[w]} ${words(s)}`);
    }
  }
  return out.length ? ` Within two standard deviations of a reference: ${out.join('; ')}.` : '';
}

// 2 x 2 panels (rows: ResNet, plain; columns: He init, trained), each trace standardised ((g - mean) / std).
export function shatteredTracesFigure(payload, depth) {
  const runs = runsAt(payload, depth);
  const t = payload.t;
  const data = [];
  const annotations = [];
  const gap = 0.08;
  const cols = { init: [0, 0.5 - gap / 2], trained: [0.5 + gap / 2, 1] };
  const rows = { residual: [0.5 + gap, 1], plain: [0, 0.5 - gap] };
  const layout = baseLayout({ margin: { l: 56, r: 16, t: 36, b: 48 }, showlegend: false });
  let bound = 1;
  NETS.forEach((net, i) => {
    WEIGHTS.forEach((w, j) => {
      const k = i * 2 + j + 1;
      const xa = k === 1 ? 'xaxis' : `xaxis${k}`;
      const ya = k === 1 ? 'yaxis' : `yaxis${k}`;
      const run = runs.find((r) => r.net === net && r.weights === w);
      const d = run?.direction;
      const ok = d && finite(d.std) && d.std > 0;
      const y = ok ? d.trace.map((v) => (finite(v) ? (v - d.mean) / d.std : null)) : [];
      for (const v of y) if (finite(v)) bound = Math.max(bound, Math.abs(v));
      const name = run ? runLabel(run) : `${netLabel(net, depth)}, ${WEIGHT_TEXT[w]}`;
      data.push({
        type: 'scatter', mode: 'lines', name, x: ok ? t : [], y, xaxis: `x${k === 1 ? '' : k}`, yaxis: `y${k === 1 ? '' : k}`,
        line: { color: RUN_COLORS[net], width: 1.2 },
        hovertemplate: `t = %{x:.3f}<br>standardised g = %{y:.2f}<extra>${name}</extra>`,
      });
      const slope = d?.spectrum?.slope;
      annotations.push({
        xref: `${xa.replace('axis', '')} domain`, yref: `${ya.replace('axis', '')} domain`, x: 0, y: 1.02,
        xanchor: 'left', yanchor: 'bottom', showarrow: false, font: { size: 12, color: RUN_COLORS[net] },
        text: `${name}: slope ${slopeText(slope)}`,
      });
      if (!ok) {
        annotations.push({
          xref: `${xa.replace('axis', '')} domain`, yref: `${ya.replace('axis', '')} domain`, x: 0.5, y: 0.5,
          showarrow: false, font: { size: 11, color: '#a33' }, text: 'no finite gradient along the line',
        });
      }
      layout[xa] = axis(i === 1 ? 't (position on the line)' : '', { domain: cols[w], anchor: ya.replace('axis', ''), range: [0, 1] });
      layout[ya] = axis(j === 0 ? 'g, standardised' : '', { domain: rows[net], anchor: xa.replace('axis', '') });
    });
  });
  const r = bound * 1.08; // one range for the four panels, its end clear of the tick labels
  for (let k = 1; k <= 4; k++) layout[k === 1 ? 'yaxis' : `yaxis${k}`].range = [-r, r];
  layout.annotations = annotations;
  const caption = `The derivative of the target class score along a line of ${payload.points} inputs through one image ` +
    `(x(t) = x0 + (t − 1/2)·${num(payload.span, 3)}·u, u a random unit direction; BN with running statistics), ` +
    `each trace standardised (mean removed, divided by its std) so that all four share one axis. ` +
    `${slopesSentence(payload, depth)}${verdict(payload, depth)}${missingSentence(runs)}`;
  return { data, layout, caption };
}

export function shatteredAutocorrFigure(payload, depth) {
  const runs = runsAt(payload, depth);
  const data = runs.filter((r) => Array.isArray(r.direction.autocorr)).map((run) => ({
    type: 'scatter', mode: 'lines', name: runLabel(run), x: payload.lags, y: run.direction.autocorr,
    line: lineStyle(run, 2),
    hovertemplate: `lag %{x}<br>autocorrelation %{y:.3f}<extra>${runLabel(run)}</extra>`,
  }));
  const last = payload.lags[payload.lags.length - 1];
  const layout = baseLayout({
    showlegend: true, legend: LEGEND_ABOVE, margin: { l: 64, r: 16, t: 56, b: 44 },
    xaxis: axis('lag (points along the line)', { range: [0, last] }),
    yaxis: axis('autocorrelation of g', { range: [-0.35, 1.02], zeroline: true, zerolinecolor: '#999' }),
  });
  const lag1 = WEIGHTS.map((w) => {
    const row = rowAt(payload, depth, w);
    if (!row) return null;
    return `${WEIGHT_TEXT[w]}: ${netLabel('residual', depth)} ${num(row.residual_lag1, 3)}, ` +
      `${netLabel('plain', depth)} ${num(row.plain_lag1, 3)}`;
  }).filter(Boolean);
  const caption = `Normalised autocorrelation of g(t) at lags 0 to ${last} (of ${payload.points} points; the ` +
    `mean-removed signal, biased estimator). White noise drops to about 0 at lag 1, brown noise decays slowly. ` +
    `Lag-1 autocorrelation, ${lag1.join('; ')}. Solid: trained, dotted: He init; blue ResNet, red plain.` +
    missingSentence(runs);
  return { data, layout, caption };
}

// Periodograms divided by the signal's variance (white noise of any scale then sits near 1), the fitted
// log-log lines, and the white (0) and brown (-2) reference slopes crossing at the middle frequency.
export function shatteredSpectraFigure(payload, depth) {
  const runs = runsAt(payload, depth);
  const f = payload.freq;
  const fmid = Math.sqrt(f[0] * f[f.length - 1]);
  const data = [];
  const values = [];
  for (const run of runs) {
    const d = run.direction;
    const s = d.spectrum;
    if (!Array.isArray(s.power) || !finite(d.std) || d.std <= 0) continue;
    const v = d.std * d.std;
    const y = s.power.map((p) => (finite(p) && p > 0 ? p / v : null));
    values.push(...y);
    data.push({
      type: 'scatter', mode: 'lines', name: `${runLabel(run)} (slope ${slopeText(s.slope)})`, x: f, y,
      line: { ...lineStyle(run, 1), dash: 'solid' }, opacity: run.weights === 'init' ? 0.45 : 0.7,
      legendgroup: `${run.net}-${run.weights}`,
      hovertemplate: `frequency %{x}<br>power / variance %{y:.3g}<extra>${runLabel(run)}</extra>`,
    });
    if (s.fit) {
      data.push({
        type: 'scatter', mode: 'lines', name: `fit, ${runLabel(run)}`, showlegend: false, legendgroup: `${run.net}-${run.weights}`,
        x: s.fit.map((p) => p[0]), y: s.fit.map((p) => p[1] / v), line: lineStyle(run, 3),
        hovertemplate: `fitted slope ${slopeText(s.slope)}<extra>${runLabel(run)}</extra>`,
      });
    }
  }
  const ends = [f[0], f[f.length - 1]];
  for (const [name, slope, dash] of [['white noise, slope 0', 0, 'dash'], ['brown noise, slope −2', -2, 'dashdot']]) {
    data.push({
      type: 'scatter', mode: 'lines', name, x: ends, y: ends.map((x) => (x / fmid) ** slope),
      line: { color: REFERENCE_COLOR, dash, width: 1.5 }, hoverinfo: 'skip',
    });
  }
  values.push(...ends.map((x) => (x / fmid) ** -2));
  const layout = baseLayout({
    showlegend: true, legend: LEGEND_ABOVE, margin: { l: 64, r: 16, t: 96, b: 44 },
    xaxis: axis('frequency (cycles per line)', { type: 'log', ...logTicks(f) }),
    yaxis: axis('power / variance of g', { type: 'log', ...logTicks(values) }),
  });
  const caption = `Power spectrum of g(t): the periodogram of the mean-removed signal at frequencies 1 to ` +
    `${f[f.length - 1]} (cycles per line), divided by the signal's variance, with its least-squares line in ` +
    `log-log (thick) and the references of white noise (slope 0, flat) and brown noise (slope −2). ` +
    `${slopesSentence(payload, depth)}${missingSentence(runs)}`;
  return { data, layout, caption };
}
