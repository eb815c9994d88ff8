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
LANDSCAPE = "GET /api/lab/landscapes/{model}"


LANDSCAPE_SHOWS = "the shipped residual and plain weights, BN running statistics (models/landscapes/)"


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
    page: str = "/"  # the page that shows it (the Explore page, or /lab)
    describes: str = ""  # what it always shows, for charts that take no weights, gates or BN mode from the link

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
        *(
            Chart(
                f"landscape-{kind}",
                title,
                "",
                f"chart-landscape-{kind}",
                (LANDSCAPE,),
                (),
                False,
                "/lab",
                LANDSCAPE_SHOWS,
            )
            for kind, title in (
                ("contour", "Loss landscape contours with and without shortcuts (Li et al. 2018)"),
                ("surface", "Loss landscape in 3-D with and without shortcuts"),
                ("slice", "Loss along one random direction with and without shortcuts"),
            )
        ),
    )
}


@dataclass
class Selection:
    """What a link asks to show (empty / None: the main page's defaults)."""

    layer: str = ""
    block: str = ""
    channel: int | None = None
    range: str = "common"


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
