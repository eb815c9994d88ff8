"""Answers of the network explorer: analyses, feature maps, gradients, the lesion study, sweeps."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from app.api.schemas.common import Num, Open

# ---------------------------------------------------------------- analysis


class Stats(Open):
    """Statistics of one tensor over the batch."""

    mean: Num
    std: Num
    min: Num
    max: Num
    zero_fraction: Num = Field(description="Fraction of exact zeros (dead ReLU units after a ReLU).")
    l2: Num = Field(description="L2 norm of the whole tensor.")


class Histogram(Open):
    """A histogram of a strided sample of the tensor, on edges around its bulk."""

    edges: list[float] = Field(description="Bin edges (one more than the counts).")
    counts: list[int]
    underflow: int = Field(description="Sampled values below the first edge.")
    overflow: int = Field(description="Sampled values above the last edge.")
    sampled: int = Field(description="Values sampled in all (counts, underflow and overflow).")


class Moments(Open):
    """Moments of a histogram, for the chart's caption."""

    n: Num
    mean: Num
    std: Num
    negative: Num = Field(description="Fraction of the sample below zero.")


class ModelRef(Open):
    """Which model and weights answered."""

    name: str
    weights: str


class AnalysisModel(ModelRef):
    """The model of an analysis, with its counts."""

    family: str
    depth: int
    params: int
    macs: int
    classes: str


class AnalysisInput(Open):
    """The input as the graphs saw it."""

    shape: list[int] = Field(description="(N, 3, H, W) after preprocessing.")
    preprocessing: dict[str, Any]
    images: list[str] = Field(description="sha256 of each image, in order.")


class TopClass(Open):
    """One of the top-5 classes."""

    index: int
    label: str
    probability: float


class Prediction(Open):
    """Top-5 classes of one image."""

    top: list[TopClass]


class LayerReport(Open):
    """Statistics of one tap."""

    id: str
    kind: str
    shape: list[int] = Field(description="(N, C, H, W).")
    stats: Stats
    histogram: Histogram | None
    channel_mean: list[Num] | None = Field(None, description="Per-channel means (full analysis only).")
    channel_std: list[Num] | None = Field(None, description="Per-channel standard deviations (full analysis only).")


class ResidualFit(Open):
    """Least-squares line of F(x) against x over the block's sample (null where undefined)."""

    r: Num = Field(description="Pearson correlation of F(x) and x.")
    slope: Num
    mx: Num = Field(description="Mean of x.")
    my: Num = Field(description="Mean of F(x).")
    xmin: Num
    xmax: Num


class BlockReport(Open):
    """One residual block: the norms of x, S(x), F(x) and H, and (full analysis) its samples."""

    id: str
    stage: int
    index: int
    gate: float = Field(description="Shortcut gate g used: 1 the ResNet, 0 the plain twin.")
    shortcut_kind: str
    norm_x: Num = Field(description="||x||, the block's input.")
    norm_shortcut: Num = Field(description="||S(x)||, the shortcut's output.")
    norm_f: Num = Field(description="||F(x)||, the residual branch.")
    norm_h: Num = Field(description="||H||, the block's output.")
    ratio: Num = Field(description="||F(x)|| / ||x||: how much the block changes its input.")
    sample: dict[str, list[Num]] | None = Field(None, description="Paired samples `x` and `f` (full analysis only).")
    residual_histogram: Histogram | None = None
    fit: ResidualFit | None = None
    residual_moments: Moments | None = None


class BNSide(Open):
    """One side of a BN layer: its input (before) or output (after)."""

    stats: Stats
    histogram: Histogram | None
    moments: Moments | None = None


class BNReport(Open):
    """One batch-norm layer: parameters, the statistics it normalised with, and its input and output."""

    id: str
    input: str = Field(description="Tap id of the layer's input (a conv).")
    channels: int
    eps: float
    mode: str = Field(description="`running` or `batch`: which statistics normalised.")
    gamma: list[float]
    beta: list[float]
    running_mean: list[float]
    running_var: list[float]
    used_mean: list[Num] = Field(description="The means used: the running ones or this batch's.")
    used_var: list[Num]
    before: BNSide
    after: BNSide


