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

// Explanation maps (charts/explain.js): maps that are >= 0 (CAMs, gradient sizes) on the feature maps'
// scale (the explain endpoint's overlay PNGs use it too); a diverging one for a signed map (blue lowers
// the class score, red raises it).
export const MAP_COLORSCALE = 'Viridis';
export const SIGNED_COLORSCALE = [[0, '#2166ac'], [0.25, '#67a9cf'], [0.5, '#f7f7f7'], [0.75, '#ef8a62'], [1, '#b2182b']];

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

// ------------------------------------------------------------ the chapter pages and the lab

// Architecture and residual analysis: the paper's networks, its printed numbers, data points and fits.
export const PAGE_COLORS = {
  vgg: '#8c6d31',
  plain: '#7f7f7f',
  resnet: '#1f77b4',
  paper: '#d62728',
  accent: '#2ca02c',
  stages: ['#9ecae1', '#6baed6', '#4292c6', '#2171b5', '#08519c', '#fd8d3c'],
  point: '#1f77b4',
  curve: '#d62728',
  flag: '#d62728',
  zero: '#555',
};

// The chapter pages' figures sit on their cards: transparent background, the system font.
export function pageLayout(extra = {}) {
  return {
    margin: { l: 60, r: 20, t: 30, b: 50 },
    font: { family: 'system-ui, sans-serif', size: 12 },
    paper_bgcolor: 'rgba(0,0,0,0)',
    plot_bgcolor: 'rgba(0,0,0,0)',
    ...extra,
  };
}

// The lab's training runs: ResNets blue, plain networks red, darker the deeper.
export const LAB_COLORS = { residual: [38, 99, 185], plain: [204, 51, 51] };
export const DEPTH_SHADE = { 20: 0.45, 32: 0.55, 44: 0.65, 56: 0.75, 110: 1.0 };
// Legends above the plot, clear of the axis titles below it.
export const LEGEND_ABOVE = { orientation: 'h', x: 0, y: 1.02, xanchor: 'left', yanchor: 'bottom' };

// The loss landscapes: log10 of the loss on one colour scale for both surfaces of a depth.
export const LANDSCAPE_COLORSCALE = 'Viridis';
export const LANDSCAPE_MARKS = { centre: '#ffffff', minimum: '#ff4d4d' };

// Batch norm's claims and the normalisations side by side (charts/bnclaims.js): with BN solid, without dashed;
// one colour per normalisation; the gradient norms' steps from light (step 0) to dark (the last step).
export const NORM_DASH = { batch: 'solid', none: 'dash' };
export const NORM_COLORS = {
  batch: '#3b6fb6', layer: '#e07b28', instance: '#3a9a4b', group: '#8e6bbf', lrn: '#8c6d31', running: '#555555',
};
export const BN_RUN_COLORS = { batch: [38, 99, 185], none: [224, 123, 40] };
