"""Chart catalogue and server-side Plotly figures for standalone export.

The figures are the Python twins of the pure builders in ``static/js/charts/*.js`` (same traces,
layouts and captions), built from the same analysis / gradients JSON the API returns. The browser
(main page and ``/embed/...``) always draws with the JS builders; these exist so that
``/api/export/{chart}.html`` can ship a finished figure with no script of ours in it.
Which tap, block and channel a chart shows when the link names none follows ``static/js/main.js``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

Fig = dict[str, Any]  # {"data": [...], "layout": {...}, "caption": str}

# ---------------------------------------------------------------- the catalogue

ANALYZE = "POST /api/models/{model}/analyze"
FEATUREMAP = "GET /api/models/{model}/featuremap"
GRADIENTS = "POST /api/models/{model}/gradients"
LESION = "POST /api/models/{model}/lesion"
SWEEP = "GET /api/gradients/depth-sweep"


@dataclass(frozen=True)
class Chart:
    """One embeddable chart: its id, title, the main page's element and view, and the data it needs."""

    id: str
    title: str
    view: str  # the main page tab that shows it ("" for the overview)
    element: str  # the chart's element id on the main page
    endpoints: tuple[str, ...]
    params: tuple[str, ...]  # query parameters that change it, beyond model/weights/image/gates/bn
    image: bool = True  # needs an image

    def row(self) -> dict:
        """The catalogue entry as JSON."""
        d = asdict(self)
        d["endpoints"] = list(self.endpoints)
        d["params"] = list(self.params)
        d["embed"] = f"/embed/{self.id}"
        d["export"] = f"/api/export/{self.id}.html"
        return d


CHARTS: dict[str, Chart] = {
    c.id: c
    for c in (
        Chart(
            "activations",
            "Activation statistics across depth",
            "activations",
            "chart-depth",
            (ANALYZE,),
            ("layer", "block"),
        ),
        Chart("histogram", "Histogram of one tap", "activations", "chart-histogram", (ANALYZE,), ("layer", "block")),
        Chart(
            "heatmap",
            "Depth × value heatmap of every tap",
            "activations",
            "chart-heatmap",
            (ANALYZE,),
            ("layer", "range"),
        ),
        Chart(
            "featuremaps",
            "One feature-map channel at full resolution",
            "featuremaps",
            "chart-channel",
            (ANALYZE, FEATUREMAP),
            ("layer", "block", "channel"),
        ),
        Chart(
            "batchnorm",
            "Batch norm: before and after",
            "batchnorm",
            "chart-bn",
            (ANALYZE,),
            ("layer", "block", "channel"),
        ),
        Chart(
            "gradients",
            "Gradient norm across depth: residual, plain and current switches",
            "gradients",
            "chart-grad",
            (ANALYZE, GRADIENTS),
            ("block",),
        ),
        Chart(
            "depth-sweep",
            "First-layer gradient norm against depth (CIFAR ResNets)",
            "gradients",
            "chart-sweep",
            (SWEEP,),
            (),
            image=False,
        ),
        Chart(
            "lesion",
            "Lesion study: each residual branch removed in turn",
            "gradients",
            "chart-lesion",
            (ANALYZE, LESION),
            ("block",),
        ),
        Chart("residuals", "‖F(x)‖ / ‖x‖ across depth", "residuals", "chart-ratio", (ANALYZE,), ("block",)),
        Chart("residual-scatter", "F(x) against x for one block", "residuals", "chart-scatter", (ANALYZE,), ("block",)),
        Chart(
            "residual-histogram",
            "Histogram of one block's residual F(x)",
            "residuals",
            "chart-residual-hist",
            (ANALYZE,),
            ("block",),
        ),
        Chart("prediction", "Top-5 prediction", "", "chart-prediction", (ANALYZE,), ()),
    )
}


@dataclass
class Selection:
    """What a link asks to show (empty / None: the main page's defaults)."""

    layer: str = ""
    block: str = ""
    channel: int | None = None
    range: str = "common"


# ---------------------------------------------------------------- theme (static/js/charts/theme.js)

STAGE_COLORS = ["#7f7f7f", "#3b6fb6", "#e07b28", "#3a9a4b", "#c8413c", "#8e6bbf"]
KIND_COLORS = {
    "conv": "#4c78a8",
    "bn": "#f58518",
    "stem": "#54a24b",
    "block": "#d6404e",
    "shortcut": "#9467bd",
    "fc": "#8c6d31",
}
KIND_LABELS = {
    "conv": "conv output",
    "bn": "BN output",
    "stem": "stem (ReLU/pool)",
    "block": "block output (after ReLU)",
    "shortcut": "shortcut (projection / zero-pad)",
    "fc": "fc",
}
RUN_COLORS = {"residual": "#3b6fb6", "plain": "#c8413c", "current": "#222222", "preview": "#e07b28"}
SELECTION_COLOR = "rgba(255, 196, 0, 0.25)"
SELECTION_LINE = "#d19b00"
GRID_COLOR = "#e6e6e6"
FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, sans-serif'
PLOT_CONFIG = {
    "responsive": True,
    "displaylogo": False,
    "scrollZoom": False,
    "modeBarButtonsToRemove": ["select2d", "lasso2d", "autoScale2d"],
    "toImageButtonOptions": {"format": "png", "scale": 2},
}


def stage_color(stage: int) -> str:
    """Colour of a stage (0 is the stem)."""
    return STAGE_COLORS[stage % len(STAGE_COLORS)]


def kind_color(kind: str) -> str:
    """Colour of a tap kind."""
    return KIND_COLORS.get(kind, "#777777")


