// Batch normalisation: before/after histograms, the chapter's four steps with a channel's numbers,
// and a client-side preview of y = gamma * (x - mu) / sqrt(var + eps) + beta.
import { axis, baseLayout, KIND_COLORS, RUN_COLORS } from './theme.js';
import { binCentres, num } from './format.js';
import { histogramTrace } from './histogram.js';

// The four steps for channel c. input: the conv tap entering BN (its per-channel batch moments);
// output: the BN tap (measured per-channel mean/std); params: {eps, gamma, beta} (slider values).
export function bnSteps(bn, input, output, c, params) {
  const shape = input.shape; // [N, C, H, W]
  const m = shape[0] * (shape[2] || 1) * (shape[3] || 1);
  const muB = input.channel_mean[c];
  const varB = input.channel_std[c] ** 2;
  const mu = bn.used_mean[c];
  const variance = bn.used_var[c];
  const { eps, gamma, beta } = params;
  const denom = Math.sqrt(variance + eps);
  const examples = [muB - Math.sqrt(varB), muB, muB + Math.sqrt(varB)].map((x) => {
    const xHat = (x - mu) / denom;
    return { x, xHat, y: gamma * xHat + beta };
  });
  return {
    channel: c, m, muB, varB, mode: bn.mode, mu, variance, eps, gamma, beta, denom, examples,
    // What the formula predicts for the whole channel, and what the network produced.
    predictedMean: (gamma * (muB - mu)) / denom + beta,
    predictedStd: (Math.abs(gamma) * Math.sqrt(varB)) / denom,
    measuredMean: output.channel_mean[c],
    measuredStd: output.channel_std[c],
    layerParams: { eps: bn.eps, gamma: bn.gamma[c], beta: bn.beta[c] },
  };
}

// Map the before-histogram through the transform with the chosen channel's statistics.
export function previewHistogram(before, steps) {
  const f = (x) => (steps.gamma * (x - steps.mu)) / steps.denom + steps.beta;
  const edges = before.edges.map(f);
  if (steps.gamma < 0) return { edges: edges.reverse(), counts: [...before.counts].reverse() };
  return { edges, counts: before.counts };
}

// sliders: whether the page has the eps, gamma and beta sliders the caption names (the Explore page).
export function bnFigure(bn, steps, { sliders = true } = {}) {
  const before = bn.before.histogram;
  const after = bn.after.histogram;
  const preview = previewHistogram(before, steps);
  const pc = binCentres(preview.edges);
  const data = [
    { ...histogramTrace(before, { name: `before: ${bn.input}`, color: KIND_COLORS.conv }), showlegend: true },
    { ...histogramTrace(after, { name: `after: ${bn.id} (actual)`, color: KIND_COLORS.bn, xaxis: 'x2', yaxis: 'y2' }), showlegend: true },
    {
      type: 'scatter', mode: 'lines', line: { shape: 'hvh', color: RUN_COLORS.current, width: 1.5 }, xaxis: 'x2', yaxis: 'y2',
      name: `preview: the left histogram through steps 3–4 with channel ${steps.channel}'s μ, σ² (γ=${num(steps.gamma)}, β=${num(steps.beta)}, ε=${num(steps.eps)})`,
      x: pc, y: preview.counts, hovertemplate: 'preview<br>x ≈ %{x:.4g}<br>count %{y}<extra></extra>',
    },
  ];
  const layout = baseLayout({
    showlegend: true,
    legend: { orientation: 'h', y: -0.16, yanchor: 'top', x: 0, font: { size: 11 } },
    margin: { l: 56, r: 16, t: 40, b: 70 },
    bargap: 0,
    grid: { rows: 1, columns: 2, pattern: 'independent' },
    xaxis: axis('value entering BN', { domain: [0, 0.47] }),
    yaxis: axis('count'),
    xaxis2: axis('value after BN', { domain: [0.53, 1] }),
    yaxis2: axis('', { anchor: 'x2' }),
    annotations: [
      { text: `<b>Before BN</b>: ${bn.input}, all channels`, xref: 'paper', yref: 'paper', x: 0, y: 1.01, yanchor: 'bottom', showarrow: false, xanchor: 'left', font: { size: 12 } },
      { text: `<b>After BN</b>: ${bn.id}, all channels`, xref: 'paper', yref: 'paper', x: 0.53, y: 1.01, yanchor: 'bottom', showarrow: false, xanchor: 'left', font: { size: 12 } },
      {
        text: `black line: one channel's transform (channel ${steps.channel}) applied to every channel;<br>it need not sit on the orange bars, which BN made channel by channel`,
        xref: 'paper', yref: 'paper', x: 1, y: 0.98, xanchor: 'right', yanchor: 'top', align: 'right', showarrow: false,
        font: { size: 10, color: '#444' }, bgcolor: 'rgba(255,255,255,0.8)',
      },
    ],
  });
  return { data, layout, caption: bnCaption(bn, steps, sliders) };
}

function bnCaption(bn, steps, sliders) {
  const b = bn.before.moments; // mean and std of each histogram, computed by the server
  const a = bn.after.moments;
  let text = `Left, the conv output entering ${bn.id}; right, what BN made of it (${bn.mode === 'batch' ? 'batch statistics of this image: μ_B, σ_B² over N×H×W' : 'running statistics, as at inference'}). `;
  text += `Within the histogram ranges the std goes from ${num(b.std)} to ${num(a.std)} and the mean from ${num(b.mean)} to ${num(a.mean)}. `;
  text += `The black line maps the left histogram through step 3–4 with channel ${steps.channel}'s μ and σ² and ${sliders ? 'the slider values' : "the layer's γ, β, ε"}; `;
  text += 'all channels are pooled here, so it illustrates the transform rather than reproducing the per-channel result.';
  return text;
}
