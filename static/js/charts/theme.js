// Visual constants shared by every figure and by the architecture strip: one place, no guessing.

// Stage 0 is the stem (conv1 / bn1 / relu / maxpool); stages 1.. are the residual stages.
export const STAGE_COLORS = ['#7f7f7f', '#3b6fb6', '#e07b28', '#3a9a4b', '#c8413c', '#8e6bbf'];

// Tap kinds come from the manifest (conv | bn | stem | block | shortcut), never from names.
export const KIND_COLORS = {
  conv: '#4c78a8',
  bn: '#f58518',
  stem: '#54a24b',
  block: '#d6404e',
  shortcut: '#9467bd',
  fc: '#8c6d31',
};
export const KIND_LABELS = {
  conv: 'conv output',
  bn: 'BN output',
  stem: 'stem (ReLU/pool)',
  block: 'block output (after ReLU)',
  shortcut: 'shortcut (projection / zero-pad)',
  fc: 'fc',
};

export const RUN_COLORS = { residual: '#3b6fb6', plain: '#c8413c', current: '#222222', preview: '#e07b28' };
export const SELECTION_COLOR = 'rgba(255, 196, 0, 0.25)';
export const SELECTION_LINE = '#d19b00';
export const GRID_COLOR = '#e6e6e6';

export const stageColor = (stage) => STAGE_COLORS[stage % STAGE_COLORS.length];
export const kindColor = (kind) => KIND_COLORS[kind] || '#777777';

// Every figure starts from this layout; `uirevision` keeps the user's zoom across Plotly.react calls.
export function baseLayout(extra = {}) {
  return {
    margin: { l: 56, r: 16, t: 28, b: 44 },
    font: { family: 'system-ui, -apple-system, "Segoe UI", Roboto, sans-serif', size: 12, color: '#222' },
    paper_bgcolor: '#ffffff',
    plot_bgcolor: '#ffffff',
    hovermode: 'closest',
    showlegend: false,
    legend: { orientation: 'h', y: 1.02, yanchor: 'bottom', x: 0, bgcolor: 'rgba(255,255,255,0.7)' },
    ...extra,
  };
}

export function axis(title, extra = {}) {
  return { title: { text: title, standoff: 6 }, gridcolor: GRID_COLOR, zeroline: false, automargin: true, ...extra };
}

export const PLOT_CONFIG = {
  responsive: true,
  displaylogo: false,
  scrollZoom: false,
  modeBarButtonsToRemove: ['select2d', 'lasso2d', 'autoScale2d'],
  toImageButtonOptions: { format: 'png', scale: 2 },
};