def base_layout(**extra: Any) -> dict:
    """Every figure starts from this layout."""
    return {
        "margin": {"l": 56, "r": 16, "t": 28, "b": 44},
        "font": {"family": FONT, "size": 12, "color": "#222"},
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
        "hovermode": "closest",
        "showlegend": False,
        "legend": {"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0, "bgcolor": "rgba(255,255,255,0.7)"},
        **extra,
    }


def axis(title: str, **extra: Any) -> dict:
    """An axis with a title, light grid and no zero line."""
    return {
        "title": {"text": title, "standoff": 6},
        "gridcolor": GRID_COLOR,
        "zeroline": False,
        "automargin": True,
        **extra,
    }


# ---------------------------------------------------------------- formatting (static/js/charts/format.js)


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def num(x: float | None, digits: int = 3) -> str:
    """A number for captions: 3 significant digits, exponent form when very large or small."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if x == 0:
        return "0"
    if not math.isfinite(x):
        return "Infinity" if x > 0 else "-Infinity"
    a = abs(x)
    if a >= 1e4 or a < 1e-3:
        mant, exp = f"{x:.{max(0, digits - 1)}e}".split("e")
        return f"{mant}e{int(exp)}"
    text = f"{float(f'{x:.{digits}g}'):.15g}"
    return text


def pct(x: float, digits: int = 1) -> str:
    """A fraction as a percentage."""
    return f"{100 * x:.{digits}f}%"


def count(n: float) -> str:
    """A count with k / M / G."""
    if n >= 1e9:
        return f"{n / 1e9:.2f} G"
    if n >= 1e6:
        return f"{n / 1e6:.2f} M"
    if n >= 1e3:
        return f"{n / 1e3:.1f} k"
    return str(n)


def median(values: Iterable[float | None]) -> float | None:
    """Median of the finite values (None when there are none)."""
    v = sorted(x for x in values if x is not None and math.isfinite(x))
    if not v:
        return None
    m = len(v) >> 1
    return v[m] if len(v) % 2 else (v[m - 1] + v[m]) / 2


def bin_centres(edges: list[float]) -> list[float]:
    """Centres of the bins given by their edges."""
    return [(edges[i] + edges[i + 1]) / 2 for i in range(len(edges) - 1)]


def bin_widths(edges: list[float]) -> list[float]:
    """Widths of the bins given by their edges (0 where an edge is not a finite number: nothing is drawn)."""
    widths = [edges[i + 1] - edges[i] for i in range(len(edges) - 1)]
    return [w if math.isfinite(w) else 0.0 for w in widths]


def hist_moments(hist: dict) -> dict:
    """Count, mean and standard deviation of a histogram (bin centres weighted by counts)."""
    c = bin_centres(hist["edges"])
    n = s = s2 = 0.0
    for k, x in zip(hist["counts"], c, strict=True):
        n += k
        s += k * x
        s2 += k * x * x
    mean = s / n if n else 0.0
    return {"n": n, "mean": mean, "std": math.sqrt(max(s2 / n - mean * mean, 0.0)) if n else 0.0}


def _short(block_id: str) -> str:
    return block_id[5:] if block_id.startswith("layer") else block_id


# ---------------------------------------------------------------- selection (as in static/js/main.js)


def current_layer(analysis: dict, sel: Selection) -> dict:
    """The chosen tap: the link's layer, else the chosen block's output, else the first block output."""
    layers = analysis["layers"]
    by_id = {layer["id"]: layer for layer in layers}
    if sel.layer in by_id:
        return by_id[sel.layer]
    if sel.block and sel.block in by_id:  # a block's output tap carries the block's id
        return by_id[sel.block]
    return next((layer for layer in layers if layer["kind"] == "block"), layers[0])


def nearest_layer(analysis: dict, sel: Selection, pred: Callable[[dict], bool]) -> dict | None:
    """Nearest tap at or before the chosen one that satisfies ``pred`` (else the first one after it)."""
    layers = analysis["layers"]
    i = max(0, layers.index(current_layer(analysis, sel)))
    for j in range(i, -1, -1):
        if pred(layers[j]):
            return layers[j]
    for j in range(i + 1, len(layers)):
        if pred(layers[j]):
            return layers[j]
    return None


def current_block(analysis: dict, sel: Selection) -> dict:
    """The chosen block, else the first."""
    blocks = analysis["blocks"]
    return next((b for b in blocks if b["id"] == sel.block), blocks[0])


def feature_map_choice(analysis: dict, sel: Selection) -> tuple[str, int] | None:
    """(tap, channel) the feature-map chart shows, or None when the analysis has no feature maps."""
    fmaps = analysis.get("feature_maps") or {}
    layer = nearest_layer(analysis, sel, lambda t: t["id"] in fmaps)
    if layer is None:
        return None
    channel = sel.channel
    if channel is None or channel >= layer["shape"][1]:
        channel = fmaps[layer["id"]]["channels"][0]
    return layer["id"], channel


def target_class(analysis: dict) -> int:
    """The class the gradient and lesion charts use: the top-1 prediction of the analysis."""
    return int(analysis["prediction"][0]["top"][0]["index"])


# ---------------------------------------------------------------- activations (charts/depth.js)

_ROWS = (("mean", "mean", "y"), ("std", "std", "y2"), ("zero_fraction", "zero fraction", "y3"))


def block_tap_range(layers: list[dict], block_id: str) -> tuple[int, int] | None:
    """Tap indices [first, last] that belong to a block."""
    idx = [i for i, t in enumerate(layers) if t["id"] == block_id or t["id"].startswith(f"{block_id}.")]
    return (idx[0], idx[-1]) if idx else None


def depth_ticks(layers: list[dict], blocks: list[dict]) -> dict:
    """Tick positions at block outputs (only each stage's first block when there are many)."""
    index = {t["id"]: i for i, t in enumerate(layers)}
    chosen = blocks
    if len(blocks) > 18:
        chosen = [b for b in blocks if b["index"] == 0 or b is blocks[-1]]
    vals, text = [0], [layers[0]["id"]]
    for b in chosen:
        if b["id"] in index:
            vals.append(index[b["id"]])
            text.append(_short(b["id"]))
    return {"tickvals": vals, "ticktext": text}


def selection_shapes(layers: list[dict], layer: str, block: str, yref: str = "paper") -> list[dict]:
    """The chosen block's band and the chosen tap's line."""
    shapes: list[dict] = []
    span = block_tap_range(layers, block) if block else None
    if span:
        shapes.append(
            {
                "type": "rect",
                "xref": "x",
                "yref": yref,
                "x0": span[0] - 0.5,
                "x1": span[1] + 0.5,
                "y0": 0,
                "y1": 1,
                "fillcolor": SELECTION_COLOR,
                "line": {"width": 0},
                "layer": "below",
            }
        )
    li = next((i for i, t in enumerate(layers) if t["id"] == layer), -1)
    if li >= 0:
        shapes.append(
            {
                "type": "line",
                "xref": "x",
                "yref": yref,
                "x0": li,
                "x1": li,
                "y0": 0,
                "y1": 1,
                "line": {"color": SELECTION_LINE, "width": 1.5, "dash": "dot"},
            }
        )
    return shapes


def depth_figure(analysis: dict, sel: Selection) -> Fig:
    """Mean, std and zero fraction of every tap in forward order, coloured by kind."""
    layers = analysis["layers"]
    x = list(range(len(layers)))
    hover = [f"{t['id']}<br>{t['kind']} · {'×'.join(map(str, t['shape'][1:]))}" for t in layers]
    data: list[dict] = []
    for key, _, ax in _ROWS:
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "x": x,
                "y": [t["stats"][key] for t in layers],
                "yaxis": ax,
                "line": {"color": "#bbbbbb", "width": 1},
                "hoverinfo": "skip",
                "showlegend": False,
            }
        )
    kinds = [k for k in KIND_COLORS if any(t["kind"] == k for t in layers)]
    for r, (key, title, ax) in enumerate(_ROWS):
        for kind in kinds:
            idx = [i for i in x if layers[i]["kind"] == kind]
            data.append(
                {
                    "type": "scatter",
                    "mode": "markers",
                    "name": KIND_LABELS.get(kind, kind),
                    "legendgroup": kind,
                    "showlegend": r == 0,
                    "x": idx,
                    "y": [layers[i]["stats"][key] for i in idx],
                    "yaxis": ax,
                    "marker": {"color": kind_color(kind), "size": 6},
                    "text": [hover[i] for i in idx],
                    "hovertemplate": f"%{{text}}<br>{title} = %{{y:.4g}}<extra></extra>",
                }
            )
    layer = current_layer(analysis, sel)
    ticks = depth_ticks(layers, analysis["blocks"])
    layout = base_layout(
        showlegend=True,
        margin={"l": 60, "r": 16, "t": 36, "b": 52},
        xaxis=axis(
            "tap, in forward order (ticks: block outputs)", **ticks, tickangle=-45, range=[-1, len(layers)], anchor="y3"
        ),
        yaxis=axis("mean", domain=[0.7, 1]),
        yaxis2=axis("std", domain=[0.36, 0.64]),
        yaxis3=axis("zero fraction", domain=[0, 0.3], range=[0, 1.02], tickformat=".0%"),
        shapes=selection_shapes(layers, layer["id"], sel.block),
    )
    return {"data": data, "layout": layout, "caption": _depth_caption(analysis)}


