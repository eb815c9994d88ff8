"""Answers about the server and its resources: health, models, images, the lab, chapter, regression, exports."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from app.api.schemas.common import ExportJob, Num, Open

# ---------------------------------------------------------------- health


class Health(Open):
    """Liveness."""

    status: str = Field(description="Always `ok` while the process answers.")


class CacheInfo(Open):
    """A byte-bounded LRU cache."""

    entries: int
    bytes: int
    max_bytes: int
    hits: int
    misses: int
    evictions: int


class GateInfo(Open):
    """The admission gate: graph slots and the queue in front of them."""

    slots: int = Field(description="Graph runs at once.")
    running: int
    queued: int
    queue_length: int = Field(description="Requests that may wait; past it, 503.")
    max_wait_s: float = Field(description="Longest estimated wait accepted before a 503.")
    completed: int
    rejected: int
    dropped: int = Field(description="Jobs dropped because their client left.")
    shared: int = Field(description="Requests answered by a job already running for an identical request.")


class Readiness(Open):
    """Readiness: models loaded, queue and caches."""

    status: str = Field(description="`warming` while the default models open, then `ready`.")
    providers: list[str] = Field(description="ONNX Runtime execution providers in use.")
    models_loaded: list[str] = Field(description="`name@weights` of every model opened so far.")
    gate: GateInfo
    cache: CacheInfo = Field(description="Finished answers (gzipped).")
    taps_cache: CacheInfo = Field(description="Full tap tensors kept for feature-map clicks.")


# ---------------------------------------------------------------- models


class ModelRow(Open):
    """One model of the family, counted from its definition."""

    name: str
    family: str = Field(description="`imagenet` or `cifar`.")
    depth: int
    block: str = Field(description="`basic` or `bottleneck`.")
    blocks: int = Field(description="Residual blocks.")
    stages: list[int] = Field(description="Blocks per stage.")
    input_size: int = Field(description="Side of the square input, in pixels.")
    num_classes: int
    shortcut: str = Field(description="Projection option of the paper: `A` (zero padding) or `B` (1x1 conv).")
    params: int
    macs: int = Field(description="Multiply-accumulates of one forward pass.")
    weights: list[str] = Field(description="Weights variants available.")
    exported: bool = Field(description="Whether graphs of this model are on disk.")


class ManifestBlock(Open):
    """A residual block of the manifest: the taps it reads and writes."""

    id: str
    stage: int
    index: int
    input: str = Field(description="Tap id of the block's input x.")
    residual: str = Field(description="Tap id of the residual branch F(x).")
    shortcut: str = Field(description="Tap id of the shortcut S(x).")
    output: str = Field(description="Tap id of the output H = relu(F(x) + g S(x)).")
    shortcut_kind: str = Field(description="`identity`, or the projection option of the paper, `A` or `B`.")


class Tap(Open):
    """A tensor the graphs expose."""

    id: str
    kind: str = Field(description="`stem`, `conv`, `bn` or `block`.")
    shape: list[int] = Field(description="Shape of one image's tensor (C, H, W).")


class Manifest(Open):
    """What was exported for one model and weights: blocks, taps, BN layers, layers, graphs, preprocessing."""

    format: int = Field(description="Manifest format version.")
    name: str
    family: str
    depth: int
    block: str
    blocks: list[ManifestBlock]
    stages: list[int]
    input_size: int
    num_classes: int
    params: int
    macs: int
    weights: dict[str, Any] = Field(description="`variant`, `source` and the weights file's `sha256`.")
    preprocessing: dict[str, Any] = Field(description="`resize_shorter`, `crop`, per-channel `mean` and `std`.")
    classes: str = Field(description="Label set: `cifar10`, `imagenet` or the generated set's.")
    class_names: list[str]
    inputs: dict[str, list[int | None]] = Field(description="Input shapes of every graph (null: any size).")
    taps: list[Tap]
    batchnorm: list[dict[str, Any]] = Field(description="Every BN layer: input tap, channels, eps, parameters.")
    layers: list[dict[str, Any]] = Field(description="Every conv and fc layer: channels, kernel, stride, counts.")
    graphs: dict[str, dict[str, Any]] = Field(description="Exported graph kinds: file, bytes, export seconds.")


# ---------------------------------------------------------------- images


class StoredImage(Open):
    """An uploaded image, stored by its sha256."""

    id: str = Field(description="sha256 of the bytes: the key to reach the image.")
    width: int
    height: int
    bytes: int
    created: bool = Field(description="False when these bytes were stored already.")


class ImageEntry(Open):
    """A stored image as the operator sees it."""

    id: str
    bytes: int
    name: str = Field(description="Original file name (shown only to the operator).")
    stored_at: float | None = Field(description="Unix time of the upload.")
    pinned: bool


class StoreStats(Open):
    """The image store's use."""

    images: int
    bytes: int
    pinned_images: int
    pinned_bytes: int
    max_bytes: int = Field(description="Budget: past it the oldest unpinned images are evicted.")


