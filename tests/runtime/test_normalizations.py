"""The normalisations side by side: every number against torch.nn.functional in float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from app.runtime import normalizations as norms

torch.set_num_threads(1)


def _batch(seed: int = 0, shape: tuple[int, ...] = (5, 8, 6, 7)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # channels on different scales and offsets, so the methods disagree
    scale = rng.uniform(0.2, 3.0, size=(1, shape[1], 1, 1))
    shift = rng.normal(0, 2, size=(1, shape[1], 1, 1))
    return rng.normal(size=shape) * scale + shift


def _torch(x: np.ndarray, groups: int) -> dict[str, np.ndarray]:
    t = torch.from_numpy(x)  # float64
    eps = norms.EPS
    return {
        "batch": F.batch_norm(t, None, None, training=True, eps=eps),
        "layer": F.layer_norm(t, t.shape[1:], eps=eps),
        "instance": F.instance_norm(t, eps=eps),
        "group": F.group_norm(t, groups, eps=eps),
        # torch divides alpha by size; AlexNet's formula sums the squares with alpha = 1e-4
        "lrn": F.local_response_norm(
            t, norms.LRN_SIZE, alpha=norms.LRN_ALPHA * norms.LRN_SIZE, beta=norms.LRN_BETA, k=norms.LRN_K
        ),
    }


@pytest.mark.parametrize("groups", [1, 2, 4, 8])
def test_each_method_equals_torch_in_float64(groups: int) -> None:
    x = _batch()
    want = _torch(x, groups)
    got = {
        "batch": norms.batch_norm(x),
        "layer": norms.layer_norm(x),
        "instance": norms.instance_norm(x),
        "group": norms.group_norm(x, groups),
        "lrn": norms.local_response_norm(x),
    }
    for key, value in got.items():
        np.testing.assert_allclose(value, want[key].numpy(), rtol=1e-10, atol=1e-12, err_msg=key)


def test_group_norm_spans_layer_and_instance_norm() -> None:
    x = _batch(1)
    np.testing.assert_allclose(norms.group_norm(x, 1), norms.layer_norm(x), atol=1e-12)
    np.testing.assert_allclose(norms.group_norm(x, x.shape[1]), norms.instance_norm(x), atol=1e-12)
    with pytest.raises(ValueError, match="divide"):
        norms.group_norm(x, 3)


def test_lrn_with_small_activations_is_a_fixed_division() -> None:
    x = _batch(2) * 1e-3
    np.testing.assert_allclose(norms.local_response_norm(x), x / norms.LRN_K**norms.LRN_BETA, rtol=1e-6)


def test_compare_reports_the_first_image_against_torch() -> None:
    x = _batch(3, (6, 8, 5, 5))
    rng = np.random.default_rng(9)
    bn = {
        "running_mean": rng.normal(size=8).tolist(),
        "running_var": rng.uniform(0.5, 2, size=8).tolist(),
        "eps": 1e-5,
        "gamma": rng.uniform(0.5, 1.5, size=8).tolist(),
        "beta": rng.normal(size=8).tolist(),
    }
    out = norms.compare(x.astype(np.float32), 2, bn)
    x64 = x.astype(np.float32).astype(np.float64)  # compare() reads the float32 tap
    want = _torch(x64, 2)
    t = torch.from_numpy(x64)
    rm, rv = torch.tensor(bn["running_mean"], dtype=torch.float64), torch.tensor(bn["running_var"], dtype=torch.float64)
    want["running"] = F.batch_norm(t, rm, rv, training=False, eps=1e-5)
    ids = [m["id"] for m in out["methods"]]
    assert ids == ["batch", "layer", "instance", "group", "lrn", "running"]
    edges = np.asarray(out["edges"])
    assert len(edges) == norms.HIST_BINS + 1 and np.all(np.diff(edges) > 0)
    for m in out["methods"]:
        y = want[m["id"]][0].numpy()  # the first image
        np.testing.assert_allclose(m["channel_mean"], y.mean(axis=(1, 2)), atol=1e-9, err_msg=m["id"])
        np.testing.assert_allclose(m["channel_std"], y.std(axis=(1, 2)), rtol=1e-9, err_msg=m["id"])
        assert m["mean"] == pytest.approx(float(y.mean()), abs=1e-9)
        h = m["histogram"]
        counts, _ = np.histogram(y, bins=edges)
        inside = (y >= edges[0]) & (y <= edges[-1])
        assert h["counts"] == counts.tolist() and sum(h["counts"]) == int(inside.sum())
        assert h["underflow"] == int((y < edges[0]).sum()) and h["overflow"] == int((y > edges[-1]).sum())
    by = {m["id"]: m for m in out["methods"]}
    n, c, hh, ww = x.shape
    assert (by["batch"]["pooled"], by["batch"]["statistics"]) == (n * hh * ww, c)
    assert (by["layer"]["pooled"], by["layer"]["statistics"]) == (c * hh * ww, n)
    assert (by["instance"]["pooled"], by["instance"]["statistics"]) == (hh * ww, n * c)
    assert (by["group"]["pooled"], by["group"]["statistics"]) == (c // 2 * hh * ww, n * 2)
    assert by["batch"]["axes"] == "N,H,W" and by["instance"]["axes"] == "H,W" and by["group"]["axes"] == "C/2,H,W"
    # instance norm puts every channel of this image at mean 0, std 1; batch norm only the batch's channels
    np.testing.assert_allclose(by["instance"]["channel_mean"], 0, atol=1e-9)
    assert max(abs(v) for v in by["batch"]["channel_mean"]) > 0.05
    gamma, beta = np.asarray(bn["gamma"]), np.asarray(bn["beta"])
    affine = want["running"][0].numpy() * gamma[:, None, None] + beta[:, None, None]
    np.testing.assert_allclose(by["running"]["with_affine"]["channel_mean"], affine.mean(axis=(1, 2)), atol=1e-9)
    np.testing.assert_allclose(out["before"]["channel_mean"], x64[0].mean(axis=(1, 2)), atol=1e-9)
    np.testing.assert_allclose(out["before"]["channel_std"], x64[0].std(axis=(1, 2)), rtol=1e-9)
    gap = np.abs(want["batch"][0].numpy() - want["instance"][0].numpy()).max()
    assert out["batch_vs_instance_max_abs"] == pytest.approx(float(gap), rel=1e-9)
    assert out["notes"] == [] and out["shape"] == [n, c, hh, ww]


def test_non_finite_values_are_notes_not_errors() -> None:
    x = _batch(4, (3, 4, 4, 4)).astype(np.float32)
    x[0, 1, 2, 2] = np.inf
    x[1, 0, 0, 0] = np.nan
    out = norms.compare(x, 2)
    assert any("not finite" in n for n in out["notes"])
    assert all(len(m["histogram"]["counts"]) == norms.HIST_BINS for m in out["methods"])
    assert any(m["histogram"]["nonfinite"] > 0 for m in out["methods"])
    assert np.all(np.isfinite(out["edges"]))
    with pytest.raises(ValueError, match="N, C, H, W"):
        norms.compare(np.zeros((3, 4)), 1)


def test_default_groups_divide_the_channels() -> None:
    assert [norms.default_groups(c) for c in (16, 32, 64, 6, 3, 1, 7)] == [4, 4, 4, 3, 3, 1, 1]
