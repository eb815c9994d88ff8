// Top-5 prediction as horizontal bars.
import { axis, baseLayout, STAGE_COLORS } from './theme.js';
import { num, pct } from './format.js';

export function predictionFigure(analysis) {
  const top = analysis.prediction[0].top;
  const rows = [...top].reverse(); // the top class drawn at the top
  const data = [
    {
      type: 'bar',
      orientation: 'h',
      x: rows.map((t) => t.probability),
      y: rows.map((t) => `${t.label} `),
      text: rows.map((t) => pct(t.probability, 2)),
      textposition: 'auto',
      marker: { color: STAGE_COLORS[1] },
      customdata: rows.map((t) => t.index),
      hovertemplate: '%{y}<br>class %{customdata}<br>p = %{x:.4f}<extra></extra>',
    },
  ];
  const warning = untrainedWarning(analysis.model);
  const layout = baseLayout({
    margin: { l: 8, r: 12, t: warning ? 40 : 8, b: 36 },
    annotations: warning
      ? [{ xref: 'paper', yref: 'paper', x: 0, y: 1, yanchor: 'bottom', xanchor: 'left', showarrow: false, align: 'left',
          bgcolor: '#fff4e5', bordercolor: '#d9822b', borderpad: 3, font: { size: 11, color: '#8a4b0f' },
          text: '⚠ He-init weights: the prediction means nothing' }]
      : [],
    xaxis: axis('probability', { rangemode: 'tozero', tickformat: top[0].probability < 0.05 ? '.2%' : '.0%' }),
    yaxis: { automargin: true },
    bargap: 0.25,
  });
  return { data, layout, caption: predictionCaption(analysis) };
}

// The untrained-weights warning for a prediction (null for trained or imported weights).
export function untrainedWarning(model) {
  if (!model || model.weights !== 'init') return null;
  const name = model.name;
  if (model.family === 'imagenet' || /^resnet(18|34|50|101|152)$/.test(name)) {
    return `He-init weights: the prediction means nothing; \`resviz weights fetch ${name}\` or import torchvision's file (\`resviz weights import FILE.pth --model ${name} --as imagenet\`).`;
  }
  return `He-init weights: the prediction means nothing; choose the trained weights (the default for ${name}) to see what the network learned.`;
}

function predictionCaption(analysis) {
  const top = analysis.prediction[0].top;
  const n = analysis.model.num_classes || (analysis.model.family === 'cifar' ? 10 : 1000);
  const p1 = top[0].probability;
  const uniform = 1 / n;
  const weights = analysis.model.weights;
  const margin = top.length > 1 ? p1 / top[1].probability : null;
  const warning = untrainedWarning(analysis.model);
  let text = warning ? `${warning} ` : '';
  text += `Top-5 softmax probabilities of ${analysis.model.name} (${weights} weights, ${n} classes). `;
  text += `The top class, “${top[0].label}”, has p = ${num(p1, 3)}, ${num(p1 / uniform, 3)}× the uniform 1/${n}`;
  text += margin ? ` and ${num(margin, 3)}× the runner-up.` : '.';
  if (p1 < 5 * uniform) text += ' That is close to uniform: these weights do not single out a class for this image.';
  return text;
}
