"""The shattered-gradients answers: one line of inputs through a model, and the shipped study of the lab."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from app.api.schemas.analysis import GradModel
from app.api.schemas.common import IMAGE_FIELDS, TARGET_FIELD, Num, Open
from app.runtime.shattered import MAX_POINTS, MAX_SEED, MIN_POINTS, POINTS

SHATTERED_FIELDS = {
    **IMAGE_FIELDS,
    **TARGET_FIELD,
    "points": (
        {"type": "integer", "minimum": MIN_POINTS, "maximum": MAX_POINTS, "default": POINTS},
        "Inputs along the line (P).",
    ),
    "seed": (
        {"type": "integer", "minimum": 0, "maximum": MAX_SEED, "default": 0},
        "Seed of the random unit direction u of the line.",
    ),
}


class Spectrum(Open):
    """Periodogram of the mean-removed signal at frequencies 1..P/2 and its log-log least-squares line."""

    power: list[Num] | None = Field(description="|DFT|^2 / P at frequencies 1..P/2 (null when not computable).")
    slope: Num = Field(description="Slope of log10(power) against log10(frequency): ~0 white noise, ~-2 brown.")
    intercept: Num
    r: Num = Field(description="Pearson r of the log-log points.")
    used: int = Field(description="Frequencies with a positive, finite power (the points fitted).")
    fit: list[list[float]] | None = Field(description="The fitted line's two ends, [frequency, power].")


class Signal(Open):
    """One signal along the line: its values, moments, autocorrelation and spectrum."""

    trace: list[Num] = Field(description="The signal at each t (null where not finite).")
    mean: Num
    std: Num
    autocorr: list[Num] | None = Field(description="Normalised autocorrelation at lags 0..P/4.")
    lag1: Num = Field(description="The autocorrelation at lag 1.")
    half_lag: int | None = Field(description="First lag where the autocorrelation falls below 1/2.")
    spectrum: Spectrum


class NoiseReference(Open):
    """Spectrum slopes of numpy noise signals of the same length."""

    mean: float
    std: float


class References(Open):
    """What white noise and brown noise (its cumulative sum) read with the same estimator."""

    seeds: int
    white: NoiseReference
    brown: NoiseReference


class Shattered(Open):
    """d(class score)/dx along a line of inputs x(t) = x0 + (t - 1/2) span u (Balduzzi et al. 2017)."""

    model: GradModel
    gates: list[float]
    bn: str = Field(description="Always `running`: the points of the line do not interact.")
    graph: str = Field(description="The graph file that computed the gradients.")
    target: int
    target_label: str
    target_source: str = Field(description="`predicted top-1 at x0` or `chosen`.")
    points: int
    seed: int
    span: float = Field(description="Length of the line in input space (default sqrt(d)).")
    input_norm: float = Field(description="||x0||.")
    dimension: int = Field(description="d, the number of inputs.")
    pixel: dict[str, int] = Field(description="The input component of `pixel_gradient`: channel, row, column.")
    top1_fraction: float = Field(description="Fraction of the line where the target is the top-1 class.")
    t: list[float]
    lags: list[int]
    freq: list[int]
    score: list[Num] = Field(description="The class score (logit) at each t.")
    direction: Signal = Field(description="g(t) = grad_image(x(t)) . u, the derivative along the line.")
    pixel_gradient: Signal = Field(description="One input component of the gradient along the line.")
    reference: References
    notes: list[str]
    image_sha256: str


class ShatteredRun(Open):
    """One network of the shipped study: a depth, residual or plain, He-init or trained."""

    depth: int
    net: str = Field(description="`residual` (every gate 1) or `plain` (every gate 0).")
    weights: str = Field(description="`init` or `trained` (the trained plain twin uses the `plain` weights).")
    variant: str = Field(description="The weights variant used.")
    sha256: str | None = Field(description="sha256 of the shipped state dict (null for init).")
    target_label: str
    top1_fraction: float
    direction: Signal
    pixel_gradient: Signal
    notes: list[str]


class ShatteredRow(Open):
    """The summary numbers of one depth and weights choice, for the captions."""

    depth: int
    weights: str
    residual_slope: Num
    plain_slope: Num
    residual_lag1: Num
    plain_lag1: Num
    residual_pixel_slope: Num
    plain_pixel_slope: Num


class ShatteredLab(Open):
    """The shipped study (models/weights/shattered.json) with its summary for the captions."""

    command: str = Field(description="The command that made the file.")
    format: int = Field(description="Export format of the graphs it used.")
    graph: str
    image: dict[str, Any] = Field(description="The image: its sample name, sha256 and class.")
    points: int
    seed: int
    span: float
    t: list[float]
    lags: list[int]
    freq: list[int]
    reference: References
    runs: list[ShatteredRun]
    depths: list[int]
    summary: list[ShatteredRow]
    notes: list[str] = Field(description="Where the file no longer matches the weights or export format in use.")
