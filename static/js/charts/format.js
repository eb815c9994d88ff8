// Number formatting for hover text and captions (pure).

export function num(x, digits = 3) {
  if (x === null || x === undefined || Number.isNaN(x)) return '–';
  if (x === 0) return '0';
  const a = Math.abs(x);
  if (a >= 1e4 || a < 1e-3) return x.toExponential(Math.max(0, digits - 1)).replace('e+', 'e');
  return Number(x.toPrecision(digits)).toString();
}

export const pct = (x, digits = 1) => `${(100 * x).toFixed(digits)}%`;

export function count(n) {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} k`;
  return String(n);
}

export const ratioText = (a, b) => (b > 0 ? `${num(a / b, 2)}×` : '–');

// Bin centres and widths of a histogram given by its edges.
export function binCentres(edges) {
  const c = new Array(edges.length - 1);
  for (let i = 0; i < c.length; i++) c[i] = (edges[i] + edges[i + 1]) / 2;
  return c;
}

export function binWidths(edges) {
  const w = new Array(edges.length - 1);
  for (let i = 0; i < w.length; i++) w[i] = edges[i + 1] - edges[i];
  return w;
}

export function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[ch]);
}

export const int = (v) => Math.round(v).toLocaleString('en-US');