class FeatureMapThumbs(Open):
    """Thumbnails of the most active channels of one tap."""

    channels: list[int]
    png: list[str] = Field(description="Base64 PNGs, one per channel, on the shared colour scale.")
    vmin: Num
    vmax: Num
    size: list[int] = Field(description="(H, W) of each map.")
    colormap: str


class ChartStats(Open):
    """Statistics the charts show, computed on the server (the browser only draws)."""

    ratios: dict[str, Any] = Field(description="||F||/||x|| over the blocks: median, count above 1, extremes.")
    heatmap: dict[str, Any] | None = Field(
        None, description="Every layer's histogram rebinned on one grid: `lo`, `hi`, `bins`, `rows`, `tails`."
    )
    depth: dict[str, Any] | None = Field(None, description="First against last block std, BN extremes.")


class Analysis(Open):
    """An analysis: prediction, statistics of every tap, batch norm, blocks, feature maps.

    With ``sections=summary`` the answer stops after ``notes``/``timings_ms`` (no ``batchnorm`` nor
    ``feature_maps``, lighter ``layers`` and ``blocks``); the full answer follows from the same request
    without ``sections``.
    """

    sections: str = Field(description="`all` or `summary`.")
    model: AnalysisModel
    input: AnalysisInput
    gates: list[float]
    bn: str
    bn_untrained: bool = Field(description="True when the running statistics are the untrained ones (mean 0, var 1).")
    prediction: list[Prediction] = Field(description="One per image.")
    layers: list[LayerReport]
    blocks: list[BlockReport]
    notes: list[str] = Field(description="Caveats about this answer, in words.")
    timings_ms: dict[str, float]
    batchnorm: list[BNReport] | None = Field(None, description="Full analysis only.")
    feature_maps: dict[str, FeatureMapThumbs] | None = Field(None, description="By tap id (full analysis only).")
    chart_stats: ChartStats


class FeatureMap(Open):
    """One channel of one tap at full resolution."""

    tap: str
    channel: int
    image: int = Field(description="Index of the image in the batch.")
    shape: list[int] = Field(description="(H, W).")
    values: list[list[Num]]
    vmin: Num
    vmax: Num
    summary: dict[str, Num] = Field(description="`mean` and `zero_fraction` of the map.")
    image_sha256: str


# ---------------------------------------------------------------- gradients


class GradModel(ModelRef):
    """The model of a gradient answer."""

    depth: int


class BlockGradient(Open):
    """||dL/dx|| into and out of one block."""

    id: str
    stage: int
    gate: float
    grad_norm_in: Num = Field(description="||dL/dx|| at the block's input.")
    grad_norm_out: Num = Field(description="||dL/dH|| at the block's output.")


class LayerGradient(Open):
    """Gradient norms of one layer."""

    id: str
    kind: str
    weight_grad_norm: Num = Field(description="||dL/dW||.")
    activation_grad_norm: Num = Field(description="||dL/dy|| at the layer's output.")


class GradientSummary(Open):
    """First against last conv: the collapse in one number."""

    first_layer: str
    last_layer: str
    first_grad: Num
    last_grad: Num
    first_over_last: Num


class Gradients(Open):
    """Cross-entropy loss to the target class and the gradient norms it sends back through the network."""

    model: GradModel
    loss: Num
    target: list[int] = Field(description="Target class of each image.")
    target_label: list[str]
    target_source: str = Field(description="`predicted top-1` or `chosen`.")
    gates: list[float]
    bn: str
    blocks: list[BlockGradient]
    layers: list[LayerGradient]
    summary: GradientSummary
    notes: list[str]
    images: list[str] = Field(description="sha256 of each image.")
    spread: Num = Field(description="Largest over smallest block gradient norm (the chart's caption).")


class LesionBlock(Open):
    """The target probability with one residual branch removed."""

    id: str
    stage: int
    probability: float
    delta: float = Field(description="Change from the intact network's probability.")


class Lesion(Open):
    """The lesion study (Veit et al. 2016): each residual branch removed in turn."""

    notes: list[str]
    model: ModelRef
    target: int
    target_label: str
    base_probability: float = Field(description="Target probability of the intact network.")
    bn: str
    blocks: list[LesionBlock]


