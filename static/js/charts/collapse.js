// The on/off gradient collapse table (as in docs/collapse.md), built as a DOM table from the
// /api/gradients/collapse rows: first- and last-layer ||dL/dW|| with every shortcut on and off.
import { num } from './format.js';

const finite = (x) => typeof x === 'number' && Number.isFinite(x);

function dropText(row) {
  if (row.verdict) return row.verdict;
  if (!finite(row.first_drop)) return '–';
  return `${num(row.first_drop, 3)}×`;
}

function cell(tag, text, cls) {
  const c = document.createElement(tag);
  c.textContent = text;
  if (cls) c.className = cls;
  return c;
}

// rows: [{model, weights, bn, on_first, on_last, off_first, off_last, first_drop, verdict}]
export function collapseTable(rows, { bn, images = [], pending = 0 } = {}) {
  const wrap = document.createElement('div');
  const table = document.createElement('table');
  table.className = 'data compact collapse';
  const head = document.createElement('tr');
  for (const h of ['model', 'shortcuts on: first / last', 'shortcuts off: first / last', 'first layer: on ÷ off']) head.append(cell('th', h));
  table.append(head);
  for (const r of rows) {
    const tr = document.createElement('tr');
    tr.dataset.model = r.model;
    tr.append(
      cell('td', `${r.model} (${r.weights})`),
      cell('td', `${num(r.on_first, 3)} / ${num(r.on_last, 3)}`, 'num'),
      cell('td', `${num(r.off_first, 3)} / ${num(r.off_last, 3)}`, 'num'),
      cell('td', dropText(r), 'num'),
    );
    table.append(tr);
  }
  const cap = document.createElement('figcaption');
  cap.textContent =
    `‖∂L/∂W‖ of the first block's first conv (first) and the last block's last conv (last) with every shortcut on ` +
    `and every shortcut off (the same trained weights), BN with ${bn} statistics, on the ${images.length || 'built-in'} sample ` +
    `images of the generated set (one per class; loss against each image's predicted class), computed now by the ` +
    `ONNX gradient graphs. On ÷ off above 1: the plain network's early gradient is smaller.` +
    (pending ? ` Computing ${pending} more model${pending > 1 ? 's' : ''}…` : '');
  wrap.append(table, cap);
  return wrap;
}
