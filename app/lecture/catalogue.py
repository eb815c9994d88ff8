"""The chart catalogue: every embeddable chart, the API answers it reads, and which of them a link selects.

The figures themselves are built in one place, the browser's ``static/js/charts/*.js``: the Explore
page, ``/embed/{chart}`` and the standalone export (``app/lecture/standalone.py``, which inlines
those modules) all draw with them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

ANALYZE = "POST /api/models/{model}/analyze"
FEATUREMAP = "GET /api/models/{model}/featuremap"
GRADIENTS = "POST /api/models/{model}/gradients"
LESION = "POST /api/models/{model}/lesion"
SWEEP = "GET /api/gradients/depth-sweep"
BN_CLAIMS = "GET /api/lab/bn-claims"
NORMALIZATIONS = "POST /api/models/{model}/normalizations"


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
    page: str = "/"  # the page whose element draws it ("/lab": the degradation lab)

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
        Chart(
            "bn-loss",
            "Training loss with and without batch norm",
            "",
            "chart-bn-loss",
            (BN_CLAIMS,),
            (),
            image=False,
            page="/lab",
        ),
        Chart(
            "bn-gradnorms",
            "Gradient norms across depth with and without batch norm",
            "",
            "chart-bn-grads",
            (BN_CLAIMS,),
            (),
            image=False,
            page="/lab",
        ),
        Chart(
            "normalizations",
            "The normalisations side by side: histograms of one conv output",
            "",
            "chart-norms",
            (NORMALIZATIONS,),
            ("layer", "block"),
            page="/lab",
        ),
        Chart(
            "normalization-channels",
            "The normalisations side by side: per-channel mean and std",
            "",
            "chart-norm-channels",
            (NORMALIZATIONS,),
            ("layer", "block"),
            page="/lab",
        ),
    )
}
BN_CLAIMS_CHARTS = ("bn-loss", "bn-gradnorms")  # drawn from GET /api/lab/bn-claims
NORMALIZATION_CHARTS = ("normalizations", "normalization-channels")  # from POST .../normalizations


@dataclass
class Selection:
    """What a link asks to show (empty / None: the main page's defaults)."""

    layer: str = ""
    block: str = ""
    channel: int | None = None
    range: str = "common"


def norm_layer_choice(sel: Selection) -> str | None:
    """The conv layer a normalisations chart shows, as ``normLayerChoice`` in static/js/charts/bnclaims.js.

    The link's ``layer``, else its block's first conv, else None (the endpoint's default).
    """
    if sel.layer:
        return sel.layer
    return f"{sel.block}.conv1" if sel.block else None


def feature_map_choice(analysis: dict, sel: Selection) -> tuple[str, int] | None:
    """(tap, channel) the feature-map chart shows, as ``featureMapChoice`` in static/js/charts/select.js.

    An export fetches that channel's values before any script runs; the browser test comparing an
    export with its embed checks that both pick the same one.
    """
    layers = analysis["layers"]
    by_id = {t["id"]: t for t in layers}
    chosen = (
        by_id.get(sel.layer) or by_id.get(sel.block) or next((t for t in layers if t["kind"] == "block"), layers[0])
    )
    fmaps = analysis.get("feature_maps") or {}
    i = layers.index(chosen)
    order = [*range(i, -1, -1), *range(i + 1, len(layers))]
    tap = next((layers[j] for j in order if layers[j]["id"] in fmaps), None)
    if tap is None:
        return None
    channel = sel.channel
    if channel is None or channel >= tap["shape"][1]:
        channel = fmaps[tap["id"]]["channels"][0]
    return tap["id"], channel
