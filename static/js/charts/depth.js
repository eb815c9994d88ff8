// Activation statistics across depth: mean, std and zero fraction of every tap, coloured by kind.
import { axis, baseLayout, KIND_COLORS, KIND_LABELS, kindColor, SELECTION_COLOR, SELECTION_LINE } from './theme.js';
import { num, pct } from './format.js';

const ROWS = [
  { key: 'mean', title: 'mean', axis: 'y' },
  { key: 'std', title: 'std', axis: 'y2' },
  { key: 'zero_fraction', title: 'zero fraction', axis: 'y3' },
];

// Tap indices [first, last] that belong to a block (its convs, BNs, shortcut and output).
export function blockTapRange(layers, blockId) {
  let lo = -1;
  let hi = -1;
  layers.forEach((l, i) => {
    if (l.id === blockId || l.id.startsWith(`${blockId}.`)) {
      if (lo < 0) lo = i;
      hi = i;
    }
  });
  return lo < 0 ? null : [lo, hi];
}

// Tick positions: block outputs (or only each stage's first block when there are many).
export function depthTicks(layers, blocks) {
  const index = new Map(layers.map((l, i) => [l.id, i]));
  let chosen = blocks;
  if (blocks.length > 18) chosen = blocks.filter((b) => b.index === 0 || b === blocks[blocks.length - 1]);
  const vals = [0];
  const text = [layers[0].id];
  for (const b of chosen) {
    if (index.has(b.id)) {
      vals.push(index.get(b.id));
      text.push(b.id.replace(/^layer/, ''));
    }
  }
  return { tickvals: vals, ticktext: text };
}

export function selectionShapes(layers, { layer, block }, yref = 'paper') {
  const shapes = [];
  const range = block ? blockTapRange(layers, block) : null;
  if (range) {
    shapes.push({
      type: 'rect', xref: 'x', yref, x0: range[0] - 0.5, x1: range[1] + 0.5, y0: 0, y1: 1,
      fillcolor: SELECTION_COLOR, line: { width: 0 }, layer: 'below',
    });
  }
  const li = layers.findIndex((l) => l.id === layer);
  if (li >= 0) {
    shapes.push({ type: 'line', xref: 'x', yref, x0: li, x1: li, y0: 0, y1: 1, line: { color: SELECTION_LINE, width: 1.5, dash: 'dot' } });
  }
  return shapes;
}

export function depthFigure(analysis, sel) {
  const layers = analysis.layers;
  const x = layers.map((_, i) => i);
  const hover = layers.map((l) => `${l.id}<br>${l.kind} · ${l.shape.slice(1).join('×')}`);
  const data = [];
  ROWS.forEach((row) => {
    data.push({
      type: 'scatter', mode: 'lines', x, y: layers.map((l) => l.stats[row.key]), yaxis: row.axis,
      line: { color: '#bbbbbb', width: 1 }, hoverinfo: 'skip', showlegend: false,
    });
  });
  const kinds = Object.keys(KIND_COLORS).filter((k) => layers.some((l) => l.kind === k));
  ROWS.forEach((row, r) => {
    for (const kind of kinds) {
      const idx = x.filter((i) => layers[i].kind === kind);
      data.push({
        type: 'scatter', mode: 'markers', name: KIND_LABELS[kind] || kind, legendgroup: kind, showlegend: r === 0,
        x: idx, y: idx.map((i) => layers[i].stats[row.key]), yaxis: row.axis,
        marker: { color: kindColor(kind), size: 6 }, text: idx.map((i) => hover[i]),
        hovertemplate: `%{text}<br>${row.title} = %{y:.4g}<extra></extra>`,
      });
    }
  });
  const ticks = depthTicks(layers, analysis.blocks);
  const layout = baseLayout({
    showlegend: true,
    margin: { l: 60, r: 16, t: 36, b: 52 },
    xaxis: axis('tap, in forward order (ticks: block outputs)', { ...ticks, tickangle: -45, range: [-1, layers.length], anchor: 'y3' }),
    yaxis: axis('mean', { domain: [0.7, 1] }),
    yaxis2: axis('std', { domain: [0.36, 0.64] }),
    yaxis3: axis('zero fraction', { domain: [0, 0.3], range: [0, 1.02], tickformat: '.0%' }),
    shapes: selectionShapes(layers, sel),
  });
  return { data, layout, caption: depthCaption(analysis) };
}

// The caption's numbers (block outputs' std first to last, BN outputs' spread, zeros) come from the server.
function depthCaption(analysis) {
  const d = analysis.chart_stats.depth;
  const { first_block: first, last_block: last } = d;
  const hasBn = analysis.layers.some((l) => l.kind === 'bn');
  let text = 'Mean, standard deviation and fraction of exact zeros of every tap, in forward order. ';
  if (first && last) {
    text += `The std of the block outputs goes from ${num(first.std)} (${first.id}) to ${num(last.std)} (${last.id}), `;
    text += `${num(d.std_ratio, 2)}× the first. `;
  }
  if (hasBn) {
    text += `BN outputs (${analysis.bn} statistics) have std between ${num(d.bn_std_min)} and ${num(d.bn_std_max)} and average |mean| ${num(d.bn_abs_mean)}; `;
  }
  text += `block outputs come after a ReLU, so ${pct(d.block_zero_fraction, 0)} of their values are exactly zero on average: `;
  text += 'the asymmetric distribution the chapter gives as the reason BN goes before the nonlinearity.';
  if (analysis.bn === 'running' && analysis.bn_untrained) {
    text += ' These weights have never been trained: every running mean is 0 and variance 1, so BN passes values through almost unchanged; switch to batch statistics to see step 3 normalise them.';
  }
  return text;
}
