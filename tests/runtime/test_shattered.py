"""Shattered gradients: the spectrum slope of white and brown noise, the autocorrelation against a loop, the
line of inputs, and the explain graph's directional derivative against torch autograd in float64."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from app.runtime import shattered as sh

SEEDS = 400
P = 256


def _slopes(make: Callable[[np.random.Generator], np.ndarray]) -> np.ndarray:
    return np.array([sh.spectrum_slope(sh.periodogram(make(np.random.default_rng(s))))["slope"] for s in range(SEEDS)])


def test_white_noise_spectrum_is_flat() -> None:
    slopes = _slopes(lambda r: r.standard_normal(P))
    # Over 400 seeds the slope's spread is ~0.13 (measured): the mean is 0 within 5 standard errors.
    assert abs(slopes.mean()) < 5 * slopes.std() / np.sqrt(SEEDS)
    assert np.all(np.abs(slopes) < 0.6), (slopes.min(), slopes.max())


def test_brown_noise_spectrum_falls_as_one_over_f_squared() -> None:
    slopes = _slopes(lambda r: np.cumsum(r.standard_normal(P)))
    # A discrete random walk's expected periodogram is 1 / (4 sin^2(pi k / P)): -2 at low frequencies, flatter
    # towards P/2, so over k = 1..P/2 its least-squares slope is about -1.78, not exactly -2.
    k = np.arange(1, P // 2 + 1)
    expected = np.polyfit(np.log10(k), -np.log10(4 * np.sin(np.pi * k / P) ** 2), 1)[0]
    assert -1.85 < expected < -1.7
    assert abs(slopes.mean() - expected) < 0.05
    assert -2.1 < slopes.mean() < -1.7 and np.all((slopes > -2.5) & (slopes < -1.2)), (slopes.min(), slopes.max())
    ref = sh.reference_slopes(P)
    assert abs(ref["brown"]["mean"] - slopes.mean()) < 0.05 and abs(ref["white"]["mean"]) < 0.05


def test_periodogram_and_slope_against_direct_sums() -> None:
    g = np.cumsum(np.random.default_rng(7).standard_normal(64)) + 3.0
    d = g - g.mean()
    n = np.arange(64)
    direct = [abs(np.sum(d * np.exp(-2j * np.pi * k * n / 64))) ** 2 / 64 for k in range(1, 33)]
    np.testing.assert_allclose(sh.periodogram(g), direct, rtol=1e-10, atol=1e-12)
    fit = sh.spectrum_slope(np.array(direct))
    slope, intercept = np.polyfit(np.log10(np.arange(1, 33)), np.log10(direct), 1)
    assert fit["slope"] == pytest.approx(slope, abs=1e-10) and fit["intercept"] == pytest.approx(intercept, abs=1e-10)
    assert fit["fit"][0][0] == 1 and fit["fit"][1][0] == 32
    assert fit["fit"][1][1] == pytest.approx(10 ** (intercept + slope * np.log10(32)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_autocorrelation_against_a_direct_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for g in (rng.standard_normal(100), np.cumsum(rng.standard_normal(100)), np.sin(np.arange(100) / 3.0)):
        d = g - g.mean()
        want = [sum(d[t] * d[t + k] for t in range(100 - k)) / sum(d[t] ** 2 for t in range(100)) for k in range(26)]
        got = sh.autocorrelation(g, 25)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
        assert sh.half_lag(got) == next((k for k, v in enumerate(want) if v < 0.5), None)


def test_flat_and_nonfinite_signals_are_notes_not_errors() -> None:
    assert sh.autocorrelation(np.full(32, 2.0), 8) is None
    flat, notes = sh.signal_report(np.full(32, 2.0), "flat")
    assert flat["std"] == 0.0 and flat["autocorr"] is None and flat["spectrum"]["slope"] is None
    assert notes and "constant" in notes[0]
    g = np.random.default_rng(0).standard_normal(32)
    g[5], g[9] = np.nan, np.inf
    bad, notes = sh.signal_report(g, "bad")
    assert bad["spectrum"]["slope"] is None and bad["lag1"] is None and "2 of 32 values are not finite" in notes[0]


def test_the_line_of_inputs() -> None:
    x0 = np.random.default_rng(3).standard_normal((3, 8, 8)).astype(np.float32)
    t, u, xs = sh.line(x0, 16, seed=5)
    assert xs.shape == (16, 3, 8, 8) and np.allclose(t, np.arange(16) / 16)
    assert np.linalg.norm(u) == pytest.approx(1.0) and np.array_equal(u, sh.direction(x0.shape, 5))
    assert not np.allclose(u, sh.direction(x0.shape, 6))
    np.testing.assert_allclose(xs[8], x0, atol=1e-7)  # t = 1/2 is the image itself
    span = sh.default_span(x0.shape)
    assert span == pytest.approx(np.sqrt(192))
    steps = np.linalg.norm((xs[1:] - xs[:-1]).reshape(15, -1), axis=1)
    np.testing.assert_allclose(steps, span / 16, rtol=1e-9)


def test_requests_are_checked() -> None:
    sh.check_request("resnet110", 256, 0)
    with pytest.raises(ValueError, match="CIFAR ResNets up to ResNet-110"):
        sh.check_request("resnet50", 256, 0)
    with pytest.raises(ValueError, match="CIFAR ResNets up to ResNet-110"):
        sh.check_request("resnet1202", 256, 0)
    for points in (8, 513):
        with pytest.raises(ValueError, match="points must be between 16 and 512"):
            sh.check_request("resnet20", points, 0)
    with pytest.raises(ValueError, match="seed"):
        sh.check_request("resnet20", 256, -1)


# ---------------------------------------------------------------- the explain graph against torch autograd


def _torch_line(name: str, variant: str, models_dir: Path, xs: np.ndarray, gates: np.ndarray, target: int):  # noqa: ANN202
    """Logits and d(logit[target])/dx of every input, by torch autograd in float64."""
    import torch

    from app.nets.resnet import build
    from app.nets.weights import load_variant

    torch.set_num_threads(1)
    model = build(name)
    state = load_variant(name, variant, models_dir)[0]
    if state is not None:
        model.load_state_dict(state)
    model = model.double().eval()
    model.bn_mode = "running"
    x = torch.from_numpy(np.asarray(xs, np.float64)).requires_grad_(True)
    logits = model(x, torch.from_numpy(gates.astype(np.float64)))
    logits[:, target].sum().backward()
    return logits.detach().numpy(), x.grad.numpy()


@pytest.mark.parametrize("gate", [1.0, 0.0])
def test_directional_derivative_matches_torch(exported: Callable, models_dir: Path, gate: float) -> None:
    from app.runtime.preprocess import prepare
    from app.runtime.registry import ModelRegistry
    from app.runtime.samples import sample_bytes

    exported("resnet20", "trained", kinds=(sh.KIND,))
    reg = ModelRegistry(models_dir, intra_op_threads=1)
    model = reg.get("resnet20", "trained")
    x = prepare(sample_bytes("set-disc"), model.manifest["preprocessing"])[0][None]
    gates = np.full(model.num_blocks, gate, np.float32)
    points, seed, target = 64, 3, 5
    out = sh.shattered(reg, model, x, gates, target, points=points, seed=seed)
    assert out["notes"] == [] and out["target"] == target and out["points"] == points
    _, u, xs = sh.line(x[0], points, seed)
    xs32 = xs.astype(np.float32).astype(np.float64)  # the graph's inputs, exactly
    logits, grad = _torch_line("resnet20", "trained", models_dir, xs32, gates, target)
    want = np.einsum("nchw,chw->n", grad, u)
    got = np.asarray(out["direction"]["trace"])
    scale = np.abs(want).max()
    close = np.abs(got - want) <= 1e-4 * scale
    # Where float32 puts a pre-activation on the other side of a ReLU's kink than float64 does, the graph's
    # value is the gradient of a neighbouring point of the line: check that, and that such points are rare.
    far = np.flatnonzero(~close)
    assert far.size <= 0.05 * points, far
    for i in far:
        eps = np.array([1e-5, 1e-4, -1e-5, -1e-4])[:, None, None, None]
        _, g_near = _torch_line("resnet20", "trained", models_dir, xs32[i] + eps * u, gates, target)
        near = np.einsum("nchw,chw->n", g_near, u)
        assert np.min(np.abs(near - got[i])) <= 1e-4 * scale, (i, got[i], want[i], near)
    c, h, w = out["pixel"]["channel"], out["pixel"]["row"], out["pixel"]["column"]
    pixel_ok = np.abs(np.asarray(out["pixel_gradient"]["trace"]) - grad[:, c, h, w]) <= 1e-4 * np.abs(grad).max()
    assert np.all(pixel_ok[close]), np.flatnonzero(~pixel_ok)
    np.testing.assert_allclose(out["score"], logits[:, target], rtol=1e-4, atol=1e-4 * np.abs(logits).max())
    # The numbers drawn are those of the signal: the slope of its own periodogram.
    d = got - got.mean()
    power = np.abs(np.fft.rfft(d)) ** 2 / points
    slope = np.polyfit(np.log10(np.arange(1, points // 2 + 1)), np.log10(power[1 : points // 2 + 1]), 1)[0]
    assert out["direction"]["spectrum"]["slope"] == pytest.approx(slope, abs=1e-9)


def test_predicted_target_is_the_top1_class_at_the_image(exported: Callable, models_dir: Path) -> None:
    from app.runtime.preprocess import prepare
    from app.runtime.registry import ModelRegistry
    from app.runtime.samples import sample_bytes

    exported("resnet20", "trained", kinds=(sh.KIND,))
    reg = ModelRegistry(models_dir, intra_op_threads=1)
    model = reg.get("resnet20", "trained")
    x = prepare(sample_bytes("set-ring"), model.manifest["preprocessing"])[0][None]
    gates = np.ones(model.num_blocks, np.float32)
    out = sh.shattered(reg, model, x, gates, None, points=16)
    logits, _ = _torch_line("resnet20", "trained", models_dir, x.astype(np.float64), gates, 0)
    assert out["target"] == int(logits[0].argmax()) and out["target_source"] == "predicted top-1 at x0"


def test_batches_change_nothing(exported: Callable, models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """BN on running statistics: the points of the line do not interact, so the batch size changes no number."""
    from app.runtime.preprocess import prepare
    from app.runtime.registry import ModelRegistry
    from app.runtime.samples import sample_bytes

    exported("resnet20", "init", kinds=(sh.KIND,))
    reg = ModelRegistry(models_dir, intra_op_threads=1)
    model = reg.get("resnet20", "init")
    x = prepare(sample_bytes("set-disc"), model.manifest["preprocessing"])[0][None]
    gates = np.zeros(model.num_blocks, np.float32)
    whole = sh.shattered(reg, model, x, gates, 2, points=48)
    monkeypatch.setattr(sh, "CHUNK", 7)
    parts = sh.shattered(reg, model, x, gates, 2, points=48)
    np.testing.assert_allclose(parts["direction"]["trace"], whole["direction"]["trace"], rtol=1e-5, atol=1e-7)
