"""The chart catalogue: every embeddable chart, the API answers it reads, and which of them a link selects.

The figures themselves are built in one place, the browser's ``static/js/charts/*.js``: the Explore
page, ``/embed/{chart}`` and the standalone export (``app/lecture/standalone.py``, which inlines
those modules) all draw with them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from app.runtime.explain import SAMPLES, STEPS
from app.specs import CAM_METHODS, INPUT_METHODS

ANALYZE = "POST /api/models/{model}/analyze"
FEATUREMAP = "GET /api/models/{model}/featuremap"
GRADIENTS = "POST /api/models/{model}/gradients"
LESION = "POST /api/models/{model}/lesion"
SWEEP = "GET /api/gradients/depth-sweep"
EXPLAIN = "POST /api/models/{model}/explain"
SHATTERED = "GET /api/lab/shattered"

# The explain endpoint's methods (app.specs): four class activation maps at a layer, three attributions at
# the input (static/js/charts/explain.js: METHODS). Links are checked against these before anything is drawn.
EXPLAIN_METHODS = (*CAM_METHODS, *INPUT_METHODS)
EXPLAIN_DEFAULTS = {"method": CAM_METHODS[0], "opacity": 0.5, "samples": SAMPLES[2], "steps": STEPS[2]}
EXPLAIN_PARAMS = ("method", "target", "samples", "steps")  # what an explain link adds to layer/block
EXPLAIN_CHARTS = ("explain", "explain-strip")
LANDSCAPE = "GET /api/lab/landscapes/{model}"


LANDSCAPE_SHOWS = "the shipped residual and plain weights, BN running statistics (models/landscapes/)"
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
        Chart(
            "explain",
            "Class activation map over the input",
            "explanations",
            "chart-explain",
            (EXPLAIN,),
            ("layer", "block", *EXPLAIN_PARAMS, "opacity"),
        ),
        Chart(
            "explain-strip",
            "Every layer's class activation map, shortcuts on and off",
            "explanations",
            "chart-explain-strip",
            (EXPLAIN,),
            ("layer", "block", *EXPLAIN_PARAMS),
        ),
        # The lab's shattered-gradients study (shipped results); the link's model picks the depth (20, 56, 110).
        *(
            Chart(f"shattered-{key}", title, "", f"chart-shattered-{key}", (SHATTERED,), (), image=False, page="/lab")
            for key, title in (
                ("traces", "Shattered gradients: the input gradient along a line, ResNet and plain"),
                ("autocorr", "Shattered gradients: autocorrelation of the input gradient"),
                ("spectra", "Shattered gradients: power spectrum of the input gradient (log-log slopes)"),
            )
        ),
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
    # the explanations: method, target class (None: the predicted one), map opacity, SmoothGrad n, IG m
    method: str = EXPLAIN_DEFAULTS["method"]
    target: int | None = None
    opacity: float = EXPLAIN_DEFAULTS["opacity"]
    samples: int = EXPLAIN_DEFAULTS["samples"]
    steps: int = EXPLAIN_DEFAULTS["steps"]

    def explain_fields(self) -> dict:
        """The explanation's part of the selection, as the charts' builders read it."""
        return {k: getattr(self, k) for k in ("method", "target", "opacity", "samples", "steps")}


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


def explain_layer_ids(manifest: dict) -> list[str]:
    """The layers an explanation can be asked at: the stem's last tap, then every block (``explainLayerIds``)."""
    stem = [t["id"] for t in manifest["taps"] if t["kind"] == "stem"][-1:]
    return [*stem, *(b["id"] for b in manifest["blocks"])]


def explain_layer(manifest: dict, sel: Selection) -> str:
    """The explanation's layer, as ``explainLayer`` in static/js/charts/select.js: the link's layer or block
    where it is the stem or a block, else the last block."""
    ids = explain_layer_ids(manifest)
    for choice in (sel.layer, sel.block):
        if choice in ids:
            return choice
    return ids[-1]


def explain_options(sel: Selection, layer: str) -> dict:
    """The explain request of a selection at ``layer`` (as ``explainParams`` in static/js/charts/explain.js).

    An input method's map is at the input whatever the layer; samples and steps matter to one method each,
    the others send the defaults.
    """
    method = sel.method
    return {
        "method": method,
        "layer": layer if method in CAM_METHODS else "input",
        "target": sel.target,
        "samples": sel.samples if method == "smoothgrad" else EXPLAIN_DEFAULTS["samples"],
        "steps": sel.steps if method == "ig" else EXPLAIN_DEFAULTS["steps"],
        "overlays": False,
    }


def strip_options(sel: Selection) -> dict:
    """The strips' request (``stripParams``): every layer, with the chosen CAM method or else Grad-CAM."""
    method = sel.method if sel.method in CAM_METHODS else EXPLAIN_DEFAULTS["method"]
    return explain_options(replace(sel, method=method), "all")
