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
  const layout = baseLayout({
    margin: { l: 8, r: 12, t: 8, b: 36 },
    xaxis: axis('probability', { rangemode: 'tozero', tickformat: top[0].probability < 0.05 ? '.2%' : '.0%' }),
    yaxis: { automargin: true },
    bargap: 0.25,
  });
  return { data, layout, caption: predictionCaption(analysis) };
}

function predictionCaption(analysis) {
  const top = analysis.prediction[0].top;
  const n = analysis.model.num_classes || (analysis.model.family === 'cifar' ? 10 : 1000);
  const p1 = top[0].probability;
  const uniform = 1 / n;
  const weights = analysis.model.weights;
  const margin = top.length > 1 ? p1 / top[1].probability : null;
  let text = `Top-5 softmax probabilities of ${analysis.model.name} (${weights} weights, ${n} classes). `;
  text += `The top class, “${top[0].label}”, has p = ${num(p1, 3)}, ${num(p1 / uniform, 3)}× the uniform 1/${n}`;
  text += margin ? ` and ${num(margin, 3)}× the runner-up.` : '.';
  if (p1 < 5 * uniform) text += ' That is close to uniform: these weights do not single out a class for this image.';
  return text;
}
