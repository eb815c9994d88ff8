// The residual analysis page's figures: residuals against fitted values, x and order, the Q-Q plot and
// the fit itself, from POST /api/regression (every number comes from the server): pure builders.
import { pageLayout, PAGE_COLORS as COLORS } from './theme.js';

const fitLayout = (layout) => pageLayout({ margin: { l: 60, r: 20, t: 20, b: 50 }, showlegend: false, hovermode: 'closest', ...layout });

// Many points draw with WebGL.
function pointType(n) {
  return n > 2000 ? "scattergl" : "scatter";
}

export function residualFigure(x, e, xTitle, flagged, rows) {
  const data = [
    {
      type: pointType(e.length),
      mode: "markers",
      x,
      y: e,
      customdata: rows,
      marker: { size: 6, color: flagged ? COLORS.flag : COLORS.point, opacity: 0.75 },
      hovertemplate: `row %{customdata}<br>${xTitle} %{x:.4g}<br>residual %{y:.4g}<extra></extra>`,
    },
  ];
  const layout = {
    height: 300,
    xaxis: { title: { text: xTitle }, zeroline: false },
    yaxis: { title: { text: "residual (observed − fitted)" }, zeroline: false },
    shapes: [{ type: "line", xref: "paper", x0: 0, x1: 1, y0: 0, y1: 0, line: { color: COLORS.zero, dash: "dash", width: 1 } }],
    uirevision: xTitle,
  };
  return { data, layout: fitLayout(layout) };
}

export function qqFigure(qq) {
  const lo = Math.min(qq.theoretical[0], qq.sample[0] ?? 0);
  const hi = Math.max(qq.theoretical[qq.theoretical.length - 1], qq.sample[qq.sample.length - 1] ?? 0);
  return {
    data: [
      {
        type: pointType(qq.sample.length),
        mode: "markers",
        x: qq.theoretical,
        y: qq.sample,
        customdata: qq.probabilities,
        marker: { size: 6, color: COLORS.point, opacity: 0.75 },
        hovertemplate: "normal quantile %{x:.3f} (p = %{customdata:.3f})<br>standardized residual %{y:.3f}<extra></extra>",
      },
      { type: "scatter", mode: "lines", x: [lo, hi], y: [lo, hi], line: { color: COLORS.curve, width: 1.5 }, hoverinfo: "skip" },
    ],
    layout: fitLayout({
      height: 300,
      xaxis: { title: { text: "normal quantile" } },
      yaxis: { title: { text: "standardized residual" } },
      uirevision: "qq",
    }),
  };
}

export function fitFigure(fit, model, rows) {
  return {
    data: [
      {
        type: pointType(fit.x.length),
        mode: "markers",
        x: fit.x,
        y: fit.y,
        customdata: rows,
        marker: { size: 6, color: COLORS.point, opacity: 0.75 },
        hovertemplate: `row %{customdata}<br>${model.x_columns[0]} %{x:.4g}<br>${model.y_column} %{y:.4g}<extra></extra>`,
        name: "data",
      },
      {
        type: "scatter",
        mode: "lines",
        x: fit.curve_x,
        y: fit.curve_y,
        line: { color: COLORS.curve, width: 2 },
        hovertemplate: `fitted at %{x:.4g}: %{y:.4g}<extra></extra>`,
        name: "fit",
      },
    ],
    layout: fitLayout({
      height: 320,
      xaxis: { title: { text: model.x_columns[0] } },
      yaxis: { title: { text: model.y_column } },
      uirevision: "fit",
    }),
  };
}