class PinState(Open):
    """An image's pin."""

    id: str
    pinned: bool
    created: bool | None = Field(None, description="Whether the pin was new (pinning only).")


class Deleted(Open):
    """A removed image."""

    id: str
    deleted: bool


# ---------------------------------------------------------------- lab, chapter, regression, exports


class TrainingRun(Open):
    """One shipped training run."""

    model: str
    depth: int
    plain: bool = Field(description="Trained with every shortcut gate at 0.")
    steps: int
    batch_size: int
    loss: list[Num]
    accuracy: list[Num]
    loss_smooth: list[Num] = Field(description="Moving average over 25 steps (the curve drawn).")
    accuracy_smooth: list[Num]
    final_train_loss: Num
    final_train_accuracy: Num
    held_out_accuracy: float
    wall_time_s: float
    lr_schedule: dict[str, Any]
    seed: int


class LabTraining(Open):
    """Training curves of the shipped plain and residual CIFAR nets, and what they show."""

    runs: list[TrainingRun]
    findings: list[str] = Field(description="Plain-language findings computed from the logs.")


class Fig7Series(Open):
    """Response std of each 3x3 layer of one shipped net."""

    model: str
    depth: int
    plain: bool
    weights: str
    layers: list[str] = Field(description="BN ids, in depth order.")
    std: list[Num]
    std_sorted: list[float] = Field(description="The finite stds, largest first.")
    std_mean: Num


class Fig7(Open):
    """The paper's Fig. 7 for the shipped models."""

    bn: str
    images: int = Field(description="Probe images used (one per class of the generated set).")
    series: list[Fig7Series]


class LandscapeRise(Open):
    """The loss on a circle (or at both ends of the slice) of one radius, minus the loss at the centre."""

    radius: float
    mean: Num = Field(description="Mean over the circle (bilinear interpolation at 72 angles): the captions' number.")
    max: Num = Field(description="Maximum over the circle.")


class LandscapeSummary(Open):
    """The numbers of one shipped loss surface (Li et al. 2018) around a shipped CIFAR network."""

    surface: str = Field(description="`resnet56-residual` or `resnet56-plain`.")
    model: str
    depth: int | None
    weights: str | None = Field(description="`trained` (the ResNet) or `plain` (its twin, every shortcut gate 0).")
    plain: bool
    grid: int | None = Field(description="Points per side of the 2-D grid.")
    span: float | None = Field(description="a and b run over [-span, span].")
    images: int | None = Field(description="Training images each loss is the mean over.")
    seed: int | None = Field(description="Seed of the two random directions.")
    command: str | None = Field(description="The `resviz landscape` command that made the file.")
    wall_time_s: float | None
    seconds_per_point: float | None
    centre_loss: Num = Field(description="Training loss of the shipped weights (a = b = 0).")
    centre_accuracy: Num
    held_out_accuracy: Num = Field(description="The shipped run's held-out accuracy (its training log).")
    rise_05: LandscapeRise = Field(description="Loss rise on the circle of radius 0.5.")
    rise_10: LandscapeRise = Field(description="Loss rise on the circle of radius 1.0.")
    slice_rise_05: dict[str, Any] = Field(description="Rise at a = +-0.5 on the 1-D slice (mean, max).")
    slice_rise_10: dict[str, Any]
    local_minima: int | None = Field(description="Interior grid points strictly below their 8 neighbours.")
    centre_is_minimum: bool | None
    eig_ratio: Num = Field(
        description="|lambda_min| / lambda_max of the Hessian of a quadratic fit near the centre for a negative "
        "lambda_min, 0 when both eigenvalues are positive (locally convex), null with no positive eigenvalue."
    )
    eigenvalues: list[float] | None
    convex: bool | None
    fit_radius: Num = Field(description="Radius of the points the quadratic was fitted to.")
    fit_points: int | None
    max_loss: Num
    non_finite_points: int | None = Field(description="Grid points whose loss overflowed float32 (null in the grid).")
    bn_statistics: str = Field(description="`shipped`, or `re-estimated` where the shipped ones give no finite loss.")
    current: bool = Field(description="Whether the surface was computed for the weights shipped now (sha256).")


