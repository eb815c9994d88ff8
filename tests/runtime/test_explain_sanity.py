"""The saliency sanity measures against brute-force and scipy computations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from app.runtime import explain_sanity as es


def test_pointing_hits_against_a_loop():
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(30, 8, 8))
    maps[3] = 0.0  # flat: no peak, a miss
    masks = (rng.random((30, 8, 8)) > 0.6).astype(float)
    masks[3] = 1.0
    want = []
    for m, k in zip(maps, masks, strict=True):
        if m.max() == m.min():
            want.append(False)
            continue
        r, c = np.unravel_index(np.argmax(m), m.shape)
        want.append(bool(k[r, c] > 0.5))
    np.testing.assert_array_equal(es.pointing_hits(maps, masks), want)
    assert es.random_pointing_rate(masks) == pytest.approx(float((masks > 0.5).sum()) / masks.size)
    with pytest.raises(ValueError, match="differ in shape"):
        es.pointing_hits(maps, masks[:, :4])


def test_perturbation_batch_deletes_and_inserts_in_order():
    rng = np.random.default_rng(1)
    image, base = rng.normal(size=(3, 4, 4)), np.zeros((3, 4, 4))
    sal = rng.normal(size=(1, 4, 4))
    order = es.pixel_order(sal)[0]
    assert list(order) == list(np.argsort(-sal.ravel()))
    dele = es.perturbation_batch(image, base, order, 4, "deletion")
    ins = es.perturbation_batch(image, base, order, 4, "insertion")
    assert dele.shape == (5, 3, 4, 4)
    np.testing.assert_array_equal(dele[0], image)
    np.testing.assert_array_equal(dele[-1], base)
    np.testing.assert_array_equal(ins[0], base)
    np.testing.assert_array_equal(ins[-1], image)
    top4 = order[:4]
    flat = dele[1].reshape(3, -1)
    assert np.all(flat[:, top4] == 0) and np.all(flat[:, order[4:]] == image.reshape(3, -1)[:, order[4:]])
    with pytest.raises(ValueError):
        es.perturbation_batch(image, base, order, 4, "both")


def test_curve_auc_and_deletion_insertion_with_a_linear_model():
    assert es.curve_auc(np.array([0.0, 1.0])) == pytest.approx(0.5)
    x = np.linspace(0, 1, 17)
    assert es.curve_auc(x**2) == pytest.approx(np.trapezoid(x**2, x))
    # A "model" whose class-0 probability is the mean of the first channel: deleting its biggest pixels
    # first lowers it fastest, so the map equal to the image beats the inverted map.
    rng = np.random.default_rng(2)
    images = rng.random((3, 1, 6, 6))

    def prob(batch: np.ndarray) -> np.ndarray:
        p = batch[:, 0].mean(axis=(1, 2))
        return np.stack([p, 1 - p], axis=1)

    good = es.deletion_insertion(prob, images, np.zeros(3, int), images[:, 0], np.zeros((1, 6, 6)), steps=6)
    bad = es.deletion_insertion(prob, images, np.zeros(3, int), -images[:, 0], np.zeros((1, 6, 6)), steps=6)
    assert good["deletion"].shape == (3, 7)
    assert np.all(good["deletion_auc"] < bad["deletion_auc"])
    assert np.all(good["insertion_auc"] > bad["insertion_auc"])
    np.testing.assert_allclose(good["deletion"][:, 0], images[:, 0].mean(axis=(1, 2)))


def test_spearman_against_scipy_with_ties():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 5, size=(6, 7, 7)).astype(float)  # many ties
    b = a + rng.normal(scale=2.0, size=a.shape)
    got = es.spearman(a, b)
    want = [stats.spearmanr(x.ravel(), y.ravel()).statistic for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert np.isnan(es.spearman(np.zeros((1, 4)), rng.normal(size=(1, 4)))[0])