def _untrained_running_stats(bns: list[dict]) -> bool:
    return bool(bns) and all(
        all(m == 0 for m in b["running_mean"]) and all(v == 1 for v in b["running_var"]) for b in bns
    )


def _depth_caption(analysis: dict) -> str:
    layers = analysis["layers"]
    blocks = [t for t in layers if t["kind"] == "block"]
    bns = [t for t in layers if t["kind"] == "bn"]
    text = "Mean, standard deviation and fraction of exact zeros of every tap, in forward order. "
    if blocks:
        first, last = blocks[0], blocks[-1]
        ratio = last["stats"]["std"] / first["stats"]["std"] if first["stats"]["std"] else math.inf
        text += (
            f"The std of the block outputs goes from {num(first['stats']['std'])} ({first['id']}) to "
            f"{num(last['stats']['std'])} ({last['id']}), {num(ratio, 2)}× the first. "
        )
    if bns:
        stds = [t["stats"]["std"] for t in bns]
        abs_mean = sum(abs(t["stats"]["mean"]) for t in bns) / len(bns)
        text += (
            f"BN outputs ({analysis['bn']} statistics) have std between {num(min(stds))} and {num(max(stds))} "
            f"and average |mean| {num(abs_mean)}; "
        )
    zeros = sum(t["stats"]["zero_fraction"] for t in blocks) / max(len(blocks), 1)
    text += f"block outputs come after a ReLU, so {pct(zeros, 0)} of their values are exactly zero on average: "
    text += "the asymmetric distribution the chapter gives as the reason BN goes before the nonlinearity."
    if analysis["bn"] == "running" and _untrained_running_stats(analysis["batchnorm"]):
        text += (
            " These weights have never been trained: every running mean is 0 and variance 1, so BN passes values"
            " through almost unchanged; switch to batch statistics to see step 3 normalise them."
        )
    return text


# ---------------------------------------------------------------- one tap's histogram (charts/histogram.js)


def histogram_trace(
    hist: dict, name: str, color: str, opacity: float = 1, xaxis: str | None = None, yaxis: str | None = None
) -> dict:
    """A histogram as bars of the bins' true widths."""
    c = bin_centres(hist["edges"])
    e = hist["edges"]
    trace = {
        "type": "bar",
        "name": name,
        "x": c,
        "y": hist["counts"],
        "width": bin_widths(e),
        "marker": {"color": color, "opacity": opacity, "line": {"width": 0}},
        "customdata": [[e[i], e[i + 1]] for i in range(len(c))],
        "hovertemplate": f"{name + '<br>' if name else ''}[%{{customdata[0]:.4g}}, %{{customdata[1]:.4g}})"
        "<br>count %{y}<extra></extra>",
    }
    if xaxis:
        trace["xaxis"] = xaxis
    if yaxis:
        trace["yaxis"] = yaxis
    return trace


def _flow_text(hist: dict) -> str:
    return f"{hist['underflow']} below {num(hist['edges'][0])}, {hist['overflow']} above {num(hist['edges'][-1])}"


def histogram_figure(analysis: dict, sel: Selection) -> Fig:
    """Histogram of the chosen tap."""
    layer = current_layer(analysis, sel)
    hist = layer["histogram"]
    data = [histogram_trace(hist, layer["id"], kind_color(layer["kind"]))]
    layout = base_layout(
        margin={"l": 56, "r": 16, "t": 30, "b": 44},
        bargap=0,
        xaxis=axis(f"value of {layer['id']}"),
        yaxis=axis("count"),
        annotations=[
            {
                "xref": "paper",
                "yref": "paper",
                "x": 1,
                "y": 1.06,
                "xanchor": "right",
                "showarrow": False,
                "font": {"size": 11, "color": "#555"},
                "text": f"underflow {hist['underflow']} · overflow {hist['overflow']}",
            }
        ],
    )
    s, h = layer["stats"], hist
    text = f"{layer['id']} ({layer['kind']}, {'×'.join(map(str, layer['shape'][1:]))}): {count(h['sampled'])} sampled "
    text += f"values, binned over the 0.1%–99.9% quantile range ({_flow_text(h)}). "
    text += (
        f"Whole tensor: mean {num(s['mean'])}, std {num(s['std'])}, min {num(s['min'])}, max {num(s['max'])}, "
        f"{pct(s['zero_fraction'])} zeros."
    )
    if layer["kind"] == "bn":
        text += " A BN output: centred and scaled per channel by step 3, then shifted and scaled by γ, β (step 4)."
    elif layer["kind"] == "conv":
        text += " A conv output, before BN: the chapter notes such outputs are roughly symmetric."
    elif s["zero_fraction"] > 0.05:
        text += " After a ReLU: the spike at 0 holds every negative input."
    return {"data": data, "layout": layout, "caption": text}


# ---------------------------------------------------------------- depth × value heatmap (charts/heatmap.js)

COMMON_BINS = 96


def rebin(hist: dict, lo: float, hi: float, bins: int) -> list[float]:
    """Spread a histogram's counts onto a common grid, uniformly within each source bin."""
    out = [0.0] * bins
    step = (hi - lo) / bins
    e = hist["edges"]
    for i, k in enumerate(hist["counts"]):
        if not k:
            continue
        a, b = e[i], e[i + 1]
        width = b - a
        j = max(0, math.floor((a - lo) / step))
        j_end = min(bins - 1, math.floor((b - lo) / step))
        while j <= j_end:
            overlap = min(b, lo + (j + 1) * step) - max(a, lo + j * step)
            if overlap > 0:
                out[j] += k * overlap / width
            j += 1
    return out


def _log10_fraction(k: float, n: float) -> float | None:
    return math.log10(k / n) if k > 0 and n > 0 else None