class LandscapeList(Open):
    """Every shipped loss surface's numbers (no grids)."""

    surfaces: list[LandscapeSummary]
    models: list[str] = Field(description="Models with a shipped surface.")


class LandscapeSlice(Open):
    """The 1-D slice theta + a d1."""

    alpha: list[float]
    loss: list[Num]
    log10_loss: list[Num]
    accuracy: list[Num]


class LandscapeSurface(LandscapeSummary):
    """One surface with its grids: rows are b (d2), columns a (d1), both over ``coords``."""

    coords: list[float]
    loss: list[list[Num]]
    log10_loss: list[list[Num]] = Field(description="log10 of the loss (the contours' and surfaces' z).")
    accuracy: list[list[Num]] | None
    local_minima_at: list[list[float]] = Field(description="(a, b) of every strict local minimum of the grid.")
    slice: LandscapeSlice


class LandscapeRange(Open):
    """One range for both surfaces of a depth (the same colour scale)."""

    quantity: str
    min: Num
    max: Num


class LandscapePair(Open):
    """The residual and plain surfaces of one depth, on one colour scale, and how they compare."""

    model: str
    depth: int | None
    residual: LandscapeSurface | None
    plain: LandscapeSurface | None
    colour: LandscapeRange = Field(description="log10 loss range over both grids: every contour's zmin and zmax.")
    slice_range: LandscapeRange
    comparison: dict[str, Any] | None = Field(
        description="Plain against residual: ratios of the mean rises at 0.5 and 1.0, which has more local minima."
    )
    notes: list[str] = Field(description="What the numbers cannot say: re-estimated BN statistics, overflow, stale.")


class Chapter(Open):
    """Every figure and worked example of the chapter, computed from the layer definitions."""

    basic_block_params: int
    bottleneck_block_params: int
    block_params: dict[str, Any]
    stacked_3x3: list[dict[str, Any]]
    output_size_demo: dict[str, Any] = Field(description="The n-4 demo for the requested input side `n`.")
    layer_count: dict[str, dict[str, Any]] = Field(description="By depth: the weight layers counted two ways.")
    table_5_1: dict[str, Any] = Field(description="Table 5-1, ImageNet and CIFAR.")
    cifar_table: list[dict[str, Any]]
    vgg19_vs_resnet34: dict[str, Any]


class Dataset(Open):
    """A generated demo data set of the residual-analysis page."""

    name: str
    description: str
    shows: str = Field(description="The diagnostic the data set is made to trigger (`none` for the clean one).")
    default_degree: int


class Regression(Open):
    """A fitted regression, its diagnostics and the residual plots' data."""

    source: dict[str, str] = Field(description="`kind` (`upload` or `dataset`) and `name`.")
    columns: list[str]
    n: int
    model: dict[str, Any] = Field(description="Fit: columns, degree, coefficients, equation, R², F-test.")
    observed: list[Num]
    fitted: list[Num]
    residuals: list[Num]
    diagnostics: dict[str, dict[str, Any]] = Field(description="Normality, constant variance, curvature, independence.")
    problems: list[str] = Field(description="Diagnostics that flagged a problem.")
    alpha: float
    plots: dict[str, Any]


class Exports(Open):
    """Background exports: pending (running first) and recently finished."""

    pending: list[ExportJob]
    recent: list[ExportJob]
    busy: bool
    on_demand: bool = Field(description="Whether a request for a missing graph queues its export.")
