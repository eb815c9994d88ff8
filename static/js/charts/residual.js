// Residual plots: ||F(x)|| / ||x|| across depth, F(x) against x for one block, and F's histogram.
import { axis, baseLayout, RUN_COLORS, stageColor } from './theme.js';
import { num, pct } from './format.js';
import { histogramTrace } from './histogram.js';

export function ratioFigure(analysis, { block } = {}) {
  const blocks = analysis.blocks;
  const ids = blocks.map((b) => b.id);
  const data = [
    {
      type: 'bar', x: ids.map((_, i) => i), y: blocks.map((b) => b.ratio),
      marker: {
        color: blocks.map((b) => stageColor(b.stage)), opacity: blocks.map((b) => (b.gate > 0 ? 1 : 0.45)),
        line: { color: ids.map((id) => (id === block ? '#000' : 'rgba(0,0,0,0)')), width: 2 },
      },
      customdata: blocks.map((b) => [b.id, b.norm_f, b.norm_x, b.gate, b.shortcut_kind]),
      hovertemplate: '%{customdata[0]} (shortcut %{customdata[4]}, gate %{customdata[3]})<br>‖F(x)‖ = %{customdata[1]:.4g}<br>‖x‖ = %{customdata[2]:.4g}<br>ratio %{y:.3f}<extra></extra>',
    },
  ];
  const layout = baseLayout({
    xaxis: axis('block, forward order', { tickvals: ids.map((_, i) => i), ticktext: ids.map((id) => id.replace(/^layer/, '')), tickangle: -45 }),
    yaxis: axis('‖F(x)‖ / ‖x‖', { rangemode: 'tozero' }),
    shapes: [{ type: 'line', xref: 'paper', x0: 0, x1: 1, y0: 1, y1: 1, line: { color: '#888', dash: 'dot', width: 1 } }],
  });
  return { data, layout, caption: ratioCaption(analysis.chart_stats.ratios) };
}

function ratioCaption(ratios) {
  let text = 'How large each block’s residual F(x) = H(x) − x is next to its input x (L2 norms over the whole tensor). ';
  if (ratios.count) {
    const { smallest: lo, largest: hi } = ratios;
    text += `Median ${num(ratios.median, 3)}; smallest ${lo.id} (${num(lo.ratio, 3)}), largest ${hi.id} (${num(hi.ratio, 3)}); ${ratios.above_one} of ${ratios.count} blocks above 1. `;
  }
  text += 'Below 1 the identity “prediction” x dominates the block’s sum H(x) = F(x) + x and F is a correction to it; near 0 the block is close to the identity.';
  return text;
}

export function scatterFigure(block) {
  const { x, f } = block.sample;
  const fit = block.fit; // Pearson r, least-squares slope, means and range of x: computed by the server
  const { xmin, xmax } = fit;
  const data = [
    {
      type: 'scatter', mode: 'markers', x, y: f, name: 'elements',
      marker: { color: stageColor(block.stage), size: 4, opacity: 0.45 },
      hovertemplate: 'x = %{x:.4g}<br>F(x) = %{y:.4g}<extra></extra>',
    },
    {
      type: 'scatter', mode: 'lines', x: [xmin, xmax], y: [0, 0], name: 'F = 0 (identity)',
      line: { color: '#555', dash: 'dot', width: 1 }, hoverinfo: 'skip',
    },
  ];
  if (fit.slope !== null) {
    data.push({
      type: 'scatter', mode: 'lines', name: `least-squares line (slope ${num(fit.slope, 3)})`,
      x: [xmin, xmax], y: [xmin, xmax].map((v) => fit.my + fit.slope * (v - fit.mx)),
      line: { color: RUN_COLORS.plain, width: 1.5 }, hoverinfo: 'skip',
    });
  }
  const layout = baseLayout({
    showlegend: true,
    xaxis: axis(`x = shortcut of ${block.id} (the identity “prediction”)`),
    yaxis: axis('residual F(x)'),
  });
  return { data, layout, caption: scatterCaption(block, fit) };
}

function scatterCaption(block, fit) {
  let text = `A residual plot for ${block.id}: each point is one element, the shortcut value x (the identity “fitted value”) against the residual F(x) = H(x) − x at the same position (${block.sample.x.length} sampled). `;
  if (fit.r !== null) {
    text += `Correlation r = ${num(fit.r, 2)}, slope ${num(fit.slope, 3)}: `;
    const a = Math.abs(fit.r);
    if (a < 0.1) text += 'no linear trend left, as in the residual plot of a well-fitted regression. ';
    else if (a < 0.4) text += 'a weak linear trend: part of F is a rescaled copy of x. ';
    else text += 'a clear linear trend: F still carries a rescaled copy of x. ';
  }
  if (block.shortcut_kind !== 'identity') text += `This block's shortcut is ${block.shortcut_kind === 'A' ? 'zero-padding (option A)' : 'a 1×1 projection (option B)'}, so x is W_s x.`;
  return text;
}

export function residualHistogramFigure(block) {
  const hist = block.residual_histogram;
  const data = [histogramTrace(hist, { name: `F(x) of ${block.id}`, color: stageColor(block.stage) })];
  const layout = baseLayout({
    bargap: 0,
    xaxis: axis('residual F(x)'),
    yaxis: axis('count'),
    shapes: [{ type: 'line', xref: 'x', yref: 'paper', x0: 0, x1: 0, y0: 0, y1: 1, line: { color: '#555', dash: 'dot', width: 1 } }],
  });
  return { data, layout, caption: residualHistCaption(block, hist) };
}

function residualHistCaption(block, hist) {
  const m = block.residual_moments;
  let text = `Distribution of ${block.id}'s residual F(x) (${hist.sampled} sampled values, ${hist.underflow} below and ${hist.overflow} above the range). `;
  text += `Mean ${num(m.mean, 3)}, std ${num(m.std, 3)}, ${pct(m.negative)} negative. `;
  text += 'The chapter’s point: when the identity is nearly right, the layers only have to push F towards 0, which is easier than learning H(x) = x.';
  return text;
}