def row_ticks(n: int, selected: int, plot_height: float) -> list[int]:
    """Row labels that never overlap (>= 11 px apart); the chosen row always labelled (as heatmap.js)."""
    step = max(1, math.ceil(11 * n / max(plot_height, 1)))
    ticks = [i for i in range(0, n, step) if selected < 0 or abs(i - selected) >= step or i == selected]
    if selected >= 0 and selected not in ticks:
        ticks.append(selected)
    return sorted(ticks)


def tail_extents(layers: list[dict]) -> list[dict]:
    """How far each tap's min and max reach beyond its histogram range, in units of its width (as heatmap.js)."""
    out = []
    for t in layers:
        e = t["histogram"]["edges"]
        span = (e[-1] - e[0]) or 1.0
        lo, hi = t["stats"].get("min"), t["stats"].get("max")
        out.append(
            {
                "low": max(0.0, (e[0] - lo) / span) if _finite(lo) else None,
                "high": max(0.0, (hi - e[-1]) / span) if _finite(hi) else None,
            }
        )
    return out


def heatmap_figure(analysis: dict, sel: Selection) -> Fig:
    """Every tap's histogram as one row; colour is log10 of the fraction per bin."""
    layers = analysis["layers"]
    y = list(range(len(layers)))
    lo, hi = 0.0, 1.0
    if sel.range == "common":
        lo = min(t["histogram"]["edges"][0] for t in layers)
        hi = max(t["histogram"]["edges"][-1] for t in layers)
        step = (hi - lo) / COMMON_BINS
        x = [lo + (j + 0.5) * step for j in range(COMMON_BINS)]
        z = [
            [_log10_fraction(k, t["histogram"]["sampled"]) for k in rebin(t["histogram"], lo, hi, COMMON_BINS)]
            for t in layers
        ]
        hover = [[f"{t['id']}<br>value ≈ {num(v)}" for v in x] for t in layers]
    else:
        bins = len(layers[0]["histogram"]["counts"])
        x = [(j + 0.5) / bins for j in range(bins)]
        z = [[_log10_fraction(k, t["histogram"]["sampled"]) for k in t["histogram"]["counts"]] for t in layers]
        hover = [
            [
                f"{t['id']}<br>[{num(t['histogram']['edges'][j])}, {num(t['histogram']['edges'][j + 1])})"
                for j in range(len(t["histogram"]["counts"]))
            ]
            for t in layers
        ]
    tails = tail_extents(layers)
    tail_hover = {
        "low": [
            f"{t['id']}<br>underflow: {t['histogram']['underflow']} values below {num(t['histogram']['edges'][0])}"
            f"<br>min {num(t['stats'].get('min'))}: {num(e['low'], 2)}× the range width below it"
            for t, e in zip(layers, tails, strict=True)
        ],
        "high": [
            f"{t['id']}<br>overflow: {t['histogram']['overflow']} values above {num(t['histogram']['edges'][-1])}"
            f"<br>max {num(t['stats'].get('max'))}: {num(e['high'], 2)}× the range width above it"
            for t, e in zip(layers, tails, strict=True)
        ],
    }
    zmin = -4.3
    colorbar = {
        "title": {"text": "fraction", "side": "right"},
        "thickness": 12,
        "len": 0.9,
        "x": 1.0,
        "xanchor": "left",
        "tickvals": [-4, -3, -2, -1, 0],
        "ticktext": ["1e-4", "1e-3", "0.01", "0.1", "1"],
    }
    data = [
        {
            "type": "heatmap",
            "x": x,
            "y": y,
            "z": z,
            "text": hover,
            "zmin": zmin,
            "zmax": 0,
            "colorscale": "Viridis",
            "colorbar": colorbar,
            "xaxis": "x",
            "yaxis": "y",
            "hovertemplate": "%{text}<br>fraction 10^%{z:.2f}<extra></extra>",
            "hoverongaps": False,
        },
        *(
            {
                "type": "bar",
                "orientation": "h",
                "name": f"{side} tail",
                "y": y,
                "x": [None if e[side] is None else sign * e[side] for e in tails],
                "hovertext": tail_hover[side],
                "textposition": "none",
                "marker": {"color": color},
                "xaxis": "x2",
                "yaxis": "y",
                "hovertemplate": "%{hovertext}<extra></extra>",
                "showlegend": False,
            }
            for side, sign, color in (("low", -1, "#6a51a3"), ("high", 1, "#d6404e"))
        ),
    ]
    layer = current_layer(analysis, sel)["id"]
    li = next(i for i, t in enumerate(layers) if t["id"] == layer)
    ticks = row_ticks(len(layers), li, 480 - 64)
    xtitle = (
        "value (one range for every tap)"
        if sel.range == "common"
        else "position in each tap’s own range (0 = its low edge, 1 = its high edge)"
    )
    layout = base_layout(
        margin={"l": 120, "r": 8, "t": 16, "b": 48},
        barmode="overlay",
        bargap=0.15,
        xaxis=axis(xtitle, domain=[0, 0.8]),
        xaxis2={
            **axis("", domain=[0.83, 0.95], fixedrange=True, zeroline=True, zerolinecolor="#999"),
            "tickfont": {"size": 9},
            "title": {"text": "tails beyond the range<br>(× its width)", "font": {"size": 10}},
        },
        yaxis=axis(
            "", autorange="reversed", tickvals=ticks, ticktext=[layers[i]["id"] for i in ticks], tickfont={"size": 9}
        ),
        shapes=[
            {
                "type": "rect",
                "xref": "paper",
                "yref": "y",
                "x0": 0,
                "x1": 1,
                "y0": li - 0.5,
                "y1": li + 0.5,
                "line": {"color": SELECTION_LINE, "width": 1.5},
            }
        ],
    )
    spans = [(t["id"], t["histogram"]["edges"][-1] - t["histogram"]["edges"][0]) for t in layers]
    widest = max(spans, key=lambda s: s[1])
    narrowest = min(spans, key=lambda s: s[1])
    text = (
        "Each row is one tap’s histogram, top to bottom in forward order; colour is log10 of the fraction of its "
        "sampled values per bin. "
    )
    if sel.range == "common":
        text += f"Normalised to a common range [{num(lo)}, {num(hi)}] for all taps, so rows compare directly: "
    else:
        text += "Each row normalised to its own 0.1%–99.9% quantile range, so shapes compare but positions do not: "
    text += f"the widest range is {widest[0]} ({num(widest[1])}), the narrowest {narrowest[0]} ({num(narrowest[1])}). "
    text += (
        "Right: how far each tap’s values reach beyond its histogram range (the 0.1%–99.9% quantiles, so about "
        "0.1% of the values on each side lie out there), left bars below its low edge, right bars above its high "
        "edge, in units of the range’s width; hover for the counts."
    )
    return {"data": data, "layout": layout, "caption": text}


