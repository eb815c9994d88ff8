"""The shipped CIFAR weights: they load, export, and reach their logged held-out accuracy in ONNX Runtime."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from app.nets.data import test_set as held_out_set
from app.nets.data import to_tensor
from app.paths import SHIPPED_WEIGHTS_DIR


def _accuracy(models_dir: Path, name: str, variant: str, gates: np.ndarray) -> float:
    sess = ort.InferenceSession(str(models_dir / name / variant / "bare.onnx"), providers=["CPUExecutionProvider"])
    images, labels = held_out_set(1000)
    x = to_tensor(images).numpy()
    preds = np.concatenate(
        [sess.run(["logits"], {"image": x[i : i + 250], "gates": gates})[0].argmax(1) for i in range(0, len(x), 250)]
    )
    return float((preds == labels).mean())


def _check(name: str, exported: Callable, models_dir: Path) -> None:
    for variant, stem in (("trained", "residual"), ("plain", "plain")):
        log = json.loads((SHIPPED_WEIGHTS_DIR / f"{name}-{stem}.log.json").read_text())
        manifest = exported(name, variant, kinds=("bare",))
        assert manifest["weights"]["variant"] == variant and manifest["classes"] == "generated"
        assert manifest["class_names"][0] == "horizontal stripes"
        n = manifest["inputs"]["gates"][0]
        assert log["plain"] is (variant == "plain")
        assert log["gates"] == ([0.0] * n if variant == "plain" else [1.0] * n)
        gates = np.full(n, 0.0 if variant == "plain" else 1.0, np.float32)
        acc = _accuracy(models_dir, name, variant, gates)
        assert abs(acc - log["held_out"]["accuracy"]) <= 0.01, (name, variant, acc, log["held_out"])
        if variant == "plain" and acc > 0.2:  # learned with every gate 0: opening the shortcuts breaks it
            # (plain-110 stayed at chance, 10%, so there is nothing to break there)
            assert _accuracy(models_dir, name, variant, np.ones(n, np.float32)) < acc - 0.05


def test_resnet20_weights(exported: Callable, models_dir: Path) -> None:
    _check("resnet20", exported, models_dir)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet32", "resnet44", "resnet56", "resnet110"])
def test_deep_weights(name: str, exported: Callable, models_dir: Path) -> None:
    _check(name, exported, models_dir)


def test_default_cifar_weights_are_the_trained_ones(models_dir: Path) -> None:
    from app.paths import available_variants

    # every depth of the gradients view's depth sweep ships trained and plain weights
    for name in ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110"):
        assert available_variants(models_dir, name)[:2] == ["trained", "plain"]
    assert available_variants(models_dir, "resnet1202") == ["init"]
