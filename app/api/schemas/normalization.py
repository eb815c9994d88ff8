"""Answers about normalisation: the methods side by side on one conv output, and batch norm's claims measured."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from app.api.schemas.common import Num, Open


class Histogram(Open):
    """Counts of one image's normalised values in the answer's shared bins (``edges``)."""

    counts: list[int]
    underflow: int = Field(description="Finite values below the first edge.")
    overflow: int = Field(description="Finite values above the last edge.")
    nonfinite: int = Field(description="Values that are NaN or infinite (left out).")


class BeforeHistogram(Histogram):
    """The conv output's own histogram, on bins of its own range."""

    edges: list[float]


class ImageSummary(Open):
    """One image's values: per channel and overall."""

    channel_mean: list[Num] = Field(description="Per-channel mean over H, W (C values).")
    channel_std: list[Num] = Field(description="Per-channel std over H, W (C values).")
    mean: Num
    std: Num
    min_max: list[Num]
    channel_mean_range: list[Num]
    channel_std_range: list[Num]


class Before(ImageSummary):
    """The conv output before any normalisation."""

    histogram: BeforeHistogram


class NormMethod(ImageSummary):
    """One normalisation applied to the batch, reported for the image sent."""

    id: str = Field(description="`batch`, `layer`, `instance`, `group`, `lrn` or `running` (the model's own BN).")
    name: str
    axes: str = Field(description="Axis letters of (N, C, H, W) that one statistic pools, e.g. `N,H,W`.")
    axes_words: str
    about: str
    pooled: int | None = Field(description="Values one statistic pools (null for the model's running statistics).")
    statistics: int = Field(description="How many means (and variances) the batch has under this method.")
    histogram: Histogram
    with_affine: ImageSummary | None = Field(None, description="`running` only: after the model's gamma and beta.")


class Batch(Open):
    """The batch the statistics come from."""

    images: int
    uploaded_index: int = Field(description="Where the image sent sits in the batch (0).")
    samples: list[str] = Field(description="The built-in samples that fill the rest of the batch.")


class Normalizations(Open):
    """Batch, layer, instance, group and local response norm of one conv layer's real output, side by side."""

    model: str
    weights: str
    layer: str = Field(description="The conv layer (tap id) whose output is normalised.")
    bn_layer: str = Field(description="The model's own BN on that output.")
    layers: list[str] = Field(description="Every conv layer the endpoint accepts.")
    groups: int
    shape: list[int] = Field(description="(N, C, H, W) of the conv output.")
    edges: list[float] = Field(description="Bin edges shared by every method's histogram.")
    before: Before
    methods: list[NormMethod]
    batch: Batch
    batch_vs_instance_max_abs: Num = Field(description="Largest |batch-norm - instance-norm| value for this image.")
    image_sha256: str
    upstream_bn: str = Field(description="BN statistics of the layers before this one (`running`).")
    notes: list[str]


class GradNorms(Open):
    """Every conv layer's ||dL/dW|| at the recorded training steps."""

    layers: list[str]
    steps: list[int]
    loss: list[Num]
    norms: list[list[Num]] = Field(description="One row per recorded step, one value per layer.")
    first_layer: str | None
    last_layer: str | None
    first_last_ratio: list[Num] = Field(description="First block's first conv over last block's last conv, per step.")
    first_norm: list[Num] = Field(description="The first block's first conv's norm, per step.")
    last_norm: list[Num] = Field(description="The last block's last conv's norm, per step.")
    what: str


class ClaimRun(Open):
    """One training run, with or without batch norm."""

    model: str
    depth: int
    plain: bool
    norm: str = Field(description="`batch` or `none` (every BN replaced by the identity).")
    file: str
    grad_norms_file: str | None
    steps: int
    steps_run: int
    outcome: str = Field(description="`trained`, `stuck` (loss near ln 10) or `diverged`.")
    diverged_at_step: int | None
    peak_lr: float
    retried: bool
    retry_reason: str | None
    attempts: list[dict[str, Any]]
    loss: list[Num]
    loss_smooth: list[Num]
    accuracy_smooth: list[Num]
    final_train_loss: Num
    final_train_accuracy: Num
    held_out_accuracy: Num
    generalisation_gap: Num = Field(description="Final training accuracy minus held-out accuracy.")
    steps_to_loss_1: int | None = Field(description="First step whose smoothed loss is at most 1.0.")
    initial_loss: Num
    wall_time_s: Num
    command: str | None
    grad_norms: GradNorms | None
    reproduces: dict[str, Any] | None = Field(description="BN rerun only: does its loss curve equal the shipped log's?")


class ClaimPair(Open):
    """BN against no-BN for one network: the numbers the captions quote."""

    model: str
    depth: int
    plain: bool
    summary: dict[str, dict[str, Any]]


class BNClaims(Open):
    """Batch norm's claims (faster convergence, healthy gradients, regularisation) measured on the shipped nets."""

    runs: list[ClaimRun]
    pairs: list[ClaimPair]
    findings: list[str]
    loss_target: float
    chance_loss: float
    window: int
    command: str