# ---------------------------------------------------------------- one channel (charts/featuremap.js)


def channel_figure(fm: dict) -> Fig:
    """One channel of one tap at full resolution, with a colour bar."""
    h, w = fm["shape"]
    data = [
        {
            "type": "heatmap",
            "z": fm["values"],
            "zmin": fm["vmin"],
            "zmax": fm["vmax"],
            "colorscale": "Viridis",
            "colorbar": {"title": {"text": "activation", "side": "right"}, "thickness": 12},
            "hovertemplate": "row %{y}, col %{x}<br>value %{z:.4g}<extra></extra>",
        }
    ]
    layout = base_layout(
        margin={"l": 40, "r": 8, "t": 28, "b": 32},
        title={"text": f"{fm['tap']} · channel {fm['channel']} · {h}×{w}", "font": {"size": 12}, "x": 0.02},
        xaxis={"range": [-0.5, w - 0.5], "constrain": "domain", "showgrid": False, "zeroline": False},
        yaxis={
            "range": [h - 0.5, -0.5],
            "scaleanchor": "x",
            "constrain": "domain",
            "showgrid": False,
            "zeroline": False,
        },
        images=[],
    )
    flat = [v for row in fm["values"] for v in row]
    zeros = sum(1 for v in flat if v == 0) / len(flat)
    mean = sum(flat) / len(flat)
    text = (
        f"Channel {fm['channel']} of {fm['tap']} at full resolution ({'×'.join(map(str, fm['shape']))}), its own "
        f"colour scale {num(fm['vmin'])} to {num(fm['vmax'])}; mean {num(mean)}, {pct(zeros)} zeros. "
    )
    text += "Bright pixels are where this filter responds."
    return {"data": data, "layout": layout, "caption": text}


# ---------------------------------------------------------------- batch norm (charts/batchnorm.js)


def bn_choice(analysis: dict, sel: Selection) -> tuple[dict, int]:
    """The BN layer and channel the batch-norm chart shows."""
    bn_ids = {b["id"] for b in analysis["batchnorm"]}
    layer = nearest_layer(analysis, sel, lambda t: t["id"] in bn_ids)
    bn = next(b for b in analysis["batchnorm"] if b["id"] == layer["id"])  # type: ignore[index]
    c = sel.channel if sel.channel is not None and sel.channel < bn["channels"] else 0
    return bn, c


def bn_figure(analysis: dict, sel: Selection) -> Fig:
    """Before/after histograms of the chosen BN layer, with the transform of one channel previewed."""
    bn, c = bn_choice(analysis, sel)
    mu, variance = bn["used_mean"][c], bn["used_var"][c]
    eps, gamma, beta = bn["eps"], bn["gamma"][c], bn["beta"][c]
    denom = math.sqrt(variance + eps)
    before, after = bn["before"]["histogram"], bn["after"]["histogram"]
    edges = [gamma * (x - mu) / denom + beta for x in before["edges"]]
    counts = list(before["counts"])
    if gamma < 0:
        edges, counts = edges[::-1], counts[::-1]
    data = [
        {**histogram_trace(before, f"before: {bn['input']}", KIND_COLORS["conv"]), "showlegend": True},
        {
            **histogram_trace(after, f"after: {bn['id']} (actual)", KIND_COLORS["bn"], xaxis="x2", yaxis="y2"),
            "showlegend": True,
        },
        {
            "type": "scatter",
            "mode": "lines",
            "line": {"shape": "hvh", "color": RUN_COLORS["current"], "width": 1.5},
            "xaxis": "x2",
            "yaxis": "y2",
            "name": f"preview: the left histogram through steps 3–4 with channel {c}'s μ, σ² "
            f"(γ={num(gamma)}, β={num(beta)}, ε={num(eps)})",
            "x": bin_centres(edges),
            "y": counts,
            "hovertemplate": "preview<br>x ≈ %{x:.4g}<br>count %{y}<extra></extra>",
        },
    ]
    note = {
        "xref": "paper",
        "yref": "paper",
        "y": 1.01,
        "yanchor": "bottom",
        "showarrow": False,
        "xanchor": "left",
        "font": {"size": 12},
    }
    layout = base_layout(
        showlegend=True,
        legend={"orientation": "h", "y": -0.16, "yanchor": "top", "x": 0, "font": {"size": 11}},
        margin={"l": 56, "r": 16, "t": 40, "b": 70},
        bargap=0,
        grid={"rows": 1, "columns": 2, "pattern": "independent"},
        xaxis=axis("value entering BN", domain=[0, 0.47]),
        yaxis=axis("count"),
        xaxis2=axis("value after BN", domain=[0.53, 1]),
        yaxis2=axis("", anchor="x2"),
        annotations=[
            {**note, "text": f"<b>Before BN</b>: {bn['input']}, all channels", "x": 0},
            {**note, "text": f"<b>After BN</b>: {bn['id']}, all channels", "x": 0.53},
            {
                "text": f"black line: one channel's transform (channel {c}) applied to every channel;<br>"
                "it need not sit on the orange bars, which BN made channel by channel",
                "xref": "paper",
                "yref": "paper",
                "x": 1,
                "y": 0.98,
                "xanchor": "right",
                "yanchor": "top",
                "align": "right",
                "showarrow": False,
                "font": {"size": 10, "color": "#444"},
                "bgcolor": "rgba(255,255,255,0.8)",
            },
        ],
    )
    b, a = hist_moments(before), hist_moments(after)
    how = (
        "batch statistics of this image: μ_B, σ_B² over N×H×W"
        if bn["mode"] == "batch"
        else "running statistics, as at inference"
    )
    text = f"Left, the conv output entering {bn['id']}; right, what BN made of it ({how}). "
    text += (
        f"Within the histogram ranges the std goes from {num(b['std'])} to {num(a['std'])} and the mean from "
        f"{num(b['mean'])} to {num(a['mean'])}. "
    )
    text += (
        f"The black line maps the left histogram through step 3–4 with channel {c}'s μ and σ² and the layer's γ, β, ε; "
    )
    text += (
        "all channels are pooled here, so it illustrates the transform rather than reproducing the per-channel result."
    )
    return {"data": data, "layout": layout, "caption": text}


# ---------------------------------------------------------------- gradients (charts/gradients.js)

_RUNS = (
    ("residual", "all shortcuts on (residual)", "solid"),
    ("plain", "all shortcuts off (plain)", "dash"),
    ("current", "current switches", "dot"),
)


def _block_highlight(ids: list[str], block: str) -> list[dict]:
    if block not in ids:
        return []
    i = ids.index(block)
    return [
        {
            "type": "rect",
            "xref": "x",
            "yref": "paper",
            "x0": i - 0.5,
            "x1": i + 0.5,
            "y0": 0,
            "y1": 1,
            "fillcolor": SELECTION_COLOR,
            "line": {"width": 0},
            "layer": "below",
        }
    ]