class SweepRow(Open):
    """One depth of the sweep: the residual net and its plain twin."""

    depth: int
    model: str
    fallback: bool = Field(description="True when a variant was missing and another stood in (see `note`).")
    note: str | None
    residual: dict[str, Any] | None = Field(description="`weights`, `first_grad`, `loss`, `target_label`, `sha256`.")
    plain: dict[str, Any] | None
    source: str = Field(description="`precomputed` (shipped file) or `computed`.")


class DepthSweep(Open):
    """First-layer gradient norm against depth, residual and plain."""

    notes: list[str]
    bn: str
    weights: str
    layer: str = Field(description="Which gradient the numbers are.")
    source: str
    depths: list[int]
    residual: list[Num]
    plain: list[Num]
    fallbacks: list[int] = Field(description="Depths where a variant stood in for a missing one.")
    rows: list[SweepRow]


class CollapseRow(Open):
    """||dL/dW|| of the first and last conv, every shortcut on and every shortcut off."""

    model: str
    depth: int
    weights: str
    bn: str
    first_layer: str
    last_layer: str
    on_first: Num
    on_last: Num
    off_first: Num
    off_last: Num
    first_drop: Num = Field(description="on_first / off_first: how much removing the shortcuts starves layer 1.")
    verdict: str | None


class CollapseTable(Open):
    """The on/off collapse table on the built-in samples of the generated set."""

    bn: str
    images: list[str] = Field(description="Names of the samples used.")
    rows: list[CollapseRow]


# ---------------------------------------------------------------- class activation and saliency maps


class ExplainLayer(Open):
    """One layer's map: at the layer's own resolution, before upsampling and before any normalisation."""

    layer: str = Field(description="The layer id: the stem's tap (`relu`, `maxpool`), a block (`layer3.8`) or `input`.")
    stage: int = Field(description="The layer's stage (0 for the stem and the input).")
    map_shape: list[int] = Field(description="[h, w] of the map.")
    map: list[list[Num]] = Field(description="The map, row by row (null where it is not finite).")
    range: list[Num] = Field(description="[min, max] of the map's finite values.")
    overlay_png: str | None = Field(
        description="The map upsampled bilinearly to the input, normalised by its range, coloured (viridis) and "
        "blended at 0.5 over the input, as a PNG data URI; null when `overlays=false` with `layer=all`."
    )


class Explanation(Open):
    """A class activation map (Grad-CAM, Grad-CAM++, HiResCAM, LayerCAM) or a saliency map (saliency, SmoothGrad,
    integrated gradients) of one image for the class score S = logits[target] (before the softmax)."""

    model: GradModel
    method: str = Field(description="`gradcam`, `gradcampp`, `hirescam`, `layercam`, `saliency`, `smoothgrad` or `ig`.")
    target: int = Field(description="The class whose score is explained.")
    target_label: str
    target_source: str = Field(description="`predicted top-1` or `chosen`.")
    probability: Num = Field(description="Softmax probability of the target class.")
    score: Num = Field(description="The target class's logit S (the score the maps explain).")
    gates: list[float]
    bn: str
    input_shape: list[int] = Field(description="[H, W] of the model's input.")
    input_png: str | None = Field(
        description="The model's input as the network sees it (the un-normalised crop), PNG; "
        "null when `overlays=false` with `layer=all`."
    )
    layer: str = Field(description="The layer id, `input` for saliency, smoothgrad and ig, or `all`.")
    map_shape: list[int] | None = Field(None, description="A single layer's [h, w] (absent for `all`).")
    map: list[list[Num]] | None = Field(None, description="A single layer's map (absent for `all`).")
    range: list[Num] | None = Field(None, description="A single layer's [min, max] (absent for `all`).")
    overlay_png: str | None = Field(None, description="A single layer's overlay (absent for `all`).")
    layers: list[ExplainLayer] = Field(
        description="One entry for a single layer; for `all`, the stem and every block in forward order."
    )
    params: dict[str, Any] = Field(
        description="Method parameters used: SmoothGrad's `samples`, `sigma`, `seed`; integrated gradients' `steps` "
        "and `completeness` (the attributions' sum against S(x) - S(baseline))."
    )
    colormap: str
    image: str = Field(description="sha256 of the image.")
    notes: list[str]