def log_ticks(values: Iterable[float | None]) -> dict:
    """Log-axis ticks at 1, 2, 5 x 10^k (only 10^k over more than two decades), labelled plainly."""
    v = [x for x in values if x is not None and x > 0 and math.isfinite(x)]
    if not v:
        return {}
    lo, hi = math.log10(min(v)), math.log10(max(v))
    steps = [1.0] if hi - lo > 2 else [1.0, 2.0, 5.0] if hi - lo > 0.7 else [1.0, 1.5, 2.0, 3.0, 5.0, 7.0]
    tickvals = []
    for k in range(math.floor(lo), math.ceil(hi) + 1):
        for m in steps:
            t = m * 10.0**k
            if lo - 0.15 <= math.log10(t) <= hi + 0.15:
                tickvals.append(t)
    return {"tickvals": tickvals, "ticktext": [num(t, 1 if len(steps) == 1 else 2) for t in tickvals]}


def _spread(v: list[float]) -> float | None:
    return v[0] / v[-1] if v and v[-1] > 0 else None


def _class_text(target: Any, label: Any) -> str:
    t = target if isinstance(target, list) else [target]
    labels = [] if label is None else label if isinstance(label, list) else [label]
    parts = [f"{v} ({labels[i]})" if i < len(labels) and labels[i] else str(v) for i, v in enumerate(t)]
    return f"class {', '.join(parts)}"


def grad_figure(runs: dict[str, dict], sel: Selection) -> Fig:
    """Gradient norm at every block input: all shortcuts on, all off, and the current switches."""
    base = runs.get("residual") or runs.get("plain") or runs["current"]
    ids = [b["id"] for b in base["blocks"]]
    data = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": name,
            "x": list(range(len(ids))),
            "y": [b["grad_norm_in"] for b in runs[key]["blocks"]],
            "line": {"color": RUN_COLORS[key], "dash": dash, "width": 2},
            "marker": {"size": 6},
            "text": ids,
            "hovertemplate": f"%{{text}}<br>‖∂L/∂x‖ = %{{y:.3e}}<extra>{name}</extra>",
        }
        for key, name, dash in _RUNS
        if runs.get(key)
    ]
    layout = base_layout(
        showlegend=True,
        xaxis=axis(
            "block input, forward order",
            tickvals=list(range(len(ids))),
            ticktext=[_short(i) for i in ids],
            tickangle=-45,
        ),
        yaxis=axis("‖∂L/∂x‖ (log)", type="log", **log_ticks(y for t in data for y in t["y"])),
        shapes=_block_highlight(ids, sel.block),
    )
    run = runs.get("residual") or runs.get("current") or runs["plain"]
    text = (
        "L2 norm of the loss gradient at each block's input (one backward pass, cross-entropy against "
        f"{_class_text(run['target'], run.get('target_label'))}). "
    )
    parts = []
    for key, _, _ in _RUNS:
        if runs.get(key):
            s = _spread([b["grad_norm_in"] for b in runs[key]["blocks"]])
            if s is not None:
                parts.append(f"{num(s, 3)} ({'current switches' if key == 'current' else key})")
    if parts:
        text += f"Norm at {ids[0]} divided by the norm at {ids[-1]}: {', '.join(parts)}. "
    text += (
        f"The chapter’s argument: with the shortcut on, H′(x) = F′(x) + 1, so the gradient reaching {ids[0]} "
        "does not have to shrink with every block’s F′."
    )
    return {"data": data, "layout": layout, "caption": text}


def _change_text(c: float) -> str:
    return f"grows {num(c, 3)}×" if c >= 1 else f"shrinks to {num(c, 3)}×"


def sweep_figure(sweep: dict) -> Fig:
    """First-layer gradient norm against depth, residual and plain (fallback rows drawn as x and named)."""
    rows = sweep.get("rows") or []
    data = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": name,
            "x": sweep["depths"],
            "y": sweep[key],
            "connectgaps": False,
            "line": {"color": RUN_COLORS[key], "dash": dash, "width": 2},
            "marker": {"size": 8, "symbol": ["x" if r.get("fallback") else "circle" for r in rows]},
            "customdata": [r[key]["weights"] for r in rows] or None,
            "hovertemplate": f"depth %{{x}}<br>first-layer ‖∂L/∂W‖ = %{{y:.3e}}<br>weights: %{{customdata}}"
            f"<extra>{name}</extra>",
        }
        for key, name, dash in (("residual", "residual", "solid"), ("plain", "plain (shortcuts off)", "dash"))
    ]
    annotations = [
        {
            "x": r["depth"],
            "y": 1,
            "yref": "paper",
            "yanchor": "bottom",
            "showarrow": False,
            "font": {"size": 10, "color": "#a33"},
            "text": f"{r['residual']['weights']} weights",
        }
        for r in rows
        if r.get("fallback")
    ]
    layout = base_layout(
        showlegend=True,
        margin={"l": 64, "r": 16, "t": 48, "b": 44},
        xaxis=axis("depth (CIFAR ResNet-6n+2)", tickvals=sweep["depths"]),
        yaxis=axis("first-layer gradient norm (log)", type="log", **log_ticks(y for t in data for y in t["y"])),
        annotations=annotations,
    )
    n = len(sweep["depths"]) - 1
    if sweep.get("weights") == "trained":
        used = " (trained weights; the plain curve uses the plain twins)"
    else:
        used = f" ({sweep['weights']} weights)" if sweep.get("weights") else ""
    layer = f"the {sweep['layer']}" if sweep.get("layer") else "the first layer"
    text = (
        f"Gradient norm at {layer} of CIFAR ResNets of depth {', '.join(map(str, sweep['depths']))}{used}, "
        "with all shortcuts on and all off, for one probe image. "
    )

    def ratio(v: list) -> float | None:
        return v[n] / v[0] if _finite(v[0]) and _finite(v[n]) and v[0] > 0 else None

    r, p = ratio(sweep["residual"]), ratio(sweep["plain"])
    if n > 0 and r is not None and p is not None:
        text += (
            f"From depth {sweep['depths'][0]} to {sweep['depths'][n]} it {_change_text(r)} with shortcuts and "
            f"{_change_text(p)} without. "
        )
    fallback = [row for row in rows if row.get("fallback")]
    if fallback:
        text += (
            f"Not every depth has {sweep['weights']} weights: "
            + "; ".join(f"depth {row['depth']} ({row['note']})" for row in fallback)
            + "; those points are drawn as ×. "
        )
    elif sweep.get("weights") == "trained" and rows:
        text += (
            "Every depth uses its own trained weights: the residual nets trained with shortcuts, "
            "the plain ones trained without. "
        )
    missing = [
        r["depth"] for r in rows if not (_finite(r["residual"]["first_grad"]) and _finite(r["plain"]["first_grad"]))
    ]
    if missing:
        text += f"No number for depth {', '.join(map(str, missing))}: the gradient overflowed float32, left out. "
    if sweep.get("bn") == "running" and rows and all(row["residual"]["weights"] == "init" for row in rows):
        text += (
            "These are untrained weights whose running statistics are mean 0, variance 1, so BN does not rescale "
            "anything here; compare batch statistics."
        )
    return {"data": data, "layout": layout, "caption": text}


def lesion_figure(lesion: dict, analysis: dict, sel: Selection) -> Fig:
    """Change in the target probability with each block's residual branch removed."""
    stage_of = {b["id"]: b["stage"] for b in analysis["blocks"]}
    ids = [b["id"] for b in lesion["blocks"]]
    data = [
        {
            "type": "bar",
            "x": list(range(len(ids))),
            "y": [b["delta"] for b in lesion["blocks"]],
            "marker": {
                "color": [stage_color(stage_of.get(i) or 1) for i in ids],
                "line": {"color": ["#000" if i == sel.block else "rgba(0,0,0,0)" for i in ids], "width": 2},
            },
            "customdata": [[b["id"], b["probability"]] for b in lesion["blocks"]],
            "hovertemplate": "%{customdata[0]} lesioned<br>p = %{customdata[1]:.4f}<br>Δp = %{y:.4f}<extra></extra>",
        }
    ]
    layout = base_layout(
        xaxis=axis("lesioned block", tickvals=list(range(len(ids))), ticktext=[_short(i) for i in ids], tickangle=-45),
        yaxis=axis("Δ probability of the target class", zeroline=True, zerolinecolor="#999"),
        shapes=_block_highlight(ids, sel.block),
    )
    worst = min(lesion["blocks"], key=lambda b: b["delta"])
    best = max(lesion["blocks"], key=lambda b: b["delta"])
    text = (
        "Each bar removes one block's residual branch F (its shortcut stays, as in Veit et al. 2016) and shows the "
        f"change in the probability of {_class_text(lesion['target'], lesion.get('target_label'))} "
        f"(base p = {num(lesion['base_probability'], 3)}). "
    )
    if worst["delta"] < 0:
        text += f"The largest drop is {worst['id']} (Δp = {num(worst['delta'], 3)}). "
    if best["delta"] > 0:
        text += f"The largest rise is {best['id']} (Δp = +{num(best['delta'], 3)}). "
    text += (
        "Small bars mean the network falls back on the shortcut when that block goes; large ones, that the block "
        "is needed."
    )
    return {"data": data, "layout": layout, "caption": text}


# ---------------------------------------------------------------- residual plots (charts/residual.js)


def ratio_figure(analysis: dict, sel: Selection) -> Fig:
    """‖F(x)‖ / ‖x‖ of every block."""
    blocks = analysis["blocks"]
    ids = [b["id"] for b in blocks]
    block = current_block(analysis, sel)["id"]
    data = [
        {
            "type": "bar",
            "x": list(range(len(ids))),
            "y": [b["ratio"] for b in blocks],
            "marker": {
                "color": [stage_color(b["stage"]) for b in blocks],
                "opacity": [1 if b["gate"] > 0 else 0.45 for b in blocks],
                "line": {"color": ["#000" if i == block else "rgba(0,0,0,0)" for i in ids], "width": 2},
            },
            "customdata": [[b["id"], b["norm_f"], b["norm_x"], b["gate"], b["shortcut_kind"]] for b in blocks],
            "hovertemplate": "%{customdata[0]} (shortcut %{customdata[4]}, gate %{customdata[3]})<br>‖F(x)‖ = "
            "%{customdata[1]:.4g}<br>‖x‖ = %{customdata[2]:.4g}<br>ratio %{y:.3f}<extra></extra>",
        }
    ]
    layout = base_layout(
        xaxis=axis(
            "block, forward order", tickvals=list(range(len(ids))), ticktext=[_short(i) for i in ids], tickangle=-45
        ),
        yaxis=axis("‖F(x)‖ / ‖x‖", rangemode="tozero"),
        shapes=[
            {
                "type": "line",
                "xref": "paper",
                "x0": 0,
                "x1": 1,
                "y0": 1,
                "y1": 1,
                "line": {"color": "#888", "dash": "dot", "width": 1},
            }
        ],
    )
    with_ratio = [b for b in blocks if b["ratio"] is not None]
    r = [b["ratio"] for b in with_ratio]
    text = "How large each block’s residual F(x) = H(x) − x is next to its input x (L2 norms over the whole tensor). "
    if with_ratio:
        lo = min(with_ratio, key=lambda b: b["ratio"])
        hi = max(with_ratio, key=lambda b: b["ratio"])
        text += (
            f"Median {num(median(r), 3)}; smallest {lo['id']} ({num(lo['ratio'], 3)}), largest {hi['id']} "
            f"({num(hi['ratio'], 3)}); {sum(1 for v in r if v > 1)} of {len(r)} blocks above 1. "
        )
    text += (
        "Below 1 the identity “prediction” x dominates the block’s sum H(x) = F(x) + x and F is a correction to it; "
        "near 0 the block is close to the identity."
    )
    return {"data": data, "layout": layout, "caption": text}


def _pearson(x: list[float], y: list[float]) -> dict:
    n = min(len(x), len(y))
    mx, my = sum(x[:n]) / n, sum(y[:n]) / n
    cxy = sum((x[i] - mx) * (y[i] - my) for i in range(n))
    cxx = sum((x[i] - mx) ** 2 for i in range(n))
    cyy = sum((y[i] - my) ** 2 for i in range(n))
    r = cxy / math.sqrt(cxx * cyy) if cxx > 0 and cyy > 0 else None
    return {"r": r, "slope": cxy / cxx if cxx > 0 else None, "mx": mx, "my": my}


def scatter_figure(analysis: dict, sel: Selection) -> Fig:
    """F(x) against x, element by element, for the chosen block."""
    block = current_block(analysis, sel)
    x, f = block["sample"]["x"], block["sample"]["f"]
    fit = _pearson(x, f)
    xmin, xmax = min(x), max(x)
    data = [
        {
            "type": "scatter",
            "mode": "markers",
            "x": x,
            "y": f,
            "name": "elements",
            "marker": {"color": stage_color(block["stage"]), "size": 4, "opacity": 0.45},
            "hovertemplate": "x = %{x:.4g}<br>F(x) = %{y:.4g}<extra></extra>",
        },
        {
            "type": "scatter",
            "mode": "lines",
            "x": [xmin, xmax],
            "y": [0, 0],
            "name": "F = 0 (identity)",
            "line": {"color": "#555", "dash": "dot", "width": 1},
            "hoverinfo": "skip",
        },
    ]
    if fit["slope"] is not None:
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": f"least-squares line (slope {num(fit['slope'], 3)})",
                "x": [xmin, xmax],
                "y": [fit["my"] + fit["slope"] * (v - fit["mx"]) for v in (xmin, xmax)],
                "line": {"color": RUN_COLORS["plain"], "width": 1.5},
                "hoverinfo": "skip",
            }
        )
    layout = base_layout(
        showlegend=True,
        xaxis=axis(f"x = shortcut of {block['id']} (the identity “prediction”)"),
        yaxis=axis("residual F(x)"),
    )
    text = (
        f"A residual plot for {block['id']}: each point is one element, the shortcut value x (the identity “fitted "
        f"value”) against the residual F(x) = H(x) − x at the same position ({len(x)} sampled). "
    )
    if fit["r"] is not None:
        text += f"Correlation r = {num(fit['r'], 2)}, slope {num(fit['slope'], 3)}: "
        a = abs(fit["r"])
        if a < 0.1:
            text += "no linear trend left, as in the residual plot of a well-fitted regression. "
        elif a < 0.4:
            text += "a weak linear trend: part of F is a rescaled copy of x. "
        else:
            text += "a clear linear trend: F still carries a rescaled copy of x. "
    if block["shortcut_kind"] != "identity":
        kind = "zero-padding (option A)" if block["shortcut_kind"] == "A" else "a 1×1 projection (option B)"
        text += f"This block's shortcut is {kind}, so x is W_s x."
    return {"data": data, "layout": layout, "caption": text}


def residual_histogram_figure(analysis: dict, sel: Selection) -> Fig:
    """Distribution of the chosen block's residual F(x)."""
    block = current_block(analysis, sel)
    hist = block["residual_histogram"]
    data = [histogram_trace(hist, f"F(x) of {block['id']}", stage_color(block["stage"]))]
    layout = base_layout(
        bargap=0,
        xaxis=axis("residual F(x)"),
        yaxis=axis("count"),
        shapes=[
            {
                "type": "line",
                "xref": "x",
                "yref": "paper",
                "x0": 0,
                "x1": 0,
                "y0": 0,
                "y1": 1,
                "line": {"color": "#555", "dash": "dot", "width": 1},
            }
        ],
    )
    m = hist_moments(hist)
    neg = sum(k for i, k in enumerate(hist["counts"]) if hist["edges"][i + 1] <= 0)
    text = (
        f"Distribution of {block['id']}'s residual F(x) ({hist['sampled']} sampled values, {hist['underflow']} below "
        f"and {hist['overflow']} above the range). "
    )
    text += (
        f"Mean {num(m['mean'], 3)}, std {num(m['std'], 3)}, "
        f"{pct((neg + hist['underflow']) / hist['sampled'])} negative. "
    )
    text += (
        "The chapter’s point: when the identity is nearly right, the layers only have to push F towards 0, which is "
        "easier than learning H(x) = x."
    )
    return {"data": data, "layout": layout, "caption": text}


# ---------------------------------------------------------------- prediction (charts/prediction.js)


IMAGENET_NAMES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


def untrained_warning(model: dict) -> str | None:
    """The untrained-weights warning for a prediction (None for trained or imported weights); as prediction.js."""
    if model.get("weights") != "init":
        return None
    name = model["name"]
    if model.get("family") == "imagenet" or name in IMAGENET_NAMES:
        return (
            f"He-init weights: the prediction means nothing; `resviz weights fetch {name}` or import torchvision's "
            f"file (`resviz weights import FILE.pth --model {name} --as imagenet`)."
        )
    return (
        "He-init weights: the prediction means nothing; choose the trained weights "
        f"(the default for {name}) to see what the network learned."
    )


def prediction_figure(analysis: dict) -> Fig:
    """Top-5 softmax probabilities as horizontal bars."""
    top = analysis["prediction"][0]["top"]
    rows = top[::-1]
    data = [
        {
            "type": "bar",
            "orientation": "h",
            "x": [t["probability"] for t in rows],
            "y": [f"{t['label']} " for t in rows],
            "text": [pct(t["probability"], 2) for t in rows],
            "textposition": "auto",
            "marker": {"color": STAGE_COLORS[1]},
            "customdata": [t["index"] for t in rows],
            "hovertemplate": "%{y}<br>class %{customdata}<br>p = %{x:.4f}<extra></extra>",
        }
    ]
    model = analysis["model"]
    warning = untrained_warning(model)
    layout = base_layout(
        margin={"l": 8, "r": 12, "t": 40 if warning else 8, "b": 36},
        xaxis=axis("probability", rangemode="tozero", tickformat=".2%" if top[0]["probability"] < 0.05 else ".0%"),
        yaxis={"automargin": True},
        bargap=0.25,
        annotations=[
            {
                "xref": "paper",
                "yref": "paper",
                "x": 0,
                "y": 1,
                "yanchor": "bottom",
                "xanchor": "left",
                "showarrow": False,
                "align": "left",
                "bgcolor": "#fff4e5",
                "bordercolor": "#d9822b",
                "borderpad": 3,
                "font": {"size": 11, "color": "#8a4b0f"},
                "text": "⚠ He-init weights: the prediction means nothing",
            }
        ]
        if warning
        else [],
    )
    n = model.get("num_classes") or (10 if model.get("family") == "cifar" else 1000)
    p1 = top[0]["probability"]
    uniform = 1 / n
    margin = p1 / top[1]["probability"] if len(top) > 1 and top[1]["probability"] > 0 else None
    text = f"{warning} " if warning else ""
    text += f"Top-5 softmax probabilities of {model['name']} ({model['weights']} weights, {n} classes). "
    text += f"The top class, “{top[0]['label']}”, has p = {num(p1, 3)}, {num(p1 / uniform, 3)}× the uniform 1/{n}"
    text += f" and {num(margin, 3)}× the runner-up." if margin else "."
    if p1 < 5 * uniform:
        text += " That is close to uniform: these weights do not single out a class for this image."
    return {"data": data, "layout": layout, "caption": text}


# ---------------------------------------------------------------- dispatch


def build_figure(chart: str, data: dict, sel: Selection) -> Fig:
    """The figure of ``chart`` from the JSON gathered for it (keys: analysis, featuremap, runs, lesion, sweep)."""
    a = data.get("analysis")
    builders: dict[str, Callable[[], Fig]] = {
        "activations": lambda: depth_figure(a, sel),
        "histogram": lambda: histogram_figure(a, sel),
        "heatmap": lambda: heatmap_figure(a, sel),
        "featuremaps": lambda: channel_figure(data["featuremap"]),
        "batchnorm": lambda: bn_figure(a, sel),
        "gradients": lambda: grad_figure(data["runs"], sel),
        "depth-sweep": lambda: sweep_figure(data["sweep"]),
        "lesion": lambda: lesion_figure(data["lesion"], a, sel),
        "residuals": lambda: ratio_figure(a, sel),
        "residual-scatter": lambda: scatter_figure(a, sel),
        "residual-histogram": lambda: residual_histogram_figure(a, sel),
        "prediction": lambda: prediction_figure(a),
    }
    if chart not in builders:
        raise KeyError(f"unknown chart {chart!r}")
    return builders[chart]()
